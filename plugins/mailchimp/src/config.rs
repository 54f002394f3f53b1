//! The destination's config: as written (serde and schemars: the doc comments are the schema's
//! descriptions), then checked by a pure function that collects every problem, each at its
//! path. The data centre comes from the key's `-usN` suffix, as Mailchimp's own clients take it.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `mailchimp` destination.
///
/// ```toml
/// config = { api_key = "${env:MAILCHIMP_API_KEY}", list_id = "a1b2c3d4e5" }
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A Mailchimp API key (Account → Extras → API keys). It ends in the account's data
    /// centre, `-us6` say, which gives the default `base_url`. Secret: never shown.
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_key: String,
    /// The audience (list) id: Audience → Settings → "Audience name and defaults".
    #[schemars(length(min = 1))]
    pub list_id: String,
    /// The API's base URL (default `https://<dc>.api.mailchimp.com/3.0`, the data centre taken
    /// from the key); another only to test against a fake.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Above this many operations in one batch, changes go through `POST /batches` (one
    /// asynchronous job, polled until it finishes) instead of member by member.
    #[serde(default = "default_batch_threshold")]
    #[schemars(range(min = 1))]
    pub batch_threshold: usize,
    /// Members per `POST /batches` job.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: usize,
    /// Seconds between two polls of a batch job.
    #[serde(default = "default_poll_interval")]
    #[schemars(range(min = 0, max = 300))]
    pub poll_interval: u64,
    /// Seconds a push waits for a batch job before its operations are retried (the job's id
    /// is kept: the retry waits for the same job instead of submitting it again).
    #[serde(default = "default_batch_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub batch_timeout: u64,
    /// New members are added `pending` (Mailchimp sends its own confirmation email) instead
    /// of `subscribed`. Default false: Cohort pushes only customers who gave email consent.
    #[serde(default)]
    pub double_opt_in: bool,
    /// The merge tag of each campaign field (`{ first_name = "FNAME" }`). A field not named
    /// here goes to its name upper-cased (`country` → `COUNTRY`); `email` is the address.
    #[serde(default)]
    pub merge_fields: BTreeMap<String, String>,
    /// Requests in flight at once: batch jobs submitted and polled side by side (twice this
    /// many jobs are in progress, as a job waiting for its next poll holds no connection), or
    /// members changed side by side. Mailchimp allows 10 simultaneous connections per account
    /// (one more is a 429), so lower it when something else uses the same account at the same
    /// time.
    #[serde(default = "default_connections")]
    #[schemars(range(min = 1, max = 10))]
    pub connections: usize,
    /// Seconds Mailchimp has to answer one request.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout: u64,
}

fn default_batch_threshold() -> usize {
    500
}
fn default_batch_size() -> usize {
    1000
}
fn default_poll_interval() -> u64 {
    5
}
fn default_batch_timeout() -> u64 {
    600
}
fn default_connections() -> usize {
    MAX_CONNECTIONS
}
fn default_timeout() -> u64 {
    30
}

/// Mailchimp's limit of simultaneous connections per account.
pub const MAX_CONNECTIONS: usize = 10;

/// The usual merge tags of the fields a campaign most often sends.
const KNOWN_TAGS: &[(&str, &str)] = &[
    ("first_name", "FNAME"),
    ("last_name", "LNAME"),
    ("phone", "PHONE"),
    ("birthday", "BIRTHDAY"),
];

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The key, as given.
    pub api_key: String,
    /// The data centre (`us6`).
    pub data_centre: String,
    /// The list.
    pub list_id: String,
    /// The API's base URL, without a trailing slash.
    pub base_url: String,
    /// Operations above which batches go through `POST /batches`.
    pub batch_threshold: usize,
    /// Members per batch job.
    pub batch_size: usize,
    /// Between two polls.
    pub poll_interval: Duration,
    /// Longest wait for a job in one push.
    pub batch_timeout: Duration,
    /// `pending` instead of `subscribed` for new members.
    pub double_opt_in: bool,
    /// Field → merge tag, the defaults included.
    pub merge_fields: BTreeMap<String, String>,
    /// Requests in flight at once, 1 to [`MAX_CONNECTIONS`].
    pub connections: usize,
    /// Per request.
    pub timeout: Duration,
}

impl Validated {
    /// The merge tag a campaign field goes to: configured, a usual one, or its name
    /// upper-cased; `Err` when that is not a tag Mailchimp accepts.
    pub fn merge_tag(&self, field: &str) -> Result<String, String> {
        if let Some(tag) = self.merge_fields.get(field) {
            return Ok(tag.clone());
        }
        let tag = field.to_ascii_uppercase();
        match bad_tag(&tag) {
            None => Ok(tag),
            Some(why) => Err(format!(
                "field `{field}`: {why}; name its merge tag in the destination's \
                 `merge_fields` ({{ {field} = \"TAG\" }})"
            )),
        }
    }
}

/// The data centre a key names (`…-us6` → `us6`).
pub fn data_centre(api_key: &str) -> Option<&str> {
    let (_, dc) = api_key.trim().rsplit_once('-')?;
    let ok = dc.len() > 2
        && dc.is_char_boundary(2)
        && dc[..2].chars().all(|c| c.is_ascii_lowercase())
        && dc[2..].chars().all(|c| c.is_ascii_digit());
    ok.then_some(dc)
}

