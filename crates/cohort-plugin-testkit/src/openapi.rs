//! Checking requests against a vendor's OpenAPI 3 file, so that a fake vendor refuses what
//! the real one would: an unknown path or method, a missing or undeclared query parameter, a
//! body that does not match the operation's schema, missing credentials.
//!
//! It covers what vendor specs use for requests: local `$ref`s, `type` (with `nullable`),
//! `enum`, `required`, `properties`, `additionalProperties`, `items`, `allOf`, `anyOf`,
//! `oneOf`, lengths and counts, and `readOnly` properties (which a request must not send).
//! Formats are not checked. A vendor spec with a known defect is patched by the test
//! ([`OpenApi::patch`]), in the open, with the reason.

use std::path::Path;

use serde_json::Value;

/// A vendor's OpenAPI file.
#[derive(Debug, Clone)]
pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    /// Reads an OpenAPI 3 JSON file.
    ///
    /// # Panics
    /// When the file cannot be read or is not JSON: the test cannot go on.
    pub fn load(path: impl AsRef<Path>) -> OpenApi {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        OpenApi { doc }
    }

    /// Changes the document (a vendor defect the fake must not enforce).
    pub fn patch(mut self, change: impl FnOnce(&mut Value)) -> OpenApi {
        change(&mut self.doc);
        self
    }

    /// The document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The template of the spec's path that `path` (relative to the server's base) matches,
    /// preferring literal segments over parameters.
    pub fn template(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let paths = self.doc.get("paths")?.as_object()?;
        paths
            .keys()
            .filter_map(|template| {
                let t: Vec<&str> = template.split('/').collect();
                if t.len() != parts.len() {
                    return None;
                }
                let mut literal = 0;
                for (a, b) in t.iter().zip(&parts) {
                    if a.starts_with('{') && a.ends_with('}') {
                        if b.is_empty() {
                            return None;
                        }
                    } else if a == b {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, t)| t)
    }

    /// Checks one request: `path` relative to the server's base, the decoded query, the
    /// headers (any case) and the body (`None` when there is none). `Err` lists every problem.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<(), String> {
        let Some(template) = self.template(path) else {
            return Err(format!("{method} {path}: no such path in the spec"));
        };
        let item = &self.doc["paths"][&template];
        let Some(op) = item.get(method.to_ascii_lowercase()) else {
            return Err(format!(
                "{method} {template}: no such operation in the spec"
            ));
        };
        let mut problems = Vec::new();
        let params: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .chain(op.get("parameters").and_then(Value::as_array))
            .flatten()
            .map(|p| self.resolve(p).clone())
            .collect();
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            let required = p["required"].as_bool().unwrap_or(false);
            let found: Option<&str> = match p["in"].as_str() {
                Some("query") => query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str()),
                Some("header") => headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str()),
                _ => continue,
            };
            match found {
                None if required => problems.push(format!("parameter `{name}` is required")),
                None => {}
                Some(v) => {
                    if let Some(schema) = p.get("schema") {
                        let value = scalar(v, self.resolve(schema));
                        self.validate(
                            &value,
                            schema,
                            &format!("parameter `{name}`"),
                            false,
                            &mut problems,
                        );
                    }
                }
            }
        }
        for (k, _) in query {
            let declared = params
                .iter()
                .any(|p| p["in"] == "query" && p["name"].as_str() == Some(k.as_str()));
            if !declared {
                problems.push(format!("query parameter `{k}` is not in the spec"));
            }
        }
        match (op.get("requestBody").map(|b| self.resolve(b)), body) {
            (Some(rb), None) if rb["required"].as_bool().unwrap_or(false) => {
                problems.push("a body is required".to_owned());
            }
            (Some(rb), Some(body)) => {
                let content = rb["content"].as_object();
                let schema = content.and_then(|c| {
                    c.iter()
                        .find(|(t, _)| t.contains("json"))
                        .or_else(|| c.iter().next())
                        .and_then(|(_, m)| m.get("schema"))
                });
                if let Some(schema) = schema {
                    self.validate(body, schema, "body", true, &mut problems);
                }
            }
            (None, Some(b)) if !b.is_null() => problems.push("the operation takes no body".into()),
            _ => {}
        }
        if let Err(e) = self.check_auth(op, headers, query) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{method} {template}: {}", problems.join("; ")))
        }
    }

    /// The operation's (or the document's) `security`: one of its alternatives must be met.
    fn check_auth(
        &self,
        op: &Value,
        headers: &[(String, String)],
        query: &[(String, String)],
    ) -> Result<(), String> {
        let security = op.get("security").or_else(|| self.doc.get("security"));
        let Some(alternatives) = security.and_then(Value::as_array) else {
            return Ok(());
        };
        if alternatives.is_empty() {
            return Ok(());
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let schemes = &self.doc["components"]["securitySchemes"];
        let met = |name: &str| {
            let s = &schemes[name];
            match (s["type"].as_str(), s["in"].as_str()) {
                (Some("http"), _) => {
                    let scheme = s["scheme"].as_str().unwrap_or("basic");
                    header("authorization").is_some_and(|v| {
                        v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme)
                    })
                }
                (Some("apiKey"), Some("header")) => {
                    header(s["name"].as_str().unwrap_or_default()).is_some_and(|v| !v.is_empty())
                }
                (Some("apiKey"), Some("query")) => query
                    .iter()
                    .any(|(k, _)| Some(k.as_str()) == s["name"].as_str()),
                _ => true,
            }
        };
        let ok = alternatives.iter().any(|alt| {
            alt.as_object()
                .is_some_and(|names| names.keys().all(|n| met(n)))
        });
        if ok {
            Ok(())
        } else {
            Err("the credentials the spec asks for are missing".to_owned())
        }
    }

    /// Follows a local `$ref`.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return v;
            };
            v = r
                .strip_prefix('#')
                .and_then(|p| self.doc.pointer(p))
                .unwrap_or(&Value::Null);
        }
        v
    }

    /// Validates `value` against `schema`, pushing a problem per mismatch at `at`.
    fn validate(
        &self,
        value: &Value,
        schema: &Value,
        at: &str,
        request: bool,
        out: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(value, s, at, request, out);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let fits = options.iter().any(|s| {
                    let mut p = Vec::new();
                    self.validate(value, s, at, request, &mut p);
                    p.is_empty()
                });
                if !fits {
                    out.push(format!("{at}: matches none of the {key} alternatives"));
                    return;
                }
            }
        }
        if value.is_null() {
            let nullable = schema["nullable"].as_bool().unwrap_or(false)
                || schema["type"] == "null"
                || schema["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == "null"));
            if !nullable && schema.get("type").is_some() {
                out.push(format!("{at}: null is not allowed"));
            }
            return;
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| is_type(value, t)) {
            out.push(format!(
                "{at}: expected {}, got {value}",
                types.join(" or ")
            ));
            return;
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            out.push(format!(
                "{at}: {value} is not one of {}",
                Value::Array(options.clone())
            ));
        }
        if let Some(s) = value.as_str() {
            let n = s.chars().count() as u64;
            if schema["maxLength"].as_u64().is_some_and(|m| n > m) {
                out.push(format!("{at}: longer than {}", schema["maxLength"]));
            }
            if schema["minLength"].as_u64().is_some_and(|m| n < m) {
                out.push(format!("{at}: shorter than {}", schema["minLength"]));
            }
        }
        if let Some(items) = value.as_array() {
            let n = items.len() as u64;
            if schema["maxItems"].as_u64().is_some_and(|m| n > m) {
                out.push(format!("{at}: more than {} items", schema["maxItems"]));
            }
            if schema["minItems"].as_u64().is_some_and(|m| n < m) {
                out.push(format!("{at}: fewer than {} items", schema["minItems"]));
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    self.validate(v, item, &format!("{at}[{i}]"), request, out);
                }
            }
        }
        if let Some(fields) = value.as_object() {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(r) {
                        out.push(format!("{at}: `{r}` is required"));
                    }
                }
            }
            for (k, v) in fields {
                let here = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => {
                        if request && self.resolve(s)["readOnly"] == true {
                            out.push(format!("{here}: read-only, a request must not send it"));
                        }
                        self.validate(v, s, &here, request, out);
                    }
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            out.push(format!("{here}: not a property of this object"));
                        }
                        Some(s @ Value::Object(_)) => self.validate(v, s, &here, request, out),
                        _ => {}
                    },
                }
            }
        }
    }
}

