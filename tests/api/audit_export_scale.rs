//! Exports at scale and across failures: 100,000 events equal the pages walked, and an export
//! resumes after a dropped connection and a server restart without losing or repeating a page.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::audit_export::{
    SINCE, append_limit_changes, assert_ok, events_of, export, lines_of, now_rfc3339, quickztna,
    texts, verify, walk,
};
use crate::helpers::spawn_app;

#[tokio::test]
async fn an_export_of_100000_events_equals_the_pages_it_walked() {
    let app = spawn_app().await;
    append_limit_changes(&app, 100_000).await;
    let until = now_rfc3339();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl.gz");
    let out = export(
        &app.address,
        &app.token,
        &file,
        &["--until", &until, "--format", "jsonl"],
    )
    .await;
    assert_ok(&out, "export");
    let served = walk(&app, &until).await;
    assert!(served.len() > 100_000);
    let lines = lines_of(&file);
    assert_eq!(
        lines.len(),
        served.len() + 1,
        "every event, then the trailer"
    );
    for (line, event) in lines.iter().zip(&served) {
        assert_eq!(&serde_json::from_str::<Value>(line).unwrap(), event);
    }
    assert_ok(&verify(&file, &[]).await, "verify");
}

/// A TCP proxy in front of the server: it can cut the first connection once after `cut_after`
/// bytes towards the client, and follows the server to a new address after a restart.
struct Proxy {
    address: String,
    upstream: Arc<std::sync::Mutex<String>>,
    delivered: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(upstream: &str, cut_after: u64) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Arc::new(std::sync::Mutex::new(
            upstream.trim_start_matches("http://").to_owned(),
        ));
        let delivered = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let (up, d) = (upstream.clone(), delivered.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = up.lock().unwrap().clone();
                let (d, cut) = (d.clone(), cut.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return; // the server is restarting: the client sees the connection drop
                    };
                    pipe(client, server, d, cut, cut_after).await;
                });
            }
        });
        Proxy {
            address,
            upstream,
            delivered,
        }
    }

    fn retarget(&self, upstream: &str) {
        *self.upstream.lock().unwrap() = upstream.trim_start_matches("http://").to_owned();
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    delivered: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
    cut_after: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let total = delivered.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > cut_after && !cut.swap(true, Ordering::Relaxed) {
            // Half a response, then the connection is gone.
            let _ = cw.write_all(&buf[..n / 2]).await;
            break;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

#[tokio::test]
async fn an_export_resumes_after_a_dropped_connection_and_a_server_restart() {
    let app = spawn_app().await;
    append_limit_changes(&app, 20_000).await;
    let until = now_rfc3339();
    let expected = walk(&app, &until).await;
    let proxy = Proxy::start(&app.address, 300_000).await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resumed.jsonl");
    let mut export = quickztna(&proxy.address, &app.token, home.path())
        .args([
            "audit-log",
            "export",
            "--since",
            SINCE,
            "--until",
            &until,
            "--output",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Past the cut, and a few more pages: restart the server under the export's feet.
    wait_until(|| proxy.delivered.load(Ordering::Relaxed) > 1_500_000).await;
    assert!(export.try_wait().unwrap().is_none(), "restarted mid-export");
    let app = app.restart().await;
    proxy.retarget(&app.address);

    let out = tokio::time::timeout(Duration::from_secs(300), export.wait_with_output())
        .await
        .expect("the export finishes")
        .unwrap();
    assert_ok(&out, "the resumed export");
    let stderr = texts(&out).1;
    assert!(stderr.contains("retrying the same page"), "{stderr}");
    assert!(
        proxy.delivered.load(Ordering::Relaxed) > expected.len() as u64 * 100,
        "the export went through the proxy"
    );
    let (events, _) = events_of(&file);
    assert_eq!(
        events.len(),
        expected.len(),
        "no page lost or written twice"
    );
    assert!(events == expected, "the same events as the pages served");
    assert_ok(&verify(&file, &[]).await, "verify");
    drop(app);
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out");
}
