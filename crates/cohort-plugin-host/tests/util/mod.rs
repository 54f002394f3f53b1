//! Helpers shared by the host's integration tests: real plugin libraries, a log collector and a
//! tiny scripted HTTP server on 127.0.0.1.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cohort_plugin_host::LogSink;
use cohort_plugin_host::dev::build_cdylib;
use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Builds a plugin package and returns its library.
pub fn plugin(package: &str) -> PathBuf {
    build_cdylib(package, false).unwrap_or_else(|e| panic!("{e}"))
}

/// Compiles a C plugin source into a shared library in a folder kept for the test process.
pub fn c_plugin(source: &Path, file_name: &str) -> PathBuf {
    c_plugin_against(
        source,
        file_name,
        &workspace_root().join("crates/cohort-plugin-api/include"),
    )
}

/// Compiles a C plugin against the header in `include`.
pub fn c_plugin_against(source: &Path, file_name: &str, include: &Path) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let out = dir.path().join(file_name);
    // Tests run in parallel and may build the same plugin: each compiles to its own file, then
    // renames it into place, so no test ever loads a half-written library.
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tmp = dir.path().join(format!("{file_name}.{n}.tmp"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I",
        ])
        .arg(include)
        .arg(source)
        .arg("-o")
        .arg(&tmp)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}`: {e}"));
    assert!(status.success(), "compiling {} failed", source.display());
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Collects log lines as `LEVEL plugin: message fields`.
#[derive(Default)]
pub struct Logs(pub Mutex<Vec<String>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn all(&self) -> String {
        self.lines().join("\n")
    }
}

impl LogSink for Logs {
    fn log(
        &self,
        plugin: &str,
        level: cohort_plugin_api::sdk::Level,
        message: &str,
        fields: &Value,
    ) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{level:?} {plugin}: {message} {fields}"));
    }
}

/// One scripted answer.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A server on 127.0.0.1 answering each connection with the next scripted reply (the last one
/// repeats), recording each request's head and arrival time. It stops when dropped (not after
/// a fixed time: a test may first build its plugin, which takes long on a loaded machine).
pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Server {
    pub fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let seen = requests.clone();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let reply = script[n.min(script.len() - 1)].clone();
                        n += 1;
                        let seen = seen.clone();
                        std::thread::spawn(move || serve(stream, &reply, &seen));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            url,
            requests,
            stop,
        }
    }

    /// A server value for `url` where nothing listens (a refused connection).
    pub fn at(url: String) -> Server {
        Server {
            url,
            requests: Arc::default(),
            stop: Arc::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn serve(stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<(Instant, String)>>) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    seen.lock().unwrap().push((Instant::now(), head));
    std::thread::sleep(reply.delay);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
}
