//! The table of features: one row per customer.

use std::fmt;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::column::{Column, FieldType};
use super::ids::IdIndex;
use crate::money::Money;
use crate::record::CustomerId;
use crate::time::{AsOf, Timestamp};

/// A feature's name, type and meaning, as the segment language and the docs present it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldInfo {
    /// Name used in segments (`total_spent`, `attributes.tier`).
    pub name: String,
    /// Type, for checking segments.
    #[serde(serialize_with = "serialize_type")]
    pub ty: FieldType,
    /// One line on what it means.
    pub doc: String,
}

fn serialize_type<S: serde::Serializer>(ty: &FieldType, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(ty)
}

/// One feature value of one customer, for explanations, previews and reference evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// No value.
    Null,
    /// Whole number.
    Int(i64),
    /// Real number.
    Float(f64),
    /// Money.
    Money(Money),
    /// Instant.
    Time(Timestamp),
    /// Boolean.
    Bool(bool),
    /// Text.
    Str(String),
    /// Tags, lower-cased.
    Tags(Vec<String>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Money(v) => write!(f, "{v}"),
            Value::Time(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "'{v}'"),
            Value::Tags(v) => write!(f, "[{}]", v.join(", ")),
        }
    }
}

/// Features of every customer of one workspace, as of one instant.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub(crate) as_of: AsOf,
    pub(crate) ids: Vec<CustomerId>,
    pub(crate) row_by_id: IdIndex,
    pub(crate) fields: Vec<FieldInfo>,
    pub(crate) columns: Vec<Column>,
    pub(crate) by_name: FxHashMap<String, usize>,
}

impl FeatureTable {
    /// The clock the features were computed at.
    pub fn as_of(&self) -> AsOf {
        self.as_of
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no customers.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Customer ids, by row.
    pub fn ids(&self) -> &[CustomerId] {
        &self.ids
    }

    /// The row of a customer.
    pub fn row_of(&self, id: &str) -> Option<usize> {
        self.row_by_id.get(id).map(|r| r as usize)
    }

    /// Every feature, in catalogue order then custom attributes by name.
    pub fn fields(&self) -> &[FieldInfo] {
        &self.fields
    }

    /// A feature's description and column.
    pub fn field(&self, name: &str) -> Option<(&FieldInfo, &Column)> {
        self.by_name
            .get(name)
            .map(|&i| (&self.fields[i], &self.columns[i]))
    }

    /// A feature's column.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.by_name.get(name).map(|&i| &self.columns[i])
    }

    /// One customer's value of one feature (`Value::Null` for an unknown field).
    pub fn value(&self, row: usize, name: &str) -> Value {
        self.column(name)
            .map_or(Value::Null, |c| column_value(c, row))
    }

    /// Every feature of one customer, in field order.
    pub fn row_values(&self, row: usize) -> Vec<(&str, Value)> {
        self.fields
            .iter()
            .zip(&self.columns)
            .map(|(f, c)| (f.name.as_str(), column_value(c, row)))
            .collect()
    }
}

/// The value of `row` in `column`.
pub(crate) fn column_value(column: &Column, row: usize) -> Value {
    let or_null = |v: Option<Value>| v.unwrap_or(Value::Null);
    match column {
        Column::Int(c) => or_null(c.get(row).map(Value::Int)),
        Column::Float(c) => or_null(c.get(row).map(Value::Float)),
        Column::Money(c) => or_null(c.get(row).map(Value::Money)),
        Column::Time(c) => or_null(c.get(row).map(Value::Time)),
        Column::Bool(c) => or_null(c.get(row).map(Value::Bool)),
        Column::Category(c) => or_null(c.get(row).map(|s| Value::Str(s.to_owned()))),
        Column::Text(c) => or_null(c.get(row).map(|s| Value::Str(s.to_owned()))),
        Column::Tags(c) => Value::Tags(c.tags(row).into_iter().map(str::to_owned).collect()),
    }
}

/// Why columns do not make a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A column's row count differs from the number of ids.
    #[error("column `{name}` has {got} rows, expected {expected}")]
    Length {
        /// The column.
        name: String,
        /// Its rows.
        got: usize,
        /// The number of customers.
        expected: usize,
    },
    /// Two columns share a name.
    #[error("two columns are named `{0}`")]
    DuplicateName(String),
    /// Two customers share an id.
    #[error("customer id `{0}` appears twice")]
    DuplicateId(String),
}

impl FeatureTable {
    /// Assembles a table from ready columns (tests, and adapters that compute features
    /// elsewhere). Every column must have one row per id.
    pub fn from_columns(
        as_of: AsOf,
        ids: Vec<CustomerId>,
        columns: Vec<(FieldInfo, Column)>,
    ) -> Result<Self, TableError> {
        let mut row_by_id = IdIndex::default();
        for (row, id) in ids.iter().enumerate() {
            let row = u32::try_from(row).unwrap_or(u32::MAX);
            if row_by_id.insert(id.as_str(), row).is_some() {
                return Err(TableError::DuplicateId(id.to_string()));
            }
        }
        let mut by_name = FxHashMap::default();
        let (mut fields, mut cols) = (Vec::new(), Vec::new());
        for (i, (info, column)) in columns.into_iter().enumerate() {
            let got = column_len(&column);
            if got != ids.len() {
                return Err(TableError::Length {
                    name: info.name,
                    got,
                    expected: ids.len(),
                });
            }
            if by_name.insert(info.name.clone(), i).is_some() {
                return Err(TableError::DuplicateName(info.name));
            }
            fields.push(info);
            cols.push(column);
        }
        Ok(FeatureTable {
            as_of,
            ids,
            row_by_id,
            fields,
            columns: cols,
            by_name,
        })
    }
}

fn column_len(column: &Column) -> usize {
    match column {
        Column::Int(c) => c.values.len(),
        Column::Float(c) => c.values.len(),
        Column::Money(c) => c.values.len(),
        Column::Time(c) => c.values.len(),
        Column::Bool(c) => c.values.len(),
        Column::Category(c) => c.codes.len(),
        Column::Text(c) => c.valid.len(),
        Column::Tags(c) => c.offsets.len() - 1,
    }
}
