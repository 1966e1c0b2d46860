//! Scenarios of devices: joining, changing and removing them.

use events::event::{
    DeviceCredentialRotated, DeviceKeyExpired, DeviceRegistered, DeviceRemoved, DeviceTagged,
    DeviceUntagged, KeyUsed,
};
use events::stream::Stream;
use events::{Event, Expected};

use super::keys::created as key_created;
use super::{NOW, ORG, given};
use crate::domain::Rejection;
use crate::domain::devices::{
    self, Hostname, KeyRefusal, Register, RegisterRefusal, Tag, decide_expire_key, decide_tag,
    decide_untag, ipv4_for, ipv6_for,
};
use crate::domain::public_key::PublicKey;

/// Each test device's own public key.
fn key_of(device_id: &str) -> PublicKey {
    PublicKey::from_bytes(&crate::domain::secret::hash(device_id))
}

fn join(device_id: &str) -> Register {
    Register {
        device_id: device_id.into(),
        hostname: Hostname::parse(device_id).unwrap(),
        os: "linux".into(),
        os_version: "6.1".into(),
        public_key: key_of(device_id),
        credential_hash: [9; 32],
    }
}

/// The events of `device_id` joining with `key_id` as the organization's `index`-th device.
fn joined(key_id: &str, device_id: &str, index: u64, uses: u32) -> Vec<(Stream, Event)> {
    vec![
        (
            Stream::ipam(ORG),
            KeyUsed {
                key_id: key_id.into(),
                device_id: device_id.into(),
                uses,
            }
            .into(),
        ),
        (
            Stream::device(device_id),
            DeviceRegistered {
                device_id: device_id.into(),
                key_id: key_id.into(),
                hostname: device_id.into(),
                os: "linux".into(),
                os_version: "6.1".into(),
                public_key: key_of(device_id).into_string(),
                ipv4: ipv4_for(index).unwrap().to_string(),
                ipv6: ipv6_for(ORG, index).to_string(),
                tags: vec!["tag:ci".into()],
                owner: None,
                ephemeral: false,
                credential_hash: [9; 32],
                key_expires_at: None,
            }
            .into(),
        ),
    ]
}

fn tagged_key(id: &str, reusable: bool) -> (Stream, Event) {
    let (stream, mut event) = key_created(id, reusable);
    if let Event::KeyCreated(k) = &mut event {
        k.tags = vec!["tag:ci".into()];
    }
    (stream, event)
}

#[test]
fn the_second_device_takes_the_next_address_and_expects_the_allocator_where_it_was() {
    let history = std::iter::once(tagged_key("key_1", true)).chain(joined("key_1", "web-1", 0, 1));
    let decision = given(history)
        .when(|org| devices::register(org, "key_1", join("web-2"), NOW))
        .then(events(joined("key_1", "web-2", 1, 2)));
    assert_eq!(
        decision.expectations,
        vec![
            (Stream::ipam(ORG), Expected::Exact(0)),
            // A use is recorded on the allocator, not on the key: the key is as issued.
            (Stream::key("key_1"), Expected::Exact(0)),
        ]
    );
}

#[test]
fn a_single_use_key_admits_one_device_only() {
    let history = std::iter::once(tagged_key("key_1", false)).chain(joined("key_1", "web-1", 0, 1));
    given(history)
        .when(|org| devices::register(org, "key_1", join("web-2"), NOW))
        .then_rejected(RegisterRefusal::Key(KeyRefusal::Used));
}

fn web_1() -> Vec<(Stream, Event)> {
    std::iter::once(tagged_key("key_1", true))
        .chain(joined("key_1", "web-1", 0, 1))
        .collect()
}

#[test]
fn tagging_a_device_records_only_the_tags_it_lacks() {
    let tags = vec!["tag:ci".to_owned(), "tag:prod".to_owned()];
    let decision = given(web_1())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_tag(d, &tags).map(Event::from).into_iter().collect()
            })
        })
        .then(vec![
            DeviceTagged {
                device_id: "web-1".into(),
                tags: vec!["tag:prod".into()],
            }
            .into(),
        ]);
    assert_eq!(
        decision.expectations,
        vec![(Stream::device("web-1"), Expected::Exact(0))]
    );
}

#[test]
fn removing_a_tag_the_device_does_not_carry_records_nothing() {
    let tag = Tag::parse("tag:prod").unwrap();
    given(web_1())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_untag(d, &tag).map(Event::from).into_iter().collect()
            })
        })
        .then_nothing();
}

#[test]
fn untagging_and_expiring_a_device_record_what_changed() {
    let tag = Tag::parse("tag:ci").unwrap();
    given(web_1())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_untag(d, &tag).map(Event::from).into_iter().collect()
            })
        })
        .then(vec![
            DeviceUntagged {
                device_id: "web-1".into(),
                tags: vec!["tag:ci".into()],
            }
            .into(),
        ]);
    given(web_1())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_expire_key(d).map(Event::from).into_iter().collect()
            })
        })
        .then(vec![
            DeviceKeyExpired {
                device_id: "web-1".into(),
            }
            .into(),
        ]);
}

#[test]
fn a_removed_device_cannot_be_changed_but_removing_it_again_records_nothing() {
    let removed = DeviceRemoved {
        device_id: "web-1".into(),
        reason: "api".into(),
    };
    given(web_1())
        .when(|org| devices::remove(org, "web-1", "api"))
        .then(vec![removed.clone().into()]);
    let history = || {
        web_1()
            .into_iter()
            .chain([(Stream::device("web-1"), Event::from(removed.clone()))])
    };
    given(history())
        .when(|org| devices::remove(org, "web-1", "api"))
        .then_nothing();
    given(history())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_expire_key(d).map(Event::from).into_iter().collect()
            })
        })
        .then_refused(Rejection::NotFound);
}

