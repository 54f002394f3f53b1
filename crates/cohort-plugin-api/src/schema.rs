//! A small JSON Schema validator for plugin configs.
//!
//! Configs are small and their schemas are simple (what `schemars` derives from a config struct,
//! or a hand-written object schema in a C plugin), so a full JSON Schema implementation would cost
//! more to compile than it could ever save. This one supports the subset below and *refuses* a
//! schema that uses anything else, so that a plugin author never believes a constraint is
//! enforced when it is not:
//!
//! - `type` (a name or a list), `enum`, `const`;
//! - objects: `properties`, `required`, `additionalProperties` (bool or schema),
//!   `minProperties`, `maxProperties`;
//! - arrays: `items`, `minItems`, `maxItems`, `uniqueItems`;
//! - strings: `minLength`, `maxLength` (in characters);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`;
//! - `anyOf`, `oneOf`, `allOf`, `not`, and local `$ref` (`#`, `#/$defs/…`, `#/definitions/…`);
//! - annotations, ignored: `$schema`, `$id`, `$comment`, `title`, `description`, `default`,
//!   `examples`, `format`, `deprecated`, `readOnly`, `writeOnly`, and any `x-…` extension.
//!
//! Errors carry a JSON Pointer into the config, e.g. `/delimiter: expected a single character`.
//! `x-cohort-secret: true` marks a string whose value the host redacts from every log.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::wire::ConfigIssue;

/// Marks a config value as secret (`"x-cohort-secret": true`): the host redacts it from logs.
pub const SECRET_KEYWORD: &str = "x-cohort-secret";

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "format",
    "deprecated",
    "readOnly",
    "writeOnly",
];

const KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "$ref",
];

/// Why a schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// JSON Pointer into the schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A checked config schema.
#[derive(Clone, PartialEq)]
pub struct Schema {
    root: Value,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    /// Checks that `root` is a schema this validator fully understands, and that it describes an
    /// object (a config is always a JSON object).
    pub fn new(root: Value) -> Result<Schema, SchemaError> {
        check_schema(&root, &root, "", 0)?;
        let schema = Schema { root };
        let probe = Value::Object(Map::new());
        // A config schema must accept objects: an empty object may fail `required`, but never
        // `type`.
        let issues = schema.validate(&probe);
        if let Some(issue) = issues
            .iter()
            .find(|i| i.path.is_empty() && i.message.starts_with("expected"))
        {
            return Err(SchemaError {
                path: String::new(),
                message: format!("the root must describe a JSON object ({})", issue.message),
            });
        }
        Ok(schema)
    }

    /// The schema as JSON.
    pub fn as_json(&self) -> &Value {
        &self.root
    }

    /// Every problem with `config`, each located by a JSON Pointer; empty when it is valid.
    pub fn validate(&self, config: &Value) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        validate(
            &self.root,
            &self.root,
            config,
            &mut String::new(),
            &mut issues,
            0,
        );
        issues
    }

    /// The values of `config` at places the schema marks `x-cohort-secret`.
    pub fn secrets(&self, config: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect_secrets(&self.root, &self.root, config, &mut out, 0);
        out.retain(|s| !s.is_empty());
        out
    }
}

const MAX_DEPTH: usize = 64;

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(pointer)
}

fn type_names() -> &'static [&'static str] {
    &[
        "object", "array", "string", "number", "integer", "boolean", "null",
    ]
}

