//! The store's behaviour, each test run on SQLite and on PostgreSQL (see `util`).
// Test helpers panic on setup failures: there is nothing better to do in a test.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod util;

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use cohort_core::delivery::Action;
use cohort_core::money::Money;
use cohort_core::record::{Customer, Event, EventKind, LineItem, Order};
use cohort_core::time::Timestamp;
use cohort_store::{
    Backend, Begun, DestinationState, DestinationStatus, IdentityUpdate, Owner, PendingPush,
    RecordError, Records, RunLease, RunStatus, Store, StoreError, StoredIdentity, Stream,
    SuppressionReason, Sweep, Upserted, WorkspaceStore,
};
use serde_json::json;
use util::workspace;

fn customer(id: &str, email: &str) -> Customer {
    Customer {
        email: Some(email.to_owned()),
        accepts_email_marketing: true,
        created_at: Some(Timestamp::from_secs(1_700_000_000)),
        tags: vec!["vip".to_owned()],
        ..Customer::new(id)
    }
}

fn order(id: &str, customer: &str, whole: i64) -> Order {
    Order {
        id: id.to_owned(),
        customer_id: customer.into(),
        created_at: Some(Timestamp::from_secs(1_700_000_000 + whole)),
        total: Money::from_whole(whole),
        item_count: 1,
        ..Order::default()
    }
}

fn event(id: Option<&str>, customer: &str, kind: EventKind, at: i64) -> Event {
    Event {
        id: id.map(str::to_owned),
        customer_id: customer.into(),
        kind,
        occurred_at: Timestamp::from_secs(at),
        properties: BTreeMap::new(),
    }
}

async fn orders_of(store: &cohort_store::WorkspaceStore) -> Vec<Order> {
    let mut out = Vec::new();
    store.for_each_order(|o| out.push(o)).await.unwrap();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

both!(migrations_apply_once_and_reconnecting_is_harmless, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let again = db.reopen().await;
    let names: Vec<String> = again
        .workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(names, ["a"]);
    let expected = if db.url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(again.backend(), expected);
});

both!(ensure_workspace_updates_name_and_settings, |db| {
    let mut w = workspace("a");
    db.store.ensure_workspace(&w).await.unwrap();
    w.name = "Renamed".to_owned();
    w.currency = "EUR".to_owned();
    db.store.ensure_workspace(&w).await.unwrap();
    assert_eq!(db.store.workspaces().await.unwrap(), vec![w]);
});

both!(
    ingest_counts_new_updated_and_unchanged_by_content_hash,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let first = vec![customer("1", "a@x.com"), customer("2", "b@x.com")];
        let got = ws
            .ingest_customers("shop", &first, &json!({"page": 1}))
            .await
            .unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 2,
                updated: 0,
                unchanged: 0,
                deleted: 0,
            }
        );

        let mut second = first.clone();
        second[1].first_name = Some("Bea".to_owned());
        second.push(customer("3", "c@x.com"));
        let got = ws
            .ingest_customers("shop", &second, &json!({"page": 2}))
            .await
            .unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 1,
                updated: 1,
                unchanged: 1,
                deleted: 0,
            }
        );

        let got = ws
            .ingest_customers("shop", &second, &json!({"page": 2}))
            .await
            .unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 0,
                updated: 0,
                unchanged: 3,
                deleted: 0,
            }
        );

        let mut back = ws.customers().await.unwrap();
        back.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back, {
            let mut s = second.clone();
            s.sort_by(|a, b| a.id.cmp(&b.id));
            s
        });
    }
);

both!(the_same_id_from_two_sources_is_two_records, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let ws = db.store.workspace("a");
    ws.ingest_customers("shop", &[customer("1", "a@x.com")], &json!(null))
        .await
        .unwrap();
    let got = ws
        .ingest_customers("crm", &[customer("1", "a@y.com")], &json!(null))
        .await
        .unwrap();
    assert_eq!(got.new, 1);
    assert_eq!(ws.customers().await.unwrap().len(), 2);
});

both!(
    a_key_repeated_in_one_batch_counts_once_with_its_last_version,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let batch = [
            order("o1", "1", 10),
            order("o2", "1", 20),
            order("o1", "1", 30),
        ];
        let got = ws.ingest_orders("shop", &batch, &json!(1)).await.unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 2,
                updated: 0,
                unchanged: 0,
                deleted: 0,
            }
        );
        let back = orders_of(&ws).await;
        assert_eq!(back, vec![order("o1", "1", 30), order("o2", "1", 20)]);
    }
);

