//! The services the host hands a plugin instance: logs, progress, cancellation, HTTP.
//!
//! [`HostServices`] is the safe description a caller builds; [`HostContext`] is its pinned,
//! C-callable form, whose address the plugin holds until `close`. The callbacks catch panics:
//! a bug in the host must not unwind into a plugin written in C any more than the reverse.
//!
//! HTTP is the process's one [`HttpService`], cloned into every instance's services; what is
//! per instance is only its cancellation token, its secrets and its configured rate limit, which
//! the service applies to the instance's account bucket.

use std::ffi::c_void;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cohort_plugin_api::abi::{
    self, Buf, Bytes, HostVtable, STATUS_ERROR, STATUS_OK, STATUS_RETRY, Status,
};
use cohort_plugin_api::sdk::Level;
use cohort_plugin_api::wire::{ErrorBody, ErrorKind, HttpRequest, StateRequest};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::http::{CallContext, HttpError, HttpService, RateLimit};
use crate::redact::Redactor;

/// Where plugin log lines (and the host's own lines about a plugin) go.
pub trait LogSink: Send + Sync {
    /// One line, already redacted. `fields` is a JSON object or null.
    fn log(&self, plugin: &str, level: Level, message: &str, fields: &Value);
}

/// Sends log lines to `tracing`, with the plugin's name as a field.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl LogSink for TracingSink {
    fn log(&self, plugin: &str, level: Level, message: &str, fields: &Value) {
        let fields = if fields.is_null() {
            String::new()
        } else {
            fields.to_string()
        };
        match level {
            Level::Error => tracing::error!(plugin, fields = %fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, fields = %fields, "{message}"),
            Level::Info => tracing::info!(plugin, fields = %fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, fields = %fields, "{message}"),
            Level::Trace => tracing::trace!(plugin, fields = %fields, "{message}"),
        }
    }
}

/// Durable key-value state for one plugin instance (ABI 1.2 `state`): what the caller keeps
/// for it between runs (a send ledger, the id of an asynchronous job). The host scopes it: an
/// instance sees only its own keys. Called from the thread calling into the plugin; blocking.
pub trait StateStore: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Value>, String>;
    /// Stores `value` under `key` (`None` removes it); durable when it returns.
    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String>;
}

/// Keys longer than this are refused: they are names, not data.
const MAX_STATE_KEY: usize = 512;
/// Values larger than this, encoded, are refused: state is for ids and ledgers, not payloads.
const MAX_STATE_VALUE: usize = 1 << 20;

/// Receives progress reports: `(done, total)`.
pub type ProgressFn = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

/// What the host offers one plugin instance.
#[derive(Clone)]
pub struct HostServices {
    /// Where logs go.
    pub log: Arc<dyn LogSink>,
    /// Where progress goes, if anywhere.
    pub progress: Option<ProgressFn>,
    /// Asks the instance to stop: its `is_cancelled` turns true, and its HTTP requests and
    /// waits end at once.
    pub cancel: CancellationToken,
    /// HTTP: the process's one service, cloned (a plugin that asks without it gets an error).
    pub http: Option<HttpService>,
    /// Extra secrets to redact, besides those the config schema marks.
    pub secrets: Vec<String>,
    /// The limit this instance's vendor account is configured with (a destination's
    /// `rate_limit`), applied to the shared bucket of its plugin and account instead of the
    /// service's default. See [`crate::http`] for how two instances of one account agree.
    pub rate_limit: Option<RateLimit>,
    /// Durable state, if offered (a plugin that asks without it gets an error).
    pub state: Option<Arc<dyn StateStore>>,
}

impl fmt::Debug for HostServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostServices")
            .field("cancel", &self.cancel)
            .field("http", &self.http.is_some())
            .field("rate_limit", &self.rate_limit)
            .field("state", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            log: Arc::new(TracingSink),
            progress: None,
            cancel: CancellationToken::new(),
            http: None,
            secrets: Vec::new(),
            rate_limit: None,
            state: None,
        }
    }
}

impl HostServices {
    /// Services with HTTP.
    pub fn with_http(mut self, http: HttpService) -> Self {
        self.http = Some(http);
        self
    }

    /// Services whose HTTP requests use this limit for their account (see [`crate::http`]).
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Services logging to `sink`.
    pub fn with_log(mut self, sink: Arc<dyn LogSink>) -> Self {
        self.log = sink;
        self
    }

