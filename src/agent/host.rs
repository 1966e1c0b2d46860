//! What the agent reads about its own machine: the hostname as a device name, the OS version,
//! and the posture signals it reports (disk encryption, firewall).

use std::path::Path;

/// The machine's hostname as a device name: the first label, lowercased, anything outside
/// `[a-z0-9-]` replaced by `-`, at most 63 characters.
pub fn machine_hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    sanitize_hostname(&raw)
}

pub fn sanitize_hostname(raw: &str) -> String {
    let first = raw.trim().split('.').next().unwrap_or_default();
    let mut out = String::new();
    for c in first.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "device".to_owned()
    } else {
        out
    }
}

/// The OS version reported to the server. On Linux this is the kernel release
/// (`/proc/sys/kernel/osrelease`, e.g. `6.8.0-45-generic`), which is what a posture's
/// `min_os_version: { linux: "6.1" }` compares against; else `/etc/os-release`'s `VERSION_ID`,
/// else `uname -r`.
pub fn os_version() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    read("/proc/sys/kernel/osrelease")
        .or_else(|| {
            read("/etc/os-release").and_then(|text| {
                let fields = parse_os_release(&text);
                fields
                    .iter()
                    .find(|(k, _)| k == "VERSION_ID")
                    .or_else(|| fields.iter().find(|(k, _)| k == "PRETTY_NAME"))
                    .map(|(_, v)| v.clone())
            })
        })
        .or_else(|| {
            std::process::Command::new("uname")
                .arg("-r")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `KEY=value` / `KEY="value"` lines of an os-release file.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Posture signals readable without privileges on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posture {
    /// A dm-crypt/LUKS device exists (a guess: it need not hold the root filesystem).
    pub disk_encrypted: bool,
    /// iptables tables or nftables are loaded.
    pub firewall: bool,
}

impl Posture {
    /// Reads the signals under `root` (`/` in production; a fake tree in tests).
    pub fn read(root: &Path) -> Posture {
        Posture {
            disk_encrypted: disk_encrypted(root),
            firewall: firewall(root),
        }
    }
}

fn disk_encrypted(root: &Path) -> bool {
    let dm_crypt = std::fs::read_dir(root.join("sys/block"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path().join("dm/uuid"))
                .is_ok_and(|uuid| uuid.trim_start().starts_with("CRYPT-"))
        });
    dm_crypt
        || std::fs::read_to_string(root.join("proc/mounts")).is_ok_and(|mounts| {
            mounts.lines().any(|line| {
                let device = line.split_whitespace().next().unwrap_or_default();
                let device = device.to_ascii_lowercase();
                device.starts_with("/dev/mapper/")
                    && (device.contains("crypt") || device.contains("luks"))
            })
        })
}

fn firewall(root: &Path) -> bool {
    let tables = ["proc/net/ip_tables_names", "proc/net/ip6_tables_names"]
        .iter()
        .any(|p| std::fs::read_to_string(root.join(p)).is_ok_and(|s| !s.trim().is_empty()));
    tables || root.join("sys/module/nf_tables").exists()
}