both!(orders_round_trip_exactly, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let ws = db.store.workspace("a");
    let full = Order {
        id: "A-100".to_owned(),
        customer_id: "c-7".into(),
        created_at: Some(Timestamp::from_secs(-86_400)),
        total: Money::parse("1234.5678").unwrap(),
        currency: Some("EUR".to_owned()),
        item_count: 3,
        line_items: vec![LineItem {
            product_id: Some("p1".to_owned()),
            variant_id: None,
            title: Some("Blue \"Note\" LP — ünïcode".to_owned()),
            category: Some("vinyl".to_owned()),
            quantity: 3,
            price: Money::parse("411.5226").unwrap(),
        }],
        cancelled_at: Some(Timestamp::from_secs(1_700_000_123)),
        refunded: Money::parse("0.0001").unwrap(),
    };
    let bare = Order {
        id: "A-101".to_owned(),
        customer_id: "c-8".into(),
        ..Order::default()
    };
    ws.ingest_orders(
        "shop",
        &[full.clone(), bare.clone()],
        &json!({"since": "2024-01-01"}),
    )
    .await
    .unwrap();
    assert_eq!(orders_of(&ws).await, vec![full, bare]);
});

both!(
    events_round_trip_and_events_without_an_id_are_stored_once,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let mut with_props = event(Some("e1"), "1", EventKind::EmailClick, 100);
        with_props
            .properties
            .insert("url".to_owned(), json!("https://shop.example/x?a=1"));
        with_props.properties.insert("n".to_owned(), json!(3));
        let unknown = event(
            Some("e2"),
            "1",
            EventKind::Other("Wishlist Add".to_owned()),
            200,
        );
        let anonymous = event(None, "2", EventKind::PageView, 300);
        let batch = [with_props.clone(), unknown.clone(), anonymous.clone()];
        let got = ws.ingest_events("web", &batch, &json!(null)).await.unwrap();
        assert_eq!(got.new, 3);

        let again = ws
            .ingest_events("web", std::slice::from_ref(&anonymous), &json!(null))
            .await
            .unwrap();
        assert_eq!(
            again,
            Upserted {
                new: 0,
                updated: 0,
                unchanged: 1,
                deleted: 0,
            }
        );

        let mut back = Vec::new();
        let n = ws.for_each_event(|e| back.push(e)).await.unwrap();
        assert_eq!(n, 3);
        back.sort_by_key(|e| e.occurred_at);
        assert_eq!(back[0], with_props);
        assert_eq!(back[1], unknown);
        let derived = back[2].id.clone().unwrap();
        assert!(derived.starts_with('~') && derived.len() == 33, "{derived}");
        assert_eq!(
            Event {
                id: None,
                ..back[2].clone()
            },
            anonymous
        );
    }
);

both!(
    batches_larger_than_one_statement_are_split_and_counted,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        // Past both SQLite's per-statement row limit (~2700 orders) and PostgreSQL's chunk (10000).
        let orders: Vec<Order> = (0..12_345)
            .map(|i| order(&format!("o{i}"), &format!("c{}", i % 100), i))
            .collect();
        let got = ws.ingest_orders("shop", &orders, &json!(1)).await.unwrap();
        assert_eq!(got.new, 12_345);
        let mut changed = orders.clone();
        for o in changed.iter_mut().step_by(1000) {
            o.refunded = Money::from_whole(1);
        }
        let got = ws.ingest_orders("shop", &changed, &json!(2)).await.unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 0,
                updated: 13,
                unchanged: 12_332,
                deleted: 0,
            }
        );
        let mut total = Money::ZERO;
        let n = ws
            .for_each_order(|o| total = total.checked_add(o.total).unwrap())
            .await
            .unwrap();
        assert_eq!(n, 12_345);
        assert_eq!(total, Money::from_whole((0..12_345).sum()));
    }
);

both!(
    a_few_keys_among_many_stored_ones_and_ids_of_every_length_are_counted_exactly,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        // Ids of several lengths: the key sorts "9" before "10" (shorter first).
        let stored: Vec<Order> = (0..300).map(|i| order(&i.to_string(), "c1", i)).collect();
        let got = ws.ingest_orders("shop", &stored, &json!(1)).await.unwrap();
        assert_eq!(got.new, 300);

        // Three keys spanning a hundred stored ones (PostgreSQL looks them up one by one):
        // one changed, one new in the middle of the span, one unchanged.
        let mut changed = order("100", "c1", 100);
        changed.refunded = Money::from_whole(5);
        let sparse = vec![changed, order("150x", "c1", 7), order("199", "c1", 199)];
        let got = ws.ingest_orders("shop", &sparse, &json!(2)).await.unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 1,
                updated: 1,
                unchanged: 1,
                deleted: 0,
            }
        );

        // New ids past every stored one (PostgreSQL finds their span empty), then a dense
        // re-sync of stored ones with a new one among them (it sweeps the span once).
        let next: Vec<Order> = (300..350).map(|i| order(&i.to_string(), "c2", i)).collect();
        let got = ws.ingest_orders("shop", &next, &json!(3)).await.unwrap();
        assert_eq!(got.new, 50);
        let mut dense: Vec<Order> = (40..90).map(|i| order(&i.to_string(), "c1", i)).collect();
        dense[10].total = Money::from_whole(1_000);
        dense.push(order("9a", "c3", 1));
        let got = ws.ingest_orders("shop", &dense, &json!(4)).await.unwrap();
        assert_eq!(
            got,
            Upserted {
                new: 1,
                updated: 1,
                unchanged: 49,
                deleted: 0,
            }
        );

        let back = orders_of(&ws).await;
        assert_eq!(back.len(), 352);
        let find = |id: &str| back.iter().find(|o| o.id == id).unwrap().clone();
        assert_eq!(find("100").refunded, Money::from_whole(5));
        assert_eq!(find("150x").total, Money::from_whole(7));
        assert_eq!(find("50").total, Money::from_whole(1_000));
        assert_eq!(find("9a").customer_id.as_str(), "c3");
    }
);

