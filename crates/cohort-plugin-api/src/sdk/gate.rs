//! A cap on one vendor account's requests in flight, shared by every thread that sends them,
//! for hosts before ABI 1.4: later hosts keep the cap themselves (`HttpRequest::connections`),
//! across instances and only while a request is on the wire.
//!
//! Some vendors limit simultaneous connections rather than requests per second (Mailchimp:
//! 10 per account). Capping the *work* in progress at that number wastes the limit: between
//! two requests a worker reads the last answer and builds the next body, and while it does, its
//! connection sits idle. Capping the *requests* instead lets more workers than connections make
//! progress, each taking a connection only for the time its request is out, so a worker that is
//! busy on the client side leaves its connection to one that is ready to send.
//!
//! The permit is held for the whole of [`Host::http`](super::Host::http), retries and their
//! waits included: the host retries a 429 on the same permit, so a retry never competes with
//! a fresh request for the account's last connection.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// At most `limit` holders at once; cloning shares the count.
#[derive(Clone)]
pub(crate) struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    in_flight: Mutex<usize>,
    freed: Condvar,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("limit", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate letting `limit` (at least 1) through at once.
    pub(crate) fn new(limit: usize) -> Gate {
        Gate {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                in_flight: Mutex::new(0),
                freed: Condvar::new(),
            }),
        }
    }

    /// Waits for a place, and holds it until the permit is dropped.
    pub(crate) fn enter(&self) -> Permit<'_> {
        // A holder cannot panic while the lock is held (it only counts), so a poisoned lock
        // still holds a correct count.
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *in_flight >= self.inner.limit {
            in_flight = self
                .inner
                .freed
                .wait(in_flight)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *in_flight += 1;
        Permit { gate: self }
    }
}

/// A place in the gate, given back when dropped (also when the request panics).
pub(crate) struct Permit<'a> {
    gate: &'a Gate,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let inner = &self.gate.inner;
        *inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) -= 1;
        inner.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn holders_never_exceed_the_limit_and_all_get_through() {
        let gate = Gate::new(3);
        let now = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let _permit = gate.enter();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 60);
        assert_eq!(
            peak.load(Ordering::SeqCst),
            3,
            "the limit is reached, never passed"
        );
    }

    #[test]
    fn a_panicking_holder_gives_its_place_back() {
        let gate = Gate::new(1);
        let g = gate.clone();
        let result = std::thread::spawn(move || {
            let _permit = g.enter();
            panic!("the request panicked");
        })
        .join();
        assert!(result.is_err());
        // With the place lost this would wait for ever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _permit = gate.enter();
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the one place is free again");
    }

    #[test]
    fn a_limit_of_zero_lets_one_through() {
        let gate = Gate::new(0);
        let _first = gate.enter();
        assert_eq!(*gate.inner.in_flight.lock().unwrap(), 1);
    }
}
