//! The README's receiver snippet, run as written against real deliveries: the official
//! Standard Webhooks verifier (PyPI `standardwebhooks`) and the seed's `X-QuickZTNA-Signature`
//! accept every delivery, with the current secret and, during a rotation, the previous one,
//! and refuse a tampered body, a moved timestamp and a wrong secret.

use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::json;
use crate::webhook_receiver::{Received, Receiver};
use crate::webhooks::{create, spawn_hooks};

/// The Python block after the `<!-- webhook-verify -->` marker in the README.
fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once("<!-- webhook-verify -->")
        .expect("the README marks its verification snippet")
        .1;
    let block = after
        .split_once("```python\n")
        .expect("a python block after the marker")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

const HARNESS: &str = r#"
import base64, json, sys
out = []
for case in json.load(open(sys.argv[1])):
    try:
        event = verify(case["secret"], case["headers"], base64.b64decode(case["body"]))
        out.append(event["id"])
    except Exception as e:
        out.append("refused")
print(json.dumps(out))
"#;

/// What the README's receiver makes of each case: the event's id, or `"refused"`.
pub fn readme_verdicts(cases: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("receiver.py");
    std::fs::write(&script, format!("{}\n{HARNESS}", readme_snippet())).unwrap();
    let input = dir.path().join("cases.json");
    std::fs::write(&input, cases.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One request for the README's receiver: the secret, the headers and the raw body.
pub fn case(secret: &str, r: &Received) -> Value {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect();
    json!({
        "secret": secret,
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&r.body),
    })
}

pub fn verifier_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        ok || !in_ci,
        "python3 with standardwebhooks (pip install standardwebhooks) must be available in CI"
    );
    if !ok {
        eprintln!("skipped: python3 -m pip install standardwebhooks to run this test");
    }
    ok
}

#[tokio::test]
async fn the_readmes_receiver_accepts_real_deliveries_and_refuses_forgeries() {
    if !verifier_available() {
        return;
    }
    let app = spawn_hooks().await;
    let rx = Receiver::start().await;
    let created = create(&app, &rx.url(), &["key.*"]).await;
    let id = created["id"].as_str().unwrap();
    let old = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.post("/api/v1/keys", &json!({})).await.status(), 201);
    rx.wait_until("one", |r| !r.is_empty()).await;
    let resp = app
        .post(&format!("/api/v1/webhooks/{id}/rotate-secret"), &json!({}))
        .await;
    let new = json(resp).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.post("/api/v1/keys", &json!({})).await.status(), 201);
    rx.wait_until("two", |r| r.len() >= 2).await;
    let got = rx.received();
    let (first, second) = (&got[0], &got[1]);
    let ids = [first.json()["id"].clone(), second.json()["id"].clone()];

    let mut tampered = second.clone();
    tampered.body = bytes::Bytes::from(
        String::from_utf8(second.body.to_vec())
            .unwrap()
            .replace("key.created", "key.revoked"),
    );
    let mut moved = second.clone();
    let ts: i64 = second.header("webhook-timestamp").parse().unwrap();
    moved
        .headers
        .insert("webhook-timestamp", (ts - 1).to_string().parse().unwrap());
    let cases = json!([
        case(&old, first),
        case(&new, second),
        case(&old, second),
        case(&new, first),
        case(&new, &tampered),
        case(&new, &moved),
    ]);
    let verdicts = readme_verdicts(&cases);
    assert_eq!(
        verdicts,
        json!([ids[0], ids[1], ids[1], "refused", "refused", "refused"]),
        "old secret before rotation, new after, old still during the grace period; the first \
         delivery was never signed with the new secret; tampering is refused"
    );
}