fn check_schema(root: &Value, schema: &Value, path: &str, depth: usize) -> Result<(), SchemaError> {
    let err = |p: &str, m: String| {
        Err(SchemaError {
            path: p.to_owned(),
            message: m,
        })
    };
    if depth > MAX_DEPTH {
        return err(path, "schema nests too deeply".to_owned());
    }
    let obj = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(obj) => obj,
        _ => return err(path, "a schema must be an object or a boolean".to_owned()),
    };
    for (key, value) in obj {
        let here = format!("{path}/{}", escape(key));
        if key.starts_with("x-") || ANNOTATIONS.contains(&key.as_str()) {
            if key == "$defs" || key == "definitions" {
                let Some(defs) = value.as_object() else {
                    return err(&here, "must be an object of schemas".to_owned());
                };
                for (name, def) in defs {
                    check_schema(root, def, &format!("{here}/{}", escape(name)), depth + 1)?;
                }
            }
            continue;
        }
        if !KEYWORDS.contains(&key.as_str()) {
            return err(
                &here,
                format!(
                    "keyword `{key}` is not supported by Cohort's config validator, so it would not be enforced"
                ),
            );
        }
        match key.as_str() {
            "type" => {
                let names: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                for n in names {
                    match n.as_str() {
                        Some(s) if type_names().contains(&s) => {}
                        _ => return err(&here, format!("unknown type {n}")),
                    }
                }
            }
            "properties" => {
                let Some(props) = value.as_object() else {
                    return err(&here, "must be an object of schemas".to_owned());
                };
                for (name, sub) in props {
                    check_schema(root, sub, &format!("{here}/{}", escape(name)), depth + 1)?;
                }
            }
            "required"
                if !value
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)) =>
            {
                return err(&here, "must be an array of property names".to_owned());
            }
            "additionalProperties" | "items" | "not" => {
                check_schema(root, value, &here, depth + 1)?;
            }
            "anyOf" | "oneOf" | "allOf" => {
                let Some(list) = value.as_array().filter(|a| !a.is_empty()) else {
                    return err(&here, "must be a non-empty array of schemas".to_owned());
                };
                for (i, sub) in list.iter().enumerate() {
                    check_schema(root, sub, &format!("{here}/{i}"), depth + 1)?;
                }
            }
            "enum" if !value.is_array() => {
                return err(&here, "must be an array".to_owned());
            }
            "$ref" => {
                let target = value.as_str().and_then(|r| resolve(root, r));
                if target.is_none() {
                    return err(
                        &here,
                        format!(
                            "{value} does not point into this schema (only local `#/…` references work)"
                        ),
                    );
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties"
                if !value.is_u64() =>
            {
                return err(&here, "must be a non-negative integer".to_owned());
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf"
                if !value.is_number() =>
            {
                return err(&here, "must be a number".to_owned());
            }
            "uniqueItems" if !value.is_boolean() => {
                return err(&here, "must be a boolean".to_owned());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Escapes a property name for a JSON Pointer (RFC 6901).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches_type(v: &Value, name: &str) -> bool {
    match name {
        "integer" => match v {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => v.is_number(),
        other => type_of(v) == other,
    }
}

fn article(name: &str) -> String {
    match name {
        "object" | "array" | "integer" => format!("an {name}"),
        "null" => "null".to_owned(),
        _ => format!("a {name}"),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn validate(
    root: &Value,
    schema: &Value,
    value: &Value,
    path: &mut String,
    issues: &mut Vec<ConfigIssue>,
    depth: usize,
) {
    let mut push = |path: &str, message: String| {
        issues.push(ConfigIssue {
            path: path.to_owned(),
            message,
        });
    };
    if depth > MAX_DEPTH {
        push(path, "nests too deeply".to_owned());
        return;
    }
    let obj = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            push(path, "is not allowed here".to_owned());
            return;
        }
        Value::Object(o) => o,
        _ => return,
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str)
        && let Some(target) = resolve(root, reference)
    {
        validate(root, target, value, path, issues, depth + 1);
    }
    let mut push = |path: &str, message: String| {
        issues.push(ConfigIssue {
            path: path.to_owned(),
            message,
        });
    };

    if let Some(t) = obj.get("type") {
        let names: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => vec![],
        };
        if !names.iter().any(|n| matches_type(value, n)) {
            let expected: Vec<String> = names.iter().map(|n| article(n)).collect();
            push(
                path,
                format!(
                    "expected {}, got {} {}",
                    expected.join(" or "),
                    article(type_of(value)),
                    short(value)
                ),
            );
            return;
        }
    }
    if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(short).collect();
        push(
            path,
            format!("expected one of {}, got {}", list.join(", "), short(value)),
        );
        return;
    }
    if let Some(c) = obj.get("const")
        && c != value
    {
        push(path, format!("expected {}, got {}", short(c), short(value)));
        return;
    }

    match value {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            let min = obj.get("minLength").and_then(Value::as_u64);
            let max = obj.get("maxLength").and_then(Value::as_u64);
            match (min, max) {
                (Some(1), Some(1)) if n != 1 => push(
                    path,
                    format!("expected a single character, got {}", short(value)),
                ),
                (Some(lo), _) if n < lo => {
                    if lo == 1 {
                        push(path, "must not be empty".to_owned());
                    } else {
                        push(
                            path,
                            format!("expected at least {}, got {n}", plural(lo, "character")),
                        );
                    }
                }
                (_, Some(hi)) if n > hi => push(
                    path,
                    format!("expected at most {}, got {n}", plural(hi, "character")),
                ),
                _ => {}
            }
        }
        Value::Number(num) => {
            let x = num.as_f64().unwrap_or(f64::NAN);
            if let Some(lo) = obj.get("minimum").and_then(Value::as_f64)
                && x < lo
            {
                push(path, format!("expected at least {lo}, got {num}"));
            }
            if let Some(hi) = obj.get("maximum").and_then(Value::as_f64)
                && x > hi
            {
                push(path, format!("expected at most {hi}, got {num}"));
            }
            if let Some(lo) = obj.get("exclusiveMinimum").and_then(Value::as_f64)
                && x <= lo
            {
                push(path, format!("expected more than {lo}, got {num}"));
            }
            if let Some(hi) = obj.get("exclusiveMaximum").and_then(Value::as_f64)
                && x >= hi
            {
                push(path, format!("expected less than {hi}, got {num}"));
            }
            if let Some(m) = obj.get("multipleOf").and_then(Value::as_f64)
                && m > 0.0
                && ((x / m).round() * m - x).abs() > 1e-9 * x.abs().max(1.0)
            {
                push(path, format!("expected a multiple of {m}, got {num}"));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(lo) = obj.get("minItems").and_then(Value::as_u64)
                && n < lo
            {
                push(
                    path,
                    format!("expected at least {}, got {n}", plural(lo, "item")),
                );
            }
            if let Some(hi) = obj.get("maxItems").and_then(Value::as_u64)
                && n > hi
            {
                push(
                    path,
                    format!("expected at most {}, got {n}", plural(hi, "item")),
                );
            }
            if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        push(
                            &format!("{path}/{i}"),
                            format!("duplicates an earlier item {}", short(item)),
                        );
                    }
                }
            }
            if let Some(item_schema) = obj.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    validate(root, item_schema, item, path, issues, depth + 1);
                    path.truncate(len);
                }
            }
        }
        Value::Object(map) => validate_object(root, obj, map, path, issues, depth),
        _ => {}
    }

    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(root, sub, value, path, issues, depth + 1);
        }
    }
    if let Some(not) = obj.get("not") {
        let mut scratch = Vec::new();
        validate(root, not, value, &mut path.clone(), &mut scratch, depth + 1);
        if scratch.is_empty() {
            issues.push(ConfigIssue {
                path: path.clone(),
                message: format!("{} is not allowed here", short(value)),
            });
        }
    }
    for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        let Some(branches) = obj.get(keyword).and_then(Value::as_array) else {
            continue;
        };
        let results: Vec<Vec<ConfigIssue>> = branches
            .iter()
            .map(|b| {
                let mut scratch = Vec::new();
                validate(root, b, value, &mut path.clone(), &mut scratch, depth + 1);
                scratch
            })
            .collect();
        let passing = results.iter().filter(|r| r.is_empty()).count();
        if passing == 0 {
            issues.extend(explain_no_branch(root, branches, &results, value, path));
        } else if exactly_one && passing > 1 {
            issues.push(ConfigIssue {
                path: path.clone(),
                message: format!(
                    "{} matches more than one of the allowed forms",
                    short(value)
                ),
            });
        }
    }
}

