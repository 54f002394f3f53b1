//! Checking a request against an OpenAPI 3 file from `../shared/specs`: the operation exists,
//! the security scheme's credential is there, required header parameters are sent, and the
//! JSON body validates against the request body's schema (`type`, `properties`, `required`,
//! `items`, `minItems`, `maxItems`, `minLength`, `enum`, `additionalProperties`,
//! `maxProperties`, `$ref`, `nullable`, `allOf`, `anyOf`, `oneOf`).

use std::path::Path;

use cohort_plugin_testkit::Recorded;
use serde_json::Value;

#[derive(Debug)]
pub struct Spec(Value);

impl Spec {
    /// Loads `specs/NAME` from the shared folder beside the repository.
    pub fn load(name: &str) -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/specs")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading the vendor spec {}: {e}", path.display()));
        Spec(serde_json::from_str(&text).unwrap())
    }

    /// Every way `req` (with `body`) breaks the spec's `method path`.
    pub fn check(&self, method: &str, path: &str, req: &Recorded, body: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let Some(op) = self.0["paths"][path].get(method) else {
            return vec![format!("{method} {path} is not in the spec")];
        };
        let security = op.get("security").unwrap_or(&self.0["security"]);
        if security.as_array().is_some_and(|s| !s.is_empty())
            && !req
                .header("authorization")
                .is_some_and(|a| a.starts_with("Bearer "))
        {
            out.push("no Bearer credential".to_owned());
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = self.resolve(p);
            if p["in"] == "header"
                && p["required"] == true
                && req.header(p["name"].as_str().unwrap()).is_none()
            {
                out.push(format!("missing header {}", p["name"]));
            }
        }
        if let Some(rb) = op.get("requestBody") {
            let rb = self.resolve(rb);
            if !req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            {
                out.push("the body is not application/json".to_owned());
            }
            let schema = &rb["content"]["application/json"]["schema"];
            self.validate(schema, body, "body", &mut out);
        }
        out
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.trim_start_matches('#');
                self.resolve(self.0.pointer(pointer).unwrap_or(&Value::Null))
            }
            None => v,
        }
    }

    fn validate(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if v.is_null() && schema["nullable"] == true {
            return;
        }
        for all in schema["allOf"].as_array().into_iter().flatten() {
            self.validate(all, v, at, out);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = schema[key].as_array() {
                let fits = options.iter().any(|o| {
                    let mut errs = Vec::new();
                    self.validate(o, v, at, &mut errs);
                    errs.is_empty()
                });
                if !fits {
                    out.push(format!("{at}: matches none of {key}"));
                }
            }
        }
        if let Some(t) = schema["type"].as_str() {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                out.push(format!("{at}: expected {t}, got {v}"));
                return;
            }
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(v)
        {
            out.push(format!("{at}: {v} is not one of {options:?}"));
        }
        if let (Some(min), Some(s)) = (schema["minLength"].as_u64(), v.as_str())
            && (s.chars().count() as u64) < min
        {
            out.push(format!("{at}: shorter than {min}"));
        }
        if let Some(items) = v.as_array() {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                out.push(format!("{at}: more than {max} items"));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                out.push(format!("{at}: fewer than {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.validate(item_schema, item, &format!("{at}.{i}"), out);
                }
            }
        }
        if let Some(fields) = v.as_object() {
            for r in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(r.as_str().unwrap_or_default()) {
                    out.push(format!("{at}: missing required {r}"));
                }
            }
            if let Some(max) = schema["maxProperties"].as_u64()
                && fields.len() as u64 > max
            {
                out.push(format!("{at}: more than {max} properties"));
            }
            let props = schema["properties"].as_object();
            for (k, fv) in fields {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(s, fv, &format!("{at}.{k}"), out),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            out.push(format!("{at}: unknown property {k}"));
                        }
                        Some(extra @ Value::Object(_)) => {
                            self.validate(extra, fv, &format!("{at}.{k}"), out);
                        }
                        _ => {}
                    },
                }
            }
        }
    }
}
