//! Typed feature columns.
//!
//! Missing values are a validity bitset beside the values, never a sentinel, so no real value
//! can be mistaken for "unknown". Low-cardinality text (country, city, tags) is dictionary
//! encoded: comparing a million countries to `'US'` is comparing a million small integers.

use std::fmt;

use rustc_hash::FxHashMap;

use crate::bitset::Bitset;
use crate::money::Money;
use crate::time::Timestamp;

/// The type of a feature, as the segment language sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Whole number (counts, scores, years).
    Int,
    /// Real number (rates).
    Float,
    /// Exact amount of money.
    Money,
    /// Instant in time.
    Time,
    /// `true` / `false`.
    Bool,
    /// Text.
    String,
    /// A set of tags.
    Tags,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Int => "integer",
            FieldType::Float => "number",
            FieldType::Money => "money",
            FieldType::Time => "date-time",
            FieldType::Bool => "boolean",
            FieldType::String => "text",
            FieldType::Tags => "tags",
        })
    }
}

/// Values of one type with a validity bit per row.
#[derive(Clone, PartialEq)]
pub struct Nullable<T> {
    /// One value per row; the value of an invalid row is meaningless (a default).
    pub values: Vec<T>,
    /// Which rows hold a value.
    pub valid: Bitset,
}

impl<T: Copy + Default> Nullable<T> {
    /// A column from optional values.
    pub fn from_options(items: impl IntoIterator<Item = Option<T>>) -> Self {
        let mut values = Vec::new();
        let mut valid = Vec::new();
        for item in items {
            valid.push(item.is_some());
            values.push(item.unwrap_or_default());
        }
        Nullable {
            values,
            valid: valid.into_iter().collect(),
        }
    }

    /// The value of `row`, if it has one.
    #[inline]
    pub fn get(&self, row: usize) -> Option<T> {
        self.valid.contains(row).then(|| self.values[row])
    }
}

impl<T> fmt::Debug for Nullable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Nullable({} rows, {} valid)",
            self.values.len(),
            self.valid.count()
        )
    }
}

/// Booleans with a validity bit per row.
#[derive(Debug, Clone, PartialEq)]
pub struct BoolColumn {
    /// Rows whose value is `true`.
    pub values: Bitset,
    /// Rows that hold a value.
    pub valid: Bitset,
}

impl BoolColumn {
    /// The value of `row`, if it has one.
    pub fn get(&self, row: usize) -> Option<bool> {
        self.valid.contains(row).then(|| self.values.contains(row))
    }
}

/// Dictionary-encoded text: each row holds a code into `dict`, or nothing.
#[derive(Clone, PartialEq)]
pub struct CategoryColumn {
    /// One code per row; meaningless where the row is invalid.
    pub codes: Vec<u32>,
    /// Rows that hold a value.
    pub valid: Bitset,
    /// Distinct values, as first seen.
    pub dict: Vec<Box<str>>,
}

impl CategoryColumn {
    /// The value of `row`, if it has one.
    pub fn get(&self, row: usize) -> Option<&str> {
        self.valid
            .contains(row)
            .then(|| &*self.dict[self.codes[row] as usize])
    }
}

impl fmt::Debug for CategoryColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CategoryColumn({} rows, {} distinct)",
            self.codes.len(),
            self.dict.len()
        )
    }
}

/// Builds a [`CategoryColumn`] one row at a time.
#[derive(Debug, Default)]
pub struct CategoryBuilder {
    codes: Vec<u32>,
    valid: Vec<bool>,
    dict: Vec<Box<str>>,
    index: FxHashMap<Box<str>, u32>,
}

impl CategoryBuilder {
    /// Appends one row.
    pub fn push(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                let code = match self.index.get(v) {
                    Some(&code) => code,
                    None => {
                        let code = u32::try_from(self.dict.len()).unwrap_or(u32::MAX);
                        self.dict.push(v.into());
                        self.index.insert(v.into(), code);
                        code
                    }
                };
                self.codes.push(code);
                self.valid.push(true);
            }
            None => {
                self.codes.push(0);
                self.valid.push(false);
            }
        }
    }

    /// The finished column.
    pub fn finish(self) -> CategoryColumn {
        CategoryColumn {
            codes: self.codes,
            valid: self.valid.into_iter().collect(),
            dict: self.dict,
        }
    }
}

/// High-cardinality text (emails, names) packed into one buffer.
#[derive(Clone, PartialEq)]
pub struct TextColumn {
    /// `offsets[row]..offsets[row + 1]` is the row's slice of `bytes`.
    pub offsets: Vec<u32>,
    /// All values, back to back.
    pub bytes: String,
    /// Rows that hold a value.
    pub valid: Vec<bool>,
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn::new()
    }
}

impl TextColumn {
    /// An empty column.
    pub fn new() -> Self {
        TextColumn {
            offsets: vec![0],
            bytes: String::new(),
            valid: Vec::new(),
        }
    }

