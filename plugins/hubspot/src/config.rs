//! The source's config: as written (serde and schemars: the doc comments are the schema's
//! descriptions, and docs/connectors/hubspot.md quotes them), then checked by a pure function
//! that collects every problem. What only HubSpot can tell (does the property exist, is it a
//! boolean) is checked against its properties API on the first page, in `client`.

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// HubSpot's API, unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// Config of the `hubspot` source.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The access token of a HubSpot private app with the `crm.objects.contacts.read` and
    /// `crm.schemas.contacts.read` scopes (and `crm.objects.deals.read` for
    /// `deals_as_orders`). Secret: never shown.
    #[schemars(extend("x-cohort-secret" = true))]
    pub access_token: String,
    /// HubSpot's API (default `https://api.hubapi.com`); another only to test against a fake.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Extra contact properties (internal names, such as `company` or `hs_language`), stored as
    /// the customer's attributes under the same names: `attributes.company` in segments. Typed
    /// by HubSpot's property type: numbers, booleans, text.
    #[serde(default)]
    pub properties: Vec<String>,
    /// A boolean contact property that records explicit marketing consent (a "Marketing opt-in"
    /// checkbox). Without it nobody is taken as consenting; `hs_email_optout = true` always
    /// withdraws consent.
    #[serde(default)]
    pub consent_property: Option<String>,
    /// A multiple-checkboxes contact property whose values become the customer's tags (HubSpot
    /// separates them with `;`): interests kept in the CRM become segmentable.
    #[serde(default)]
    pub tags_property: Option<String>,
    /// Closed-won deals become orders of the deal's first associated contact (default false).
    #[serde(default)]
    pub deals_as_orders: bool,
    /// The account's HubSpot subscription, which sets its API limits: `free`, `starter`,
    /// `professional`, `enterprise`, or `api_add_on` (the API limit increase). Default `free`,
    /// the lowest; a token HubSpot limits further is paced to what its headers say.
    #[serde(default)]
    pub tier: Tier,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// A HubSpot subscription, as far as API limits go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free tools.
    #[default]
    Free,
    /// Starter.
    Starter,
    /// Professional.
    Professional,
    /// Enterprise.
    Enterprise,
    /// Any subscription with the API limit increase.
    ApiAddOn,
}

impl Tier {
    /// Requests a private app may make per 10 seconds (HubSpot's usage guidelines).
    pub fn per_ten_seconds(self) -> u32 {
        match self {
            Tier::Free | Tier::Starter => 100,
            Tier::Professional | Tier::Enterprise => 190,
            Tier::ApiAddOn => 250,
        }
    }

    /// Requests a private app may make per day. The add-on adds a million to the
    /// subscription's own limit, which the tier alone does not tell: the lowest is assumed.
    pub fn per_day(self) -> u64 {
        match self {
            Tier::Free | Tier::Starter => 250_000,
            Tier::Professional => 650_000,
            Tier::Enterprise => 1_000_000,
            Tier::ApiAddOn => 1_250_000,
        }
    }

    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Starter => "starter",
            Tier::Professional => "professional",
            Tier::Enterprise => "enterprise",
            Tier::ApiAddOn => "api_add_on",
        }
    }
}

impl Config {
    /// Every problem the config has on its own, each at its path.
    pub fn validate(&self) -> Result<(), PluginError> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: path.to_owned(),
                message,
            });
        };
        if self.access_token.trim().is_empty() {
            bad(
                "/access_token",
                "is empty; give the private app's access token (`${env:HUBSPOT_TOKEN}`)".into(),
            );
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            bad(
                "/base_url",
                format!("needs an http:// or https:// URL, such as {DEFAULT_BASE_URL}"),
            );
        }
        for (i, name) in self.properties.iter().enumerate() {
            let at = format!("/properties/{i}");
            if let Some(why) = bad_name(name) {
                bad(&at, why);
            } else if self.properties[..i].contains(name) {
                bad(&at, format!("`{name}` is listed twice"));
            } else if crate::mapping::MAPPED.contains(&name.as_str()) {
                bad(
                    &at,
                    format!("`{name}` is already mapped to a customer field; leave it out"),
                );
            }
        }
        for (path, name) in [
            ("/consent_property", &self.consent_property),
            ("/tags_property", &self.tags_property),
        ] {
            if let Some(why) = name.as_deref().and_then(bad_name) {
                bad(path, why);
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(PluginError::Config(issues))
        }
    }
}

/// Why `name` cannot be a HubSpot property's internal name, if it cannot.
fn bad_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (!ok).then(|| {
        format!(
            "`{name}` is not a property's internal name (lower-case letters, digits and `_`: \
             HubSpot shows it under the property's settings, e.g. `favourite_colour`)"
        )
    })
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
            "access_token": " ",
            "base_url": "api.hubapi.com",
            "properties": ["company", "Company", "company", "email"],
            "tags_property": "my tags",
        }));
        let Err(PluginError::Config(issues)) = c.validate() else {
            panic!("accepted");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/access_token",
                "/base_url",
                "/properties/1",
                "/properties/2",
                "/properties/3",
                "/tags_property"
            ]
        );
    }

    #[test]
    fn the_defaults_are_hubspot_and_the_lowest_tier() {
        let c = config(serde_json::json!({"access_token": "pat-na1-x"}));
        c.validate().unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.tier, Tier::Free);
        assert!(!c.deals_as_orders);
        assert_eq!(Tier::Professional.per_ten_seconds(), 190);
    }
}
