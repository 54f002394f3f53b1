//! The source's config: as written (serde and schemars: the doc comments are the schema's
//! descriptions, and docs/connectors/shopify.md quotes them), then checked by a pure function
//! that collects every problem. What only Shopify can tell (is the token valid, does it have
//! the scopes) is learnt from its first answer, in `client`.

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// The newest Admin API version whose schema the plugin was checked against.
pub const DEFAULT_API_VERSION: &str = "2025-01";
/// A stream holding more records than this is read with a bulk operation on its first sync.
pub const DEFAULT_BULK_THRESHOLD: u64 = 10_000;

/// Config of the `shopify` source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The shop's domain, `my-shop.myshopify.com` (a bare `my-shop` is completed).
    pub shop: String,
    /// The Admin API access token of the shop's custom app (`shpat_…`), with the scopes
    /// `read_customers` and `read_orders` (and `read_all_orders` for orders older than 60
    /// days). Secret: never shown.
    #[schemars(extend("x-cohort-secret" = true))]
    pub access_token: String,
    /// The Admin API version, `YYYY-MM` (default `2025-01`, the newest whose schema Cohort was
    /// checked against). From `2026-01` a shop runs up to five bulk operations at once.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Replaces `https://SHOP` in request URLs (a proxy, or a fake in tests). Requests go to
    /// `{base_url}/admin/api/{api_version}/graphql.json`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How a stream's first sync reads: `auto` (a bulk operation when the stream holds more
    /// than `bulk_threshold` records, else pages), `bulk` or `paged`. Later runs always page
    /// from the watermark.
    #[serde(default)]
    pub initial_sync: InitialSync,
    /// The record count above which `auto` reads a first sync in bulk (default 10,000).
    #[serde(default = "default_bulk_threshold")]
    #[schemars(range(min = 0))]
    pub bulk_threshold: u64,
    /// The streams to read (default all three): `customers`, `orders`, and
    /// `abandoned_checkouts` (read as `cart_abandoned` events).
    #[serde(default = "all_streams")]
    #[schemars(length(min = 1))]
    pub streams: Vec<ShopifyStream>,
    /// Seconds one GraphQL request may take before it is abandoned and retried (default 60).
    /// A request for a page is small; one that hangs this long is a stalled connection.
    #[serde(default = "default_timeout_secs")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    60
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_bulk_threshold() -> u64 {
    DEFAULT_BULK_THRESHOLD
}

fn all_streams() -> Vec<ShopifyStream> {
    vec![
        ShopifyStream::Customers,
        ShopifyStream::Orders,
        ShopifyStream::AbandonedCheckouts,
    ]
}

/// How a first sync reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialSync {
    /// Bulk when the stream holds more than `bulk_threshold` records, else pages.
    #[default]
    Auto,
    /// Always a bulk operation.
    Bulk,
    /// Always pages.
    Paged,
}

/// A Shopify resource the source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShopifyStream {
    /// Customers, as Cohort's customers.
    Customers,
    /// Orders, as Cohort's orders.
    Orders,
    /// Abandoned checkouts, as `cart_abandoned` events.
    AbandonedCheckouts,
}

impl ShopifyStream {
    /// The Cohort stream it is read into.
    pub fn stream(self) -> Stream {
        match self {
            ShopifyStream::Customers => Stream::Customers,
            ShopifyStream::Orders => Stream::Orders,
            ShopifyStream::AbandonedCheckouts => Stream::Events,
        }
    }

    /// The Shopify resource behind a Cohort stream.
    pub fn of(stream: Stream) -> Option<ShopifyStream> {
        match stream {
            Stream::Customers => Some(ShopifyStream::Customers),
            Stream::Orders => Some(ShopifyStream::Orders),
            Stream::Events => Some(ShopifyStream::AbandonedCheckouts),
        }
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            ShopifyStream::Customers => "customers",
            ShopifyStream::Orders => "orders",
            ShopifyStream::AbandonedCheckouts => "abandoned_checkouts",
        }
    }
}

/// A config checked on its own: the shop's domain completed, the endpoint built.
#[derive(Debug, Clone)]
pub struct Valid {
    /// `my-shop.myshopify.com`.
    pub shop: String,
    /// The token.
    pub access_token: String,
    /// `YYYY-MM` or `unstable`.
    pub api_version: String,
    /// `https://my-shop.myshopify.com`, or `base_url`.
    pub base: String,
    /// How first syncs read.
    pub initial_sync: InitialSync,
    /// See [`Config::bulk_threshold`].
    pub bulk_threshold: u64,
    /// The streams read.
    pub streams: Vec<ShopifyStream>,
    /// See [`Config::timeout_secs`].
    pub timeout: std::time::Duration,
}

