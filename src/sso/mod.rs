//! Single sign-on: people sign in through their organization's OpenID provider, and so do the
//! devices they bring (`quickztna up` without a pre-auth key).
//!
//! - [`oidc`]: the relying party (discovery, the authorization-code flow, ID-token checks).
//! - [`pending`]: sign-ins in progress, in memory, bounded and short-lived.
//! - [`secrets`]: each organization's client secret, in a 0600 file outside the event log.
//! - [`web`]: the browser's routes, `/sso/login` and `/sso/callback`, and the device's
//!   confirmation page (the device's side is [`crate::http::machine_login`]).
//!
//! [`Sso`] is what the server keeps for all of it: the pending sign-ins and, per organization,
//! its discovered provider (discovery costs two round trips to the provider, so it is done once
//! per configuration, and again only when the provider's keys rotate).

pub mod device;
pub mod oidc;
pub mod pending;
pub mod secrets;
pub mod web;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use self::oidc::{OidcError, Provider, RelyingParty};
use self::pending::Expiring;

/// Why a browser went to the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A person signs in, with the invitation code of their invitation link if they came from
    /// one.
    SignIn { invitation: Option<String> },
    /// A person signs in for the waiting client of [`DeviceLogin`] `login_id`: a device that
    /// joins as theirs, or the CLI that gets their sign-in session.
    Device { login_id: String },
}

/// A browser on its way to the identity provider, keyed by the `state` it carries.
#[derive(Debug, Clone)]
pub struct BrowserLogin {
    pub org_id: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub purpose: Purpose,
}

/// What a device told the server about itself when it asked to join by sign-in.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub public_key: String,
}

/// What a waiting client gets once its person signs in.
#[derive(Debug, Clone)]
pub enum Wants {
    /// A device joins as theirs (`quickztna up` without a key).
    Device(DeviceRequest),
    /// The CLI gets the person's sign-in session (`quickztna login --sso`).
    Session,
}

/// A client (a device, or the CLI) waiting for its person to sign in, keyed by its login id.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    pub org_id: String,
    pub wants: Wants,
    /// SHA-256 of the secret the agent polls with: the sign-in link alone does not let anyone
    /// collect the device's credential.
    pub poll_hash: [u8; 32],
    pub progress: DeviceProgress,
}

#[derive(Debug, Clone)]
pub enum DeviceProgress {
    /// Nobody signed in for it yet.
    Waiting,
    /// Someone signed in; the device joins (or the CLI gets its session) once they confirm it in
    /// the same browser: a silent single sign-on must not hand a stranger's device, or a
    /// session of the person's, to whoever started the login and sent them the link.
    Confirming {
        user_id: String,
        confirm_hash: [u8; 32],
    },
    /// Confirmed: the registration (or the session) is being made. Nothing moves a login
    /// backwards, so neither a second sign-in at the same link nor the provider's late error
    /// can take it over or undo it.
    Registering,
    /// Done: the registration answer (device and node credential) or the session, handed to
    /// the next poll.
    Joined(serde_json::Value),
    /// Refused, with the reason the agent shows.
    Refused(String),
}

/// The server's single sign-on state.
#[derive(Default)]
pub struct Sso {
    pub logins: Expiring<BrowserLogin>,
    pub devices: Expiring<DeviceLogin>,
    providers: Mutex<HashMap<String, (ProviderKey, Arc<Provider>)>>,
}

/// What a cached provider was discovered for; any change discovers it again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProviderKey {
    issuer: String,
    client_id: String,
    secret_hash: [u8; 32],
    redirect_uri: String,
}

impl Sso {
    /// The organization's discovered provider for `party`, discovering it on first use or
    /// when the configuration changed.
    pub async fn provider(
        &self,
        org_id: &str,
        party: RelyingParty,
    ) -> Result<Arc<Provider>, OidcError> {
        let key = ProviderKey {
            issuer: party.issuer.clone(),
            client_id: party.client_id.clone(),
            secret_hash: crate::domain::secret::hash(&party.client_secret),
            redirect_uri: party.redirect_uri.clone(),
        };
        if let Some((cached, provider)) = self.lock().get(org_id)
            && *cached == key
        {
            return Ok(provider.clone());
        }
        let provider = Arc::new(Provider::discover(oidc::http_client(), party).await?);
        self.lock()
            .insert(org_id.to_owned(), (key, provider.clone()));
        Ok(provider)
    }

    /// Keeps a provider just discovered (by the configuration endpoint, which discovers before
    /// it records anything).
    pub fn remember(&self, org_id: &str, provider: Arc<Provider>) {
        let party = provider.party();
        let key = ProviderKey {
            issuer: party.issuer.clone(),
            client_id: party.client_id.clone(),
            secret_hash: crate::domain::secret::hash(&party.client_secret),
            redirect_uri: party.redirect_uri.clone(),
        };
        self.lock().insert(org_id.to_owned(), (key, provider));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProviderKey, Arc<Provider>)>> {
        self.providers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
