//! Keeps `include/cohort_plugin.h` in step with `src/abi.rs`: compiles a C program against the
//! header that prints every size, offset and constant, and compares them with the Rust side.
#![allow(clippy::unwrap_used)]

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use cohort_plugin_api::abi::*;
use cohort_plugin_api::wire::{Stream, binary};

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include "cohort_plugin.h"
#define F(T, m) printf(#T "." #m "=%zu\n", offsetof(T, m))
#define S(T) printf(#T "=%zu\n", sizeof(T))
#define C(c) printf(#c "=%lld\n", (long long)(c))
int main(void) {
    S(CohortBytes); F(CohortBytes, ptr); F(CohortBytes, len);
    S(CohortBuf); F(CohortBuf, ptr); F(CohortBuf, len); F(CohortBuf, cap);
    S(CohortHostVtable); F(CohortHostVtable, abi_major); F(CohortHostVtable, abi_minor);
    F(CohortHostVtable, size); F(CohortHostVtable, ctx); F(CohortHostVtable, log);
    F(CohortHostVtable, progress); F(CohortHostVtable, is_cancelled); F(CohortHostVtable, http);
    F(CohortHostVtable, free_buf); F(CohortHostVtable, state);
    S(CohortPluginVtable); F(CohortPluginVtable, abi_major); F(CohortPluginVtable, abi_minor);
    F(CohortPluginVtable, size); F(CohortPluginVtable, manifest); F(CohortPluginVtable, open);
    F(CohortPluginVtable, next_page); F(CohortPluginVtable, push); F(CohortPluginVtable, close);
    F(CohortPluginVtable, free_buf); F(CohortPluginVtable, finish);
    F(CohortPluginVtable, suppressions);
    C(COHORT_ABI_MAJOR); C(COHORT_ABI_MINOR);
    C(COHORT_STATUS_OK); C(COHORT_STATUS_ERROR); C(COHORT_STATUS_RETRY); C(COHORT_STATUS_PANICKED);
    C(COHORT_STATUS_NOT_FOUND);
    C(COHORT_LOG_ERROR); C(COHORT_LOG_WARN); C(COHORT_LOG_INFO); C(COHORT_LOG_DEBUG); C(COHORT_LOG_TRACE);
    printf("COHORT_PLUGIN_ENTRY_SYMBOL=%s\n", COHORT_PLUGIN_ENTRY_SYMBOL);
    {
        const char magic[] = COHORT_BINARY_PAGE_MAGIC;
        printf("COHORT_BINARY_PAGE_MAGIC=%d,%d,%d,%d,%zu\n", magic[0], magic[1], magic[2], magic[3],
               sizeof magic - 1);
    }
    C(COHORT_BINARY_PAGE_VERSION); C(COHORT_BINARY_PAGE_HEADER_LEN); C(COHORT_BINARY_PAGE_DONE);
    C(COHORT_BINARY_PAGE_EXTRAS);
    C(COHORT_STREAM_CUSTOMERS); C(COHORT_STREAM_ORDERS); C(COHORT_STREAM_EVENTS);
    return 0;
}
"#;

fn rust_side() -> Vec<String> {
    macro_rules! f {
        ($c:literal, $t:ty, $m:ident) => {
            format!("{}.{}={}", $c, stringify!($m), offset_of!($t, $m))
        };
    }
    let entry = std::str::from_utf8(ENTRY_SYMBOL)
        .unwrap()
        .trim_end_matches('\0');
    vec![
        format!("CohortBytes={}", size_of::<Bytes>()),
        f!("CohortBytes", Bytes, ptr),
        f!("CohortBytes", Bytes, len),
        format!("CohortBuf={}", size_of::<Buf>()),
        f!("CohortBuf", Buf, ptr),
        f!("CohortBuf", Buf, len),
        f!("CohortBuf", Buf, cap),
        format!("CohortHostVtable={}", size_of::<HostVtable>()),
        f!("CohortHostVtable", HostVtable, abi_major),
        f!("CohortHostVtable", HostVtable, abi_minor),
        f!("CohortHostVtable", HostVtable, size),
        f!("CohortHostVtable", HostVtable, ctx),
        f!("CohortHostVtable", HostVtable, log),
        f!("CohortHostVtable", HostVtable, progress),
        f!("CohortHostVtable", HostVtable, is_cancelled),
        f!("CohortHostVtable", HostVtable, http),
        f!("CohortHostVtable", HostVtable, free_buf),
        f!("CohortHostVtable", HostVtable, state),
        format!("CohortPluginVtable={}", size_of::<PluginVtable>()),
        f!("CohortPluginVtable", PluginVtable, abi_major),
        f!("CohortPluginVtable", PluginVtable, abi_minor),
        f!("CohortPluginVtable", PluginVtable, size),
        f!("CohortPluginVtable", PluginVtable, manifest),
        f!("CohortPluginVtable", PluginVtable, open),
        f!("CohortPluginVtable", PluginVtable, next_page),
        f!("CohortPluginVtable", PluginVtable, push),
        f!("CohortPluginVtable", PluginVtable, close),
        f!("CohortPluginVtable", PluginVtable, free_buf),
        f!("CohortPluginVtable", PluginVtable, finish),
        f!("CohortPluginVtable", PluginVtable, suppressions),
        format!("COHORT_ABI_MAJOR={ABI_MAJOR}"),
        format!("COHORT_ABI_MINOR={ABI_MINOR}"),
        format!("COHORT_STATUS_OK={STATUS_OK}"),
        format!("COHORT_STATUS_ERROR={STATUS_ERROR}"),
        format!("COHORT_STATUS_RETRY={STATUS_RETRY}"),
        format!("COHORT_STATUS_PANICKED={STATUS_PANICKED}"),
        format!("COHORT_STATUS_NOT_FOUND={STATUS_NOT_FOUND}"),
        format!("COHORT_LOG_ERROR={LOG_ERROR}"),
        format!("COHORT_LOG_WARN={LOG_WARN}"),
        format!("COHORT_LOG_INFO={LOG_INFO}"),
        format!("COHORT_LOG_DEBUG={LOG_DEBUG}"),
        format!("COHORT_LOG_TRACE={LOG_TRACE}"),
        format!("COHORT_PLUGIN_ENTRY_SYMBOL={entry}"),
        format!(
            "COHORT_BINARY_PAGE_MAGIC={},{}",
            binary::MAGIC.map(|b| b.to_string()).join(","),
            binary::MAGIC.len()
        ),
        format!("COHORT_BINARY_PAGE_VERSION={}", binary::VERSION),
        format!("COHORT_BINARY_PAGE_HEADER_LEN={}", binary::HEADER_LEN),
        format!("COHORT_BINARY_PAGE_DONE={}", binary::FLAG_DONE),
        format!("COHORT_BINARY_PAGE_EXTRAS={}", binary::FLAG_EXTRAS),
        format!(
            "COHORT_STREAM_CUSTOMERS={}",
            binary::stream_code(Stream::Customers)
        ),
        format!(
            "COHORT_STREAM_ORDERS={}",
            binary::stream_code(Stream::Orders)
        ),
        format!(
            "COHORT_STREAM_EVENTS={}",
            binary::stream_code(Stream::Events)
        ),
    ]
}

#[test]
fn c_header_declares_the_same_layout_and_constants_as_the_rust_abi() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("probe.c");
    let exe = dir.path().join("probe");
    std::fs::write(&src, PROBE).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}`: {e}"));
    assert!(status.success(), "the header does not compile");
    let output = Command::new(&exe).output().unwrap();
    let c_side: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(c_side, rust_side());
}
