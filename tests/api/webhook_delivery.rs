//! Webhook deliveries against real receivers: both signatures verify, filters hold, retries
//! keep the `webhook-id`, a receiver that was down gets everything afterwards in order, a slow
//! receiver does not hold up a fast one, a webhook that keeps failing is disabled and resumes
//! where it stopped, rotation signs with both secrets, tests and replays.

use std::str::FromStr;
use std::time::Duration;

use quickztna::webhooks::sign::{Secret, verify_quickztna, verify_standard};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json};
use crate::webhook_receiver::{Received, Receiver};
use crate::webhooks::{create, spawn_hooks};

/// Records `n` events of type `key.created`; answers their ids (the org's sequence numbers).
async fn keys(app: &TestApp, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let resp = app
            .post("/api/v1/keys", &json!({"description": format!("k{i}")}))
            .await;
        assert_eq!(resp.status(), 201);
        let key = json(resp).await["id"].as_str().unwrap().to_owned();
        let audit = json(
            app.get(&format!(
                "/api/v1/audit-log?event_type=key.created&subject={key}"
            ))
            .await,
        )
        .await;
        ids.push(audit["items"][0]["id"].as_u64().expect("the event's id"));
    }
    ids
}

/// A server allowing local receivers, a receiver, and a webhook of `types` to it.
async fn hooked(types: &[&str]) -> (TestApp, Receiver, Value) {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let created = create(&app, &rx.url(), types).await;
    (app, rx, created)
}

/// The attempts of webhook `created` (`query`: `?sort=…&filter=…`).
async fn deliveries(app: &TestApp, created: &Value, query: &str) -> Value {
    let id = created["id"].as_str().unwrap();
    json(
        app.get(&format!("/api/v1/webhooks/{id}/deliveries{query}"))
            .await,
    )
    .await
}

/// Polls webhook `id` until its status is `status` (at most 10 s); answers its last view.
async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    let mut hook = Value::Null;
    for _ in 0..200 {
        hook = json(app.get(&format!("/api/v1/webhooks/{id}")).await).await;
        if hook["status"] == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook
}

fn ids_of(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .map(|r| r.json()["id"].as_u64().unwrap())
        .collect()
}

fn verifies(r: &Received, secret: &Secret) -> bool {
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    verify_standard(
        secret,
        &r.header("webhook-id"),
        ts,
        &r.body,
        &r.header("webhook-signature"),
    ) && verify_quickztna(secret, &r.body, &r.header("x-quickztna-signature"))
}

