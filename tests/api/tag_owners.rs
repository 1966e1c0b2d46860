//! Tag ownership: once the policy lists `tag_owners`, only listed tags can be applied — on
//! devices and on pre-auth keys — by tokens with `policy:write`, tokens the list names, and
//! people the list gives the tag (on their own devices). Removing a tag is never restricted.

use quickztna::domain::directory::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, spawn_app};
use crate::peers::node;
use crate::policy::apply;
use crate::users::{devices_of, user_id};

async fn add_tag(app: &TestApp, token: &str, device: &str, tag: &str) -> (u16, Value) {
    let resp = app
        .request_as(
            token,
            Method::POST,
            &format!("/api/v1/devices/{device}/tags"),
        )
        .json(&json!({ "tags": [tag] }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

#[tokio::test]
async fn only_listed_tags_can_be_applied_and_only_by_their_owners() {
    let app = spawn_app().await;
    let dev = node(&app, &["tag:web"], "web-1").await;
    let other = node(&app, &["tag:web"], "web-2").await;
    let ci = app.token_with(&["devices:write", "keys:write"]).await;
    let ci_id = app.token_id_of(&ci);
    let ops = app.token_with(&["devices:write"]).await;
    let legacy =
        crate::machine::key_secret(&app, json!({ "tags": ["tag:legacy"], "reusable": true })).await;
    let policy = format!(
        "version: 1\ntag_owners:\n  tag:web: []\n  tag:build: [token:{ci_id}]\nrules: []\n"
    );
    apply(&app, &policy).await;

    // Listed for the CI token: it may apply it, another devices:write token may not.
    assert_eq!(add_tag(&app, &ci, &dev.id, "tag:build").await.0, 200);
    let (status, problem) = add_tag(&app, &ops, &other.id, "tag:build").await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("tag_owners"),
        "{problem}"
    );
    // Nobody may apply an unlisted tag, not even with write.
    let (status, problem) = add_tag(&app, &app.token, &dev.id, "tag:random").await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not in the policy's tag_owners")
    );
    // policy:write applies any listed tag.
    let admin = app.token_with(&["devices:write", "policy:write"]).await;
    assert_eq!(add_tag(&app, &admin, &other.id, "tag:build").await.0, 200);
    // Removal is restricted like addition: a tag can be what a deny rule selects.
    let untag = |token: &str, device: &str| {
        app.request_as(
            token,
            Method::DELETE,
            &format!("/api/v1/devices/{device}/tags/tag:build"),
        )
        .send()
    };
    assert_eq!(untag(&ops, &dev.id).await.unwrap().status(), 403);
    assert_eq!(untag(&ci, &dev.id).await.unwrap().status(), 204);
    // PATCH obeys the same rule, for the tags it adds.
    let resp = app
        .request_as(&ops, Method::PATCH, &format!("/api/v1/devices/{}", dev.id))
        .json(&json!({ "tags": ["tag:web", "tag:build"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // So do pre-auth keys: the devices they admit carry their tags.
    let key = |token: &str, tag: &str| {
        app.request_as(token, Method::POST, "/api/v1/keys")
            .json(&json!({ "tags": [tag] }))
            .send()
    };
    assert_eq!(key(&ci, "tag:build").await.unwrap().status(), 201);
    assert_eq!(key(&ci, "tag:web").await.unwrap().status(), 403);
    let detail = json(app.get(&format!("/api/v1/devices/{}", dev.id)).await).await;
    assert_eq!(detail["tags"], json!(["tag:web"]));
    // A key made before the policy listed owners no longer mints its unlisted tag.
    let resp =
        crate::machine::register_raw(&app, &crate::machine::register_body(&legacy, "late")).await;
    let problem = json(resp).await;
    assert_eq!(problem["status"], 403, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("tag:legacy"));
}

#[tokio::test]
async fn a_person_tags_their_own_devices_with_the_tags_the_policy_gives_them() {
    let app = spawn_app().await;
    let alice = user_id(&app, "alice@example.com").await;
    devices_of(&app, &alice, 1).await;
    let models = app.state.models().load();
    let device = models
        .state
        .org(&app.org_id)
        .devices()
        .next()
        .map(|d| d.id.clone())
        .unwrap();
    drop(models);
    let session = quickztna::sessions::issue(
        &app.state,
        &app.org_id,
        &alice,
        "alice@example.com",
        Role::Member,
        "req_t",
    )
    .await
    .expect("a session")
    .token;
    // Without tag_owners a member may not change tags at all.
    assert_eq!(add_tag(&app, &session, &device, "tag:lab").await.0, 403);
    apply(
        &app,
        "version: 1\ntag_owners: { tag:lab: [user:alice@example.com], tag:prod: [] }\nrules: []\n",
    )
    .await;
    assert_eq!(add_tag(&app, &session, &device, "tag:lab").await.0, 200);
    assert_eq!(add_tag(&app, &session, &device, "tag:prod").await.0, 403);
}
