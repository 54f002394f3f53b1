//! The raw C ABI, version 1: exactly what `include/cohort_plugin.h` declares.
//!
//! Everything here is `#[repr(C)]` and made only of integers, pointers and function pointers, so
//! any language with a C FFI can implement either side. Data never crosses as Rust types: it
//! crosses as bytes of JSON (see [`crate::wire`]), in two kinds of buffer:
//!
//! - [`Bytes`] is *borrowed*: valid only for the duration of the call it is passed to, and never
//!   freed by the receiver.
//! - [`Buf`] is *owned* by the side that allocated it, and only that side frees it: a buffer a
//!   plugin returns is released with the plugin's [`PluginVtable::free_buf`], a buffer the host
//!   returns with the host's [`HostVtable::free_buf`]. `cap` is private to the allocator (Rust
//!   stores a `Vec`'s capacity there; a C plugin may store anything or nothing).
//!
//! # Versioning
//!
//! Both vtables start with the same frozen header: `abi_major`, `abi_minor`, `size`. That header
//! never changes, in any major version, so a host can always read a plugin's version and refuse
//! it with a clear message. Within a major version the vtables are append-only: a minor version
//! may add function pointers at the end, and `size` (the `sizeof` the author compiled against)
//! tells the reader which ones exist. See `docs/plugins.md` for the full policy.

use std::ffi::c_void;

/// Major version of the ABI: a plugin of another major version is refused.
pub const ABI_MAJOR: u32 = 1;
/// Minor version of the ABI: additions that older peers can ignore.
///
/// - 1.0: the vtables, JSON messages.
/// - 1.1: pages may be written in the [binary page format](crate::wire::binary), when the
///   manifest declares it (`capabilities.page_formats`) and the host asks for it
///   (`PageRequest.format`). No vtable change.
/// - 1.2: the host vtable gains [`HostVtable::state`] (durable key-value state per instance's
///   config entry); the plugin vtable gains [`PluginVtable::finish`] (outcomes learnt late);
///   pages may name deleted records and full passes; batches may carry a replace session.
/// - 1.3: the plugin vtable gains [`PluginVtable::suppressions`]: a destination whose manifest
///   declares `capabilities.suppressions` reports the addresses its vendor will not email, read
///   into Cohort's suppression list before a run pushes.
/// - 1.4: [`HttpRequest::connections`](crate::wire::HttpRequest::connections): the host caps
///   an account's requests in flight, for vendors that limit simultaneous connections. No
///   vtable change.
pub const ABI_MINOR: u32 = 4;

/// The status [`HostVtable::state`] answers for a key that holds nothing (`out` empty).
pub const STATUS_NOT_FOUND: Status = 4;

/// The one symbol a plugin exports, NUL-terminated, of type [`EntryFn`].
pub const ENTRY_SYMBOL: &[u8] = b"cohort_plugin_entry\0";

/// `const CohortPluginVtable *cohort_plugin_entry(uint32_t host_major, uint32_t host_minor)`.
///
/// The host passes its own version (a plugin may use it to avoid newer host services an older
/// host lacks); the plugin returns a pointer to a vtable that lives as long as the library stays
/// loaded, or null if it cannot work with that host at all.
pub type EntryFn = unsafe extern "C" fn(host_major: u32, host_minor: u32) -> *const PluginVtable;

/// The status every fallible call returns. The `out` buffer's JSON depends on it.
pub type Status = i32;
/// Success: `out` holds the call's result (or is empty when the call has none).
pub const STATUS_OK: Status = 0;
/// Failure the caller cannot fix by waiting: `out` holds an [`ErrorBody`](crate::wire::ErrorBody).
pub const STATUS_ERROR: Status = 1;
/// Transient failure: `out` holds an [`ErrorBody`](crate::wire::ErrorBody), usually with
/// `retry_after_ms`.
pub const STATUS_RETRY: Status = 2;
/// The plugin panicked (or threw); the panic was caught at the boundary. `out` holds an
/// [`ErrorBody`](crate::wire::ErrorBody) with the panic message. The instance must not be used
/// again except to close it.
pub const STATUS_PANICKED: Status = 3;

/// Log levels of [`HostVtable::log`], most severe first.
pub const LOG_ERROR: i32 = 1;
/// Warning.
pub const LOG_WARN: i32 = 2;
/// Information.
pub const LOG_INFO: i32 = 3;
/// Debugging detail.
pub const LOG_DEBUG: i32 = 4;
/// Tracing detail.
pub const LOG_TRACE: i32 = 5;