both!(
    the_cursor_is_saved_with_its_batch_per_source_and_stream,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        assert_eq!(ws.cursor("shop", Stream::Orders).await.unwrap(), None);
        ws.ingest_orders("shop", &[order("o1", "1", 1)], &json!({"page": 3}))
            .await
            .unwrap();
        ws.ingest_orders("shop", &[], &json!({"page": 4}))
            .await
            .unwrap();
        ws.ingest_customers("shop", &[], &json!("c-cursor"))
            .await
            .unwrap();
        assert_eq!(
            ws.cursor("shop", Stream::Orders).await.unwrap(),
            Some(json!({"page": 4}))
        );
        assert_eq!(
            ws.cursor("shop", Stream::Customers).await.unwrap(),
            Some(json!("c-cursor"))
        );
        assert_eq!(ws.cursor("shop", Stream::Events).await.unwrap(), None);
        assert_eq!(ws.cursor("crm", Stream::Orders).await.unwrap(), None);
    }
);

both!(
    ingest_into_an_unknown_workspace_fails_and_saves_nothing,
    |db| {
        let ws = db.store.workspace("ghost");
        let err = ws
            .ingest_orders("shop", &[order("o1", "1", 1)], &json!(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownWorkspace(ref w) if w == "ghost"),
            "{err}"
        );
        assert!(!err.is_retryable());
        db.store
            .ensure_workspace(&workspace("ghost"))
            .await
            .unwrap();
        assert_eq!(ws.for_each_order(|_| {}).await.unwrap(), 0);
        assert_eq!(ws.cursor("shop", Stream::Orders).await.unwrap(), None);
    }
);

both!(one_workspace_cannot_read_another_workspaces_data, |db| {
    let store = &db.store;
    store.ensure_workspace(&workspace("a")).await.unwrap();
    store.ensure_workspace(&workspace("b")).await.unwrap();
    let a = store.workspace("a");
    let b = store.workspace("b");

    a.ingest_customers("shop", &[customer("1", "a@x.com")], &json!(1))
        .await
        .unwrap();
    a.ingest_orders("shop", &[order("o1", "1", 5)], &json!(1))
        .await
        .unwrap();
    a.ingest_events(
        "shop",
        &[event(Some("e1"), "1", EventKind::EmailOpen, 1)],
        &json!(1),
    )
    .await
    .unwrap();
    a.save_segment("vip", "total_spent > 100").await.unwrap();
    a.apply_membership("vip", &["1".to_owned()], &[], Utc::now())
        .await
        .unwrap();
    let state = DestinationState {
        customer_id: "1".to_owned(),
        status: DestinationStatus::Sent,
        payload_hash: "h".to_owned(),
        idempotency_key: "k".to_owned(),
        entries: 1,
        pending: None,
        updated_at: Utc::now(),
        payload: Some(json!({"email": "a@x.com"})),
    };
    a.commit_destination("winback", &[state]).await.unwrap();
    let lease = begin(&a, "nightly", &elsewhere(), Utc::now()).await;
    let run = lease.run_id;
    a.record_errors(
        run,
        &[RecordError {
            stage: "pull".to_owned(),
            location: "orders.csv:2:1".to_owned(),
            message: "bad date".to_owned(),
        }],
    )
    .await
    .unwrap();
    a.suppress("a@x.com", SuppressionReason::Bounced, "smtp")
        .await
        .unwrap();

    assert!(b.customers().await.unwrap().is_empty());
    assert_eq!(b.for_each_order(|_| {}).await.unwrap(), 0);
    assert_eq!(b.for_each_event(|_| {}).await.unwrap(), 0);
    assert_eq!(b.cursor("shop", Stream::Orders).await.unwrap(), None);
    assert!(b.members("vip").await.unwrap().is_empty());
    assert!(b.destination_state("winback").await.unwrap().is_empty());
    assert!(b.runs(10).await.unwrap().is_empty());
    assert_eq!(b.run(run).await.unwrap(), None);
    assert!(b.suppressed_emails().await.unwrap().is_empty());
    // Nor write into it: finishing or annotating a's run through b's handle is refused.
    assert!(
        b.destination_payloads("winback", &["1"])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.lock_holder().await.unwrap(), None);
    let err = b
        .finish_run(&lease, RunStatus::Succeeded, &json!({}), None, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost), "{err}");
    let err = b
        .record_errors(
            run,
            &[RecordError {
                stage: "x".to_owned(),
                location: "x".to_owned(),
                message: "x".to_owned(),
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownRun(_)), "{err}");
    // The same segment version numbering is per workspace.
    assert_eq!(
        b.save_segment("vip", "total_spent > 100")
            .await
            .unwrap()
            .version,
        1
    );

    // And a's data is all still there.
    assert_eq!(a.customers().await.unwrap().len(), 1);
    assert_eq!(a.run(run).await.unwrap().unwrap().1.len(), 1);
    assert_eq!(a.runs(10).await.unwrap()[0].status, RunStatus::Running);
});

