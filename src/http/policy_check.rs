//! What `/policy` does with a candidate text before anything is applied: read it in the format
//! its `Content-Type` names, lint it against the organization's directory and fleet, and work
//! out the access it would grant and take away. Shared by lint, diff, dry-run and `PUT`.

use axum::body::Bytes;
use http::{HeaderMap, header};
use projections::OrgView;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use crate::peers::fleet;
use crate::policy::{self, Compiled, Diagnostic, Fleet, Format, Policy, Severity, TestOutcome};

/// Most access changes listed per direction; the counts are always complete.
pub const MAX_CHANGES: usize = 1000;

/// Policy checks (lint, compile, impact) run at once, on blocking threads: a big policy over a
/// big fleet takes a while, and must neither stall the async runtime nor pile up.
static POLICY_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `f` on a blocking thread, at most two at a time server-wide.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    let _permit = POLICY_WORK
        .acquire()
        .await
        .map_err(|_| Problem::unavailable("the server is shutting down", 5))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(format!("a policy check panicked: {e}")))
}

/// Bounds on a policy's size, beyond which checking it could take the server minutes: a
/// request is refused with a lint error naming the bound instead.
pub const MAX_RULES: usize = 5_000;
pub const MAX_PORTS_PER_RULE: usize = 256;
pub const MAX_PRINCIPALS_PER_RULE: usize = 1_000;
pub const MAX_TESTS: usize = 1_000;

/// The bounds `policy` breaks, as lint errors.
fn too_big(policy: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let pos = policy::Pos::default();
    if policy.rules.len() > MAX_RULES {
        out.push(Diagnostic::error(
            "/rules",
            pos,
            None,
            format!(
                "{} rules: at most {MAX_RULES} are allowed",
                policy.rules.len()
            ),
        ));
    }
    if policy.tests.len() > MAX_TESTS {
        out.push(Diagnostic::error(
            "/tests",
            pos,
            None,
            format!(
                "{} tests: at most {MAX_TESTS} are allowed",
                policy.tests.len()
            ),
        ));
    }
    for r in &policy.rules {
        let name = Some(r.name.value.clone());
        if r.ports.len() > MAX_PORTS_PER_RULE {
            out.push(Diagnostic::error(
                &r.name.pointer,
                r.name.pos,
                name.clone(),
                format!(
                    "{} port entries: at most {MAX_PORTS_PER_RULE} per rule (use ranges)",
                    r.ports.len()
                ),
            ));
        }
        if r.src.len() + r.dst.len() > MAX_PRINCIPALS_PER_RULE {
            out.push(Diagnostic::error(&r.name.pointer, r.name.pos, name, format!("{} principals: at most {MAX_PRINCIPALS_PER_RULE} per rule (use groups or tags)", r.src.len() + r.dst.len())));
        }
    }
    out
}

/// The policy media types: YAML (`application/yaml` and its older spellings) or JSON.
pub fn format_of(headers: &HeaderMap) -> Result<Format, Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Ok(Format::Yaml),
        _ => Err(Problem::unsupported_media_type(
            "send the policy as application/yaml or application/json",
        )),
    }
}