/// A borrowed byte slice, valid only during the call it is passed to.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    /// First byte; may be null when `len` is 0.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Bytes {
    /// The empty slice.
    pub const EMPTY: Bytes = Bytes {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows a Rust slice for the duration of a call.
    pub fn from_slice(bytes: &[u8]) -> Bytes {
        Bytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// Views the bytes as a slice.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a` (or
    /// `len` must be 0).
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees `ptr` points to `len` readable bytes for `'a`.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// An owned byte buffer, freed only by the side that allocated it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Buf {
    /// First byte; null for the empty buffer, which needs no freeing.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Private to the allocator (Rust: the `Vec` capacity).
    pub cap: usize,
}

impl Buf {
    /// The empty buffer: nothing to free.
    pub const EMPTY: Buf = Buf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Hands a `Vec` across; release it with [`Buf::into_vec`] on the same side.
    pub fn from_vec(bytes: Vec<u8>) -> Buf {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Buf {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }

    /// Takes back a buffer made by [`Buf::from_vec`].
    ///
    /// # Safety
    /// `self` must come from [`Buf::from_vec`] in this same binary (same allocator) and must not
    /// have been freed already, or be [`Buf::EMPTY`].
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: per the contract, ptr/len/cap are exactly a leaked Vec<u8> of this binary.
            unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
        }
    }

    /// Views the bytes without taking ownership.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a` (or be null).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        // SAFETY: forwarded contract.
        unsafe {
            Bytes {
                ptr: self.ptr,
                len: self.len,
            }
            .as_slice()
        }
    }
}

/// Services the host offers a plugin instance, handed to `open` and valid until `close` returns.
///
/// Every function may be called from whichever thread is currently calling into the plugin; the
/// host implements them thread-safely. Every function takes `ctx` as its first argument.
#[repr(C)]
#[derive(Debug)]
pub struct HostVtable {
    /// Frozen header: the host's ABI major version.
    pub abi_major: u32,
    /// Frozen header: the host's ABI minor version.
    pub abi_minor: u32,
    /// Frozen header: `sizeof(CohortHostVtable)` as the host knows it.
    pub size: usize,
    /// Opaque host state; pass it back to every function below.
    pub ctx: *mut c_void,
    /// Writes a log line into the host's logs. `level` is one of the `LOG_*` constants, `message`
    /// is UTF-8 text, `fields_json` an optional JSON object of structured fields (or empty).
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: i32, message: Bytes, fields_json: Bytes),
    /// Reports progress of the current call: `done` units out of `total` (0 = unknown).
    pub progress: unsafe extern "C" fn(ctx: *mut c_void, done: u64, total: u64),
    /// Returns 1 when the host wants the current work to stop as soon as possible, else 0.
    pub is_cancelled: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
    /// Performs an HTTP request ([`HttpRequest`](crate::wire::HttpRequest) JSON) with the host's
    /// timeouts, retries, rate limits and redaction. On [`STATUS_OK`], `out` holds an
    /// [`HttpResponse`](crate::wire::HttpResponse) (any HTTP status); otherwise an
    /// [`ErrorBody`](crate::wire::ErrorBody). Free `out` with `free_buf`.
    pub http: unsafe extern "C" fn(ctx: *mut c_void, request_json: Bytes, out: *mut Buf) -> Status,
    /// Frees a buffer the host allocated.
    pub free_buf: unsafe extern "C" fn(ctx: *mut c_void, buf: Buf),
    /// ABI 1.2: reads or writes the instance's durable state, a [`StateRequest`]
    /// (crate::wire::StateRequest) JSON. A read answers [`STATUS_OK`] with the value's JSON in
    /// `out`, or [`STATUS_NOT_FOUND`]; a write answers [`STATUS_OK`] once the value is stored
    /// for good. Present only when `size` covers it (hosts of 1.2 and later).
    pub state: unsafe extern "C" fn(ctx: *mut c_void, request_json: Bytes, out: *mut Buf) -> Status,
}

