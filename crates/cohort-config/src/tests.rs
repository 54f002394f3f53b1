//! Whole-config tests: the plan's example, folders, every kind of mistake, secrets, docs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

const EXAMPLE: &str = r#"
[store]
url = "sqlite://cohort.db?mode=rwc"

[plugins]
dir = "plugins"

[server]
listen = "127.0.0.1:8686"

[workspace]
id = "demo"
name = "Demo record shop"
timezone = "America/New_York"
currency = "USD"
as_of = "1998-07-01"
unsubscribe_url = "https://shop.example/unsubscribe?customer={{customer_id}}"

[[sources]]
name = "shop"
plugin = "csv"
config = { base_dir = "demo", customers = { paths = ["customers.csv"] } }

[[segments]]
name = "champions"
description = "Bought recently and often"
where = "rfm_group = 'champions'"
min_size = 10

[[segments]]
name = "at_risk"
where = "r_score <= 2"

[[destinations]]
name = "outbox"
plugin = "outbox"
config = { dir = "out" }
batch_size = 200
rate_limit = { per_second = 10.0, burst = 20 }

[[campaigns]]
name = "winback"
segments = ["at_risk"]
destination = "outbox"
mode = "send"
[campaigns.email]
from = "Demo Shop <hello@shop.example>"
subject = "We miss you, {{default first_name \"there\"}}"
html_file = "templates/winback.html"

[[campaigns]]
name = "vip_audience"
segments = ["champions", "at_risk"]
destination = "outbox"
mode = "mirror"
audience = "VIPs"
[campaigns.fields]
email = "{{email}}"
first_name = "{{first_name}}"

[[jobs]]
name = "nightly"
schedule = "0 3 * * *"
sources = ["shop"]
campaigns = ["winback"]
enabled = true
"#;

fn files() -> BTreeMap<PathBuf, String> {
    let mut f = BTreeMap::new();
    f.insert(
        PathBuf::from("/cfg/templates/winback.html"),
        "<p>Hi {{first_name}}</p>\n".to_owned(),
    );
    f
}

fn load_one(text: &str) -> Result<Config, Diagnostics> {
    load_str(&[(Path::new("/cfg/cohort.toml"), text)], &files())
}

fn errors(text: &str) -> Vec<String> {
    match load_one(text) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_example_config_loads_into_the_validated_types() {
    let config = load_one(EXAMPLE).unwrap();
    assert_eq!(config.plugins.dir, Some(PathBuf::from("/cfg/plugins")));
    assert_eq!(config.server.listen.as_deref(), Some("127.0.0.1:8686"));
    let ws = config.workspace("demo").unwrap();
    assert_eq!(ws.timezone, chrono_tz::America::New_York);
    assert_eq!(ws.as_of.unwrap().to_rfc3339(), "1998-07-01T00:00:00+00:00");
    assert_eq!(ws.dir, PathBuf::from("/cfg"));
    assert_eq!(
        ws.sources[0].config.as_written()["customers"]["paths"][0],
        "customers.csv"
    );
    let champions = ws.segment("champions").unwrap();
    assert_eq!(champions.min_size, 10);
    let expr_at = champions.expr_at.clone().unwrap();
    assert_eq!((expr_at.line, expr_at.column), (27, 10));
    assert_eq!(ws.segment("at_risk").unwrap().min_size, 0);
    let outbox = ws.destination("outbox").unwrap();
    assert_eq!(outbox.batch_size, Some(200));
    assert_eq!(
        outbox.rate_limit,
        Some(RateLimit {
            per_second: 10.0,
            burst: 20
        })
    );

    let winback = ws.campaign("winback").unwrap();
    assert_eq!(winback.mode, Mode::Send);
    assert_eq!(winback.audience, "winback");
    let email = winback.email.as_ref().unwrap();
    assert_eq!(email.subject.name, "winback.subject");
    assert_eq!((email.subject.at.line, email.subject.at.column), (48, 12));
    let html = email.html.as_ref().unwrap();
    assert_eq!(html.text, "<p>Hi {{first_name}}</p>\n");
    assert_eq!(html.at.to_string(), "/cfg/templates/winback.html:1:1");
    assert!(email.text.is_none());

    let vip = ws.campaign("vip_audience").unwrap();
    assert_eq!(vip.mode, Mode::Mirror);
    assert_eq!(vip.audience, "VIPs");
    let names: Vec<&str> = vip.fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["email", "first_name"]);
    assert_eq!(vip.fields[1].1.name, "vip_audience.fields.first_name");

    let job = ws.job("nightly").unwrap();
    assert_eq!(job.schedule.as_ref().unwrap().as_written(), "0 3 * * *");
    assert_eq!(job.campaigns.as_deref(), Some(&["winback".to_owned()][..]));
    assert!(job.enabled);
    assert_eq!(
        ws.unsubscribe_url.as_ref().unwrap().text,
        "https://shop.example/unsubscribe?customer={{customer_id}}"
    );
}

