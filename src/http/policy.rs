//! `/policy`: the organization's access policy — read it (YAML or JSON), lint a candidate,
//! diff it with its access impact, dry-run or apply it (optimistic concurrency through
//! `If-Match` / `ETag`), and read its history. Rolling back is a `PUT` of an old version's
//! text. The language is in `docs/policy.md`; checking a candidate is in [`super::policy_check`].

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Principal;
use super::extract::{Json, Query};
use super::policy_check::{
    self, AccessImpact, LintProblem, TestResult, check, format_of, run_blocking, text_of,
};
use super::problem::Problem;
use super::request_id::RequestId;
use crate::domain::policy::{Apply, ApplyRefusal};
use crate::domain::scope::{Group, Need};
use crate::peers::fleet;
use crate::policy::Format;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(lint_policy))
        .routes(routes!(diff_policy))
        .routes(routes!(super::policy_history::list_history))
        .routes(routes!(super::policy_history::get_version))
}

/// The text shown before any policy was applied: default deny.
pub const EMPTY_POLICY: &str = "version: 1\nrules: []\n";

/// An `ETag` for policy version `v`.
pub fn etag(v: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{v}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Which format `Accept` asks for; `None` when it accepts neither (406).
fn wanted(headers: &HeaderMap, stored: Format) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(stored);
    };
    let mut best: Option<(f32, Format)> = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let f = match media.as_str() {
            "application/json" => Format::Json,
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Format::Yaml,
            "*/*" | "application/*" => stored,
            "text/*" => Format::Yaml,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, f));
        }
    }
    best.map(|(_, f)| f)
}

/// `text` (in `from`) rendered in `to`.
fn convert(text: &str, from: Format, to: Format) -> Result<String, String> {
    if from == to {
        return Ok(text.to_owned());
    }
    let value: serde_json::Value = match from {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string())?,
        Format::Yaml => serde_saphyr::from_str(text).map_err(|e| e.to_string())?,
    };
    match to {
        Format::Json => serde_json::to_string_pretty(&value).map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(&value).map_err(|e| e.to_string()),
    }
}

/// The policy in force, as YAML or JSON (by `Accept`), with its version as the `ETag`.
#[utoipa::path(
    get, path = "/policy", tag = "policy",
    responses(
        (status = 200, description = "The policy in force; `ETag` is its version (\"0\" before the first)",
         content((Object = "application/yaml"), (Object = "application/json")),
         headers(("ETag" = String, description = "The version, quoted"), ("X-Policy-Version" = u64))),
        (status = 406, description = "`Accept` names neither YAML nor JSON", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn get_policy(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    principal.require(Need::read(Group::Policy))?;
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let (text, stored, version) = match org.policy().current() {
        Some(v) => (v.text.as_str(), Format::named(&v.format), v.version),
        None => (EMPTY_POLICY, Format::Yaml, 0),
    };
    let Some(format) = wanted(&headers, stored) else {
        return Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "the policy is served as application/yaml or application/json",
        ));
    };
    // A stored policy always parsed as its own format; if the other one cannot express it,
    // serve it as stored rather than fail.
    let (body, format) = match convert(text, stored, format) {
        Ok(body) => (body, format),
        Err(_) => (text.to_owned(), stored),
    };
    let media = match format {
        Format::Yaml => "application/yaml",
        Format::Json => "application/json",
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::ETAG, etag(version));
    h.insert("x-policy-version", HeaderValue::from(version));
    h.insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(resp)
}

/// The outcome of linting a candidate policy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LintReport {
    /// True when it has no errors (warnings allowed): `PUT` would accept it.
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    /// Every problem, in document order.
    pub problems: Vec<LintProblem>,
    /// The policy's tests, run over the current fleet.
    pub tests: Vec<TestResult>,
}

