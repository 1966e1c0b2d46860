//! What the benches that drive the real binary share: running it, a free port, settings from
//! the environment, and device public keys the server accepts.

use std::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_quickztna");

/// `name` from the environment, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `quickztna args…`, which must succeed; returns its stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run quickztna");
    assert!(
        out.status.success(),
        "quickztna {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Device `n`'s public key: 32 bytes in base64, distinct for every `n`.
pub fn public_key(n: u64) -> String {
    use base64::Engine;
    let mut raw = [7u8; 32];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Creates organization `name` in the stopped data dir `data` with every rate limit lifted (a
/// bench is the only client); returns its owner token.
pub fn unlimited_org(name: &str, data: &str) -> String {
    let init: serde_json::Value =
        serde_json::from_str(&run(&["init", "--org", name, "--data-dir", data]))
            .expect("init prints JSON");
    let limits = ["--read-per-min", "--write-per-min", "--register-per-min"];
    let mut args = vec!["org", "set-limits", "--org", name, "--data-dir", data];
    for flag in limits {
        args.extend([flag, "1000000"]);
    }
    run(&args);
    init["token"].as_str().expect("token").to_owned()
}

/// A running server, killed when dropped (also when the bench panics): a `Child` is not.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `p` quantile of sorted microsecond samples, in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}
