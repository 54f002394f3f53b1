//! The cap on a vendor account's requests in flight, for vendors that limit simultaneous
//! connections (Mailchimp: 10 per account) rather than, or as well as, requests per second.
//!
//! The host keeps it, not the plugin, for two reasons:
//! - one account may be pushed to by several instances at once (two campaigns on one
//!   Mailchimp key, in two workspaces of an agency), and only the process sees them all;
//! - a place is held only while the request is on the wire. A cap inside the plugin also holds
//!   it while the request crosses the ABI and is decoded, and while the answer travels back,
//!   so the vendor sees fewer connections busy than the plugin holds.
//!
//! Invariants:
//! - at most `limit` places of one account are held at once, `limit` being the strictest any
//!   request of the account has asked for;
//! - a stricter limit applies to the next request at once: places held above it are not
//!   handed on when their holders finish, until the account is back within the limit;
//! - a waiter that gives up (its work was cancelled) holds no place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every account's cap, by the account's key (the rate-limit bucket's, see `http`).
#[derive(Debug, Default)]
pub(crate) struct Caps {
    accounts: Mutex<HashMap<String, Arc<Cap>>>,
}

impl Caps {
    /// The cap of account `key`, made on first use and tightened when `limit` is stricter than
    /// the one it has.
    pub(crate) fn get(&self, key: &str, limit: u32) -> Arc<Cap> {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let cap = accounts
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Cap::new(limit)));
        cap.tighten(limit);
        cap.clone()
    }
}

/// One account's places.
#[derive(Debug)]
pub(crate) struct Cap {
    places: Arc<Semaphore>,
    /// The limit, and how many places still held must not be handed on when given back
    /// (after a stricter limit came while they were out). One lock for both, also taken when
    /// a place is given back, so that tightening and giving back never interleave.
    books: Mutex<Books>,
}

#[derive(Debug)]
struct Books {
    limit: u32,
    owed: usize,
}

impl Cap {
    fn new(limit: u32) -> Cap {
        let limit = limit.max(1);
        Cap {
            places: Arc::new(Semaphore::new(limit as usize)),
            books: Mutex::new(Books { limit, owed: 0 }),
        }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        // Nothing panics while the books are open, so a poisoned lock still holds them right.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tighten(&self, limit: u32) {
        let limit = limit.max(1);
        let mut books = self.books();
        if limit >= books.limit {
            return;
        }
        let excess = (books.limit - limit) as usize;
        books.limit = limit;
        // Free places go at once; the rest are owed by their holders.
        books.owed += excess - self.places.forget_permits(excess);
    }

    /// Waits for a place, held until the [`Place`] is dropped. Cancel-safe: dropping the
    /// future while it waits takes no place.
    pub(crate) async fn enter(self: &Arc<Cap>) -> Place {
        let permit = self
            .places
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("a cap's semaphore is never closed"));
        Place {
            permit: Some(permit),
            cap: self.clone(),
        }
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.places.available_permits()
    }
}

/// A place among an account's requests in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    permit: Option<OwnedSemaphorePermit>,
    cap: Arc<Cap>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut books = self.cap.books();
        let Some(permit) = self.permit.take() else {
            return;
        };
        if books.owed > 0 {
            books.owed -= 1;
            permit.forget();
        } else {
            // Handed on while the books are still locked, so a tightening waits for it.
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn enters_at_once(cap: &Arc<Cap>) -> Option<Place> {
        tokio::time::timeout(Duration::from_millis(20), cap.enter())
            .await
            .ok()
    }

    #[tokio::test]
    async fn an_account_has_at_most_its_limit_of_requests_out() {
        let caps = Caps::default();
        let cap = caps.get("mailchimp\0key", 2);
        let first = cap.enter().await;
        let _second = cap.enter().await;
        assert!(enters_at_once(&cap).await.is_none(), "a third waits");
        drop(first);
        assert!(
            enters_at_once(&cap).await.is_some(),
            "one given back lets one in"
        );
    }

    #[tokio::test]
    async fn instances_on_one_account_share_its_places_and_other_accounts_do_not() {
        let caps = Caps::default();
        let _held = caps.get("a", 1).enter().await;
        assert!(enters_at_once(&caps.get("a", 1)).await.is_none());
        assert!(enters_at_once(&caps.get("b", 1)).await.is_some());
    }

    #[tokio::test]
    async fn a_stricter_limit_applies_at_once_and_places_above_it_are_not_handed_on() {
        let caps = Caps::default();
        let cap = caps.get("a", 4);
        let mut held = vec![cap.enter().await, cap.enter().await, cap.enter().await];
        caps.get("a", 2);
        assert_eq!(cap.free(), 0, "three out, limit two: none free");
        held.pop();
        assert_eq!(cap.free(), 0, "two out: still none free");
        held.pop();
        assert_eq!(cap.free(), 1, "one out: one free");
        let _again = cap.enter().await;
        assert!(enters_at_once(&cap).await.is_none(), "two out at most");
    }

    #[tokio::test]
    async fn a_looser_limit_leaves_the_account_as_it_is() {
        let caps = Caps::default();
        let cap = caps.get("a", 1);
        let _held = cap.enter().await;
        assert!(enters_at_once(&caps.get("a", 10)).await.is_none());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_holds_no_place() {
        let caps = Caps::default();
        let cap = caps.get("a", 1);
        let held = cap.enter().await;
        assert!(enters_at_once(&cap).await.is_none(), "gave up");
        drop(held);
        assert_eq!(cap.free(), 1);
    }

    #[test]
    fn a_limit_of_zero_is_one() {
        let cap = Caps::default().get("a", 0);
        assert_eq!(cap.free(), 1);
    }
}