impl Valid {
    /// The GraphQL endpoint's path under [`base`](Self::base).
    pub fn graphql_path(&self) -> String {
        format!("/admin/api/{}/graphql.json", self.api_version)
    }

    /// How many bulk queries the shop runs at once: one before 2026-01, five since.
    pub fn bulk_slots(&self) -> u32 {
        if self.api_version == "unstable" || self.api_version.as_str() >= "2026-01" {
            5
        } else {
            1
        }
    }
}

impl Config {
    /// Every problem the config has on its own, each at its path.
    pub fn validate(&self) -> Result<Valid, PluginError> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: path.to_owned(),
                message,
            });
        };
        let mut shop = self.shop.trim().to_ascii_lowercase();
        for prefix in ["https://", "http://"] {
            if let Some(rest) = shop.strip_prefix(prefix) {
                shop = rest.trim_end_matches('/').to_owned();
            }
        }
        if !shop.contains('.') && !shop.is_empty() {
            shop.push_str(".myshopify.com");
        }
        let name_ok = !shop.is_empty()
            && shop
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name_ok {
            bad(
                "/shop",
                format!(
                    "`{}` is not a shop domain; give it as `my-shop.myshopify.com`",
                    self.shop
                ),
            );
        }
        if self.access_token.trim().is_empty() {
            bad(
                "/access_token",
                "is empty; give the custom app's Admin API access token \
                 (`${env:SHOPIFY_ACCESS_TOKEN}`)"
                    .into(),
            );
        }
        let v = self.api_version.as_str();
        let version_ok = v == "unstable"
            || (v.len() == 7
                && v.as_bytes()[4] == b'-'
                && v[..4].bytes().all(|b| b.is_ascii_digit())
                && matches!(&v[5..], "01" | "04" | "07" | "10"));
        if !version_ok {
            bad(
                "/api_version",
                format!(
                    "`{v}` is not an Admin API version; versions are `YYYY-01`, `-04`, `-07` or \
                     `-10` (such as {DEFAULT_API_VERSION}), or `unstable`"
                ),
            );
        }
        if let Some(base) = &self.base_url
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            bad(
                "/base_url",
                "needs an http:// or https:// URL, such as https://my-shop.myshopify.com".into(),
            );
        }
        for (i, s) in self.streams.iter().enumerate() {
            if self.streams[..i].contains(s) {
                bad(
                    &format!("/streams/{i}"),
                    format!("`{}` is listed twice", s.name()),
                );
            }
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        let base = self
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{shop}"));
        Ok(Valid {
            shop,
            access_token: self.access_token.clone(),
            api_version: self.api_version.clone(),
            base: base.trim_end_matches('/').to_owned(),
            initial_sync: self.initial_sync,
            bulk_threshold: self.bulk_threshold,
            streams: self.streams.clone(),
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 600)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let c = config(serde_json::json!({
            "shop": "my shop!",
            "access_token": " ",
            "api_version": "2025-02",
            "base_url": "localhost:1234",
            "streams": ["orders", "orders"],
        }));
        let Err(PluginError::Config(issues)) = c.validate() else {
            panic!("accepted");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/shop",
                "/access_token",
                "/api_version",
                "/base_url",
                "/streams/1"
            ]
        );
    }

    #[test]
    fn the_defaults_read_every_stream_of_the_shop_at_the_checked_version() {
        let c = config(serde_json::json!({"shop": "acme", "access_token": "shpat_x"}));
        let v = c.validate().unwrap();
        assert_eq!(v.shop, "acme.myshopify.com");
        assert_eq!(v.base, "https://acme.myshopify.com");
        assert_eq!(v.graphql_path(), "/admin/api/2025-01/graphql.json");
        assert_eq!(v.initial_sync, InitialSync::Auto);
        assert_eq!(v.bulk_threshold, 10_000);
        assert_eq!(v.streams.len(), 3);
        assert_eq!(v.bulk_slots(), 1);
    }

    #[test]
    fn from_2026_01_a_shop_runs_five_bulk_queries() {
        let c = config(serde_json::json!({
            "shop": "acme.myshopify.com", "access_token": "t", "api_version": "2026-01",
            "base_url": "http://127.0.0.1:9/",
        }));
        let v = c.validate().unwrap();
        assert_eq!(v.bulk_slots(), 5);
        assert_eq!(v.base, "http://127.0.0.1:9");
    }
}
