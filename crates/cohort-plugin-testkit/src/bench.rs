//! Benchmarks of destination plugins, driven as the engine drives them: the plugin built in
//! release and loaded as the library Cohort loads, the host's shared HTTP service, and the
//! audience handed over in host batches, one push after another (or as many at once as the
//! plugin takes, each on an instance of its own, as a run hands them).
//!
//! Every vendor's bench example (`cargo xtask bench email`, `… ads`) measures its own limit
//! against its own fake; what they share, and must do alike for their figures to compare, is
//! here: how the batches are cut and how the pushes are timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use cohort_plugin_api::wire::{Batch, DestinationMode, Operation, OutcomeStatus};
use cohort_plugin_host::{HostServices, HttpService, LoadedPlugin};
use serde_json::Value;

/// A destination plugin built in release and loaded.
#[derive(Debug)]
pub struct DestinationBench {
    plugin: LoadedPlugin,
}

/// What one series of pushes did.
#[derive(Debug, Clone, Copy)]
pub struct Pushed {
    /// From the first push to the last answer.
    pub seconds: f64,
    /// Operations answered ok.
    pub ok: usize,
    /// When the first push started and the last one ended, on the wall clock (for fakes that
    /// count in calendar windows).
    pub started_at: SystemTime,
    /// See `started_at`.
    pub ended_at: SystemTime,
}

impl DestinationBench {
    /// Builds `package`'s `cdylib` in release and loads it.
    ///
    /// # Panics
    /// When it cannot be built or loaded: the bench cannot go on.
    pub fn load(package: &str) -> DestinationBench {
        let path =
            cohort_plugin_host::dev::build_cdylib(package, true).unwrap_or_else(|e| panic!("{e}"));
        let plugin =
            LoadedPlugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        DestinationBench { plugin }
    }

    /// The operations per push the plugin asks for (its manifest's `capabilities.batch_size`):
    /// what a run hands it when the destination's config sets no `batch_size`.
    pub fn preferred_batch(&self) -> Option<usize> {
        self.plugin
            .manifest()
            .capabilities
            .batch_size
            .and_then(|n| usize::try_from(n).ok())
    }

    /// How many pushes the plugin takes at once (its manifest's
    /// `capabilities.concurrent_pushes`, else 1): what a run keeps in flight.
    pub fn concurrent_pushes(&self) -> usize {
        self.plugin
            .manifest()
            .capabilities
            .concurrent_pushes
            .and_then(|n| usize::try_from(n).ok())
            .map_or(1, |n| n.max(1))
    }

    /// Pushes `batches` in order as a run does: one after another, or, for a plugin that takes
    /// several at once, each to the first of [`concurrent_pushes`](Self::concurrent_pushes)
    /// instances (opened with `config`) that is free.
    ///
    /// # Panics
    /// When an instance cannot be opened or a push fails as a whole: a bench measures pushes
    /// that land.
    pub fn push_all(&self, config: &Value, batches: &[Batch]) -> Pushed {
        self.push_all_at(config, batches, self.concurrent_pushes())
    }

    /// [`push_all`](Self::push_all) with `depth` pushes in flight at most (to compare with
    /// the plugin's own choice).
    ///
    /// # Panics
    /// As `push_all`.
    pub fn push_all_at(&self, config: &Value, batches: &[Batch], depth: usize) -> Pushed {
        let http = HttpService::shared().unwrap_or_else(|e| panic!("{e}"));
        let instances: Vec<_> = (0..depth.clamp(1, batches.len().max(1)))
            .map(|_| {
                self.plugin
                    .open(config, HostServices::default().with_http(http.clone()))
                    .unwrap_or_else(|e| panic!("opening the plugin: {e}"))
            })
            .collect();
        let next = AtomicUsize::new(0);
        let (started, started_at) = (Instant::now(), SystemTime::now());
        // Each worker hands its instance back, to be closed once the clock has stopped.
        let (ok, instances): (Vec<usize>, Vec<_>) = std::thread::scope(|scope| {
            let workers: Vec<_> = instances
                .into_iter()
                .map(|mut instance| {
                    let next = &next;
                    scope.spawn(move || {
                        let mut ok = 0;
                        while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let result = instance
                                .push(batch)
                                .unwrap_or_else(|e| panic!("a push failed: {e}"));
                            ok += result
                                .outcomes
                                .iter()
                                .filter(|o| o.status == OutcomeStatus::Ok)
                                .count();
                        }
                        (ok, instance)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .unzip()
        });
        let (seconds, ended_at) = (started.elapsed().as_secs_f64(), SystemTime::now());
        drop(instances);
        Pushed {
            seconds,
            ok: ok.into_iter().sum(),
            started_at,
            ended_at,
        }
    }
}

/// Operations `op(0)` to `op(n - 1)` of campaign `seed`, in host batches of `per_batch` (a
/// destination's `batch_size`) for `audience`.
pub fn host_batches(
    n: usize,
    per_batch: usize,
    mode: DestinationMode,
    audience: &str,
    op: impl Fn(usize) -> Operation,
) -> Vec<Batch> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(per_batch.max(1))
        .map(|ids| Batch {
            workspace: Some("bench".into()),
            campaign: Some("seed".into()),
            mode,
            audience: Some(audience.into()),
            replace: None,
            operations: ids.iter().map(|&i| op(i)).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_plugin_api::CustomerId;
    use cohort_plugin_api::wire::Action;

    fn op(i: usize) -> Operation {
        Operation {
            key: format!("k{i}"),
            action: Action::Upsert,
            customer_id: CustomerId::new(i.to_string()),
            customer: None,
            payload: Value::Null,
            previous: Value::Null,
            message: None,
        }
    }

    #[test]
    fn host_batches_cover_every_operation_once_in_order_with_a_short_last_batch() {
        let batches = host_batches(25, 10, DestinationMode::Mirror, "vip", op);
        let sizes: Vec<usize> = batches.iter().map(|b| b.operations.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let keys: Vec<&str> = batches
            .iter()
            .flat_map(|b| b.operations.iter().map(|o| o.key.as_str()))
            .collect();
        let expected: Vec<String> = (0..25).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, expected);
        assert!(
            batches
                .iter()
                .all(|b| b.audience.as_deref() == Some("vip") && b.mode == DestinationMode::Mirror)
        );
    }
}