/// Picks the clearest explanation when no `anyOf`/`oneOf` branch accepts a value.
fn explain_no_branch(
    root: &Value,
    branches: &[Value],
    results: &[Vec<ConfigIssue>],
    value: &Value,
    path: &str,
) -> Vec<ConfigIssue> {
    // Branches that are constants (how enums with documented variants are written): list them.
    let constants: Option<Vec<&Value>> = branches
        .iter()
        .map(|b| {
            let b = deref(root, b);
            b.get("const").or_else(|| {
                b.get("enum")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() == 1)
                    .map(|a| &a[0])
            })
        })
        .collect();
    if let Some(constants) = constants {
        let list: Vec<String> = constants.iter().map(|c| short(c)).collect();
        return vec![ConfigIssue {
            path: path.to_owned(),
            message: format!("expected one of {}, got {}", list.join(", "), short(value)),
        }];
    }
    // Otherwise the branches whose complaint is deeper than "wrong type" are about this value's
    // shape (`Option<T>` is `anyOf [T, null]`): report the best of those.
    let about_shape: Vec<&Vec<ConfigIssue>> = results
        .iter()
        .filter(|r| {
            !(r.len() == 1
                && r[0].path == path
                && r[0].message.starts_with("expected ")
                && r[0].message.contains(", got "))
        })
        .collect();
    if let Some(best) = about_shape.iter().min_by_key(|r| r.len()) {
        return (*best).clone();
    }
    let expected: Vec<String> = results
        .iter()
        .filter_map(|r| r.first())
        .filter_map(|i| {
            i.message
                .strip_prefix("expected ")
                .and_then(|m| m.split(", got ").next())
        })
        .map(str::to_owned)
        .collect();
    let mut unique = Vec::new();
    for e in expected {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    vec![ConfigIssue {
        path: path.to_owned(),
        message: format!("expected {}, got {}", unique.join(" or "), short(value)),
    }]
}

