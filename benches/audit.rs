//! Audit-log pages over a 1,000,000-event organization (issue 10 item 7): what a filtered page
//! costs against reading the same number of records straight from the log.
//!
//! The log is built once and cached in `target/bench-data/audit-1m` (rebuilt when
//! [`DATA_VERSION`] changes). Requests of 100 events, each by one of 20 tokens in turn; one
//! request in 1,000 by a rare token. Event mix: 10,000 device registrations, then per 1,000
//! events 10 `token.created`, one `token.revoked`, 50 `device.tagged`, the rest
//! `device.updated`, on 10,000 device streams.
//!
//! Measured in-process (criterion), through `quickztna::audit::page::page`, the function
//! behind `GET /audit-log` (query parsing, range planning, index seeks, record reads, views;
//! not HTTP):
//! - `read_50`: `Log::read_org` of 50 consecutive events: the floor, 50 record reads;
//! - `newest`, `rare_type`, `prefix`, `actor_rare`, `subject`, `type_and_actor`,
//!   `since_asc`: one page of 50 with that filter (see [`CASES`]).
//!
//! Run: `cargo bench --bench audit`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use events::event::{
    DeviceRegistered, DeviceTagged, DeviceUpdated, OrgCreated, Plan, TokenCreated, TokenRevoked,
};
use events::{Actor, ActorKind, AppendRequest, ChainKey, Log, LogOptions, NewEvent};
use quickztna::audit::digests::AuditChains;
use quickztna::audit::page::{self, AuditQuery};
use quickztna::state::{AppState, Settings};

const N: u64 = 1_000_000;
const REQUEST_EVENTS: u64 = 100;
const ORG: &str = "org_bench";
/// Bump when the generated log changes, so a stale cache is rebuilt.
const DATA_VERSION: &str = "audit-1m v1";

fn data_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(Path::to_path_buf)
        .unwrap_or(tmp)
        .join("bench-data")
        .join("audit-1m")
}

fn options() -> LogOptions {
    LogOptions {
        chain_key: Some(ChainKey::from_bytes([9u8; 32])),
        ..LogOptions::default()
    }
}

fn event_at(i: u64) -> NewEvent {
    if i == 0 {
        return NewEvent::new(
            format!("org:{ORG}"),
            OrgCreated {
                org_id: ORG.into(),
                name: "bench".into(),
                plan: Plan::Workforce,
                read_per_min: 6000,
                write_per_min: 600,
            },
        );
    }
    let device = format!("dev_{:05}", i % 10_000);
    match i % 1000 {
        51 => NewEvent::new(
            format!("token:tok_{}", i - 50),
            TokenRevoked {
                token_id: format!("tok_{}", i - 50),
            },
        ),
        1 | 101 | 201 | 301 | 401 | 501 | 601 | 701 | 801 | 901 => NewEvent::new(
            format!("token:tok_{i}"),
            TokenCreated {
                token_id: format!("tok_{i}"),
                prefix: format!("qz_{:06x}", i & 0xff_ffff),
                secret_hash: [1; 32],
                scopes: vec!["devices:read".into()],
                description: format!("automation token {i}"),
                expires_at: 4_102_444_800_000_000,
                parent_token_id: None,
                user_id: None,
            },
        ),
        _ if i < 10_000 => NewEvent::new(
            format!("device:{device}"),
            DeviceRegistered {
                device_id: device.clone(),
                key_id: "key_1".into(),
                hostname: format!("edge-{i}"),
                os: "linux".into(),
                os_version: "6.1".into(),
                public_key: format!("{i:064x}"),
                ipv4: format!("100.64.{}.{}", i / 256, i % 256),
                ipv6: format!("fd7a:115c:a1e0::{i:x}"),
                tags: vec!["tag:prod".into()],
                owner: None,
                ephemeral: false,
                credential_hash: [2; 32],
                key_expires_at: None,
            },
        ),
        r if r % 20 == 7 => NewEvent::new(
            format!("device:{device}"),
            DeviceTagged {
                device_id: device,
                tags: vec![format!("tag:r{}", i % 13)],
            },
        ),
        _ => NewEvent::new(
            format!("device:{device}"),
            DeviceUpdated {
                device_id: device,
                hostname: Some(format!("edge-{i}")),
            },
        ),
    }
}

