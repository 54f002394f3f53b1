//! A vendor's JSON record into a canonical one, field by field through JSON Pointers.

use std::collections::BTreeMap;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::Record;
use serde_json::{Map, Value};

/// Fields whose JSON numbers are ids, read as text.
const IDS: &[&str] = &["id", "customer_id"];
/// Fields whose JSON numbers are Unix seconds.
const TIMES: &[&str] = &["created_at", "updated_at", "occurred_at", "cancelled_at"];

/// The canonical record of `stream` that `fields` (field to pointer) pick out of `item`; a
/// record that does not read says why.
pub fn record(
    stream: Stream,
    fields: &BTreeMap<String, String>,
    item: &Value,
) -> Result<Record, String> {
    let mut out = Map::new();
    for (field, pointer) in fields {
        let Some(value) = item.pointer(pointer).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = match value {
            Value::Number(n) if IDS.contains(&field.as_str()) => Value::String(n.to_string()),
            Value::Number(n) if TIMES.contains(&field.as_str()) => {
                let secs = n
                    .as_i64()
                    .ok_or(format!("{field}: {n} is not whole seconds"))?;
                Value::String(Timestamp::from_secs(secs).to_string())
            }
            v => v.clone(),
        };
        match field.split_once('.') {
            Some((parent, name)) => {
                let nested = out
                    .entry(parent)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(nested) = nested {
                    nested.insert(name.to_owned(), value);
                }
            }
            None => {
                out.insert(field.clone(), value);
            }
        }
    }
    if let Some(missing) = crate::config::required(stream).find(|f| !out.contains_key(*f)) {
        let at = fields.get(missing).map_or("", String::as_str);
        return Err(format!("no `{missing}` at {at}"));
    }
    let value = Value::Object(out);
    let read = match stream {
        Stream::Customers => serde_json::from_value::<Customer>(value).map(Record::from),
        Stream::Orders => serde_json::from_value::<Order>(value).map(Record::from),
        Stream::Events => serde_json::from_value::<Event>(value).map(Record::from),
    };
    read.map_err(|e| e.to_string())
}
