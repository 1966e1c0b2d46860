//! Scenarios of API tokens.

use events::event::{TokenCreated, TokenRevoked};
use events::stream::Stream;

use super::{HOUR, NOW, given};
use crate::domain::Rejection;
use crate::domain::scope::Scopes;
use crate::domain::tokens::{self, CreateToken};

fn created(id: &str) -> (Stream, events::Event) {
    (
        Stream::token(id),
        TokenCreated {
            token_id: id.into(),
            prefix: "qz_abcdef".into(),
            secret_hash: [1; 32],
            scopes: vec!["write".into()],
            description: "ci".into(),
            expires_at: NOW + 24 * HOUR,
        }
        .into(),
    )
}

fn create(scopes: &[&str]) -> CreateToken {
    CreateToken {
        token_id: "tok_new".into(),
        prefix: "qz_ghijkl".into(),
        secret_hash: [2; 32],
        scopes: Scopes::parse(scopes).unwrap(),
        description: "deploys".into(),
        expires_at: NOW + 24 * HOUR,
    }
}

#[test]
fn issuing_a_token_records_it_on_a_new_stream() {
    let caller = Scopes::parse(&["write"]).unwrap();
    let decision = given([])
        .when(|_| tokens::create(&caller, create(&["devices:read"]), NOW))
        .then(vec![
            TokenCreated {
                token_id: "tok_new".into(),
                prefix: "qz_ghijkl".into(),
                secret_hash: [2; 32],
                scopes: vec!["devices:read".into()],
                description: "deploys".into(),
                expires_at: NOW + 24 * HOUR,
            }
            .into(),
        ]);
    assert_eq!(
        decision.expectations,
        vec![(Stream::token("tok_new"), events::Expected::NoStream)]
    );
}

#[test]
fn a_token_cannot_grant_more_than_its_issuer_holds() {
    let caller = Scopes::parse(&["devices:read"]).unwrap();
    given([])
        .when(|_| tokens::create(&caller, create(&["write"]), NOW))
        .then_refused(Rejection::Forbidden);
}

#[test]
fn a_token_expiring_within_the_hour_is_invalid() {
    let caller = Scopes::parse(&["write"]).unwrap();
    let mut cmd = create(&["read"]);
    cmd.expires_at = NOW + HOUR / 2;
    given([])
        .when(|_| tokens::create(&caller, cmd, NOW))
        .then_refused(Rejection::Invalid);
}

#[test]
fn revoking_a_token_records_the_revocation() {
    given([created("tok_1")])
        .when(|org| tokens::revoke(org, "tok_1"))
        .then(vec![
            TokenRevoked {
                token_id: "tok_1".into(),
            }
            .into(),
        ]);
}

#[test]
fn revoking_a_revoked_token_again_records_nothing() {
    given([
        created("tok_1"),
        (
            Stream::token("tok_1"),
            TokenRevoked {
                token_id: "tok_1".into(),
            }
            .into(),
        ),
    ])
    .when(|org| tokens::revoke(org, "tok_1"))
    .then_nothing();
}

#[test]
fn another_organizations_token_cannot_be_revoked_and_looks_missing() {
    given([])
        .and_in("org_2", [created("tok_2")])
        .when(|org| tokens::revoke(org, "tok_2"))
        .then_refused(Rejection::NotFound);
}
