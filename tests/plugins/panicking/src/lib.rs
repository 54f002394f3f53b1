//! A test plugin that misbehaves on request: it panics where its config says, or sleeps, so the
//! host's containment and timeouts can be tested against a real library.

use std::time::Duration;

use cohort_plugin_api::prelude::*;
use serde::Deserialize;

/// Where to panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PanicIn {
    /// Never: behave.
    Never,
    /// In `open`.
    Open,
    /// In `next_page`.
    NextPage,
    /// In `push`.
    Push,
    /// When the instance is dropped (closed).
    Drop,
}

/// Config.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to panic.
    #[serde(default = "never")]
    pub panic_in: PanicIn,
    /// How long each call sleeps first, in milliseconds.
    #[serde(default)]
    pub sleep_ms: u64,
    /// How many customers the source yields.
    #[serde(default = "ten")]
    pub records: u32,
}

fn never() -> PanicIn {
    PanicIn::Never
}

fn ten() -> u32 {
    10
}

/// The plugin.
#[derive(Debug)]
pub struct Panicking {
    config: Config,
    host: Host,
}

impl Drop for Panicking {
    fn drop(&mut self) {
        if self.config.panic_in == PanicIn::Drop {
            panic!("test plugin panics on close, as configured");
        }
    }
}

impl Panicking {
    fn maybe(&self, here: PanicIn) {
        if self.config.sleep_ms > 0 {
            // Sleep in slices, so a cancelled call ends early, as a good plugin does.
            let mut left = self.config.sleep_ms;
            while left > 0 && !self.host.is_cancelled() {
                std::thread::sleep(Duration::from_millis(left.min(10)));
                left = left.saturating_sub(10);
            }
        }
        if self.config.panic_in == here {
            panic!("test plugin panics in {here:?}, as configured");
        }
    }
}

impl Plugin for Panicking {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::source("test-panicking", env!("CARGO_PKG_VERSION"))
            .also(Kind::Destination)
            .description("Panics or stalls on request (tests only)")
            .streams([Stream::Customers])
            .incremental()
            .modes([DestinationMode::Upsert])
            .config_schema_of::<Config>()
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let plugin = Panicking { config, host };
        plugin.maybe(PanicIn::Open);
        Ok(plugin)
    }
}

impl Source for Panicking {
    type Cursor = u32;

    fn next_page(
        &mut self,
        _stream: Stream,
        cursor: Option<u32>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<u32>, PluginError> {
        self.maybe(PanicIn::NextPage);
        self.host.check_cancelled()?;
        let mut next = cursor.unwrap_or(0);
        while next < self.config.records && !page.is_full() {
            next += 1;
            page.push(&Customer::new(next.to_string()))?;
        }
        self.host
            .progress(u64::from(next), Some(u64::from(self.config.records)));
        Ok(PageEnd {
            next_cursor: next,
            done: next >= self.config.records,
        })
    }
}

impl Destination for Panicking {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        self.maybe(PanicIn::Push);
        let outcomes = batch
            .operations
            .into_iter()
            .map(|op| Outcome {
                key: op.key,
                status: OutcomeStatus::Ok,
            })
            .collect();
        Ok(PushResult { outcomes })
    }
}

cohort_plugin_api::export_plugin!(source + destination: Panicking);
