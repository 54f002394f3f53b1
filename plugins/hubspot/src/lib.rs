//! `hubspot`: a source of customers (HubSpot CRM contacts) and orders (closed-won deals).
//!
//! Built on the SDK's connector toolkit like http-json: [`config`] is what the user writes,
//! [`client`] asks HubSpot for each page and reads it (the SDK's `Paged`: a listing for the
//! first run, search windows after it, the archived listing for deletions) and owns the limits,
//! [`mapping`] turns contacts and deals into canonical records, and the SDK's `Pager` keeps the
//! cursor: the HubSpot page being read, the offset in it, and the watermark.
//!
//! A stream's first run (a cursor without a watermark) is a *full pass*: every page carries its
//! name, taken from the pass's start, so a pass resumed after a crash keeps it, and when it ends
//! the host deletes what it did not list (contacts archived, deals no longer won).

pub mod client;
pub mod config;
pub mod mapping;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::Cursor;

use crate::client::{Api, Token};
use crate::config::Config;

/// The example `cohort plugins check` runs: a few contacts and deals, canned answers.
const EXAMPLE: &str = include_str!("example.json");

/// The hubspot source.
#[derive(Debug)]
pub struct HubSpot {
    api: Api,
    pager: Pager<Token>,
}

impl Plugin for HubSpot {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            // A broken example.json fails this crate's conformance test, never a user's run.
            example: serde_json::from_str(EXAMPLE).ok(),
            ..Manifest::source("hubspot", env!("CARGO_PKG_VERSION"))
                .description(
                    "HubSpot CRM: contacts as customers, closed-won deals as orders; \
                     incremental, paced to the account's tier",
                )
                .streams([Stream::Customers, Stream::Orders])
                .incremental()
                .config_schema_of::<Config>()
        }
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        config.validate()?;
        Ok(HubSpot {
            api: Api::new(host, config),
            pager: Pager::new(host).incremental(),
        })
    }
}

impl Source for HubSpot {
    type Cursor = Cursor<Token>;

    fn next_page(
        &mut self,
        stream: Stream,
        cursor: Option<Cursor<Token>>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Cursor<Token>>, PluginError> {
        match stream {
            Stream::Customers => {}
            Stream::Orders if self.api.deals() => {}
            Stream::Orders => {
                // `deals_as_orders` is off: nothing to read, nothing to remember.
                return Ok(PageEnd {
                    next_cursor: Cursor::start(None),
                    done: true,
                });
            }
            other => {
                return Err(PluginError::Unsupported(format!(
                    "HubSpot has no {other} stream; it reads customers and orders"
                )));
            }
        }
        self.api.prepare()?;
        let full = cursor.as_ref().is_none_or(|c| c.since.is_none());
        let end = self.pager.next_page(&mut self.api, stream, cursor, page)?;
        if full {
            // The pass's start mark is its name: the same on every page, kept by the cursor.
            let start = match end.done {
                true => end.next_cursor.since.as_ref(),
                false => end.next_cursor.seen.as_ref(),
            };
            if let Some(start) = start {
                page.full_pass(format!("hubspot-{stream}-{}", start.at.secs()))?;
            }
        }
        Ok(end)
    }
}

cohort_plugin_api::export_plugin!(source: HubSpot);
