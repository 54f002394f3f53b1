//! The source's config: as written, then checked by a pure function that collects every problem.

use std::collections::BTreeMap;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `http-json` source: one API, and where each stream is in it.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The API's base URL (required); each stream's `path` is appended to it.
    pub base_url: String,
    /// A credential sent as a header with every request; none by default.
    pub auth: Option<Auth>,
    /// Where customers come from.
    pub customers: Option<StreamConfig>,
    /// Where orders come from.
    pub orders: Option<StreamConfig>,
    /// Where engagement events come from.
    pub events: Option<StreamConfig>,
}

/// A credential sent as a header: `HEADER: SCHEME TOKEN`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The header; `Authorization` by default (`X-Api-Key`, …).
    pub header: Option<String>,
    /// Written before the token; `Bearer` by default, `""` for none.
    pub scheme: Option<String>,
    /// The token; secret, never shown.
    #[schemars(extend("x-cohort-secret" = true))]
    pub token: String,
}

/// One stream: its endpoint, where its records are, how they map, how it pages.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// The list endpoint (required): `/v1/customers`.
    pub path: String,
    /// Query parameters sent with every request of the stream (`limit = "100"`).
    pub query: BTreeMap<String, String>,
    /// JSON Pointer to the array of records in a response (`/data`); empty for a bare array.
    pub records: String,
    /// Cohort field to JSON Pointer in a record (`email = "/contact/email"`); `attributes.NAME`
    /// (customers) and `properties.NAME` (events) keep other values. Numbers are read as text
    /// for ids and as Unix seconds for times.
    pub fields: BTreeMap<String, String>,
    /// How to reach the next page.
    pub paging: Paging,
    /// Query parameter asking for records updated at or after the last run's newest
    /// (`updated_since`). Runs are incremental either way; it spares re-reading everything.
    pub since_param: Option<String>,
}

/// How an API pages.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Paging {
    /// A single page.
    #[default]
    None,
    /// A token in the body at `field` (a JSON Pointer), sent back as query parameter `param`.
    Cursor {
        /// Where the next page's token is.
        field: String,
        /// The query parameter that carries it.
        param: String,
    },
    /// The next page's URL in the body at `field` (a JSON Pointer).
    NextLink {
        /// Where the URL is.
        field: String,
    },
    /// Page numbers in query parameter `param`, from `start` (1); an empty page is the last.
    PageNumber {
        /// The query parameter.
        param: String,
        /// The first page's number.
        start: Option<u64>,
    },
    /// `Link: <URL>; rel="next"` headers (GitHub, Shopify).
    LinkHeader,
}

/// Fields a record of each stream may set, the required ones first.
#[rustfmt::skip]
const FIELDS: [(Stream, usize, &str); 3] = [
    (Stream::Customers, 1, "id email phone first_name last_name country region city postal_code \
        birth_date birth_year gender tags created_at updated_at accepts_email_marketing \
        accepts_sms_marketing"),
    (Stream::Orders, 3, "id customer_id total created_at currency item_count line_items \
        cancelled_at refunded"),
    (Stream::Events, 3, "customer_id kind occurred_at id"),
];

/// The fields every record of `stream` must have.
pub fn required(stream: Stream) -> impl Iterator<Item = &'static str> {
    let (_, n, names) = FIELDS
        .into_iter()
        .find(|f| f.0 == stream)
        .unwrap_or(FIELDS[0]);
    names.split_whitespace().take(n)
}

impl Config {
    /// Checks the URL and every stream's fields and pointers, collecting every problem.
    pub fn validate(&self) -> Result<(), PluginError> {
        let mut issues = Vec::new();
        let mut bad = |path: String, message: &str| {
            issues.push(ConfigIssue {
                path,
                message: message.to_owned(),
            });
        };
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            bad("/base_url".into(), "needs an http:// or https:// URL");
        }
        for (stream, required, names) in FIELDS {
            let Some(s) = self.stream(stream) else {
                continue;
            };
            let known: Vec<&str> = names.split_whitespace().collect();
            let custom = ["attributes.", "properties."][usize::from(stream == Stream::Events)];
            for (field, pointer) in &s.fields {
                let at = format!("/{stream}/fields/{field}");
                if !known.contains(&field.as_str()) && !field.starts_with(custom) {
                    bad(
                        at.clone(),
                        &format!("not a field of {stream}: {}", known.join(", ")),
                    );
                }
                if !pointer.starts_with('/') {
                    bad(at, &format!("`{pointer}` is not a JSON Pointer (`/a/b`)"));
                }
            }
            for field in known[..required]
                .iter()
                .filter(|f| !s.fields.contains_key(**f))
            {
                bad(
                    format!("/{stream}/fields"),
                    &format!("map `{field}`: {stream} need it"),
                );
            }
        }
        if Stream::ALL.iter().all(|s| self.stream(*s).is_none()) {
            bad(String::new(), "configure `customers`, `orders` or `events`");
        }
        match issues.is_empty() {
            true => Ok(()),
            false => Err(PluginError::Config(issues)),
        }
    }

    /// The config of `stream`, when it is pulled.
    pub fn stream(&self, stream: Stream) -> Option<&StreamConfig> {
        match stream {
            Stream::Customers => self.customers.as_ref(),
            Stream::Orders => self.orders.as_ref(),
            Stream::Events => self.events.as_ref(),
        }
    }
}
