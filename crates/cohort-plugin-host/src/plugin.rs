//! Loading a plugin library and calling through its vtable.
//!
//! The library lives in an `Arc` that every instance holds: it is unloaded only when the last
//! instance is closed and the last [`LoadedPlugin`] handle dropped, so code is never unmapped
//! under a running call (a timed-out call keeps its instance, and so the library, alive until it
//! returns).

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cohort_plugin_api::abi::{self, Buf, Bytes, EntryFn, PluginVtable, STATUS_OK, Status};
use cohort_plugin_api::schema::Schema;
use cohort_plugin_api::wire::{
    self, Batch, ConfigIssue, Kind, Manifest, Outcome, OutcomeStatus, Page, PageFormat,
    PageRequest, PushResult, Stream, StreamRecord, SuppressionsPage, SuppressionsRequest,
};
use serde_json::Value;

use crate::error::{CallError, LoadError};
use crate::services::{HostContext, HostServices};
use tokio_util::sync::CancellationToken;

/// A loaded library and its vtable.
struct Library {
    /// A copy of the plugin's vtable, holding only what its `size` covers (a member a plugin
    /// of an older ABI lacks is `None`): the host never reads past a plugin's table.
    vtable: PluginVtable,
    /// Kept last: dropping it unloads the code the vtable points into.
    _lib: libloading::Library,
}

// SAFETY: the vtable is immutable static data of the loaded library; the ABI requires plugin
// entry points to be callable from any thread (never concurrently on one instance, which
// `Instance` enforces with `&mut self`).
unsafe impl Send for Library {}
// SAFETY: as above; only `manifest` and `open` may be called concurrently, and the ABI allows it.
unsafe impl Sync for Library {}

impl Library {
    fn vtable(&self) -> &PluginVtable {
        &self.vtable
    }

    /// Calls a function that fills an out-buffer, copying the bytes and freeing the plugin's
    /// buffer with the plugin's own `free_buf`.
    fn with_out(&self, f: impl FnOnce(*mut Buf) -> Status) -> (Status, Vec<u8>) {
        self.with_out_read(f, |_, bytes| bytes.to_vec())
    }

    /// Calls a function that fills an out-buffer, reads the bytes in place with `read`, then
    /// frees the plugin's buffer with the plugin's own `free_buf` (on this thread, right after
    /// the call, as always).
    fn with_out_read<T>(
        &self,
        f: impl FnOnce(*mut Buf) -> Status,
        read: impl FnOnce(Status, &[u8]) -> T,
    ) -> (Status, T) {
        struct Out<'a>(Buf, &'a Library);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                if !self.0.ptr.is_null() {
                    // SAFETY: the buffer was allocated by this plugin, and is freed once, by it.
                    unsafe { (self.1.vtable().free_buf)(self.0) };
                }
            }
        }
        let mut out = Out(Buf::EMPTY, self);
        let status = f(&mut out.0);
        // SAFETY: the plugin wrote `len` readable bytes at `ptr` (or left the empty buffer),
        // which stay valid until `out` frees them, after `read` returns.
        let value = read(status, unsafe { out.0.as_slice() });
        (status, value)
    }
}

