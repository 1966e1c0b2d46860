//! Per-organization rate limits: a token bucket per (organization, read/write class).
//!
//! A bucket holds a full minute's quota (`per_min` tokens), starts full and refills continuously
//! at `per_min / 60` tokens per second; a request costs one token. Holding a minute's quota also
//! covers the documented burst of "up to 30 seconds at 2x sustained rate" (30 s × 2 × rate =
//! `per_min`). Arithmetic is exact integers (token units of 1/60e9 and nanoseconds), so the
//! limiter never admits more than `per_min + elapsed × per_min / 60` requests.
//!
//! Every response reports the bucket with `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (unix seconds at which the bucket is full again); a refusal adds
//! `Retry-After` (seconds until one token is back).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use super::problem::Problem;

/// Units per token: a bucket refilling `per_min` tokens a minute gains exactly `per_min` units
/// per nanosecond.
const UNIT: u128 = 60_000_000_000;

/// Header with the bucket's capacity (the per-minute limit).
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// Header with the whole tokens left after this request.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// Header with the unix time (seconds) at which the bucket is full again.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";

/// Which quota a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// GET, HEAD, OPTIONS.
    Read,
    /// Everything else (POST, PUT, PATCH, DELETE).
    Write,
}

impl Class {
    /// The class of a request method.
    pub fn of(method: &Method) -> Class {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Class::Read
        } else {
            Class::Write
        }
    }

    fn index(self) -> usize {
        match self {
            Class::Read => 0,
            Class::Write => 1,
        }
    }
}

/// The outcome of one check, and what the rate-limit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (a token was taken).
    pub allowed: bool,
    /// The per-minute limit (the bucket's capacity).
    pub limit: u32,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Unix seconds at which the bucket will be full again.
    pub reset: u64,
    /// Seconds until a token is available (at least 1) when refused; 0 when allowed.
    pub retry_after: u64,
}

