//! When a credential stops working: the lifetime rules of pre-auth keys and API tokens, held
//! once for the decisions and the HTTP edge.
//!
//! A pre-auth key lives any positive duration up to 90 days; a token from 1 hour to 12
//! calendar months. A relative lifetime (`expires_in`) is exact. An absolute time
//! (`expires_at`) was computed by the client a moment before the request arrived, so the bound
//! nearest to "now" gets a minute of slack (a key's maximum, a token's minimum).

use std::time::Duration;

use super::Rejection;

const MICROS_PER_SEC: i64 = 1_000_000;
/// Longest pre-auth key lifetime: 90 days.
pub const KEY_MAX_LIFETIME_SECS: i64 = 90 * 86_400;
/// Shortest token lifetime: 1 hour.
pub const TOKEN_MIN_LIFETIME_SECS: i64 = 3600;
/// How far an absolute time may miss a bound because the client computed it a moment earlier.
const CLOCK_SLACK_SECS: i64 = 60;

/// Which rules an expiry follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    PreAuthKey,
    Token,
}

/// An expiry time that follows its credential's rules, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry(i64);

impl Expiry {
    /// Checks the absolute time `at` (microseconds since the epoch) against `kind`'s rules at
    /// `now`.
    pub fn at(kind: Lifetime, at: i64, now: i64) -> Result<Expiry, Rejection> {
        let ok = match kind {
            Lifetime::PreAuthKey => {
                at > now
                    && at
                        <= now.saturating_add(
                            (KEY_MAX_LIFETIME_SECS + CLOCK_SLACK_SECS) * MICROS_PER_SEC,
                        )
            }
            Lifetime::Token => {
                at >= now
                    .saturating_add((TOKEN_MIN_LIFETIME_SECS - CLOCK_SLACK_SECS) * MICROS_PER_SEC)
                    && at <= Expiry::latest(kind, now)
            }
        };
        if ok {
            Ok(Expiry(at))
        } else {
            Err(Rejection::Invalid(
                match kind {
                    Lifetime::PreAuthKey => {
                        "pre-auth key expiry must be in the future and at most 90 days from now"
                    }
                    Lifetime::Token => "token expiry must be from 1 hour to 12 months from now",
                }
                .into(),
            ))
        }
    }

    /// Checks what a relative lifetime alone can break (exactly: no slack); where it ends is
    /// checked by [`Expiry::at`].
    pub fn check_lifetime(kind: Lifetime, lifetime: Duration) -> Result<(), Rejection> {
        let secs = lifetime.as_secs();
        match kind {
            Lifetime::PreAuthKey if secs > KEY_MAX_LIFETIME_SECS.unsigned_abs() => Err(
                Rejection::Invalid("field 'expires_in' must be at most 90 days".into()),
            ),
            Lifetime::Token
                if lifetime < Duration::from_secs(TOKEN_MIN_LIFETIME_SECS.unsigned_abs()) =>
            {
                Err(Rejection::Invalid(
                    "token expiry must be from 1 hour to 12 months from now".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The latest expiry `kind` allows at `now` (for tokens, twelve calendar months ahead).
    pub fn latest(kind: Lifetime, now: i64) -> i64 {
        match kind {
            Lifetime::PreAuthKey => now.saturating_add(KEY_MAX_LIFETIME_SECS * MICROS_PER_SEC),
            Lifetime::Token => jiff::Timestamp::from_microsecond(now)
                .ok()
                .and_then(|t| {
                    t.to_zoned(jiff::tz::TimeZone::UTC)
                        .checked_add(jiff::Span::new().months(12))
                        .ok()
                })
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(now.saturating_add(365 * 86_400 * MICROS_PER_SEC)),
        }
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = MICROS_PER_SEC;
    const DAY: i64 = 86_400 * SEC;
    /// 2026-03-01T00:00:00Z: twelve months later is 2027-03-01, 365 days.
    const NOW: i64 = 1_772_323_200 * SEC;
    /// 2027-03-01T00:00:00Z: twelve months later is 2028-03-01, 366 days (leap year).
    const BEFORE_LEAP: i64 = 1_803_859_200 * SEC;

    fn key(at: i64, now: i64) -> bool {
        Expiry::at(Lifetime::PreAuthKey, at, now).is_ok()
    }

    fn token(at: i64, now: i64) -> bool {
        Expiry::at(Lifetime::Token, at, now).is_ok()
    }

    #[test]
    fn a_key_expires_after_now_and_at_most_90_days_and_a_minute_later() {
        assert!(!key(NOW, NOW));
        assert!(key(NOW + 1, NOW));
        assert!(key(NOW + 90 * DAY + 60 * SEC, NOW));
        assert!(!key(NOW + 90 * DAY + 60 * SEC + 1, NOW));
        assert_eq!(Expiry::latest(Lifetime::PreAuthKey, NOW), NOW + 90 * DAY);
    }

    #[test]
    fn a_token_expires_from_a_minute_short_of_an_hour_to_twelve_calendar_months() {
        assert!(!token(NOW + 3540 * SEC - 1, NOW));
        assert!(token(NOW + 3540 * SEC, NOW));
        assert!(token(NOW + 365 * DAY, NOW));
        assert!(!token(NOW + 365 * DAY + 1, NOW));
        assert!(token(BEFORE_LEAP + 366 * DAY, BEFORE_LEAP));
        assert!(!token(BEFORE_LEAP + 366 * DAY + 1, BEFORE_LEAP));
    }

    #[test]
    fn relative_lifetimes_are_exact() {
        let key = |secs| Expiry::check_lifetime(Lifetime::PreAuthKey, Duration::from_secs(secs));
        let token = |secs| Expiry::check_lifetime(Lifetime::Token, Duration::from_secs(secs));
        assert!(key(90 * 86_400).is_ok());
        assert!(matches!(key(90 * 86_400 + 1), Err(Rejection::Invalid(_))));
        assert!(token(3600).is_ok());
        assert!(matches!(token(3599), Err(Rejection::Invalid(_))));
    }

    #[test]
    fn a_valid_expiry_keeps_its_time() {
        assert_eq!(
            Expiry::at(Lifetime::Token, NOW + DAY, NOW).map(Expiry::micros),
            Ok(NOW + DAY)
        );
    }
}
