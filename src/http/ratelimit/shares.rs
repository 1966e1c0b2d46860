//! Each API token's share of its organization's quota.
//!
//! The organization's bucket is the documented limit and caps all its tokens together. A token
//! is *contending* for a minute after its last request (allowed or refused: a refusal is
//! demand too); with `n` contending, each one's fair share is `1/n` of the bucket. Each token's
//! spending is metered: a request adds one, and what it spent fades at its fair share of the
//! organization's rate. A request may take from the bucket only if it leaves enough for every
//! other contending token that has spent less to catch up with it, up to their share
//! (max-min fairness, by water-filling). So:
//!
//! - alone, a token has the organization's whole limit (the seed's 600 and 60, and its
//!   headers), and the first token to ask takes what nobody else wants;
//! - however fast one token sends, it cannot take what the others' shares hold, and after it
//!   has drained the bucket what refills goes to the tokens that spent least: a noisy
//!   integration slows the owner down to its share, never locks it out;
//! - no token, and no set of tokens, gets more than the organization's limit.
//!
//! Checking a request walks the organization's tokens seen in the last minute, which are few.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::bucket::{Bucket, Clock, UNIT, ceil_secs};
use super::{Class, Decision};

/// How long after its last request a token counts as contending for a share.
const CONTENDING: Duration = Duration::from_secs(60);

/// The shares of every organization with recent traffic, per class.
#[derive(Debug, Default)]
pub(super) struct Shares {
    orgs: dashmap::DashMap<String, [ClassShares; 2]>,
}

#[derive(Debug, Default)]
struct ClassShares {
    /// The organization's bucket: its documented limit.
    org: Option<Bucket>,
    /// What each contending token has spent.
    tokens: HashMap<String, Meter>,
}

/// One token's recent spending, in units of 1/UNIT request.
#[derive(Debug, Clone, Copy)]
struct Meter {
    spent: u128,
    /// When `spent` was last brought up to date.
    updated: Instant,
    /// The token's last request: it contends for [`CONTENDING`] after it.
    seen: Instant,
}

impl Shares {
    /// Charges one request of `token` to its share of `org`'s `class` quota.
    pub(super) fn check(&self, req: Req<'_>, clock: &Clock, now: Instant) -> Decision {
        let mut slots = match self.orgs.get_mut(req.org) {
            Some(slots) => slots,
            None => self.orgs.entry(req.org.to_owned()).or_default(),
        };
        slots[req.class.index()].decide(req.token, req.per_min, now, true, clock)
    }

    /// What the headers of an uncharged request of `token` report; changes nothing but the
    /// refill of the organization's bucket.
    pub(super) fn peek(&self, req: Req<'_>, clock: &Clock, now: Instant) -> Decision {
        match self.orgs.get_mut(req.org) {
            Some(mut slots) => {
                slots[req.class.index()].decide(req.token, req.per_min, now, false, clock)
            }
            None => ClassShares::default().decide(req.token, req.per_min, now, false, clock),
        }
    }

    /// Gives back a charge that bought nothing (a request refused after it was charged).
    pub(super) fn refund(&self, org: &str, token: &str, class: Class) {
        if let Some(mut slots) = self.orgs.get_mut(org) {
            let shares = &mut slots[class.index()];
            if let Some(org) = &mut shares.org {
                org.units = (org.units + UNIT).min(org.capacity());
            }
            if let Some(meter) = shares.tokens.get_mut(token) {
                meter.spent = meter.spent.saturating_sub(UNIT);
            }
        }
    }

    /// Forgets what carries no information: tokens no longer contending, and full buckets
    /// of organizations without contending tokens.
    pub(super) fn sweep_at(&self, now: Instant) {
        self.orgs.retain(|_, slots| {
            for shares in slots.iter_mut() {
                shares.tokens.retain(|_, m| m.contends_at(now));
                if shares.tokens.is_empty() && shares.org.is_some_and(|b| b.is_full_at(now)) {
                    shares.org = None;
                }
            }
            slots
                .iter()
                .any(|s| s.org.is_some() || !s.tokens.is_empty())
        });
    }

