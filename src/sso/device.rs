//! A device joining as the person who signed in for it (or the CLI getting their session): the
//! confirmation page the callback shows, and the registration (or session) once they confirm.
//!
//! The confirmation is a form posted from the page the identity provider sent the browser
//! back to, with a one-time token only that page carries: a link that someone else started
//! (`quickztna up` on their machine) cannot register a device to a person whose provider
//! signs them in silently, without that person seeing what they approve.

use axum::response::{IntoResponse, Response};
use events::{Actor, ActorKind};

use super::web::{escape, page};
use super::{DeviceProgress, Wants};
use crate::domain::devices::{Hostname, Register, RegisterRefusal};
use crate::domain::owned_registration::{OwnerRefusal, register_for_owner};
use crate::domain::public_key::PublicKey;
use crate::domain::secret;
use crate::execute::{Command, execute};
use crate::http::commit::{ensure_writable, problem};
use crate::http::devices::current_view;
use crate::http::machine::RegisterResponse;
use crate::http::problem::Problem;
use crate::http::request_id::RequestId;
use crate::mint;
use crate::state::AppState;

fn login_gone() -> Problem {
    Problem::new(
        http::StatusCode::GONE,
        "login_expired",
        "this sign-in expired or was already used; start again with `quickztna up`",
    )
}

/// After `user_id` signed in for the device of `login_id`: the page asking them to confirm.
pub(super) fn confirmation_page(
    state: &AppState,
    login_id: &str,
    user_id: &str,
) -> Result<Response, Problem> {
    let token = mint::secret("qzc_");
    let wants = state
        .sso()
        .devices
        .with(login_id, |l| match l.progress {
            DeviceProgress::Waiting => {
                l.progress = DeviceProgress::Confirming {
                    user_id: user_id.to_owned(),
                    confirm_hash: token.hash,
                };
                Some(l.wants.clone())
            }
            _ => None,
        })
        .flatten()
        .ok_or_else(login_gone)?;
    let (title, question, button) = match &wants {
        Wants::Device(request) => (
            "Add a device",
            format!(
                "<p>Add the device <strong>{}</strong> ({} {}) to your account? It will join \
                 the network as yours.</p>\
                 <p>Only confirm if you just ran <code>quickztna up</code> on it yourself.</p>",
                escape(&request.hostname),
                escape(&request.os),
                escape(&request.os_version),
            ),
            "Add this device",
        ),
        Wants::Session => (
            "Sign in the command line",
            "<p>Let the QuickZTNA command line act as you, with what your role allows, for \
             seven days?</p>\
             <p>Only confirm if you just ran <code>quickztna login --sso</code> yourself.</p>"
                .to_owned(),
            "Sign in the command line",
        ),
    };
    let body = format!(
        "{question}<form method=\"post\" action=\"/sso/device\">\
         <input type=\"hidden\" name=\"login\" value=\"{login}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"{token}\">\
         <button type=\"submit\">{button}</button></form>",
        login = escape(login_id),
        token = escape(&token.value),
    );
    Ok(page(title, body))
}