#[test]
fn a_loaded_config_keeps_no_spare_room_and_one_copy_of_each_file_path() {
    // A daemon holds its config for good, one workspace per client: spare list capacity and a
    // path per location were most of its idle memory with a thousand workspaces.
    let config = load_one(EXAMPLE).unwrap();
    let ws = config.workspace("demo").unwrap();
    assert_eq!(ws.segments.capacity(), ws.segments.len());
    assert_eq!(ws.campaigns.capacity(), ws.campaigns.len());
    assert_eq!(ws.jobs.capacity(), ws.jobs.len());
    let vip = ws.campaign("vip_audience").unwrap();
    assert_eq!(vip.fields.capacity(), vip.fields.len());
    let (a, b) = (&ws.at.file, &ws.segments[1].at.file);
    assert!(
        std::sync::Arc::ptr_eq(a, b),
        "{a:?} and {b:?} are two copies"
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = load_one(
        "[workspace]\nid = \"w\"\n[[destinations]]\nname = \"d\"\nplugin = \"outbox\"\n[[campaigns]]\nname = \"c\"\nsegments = [\"s\"]\ndestination = \"d\"\nmode = \"upsert\"\n[[segments]]\nname = \"s\"\nwhere = \"true\"\n[[jobs]]\nname = \"j\"\n",
    )
    .unwrap();
    let ws = &config.workspaces[0];
    assert_eq!((ws.name.as_str(), ws.currency.as_str()), ("w", "USD"));
    assert_eq!(ws.timezone, chrono_tz::UTC);
    assert_eq!(
        ws.destinations[0].batch_size, None,
        "the plugin's, else the default"
    );
    assert!(
        ws.destinations[0]
            .config
            .as_written()
            .as_object()
            .unwrap()
            .is_empty()
    );
    let fields = &ws.campaigns[0].fields;
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].0.as_str(), fields[0].1.text.as_str()),
        ("email", "{{email}}")
    );
    let job = &ws.jobs[0];
    assert!(job.schedule.is_none() && job.sources.is_none() && job.campaigns.is_none());
    assert!(job.enabled);
}

#[test]
fn every_mistake_is_reported_at_once_with_its_place() {
    let text = r#"[workspace]
id = "Demo Shop"
timezone = "Europe/Pari"
currency = "usd"

[[sources]]
name = "shop"
plugn = "csv"

[[segments]]
name = "vip"
where = "total_spent > 500"

[[segments]]
name = "vip"
where = "x"

[[campaigns]]
name = "winback"
segments = ["vips"]
destination = "outbx"
mode = "sned"

[[campaigns]]
name = "mail"
segments = ["vip"]
destination = "outbox"
mode = "send"

[[destinations]]
name = "outbox"
plugin = "outbox"

[[jobs]]
name = "nightly"
schedule = "0 3 * * 8"
sources = ["shp"]
campaigns = ["winbak"]
"#;
    let errs = errors(text);
    let expect = [
        "/cfg/cohort.toml:2:6: workspace id `Demo Shop` is not valid",
        "/cfg/cohort.toml:3:12: unknown time zone `Europe/Pari`; did you mean `Europe/Paris`?",
        "/cfg/cohort.toml:4:12: currency `usd` is not an ISO 4217 code",
        "/cfg/cohort.toml:6:1: [[sources]] needs `plugin`",
        "/cfg/cohort.toml:8:1: unknown key `plugn` in [[sources]]; did you mean `plugin`?",
        "/cfg/cohort.toml:15:8: [[segments]] name `vip` is used twice; first defined at /cfg/cohort.toml:11:8",
        "/cfg/cohort.toml:20:13: unknown segment `vips`; did you mean `vip`?",
        "/cfg/cohort.toml:21:15: unknown destination `outbx`; did you mean `outbox`?",
        "/cfg/cohort.toml:22:8: unknown mode `sned`; did you mean `send`?",
        "/cfg/cohort.toml:24:1: campaign `mail` sends email but has no [campaigns.email]",
        "/cfg/cohort.toml:36:12: job `nightly` schedule: day of week field `8`: 8 is out of range 0-7",
        "/cfg/cohort.toml:37:12: unknown source `shp`; did you mean `shop`?",
        "/cfg/cohort.toml:38:14: unknown campaign `winbak`; did you mean `winback`?",
    ];
    for (i, e) in expect.iter().enumerate() {
        assert!(
            errs.iter().any(|got| got.starts_with(e)),
            "missing #{i}: {e}\ngot:\n{}",
            errs.join("\n")
        );
    }
    assert_eq!(errs.len(), expect.len(), "{}", errs.join("\n"));
}

