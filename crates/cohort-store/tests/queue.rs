//! The daemon's queue: ticks as unique run rows, claims, leases and fencing, on SQLite and
//! PostgreSQL (see `util`). Times come from the test, so leases run out without sleeping.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod util;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cohort_store::{Backend, Begun, Owner, RunStatus, Settle, StoreError, Tick};
use serde_json::json;
use util::workspace;

const LEASE: Duration = Duration::from_secs(30);

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

fn daemon(name: &str) -> Owner {
    Owner::parse(&format!("{name}/4242")).unwrap()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

both!(a_tick_is_one_run_row_however_many_daemons_queue_it, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let other = db.reopen().await;
    let a = db.store.workspace("a");
    let first = a.enqueue_tick("nightly", t(0), t(1)).await.unwrap();
    let again = other
        .workspace("a")
        .enqueue_tick("nightly", t(0), t(2))
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(again, None, "the second daemon finds the tick queued");
    // Another tick, or the same tick of another job, is another row.
    assert!(
        a.enqueue_tick("nightly", t(60), t(61))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        a.enqueue_tick("hourly", t(0), t(1))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(a.last_tick("nightly").await.unwrap(), Some(t(60)));
    let runs = a
        .runs_where(Some("nightly"), Some(RunStatus::Queued), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].scheduled_for, Some(t(60)));
    other.close().await;
});

both!(
    a_batch_of_ticks_queues_each_once_and_names_the_ones_it_created,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        db.store.ensure_workspace(&workspace("b")).await.unwrap();
        let tick = |w: &str, job: &str, at| Tick {
            workspace: w.to_owned(),
            job: job.to_owned(),
            scheduled_for: at,
        };
        // Another daemon queued one of them first.
        let earlier = db
            .store
            .workspace("b")
            .enqueue_tick("j", t(0), t(0))
            .await
            .unwrap()
            .unwrap();
        // More than one statement's worth, so that the places span the chunks.
        let mut ticks: Vec<Tick> = (0..600).map(|i| tick("a", "j", t(60 * i))).collect();
        ticks.push(tick("b", "j", t(0)));
        ticks.push(tick("b", "k", t(0)));
        let created = db.store.enqueue_ticks(&ticks, t(1)).await.unwrap();
        assert_eq!(created.len(), 601, "all but the tick already queued");
        let places: Vec<usize> = created.iter().map(|(i, _)| *i).collect();
        assert_eq!(places, (0..600).chain([601]).collect::<Vec<_>>());
        assert!(created.iter().all(|(_, id)| *id != earlier));
        let b = db.store.workspace("b");
        let k = b
            .runs_where(Some("k"), Some(RunStatus::Queued), 10)
            .await
            .unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].id, created[600].1, "the id returned is the row's");
        assert_eq!(k[0].scheduled_for, Some(t(0)));
        // Queued as a single tick would be: claimable, first attempt, a scheduled trigger.
        let claim = db
            .store
            .claim(&ids(&["b"]), &daemon("x"), LEASE, t(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claim.trigger, "schedule");
        assert_eq!(claim.attempt, 1);
        // The same batch again queues nothing.
        assert!(
            db.store
                .enqueue_ticks(&ticks, t(3))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.store.workspace("a").last_tick("j").await.unwrap(),
            Some(t(60 * 599))
        );
    }
);

