//! Driving instances: paging loops, prefetching, and calls from async code.
//!
//! The host drives a source: it asks for one page at a time, so a slow consumer (the store)
//! slows the plugin down instead of piling pages up in memory. [`pull_prefetched`] allows exactly
//! one page in flight: while the host handles page *n* on its thread, the plugin produces page
//! *n + 1* on another, which overlaps plugin I/O with store writes without unbounded buffering.
//!
//! Plugin code is blocking code: [`AsyncInstance`] runs every call on tokio's blocking pool with
//! a timeout, so a stuck plugin can never stall the daemon's runtime. A call that times out is
//! abandoned, not killed (threads cannot be killed safely): the instance is cancelled and
//! poisoned, and the library stays loaded until the call returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_plugin_api::wire::{
    Batch, Page, PushResult, Stream, StreamRecord, SuppressionsPage, binary,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::error::CallError;
use crate::plugin::{Instance, LoadedPlugin, RawPage, check_page_size};
use crate::services::HostServices;
use tokio_util::sync::CancellationToken;

/// Pulls every page of `R`'s stream from `cursor` until the source says done, handing each page
/// to `on_page`, and returns the final cursor (what to save for the next run).
///
/// `on_page` sees each page's own `next_cursor`: saving it together with the page's records is
/// what makes a crash resume without loss or duplication.
pub fn pull<R: StreamRecord, E: From<CallError>>(
    instance: &mut Instance,
    mut cursor: Value,
    max_records: usize,
    mut on_page: impl FnMut(Page<R>) -> Result<(), E>,
) -> Result<Value, E> {
    loop {
        let page: Page<R> = instance.next_page(&cursor, max_records)?;
        let done = page.done;
        cursor = page.next_cursor.clone();
        on_page(page)?;
        if done {
            return Ok(cursor);
        }
    }
}

#[derive(Deserialize)]
struct PageTail {
    #[serde(rename = "records")]
    _records: IgnoredAny,
    #[serde(default)]
    next_cursor: Value,
    done: bool,
}

/// Where the page after this one starts, read without parsing the records: from the header of
/// a binary page, from the start of a JSON page that leads with `next_cursor` and `done` (as the
/// Rust SDK writes it), otherwise by skimming the JSON.
fn read_tail(page: &[u8]) -> Result<PageTail, String> {
    if binary::is_binary(page) {
        let parts = binary::parts(page).map_err(|e| e.to_string())?;
        return Ok(PageTail {
            _records: IgnoredAny,
            next_cursor: parts.cursor().map_err(|e| e.to_string())?,
            done: parts.done,
        });
    }
    read_json_tail(page).map_err(|e| e.to_string())
}

fn read_json_tail(page: &[u8]) -> Result<PageTail, serde_json::Error> {
    const HEAD: &[u8] = b"{\"next_cursor\":";
    if let Some(rest) = page.strip_prefix(HEAD) {
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
        if let Some(Ok(cursor)) = values.next() {
            let after = &rest[values.byte_offset()..];
            for (tag, done) in [
                (&b",\"done\":true"[..], true),
                (&b",\"done\":false"[..], false),
            ] {
                if after.starts_with(tag) {
                    return Ok(PageTail {
                        _records: IgnoredAny,
                        next_cursor: cursor,
                        done,
                    });
                }
            }
        }
    }
    serde_json::from_slice(page)
}

