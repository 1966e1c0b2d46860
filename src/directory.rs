//! Directory writes: every change to an organization's people and groups — from the users API,
//! SCIM or an OpenID sign-in — runs through [`execute`], which decides one at a time per
//! organization so that uniqueness checks (userName, email, externalId, group names) hold.

use projections::OrgView;

use crate::domain::{Decision, Rejection};
use crate::execute::{Command, ExecuteError, Outcome};
use crate::state::AppState;

/// Decides and appends a directory write of `command`'s organization under its directory lock.
pub async fn execute(
    state: &AppState,
    command: Command,
    decide: impl FnMut(OrgView<'_>) -> Result<Decision, Rejection>,
) -> Result<Outcome, ExecuteError<Rejection>> {
    let lock = state.directory_lock(&command.org_id);
    let _serialized = lock.lock().await;
    crate::execute::execute(state, command, decide).await
}
