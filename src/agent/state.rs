//! The agent's state file: the device's public key, and after registering its id and node
//! credential, kept between runs (mode 0600, replaced crash-safely).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::cli::CliError;

/// What the agent keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// The device's public key (32 random bytes, base64), generated once.
    pub public_key: String,
    /// The server the credential belongs to.
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub node_credential: Option<String>,
    /// When the server issued `node_credential` (Unix seconds), so it is rotated in time.
    #[serde(default)]
    pub credential_issued_at: Option<i64>,
    /// SHA-256 (hex) of the pre-auth key the current registration was made with.
    #[serde(default)]
    pub registered_with: Option<String>,
    /// Set when the server stopped accepting the device (removed, or its key expired): the
    /// agent does not register again with the same pre-auth key unless told to.
    #[serde(default)]
    pub stopped: Option<Stopped>,
}

/// Why and with which key's registration the device was stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// The server's reason, as shown to the operator.
    pub reason: String,
    /// SHA-256 (hex) of the pre-auth key that registered the stopped device.
    pub key: Option<String>,
}

/// How a pre-auth key is remembered in the state file: never the key itself.
pub fn key_fingerprint(auth_key: &str) -> String {
    hex::encode(crate::domain::secret::hash(auth_key))
}

impl AgentState {
    pub(super) fn fresh() -> Result<AgentState, CliError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| CliError::new(format!("the OS random source failed: {e}")))?;
        Ok(AgentState {
            public_key: STANDARD.encode(raw),
            ..AgentState::default()
        })
    }

    /// The saved credential, if it was issued by `server`.
    pub(super) fn credential_for(&self, server: &str) -> Option<&str> {
        match (&self.server, &self.node_credential) {
            (Some(s), Some(c)) if same_server(s, server) && !c.is_empty() => Some(c),
            _ => None,
        }
    }

    /// The server refused the credential for `reason`: forget it, and remember which key
    /// registered it.
    pub(super) fn stop(&mut self, reason: String) {
        self.device_id = None;
        self.ipv4 = None;
        self.node_credential = None;
        self.credential_issued_at = None;
        self.stopped = Some(Stopped {
            reason,
            key: self.registered_with.take(),
        });
    }

    /// Whether registering with `auth_key` would undo a stop: it is the key that registered
    /// the device the server stopped.
    pub(super) fn stopped_with(&self, auth_key: &str) -> Option<&Stopped> {
        self.stopped
            .as_ref()
            .filter(|s| s.key.as_deref() == Some(key_fingerprint(auth_key).as_str()))
    }
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// `$XDG_STATE_HOME/quickztna/agent.json`, or `~/.local/state/quickztna/agent.json`.
pub fn default_state_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(base.join("quickztna").join("agent.json"))
}

pub(super) fn load_state(path: &Path) -> Result<Option<AgentState>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::new(format!(
                "{}: not a valid agent state file ({e}); remove it to register afresh",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::new(format!("{}: {e}", path.display()))),
    }
}

pub(super) fn save_state(path: &Path, state: &AgentState) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    }
    let body = serde_json::to_vec_pretty(state).map_err(|e| CliError::new(e.to_string()))?;
    events::durable::replace(path, &[&body])
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_reused_only_for_its_server() {
        let state = AgentState {
            public_key: "k".into(),
            server: Some("http://a:8080/".into()),
            node_credential: Some("qzn_x".into()),
            ..AgentState::default()
        };
        assert_eq!(state.credential_for("http://a:8080"), Some("qzn_x"));
        assert_eq!(state.credential_for("http://b:8080"), None);
    }
}