    pub(super) fn len(&self) -> usize {
        self.orgs.len()
    }
}

/// One request's claim: which token of which organization, which class, at which limit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Req<'a> {
    pub(super) org: &'a str,
    pub(super) token: &'a str,
    pub(super) class: Class,
    pub(super) per_min: u32,
}

impl ClassShares {
    fn decide(
        &mut self,
        token: &str,
        per_min: u32,
        now: Instant,
        take: bool,
        clock: &Clock,
    ) -> Decision {
        let capacity = u128::from(per_min) * UNIT;
        let org = self.org.get_or_insert(Bucket::full(per_min, now));
        org.update(per_min, now);
        // A token back after a minute's quiet starts afresh.
        let own = self
            .tokens
            .get(token)
            .copied()
            .filter(|m| m.contends_at(now))
            .unwrap_or(Meter {
                spent: 0,
                updated: now,
                seen: now,
            });
        let others: Vec<Meter> = self
            .tokens
            .iter()
            .filter(|(id, m)| id.as_str() != token && m.contends_at(now))
            .map(|(_, m)| *m)
            .collect();
        let field = Field::at(&others, per_min, now);
        let mut spent = field.spent_by(&own, now);

        let allowed = take && field.admits(spent, org);
        if allowed {
            spent = (spent + UNIT).min(capacity);
            org.units -= UNIT;
        }
        let meter = Meter {
            spent,
            updated: now,
            seen: now,
        };
        if take {
            // A known token's meter is updated in place, without allocating its name again.
            match self.tokens.get_mut(token) {
                Some(known) => *known = meter,
                None => {
                    self.tokens.insert(token.to_owned(), meter);
                }
            }
        }
        let retry_after = if !take || allowed {
            0
        } else {
            retry_after(&meter, org, &others, per_min, now)
        };
        let reset = org.nanos_until(capacity).unwrap_or(60_000_000_000);
        Decision {
            allowed: !take || allowed,
            limit: per_min,
            remaining: u32::try_from(field.remaining(spent, org)).unwrap_or(u32::MAX),
            reset: ceil_secs(clock.unix_nanos(now) + reset),
            retry_after,
        }
    }
}

impl Meter {
    fn contends_at(&self, at: Instant) -> bool {
        at.saturating_duration_since(self.seen) < CONTENDING
    }
}

/// The other contending tokens of an organization at one instant, and what they have spent.
struct Field {
    per_min: u32,
    /// How many tokens contend, the one asking included.
    contending: u128,
    share: u128,
    others_spent: Vec<u128>,
}

impl Field {
    fn at(others: &[Meter], per_min: u32, at: Instant) -> Field {
        let others: Vec<&Meter> = others.iter().filter(|m| m.contends_at(at)).collect();
        let contending = others.len() as u128 + 1;
        let mut field = Field {
            per_min,
            contending,
            share: u128::from(per_min) * UNIT / contending,
            others_spent: Vec::new(),
        };
        field.others_spent = others.iter().map(|m| field.spent_by(m, at)).collect();
        field
    }

    /// What `meter` has spent at `at`: spending fades at a fair share of the organization's
    /// rate, so a token that took more than its share stays behind the others for longer.
    fn spent_by(&self, meter: &Meter, at: Instant) -> u128 {
        let elapsed = at.saturating_duration_since(meter.updated).as_nanos();
        let faded = elapsed.saturating_mul(u128::from(self.per_min)) / self.contending;
        meter.spent.saturating_sub(faded)
    }

    /// Whether a token that has spent `spent` may take one request from `org`: it must leave,
    /// for every other contending token that has spent less, enough to catch up with it, up
    /// to their share. The token that has spent least goes first; alone, a token may take
    /// everything.
    fn admits(&self, spent: u128, org: &Bucket) -> bool {
        let level = self.share.min(spent);
        let held: u128 = self
            .others_spent
            .iter()
            .map(|s| level.saturating_sub(*s))
            .sum();
        org.units >= UNIT + held
    }

