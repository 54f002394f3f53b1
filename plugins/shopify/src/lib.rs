//! `shopify`: a source of customers, orders and abandoned checkouts (as `cart_abandoned` events)
//! from Shopify's GraphQL Admin API.
//!
//! Built on the SDK's connector toolkit like hubspot: [`config`] is what the user writes,
//! [`client`] asks Shopify for each page through the host's HTTP service and reads it (the SDK's
//! `Paged`), paced by [`throttle`] to the shop's query-cost bucket, [`query`] holds the GraphQL
//! and what it costs, [`bulk`] reads a large shop's first sync with a bulk operation, and
//! [`mapping`] turns Shopify's objects into canonical records, the same way for both paths. The
//! SDK's `Pager` keeps the cursor: the page (or bulk chunk) being read, the offset in it, and
//! the watermark (`updatedAt` and id).
//!
//! It must not keep its own HTTP stack, hold a whole bulk result in memory, or let the token
//! reach a message, a log line or the store.

pub mod bulk;
pub mod client;
pub mod config;
pub mod mapping;
pub mod query;
pub mod throttle;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::Cursor;

use crate::client::{Api, Token};
use crate::config::{Config, ShopifyStream};

/// The example `cohort plugins check` runs: a few customers, orders and checkouts, canned.
const EXAMPLE: &str = include_str!("example.json");

/// The shopify source.
#[derive(Debug)]
pub struct Shopify {
    api: Api,
    pager: Pager<Token>,
}

impl Plugin for Shopify {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest {
            // A broken example.json fails this crate's conformance test, never a user's run.
            example: serde_json::from_str(EXAMPLE).ok(),
            ..Manifest::source("shopify", env!("CARGO_PKG_VERSION"))
                .description(
                    "Shopify (GraphQL Admin API): customers, orders, abandoned checkouts as \
                     cart_abandoned events; incremental, paced to the shop's cost bucket, bulk \
                     operations for a large first sync",
                )
                .streams([Stream::Customers, Stream::Orders, Stream::Events])
                .incremental()
                .config_schema_of::<Config>()
        }
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let valid = config.validate()?;
        Ok(Shopify {
            api: Api::new(host, valid),
            pager: Pager::new(host).incremental(),
        })
    }
}

impl Source for Shopify {
    type Cursor = Cursor<Token>;

    fn next_page(
        &mut self,
        stream: Stream,
        cursor: Option<Cursor<Token>>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Cursor<Token>>, PluginError> {
        let wanted =
            ShopifyStream::of(stream).is_some_and(|s| self.api.config().streams.contains(&s));
        if !wanted {
            // Not in `streams`: nothing to read, nothing to remember.
            return Ok(PageEnd {
                next_cursor: cursor.unwrap_or_else(|| Cursor::start(None)),
                done: true,
            });
        }
        self.pager.next_page(&mut self.api, stream, cursor, page)
    }
}

cohort_plugin_api::export_plugin!(source: Shopify);