both!(
    segments_get_a_new_version_only_when_the_expression_changes,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let v1 = ws.save_segment("vip", "total_spent > 100").await.unwrap();
        assert_eq!((v1.version, v1.is_new), (1, true));
        let same = ws.save_segment("vip", "total_spent > 100").await.unwrap();
        assert_eq!(
            same,
            cohort_store::SegmentVersion {
                is_new: false,
                ..v1.clone()
            }
        );
        let v2 = ws.save_segment("vip", "total_spent > 200").await.unwrap();
        assert_eq!((v2.version, v2.is_new), (2, true));
        assert_ne!(v2.hash, v1.hash);
        let back = ws.save_segment("vip", "total_spent > 100").await.unwrap();
        assert_eq!((back.version, back.is_new, back.hash), (3, true, v1.hash));
        let other = ws
            .save_segment("lapsed", "total_spent > 100")
            .await
            .unwrap();
        assert_eq!(other.version, 1);
    }
);

both!(
    memberships_add_and_remove_and_keep_the_original_since,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        ws.apply_membership("vip", &ids(&["3", "1", "2"]), &[], t0)
            .await
            .unwrap();
        ws.apply_membership("vip", &ids(&["2", "4"]), &ids(&["1", "9"]), t0)
            .await
            .unwrap();
        assert_eq!(ws.members("vip").await.unwrap(), ids(&["2", "3", "4"]));
        assert!(ws.members("other").await.unwrap().is_empty());
        // Many at once: more than one statement's worth.
        let many: Vec<String> = (0..20_000).map(|i| format!("m{i:05}")).collect();
        ws.apply_membership("big", &many, &[], t0).await.unwrap();
        ws.apply_membership("big", &[], &many[..15_000], t0)
            .await
            .unwrap();
        assert_eq!(ws.members("big").await.unwrap(), many[15_000..].to_vec());
    }
);

both!(
    destination_state_is_committed_and_replaced_per_customer,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 15).unwrap();
        let st = |id: &str, status, entries| DestinationState {
            customer_id: id.to_owned(),
            status,
            payload_hash: format!("hash-{id}-{entries}"),
            idempotency_key: format!("winback:{id}:{entries}"),
            entries,
            // A push whose outcome is unknown round-trips too.
            pending: (entries == 2).then(|| PendingPush {
                action: Action::Remove,
                key: format!("winback:{id}:3"),
                payload_hash: "hash".to_owned(),
            }),
            updated_at: at,
            payload: None,
        };
        ws.commit_destination(
            "winback",
            &[
                st("1", DestinationStatus::Member, 1),
                st("2", DestinationStatus::Sent, 1),
            ],
        )
        .await
        .unwrap();
        ws.commit_destination("winback", &[st("1", DestinationStatus::Removed, 2)])
            .await
            .unwrap();
        ws.commit_destination("other", &[st("1", DestinationStatus::Sent, 1)])
            .await
            .unwrap();
        let state = ws.destination_state("winback").await.unwrap();
        assert_eq!(state.len(), 2);
        assert_eq!(state["1"], st("1", DestinationStatus::Removed, 2));
        assert_eq!(state["2"], st("2", DestinationStatus::Sent, 1));

        // The acknowledged payload is kept until a commit brings another; commits without
        // one leave it alone.
        let with = |id: &str, p| DestinationState {
            payload: Some(p),
            ..st(id, DestinationStatus::Member, 3)
        };
        ws.commit_destination("winback", &[with("1", json!({"EMAIL": "old"}))])
            .await
            .unwrap();
        ws.commit_destination("winback", &[st("1", DestinationStatus::Removed, 4)])
            .await
            .unwrap();
        let held = ws
            .destination_payloads("winback", &["1", "2", "9"])
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held["1"], json!({"EMAIL": "old"}));
        ws.commit_destination("winback", &[with("1", json!({"EMAIL": "new"}))])
            .await
            .unwrap();
        let held = ws.destination_payloads("winback", &["1"]).await.unwrap();
        assert_eq!(held["1"], json!({"EMAIL": "new"}));
    }
);

