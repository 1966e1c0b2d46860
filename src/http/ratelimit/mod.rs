//! Rate limits: token buckets per organization (shared out among its API tokens, see
//! `shares`), per organization for device registrations, per client address and per device.
//!
//! A bucket holds a full minute's quota (`per_min` tokens), starts full and refills continuously
//! at `per_min / 60` tokens per second; a request costs one token. Holding a minute's quota also
//! covers the documented burst of "up to 30 seconds at 2x sustained rate" (30 s × 2 × rate =
//! `per_min`). Arithmetic is exact integers (token units of 1/60e9 and nanoseconds), so a
//! bucket never admits more than `per_min + elapsed × per_min / 60` requests.
//!
//! Every response reports the bucket with `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset` (unix seconds at which the bucket is full again); a refusal adds
//! `Retry-After` (seconds until one token is back).

mod bucket;
mod client;
mod limiter;
mod shares;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

pub use client::{TrustedProxies, client_key, parse_trusted_proxy};
pub use limiter::RateLimiter;

use super::problem::Problem;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