/// Like [`pull`], with the plugin producing the next page on another thread while `on_page`
/// handles the current one (one page in flight at most).
pub fn pull_prefetched<R: StreamRecord, E: From<CallError> + Send>(
    instance: &mut Instance,
    cursor: Value,
    max_records: usize,
    mut on_page: impl FnMut(Page<R>) -> Result<(), E>,
) -> Result<Value, E> {
    let stream: Stream = R::STREAM;
    let plugin = instance.plugin_name().to_owned();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RawPage, CallError>>(1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            let mut cursor = cursor;
            while !stop.load(Ordering::Relaxed) {
                let result = instance
                    .next_page_raw(stream, &cursor, max_records)
                    .and_then(|raw| {
                        let tail = read_tail(raw.bytes()).map_err(|e| {
                            CallError::Protocol(format!(
                                "plugin `{}` sent an unreadable {stream} page: {e}",
                                raw.plugin_name()
                            ))
                        })?;
                        Ok((raw, tail))
                    });
                match result {
                    Ok((raw, tail)) => {
                        if tx.send(Ok(raw)).is_err() || tail.done {
                            return;
                        }
                        cursor = tail.next_cursor;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let result = (|| loop {
            let Ok(raw) = rx.recv() else {
                return Err(E::from(CallError::Protocol(
                    "the page producer stopped early".to_owned(),
                )));
            };
            let page: Page<R> = raw?.parse()?;
            check_page_size(&page, max_records, &plugin)?;
            let done = page.done;
            let cursor = page.next_cursor.clone();
            on_page(page)?;
            if done {
                return Ok(cursor);
            }
        })();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        result
    })
}

/// An instance called from async code: every call runs on the blocking pool, with a timeout.
#[derive(Debug, Clone)]
pub struct AsyncInstance {
    inner: Arc<Mutex<Instance>>,
    cancel: CancellationToken,
    timeout: Duration,
    abandoned: Arc<AtomicBool>,
}

impl AsyncInstance {
    /// Opens an instance off the runtime (opening may do I/O), with `timeout` for every call.
    pub async fn open(
        plugin: &LoadedPlugin,
        config: &Value,
        services: HostServices,
        timeout: Duration,
    ) -> Result<AsyncInstance, CallError> {
        plugin.validate_config(config)?;
        let (plugin, config) = (plugin.clone(), config.clone());
        let cancel = services.cancel.clone();
        let task = tokio::task::spawn_blocking(move || plugin.open_unvalidated(&config, services));
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result.map(|i| AsyncInstance::new(i, timeout)),
            Ok(Err(join)) => Err(CallError::Panicked {
                message: format!("opening the plugin panicked in the host: {join}"),
            }),
            Err(_) => {
                cancel.cancel();
                Err(CallError::TimedOut(timeout))
            }
        }
    }

    /// Wraps an open instance.
    pub fn new(instance: Instance, timeout: Duration) -> AsyncInstance {
        let cancel = instance.cancel_token();
        AsyncInstance {
            inner: Arc::new(Mutex::new(instance)),
            cancel,
            timeout,
            abandoned: Arc::default(),
        }
    }

    /// The token that cancels this instance's work.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Instance) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, CallError> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Err(CallError::Poisoned(format!(
                "an earlier call did not answer within {:?}",
                self.timeout
            )));
        }
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(CallError::Panicked {
                message: format!("the host panicked calling the plugin: {join}"),
            }),
            Err(_) => {
                // The call goes on in its thread; ask it to stop and never use the instance again.
                self.cancel.cancel();
                self.abandoned.store(true, Ordering::SeqCst);
                let timeout = self.timeout;
                if let Ok(mut guard) = self.inner.try_lock() {
                    guard.poison(format!("a call did not answer within {timeout:?}"));
                }
                Err(CallError::TimedOut(self.timeout))
            }
        }
    }

    /// Pulls the next page of `R`'s stream.
    pub async fn next_page<R: StreamRecord>(
        &self,
        cursor: Value,
        max_records: usize,
    ) -> Result<Page<R>, CallError> {
        self.run(move |i| i.next_page::<R>(&cursor, max_records))
            .await
    }

    /// Pushes a batch.
    pub async fn push(&self, batch: Batch) -> Result<PushResult, CallError> {
        self.run(move |i| i.push(&batch)).await
    }

    /// Ends a campaign's run at a destination and returns the outcomes it learnt late.
    pub async fn finish(&self) -> Result<PushResult, CallError> {
        self.run(|i| i.finish()).await
    }

    /// [`Instance::suppressions`] on the blocking pool, with the timeout.
    pub async fn suppressions(&self, cursor: Value) -> Result<SuppressionsPage, CallError> {
        self.run(move |i| i.suppressions(&cursor)).await
    }
}
