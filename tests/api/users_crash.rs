//! Deleting a user is atomic across a crash: a `kill -9` of the real binary while deletions
//! are in flight never leaves a user removed with devices left, or devices removed with the
//! user left, and every acknowledged deletion survives.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::durability::{run_offline, serve};

const USERS: usize = 24;
const DEVICES_EACH: usize = 4;

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_user_deletions_never_splits_a_user_from_their_devices() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let init: Value = serde_json::from_str(&run_offline(&[
        "init",
        "--org",
        "acme",
        "--data-dir",
        &data_dir,
    ]))
    .unwrap();
    let owner = init["token"].as_str().unwrap().to_owned();
    run_offline(&[
        "org",
        "set-limits",
        "--org",
        "acme",
        "--read-per-min",
        "1000000",
        "--write-per-min",
        "1000000",
        "--data-dir",
        &data_dir,
    ]);
    let (mut server, base) = serve(dir.path()).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{base}/api/v1{path}");
    let post = reqwest::Method::POST;

    // Each user owns a few devices, registered with a key that names them as owner.
    let mut users = Vec::new();
    for u in 0..USERS {
        let resp = call(
            &client,
            post.clone(),
            api("/users"),
            &owner,
            Some(json!({ "email": format!("person{u}@example.com") })),
        )
        .await;
        assert_eq!(resp.status(), 201);
        let id = resp.json::<Value>().await.unwrap()["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = call(
            &client,
            post.clone(),
            api("/keys"),
            &owner,
            Some(json!({ "reusable": true, "owner": id })),
        )
        .await;
        let key = resp.json::<Value>().await.unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        for d in 0..DEVICES_EACH {
            let resp = client
                .post(api("/machine/register"))
                .json(&json!({
                    "auth_key": key, "hostname": format!("p{u}-d{d}"), "os": "linux",
                    "os_version": "6.1", "public_key": crate::helpers::public_key(),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }
        users.push(id);
    }

    // Delete them all at once, and kill the server partway.
    let mut tasks = tokio::task::JoinSet::new();
    for id in users.clone() {
        let (client, owner, url) = (client.clone(), owner.clone(), api(&format!("/users/{id}")));
        tasks.spawn(async move {
            let status = client
                .delete(url)
                .bearer_auth(owner)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            (id, status)
        });
    }
    let mut acknowledged = Vec::new();
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        let (id, status) = done.unwrap();
        if status == Some(204) {
            acknowledged.push(id);
        }
        answered += 1;
        if answered == USERS / 3 {
            server.kill().expect("kill -9");
        }
    }
    let _ = server.wait();
    assert!(
        !acknowledged.is_empty(),
        "some deletions were acknowledged before the kill"
    );

    let (mut server, base) = serve(dir.path()).await;
    let api = |path: &str| format!("{base}/api/v1{path}");
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => api(&format!("/devices?limit=200&cursor={c}")),
            None => api("/devices?limit=200"),
        };
        let page: Value = call(&client, reqwest::Method::GET, url, &owner, None)
            .await
            .json()
            .await
            .unwrap();
        for d in page["items"].as_array().unwrap() {
            *owners
                .entry(d["owner"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut removed = 0;
    for id in &users {
        let status = call(
            &client,
            reqwest::Method::GET,
            api(&format!("/users/{id}")),
            &owner,
            None,
        )
        .await
        .status()
        .as_u16();
        let devices = owners.get(id).copied().unwrap_or(0);
        match status {
            404 => {
                removed += 1;
                assert_eq!(
                    devices, 0,
                    "user {id} is gone but {devices} of their devices remain"
                );
            }
            200 => {
                assert!(
                    !acknowledged.contains(id),
                    "an acknowledged deletion of {id} was lost"
                );
                assert_eq!(
                    devices, DEVICES_EACH,
                    "user {id} remains with {devices} devices"
                );
            }
            other => panic!("GET /users/{id} answered {other}"),
        }
    }
    eprintln!(
        "acknowledged {}, removed {removed} of {USERS}",
        acknowledged.len()
    );
    assert!(removed >= acknowledged.len());
    server.kill().unwrap();
    let _ = server.wait();
}
