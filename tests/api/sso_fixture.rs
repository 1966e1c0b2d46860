//! A server whose organization signs people in through a real local OpenID provider, and the
//! directory set-up the SSO tests share (invitations, domain rules, SCIM groups), written
//! through the server's own directory executor.

#![allow(dead_code)]

use events::Actor;
use quickztna::domain::directory::{self, NewGroup, Role};
use quickztna::execute::Command;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, spawn_app};
use crate::oidc_provider::{ClientSpec, OidcProvider};

pub const CLIENT_ID: &str = "quickztna";
pub const CLIENT_SECRET: &str = "rp-secret-7c1f";
pub const OTHER_CLIENT: &str = "other-app";
pub const OTHER_SECRET: &str = "other-secret-91aa";

pub struct SsoApp {
    pub app: TestApp,
    pub op: OidcProvider,
}

/// The people the provider knows.
pub fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.test", "email_verified": true, "name": "Alice Liddell",
                  "preferred_username": "alice", "groups": ["eng"]},
        "bob": {"email": "bob@acme.test", "email_verified": true, "name": "Bob"},
        "mallory": {"email": "mallory@evil.test", "email_verified": true},
        // Claims bob's address without the provider vouching for it.
        "eve": {"email": "bob@acme.test", "email_verified": false},
    })
}

impl SsoApp {
    /// A server, a provider with our client (and another app's, which also redirects to us),
    /// and the organization configured with PUT /sso/oidc.
    pub async fn start() -> SsoApp {
        let app = spawn_app().await;
        let callback = app.url("/sso/callback");
        let op = OidcProvider::start(
            &[
                ClientSpec::new(CLIENT_ID, CLIENT_SECRET, &callback),
                ClientSpec::new(OTHER_CLIENT, OTHER_SECRET, &callback),
            ],
            &accounts(),
        )
        .await;
        let resp = app
            .request(Method::PUT, "/api/v1/sso/oidc")
            .json(&json!({"issuer": op.issuer, "client_id": CLIENT_ID,
                          "client_secret": CLIENT_SECRET}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        SsoApp { app, op }
    }

    pub fn callback(&self) -> String {
        self.app.url("/sso/callback")
    }

    pub fn login_url(&self) -> String {
        self.app.url(&format!("/sso/login?org={}", self.app.org_id))
    }

    async fn directory(
        &self,
        decide: impl FnMut(
            projections::OrgView<'_>,
        ) -> Result<quickztna::domain::Decision, quickztna::domain::Rejection>,
    ) {
        let cmd = Command::new(
            self.app.org_id.clone(),
            Actor::console("test setup"),
            "req_test",
        );
        quickztna::directory::execute(&self.app.state, cmd, decide)
            .await
            .expect("directory write");
    }

    /// Invites `email` with `POST /users` (no SMTP relay: the answer has the link); returns
    /// (user id, invitation link).
    pub async fn invite(&self, email: &str, role: Role) -> (String, String) {
        let resp = self
            .app
            .post(
                "/api/v1/users",
                &json!({"email": email, "role": role.as_str()}),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let body = json(resp).await;
        let link = body["invitation"]["url"].as_str().expect("link").to_owned();
        assert!(link.starts_with(&self.login_url()), "{link}");
        (body["user"]["id"].as_str().unwrap().to_owned(), link)
    }

    /// An SSO-domain rule, with `POST /users`.
    pub async fn add_domain(&self, domain: &str, role: Role) {
        let resp = self
            .app
            .post(
                "/api/v1/users",
                &json!({"domain": domain, "role": role.as_str()}),
            )
            .await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    }

    /// A group the identity provider owns through SCIM.
    pub async fn scim_group(&self, name: &str) -> String {
        let id = quickztna::mint::id("grp");
        let group = NewGroup {
            id: id.clone(),
            display_name: name.into(),
            external_id: None,
            source: "scim",
            members: vec![],
        };
        self.directory(|org| directory::create_group(org, group.clone()))
            .await;
        id
    }

    pub async fn set_active(&self, user_id: &str, active: bool) {
        self.directory(|org| directory::set_active(org, user_id, active))
            .await;
    }

    /// The organization's users as the read model has them: (id, email, status, source, role).
    pub fn users(&self) -> Vec<(String, String, String, String, String)> {
        let models = self.app.state.models().load();
        models
            .state
            .org(&self.app.org_id)
            .users()
            .map(|u| {
                (
                    u.id.clone(),
                    u.profile.email.clone(),
                    u.status().to_owned(),
                    u.source.clone(),
                    u.role.clone(),
                )
            })
            .collect()
    }

    pub fn user_id(&self, email: &str) -> Option<String> {
        let models = self.app.state.models().load();
        models
            .state
            .org(&self.app.org_id)
            .user_by_email(email)
            .map(|u| u.id.clone())
    }

    /// `(group name, source)` of each group `user_id` is in.
    pub fn groups_of(&self, user_id: &str) -> Vec<(String, String)> {
        let models = self.app.state.models().load();
        models
            .state
            .org(&self.app.org_id)
            .groups_of(user_id)
            .map(|g| (g.display_name.clone(), g.source.clone()))
            .collect()
    }

    /// Every group: `(name, source, member count)`.
    pub fn groups(&self) -> Vec<(String, String, usize)> {
        let models = self.app.state.models().load();
        models
            .state
            .org(&self.app.org_id)
            .groups()
            .map(|g| (g.display_name.clone(), g.source.clone(), g.members.len()))
            .collect()
    }

    /// The event types of the organization's audit log.
    pub async fn event_types(&self) -> Vec<String> {
        let (items, _) = self
            .app
            .list_all(&self.app.token, "/api/v1/audit-log", "")
            .await;
        items
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    pub async fn get(&self, path: &str) -> Value {
        json(self.app.get(path).await).await
    }
}
