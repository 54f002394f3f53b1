//! `cohort daemon`: runs every workspace's jobs on their schedules, and serves the HTTP API.
//!
//! Three loops share one [`Daemon`]:
//!
//! - the planner ([`plan`]) turns ticks that fell due into queued run rows (one per tick,
//!   whatever the number of daemons), following each job's misfire policy;
//! - the workers ([`work`]) claim queued runs, at most `[server] workers` at once, run them
//!   through the engine under a lease, and settle them: retried with backoff, timed out,
//!   or given back;
//! - the HTTP API (`cohort-server`) reads runs and the config, queues manual runs and asks
//!   for reloads.
//!
//! Signals: SIGTERM (and Ctrl-C) drains (stop claiming, let running jobs finish within
//! `[server] shutdown_grace`, cancel the rest and give their runs back), SIGHUP reloads the
//! config (a config with problems is rejected with them, and the old one keeps running).
//!
//! A job that fails or panics is recorded and the daemon goes on: each run is its own task,
//! and a panic is caught at its edge.

mod plan;
mod work;

pub(crate) mod logs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use cohort_config::Config;
use cohort_engine::{Engine, SystemClock};
use cohort_plugin_host::CancellationToken;
use cohort_server::{Control, Metrics};
use cohort_store::{Owner, RunId, Store};
use tokio::sync::{Notify, Semaphore};

use self::logs::LogFormat;

/// `cohort daemon` arguments.
#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Config file or folder: every workspace in it is scheduled.
    #[arg(long, short, value_name = "PATH")]
    config: PathBuf,
    /// Where the HTTP API listens (`host:port`) [default: `[server] listen`, else
    /// 127.0.0.1:8686].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// How log lines are written on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How long a run's lease lasts without a heartbeat, in seconds: how soon another daemon
    /// takes over the runs of a daemon that died.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    lease: u64,
}

/// Where the API listens when neither `--listen` nor `[server] listen` says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8686";

/// What the daemon's loops share.
pub(crate) struct Daemon {
    path: PathBuf,
    config: RwLock<Arc<Config>>,
    engine: Engine,
    owner: Owner,
    lease: Duration,
    metrics: Arc<Metrics>,
    /// Set by SIGTERM: claim nothing more.
    draining: AtomicBool,
    /// Wakes the workers' claim loop (a run was queued, a worker came free).
    wake: Notify,
    /// Wakes the planner (config reloaded).
    replan: Notify,
    /// Cancellation of each running run, for the drain.
    running: Mutex<HashMap<RunId, CancellationToken>>,
    in_flight: AtomicUsize,
    idle: Notify,
    workers: Workers,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn store(&self) -> &Store {
        self.engine.store()
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The ids of the workspaces this daemon serves.
    pub(crate) fn workspace_ids(&self) -> Vec<String> {
        self.config()
            .workspaces
            .iter()
            .map(|w| w.id.clone())
            .collect()
    }

    /// Reads the config again and checks it as a run would; keeps the old one on any problem.
    fn reload_config(&self) -> Result<(), Vec<String>> {
        let loaded = cohort_config::load(&self.path).map_err(|d| {
            d.iter()
                .map(|p| cohort_config::mask::redact(&p.to_string()).into_owned())
                .collect::<Vec<_>>()
        });
        let checked = loaded.and_then(|config| {
            let mut problems = Vec::new();
            for w in &config.workspaces {
                for p in self.engine.check(w).iter() {
                    problems.push(cohort_config::mask::redact(&p.to_string()).into_owned());
                }
            }
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(problems)
            }
        });
        match checked {
            Ok(config) => {
                let workspaces = config.workspaces.len();
                self.workers.resize(config.server.workers);
                *self
                    .config
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
                self.metrics
                    .add("cohort_config_reloads_total", &[("result", "ok")], 1);
                tracing::info!(workspaces, "Config reloaded");
                self.replan.notify_one();
                self.wake.notify_one();
                Ok(())
            }
            Err(problems) => {
                self.metrics
                    .add("cohort_config_reloads_total", &[("result", "rejected")], 1);
                tracing::error!(
                    problems = problems.join("; "),
                    "Config reload rejected; the old config keeps running"
                );
                Err(problems)
            }
        }
    }
}