#[test]
fn send_mode_needs_a_subject_and_a_body_and_files_must_exist() {
    let text = r#"[workspace]
id = "w"
[[segments]]
name = "s"
where = "true"
[[destinations]]
name = "d"
plugin = "outbox"
[[campaigns]]
name = "a"
segments = ["s"]
destination = "d"
mode = "send"
[campaigns.email]
from = "x@y"
[[campaigns]]
name = "b"
segments = ["s"]
destination = "d"
mode = "send"
[campaigns.email]
from = "x@y"
subject = "hi"
html_file = "templates/missing.html"
[[campaigns]]
name = "c"
segments = ["s"]
destination = "d"
mode = "mirror"
[campaigns.fields]
"#;
    let errs = errors(text);
    let joined = errs.join("\n");
    assert!(
        joined.contains("14:1: campaign `a`: [campaigns.email] needs `subject`"),
        "{joined}"
    );
    assert!(
        joined.contains("14:1: campaign `a`: [campaigns.email] has no body"),
        "{joined}"
    );
    assert!(
        joined.contains("24:13: html_file /cfg/templates/missing.html: no such file"),
        "{joined}"
    );
    assert!(
        joined.contains("campaign `c`: [campaigns.fields] is empty"),
        "{joined}"
    );
    assert_eq!(errs.len(), 4, "{joined}");
}

#[test]
fn a_folder_holds_one_workspace_per_file_and_globals_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("00-global.toml"),
        "[store]\nurl = \"sqlite://data/c.db\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("acme.toml"), "[workspace]\nid = \"acme\"\n").unwrap();
    std::fs::write(
        dir.path().join("beta.toml"),
        "[workspace]\nid = \"beta\"\ntimezone = \"Europe/Paris\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not read").unwrap();
    let config = load(dir.path()).unwrap();
    let ids: Vec<&str> = config.workspaces.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["acme", "beta"]);
    assert_eq!(config.files.len(), 3);
    assert_eq!(config.workspace("beta").unwrap().dir, dir.path());
    let url = config.database_url().unwrap();
    if std::env::var_os(DATABASE_URL_ENV).is_none() {
        assert_eq!(
            url.expose(),
            format!("sqlite://{}/data/c.db", dir.path().display())
        );
    }

    std::fs::write(
        dir.path().join("gamma.toml"),
        "[plugins]\ndir = \"p\"\n[workspace]\nid = \"acme\"\n",
    )
    .unwrap();
    let errs = load(dir.path()).unwrap_err().to_string();
    assert!(
        errs.contains(
            "gamma.toml:1:1: [store], [plugins] and [server] may appear in only one file"
        ),
        "{errs}"
    );
    assert!(
        errs.contains("gamma.toml:3:1: workspace id `acme` is used twice; first defined at"),
        "{errs}"
    );
}

#[test]
fn lists_without_a_workspace_and_no_workspace_at_all_are_errors() {
    let errs = errors("[[segments]]\nname = \"a\"\nwhere = \"true\"\n");
    assert!(errs[0].starts_with("/cfg/cohort.toml:1:1: sources, segments, destinations, campaigns and jobs belong to a workspace"), "{errs:?}");
    let errs = errors("[store]\nurl = \"sqlite::memory:\"\n");
    assert!(errs[0].contains("no workspace is defined"), "{errs:?}");
}

