//! The plugin's handle on the host's services.

use std::time::Duration;

use serde_json::Value;

use super::PluginError;
use crate::abi::{self, Buf, Bytes, HostVtable};
use crate::wire::{ErrorBody, ErrorKind, HttpRequest, HttpResponse, StateRequest};

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Something a person running Cohort wants to know.
    Info,
    /// Detail for debugging.
    Debug,
    /// Even more detail.
    Trace,
}

impl Level {
    /// The ABI's number for this level.
    pub fn to_raw(self) -> i32 {
        match self {
            Level::Error => abi::LOG_ERROR,
            Level::Warn => abi::LOG_WARN,
            Level::Info => abi::LOG_INFO,
            Level::Debug => abi::LOG_DEBUG,
            Level::Trace => abi::LOG_TRACE,
        }
    }

    /// The level for an ABI number (unknown numbers read as `Trace`).
    pub fn from_raw(raw: i32) -> Level {
        match raw {
            abi::LOG_ERROR => Level::Error,
            abi::LOG_WARN => Level::Warn,
            abi::LOG_INFO => Level::Info,
            abi::LOG_DEBUG => Level::Debug,
            _ => Level::Trace,
        }
    }
}

/// The host's services: logging, progress, cancellation and HTTP.
///
/// Valid from `open` until the instance is closed, which is exactly the life of the plugin value
/// the SDK hands it to. [`Host::detached`] makes one with no host behind it, for unit tests.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    vtable: Option<HostFns>,
}

/// The host's functions, copied out of its vtable when the instance opened: only the fields
/// the host's `size` covers are read, so a plugin built against a newer ABI never reads past
/// an older host's table.
#[derive(Debug, Clone, Copy)]
struct HostFns {
    ctx: *mut std::ffi::c_void,
    log: unsafe extern "C" fn(*mut std::ffi::c_void, i32, Bytes, Bytes),
    progress: unsafe extern "C" fn(*mut std::ffi::c_void, u64, u64),
    is_cancelled: unsafe extern "C" fn(*mut std::ffi::c_void) -> i32,
    http: unsafe extern "C" fn(*mut std::ffi::c_void, Bytes, *mut Buf) -> abi::Status,
    free_buf: unsafe extern "C" fn(*mut std::ffi::c_void, Buf),
    /// ABI 1.2; `None` on older hosts.
    state: Option<unsafe extern "C" fn(*mut std::ffi::c_void, Bytes, *mut Buf) -> abi::Status>,
}

// SAFETY: the ABI requires the host's services to be callable from any thread that calls into
// the plugin (the host implements them thread-safely), and the vtable is immutable while open.
unsafe impl Send for Host {}
// SAFETY: as above; the vtable is only read.
unsafe impl Sync for Host {}

impl Host {
    /// Wraps the host vtable handed to `open`.
    ///
    /// # Safety
    /// `vtable` must be null or point to a valid host vtable that outlives every use of the
    /// returned `Host` (the ABI guarantees it until `close` returns).
    pub(crate) unsafe fn from_raw(vtable: *const HostVtable) -> Host {
        if vtable.is_null() {
            return Host { vtable: None };
        }
        // SAFETY: per the contract the pointer is valid; the frozen header (with `size`) is in
        // every version, and each field below is read only when `size` says the host has it.
        let fns = unsafe {
            let size = std::ptr::addr_of!((*vtable).size).read();
            (size >= abi::HOST_VTABLE_V1_0_SIZE).then(|| HostFns {
                ctx: std::ptr::addr_of!((*vtable).ctx).read(),
                log: std::ptr::addr_of!((*vtable).log).read(),
                progress: std::ptr::addr_of!((*vtable).progress).read(),
                is_cancelled: std::ptr::addr_of!((*vtable).is_cancelled).read(),
                http: std::ptr::addr_of!((*vtable).http).read(),
                free_buf: std::ptr::addr_of!((*vtable).free_buf).read(),
                state: (size >= abi::HOST_VTABLE_V1_2_SIZE)
                    .then(|| std::ptr::addr_of!((*vtable).state).read()),
            })
        };
        Host { vtable: fns }
    }

    /// A host that drops logs, is never cancelled, and refuses HTTP: for unit tests of plugin
    /// logic that do not go through the ABI.
    pub fn detached() -> Host {
        Host { vtable: None }
    }

    /// Writes a log line into the host's logs, tagged with the plugin's name.
    pub fn log(&self, level: Level, message: &str) {
        self.log_with(level, message, &Value::Null);
    }

    /// Writes a log line with structured fields (a JSON object).
    pub fn log_with(&self, level: Level, message: &str, fields: &Value) {
        let Some(vt) = self.vtable else { return };
        let fields = if fields.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(fields).unwrap_or_default()
        };
        // SAFETY: the vtable is valid while the instance is open; both slices outlive the call.
        unsafe {
            (vt.log)(
                vt.ctx,
                level.to_raw(),
                Bytes::from_slice(message.as_bytes()),
                Bytes::from_slice(&fields),
            );
        };
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// Reports progress of the current call: `done` out of `total` units, when known.
    pub fn progress(&self, done: u64, total: Option<u64>) {
        let Some(vt) = self.vtable else { return };
        // SAFETY: the vtable is valid while the instance is open.
        unsafe { (vt.progress)(vt.ctx, done, total.unwrap_or(0)) };
    }