/// The worker slots: `[server] workers` permits, resized by a reload.
///
/// Growing adds permits at once. Shrinking retires the free slots at once, but cannot take
/// the ones running runs hold: a task waits for those to come free and retires them, and
/// meanwhile the claim loop, queued behind it (tokio's semaphore is fair), claims nothing new.
/// Resizes add up in any order: once the runs started before them end, there are as many
/// slots as last configured.
struct Workers {
    slots: Arc<Semaphore>,
    configured: Mutex<usize>,
}

impl Workers {
    fn new(n: usize) -> Workers {
        Workers {
            slots: Arc::new(Semaphore::new(n)),
            configured: Mutex::new(n),
        }
    }

    /// Takes a slot for one run, waiting for one to come free.
    async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Takes a free slot, if there is one, without waiting.
    fn try_acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Sets the number of slots to `n`.
    fn resize(&self, n: usize) {
        let mut configured = self
            .configured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was = *configured;
        if n == was {
            return;
        }
        *configured = n;
        if n > was {
            self.slots.add_permits(n - was);
        } else {
            // The free slots go at once, so that the claim loop cannot take one meanwhile;
            // the others as their runs end.
            let busy = (was - n) - self.slots.forget_permits(was - n);
            if busy > 0 {
                let slots = self.slots.clone();
                let busy = u32::try_from(busy).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(retired) = slots.acquire_many_owned(busy).await {
                        retired.forget();
                    }
                });
            }
        }
        tracing::info!(from = was, to = n, "Workers resized");
    }
}

/// The API's view of the daemon.
struct ApiControl(Arc<Daemon>);

impl Control for ApiControl {
    fn config(&self) -> Arc<Config> {
        self.0.config()
    }

    fn reload(&self) -> Result<(), Vec<String>> {
        self.0.reload_config()
    }

    fn queued(&self) {
        self.0.wake.notify_one();
    }
}

pub(crate) fn run(args: &DaemonArgs) -> Result<std::process::ExitCode> {
    logs::init(args.log_format);
    let config = crate::cmd::load_config(&args.config)?;
    let runtime = crate::cmd::runtime()?;
    runtime.block_on(serve(args, config))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(args: &DaemonArgs, config: Config) -> Result<()> {
    let lease = Duration::from_secs(args.lease.max(1));
    let engine = Engine::open(&config, Arc::new(SystemClock))
        .await
        .context("starting the daemon")?
        .with_lease(lease);
    let problems: Vec<String> = config
        .workspaces
        .iter()
        .flat_map(|w| {
            engine
                .check(w)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    if !problems.is_empty() {
        anyhow::bail!(
            "{} problem(s) in the config:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    for w in &config.workspaces {
        engine.workspace(w).await?;
    }
    let owner = Owner::current();
    let registration = engine
        .store()
        .register_daemon(&owner, lease, chrono::Utc::now())
        .await
        .context("registering the daemon in the store")?;
    let listen = args
        .listen
        .clone()
        .or_else(|| config.server.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let workers = config.server.workers;
    let grace = config.server.shutdown_grace;
    let daemon = Arc::new(Daemon {
        path: args.config.clone(),
        config: RwLock::new(Arc::new(config)),
        engine,
        owner,
        lease,
        metrics: Arc::new(Metrics::default()),
        draining: AtomicBool::new(false),
        wake: Notify::new(),
        replan: Notify::new(),
        running: Mutex::new(HashMap::new()),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        workers: Workers::new(workers),
    });

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let router = cohort_server::router(
        daemon.store().clone(),
        Arc::new(ApiControl(daemon.clone())),
        daemon.metrics.clone(),
    );
    let api = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "The HTTP API stopped");
        }
    });
    tracing::info!(
        listen = %addr,
        workers,
        owner = %daemon.owner,
        backend = ?daemon.store().backend(),
        "Daemon started"
    );

    let planner = tokio::spawn(plan::run(daemon.clone()));
    let claimer = tokio::spawn(work::claim_loop(daemon.clone()));
    let beat = tokio::spawn(heartbeat(daemon.clone(), registration.clone()));

    signals(&daemon).await?;

    // Drain: claim nothing more, let running jobs finish within the grace period.
    daemon.draining.store(true, Ordering::SeqCst);
    daemon.wake.notify_waiters();
    daemon.replan.notify_waiters();
    let running = daemon.in_flight.load(Ordering::SeqCst);
    tracing::info!(
        running,
        grace_seconds = grace.as_secs(),
        "Draining: no new runs; waiting for running ones"
    );
    if tokio::time::timeout(grace, wait_idle(&daemon))
        .await
        .is_err()
    {
        let left: Vec<CancellationToken> = daemon
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        tracing::warn!(
            runs = left.len(),
            "Grace period over: cancelling the runs left and giving them back"
        );
        for c in left {
            c.cancel();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), wait_idle(&daemon)).await;
    }
    planner.abort();
    claimer.abort();
    beat.abort();
    api.abort();
    if let Err(e) = daemon.store().unregister_daemon(&registration).await {
        tracing::warn!(error = %e, "Could not remove the daemon from the store's list");
    }
    tracing::info!("Daemon stopped");
    Ok(())
}