/// A plugin library, loaded, version-checked, with a valid manifest.
#[derive(Clone)]
pub struct LoadedPlugin {
    lib: Arc<Library>,
    path: PathBuf,
    manifest: Manifest,
    schema: Schema,
    abi_version: (u32, u32),
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Loads a plugin file: handshake, version check, manifest check.
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedPlugin, LoadError> {
        let path = path.as_ref().to_path_buf();
        // SAFETY: loading a library runs its initialisers. A Cohort plugin is trusted code by
        // design (installed by the operator, like a database driver); this is the one place
        // where it starts to run.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|source| LoadError::Open {
            path: path.clone(),
            source,
        })?;
        // SAFETY: the symbol's type is fixed by the ABI (`EntryFn`); a library that exports the
        // name with another type breaks the ABI and cannot be detected here.
        let entry: EntryFn = match unsafe { lib.get::<EntryFn>(abi::ENTRY_SYMBOL) } {
            Ok(sym) => *sym,
            Err(_) => return Err(LoadError::NotAPlugin { path }),
        };
        // SAFETY: calling the entry point per the ABI; it only returns a pointer.
        let vtable = unsafe { entry(abi::ABI_MAJOR, abi::ABI_MINOR) };
        if vtable.is_null() {
            return Err(LoadError::Refused {
                path,
                host_major: abi::ABI_MAJOR,
                host_minor: abi::ABI_MINOR,
            });
        }
        // SAFETY: every ABI version starts with the same frozen header (two u32 and a usize),
        // so reading it is valid whatever the plugin's version.
        let (major, minor, size) =
            unsafe { ((*vtable).abi_major, (*vtable).abi_minor, (*vtable).size) };
        if major != abi::ABI_MAJOR {
            return Err(LoadError::AbiMismatch {
                path,
                plugin_major: major,
                plugin_minor: minor,
                host_major: abi::ABI_MAJOR,
                host_minor: abi::ABI_MINOR,
            });
        }
        if size < abi::PLUGIN_VTABLE_V1_0_SIZE {
            return Err(LoadError::VtableTooSmall {
                path,
                size,
                min: abi::PLUGIN_VTABLE_V1_0_SIZE,
            });
        }
        // SAFETY: `size` covers every v1.0 member (checked above), and `finish` and
        // `suppressions` are read only when it covers them too; the function pointers point into the library, kept loaded by `lib`.
        let vtable = unsafe {
            PluginVtable {
                abi_major: major,
                abi_minor: minor,
                size,
                manifest: std::ptr::addr_of!((*vtable).manifest).read(),
                open: std::ptr::addr_of!((*vtable).open).read(),
                next_page: std::ptr::addr_of!((*vtable).next_page).read(),
                push: std::ptr::addr_of!((*vtable).push).read(),
                close: std::ptr::addr_of!((*vtable).close).read(),
                free_buf: std::ptr::addr_of!((*vtable).free_buf).read(),
                finish: if size >= abi::PLUGIN_VTABLE_V1_2_SIZE {
                    std::ptr::addr_of!((*vtable).finish).read()
                } else {
                    None
                },
                suppressions: if size >= abi::PLUGIN_VTABLE_V1_3_SIZE {
                    std::ptr::addr_of!((*vtable).suppressions).read()
                } else {
                    None
                },
            }
        };
        let lib = Arc::new(Library { vtable, _lib: lib });
        let manifest = read_manifest(&lib).map_err(|source| LoadError::Manifest {
            path: path.clone(),
            source,
        })?;
        let mut problems = manifest.problems();
        if manifest.is(Kind::Source) && lib.vtable().next_page.is_none() {
            problems.push("declares kind `source` but exports no next_page".to_owned());
        }
        if manifest.is(Kind::Destination) && lib.vtable().push.is_none() {
            problems.push("declares kind `destination` but exports no push".to_owned());
        }
        let schema = match Schema::new(manifest.config_schema.clone()) {
            Ok(s) if problems.is_empty() => s,
            _ => return Err(LoadError::BadManifest { path, problems }),
        };
        Ok(LoadedPlugin {
            lib,
            path,
            manifest,
            schema,
            abi_version: (major, minor),
        })
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ABI version the plugin was built for, `(major, minor)`.
    pub fn abi_version(&self) -> (u32, u32) {
        self.abi_version
    }

    /// The config schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Checks a config against the plugin's schema, reporting every problem with its path.
    pub fn validate_config(&self, config: &Value) -> Result<(), CallError> {
        let issues = self.schema.validate(config);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(CallError::Config(issues))
        }
    }

    /// Validates the config, then opens an instance.
    pub fn open(&self, config: &Value, services: HostServices) -> Result<Instance, CallError> {
        self.validate_config(config)?;
        self.open_unvalidated(config, services)
    }

    /// Opens an instance without validating the config first (the conformance kit uses it to
    /// check that a plugin defends itself).
    pub fn open_unvalidated(
        &self,
        config: &Value,
        services: HostServices,
    ) -> Result<Instance, CallError> {
        let secrets = self.schema.secrets(config);
        let cancel = services.cancel.clone();
        let host = HostContext::new(&self.manifest.name, services, secrets);
        let config_bytes =
            serde_json::to_vec(config).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut raw: *mut c_void = std::ptr::null_mut();
        let (status, bytes) = self.lib.with_out(|out| {
            // SAFETY: per the ABI: the host vtable lives in `host`, which the instance keeps
            // (boxed, unmoved) until after close; the config bytes outlive the call.
            unsafe {
                (self.lib.vtable().open)(
                    &host.vtable,
                    Bytes::from_slice(&config_bytes),
                    &mut raw,
                    out,
                )
            }
        });
        if status != STATUS_OK {
            return Err(CallError::from_status(status, &bytes));
        }
        if raw.is_null() {
            return Err(CallError::Protocol(
                "open succeeded but returned no instance".to_owned(),
            ));
        }
        // Binary pages when the plugin says it writes them (ABI 1.1), JSON otherwise.
        let format = if self
            .manifest
            .capabilities
            .page_formats
            .contains(&PageFormat::Binary)
        {
            PageFormat::Binary
        } else {
            PageFormat::Json
        };
        Ok(Instance {
            raw,
            host,
            lib: self.lib.clone(),
            name: self.manifest.name.as_str().into(),
            cancel,
            poisoned: None,
            format,
            supports: self.manifest.capabilities.page_formats.clone(),
        })
    }
}

