//! The `extern "C"` entry points that [`export_plugin!`](crate::export_plugin) instantiates.
//!
//! Each one validates what the host handed it, runs the plugin's safe code inside
//! `catch_unwind`, and turns every outcome into a status and a JSON buffer. A panic never
//! unwinds into the host: it becomes [`STATUS_PANICKED`], and the instance is poisoned so that a
//! half-updated plugin is never called again (only closed).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use serde_json::Value;

use super::{Destination, Host, PageEnd, PageWriter, Plugin, PluginError, Source};
use crate::abi::{
    self, Buf, Bytes, HostVtable, PluginVtable, STATUS_ERROR, STATUS_OK, STATUS_PANICKED,
    STATUS_RETRY, Status,
};
use crate::wire::{
    Batch, ConfigIssue, ErrorBody, Kind, PageFormat, PageRequest, PushResult, SuppressionsRequest,
};

/// Source entry point type, as stored in the vtable.
pub type NextPageFn = unsafe extern "C" fn(*mut c_void, Bytes, *mut Buf) -> Status;
/// Destination entry point type, as stored in the vtable.
pub type PushFn = unsafe extern "C" fn(*mut c_void, Bytes, *mut Buf) -> Status;
/// Destination end-of-run entry point type (ABI 1.2), as stored in the vtable.
pub type FinishFn = unsafe extern "C" fn(*mut c_void, *mut Buf) -> Status;
/// Destination suppressions entry point type (ABI 1.3), as stored in the vtable.
pub type SuppressionsFn = unsafe extern "C" fn(*mut c_void, Bytes, *mut Buf) -> Status;

/// Builds the vtable for `T` (used by `export_plugin!` in a `static`).
pub const fn vtable<T: Plugin>(
    next_page: Option<NextPageFn>,
    push: Option<PushFn>,
    finish: Option<FinishFn>,
    suppressions: Option<SuppressionsFn>,
) -> PluginVtable {
    PluginVtable {
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        size: std::mem::size_of::<PluginVtable>(),
        manifest: manifest::<T>,
        open: open::<T>,
        next_page,
        push,
        close: close::<T>,
        free_buf,
        finish,
        suppressions,
    }
}

/// The source entry point for `T`.
pub const fn next_page_fn<T: Source>() -> Option<NextPageFn> {
    Some(next_page::<T>)
}

/// The destination entry point for `T`.
pub const fn push_fn<T: Destination>() -> Option<PushFn> {
    Some(push::<T>)
}

/// The destination end-of-run entry point for `T` (ABI 1.2).
pub const fn finish_fn<T: Destination>() -> Option<FinishFn> {
    Some(finish::<T>)
}

/// The destination suppressions entry point for `T` (ABI 1.3).
pub const fn suppressions_fn<T: Destination>() -> Option<SuppressionsFn> {
    Some(suppressions::<T>)
}

/// The ABI minor version of the host that loaded this plugin; `u32::MAX` until a host says
/// (unit tests that never cross the ABI get every feature).
static HOST_MINOR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// The ABI minor version of the host, as it said when it loaded the plugin.
pub(crate) fn host_minor() -> u32 {
    HOST_MINOR.load(std::sync::atomic::Ordering::Relaxed)
}