async fn wait_idle(daemon: &Daemon) {
    loop {
        let idle = daemon.idle.notified();
        if daemon.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        idle.await;
    }
}

/// Waits for SIGTERM or Ctrl-C, reloading on each SIGHUP meanwhile.
async fn signals(daemon: &Arc<Daemon>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received");
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("Interrupted");
                return Ok(());
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the config");
                let d = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || d.reload_config()).await;
            }
        }
    }
}

/// Keeps the daemon listed in the store, and the queue gauges fresh.
async fn heartbeat(daemon: Arc<Daemon>, registration: cohort_store::DaemonLease) {
    let every = (daemon.lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let now = chrono::Utc::now();
        match daemon.store().daemon_heartbeat(&registration, now).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                "The daemon's registration was taken over (it was silent longer than its lease)"
            ),
            Err(e) => tracing::warn!(error = %e, "Daemon heartbeat failed"),
        }
        match daemon
            .store()
            .queue_depth(&daemon.workspace_ids(), now)
            .await
        {
            Ok(n) => daemon.metrics.set("cohort_queue_depth", &[], n as f64),
            Err(e) => tracing::warn!(error = %e, "Reading the queue depth failed"),
        }
        let held = daemon
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        daemon.metrics.set("cohort_leases_held", &[], held as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Workers;

    /// Whether a slot can be taken now.
    async fn free(workers: &Workers) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(Duration::from_millis(50), workers.acquire())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_reload_that_raises_workers_lets_more_runs_start_at_once() {
        let workers = Workers::new(1);
        let _running = free(&workers).await.expect("one slot");
        assert!(free(&workers).await.is_none(), "one worker, busy");
        workers.resize(3);
        let _second = free(&workers).await.expect("a second slot at once");
        let _third = free(&workers).await.expect("a third slot at once");
        assert!(free(&workers).await.is_none(), "three workers, all busy");
    }

    #[tokio::test]
    async fn a_reload_that_lowers_workers_lets_running_runs_finish_and_starts_fewer_after() {
        let workers = Workers::new(3);
        let a = free(&workers).await.expect("slot");
        let b = free(&workers).await.expect("slot");
        workers.resize(1);
        // Two runs still hold their slots, and the third slot is retired: nothing starts.
        assert!(free(&workers).await.is_none(), "no slot while shrinking");
        drop(a);
        assert!(free(&workers).await.is_none(), "still shrinking");
        drop(b);
        let only = free(&workers).await.expect("the one slot left");
        assert!(free(&workers).await.is_none(), "one worker now");
        drop(only);
        // A later raise adds to what is configured, not to what was free.
        workers.resize(2);
        let _x = free(&workers).await.expect("slot");
        let _y = free(&workers).await.expect("slot");
        assert!(free(&workers).await.is_none(), "two workers");
    }
}