#[test]
fn a_missing_config_says_what_to_do() {
    let err = load(Path::new("/surely/not/here.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read config /surely/not/here.toml") && err.contains("cohort init"),
        "{err}"
    );
}

#[test]
fn debug_of_a_config_shows_placeholders_never_resolved_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token.txt"), "tok-5ecret-from-file\n").unwrap();
    std::fs::write(dir.path().join("db.txt"), "pa55word-db\n").unwrap();
    let text = r#"
[store]
url = "postgres://cohort:${file:db.txt}@localhost/cohort"
[workspace]
id = "w"
[[sources]]
name = "shop"
plugin = "shopify"
config = { token = "${file:token.txt}", header = "Bearer ${file:token.txt}" }
"#;
    let path = dir.path().join("cohort.toml");
    std::fs::write(&path, text).unwrap();
    let config = load(&path).unwrap();
    let resolved = config.workspaces[0].sources[0].config.resolve().unwrap();
    assert_eq!(resolved.value["header"], "Bearer tok-5ecret-from-file");
    if std::env::var_os(DATABASE_URL_ENV).is_none() {
        let url = config.database_url().unwrap();
        assert_eq!(
            url.expose(),
            "postgres://cohort:pa55word-db@localhost/cohort"
        );
        assert_eq!(format!("{url:?}"), "[redacted]");
    }
    let debug = format!("{config:?}\n{config:#?}\n{resolved:?}");
    assert!(
        !debug.contains("5ecret") && !debug.contains("pa55word"),
        "{debug}"
    );
    assert!(debug.contains("${file:token.txt}") && debug.contains("${file:db.txt}"));
}

#[test]
fn a_malformed_placeholder_is_a_load_error() {
    let errs = errors(
        "[store]\nurl = \"${env:}\"\n[workspace]\nid = \"w\"\n[[sources]]\nname = \"s\"\nplugin = \"p\"\n[sources.config]\ntoken = \"${env:TOKEN\"\n",
    );
    let joined = errs.join("\n");
    assert!(joined.contains("2:7: store.url: `${env:}`"), "{joined}");
    assert!(
        joined.contains("9:9: config.token: `${env:` is not closed"),
        "{joined}"
    );
}

/// Every key the reader accepts, as the docs write it (`[store]`, `[[sources]]`,
/// `campaigns.email.subject`), from the same table as the did-you-mean.
fn all_keys() -> Vec<Vec<String>> {
    raw::ALLOWED_KEYS
        .iter()
        .flat_map(|(section, keys)| {
            keys.iter().map(move |k| {
                if section.is_empty() {
                    vec![format!("`[{k}]`"), format!("`[[{k}]]`")]
                } else {
                    vec![format!("`{section}.{k}`")]
                }
            })
        })
        .collect()
}

#[test]
fn docs_config_md_describes_every_key() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"))
            .expect("docs/config.md exists");
    let missing: Vec<String> = all_keys()
        .into_iter()
        .filter(|forms| !forms.iter().any(|k| doc.contains(k.as_str())))
        .map(|forms| forms.join(" or "))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md does not describe: {}",
        missing.join(", ")
    );
    for free_form in ["`sources.config`", "`campaigns.fields.NAME`"] {
        assert!(doc.contains(free_form), "{free_form}");
    }
}

#[test]
fn check_returns_what_it_could_read_along_with_the_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[workspace]\nid = \"w\"\n[[segments]]\nname = \"a\"\nwhere = \"x > 1\"\n[[segments]]\nwhere = \"no name\"\n[[jobs]]\nname = \"j\"\nschedule = \"bad\"\n",
    )
    .unwrap();
    let (config, diags) = check(&path);
    assert_eq!(diags.len(), 2, "{diags}");
    let ws = config.workspace("w").unwrap();
    assert_eq!(ws.segments.len(), 1, "the nameless segment is left out");
    assert_eq!(ws.jobs[0].name, "j");
    assert!(ws.jobs[0].schedule.is_none());
}