/// A process on another host: alive as far as this host can tell, so only its lease's expiry
/// frees the workspace.
fn elsewhere() -> Owner {
    Owner::parse("another-host/4242").unwrap()
}

const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

async fn begin(
    ws: &WorkspaceStore,
    job: &str,
    owner: &Owner,
    at: chrono::DateTime<Utc>,
) -> RunLease {
    match ws
        .begin_run(job, "manual", false, owner, LEASE, at)
        .await
        .unwrap()
    {
        Begun::Started(lease) => lease,
        Begun::Busy(holder) => panic!("busy: {holder}"),
    }
}

both!(
    runs_are_recorded_listed_and_a_dead_holders_run_marked_interrupted,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let t0 = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let killed = begin(&ws, "nightly", &elsewhere(), t0).await;
        // Within the lease, the workspace is busy, whoever asks, naming the run that holds it.
        let second = ws
            .begin_run(
                "hourly",
                "schedule",
                true,
                &Owner::current(),
                LEASE,
                t0 + chrono::Duration::seconds(30),
            )
            .await
            .unwrap();
        let Begun::Busy(holder) = second else {
            panic!("a second run started beside the first: {second:?}");
        };
        assert_eq!(holder.run_id, Some(killed.run_id));
        assert_eq!(holder.job.as_deref(), Some("nightly"));
        assert_eq!(holder.owner, "another-host/4242");
        assert!(
            holder
                .to_string()
                .contains(&format!("run {} (job `nightly`)", killed.run_id)),
            "{holder}"
        );
        // A heartbeat pushes the lease forward.
        assert!(
            ws.heartbeat(&killed, t0 + chrono::Duration::seconds(50))
                .await
                .unwrap()
        );
        assert!(matches!(
            ws.begin_run(
                "nightly",
                "manual",
                true,
                &Owner::current(),
                LEASE,
                t0 + chrono::Duration::seconds(100)
            )
            .await
            .unwrap(),
            Begun::Busy(_)
        ));
        // Silent past its lease, the holder is dead: the workspace is taken over, and the
        // run it left is failed, naming its process.
        let lease = ws
            .begin_run(
                "nightly",
                "manual",
                true,
                &Owner::current(),
                LEASE,
                t0 + chrono::Duration::seconds(111),
            )
            .await
            .unwrap();
        let Begun::Started(lease) = lease else {
            panic!("the dead holder kept the workspace: {lease:?}");
        };
        let run = lease.run_id;
        assert!(run > killed.run_id);
        ws.record_errors(
            run,
            &[
                RecordError {
                    stage: "pull".into(),
                    location: "orders.csv:7:3".into(),
                    message: "bad total".into(),
                },
                RecordError {
                    stage: "push".into(),
                    location: "winback/42".into(),
                    message: "rejected".into(),
                },
            ],
        )
        .await
        .unwrap();
        let summary = json!({"sources": {"shop": {"pulled": 10, "new": 3}}});
        ws.finish_run(
            &lease,
            RunStatus::PartiallyFailed,
            &summary,
            Some("2 records failed"),
            t0 + chrono::Duration::seconds(120),
        )
        .await
        .unwrap();
        assert_eq!(
            ws.lock_holder().await.unwrap(),
            None,
            "finishing gives the workspace back"
        );

        let runs = ws.runs(10).await.unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![run, killed.run_id]
        );
        let stale = &runs[1];
        assert_eq!(stale.status, RunStatus::Failed);
        assert_eq!(
            stale.error.as_deref(),
            Some(
                "interrupted: its process (another-host/4242) stopped (last alive 2024-05-01 12:00:50 UTC)"
            )
        );
        assert_eq!(stale.owner.as_deref(), Some("another-host/4242"));

        let (row, errors) = ws.run(run).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::PartiallyFailed);
        assert!(row.dry_run);
        assert_eq!(row.trigger, "manual");
        assert_eq!(row.summary, Some(summary));
        assert_eq!(row.error.as_deref(), Some("2 records failed"));
        assert_eq!(row.owner, Some(Owner::current().to_string()));
        assert!(row.finished_at.unwrap() >= row.started_at);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].location, "winback/42");
        assert_eq!(ws.runs(1).await.unwrap().len(), 1);
        assert_eq!(ws.run(run + 1000).await.unwrap(), None);
    }
);

