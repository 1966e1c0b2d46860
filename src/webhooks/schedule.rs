//! When a failed delivery is tried again, and what an attempt's outcome means.
//!
//! Pure arithmetic over durations, so the worker that persists retries stays simple and this
//! stays testable without a clock: the caller says how many tries failed and for how long the
//! delivery has been failing, and gets back how long to wait, or `None` to give up. The default
//! follows DESIGN §3.6 (0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then a last try at 24 h).

use std::fmt;
use std::time::Duration;

/// The longest a receiver's `Retry-After` may postpone the next try: a receiver must not be
/// able to park a delivery until it expires.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Delays between tries of one delivery, and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `delays[0]` is the wait before the first try; `delays[n]` the wait after the n-th failure.
    pub delays: Vec<Duration>,
    /// How long after the first failure the last try happens; after it, the delivery fails.
    pub give_up_after: Duration,
}

impl Default for Schedule {
    fn default() -> Schedule {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Schedule {
            delays: [0, 5, 5 * MIN, 30 * MIN, 2 * HOUR, 5 * HOUR, 10 * HOUR]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            give_up_after: Duration::from_secs(24 * HOUR),
        }
    }
}

impl Schedule {
    /// Parses "0,5s,5m,30m,2h,5h,10h/24h" (delays, then '/' and the give-up time); units ms, s,
    /// m, h, d.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let (delays, give_up) = text
            .split_once('/')
            .ok_or("a schedule is delays, then '/' and the give-up time: 0,5s,5m/24h")?;
        let delays = delays
            .split(',')
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        let give_up_after = parse_duration(give_up)?;
        if give_up_after.is_zero() {
            return Err("the give-up time must be longer than 0".into());
        }
        Ok(Schedule {
            delays,
            give_up_after,
        })
    }

    /// After `tries` failed tries (1 = the first failed), the first of them `failing_for` ago:
    /// how long to wait before the next, or None to give up. Jitter ±20 %; past the listed
    /// delays the next try is at `give_up_after` (a last try), then None. `retry_after` can only
    /// lengthen the wait, capped at [`MAX_RETRY_AFTER`], and never past the give-up time.
    pub fn next(
        &self,
        tries: u32,
        failing_for: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if failing_for >= self.give_up_after {
            return None;
        }
        let left = self.give_up_after - failing_for;
        let Some(&delay) = self.delays.get(tries as usize) else {
            return Some(left);
        };
        let mut wait = jitter(delay);
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(MAX_RETRY_AFTER));
        }
        Some(wait.min(left))
    }
}

/// The form [`Schedule::parse`] reads, so a schedule can be shown and read back.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.delays.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write_duration(f, *d)?;
        }
        f.write_str("/")?;
        write_duration(f, self.give_up_after)
    }
}

/// What one attempt's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    /// A 4xx other than 408 and 429: the receiver refuses this delivery; trying again would not
    /// change its mind.
    Reject,
    /// 410: the receiver is gone for good; the webhook is disabled.
    Gone,
}

/// The verdict of an attempt's status (None: a timeout or connection error). A 3xx is a failure
/// that is retried: redirects are never followed, and Standard Webhooks counts 3xx as failure.
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(408 | 429) => Verdict::Retry,
        Some(400..=499) => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

/// Parses a `Retry-After` value, delta-seconds or an HTTP-date (IMF-fixdate, which RFC 2822
/// parsing covers), into a wait from `now`. A date in the past means now.
pub fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time"; the caller caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = PARSER.parse_timestamp(value).ok()?;
    let wait = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// A uniformly random factor in [0.8, 1.2], so that deliveries that failed together (a receiver
