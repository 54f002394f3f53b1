//! A real SMTP server for the tests: `smtp_server.py` (aiosmtpd) in a child process on
//! 127.0.0.1, storing what it receives in a temporary folder, with faults set through its
//! `control.json`; and an in-memory state store standing in for Cohort's.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, Batch, DestinationMode, Message, Operation};
use cohort_plugin_host::StateStore;
use serde_json::{Value, json};

pub const USER: &str = "shop";
pub const PASSWORD: &str = "pw-TOPSECRET-8c1f";

pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

pub fn ca_file() -> String {
    tests_dir().join("certs/ca.pem").display().to_string()
}

/// The server process; killed when dropped.
pub struct SmtpServer {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Plain SMTP, no auth.
    pub fn plain() -> SmtpServer {
        SmtpServer::start(&[])
    }

    /// STARTTLS required (the test CA's certificate), then AUTH required.
    pub fn starttls() -> SmtpServer {
        SmtpServer::start(&["--tls", "--auth"])
    }

    /// `--tls` serves the test certificate (STARTTLS, or implicit with `--implicit-tls`);
    /// `--auth` requires `USER`/`PASSWORD`; other arguments go to the script as they are.
    pub fn start(options: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let certs = tests_dir().join("certs");
        let mut args: Vec<String> = vec![
            tests_dir().join("smtp_server.py").display().to_string(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        for o in options {
            match *o {
                "--tls" => args.extend([
                    "--cert".into(),
                    certs.join("server.pem").display().to_string(),
                    "--key".into(),
                    certs.join("server.key").display().to_string(),
                ]),
                "--auth" => args.extend(["--auth".into(), format!("{USER}:{PASSWORD}")]),
                other => args.push(other.into()),
            }
        }
        let python = std::env::var("COHORT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {python} (the SMTP test server): {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the SMTP test server did not start (is aiosmtpd installed? \
                     `pip install aiosmtpd`); it said {line:?}"
                )
            });
        let stdin = child.stdin.take();
        SmtpServer {
            child,
            stdin,
            port,
            dir,
        }
    }

    /// Sets the faults (see `smtp_server.py`).
    pub fn control(&self, control: &Value) {
        let tmp = self.dir.path().join("control.json.tmp");
        std::fs::write(&tmp, control.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.path().join("control.json")).unwrap();
    }

    /// Every message stored so far, in the order received.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let envelope: Value = serde_json::from_str(
                    &std::fs::read_to_string(eml.with_extension("json")).unwrap(),
                )
                .unwrap();
                Received {
                    mail_from: envelope["mail_from"].as_str().unwrap().to_owned(),
                    rcpt_tos: envelope["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect(),
                    data: String::from_utf8(std::fs::read(&eml).unwrap()).unwrap(),
                }
            })
            .collect()
    }

    /// How many messages each recipient received.
    pub fn copies(&self) -> BTreeMap<String, usize> {
        let mut copies = BTreeMap::new();
        for m in self.messages() {
            for r in m.rcpt_tos {
                *copies.entry(r).or_default() += 1;
            }
        }
        copies
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
}

impl Received {
    /// The top-level header `name`, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = &mut found {
                    v.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                found = Some(v.trim_start().to_owned());
            }
        }
        found
    }
}

/// Cohort's state service, in memory.
#[derive(Debug, Default)]
pub struct MemState(pub Mutex<BTreeMap<String, Value>>);

impl StateStore for MemState {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        let mut map = self.0.lock().unwrap();
        match value {
            Some(v) => map.insert(key.to_owned(), v.clone()),
            None => map.remove(key),
        };
        Ok(())
    }
}

/// A send operation to `to`, keyed like Cohort's (`acme/winback/N/1-send`).
pub fn send(n: usize, to: &str) -> Operation {
    Operation {
        key: format!("acme/winback/{n}/1-send"),
        action: Action::Send,
        customer_id: CustomerId::new(n.to_string()),
        customer: None,
        payload: Value::Null,
        previous: Value::Null,
        message: Some(Message {
            from: Some("Récords Shop <shop@shop.example>".into()),
            to: vec![to.into()],
            subject: Some(format!("We miss you, customer {n}")),
            text: None,
            html: Some(format!("<p>Hello <b>customer {n}</b></p>")),
            headers: vec![(
                "List-Unsubscribe".into(),
                format!("<https://shop.example/u/{n}>"),
            )],
        }),
    }
}

pub fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("acme".into()),
        campaign: Some("winback".into()),
        mode: DestinationMode::Send,
        audience: Some("winback".into()),
        replace: None,
        operations,
    }
}

/// `n` recipients `c1@example.com` … .
pub fn sends(n: usize) -> Vec<Operation> {
    (1..=n)
        .map(|i| send(i, &format!("c{i}@example.com")))
        .collect()
}

/// The plain config for a server.
pub fn plain_config(server: &SmtpServer) -> Value {
    json!({"host": "127.0.0.1", "port": server.port, "tls": "none", "connections": 1, "timeout": 5})
}
