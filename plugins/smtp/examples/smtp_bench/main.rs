//! The driver of `cargo xtask bench email` (SMTP part): sends `--messages` messages (50,000 by
//! default) through the smtp plugin, built as the library Cohort loads and driven through the
//! ABI, in batches of 500 as Cohort pushes them, to a real SMTP server on 127.0.0.1: the
//! tests' aiosmtpd (counting only) and the Rust sink of `sink.rs`, so the table shows whether
//! the server is the ceiling. Prints one JSON line per server and `--connections` setting.
//!
//! The sent-ledger is an in-memory state store here: the figure is the plugin and the SMTP
//! exchange, not the database Cohort keeps the ledger in.
//!
//! Usage: smtp_bench [--messages N] [--connections 1,4] [--servers aiosmtpd,sink]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod sink;
#[path = "../../tests/support/mod.rs"]
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
    let servers = arg("--servers", "aiosmtpd,sink");
    let release = !cfg!(debug_assertions);
    let plugin = LoadedPlugin::load(build_cdylib("cohort-plugin-smtp", release).unwrap()).unwrap();
    let ops: Vec<_> = (0..messages)
        .map(|i| send(i, &format!("c{i}@example.com")))
        .collect();
    for server in servers.split(',') {
        for &n in &connections {
            // Each run has its own server, so the counts below are this run's.
            let (port, _python, sink) = match server {
                "aiosmtpd" => {
                    let s = SmtpServer::start(&["--count-only"]);
                    (s.port, Some(s), None)
                }
                "sink" => {
                    let s = sink::Sink::start();
                    (s.port, None, Some(s))
                }
                other => panic!("no server named {other}: aiosmtpd or sink"),
            };
            let state = Arc::new(MemState::default());
            let config = json!({"host": "127.0.0.1", "port": port, "tls": "none",
                                "connections": n, "timeout": 30});
            let mut instance = plugin
                .open(&config, HostServices::default().with_state(state.clone()))
                .unwrap();
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
            drop(instance);
            assert_eq!(ok, messages, "every message must be accepted");
            assert_eq!(state.0.lock().unwrap().len(), messages);
            if let Some(sink) = &sink {
                assert_eq!(
                    sink.accepted(),
                    messages as u64,
                    "the sink got each one once"
                );
            }
            println!(
                "{}",
                json!({"part": "smtp", "server": server, "connections": n,
                       "messages": messages, "seconds": seconds,
                       "per_second": messages as f64 / seconds, "release": release})
            );
        }
    }
}
