//! Bulk operations: a large shop's first sync in one query that Shopify runs on its side,
//! instead of thousands of paced pages.
//!
//! `bulkOperationRunQuery` starts it (its id is kept in the host's state at once, so a run
//! killed while it runs resumes with the same operation when it is still there, and starts over
//! when it is gone), then the source polls it with backoff until it completes. Its result is a
//! JSONL file, read in chunks of [`CHUNK`] bytes with HTTP `Range` requests, never whole: one
//! chunk is one vendor page of the SDK's pager, and its token (the byte offset) is saved with the
//! page's records, so a run killed mid-file resumes at the chunk.
//!
//! Line items are lines of their own with `__parentId`, after their parent but not always right
//! after it. A parent is handed over once its line items add up to its item quantity
//! (`subtotalLineItemsQuantity`, `lineItemsQuantity`); one still short at a chunk's end is
//! *carried*: the next chunk starts at its line and hands over, of the lines before the last
//! chunk's end, only the carried parents (and takes in their children again). A parent carried
//! through a whole chunk is handed over as it is. The records are mapped by
//! [`Api::read_node`], exactly like the paged path's.
//!
//! At the end the lines read are compared with the operation's `objectCount`: a shortfall fails
//! the pull loudly rather than store a silently partial shop.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::VendorPage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{Api, Token, sleep};
use crate::config::ShopifyStream;
use crate::query;

/// Bytes of the result file read per request.
pub const CHUNK: u64 = 4 << 20;
/// The longest wait between two polls of a running operation.
const MAX_POLL: Duration = Duration::from_secs(10);

/// Where a bulk read is: kept in the cursor's token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    /// The operation's GID.
    pub id: String,
    /// The pass's window ends here: the next pass reads on from the newest record.
    pub upper: String,
    /// The result file's URL.
    pub url: Option<String>,
    /// How many objects the operation says it wrote.
    pub objects: u64,
    /// The byte offset this chunk starts at.
    pub start: u64,
    /// Lines before this offset were read by earlier chunks (but the carried ones).
    pub emitted: u64,
    /// Offsets of parents read by an earlier chunk and not handed over yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carry: Vec<u64>,
    /// Lines counted before `emitted`.
    pub lines: u64,
}

/// What `BulkStatus` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    id: String,
    status: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    object_count: Option<Value>,
    #[serde(default)]
    url: Option<String>,
}

fn count(v: &Option<Value>) -> u64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn status(api: &mut Api, id: &str) -> Result<Option<Operation>, PluginError> {
    let data = api.query("BulkStatus", query::BULK_STATUS, &json!({"id": id}), 1)?;
    Ok(data
        .get("node")
        .filter(|n| !n.is_null())
        .and_then(|n| serde_json::from_value(n.clone()).ok()))
}

/// Polls the operation until it is done; its result, or why there is none.
fn wait(api: &mut Api, id: &str, stream: ShopifyStream) -> Result<Option<Operation>, PluginError> {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(op) = status(api, id)? else {
            return Ok(None);
        };
        match op.status.as_str() {
            "COMPLETED" => return Ok(Some(op)),
            "CREATED" | "RUNNING" => {}
            "EXPIRED" | "CANCELED" | "CANCELING" => return Ok(None),
            _ => {
                return Err(PluginError::failed(format!(
                    "Shopify's bulk operation {} for {} of {} ended {} ({}); set \
                     `initial_sync = \"paged\"` to read the first sync in pages",
                    op.id,
                    stream.name(),
                    api.config().shop,
                    op.status,
                    op.error_code.as_deref().unwrap_or("no error code"),
                )));
            }
        }
        sleep(&api.host(), delay)?;
        delay = (delay * 3 / 2).min(MAX_POLL);
    }
}

fn forget(api: &Api, key: &str) {
    // An older host has no state: then a killed run starts over, which is only slower.
    let _ = api.host().state_put(key, None);
}

fn ready(api: &Api, op: Operation, upper: String) -> Bulk {
    api.host().info(&format!(
        "Shopify's bulk operation {} completed with {} objects",
        op.id,
        count(&op.object_count)
    ));
    Bulk {
        id: op.id,
        upper,
        objects: count(&op.object_count),
        url: op.url,
        start: 0,
        emitted: 0,
        carry: Vec::new(),
        lines: 0,
    }
}

