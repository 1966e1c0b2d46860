//! The persisted format (invariant 7): every `(event type, schema version)` has a committed
//! golden record in `tests/fixtures` that must keep decoding to the same envelope and event,
//! byte for byte; envelopes and events round-trip; bad bytes are errors, never panics.
//!
//! A new event type or version needs a sample in [`sample`] and a fixture: run
//! `QZ_WRITE_FIXTURES=1 cargo test -p quickztna-events --test codec` once and commit the file.
//! Never regenerate an existing fixture: a fixture that stops decoding is a broken log.
//! `tests/fixtures` holds records of the current format (2); `tests/fixtures/format1` the first
//! format's, which must keep decoding (with no org sequence) though no build writes them.

use std::path::{Path, PathBuf};

use events::codec::{self, FORMAT_V1, FORMAT_V2, MAC_LEN};
use events::event::{
    DeviceCredentialRotated, DeviceKeyExpired, DeviceOwnerChanged, DeviceRegistered, DeviceRemoved,
    DeviceTagged, DeviceUntagged, DeviceUpdated, KeyCreated, KeyRevoked, KeyUsed, OrgCreated,
    OrgLimitsSet, OrgSettingsChanged, Plan, TokenCreated, TokenRevoked,
};
use events::samples::{legacy_sample, sample};
use events::{Actor, ActorKind, ChainKey, Envelope, Error, Event};
use proptest::prelude::*;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_path(event_type: &str, version: u16) -> PathBuf {
    fixtures_dir().join(format!("{event_type}.v{version}.hex"))
}

/// The key the fixtures' MACs were made with.
fn fixture_key() -> ChainKey {
    ChainKey::from_bytes([0x5a; 32])
}

/// The envelope a fixture holds: fixed fields around the sample, chained from the zero MAC
/// with [`fixture_key`].
fn sample_envelope(event: &Event, actor: ActorKind) -> Envelope {
    fixture_envelope(
        event.event_type(),
        event.schema_version(),
        event.encode_payload(),
        event.subject(),
        actor,
    )
}

/// The envelope of a fixture holding `payload`, a `(event_type, version)` record.
fn fixture_envelope(
    event_type: &str,
    version: u16,
    payload: Vec<u8>,
    stream: String,
    actor: ActorKind,
) -> Envelope {
    let mut env = Envelope {
        position: 4242,
        org_seq: 99,
        stream,
        revision: 17,
        event_id: *b"\x01\x93\x5e\x6b\x0c\x1dQZTNA-fixt",
        event_type: event_type.into(),
        schema_version: version,
        recorded_at: 1_764_000_000_123_456,
        org_id: "org_01".into(),
        actor: Actor {
            kind: actor,
            id: format!("{}_01", actor.as_str()),
            description: "golden fixture".into(),
        },
        request_id: "req_01J8Z3Q4ZP".into(),
        payload,
        mac: [0; 32],
    };
    let record = codec::encode_record(&env);
    env.mac = fixture_key().link(&[0; 32], codec::mac_body(&record).expect("has a body"));
    env
}

fn read_fixture(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("the fixture reads");
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("{} is not hex: {e}", path.display()))
}

#[test]
fn every_event_type_has_a_sample_of_its_current_version() {
    for (i, &(event_type, version)) in Event::TYPES.iter().enumerate() {
        let Some((event, _)) = sample(event_type) else {
            panic!("no golden sample for {event_type}: add one to `sample` in tests/codec.rs");
        };
        assert_eq!(event.event_type(), event_type);
        assert_eq!(
            event.schema_version(),
            version,
            "the sample of {event_type}"
        );
        assert!(
            !Event::TYPES[..i].iter().any(|(t, _)| *t == event_type),
            "{event_type} is listed twice in Event::TYPES"
        );
    }
}