/// Registers the device of `login_id` for the person who confirmed it with `confirm`.
pub(super) async fn confirm(
    state: &AppState,
    request_id: &RequestId,
    login_id: &str,
    confirm: &str,
) -> Result<Response, Problem> {
    let presented = secret::hash(confirm);
    let (org_id, wants, user_id) = state
        .sso()
        .devices
        .with(login_id, |l| match &l.progress {
            DeviceProgress::Confirming {
                user_id,
                confirm_hash,
            } if secret::equal(confirm_hash, &presented) => {
                let user_id = user_id.clone();
                // Used once: a second post finds nothing to confirm.
                l.progress = DeviceProgress::Registering;
                Some((l.org_id.clone(), l.wants.clone(), user_id))
            }
            _ => None,
        })
        .flatten()
        .ok_or_else(login_gone)?;
    let refuse = |why: String| {
        state.sso().devices.with(login_id, |l| {
            l.progress = DeviceProgress::Refused(why.clone());
        });
        Problem::forbidden(why)
    };
    // The owner may have been deactivated since they signed in.
    let owner_active = {
        let models = state.models().load();
        models
            .state
            .org(&org_id)
            .user(&user_id)
            .map(|u| (u.active, u.profile.email.clone(), u.role.clone()))
    };
    let (owner_email, role) = match owner_active {
        Some((true, email, role)) => (email, role),
        _ => return Err(refuse("the account that signed in is deactivated".into())),
    };
    let request = match wants {
        Wants::Device(request) => request,
        Wants::Session => {
            return issue_session(
                state,
                request_id,
                login_id,
                &org_id,
                &user_id,
                &owner_email,
                &role,
            )
            .await;
        }
    };
    let hostname = Hostname::normalize(&request.hostname).map_err(Problem::invalid_argument)?;
    let public_key = PublicKey::parse(&request.public_key).map_err(Problem::invalid_argument)?;
    let device_id = mint::id("dev");
    let credential = mint::secret("qzn_");
    let cmd = Register {
        device_id: device_id.clone(),
        hostname: hostname.clone(),
        os: request.os.clone(),
        os_version: request.os_version.clone(),
        public_key,
        credential_hash: credential.hash,
    };
    ensure_writable(state)?;
    // Registrations one at a time (addresses), and never between a directory write's decision
    // and its append: a user's removal must see every device that joined for them. Always in
    // this order (nothing takes the directory lock first and then this one).
    let registrations = state.registration_lock(&org_id);
    let _one_registration = registrations.lock().await;
    let directory = state.directory_lock(&org_id);
    let _no_directory_write = directory.lock().await;
    let actor = Actor {
        kind: ActorKind::User,
        id: user_id.clone(),
        description: owner_email,
    };
    let registered = execute(
        state,
        Command::new(org_id.clone(), actor, request_id.0.clone()),
        |org| register_for_owner(org, &user_id, cmd.clone(), events::now_micros()),
    )
    .await;
    if let Err(e) = registered {
        let p = problem(e, |why| match why {
            OwnerRefusal::OwnerInactive
            | OwnerRefusal::Register(RegisterRefusal::OwnerGone { .. }) => {
                Problem::forbidden("the account that signed in is deactivated or removed")
            }
            OwnerRefusal::Register(RegisterRefusal::PublicKeyInUse { device_id }) => {
                Problem::conflict(format!(
                    "the device's public key is in use by device {device_id}"
                ))
            }
            OwnerRefusal::Register(RegisterRefusal::AddressesExhausted) => {
                Problem::unprocessable("the organization has used up its overlay address space")
            }
            OwnerRefusal::Register(RegisterRefusal::DeviceCap { cap, .. }) => {
                Problem::plan_required(format!(
                    "the organization has {cap} devices, the most its plan allows"
                ))
            }
            OwnerRefusal::Register(RegisterRefusal::Key(_)) => {
                Problem::internal("a key refusal without a key")
            }
        });
        let why = p.detail.clone();
        state.sso().devices.with(login_id, |l| {
            l.progress = DeviceProgress::Refused(why);
        });
        return Err(p);
    }
    let models = state.models().load();
    let device = models
        .state
        .org(&org_id)
        .device(&device_id)
        .ok_or_else(|| Problem::internal("registered device missing from the read model"))?;
    let answer = RegisterResponse {
        device: current_view(state, device),
        node_credential: credential.value,
    };
    let ipv4 = answer.device.addresses.ipv4.clone();
    let answer = serde_json::to_value(answer).map_err(Problem::internal)?;
    state.sso().devices.with(login_id, |l| {
        l.progress = DeviceProgress::Joined(answer);
    });
    Ok(page(
        "Device added",
        format!(
            "<p>The device <strong>{}</strong> joined as yours ({}). You can close this \
             window.</p>",
            escape(hostname.as_str()),
            escape(&ipv4)
        ),
    )
    .into_response())
}

/// The CLI's login: a sign-in session for the person (see `crate::sessions`).
async fn issue_session(
    state: &AppState,
    request_id: &RequestId,
    login_id: &str,
    org_id: &str,
    user_id: &str,
    email: &str,
    role: &str,
) -> Result<Response, Problem> {
    // Every failure past the confirmation ends the login, so the waiting CLI hears why at once.
    let refuse = |p: Problem| {
        let why = p.detail.clone();
        state.sso().devices.with(login_id, |l| {
            l.progress = DeviceProgress::Refused(why);
        });
        p
    };
    let role = crate::domain::directory::Role::parse(role).map_err(|e| refuse(e.into()))?;
    let session = crate::sessions::issue(state, org_id, user_id, email, role, &request_id.0)
        .await
        .map_err(|e| {
            refuse(problem(e, |_| {
                Problem::forbidden("a sign-in session could not be issued for this account")
            }))
        })?;
    let answer = serde_json::json!({
        "token": session.token,
        "token_id": session.token_id,
        "user_id": user_id,
        "email": email,
        "role": session.role.as_str(),
        "expires_at": events::format_time(session.expires_at),
    });
    state.sso().devices.with(login_id, |l| {
        l.progress = DeviceProgress::Joined(answer);
    });
    Ok(page(
        "Signed in",
        "<p>The command line is signed in as you. You can close this window.</p>".to_owned(),
    ))
}