    /// Services with durable state.
    pub fn with_state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = Some(state);
        self
    }
}

/// The C-callable form of [`HostServices`] for one instance. Boxed, so its address (the
/// vtable's `ctx`) never moves while the plugin holds it.
pub(crate) struct HostContext {
    pub(crate) plugin: String,
    pub(crate) services: HostServices,
    pub(crate) redactor: Redactor,
    pub(crate) vtable: HostVtable,
}

impl HostContext {
    pub(crate) fn new(
        plugin: &str,
        services: HostServices,
        config_secrets: Vec<String>,
    ) -> Box<HostContext> {
        let redactor = Redactor::new(
            config_secrets
                .into_iter()
                .chain(services.secrets.iter().cloned()),
        );
        let mut cx = Box::new(HostContext {
            plugin: plugin.to_owned(),
            services,
            redactor,
            vtable: HostVtable {
                abi_major: abi::ABI_MAJOR,
                abi_minor: abi::ABI_MINOR,
                size: std::mem::size_of::<HostVtable>(),
                ctx: std::ptr::null_mut(),
                log: host_log,
                progress: host_progress,
                is_cancelled: host_is_cancelled,
                http: host_http,
                free_buf: host_free_buf,
                state: host_state,
            },
        });
        let ptr: *mut HostContext = &mut *cx;
        cx.vtable.ctx = ptr.cast();
        cx
    }

    /// Logs on the plugin's behalf, redacted.
    pub(crate) fn log(&self, level: Level, message: &str, fields: &Value) {
        let message = self.redactor.redact(message);
        let fields = if fields.is_null() {
            Value::Null
        } else {
            let text = fields.to_string();
            let redacted = self.redactor.redact(&text);
            serde_json::from_str(&redacted).unwrap_or(Value::String(redacted.into_owned()))
        };
        self.services
            .log
            .log(&self.plugin, level, &message, &fields);
    }
}

/// # Safety
/// `ctx` must be the `ctx` of a live `HostContext` vtable.
unsafe fn context<'a>(ctx: *mut c_void) -> Option<&'a HostContext> {
    // SAFETY: the plugin passes back the ctx we gave it, valid until close returns.
    unsafe { ctx.cast::<HostContext>().as_ref() }
}

unsafe extern "C" fn host_log(ctx: *mut c_void, level: i32, message: Bytes, fields: Bytes) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ABI contract: ctx is ours, both slices readable during the call.
        let (Some(cx), message, fields) = (
            unsafe { context(ctx) },
            unsafe { message.as_slice() },
            unsafe { fields.as_slice() },
        ) else {
            return;
        };
        let message = String::from_utf8_lossy(message);
        let fields: Value = if fields.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(fields)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(fields).into_owned()))
        };
        cx.log(Level::from_raw(level), &message, &fields);
    }));
}

unsafe extern "C" fn host_progress(ctx: *mut c_void, done: u64, total: u64) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ABI contract: ctx is ours.
        if let Some(cx) = unsafe { context(ctx) }
            && let Some(progress) = &cx.services.progress
        {
            progress(done, (total > 0).then_some(total));
        }
    }));
}

unsafe extern "C" fn host_is_cancelled(ctx: *mut c_void) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ABI contract: ctx is ours.
        unsafe { context(ctx) }.map_or(0, |cx| i32::from(cx.services.cancel.is_cancelled()))
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn host_http(ctx: *mut c_void, request: Bytes, out: *mut Buf) -> Status {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ABI contract: ctx is ours, the request readable during the call.
        let (Some(cx), request) = (unsafe { context(ctx) }, unsafe { request.as_slice() }) else {
            return (STATUS_ERROR, error_json("host context missing", None));
        };
        http_call(cx, request)
    }));
    let (status, bytes) = result.unwrap_or_else(|_| {
        (
            STATUS_ERROR,
            error_json("the host's HTTP service panicked", None),
        )
    });
    // SAFETY: ABI contract: out is writable.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = Buf::from_vec(bytes);
    }
    status
}

