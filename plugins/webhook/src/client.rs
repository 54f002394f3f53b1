//! The endpoint: one signed POST per chunk, and what its answer means for each operation.
//!
//! Status mapping is the SDK's (`sdk::http`): 2xx acknowledges, 429 and 5xx retry the chunk
//! (the host first retries them itself, the `Idempotency-Key` making the POST safe to repeat),
//! 401 and 403 are a config error naming `/secret` or the header, any other 4xx rejects the
//! chunk with the endpoint's text.

use std::time::{SystemTime, UNIX_EPOCH};

use cohort_plugin_api::prelude::*;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Validated;

/// The configured endpoint.
#[derive(Debug)]
pub struct Endpoint {
    api: Client,
    secret: Option<String>,
}

impl Endpoint {
    /// A client for the endpoint, with its headers, timeout and credentials.
    pub fn new(host: Host, config: &Validated) -> Endpoint {
        let mut api = Client::new(host, config.url.clone())
            .timeout(config.timeout)
            .client_errors(ClientErrors::RejectRecords);
        for (name, value) in &config.headers {
            api = api.secret_header(&format!("/headers/{name}"), name, value);
        }
        if let Some(secret) = &config.secret {
            api = api.credential("/secret", secret);
        }
        Endpoint {
            api,
            secret: config.secret.clone(),
        }
    }

    /// POSTs one chunk's body under its idempotency key.
    pub fn send(&self, batch_key: &str, body: String) -> Result<Acks, HttpError> {
        let mut request = self
            .api
            .post("")
            .header("Idempotency-Key", batch_key)
            .retry(true);
        if let Some(secret) = &self.secret {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            request = request.header("Cohort-Signature", &signature(secret, now, &body));
        }
        let response = request.body("application/json", body).send()?;
        acks(&response)
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, Stripe's scheme.
pub fn signature(secret: &str, unix_seconds: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{unix_seconds}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={hex}")
}

/// A 2xx without `results` acknowledges every record; with them (`{"key", "status": "ok" |
/// "rejected" | "retry", "reason"}`, the wire's own outcome shape), each says for itself.
fn acks(response: &Response) -> Result<Acks, HttpError> {
    #[derive(Deserialize)]
    struct Results {
        results: Vec<Outcome>,
    }
    let has_results = serde_json::from_str::<serde_json::Value>(response.text())
        .is_ok_and(|v| v.get("results").is_some());
    if !has_results {
        return Ok(Acks::All);
    }
    Ok(Acks::Each(response.json::<Results>()?.results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_stripes_scheme() {
        // Computed independently: echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