fn deref<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut s = schema;
    for _ in 0..MAX_DEPTH {
        match s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve(root, r))
        {
            Some(t) => s = t,
            None => break,
        }
    }
    s
}

fn validate_object(
    root: &Value,
    obj: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &mut String,
    issues: &mut Vec<ConfigIssue>,
    depth: usize,
) {
    let props = obj.get("properties").and_then(Value::as_object);
    if let Some(required) = obj.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                issues.push(ConfigIssue {
                    path: format!("{path}/{}", escape(name)),
                    message: "is required but missing".to_owned(),
                });
            }
        }
    }
    let n = map.len() as u64;
    if let Some(lo) = obj.get("minProperties").and_then(Value::as_u64)
        && n < lo
    {
        issues.push(ConfigIssue {
            path: path.clone(),
            message: format!("expected at least {}", plural(lo, "field")),
        });
    }
    if let Some(hi) = obj.get("maxProperties").and_then(Value::as_u64)
        && n > hi
    {
        issues.push(ConfigIssue {
            path: path.clone(),
            message: format!("expected at most {}", plural(hi, "field")),
        });
    }
    let additional = obj.get("additionalProperties");
    for (name, v) in map {
        let len = path.len();
        path.push('/');
        path.push_str(&escape(name));
        match props.and_then(|p| p.get(name)) {
            Some(sub) => validate(root, sub, v, path, issues, depth + 1),
            None => match additional {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let message = match nearest(name, &known) {
                        Some(s) => format!("unknown field; did you mean `{s}`?"),
                        None if known.is_empty() => {
                            "unknown field; this plugin takes no fields here".to_owned()
                        }
                        None => format!(
                            "unknown field; expected one of {}",
                            known
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    issues.push(ConfigIssue {
                        path: path.clone(),
                        message,
                    });
                }
                Some(sub) => validate(root, sub, v, path, issues, depth + 1),
                None => {}
            },
        }
        path.truncate(len);
    }
}

/// The known name closest to `name`, if it is close enough to be a typo (Cohort's one rule,
/// `cohort_core::text::did_you_mean`).
fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    cohort_core::text::did_you_mean(name, known.iter().copied())
}