/// Token buckets for every (organization, class) seen recently. Cheap to share (`Arc`) across
/// requests; contention is per organization.
#[derive(Debug)]
pub struct RateLimiter {
    /// One slot per class, keyed by organization id (no allocation to look one up).
    buckets: DashMap<String, [Option<Bucket>; 2]>,
    /// A fixed instant and the wall-clock time it corresponds to, to turn instants into unix
    /// times for `X-RateLimit-Reset`.
    origin: Instant,
    origin_unix: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Capacity in tokens (the per-minute limit it was last checked with).
    per_min: u32,
    /// Tokens held, in units of 1/UNIT token.
    units: u128,
    /// When `units` was last brought up to date.
    updated: Instant,
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
            origin: Instant::now(),
            origin_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
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
                bucket.refill(now);
                bucket.resize(per_min);
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
            bucket.refill(now);
            bucket.resize(per_min);
            let allowed = bucket.units >= UNIT;
            if allowed {
                bucket.units -= UNIT;
            }
            self.decision(bucket, allowed, now)
        };
        // Fast path: the organization is known; only its shard is locked, without allocating.
        if let Some(mut slots) = self.buckets.get_mut(key) {
            return decide(&mut slots[class.index()]);
        }
        let mut slots = self.buckets.entry(key.to_owned()).or_insert([None, None]);
        decide(&mut slots[class.index()])
    }

    /// Forgets buckets that have refilled completely: a new bucket starts full, so this loses
    /// nothing and bounds memory to the organizations active in the last minute or so.
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
    }

    /// How many (organization) entries are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn decision(&self, bucket: &Bucket, allowed: bool, now: Instant) -> Decision {
        let rate = u128::from(bucket.per_min);
        let capacity = rate * UNIT;
        let now_unix_ns =
            (self.origin_unix + now.saturating_duration_since(self.origin)).as_nanos();
        let (reset, retry_after) = if rate == 0 {
            // A zero limit never refills; report a minute, the period limits are expressed in.
            let minute = 60_000_000_000;
            (
                ceil_secs(now_unix_ns + minute),
                if allowed { 0 } else { 60 },
            )
        } else {
            let to_full = (capacity - bucket.units).div_ceil(rate);
            let retry_after = if allowed {
                0
            } else {
                let to_one = (UNIT - bucket.units).div_ceil(rate);
                ceil_secs(to_one).max(1)
            };
            (ceil_secs(now_unix_ns + to_full), retry_after)
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

impl Bucket {
    fn full(per_min: u32, now: Instant) -> Self {
        Bucket {
            per_min,
            units: u128::from(per_min) * UNIT,
            updated: now,
        }
    }

    fn capacity(&self) -> u128 {
        u128::from(self.per_min) * UNIT
    }

    /// Adds what `per_min` refills between the last update and `now`, up to capacity.
    fn refill(&mut self, now: Instant) {
        if now > self.updated {
            let elapsed = now.duration_since(self.updated).as_nanos();
            self.units = self
                .units
                .saturating_add(elapsed.saturating_mul(u128::from(self.per_min)))
                .min(self.capacity());
            self.updated = now;
        }
    }

    /// Adopts a changed limit; the new refill rate applies from now on. A raised limit adds the
    /// extra capacity as tokens (what was spent stays spent, so an organization whose limit was
    /// just raised can continue at once); a lowered one drops tokens above the new capacity.
    fn resize(&mut self, per_min: u32) {
        if per_min > self.per_min {
            self.units += u128::from(per_min - self.per_min) * UNIT;
            self.per_min = per_min;
        } else if per_min < self.per_min {
            self.per_min = per_min;
            self.units = self.units.min(self.capacity());
        }
    }

    fn is_full_at(&self, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(now);
        probe.units >= probe.capacity()
    }
}

impl Decision {
    /// Sets `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, and `Retry-After`
    /// when refused.
    pub fn apply_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in self.headers() {
            headers.insert(name, value);
        }
    }

    /// The `429 rate_limited` problem for a refusal, carrying the rate-limit headers.
    pub fn problem(&self) -> Problem {
        self.headers().into_iter().fold(
            Problem::rate_limited(self.retry_after.max(1)),
            |p, (name, value)| p.with_header(name, value),
        )
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![
            (
                HeaderName::from_static(X_RATELIMIT_LIMIT),
                HeaderValue::from(self.limit),
            ),
            (
                HeaderName::from_static(X_RATELIMIT_REMAINING),
                HeaderValue::from(self.remaining),
            ),
            (
                HeaderName::from_static(X_RATELIMIT_RESET),
                HeaderValue::from(self.reset),
            ),
        ];
        if !self.allowed {
            headers.push((header::RETRY_AFTER, HeaderValue::from(self.retry_after)));
        }
        headers
    }
}

fn ceil_secs(nanos: u128) -> u64 {
    u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn methods_map_to_classes() {
        assert_eq!(Class::of(&Method::GET), Class::Read);
        assert_eq!(Class::of(&Method::HEAD), Class::Read);
        assert_eq!(Class::of(&Method::OPTIONS), Class::Read);
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(Class::of(&m), Class::Write);
        }
    }

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
        let unix_ns = (limiter.origin_unix + t0.duration_since(limiter.origin)).as_nanos();
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

    #[test]
    fn headers_report_the_decision() {
        let mut headers = HeaderMap::new();
        let allowed = Decision {
            allowed: true,
            limit: 600,
            remaining: 587,
            reset: 1_715_852_400,
            retry_after: 0,
        };
        allowed.apply_headers(&mut headers);
        assert_eq!(headers["x-ratelimit-limit"], "600");
        assert_eq!(headers["x-ratelimit-remaining"], "587");
        assert_eq!(headers["x-ratelimit-reset"], "1715852400");
        assert!(!headers.contains_key(header::RETRY_AFTER));

        let refused = Decision {
            allowed: false,
            remaining: 0,
            retry_after: 3,
            ..allowed
        };
        refused.apply_headers(&mut headers);
        assert_eq!(headers[header::RETRY_AFTER], "3");
        let problem = refused.problem();
        assert_eq!(problem.status, http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(problem.code, "rate_limited");
        let names: Vec<_> = problem.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"x-ratelimit-limit") && names.contains(&"retry-after"));
        assert_eq!(problem.headers.len(), 4);
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