both!(
    claims_hand_each_queued_run_to_one_daemon_oldest_first,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        db.store.ensure_workspace(&workspace("b")).await.unwrap();
        let a = db.store.workspace("a");
        let b = db.store.workspace("b");
        let r1 = a.enqueue_tick("j", t(0), t(0)).await.unwrap().unwrap();
        let r2 = b.enqueue_tick("j", t(5), t(5)).await.unwrap().unwrap();
        let manual = a.enqueue("j", "manual", t(9)).await.unwrap();
        let all = ids(&["a", "b"]);
        let c1 = db
            .store
            .claim(&all, &daemon("x"), LEASE, t(10))
            .await
            .unwrap()
            .unwrap();
        let c2 = db
            .store
            .claim(&all, &daemon("y"), LEASE, t(10))
            .await
            .unwrap()
            .unwrap();
        let c3 = db
            .store
            .claim(&all, &daemon("y"), LEASE, t(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c1.run_id, c2.run_id, c3.run_id), (r1, r2, manual));
        assert_eq!(c1.scheduled_for, Some(t(0)));
        assert_eq!(c3.trigger, "manual");
        assert!(
            db.store
                .claim(&all, &daemon("x"), LEASE, t(10))
                .await
                .unwrap()
                .is_none()
        );
        // A daemon serving only `b` never claims `a`'s runs.
        a.enqueue("j", "manual", t(11)).await.unwrap();
        assert!(
            db.store
                .claim(&ids(&["b"]), &daemon("z"), LEASE, t(12))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(db.store.queue_depth(&all, t(12)).await.unwrap(), 1);
    }
);

