//! Talking to the SMTP server: connections (TLS, STARTTLS, AUTH), one message per transaction,
//! and what each reply means for the record.
//!
//! | the server | [`send`](Connections::send) returns |
//! | --- | --- |
//! | 250 after `DATA` | `Ok(reply)` |
//! | 5xx to `MAIL`, `RCPT` or `DATA` | [`SendError::Rejected`] with the server's text |
//! | 4xx (421 closing, 451 try later, 452 full) | [`SendError::Retry`] with the server's text |
//! | drops the connection, or times out | one more try on a new connection, then [`SendError::Retry`] |
//! | refuses the connection | [`SendError::Unreachable`]: the other messages wait too |
//! | 5xx to `AUTH` (535) | [`SendError::Auth`]: the user fixes `/password` |
//! | a certificate we cannot trust, no STARTTLS offered | [`SendError::Fatal`]: the user fixes the config |
//!
//! lettre's blocking [`SmtpConnection`] is used directly rather than its transport, because the
//! plugin must tell an AUTH refusal (a config error) from a recipient's (a rejected record), and
//! keep its own connections open between batches.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use crate::config::{TlsMode, Validated};
use crate::message::Prepared;

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
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
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
                let mut builder = TlsParameters::builder(config.host.clone());
                if let Some(pem) = ca_pem {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| format!("not a PEM certificate: {e}"))?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(builder.build_rustls().map_err(|e| e.to_string())?)
            }
        };
        Ok(Server {
            host: config.host.clone(),
            port: config.port,
            mode: config.tls,
            tls,
            credentials: config
                .credentials
                .as_ref()
                .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
            hello: ClientId::Domain(config.hello_name.clone()),
            timeout: config.timeout,
        })
    }

    fn where_(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens, encrypts and authenticates one connection.
    fn connect(&self) -> Result<SmtpConnection, SendError> {
        let wrapper = match self.mode {
            TlsMode::Tls => self.tls.as_ref(),
            TlsMode::Starttls | TlsMode::None => None,
        };
        let mut conn = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(|e| self.connect_error(&e))?;
        if let (TlsMode::Starttls, Some(tls)) = (self.mode, &self.tls) {
            if !conn.can_starttls() {
                conn.abort();
                return Err(SendError::Fatal(format!(
                    "{} does not offer STARTTLS; use `tls = \"tls\"` for implicit TLS, or \
                     `none` for a local relay",
                    self.where_()
                )));
            }
            conn.starttls(tls, &self.hello)
                .map_err(|e| self.connect_error(&e))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .map_err(|e| {
                    if e.is_permanent() {
                        SendError::Auth(format!(
                            "{} refused the username and password: {e}",
                            self.where_()
                        ))
                    } else if e.is_client() {
                        SendError::Fatal(format!("authenticating to {}: {e}", self.where_()))
                    } else {
                        SendError::Retry(format!("authenticating to {}: {e}", self.where_()))
                    }
                })?;
        }
        Ok(conn)
    }

    fn connect_error(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let text = format!("connecting to {}: {e}", self.where_());
        // rustls's refusals reach lettre as I/O errors: tell them by their text.
        let shown = e.to_string();
        if e.is_tls() || shown.contains("certificate") || shown.contains("CertificateRequired") {
            SendError::Fatal(format!(
                "{text} (a private or test CA? name its certificate in `ca_file`)"
            ))
        } else if e.is_permanent() {
            SendError::Fatal(text)
        } else {
            SendError::Unreachable(text)
        }
    }
}

/// One connection kept open between messages, and between batches.
#[derive(Default)]
pub struct Slot(Option<SmtpConnection>);

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
        for attempt in 0..2 {
            let mut conn = match self.0.take() {
                Some(conn) => conn,
                None => server.connect()?,
            };
            match conn.send(&message.envelope, &message.bytes) {
                Ok(reply) => {
                    self.0 = Some(conn);
                    return Ok(reply_text(reply.code().to_string(), reply.message()));
                }
                // lettre has already closed the connection on any error.
                Err(e) if e.is_permanent() => {
                    return Err(SendError::Rejected(e.to_string()));
                }
                Err(e) if e.is_transient() => return Err(SendError::Retry(e.to_string())),
                // The connection broke without an answer: once more, on a new one.
                Err(_) if attempt == 0 => {}
                Err(e) => {
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
        if let Some(mut conn) = self.0.take() {
            let _ = conn.quit();
        }
    }
}

fn reply_text<'a>(code: String, lines: impl Iterator<Item = &'a str>) -> String {
    let mut text = code;
    for line in lines {
        text.push(' ');
        text.push_str(line);
    }
    text
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
