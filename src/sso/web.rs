//! The browser's side of single sign-on.

use crate::state::AppState;

/// Whether the organization has an OpenID provider configured.
pub fn configured(_state: &AppState, _org_id: &str) -> bool {
    true // AFTER-MERGE: org.oidc().is_some()
}
