//! A small SMTP sink in Rust, for the benchmark only: it speaks real SMTP (greeting, EHLO with
//! PIPELINING and 8BITMIME, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) on
//! 127.0.0.1, one thread per connection, and counts what it accepts without storing it.
//!
//! Why it exists: aiosmtpd, the tests' server, answers in Python on one core, and the bench
//! must show the plugin's speed, not the server's. Both are measured; the table says which.
//! It checks nothing a real server would refuse: the tests use aiosmtpd for that.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The sink, listening until the process ends.
pub(crate) struct Sink {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    accepted: Arc<AtomicU64>,
}

impl Sink {
    /// Listens on a free port and serves every connection on its own thread.
    pub(crate) fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        let port = listener.local_addr().expect("its address").port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &count);
                });
            }
        });
        Sink { port, accepted }
    }

    /// Messages accepted so far (each with its 250).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

fn serve(stream: TcpStream, accepted: &AtomicU64) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = io::BufWriter::new(stream.try_clone()?);
    let mut input = BufReader::with_capacity(64 * 1024, stream);
    out.write_all(b"220 sink.local ESMTP ready\r\n")?;
    out.flush()?;
    let (mut mail, mut rcpt) = (false, 0);
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        match verb.as_slice() {
            b"EHLO" => out.write_all(
                b"250-sink.local\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            )?,
            b"HELO" => out.write_all(b"250 sink.local\r\n")?,
            b"MAIL" => {
                (mail, rcpt) = (true, 0);
                out.write_all(b"250 2.1.0 OK\r\n")?;
            }
            b"RCPT" if mail => {
                rcpt += 1;
                out.write_all(b"250 2.1.5 OK\r\n")?;
            }
            b"DATA" if mail && rcpt > 0 => {
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                out.flush()?;
                loop {
                    line.clear();
                    if input.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                let n = accepted.fetch_add(1, Ordering::Relaxed) + 1;
                (mail, rcpt) = (false, 0);
                write!(out, "250 2.0.0 OK queued as {n}\r\n")?;
            }
            b"RSET" => {
                (mail, rcpt) = (false, 0);
                out.write_all(b"250 2.0.0 OK\r\n")?;
            }
            b"NOOP" => out.write_all(b"250 2.0.0 OK\r\n")?,
            b"QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return out.flush();
            }
            _ => out.write_all(b"503 5.5.1 Bad sequence of commands\r\n")?,
        }
        // Pipelined commands are answered together, once the client waits for them.
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
}
