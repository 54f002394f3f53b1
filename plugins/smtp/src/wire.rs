//! One SMTP connection, spoken by hand over a blocking socket: the greeting, EHLO, STARTTLS
//! (rustls on ring, the workspace's one TLS stack), AUTH PLAIN or LOGIN, and transactions of
//! MAIL, RCPT and DATA, pipelined when the server offers PIPELINING (RFC 2920).
//!
//! Why not lettre's `SmtpConnection`: it writes each command and the message's end-of-data
//! marker as separate small writes on a socket without `TCP_NODELAY`, so every message waited
//! for the server's delayed ACK (about 40 ms on Linux): 22 messages a second on one connection.
//! Here the socket has `TCP_NODELAY`, MAIL, RCPT and DATA leave in one write, and the message
//! with its final dot in another, so a message costs two round trips and no timer. lettre still
//! builds the messages (`message`).
//!
//! It is blocking on purpose: a plugin call is synchronous, and the plugin already runs one
//! thread per connection (at most 32); an async runtime would add a dependency and nothing else.
//!
//! This module only speaks the protocol and reports replies; what a reply means for the record
//! is decided in `client`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use cohort_plugin_api::sdk::http::base64;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// The longest reply accepted, in bytes: a server that talks on and on is broken.
const MAX_REPLY: usize = 64 * 1024;

/// A server's reply: its code and its text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, without the code.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 5xx: the server will never accept this.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 <x@example.com>: no such user`, the lines joined by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for line in &self.lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// Why a step failed.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with an error.
    Reply(Reply),
    /// The connection broke, timed out, or the server said something that is not SMTP.
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Reply(r) => write!(f, "{r}"),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// The socket, in clear or encrypted.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

/// What the server said it can do, from its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `STARTTLS`.
    pub starttls: bool,
    /// `PIPELINING`.
    pub pipelining: bool,
    /// `8BITMIME`.
    pub eight_bit_mime: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `AUTH PLAIN`.
    pub auth_plain: bool,
    /// `AUTH LOGIN`.
    pub auth_login: bool,
}