/// outage) do not all come back at the same instant.
fn jitter(delay: Duration) -> Duration {
    let mut raw = [0u8; 8];
    // Jitter is not a secret: if the generator fails, an unjittered delay is still correct.
    let _ = getrandom::fill(&mut raw);
    let unit = (u64::from_le_bytes(raw) >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(0.8 + 0.4 * unit)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?} has unit {unit:?}; use ms, s, m, h or d")),
    };
    number
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The largest unit that shows `d` exactly; sub-millisecond parts cannot come from `parse`.
fn write_duration(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    let ms = d.as_millis();
    if ms == 0 {
        return f.write_str("0");
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return write!(f, "{}{unit}", ms / size);
        }
    }
    write!(f, "{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: u64 = 3600;

    #[test]
    fn the_default_schedule_tries_for_24_hours_then_gives_up() {
        let s = Schedule::default();
        assert_eq!(s, Schedule::parse("0,5s,5m,30m,2h,5h,10h/24h").unwrap());
        let mut failing_for = Duration::ZERO;
        let mut tries = 1;
        while let Some(wait) = s.next(tries, failing_for, None) {
            failing_for += wait;
            tries += 1;
            assert!(tries < 20, "the schedule must end");
        }
        // 7 listed tries, then the last one at 24 h.
        assert_eq!(tries, 8);
        assert_eq!(failing_for, Duration::from_secs(24 * H));
    }

    #[test]
    fn the_wait_after_the_listed_delays_is_the_rest_of_the_day() {
        let s = Schedule::default();
        let failing_for = Duration::from_secs(18 * H);
        assert_eq!(
            s.next(7, failing_for, None),
            Some(Duration::from_secs(6 * H))
        );
        assert_eq!(s.next(8, Duration::from_secs(24 * H), None), None);
        assert_eq!(s.next(3, Duration::from_secs(25 * H), None), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = Schedule::default();
        let (mut low, mut high) = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let wait = s.next(2, Duration::ZERO, None).unwrap();
            assert!(wait >= Duration::from_secs(240) && wait <= Duration::from_secs(360));
            low = low.min(wait);
            high = high.max(wait);
        }
        // The jitter is real: 2000 draws spread over most of the ±20 % band.
        assert!(low < Duration::from_secs(260) && high > Duration::from_secs(340));
        assert_eq!(s.next(0, Duration::ZERO, None), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped() {
        let s = Schedule::default();
        let short = s
            .next(1, Duration::ZERO, Some(Duration::from_secs(1)))
            .unwrap();
        assert!(short >= Duration::from_secs(4), "{short:?}");
        let longer = s.next(1, Duration::ZERO, Some(Duration::from_secs(120)));
        assert_eq!(longer, Some(Duration::from_secs(120)));
        let capped = s.next(1, Duration::ZERO, Some(Duration::from_secs(10 * H)));
        assert_eq!(capped, Some(MAX_RETRY_AFTER));
        let near_the_end = Duration::from_secs(24 * H - 60);
        assert_eq!(
            s.next(2, near_the_end, Some(Duration::from_secs(H))),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn verdicts_follow_standard_webhooks() {
        assert_eq!(verdict(Some(200)), Verdict::Delivered);
        assert_eq!(verdict(Some(204)), Verdict::Delivered);
        for status in [
            Some(100),
            Some(301),
            Some(302),
            Some(408),
            Some(429),
            Some(500),
            Some(503),
            None,
        ] {
            assert_eq!(verdict(status), Verdict::Retry, "{status:?}");
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert_eq!(verdict(Some(status)), Verdict::Reject, "{status}");
        }
        assert_eq!(verdict(Some(410)), Verdict::Gone);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "soon", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn parse_refuses_malformed_schedules() {
        for bad in [
            "", "0,5s", "5/24h", "5x/24h", "s/24h", "0,5s/0", "0,,5s/1h", "0/1y",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        let s = Schedule::parse("0, 250ms, 1d / 2d").unwrap();
        assert_eq!(s.delays[1], Duration::from_millis(250));
        assert_eq!(s.to_string(), "0,250ms,1d/2d");
    }

    fn schedules() -> impl Strategy<Value = Schedule> {
        (
            proptest::collection::vec(0u64..200_000_000, 1..10),
            1u64..500_000_000,
        )
            .prop_map(|(delays, give_up)| Schedule {
                delays: delays.into_iter().map(Duration::from_millis).collect(),
                give_up_after: Duration::from_millis(give_up),
            })
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(s in schedules()) {
            prop_assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn next_never_passes_the_give_up_time(
            s in schedules(),
            tries in 0u32..15,
            failing_ms in 0u64..600_000_000,
            asked in proptest::option::of(0u64..100_000_000),
        ) {
            let failing_for = Duration::from_millis(failing_ms);
            let wait = s.next(tries, failing_for, asked.map(Duration::from_millis));
            match wait {
                None => prop_assert!(failing_for >= s.give_up_after),
                Some(wait) => prop_assert!(failing_for + wait <= s.give_up_after),
            }
            if failing_for >= s.give_up_after {
                prop_assert_eq!(wait, None);
            }
        }
    }
}