fn collect_secrets(
    root: &Value,
    schema: &Value,
    value: &Value,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = deref(root, schema);
    let Some(obj) = schema.as_object() else {
        return;
    };
    if obj.get(SECRET_KEYWORD) == Some(&Value::Bool(true)) {
        secret_strings(value, out);
        return;
    }
    for keyword in ["anyOf", "oneOf", "allOf"] {
        for sub in obj
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_secrets(root, sub, value, out, depth + 1);
        }
    }
    match value {
        Value::Object(map) => {
            let props = obj.get("properties").and_then(Value::as_object);
            for (name, v) in map {
                if let Some(sub) = props
                    .and_then(|p| p.get(name))
                    .or_else(|| obj.get("additionalProperties"))
                {
                    collect_secrets(root, sub, v, out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = obj.get("items") {
                for v in items {
                    collect_secrets(root, sub, v, out, depth + 1);
                }
            }
        }
        _ => {}
    }
    let mut seen = HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
}

fn secret_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| secret_strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| secret_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csv_like() -> Schema {
        Schema::new(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["paths"],
            "properties": {
                "paths": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "delimiter": {"type": "string", "minLength": 1, "maxLength": 1},
                "page_size": {"type": "integer", "minimum": 1},
                "preset": {"$ref": "#/$defs/Preset"},
                "api_key": {"type": ["string", "null"], "x-cohort-secret": true},
                "header": {"anyOf": [{"$ref": "#/$defs/Header"}, {"type": "null"}]}
            },
            "$defs": {
                "Preset": {"oneOf": [{"const": "generator", "description": "x"}, {"const": "shopify"}]},
                "Header": {"type": "object", "properties": {"row": {"type": "integer", "minimum": 0}}, "additionalProperties": false}
            }
        }))
        .unwrap()
    }

    fn messages(schema: &Schema, config: &Value) -> Vec<String> {
        schema
            .validate(config)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_config_has_no_issues() {
        let s = csv_like();
        assert!(messages(&s, &json!({"paths": ["a.csv"], "delimiter": ";", "preset": "shopify", "header": {"row": 2}})).is_empty());
    }

    #[test]
    fn each_issue_names_its_config_path() {
        let s = csv_like();
        let got = messages(
            &s,
            &json!({"paths": ["", 3], "delimiter": ";;", "page_size": 0, "preset": "excel", "delimeter": ","}),
        );
        assert_eq!(
            got,
            [
                "/delimeter: unknown field; did you mean `delimiter`?",
                "/delimiter: expected a single character, got \";;\"",
                "/page_size: expected at least 1, got 0",
                "/paths/0: must not be empty",
                "/paths/1: expected a string, got an integer 3",
                "/preset: expected one of \"generator\", \"shopify\", got \"excel\"",
            ]
        );
    }

    #[test]
    fn missing_required_fields_are_reported_at_their_own_path() {
        assert_eq!(
            messages(&csv_like(), &json!({})),
            ["/paths: is required but missing"]
        );
    }

    #[test]
    fn optional_structs_report_the_inner_problem_not_the_null_branch() {
        let got = messages(&csv_like(), &json!({"paths": ["x"], "header": {"row": -1}}));
        assert_eq!(got, ["/header/row: expected at least 0, got -1"]);
    }

    #[test]
    fn unsupported_keywords_are_refused_so_nothing_is_silently_unenforced() {
        let err = Schema::new(
            json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}),
        )
        .unwrap_err();
        assert_eq!(err.path, "/properties/x/pattern");
        assert!(err.message.contains("not supported"));
    }

    #[test]
    fn a_schema_that_rejects_objects_is_refused() {
        let err = Schema::new(json!({"type": "string"})).unwrap_err();
        assert!(err.message.contains("JSON object"), "{err}");
    }

    #[test]
    fn broken_references_are_refused() {
        let err =
            Schema::new(json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/Nope"}}}))
                .unwrap_err();
        assert_eq!(err.path, "/properties/x/$ref");
    }

    #[test]
    fn secrets_are_found_wherever_the_schema_marks_them() {
        let s = csv_like();
        assert_eq!(
            s.secrets(&json!({"paths": ["x"], "api_key": "sk_live_123"})),
            ["sk_live_123"]
        );
        assert!(
            s.secrets(&json!({"paths": ["x"], "api_key": null}))
                .is_empty()
        );
    }

    #[test]
    fn schemars_output_for_a_documented_config_is_supported() {
        #[derive(schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Config {
            /// Where.
            paths: Vec<String>,
            /// Separator.
            delimiter: Option<char>,
            /// How many.
            page_size: u32,
            /// Kind.
            mode: Mode,
        }
        #[derive(schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Mode {
            /// One.
            First,
            /// Two.
            Second,
        }
        let schema =
            Schema::new(serde_json::to_value(schemars::schema_for!(Config)).unwrap()).unwrap();
        let got = messages(
            &schema,
            &json!({"paths": [], "delimiter": "ab", "page_size": -1, "mode": "third"}),
        );
        assert_eq!(
            got,
            [
                "/delimiter: expected a single character, got \"ab\"",
                "/mode: expected one of \"first\", \"second\", got \"third\"",
                "/page_size: expected at least 0, got -1",
            ]
        );
    }
}
