//! Driving instances: async calls with timeouts, prefetching, discovery on disk.
#![allow(clippy::unwrap_used)]

mod util;

use std::time::{Duration, Instant};

use cohort_plugin_api::Customer;
use cohort_plugin_host::discovery::{Origin, Registry, SearchDir, plugin_file_name, search_dirs};
use cohort_plugin_host::{
    AsyncInstance, CallError, HostServices, LoadedPlugin, pull, pull_prefetched,
};
use serde_json::{Value, json};
use util::plugin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_run_off_the_runtime_and_even_open_is_bounded_by_the_timeout() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let instance = AsyncInstance::open(
        &p,
        &json!({"sleep_ms": 0}),
        HostServices::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let page = instance
        .next_page::<Customer>(Value::Null, 100)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 10);

    let slow = AsyncInstance::open(
        &p,
        &json!({"sleep_ms": 3000}),
        HostServices::default(),
        Duration::from_millis(200),
    )
    .await
    .unwrap_err();
    assert_eq!(
        slow,
        CallError::TimedOut(Duration::from_millis(200)),
        "open is bounded by the timeout too"
    );

    let busy = AsyncInstance::new(
        p.open(&json!({"sleep_ms": 0}), HostServices::default())
            .unwrap(),
        Duration::from_secs(5),
    );
    // A ticker proves the runtime keeps running while the plugin works.
    let ticker = tokio::spawn(async {
        let mut ticks = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticks += 1;
        }
        ticks
    });
    let first = busy.next_page::<Customer>(Value::Null, 5).await;
    assert_eq!(first.unwrap().records.len(), 5);
    assert_eq!(ticker.await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_timeout_is_cancelled_and_the_instance_is_not_used_again() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let i = p.open(&json!({"sleep_ms": 2000}), HostServices::default());
    // Opening sleeps too (the plugin sleeps in every call), so open synchronously first.
    let instance = AsyncInstance::new(i.unwrap(), Duration::from_millis(150));
    let started = Instant::now();
    let err = instance
        .next_page::<Customer>(Value::Null, 5)
        .await
        .unwrap_err();
    assert_eq!(err, CallError::TimedOut(Duration::from_millis(150)));
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert!(
        instance.cancel_token().is_cancelled(),
        "the plugin is asked to stop"
    );
    assert!(matches!(
        instance.next_page::<Customer>(Value::Null, 5).await,
        Err(CallError::Poisoned(_))
    ));
    // Dropping the handle while the abandoned call may still run must not unload the library
    // under it: the call holds its own reference.
    drop(instance);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[test]
fn a_prefetched_pull_yields_the_same_pages_and_cursor_as_a_plain_pull() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let config = json!({"records": 25});
    let collect = |prefetch: bool| {
        let mut i = p.open(&config, HostServices::default()).unwrap();
        let mut pages = Vec::new();
        let on_page = |page: cohort_plugin_api::wire::Page<Customer>| {
            pages.push((
                page.records
                    .iter()
                    .map(|c| c.id.to_string())
                    .collect::<Vec<_>>(),
                page.next_cursor,
            ));
            Ok::<(), CallError>(())
        };
        let cursor = if prefetch {
            pull_prefetched(&mut i, Value::Null, 4, on_page).unwrap()
        } else {
            pull(&mut i, Value::Null, 4, on_page).unwrap()
        };
        (pages, cursor)
    };
    let plain = collect(false);
    let prefetched = collect(true);
    assert_eq!(plain.0.len(), 7);
    assert_eq!(plain.1, json!(25));
    assert_eq!(plain, prefetched);
}

#[test]
fn a_prefetched_pull_stops_when_the_consumer_fails() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let mut i = p
        .open(&json!({"records": 1000}), HostServices::default())
        .unwrap();
    let mut seen = 0;
    let err = pull_prefetched::<Customer, CallError>(&mut i, Value::Null, 10, |_| {
        seen += 1;
        if seen == 3 {
            Err(CallError::Cancelled)
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert_eq!(err, CallError::Cancelled);
    // The instance is usable again once the pull returned.
    assert_eq!(
        i.next_page::<Customer>(&Value::Null, 2)
            .unwrap()
            .records
            .len(),
        2
    );
}

#[test]
fn discovery_searches_in_order_and_the_first_plugin_of_a_name_wins() {
    let lib = plugin("cohort-testplugin-panicking");
    let exe_dir = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let env_dir = tempfile::tempdir().unwrap();
    let name = plugin_file_name("probe");
    std::fs::copy(&lib, exe_dir.path().join("plugins").join(&name)).unwrap_or_else(|_| {
        std::fs::create_dir(exe_dir.path().join("plugins")).unwrap();
        std::fs::copy(&lib, exe_dir.path().join("plugins").join(&name)).unwrap()
    });
    std::fs::copy(&lib, config_dir.path().join(&name)).unwrap();
    // Not named like a plugin: never loaded.
    std::fs::copy(&lib, env_dir.path().join("libsomething_else.so")).unwrap();
    std::fs::write(
        env_dir.path().join(plugin_file_name("broken")),
        b"not a library",
    )
    .unwrap();
    let wrong = plugin("cohort-testplugin-wrong-abi");
    std::fs::copy(&wrong, env_dir.path().join(plugin_file_name("old"))).unwrap();

    let env = std::env::join_paths([env_dir.path()]).unwrap();
    let dirs = search_dirs(
        Some(&exe_dir.path().join("cohort")),
        Some(config_dir.path()),
        Some(&env),
    );
    let reg = Registry::discover(&dirs);
    let names: Vec<&String> = reg.plugins.keys().collect();
    assert_eq!(names, ["test-panicking"]);
    let (found, origin) = &reg.plugins["test-panicking"];
    assert_eq!(*origin, Origin::Executable);
    assert!(found.path().starts_with(exe_dir.path().join("plugins")));
    assert_eq!(reg.shadowed.len(), 1);
    assert_eq!(reg.shadowed[0].1, Origin::Config);
    let failures: Vec<String> = reg.failed.iter().map(|(_, _, e)| e.to_string()).collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("ABI 2.3")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("cannot load plugin")),
        "{failures:?}"
    );
    assert!(reg.failed.iter().all(|(_, o, _)| *o == Origin::Env));
}

#[test]
fn missing_search_folders_are_skipped() {
    let reg = Registry::discover(&[SearchDir {
        dir: "/nonexistent/cohort/plugins".into(),
        origin: Origin::Config,
    }]);
    assert!(reg.plugins.is_empty() && reg.failed.is_empty());
}