#[test]
fn identity_names_its_keys_and_sources_and_is_absent_by_default() {
    let base = r#"
[workspace]
id = "shop"
[[sources]]
name = "shop"
plugin = "csv"
[[sources]]
name = "crm"
plugin = "hubspot"
"#;
    let plain = load_one(base).unwrap();
    assert_eq!(plain.workspaces[0].identity, None);

    let good = load_one(&format!(
        "{base}[identity]\nmatch_on = [\"email\", \"phone\"]\nprefer = [\"shop\", \"crm\"]\norder_sources = [\"shop\"]\n"
    ))
    .unwrap();
    let identity = good.workspaces[0].identity.as_ref().unwrap();
    assert!(identity.match_email && identity.match_phone);
    assert_eq!(identity.prefer, ["shop", "crm"]);
    assert_eq!(
        identity.order_sources.as_deref(),
        Some(&["shop".to_owned()][..])
    );

    let bad = errors(&format!(
        "{base}[identity]\nmatch_on = [\"emial\"]\nprefer = [\"shpo\"]\n"
    ));
    let joined = bad.join("\n");
    assert!(
        joined.contains("identity.match_on: unknown key `emial`")
            && joined.contains("did you mean `email`?"),
        "{joined}"
    );
    assert!(
        joined.contains("unknown source `shpo`") && joined.contains("did you mean `shop`?"),
        "{joined}"
    );
}

const DAEMON: &str = r#"
[server]
workers = 8
admin_tokens = ["${env:COHORT_ADMIN}"]
shutdown_grace = "45s"

[workspace]
id = "shop"
api_tokens = ["${env:SHOP_TOKEN}"]

[[jobs]]
name = "nightly"
schedule = "0 3 * * *"
misfire = "skip"
misfire_grace = "5m"
jitter = 90
timeout = "1h30m"
retries = 2
retry_backoff = "10s"
"#;

#[test]
fn daemon_keys_are_read_into_the_server_workspace_and_job() {
    let c = load_one(DAEMON).unwrap();
    assert_eq!(c.server.workers, 8);
    assert_eq!(c.server.admin_tokens.len(), 1);
    assert_eq!(c.server.shutdown_grace, std::time::Duration::from_secs(45));
    let w = &c.workspaces[0];
    assert_eq!(w.api_tokens[0].as_written(), "${env:SHOP_TOKEN}");
    let j = &w.jobs[0];
    assert_eq!(j.misfire, Misfire::Skip);
    assert_eq!(j.misfire_grace, std::time::Duration::from_secs(300));
    assert_eq!(j.jitter, std::time::Duration::from_secs(90));
    assert_eq!(j.timeout, Some(std::time::Duration::from_secs(5400)));
    assert_eq!((j.retries, j.retry_backoff.as_secs()), (2, 10));
}

#[test]
fn daemon_defaults_run_once_with_a_minute_of_grace_and_four_workers() {
    let c = load_one("[workspace]\nid = \"a\"\n[[jobs]]\nname = \"j\"\n").unwrap();
    assert_eq!(c.server.workers, DEFAULT_WORKERS);
    let j = &c.workspaces[0].jobs[0];
    assert_eq!(j.misfire, Misfire::RunOnce);
    assert_eq!(j.misfire_grace, DEFAULT_MISFIRE_GRACE);
    assert_eq!((j.timeout, j.retries), (None, 0));
}

#[test]
fn daemon_key_mistakes_name_the_key_and_suggest() {
    let errs = errors(
        "[server]\nworkers = 0\n[workspace]\nid = \"a\"\n[[jobs]]\nname = \"j\"\nmisfire = \"run-once\"\ntimeout = \"5x\"\nretries = -1\njiter = \"5s\"\n",
    )
    .join("\n");
    assert!(
        errs.contains("server.workers is 0; use 1 to 1024"),
        "{errs}"
    );
    assert!(
        errs.contains("misfire `run-once` is not a policy"),
        "{errs}"
    );
    assert!(errs.contains("did you mean `run_once`?"), "{errs}");
    assert!(errs.contains("timeout `5x`: unknown unit `x`"), "{errs}");
    assert!(errs.contains("retries is -1"), "{errs}");
    assert!(errs.contains("did you mean `jitter`?"), "{errs}");
}
