/*
 * A C source that writes binary pages (ABI 1.1), for the host's tests: it proves the binary
 * page format can be written from C with nothing but the header, and, configured to, it sends
 * the broken pages the host must refuse with a clear error.
 *
 * Config: {"mode": M}, M one of
 *   "good"           two customers, c-1 (with an email) and c-2, then done;
 *   "wrong_stream"   a page that says it holds orders;
 *   "truncated"      the records end in the middle of a string;
 *   "bad_utf8"       an id that is not UTF-8;
 *   "future_version" format version 2.
 * Asked for JSON (no "format":"binary" in the request), it answers an empty JSON page.
 */
#include <stdlib.h>
#include <string.h>

#include "cohort_plugin.h"

typedef struct {
    char mode[32];
} Instance;

static CohortBuf own(const uint8_t *bytes, size_t len) {
    CohortBuf buf = {NULL, 0, 0};
    buf.ptr = malloc(len ? len : 1);
    if (buf.ptr) {
        memcpy(buf.ptr, bytes, len);
        buf.len = len;
        buf.cap = len;
    }
    return buf;
}

static CohortBuf own_text(const char *text) { return own((const uint8_t *)text, strlen(text)); }

static CohortStatus manifest(CohortBuf *out) {
    *out = own_text("{\"name\":\"c-binary\",\"version\":\"1.0.0\","
                    "\"kinds\":[\"source\"],"
                    "\"capabilities\":{\"streams\":[\"customers\"],\"page_formats\":[\"binary\"]},"
                    "\"config_schema\":{\"type\":\"object\",\"properties\":{\"mode\":{\"type\":"
                    "\"string\"}},\"additionalProperties\":false}}");
    return COHORT_STATUS_OK;
}

static CohortStatus open_instance(const CohortHostVtable *host, CohortBytes config,
                                  void **instance, CohortBuf *out) {
    (void)host;
    (void)out;
    Instance *inst = calloc(1, sizeof *inst);
    if (!inst) return COHORT_STATUS_ERROR;
    strcpy(inst->mode, "good");
    const char *key = "\"mode\":\"";
    for (size_t i = 0; i + strlen(key) < config.len; i++) {
        if (memcmp(config.ptr + i, key, strlen(key)) == 0) {
            size_t start = i + strlen(key), n = 0;
            while (start + n < config.len && config.ptr[start + n] != '"' && n < 31) n++;
            memcpy(inst->mode, config.ptr + start, n);
            inst->mode[n] = '\0';
            break;
        }
    }
    *instance = inst;
    return COHORT_STATUS_OK;
}

static void put_u32(uint8_t *at, uint32_t v) {
    at[0] = v & 0xff;
    at[1] = (v >> 8) & 0xff;
    at[2] = (v >> 16) & 0xff;
    at[3] = (v >> 24) & 0xff;
}

/* Appends a string: its length (one LEB128 byte, enough here) and its bytes. */
static size_t put_str(uint8_t *at, const char *s) {
    size_t n = strlen(s);
    at[0] = (uint8_t)n;
    memcpy(at + 1, s, n);
    return n + 1;
}

static int has(CohortBytes bytes, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= bytes.len; i++) {
        if (memcmp(bytes.ptr + i, needle, n) == 0) return 1;
    }
    return 0;
}

static CohortStatus next_page(void *instance, CohortBytes request, CohortBuf *out) {
    const Instance *inst = instance;
    if (!has(request, "\"format\":\"binary\"")) {
        *out = own_text("{\"next_cursor\":null,\"done\":true,\"records\":[]}");
        return COHORT_STATUS_OK;
    }
    uint8_t page[256];
    memset(page, 0, sizeof page);
    memcpy(page, COHORT_BINARY_PAGE_MAGIC, 4);
    page[4] = COHORT_BINARY_PAGE_VERSION;
    page[5] = COHORT_STREAM_CUSTOMERS;
    page[6] = COHORT_BINARY_PAGE_DONE;
    size_t at = COHORT_BINARY_PAGE_HEADER_LEN;
    /* c-1: field bits 1 (email), the id, the email. */
    put_u32(page + at, 1);
    at += 4;
    at += put_str(page + at, "c-1");
    at += put_str(page + at, "c1@example.com");
    /* c-2: no optional field. */
    put_u32(page + at, 0);
    at += 4;
    at += put_str(page + at, "c-2");
    size_t records_len = at - COHORT_BINARY_PAGE_HEADER_LEN;
    put_u32(page + 8, 2);
    put_u32(page + 12, (uint32_t)records_len);
    /* The cursor, as JSON, then no rejects. */
    put_u32(page + at, 1);
    page[at + 4] = '2';
    at += 5;
    put_u32(page + at, 0);
    at += 4;

    if (strcmp(inst->mode, "wrong_stream") == 0) {
        page[5] = COHORT_STREAM_ORDERS;
    } else if (strcmp(inst->mode, "truncated") == 0) {
        /* c-2's id says 3 bytes but the records end after 1 of them. */
        size_t end = COHORT_BINARY_PAGE_HEADER_LEN + records_len;
        put_u32(page + 12, (uint32_t)records_len - 2);
        memmove(page + end - 2, page + end, at - end);
        at -= 2;
    } else if (strcmp(inst->mode, "bad_utf8") == 0) {
        page[COHORT_BINARY_PAGE_HEADER_LEN + 5] = 0xff; /* in "c-1" */
    } else if (strcmp(inst->mode, "future_version") == 0) {
        page[4] = 2;
    }
    *out = own(page, at);
    return COHORT_STATUS_OK;
}

static void close_instance(void *instance) { free(instance); }

static void free_buf(CohortBuf buf) { free(buf.ptr); }

static const CohortPluginVtable VTABLE = {
    COHORT_ABI_MAJOR, COHORT_ABI_MINOR, sizeof(CohortPluginVtable),
    manifest, open_instance, next_page, NULL, close_instance, free_buf,
    NULL, /* finish: not a destination */
    NULL, /* suppressions: not a destination */
};

const CohortPluginVtable *cohort_plugin_entry(uint32_t host_major, uint32_t host_minor) {
    (void)host_minor;
    return host_major == COHORT_ABI_MAJOR ? &VTABLE : NULL;
}