both!(
    a_run_that_lost_its_lease_can_neither_beat_nor_record_its_end,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let t0 = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let stalled = begin(&ws, "nightly", &elsewhere(), t0).await;
        let taker = begin(
            &ws,
            "nightly",
            &Owner::current(),
            t0 + chrono::Duration::seconds(61),
        )
        .await;
        assert!(
            !ws.heartbeat(&stalled, t0 + chrono::Duration::seconds(62))
                .await
                .unwrap()
        );
        let err = ws
            .finish_run(
                &stalled,
                RunStatus::Succeeded,
                &json!({}),
                None,
                t0 + chrono::Duration::seconds(63),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost), "{err}");
        let (row, _) = ws.run(stalled.run_id).await.unwrap().unwrap();
        assert_eq!(
            row.status,
            RunStatus::Failed,
            "the stalled run cannot overwrite its record"
        );
        // The one that took over still holds the workspace.
        let holder = ws.lock_holder().await.unwrap().unwrap();
        assert_eq!(holder.run_id, Some(taker.run_id));
    }
);

both!(
    a_holder_whose_process_is_gone_from_this_host_is_taken_over_at_once,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        // A process of this host that has exited: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let host = Owner::current().to_string();
        let host = host.rsplit_once('/').unwrap().0;
        let gone = Owner::parse(&format!("{host}/{pid}")).unwrap();
        assert!(gone.is_gone());
        let t0 = Utc::now();
        let dead = begin(&ws, "nightly", &gone, t0).await;
        let next = begin(
            &ws,
            "nightly",
            &Owner::current(),
            t0 + chrono::Duration::seconds(1),
        )
        .await;
        assert!(next.run_id > dead.run_id);
        let (row, _) = ws.run(dead.run_id).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Failed);
    }
);

both!(
    of_two_runs_racing_for_a_workspace_exactly_one_starts,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let now = Utc::now();
        let (me, other) = (Owner::current(), elsewhere());
        let (one, two) = tokio::join!(
            ws.begin_run("nightly", "manual", false, &me, LEASE, now),
            ws.begin_run("nightly", "manual", false, &other, LEASE, now),
        );
        let started = [one.unwrap(), two.unwrap()]
            .iter()
            .filter(|b| matches!(b, Begun::Started(_)))
            .count();
        assert_eq!(started, 1);
        assert_eq!(ws.runs(10).await.unwrap().len(), 1);
    }
);

both!(suppressions_are_case_insensitive, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let ws = db.store.workspace("a");
    ws.suppress(
        " Ann@Example.COM ",
        SuppressionReason::Unsubscribed,
        "outbox",
    )
    .await
    .unwrap();
    ws.suppress("ann@example.com", SuppressionReason::Complained, "smtp")
        .await
        .unwrap();
    ws.suppress("bob@example.com", SuppressionReason::Bounced, "smtp")
        .await
        .unwrap();
    let set = ws.suppressed_emails().await.unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.contains("ann@example.com") && set.contains("bob@example.com"));
    assert!(
        ws.suppress("  ", SuppressionReason::Bounced, "smtp")
            .await
            .is_err()
    );
});

#[tokio::test]
async fn unknown_url_schemes_are_refused_without_showing_the_password() {
    let err = Store::connect("mysql://root:hunter22@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter22"), "{err}");
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = Store::connect("postgres://app:hunter22@127.0.0.1:1/db")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{text}");
    assert!(err.is_retryable());
    assert!(!text.contains("hunter22"), "{text}");
    assert!(text.contains("app:***@127.0.0.1:1"), "{text}");
}

#[tokio::test]
async fn schemas_are_postgres_only_and_must_be_plain_names() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let err = Store::connect_in_schema(&url, "s1").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = Store::connect_in_schema(&util::postgres_url(), "x\"; drop table y; --")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cohort.db");
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    store.ensure_workspace(&workspace("a")).await.unwrap();
    assert!(
        dir.path().join("cohort.db-wal").exists(),
        "no WAL file beside the database"
    );
    assert!(store.size_bytes().await.unwrap() > 0);
    store.close().await;
}

#[tokio::test]
async fn a_first_start_killed_halfway_through_migrating_is_finished_by_the_next() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("cohort.db").display()
    );
    // What a process killed after the migration's first statement leaves behind: a table,
    // and no record of the migration.
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    raw.execute_unprepared(
        "CREATE TABLE workspaces (id TEXT PRIMARY KEY, name TEXT NOT NULL, timezone TEXT NOT NULL, \
         currency TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    store.ensure_workspace(&workspace("a")).await.unwrap();
    assert_eq!(store.workspaces().await.unwrap().len(), 1);
    store.close().await;
}

