//! An in-process fake HTTP server: one per test, on 127.0.0.1 with a free port.
//!
//! Built on hyper's server half, the stack reqwest (and later axum) already bring, on a runtime
//! of its own threads, so synchronous tests (which is what a plugin's tests are: the ABI is
//! synchronous) use it without an async runtime. The runtime has two worker threads: a fake
//! that does real work per request (checking a body against an OpenAPI file, running a batch
//! job) must not make a client's concurrent requests wait on one thread, or a benchmark counts
//! the fake's queue as the client's idleness. Every request is recorded
//! (method, path, query, headers, body, arrival time) for assertions; routes answer with
//! [`Reply`]s that can inject faults: any status, `Retry-After`, a delay, or a connection
//! dropped without an answer. A request no route matches is answered 404 with the list of routes,
//! so a test that asks the wrong path says so.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_plugin_api::wire::Exchange;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One answer, possibly a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// Wait this long before answering (to trip timeouts).
    pub delay: Duration,
    /// Close the connection without answering.
    pub drop_connection: bool,
}

impl Reply {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }

    /// An empty 200.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// A 200 with this JSON.
    pub fn json(body: &Value) -> Reply {
        Reply::ok().with_json(body)
    }

    /// A 200 with this text.
    pub fn text(body: impl Into<String>) -> Reply {
        Reply::ok().with_body(body)
    }

    /// A connection closed without an answer.
    pub fn dropped() -> Reply {
        Reply {
            drop_connection: true,
            ..Reply::ok()
        }
    }

    /// Sets the body to this JSON, with its content type.
    pub fn with_json(self, body: &Value) -> Reply {
        self.with_header("Content-Type", "application/json")
            .with_body(body.to_string())
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds `Retry-After: SECONDS`.
    pub fn retry_after(self, seconds: u64) -> Reply {
        self.with_header("Retry-After", &seconds.to_string())
    }

    /// Answers only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

impl From<&Exchange> for Reply {
    fn from(e: &Exchange) -> Reply {
        Reply {
            status: e.status,
            headers: e.headers.clone(),
            body: e.body.clone(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method, upper case.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers, lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
    /// When its head arrived, before its body was read: a vendor's connection is in use from
    /// then, so fakes that count busy connections count from here.
    pub at: Instant,
}

impl Recorded {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter of that name.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct Route {
    method: String,
    path: String,
    /// When set, the request's query must hold exactly these parameters (in any order).
    query: Option<Vec<(String, String)>>,
    handler: Handler,
}

#[derive(Default)]
struct State {
    routes: Mutex<Vec<Route>>,
    requests: Mutex<Vec<Recorded>>,
    /// See [`FakeServer::busy`].
    busy: Mutex<Duration>,
}

/// A fake HTTP server on 127.0.0.1; it stops when dropped.
pub struct FakeServer {
    url: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// Starts a server with no routes on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port or thread can be had: a test cannot go on without its server.
    pub fn start() -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the bound address")
        );
        let state = Arc::new(State::default());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("cohort-fake-http".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("cohort-fake-http")
                    .enable_all()
                    .build()
                    .expect("the fake server's runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let state = served.clone();
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| answer(state.clone(), req));
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("the fake server's thread");
        FakeServer {
            url,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// A server answering an example's canned exchanges (see
    /// [`Exchange`](cohort_plugin_api::wire::Exchange)).
    pub fn with_exchanges(exchanges: &[Exchange]) -> FakeServer {
        let server = FakeServer::start();
        server.serve_exchanges(exchanges);
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of a path on this server.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Answers `METHOD path` (any query) with whatever `handler` makes of the request. A path
    /// ending in `*` takes every path that starts with what precedes it (a vendor's
    /// `/lists/{id}/members/{hash}`); an exact route is not preferred over it, so register
    /// either, not both, for one path.
    pub fn on(
        &self,
        method: &str,
        path: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> &FakeServer {
        self.add(method, path, None, Arc::new(handler))
    }

    /// Answers `METHOD path` (any query) with `reply`, every time.
    pub fn reply(&self, method: &str, path: &str, reply: Reply) -> &FakeServer {
        self.on(method, path, move |_| reply.clone())
    }

    /// Answers `METHOD path` with `replies` in turn; the last one repeats.
    pub fn script(&self, method: &str, path: &str, replies: Vec<Reply>) -> &FakeServer {
        let next = AtomicUsize::new(0);
        self.on(method, path, move |_| {
            let n = next.fetch_add(1, Ordering::SeqCst);
            replies
                .get(n.min(replies.len().saturating_sub(1)))
                .cloned()
                .unwrap_or_else(|| Reply::status(500).with_body("an empty script"))
        })
    }

    /// Serves canned exchanges: an exchange with a query answers exactly that query (in any
    /// order), one without answers the rest.
    pub fn serve_exchanges(&self, exchanges: &[Exchange]) -> &FakeServer {
        for e in exchanges {
            let (path, query) = match e.path.split_once('?') {
                Some((p, q)) => (p, Some(parse_query(q))),
                None => (e.path.as_str(), None),
            };
            let reply = Reply::from(e);
            self.add(&e.method, path, query, Arc::new(move |_| reply.clone()));
        }
        self
    }

    fn add(
        &self,
        method: &str,
        path: &str,
        query: Option<Vec<(String, String)>>,
        handler: Handler,
    ) -> &FakeServer {
        let query = query.map(|mut q| {
            q.sort();
            q
        });
        lock(&self.state.routes).push(Route {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query,
            handler,
        });
        self
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// The requests to one path.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// The time requests were in, summed: each from its head arriving to its answer being
    /// handed to the connection, its delay included. Divided by the wall time, the average
    /// number of requests in flight, as a vendor that limits simultaneous connections counts
    /// them: a request answered late because the server was busy still held its connection.
    pub fn busy(&self) -> Duration {
        *lock(&self.state.busy)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the server closed a connection without answering (a [`Reply::dropped`]).
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn answer(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let at = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let recorded = Recorded {
        method,
        path,
        query,
        headers,
        body,
        at,
    };
    lock(&state.requests).push(recorded.clone());
    let handler = route(&state, &recorded);
    let reply = match handler {
        Some(h) => h(&recorded),
        None => Reply::status(404).with_body(format!(
            "the fake server has no route for {} {}{}; it serves: {}",
            recorded.method,
            recorded.path,
            show_query(&recorded.query),
            lock(&state.routes)
                .iter()
                .map(|r| format!(
                    "{} {}{}",
                    r.method,
                    r.path,
                    r.query.as_deref().map(show_query).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    *lock(&state.busy) += at.elapsed();
    if reply.drop_connection {
        return Err(Dropped);
    }
    let mut response = hyper::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        response = response.header(k, v);
    }
    response
        .body(Full::new(Bytes::from(reply.body)))
        .map_err(|_| Dropped)
}

/// The handler for a request: a route with a matching query first, then one for any query.
fn route(state: &State, request: &Recorded) -> Option<Handler> {
    let routes = lock(&state.routes);
    let mut sorted = request.query.clone();
    sorted.sort();
    let candidates = || {
        routes
            .iter()
            .filter(|r| r.method == request.method && path_matches(&r.path, &request.path))
    };
    candidates()
        .find(|r| r.query.as_ref() == Some(&sorted))
        .or_else(|| candidates().find(|r| r.query.is_none()))
        .map(|r| r.handler.clone())
}

/// Whether a route's path takes a request's: the same path, or, for a route ending in `*`,
/// any path that starts with what precedes it (`/lists/*` takes `/lists/L1/members/ab12`).
fn path_matches(route: &str, path: &str) -> bool {
    match route.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => route == path,
    }
}

fn show_query(query: &[(String, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("?{}", pairs.join("&"))
}

/// Splits and percent-decodes a query string (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_percent_escapes_and_plus() {
        assert_eq!(
            parse_query("since=2024-03-01T00%3A00%3A00Z&q=a+b&bad=%zz&flag"),
            [
                ("since".to_owned(), "2024-03-01T00:00:00Z".to_owned()),
                ("q".to_owned(), "a b".to_owned()),
                ("bad".to_owned(), "%zz".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
    }
}
