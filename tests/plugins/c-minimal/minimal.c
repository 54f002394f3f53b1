/*
 * A minimal Cohort source plugin in plain C99, to prove the ABI is language-neutral.
 *
 * It serves `count` made-up customers (config: {"count": N}, default 5), a page at a time, with
 * the index of the next customer as its cursor. Build:
 *
 *   cc -std=c99 -shared -fPIC -I crates/cohort-plugin-api/include \
 *      tests/plugins/c-minimal/minimal.c -o libcohort_plugin_c_minimal.so
 *
 * JSON is read with a few string searches: enough for the host's well-formed messages, and a
 * real plugin would use a JSON library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort_plugin.h"

typedef struct {
    const CohortHostVtable *host;
    long count;
} Instance;

/* Hands `text` to the host as an owned buffer (freed by our free_buf). */
static CohortBuf own(const char *text) {
    CohortBuf buf = {NULL, 0, 0};
    size_t len = strlen(text);
    buf.ptr = malloc(len ? len : 1);
    if (buf.ptr) {
        memcpy(buf.ptr, text, len);
        buf.len = len;
        buf.cap = len;
    }
    return buf;
}

static CohortStatus fail(CohortBuf *out, const char *kind, const char *path, const char *message) {
    char text[512];
    if (path) {
        snprintf(text, sizeof text,
                 "{\"message\":\"%s\",\"kind\":\"%s\",\"config_issues\":[{\"path\":\"%s\",\"message\":\"%s\"}]}",
                 message, kind, path, message);
    } else {
        snprintf(text, sizeof text, "{\"message\":\"%s\",\"kind\":\"%s\"}", message, kind);
    }
    *out = own(text);
    return COHORT_STATUS_ERROR;
}

/* Copies borrowed bytes into a NUL-terminated string. */
static char *cstr(CohortBytes bytes) {
    char *s = malloc(bytes.len + 1);
    if (!s) return NULL;
    if (bytes.len) memcpy(s, bytes.ptr, bytes.len);
    s[bytes.len] = '\0';
    return s;
}

/* Finds `"key":` and returns what follows (after spaces), or NULL. */
static const char *field(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    if (!at) return NULL;
    at += strlen(pattern);
    while (*at == ' ') at++;
    return at;
}

static void host_log(const CohortHostVtable *host, int32_t level, const char *message) {
    CohortBytes msg = {(const uint8_t *)message, strlen(message)};
    CohortBytes none = {NULL, 0};
    host->log(host->ctx, level, msg, none);
}

static CohortStatus manifest(CohortBuf *out) {
    *out = own("{\"name\":\"c-minimal\",\"version\":\"1.0.0\","
               "\"description\":\"Minimal source written in C\","
               "\"kinds\":[\"source\"],"
               "\"capabilities\":{\"streams\":[\"customers\"],\"incremental\":true},"
               "\"config_schema\":{\"type\":\"object\",\"additionalProperties\":false,"
               "\"properties\":{\"count\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":1000,"
               "\"description\":\"How many customers to serve\"}}}}");
    return COHORT_STATUS_OK;
}

static CohortStatus open_instance(const CohortHostVtable *host, CohortBytes config, void **instance,
                                  CohortBuf *out) {
    char *json = cstr(config);
    if (!json) return fail(out, "failed", NULL, "out of memory");
    long count = 5;
    const char *at = field(json, "count");
    if (at) {
        char *end;
        count = strtol(at, &end, 10);
        if (end == at || count < 0 || count > 1000) {
            free(json);
            return fail(out, "config", "/count", "expected an integer from 0 to 1000");
        }
    }
    if (strstr(json, "conformance_unknown_field")) {
        free(json);
        return fail(out, "config", "/conformance_unknown_field", "unknown field");
    }
    free(json);
    Instance *self = malloc(sizeof *self);
    if (!self) return fail(out, "failed", NULL, "out of memory");
    self->host = host;
    self->count = count;
    *instance = self;
    host_log(host, COHORT_LOG_INFO, "C plugin opened");
    return COHORT_STATUS_OK;
}

static CohortStatus next_page(void *instance, CohortBytes request, CohortBuf *out) {
    Instance *self = instance;
    char *json = cstr(request);
    if (!json) return fail(out, "failed", NULL, "out of memory");
    const char *stream = field(json, "stream");
    if (!stream || strncmp(stream, "\"customers\"", 11) != 0) {
        free(json);
        return fail(out, "unsupported", NULL, "this plugin only serves customers");
    }
    long start = 0;
    const char *cursor = field(json, "cursor");
    if (cursor && strncmp(cursor, "null", 4) != 0) {
        char *end;
        start = strtol(cursor, &end, 10);
        if (end == cursor || start < 0 || start > self->count) {
            free(json);
            return fail(out, "bad_cursor", NULL, "the cursor is not a customer index");
        }
    }
    long max = 100;
    const char *m = field(json, "max_records");
    if (m) max = strtol(m, NULL, 10);
    free(json);
    if (max < 1) max = 1;

    long end = start + max < self->count ? start + max : self->count;
    size_t cap = 128 + (size_t)(end - start) * 96;
    char *page = malloc(cap);
    if (!page) return fail(out, "failed", NULL, "out of memory");
    size_t len = (size_t)snprintf(page, cap, "{\"records\":[");
    for (long i = start; i < end; i++) {
        len += (size_t)snprintf(page + len, cap - len,
                                "%s{\"id\":\"c-%ld\",\"email\":\"c%ld@example.com\","
                                "\"accepts_email_marketing\":true}",
                                i > start ? "," : "", i + 1, i + 1);
    }
    snprintf(page + len, cap - len, "],\"next_cursor\":%ld,\"done\":%s}", end,
             end >= self->count ? "true" : "false");
    self->host->progress(self->host->ctx, (uint64_t)end, (uint64_t)self->count);
    *out = own(page);
    free(page);
    return COHORT_STATUS_OK;
}

static void close_instance(void *instance) { free(instance); }

static void free_buf(CohortBuf buf) { free(buf.ptr); }

static const CohortPluginVtable VTABLE = {
    COHORT_ABI_MAJOR, COHORT_ABI_MINOR, sizeof(CohortPluginVtable),
    manifest,         open_instance,    next_page,
    NULL, /* push: not a destination */
    close_instance,   free_buf,
#if COHORT_ABI_MINOR >= 2
    NULL, /* finish: not a destination */
#endif
#if COHORT_ABI_MINOR >= 3
    NULL, /* suppressions: not a destination */
#endif
};

const CohortPluginVtable *cohort_plugin_entry(uint32_t host_major, uint32_t host_minor) {
    (void)host_minor;
    return host_major == COHORT_ABI_MAJOR ? &VTABLE : NULL;
}
