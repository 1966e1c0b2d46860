//! One token bucket in exact integer arithmetic, and the clock that turns instants into the unix
//! times the headers report.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Units per token: a bucket refilling `per_min` tokens a minute gains exactly `per_min` units
/// per nanosecond.
pub(super) const UNIT: u128 = 60_000_000_000;

/// A bucket holding up to a minute's quota (`per_min` tokens), refilling `per_min` a minute.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    /// Capacity in tokens (the per-minute limit it was last checked with).
    pub(super) per_min: u32,
    /// Tokens held, in units of 1/UNIT token.
    pub(super) units: u128,
    /// When `units` was last brought up to date.
    pub(super) updated: Instant,
}

impl Bucket {
    pub(super) fn full(per_min: u32, now: Instant) -> Self {
        Bucket {
            per_min,
            units: u128::from(per_min) * UNIT,
            updated: now,
        }
    }

    pub(super) fn capacity(&self) -> u128 {
        u128::from(self.per_min) * UNIT
    }

    /// Brings the bucket to `now` and to the limit `per_min`.
    pub(super) fn update(&mut self, per_min: u32, now: Instant) {
        self.refill(now);
        self.resize(per_min);
    }

    /// Takes one token if there is one.
    pub(super) fn take(&mut self) -> bool {
        let allowed = self.units >= UNIT;
        if allowed {
            self.units -= UNIT;
        }
        allowed
    }

    /// Adds what `per_min` refills between the last update and `now`, up to capacity.
    pub(super) fn refill(&mut self, now: Instant) {
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
    pub(super) fn resize(&mut self, per_min: u32) {
        if per_min > self.per_min {
            self.units += u128::from(per_min - self.per_min) * UNIT;
            self.per_min = per_min;
        } else if per_min < self.per_min {
            self.per_min = per_min;
            self.units = self.units.min(self.capacity());
        }
    }

    pub(super) fn is_full_at(&self, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(now);
        probe.units >= probe.capacity()
    }

    /// Nanoseconds until the bucket holds `units` (0 if it does); `None` for a zero limit, which
    /// never refills.
    pub(super) fn nanos_until(&self, units: u128) -> Option<u128> {
        if self.per_min == 0 {
            None
        } else if self.units >= units {
            Some(0)
        } else {
            Some((units - self.units).div_ceil(u128::from(self.per_min)))
        }
    }
}

/// A fixed instant and the wall-clock time it corresponds to, to turn instants into unix times
/// for `X-RateLimit-Reset`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    origin: Instant,
    origin_unix: Duration,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            origin: Instant::now(),
            origin_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// `now` as nanoseconds since the unix epoch.
    pub(super) fn unix_nanos(&self, now: Instant) -> u128 {
        (self.origin_unix + now.saturating_duration_since(self.origin)).as_nanos()
    }
}

pub(super) fn ceil_secs(nanos: u128) -> u64 {
    u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}