fn is_type(value: &Value, t: &str) -> bool {
    match t {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// A query or header value as the JSON its schema expects (`"10"` → `10` for an integer).
fn scalar(text: &str, schema: &Value) -> Value {
    match schema["type"].as_str() {
        Some("integer") => text
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::from),
        Some("number") => text
            .parse::<f64>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::from),
        Some("boolean") => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        Some("array") => Value::Array(
            text.split(',')
                .map(|p| scalar(p, &schema["items"]))
                .collect(),
        ),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> OpenApi {
        OpenApi {
            doc: json!({
                "security": [{"basic": []}],
                "components": {
                    "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
                    "schemas": {"Tag": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string", "maxLength": 5},
                                       "id": {"type": "integer", "readOnly": true}}}}
                },
                "paths": {
                    "/lists/{id}/tags": {"post": {
                        "parameters": [{"name": "id", "in": "path", "required": true},
                                       {"name": "count", "in": "query", "schema": {"type": "integer"}}],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {
                            "type": "object", "properties": {"tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}}}}}}
                    }},
                    "/lists/mine/tags": {"get": {}}
                }
            }),
        }
    }

    #[test]
    fn a_request_that_follows_the_spec_passes_and_every_breach_is_named() {
        let auth = [("Authorization".to_owned(), "Basic eDp5".to_owned())];
        let spec = spec();
        spec.check(
            "POST",
            "/lists/L1/tags",
            &[],
            &auth,
            Some(&json!({"tags": [{"name": "vip"}]})),
        )
        .unwrap();
        assert_eq!(
            spec.template("/lists/mine/tags").as_deref(),
            Some("/lists/mine/tags")
        );
        let err = spec
            .check(
                "POST",
                "/lists/L1/tags",
                &[("count".into(), "x".into()), ("extra".into(), "1".into())],
                &[],
                Some(&json!({"tags": [{"name": "toolong", "id": 3}, {}]})),
            )
            .unwrap_err();
        for needle in [
            "parameter `count`",
            "`extra` is not in the spec",
            "body.tags[0].name: longer than 5",
            "body.tags[0].id: read-only",
            "body.tags[1]: `name` is required",
            "credentials",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(
            spec.check("DELETE", "/lists/L1/tags", &[], &auth, None)
                .is_err()
        );
        assert!(spec.check("GET", "/nowhere", &[], &auth, None).is_err());
    }
}
