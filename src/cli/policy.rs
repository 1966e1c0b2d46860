//! `quickztna policy get|set|lint|diff|history` and `quickztna posture get|set`.
//!
//! `set`, `lint` and `diff` read a policy file (YAML, or JSON by its `.json` extension; `-` is
//! stdin) and print its problems the way a compiler does — `file:line:column: error: message
//! (rule name)` — so editors and CI logs link straight to them.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::CliError;
use super::client::{Body, Client, encode, problem_error};
use super::output::{print_json, print_list};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force (YAML; `--json` for JSON).
    Get {
        #[arg(long)]
        json: bool,
        /// A version from the history instead of the one in force.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Apply a policy file; refused with every problem if it does not lint.
    Set(SetArgs),
    /// Check a policy file: every problem, and its tests over the current fleet.
    Lint(FileArgs),
    /// Show what a policy file would change: the text diff and who gains or loses access.
    Diff(FileArgs),
    /// The policy's versions, newest first.
    History {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The policy file (`.yaml`/`.yml` or `.json`; `-` reads YAML from stdin).
    pub file: PathBuf,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Why it changes, kept in the history and the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only show what it would change.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse (412) unless this version is the one in force.
    #[arg(long)]
    pub if_match: Option<u64>,
}

/// The file's text and media type.
fn read(path: &Path) -> Result<(String, &'static str), CliError> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok((
        text,
        if json {
            "application/json"
        } else {
            "application/yaml"
        },
    ))
}

/// `file:line:column: severity: message (rule)` for each problem.
fn print_problems(path: &Path, problems: &[Value]) {
    for p in problems {
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        let rule = match p.get("rule").and_then(Value::as_str) {
            Some(r) => format!(" (rule {r})"),
            None => String::new(),
        };
        eprintln!(
            "{}:{}:{}: {}: {}{rule}",
            path.display(),
            n("line"),
            n("column"),
            s("severity"),
            s("message")
        );
    }
}

fn print_impact(impact: &Value) {
    for (sign, key) in [("+", "gained"), ("-", "lost")] {
        for c in impact
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            let who = match c.get("src_owner").and_then(Value::as_str) {
                Some(o) => format!("{} ({o})", s("src_hostname")),
                None => s("src_hostname").to_owned(),
            };
            println!(
                "{sign} {who} -> {} {}/{}",
                s("dst_hostname"),
                s("proto"),
                s("ports")
            );
        }
    }
    let count = |k: &str| impact.get(k).and_then(Value::as_u64).unwrap_or(0);
    println!(
        "{} gained, {} lost{}",
        count("gained_count"),
        count("lost_count"),
        if impact.get("truncated").and_then(Value::as_bool) == Some(true) {
            " (lists cut at 1000; --json for the counts)"
        } else {
            ""
        }
    );
}

async fn send_file(
    client: &Client,
    method: Method,
    path: &str,
    file: &Path,
    headers: &[(&str, String)],
) -> Result<Value, CliError> {
    let (text, content_type) = read(file)?;
    let (status, _, bytes) = client
        .exchange(
            method,
            path,
            Body::Raw {
                content_type,
                bytes: text.as_bytes(),
            },
            headers,
        )
        .await
        .map_err(|f| f.into_error())?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| CliError::new(format!("the server sent invalid JSON: {e}")));
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(problems) = body.get("problems").and_then(Value::as_array) {
            print_problems(file, problems);
            return Err(CliError::new(format!(
                "{}: the policy does not lint; nothing was applied",
                file.display()
            )));
        }
    }
    Err(problem_error(status, &bytes))
}

