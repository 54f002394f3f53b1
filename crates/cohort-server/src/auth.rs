//! Who is asking: bearer tokens from the config, compared in constant time.

use axum::http::HeaderMap;
use cohort_config::{Config, SecretTemplate};
use subtle::ConstantTimeEq as _;

/// The caller a token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// Sees everything.
    Admin,
    /// Sees one workspace.
    Workspace(String),
}

impl Principal {
    /// Whether the caller may see workspace `id`.
    pub(crate) fn sees(&self, id: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Workspace(w) => w == id,
        }
    }
}

/// The principal of a request's `Authorization: Bearer` token, if any token matches.
///
/// Every configured token is compared (no early exit), each comparison in constant time, so
/// the time taken says nothing about which token nearly matched.
pub(crate) fn principal(config: &Config, headers: &HeaderMap) -> Option<Principal> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    if given.is_empty() {
        return None;
    }
    let mut found = None;
    let mut check = |t: &SecretTemplate, who: Principal| {
        // A token whose `${env:}`/`${file:}` cannot be read matches nothing.
        if let Ok(secret) = t.resolve() {
            let same: bool = secret.expose().as_bytes().ct_eq(given.as_bytes()).into();
            if same && found.is_none() {
                found = Some(who);
            }
        }
    };
    for t in &config.server.admin_tokens {
        check(t, Principal::Admin);
    }
    for w in &config.workspaces {
        for t in &w.api_tokens {
            check(t, Principal::Workspace(w.id.clone()));
        }
    }
    found
}
