//! Keeps secrets out of logs and error messages.
//!
//! The host knows a plugin's secrets from its config (values the schema marks
//! `x-cohort-secret`) and from each HTTP request (`secrets`, and headers such as
//! `Authorization`). Everything the host logs or hands back on a plugin's behalf passes through
//! a [`Redactor`] first, so a token never lands in a log file, a run record or an alert.

use std::borrow::Cow;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not redacted: replacing every `a` or `1` in a log would
/// destroy it without protecting anything.
const MIN_SECRET_LEN: usize = 4;

/// Header names whose values are always secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

/// Query parameter names whose values are always secret.
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "key",
    "token",
    "secret",
    "client_secret",
    "password",
    "signature",
    "sig",
];

/// A set of secret values to hide.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is hidden whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for these secrets.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut r = Redactor::default();
        r.extend(secrets);
        r
    }

    /// Adds secrets.
    pub fn extend(&mut self, secrets: impl IntoIterator<Item = String>) {
        for s in secrets {
            if s.len() >= MIN_SECRET_LEN && !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// A copy with more secrets (for one request).
    pub fn with(&self, secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut r = self.clone();
        r.extend(secrets);
        r
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }

    /// A URL fit for logs: secrets redacted, and the values of secret-looking query
    /// parameters (`api_key`, `token`, …) hidden too.
    pub fn redact_url(&self, url: &str) -> String {
        let url = self.redact(url);
        let Some((base, query)) = url.split_once('?') else {
            return url.into_owned();
        };
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        let mut out = format!("{base}?{}", params.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }

    /// Whether a query parameter's value is a credential (`api_key`, `token`, …).
    pub fn is_secret_param(name: &str) -> bool {
        SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str())
    }

    /// Whether a header's value must never be logged.
    pub fn is_secret_header(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        SECRET_HEADERS.contains(&name.as_str())
            || name.ends_with("-token")
            || name.ends_with("-secret")
    }

    /// Secret values carried by these headers (`Bearer abc` yields `abc` and `Bearer abc`).
    pub fn header_secrets(headers: &[(String, String)]) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in headers {
            if Redactor::is_secret_header(name) {
                out.push(value.clone());
                if let Some((_, token)) = value.split_once(' ') {
                    out.push(token.trim().to_owned());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_longest_first() {
        let r = Redactor::new(["abcd".to_owned(), "abcdefgh".to_owned(), "x".to_owned()]);
        assert_eq!(
            r.redact("token=abcdefgh, other=abcd, x"),
            "token=[REDACTED], other=[REDACTED], x"
        );
    }

    #[test]
    fn urls_hide_secret_query_parameters_even_when_unknown_as_values() {
        let r = Redactor::default();
        assert_eq!(
            r.redact_url("https://api.example.com/v1/list?page=2&api_key=zzz&Token=q#frag"),
            "https://api.example.com/v1/list?page=2&api_key=[REDACTED]&Token=[REDACTED]#frag"
        );
    }

    #[test]
    fn bearer_tokens_are_secret_with_and_without_the_scheme() {
        let secrets = Redactor::header_secrets(&[
            ("Authorization".to_owned(), "Bearer s3cr3t-token".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ]);
        assert_eq!(secrets, ["Bearer s3cr3t-token", "s3cr3t-token"]);
    }
}
