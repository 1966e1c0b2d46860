//! The agent's copy of its peer map: fetched from `GET /machine/netmap` when a heartbeat's
//! `peer_map_version` differs from the one it holds, and written (atomically, owner-only)
//! beside its state file as `netmap.json`, for whatever configures the tunnel to read.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::call::{CallError, get};

/// Where the peer map of the agent whose state lives at `state_path` is kept.
pub(super) fn path_beside(state_path: &Path) -> PathBuf {
    state_path.with_file_name("netmap.json")
}

/// The version of the map on disk (0: none yet).
pub(super) fn stored_version(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("peer_map_version").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// Fetches the map and stores it; returns its version and how many peers it lists.
pub(super) async fn refresh(
    http: &reqwest::Client,
    server: &str,
    credential: &str,
    path: &Path,
) -> Result<(u64, usize), CallError> {
    let map = get(http, server, "/api/v1/machine/netmap", Some(credential)).await?;
    let version = map
        .get("peer_map_version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let peers = map
        .get("peers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let body = serde_json::to_vec_pretty(&map).unwrap_or_default();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    events::durable::replace(path, &[&body]).map_err(|e| CallError::Transient {
        message: format!("cannot write {}: {e}", path.display()),
        retry_after: None,
    })?;
    Ok((version, peers))
}