/// The operation a killed run started for `stream`, completed, if it is still there.
pub fn resume(
    api: &mut Api,
    stream: ShopifyStream,
    key: &str,
) -> Result<Option<Bulk>, PluginError> {
    let saved = api.host().state_get(key).ok().flatten();
    let Some((id, upper)) = saved.as_ref().and_then(|v| {
        Some((
            v.get("id")?.as_str()?.to_owned(),
            v.get("upper")?.as_str()?.to_owned(),
        ))
    }) else {
        return Ok(None);
    };
    match wait(api, &id, stream)? {
        Some(op) => {
            api.host().info(&format!(
                "resuming Shopify's bulk operation {id} for {}, started by an earlier run",
                stream.name()
            ));
            Ok(Some(ready(api, op, upper)))
        }
        None => {
            api.host().warn(&format!(
                "the bulk operation {id} an earlier run started for {} is gone; starting over",
                stream.name()
            ));
            forget(api, key);
            Ok(None)
        }
    }
}

/// Starts a bulk operation for `stream` and waits for it; `None` when the shop runs as many as
/// it may already (the first sync then reads in pages, and says so).
pub fn start(
    api: &mut Api,
    stream: ShopifyStream,
    filter: &str,
    upper: &str,
    key: &str,
) -> Result<Option<Bulk>, PluginError> {
    let text = query::bulk(stream, filter);
    let data = api.query("RunBulk", query::RUN_BULK, &json!({"query": text}), 10)?;
    let run = data
        .get("bulkOperationRunQuery")
        .cloned()
        .unwrap_or(Value::Null);
    let errors = run
        .get("userErrors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(e) = errors.first() {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("?");
        if e.get("code").and_then(Value::as_str) == Some("OPERATION_IN_PROGRESS") {
            let slots = api.config().bulk_slots();
            api.host().warn(&format!(
                "{} already runs {slots} bulk {} (API {}): reading the first sync of {} in pages \
                 instead ({message})",
                api.config().shop,
                if slots == 1 {
                    "query, its most"
                } else {
                    "queries, its most"
                },
                api.config().api_version,
                stream.name()
            ));
            return Ok(None);
        }
        return Err(PluginError::failed(format!(
            "Shopify refused the RunBulk mutation for {} of {}: {message}",
            stream.name(),
            api.config().shop
        )));
    }
    let Some(id) = run
        .pointer("/bulkOperation/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(PluginError::failed(
            "Shopify answered the RunBulk mutation without an operation",
        ));
    };
    let _ = api
        .host()
        .state_put(key, Some(&json!({"id": id, "upper": upper})));
    match wait(api, &id, stream)? {
        Some(op) => Ok(Some(ready(api, op, upper.to_owned()))),
        None => {
            forget(api, key);
            Err(PluginError::retry(
                format!("Shopify's bulk operation {id} was cancelled or expired; starting over"),
                Some(Duration::from_secs(5)),
            ))
        }
    }
}

/// The request for a chunk of the result file.
pub fn chunk_request(api: &Api, b: &Bulk) -> Result<Request, PluginError> {
    let Some(url) = &b.url else {
        // An operation that matched nothing has no file: an empty answer stands for it.
        return Ok(api
            .files()
            .get(&format!("{}/", api.config().base))
            .allow(404)
            .allow(401)
            .allow(403));
    };
    Ok(api
        .files()
        .get(url)
        .header(
            "Range",
            &format!("bytes={}-{}", b.start, b.start + CHUNK - 1),
        )
        .allow(416))
}

/// A parent line waiting for its line items.
struct Parent {
    offset: u64,
    node: Value,
    items: Vec<Value>,
    expected: u64,
    got: u64,
}

