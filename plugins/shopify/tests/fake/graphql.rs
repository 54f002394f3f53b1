//! Just enough GraphQL for the fake Shopify: a parser for executable documents (operations,
//! variables, fields with arguments and aliases, inline fragments), a validator against the
//! real 2025-01 introspection schema (../shared/specs/shopify), and Shopify's cost rules.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::manual_is_multiple_of,
    clippy::needless_pass_by_value,
    clippy::semicolon_if_nothing_returned,
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// A field selection.
#[derive(Debug, Clone)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub args: BTreeMap<String, Arg>,
    pub selection: Vec<Selection>,
}

impl Field {
    /// The key it answers under.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A selection: a field or an inline fragment.
#[derive(Debug, Clone)]
pub enum Selection {
    Field(Field),
    Fragment(String, Vec<Selection>),
}

/// An argument's value.
#[derive(Debug, Clone)]
pub enum Arg {
    Var(String),
    Value(Value),
    Enum(String),
}

impl Arg {
    /// Its value, variables resolved.
    pub fn value(&self, vars: &Map<String, Value>) -> Value {
        match self {
            Arg::Var(v) => vars.get(v).cloned().unwrap_or(Value::Null),
            Arg::Value(v) => v.clone(),
            Arg::Enum(e) => Value::String(e.clone()),
        }
    }
}

/// An operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: String,
    pub name: Option<String>,
    pub selection: Vec<Selection>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Punct(char),
    Spread,
    Str(String),
    Num(String),
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() || c == ',' {
            i += 1;
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '.' {
            if b.get(i + 1) == Some(&'.') && b.get(i + 2) == Some(&'.') {
                out.push(Tok::Spread);
                i += 3;
            } else {
                return Err(format!("unexpected `.` at {i}"));
            }
        } else if "{}():$!=[]@".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                    match b.get(i) {
                        Some('n') => s.push('\n'),
                        Some(&o) => s.push(o),
                        None => return Err("unterminated string".into()),
                    }
                } else {
                    s.push(b[i]);
                }
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated string".into());
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(b[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(b[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected `{c}` at {i}"));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.at).cloned().ok_or("unexpected end")?;
        self.at += 1;
        Ok(t)
    }
    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            other => Err(format!("expected `{c}`, found {other:?}")),
        }
    }
    fn name(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Name(n) => Ok(n),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn value(&mut self) -> Result<Arg, String> {
        Ok(match self.next()? {
            Tok::Punct('$') => Arg::Var(self.name()?),
            Tok::Str(s) => Arg::Value(Value::String(s)),
            Tok::Num(n) => Arg::Value(serde_json::from_str(&n).map_err(|e| e.to_string())?),
            Tok::Name(n) if n == "true" || n == "false" => Arg::Value(Value::Bool(n == "true")),
            Tok::Name(n) if n == "null" => Arg::Value(Value::Null),
            Tok::Name(n) => Arg::Enum(n),
            other => return Err(format!("unexpected {other:?} as a value")),
        })
    }
    fn selection_set(&mut self) -> Result<Vec<Selection>, String> {
        self.expect('{')?;
        let mut out = Vec::new();
        while !self.eat('}') {
            if self.peek() == Some(&Tok::Spread) {
                self.at += 1;
                let on = self.name()?;
                if on != "on" {
                    return Err("named fragments are not supported by the fake".into());
                }
                let ty = self.name()?;
                out.push(Selection::Fragment(ty, self.selection_set()?));
                continue;
            }
            let first = self.name()?;
            let (alias, name) = if self.eat(':') {
                (Some(first), self.name()?)
            } else {
                (None, first)
            };
            let mut args = BTreeMap::new();
            if self.eat('(') {
                while !self.eat(')') {
                    let n = self.name()?;
                    self.expect(':')?;
                    args.insert(n, self.value()?);
                }
            }
            let selection = if self.peek() == Some(&Tok::Punct('{')) {
                self.selection_set()?
            } else {
                Vec::new()
            };
            out.push(Selection::Field(Field {
                alias,
                name,
                args,
                selection,
            }));
        }
        Ok(out)
    }
}

/// Parses a document of one operation.
pub fn parse(text: &str) -> Result<Operation, String> {
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
    };
    let (kind, name) = match p.peek() {
        Some(Tok::Punct('{')) => ("query".to_owned(), None),
        Some(Tok::Name(k)) if k == "query" || k == "mutation" => {
            let kind = p.name()?;
            let name = match p.peek() {
                Some(Tok::Name(_)) => Some(p.name()?),
                _ => None,
            };
            if p.eat('(') {
                // Variable definitions: `$name: Type! = default`.
                while !p.eat(')') {
                    p.next()?;
                }
            }
            (kind, name)
        }
        other => return Err(format!("unexpected {other:?} at the start")),
    };
    let selection = p.selection_set()?;
    if p.peek().is_some() {
        return Err("only one operation per document".into());
    }
    Ok(Operation {
        kind,
        name,
        selection,
    })
}

/// A field of the schema: its type's name, and whether it is a list.
#[derive(Debug, Clone)]
pub struct SchemaField {
    pub ty: String,
    pub args: Vec<String>,
}

/// The schema: type name → (kind, fields).
#[derive(Debug)]
pub struct Schema {
    pub types: BTreeMap<String, (String, BTreeMap<String, SchemaField>)>,
}

fn named(t: &Value) -> String {
    match t.get("ofType") {
        Some(inner) if !inner.is_null() => named(inner),
        _ => t["name"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The real 2025-01 schema, read once.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/specs/shopify/graphql/admin_schema_2025-01.introspection.json.gz"
        );
        let out = std::process::Command::new("gzip")
            .args(["-dc", path])
            .output()
            .expect("gzip reads the introspection schema");
        assert!(out.status.success(), "gzip -dc {path}");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut types = BTreeMap::new();
        for t in json["data"]["__schema"]["types"].as_array().unwrap() {
            let mut fields = BTreeMap::new();
            for f in t["fields"].as_array().into_iter().flatten() {
                fields.insert(
                    f["name"].as_str().unwrap().to_owned(),
                    SchemaField {
                        ty: named(&f["type"]),
                        args: f["args"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a["name"].as_str().unwrap().to_owned())
                            .collect(),
                    },
                );
            }
            types.insert(
                t["name"].as_str().unwrap().to_owned(),
                (t["kind"].as_str().unwrap().to_owned(), fields),
            );
        }
        Schema { types }
    })
}