/// The body as text: a policy is UTF-8 whatever its format.
pub fn text_of(body: &Bytes) -> Result<String, Problem> {
    String::from_utf8(body.to_vec()).map_err(|e| {
        Problem::invalid_argument(format!(
            "the policy is not UTF-8: invalid byte at offset {}",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// One problem of a policy, for people and for editors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LintProblem {
    /// `error` (the policy cannot be applied) or `warning`.
    pub severity: String,
    /// RFC 6901 pointer to the node, e.g. `/rules/2/ports/0`.
    pub pointer: String,
    /// 1-based; 0 when the problem is about the whole document.
    pub line: u32,
    pub column: u32,
    /// The rule's name, when the problem is in a rule.
    pub rule: Option<String>,
    pub message: String,
}

impl From<&Diagnostic> for LintProblem {
    fn from(d: &Diagnostic) -> Self {
        LintProblem {
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            }
            .to_owned(),
            pointer: d.pointer.clone(),
            line: d.line,
            column: d.column,
            rule: d.rule.clone(),
            message: d.message.clone(),
        }
    }
}

/// The verdict of one of the policy's tests over the current fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TestResult {
    pub name: String,
    pub passed: bool,
    /// Why it fails (empty when it passes).
    pub failures: Vec<String>,
    /// Checks that matched no device (not failures).
    pub vacuous: Vec<String>,
}

impl From<&TestOutcome> for TestResult {
    fn from(t: &TestOutcome) -> Self {
        TestResult {
            name: t.name.clone(),
            passed: t.passed(),
            failures: t.failures.iter().map(|f| f.message.clone()).collect(),
            vacuous: t.vacuous.iter().map(|f| f.message.clone()).collect(),
        }
    }
}

/// A candidate policy, checked.
pub struct Checked {
    /// The policy compiled over the fleet it was checked against, when the text is a policy
    /// within the size bounds (its impact reuses this compile).
    pub compiled: Option<Compiled>,
    pub problems: Vec<Diagnostic>,
    pub tests: Vec<TestOutcome>,
}

impl Checked {
    /// Whether the text is a policy document at all: YAML or JSON whose top is a mapping.
    /// Lint and diff report on anything that is; what is not gets a `422`.
    pub fn is_document(&self) -> bool {
        self.compiled.is_some()
            && !self
                .problems
                .iter()
                .any(|d| d.pointer.is_empty() && d.message.starts_with("expected a mapping"))
    }

    /// Whether it may be applied: no errors, only warnings.
    pub fn clean(&self) -> bool {
        policy::lint::is_clean(&self.problems)
    }

    pub fn problem_views(&self) -> Vec<LintProblem> {
        self.problems.iter().map(LintProblem::from).collect()
    }

    /// The `422` for a policy that does not lint, with every problem in the body.
    pub fn refusal(&self) -> Problem {
        let errors = self
            .problems
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let first = self
            .problems
            .iter()
            .find(|d| d.severity == Severity::Error)
            .map(|d| {
                format!(
                    " (first, line {} column {}: {})",
                    d.line, d.column, d.message
                )
            })
            .unwrap_or_default();
        Problem::unprocessable(format!(
            "the policy has {errors} error(s){first}; see problems"
        ))
        .with_problems(serde_json::to_value(self.problem_views()).unwrap_or_default())
    }
}

/// Lints `text` against the organization's directory and `fleet`, and runs its tests.
pub fn check(org: OrgView<'_>, fleet: &Fleet, text: &str, format: Format) -> Checked {
    match policy::parse(text, format) {
        Err(d) => Checked {
            compiled: None,
            problems: vec![d],
            tests: Vec::new(),
        },
        Ok(parsed) => {
            let bounds = too_big(&parsed.policy);
            if !bounds.is_empty() {
                return Checked {
                    compiled: None,
                    problems: bounds,
                    tests: Vec::new(),
                };
            }
            // One compile serves the tests, lint and the impact.
            let compiled = Compiled::new(&parsed.policy, fleet);
            let tests = policy::run_tests(&parsed.policy, fleet, &compiled);
            let problems =
                policy::lint::lint_with(&parsed, &fleet::group_names(org), fleet, &tests);
            Checked {
                compiled: Some(compiled),
                problems,
                tests,
            }
        }
    }
}

/// One (source → destination, protocol, ports) whose access a change grants or takes away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccessChange {
    /// The source device.
    pub src: String,
    pub src_hostname: String,
    /// The person who owns the source device (their email), if a person does.
    pub src_owner: Option<String>,
    pub dst: String,
    pub dst_hostname: String,
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// `22`, `8000-8100`, or `*` (every port; always `*` for icmp).
    pub ports: String,
}

/// Who gains and who loses access if a candidate replaced the current policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccessImpact {
    pub gained_count: usize,
    pub lost_count: usize,
    /// At most 1,000 each way (the first by source, destination, protocol, ports).
    pub gained: Vec<AccessChange>,
    pub lost: Vec<AccessChange>,
    /// True when a list was cut at 1,000.
    pub truncated: bool,
}

/// The access delta from the current policy to `candidate`, over the current fleet.
pub fn impact(org: OrgView<'_>, fleet: &Fleet, after: &Compiled) -> AccessImpact {
    let before = Compiled::new(&crate::peers::org::policy_in_force(org).0, fleet);
    let delta = policy::impact_within(&before, after, MAX_CHANGES);
    let view = |c: &policy::Change| {
        let s = org.device(&c.src);
        let d = org.device(&c.dst);
        AccessChange {
            src: c.src.clone(),
            src_hostname: s.map(|x| x.hostname.clone()).unwrap_or_default(),
            src_owner: s
                .and_then(|x| org.owner_of(x))
                .map(|u| u.profile.email.clone())
                .filter(|e| !e.is_empty()),
            dst: c.dst.clone(),
            dst_hostname: d.map(|x| x.hostname.clone()).unwrap_or_default(),
            proto: c.proto.to_string(),
            ports: c.ports.to_string(),
        }
    };
    AccessImpact {
        gained_count: delta.gained_count,
        lost_count: delta.lost_count,
        truncated: delta.gained_count > delta.gained.len() || delta.lost_count > delta.lost.len(),
        gained: delta.gained.iter().map(view).collect(),
        lost: delta.lost.iter().map(view).collect(),
    }
}

/// A unified diff of two policy texts, line by line (given up on, as a plain replacement,
/// past a second of work on pathological inputs).
pub fn text_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(1))
        .diff_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}