#[test]
fn every_event_type_and_version_has_a_golden_fixture_that_decodes_to_its_sample() {
    let write = std::env::var("QZ_WRITE_FIXTURES").as_deref() == Ok("1");
    let mut missing = Vec::new();
    for &(event_type, version) in Event::TYPES {
        let Some((event, actor)) = sample(event_type) else {
            panic!("no golden sample for {event_type}: add one to `sample` in tests/codec.rs");
        };
        let expected = sample_envelope(&event, actor);
        let path = fixture_path(event_type, version);
        if !path.exists() {
            if write {
                std::fs::create_dir_all(fixtures_dir()).expect("the fixtures dir is writable");
                let text = hex::encode(codec::encode_record(&expected)) + "\n";
                std::fs::write(&path, text).expect("the fixture is writable");
            } else {
                missing.push(path.display().to_string());
                continue;
            }
        }
        let bytes = read_fixture(&path);
        let decoded = codec::decode_record(0, &bytes)
            .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        assert_eq!(
            decoded,
            expected,
            "{} decodes to another envelope",
            path.display()
        );
        let decoded_event = Event::decode(event_type, version, &decoded.payload)
            .unwrap_or_else(|e| panic!("the payload of {} no longer decodes: {e}", path.display()));
        assert_eq!(
            decoded_event,
            event,
            "{} holds another event",
            path.display()
        );
        assert_eq!(
            codec::encode_record(&expected),
            bytes,
            "{event_type} v{version} no longer encodes to its golden bytes",
        );
        let body = codec::mac_body(&bytes).expect("has a body");
        assert_eq!(
            fixture_key().link(&[0; 32], body),
            decoded.mac,
            "the MAC of {} no longer covers the same bytes",
            path.display()
        );
    }
    assert!(
        missing.is_empty(),
        "missing golden fixtures: {missing:?}\n\
         generate them with `QZ_WRITE_FIXTURES=1 cargo test -p quickztna-events --test codec` \
         and commit them"
    );
}

#[test]
fn org_limits_set_v1_upcasts_to_the_plans_default_registration_budget() {
    let bytes = read_fixture(&fixture_path("org.limits_set", 1));
    let env = codec::decode_record(0, &bytes).expect("the v1 fixture decodes");
    assert_eq!(env.schema_version, 1);
    let event = Event::decode("org.limits_set", 1, &env.payload).expect("v1 upcasts");
    assert_eq!(
        event,
        Event::from(OrgLimitsSet {
            org_id: "org_01".into(),
            read_per_min: 6000,
            write_per_min: 70_000,
            register_per_min: None,
        })
    );
}

#[test]
fn every_format_1_fixture_still_decodes_to_its_sample_without_an_org_sequence() {
    let dir = fixtures_dir().join("format1");
    for &(event_type, version) in Event::TYPES {
        let path = dir.join(format!("{event_type}.v{version}.hex"));
        if !path.exists() {
            // Event types added after format 2 have no format-1 record.
            continue;
        }
        let (event, actor) = sample(event_type).expect("a sample");
        let bytes = read_fixture(&path);
        assert_eq!(bytes[0], FORMAT_V1, "{}", path.display());
        let decoded = codec::decode_record(0, &bytes)
            .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        let mut expected = sample_envelope(&event, actor);
        expected.org_seq = 0;
        expected.mac = decoded.mac;
        assert_eq!(
            decoded,
            expected,
            "{} decodes to another envelope",
            path.display()
        );
        let body = codec::mac_body(&bytes).expect("has a body");
        assert_eq!(
            fixture_key().link(&[0; 32], body),
            decoded.mac,
            "the MAC of {} no longer covers the same bytes",
            path.display()
        );
        assert!(
            codec::decode_ref(0, &bytes).is_err(),
            "a borrowed decode of format 1 must refuse, not misread"
        );
    }
}

