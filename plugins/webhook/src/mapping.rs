//! What the endpoint receives: one record per operation, in an envelope per request.

use cohort_plugin_api::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

/// One operation, as the endpoint sees it.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The operation's idempotency key: the endpoint applies a key at most once.
    pub key: &'a str,
    /// `upsert`, `remove` or `send`.
    pub action: Action,
    /// Who it is about.
    pub customer_id: &'a str,
    /// The rendered payload; for `send`, it carries the rendered `message` too.
    pub payload: Value,
}

/// The record for an operation; a `send` without a message is refused (`Err(reason)`).
pub fn record(op: &Operation) -> Result<Record<'_>, String> {
    let mut payload = op.payload.clone();
    if op.action == Action::Send {
        let message = op
            .message
            .as_ref()
            .ok_or("a send operation needs a rendered message")?;
        let message = serde_json::to_value(message).map_err(|e| e.to_string())?;
        match &mut payload {
            Value::Object(fields) => {
                fields.insert("message".to_owned(), message);
            }
            other => *other = json!({ "message": message }),
        }
    }
    Ok(Record {
        key: &op.key,
        action: op.action,
        customer_id: op.customer_id.as_str(),
        payload,
    })
}

/// The body of one request: `{"workspace", "campaign", "mode", "batch_key", "records"}`.
pub fn body(batch: &Batch, chunk: &Chunk<'_, Record<'_>>) -> String {
    json!({
        "workspace": batch.workspace,
        "campaign": batch.campaign,
        "mode": batch.mode,
        "batch_key": chunk.key,
        "records": chunk.items,
    })
    .to_string()
}