/// Lint a candidate policy (YAML or JSON by `Content-Type`) against the directory and the
/// current fleet, running its tests. Changes nothing.
#[utoipa::path(
    post, path = "/policy/lint", tag = "policy",
    request_body(content((Object = "application/yaml"), (Object = "application/json")), description = "The candidate policy"),
    responses(
        (status = 200, description = "Every problem at once", body = LintReport),
        (status = 422, description = "Not a policy document at all (not YAML or JSON, not a mapping, or past the size bounds); `problems` says where", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn lint_policy(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<LintReport>, Problem> {
    principal.require(Need::read(Group::Policy))?;
    let format = format_of(&headers)?;
    let text = text_of(&body)?;
    let models = state.models().load();
    let org_id = principal.org_id.clone();
    let report = run_blocking(move || {
        let org = models.state.org(&org_id);
        let fleet = fleet::fleet(org);
        let checked = check(org, &fleet, &text, format);
        if !checked.is_document() {
            return Err(checked.refusal());
        }
        Ok(report(&checked))
    })
    .await??;
    Ok(Json(report))
}

fn report(checked: &policy_check::Checked) -> LintReport {
    let problems = checked.problem_views();
    let errors = problems.iter().filter(|p| p.severity == "error").count();
    LintReport {
        valid: errors == 0,
        errors,
        warnings: problems.len() - errors,
        problems,
        tests: checked.tests.iter().map(TestResult::from).collect(),
    }
}

/// What applying a candidate would change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyDiff {
    /// The version the candidate is compared with (0: none yet).
    pub from_version: u64,
    /// A unified diff of the texts.
    pub text_diff: String,
    /// Who gains and loses access, pair by pair, over the current fleet.
    pub impact: AccessImpact,
    /// The candidate's lint report (its impact is computed even if it does not lint).
    pub lint: LintReport,
}

fn diff_of(
    org: projections::OrgView<'_>,
    fleet: &crate::policy::Fleet,
    checked: &policy_check::Checked,
    text: &str,
) -> PolicyDiff {
    let current = org.policy().current();
    let from_version = current.map_or(0, |v| v.version);
    let old = current.map_or(EMPTY_POLICY, |v| v.text.as_str());
    let impact = match &checked.compiled {
        Some(c) => policy_check::impact(org, fleet, c),
        None => AccessImpact {
            gained_count: 0,
            lost_count: 0,
            gained: Vec::new(),
            lost: Vec::new(),
            truncated: false,
        },
    };
    PolicyDiff {
        from_version,
        text_diff: policy_check::text_diff(
            old,
            text,
            &format!("policy v{from_version}"),
            "candidate",
        ),
        impact,
        lint: report(checked),
    }
}

/// The text diff and the access impact of a candidate policy against the one in force.
#[utoipa::path(
    post, path = "/policy/diff", tag = "policy",
    request_body(content((Object = "application/yaml"), (Object = "application/json")), description = "The candidate policy"),
    responses(
        (status = 200, description = "The difference", body = PolicyDiff),
        (status = 422, description = "Not a policy document at all (not YAML or JSON, not a mapping, or past the size bounds); `problems` says where", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn diff_policy(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PolicyDiff>, Problem> {
    principal.require(Need::read(Group::Policy))?;
    let format = format_of(&headers)?;
    let text = text_of(&body)?;
    let models = state.models().load();
    let org_id = principal.org_id.clone();
    let diff = run_blocking(move || {
        let org = models.state.org(&org_id);
        let fleet = fleet::fleet(org);
        let checked = check(org, &fleet, &text, format);
        if !checked.is_document() {
            return Err(checked.refusal());
        }
        Ok(diff_of(org, &fleet, &checked, &text))
    })
    .await??;
    Ok(Json(diff))
}

/// Parameters of `PUT /policy`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// `true`: check and report the impact, apply nothing.
    pub dry_run: Option<bool>,
    /// Why the policy changes (kept in the history; `X-Change-Reason` does the same).
    pub reason: Option<String>,
}

/// The outcome of `PUT /policy`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyApplyResult {
    /// The version in force after the call (for a dry run, the one it would replace).
    pub version: u64,
    /// False for a dry run, and when the text already was the version in force.
    pub applied: bool,
    pub dry_run: bool,
    /// The version this one restores, when the text is an older version's.
    pub rollback_of: Option<u64>,
    #[serde(flatten)]
    pub diff: PolicyDiff,
}

/// Longest change reason, in characters.
const MAX_REASON: usize = 1024;

fn reason(headers: &HeaderMap, q: &PutQuery) -> Result<Option<String>, Problem> {
    let from_header = match headers.get("x-change-reason") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Problem::invalid_argument("X-Change-Reason must be visible ASCII (percent-encode other text, or use ?reason=)"))?
                .to_owned(),
        ),
        None => None,
    };
    let r = from_header
        .or_else(|| q.reason.clone())
        .filter(|r| !r.trim().is_empty());
    if let Some(r) = &r {
        crate::domain::text::check_text("reason", r, 1, MAX_REASON).map_err(Problem::from)?;
    }
    Ok(r)
}