    /// Appends one row.
    pub fn push(&mut self, value: Option<&str>) {
        self.bytes.push_str(value.unwrap_or(""));
        self.offsets
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
        self.valid.push(value.is_some());
    }

    /// The value of `row`, if it has one.
    #[inline]
    pub fn get(&self, row: usize) -> Option<&str> {
        if !self.valid[row] {
            return None;
        }
        Some(&self.bytes[self.offsets[row] as usize..self.offsets[row + 1] as usize])
    }
}

impl fmt::Debug for TextColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TextColumn({} rows, {} bytes)",
            self.valid.len(),
            self.bytes.len()
        )
    }
}

/// A set of tags per row, dictionary encoded. Tags are compared case-insensitively, so the
/// dictionary holds each tag lower-cased once.
#[derive(Clone, PartialEq)]
pub struct TagsColumn {
    /// `offsets[row]..offsets[row + 1]` is the row's slice of `codes`.
    pub offsets: Vec<u32>,
    /// Codes into `dict`, sorted and without duplicates within a row.
    pub codes: Vec<u32>,
    /// Distinct lower-cased tags.
    pub dict: Vec<Box<str>>,
}

impl TagsColumn {
    /// The codes of `row`'s tags.
    #[inline]
    pub fn row(&self, row: usize) -> &[u32] {
        &self.codes[self.offsets[row] as usize..self.offsets[row + 1] as usize]
    }

    /// The code of a tag, compared case-insensitively.
    pub fn code_of(&self, tag: &str) -> Option<u32> {
        let lower = tag.to_lowercase();
        self.dict
            .iter()
            .position(|t| **t == *lower)
            .and_then(|p| u32::try_from(p).ok())
    }

    /// `row`'s tags as text, in dictionary order.
    pub fn tags(&self, row: usize) -> Vec<&str> {
        self.row(row)
            .iter()
            .map(|&c| &*self.dict[c as usize])
            .collect()
    }
}

impl fmt::Debug for TagsColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TagsColumn({} rows, {} distinct)",
            self.offsets.len() - 1,
            self.dict.len()
        )
    }
}

/// Builds a [`TagsColumn`] one row at a time.
#[derive(Debug)]
pub struct TagsBuilder {
    offsets: Vec<u32>,
    codes: Vec<u32>,
    dict: Vec<Box<str>>,
    index: FxHashMap<Box<str>, u32>,
    scratch: Vec<u32>,
}

impl Default for TagsBuilder {
    fn default() -> Self {
        TagsBuilder {
            offsets: vec![0],
            codes: Vec::new(),
            dict: Vec::new(),
            index: FxHashMap::default(),
            scratch: Vec::new(),
        }
    }
}

impl TagsBuilder {
    /// Appends one row's tags (trimmed, lower-cased, deduplicated; empty ones dropped).
    pub fn push<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>) {
        self.scratch.clear();
        for tag in tags {
            let tag = tag.trim();
            if tag.is_empty() {
                continue;
            }
            let lower: std::borrow::Cow<'_, str> = if tag.chars().any(char::is_uppercase) {
                tag.to_lowercase().into()
            } else {
                tag.into()
            };
            let code = match self.index.get(&*lower) {
                Some(&c) => c,
                None => {
                    let c = u32::try_from(self.dict.len()).unwrap_or(u32::MAX);
                    self.dict.push((*lower).into());
                    self.index.insert((*lower).into(), c);
                    c
                }
            };
            self.scratch.push(code);
        }
        self.scratch.sort_unstable();
        self.scratch.dedup();
        self.codes.extend_from_slice(&self.scratch);
        self.offsets
            .push(u32::try_from(self.codes.len()).unwrap_or(u32::MAX));
    }

    /// The finished column.
    pub fn finish(self) -> TagsColumn {
        TagsColumn {
            offsets: self.offsets,
            codes: self.codes,
            dict: self.dict,
        }
    }
}

/// One feature's values for every customer.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Whole numbers.
    Int(Nullable<i64>),
    /// Real numbers.
    Float(Nullable<f64>),
    /// Exact money.
    Money(Nullable<Money>),
    /// Instants.
    Time(Nullable<Timestamp>),
    /// Booleans.
    Bool(BoolColumn),
    /// Low-cardinality text.
    Category(CategoryColumn),
    /// High-cardinality text.
    Text(TextColumn),
    /// Tag sets.
    Tags(TagsColumn),
}

impl Column {
    /// The type the segment language gives this column.
    pub fn field_type(&self) -> FieldType {
        match self {
            Column::Int(_) => FieldType::Int,
            Column::Float(_) => FieldType::Float,
            Column::Money(_) => FieldType::Money,
            Column::Time(_) => FieldType::Time,
            Column::Bool(_) => FieldType::Bool,
            Column::Category(_) | Column::Text(_) => FieldType::String,
            Column::Tags(_) => FieldType::Tags,
        }
    }
}