/// Called by the exported entry symbol: records the host's version and installs the panic hook
/// that captures panic messages.
pub fn entered(_host_major: u32, host_minor: u32) {
    HOST_MINOR.store(host_minor, std::sync::atomic::Ordering::Relaxed);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CALL.get() {
                // Inside a plugin call the host reports the panic; printing it here as well
                // would put a second, unattributed copy on the host's stderr.
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
                LAST_PANIC.with(|p| *p.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

thread_local! {
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

struct Instance<T> {
    plugin: T,
    /// Set once a call panicked: the plugin's state may be half-updated.
    poisoned: Option<String>,
}

enum Failure {
    Error(PluginError),
    Panic(String),
}

/// Runs `f`, catching panics and remembering where they happened.
fn guarded<R>(f: impl FnOnce() -> Result<R, PluginError>) -> Result<R, Failure> {
    let was = IN_CALL.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_CALL.set(was);
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(payload) => {
            let location = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            Err(Failure::Panic(format!(
                "plugin panicked{location}: {}",
                panic_message(&*payload)
            )))
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not text)".to_owned()
    }
}

/// Writes `bytes` to `out` (if the host gave a place).
///
/// # Safety
/// `out` must be null or valid for a write of a `Buf`.
unsafe fn write_out(out: *mut Buf, bytes: Vec<u8>) {
    // SAFETY: the caller guarantees `out` is null or writable.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = Buf::from_vec(bytes);
    }
}

/// Turns a failure into a status and its error JSON in `out`.
///
/// # Safety
/// `out` must be null or valid for a write of a `Buf`.
unsafe fn fail(out: *mut Buf, failure: Failure) -> Status {
    let (status, body) = match failure {
        Failure::Panic(message) => (
            STATUS_PANICKED,
            ErrorBody {
                message,
                ..ErrorBody::default()
            },
        ),
        Failure::Error(e @ PluginError::Retry { .. }) => (STATUS_RETRY, e.to_body()),
        Failure::Error(e) => (STATUS_ERROR, e.to_body()),
    };
    let bytes = serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"message\":\"unencodable error\"}".to_vec());
    // SAFETY: forwarded contract.
    unsafe { write_out(out, bytes) };
    status
}

/// # Safety
/// Called by the host per the ABI: `out` is valid for a write.
unsafe extern "C" fn manifest<T: Plugin>(out: *mut Buf) -> Status {
    let result = guarded(|| {
        let mut manifest = T::manifest();
        // Every page of an SDK source goes through `PageWriter`, which writes both formats.
        let formats = &mut manifest.capabilities.page_formats;
        if manifest.kinds.contains(&Kind::Source) && !formats.contains(&PageFormat::Binary) {
            formats.push(PageFormat::Binary);
        }
        serde_json::to_vec(&manifest)
            .map_err(|e| PluginError::failed(format!("encoding the manifest: {e}")))
    });
    match result {
        // SAFETY: per the ABI `out` is writable.
        Ok(bytes) => unsafe {
            write_out(out, bytes);
            STATUS_OK
        },
        // SAFETY: per the ABI `out` is writable.
        Err(f) => unsafe { fail(out, f) },
    }
}

fn parse_config<C: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<C, PluginError> {
    let value: Value = if bytes.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| PluginError::config("", format!("not valid JSON: {e}")))?
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            path.split('.')
                .map(|seg| format!("/{}", seg.trim_start_matches('[').trim_end_matches(']')))
                .collect()
        };
        PluginError::Config(vec![ConfigIssue {
            path: pointer,
            message: e.into_inner().to_string(),
        }])
    })
}

/// # Safety
/// Called by the host per the ABI: `host` valid until `close`, `config` readable for the call,
/// `instance` and `out` writable.
unsafe extern "C" fn open<T: Plugin>(
    host: *const HostVtable,
    config: Bytes,
    instance: *mut *mut c_void,
    out: *mut Buf,
) -> Status {
    // SAFETY: per the ABI, `config` points to `len` readable bytes during this call.
    let config = unsafe { config.as_slice() };
    // SAFETY: per the ABI the host vtable stays valid until `close` returns, and the plugin value
    // holding this Host is dropped in `close`.
    let host = unsafe { Host::from_raw(host) };
    let result = guarded(|| {
        let config = parse_config::<T::Config>(config)?;
        T::open(config, host)
    });
    match result {
        Ok(plugin) => {
            let boxed = Box::new(Instance {
                plugin,
                poisoned: None,
            });
            // SAFETY: per the ABI `instance` is writable.
            match unsafe { instance.as_mut() } {
                Some(slot) => {
                    *slot = Box::into_raw(boxed).cast();
                    STATUS_OK
                }
                // SAFETY: `out` is writable per the ABI.
                None => unsafe {
                    fail(
                        out,
                        Failure::Error(PluginError::failed("host passed no instance slot")),
                    )
                },
            }
        }
        // SAFETY: `out` is writable per the ABI.
        Err(f) => unsafe { fail(out, f) },
    }
}

/// Runs `f` on a live, unpoisoned instance, poisoning it if `f` panics.
///
/// # Safety
/// `instance` must be null or come from `open::<T>` and not be closed; `out` writable.
unsafe fn with_instance<T: Plugin>(
    instance: *mut c_void,
    out: *mut Buf,
    f: impl FnOnce(&mut T) -> Result<Vec<u8>, PluginError>,
) -> Status {
    // SAFETY: per the contract the pointer is null or a live `Instance<T>` that the host never
    // uses from two threads at once.
    let Some(inst) = (unsafe { instance.cast::<Instance<T>>().as_mut() }) else {
        // SAFETY: `out` is writable.
        return unsafe {
            fail(
                out,
                Failure::Error(PluginError::failed("host passed a null instance")),
            )
        };
    };
    if let Some(first) = &inst.poisoned {
        let e = PluginError::failed(format!(
            "this instance panicked earlier and cannot be used again ({first})"
        ));
        // SAFETY: `out` is writable.
        return unsafe { fail(out, Failure::Error(e)) };
    }
    match guarded(|| f(&mut inst.plugin)) {
        Ok(bytes) => {
            // SAFETY: `out` is writable.
            unsafe { write_out(out, bytes) };
            STATUS_OK
        }
        Err(failure) => {
            if let Failure::Panic(message) = &failure {
                inst.poisoned = Some(message.clone());
            }
            // SAFETY: `out` is writable.
            unsafe { fail(out, failure) }
        }
    }
}