/// What a plugin exports: its version header and its entry points.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVtable {
    /// Frozen header: the plugin's ABI major version.
    pub abi_major: u32,
    /// Frozen header: the plugin's ABI minor version.
    pub abi_minor: u32,
    /// Frozen header: `sizeof(CohortPluginVtable)` as the plugin knows it.
    pub size: usize,
    /// Writes the [`Manifest`](crate::wire::Manifest) JSON to `out`.
    pub manifest: unsafe extern "C" fn(out: *mut Buf) -> Status,
    /// Opens an instance with a config (JSON object already validated against the manifest's
    /// schema). On success stores the instance in `*instance`; on failure writes an error to
    /// `out`. `host` stays valid until `close` returns.
    pub open: unsafe extern "C" fn(
        host: *const HostVtable,
        config_json: Bytes,
        instance: *mut *mut c_void,
        out: *mut Buf,
    ) -> Status,
    /// Source: answers a [`PageRequest`](crate::wire::PageRequest) with a
    /// [`Page`](crate::wire::Page). Null for a plugin that is not a source.
    pub next_page: Option<
        unsafe extern "C" fn(instance: *mut c_void, request_json: Bytes, out: *mut Buf) -> Status,
    >,
    /// Destination: answers a [`Batch`](crate::wire::Batch) with a
    /// [`PushResult`](crate::wire::PushResult). Null for a plugin that is not a destination.
    pub push: Option<
        unsafe extern "C" fn(instance: *mut c_void, batch_json: Bytes, out: *mut Buf) -> Status,
    >,
    /// Releases an instance. Called exactly once per successful `open`, never concurrently with
    /// another call on the same instance.
    pub close: unsafe extern "C" fn(instance: *mut c_void),
    /// Frees a buffer the plugin allocated.
    pub free_buf: unsafe extern "C" fn(buf: Buf),
    /// ABI 1.2, destination: called once after the last batch of a campaign's run, answers a
    /// [`PushResult`](crate::wire::PushResult) JSON of outcomes learnt late (an asynchronous job
    /// finished, a request's status came back) for keys pushed in this run or earlier ones.
    /// Null when the plugin has none; present only when `size` covers it.
    pub finish: Option<unsafe extern "C" fn(instance: *mut c_void, out: *mut Buf) -> Status>,
    /// ABI 1.3, destination: answers a [`SuppressionsRequest`](crate::wire::SuppressionsRequest)
    /// with a [`SuppressionsPage`](crate::wire::SuppressionsPage): the addresses the vendor has
    /// unsubscribed, cleaned or seen complain since the request's cursor. Called before a run
    /// pushes, only when the manifest declares `capabilities.suppressions`. Null when the
    /// plugin has none; present only when `size` covers it.
    pub suppressions: Option<
        unsafe extern "C" fn(instance: *mut c_void, request_json: Bytes, out: *mut Buf) -> Status,
    >,
}

/// Size of the frozen header (`abi_major`, `abi_minor`, `size`) shared by every version.
pub const HEADER_SIZE: usize = std::mem::offset_of!(PluginVtable, manifest);

/// Size of the v1.0 plugin vtable: the least a v1 plugin may declare.
pub const PLUGIN_VTABLE_V1_0_SIZE: usize = std::mem::offset_of!(PluginVtable, finish);

/// Size of the v1.2 plugin vtable: a plugin declaring less has no `finish`.
pub const PLUGIN_VTABLE_V1_2_SIZE: usize = std::mem::offset_of!(PluginVtable, suppressions);

/// Size of the v1.3 plugin vtable: a plugin declaring less has no `suppressions`.
pub const PLUGIN_VTABLE_V1_3_SIZE: usize = std::mem::size_of::<PluginVtable>();

/// Size of the v1.0 host vtable.
pub const HOST_VTABLE_V1_0_SIZE: usize = std::mem::offset_of!(HostVtable, state);

/// Size of the v1.2 host vtable: a host declaring less offers no `state`.
pub const HOST_VTABLE_V1_2_SIZE: usize = std::mem::size_of::<HostVtable>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_the_same_in_both_vtables() {
        assert_eq!(std::mem::offset_of!(PluginVtable, abi_major), 0);
        assert_eq!(std::mem::offset_of!(PluginVtable, abi_minor), 4);
        assert_eq!(std::mem::offset_of!(PluginVtable, size), 8);
        assert_eq!(std::mem::offset_of!(HostVtable, abi_major), 0);
        assert_eq!(std::mem::offset_of!(HostVtable, abi_minor), 4);
        assert_eq!(std::mem::offset_of!(HostVtable, size), 8);
    }

    #[test]
    fn buffers_round_trip_through_raw_parts() {
        let buf = Buf::from_vec(b"hello".to_vec());
        // SAFETY: buf was made by from_vec just above and is freed once.
        let back = unsafe { buf.into_vec() };
        assert_eq!(back, b"hello");
        // SAFETY: the empty buffer needs no allocation.
        assert!(unsafe { Buf::EMPTY.into_vec() }.is_empty());
    }
}
