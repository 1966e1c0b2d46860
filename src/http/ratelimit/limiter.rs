//! [`RateLimiter`]: every bucket the server keeps, by key and class.

use std::time::Instant;

use dashmap::DashMap;

use super::bucket::{Bucket, Clock, UNIT, ceil_secs};
use super::shares::{Req, Shares};
use super::{Class, Decision};

/// Token buckets for every key (an organization's purpose, a client address, a device) seen
/// recently, and the API tokens' shares of their organizations' quotas. Shared by every
/// request; contention is per key and per organization.
#[derive(Debug)]
pub struct RateLimiter {
    /// One slot per class, keyed by the bucket's name (no allocation to look one up).
    buckets: DashMap<String, [Option<Bucket>; 2]>,
    /// Organizations' API quotas, shared out among their tokens.
    shares: Shares,
    clock: Clock,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    /// An empty limiter (every bucket starts full on first use).
    pub fn new() -> Self {
        RateLimiter {
            buckets: DashMap::new(),
            shares: Shares::default(),
            clock: Clock::new(),
        }
    }

    /// Charges a request of API token `token` to its share of organization `org`'s `class`
    /// quota of `per_min` a minute (see [`super::shares`]).
    pub fn check_token(&self, org: &str, token: &str, class: Class, per_min: u32) -> Decision {
        self.check_token_at(org, token, class, per_min, Instant::now())
    }

    /// [`RateLimiter::check_token`] at a given instant (for tests).
    pub fn check_token_at(
        &self,
        org: &str,
        token: &str,
        class: Class,
        per_min: u32,
        now: Instant,
    ) -> Decision {
        let req = Req {
            org,
            token,
            class,
            per_min,
        };
        self.shares.check(req, &self.clock, now)
    }

    /// What [`RateLimiter::check_token`] would report, without charging or counting the token
    /// as contending.
    pub fn peek_token(&self, org: &str, token: &str, class: Class, per_min: u32) -> Decision {
        let req = Req {
            org,
            token,
            class,
            per_min,
        };
        self.shares.peek(req, &self.clock, Instant::now())
    }

    /// Gives back one charge of [`RateLimiter::check_token`]: the request bought nothing.
    pub fn refund_token(&self, org: &str, token: &str, class: Class) {
        self.shares.refund(org, token, class);
    }

    /// Takes a token from `key`'s `class` bucket, limited to `per_min` requests a minute.
    pub fn check(&self, key: &str, class: Class, per_min: u32) -> Decision {
        self.check_at(key, class, per_min, Instant::now())
    }

    /// The bucket's state without taking a token: the headers of a request that is not charged.
    pub fn peek(&self, key: &str, class: Class, per_min: u32) -> Decision {
        let now = Instant::now();
        match self.buckets.get_mut(key) {
            Some(mut slots) => {
                let bucket = slots[class.index()].get_or_insert(Bucket::full(per_min, now));
                bucket.update(per_min, now);
                self.decision(bucket, true, now)
            }
            None => self.decision(&Bucket::full(per_min, now), true, now),
        }
    }

    /// [`RateLimiter::check`] at a given instant (for tests). Instants earlier than the bucket's
    /// last update count as no time passing.
    pub fn check_at(&self, key: &str, class: Class, per_min: u32, now: Instant) -> Decision {
        let decide = |slot: &mut Option<Bucket>| {
            let bucket = slot.get_or_insert(Bucket::full(per_min, now));
            bucket.update(per_min, now);
            let allowed = bucket.take();
            self.decision(bucket, allowed, now)
        };
        // Fast path: the key is known; only its shard is locked, without allocating.
        if let Some(mut slots) = self.buckets.get_mut(key) {
            return decide(&mut slots[class.index()]);
        }
        let mut slots = self.buckets.entry(key.to_owned()).or_insert([None, None]);
        decide(&mut slots[class.index()])
    }

    /// Forgets buckets that have refilled completely: a new bucket starts full, so this loses
    /// nothing and bounds memory to the keys active in the last minute or so.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    /// [`RateLimiter::sweep`] at a given instant (for tests).
    pub fn sweep_at(&self, now: Instant) {
        self.buckets.retain(|_, slots| {
            for slot in slots.iter_mut() {
                if slot.is_some_and(|b| b.is_full_at(now)) {
                    *slot = None;
                }
            }
            slots.iter().any(Option::is_some)
        });
        self.shares.sweep_at(now);
    }

    /// How many keys and organizations are held.
    pub fn len(&self) -> usize {
        self.buckets.len() + self.shares.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn decision(&self, bucket: &Bucket, allowed: bool, now: Instant) -> Decision {
        let now_unix_ns = self.clock.unix_nanos(now);
        let (reset, retry_after) = match bucket.nanos_until(bucket.capacity()) {
            // A zero limit never refills; report a minute, the period limits are expressed in.
            None => (
                ceil_secs(now_unix_ns + 60_000_000_000),
                if allowed { 0 } else { 60 },
            ),
            Some(to_full) => {
                let retry_after = if allowed {
                    0
                } else {
                    ceil_secs(bucket.nanos_until(UNIT).unwrap_or(0)).max(1)
                };
                (ceil_secs(now_unix_ns + to_full), retry_after)
            }
        };
        Decision {
            allowed,
            limit: bucket.per_min,
            remaining: u32::try_from(bucket.units / UNIT).unwrap_or(u32::MAX),
            reset,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_fresh_bucket_allows_a_full_minute_then_refuses() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..60 {
            let d = limiter.check_at("org", Class::Write, 60, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.limit, 60);
            assert_eq!(d.remaining, 59 - i);
        }
        let d = limiter.check_at("org", Class::Write, 60, t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, 1, "60/min refills one token a second");
    }

    #[test]
    fn tokens_refill_continuously() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..600 {
            assert!(limiter.check_at("org", Class::Read, 600, t0).allowed);
        }
        assert!(!limiter.check_at("org", Class::Read, 600, t0).allowed);
        // 600/min = 10/s: 100 ms brings back exactly one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.check_at("org", Class::Read, 600, t1).allowed);
        assert!(!limiter.check_at("org", Class::Read, 600, t1).allowed);
        let t2 = t1 + SEC;
        let d = limiter.check_at("org", Class::Read, 600, t2);
        assert!(d.allowed);
        assert_eq!(d.remaining, 9);
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_one_token() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert!(limiter.check_at("org", Class::Write, 1, t0).allowed);
        let d = limiter.check_at("org", Class::Write, 1, t0 + Duration::from_millis(500));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 60, "1/min needs 59.5 s more, rounded up");
    }

