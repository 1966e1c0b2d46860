//! The agent's HTTP calls: a POST or GET with its answer sorted into success, a refusal worth
//! reporting, or a failure worth retrying (with [`Backoff`]).

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// Longest wait between retries of a failing call.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A problem the server answered with (4xx other than 429).
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub(super) status: StatusCode,
    pub(super) title: String,
    pub(super) detail: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}: {d}", self.title),
            None => f.write_str(&self.title),
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// The server refused the request; retrying the same request will not help.
    Problem(Problem),
    /// Unreachable, timed out, 5xx or 429: worth retrying.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

/// Doubling waits with some jitter, capped at [`MAX_BACKOFF`].
#[derive(Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
}

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let base = Duration::from_secs(1 << self.failures.min(6)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        let mut r = [0u8; 1];
        let _ = getrandom::fill(&mut r);
        // 80% to 120% of the base.
        base.mul_f64(0.8 + 0.4 * f64::from(r[0]) / 255.0)
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// POSTs `body` to `server` + `path`; the answer's JSON, or why not.
pub(super) async fn call(
    http: &reqwest::Client,
    server: &str,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> Result<Value, CallError> {
    send(
        http.post(format!("{server}{path}")).json(body),
        server,
        bearer,
    )
    .await
}

/// GETs `server` + `path`; the answer's JSON, or why not.
pub(super) async fn get(
    http: &reqwest::Client,
    server: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<Value, CallError> {
    send(http.get(format!("{server}{path}")), server, bearer).await
}

async fn send(
    mut req: reqwest::RequestBuilder,
    server: &str,
    bearer: Option<&str>,
) -> Result<Value, CallError> {
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.map_err(|e| CallError::Transient {
        message: format!("cannot reach {server}: {}", root_cause(&e)),
        retry_after: None,
    })?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(1, 300)));
    let bytes = resp.bytes().await.map_err(|e| CallError::Transient {
        message: format!("reading the answer: {e}"),
        retry_after: None,
    })?;
    if status.is_success() {
        return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
    }
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let problem = Problem {
        status,
        title: field("title").unwrap_or_else(|| format!("The server answered {status}")),
        detail: field("detail"),
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(CallError::Transient {
            message: problem.to_string(),
            retry_after,
        });
    }
    Err(CallError::Problem(problem))
}

/// The innermost error's message ("Connection refused (os error 111)"), which says more than
/// reqwest's "error sending request for url (…)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    if inner.to_string() == e.to_string() {
        e.to_string()
    } else {
        format!("{inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert!(waits[0] <= Duration::from_millis(1200));
        assert!(waits[9] >= Duration::from_secs(48) && waits[9] <= Duration::from_secs(72));
        b.reset();
        assert!(b.next() <= Duration::from_millis(1200));
    }
}
