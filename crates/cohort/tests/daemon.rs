//! `cohort daemon` end to end: the real binary, the real csv and outbox plugins, schedules in
//! seconds, SQLite and PostgreSQL stores, signals, and the HTTP API over a real socket.
#![allow(clippy::unwrap_used, clippy::print_stderr, reason = "tests")]

mod util;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use util::Dir;
use util::pg::PgSchema;
use util::shop::{CONFIG, outbox, plugins, write_shop};

const ADMIN: &str = "admin-secret-token";
const SHOP: &str = "shop-client-token";
const OTHER: &str = "other-client-token";

/// The shop of `util::shop` with a daemon section, API tokens and a job on `schedule`.
fn config(schedule: &str) -> String {
    let shop = CONFIG.replace(
        "[workspace]\nid = \"shop\"",
        "[workspace]\nid = \"shop\"\napi_tokens = [\"${env:SHOP_TOKEN}\"]",
    );
    format!(
        "[server]\nworkers = 2\nadmin_tokens = [\"${{env:ADMIN_TOKEN}}\"]\nshutdown_grace = \"20s\"\n{shop}\n[[jobs]]\nname = \"sync\"\nschedule = \"{schedule}\"\n"
    )
}

const OTHER_WORKSPACE: &str = "[workspace]\nid = \"other\"\napi_tokens = [\"${env:OTHER_TOKEN}\"]\n\n[[jobs]]\nname = \"idle\"\n";