both!(concurrent_claims_never_hand_out_a_run_twice, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let a = db.store.workspace("a");
    for i in 0..40 {
        a.enqueue_tick("j", t(i), t(i)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for d in 0..4 {
        let store = db.reopen().await;
        tasks.push(tokio::spawn(async move {
            // Batches of 1 to 4, so that batches race single claims and each other.
            let mut got = Vec::new();
            loop {
                let batch = store
                    .claim_many(
                        &["a".to_owned()],
                        &daemon(&format!("d{d}")),
                        LEASE,
                        t(100),
                        d + 1,
                    )
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                assert!(batch.len() <= d + 1);
                got.extend(batch.iter().map(|c| c.run_id));
            }
            store.close().await;
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (40, 40), "every run claimed exactly once");
});

both!(
    a_batch_claim_takes_the_oldest_runs_up_to_its_limit_each_fenced_alone,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        db.store.ensure_workspace(&workspace("b")).await.unwrap();
        let a = db.store.workspace("a");
        let b = db.store.workspace("b");
        // Queued out of order, across two workspaces, one not yet due.
        let r3 = a.enqueue_tick("j", t(30), t(30)).await.unwrap().unwrap();
        let r1 = b.enqueue_tick("j", t(10), t(10)).await.unwrap().unwrap();
        let r2 = a.enqueue_tick("j", t(20), t(20)).await.unwrap().unwrap();
        a.enqueue_tick("j", t(90), t(90)).await.unwrap().unwrap();
        let all = ids(&["a", "b"]);
        let first = db
            .store
            .claim_many(&all, &daemon("x"), LEASE, t(40), 2)
            .await
            .unwrap();
        let got: Vec<_> = first.iter().map(|c| c.run_id).collect();
        assert_eq!(got, [r1, r2], "the two oldest, oldest first");
        let rest = db
            .store
            .claim_many(&all, &daemon("y"), LEASE, t(40), 10)
            .await
            .unwrap();
        let got: Vec<_> = rest.iter().map(|c| c.run_id).collect();
        assert_eq!(got, [r3], "what is left and due, no more than there is");
        // Settling one claim of the batch leaves its sibling held.
        db.store
            .settle(&first[0], &Settle::Release { not_before: t(40) }, t(41))
            .await
            .unwrap();
        assert!(db.store.heartbeat_claim(&first[1], t(41)).await.unwrap());
        let again = db
            .store
            .claim_many(&all, &daemon("z"), LEASE, t(42), 10)
            .await
            .unwrap();
        let got: Vec<_> = again.iter().map(|c| c.run_id).collect();
        assert_eq!(got, [r1], "only the released run is free again");
        // The released run's old claim no longer fences anything.
        let stale = db
            .store
            .settle(&first[0], &Settle::Release { not_before: t(42) }, t(43))
            .await
            .unwrap_err();
        assert!(matches!(stale, StoreError::LeaseLost), "{stale}");
        assert!(db.store.heartbeat_claim(&first[1], t(43)).await.unwrap());
    }
);

both!(a_claimed_run_records_itself_in_its_row, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let a = db.store.workspace("a");
    let id = a.enqueue_tick("j", t(0), t(0)).await.unwrap().unwrap();
    let claim = db
        .store
        .claim(&ids(&["a"]), &daemon("x"), LEASE, t(1))
        .await
        .unwrap()
        .unwrap();
    let Begun::Started(lease) = a
        .begin_claimed_run(&claim, &daemon("x"), LEASE, t(2))
        .await
        .unwrap()
    else {
        panic!("the workspace is free");
    };
    assert_eq!(lease.run_id, id, "no second row");
    let row = &a.runs(10).await.unwrap()[0];
    assert_eq!(
        (row.id, row.status, row.started_at),
        (id, RunStatus::Running, t(2))
    );
    assert_eq!(row.owner.as_deref(), Some("x/4242"));
    a.finish_run(
        &lease,
        RunStatus::Succeeded,
        &json!({"ok": true}),
        None,
        t(3),
    )
    .await
    .unwrap();
    let row = &a.runs(10).await.unwrap()[0];
    assert_eq!(row.status, RunStatus::Succeeded);
    assert_eq!(row.scheduled_for, Some(t(0)));
    assert_eq!(a.runs(10).await.unwrap().len(), 1);
});

both!(
    a_lost_lease_is_taken_over_and_the_stale_daemons_writes_are_refused,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let other = db.reopen().await;
        let a = db.store.workspace("a");
        let id = a.enqueue_tick("j", t(0), t(0)).await.unwrap().unwrap();
        let all = ids(&["a"]);
        // Daemon x claims and starts the run, then goes silent past its lease.
        let cx = db
            .store
            .claim(&all, &daemon("x"), LEASE, t(1))
            .await
            .unwrap()
            .unwrap();
        let Begun::Started(lx) = a
            .begin_claimed_run(&cx, &daemon("x"), LEASE, t(1))
            .await
            .unwrap()
        else {
            panic!("free");
        };
        assert!(
            other
                .claim(&all, &daemon("y"), LEASE, t(20))
                .await
                .unwrap()
                .is_none(),
            "x is alive"
        );
        // 40 s later y takes the run over and resumes it.
        let cy = other
            .claim(&all, &daemon("y"), LEASE, t(41))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cy.run_id, id);
        assert!(cy.resumed);
        let oa = other.workspace("a");
        let Begun::Started(ly) = oa
            .begin_claimed_run(&cy, &daemon("y"), LEASE, t(41))
            .await
            .unwrap()
        else {
            panic!("x's lock expired");
        };
        // x wakes up: its heartbeat says lost, its end and its settle are refused.
        assert!(!a.heartbeat(&lx, t(42)).await.unwrap());
        let err = a
            .finish_run(&lx, RunStatus::Failed, &json!({}), Some("stale"), t(42))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost), "{err}");
        let settle = Settle::Status {
            status: RunStatus::TimedOut,
            error: "stale".to_owned(),
        };
        assert!(matches!(
            db.store.settle(&cx, &settle, t(42)).await,
            Err(StoreError::LeaseLost)
        ));
        assert!(!db.store.heartbeat_claim(&cx, t(42)).await.unwrap());
        // y finishes it; the row is y's.
        assert!(oa.heartbeat(&ly, t(43)).await.unwrap());
        oa.finish_run(&ly, RunStatus::Succeeded, &json!({}), None, t(44))
            .await
            .unwrap();
        let row = &a.runs(10).await.unwrap()[0];
        assert_eq!((row.id, row.status), (id, RunStatus::Succeeded));
        assert_eq!(row.owner.as_deref(), Some("y/4242"));
        assert_eq!(row.error, None);
        other.close().await;
    }
);

both!(
    a_cli_run_taking_the_workspace_does_not_kill_a_daemons_claimed_run,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let a = db.store.workspace("a");
        a.enqueue_tick("j", t(0), t(0)).await.unwrap().unwrap();
        let c = db
            .store
            .claim(&ids(&["a"]), &daemon("x"), LEASE, t(1))
            .await
            .unwrap()
            .unwrap();
        let Begun::Started(_) = a
            .begin_claimed_run(&c, &daemon("x"), LEASE, t(1))
            .await
            .unwrap()
        else {
            panic!("free");
        };
        // The lock expires; a manual run takes the workspace. The claimed run stays running, for
        // a daemon to resume when its claim runs out.
        let Begun::Started(_) = a
            .begin_run("k", "manual", false, &daemon("cli"), LEASE, t(100))
            .await
            .unwrap()
        else {
            panic!("expired");
        };
        let claimed = a.run(c.run_id).await.unwrap().unwrap().0;
        assert_eq!(claimed.status, RunStatus::Running);
        let again = db
            .store
            .claim(&ids(&["a"]), &daemon("y"), LEASE, t(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.run_id, c.run_id);
    }
);