fn read_manifest(lib: &Library) -> Result<Manifest, CallError> {
    // SAFETY: calling the plugin's manifest entry per the ABI with a valid out-buffer.
    let (status, bytes) = lib.with_out(|out| unsafe { (lib.vtable().manifest)(out) });
    if status != STATUS_OK {
        return Err(CallError::from_status(status, &bytes));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::Protocol(format!("the manifest is not valid JSON: {e}")))
}

/// An open plugin instance. Closed when dropped.
///
/// Calls take `&mut self`: the ABI promises a plugin that calls on one instance never overlap.
pub struct Instance {
    raw: *mut c_void,
    /// Boxed host services; the plugin holds pointers into it until close.
    host: Box<HostContext>,
    lib: Arc<Library>,
    name: Arc<str>,
    cancel: CancellationToken,
    poisoned: Option<String>,
    /// The page format asked for.
    format: PageFormat,
    /// The formats besides JSON that the manifest declares.
    supports: Vec<PageFormat>,
}

// SAFETY: a plugin instance may be called from any thread (ABI requirement; the Rust SDK demands
// `Send` plugin types), never from two at once, which `&mut self` guarantees.
unsafe impl Send for Instance {}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.name)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// A page pulled from a source, unparsed (for callers that parse it later, on another thread).
#[derive(Debug, Clone)]
pub struct RawPage {
    bytes: Vec<u8>,
    plugin: Arc<str>,
    stream: Stream,
}

impl RawPage {
    /// The page as the plugin wrote it: JSON, or the binary page format.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The name of the plugin that wrote it.
    pub fn plugin_name(&self) -> &str {
        &self.plugin
    }

    /// Whether the page is in the binary format.
    pub fn is_binary(&self) -> bool {
        wire::binary::is_binary(&self.bytes)
    }

    /// Parses the page as records of `R`.
    pub fn parse<R: StreamRecord>(&self) -> Result<Page<R>, CallError> {
        parse_page(&self.bytes, &self.plugin, self.stream)
    }
}

/// Reads a page of `R`, in either format, naming the plugin in any error.
fn parse_page<R: StreamRecord>(
    bytes: &[u8],
    plugin: &str,
    asked: Stream,
) -> Result<Page<R>, CallError> {
    if asked != R::STREAM {
        return Err(CallError::Protocol(format!(
            "a page of {asked} from plugin `{plugin}` cannot be read as {}",
            R::STREAM
        )));
    }
    wire::read_page::<R>(bytes).map_err(|e| {
        CallError::Protocol(format!(
            "plugin `{plugin}` sent an unreadable {} page: {e}",
            R::STREAM
        ))
    })
}

impl Instance {
    /// The plugin's name.
    pub fn plugin_name(&self) -> &str {
        &self.name
    }

    /// The token that cancels this instance's work.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The page format this instance asks for: binary when the plugin's manifest lists it in
    /// `capabilities.page_formats`, else JSON.
    pub fn page_format(&self) -> PageFormat {
        self.format
    }