#[test]
fn another_organizations_device_looks_missing() {
    given([])
        .and_in("org_2", web_1())
        .when(|org| devices::remove(org, "web-1", "api"))
        .then_refused(Rejection::NotFound);
}

#[test]
fn another_organizations_device_cannot_be_changed() {
    given([])
        .and_in("org_2", web_1())
        .when(|org| {
            devices::change(org, "web-1", |d| {
                decide_expire_key(d).map(Event::from).into_iter().collect()
            })
        })
        .then_refused(Rejection::NotFound);
}

#[test]
fn another_organizations_key_admits_nobody() {
    given([])
        .and_in("org_2", [tagged_key("key_2", true)])
        .when(|org| devices::register(org, "key_2", join("web-1"), NOW))
        .then_rejected(RegisterRefusal::Key(KeyRefusal::Revoked));
}

/// The events of a history, without their streams.
fn events(history: Vec<(Stream, Event)>) -> Vec<Event> {
    history.into_iter().map(|(_, e)| e).collect()
}

/// What `web-2` joining as the organization's second device with `web-1`'s key records.
fn web_2_joined_with_web_1s_key() -> Vec<Event> {
    let mut joined = events(joined("key_1", "web-2", 1, 2));
    for e in &mut joined {
        if let Event::DeviceRegistered(r) = e {
            r.public_key = key_of("web-1").into_string();
        }
    }
    joined
}

/// `web-2` joining with `web-1`'s public key.
fn join_as_web_1() -> Register {
    Register {
        public_key: key_of("web-1"),
        ..join("web-2")
    }
}

#[test]
fn a_public_key_held_by_a_device_that_can_authenticate_is_refused() {
    given(web_1())
        .when(|org| devices::register(org, "key_1", join_as_web_1(), NOW))
        .then_rejected(RegisterRefusal::PublicKeyInUse {
            device_id: "web-1".into(),
        });
}

#[test]
fn a_device_whose_key_expired_is_replaced_by_its_registration_in_the_same_append() {
    let history = web_1().into_iter().chain(std::iter::once((
        Stream::device("web-1"),
        DeviceKeyExpired {
            device_id: "web-1".into(),
        }
        .into(),
    )));
    let mut expected: Vec<Event> = vec![
        DeviceRemoved {
            device_id: "web-1".into(),
            reason: "reregistered".into(),
        }
        .into(),
    ];
    expected.extend(web_2_joined_with_web_1s_key());
    let decision = given(history)
        .when(|org| devices::register(org, "key_1", join_as_web_1(), NOW))
        .then(expected);
    assert!(
        decision
            .expectations
            .contains(&(Stream::device("web-1"), Expected::Exact(1))),
        "{:?}",
        decision.expectations
    );
}

#[test]
fn a_removed_devices_public_key_is_free_again() {
    let history = web_1().into_iter().chain(std::iter::once((
        Stream::device("web-1"),
        DeviceRemoved {
            device_id: "web-1".into(),
            reason: "api".into(),
        }
        .into(),
    )));
    given(history)
        .when(|org| devices::register(org, "key_1", join_as_web_1(), NOW))
        .then(web_2_joined_with_web_1s_key());
}

#[test]
fn a_removed_devices_address_goes_to_a_new_device_only_after_its_quarantine() {
    use crate::domain::registration::ADDRESS_QUARANTINE_MICROS;
    // A key that outlives the quarantine.
    let long_key = || {
        let (stream, mut event) = tagged_key("key_1", true);
        if let Event::KeyCreated(k) = &mut event {
            k.expires_at = NOW + 2 * ADDRESS_QUARANTINE_MICROS;
        }
        (stream, event)
    };
    let removed = || {
        std::iter::once(long_key())
            .chain(joined("key_1", "web-1", 0, 1))
            .chain(std::iter::once((
                Stream::device("web-1"),
                DeviceRemoved {
                    device_id: "web-1".into(),
                    reason: "api".into(),
                }
                .into(),
            )))
    };
    // Removed an hour before NOW (the harness's clock): still resting.
    given(removed())
        .when(|org| devices::register(org, "key_1", join("web-2"), NOW))
        .then(events(joined("key_1", "web-2", 1, 2)));
    given(removed())
        .when(|org| devices::register(org, "key_1", join("web-2"), NOW + ADDRESS_QUARANTINE_MICROS))
        .then(events(joined("key_1", "web-2", 0, 2)));
    // Once taken, it is not handed out twice; the next device gets a fresh one.
    let reused = removed().chain(joined("key_1", "web-2", 0, 2));
    given(reused)
        .when(|org| devices::register(org, "key_1", join("web-3"), NOW + ADDRESS_QUARANTINE_MICROS))
        .then(events(joined("key_1", "web-3", 1, 3)));
}

#[test]
fn rotating_a_credential_records_the_new_hash_expecting_the_device_unchanged() {
    let decision = given(web_1())
        .when(|org| devices::rotate_credential(org, "web-1", [7; 32], NOW))
        .then(vec![
            DeviceCredentialRotated {
                device_id: "web-1".into(),
                credential_hash: [7; 32],
            }
            .into(),
        ]);
    assert_eq!(
        decision.expectations,
        vec![(Stream::device("web-1"), Expected::Exact(0))]
    );
}

#[test]
fn a_device_whose_key_was_expired_cannot_rotate_its_credential() {
    let expired = (
        Stream::device("web-1"),
        Event::from(DeviceKeyExpired {
            device_id: "web-1".into(),
        }),
    );
    given(web_1().into_iter().chain([expired]))
        .when(|org| devices::rotate_credential(org, "web-1", [7; 32], NOW))
        .then_refused(Rejection::Forbidden);
}
