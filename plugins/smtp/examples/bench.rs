//! The driver of `cargo xtask bench email` (SMTP part): sends `--messages` messages (50,000 by
//! default) through the smtp plugin, built as the library Cohort loads and driven through the
//! ABI, to the test SMTP server (aiosmtpd, counting only) on 127.0.0.1, in batches of 500 as
//! Cohort pushes them. Prints one JSON line per `--connections` setting.
//!
//! The sent-ledger is an in-memory state store here: the figure is the plugin and the SMTP
//! exchange, not the database Cohort keeps the ledger in.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use cohort_plugin_api::wire::OutcomeStatus;
use cohort_plugin_host::{HostServices, LoadedPlugin, dev::build_cdylib};
use serde_json::json;
use support::{MemState, SmtpServer, batch, send};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let messages: usize = arg("--messages", "50000").parse().unwrap();
    let connections: Vec<u32> = arg("--connections", "1,4")
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let release = !cfg!(debug_assertions);
    let plugin = LoadedPlugin::load(build_cdylib("cohort-plugin-smtp", release).unwrap()).unwrap();
    for n in connections {
        let server = SmtpServer::start(&["--count-only"]);
        let state = Arc::new(MemState::default());
        let config = json!({"host": "127.0.0.1", "port": server.port, "tls": "none",
                            "connections": n, "timeout": 30});
        let mut instance = plugin
            .open(&config, HostServices::default().with_state(state.clone()))
            .unwrap();
        let ops: Vec<_> = (0..messages)
            .map(|i| send(i, &format!("c{i}@example.com")))
            .collect();
        let start = Instant::now();
        let mut ok = 0;
        for chunk in ops.chunks(500) {
            let result = instance.push(&batch(chunk.to_vec())).unwrap();
            ok += result
                .outcomes
                .iter()
                .filter(|o| o.status == OutcomeStatus::Ok)
                .count();
        }
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(ok, messages, "every message must be accepted");
        assert_eq!(state.0.lock().unwrap().len(), messages);
        println!(
            "{}",
            json!({"part": "smtp", "connections": n, "messages": messages, "seconds": seconds,
                   "per_second": messages as f64 / seconds, "release": release})
        );
    }
}