    /// Asks for pages in `format` from now on (JSON is always possible; the conformance kit
    /// uses this to compare both). A format the plugin does not declare is refused.
    pub fn set_page_format(&mut self, format: PageFormat) -> Result<(), CallError> {
        if format != PageFormat::Json && !self.supports.contains(&format) {
            return Err(CallError::Unsupported(format!(
                "plugin `{}` does not declare {} pages",
                self.name,
                format.as_str()
            )));
        }
        self.format = format;
        Ok(())
    }

    /// Marks the instance unusable (after a timeout the caller gave up on).
    pub(crate) fn poison(&mut self, why: String) {
        self.poisoned.get_or_insert(why);
    }

    fn call(
        &mut self,
        f: impl FnOnce(&PluginVtable, *mut c_void, Bytes, *mut Buf) -> Option<Status>,
        input: &[u8],
        what: &str,
    ) -> Result<Vec<u8>, CallError> {
        self.call_read(f, input, what, |bytes| Ok(bytes.to_vec()))
    }

    /// Makes a call and, on success, reads its answer in place with `read`, before the
    /// plugin's buffer is freed (no copy of a page crosses).
    fn call_read<T>(
        &mut self,
        f: impl FnOnce(&PluginVtable, *mut c_void, Bytes, *mut Buf) -> Option<Status>,
        input: &[u8],
        what: &str,
        read: impl FnOnce(&[u8]) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        if let Some(why) = &self.poisoned {
            return Err(CallError::Poisoned(why.clone()));
        }
        let raw = self.raw;
        let lib = self.lib.clone();
        let mut missing = false;
        let (status, answer) = lib.with_out_read(
            |out| match f(lib.vtable(), raw, Bytes::from_slice(input), out) {
                Some(s) => s,
                None => {
                    missing = true;
                    STATUS_OK
                }
            },
            |status, bytes| {
                if status == STATUS_OK {
                    read(bytes)
                } else {
                    Err(CallError::from_status(status, bytes))
                }
            },
        );
        if missing {
            return Err(CallError::Unsupported(format!(
                "plugin `{}` does not implement {what}",
                self.name
            )));
        }
        if let Err(CallError::Panicked { message }) = &answer
            && status != STATUS_OK
        {
            self.poisoned = Some(message.clone());
            self.host.log(
                cohort_plugin_api::sdk::Level::Error,
                "Plugin panicked; the panic was contained and this instance is closed for use",
                &serde_json::json!({"call": what, "panic": message}),
            );
        }
        answer
    }

    fn page_request(
        &self,
        stream: Stream,
        cursor: &Value,
        max_records: usize,
    ) -> Result<Vec<u8>, CallError> {
        let request = PageRequest {
            stream,
            cursor: cursor.clone(),
            max_records,
            format: self.format,
        };
        serde_json::to_vec(&request).map_err(|e| CallError::Protocol(e.to_string()))
    }

    /// Pulls the next page of a stream, unparsed (JSON or binary, as the plugin answered).
    pub fn next_page_raw(
        &mut self,
        stream: Stream,
        cursor: &Value,
        max_records: usize,
    ) -> Result<RawPage, CallError> {
        let input = self.page_request(stream, cursor, max_records)?;
        let bytes = self.call(
            |vt, raw, input, out| {
                // SAFETY: per the ABI: live instance, readable input, writable out.
                vt.next_page.map(|f| unsafe { f(raw, input, out) })
            },
            &input,
            "next_page (it is not a source)",
        )?;
        Ok(RawPage {
            bytes,
            plugin: self.name.clone(),
            stream,
        })
    }

    /// Pulls the next page of `R`'s stream from `cursor` (`Value::Null` = from the start).
    pub fn next_page<R: StreamRecord>(
        &mut self,
        cursor: &Value,
        max_records: usize,
    ) -> Result<Page<R>, CallError> {
        let input = self.page_request(R::STREAM, cursor, max_records)?;
        let name = self.name.clone();
        let page: Page<R> = self.call_read(
            |vt, raw, input, out| {
                // SAFETY: per the ABI: live instance, readable input, writable out.
                vt.next_page.map(|f| unsafe { f(raw, input, out) })
            },
            &input,
            "next_page (it is not a source)",
            |bytes| parse_page(bytes, &name, R::STREAM),
        )?;
        check_page_size(&page, max_records, &self.name)?;
        Ok(page)
    }

