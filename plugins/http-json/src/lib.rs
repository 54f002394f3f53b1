//! `http-json`: a source of customers, orders and events from any paged JSON API.
//!
//! The model of an HTTP source built only on the SDK's connector toolkit: [`config`] says where
//! each stream is and how it pages, [`client`] asks for a page and reads one (the SDK's
//! `Paged`), [`mapping`] turns a vendor record into a canonical one through JSON Pointers, and
//! the SDK's `Pager` does the rest: vendor pages into host pages, cursors that resume on the
//! exact record, and a watermark (newest `updated_at`, ties broken by id) so each run reads only
//! what changed.

pub mod client;
pub mod config;
pub mod mapping;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::Cursor;

use crate::client::Api;
use crate::config::Config;

/// The example `cohort plugins check` runs: three streams, three ways of paging, canned pages.
const EXAMPLE: &str = include_str!("example.json");

/// The http-json source.
#[derive(Debug)]
pub struct HttpJson {
    api: Api,
    pager: Pager<String>,
}

impl Plugin for HttpJson {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            // A broken example.json fails this crate's conformance test, never a user's run.
            example: serde_json::from_str(EXAMPLE).ok(),
            ..Manifest::source("http-json", env!("CARGO_PKG_VERSION"))
                .description("Customers, orders and events from any paged JSON API, incremental")
                .streams(Stream::ALL)
                .incremental()
                .config_schema_of::<Config>()
        }
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        config.validate()?;
        Ok(HttpJson {
            api: Api::new(host, config),
            pager: Pager::new(host).incremental(),
        })
    }
}

impl Source for HttpJson {
    type Cursor = Cursor<String>;

    fn next_page(
        &mut self,
        stream: Stream,
        cursor: Option<Cursor<String>>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Cursor<String>>, PluginError> {
        if self.api.config.stream(stream).is_none() {
            // Not configured: nothing to read, and nothing to remember.
            return Ok(PageEnd {
                next_cursor: Cursor::start(None),
                done: true,
            });
        }
        self.pager.next_page(&mut self.api, stream, cursor, page)
    }
}

cohort_plugin_api::export_plugin!(source: HttpJson);
