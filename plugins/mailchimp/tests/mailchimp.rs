//! The mailchimp destination, built as the `cdylib` Cohort loads, driven through the ABI and
//! the host's HTTP service against a fake Mailchimp that checks every request against the
//! vendor's OpenAPI file and keeps the list's state.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod fake;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Operation, OutcomeStatus, PushResult,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin, StateStore,
};
use cohort_plugin_mailchimp::mapping::subscriber_hash;
use cohort_plugin_testkit::{Logs, check_example, plugin};
use fake::{API_KEY, Fake, Fault, LIST};
use serde_json::{Value, json};

fn mailchimp() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-mailchimp")).unwrap()
}

/// Quick retries, so fault tests stay fast.
fn http() -> HttpService {
    HttpService::new(HttpPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        rate_limit: None,
        ..HttpPolicy::default()
    })
    .unwrap()
}

/// The host's state service, in memory.
#[derive(Debug, Default)]
struct Memory(Mutex<BTreeMap<String, Value>>);

impl StateStore for Memory {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        let mut m = self.0.lock().unwrap();
        match value {
            Some(v) => m.insert(key.to_owned(), v.clone()),
            None => m.remove(key),
        };
        Ok(())
    }
}

struct Setup {
    logs: Arc<Logs>,
    state: Arc<Memory>,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            logs: Arc::new(Logs::default()),
            state: Arc::new(Memory::default()),
        }
    }

    fn open(&self, fake: &Fake, extra: Value) -> Result<Instance, CallError> {
        let mut config = json!({
            "api_key": API_KEY,
            "list_id": LIST,
            "base_url": fake.url(),
            "poll_interval": 0,
            "timeout": 1,
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let services = HostServices::default()
            .with_http(http())
            .with_log(self.logs.clone())
            .with_state(self.state.clone());
        mailchimp().open(&config, services)
    }
}

fn upsert(key: &str, email: &str, first_name: &str) -> Operation {
    Operation {
        key: key.into(),
        action: Action::Upsert,
        customer_id: CustomerId::new(key),
        customer: None,
        payload: json!({"email": email, "first_name": first_name, "country": "DE"}),
        previous: Value::Null,
        message: None,
    }
}

fn remove(key: &str, email: &str) -> Operation {
    Operation {
        action: Action::Remove,
        payload: json!({"email": email}),
        ..upsert(key, email, "")
    }
}

fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("shop".into()),
        campaign: Some("vip_sync".into()),
        mode: DestinationMode::Mirror,
        audience: Some("vip".into()),
        replace: None,
        operations,
    }
}

fn statuses(result: &PushResult) -> Vec<(String, String)> {
    result
        .outcomes
        .iter()
        .map(|o| {
            let s = match &o.status {
                OutcomeStatus::Ok => "ok".to_owned(),
                OutcomeStatus::Rejected { reason } => format!("rejected: {reason}"),
                OutcomeStatus::Retry { reason, .. } => format!("retry: {reason}"),
            };
            (o.key.clone(), s)
        })
        .collect()
}

fn all_ok(result: &PushResult) -> bool {
    result
        .outcomes
        .iter()
        .all(|o| o.status == OutcomeStatus::Ok)
}

#[test]
fn mailchimp_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-mailchimp"), 3).assert_passed();
}

#[test]
fn members_are_upserted_by_subscriber_hash_with_merge_fields_and_the_audience_tag() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let result = i
        .push(&batch(vec![
            upsert("a", "Ann@Example.com", "Ann"),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.tagged("vip"), ["ann@example.com", "bob@example.com"]);
    let ann = fake.member("ann@example.com").unwrap();
    assert_eq!(ann.status, "subscribed");
    assert_eq!(ann.merge_fields["FNAME"], "Ann");
    assert_eq!(ann.merge_fields["COUNTRY"], "DE");
    // Members go side by side, so in no fixed order: Ann's PUT is found by its path, which
    // is the hash of her lower-cased address.
    let ann_path = format!(
        "/3.0/lists/{LIST}/members/{}",
        subscriber_hash("ann@example.com")
    );
    let puts: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path)
        .collect();
    assert!(puts.contains(&ann_path), "{puts:?}");
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn mirror_removes_the_tag_from_leavers_and_keeps_them_on_the_list() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    i.push(&batch(vec![
        upsert("a", "ann@example.com", "Ann"),
        upsert("b", "bob@example.com", "Bob"),
    ]))
    .unwrap();
    let result = i
        .push(&batch(vec![
            remove("b-rm", "bob@example.com"),
            // Never a member: nothing to take away, not an error.
            remove("c-rm", "cem@example.com"),
        ]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.tagged("vip"), ["ann@example.com"]);
    let bob = fake.member("bob@example.com").unwrap();
    assert_eq!(
        bob.status, "subscribed",
        "leaving a segment is not unsubscribing"
    );
    assert_eq!(fake.member_count(), 2);
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn an_address_change_moves_the_tag_to_the_new_member() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    i.push(&batch(vec![upsert("a1", "ann@old.example", "Ann")]))
        .unwrap();
    let mut moved = upsert("a2", "ann@new.example", "Ann");
    moved.previous = json!({"email": "ann@old.example", "first_name": "Ann"});
    let result = i.push(&batch(vec![moved])).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.tagged("vip"), ["ann@new.example"]);
}