pub async fn run(client: &Client, cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Get { json, version } => {
            if let Some(v) = version {
                let detail = client.get(&format!("/api/v1/policy/history/{v}")).await?;
                print!(
                    "{}",
                    detail.get("text").and_then(Value::as_str).unwrap_or("")
                );
                return Ok(());
            }
            let accept = if json {
                "application/json"
            } else {
                "application/yaml"
            };
            let (status, headers, bytes) = client
                .exchange(
                    Method::GET,
                    "/api/v1/policy",
                    Body::None,
                    &[("accept", accept.into())],
                )
                .await
                .map_err(|f| f.into_error())?;
            if !status.is_success() {
                return Err(problem_error(status, &bytes));
            }
            if let Some(v) = headers
                .get("x-policy-version")
                .and_then(|v| v.to_str().ok())
            {
                eprintln!("# version {v}");
            }
            print!("{}", String::from_utf8_lossy(&bytes));
            if json {
                println!();
            }
            Ok(())
        }
        PolicyCommand::Lint(args) => {
            let report =
                send_file(client, Method::POST, "/api/v1/policy/lint", &args.file, &[]).await?;
            if args.json {
                print_json(&report);
            }
            let problems = report
                .get("problems")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_problems(&args.file, &problems);
            for t in report
                .get("tests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("?");
                let passed = t.get("passed").and_then(Value::as_bool).unwrap_or(false);
                eprintln!("test {name}: {}", if passed { "pass" } else { "FAIL" });
            }
            if report.get("valid").and_then(Value::as_bool) == Some(true) {
                eprintln!("{}: ok", args.file.display());
                Ok(())
            } else {
                Err(CliError::new(format!(
                    "{}: the policy does not lint",
                    args.file.display()
                )))
            }
        }
        PolicyCommand::Diff(args) => {
            let diff =
                send_file(client, Method::POST, "/api/v1/policy/diff", &args.file, &[]).await?;
            if args.json {
                print_json(&diff);
                return Ok(());
            }
            print!(
                "{}",
                diff.get("text_diff").and_then(Value::as_str).unwrap_or("")
            );
            print_impact(diff.get("impact").unwrap_or(&Value::Null));
            let problems = diff
                .pointer("/lint/problems")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_problems(&args.file, &problems);
            Ok(())
        }
        PolicyCommand::Set(args) => {
            let mut query = Vec::new();
            if args.dry_run {
                query.push("dry_run=true".to_owned());
            }
            if let Some(r) = &args.reason {
                query.push(format!("reason={}", encode(r)));
            }
            let path = format!("/api/v1/policy?{}", query.join("&"));
            let mut headers = Vec::new();
            if let Some(v) = args.if_match {
                headers.push(("if-match", format!("\"{v}\"")));
            }
            let result = send_file(client, Method::PUT, &path, &args.file.file, &headers).await?;
            if args.file.json {
                print_json(&result);
                return Ok(());
            }
            print_impact(result.get("impact").unwrap_or(&Value::Null));
            let problems = result
                .pointer("/lint/problems")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_problems(&args.file.file, &problems);
            let version = result.get("version").and_then(Value::as_u64).unwrap_or(0);
            match (args.dry_run, result.get("applied").and_then(Value::as_bool)) {
                (true, _) => eprintln!("dry run: nothing applied (version {version} stays)"),
                (false, Some(true)) => eprintln!("applied: version {version}"),
                _ => eprintln!("unchanged: version {version} already is this policy"),
            }
            Ok(())
        }
        PolicyCommand::History { json } => {
            let items = client.get_all("/api/v1/policy/history?").await?;
            let rows: Vec<Value> = items
                .into_iter()
                .map(|mut v| {
                    let actor = v.pointer("/actor/display").cloned().unwrap_or(Value::Null);
                    if let Some(o) = v.as_object_mut() {
                        o.insert("applied_by".into(), actor);
                    }
                    v
                })
                .collect();
            print_list(
                &rows,
                &[
                    "version",
                    "applied_at",
                    "applied_by",
                    "reason",
                    "rollback_of",
                    "current",
                ],
                json,
            );
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PostureCommand {
    /// Print the posture requirements and the devices failing them (JSON).
    Get,
    /// Set the posture requirements.
    Set(PostureSetArgs),
}

#[derive(Debug, Args)]
pub struct PostureSetArgs {
    /// A minimum OS version, `os=version` (repeatable), e.g. `linux=6.1`.
    #[arg(long = "min-os-version")]
    pub min_os_version: Vec<String>,
    #[arg(long)]
    pub min_client_version: Option<String>,
    #[arg(long)]
    pub disk_encrypted: bool,
    #[arg(long)]
    pub firewall: bool,
    #[arg(long)]
    pub screen_lock: bool,
    /// `block` (out of every peer map until compliant) or `warn`.
    #[arg(long, default_value = "warn")]
    pub action: String,
    /// Only list the devices that would fall out of compliance.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run_posture(client: &Client, cmd: PostureCommand) -> Result<(), CliError> {
    match cmd {
        PostureCommand::Get => {
            print_json(&client.get("/api/v1/posture/config").await?);
            Ok(())
        }
        PostureCommand::Set(args) => {
            let mut os = serde_json::Map::new();
            for m in &args.min_os_version {
                let (name, version) = m.split_once('=').ok_or_else(|| {
                    CliError::new(format!(
                        "--min-os-version '{m}': expected os=version, e.g. linux=6.1"
                    ))
                })?;
                os.insert(name.to_owned(), Value::String(version.to_owned()));
            }
            let body = serde_json::json!({
                "min_os_version": os,
                "min_client_version": args.min_client_version,
                "disk_encrypted": args.disk_encrypted,
                "firewall": args.firewall,
                "screen_lock": args.screen_lock,
                "action": args.action,
            });
            let path = if args.dry_run {
                "/api/v1/posture/config?dry_run=true"
            } else {
                "/api/v1/posture/config"
            };
            let result = client.send(Method::PUT, path, Some(&body)).await?;
            let violating = result
                .get("violating")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_list(&violating, &["device_id", "hostname", "failing"], false);
            eprintln!(
                "{}: {} device(s) fail these requirements",
                if args.dry_run { "dry run" } else { "set" },
                violating.len()
            );
            Ok(())
        }
    }
}
