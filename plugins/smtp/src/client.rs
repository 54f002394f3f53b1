//! Talking to the SMTP server: connections (TLS, STARTTLS, AUTH), one message per transaction,
//! and what each reply means for the record.
//!
//! | the server | [`send`](Slot::send) returns |
//! | --- | --- |
//! | 250 after `DATA` | `Ok(reply)` |
//! | 5xx to `MAIL`, `RCPT` or `DATA` | [`SendError::Rejected`] with the server's text |
//! | 4xx (421 closing, 451 try later, 452 full) | [`SendError::Retry`] with the server's text |
//! | drops the connection, or times out | one more try on a new connection, then [`SendError::Retry`] |
//! | refuses the connection | [`SendError::Unreachable`]: the other messages wait too |
//! | 5xx to `AUTH` (535) | [`SendError::Auth`]: the user fixes `/password` |
//! | a certificate we cannot trust, no STARTTLS offered | [`SendError::Fatal`]: the user fixes the config |
//!
//! The connection itself is ours ([`wire`](crate::wire)): lettre's `SmtpConnection` waited for
//! the server's delayed ACK on every message (see that module); we also need to tell an AUTH
//! refusal (a config error) from a recipient's (a rejected record), and keep connections open
//! between batches.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{TlsMode, Validated};
use crate::message::Prepared;
use crate::wire::{Connection, Failure, OpenError};

/// Why a message was not accepted. Each variant says what happens next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The server refused this message for good (5xx): reject the record with this text.
    Rejected(String),
    /// The server asked to try again later (4xx), or the connection failed twice.
    Retry(String),
    /// The server cannot be reached: this message and every one after it wait.
    Unreachable(String),
    /// The server refused the credentials.
    Auth(String),
    /// The connection cannot work as configured (TLS, STARTTLS): the user must fix the config.
    Fatal(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Rejected(m)
            | SendError::Retry(m)
            | SendError::Unreachable(m)
            | SendError::Auth(m)
            | SendError::Fatal(m) => f.write_str(m),
        }
    }
}

/// How to open a connection: the checked config, made ready once.
pub struct Server {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    credentials: Option<(String, String)>,
    hello: String,
    timeout: Duration,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Prepares TLS (the system's roots plus `ca_pem`) and the credentials.
    pub fn new(config: &Validated, ca_pem: Option<&[u8]>) -> Result<Server, String> {
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => {
                let name = ServerName::try_from(config.host.clone())
                    .map_err(|e| format!("`{}` cannot be checked by TLS: {e}", config.host))?;
                Some((Arc::new(tls_config(ca_pem)?), name))
            }
        };
        Ok(Server {
            host: config.host.clone(),
            port: config.port,
            mode: config.tls,
            tls,
            credentials: config.credentials.clone(),
            hello: config.hello_name.clone(),
            timeout: config.timeout,
        })
    }

    fn where_(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens, encrypts and authenticates one connection.
    fn connect(&self) -> Result<Connection, SendError> {
        let tls = self.tls.as_ref().map(|(c, n)| (c, n));
        let implicit = match self.mode {
            TlsMode::Tls => tls,
            TlsMode::Starttls | TlsMode::None => None,
        };
        let mut conn = Connection::open(&self.host, self.port, self.timeout, &self.hello, implicit)
            .map_err(|e| self.open_error(e))?;
        if let (TlsMode::Starttls, Some((config, name))) = (self.mode, tls) {
            if !conn.extensions.starttls {
                conn.quit();
                return Err(SendError::Fatal(format!(
                    "{} does not offer STARTTLS; use `tls = \"tls\"` for implicit TLS, or \
                     `none` for a local relay",
                    self.where_()
                )));
            }
            conn = conn
                .starttls(config, name)
                .map_err(|e| self.open_error(e))?;
        }
        if let Some((user, password)) = &self.credentials {
            match conn.auth(user, password) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(SendError::Fatal(format!(
                        "authenticating to {}: it offers neither AUTH PLAIN nor LOGIN",
                        self.where_()
                    )));
                }
                Err(Failure::Reply(r)) if r.is_permanent() => {
                    return Err(SendError::Auth(format!(
                        "{} refused the username and password: {r}",
                        self.where_()
                    )));
                }
                Err(e) => {
                    return Err(SendError::Retry(format!(
                        "authenticating to {}: {e}",
                        self.where_()
                    )));
                }
            }
        }
        Ok(conn)
    }

    fn open_error(&self, e: OpenError) -> SendError {
        let at = self.where_();
        match e {
            OpenError::Connect(e) => SendError::Unreachable(format!("connecting to {at}: {e}")),
            OpenError::Tls(e) => SendError::Fatal(format!(
                "connecting to {at}: TLS: {e} (a private or test CA? name its certificate in \
                 `ca_file`)"
            )),
            OpenError::Hello(Failure::Reply(r)) if r.is_permanent() => {
                SendError::Fatal(format!("connecting to {at}: {r}"))
            }
            OpenError::Hello(e) => SendError::Unreachable(format!("connecting to {at}: {e}")),
        }
    }
}

/// rustls on ring with the system's roots, plus the PEM certificates of `ca_pem`.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    // A system without a readable store still works with `ca_file`.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("not a usable CA certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("no PEM certificate in it".to_owned());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One connection kept open between messages, and between batches.
#[derive(Default)]
pub struct Slot(Option<Connection>);

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "open" } else { "closed" })
    }
}

impl Slot {
    /// Sends one message on this slot's connection, opening one if needed. A connection that
    /// breaks without an answer (the server closed an idle one, a reset, a timeout) is replaced
    /// and the message tried once more on the new one.
    pub fn send(&mut self, server: &Server, message: &Prepared) -> Result<String, SendError> {
        let from = message
            .envelope
            .from()
            .map(ToString::to_string)
            .unwrap_or_default();
        let to = message
            .envelope
            .to()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        for attempt in 0..2 {
            let mut conn = match self.0.take() {
                Some(conn) => conn,
                None => server.connect()?,
            };
            match conn.send(&from, &to, &message.bytes) {
                Ok(reply) => {
                    self.0 = Some(conn);
                    return Ok(reply.to_string());
                }
                Err(Failure::Reply(reply)) => {
                    // 421: the server is closing this connection; the next message opens one.
                    if reply.code != 421 {
                        self.0 = Some(conn);
                    }
                    return Err(if reply.is_permanent() {
                        SendError::Rejected(reply.to_string())
                    } else {
                        SendError::Retry(reply.to_string())
                    });
                }
                // The connection broke without an answer: once more, on a new one.
                Err(Failure::Io(_)) if attempt == 0 => {}
                Err(Failure::Io(e)) => {
                    return Err(SendError::Retry(format!(
                        "the connection to {} failed twice: {e}",
                        server.where_()
                    )));
                }
            }
        }
        Err(SendError::Retry("no attempt left".to_owned()))
    }

    /// Closes the connection politely.
    pub fn close(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.quit();
        }
    }
}

/// Spaces message starts to honour `max_per_minute`, across every connection.
#[derive(Debug)]
pub struct Pacer {
    gap: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer that lets one message start every `gap` (`None`: no limit).
    pub fn new(gap: Option<Duration>) -> Pacer {
        Pacer {
            gap,
            next: Mutex::new(None),
        }
    }

    /// Waits for this message's turn.
    pub fn wait(&self) {
        let Some(gap) = self.gap else {
            return;
        };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + gap);
            at
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}