/// Reads one chunk of the result file into a vendor page.
pub fn read_chunk(
    api: &mut Api,
    stream: ShopifyStream,
    mut b: Bulk,
    response: &Response,
) -> Result<VendorPage<Token>, PluginError> {
    let key = format!("bulk/{}", stream.name());
    let (base, text, eof) = if b.url.is_none() {
        (b.start, "", true)
    } else {
        match response.status() {
            416 => (b.start, "", true),
            206 => {
                let (from, to, total) = response
                    .header("content-range")
                    .and_then(content_range)
                    .ok_or_else(|| {
                        PluginError::failed(format!(
                            "the result file of bulk operation {} answered 206 without a \
                             readable Content-Range",
                            b.id
                        ))
                    })?;
                (from, response.text(), to + 1 >= total)
            }
            200 => (0, response.text(), true),
            other => {
                forget(api, &key);
                return Err(PluginError::retry(
                    format!(
                        "the result file of Shopify's bulk operation {} answered {other} (it \
                         expires a week after the operation); the first sync starts over",
                        b.id
                    ),
                    Some(Duration::from_secs(5)),
                ));
            }
        }
    };
    // Only whole lines: the last one of a chunk that is not the file's end is read next time.
    let usable = if eof {
        text.len()
    } else {
        match text.rfind('\n') {
            Some(i) => i + 1,
            None => {
                return Err(PluginError::failed(format!(
                    "a line of bulk operation {}'s result at byte {} is longer than {CHUNK} bytes",
                    b.id, b.start
                )));
            }
        }
    };
    let end = base + usable as u64;
    let mut page = VendorPage::new();
    let mut waiting: BTreeMap<String, Parent> = BTreeMap::new();
    let mut new_lines = 0u64;
    let mut orphans = 0u64;
    let mut offset = base;
    for line in text[..usable].split_inclusive('\n') {
        let at = offset;
        offset += line.len() as u64;
        let line = line.trim();
        if at < b.start || line.is_empty() {
            continue;
        }
        let fresh = at >= b.emitted;
        if fresh {
            new_lines += 1;
        }
        let node: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                if fresh {
                    page.reject(format!("bulk {} line at byte {at}", b.id), e.to_string());
                }
                continue;
            }
        };
        if let Some(parent) = node
            .get("__parentId")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            let parent = parent.as_str();
            match waiting.get_mut(parent) {
                Some(p) => {
                    p.got += node.get("quantity").and_then(Value::as_u64).unwrap_or(0);
                    p.items.push(node);
                    if p.got >= p.expected
                        && let Some(p) = waiting.remove(parent)
                    {
                        Api::read_node(stream, &p.node, &p.items, &mut page);
                    }
                }
                None if fresh => orphans += 1,
                None => {}
            }
            continue;
        }
        if !(fresh || b.carry.contains(&at)) {
            continue;
        }
        let expected = match stream {
            ShopifyStream::Customers => None,
            ShopifyStream::Orders => node.get("subtotalLineItemsQuantity"),
            ShopifyStream::AbandonedCheckouts => node.get("lineItemsQuantity"),
        }
        .and_then(Value::as_u64)
        .unwrap_or(0);
        if expected == 0 {
            Api::read_node(stream, &node, &[], &mut page);
            continue;
        }
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        waiting.insert(
            id,
            Parent {
                offset: at,
                node,
                items: Vec::new(),
                expected,
                got: 0,
            },
        );
    }
    if orphans > 0 {
        api.host().warn(&format!(
            "{orphans} line item(s) of bulk operation {} came after their parent was handed over \
             (more than {CHUNK} bytes after it); those orders lack them",
            b.id
        ));
    }
    let mut rest: Vec<Parent> = waiting.into_values().collect();
    rest.sort_by_key(|p| p.offset);
    let mut carry = Vec::new();
    for p in rest {
        // At the file's end, or carried through a whole chunk: as it is.
        if eof || p.offset == b.start {
            Api::read_node(stream, &p.node, &p.items, &mut page);
        } else {
            carry.push(p.offset);
        }
    }
    b.lines += new_lines;
    if eof {
        forget(api, &key);
        if b.lines < b.objects {
            return Err(PluginError::failed(format!(
                "Shopify's bulk operation {} reported {} objects, but its result file held {} \
                 lines: the result is incomplete, so this first sync stops here rather than \
                 store part of the shop silently; run again to start it over, or set \
                 `initial_sync = \"paged\"`",
                b.id, b.objects, b.lines
            )));
        }
        return Ok(page.next(None));
    }
    let next = Bulk {
        start: carry.first().copied().unwrap_or(end),
        emitted: end.max(b.emitted),
        carry,
        ..b
    };
    Ok(page.next(Some(Token::Bulk(next))))
}

/// `bytes FROM-TO/TOTAL`.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (from, to) = range.split_once('-')?;
    Some((
        from.trim().parse().ok()?,
        to.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_range_names_the_chunk_and_the_file_size() {
        assert_eq!(content_range("bytes 0-99/1234"), Some((0, 99, 1234)));
        assert_eq!(content_range("bytes */1234"), None);
    }
}