/// # Safety
/// Called by the host per the ABI.
unsafe extern "C" fn next_page<T: Source>(
    instance: *mut c_void,
    request: Bytes,
    out: *mut Buf,
) -> Status {
    // SAFETY: per the ABI, `request` is readable during this call.
    let request = unsafe { request.as_slice() };
    // SAFETY: forwarded ABI contract.
    unsafe {
        with_instance::<T>(instance, out, |plugin| {
            let request: PageRequest = serde_json::from_slice(request).map_err(|e| {
                PluginError::failed(format!("the host sent an unreadable page request: {e}"))
            })?;
            let cursor = match request.cursor {
                Value::Null => None,
                c => Some(serde_json::from_value::<T::Cursor>(c).map_err(|e| {
                    PluginError::BadCursor(format!("{e} (was it saved by another plugin version?)"))
                })?),
            };
            let mut page =
                PageWriter::with_format(request.stream, request.max_records, request.format);
            let end: PageEnd<T::Cursor> = plugin.next_page(request.stream, cursor, &mut page)?;
            page.finish(&end)
        })
    }
}

/// # Safety
/// Called by the host per the ABI.
unsafe extern "C" fn push<T: Destination>(
    instance: *mut c_void,
    batch: Bytes,
    out: *mut Buf,
) -> Status {
    // SAFETY: per the ABI, `batch` is readable during this call.
    let batch = unsafe { batch.as_slice() };
    // SAFETY: forwarded ABI contract.
    unsafe {
        with_instance::<T>(instance, out, |plugin| {
            let batch: Batch = serde_json::from_slice(batch).map_err(|e| {
                PluginError::failed(format!("the host sent an unreadable batch: {e}"))
            })?;
            let result = plugin.push(batch)?;
            serde_json::to_vec(&result)
                .map_err(|e| PluginError::failed(format!("encoding the push result: {e}")))
        })
    }
}

/// # Safety
/// Called by the host per the ABI (1.2): after a campaign's last batch.
unsafe extern "C" fn finish<T: Destination>(instance: *mut c_void, out: *mut Buf) -> Status {
    // SAFETY: forwarded ABI contract.
    unsafe {
        with_instance::<T>(instance, out, |plugin| {
            let outcomes = plugin.finish()?;
            serde_json::to_vec(&PushResult { outcomes })
                .map_err(|e| PluginError::failed(format!("encoding late outcomes: {e}")))
        })
    }
}

/// # Safety
/// Called by the host per the ABI (1.3): before a run pushes.
unsafe extern "C" fn suppressions<T: Destination>(
    instance: *mut c_void,
    request: Bytes,
    out: *mut Buf,
) -> Status {
    // SAFETY: per the ABI, `request` is readable during this call.
    let request = unsafe { request.as_slice() };
    // SAFETY: forwarded ABI contract.
    unsafe {
        with_instance::<T>(instance, out, |plugin| {
            let request: SuppressionsRequest = if request.is_empty() {
                SuppressionsRequest::default()
            } else {
                serde_json::from_slice(request).map_err(|e| {
                    PluginError::failed(format!(
                        "the host sent an unreadable suppressions request: {e}"
                    ))
                })?
            };
            let page = plugin.suppressions(request.cursor)?;
            serde_json::to_vec(&page)
                .map_err(|e| PluginError::failed(format!("encoding suppressions: {e}")))
        })
    }
}

/// # Safety
/// Called by the host per the ABI: once per successful `open`.
unsafe extern "C" fn close<T: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: per the ABI, `instance` came from `open::<T>` and is closed exactly once.
    let boxed = unsafe { Box::from_raw(instance.cast::<Instance<T>>()) };
    // A panicking Drop must not unwind into the host either; its message has nowhere to go.
    let _ = guarded(move || {
        drop(boxed);
        Ok(())
    });
}

/// # Safety
/// Called by the host per the ABI with a buffer this plugin returned, once.
unsafe extern "C" fn free_buf(buf: Buf) {
    // SAFETY: the buffer came from `Buf::from_vec` in this plugin and is freed once.
    super::page::recycle(unsafe { buf.into_vec() });
}