#[test]
fn every_older_schema_version_keeps_its_fixture_and_upcasts_to_the_current_event() {
    for &(event_type, version) in events::legacy::VERSIONS {
        let current = Event::TYPES
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, v)| *v);
        assert!(
            current.is_some_and(|c| c > version),
            "{event_type} v{version} is listed as old but the catalogue is at {current:?}"
        );
        let (payload, upcast, actor) = legacy_sample(event_type, version)
            .unwrap_or_else(|| panic!("no legacy sample of {event_type} v{version}"));
        let expected = fixture_envelope(event_type, version, payload, upcast.subject(), actor);
        let path = fixture_path(event_type, version);
        let bytes = read_fixture(&path);
        let decoded = codec::decode_record(0, &bytes)
            .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        assert_eq!(
            decoded,
            expected,
            "{} decodes to another envelope",
            path.display()
        );
        assert_eq!(
            codec::encode_record(&expected),
            bytes,
            "{event_type} v{version}'s sample no longer encodes to its golden bytes"
        );
        let event = Event::decode(event_type, version, &decoded.payload)
            .unwrap_or_else(|e| panic!("the payload of {} no longer decodes: {e}", path.display()));
        assert_eq!(event, upcast, "{} upcasts to another event", path.display());
        assert_eq!(event.schema_version(), current.unwrap_or_default());

        let format1 = fixtures_dir()
            .join("format1")
            .join(format!("{event_type}.v{version}.hex"));
        if format1.exists() {
            let decoded = codec::decode_record(0, &read_fixture(&format1))
                .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", format1.display()));
            assert_eq!(decoded.org_seq, 0);
            assert_eq!(decoded.payload, expected.payload, "{}", format1.display());
            let event = Event::decode(event_type, version, &decoded.payload).expect("upcasts");
            assert_eq!(event, upcast, "{}", format1.display());
        }
    }
}

#[test]
fn a_version_1_token_record_upcasts_with_no_parent() {
    let (payload, _, _) = legacy_sample("token.created", 1).expect("a v1 sample");
    match Event::decode("token.created", 1, &payload).expect("decodes") {
        Event::TokenCreated(e) => {
            assert_eq!(e.parent_token_id, None);
            assert_eq!(e.token_id, "tok_01");
        }
        other => panic!("decoded as {other:?}"),
    }
    // The version picks the struct: a v1 payload is too short for a v2 one.
    assert!(Event::decode("token.created", 2, &payload).is_err());
}

#[test]
fn every_fixture_file_decodes_to_the_type_and_version_it_is_named_for() {
    let mut seen = 0;
    let dirs = [fixtures_dir(), fixtures_dir().join("format1")];
    let entries = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).expect("the fixtures dir exists"));
    for entry in entries {
        let path = entry.expect("lists").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_owned();
        let Some(stem) = name.strip_suffix(".hex") else {
            continue;
        };
        let (event_type, version) = stem.rsplit_once(".v").expect("named <type>.v<version>.hex");
        let version: u16 = version.parse().expect("a numeric version");
        let env = codec::decode_record(0, &read_fixture(&path))
            .unwrap_or_else(|e| panic!("{name} no longer decodes: {e}"));
        assert_eq!(
            (env.event_type.as_str(), env.schema_version),
            (event_type, version),
            "{name}"
        );
        Event::decode(event_type, version, &env.payload)
            .unwrap_or_else(|e| panic!("the payload of {name} no longer decodes: {e}"));
        seen += 1;
    }
    // Format 2 has one per current type; format 1 is frozen with the 15 types it knew.
    assert!(seen >= Event::TYPES.len() + 15, "only {seen} fixtures");
}