impl Schema {
    /// Checks a selection on `ty`; the first problem, in Shopify's words.
    pub fn validate(&self, ty: &str, selection: &[Selection]) -> Result<(), String> {
        let Some((_, fields)) = self.types.get(ty) else {
            return Err(format!("Unknown type '{ty}'"));
        };
        for s in selection {
            match s {
                Selection::Fragment(on, inner) => {
                    if !self.types.contains_key(on) {
                        return Err(format!(
                            "No such type {on}, so it can't be a fragment condition"
                        ));
                    }
                    self.validate(on, inner)?;
                }
                Selection::Field(f) => {
                    if f.name == "__typename" {
                        continue;
                    }
                    let Some(sf) = fields.get(&f.name) else {
                        return Err(format!("Field '{}' doesn't exist on type '{ty}'", f.name));
                    };
                    for a in f.args.keys() {
                        if !sf.args.contains(a) {
                            return Err(format!(
                                "Field '{}' doesn't accept argument '{a}'",
                                f.name
                            ));
                        }
                    }
                    let kind = &self.types[&sf.ty].0;
                    let leaf = kind == "SCALAR" || kind == "ENUM";
                    if leaf && !f.selection.is_empty() {
                        return Err(format!(
                            "Selections can't be made on scalars (field '{}' returns {} but has selections)",
                            f.name, sf.ty
                        ));
                    }
                    if !leaf && f.selection.is_empty() {
                        return Err(format!(
                            "Field must have selections (field '{}' returns {} but has no selections)",
                            f.name, sf.ty
                        ));
                    }
                    if !leaf {
                        self.validate(&sf.ty, &f.selection)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The requested cost of a selection on `ty`, by Shopify's rules: scalars and enums 0,
    /// objects 1, connections 2 plus `first` (or `last`) times a node; `pageInfo` is free.
    pub fn cost(&self, ty: &str, selection: &[Selection], vars: &Map<String, Value>) -> u64 {
        let fields = &self.types[ty].1;
        let mut total = 0;
        for s in selection {
            match s {
                Selection::Fragment(on, inner) => total += self.cost(on, inner, vars),
                Selection::Field(f) => {
                    let Some(sf) = fields.get(&f.name) else {
                        continue;
                    };
                    let kind = &self.types[&sf.ty].0;
                    if kind == "SCALAR" || kind == "ENUM" {
                        continue;
                    }
                    if sf.ty.ends_with("Connection") {
                        let first = f
                            .args
                            .get("first")
                            .or_else(|| f.args.get("last"))
                            .map(|a| a.value(vars))
                            .and_then(|v| v.as_u64())
                            .unwrap_or(0);
                        total += 2 + first * self.node_cost(&sf.ty, &f.selection, vars);
                    } else if sf.ty == "PageInfo" {
                    } else {
                        total += 1 + self.cost(&sf.ty, &f.selection, vars);
                    }
                }
            }
        }
        total
    }

    /// One node of a connection's selection (`nodes { … }` or `edges { node { … } }`).
    fn node_cost(
        &self,
        connection: &str,
        selection: &[Selection],
        vars: &Map<String, Value>,
    ) -> u64 {
        let node_ty = &self.types[connection].1["nodes"].ty;
        let mut cost = 0;
        for s in selection {
            if let Selection::Field(f) = s {
                match f.name.as_str() {
                    "nodes" => cost = cost.max(1 + self.cost(node_ty, &f.selection, vars)),
                    "edges" => {
                        for e in &f.selection {
                            if let Selection::Field(n) = e
                                && n.name == "node"
                            {
                                cost = cost.max(1 + self.cost(node_ty, &n.selection, vars));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        cost
    }
}
