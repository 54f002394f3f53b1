//! The API: how to ask for a page of a stream, and how to read one (the SDK's `Paged`).

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::Mark;
use serde_json::Value;

use crate::config::{Config, Paging, StreamConfig};
use crate::mapping;

/// The configured API.
#[derive(Debug)]
pub struct Api {
    client: Client,
    /// The checked config.
    pub config: Config,
}

impl Api {
    /// A client for the API, authenticated as the config says.
    pub fn new(host: Host, config: Config) -> Api {
        let mut client = Client::new(host, config.base_url.clone());
        if let Some(auth) = &config.auth {
            let value = match auth.scheme.as_deref().unwrap_or("Bearer") {
                "" => auth.token.clone(),
                scheme => format!("{scheme} {}", auth.token),
            };
            let header = auth.header.as_deref().unwrap_or("Authorization");
            client = client.secret_header("/auth/token", header, &value);
        }
        Api { client, config }
    }

    /// The config of a stream; the source asks only for configured ones.
    fn config_of(&self, stream: Stream) -> Result<&StreamConfig, PluginError> {
        self.config
            .stream(stream)
            .ok_or_else(|| PluginError::Unsupported(format!("{stream} are not configured")))
    }
}

impl Paged for Api {
    /// A cursor, a URL or a page number, as text.
    type Token = String;

    fn request(
        &mut self,
        stream: Stream,
        token: Option<&String>,
        since: Option<&Mark>,
    ) -> Result<Request, PluginError> {
        let s = self.config_of(stream)?;
        // A next link carries its query already.
        if let (Paging::NextLink { .. } | Paging::LinkHeader, Some(url)) = (&s.paging, token) {
            return Ok(self.client.get(url));
        }
        let mut request = self.client.get(&s.path);
        for (name, value) in &s.query {
            request = request.query(name, value);
        }
        if let Some(param) = &s.since_param {
            request = request.query_opt(param, since.map(|m| m.at));
        }
        Ok(match &s.paging {
            Paging::Cursor { param, .. } => request.query_opt(param, token),
            Paging::PageNumber { param, start } => match token {
                Some(page) => request.query(param, page),
                None => request.query(param, start.unwrap_or(1)),
            },
            _ => request,
        })
    }

    fn parse(
        &mut self,
        stream: Stream,
        token: Option<&String>,
        response: Response,
    ) -> Result<VendorPage<String>, PluginError> {
        let s = self.config_of(stream)?;
        let body: Value = response.json()?;
        let Some(items) = body.pointer(&s.records).and_then(Value::as_array) else {
            return Err(PluginError::failed(format!(
                "{}: `{}` is not an array of records; the body starts: {}",
                s.path,
                s.records,
                response.excerpt()
            )));
        };
        let mut page = VendorPage::new();
        for (i, item) in items.iter().enumerate() {
            match mapping::record(stream, &s.fields, item) {
                Ok(record) => page.push(record),
                Err(why) => page.reject(format!("{} page {token:?} item {i}", s.path), why),
            }
        }
        let text_at = |pointer: &str| match body.pointer(pointer) {
            Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        page.next = match &s.paging {
            Paging::None => None,
            Paging::Cursor { field, .. } | Paging::NextLink { field } => text_at(field),
            Paging::LinkHeader => response.link("next"),
            Paging::PageNumber { start, .. } if !items.is_empty() => {
                let current = token.and_then(|t| t.parse().ok()).or(*start).unwrap_or(1);
                Some((current + 1).to_string())
            }
            Paging::PageNumber { .. } => None,
        };
        Ok(page)
    }
}
