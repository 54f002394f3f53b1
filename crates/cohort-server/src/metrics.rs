//! The daemon's metrics, written in the Prometheus text format at `/metrics`.
//!
//! A handful of counters, gauges and histograms keyed by label values, behind one mutex: the
//! daemon updates them a few times per run, far from any hot loop, so a metrics library would
//! buy nothing but compile time. Names follow Prometheus conventions: a `cohort_` prefix,
//! `_total` for counters, `_seconds` for durations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the duration histograms, in seconds.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    gauges: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// What each metric means, for `# HELP` (and the docs).
pub const HELP: &[(&str, &str, &str)] = &[
    (
        "cohort_runs_total",
        "counter",
        "Runs finished, by workspace, job and status.",
    ),
    (
        "cohort_run_duration_seconds",
        "histogram",
        "How long runs took, by workspace and job.",
    ),
    (
        "cohort_records_pulled_total",
        "counter",
        "Records pulled from sources, by workspace and plugin.",
    ),
    (
        "cohort_records_pushed_total",
        "counter",
        "Records pushed to destinations, by workspace and plugin.",
    ),
    (
        "cohort_records_skipped_total",
        "counter",
        "Records not pushed (no consent, suppressed, no address), by workspace and plugin.",
    ),
    (
        "cohort_records_failed_total",
        "counter",
        "Bad rows pulled and pushes rejected, by workspace and plugin.",
    ),
    (
        "cohort_segment_size",
        "gauge",
        "Members of each segment at its last run, by workspace and segment.",
    ),
    (
        "cohort_tick_lag_seconds",
        "histogram",
        "Start time minus scheduled time of scheduled runs, by workspace and job.",
    ),
    (
        "cohort_ticks_missed_total",
        "counter",
        "Ticks that fell due and will not run (downtime, misfire = skip), by workspace and job.",
    ),
    (
        "cohort_queue_depth",
        "gauge",
        "Queued runs whose time has come, waiting for a worker.",
    ),
    (
        "cohort_leases_held",
        "gauge",
        "Runs this daemon holds a lease on.",
    ),
    (
        "cohort_config_reloads_total",
        "counter",
        "Config reloads, by result (ok, rejected).",
    ),
];

/// The daemon's metrics. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    /// Adds `by` to counter `name` with `labels`.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let key = owned(labels);
        self.with(|i| *i.counters.entry(name).or_default().entry(key).or_default() += by);
    }

    /// Sets gauge `name` with `labels`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let key = owned(labels);
        self.with(|i| {
            i.gauges.entry(name).or_default().insert(key, value);
        });
    }

    /// Records one observation (seconds) in histogram `name`.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let key = owned(labels);
        self.with(|i| {
            let h = i
                .histograms
                .entry(name)
                .or_default()
                .entry(key)
                .or_default();
            for (n, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[n] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        });
    }

    /// The value of a counter (tests).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let key = owned(labels);
        self.with(|i| {
            i.counters
                .get(name)
                .and_then(|m| m.get(&key))
                .copied()
                .unwrap_or(0)
        })
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|i| {
            for (name, kind, help) in HELP {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                match *kind {
                    "counter" => {
                        for (labels, v) in i.counters.get(name).into_iter().flatten() {
                            let _ = writeln!(out, "{name}{} {v}", text(labels, None));
                        }
                    }
                    "gauge" => {
                        for (labels, v) in i.gauges.get(name).into_iter().flatten() {
                            let _ = writeln!(out, "{name}{} {v}", text(labels, None));
                        }
                    }
                    _ => {
                        for (labels, h) in i.histograms.get(name).into_iter().flatten() {
                            for (n, bound) in BUCKETS.iter().enumerate() {
                                let le = bound.to_string();
                                let _ = writeln!(
                                    out,
                                    "{name}_bucket{} {}",
                                    text(labels, Some(&le)),
                                    h.counts[n]
                                );
                            }
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                text(labels, Some("+Inf")),
                                h.count
                            );
                            let _ = writeln!(out, "{name}_sum{} {}", text(labels, None), h.sum);
                            let _ = writeln!(out, "{name}_count{} {}", text(labels, None), h.count);
                        }
                    }
                }
            }
        });
        out
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn text(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_in_the_prometheus_format() {
        let m = Metrics::default();
        m.add(
            "cohort_runs_total",
            &[
                ("workspace", "shop"),
                ("job", "nightly"),
                ("status", "succeeded"),
            ],
            2,
        );
        m.set("cohort_queue_depth", &[], 3.0);
        m.observe(
            "cohort_tick_lag_seconds",
            &[("workspace", "shop"), ("job", "n")],
            0.3,
        );
        let text = m.render();
        assert!(text.contains(
            "cohort_runs_total{workspace=\"shop\",job=\"nightly\",status=\"succeeded\"} 2"
        ));
        assert!(text.contains("cohort_queue_depth 3"));
        assert!(text.contains(
            "cohort_tick_lag_seconds_bucket{workspace=\"shop\",job=\"n\",le=\"0.25\"} 0"
        ));
        assert!(
            text.contains(
                "cohort_tick_lag_seconds_bucket{workspace=\"shop\",job=\"n\",le=\"0.5\"} 1"
            )
        );
        assert!(text.contains("cohort_tick_lag_seconds_count{workspace=\"shop\",job=\"n\"} 1"));
        assert!(text.contains("# TYPE cohort_run_duration_seconds histogram"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.set("cohort_segment_size", &[("segment", "a\"b")], 1.0);
        assert!(m.render().contains("segment=\"a\\\"b\""));
    }
}