fn shop_dir(n: u32, schedule: &str) -> Dir {
    plugins();
    let dir = Dir::new();
    write_shop(&dir, n, &BTreeSet::new());
    std::fs::create_dir_all(dir.path("conf")).unwrap();
    dir.write(
        "conf/shop.toml",
        &config(schedule)
            .replace("base_dir = \"data\"", "base_dir = \"../data\"")
            .replace("dir = \"outbox\"", "dir = \"../outbox\""),
    );
    dir.write("conf/other.toml", OTHER_WORKSPACE);
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon process; killed (by its pid) if the test ends without stopping it.
struct Daemon {
    child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(dir: &Dir, name: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let log = dir.path(&format!("{name}.log"));
        let mut cmd = dir.command();
        cmd.args([
            "daemon",
            "--config",
            "conf",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--lease",
            "2",
        ])
        .env("ADMIN_TOKEN", ADMIN)
        .env("SHOP_TOKEN", SHOP)
        .env("OTHER_TOKEN", OTHER)
        .env_remove("COHORT_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Daemon {
            child: Some(child),
            port,
            log,
        }
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some((200, _)) = http(self.port, "GET", "/healthz", None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the daemon did not answer: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to end; its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let until = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < until {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the daemon did not stop: {}", self.log());
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (status, body) = http(self.port, "GET", path, token).unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request over a fresh connection: status and body.
fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Waits until `f` holds, or fails with `what` and the daemon's log.
fn eventually(d: &Daemon, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {limit:?}\n{}", d.log());
}

fn runs(d: &Daemon, query: &str) -> Vec<Value> {
    let (status, body) = d.get(
        &format!("/api/v1/workspaces/shop/runs?{query}"),
        Some(ADMIN),
    );
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().clone()
}

#[test]
fn a_second_daemon_on_sqlite_refuses_and_says_to_use_postgresql() {
    let dir = shop_dir(5, "0 3 * * *");
    let mut first = Daemon::start(&dir, "first", &[]);
    first.wait_ready();
    let second = dir
        .command()
        .args([
            "daemon",
            "--config",
            "conf",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("ADMIN_TOKEN", ADMIN)
        .env("SHOP_TOKEN", SHOP)
        .env("OTHER_TOKEN", OTHER)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another daemon"), "{err}");
    assert!(err.contains("one daemon per database"), "{err}");
    assert!(err.contains("use PostgreSQL"), "{err}");
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(30)), Some(0));
    assert!(first.log().contains("Daemon stopped"), "{}", first.log());
}

#[test]
fn the_api_checks_tokens_hides_other_clients_and_serves_runs_segments_and_metrics() {
    let dir = shop_dir(12, "0 3 * * *");
    let d = Daemon::start(&dir, "api", &[]);
    d.wait_ready();

    assert_eq!(d.get("/readyz", None).0, 200);
    let (status, body) = d.get("/api/v1/workspaces", None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(d.get("/api/v1/workspaces", Some("wrong")).0, 401);

    let (_, all) = d.get("/api/v1/workspaces", Some(ADMIN));
    let ids: Vec<&str> = all["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    // A config folder's files are read in name order.
    assert_eq!(ids, ["other", "shop"]);
    assert_eq!(all["workspaces"][1]["timezone"], "UTC");
    let (_, mine) = d.get("/api/v1/workspaces", Some(SHOP));
    assert_eq!(mine["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(mine["workspaces"][0]["id"], "shop");
    // Another client's workspace is not found, exactly like one that does not exist.
    let (status, hidden) = d.get("/api/v1/workspaces/other/runs", Some(SHOP));
    assert_eq!(status, 404);
    assert_eq!(hidden["error"]["code"], "not_found");
    let (_, missing) = d.get("/api/v1/workspaces/nope/runs", Some(SHOP));
    assert_eq!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nope", "other"),
        hidden["error"]["message"]
    );
    assert_eq!(d.get("/api/v1/workspaces/shop/runs", Some(OTHER)).0, 404);
    assert_eq!(
        http(
            d.port,
            "POST",
            "/api/v1/workspaces/other/jobs/idle/trigger",
            Some(SHOP)
        )
        .unwrap()
        .0,
        404
    );

    // A manual trigger queues a run; the daemon runs it.
    let (status, body) = http(
        d.port,
        "POST",
        "/api/v1/workspaces/shop/jobs/sync/trigger",
        Some(SHOP),
    )
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    eventually(
        &d,
        "the triggered run succeeds",
        Duration::from_secs(60),
        || {
            d.get(&format!("/api/v1/workspaces/shop/runs/{id}"), Some(SHOP))
                .1["status"]
                == "succeeded"
        },
    );
    let (_, run) = d.get(&format!("/api/v1/workspaces/shop/runs/{id}"), Some(SHOP));
    for field in [
        "id",
        "job",
        "status",
        "trigger",
        "scheduled_for",
        "started_at",
        "finished_at",
        "daemon",
        "summary",
        "errors",
    ] {
        assert!(run.get(field).is_some(), "{field} missing: {run}");
    }
    assert_eq!(run["trigger"], "manual");
    assert!(run["errors"].as_array().unwrap().is_empty());
    // `cohort runs show --json` prints what the API returns.
    let cli = dir
        .run(&[
            "runs",
            "show",
            &id.to_string(),
            "--config",
            "conf",
            "--json",
        ])
        .ok();
    let mut cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(cli["workspace"], "shop");
    cli.as_object_mut().unwrap().remove("workspace");
    assert_eq!(cli, run);
    let cli = dir
        .run(&["runs", "list", "--config", "conf", "--json"])
        .ok();
    let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(cli["runs"][0]["id"], id);
    let listed = runs(&d, "job=sync&status=succeeded&limit=5");
    assert_eq!(listed.len(), 1);
    assert!(runs(&d, "status=failed").is_empty());
    assert_eq!(
        d.get("/api/v1/workspaces/shop/runs?status=bogus", Some(ADMIN))
            .0,
        400
    );

    let (_, jobs) = d.get("/api/v1/workspaces/shop/jobs", Some(SHOP));
    let job = &jobs["jobs"][0];
    assert_eq!(job["name"], "sync");
    assert_eq!(job["schedule"], "0 3 * * *");
    assert!(
        job["next_run_at"].as_str().unwrap().contains("T03:00:00"),
        "{job}"
    );
    assert_eq!(job["last_run"]["id"], id);

    let (_, segments) = d.get("/api/v1/workspaces/shop/segments", Some(SHOP));
    let buyers = segments["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "buyers")
        .unwrap();
    assert_eq!(buyers["points"][0]["size"], 12);
    assert_eq!(buyers["points"][0]["run_id"], id);

    // Metrics: admins only; names and labels as documented.
    assert_eq!(http(d.port, "GET", "/metrics", Some(SHOP)).unwrap().0, 401);
    let (status, metrics) = http(d.port, "GET", "/metrics", Some(ADMIN)).unwrap();
    assert_eq!(status, 200);
    for line in [
        "cohort_runs_total{workspace=\"shop\",job=\"sync\",status=\"succeeded\"} 1",
        "cohort_run_duration_seconds_count{workspace=\"shop\",job=\"sync\"} 1",
        "cohort_records_pulled_total{workspace=\"shop\",plugin=\"csv\"} 25",
        "cohort_records_pushed_total{workspace=\"shop\",plugin=\"outbox\"}",
        "cohort_records_skipped_total{workspace=\"shop\",plugin=\"outbox\"}",
        "cohort_segment_size{workspace=\"shop\",segment=\"buyers\"} 12",
        "# TYPE cohort_tick_lag_seconds histogram",
        "# TYPE cohort_queue_depth gauge",
        "# TYPE cohort_leases_held gauge",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }

    // Reload takes an admin token.
    assert_eq!(
        http(d.port, "POST", "/api/v1/reload", Some(SHOP))
            .unwrap()
            .0,
        403
    );
    let (status, body) = http(d.port, "POST", "/api/v1/reload", Some(ADMIN)).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_sigterm_drains_a_running_job() {
    let dir = shop_dir(8, "*/2 * * * * *");
    // Each run stalls 3 s after pulling: long enough to be caught running.
    let mut d = Daemon::start(
        &dir,
        "signals",
        &[("COHORT_FAILPOINT", "sleep:after-pull:3000")],
    );
    d.wait_ready();
    eventually(&d, "a first run succeeds", Duration::from_secs(60), || {
        !runs(&d, "status=succeeded").is_empty()
    });

    let good = std::fs::read_to_string(dir.path("conf/shop.toml")).unwrap();
    dir.write(
        "conf/shop.toml",
        &good.replace("batch_size = 7", "batch_size = 7\nbatch_sise = 3"),
    );
    d.signal("HUP");
    eventually(
        &d,
        "the reload is rejected",
        Duration::from_secs(30),
        || d.log().contains("Config reload rejected"),
    );
    assert!(d.log().contains("batch_sise"), "{}", d.log());
    let (status, body) = http(d.port, "POST", "/api/v1/reload", Some(ADMIN)).unwrap();
    assert_eq!(status, 422, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "invalid_config");
    assert!(
        body["error"]["details"][0]
            .as_str()
            .unwrap()
            .contains("batch_sise"),
        "{body}"
    );
    dir.write("conf/shop.toml", &good);
    // The old config keeps running: more runs succeed.
    let before = runs(&d, "status=succeeded").len();
    eventually(
        &d,
        "runs go on under the old config",
        Duration::from_secs(60),
        || runs(&d, "status=succeeded").len() > before,
    );

    // SIGTERM while a run is in its stall: it finishes, then the daemon exits.
    eventually(&d, "a run is running", Duration::from_secs(30), || {
        !runs(&d, "status=running").is_empty()
    });
    let running = runs(&d, "status=running")[0]["id"].as_i64().unwrap();
    d.signal("TERM");
    assert_eq!(
        d.wait(Duration::from_secs(60)),
        Some(0),
        "{}",
        dir.path("x").display()
    );
    let log = std::fs::read_to_string(dir.path("signals.log")).unwrap();
    assert!(log.contains("Draining"), "{log}");
    let store = dir
        .run(&["runs", "show", &running.to_string(), "--config", "conf"])
        .ok();
    assert!(
        store.stdout.contains("succeeded"),
        "{}\n{log}",
        store.stdout
    );
}

fn pg_dir(schema: &PgSchema, n: u32, schedule: &str) -> Dir {
    let dir = shop_dir(n, schedule);
    let shop = std::fs::read_to_string(dir.path("conf/shop.toml")).unwrap();
    dir.write(
        "conf/shop.toml",
        &format!("[store]\nurl = \"{}\"\n{shop}", schema.url()),
    );
    dir
}

fn psql(schema: &PgSchema, sql: &str) -> String {
    let out = Command::new("psql")
        .args([schema.url().as_str(), "-At", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn two_daemons_on_postgresql_share_three_workspaces_and_run_each_tick_once() {
    let schema = PgSchema::new("daemon_share");
    // Ten customers, so that the shop's one event (of customer 7) is not a bad row.
    let dir = pg_dir(&schema, 10, "*/5 * * * * *");
    // Two more workspaces on 5-second schedules, each with its own outbox.
    for ws in ["two", "three"] {
        let text = std::fs::read_to_string(dir.path("conf/shop.toml")).unwrap();
        let text = text
            .split("[workspace]")
            .nth(1)
            .unwrap()
            .replacen("id = \"shop\"", &format!("id = \"{ws}\""), 1)
            .replace("SHOP_TOKEN", "OTHER_TOKEN")
            .replace("../outbox", &format!("../outbox-{ws}"));
        dir.write(&format!("conf/{ws}.toml"), &format!("[workspace]{text}"));
    }
    let a = Daemon::start(&dir, "a", &[]);
    let b = Daemon::start(&dir, "b", &[]);
    a.wait_ready();
    b.wait_ready();
    std::thread::sleep(Duration::from_secs(30));
    let ticks = psql(
        &schema,
        "SELECT workspace_id, count(*), count(DISTINCT scheduled_for), sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) FROM job_runs WHERE scheduled_for IS NOT NULL GROUP BY workspace_id ORDER BY workspace_id",
    );
    let rows: Vec<Vec<i64>> = ticks
        .lines()
        .map(|l| l.split('|').skip(1).map(|n| n.parse().unwrap()).collect())
        .collect();
    let statuses = psql(
        &schema,
        "SELECT status, count(*) FROM job_runs GROUP BY status",
    );
    assert_eq!(rows.len(), 3, "{ticks}\n{}\n{}", a.log(), b.log());
    for r in &rows {
        assert!(r[0] >= 5, "a tick every 5 s for 30 s: {ticks}");
        assert_eq!(r[0], r[1], "no tick twice: {ticks}");
        assert!(
            r[2] >= r[0] - 1,
            "every tick but the last ran: {ticks}\n{statuses}"
        );
    }
    let owners = psql(
        &schema,
        "SELECT count(DISTINCT owner) FROM job_runs WHERE status = 'succeeded'",
    );
    assert_eq!(owners.trim(), "2", "both daemons ran work");
}

#[test]
fn a_daemon_killed_mid_run_loses_its_lease_and_another_finishes_the_run_exactly_once() {
    let schema = PgSchema::new("daemon_takeover");
    let dir = pg_dir(&schema, 30, "0 3 * * *");
    // Daemon A dies after the segments of its first run, before any push: no cleanup.
    let mut a = Daemon::start(&dir, "a", &[("COHORT_FAILPOINT", "after-segments")]);
    a.wait_ready();
    let (status, body) = http(
        a.port,
        "POST",
        "/api/v1/workspaces/shop/jobs/sync/trigger",
        Some(ADMIN),
    )
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    a.wait(Duration::from_secs(60));
    assert!(
        a.log().contains("COHORT_FAILPOINT: aborting"),
        "{}",
        a.log()
    );
    assert!(
        outbox(dir.tmp.path()).is_empty(),
        "nothing pushed before the kill"
    );
    let b = Daemon::start(&dir, "b", &[]);
    b.wait_ready();
    eventually(
        &b,
        "daemon b takes the run over and finishes it",
        Duration::from_secs(60),
        || {
            b.get(&format!("/api/v1/workspaces/shop/runs/{id}"), Some(ADMIN))
                .1["status"]
                == "succeeded"
        },
    );
    let run = b
        .get(&format!("/api/v1/workspaces/shop/runs/{id}"), Some(ADMIN))
        .1;
    assert_ne!(run["daemon"], Value::Null);
    assert!(b.log().contains("resumed=true"), "{}", b.log());
    assert_eq!(
        psql(&schema, "SELECT count(*) FROM job_runs").trim(),
        "1",
        "the same run row"
    );

    // The outbox equals a clean run's.
    let clean = util::shop::setup(30);
    util::shop::run(&clean, &[]).ok();
    assert_eq!(outbox(dir.tmp.path()), outbox(clean.tmp.path()));
}

/// The scheduled runs whose tick fell strictly between `after` and `before`.
fn ticks_between(d: &Daemon, after: DateTime<Utc>, before: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    runs(d, "limit=1000")
        .iter()
        .filter_map(|r| r["scheduled_for"].as_str())
        .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
        .filter(|t| *t > after && *t < before)
        .collect()
}

/// What a restart after downtime did.
struct Downtime {
    /// The ticks that ran from the downtime.
    ran: Vec<DateTime<Utc>>,
    /// The missed ticks the restarted daemon counted (its "Ticks missed" log line).
    missed: u64,
    down: DateTime<Utc>,
    up: DateTime<Utc>,
}

/// Runs the shop on a 2-second schedule with `misfire`, stops the daemon for 9 s (four ticks or
/// more fall due with no daemon up), and starts another.
fn downtime(misfire: &str) -> Downtime {
    // Eight customers: the shop's events name customer 7.
    let dir = shop_dir(8, "*/2 * * * * *");
    let conf = std::fs::read_to_string(dir.path("conf/shop.toml")).unwrap();
    dir.write("conf/shop.toml", &format!("{conf}{misfire}\n"));
    let mut first = Daemon::start(&dir, "before", &[]);
    first.wait_ready();
    eventually(
        &first,
        "a first run succeeds",
        Duration::from_secs(60),
        || !runs(&first, "status=succeeded").is_empty(),
    );
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(60)), Some(0));
    let down = Utc::now();
    std::thread::sleep(Duration::from_secs(9));
    let up = Utc::now();
    let second = Daemon::start(&dir, "after", &[]);
    second.wait_ready();
    // The restarted daemon settles what fell due at once, then goes on with the next ticks.
    let later = up + chrono::Duration::seconds(3);
    eventually(
        &second,
        "a tick after the restart runs",
        Duration::from_secs(60),
        || !ticks_between(&second, later, later + chrono::Duration::days(1)).is_empty(),
    );
    let log = second.log();
    let missed = log
        .lines()
        .filter(|l| l.contains("Ticks missed"))
        .filter_map(|l| l.split("missed=").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Downtime {
        ran: ticks_between(&second, down, up),
        missed,
        down,
        up,
    }
}

#[test]
fn after_downtime_run_once_runs_the_missed_ticks_once_not_once_each() {
    let d = downtime("misfire = \"run_once\"");
    assert!(
        d.missed >= 3,
        "four or more ticks fell due between {} and {}; all but one are counted missed: {}",
        d.down,
        d.up,
        d.missed
    );
    assert!(
        d.ran.len() <= 1,
        "run_once runs the missed ticks once, not once each: {:?}",
        d.ran
    );
}

#[test]
fn after_downtime_skip_drops_the_ticks_missed_beyond_the_grace() {
    let d = downtime("misfire = \"skip\"\nmisfire_grace = \"1s\"");
    assert!(d.missed >= 3, "missed ticks are counted: {}", d.missed);
    // A tick within a second of the restart is still on time; everything older is dropped.
    let late: Vec<_> = d
        .ran
        .iter()
        .filter(|t| **t < d.up - chrono::Duration::seconds(2))
        .collect();
    assert!(
        late.is_empty(),
        "ticks missed between {} and {} ran despite misfire = skip: {late:?}",
        d.down,
        d.up
    );
}
