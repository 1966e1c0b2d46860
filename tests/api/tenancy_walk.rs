//! Tenant isolation, route by route: every operation in the OpenAPI document is called with one
//! organization's credentials and the other's ids, both ways round. A route that takes an id
//! answers 404 (or 403), never 2xx; every answer is searched for the other organization's ids,
//! hostnames and key prefixes; and the other organization's items are unchanged afterwards.
//! A route added later is walked without anyone remembering to add it here.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json};
use crate::machine::register;

/// What one organization owns, and how to act as it.
struct Tenant {
    token: String,
    /// A node credential of one of its devices.
    node: String,
    token_id: String,
    key_id: String,
    key_prefix: String,
    device_id: String,
    hostname: String,
    org_id: String,
    /// The ULID of one of its events.
    event_id: String,
    user_id: String,
    user_email: String,
    group_id: String,
    webhook_id: String,
}

impl Tenant {
    async fn new(app: &TestApp, org_id: String, token: String, name: &str) -> Tenant {
        let token_id = app
            .create_token_as(
                &token,
                &json!({ "scopes": ["read"], "description": format!("{name} reader"), "expires_in": "2h" }),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = app
            .request_as(&token, Method::POST, "/api/v1/keys")
            .json(&json!({ "reusable": true, "tags": ["tag:prod"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let key = json(resp).await;
        let hostname = format!("{name}-secret-host");
        let joined = register(app, key["key"].as_str().unwrap(), &hostname).await;
        let resp = app
            .request_as(&token, Method::GET, "/api/v1/audit-log?limit=1")
            .send()
            .await
            .unwrap();
        let event_id = json(resp).await["items"][0]["event_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let user_email = format!("{name}-person@example.com");
        let resp = app
            .request_as(&token, Method::POST, "/api/v1/users")
            .json(&json!({ "email": user_email }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let user_id = json(resp).await["user"]["id"].as_str().unwrap().to_owned();
        let group_id = quickztna::mint::id("grp");
        let command = quickztna::execute::Command::new(
            org_id.clone(),
            events::Actor::console("tenancy walk"),
            "req_walk",
        );
        let group = quickztna::domain::directory::NewGroup {
            id: group_id.clone(),
            display_name: format!("{name} secret group"),
            external_id: None,
            source: "scim",
            members: vec![user_id.clone()],
        };
        quickztna::directory::execute(&app.state, command, |org| {
            quickztna::domain::directory::create_group(org, group.clone())
        })
        .await
        .expect("create a group");
        // A policy and posture rules that name its secrets, for every policy route to keep.
        let resp = app
            .request_as(&token, Method::PUT, "/api/v1/policy")
            .header("content-type", "application/yaml")
            .body(format!(
                "# {hostname} {user_email}\nversion: 1\nrules:\n  - {{ name: own, action: accept, src: ['user:{user_email}'], dst: [tag:prod], ports: [22] }}\n"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let resp = app
            .request_as(&token, Method::PUT, "/api/v1/posture/config")
            .json(&json!({ "disk_encrypted": true, "action": "block" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let receiver = crate::webhook_receiver::Receiver::start().await;
        let resp = app
            .request_as(&token, Method::POST, "/api/v1/webhooks")
            .json(&json!({ "url": receiver.url(), "description": format!("{name} hook") }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let webhook_id = json(resp).await["id"].as_str().unwrap().to_owned();
        Tenant {
            webhook_id,
            event_id,
            user_id,
            user_email,
            group_id,
            token,
            node: joined["node_credential"].as_str().unwrap().to_owned(),
            token_id,
            key_id: key["id"].as_str().unwrap().to_owned(),
            key_prefix: key["prefix"].as_str().unwrap().to_owned(),
            device_id: joined["device"]["id"].as_str().unwrap().to_owned(),
            hostname,
            org_id,
        }
    }

    /// Strings that must never appear in an answer to the other organization.
    fn secrets(&self) -> [&str; 10] {
        [
            &self.webhook_id,
            &self.user_id,
            &self.user_email,
            &self.group_id,
            &self.token_id,
            &self.key_id,
            &self.key_prefix,
            &self.device_id,
            &self.hostname,
            &self.org_id,
        ]
    }

    /// This tenant's own view of its items, to compare before and after.
    async fn own_view(&self, app: &TestApp) -> Vec<Value> {
        let mut out = Vec::new();
        for path in [
            format!("/api/v1/tokens/{}", self.token_id),
            format!("/api/v1/keys/{}", self.key_id),
            format!("/api/v1/devices/{}", self.device_id),
            format!("/api/v1/users/{}", self.user_id),
            format!("/api/v1/groups/{}", self.group_id),
            format!("/api/v1/webhooks/{}", self.webhook_id),
        ] {
            let resp = app
                .request_as(&self.token, Method::GET, &path)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let mut body = json(resp).await;
            // Liveness moves with the clock, and a webhook's progress with its own deliveries,
            // not with anything another tenant did.
            for moving in ["online", "status", "last_event_id", "retry"] {
                body.as_object_mut().unwrap().remove(moving);
            }
            out.push(body);
        }
        out
    }
}

/// The request body that gets an operation past validation, so that the answer is about the id.
fn body_for(method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("patch", "/devices/{id}") => Some(json!({ "hostname": "taken-over" })),
        ("post", "/devices/{id}/tags") => Some(json!({ "tags": ["tag:pwned"] })),
        ("post", _) | ("put", _) | ("patch", _) => Some(json!({})),
        _ => None,
    }
}

/// The template with the victim's ids in it; `None` when the path names no id.
fn with_ids(template: &str, victim: &Tenant) -> Option<String> {
    let id = if template.starts_with("/tokens/{id}") {
        &victim.token_id
    } else if template.starts_with("/keys/{id}") {
        &victim.key_id
    } else if template.starts_with("/devices/{id}") {
        &victim.device_id
    } else if template.starts_with("/users/{id}") {
        &victim.user_id
    } else if template.starts_with("/groups/{id}") {
        &victim.group_id
    } else if template == "/webhooks/{id}/replay" {
        // Its query parameter is required: without it the answer is a 400 about that.
        return Some(format!("/webhooks/{}/replay?since_id=1", victim.webhook_id));
    } else if template.starts_with("/webhooks/{id}") {
        &victim.webhook_id
    } else if template.starts_with("/machine/login/{login_id}")
        || template.starts_with("/sso/cli-login/{login_id}")
    {
        // A device's sign-in belongs to no organization's data until it joins; its poll
        // secret, not a token, guards it (401 for any other caller, see tests/api/sso_device.rs).
        return None;
    } else if template.starts_with("/sso/domains/{domain}") {
        // A domain is no id: the route acts on the caller's own organization's rules (another
        // organization's rule for the same domain is untouched: tests/api/sso.rs).
        return None;
    } else if template.starts_with("/policy/history/{version}") {
        // Versions are numbers within the caller's own organization, not ids: version 1 is
        // the caller's first policy (tests/api/policy.rs checks one organization's history
        // never shows another's).
        return None;
    } else if template.starts_with("/audit-log/{event_id}") {
        return Some(template.replace("{event_id}", &victim.event_id));
    } else {
        assert!(
            !template.contains('{'),
            "{template}: teach the tenancy walk which ids this path takes"
        );
        return None;
    };
    Some(template.replace("{id}", id).replace("{tag}", "tag:prod"))
}

async fn walk(app: &TestApp, doc: &Value, attacker: &Tenant, victim: &Tenant) {
    let before = victim.own_view(app).await;
    let mut walked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if op.get("responses").is_none() {
                continue;
            }
            let uses_node = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("node").is_some()));
            let credential = if uses_node {
                &attacker.node
            } else {
                &attacker.token
            };
            let concrete = with_ids(template, victim);
            let path = concrete.clone().unwrap_or_else(|| template.clone());
            let mut req = app.request_as(credential, m.clone(), &format!("/api/v1{path}"));
            if let Some(body) = body_for(method, template) {
                req = req.json(&body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            walked += 1;
            let mut text = text;
            if concrete.is_some() {
                assert!(
                    status == 404 || status == 403,
                    "{method} {path} with another organization's id answered {status}: {text}"
                );
                // The answer may echo the id the caller sent, and nothing more: it must be
                // the answer an id that exists nowhere gets.
                let id = path.split('/').nth(2).unwrap().to_owned();
                let nowhere = path.replace(&id, "nowhere_0");
                let mut req = app.request_as(credential, m.clone(), &format!("/api/v1{nowhere}"));
                if let Some(body) = body_for(method, template) {
                    req = req.json(&body);
                }
                let other = req.send().await.unwrap();
                assert_eq!(other.status().as_u16(), status, "{method} {nowhere}");
                let mut a: Value = serde_json::from_str(&text.replace(&id, "X")).unwrap();
                let mut b: Value = other.json().await.unwrap();
                b = serde_json::from_str(&b.to_string().replace("nowhere_0", "X")).unwrap();
                for v in [&mut a, &mut b] {
                    v.as_object_mut().unwrap().remove("request_id");
                }
                assert_eq!(
                    a, b,
                    "{method} {path}: a foreign id is told apart from none"
                );
                text = text.replace(&id, "");
            }
            for secret in victim.secrets() {
                assert!(
                    !text.contains(secret),
                    "{method} {path} ({status}) shows another organization's '{secret}': {text}"
                );
            }
        }
    }
    assert!(
        walked >= 15,
        "the walk covered the API ({walked} operations)"
    );
    assert_eq!(
        victim.own_view(app).await,
        before,
        "nothing of the victim changed"
    );
}

#[tokio::test]
async fn every_route_answers_404_for_another_organizations_ids_both_ways() {
    let app = crate::webhooks::spawn_hooks().await;
    let acme = Tenant::new(&app, app.org_id.clone(), app.token.clone(), "acme").await;
    let (globex_org, globex_token) = app.second_org("globex").await;
    let globex = Tenant::new(&app, globex_org, globex_token, "globex").await;
    let doc = json(app.get("/api/v1/openapi.json").await).await;
    walk(&app, &doc, &globex, &acme).await;
    walk(&app, &doc, &acme, &globex).await;
}
