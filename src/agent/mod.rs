//! `quickztna up`: the device agent.
//!
//! 1. Loads (or creates) its state file: the device's public key, and after registering its id
//!    and node credential. The file is written (mode 0600) *before* a pre-auth key is spent, so
//!    an unwritable path never burns a single-use key.
//! 2. Reuses a saved credential for the same server; otherwise registers with `--auth-key`
//!    (`POST /machine/register`), or without one prints a sign-in link and waits for the
//!    device's owner to sign in (`POST /machine/login`, see [`sign_in`]).
//! 3. Heartbeats (`POST /machine/heartbeat`) every interval with the posture signals it can read:
//!    OS version, a disk-encryption guess, whether a firewall is loaded, the client version.
//!    When a heartbeat's `peer_map_version` differs from the peer map it holds, it fetches
//!    `GET /machine/netmap` and writes it beside its state file as `netmap.json`.
//! 4. A 401 (`reauthentication_required`: the device was removed or its key expired) stops it
//!    (non-zero exit, with the server's reason and what to do). The state file remembers which
//!    pre-auth key registered the stopped device, and a later run refuses to register with that
//!    same key: rejoining takes a key presented anew. `--reregister` opts out: the agent then
//!    registers again with `--auth-key` at once. A device that joined by sign-in instead prints
//!    a new sign-in link for its owner. Connection errors, 5xx and 429 are retried with backoff.
//! 5. SIGINT or SIGTERM stops it with exit code 0.
//!
//! Status lines go to stderr. Over plain `http://` to another machine it refuses to start,
//! unless `--insecure` ([`Connect`]): every call carries a secret.
//!
//! [`host`] reads what the agent reports about its machine (hostname, OS, posture signals);
//! `state` keeps the agent's identity and credential between runs; [`rotate`] exchanges the
//! node credential for a new one when it gets old.

mod call;
pub mod host;
mod netmap;
pub mod rotate;
pub mod sign_in;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use self::call::{Backoff, CallError, Problem, call};
use self::host::{Posture, machine_hostname, os_version};
pub use self::state::{AgentState, default_state_file};
use self::state::{key_fingerprint, load_state, save_state};
use crate::cli::CliError;
use crate::cli::connect::Connect;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Pre-auth key (`qzk_…`). Needed to register, and to re-register when the device's key
    /// expires or it is removed.
    #[arg(long, env = "QUICKZTNA_AUTH_KEY", hide_env_values = true)]
    pub auth_key: Option<String>,
    /// Device name (default: this machine's hostname, lowercased, [a-z0-9-]).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Where the device id and node credential are kept (mode 0600). Default
    /// `$XDG_STATE_HOME/quickztna/agent.json` or `~/.local/state/quickztna/agent.json`.
    #[arg(long, env = "QUICKZTNA_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Time between heartbeats (default: what the server asks for, else 30s).
    #[arg(long, value_parser = crate::domain::duration::parse)]
    pub interval: Option<std::time::Duration>,
    /// Register again with `--auth-key` when the device is removed or its key expires, instead
    /// of stopping. Off by default: removal must drop a device from the network, so rejoining
    /// takes a key presented anew. For ephemeral autoscaling fleets whose instances carry a
    /// reusable key.
    #[arg(long, env = "QUICKZTNA_REREGISTER")]
    pub reregister: bool,
    /// Exchange the node credential for a new one once it is this old (`30d`, `12h`, …), or
    /// `off`. Checked after each heartbeat.
    #[arg(
        long,
        env = "QUICKZTNA_ROTATE_CREDENTIAL_EVERY",
        value_parser = crate::agent::rotate::parse_every,
        default_value = crate::agent::rotate::DEFAULT_EVERY
    )]
    pub rotate_credential_every: crate::agent::rotate::RotateEvery,
    /// Without --auth-key: the organization (id or name) whose identity provider the owner
    /// signs in with; may be left out when the server has one organization.
    #[arg(long, env = "QUICKZTNA_ORG")]
    pub org: Option<String>,
}

/// What the operator does to bring a stopped device back.
const REJOIN: &str = "to rejoin, run `quickztna up --auth-key KEY` with a pre-auth key issued \
                      for it (or start the agent with --reregister to reuse its key)";

