//! A campaign's rendered `fields` into a row of Meta's multi-key schema: which columns, in
//! which order, and each value normalised and hashed by `cohort-adkeys`.
//!
//! Field names are Meta's keys (`EMAIL`, `PHONE`, `FN`, `LN`, `CT`, `ST`, `ZIP`, `COUNTRY`,
//! `DOBY`, `GEN`, `EXTERN_ID`), in any case, plus `LOOKALIKE_VALUE` for value-based audiences.
//! Other fields are not sent (Meta would refuse the schema): the caller warns about them.

use cohort_adkeys::meta::{self, Key};
use serde::Serialize;
use serde_json::Value;

/// A column of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    /// An identifier key.
    Key(Key),
    /// `LOOKALIKE_VALUE`: the customer's value, a number, for value-based lookalikes.
    LookalikeValue,
}

impl Column {
    /// The column's name in the schema.
    pub fn name(self) -> &'static str {
        match self {
            Column::Key(k) => k.name(),
            Column::LookalikeValue => "LOOKALIKE_VALUE",
        }
    }

    fn parse(field: &str) -> Option<Column> {
        let upper = field.trim().to_ascii_uppercase();
        if upper == "LOOKALIKE_VALUE" {
            return Some(Column::LookalikeValue);
        }
        Key::parse(&upper).map(Column::Key)
    }
}

/// The columns of a row, in Cohort's fixed order (so equal fields give equal schemas).
pub type Schema = Vec<Column>;

/// One customer as Meta receives them: a value per column (hashes, `""` for unknown, an
/// `EXTERN_ID` as is, a number for `LOOKALIKE_VALUE`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The columns.
    #[serde(skip)]
    pub schema: Schema,
    /// The values, one per column.
    pub values: Vec<Value>,
}

impl Row {
    /// Whether `value` (a hash Meta quoted back) is one of this row's values.
    pub fn holds(&self, value: &str) -> bool {
        self.values.iter().any(|v| v.as_str() == Some(value))
    }
}

/// The row for a payload; `Ok(None)` when there is no payload (a removal of someone Meta was
/// never sent). `unknown` is told each field that is not a column.
pub fn row(payload: &Value, mut unknown: impl FnMut(&str)) -> Result<Option<Row>, String> {
    let fields = match payload {
        Value::Null => return Ok(None),
        Value::Object(fields) => fields,
        other => {
            return Err(format!(
                "the campaign's fields rendered {other}, not a table"
            ));
        }
    };
    let mut columns: Vec<(Column, &Value)> = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        match Column::parse(name) {
            Some(c) if columns.iter().any(|(seen, _)| *seen == c) => {
                return Err(format!(
                    "fields `{name}` and another name the same key {}",
                    c.name()
                ));
            }
            Some(c) => columns.push((c, value)),
            None => unknown(name),
        }
    }
    columns.sort_by_key(|(c, _)| *c);
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let country = columns
        .iter()
        .find(|(c, _)| *c == Column::Key(Key::Country))
        .map(|(_, v)| text(v));
    let mut values = Vec::with_capacity(columns.len());
    let mut identifiers = 0;
    for (column, value) in &columns {
        let raw = text(value);
        match column {
            Column::Key(key) => {
                let cell = meta::row_value(*key, &raw, country.as_deref())
                    .map_err(|e| format!("field {}: {e}", key.name()))?;
                if !cell.is_empty() && *key != Key::Country {
                    identifiers += 1;
                }
                values.push(Value::String(cell));
            }
            Column::LookalikeValue => values.push(lookalike_value(&raw)?),
        }
    }
    if identifiers == 0 {
        return Err(
            "no identifier to match on: every one of EMAIL, PHONE, EXTERN_ID, FN, LN, … is empty"
                .to_owned(),
        );
    }
    Ok(Some(Row {
        schema: columns.into_iter().map(|(c, _)| c).collect(),
        values,
    }))
}

/// `LOOKALIKE_VALUE`: a number at least 0 (an empty value counts as 0).
fn lookalike_value(raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(Value::from(0));
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => {
            Ok(serde_json::Number::from_f64(v).map_or_else(|| Value::from(0), Value::Number))
        }
        _ => Err(format!(
            "field LOOKALIKE_VALUE: `{t}` is not a number at least 0 (a customer value)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_adkeys::sha256_hex;
    use serde_json::json;

    #[test]
    fn columns_come_in_a_fixed_order_and_values_are_hashed_except_the_extern_id() {
        let mut ignored = Vec::new();
        let r = row(
            &json!({"FN": "Ann", "email": " Ann@Example.com", "EXTERN_ID": "42", "offer": "10%",
                     "LOOKALIKE_VALUE": "120.5"}),
            |f| ignored.push(f.to_owned()),
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = r.schema.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["EXTERN_ID", "EMAIL", "FN", "LOOKALIKE_VALUE"]);
        assert_eq!(
            r.values,
            [
                json!("42"),
                json!(sha256_hex("ann@example.com")),
                json!(sha256_hex("ann")),
                json!(120.5)
            ]
        );
        assert_eq!(ignored, ["offer"]);
    }

    #[test]
    fn a_bad_value_names_its_field_and_an_empty_one_is_unknown() {
        let err = row(&json!({"EMAIL": "ann@"}), |_| {}).unwrap_err();
        assert!(err.starts_with("field EMAIL:"), "{err}");
        let r = row(&json!({"EMAIL": "a@b.co", "PHONE": ""}), |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(r.values[1], json!(""));
        let err = row(&json!({"EMAIL": "", "COUNTRY": "us"}), |_| {}).unwrap_err();
        assert!(err.contains("no identifier"), "{err}");
        assert_eq!(row(&Value::Null, |_| {}).unwrap(), None);
    }

    #[test]
    fn the_country_column_gives_national_phones_their_code() {
        let r = row(&json!({"PHONE": "(650) 253-1234", "COUNTRY": "US"}), |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(r.values[0], json!(sha256_hex("16502531234")));
        assert_eq!(r.values[1], json!(sha256_hex("us")));
    }
}