/// The ids of the workspace's live customers, sorted.
async fn live(ws: &WorkspaceStore) -> Vec<String> {
    let mut ids: Vec<String> = ws
        .customers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id.as_str().to_owned())
        .collect();
    ids.sort();
    ids
}

fn people(ids: &[&str]) -> Vec<Customer> {
    ids.iter()
        .map(|id| customer(id, &format!("{id}@x.com")))
        .collect()
}

both!(
    a_full_pass_deletes_what_it_did_not_send_and_survives_a_crash,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        let page = |ids: &'static [&'static str]| people(ids);
        let none = Sweep::NONE;
        ws.ingest(
            "shop",
            Records::Customers(&page(&["1", "2", "3", "4", "5"])),
            &json!(1),
            &none,
        )
        .await
        .unwrap();
        let pass = |done| Sweep {
            deleted: &[],
            pass: Some("p1"),
            done,
        };
        // A pass over two pages, its first page sent twice (a crash, then the resumed pass).
        for _ in 0..2 {
            let got = ws
                .ingest(
                    "shop",
                    Records::Customers(&page(&["1", "2"])),
                    &json!(2),
                    &pass(false),
                )
                .await
                .unwrap();
            assert_eq!(got.deleted, 0);
            assert_eq!(
                live(&ws).await,
                ["1", "2", "3", "4", "5"],
                "nothing goes mid-pass"
            );
        }
        let last = ws
            .ingest(
                "shop",
                Records::Customers(&page(&["4"])),
                &json!(3),
                &pass(true),
            )
            .await
            .unwrap();
        assert_eq!(last.deleted, 2);
        assert_eq!(live(&ws).await, ["1", "2", "4"]);
        let gone = ws.deleted_customers().await.unwrap();
        assert_eq!(gone, ["3".to_owned(), "5".to_owned()].into_iter().collect());

        // Sent again, a deleted record comes back, as an update.
        let back = ws
            .ingest("shop", Records::Customers(&page(&["3"])), &json!(4), &none)
            .await
            .unwrap();
        assert_eq!((back.new, back.updated, back.unchanged), (0, 1, 0));
        assert_eq!(live(&ws).await, ["1", "2", "3", "4"]);

        // A source may also name records that are gone.
        let named = vec!["4".to_owned(), "no-such-id".to_owned()];
        let gone = ws
            .ingest(
                "shop",
                Records::Customers(&[]),
                &json!(5),
                &Sweep {
                    deleted: &named,
                    pass: None,
                    done: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(gone.deleted, 1);
        assert_eq!(live(&ws).await, ["1", "2", "3"]);

        // A pass that is abandoned (a new one starts under another name) deletes nothing of
        // its own: the new pass starts from the records live then.
        let other = |name, done| Sweep {
            deleted: &[],
            pass: Some(name),
            done,
        };
        ws.ingest(
            "shop",
            Records::Customers(&page(&["1"])),
            &json!(6),
            &other("p2", false),
        )
        .await
        .unwrap();
        let ended = ws
            .ingest(
                "shop",
                Records::Customers(&page(&["1", "2", "3"])),
                &json!(7),
                &other("p3", true),
            )
            .await
            .unwrap();
        assert_eq!(ended.deleted, 0);
        assert_eq!(live(&ws).await, ["1", "2", "3"]);
        // Another source's records are not swept by this source's passes.
        ws.ingest("crm", Records::Customers(&page(&["9"])), &json!(1), &none)
            .await
            .unwrap();
        ws.ingest(
            "shop",
            Records::Customers(&page(&["1"])),
            &json!(8),
            &other("p4", true),
        )
        .await
        .unwrap();
        assert_eq!(live(&ws).await, ["1", "9"]);
    }
);

both!(plugin_state_is_kept_per_workspace_and_scope, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    db.store.ensure_workspace(&workspace("b")).await.unwrap();
    let a = db.store.workspace("a");
    let b = db.store.workspace("b");
    a.state_put("destination:smtp", "sent/k1", Some(&json!({"at": 1})))
        .await
        .unwrap();
    a.state_put("destination:smtp", "sent/k1", Some(&json!({"at": 2})))
        .await
        .unwrap();
    assert_eq!(
        a.state_get("destination:smtp", "sent/k1").await.unwrap(),
        Some(json!({"at": 2}))
    );
    assert_eq!(
        a.state_get("destination:other", "sent/k1").await.unwrap(),
        None
    );
    assert_eq!(
        b.state_get("destination:smtp", "sent/k1").await.unwrap(),
        None
    );
    a.state_put("destination:smtp", "sent/k1", None)
        .await
        .unwrap();
    assert_eq!(
        a.state_get("destination:smtp", "sent/k1").await.unwrap(),
        None
    );
});