    #[test]
    fn reset_is_when_the_bucket_is_full_again() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let unix_ns = limiter.clock.unix_nanos(t0);
        let full = limiter.check_at("org", Class::Read, 600, t0);
        // One token short of full refills in 0.1 s (600/min); reset rounds up to a second.
        assert_eq!(full.reset, ceil_secs(unix_ns + 100_000_000));
        for _ in 0..599 {
            limiter.check_at("org", Class::Read, 600, t0);
        }
        let empty = limiter.check_at("org", Class::Read, 600, t0);
        assert_eq!(empty.remaining, 0);
        assert_eq!(empty.reset, ceil_secs(unix_ns + 60_000_000_000));
        let now_secs = u64::try_from(unix_ns / 1_000_000_000).unwrap();
        assert!((60..=61).contains(&(empty.reset - now_secs)));
    }

    #[test]
    fn organizations_and_classes_have_separate_buckets() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert!(limiter.check_at("a", Class::Write, 1, t0).allowed);
        assert!(!limiter.check_at("a", Class::Write, 1, t0).allowed);
        assert!(limiter.check_at("a", Class::Read, 1, t0).allowed);
        assert!(limiter.check_at("b", Class::Write, 1, t0).allowed);
    }

    #[test]
    fn a_changed_limit_is_adopted() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..10 {
            limiter.check_at("org", Class::Write, 10, t0);
        }
        assert!(!limiter.check_at("org", Class::Write, 10, t0).allowed);
        // Raised: the extra capacity is available at once (1/6 token refilled + 5990 added).
        let d = limiter.check_at("org", Class::Write, 6000, t0 + SEC);
        assert!(d.allowed);
        assert_eq!(d.limit, 6000);
        assert_eq!(d.remaining, 5989);
        // ...and it refills at the new rate (6000/min = 100/s).
        let d = limiter.check_at("org", Class::Write, 6000, t0 + Duration::from_millis(1050));
        assert_eq!(d.remaining, 5989 + 5 - 1);
        // Lowered: tokens above the new capacity are dropped.
        let d = limiter.check_at("org", Class::Write, 5, t0 + 60 * SEC);
        assert_eq!((d.limit, d.remaining), (5, 4));
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let limiter = RateLimiter::new();
        let d = limiter.check("org", Class::Write, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 60);
    }

    #[test]
    fn time_going_backwards_grants_nothing() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now() + 10 * SEC;
        assert!(limiter.check_at("org", Class::Write, 1, t0).allowed);
        assert!(
            !limiter
                .check_at("org", Class::Write, 1, t0 - 5 * SEC)
                .allowed
        );
    }

    #[test]
    fn sweep_forgets_only_full_buckets() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        limiter.check_at("idle", Class::Read, 600, t0);
        limiter.check_at("busy", Class::Write, 60, t0);
        limiter.sweep_at(t0 + Duration::from_millis(500));
        assert_eq!(limiter.len(), 1, "idle refilled its one token in 0.1 s");
        limiter.sweep_at(t0 + 2 * SEC);
        assert!(limiter.is_empty());
    }

    proptest! {
        #[test]
        fn never_allows_more_than_capacity_plus_refill(
            per_min in 1u32..1000,
            gaps_ms in prop::collection::vec(0u64..2000, 1..400),
        ) {
            let limiter = RateLimiter::new();
            let t0 = Instant::now();
            let mut now = t0;
            let mut allowed = 0u128;
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                let d = limiter.check_at("org", Class::Read, per_min, now);
                prop_assert!(d.remaining <= per_min);
                if d.allowed {
                    allowed += 1;
                } else {
                    prop_assert!(d.retry_after >= 1);
                }
                // allowed ≤ capacity + elapsed × rate, in exact integer units.
                let elapsed_ns = now.duration_since(t0).as_nanos();
                prop_assert!(
                    allowed * UNIT <= u128::from(per_min) * UNIT + elapsed_ns * u128::from(per_min),
                    "allowed {} after {:?}", allowed, now.duration_since(t0)
                );
            }
        }

        #[test]
        fn a_request_waiting_retry_after_is_allowed(per_min in 1u32..5000, burst in 1usize..50) {
            let limiter = RateLimiter::new();
            let t0 = Instant::now();
            let mut last = None;
            for _ in 0..(per_min as usize + burst) {
                last = Some(limiter.check_at("org", Class::Write, per_min, t0));
            }
            let refused = last.unwrap();
            prop_assert!(!refused.allowed);
            let later = t0 + Duration::from_secs(refused.retry_after);
            prop_assert!(limiter.check_at("org", Class::Write, per_min, later).allowed);
        }
    }
}
