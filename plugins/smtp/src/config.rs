//! The smtp plugin's config: as written, then checked by a pure function that collects every
//! problem. Reading `ca_file` is the one piece of I/O, and happens in `open`.

use std::time::Duration;

use cohort_plugin_api::prelude::PluginError;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `smtp` destination.
///
/// ```toml
/// config = { host = "smtp.example.com", port = 587, tls = "starttls", username = "shop", password = "${env:SMTP_PASSWORD}" }
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SMTP server's host name or IP address (also the name its TLS certificate must carry).
    #[schemars(length(min = 1))]
    pub host: String,
    /// The server's port. Default: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// `starttls` (connect in clear, then upgrade; refused if the server does not offer it),
    /// `tls` (TLS from the first byte, "SMTPS") or `none` (no encryption: local relays only).
    #[serde(default)]
    pub tls: TlsMode,
    /// User name for SMTP AUTH (PLAIN or LOGIN). Without it, no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP AUTH, usually `${env:SMTP_PASSWORD}`. Never logged nor stored.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub password: Option<String>,
    /// A PEM file of extra root certificates to trust, beside the system's: a private server's
    /// own CA, or a test CA.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The most messages started per minute, across all connections (your provider's quota).
    /// Default: no limit.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_per_minute: Option<u32>,
    /// Connections kept open to the server, each sending one message at a time. They stay open
    /// between batches and are reopened when the server drops them.
    #[serde(default = "default_connections")]
    #[schemars(range(min = 1, max = 32))]
    pub connections: u32,
    /// Seconds the server has to answer each command.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout: u64,
    /// The name this client gives in EHLO (default `localhost`); some servers want the sending
    /// machine's public name.
    #[serde(default)]
    pub hello_name: Option<String>,
    /// An address that unsubscribes whoever writes to it: added to `List-Unsubscribe` as
    /// `<mailto:ADDRESS?subject=unsubscribe>`, beside the campaign's https link.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
}

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Upgrade with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// No encryption (a relay on the same host).
    None,
}

fn default_connections() -> u32 {
    2
}

fn default_timeout() -> u64 {
    30
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Encryption.
    pub tls: TlsMode,
    /// User name and password, when the server wants them.
    pub credentials: Option<(String, String)>,
    /// Extra roots, as a path.
    pub ca_file: Option<String>,
    /// Smallest gap between two message starts.
    pub pace: Option<Duration>,
    /// Parallel connections.
    pub connections: usize,
    /// Timeout per command.
    pub timeout: Duration,
    /// EHLO name.
    pub hello_name: String,
    /// The mailto unsubscribe address, when set.
    pub unsubscribe_mailto: Option<String>,
}

impl Config {
    /// Checks what the schema cannot: the host, that credentials come in pairs and never travel
    /// in clear to another machine, the mailto address.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let issue = |path: &str, message: &str| ConfigIssue {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let mut issues = Vec::new();
        let host = self.host.trim().to_owned();
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
            issues.push(issue(
                "/host",
                "a host name or IP address, without scheme or port (`smtp.example.com`)",
            ));
        }
        let credentials = match (self.username, self.password) {
            (Some(user), Some(password)) if !user.is_empty() => Some((user, password)),
            (Some(_), None) => {
                issues.push(issue("/password", "a username needs a password"));
                None
            }
            (None, Some(_)) | (Some(_), Some(_)) => {
                issues.push(issue("/username", "a password needs a username"));
                None
            }
            (None, None) => None,
        };
        let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1");
        if credentials.is_some() && self.tls == TlsMode::None && !local {
            issues.push(issue(
                "/tls",
                "`none` would send the password in clear to another machine; use `starttls` or `tls`",
            ));
        }
        if self.ca_file.as_deref().is_some_and(str::is_empty) {
            issues.push(issue("/ca_file", "must be a path to a PEM file"));
        }
        if let Some(mailto) = &self.unsubscribe_mailto {
            let ok = mailto.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !mailto.contains(['<', '>', ' ', ',', '?'])
            });
            if !ok {
                issues.push(issue(
                    "/unsubscribe_mailto",
                    "must be a plain address (`unsubscribe@shop.example`)",
                ));
            }
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        let port = self.port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        Ok(Validated {
            host,
            port,
            tls: self.tls,
            credentials,
            ca_file: self.ca_file,
            pace: self
                .max_per_minute
                .map(|n| Duration::from_secs(60) / n.max(1)),
            connections: self.connections.clamp(1, 32) as usize,
            timeout: Duration::from_secs(self.timeout),
            hello_name: self.hello_name.unwrap_or_else(|| "localhost".to_owned()),
            unsubscribe_mailto: self.unsubscribe_mailto,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Validated, PluginError> {
        serde_json::from_value::<Config>(v).unwrap().validate()
    }

    #[test]
    fn the_port_follows_the_tls_mode_unless_set() {
        let v = parse(json!({"host": "smtp.example.com"})).unwrap();
        assert_eq!((v.port, v.tls), (587, TlsMode::Starttls));
        let v = parse(json!({"host": "smtp.example.com", "tls": "tls"})).unwrap();
        assert_eq!(v.port, 465);
        let v = parse(json!({"host": "smtp.example.com", "tls": "none", "port": 2525})).unwrap();
        assert_eq!(v.port, 2525);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let PluginError::Config(issues) = parse(json!({
            "host": "smtp://x:25", "username": "shop", "unsubscribe_mailto": "nobody"
        }))
        .unwrap_err() else {
            panic!("not a config error")
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/host", "/password", "/unsubscribe_mailto"]);
    }

    #[test]
    fn a_password_never_travels_in_clear_to_another_machine() {
        let err = parse(json!({"host": "smtp.example.com", "tls": "none",
                               "username": "u", "password": "p"}))
        .unwrap_err();
        assert!(err.to_string().contains("/tls"), "{err}");
        parse(json!({"host": "127.0.0.1", "tls": "none", "username": "u", "password": "p"}))
            .unwrap();
    }

    #[test]
    fn a_quota_becomes_a_gap_between_messages() {
        let v = parse(json!({"host": "h.example", "max_per_minute": 120})).unwrap();
        assert_eq!(v.pace, Some(Duration::from_millis(500)));
    }
}