    /// Pushes a batch, checking that the plugin answered exactly one outcome per operation.
    pub fn push(&mut self, batch: &Batch) -> Result<PushResult, CallError> {
        let input = serde_json::to_vec(batch).map_err(|e| CallError::Protocol(e.to_string()))?;
        let bytes = self.call(
            |vt, raw, input, out| {
                // SAFETY: per the ABI: live instance, readable input, writable out.
                vt.push.map(|f| unsafe { f(raw, input, out) })
            },
            &input,
            "push (it is not a destination)",
        )?;
        let result: PushResult = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Protocol(format!("unreadable push result: {e}")))?;
        check_outcomes(batch, &result)?;
        Ok(result)
    }

    /// Tells a destination its campaign's last batch of this run was pushed (ABI 1.2), and
    /// returns the outcomes it learnt late. A plugin without `finish` (older, or with nothing
    /// to say) learns nothing late.
    pub fn finish(&mut self) -> Result<PushResult, CallError> {
        if self.lib.vtable().finish.is_none() {
            return Ok(PushResult::default());
        }
        let bytes = self.call(
            |vt, raw, _input, out| {
                // SAFETY: per the ABI: live instance, writable out.
                vt.finish.map(|f| unsafe { f(raw, out) })
            },
            &[],
            "finish",
        )?;
        if bytes.is_empty() {
            return Ok(PushResult::default());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Protocol(format!("unreadable late outcomes: {e}")))
    }

    /// Asks a destination for the addresses its vendor will not email since `cursor` (ABI 1.3).
    /// A plugin without the entry point (older, or a source) reports none, with no cursor.
    pub fn suppressions(&mut self, cursor: &Value) -> Result<SuppressionsPage, CallError> {
        if self.lib.vtable().suppressions.is_none() {
            return Ok(SuppressionsPage::default());
        }
        let input = serde_json::to_vec(&SuppressionsRequest {
            cursor: cursor.clone(),
        })
        .map_err(|e| CallError::Protocol(e.to_string()))?;
        let bytes = self.call(
            |vt, raw, input, out| {
                // SAFETY: per the ABI: live instance, readable input, writable out.
                vt.suppressions.map(|f| unsafe { f(raw, input, out) })
            },
            &input,
            "suppressions",
        )?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Protocol(format!(
                "plugin `{}` sent unreadable suppressions: {e}",
                self.name
            ))
        })
    }
}

/// A page holds at most what was asked for.
pub(crate) fn check_page_size<R>(
    page: &Page<R>,
    max_records: usize,
    plugin: &str,
) -> Result<(), CallError> {
    if page.records.len() > max_records {
        return Err(CallError::Protocol(format!(
            "plugin `{plugin}` was asked for at most {max_records} records and sent {}",
            page.records.len()
        )));
    }
    Ok(())
}

/// One outcome per operation key, no more, no less: anything else would lose or invent sends.
fn check_outcomes(batch: &Batch, result: &PushResult) -> Result<(), CallError> {
    let mut expected: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for op in &batch.operations {
        *expected.entry(op.key.as_str()).or_default() += 1;
    }
    for Outcome { key, .. } in &result.outcomes {
        match expected.get_mut(key.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                return Err(CallError::Protocol(format!(
                    "outcome for key `{key}` that was not in the batch (or twice)"
                )));
            }
        }
    }
    if let Some((key, _)) = expected.iter().find(|(_, n)| **n > 0) {
        return Err(CallError::Protocol(format!("no outcome for key `{key}`")));
    }
    Ok(())
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: `raw` came from this library's open and is closed exactly once, here; no call is
        // in progress (we hold the only reference). The host context outlives the call.
        unsafe { (self.lib.vtable().close)(self.raw) };
    }
}

/// Counts outcomes by kind: `(ok, rejected, retry)`.
pub fn tally(result: &PushResult) -> (usize, usize, usize) {
    result
        .outcomes
        .iter()
        .fold((0, 0, 0), |(ok, rej, retry), o| match o.status {
            OutcomeStatus::Ok => (ok + 1, rej, retry),
            OutcomeStatus::Rejected { .. } => (ok, rej + 1, retry),
            OutcomeStatus::Retry { .. } => (ok, rej, retry + 1),
        })
}

/// Turns config issues into one line per issue, for the CLI.
pub fn describe_issues(issues: &[ConfigIssue]) -> Vec<String> {
    issues.iter().map(ToString::to_string).collect()
}
