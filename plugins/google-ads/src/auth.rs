//! OAuth access tokens for the Data Manager API: a token given as is, or one obtained at
//! `token_url` from a refresh token or a service account's signed JWT (RFC 7523), kept until
//! a minute before it expires and then obtained again.
//!
//! Every token, secret and assertion is a secret of the client that carries it: none ever
//! appears in a log line or an error.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cohort_plugin_api::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use crate::config::Auth;

/// The scope the Data Manager API requires.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datamanager";
/// A token this close to its expiry is obtained again first.
const MARGIN: Duration = Duration::from_secs(60);

/// Where access tokens come from.
#[derive(Debug)]
pub struct Tokens {
    auth: Auth,
    token_url: String,
    /// For the token endpoint: no bearer, the client secret and refresh token as secrets.
    oauth: Client,
    current: Option<(String, Option<Instant>)>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Tokens {
    /// Tokens for `auth`, obtained at `token_url`.
    pub fn new(host: Host, auth: Auth, token_url: &str) -> Tokens {
        let mut oauth = Client::new(host, token_url.to_owned());
        match &auth {
            Auth::Token(t) => oauth = oauth.secret(t),
            Auth::Refresh {
                client_secret,
                refresh_token,
                ..
            } => {
                oauth = oauth
                    .credential("/client_secret", client_secret)
                    .credential("/refresh_token", refresh_token);
            }
            Auth::ServiceAccount { private_key, .. } => {
                oauth = oauth.credential("/service_account_key_file", private_key);
            }
        }
        Tokens {
            current: match &auth {
                Auth::Token(t) => Some((t.clone(), None)),
                _ => None,
            },
            auth,
            token_url: token_url.to_owned(),
            oauth,
        }
    }

    /// The config key named when Google refuses the credentials.
    pub fn config_key(&self) -> &'static str {
        self.auth.config_key()
    }

    /// Whether a refused token can be replaced by a new one.
    pub fn renewable(&self) -> bool {
        !matches!(self.auth, Auth::Token(_))
    }

    /// Forgets the current token (Google refused it): the next [`token`](Self::token) gets
    /// a new one.
    pub fn forget(&mut self) {
        if self.renewable() {
            self.current = None;
        }
    }

    /// A token valid for at least another minute, and whether it is new.
    pub fn token(&mut self) -> Result<(String, bool), PluginError> {
        if let Some((token, expires)) = &self.current
            && expires.is_none_or(|at| Instant::now() + MARGIN < at)
        {
            return Ok((token.clone(), false));
        }
        let form = match &self.auth {
            Auth::Token(t) => return Ok((t.clone(), false)),
            Auth::Refresh {
                client_id,
                client_secret,
                refresh_token,
            } => format!(
                "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                encode(client_id),
                encode(client_secret),
                encode(refresh_token)
            ),
            Auth::ServiceAccount { email, private_key } => {
                let assertion = jwt(email, private_key, &self.token_url)?;
                format!(
                    "grant_type={}&assertion={}",
                    encode("urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    encode(&assertion)
                )
            }
        };
        let asked = Instant::now();
        let answer: TokenAnswer = self
            .oauth
            .post("")
            .retry(true)
            .client_errors(ClientErrors::RejectRecords)
            .body("application/x-www-form-urlencoded", form)
            .send()
            .map_err(|e| match e {
                // The token endpoint answers 400 `invalid_grant` for a revoked refresh token.
                HttpError::Rejected { reason, .. } => {
                    PluginError::config(self.auth.config_key(), reason)
                }
                HttpError::Plugin(e) => e,
            })?
            .json()?;
        self.oauth = self.oauth.clone().secret(&answer.access_token);
        let expires = answer.expires_in.map(|s| asked + Duration::from_secs(s));
        self.current = Some((answer.access_token.clone(), expires));
        Ok((answer.access_token, true))
    }
}

/// A service account's signed JWT asking for the Data Manager scope (RS256).
fn jwt(email: &str, private_key_pem: &str, audience: &str) -> Result<String, PluginError> {
    let bad_key = |why: &str| {
        PluginError::config(
            "/service_account_key_file",
            format!("the key file's private_key cannot be used: {why}"),
        )
    };
    let der = pem_body(private_key_pem).ok_or_else(|| bad_key("not a PEM private key"))?;
    let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| bad_key(&e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": email, "scope": SCOPE, "aud": audience, "iat": now, "exp": now + 3600,
    });
    let signing_input = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| bad_key("signing failed"))?;
    Ok(format!("{signing_input}.{}", base64url(&signature)))
}

/// The DER bytes of a PEM block (`-----BEGIN PRIVATE KEY-----` …).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    base64_decode(&body)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

/// Base64url without padding, as JWTs are written.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn encode(text: &str) -> String {
    cohort_plugin_api::sdk::http::encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_url_form_has_no_padding() {
        assert_eq!(base64url(b"ab"), "YWI");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    }

    #[test]
    fn a_key_that_is_not_pem_is_a_config_error_on_the_key_file() {
        let err = jwt("sa@x.iam.gserviceaccount.com", "not a key", "https://t").unwrap_err();
        assert!(
            err.to_string().contains("/service_account_key_file"),
            "{err}"
        );
    }
}
