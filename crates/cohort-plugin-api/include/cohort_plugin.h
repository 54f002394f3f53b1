/*
 * cohort_plugin.h: the Cohort plugin ABI, version 1.
 *
 * A plugin is a shared library exporting one function, `cohort_plugin_entry`, that returns a
 * pointer to a CohortPluginVtable living as long as the library is loaded. Everything else
 * crosses as bytes of JSON (see docs/plugins.md for every message). This header is the C twin of
 * crates/cohort-plugin-api/src/abi.rs; a test compiles it and checks every size and offset
 * against the Rust definitions.
 *
 * Ownership: a CohortBytes is borrowed for the duration of one call and never freed by the
 * receiver. A CohortBuf is owned by the side that allocated it and freed only by that side: a
 * buffer the plugin returns is freed with the plugin's `free_buf`, one the host returns with the
 * host's `free_buf`. `cap` is private to the allocator.
 *
 * Versioning: both vtables begin with the frozen header {abi_major, abi_minor, size}, identical
 * in every version. Within a major version the vtables only grow at the end; `size` is the
 * sizeof the author compiled against, so the reader knows which members exist. A host refuses a
 * plugin of another major version.
 *
 * Threads: calls on one instance never overlap, but may come from different threads. Host
 * services may be called from whichever thread is calling into the plugin.
 */
#ifndef COHORT_PLUGIN_H
#define COHORT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COHORT_ABI_MAJOR 1
#define COHORT_ABI_MINOR 4 /* 1.1: binary pages; 1.2: state, finish, deletions; 1.3: suppressions (see below); 1.4: HTTP requests' "connections" */
#define COHORT_PLUGIN_ENTRY_SYMBOL "cohort_plugin_entry"

/* Status of every fallible call; the JSON in `out` depends on it. */
typedef int32_t CohortStatus;
#define COHORT_STATUS_OK 0       /* out: the call's result (or empty) */
#define COHORT_STATUS_ERROR 1    /* out: {"message", "kind", "config_issues"?, "details"?} */
#define COHORT_STATUS_RETRY 2    /* out: {"message", "retry_after_ms"?} */
#define COHORT_STATUS_PANICKED 3 /* out: {"message"}; the instance may only be closed */
#define COHORT_STATUS_NOT_FOUND 4 /* 1.2, state: the key holds nothing; out empty */

/* Log levels for CohortHostVtable.log. */
#define COHORT_LOG_ERROR 1
#define COHORT_LOG_WARN 2
#define COHORT_LOG_INFO 3
#define COHORT_LOG_DEBUG 4
#define COHORT_LOG_TRACE 5

/*
 * Binary pages (ABI 1.1, optional; docs/plugins.md, "Binary pages"). A source that lists
 * "binary" in its manifest's capabilities.page_formats may answer a page request carrying
 * "format":"binary" with a binary page instead of page JSON. A page starts with the 4 bytes of
 * COHORT_BINARY_PAGE_MAGIC (a NUL never starts JSON), then the format version, the stream code,
 * the flags (bit 0: done), a zero byte, the record count and the records' length (uint32 little
 * endian each): COHORT_BINARY_PAGE_HEADER_LEN bytes in all. A plugin that declares nothing
 * keeps receiving and answering JSON only.
 */
#define COHORT_BINARY_PAGE_MAGIC "\0CPG"
#define COHORT_BINARY_PAGE_VERSION 1
#define COHORT_BINARY_PAGE_HEADER_LEN 16
#define COHORT_STREAM_CUSTOMERS 0
#define COHORT_STREAM_ORDERS 1
#define COHORT_STREAM_EVENTS 2
#define COHORT_BINARY_PAGE_DONE 1
#define COHORT_BINARY_PAGE_EXTRAS 2 /* 1.2: an extras section {"deleted", "pass"} follows */

/* Borrowed bytes, valid only during the call. `ptr` may be NULL when `len` is 0. */
typedef struct CohortBytes {
    const uint8_t *ptr;
    size_t len;
} CohortBytes;

/* Owned bytes, freed by the allocating side. NULL `ptr` is the empty buffer. */
typedef struct CohortBuf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} CohortBuf;

/* Services the host offers an instance; valid from `open` until `close` returns. */
typedef struct CohortHostVtable {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t size;
    void *ctx;
    /* `message` is UTF-8; `fields_json` is a JSON object or empty. */
    void (*log)(void *ctx, int32_t level, CohortBytes message, CohortBytes fields_json);
    /* Progress of the current call; total 0 means unknown. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    /* 1 when the host wants the current work to stop. */
    int32_t (*is_cancelled)(void *ctx);
    /* HTTP through the host: request/response JSON. Free `out` with free_buf. */
    CohortStatus (*http)(void *ctx, CohortBytes request_json, CohortBuf *out);
    void (*free_buf)(void *ctx, CohortBuf buf);
    /* 1.2 (only when `size` covers it): the instance's durable state; request JSON
     * {"op":"get"|"put"|"delete","key","value"?}; get answers the value JSON or
     * COHORT_STATUS_NOT_FOUND. Free `out` with free_buf. */
    CohortStatus (*state)(void *ctx, CohortBytes request_json, CohortBuf *out);
} CohortHostVtable;

/* What a plugin exports. */
typedef struct CohortPluginVtable {
    uint32_t abi_major;
    uint32_t abi_minor;
    size_t size;
    /* Writes the manifest JSON to `out`. */
    CohortStatus (*manifest)(CohortBuf *out);
    /* Opens an instance with a (schema-validated) JSON config; on error writes JSON to `out`. */
    CohortStatus (*open)(const CohortHostVtable *host, CohortBytes config_json, void **instance,
                         CohortBuf *out);
    /* Source: page request JSON in, page JSON out. NULL when not a source. */
    CohortStatus (*next_page)(void *instance, CohortBytes request_json, CohortBuf *out);
    /* Destination: batch JSON in, push result JSON out. NULL when not a destination. */
    CohortStatus (*push)(void *instance, CohortBytes batch_json, CohortBuf *out);
    /* Releases an instance; called once per successful open. */
    void (*close)(void *instance);
    /* Frees a buffer the plugin returned. */
    void (*free_buf)(CohortBuf buf);
    /* 1.2, destination, may be NULL: after a campaign's last batch, push result JSON of outcomes
     * learnt late. */
    CohortStatus (*finish)(void *instance, CohortBuf *out);
    /* 1.3, destination, may be NULL: suppressions request JSON {"cursor"} in, suppressions page
     * JSON {"suppressions": [{"email", "reason", "detail"?}], "next_cursor", "done"} out: the
     * addresses the vendor will not email (unsubscribed, bounced, complained). Called before a
     * run pushes, when the manifest declares `capabilities.suppressions`. */
    CohortStatus (*suppressions)(void *instance, CohortBytes request_json, CohortBuf *out);
} CohortPluginVtable;

/* The one exported symbol. Return NULL to refuse the host. */
typedef const CohortPluginVtable *(*CohortPluginEntry)(uint32_t host_abi_major,
                                                        uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* COHORT_PLUGIN_H */