#[test]
fn every_truncation_of_a_record_or_payload_is_an_error() {
    for &(event_type, version) in Event::TYPES {
        let (event, actor) = sample(event_type).expect("a sample");
        let record = codec::encode_record(&sample_envelope(&event, actor));
        for len in 0..record.len() {
            assert!(
                codec::decode_record(0, &record[..len]).is_err(),
                "{event_type}: {len} of {} bytes decoded",
                record.len()
            );
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(
            matches!(
                codec::decode_record(9, &longer),
                Err(Error::Corrupt { position: 9, .. })
            ),
            "{event_type}: a trailing byte was accepted"
        );
        let payload = event.encode_payload();
        for len in 0..payload.len() {
            assert!(
                Event::decode(event_type, version, &payload[..len]).is_err(),
                "{event_type}: a payload cut to {len} bytes decoded"
            );
        }
    }
}

#[test]
fn a_record_of_an_unknown_format_is_refused_as_unknown_format() {
    let (event, actor) = sample("device.tagged").expect("a sample");
    let mut record = codec::encode_record(&sample_envelope(&event, actor));
    assert_eq!(record[0], FORMAT_V2);
    for format in [0u8, 3, 0xff] {
        record[0] = format;
        let got = codec::decode_record(1, &record);
        assert!(
            matches!(got, Err(Error::UnknownFormat(f)) if f == format),
            "{got:?}"
        );
    }
    assert!(matches!(
        codec::decode_record(1, &[]),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn an_unknown_event_type_or_version_is_refused_as_unknown_event() {
    let payload = sample("device.tagged")
        .expect("a sample")
        .0
        .encode_payload();
    for (event_type, version) in [("device.exploded", 1), ("device.tagged", 99), ("", 0)] {
        let got = Event::decode(event_type, version, &payload);
        assert!(
            matches!(&got, Err(Error::UnknownEvent { event_type: t, version: v })
                if t == event_type && *v == version),
            "{event_type} v{version}: {got:?}"
        );
    }
}

fn actor_kind() -> impl Strategy<Value = ActorKind> {
    prop_oneof![
        Just(ActorKind::Token),
        Just(ActorKind::Device),
        Just(ActorKind::System),
        Just(ActorKind::Console),
        Just(ActorKind::Scim),
        Just(ActorKind::User),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (
            any::<u64>(),
            any::<String>(),
            any::<u64>(),
            any::<[u8; 16]>(),
        ),
        (any::<String>(), any::<u16>(), any::<i64>(), any::<String>()),
        (
            actor_kind(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 32]>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (position, stream, revision, event_id),
                (event_type, schema_version, recorded_at, org_id),
                (kind, id, description, request_id),
                (payload, mac, org_seq),
            )| Envelope {
                position,
                org_seq,
                stream,
                revision,
                event_id,
                event_type,
                schema_version,
                recorded_at,
                org_id,
                actor: Actor {
                    kind,
                    id,
                    description,
                },
                request_id,
                payload,
                mac,
            },
        )
}

fn text() -> impl Strategy<Value = String> {
    any::<String>()
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(any::<String>(), 0..4)
}

/// Any event of any type, with arbitrary field values.
fn event() -> impl Strategy<Value = Event> {
    let plan = prop_oneof![
        Just(Plan::Free),
        Just(Plan::Business),
        Just(Plan::Workforce)
    ];
    prop_oneof![
        (text(), text(), plan, any::<u32>(), any::<u32>()).prop_map(
            |(org_id, name, plan, read_per_min, write_per_min)| Event::from(OrgCreated {
                org_id,
                name,
                plan,
                read_per_min,
                write_per_min,
            })
        ),
        (text(), any::<u32>(), any::<u32>(), any::<Option<u32>>()).prop_map(
            |(org_id, read_per_min, write_per_min, register_per_min)| {
                Event::from(OrgLimitsSet {
                    org_id,
                    read_per_min,
                    write_per_min,
                    register_per_min,
                })
            }
        ),
        (text(), any::<u32>()).prop_map(|(org_id, days)| Event::from(
            events::event::OrgRetentionSet { org_id, days }
        )),
        (text(), any::<Option<u32>>(), any::<u64>()).prop_map(|(org_id, days, secs)| {
            Event::from(OrgSettingsChanged {
                org_id,
                device_idle_removal_days: days,
                ephemeral_offline_secs: secs,
            })
        }),
        (
            text(),
            text(),
            any::<[u8; 32]>(),
            texts(),
            text(),
            any::<i64>(),
            any::<Option<String>>()
        )
            .prop_map(
                |(token_id, prefix, secret_hash, scopes, description, expires_at, parent)| {
                    Event::from(TokenCreated {
                        token_id,
                        prefix,
                        secret_hash,
                        scopes,
                        description,
                        expires_at,
                        parent_token_id: parent,
                    })
                }
            ),
        text().prop_map(|token_id| Event::from(TokenRevoked { token_id })),
        (
            (
                text(),
                text(),
                any::<[u8; 32]>(),
                any::<bool>(),
                any::<bool>()
            ),
            (
                texts(),
                any::<Option<String>>(),
                any::<i64>(),
                text(),
                any::<Option<u32>>()
            ),
        )
            .prop_map(
                |(
                    (key_id, prefix, secret_hash, reusable, ephemeral),
                    (tags, owner, expires_at, description, max_uses),
                )| {
                    Event::from(KeyCreated {
                        key_id,
                        prefix,
                        secret_hash,
                        reusable,
                        ephemeral,
                        tags,
                        owner,
                        expires_at,
                        description,
                        max_uses,
                    })
                }
            ),
        (text(), text(), any::<u32>()).prop_map(|(key_id, device_id, uses)| Event::from(KeyUsed {
            key_id,
            device_id,
            uses
        })),
        text().prop_map(|key_id| Event::from(KeyRevoked { key_id })),
        (
            (text(), text(), text(), text(), text(), text()),
            (
                text(),
                text(),
                texts(),
                any::<Option<String>>(),
                any::<bool>()
            ),
            (any::<[u8; 32]>(), any::<Option<i64>>()),
        )
            .prop_map(
                |(
                    (device_id, key_id, hostname, os, os_version, public_key),
                    (ipv4, ipv6, tags, owner, ephemeral),
                    (credential_hash, key_expires_at),
                )| {
                    Event::from(DeviceRegistered {
                        device_id,
                        key_id,
                        hostname,
                        os,
                        os_version,
                        public_key,
                        ipv4,
                        ipv6,
                        tags,
                        owner,
                        ephemeral,
                        credential_hash,
                        key_expires_at,
                    })
                }
            ),
        (text(), any::<Option<String>>()).prop_map(|(device_id, hostname)| Event::from(
            DeviceUpdated {
                device_id,
                hostname
            }
        )),
        (text(), texts())
            .prop_map(|(device_id, tags)| Event::from(DeviceTagged { device_id, tags })),
        (text(), texts())
            .prop_map(|(device_id, tags)| Event::from(DeviceUntagged { device_id, tags })),
        (text(), any::<Option<String>>(), any::<Option<String>>()).prop_map(
            |(device_id, from, to)| Event::from(DeviceOwnerChanged {
                device_id,
                from,
                to
            })
        ),
        text().prop_map(|device_id| Event::from(DeviceKeyExpired { device_id })),
        (text(), text())
            .prop_map(|(device_id, reason)| Event::from(DeviceRemoved { device_id, reason })),
        (text(), any::<[u8; 32]>()).prop_map(|(device_id, credential_hash)| Event::from(
            DeviceCredentialRotated {
                device_id,
                credential_hash
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_envelope_round_trips_and_ends_with_its_mac(env in envelope()) {
        let record = codec::encode_record(&env);
        prop_assert_eq!(record[0], FORMAT_V2);
        prop_assert_eq!(&record[record.len() - MAC_LEN..], &env.mac[..]);
        let body = codec::mac_body(&record).expect("has a body");
        prop_assert_eq!(body, &record[1..record.len() - MAC_LEN]);
        let borrowed = codec::decode_ref(env.position, &record).expect("decodes in place");
        prop_assert_eq!(borrowed.to_owned(), env.clone());
        prop_assert_eq!(codec::decode_record(env.position, &record).expect("decodes"), env);
    }

    /// The writer assembles records from the caller's pre-encoded tail; the result must be
    /// the very bytes of encoding the whole envelope, or the chain and every reader break.
    #[test]
    fn a_record_assembled_from_a_tail_is_the_encoded_envelope(env in envelope()) {
        let tail = codec::encode_tail(
            &env.stream,
            &env.event_type,
            env.schema_version,
            &env.org_id,
            &env.actor,
            &env.request_id,
            &env.payload,
        );
        let mut assembled = codec::assemble_record(
            env.position, env.org_seq, env.revision, env.event_id, env.recorded_at, &tail,
        );
        let n = assembled.len();
        assembled[n - MAC_LEN..].copy_from_slice(&env.mac);
        prop_assert_eq!(assembled, codec::encode_record(&env));
    }

    #[test]
    fn any_event_round_trips_through_its_payload(event in event()) {
        let payload = event.encode_payload();
        let decoded = Event::decode(event.event_type(), event.schema_version(), &payload);
        prop_assert_eq!(decoded.expect("decodes"), event);
    }

    #[test]
    fn decoding_garbage_returns_without_panicking(
        mut bytes in prop::collection::vec(any::<u8>(), 0..200),
        format_v1 in any::<bool>(),
    ) {
        if format_v1 && !bytes.is_empty() {
            bytes[0] = FORMAT_V2;
        }
        let _ = codec::decode_record(1, &bytes);
        for &(event_type, version) in Event::TYPES {
            let _ = Event::decode(event_type, version, &bytes);
        }
    }
}