#[test]
fn someone_who_unsubscribed_at_mailchimp_stays_unsubscribed() {
    let fake = Fake::start();
    fake.add_member("dora@example.com", "unsubscribed");
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let result = i
        .push(&batch(vec![upsert("d", "dora@example.com", "Dora")]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    let dora = fake.member("dora@example.com").unwrap();
    assert_eq!(dora.status, "unsubscribed");
    let put = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert!(
        put.json().get("status").is_none(),
        "only status_if_new: {}",
        put.body
    );
}

#[test]
fn double_opt_in_adds_new_members_as_pending() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({"double_opt_in": true})).unwrap();
    i.push(&batch(vec![upsert("e", "eli@example.com", "Eli")]))
        .unwrap();
    assert_eq!(fake.member("eli@example.com").unwrap().status, "pending");
}

#[test]
fn a_rejected_record_carries_mailchimps_reason_and_the_rest_land() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let mut unknown_field = upsert("c", "cem@example.com", "Cem");
    unknown_field.payload["shoe_size"] = json!("44");
    let result = i
        .push(&batch(vec![
            upsert("a", "ann@example.com", "Ann"),
            upsert("x", "nobody@mail.invalid", "X"),
            unknown_field,
            json_op_without_email(),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    let s = statuses(&result);
    assert_eq!(s[0].1, "ok");
    assert_eq!(
        s[1].1,
        "rejected: 400 Invalid Resource: nobody@mail.invalid looks fake or invalid, please enter a real email address."
    );
    assert_eq!(
        s[2].1,
        "rejected: 400 Invalid Resource: Your merge fields were invalid. (SHOE_SIZE: This merge field does not exist)"
    );
    assert!(
        s[3].1.starts_with("rejected: the payload has no `email`"),
        "{s:?}"
    );
    assert_eq!(s[4].1, "ok");
    assert_eq!(fake.tagged("vip"), ["ann@example.com", "bob@example.com"]);
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

fn json_op_without_email() -> Operation {
    Operation {
        payload: json!({"first_name": "Nomail"}),
        ..upsert("n", "", "")
    }
}

#[test]
fn a_429_with_retry_after_a_500_and_a_timeout_are_retried_and_nothing_lands_twice() {
    let fake = Fake::start();
    fake.inject("/members/", Fault::TooMany, 1);
    fake.inject("/tags", Fault::Internal, 1);
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let started = std::time::Instant::now();
    let result = i
        .push(&batch(vec![upsert("a", "ann@example.com", "Ann")]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );
    // An answer slower than the 1 s timeout: the host tries the PUT again.
    fake.inject("/members/", Fault::Slow(Duration::from_millis(1500)), 1);
    let result = i
        .push(&batch(vec![upsert("b", "bob@example.com", "Bob")]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.stats().injected, 3);
    assert_eq!(fake.tagged("vip"), ["ann@example.com", "bob@example.com"]);
    assert_eq!(fake.member_count(), 2);
    assert_eq!(fake.stats().invalid, 0);
}

#[test]
fn when_mailchimp_keeps_answering_429_the_rest_of_the_batch_is_retried_not_lost() {
    let fake = Fake::start();
    fake.inject("/members/", Fault::TooMany, 10);
    let setup = Setup::new();
    // One connection, so that the second member is not yet started when the first is told
    // to wait.
    let mut i = setup.open(&fake, json!({"connections": 1})).unwrap();
    let result = i
        .push(&batch(vec![
            upsert("a", "ann@example.com", "Ann"),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    for o in &result.outcomes {
        assert!(
            matches!(
                o.status,
                OutcomeStatus::Retry {
                    retry_after_ms: Some(1000),
                    ..
                }
            ),
            "{o:?}"
        );
    }
    assert_eq!(
        fake.stats().requests,
        3,
        "three attempts at the first member, none at the second"
    );
    assert_eq!(fake.member_count(), 0);
}

#[test]
fn members_go_side_by_side_up_to_the_connections_and_never_past_mailchimps_limit() {
    let fake = Fake::start();
    fake.set_latency(Duration::from_millis(150));
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let ops: Vec<Operation> = (0..30)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    let keys: Vec<String> = result.outcomes.iter().map(|o| o.key.clone()).collect();
    let expected: Vec<String> = (0..30).map(|n| format!("k{n}")).collect();
    assert_eq!(keys, expected, "outcomes in the host's order");
    let stats = fake.stats();
    assert_eq!(stats.peak, fake::MAX_CONNECTIONS, "ten members at once");
    assert_eq!(stats.throttled, 0, "and never an eleventh");
    assert_eq!((stats.puts, stats.tag_posts), (30, 30));
    assert_eq!(fake.tagged("vip").len(), 30);
}

#[test]
fn two_campaigns_pushing_to_one_account_at_once_share_its_ten_connections() {
    let fake = Fake::start();
    fake.set_latency(Duration::from_millis(150));
    let setup = Setup::new();
    // One process, one HTTP service: as two campaigns of one run (or two workspaces of an
    // agency's daemon) on one Mailchimp key.
    let http = http();
    let open = || {
        let config = json!({"api_key": API_KEY, "list_id": LIST, "base_url": fake.url(),
                            "poll_interval": 0, "timeout": 1});
        let services = HostServices::default()
            .with_http(http.clone())
            .with_log(setup.logs.clone())
            .with_state(setup.state.clone());
        mailchimp().open(&config, services).unwrap()
    };
    let campaign = |audience: &str| {
        let ops = (0..30)
            .map(|n| upsert(&format!("{audience}{n}"), &format!("m{n}@example.com"), "M"))
            .collect();
        Batch {
            audience: Some(audience.into()),
            ..batch(ops)
        }
    };
    let (mut vip, mut new) = (open(), open());
    let (vip_batch, new_batch) = (campaign("vip"), campaign("new"));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| vip.push(&vip_batch).unwrap());
        let b = s.spawn(|| new.push(&new_batch).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        all_ok(&a) && all_ok(&b),
        "{:?} {:?}",
        statuses(&a),
        statuses(&b)
    );
    let stats = fake.stats();
    assert_eq!(stats.peak, fake::MAX_CONNECTIONS, "ten requests at once");
    assert_eq!(
        stats.throttled, 0,
        "never an eleventh, from either campaign"
    );
    assert_eq!(
        (fake.tagged("vip").len(), fake.tagged("new").len()),
        (30, 30)
    );
}

#[test]
fn batch_jobs_go_side_by_side_with_requests_up_to_the_configured_connections() {
    let fake = Fake::start();
    fake.set_latency(Duration::from_millis(100));
    let setup = Setup::new();
    let mut i = setup
        .open(
            &fake,
            json!({"batch_threshold": 5, "batch_size": 4, "connections": 3}),
        )
        .unwrap();
    let ops: Vec<Operation> = (0..40)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    let stats = fake.stats();
    assert_eq!(stats.jobs, 10);
    assert_eq!(stats.peak, 3, "three requests in flight at once, no more");
    assert_eq!(stats.throttled, 0);
    assert_eq!(fake.tagged("vip").len(), 40);
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
}

#[test]
fn jobs_waiting_between_polls_leave_their_connections_to_other_jobs() {
    let fake = Fake::start();
    fake.set_latency(Duration::from_millis(50));
    let setup = Setup::new();
    let mut i = setup
        .open(
            &fake,
            json!({"batch_threshold": 5, "batch_size": 4, "connections": 2, "poll_interval": 1}),
        )
        .unwrap();
    let ops: Vec<Operation> = (0..16)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    let stats = fake.stats();
    assert_eq!(stats.jobs, 4);
    assert_eq!(
        stats.open_jobs_peak, 4,
        "while two jobs wait a second to poll again, two more are submitted"
    );
    assert_eq!(stats.peak, 2, "and never more than two requests at once");
    assert_eq!(stats.throttled, 0);
    assert_eq!(fake.tagged("vip").len(), 16);
}

#[test]
fn large_batches_go_through_batch_jobs_polled_until_they_finish() {
    let fake = Fake::start();
    fake.set_polls_before_done(2);
    let setup = Setup::new();
    let mut i = setup
        .open(&fake, json!({"batch_threshold": 5, "batch_size": 8}))
        .unwrap();
    let ops: Vec<Operation> = (0..20)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    let stats = fake.stats();
    assert_eq!(stats.jobs, 3, "20 members in jobs of 8");
    assert_eq!(stats.puts, 0, "no member was sent one by one");
    assert_eq!(stats.job_operations, 40, "a PUT and a tag for each");
    assert_eq!(fake.tagged("vip").len(), 20);
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
    assert!(
        setup.state.0.lock().unwrap().is_empty(),
        "finished jobs are forgotten"
    );
}

#[test]
fn a_job_with_errors_gives_each_rejected_record_mailchimps_reason() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup
        .open(&fake, json!({"batch_threshold": 2, "batch_size": 100}))
        .unwrap();
    let result = i
        .push(&batch(vec![
            upsert("a", "ann@example.com", "Ann"),
            upsert("x", "x@mail.invalid", "X"),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    let s = statuses(&result);
    assert_eq!(s[0].1, "ok");
    assert!(s[1].1.contains("looks fake or invalid"), "{s:?}");
    assert_eq!(s[2].1, "ok");
    assert!(
        fake.job_results()
            .iter()
            .any(|(id, status)| id == "1.member" && *status == 400)
    );
    assert_eq!(fake.tagged("vip"), ["ann@example.com", "bob@example.com"]);
}

#[test]
fn a_job_still_running_at_the_timeout_is_waited_for_again_not_submitted_again() {
    let fake = Fake::start();
    fake.set_polls_before_done(1_000_000);
    let setup = Setup::new();
    let mut i = setup
        .open(
            &fake,
            json!({"batch_threshold": 1, "batch_timeout": 1, "poll_interval": 0}),
        )
        .unwrap();
    let ops = batch(vec![
        upsert("a", "ann@example.com", "Ann"),
        upsert("b", "bob@example.com", "Bob"),
    ]);
    let result = i.push(&ops).unwrap();
    assert!(
        result.outcomes.iter().all(
            |o| matches!(&o.status, OutcomeStatus::Retry { reason, .. } if reason.contains("still"))
        ),
        "{:?}",
        statuses(&result)
    );
    assert_eq!(
        setup.state.0.lock().unwrap().len(),
        1,
        "the job's id is kept"
    );
    fake.set_polls_before_done(0);
    let result = i.push(&ops).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.stats().jobs, 1, "the retry waited for the same job");
    assert_eq!(fake.tagged("vip").len(), 2);
}

#[test]
fn a_wrong_key_is_a_config_error_naming_api_key_and_never_shown() {
    let fake = Fake::start();
    let setup = Setup::new();
    let wrong = "ffffffffffffffffffffffffffffffff-us6";
    let mut i = setup.open(&fake, json!({"api_key": wrong})).unwrap();
    let err = i
        .push(&batch(vec![upsert("a", "ann@example.com", "Ann")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/api_key"), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains("ffffffff"),
        "{text}"
    );
    assert!(
        !setup.logs.all().contains("ffffffff"),
        "{}",
        setup.logs.all()
    );
}

#[test]
fn a_key_without_its_data_centre_is_refused_before_anything_is_sent() {
    let fake = Fake::start();
    let setup = Setup::new();
    let err = setup
        .open(&fake, json!({"api_key": "0123456789abcdef"}))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/api_key") && text.contains("data centre"),
        "{text}"
    );
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert_eq!(fake.stats().requests, 0);
}

/// `GET /3.0/ping` on a socket of its own; the status.
fn ping(fake: &Fake) -> u16 {
    use std::io::{Read, Write};
    let url = fake.url();
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches("/3.0")
        .to_owned();
    let mut socket = std::net::TcpStream::connect(&authority).unwrap();
    let auth = cohort_plugin_api::sdk::http::base64(format!("cohort:{API_KEY}").as_bytes());
    write!(
        socket,
        "GET /3.0/ping HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {auth}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

#[test]
fn the_fake_refuses_an_eleventh_simultaneous_connection_with_retry_after() {
    let fake = Fake::start();
    fake.set_latency(Duration::from_secs(2));
    let start = std::sync::Barrier::new(12);
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    ping(&fake)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused = answers.iter().filter(|s| **s == 429).count();
    let stats = fake.stats();
    assert!(refused >= 1, "{answers:?}");
    assert_eq!(stats.throttled, refused as u64);
    assert_eq!(
        stats.peak,
        fake::MAX_CONNECTIONS,
        "never more than ten at once"
    );
    assert_eq!(refused + answers.iter().filter(|s| **s == 200).count(), 12);
}