fn request(chunk: u64) -> AppendRequest {
    let first = chunk * REQUEST_EVENTS;
    let actor_id = if chunk % 1000 == 500 {
        "tok_rare".to_owned()
    } else {
        format!("tok_actor{}", chunk % 20)
    };
    AppendRequest {
        org_id: ORG.into(),
        actor: Actor {
            kind: ActorKind::Token,
            id: actor_id,
            description: "bench".into(),
        },
        request_id: format!("load-{chunk}"),
        expectations: Vec::new(),
        events: (first..first + REQUEST_EVENTS).map(event_at).collect(),
        idempotency: None,
    }
}

fn build() {
    let dir = data_dir();
    let marker = dir.join("bench-version");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(DATA_VERSION) {
        return;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    let log = Log::open(&dir, options()).unwrap();
    for chunk in 0..N / REQUEST_EVENTS {
        log.append_blocking(request(chunk)).unwrap();
    }
    log.close();
    std::fs::write(&marker, DATA_VERSION).unwrap();
    eprintln!("built {N} events in {:.1?}", started.elapsed());
}

/// The measured pages: name and query.
const CASES: &[(&str, &str)] = &[
    ("newest", ""),
    ("rare_type", "event_type=token.revoked"),
    ("prefix", "event_type=token.*"),
    ("actor_rare", "actor=tok_rare"),
    ("subject", "subject=dev_01234"),
    (
        "type_and_actor",
        "event_type=device.tagged&actor=tok_actor3",
    ),
    ("since_asc", "since=SINCE&sort=time:asc"),
];

fn query(q: &str) -> AuditQuery {
    let mut out: AuditQuery = serde_urlencoded::from_str(q).unwrap();
    out.limit = Some("50".into());
    out
}

fn bench(c: &mut Criterion) {
    build();
    // What each projection costs to rebuild from scratch (no snapshot), one pass each.
    {
        let log = Log::open(&data_dir(), options()).unwrap();
        let started = Instant::now();
        let (_, at) = projections::replay::<projections::Models>(&log).unwrap();
        eprintln!("replay Models over {at} events: {:.2?}", started.elapsed());
        let started = Instant::now();
        let (_, at) = projections::replay::<AuditChains>(&log).unwrap();
        eprintln!(
            "replay AuditChains over {at} events: {:.2?}",
            started.elapsed()
        );
        log.close();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut settings = Settings::new(data_dir());
    settings.log = options();
    let started = Instant::now();
    let state = rt.block_on(AppState::open(settings)).unwrap();
    rt.block_on(async {
        let head = state.log().head();
        let wait = std::time::Duration::from_secs(600);
        assert!(state.models().wait_for(head, wait).await);
        assert!(state.chains().wait_for(head, wait).await);
    });
    eprintln!("opened and caught up in {:.1?}", started.elapsed());
    let since = {
        let r = state.log().org_record(ORG, N / 10).unwrap().unwrap();
        r.envelope.time_rfc3339()
    };
    let mut g = c.benchmark_group("audit_1m");
    g.bench_function("read_50", |b| {
        let mut s = 1u64;
        b.iter(|| {
            s = (s + 7919) % (N - 100) + 1;
            state.log().read_org(ORG, s, s + 49, 50).unwrap()
        })
    });
    for (name, q) in CASES {
        let q = query(&q.replace("SINCE", &since));
        let items = rt
            .block_on(page::page(&state, ORG, "audit-log", &q))
            .unwrap();
        assert_eq!(items.items.len(), 50, "{name} fills a page");
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(page::page(&state, ORG, "audit-log", &q))
                    .unwrap()
            })
        });
    }
    g.finish();
    rt.block_on(state.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
