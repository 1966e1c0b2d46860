//! Scenarios of pre-auth keys.

use events::event::{KeyCreated, KeyRevoked};
use events::stream::Stream;

use super::{HOUR, NOW, given};
use crate::domain::Rejection;
use crate::domain::keys::{self, CreateKey};
use crate::domain::scope::Scopes;

pub fn created(id: &str, reusable: bool) -> (Stream, events::Event) {
    (
        Stream::key(id),
        KeyCreated {
            key_id: id.into(),
            prefix: "qzk_abcdef".into(),
            secret_hash: [3; 32],
            reusable,
            ephemeral: false,
            tags: vec![],
            owner: None,
            expires_at: NOW + 24 * HOUR,
            description: String::new(),
            max_uses: None,
        }
        .into(),
    )
}

fn write() -> Scopes {
    Scopes::parse(&["write"]).unwrap()
}

fn create(expires_at: i64) -> CreateKey {
    CreateKey {
        key_id: "key_new".into(),
        prefix: "qzk_ghijkl".into(),
        secret_hash: [4; 32],
        reusable: false,
        ephemeral: true,
        tags: vec![],
        owner: None,
        expires_at,
        description: "ci runners".into(),
        max_uses: None,
    }
}

#[test]
fn issuing_a_key_records_it_on_a_new_stream() {
    let decision = given([])
        .when(|_| keys::create(&write(), create(NOW + HOUR), NOW))
        .then(vec![
            KeyCreated {
                key_id: "key_new".into(),
                prefix: "qzk_ghijkl".into(),
                secret_hash: [4; 32],
                reusable: false,
                ephemeral: true,
                tags: vec![],
                owner: None,
                expires_at: NOW + HOUR,
                description: "ci runners".into(),
                max_uses: None,
            }
            .into(),
        ]);
    assert_eq!(
        decision.expectations,
        vec![(Stream::key("key_new"), events::Expected::NoStream)]
    );
}

#[test]
fn a_key_living_longer_than_90_days_is_invalid() {
    given([])
        .when(|_| keys::create(&write(), create(NOW + 91 * 24 * HOUR), NOW))
        .then_refused(Rejection::Invalid);
}

#[test]
fn a_single_use_key_with_several_uses_is_invalid() {
    let mut cmd = create(NOW + HOUR);
    cmd.max_uses = Some(3);
    given([])
        .when(|_| keys::create(&write(), cmd, NOW))
        .then_refused(Rejection::Invalid);
}

#[test]
fn revoking_a_key_records_the_revocation_once() {
    let revoked = KeyRevoked {
        key_id: "key_1".into(),
    };
    given([created("key_1", true)])
        .when(|org| keys::revoke(org, "key_1"))
        .then(vec![revoked.clone().into()]);
    given([
        created("key_1", true),
        (Stream::key("key_1"), revoked.into()),
    ])
    .when(|org| keys::revoke(org, "key_1"))
    .then_nothing();
}

#[test]
fn another_organizations_key_cannot_be_revoked_and_looks_missing() {
    given([])
        .and_in("org_2", [created("key_2", true)])
        .when(|org| keys::revoke(org, "key_2"))
        .then_refused(Rejection::NotFound);
}

#[test]
fn a_key_with_an_owner_needs_a_caller_that_may_write_users() {
    let mut cmd = create(NOW + HOUR);
    cmd.owner = Some("alice@example.com".into());
    let caller = Scopes::parse(&["keys:write"]).unwrap();
    given([])
        .when(|_| keys::create(&caller, cmd, NOW))
        .then_refused(Rejection::Forbidden);
}