both!(records_are_read_with_their_source_names, |db| {
    db.store.ensure_workspace(&workspace("a")).await.unwrap();
    let ws = db.store.workspace("a");
    let none = Sweep::NONE;
    ws.ingest(
        "shop",
        Records::Customers(&people(&["1"])),
        &json!(1),
        &none,
    )
    .await
    .unwrap();
    ws.ingest(
        "crm",
        Records::Customers(&people(&["1", "9"])),
        &json!(1),
        &none,
    )
    .await
    .unwrap();
    ws.ingest(
        "crm",
        Records::Orders(&[order("o1", "9", 5)]),
        &json!(1),
        &none,
    )
    .await
    .unwrap();
    let ev = [event(Some("e1"), "1", EventKind::EmailOpen, 1_700_000_000)];
    ws.ingest("shop", Records::Events(&ev), &json!(1), &none)
        .await
        .unwrap();
    let mut customers = Vec::new();
    ws.for_each_customer_by_source(|s, c| customers.push((s.to_owned(), c.id.to_string())))
        .await
        .unwrap();
    customers.sort();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        customers,
        pairs(&[("crm", "1"), ("crm", "9"), ("shop", "1")])
    );
    let mut orders = Vec::new();
    ws.for_each_order_by_source(|s, o| orders.push((s.to_owned(), o.id)))
        .await
        .unwrap();
    assert_eq!(orders, pairs(&[("crm", "o1")]));
    let mut events = Vec::new();
    ws.for_each_event_by_source(|s, e| events.push((s.to_owned(), e.customer_id.to_string())))
        .await
        .unwrap();
    assert_eq!(events, pairs(&[("shop", "1")]));
});

both!(
    identity_links_round_trip_and_merges_move_state_to_the_survivor,
    |db| {
        db.store.ensure_workspace(&workspace("a")).await.unwrap();
        let ws = db.store.workspace("a");
        assert_eq!(ws.identity().await.unwrap(), StoredIdentity::default());
        let key = |s: &str, id: &str| (s.to_owned(), id.to_owned());
        ws.save_identity(&IdentityUpdate {
            set: vec![
                (key("shop", "1"), "p-1".to_owned()),
                (key("crm", "9"), "p-2".to_owned()),
                (key("crm", "10"), "p-3".to_owned()),
            ],
            next: 4,
            ..IdentityUpdate::default()
        })
        .await
        .unwrap();
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let st = |id: &str, status, hash: &str| DestinationState {
            customer_id: id.to_owned(),
            status,
            payload_hash: hash.to_owned(),
            idempotency_key: format!("k-{id}"),
            entries: 1,
            pending: None,
            updated_at: at,
            payload: None,
        };
        // `welcome`: only the retired p-2 was sent to. `mirror`: both are members.
        ws.commit_destination("welcome", &[st("p-2", DestinationStatus::Sent, "")])
            .await
            .unwrap();
        ws.commit_destination(
            "mirror",
            &[
                st("p-1", DestinationStatus::Member, "h1"),
                st("p-2", DestinationStatus::Member, "h2"),
            ],
        )
        .await
        .unwrap();
        ws.apply_membership("vip", &["p-2".to_owned()], &[], at)
            .await
            .unwrap();
        ws.apply_membership("all", &["p-1".to_owned(), "p-2".to_owned()], &[], at)
            .await
            .unwrap();

        // p-2 merges into p-1; crm:10 is gone.
        ws.save_identity(&IdentityUpdate {
            set: vec![(key("crm", "9"), "p-1".to_owned())],
            unset: vec![key("crm", "10")],
            next: 4,
            merged: vec![("p-2".to_owned(), "p-1".to_owned())],
        })
        .await
        .unwrap();
        let stored = ws.identity().await.unwrap();
        assert_eq!(stored.next, Some(4));
        assert_eq!(
            stored.links,
            [
                (key("shop", "1"), "p-1".to_owned()),
                (key("crm", "9"), "p-1".to_owned())
            ]
            .into_iter()
            .collect()
        );
        let welcome = ws.destination_state("welcome").await.unwrap();
        assert_eq!(
            welcome.keys().collect::<Vec<_>>(),
            ["p-1"],
            "the survivor was welcomed"
        );
        assert_eq!(welcome["p-1"].status, DestinationStatus::Sent);
        let mirror = ws.destination_state("mirror").await.unwrap();
        assert_eq!(mirror.len(), 2, "the retired member stays, to leave");
        assert_eq!(mirror["p-2"].payload_hash, "h2");
        assert_eq!(
            mirror["p-1"].payload_hash, "",
            "the survivor is pushed again"
        );
        assert_eq!(ws.members("vip").await.unwrap(), ["p-1"]);
        assert_eq!(ws.members("all").await.unwrap(), ["p-1"]);
    }
);