fn http_call(cx: &HostContext, request: &[u8]) -> (Status, Vec<u8>) {
    let Some(http) = &cx.services.http else {
        return (
            STATUS_ERROR,
            error_json("this host offers no HTTP service to plugins here", None),
        );
    };
    let request: HttpRequest = match serde_json::from_slice(request) {
        Ok(r) => r,
        Err(e) => {
            return (
                STATUS_ERROR,
                error_json(&format!("unreadable HTTP request: {e}"), None),
            );
        }
    };
    let call = CallContext {
        plugin: &cx.plugin,
        redactor: &cx.redactor,
        log: cx.services.log.as_ref(),
        cancel: &cx.services.cancel,
        rate_limit: cx.services.rate_limit,
    };
    match http.execute_blocking(request, &call) {
        Ok(response) => (STATUS_OK, serde_json::to_vec(&response).unwrap_or_default()),
        Err(e @ (HttpError::TimedOut(_) | HttpError::Transport(_))) => {
            let retry_after = u64::try_from(http.policy().base_backoff.as_millis()).ok();
            (STATUS_RETRY, error_json(&e.to_string(), retry_after))
        }
        Err(HttpError::Cancelled) => (
            STATUS_ERROR,
            error_body(&ErrorBody {
                message: "cancelled by the host".to_owned(),
                kind: ErrorKind::Cancelled,
                ..ErrorBody::default()
            }),
        ),
        Err(e) => (STATUS_ERROR, error_json(&e.to_string(), None)),
    }
}

fn error_json(message: &str, retry_after_ms: Option<u64>) -> Vec<u8> {
    error_body(&ErrorBody {
        message: message.to_owned(),
        retry_after_ms,
        ..ErrorBody::default()
    })
}

fn error_body(body: &ErrorBody) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

unsafe extern "C" fn host_state(ctx: *mut c_void, request: Bytes, out: *mut Buf) -> Status {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: ABI contract: ctx is ours, the request readable during the call.
        let (Some(cx), request) = (unsafe { context(ctx) }, unsafe { request.as_slice() }) else {
            return (STATUS_ERROR, error_json("host context missing", None));
        };
        state_call(cx, request)
    }));
    let (status, bytes) = result.unwrap_or_else(|_| {
        (
            STATUS_ERROR,
            error_json("the host's state service panicked", None),
        )
    });
    // SAFETY: ABI contract: out is writable.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = Buf::from_vec(bytes);
    }
    status
}

fn state_call(cx: &HostContext, request: &[u8]) -> (Status, Vec<u8>) {
    let Some(state) = &cx.services.state else {
        return (
            STATUS_ERROR,
            error_json("this host offers no state service to plugins here", None),
        );
    };
    let request: StateRequest = match serde_json::from_slice(request) {
        Ok(r) => r,
        Err(e) => {
            return (
                STATUS_ERROR,
                error_json(&format!("unreadable state request: {e}"), None),
            );
        }
    };
    let key = match &request {
        StateRequest::Get { key }
        | StateRequest::Put { key, .. }
        | StateRequest::Delete { key } => key,
    };
    if key.is_empty() || key.len() > MAX_STATE_KEY {
        return (
            STATUS_ERROR,
            error_json(
                &format!(
                    "a state key is 1 to {MAX_STATE_KEY} bytes, not {}",
                    key.len()
                ),
                None,
            ),
        );
    }
    // A database that is busy or down passes: the plugin may retry the call.
    let unavailable = |e: String| {
        (
            STATUS_RETRY,
            error_json(&cx.redactor.redact(&e), Some(1_000)),
        )
    };
    match request {
        StateRequest::Get { key } => match state.get(&key) {
            Ok(Some(value)) => (STATUS_OK, serde_json::to_vec(&value).unwrap_or_default()),
            Ok(None) => (abi::STATUS_NOT_FOUND, Vec::new()),
            Err(e) => unavailable(e),
        },
        StateRequest::Put { key, value } => {
            let size = serde_json::to_vec(&value).map_or(0, |v| v.len());
            if size > MAX_STATE_VALUE {
                return (
                    STATUS_ERROR,
                    error_json(
                        &format!("a state value is at most {MAX_STATE_VALUE} bytes, not {size}"),
                        None,
                    ),
                );
            }
            match state.put(&key, Some(&value)) {
                Ok(()) => (STATUS_OK, Vec::new()),
                Err(e) => unavailable(e),
            }
        }
        StateRequest::Delete { key } => match state.put(&key, None) {
            Ok(()) => (STATUS_OK, Vec::new()),
            Err(e) => unavailable(e),
        },
    }
}

unsafe extern "C" fn host_free_buf(_ctx: *mut c_void, buf: Buf) {
    // SAFETY: ABI contract: the plugin returns a buffer this host allocated, once.
    drop(unsafe { buf.into_vec() });
}