/// Why `tag` cannot be a merge tag (Mailchimp: up to 10 characters, letters, digits, `_`).
fn bad_tag(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.len() > 10 {
        return Some(format!(
            "`{tag}` is not a merge tag: Mailchimp's have 1 to 10 characters"
        ));
    }
    if !tag
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Some(format!(
            "`{tag}` is not a merge tag: upper-case letters, digits and `_` only"
        ));
    }
    None
}

impl Config {
    /// Checks what the schema cannot: the key's data centre, the URL, the merge tags.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: path.to_owned(),
                message,
            });
        };
        let dc = data_centre(&self.api_key).map(str::to_owned);
        if self.api_key.trim().is_empty() {
            bad(
                "/api_key",
                "is empty; give a Mailchimp API key (`${env:MAILCHIMP_API_KEY}`)".into(),
            );
        } else if dc.is_none() {
            bad(
                "/api_key",
                "does not end in its data centre (`-us6`, say): copy the whole key from \
                 Mailchimp"
                    .into(),
            );
        }
        if self.list_id.trim().is_empty() || self.list_id.contains(['/', '?', '#', ' ']) {
            bad(
                "/list_id",
                "is not an audience id (Audience → Settings shows it, like `a1b2c3d4e5`)".into(),
            );
        }
        if let Some(url) = &self.base_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bad(
                "/base_url",
                "needs an http:// or https:// URL, such as https://us6.api.mailchimp.com/3.0"
                    .into(),
            );
        }
        for (field, tag) in &self.merge_fields {
            if let Some(why) = bad_tag(tag) {
                bad(&format!("/merge_fields/{field}"), why);
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            bad(
                "/connections",
                format!(
                    "is {}; Mailchimp allows 1 to {MAX_CONNECTIONS} simultaneous connections \
                     per account (more are refused with a 429)",
                    self.connections
                ),
            );
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        let data_centre = dc.unwrap_or_default();
        let base_url = self
            .base_url
            .unwrap_or_else(|| format!("https://{data_centre}.api.mailchimp.com/3.0"))
            .trim_end_matches('/')
            .to_owned();
        let mut merge_fields: BTreeMap<String, String> = KNOWN_TAGS
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect();
        merge_fields.extend(self.merge_fields);
        Ok(Validated {
            api_key: self.api_key.trim().to_owned(),
            data_centre,
            list_id: self.list_id.trim().to_owned(),
            base_url,
            batch_threshold: self.batch_threshold,
            batch_size: self.batch_size.max(1),
            poll_interval: Duration::from_secs(self.poll_interval),
            batch_timeout: Duration::from_secs(self.batch_timeout),
            double_opt_in: self.double_opt_in,
            merge_fields,
            connections: self.connections,
            timeout: Duration::from_secs(self.timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_data_centre_comes_from_the_key_and_gives_the_base_url() {
        let c = config(serde_json::json!({"api_key": "0123abcd-us6", "list_id": "L1"}))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.data_centre, "us6");
        assert_eq!(c.base_url, "https://us6.api.mailchimp.com/3.0");
        assert_eq!(c.connections, 10, "Mailchimp's limit by default");
        assert_eq!(data_centre("abc-us21"), Some("us21"));
        assert_eq!(data_centre("abc"), None);
        assert_eq!(data_centre("abc-6"), None);
        assert_eq!(data_centre("abc-usx"), None);
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let c = config(serde_json::json!({
            "api_key": "0123abcd",
            "list_id": "a b",
            "base_url": "us6.api.mailchimp.com",
            "merge_fields": {"first_name": "fname", "loyalty": "LOYALTYPOINTS"},
            "connections": 11,
        }));
        let Err(PluginError::Config(issues)) = c.validate() else {
            panic!("accepted");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api_key",
                "/list_id",
                "/base_url",
                "/merge_fields/first_name",
                "/merge_fields/loyalty",
                "/connections"
            ]
        );
        assert!(!format!("{issues:?}").contains("0123abcd"), "{issues:?}");
    }

    #[test]
    fn connections_must_be_within_mailchimps_limit_of_ten() {
        for (n, ok) in [(0, false), (1, true), (10, true), (11, false)] {
            let c =
                config(serde_json::json!({"api_key": "k-us1", "list_id": "L1", "connections": n}));
            match c.validate() {
                Ok(v) => assert!(ok && v.connections == n, "{n} accepted"),
                Err(PluginError::Config(issues)) => {
                    assert!(!ok, "{n} refused: {issues:?}");
                    assert_eq!(issues[0].path, "/connections");
                    assert!(issues[0].message.contains("1 to 10"), "{issues:?}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn fields_go_to_configured_usual_or_upper_cased_merge_tags() {
        let c = config(serde_json::json!({
            "api_key": "k-us1", "list_id": "L1", "merge_fields": {"tier": "LOYALTY"}
        }))
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.merge_tag("tier").as_deref(), Ok("LOYALTY"));
        assert_eq!(c.merge_tag("first_name").as_deref(), Ok("FNAME"));
        assert_eq!(c.merge_tag("country").as_deref(), Ok("COUNTRY"));
        let err = c.merge_tag("total_spent_eur").unwrap_err();
        assert!(
            err.contains("total_spent_eur") && err.contains("merge_fields"),
            "{err}"
        );
    }
}
