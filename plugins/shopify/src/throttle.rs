//! The shop's query-cost bucket, as Shopify reports it in `extensions.cost.throttleStatus`, and
//! the pace that keeps each request inside it.
//!
//! Shopify's GraphQL limit is a leaky bucket of points per app and shop: a query takes its
//! requested cost when it starts (and gives back what it did not use), the bucket refills at the
//! plan's restore rate. A query the bucket cannot cover is THROTTLED. So before each request the
//! source waits until the bucket, as last reported plus what it restored since, holds the query's
//! requested cost, and takes the cost out at once: the bucket is spent to the last point without
//! a THROTTLED reply. Sources of one process that share a shop and token share one [`Bucket`]
//! (the map is process-wide), as they share Shopify's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `extensions.cost.throttleStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleStatus {
    /// The bucket's size.
    pub maximum_available: f64,
    /// Points in it now.
    pub currently_available: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

/// `extensions.cost`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// What the query asked for.
    #[serde(default)]
    pub requested_query_cost: Option<f64>,
    /// What it used (`null` when it did not run).
    #[serde(default)]
    pub actual_query_cost: Option<f64>,
    /// The bucket after it.
    pub throttle_status: ThrottleStatus,
}

/// What the source knows of a shop's bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    status: Option<(ThrottleStatus, Instant)>,
    /// Points the source's queries used (actual costs), for the budget figures.
    pub used: f64,
    /// THROTTLED replies received.
    pub throttled: u64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            status: None,
            used: 0.0,
            throttled: 0,
        }
    }
}

impl Bucket {
    /// Points in the bucket at `now`, by the last report and the restore rate since.
    pub fn available(&self, now: Instant) -> Option<f64> {
        let (s, at) = self.status?;
        let restored = now.saturating_duration_since(at).as_secs_f64() * s.restore_rate;
        Some((s.currently_available + restored).min(s.maximum_available))
    }

    /// The bucket's size, once known.
    pub fn maximum(&self) -> Option<f64> {
        self.status.map(|(s, _)| s.maximum_available)
    }

    /// How long to wait before a query of `cost` fits; takes the cost out when it does
    /// (`Duration::ZERO`), so that a concurrent source sees it spent.
    pub fn reserve(&mut self, cost: f64, now: Instant) -> Duration {
        let Some(available) = self.available(now) else {
            return Duration::ZERO;
        };
        let Some((mut s, _)) = self.status else {
            return Duration::ZERO;
        };
        // A query larger than the bucket waits for a full one (page sizes prevent it).
        let cost = cost.min(s.maximum_available);
        if available >= cost {
            s.currently_available = available - cost;
            self.status = Some((s, now));
            return Duration::ZERO;
        }
        let rate = s.restore_rate.max(0.1);
        // A little over the exact time: Shopify's bucket and ours never tick together.
        Duration::from_secs_f64((cost - available) / rate + 0.02)
    }

    /// Takes in what Shopify reported with an answer.
    pub fn observe(&mut self, cost: &Cost, now: Instant) {
        self.status = Some((cost.throttle_status, now));
        if let Some(actual) = cost.actual_query_cost {
            self.used += actual;
        }
    }

    /// How long until the bucket holds `cost`, after a THROTTLED reply.
    pub fn wait_for(&self, cost: f64, now: Instant) -> Duration {
        match (self.available(now), self.status) {
            (Some(available), Some((s, _))) if available < cost => Duration::from_secs_f64(
                (cost.min(s.maximum_available) - available) / s.restore_rate.max(0.1) + 0.05,
            ),
            (Some(_), _) => Duration::from_millis(50),
            (None, _) => Duration::from_secs(1),
        }
    }
}

type Shared = Arc<Mutex<Bucket>>;

/// The bucket of a shop and token (`key` names them without the token), shared in the process.
pub fn shared(key: &str) -> Shared {
    static BUCKETS: OnceLock<Mutex<BTreeMap<String, Shared>>> = OnceLock::new();
    let map = BUCKETS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(available: f64) -> Cost {
        Cost {
            requested_query_cost: Some(10.0),
            actual_query_cost: Some(10.0),
            throttle_status: ThrottleStatus {
                maximum_available: 1000.0,
                currently_available: available,
                restore_rate: 50.0,
            },
        }
    }

    #[test]
    fn a_query_waits_until_the_restored_bucket_holds_its_cost_and_then_takes_it() {
        let t0 = Instant::now();
        let mut b = Bucket::default();
        assert_eq!(
            b.reserve(500.0, t0),
            Duration::ZERO,
            "unknown: go and learn"
        );
        b.observe(&status(100.0), t0);
        let wait = b.reserve(600.0, t0);
        assert!(
            (wait.as_secs_f64() - 10.02).abs() < 1e-6,
            "500 points at 50/s: {wait:?}"
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.available(later), Some(600.0));
        assert_eq!(b.reserve(600.0, later), Duration::ZERO);
        assert_eq!(b.available(later), Some(0.0), "the cost is taken at once");
        assert_eq!(
            b.available(t0 + Duration::from_secs(100)),
            Some(1000.0),
            "never more than the bucket"
        );
    }

    #[test]
    fn sources_on_one_shop_and_token_share_a_bucket() {
        let a = shared("acme.myshopify.com:1");
        a.lock().unwrap().observe(&status(7.0), Instant::now());
        let b = shared("acme.myshopify.com:1");
        assert!(b.lock().unwrap().maximum().is_some());
        assert!(
            shared("acme.myshopify.com:2")
                .lock()
                .unwrap()
                .maximum()
                .is_none()
        );
    }
}