    /// How many requests in a row the token could send now. Each one only makes the next
    /// harder, so a binary search finds the first that [`Field::admits`] refuses.
    fn remaining(&self, spent: u128, org: &Bucket) -> u128 {
        let admits_after = |n: u128| {
            let mut org = *org;
            org.units -= n * UNIT;
            self.admits(spent + n * UNIT, &org)
        };
        // Invariant: `lo` requests in a row are possible, more than `hi` are not.
        let (mut lo, mut hi) = (0, org.units / UNIT);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if admits_after(mid - 1) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }
}

/// Whole seconds until the token would be admitted if nobody sent anything meanwhile: the
/// bucket refills, spending fades and quiet tokens stop contending. Within a minute every
/// other token has stopped contending and the bucket is full, so that is the longest wait.
fn retry_after(own: &Meter, org: &Bucket, others: &[Meter], per_min: u32, now: Instant) -> u64 {
    (1..=60u64)
        .find(|&secs| {
            let at = now + Duration::from_secs(secs);
            let mut org = *org;
            org.refill(at);
            let field = Field::at(others, per_min, at);
            field.admits(field.spent_by(own, at), &org)
        })
        .unwrap_or(60)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::super::{Class, RateLimiter};

    const SEC: Duration = Duration::from_secs(1);
    const W: Class = Class::Write;

    /// Requests of `token` at `now` until one is refused; returns how many were allowed.
    fn drain(limiter: &RateLimiter, token: &str, now: Instant) -> u32 {
        let mut allowed = 0;
        while limiter.check_token_at("org", token, W, 60, now).allowed {
            allowed += 1;
            assert!(allowed <= 60, "more than the organization's limit");
        }
        allowed
    }

    #[test]
    fn alone_a_token_has_the_whole_limit_and_the_headers_count_it_down() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..60 {
            let d = limiter.check_token_at("org", "owner", W, 60, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!((d.limit, d.remaining), (60, 59 - i));
        }
        let d = limiter.check_token_at("org", "owner", W, 60, t0);
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after), (0, 1));
    }

    #[test]
    fn a_noisy_token_cannot_take_the_share_of_a_token_active_in_the_last_minute() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert!(limiter.check_token_at("org", "owner", W, 60, t0).allowed);
        let first = limiter.check_token_at("org", "noisy", W, 60, t0);
        assert_eq!(
            first.remaining, 29,
            "the headers show the share, not the bucket"
        );
        assert_eq!(1 + drain(&limiter, "noisy", t0), 30, "half of 60");
        // The owner still has the rest of its half.
        assert_eq!(drain(&limiter, "owner", t0), 29);
    }

    #[test]
    fn after_a_noisy_token_drained_the_bucket_what_refills_goes_to_the_others_first() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert_eq!(drain(&limiter, "noisy", t0), 60, "alone, it may use it all");
        let refused = limiter.check_token_at("org", "owner", W, 60, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
        // The owner asked: now it contends, and the noisy token is far past its half.
        for later in [t0 + SEC, t0 + 2 * SEC, t0 + 3 * SEC] {
            assert!(!limiter.check_token_at("org", "noisy", W, 60, later).allowed);
            assert!(limiter.check_token_at("org", "owner", W, 60, later).allowed);
        }
    }

    #[test]
    fn a_token_quiet_for_a_minute_stops_holding_a_share() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert!(limiter.check_token_at("org", "owner", W, 60, t0).allowed);
        assert_eq!(drain(&limiter, "ci", t0 + 61 * SEC), 60);
    }

    #[test]
    fn shares_are_per_organization_and_class() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        drain(&limiter, "noisy", t0);
        assert!(limiter.check_token_at("other", "owner", W, 60, t0).allowed);
        assert!(
            limiter
                .check_token_at("org", "owner", Class::Read, 60, t0)
                .allowed
        );
    }

    #[test]
    fn a_peek_charges_nothing_and_a_refund_gives_the_charge_back() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert_eq!(limiter.peek_token("org", "ro", W, 60).remaining, 60);
        drain(&limiter, "owner", t0);
        // A peeking token does not contend: the owner is still alone.
        limiter.peek_token("org", "ro", W, 60);
        limiter.refund_token("org", "owner", W);
        let d = limiter.check_token_at("org", "owner", W, 60, t0);
        assert!(d.allowed, "the refunded request's token is back");
    }

    #[test]
    fn sweep_forgets_full_buckets_of_tokens_quiet_for_a_minute() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        limiter.check_token_at("org", "owner", W, 60, t0);
        limiter.sweep_at(t0 + 30 * SEC);
        assert_eq!(limiter.len(), 1, "still contending");
        limiter.sweep_at(t0 + 61 * SEC);
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_token_asking_a_hundred_times_as_often_still_leaves_the_owner_half() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let (mut owner, mut noisy) = (0, 0);
        // Five minutes: the noisy token asks every 10 ms, the owner once a second.
        for tick in 0..30_000u32 {
            let now = t0 + Duration::from_millis(u64::from(tick) * 10);
            if tick % 100 == 0 && limiter.check_token_at("org", "owner", W, 60, now).allowed {
                owner += 1;
            }
            if limiter.check_token_at("org", "noisy", W, 60, now).allowed {
                noisy += 1;
            }
        }
        assert!(owner + noisy <= 60 + 300, "{owner} + {noisy}");
        assert!(owner >= 140, "the owner got {owner} of its 300 requests");
    }

    #[test]
    fn with_more_tokens_than_requests_a_minute_none_starves() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let mut got = [0u32; 3];
        for tick in 0..3000u32 {
            let now = t0 + Duration::from_millis(u64::from(tick) * 100);
            let who = (tick % 3) as usize;
            if limiter
                .check_token_at("org", &format!("t{who}"), W, 2, now)
                .allowed
            {
                got[who] += 1;
            }
        }
        // Five minutes at 2 a minute: 12 at most, shared out.
        assert!(got.iter().sum::<u32>() <= 12, "{got:?}");
        assert!(got.iter().all(|&n| n >= 2), "{got:?}");
    }

    proptest! {
        #[test]
        fn the_organization_never_gets_more_than_its_limit(
            per_min in 1u32..300,
            steps in prop::collection::vec((0usize..4, 0u64..1500), 1..400),
        ) {
            let limiter = RateLimiter::new();
            let t0 = Instant::now();
            let mut now = t0;
            let mut allowed = 0u128;
            for (token, gap) in steps {
                now += Duration::from_millis(gap);
                let d = limiter.check_token_at("org", &format!("t{token}"), W, per_min, now);
                prop_assert!(d.remaining <= per_min);
                if d.allowed {
                    allowed += 1;
                } else {
                    prop_assert!(d.retry_after >= 1);
                }
                let elapsed = now.duration_since(t0).as_nanos();
                prop_assert!(
                    allowed * 60_000_000_000
                        <= u128::from(per_min) * (60_000_000_000 + elapsed),
                    "{} allowed after {:?}", allowed, now.duration_since(t0)
                );
            }
        }

        #[test]
        fn a_token_waiting_retry_after_is_allowed(
            per_min in 1u32..300,
            steps in prop::collection::vec((0usize..4, 0u64..1500), 0..200),
            who in 0usize..4,
        ) {
            let limiter = RateLimiter::new();
            let mut now = Instant::now();
            for (token, gap) in steps {
                now += Duration::from_millis(gap);
                limiter.check_token_at("org", &format!("t{token}"), W, per_min, now);
            }
            let who = format!("t{who}");
            let refused = loop {
                let d = limiter.check_token_at("org", &who, W, per_min, now);
                if !d.allowed {
                    break d;
                }
            };
            let later = now + Duration::from_secs(refused.retry_after);
            prop_assert!(limiter.check_token_at("org", &who, W, per_min, later).allowed);
        }
    }
}