    /// Whether the host asked the current work to stop.
    pub fn is_cancelled(&self) -> bool {
        let Some(vt) = self.vtable else { return false };
        // SAFETY: the vtable is valid while the instance is open.
        unsafe { (vt.is_cancelled)(vt.ctx) != 0 }
    }

    /// `Err(PluginError::Cancelled)` when the host asked the work to stop: use with `?` in loops.
    pub fn check_cancelled(&self) -> Result<(), PluginError> {
        if self.is_cancelled() {
            Err(PluginError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reads the value stored under `key` in this instance's durable state (ABI 1.2): state
    /// kept in Cohort's store for the workspace and the config entry (destination or source)
    /// the instance was opened for, shared by every process. `Ok(None)` when nothing is stored.
    ///
    /// An older host has no state service: [`PluginError::Unsupported`].
    pub fn state_get(&self, key: &str) -> Result<Option<Value>, PluginError> {
        let request = StateRequest::Get {
            key: key.to_owned(),
        };
        self.state_call(&request)
            .map(|bytes| bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Stores `value` under `key` (or, with `None`, removes it), for good once this returns:
    /// a run killed right after finds it.
    pub fn state_put(&self, key: &str, value: Option<&Value>) -> Result<(), PluginError> {
        let request = match value {
            Some(v) => StateRequest::Put {
                key: key.to_owned(),
                value: v.clone(),
            },
            None => StateRequest::Delete {
                key: key.to_owned(),
            },
        };
        self.state_call(&request).map(|_| ())
    }

    /// One call of the host's state service: `Ok(None)` for a key that holds nothing.
    fn state_call(&self, request: &StateRequest) -> Result<Option<Vec<u8>>, PluginError> {
        let Some(vt) = self.vtable else {
            return Err(PluginError::Unsupported(
                "state without a host (detached)".to_owned(),
            ));
        };
        let Some(state) = vt.state else {
            return Err(PluginError::Unsupported(
                "this host offers no state service (Cohort before ABI 1.2)".to_owned(),
            ));
        };
        let body = serde_json::to_vec(request)
            .map_err(|e| PluginError::failed(format!("encoding a state request: {e}")))?;
        let mut out = Buf::EMPTY;
        // SAFETY: the vtable is valid while the instance is open; `body` outlives the call and
        // `out` is a valid place for the host to write its buffer.
        let status = unsafe { state(vt.ctx, Bytes::from_slice(&body), &mut out) };
        // SAFETY: the host wrote `len` readable bytes (or left the empty buffer).
        let bytes = unsafe { out.as_slice() }.to_vec();
        if !out.ptr.is_null() {
            // SAFETY: `out` was allocated by the host and is freed once, by the host.
            unsafe { (vt.free_buf)(vt.ctx, out) };
        }
        match status {
            abi::STATUS_OK => Ok(Some(bytes)),
            abi::STATUS_NOT_FOUND => Ok(None),
            _ => {
                let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                    ..ErrorBody::default()
                });
                if status == abi::STATUS_RETRY {
                    Err(PluginError::retry(
                        err.message,
                        err.retry_after_ms.map(Duration::from_millis),
                    ))
                } else {
                    Err(PluginError::failed(err.message))
                }
            }
        }
    }

    /// Performs an HTTP request through the host, with its timeouts, retries (429 and 5xx,
    /// honouring `Retry-After`), rate limits and secret redaction.
    ///
    /// Any HTTP status comes back as `Ok`; transport failures and timeouts come back as
    /// [`PluginError::Retry`], cancellation as [`PluginError::Cancelled`], a body over the
    /// host's limit as [`PluginError::Failed`], so a `?` does the right thing. Connectors
    /// usually go through [`http::Client`](super::http::Client), which also maps the status.
    pub fn http(&self, request: &HttpRequest) -> Result<HttpResponse, PluginError> {
        let Some(vt) = self.vtable else {
            return Err(PluginError::Unsupported(
                "HTTP without a host (detached)".to_owned(),
            ));
        };
        let body = serde_json::to_vec(request)
            .map_err(|e| PluginError::failed(format!("encoding HTTP request: {e}")))?;
        let mut out = Buf::EMPTY;
        // SAFETY: the vtable is valid while the instance is open; `body` outlives the call and
        // `out` is a valid place for the host to write its buffer.
        let status = unsafe { (vt.http)(vt.ctx, Bytes::from_slice(&body), &mut out) };
        // SAFETY: the host wrote `len` readable bytes (or left the empty buffer).
        let bytes = unsafe { out.as_slice() }.to_vec();
        if !out.ptr.is_null() {
            // SAFETY: `out` was allocated by the host, is freed exactly once, by the host.
            unsafe { (vt.free_buf)(vt.ctx, out) };
        }
        match status {
            abi::STATUS_OK => serde_json::from_slice(&bytes).map_err(|e| {
                PluginError::failed(format!("the host's HTTP response is not valid JSON: {e}"))
            }),
            _ => {
                let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                    ..ErrorBody::default()
                });
                if status == abi::STATUS_RETRY {
                    Err(PluginError::retry(
                        err.message,
                        err.retry_after_ms.map(Duration::from_millis),
                    ))
                } else if err.kind == ErrorKind::Cancelled {
                    Err(PluginError::Cancelled)
                } else {
                    Err(PluginError::Failed {
                        message: err.message,
                        details: err.details,
                    })
                }
            }
        }
    }
}