both!(
    retries_release_and_timeouts_settle_the_row_under_its_token,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let a = db.store.workspace("a");
        let all = ids(&["a"]);
        let id = a.enqueue_tick("j", t(0), t(0)).await.unwrap().unwrap();
        let c = db
            .store
            .claim(&all, &daemon("x"), LEASE, t(1))
            .await
            .unwrap()
            .unwrap();
        let retry = Settle::Retry {
            not_before: t(60),
            error: "vendor down".to_owned(),
        };
        db.store.settle(&c, &retry, t(2)).await.unwrap();
        assert!(
            db.store
                .claim(&all, &daemon("x"), LEASE, t(59))
                .await
                .unwrap()
                .is_none(),
            "backoff"
        );
        let c2 = db
            .store
            .claim(&all, &daemon("x"), LEASE, t(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c2.run_id, c2.attempt, c2.trigger.as_str()),
            (id, 2, "retry")
        );
        db.store
            .settle(&c2, &Settle::Release { not_before: t(61) }, t(60))
            .await
            .unwrap();
        let c3 = db
            .store
            .claim(&all, &daemon("y"), LEASE, t(61))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c3.run_id, c3.attempt),
            (id, 2),
            "a release is not an attempt"
        );
        let done = Settle::Status {
            status: RunStatus::TimedOut,
            error: "timed out after 5s".to_owned(),
        };
        db.store.settle(&c3, &done, t(70)).await.unwrap();
        let row = a.run(id).await.unwrap().unwrap().0;
        assert_eq!(row.status, RunStatus::TimedOut);
        assert_eq!(row.finished_at, Some(t(70)));
        assert!(
            db.store
                .claim(&all, &daemon("y"), LEASE, t(1000))
                .await
                .unwrap()
                .is_none()
        );
    }
);

both!(
    a_second_daemon_on_sqlite_refuses_and_postgres_takes_many,
    |db| {
        let first = db
            .store
            .register_daemon(&daemon("x"), LEASE, t(0))
            .await
            .unwrap();
        let second = db.store.register_daemon(&daemon("y"), LEASE, t(5)).await;
        match db.store.backend() {
            Backend::Sqlite => {
                let err = second.unwrap_err().to_string();
                assert!(err.contains("another daemon (x/4242"), "{err}");
                assert!(err.contains("one daemon per database"), "{err}");
                assert!(err.contains("use PostgreSQL"), "{err}");
                // Once the first is gone (its lease ran out), another may start.
                assert!(
                    db.store
                        .register_daemon(&daemon("y"), LEASE, t(100))
                        .await
                        .is_ok()
                );
                assert!(!db.store.daemon_heartbeat(&first, t(101)).await.unwrap());
            }
            Backend::Postgres => {
                let second = second.unwrap();
                assert!(db.store.daemon_heartbeat(&first, t(10)).await.unwrap());
                assert!(db.store.daemon_heartbeat(&second, t(10)).await.unwrap());
                db.store.unregister_daemon(&second).await.unwrap();
                assert!(!db.store.daemon_heartbeat(&second, t(11)).await.unwrap());
            }
        }
    }
);

both!(a_daemon_that_stopped_cleanly_leaves_sqlite_free, |db| {
    let first = db
        .store
        .register_daemon(&daemon("x"), LEASE, t(0))
        .await
        .unwrap();
    db.store.unregister_daemon(&first).await.unwrap();
    assert!(
        db.store
            .register_daemon(&daemon("y"), LEASE, t(1))
            .await
            .is_ok()
    );
});