#[tokio::test]
async fn deliveries_are_signed_both_ways_filtered_and_in_order() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    let secret = Secret::parse(created["secret"].as_str().unwrap()).unwrap();
    let ids = keys(&app, 5).await;
    // Not subscribed to: never sent.
    app.create_token(&["read"], "not for the webhook").await;
    rx.wait_until("five keys", |r| r.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.received();
    assert_eq!(ids_of(&got), ids, "every key event, in order, nothing else");
    for r in &got {
        assert!(verifies(r, &secret), "{:?}", r.headers);
        let body = r.json();
        assert_eq!(body["type"], "key.created");
        assert_eq!(r.header("webhook-id"), body["event_id"].as_str().unwrap());
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-quickztna-event-type"), "key.created");
        assert!(r.header("user-agent").starts_with("QuickZTNA-Webhooks/"));
        // A tampered body does not verify.
        let mut forged = r.clone();
        forged.body = r.body.slice(1..);
        assert!(!verifies(&forged, &secret));
    }
    let list = deliveries(&app, &created, "").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{list}");
    assert!(
        items
            .iter()
            .all(|d| d["outcome"] == "delivered" && d["status"] == 200)
    );
    // Newest first.
    assert_eq!(items[0]["event_id"].as_u64(), ids.last().copied());
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers_and_nothing_is_skipped() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    rx.answer(&[500, 503, 429]);
    let created = create(&app, &rx.url(), &["key.created"]).await;
    let ids = keys(&app, 3).await;
    rx.wait_until("three delivered", |r| {
        r.iter().filter(|r| r.status == 200).count() >= 3
    })
    .await;
    let got = rx.received();
    let first: Vec<&Received> = got.iter().take(4).collect();
    let id0 = first[0].header("webhook-id");
    assert!(
        first.iter().all(|r| r.header("webhook-id") == id0),
        "retries keep the id"
    );
    assert_eq!(
        first.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 429, 200]
    );
    assert_eq!(ids_of(&rx.delivered()), ids);
    let deliveries = deliveries(&app, &created, "?sort=time:asc").await;
    let items = deliveries["items"].as_array().unwrap();
    let tries: Vec<(u64, u64, &str)> = items
        .iter()
        .map(|d| {
            (
                d["event_id"].as_u64().unwrap(),
                d["attempt"].as_u64().unwrap(),
                d["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tries[..4],
        [
            (ids[0], 1, "retrying"),
            (ids[0], 2, "retrying"),
            (ids[0], 3, "retrying"),
            (ids[0], 4, "delivered")
        ]
    );
    assert!(items[0]["next_retry_at"].is_string() && items[0]["status"] == 500);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_afterwards_in_order() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let addr = rx.addr;
    create(&app, &rx.url(), &["key.*"]).await;
    let mut ids = keys(&app, 2).await;
    rx.wait_until("two delivered", |r| r.len() >= 2).await;
    rx.stop().await;
    ids.extend(keys(&app, 4).await);
    // Connection refused, retried on the schedule until it gives up (2 s here): bring the
    // receiver back before that.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back = Receiver::start_on(addr).await;
    back.wait_until("the four missed", |r| r.len() >= 4).await;
    let mut all = rx.delivered();
    all.extend(back.delivered());
    let mut seen = ids_of(&all);
    seen.dedup();
    assert_eq!(seen, ids, "in order, none skipped");
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_a_fast_one() {
    let app = spawn_hooks().await;
    let slow = Receiver::start().await;
    slow.delay(Duration::from_secs(3));
    let fast = Receiver::start().await;
    create(&app, &slow.url(), &["key.*"]).await;
    create(&app, &fast.url(), &["key.*"]).await;
    let ids = keys(&app, 8).await;
    fast.wait_until("all eight", |r| r.len() >= 8).await;
    assert_eq!(ids_of(&fast.received()), ids);
    assert!(
        slow.received().len() <= 2,
        "the slow one is still at its first events"
    );
}

#[tokio::test]
async fn a_webhook_failing_past_the_schedule_is_disabled_and_resumes_where_it_stopped() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    rx.answer(&[500; 40]);
    let created = create(&app, &rx.url(), &["key.*"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ids = keys(&app, 2).await;
    // The schedule gives up after 2 s.
    let disabled = wait_status(&app, &id, "disabled").await;
    assert_eq!(disabled["status"], "disabled", "{disabled}");
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{disabled}"
    );
    let audit = json(
        app.get("/api/v1/audit-log?event_type=webhook.disabled")
            .await,
    )
    .await;
    let event = &audit["items"][0];
    assert_eq!(event["data"]["event_id"].as_u64(), Some(ids[0]));
    assert_eq!(event["actor"]["kind"], "system");
    let failed = deliveries(&app, &created, "?filter=outcome:failed").await;
    assert_eq!(failed["items"][0]["event_id"].as_u64(), Some(ids[0]));
    let tried = rx.received().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.received().len(), tried, "nothing is sent while disabled");

    // Enabled again (the receiver now answers 200): the event it gave up on comes first.
    rx.answer(&[]);
    let resp = app
        .request(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["status"], "active");
    let more = keys(&app, 1).await;
    rx.wait_until("resumed", |r| {
        r.iter().filter(|r| r.status == 200).count() >= 3
    })
    .await;
    let expected: Vec<u64> = ids.iter().chain(&more).copied().collect();
    assert_eq!(ids_of(&rx.delivered()), expected);
}

#[tokio::test]
async fn gone_disables_at_once_and_other_client_errors_are_not_retried() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    rx.answer(&[400]);
    let created = create(&app, &rx.url(), &["key.*"]).await;
    let ids = keys(&app, 2).await;
    rx.wait_until("two tries", |r| r.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The 400 was final for the first event; the second was delivered.
    assert_eq!(ids_of(&rx.received()), ids);
    rx.answer(&[410]);
    keys(&app, 1).await;
    let id = created["id"].as_str().unwrap();
    let hook = wait_status(&app, id, "disabled").await;
    assert!(
        hook["disabled_reason"].as_str().unwrap().contains("410"),
        "{hook}"
    );
    assert_eq!(rx.received().len(), 3, "410 is not retried");
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    let old = Secret::parse(created["secret"].as_str().unwrap()).unwrap();
    let resp = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &json!({"grace_period": "1h"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rotated = json(resp).await;
    let new = Secret::parse(rotated["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new, old);
    keys(&app, 1).await;
    rx.wait_until("one", |r| !r.is_empty()).await;
    let r = &rx.received()[0];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    assert_eq!(r.header("x-quickztna-signature").split(' ').count(), 2);
    assert!(verifies(r, &old) && verifies(r, &new));

    let resp = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &json!({"grace_period": "0s"}),
        )
        .await;
    let newest = Secret::parse(json(resp).await["secret"].as_str().unwrap()).unwrap();
    keys(&app, 1).await;
    rx.wait_until("two", |r| r.len() >= 2).await;
    let r = &rx.received()[1];
    assert!(verifies(r, &newest) && !verifies(r, &new) && !verifies(r, &old));
    let audit = app
        .get("/api/v1/audit-log?event_type=webhook.secret_rotated")
        .await
        .text()
        .await
        .unwrap();
    assert!(!audit.contains(newest.expose()) && !audit.contains(new.expose()));
}

#[tokio::test]
async fn a_test_ping_is_signed_and_answered_with_the_receivers_reply() {
    let (app, rx, created) = hooked(&["device.*"]).await;
    let id = created["id"].as_str().unwrap();
    let secret = Secret::parse(created["secret"].as_str().unwrap()).unwrap();
    let resp = app
        .post(&format!("/api/v1/webhooks/{id}/test"), &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    let result = json(resp).await;
    assert_eq!(result["delivered"], true, "{result}");
    assert_eq!(result["delivery"]["status"], 200);
    let r = &rx.received()[0];
    assert_eq!(r.json()["type"], "webhook.ping");
    assert!(verifies(r, &secret));
    rx.stop().await;
    let result = json(
        app.post(&format!("/api/v1/webhooks/{id}/test"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(result["delivered"], false);
    assert!(
        result["delivery"]["error"]
            .as_str()
            .unwrap()
            .contains("onnect"),
        "{result}"
    );
}

#[tokio::test]
async fn a_replay_delivers_again_from_the_event_asked_for_with_the_same_ids() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    let ids = keys(&app, 4).await;
    rx.wait_until("four", |r| r.len() >= 4).await;
    let first = rx.received();
    let resp = app
        .request(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/replay?since_id={}", ids[2]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    rx.wait_until("two again", |r| r.len() >= 6).await;
    let again = &rx.received()[4..];
    assert_eq!(ids_of(again), ids[2..]);
    assert_eq!(again[0].header("webhook-id"), first[2].header("webhook-id"));
    for bad in ["0", "abc", "999999"] {
        let resp = app
            .request(
                Method::POST,
                &format!("/api/v1/webhooks/{id}/replay?since_id={bad}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn deliveries_resume_after_a_restart_from_the_saved_progress() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    create(&app, &rx.url(), &["key.*"]).await;
    let mut ids = keys(&app, 3).await;
    rx.wait_until("three", |r| r.len() >= 3).await;
    let app = app
        .restart_on_same_port(Some(crate::webhooks::local_receivers))
        .await;
    ids.extend(keys(&app, 2).await);
    rx.wait_until("five", |r| r.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A clean stop saves the cursor: nothing is delivered twice.
    assert_eq!(ids_of(&rx.received()), ids);
}

#[tokio::test]
async fn retry_after_lengthens_the_wait_before_the_next_try() {
    fn settings(s: &mut quickztna::state::Settings) {
        crate::webhooks::local_receivers(s);
        s.webhooks.schedule =
            quickztna::webhooks::schedule::Schedule::parse("0,100ms/30s").unwrap();
    }
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        settings: Some(settings),
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    rx.answer(&[429]);
    rx.retry_after("2");
    let created = create(&app, &rx.url(), &["key.*"]).await;
    keys(&app, 1).await;
    rx.wait_until("delivered", |r| r.len() >= 2).await;
    let d = deliveries(&app, &created, "?sort=time:asc").await;
    let at = |i: usize| jiff::Timestamp::from_str(d["items"][i]["time"].as_str().unwrap()).unwrap();
    let waited = at(1).duration_since(at(0));
    assert!(waited.as_secs_f64() >= 1.9, "waited {waited:?}: {d}");
}

async fn set_enabled(app: &TestApp, id: &str, on: bool) {
    let resp = app
        .request(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"enabled": on}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_disabled_webhooks_loop_sleeps_instead_of_spinning() {
    let (app, _rx, created) = hooked(&["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    set_enabled(&app, id, false).await;
    let live = app.state.webhooks().live(id, 0).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let turns = || live.turns.load(std::sync::atomic::Ordering::Relaxed);
    let before = turns();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nothing happened: a loop that sleeps took no turn (one that spins takes thousands).
    assert!(
        turns() - before <= 2,
        "{} turns while idle",
        turns() - before
    );
}

#[tokio::test]
async fn a_replay_from_a_later_event_does_not_skip_undelivered_ones() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    set_enabled(&app, id, false).await;
    let ids = keys(&app, 4).await;
    let resp = app
        .request(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/replay?since_id={}", ids[2]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    set_enabled(&app, id, true).await;
    rx.wait_until("four", |r| r.len() >= 4).await;
    assert_eq!(
        ids_of(&rx.received()),
        ids,
        "the first two were never delivered: not skipped"
    );
}

#[tokio::test]
async fn concurrent_rotations_leave_the_latest_secret_signing() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{id}/rotate-secret");
    let body = json!({"grace_period": "0s"});
    let rotations = (0..6).map(|_| app.post(&path, &body));
    let mut answers = Vec::new();
    for resp in futures::future::join_all(rotations).await {
        assert_eq!(resp.status(), 200);
        answers.push(json(resp).await);
    }
    keys(&app, 1).await;
    rx.wait_until("one", |r| !r.is_empty()).await;
    let r = &rx.received()[0];
    let signing: Vec<&Value> = answers
        .iter()
        .filter(|a| verifies(r, &Secret::parse(a["secret"].as_str().unwrap()).unwrap()))
        .collect();
    // Each rotation handed out its secret; the one that signs is the one recorded last.
    assert_eq!(
        signing.len(),
        1,
        "exactly one handed-out secret signs: {answers:?}"
    );
    let audit = json(
        app.get(&format!(
            "/api/v1/audit-log?event_type=webhook.secret_rotated&subject={id}&limit=10"
        ))
        .await,
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 6);
    let latest = answers
        .iter()
        .max_by_key(|a| a["previous_secret_expires_at"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(signing[0]["secret"], latest["secret"]);
}

#[tokio::test]
async fn removing_a_webhook_erases_its_secret_at_once_and_a_corrupt_progress_file_is_set_aside() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let gone = create(&app, &rx.url(), &["key.*"]).await;
    let gone = gone["id"].as_str().unwrap();
    let dir = app.data_dir().join("webhooks");
    assert!(dir.join(format!("{gone}.secret")).exists());
    assert_eq!(
        app.delete(&format!("/api/v1/webhooks/{gone}"))
            .await
            .status(),
        204
    );
    assert!(!dir.join(format!("{gone}.secret")).exists());

    let kept = create(&app, &rx.url(), &["key.*"]).await;
    let kept = kept["id"].as_str().unwrap().to_owned();
    let mut ids = keys(&app, 1).await;
    rx.wait_until("one", |r| !r.is_empty()).await;
    let mut app = app;
    app.stop().await;
    std::fs::write(dir.join(format!("{kept}.progress")), b"\x01garbage").unwrap();
    let app = app
        .restart_on_same_port(Some(crate::webhooks::local_receivers))
        .await;
    ids.extend(keys(&app, 1).await);
    rx.wait_until("the new one", |r| ids_of(r).contains(&ids[1]))
        .await;
    assert!(dir.join(format!("{kept}.progress.corrupt")).exists());
    // Delivered again from the webhook's creation: at least once, nothing skipped.
    assert!(
        ids_of(&rx.received())
            .iter()
            .filter(|i| **i == ids[0])
            .count()
            >= 1
    );
}

#[tokio::test]
async fn a_rotation_applies_from_the_next_delivery_not_the_next_batch() {
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(150));
    let created = create(&app, &rx.url(), &["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    keys(&app, 6).await;
    rx.wait_until("the first", |r| !r.is_empty()).await;
    let resp = app
        .post(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &json!({"grace_period": "0"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let new = Secret::parse(json(resp).await["secret"].as_str().unwrap()).unwrap();
    // One delivery may be in flight; every one that starts after the rotation uses the new
    // secret alone.
    let seen = rx.received().len();
    rx.wait_until("all six", |r| r.len() >= 6).await;
    let later = &rx.received()[seen + 1..];
    assert!(!later.is_empty());
    for r in later {
        assert!(verifies(r, &new), "{:?}", r.headers);
        assert_eq!(r.header("webhook-signature").split(' ').count(), 1);
    }
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_tried_again_with_the_same_id() {
    fn settings(s: &mut quickztna::state::Settings) {
        crate::webhooks::local_receivers(s);
        s.webhooks.timeout = Duration::from_millis(500);
    }
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        settings: Some(settings),
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    rx.slow_first(1, Duration::from_millis(1500));
    let created = create(&app, &rx.url(), &["key.*"]).await;
    let ids = keys(&app, 1).await;
    rx.wait_until("the slow one and the retry", |r| r.len() >= 2)
        .await;
    let got = rx.received();
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let d = deliveries(&app, &created, "?sort=time:asc").await;
    let first = &d["items"][0];
    assert_eq!(first["event_id"].as_u64(), Some(ids[0]));
    assert_eq!(first["outcome"], "retrying", "{d}");
    assert!(first["status"].is_null(), "{d}");
    assert!(
        first["error"].as_str().unwrap().contains("timed out"),
        "{d}"
    );
    assert_eq!(d["items"][1]["outcome"], "delivered", "{d}");
}

#[tokio::test]
async fn only_the_first_kilobyte_of_an_answer_is_read_and_kept() {
    let (app, rx, created) = hooked(&["key.*"]).await;
    rx.body(&"x".repeat(200_000));
    keys(&app, 1).await;
    rx.wait_until("one", |r| !r.is_empty()).await;
    let d = deliveries(&app, &created, "").await;
    let kept = d["items"][0]["response"].as_str().unwrap();
    assert_eq!(kept.len(), 1024, "{}", kept.len());
    assert_eq!(d["items"][0]["outcome"], "delivered");
}