impl Extensions {
    fn of(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        // The first line is the server's name.
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => ext.starttls = true,
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "AUTH" => {
                    for m in words {
                        match m.to_ascii_uppercase().as_str() {
                            "PLAIN" => ext.auth_plain = true,
                            "LOGIN" => ext.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// One open connection.
pub struct Connection {
    io: BufReader<Stream>,
    hello: String,
    /// What the server offers (after STARTTLS, what it offers then).
    pub extensions: Extensions,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.io.get_ref().tcp().peer_addr().ok())
            .field("encrypted", &matches!(self.io.get_ref(), Stream::Tls(_)))
            .finish_non_exhaustive()
    }
}

/// Where a connection failed while it was being opened.
#[derive(Debug)]
pub enum OpenError {
    /// No TCP connection (refused, unreachable, timed out).
    Connect(io::Error),
    /// The TLS handshake failed (an untrusted certificate, most often).
    Tls(io::Error),
    /// The greeting or EHLO failed.
    Hello(Failure),
}

impl Connection {
    /// Connects, reads the greeting and says EHLO; with `tls`, encrypts first (implicit TLS).
    pub fn open(
        host: &str,
        port: u16,
        timeout: Duration,
        hello: &str,
        tls: Option<(&Arc<ClientConfig>, &ServerName<'static>)>,
    ) -> Result<Connection, OpenError> {
        let tcp = connect(host, port, timeout).map_err(OpenError::Connect)?;
        let stream = match tls {
            Some((config, name)) => encrypt(tcp, config, name).map_err(OpenError::Tls)?,
            None => Stream::Plain(tcp),
        };
        let mut conn = Connection {
            io: BufReader::new(stream),
            hello: hello.to_owned(),
            extensions: Extensions::default(),
        };
        let greeting = conn.read_reply().map_err(OpenError::Hello)?;
        if !greeting.is_positive() {
            return Err(OpenError::Hello(Failure::Reply(greeting)));
        }
        conn.ehlo().map_err(OpenError::Hello)?;
        Ok(conn)
    }

    fn ehlo(&mut self) -> Result<(), Failure> {
        let command = format!("EHLO {}\r\n", self.hello);
        let reply = self.command(command.as_bytes())?;
        self.extensions = Extensions::of(&reply);
        Ok(())
    }

    /// Upgrades to TLS with STARTTLS, then says EHLO again (RFC 3207: what was learnt before
    /// is forgotten).
    pub fn starttls(
        self,
        config: &Arc<ClientConfig>,
        name: &ServerName<'static>,
    ) -> Result<Connection, OpenError> {
        let mut conn = self;
        conn.command(b"STARTTLS\r\n").map_err(OpenError::Hello)?;
        let Connection { io, hello, .. } = conn;
        let Stream::Plain(tcp) = io.into_inner() else {
            return Err(OpenError::Tls(io::Error::other("already encrypted")));
        };
        let stream = encrypt(tcp, config, name).map_err(OpenError::Tls)?;
        let mut conn = Connection {
            io: BufReader::new(stream),
            hello,
            extensions: Extensions::default(),
        };
        conn.ehlo().map_err(OpenError::Hello)?;
        Ok(conn)
    }

    /// AUTH PLAIN (or LOGIN when that is all the server offers). `Ok(false)` when it offers
    /// neither.
    pub fn auth(&mut self, user: &str, password: &str) -> Result<bool, Failure> {
        if self.extensions.auth_plain {
            let token = base64(format!("\0{user}\0{password}").as_bytes());
            self.command(format!("AUTH PLAIN {token}\r\n").as_bytes())?;
            Ok(true)
        } else if self.extensions.auth_login {
            self.command(b"AUTH LOGIN\r\n")?;
            self.command(format!("{}\r\n", base64(user.as_bytes())).as_bytes())?;
            self.command(format!("{}\r\n", base64(password.as_bytes())).as_bytes())?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// One message to one recipient: `Ok` with the server's 250 after the data.
    ///
    /// A refusal of MAIL, RCPT or DATA comes back as the first refusing reply, after which the
    /// connection is reset for the next message (`RSET`), unless the server is closing (421).
    pub fn send(&mut self, from: &str, to: &str, data: &[u8]) -> Result<Reply, Failure> {
        let mut params = String::new();
        if !data.is_ascii() && self.extensions.eight_bit_mime {
            params.push_str(" BODY=8BITMIME");
        }
        if !(from.is_ascii() && to.is_ascii()) && self.extensions.smtputf8 {
            params.push_str(" SMTPUTF8");
        }
        let commands = [
            format!("MAIL FROM:<{from}>{params}\r\n"),
            format!("RCPT TO:<{to}>\r\n"),
            "DATA\r\n".to_owned(),
        ];
        let mut replies = Vec::with_capacity(3);
        if self.extensions.pipelining {
            self.write(commands.concat().as_bytes())?;
            for _ in &commands {
                let reply = self.read_reply()?;
                // A server closing the connection answers nothing more.
                let closing = reply.code == 421;
                replies.push(reply);
                if closing {
                    break;
                }
            }
        } else {
            for c in &commands {
                let reply = self.command_reply(c.as_bytes())?;
                let ok = reply.is_positive();
                replies.push(reply);
                if !ok {
                    break;
                }
            }
        }
        let refused = replies.iter().find(|r| !r.is_positive()).cloned();
        let data_open = replies.get(2).is_some_and(|r| r.code == 354);
        if let Some(refused) = refused {
            if data_open {
                // A server that opened DATA after refusing the recipient: end it empty.
                let _ = self.command_reply(b".\r\n");
            }
            if refused.code != 421 {
                let _ = self.command_reply(b"RSET\r\n");
            }
            return Err(Failure::Reply(refused));
        }
        self.write(&dot_stuffed(data))?;
        let reply = self.read_reply()?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(Failure::Reply(reply))
        }
    }

    /// QUIT, without waiting long for the answer.
    pub fn quit(mut self) {
        let _ = self
            .io
            .get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(1)));
        let _ = self.command_reply(b"QUIT\r\n");
    }

    /// Writes a command and reads its reply; a negative reply is an error.
    fn command(&mut self, command: &[u8]) -> Result<Reply, Failure> {
        let reply = self.command_reply(command)?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(Failure::Reply(reply))
        }
    }

    /// Writes a command and reads its reply, whatever it is.
    fn command_reply(&mut self, command: &[u8]) -> Result<Reply, Failure> {
        self.write(command)?;
        self.read_reply()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Reads one reply, its continuation lines (`250-…`) included.
    fn read_reply(&mut self) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        let mut read = 0;
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take((MAX_REPLY - read) as u64)
                .read_line(&mut line)?;
            read += n;
            if n == 0 || !line.ends_with('\n') {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection without a full reply",
                )));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let (Some(code), sep) = (code, line.as_bytes().get(3).copied()) else {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {line:?}"),
                )));
            };
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if sep != Some(b'-') {
                return Ok(Reply { code, lines });
            }
        }
    }
}

/// Opens the TCP connection, trying each address in turn, with `TCP_NODELAY` (the whole point:
/// see the module's doc) and the timeout on every read and write.
fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                tcp.set_read_timeout(Some(timeout))?;
                tcp.set_write_timeout(Some(timeout))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other(format!("{host} has no address"))))
}

/// Runs the TLS handshake to its end, so that a certificate problem shows here and not at the
/// first command.
fn encrypt(
    mut tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
) -> io::Result<Stream> {
    let mut tls = ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    Ok(Stream::Tls(Box::new(StreamOwned::new(tls, tcp))))
}

/// The message as sent after DATA: CRLF line ends kept, a dot doubled at the start of a line
/// (RFC 5321 4.5.2), a final CRLF ensured, then the lone dot.
fn dot_stuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut line_start = true;
    for &b in data {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_dot_is_doubled_and_the_data_ends_with_a_lone_dot() {
        assert_eq!(dot_stuffed(b"a\r\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuffed(b".\r\n"), b"..\r\n.\r\n");
    }

    #[test]
    fn the_ehlo_reply_says_what_the_server_offers() {
        let reply = Reply {
            code: 250,
            lines: [
                "mx.example Hello",
                "PIPELINING",
                "8BITMIME",
                "AUTH LOGIN PLAIN",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let ext = Extensions::of(&reply);
        assert!(ext.pipelining && ext.eight_bit_mime && ext.auth_plain && ext.auth_login);
        assert!(!ext.starttls && !ext.smtputf8);
    }

    #[test]
    fn a_reply_shows_its_code_and_every_line() {
        let reply = Reply {
            code: 451,
            lines: vec!["4.3.0 Try".into(), "again later".into()],
        };
        assert_eq!(reply.to_string(), "451 4.3.0 Try again later");
        assert!(!reply.is_positive() && !reply.is_permanent());
    }
}