/// `If-Match` as the versions it accepts (RFC 9110: a list of entity tags, compared
/// strongly, so a weak `W/"3"` never matches; `*` matches any version). A value with no
/// well-formed strong tag accepts none: the answer is `412`, as for a stale one.
fn if_match(headers: &HeaderMap) -> Option<Vec<u64>> {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut accepted = Vec::new();
    for tag in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if tag == "*" {
            return None;
        }
        if let Some(n) = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            accepted.push(n);
        }
    }
    Some(accepted)
}

/// Apply a policy (YAML or JSON by `Content-Type`), or with `dry_run=true` only report what
/// it would change. A policy that does not lint is refused with every problem.
#[utoipa::path(
    put, path = "/policy", tag = "policy",
    params(PutQuery,
        ("If-Match" = Option<String>, Header, description = "The ETag of the version this replaces; 412 if another is in force"),
        ("X-Change-Reason" = Option<String>, Header, description = "Why, for the history")),
    request_body(content((Object = "application/yaml"), (Object = "application/json")), description = "The new policy"),
    responses(
        (status = 200, description = "Applied (or, with dry_run, what it would do)", body = PolicyApplyResult,
         headers(("ETag" = String, description = "The version in force, quoted"))),
        (status = 412, description = "`If-Match` names another version", body = super::problem::ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The policy does not lint; `problems` lists why", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn put_policy(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let dry_run = q.dry_run.unwrap_or(false);
    principal.require(if dry_run {
        Need::read(Group::Policy)
    } else {
        Need::write(Group::Policy)
    })?;
    let format = format_of(&headers)?;
    let text = text_of(&body)?;
    let reason = reason(&headers, &q)?;
    let if_match = if_match(&headers);
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let current = org.policy().current().map_or(0, |v| v.version);
    let rollback_of = crate::domain::policy::rollback_of(org, &text);
    let org_id = principal.org_id.clone();
    let candidate = text.clone();
    let diff = run_blocking(move || {
        let org = models.state.org(&org_id);
        let fleet = fleet::fleet(org);
        let checked = check(org, &fleet, &candidate, format);
        // Refused before its impact is worked out: a policy that does not lint costs less.
        if !checked.clean() {
            return Err(checked.refusal());
        }
        Ok(diff_of(org, &fleet, &checked, &candidate))
    })
    .await??;
    // After the body's own checks (RFC 9110 §13.2.1: a request that is bad anyway gets that
    // answer, not a 412).
    if let Some(accepted) = &if_match
        && !accepted.contains(&current)
    {
        return Err(stale(current));
    }
    if dry_run {
        return Ok(respond(PolicyApplyResult {
            version: current,
            applied: false,
            dry_run,
            rollback_of,
            diff,
        }));
    }
    let cmd = Apply {
        text,
        format: format.name(),
        reason,
        if_match,
    };
    let outcome = crate::execute::execute(&state, principal.command(&request_id), |org| {
        crate::domain::policy::apply(org, &cmd)
    })
    .await
    .map_err(|e| {
        super::commit::problem(e, |r| match r {
            ApplyRefusal::Stale { current } => stale(current),
            ApplyRefusal::Rejected(r) => r.into(),
        })
    })?;
    // The version this request made (or found in force), not whatever a later writer made.
    let models = state.models().load();
    let policy = models.state.org(&principal.org_id).policy();
    let made = outcome.appended().and_then(|_| {
        policy
            .versions
            .iter()
            .rev()
            .find(|v| v.request_id == request_id.0 && v.text == cmd.text)
            .map(|v| v.version)
    });
    let version = made.unwrap_or_else(|| policy.current().map_or(0, |v| v.version));
    Ok(respond(PolicyApplyResult {
        version,
        applied: made.is_some(),
        dry_run,
        rollback_of,
        diff,
    }))
}

fn stale(current: u64) -> Problem {
    Problem::precondition_failed(format!(
        "the policy in force is version {current}, not the one If-Match names; GET /policy, merge, and retry with If-Match: \"{current}\""
    ))
    .with_header(header::ETAG, etag(current))
}

fn respond(result: PolicyApplyResult) -> Response {
    let tag = etag(result.version);
    let mut resp = Json(result).into_response();
    resp.headers_mut().insert(header::ETAG, tag);
    resp
}