/// Heartbeat interval when neither `--interval` nor the server says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the agent until SIGINT/SIGTERM (exit 0) or a fatal problem (exit non-zero).
pub async fn run(server: &str, connect: &Connect, args: UpArgs) -> Result<(), CliError> {
    // Install the handlers first, so a signal during registration is a clean stop too.
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| CliError::new(format!("cannot watch SIGTERM: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| CliError::new(format!("cannot watch SIGINT: {e}")))?;
    let agent = Agent::new(server, connect, args)?;
    let rotating = agent.rotating.clone();
    let result = tokio::select! {
        result = agent.run() => result,
        _ = sigterm.recv() => {
            eprintln!("Received SIGTERM; stopping");
            Ok(())
        }
        _ = sigint.recv() => {
            eprintln!("Received SIGINT; stopping");
            Ok(())
        }
    };
    // A credential the server may have rotated already must reach the state file first.
    let _finished = rotating.lock().await;
    result
}

struct Agent {
    server: String,
    http: reqwest::Client,
    auth_key: Option<String>,
    org: Option<String>,
    hostname: String,
    state_path: PathBuf,
    state: AgentState,
    interval: Option<Duration>,
    reregister: bool,
    rotate_every: rotate::RotateEvery,
    /// Held by a credential rotation until its outcome is saved (see [`rotate`]).
    rotating: rotate::InFlight,
}

impl Agent {
    fn new(server: &str, connect: &Connect, args: UpArgs) -> Result<Agent, CliError> {
        // Every call carries a secret: the pre-auth key, then the node credential.
        connect.check(server, "the pre-auth key and node credential")?;
        let state_path = match args.state_file {
            Some(p) => p,
            None => default_state_file().ok_or_else(|| {
                CliError::new("cannot find a state directory: set HOME or pass --state-file")
            })?,
        };
        let (mut state, existed) = match load_state(&state_path)? {
            Some(s) if !s.public_key.is_empty() => (s, true),
            _ => (AgentState::fresh()?, false),
        };
        if state.node_credential.is_some() && state.credential_issued_at.is_none() {
            // Saved before credentials were dated: the rotation period starts now.
            state.credential_issued_at = Some(rotate::now_secs());
        }
        if !existed {
            // Fails here, before any key is used, if the path is not writable.
            save_state(&state_path, &state)?;
        }
        let http = connect.http_client(
            concat!("quickztna-agent/", env!("CARGO_PKG_VERSION")),
            Duration::from_secs(30),
        )?;
        Ok(Agent {
            server: server.trim_end_matches('/').to_owned(),
            http,
            auth_key: args.auth_key.filter(|k| !k.is_empty()),
            org: args.org,
            hostname: args.hostname.unwrap_or_else(machine_hostname),
            state_path,
            state,
            interval: args.interval,
            reregister: args.reregister,
            rotate_every: args.rotate_credential_every,
            rotating: rotate::InFlight::default(),
        })
    }

    async fn run(mut self) -> Result<(), CliError> {
        if self.state.credential_for(&self.server).is_some() {
            eprintln!(
                "Using the saved registration {} ({}) from {}",
                self.state.device_id.as_deref().unwrap_or("?"),
                self.state.ipv4.as_deref().unwrap_or("?"),
                self.state_path.display()
            );
        } else {
            if let (Some(key), false) = (&self.auth_key, self.reregister)
                && let Some(stopped) = self.state.stopped_with(key)
            {
                return Err(CliError::new(format!(
                    "{}. This device was stopped then, and --auth-key is the key that had \
                     registered it: {REJOIN}",
                    stopped.reason
                )));
            }
            if self.auth_key.is_some() {
                self.register().await.map_err(|p| {
                    let p = p.map(|p| p.to_string()).unwrap_or_default();
                    CliError::new(format!("cannot register with {}: {p}", self.server))
                })?;
            } else {
                // Like `tailscale up`: the device joins as the person who signs in for it.
                self.sign_in().await?;
            }
        }

        let mut backoff = Backoff::default();
        let mut healthy = false;
        let mut ever_connected = false;
        loop {
            let credential = self
                .state
                .credential_for(&self.server)
                .unwrap_or_default()
                .to_owned();
            match self.heartbeat(&credential).await {
                Ok(answer) => {
                    backoff.reset();
                    let wait = self.interval.unwrap_or_else(|| {
                        answer
                            .get("heartbeat_interval_secs")
                            .and_then(Value::as_u64)
                            .filter(|s| *s > 0)
                            .map(|s| Duration::from_secs(s.min(3600)))
                            .unwrap_or(DEFAULT_INTERVAL)
                    });
                    if !healthy {
                        if ever_connected {
                            eprintln!("Heartbeats are getting through again");
                        } else {
                            let expiry = answer
                                .get("key_expires_at")
                                .and_then(Value::as_str)
                                .map(|t| format!("; device key expires {t}"))
                                .unwrap_or_default();
                            eprintln!(
                                "Connected to {}; heartbeat every {}{expiry}",
                                self.server,
                                crate::domain::duration::format(wait)
                            );
                        }
                    }
                    healthy = true;
                    ever_connected = true;
                    self.follow_peer_map(&credential, &answer).await;
                    if self.rotation_due() {
                        self.rotate_credential().await;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(CallError::Problem(p)) if p.status == StatusCode::UNAUTHORIZED => {
                    self.state.stop(p.to_string());
                    save_state(&self.state_path, &self.state)?;
                    if self.auth_key.is_none() {
                        // A device that joined by sign-in goes back to its owner: nothing
                        // rejoins until a person signs in again at the printed link.
                        eprintln!("{p}. The device's owner must sign in again");
                        self.sign_in().await?;
                        backoff.reset();
                        healthy = false;
                        ever_connected = false;
                        continue;
                    }
                    if !self.reregister {
                        return Err(CliError::new(format!("{p}. Stopped: {REJOIN}")));
                    }
                    eprintln!("{p}. Registering again with the pre-auth key (--reregister)");
                    self.register().await.map_err(|q| {
                        let why = q.map(|q| q.to_string()).unwrap_or_default();
                        CliError::new(format!(
                            "{p} (registering again with --auth-key failed: {why})"
                        ))
                    })?;
                    backoff.reset();
                    healthy = false;
                    ever_connected = false;
                }
                Err(CallError::Problem(p)) => {
                    let wait = backoff.next();
                    eprintln!(
                        "Heartbeat refused: {p}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    healthy = false;
                    tokio::time::sleep(wait).await;
                }
                Err(CallError::Transient {
                    message,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| backoff.next());
                    eprintln!(
                        "Heartbeat failed: {message}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    healthy = false;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Registers with `--auth-key`, retrying transient failures; `Err(None)` when there is no
    /// key, `Err(Some(problem))` when the server refuses it.
    async fn register(&mut self) -> Result<(), Option<Problem>> {
        let auth_key = self.auth_key.clone().ok_or(None)?;
        let os_version = os_version();
        let body = json!({
            "auth_key": auth_key,
            "hostname": self.hostname,
            "os": std::env::consts::OS,
            "os_version": os_version,
            "public_key": self.state.public_key,
        });
        let mut backoff = Backoff::default();
        let answer = loop {
            match self.call("/api/v1/machine/register", None, &body).await {
                Ok(answer) => break answer,
                Err(CallError::Problem(p)) => return Err(Some(p)),
                Err(CallError::Transient {
                    message,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| backoff.next());
                    eprintln!(
                        "Registering failed: {message}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        };
        self.adopt(&answer, Some(key_fingerprint(&auth_key)))
            .map_err(Some)
    }

    /// Keeps the device and node credential of a registration answer (`registered_with`: the
    /// pre-auth key's fingerprint, `None` for a sign-in).
    fn adopt(&mut self, answer: &Value, registered_with: Option<String>) -> Result<(), Problem> {
        let device = answer.get("device").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let credential = text(answer, "node_credential");
        if credential.is_none() {
            return Err(Problem {
                status: StatusCode::BAD_GATEWAY,
                title: "Unexpected answer".into(),
                detail: Some("the registration answer has no node_credential".into()),
            });
        }
        self.state.server = Some(self.server.clone());
        self.state.device_id = text(&device, "id");
        self.state.hostname = text(&device, "hostname");
        self.state.ipv4 = device
            .get("addresses")
            .and_then(|a| a.get("ipv4"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.state.node_credential = credential;
        self.state.credential_issued_at = Some(rotate::now_secs());
        self.state.registered_with = registered_with;
        self.state.stopped = None;
        if let Err(e) = save_state(&self.state_path, &self.state) {
            // Still usable for this run; the next run registers again.
            eprintln!("warning: {e}");
        }
        eprintln!(
            "Registered as {} ({}){}",
            self.state.device_id.as_deref().unwrap_or("?"),
            self.state.ipv4.as_deref().unwrap_or("no address"),
            self.state
                .hostname
                .as_deref()
                .map(|h| format!(", hostname {h}"))
                .unwrap_or_default()
        );
        Ok(())
    }

    /// Fetches and stores the peer map when the heartbeat says it moved.
    async fn follow_peer_map(&self, credential: &str, answer: &Value) {
        let Some(version) = answer.get("peer_map_version").and_then(Value::as_u64) else {
            return;
        };
        let path = netmap::path_beside(&self.state_path);
        if netmap::stored_version(&path) == version {
            return;
        }
        match netmap::refresh(&self.http, &self.server, credential, &path).await {
            Ok((v, peers)) => eprintln!(
                "Peer map version {v}: {peers} peer(s), in {}",
                path.display()
            ),
            Err(CallError::Problem(p)) => eprintln!("warning: fetching the peer map failed: {p}"),
            Err(CallError::Transient { message, .. }) => {
                eprintln!(
                    "warning: fetching the peer map failed ({message}); retrying at the next heartbeat"
                )
            }
        }
    }

    async fn heartbeat(&self, credential: &str) -> Result<Value, CallError> {
        let posture = Posture::read(Path::new("/"));
        let body = json!({
            "os_version": os_version(),
            "client_version": env!("CARGO_PKG_VERSION"),
            "posture": {
                "disk_encrypted": posture.disk_encrypted,
                "firewall": posture.firewall,
            },
        });
        self.call("/api/v1/machine/heartbeat", Some(credential), &body)
            .await
    }

    async fn call(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> Result<Value, CallError> {
        call(&self.http, &self.server, path, bearer, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::host::*;

    #[test]
    fn hostnames_become_device_names() {
        assert_eq!(sanitize_hostname("Web-01.example.com\n"), "web-01");
        assert_eq!(sanitize_hostname("My_Laptop (2)"), "my-laptop-2");
        assert_eq!(sanitize_hostname("--x--"), "x");
        assert_eq!(sanitize_hostname(""), "device");
        assert_eq!(sanitize_hostname(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn os_release_values_lose_their_quotes() {
        let fields =
            parse_os_release("# c\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nID=debian\n");
        assert_eq!(
            fields,
            vec![
                ("NAME".to_owned(), "Debian GNU/Linux".to_owned()),
                ("VERSION_ID".to_owned(), "12".to_owned()),
                ("ID".to_owned(), "debian".to_owned()),
            ]
        );
    }

    #[test]
    fn posture_reads_dm_crypt_luks_mounts_and_firewall_tables() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert_eq!(
            Posture::read(r),
            Posture {
                disk_encrypted: false,
                firewall: false
            }
        );
        std::fs::create_dir_all(r.join("proc/net")).unwrap();
        std::fs::write(r.join("proc/mounts"), "/dev/sda1 / ext4 rw 0 0\n").unwrap();
        std::fs::write(r.join("proc/net/ip_tables_names"), "").unwrap();
        assert!(!Posture::read(r).disk_encrypted);
        assert!(!Posture::read(r).firewall);

        std::fs::create_dir_all(r.join("sys/block/dm-0/dm")).unwrap();
        std::fs::write(r.join("sys/block/dm-0/dm/uuid"), "LVM-abc\n").unwrap();
        assert!(!Posture::read(r).disk_encrypted);
        std::fs::write(
            r.join("sys/block/dm-0/dm/uuid"),
            "CRYPT-LUKS2-abc-sda3_crypt\n",
        )
        .unwrap();
        assert!(Posture::read(r).disk_encrypted);
        std::fs::remove_dir_all(r.join("sys/block")).unwrap();
        std::fs::write(
            r.join("proc/mounts"),
            "/dev/mapper/sda3_crypt / ext4 rw 0 0\n",
        )
        .unwrap();
        assert!(Posture::read(r).disk_encrypted);

        std::fs::write(r.join("proc/net/ip_tables_names"), "filter\nnat\n").unwrap();
        assert!(Posture::read(r).firewall);
        std::fs::write(r.join("proc/net/ip_tables_names"), "").unwrap();
        std::fs::create_dir_all(r.join("sys/module/nf_tables")).unwrap();
        assert!(Posture::read(r).firewall);
    }
}
