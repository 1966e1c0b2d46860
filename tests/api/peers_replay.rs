//! The peer maps the server keeps up to date event by event equal a build from scratch, after
//! random sequences of what changes them: devices joining and leaving, tags, group
//! memberships, policies (with groups, people, autogroups, denies and postures) and posture
//! requirements with devices reporting in and out of compliance.

use std::time::Duration;

use events::Actor;
use quickztna::domain::directory::{NewGroup, create_group, set_members};
use quickztna::execute::Command;
use quickztna::peers::OrgPeers;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, json, spawn_app};
use crate::machine::{heartbeat, key_secret, register};
use crate::policy::put_policy;
use crate::users::user_id;

/// xorshift64*: the sequence is reproducible from the seed the failure message names.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

const TAGS: [&str; 3] = ["tag:web", "tag:db", "tag:ops"];

fn policies() -> Vec<String> {
    vec![
        "version: 1\nrules: []\n".into(),
        "version: 1\nrules:\n  - { name: web-db, action: accept, src: [tag:web], dst: [tag:db], proto: tcp, ports: [5432] }\n  - { name: sre, action: accept, src: [group:sre], dst: ['*'], ports: ['22', '443'] }\n".into(),
        "version: 1\nrules:\n  - { name: all, action: accept, src: ['*'], dst: ['*'], ports: ['*'] }\n  - { name: no-ops, action: deny, src: [autogroup:member], dst: [tag:ops], ports: ['*'] }\n".into(),
        "version: 1\nrules:\n  - { name: mine, action: accept, src: [autogroup:member], dst: [autogroup:self], ports: ['*'] }\n  - { name: dev-web, action: accept, src: [group:dev, 'user:alice@example.com'], dst: [tag:web], proto: tcp, ports: ['8000-8100'] }\n".into(),
        "version: 1\npostures:\n  enc: { disk_encrypted: true }\nrules:\n  - { name: enc-all, action: accept, src: ['*'], dst: [tag:db, tag:web], ports: ['*'], posture: [enc] }\n  - { name: tagged, action: accept, src: [autogroup:tagged], dst: [autogroup:tagged], proto: udp, ports: ['53'] }\n".into(),
    ]
}

struct Dev {
    id: String,
    credential: String,
}

/// Compares the live maps with a build from the same read models, once nothing moves.
/// Returns how many devices have a peer, so a run can show it compared something.
async fn assert_equal_to_a_rebuild(app: &TestApp, seed: u64, step: usize) -> usize {
    for _ in 0..100 {
        let models = app.state.models().load();
        let position = models.position;
        app.state
            .peers()
            .wait_for(position, Duration::from_secs(10))
            .await;
        if app.state.peers().position() != position
            || app.state.models().load().position != position
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let org = models.state.org(&app.org_id);
        let built = OrgPeers::build(org, 0);
        let mut connected = 0;
        for d in org.devices() {
            let mut live = app.state.peers().of(&app.org_id, &d.id);
            let mut fresh = built.peers(&d.id);
            live.version = 0;
            fresh.version = 0;
            assert_eq!(
                live, fresh,
                "seed {seed}, step {step}: device {} ({:?})",
                d.hostname, d.tags
            );
            connected += usize::from(!fresh.outbound.is_empty());
        }
        return connected;
    }
    panic!("seed {seed}, step {step}: the server never settled");
}

async fn run(seed: u64) {
    let app = spawn_app().await;
    let mut rng = Rng(seed);
    let users = [
        user_id(&app, "alice@example.com").await,
        user_id(&app, "bob@example.com").await,
    ];
    let groups = [quickztna::mint::id("grp"), quickztna::mint::id("grp")];
    for (id, name) in groups.iter().zip(["sre", "dev"]) {
        let command = Command::new(app.org_id.clone(), Actor::console("test"), "req_t");
        let g = NewGroup {
            id: id.clone(),
            display_name: name.into(),
            external_id: None,
            source: "scim",
            members: vec![],
        };
        quickztna::directory::execute(&app.state, command, |org| create_group(org, g.clone()))
            .await
            .expect("a group");
    }
    let policies = policies();
    let mut devices: Vec<Dev> = Vec::new();
    let mut connected = 0;
    for step in 0..40 {
        match rng.below(8) {
            0 | 1 => {
                let mut body = json!({});
                if rng.below(2) == 0 {
                    body["owner"] = json!(users[rng.below(2)]);
                } else {
                    body["tags"] = json!([TAGS[rng.below(3)]]);
                }
                let key = key_secret(&app, body).await;
                let r = register(&app, &key, &format!("d{step}")).await;
                devices.push(Dev {
                    id: r["device"]["id"].as_str().unwrap().into(),
                    credential: r["node_credential"].as_str().unwrap().into(),
                });
            }
            2 if !devices.is_empty() => {
                let d = &devices[rng.below(devices.len())];
                let tag = TAGS[rng.below(3)];
                if rng.below(2) == 0 {
                    app.request(Method::POST, &format!("/api/v1/devices/{}/tags", d.id))
                        .json(&json!({ "tags": [tag] }))
                        .send()
                        .await
                        .unwrap();
                } else {
                    app.request(
                        Method::DELETE,
                        &format!("/api/v1/devices/{}/tags/{tag}", d.id),
                    )
                    .send()
                    .await
                    .unwrap();
                }
            }
            3 if devices.len() > 2 => {
                let d = devices.remove(rng.below(devices.len()));
                app.delete(&format!("/api/v1/devices/{}", d.id)).await;
            }
            4 => {
                let (g, u) = (&groups[rng.below(2)], users[rng.below(2)].clone());
                let (add, remove) = if rng.below(2) == 0 {
                    (vec![u], vec![])
                } else {
                    (vec![], vec![u])
                };
                let command = Command::new(app.org_id.clone(), Actor::console("test"), "req_t");
                quickztna::directory::execute(&app.state, command, |org| {
                    set_members(org, g, &add, &remove)
                })
                .await
                .expect("memberships");
            }
            5 => {
                let resp = put_policy(&app, &policies[rng.below(policies.len())], &[]).await;
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            }
            6 => {
                let action = ["block", "warn"][rng.below(2)];
                let resp = app
                    .request(Method::PUT, "/api/v1/posture/config")
                    .json(&json!({ "disk_encrypted": rng.below(2) == 0, "action": action }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
            _ if !devices.is_empty() => {
                let d = &devices[rng.below(devices.len())];
                let enc = rng.below(2) == 0;
                let hb = heartbeat(
                    &app,
                    &d.credential,
                    &json!({"posture": {"disk_encrypted": enc}}),
                )
                .await;
                assert_eq!(hb.status(), 200, "{}", json(hb).await);
            }
            _ => {}
        }
        connected += assert_equal_to_a_rebuild(&app, seed, step).await;
    }
    assert!(
        connected > 0,
        "seed {seed}: no step had any access to compare"
    );
}

#[tokio::test]
async fn incremental_peer_maps_equal_a_rebuild_after_random_changes() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 42_4242] {
        run(seed).await;
    }
}
