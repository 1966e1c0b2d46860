//! Scenarios of API tokens.

use events::Expected;
use events::event::{TokenCreated, TokenRevoked};
use events::stream::Stream;

use super::{HOUR, NOW, given};
use crate::domain::scope::Scopes;
use crate::domain::tokens::{self, Caller, CreateToken, Issuer, TokenRejection};

/// A token of `scopes`, issued by `parent` (`None`: the console), expiring in a day.
fn issued(id: &str, scopes: &[&str], parent: Option<&str>) -> (Stream, events::Event) {
    issued_until(id, scopes, parent, NOW + 24 * HOUR)
}

fn issued_until(
    id: &str,
    scopes: &[&str],
    parent: Option<&str>,
    expires_at: i64,
) -> (Stream, events::Event) {
    (
        Stream::token(id),
        TokenCreated {
            token_id: id.into(),
            prefix: "qz_abcdef".into(),
            secret_hash: [id.len() as u8; 32],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            description: format!("token {id}"),
            expires_at,
            parent_token_id: parent.map(str::to_owned),
            user_id: None,
        }
        .into(),
    )
}

fn created(id: &str) -> (Stream, events::Event) {
    issued(id, &["write"], None)
}

fn revoked(id: &str) -> events::Event {
    TokenRevoked {
        token_id: id.into(),
    }
    .into()
}

fn revocation(id: &str) -> (Stream, events::Event) {
    (Stream::token(id), revoked(id))
}

fn create(scopes: &[&str]) -> CreateToken {
    CreateToken {
        token_id: "tok_new".into(),
        prefix: "qz_ghijkl".into(),
        secret_hash: [2; 32],
        scopes: Scopes::parse(scopes).unwrap(),
        description: "deploys".into(),
        expires_at: NOW + 24 * HOUR,
        expires_by_default: false,
    }
}

fn write() -> Scopes {
    Scopes::parse(&["write"]).unwrap()
}

fn by<'a>(token_id: &'a str, scopes: &'a Scopes) -> Caller<'a> {
    Caller { token_id, scopes }
}

#[test]
fn issuing_a_token_records_it_and_its_parent_on_a_new_stream() {
    let scopes = write();
    let decision = given([issued("tok_p", &["write"], None)])
        .when(|org| {
            tokens::create(
                org,
                Issuer::Token(by("tok_p", &scopes)),
                create(&["devices:read"]),
                NOW,
            )
        })
        .then(vec![
            TokenCreated {
                token_id: "tok_new".into(),
                prefix: "qz_ghijkl".into(),
                secret_hash: [2; 32],
                scopes: vec!["devices:read".into()],
                description: "deploys".into(),
                expires_at: NOW + 24 * HOUR,
                parent_token_id: Some("tok_p".into()),
                user_id: None,
            }
            .into(),
        ]);
    assert_eq!(
        decision.expectations,
        vec![
            (Stream::token("tok_new"), Expected::NoStream),
            // A parent revoked meanwhile moves its stream: the mint conflicts, then is refused.
            (Stream::token("tok_p"), Expected::Exact(0)),
        ]
    );
}

#[test]
fn a_token_cannot_grant_more_than_its_issuer_holds() {
    let caller = Scopes::parse(&["devices:read", "tokens:write"]).unwrap();
    given([issued("tok_p", &["devices:read", "tokens:write"], None)])
        .when(|org| {
            tokens::create(
                org,
                Issuer::Token(by("tok_p", &caller)),
                create(&["write"]),
                NOW,
            )
        })
        .then_rejected(TokenRejection::ScopesNotHeld {
            requested: "write".into(),
            held: "devices:read tokens:write".into(),
        });
}

#[test]
fn a_token_expiring_within_the_hour_is_invalid() {
    let mut cmd = create(&["read"]);
    cmd.expires_at = NOW + HOUR / 2;
    given([])
        .when(|org| tokens::create(org, Issuer::Console, cmd, NOW))
        .then_rejected(TokenRejection::Invalid(
            "token expiry must be from 1 hour to 12 months from now".into(),
        ));
}

#[test]
fn a_child_cannot_outlive_its_parent() {
    let scopes = write();
    let parent_expiry = NOW + 2 * HOUR;
    let mut cmd = create(&["read"]);
    cmd.expires_at = parent_expiry + 1;
    given([issued_until("tok_p", &["write"], None, parent_expiry)])
        .when(|org| tokens::create(org, Issuer::Token(by("tok_p", &scopes)), cmd, NOW))
        .then_rejected(TokenRejection::OutlivesIssuer {
            latest: parent_expiry,
        });
}

#[test]
fn a_default_lifetime_ends_with_the_parent_instead() {
    let scopes = write();
    let parent_expiry = NOW + 2 * HOUR;
    let mut cmd = create(&["read"]);
    cmd.expires_at = NOW + 90 * 24 * HOUR;
    cmd.expires_by_default = true;
    let decision = given([issued_until("tok_p", &["write"], None, parent_expiry)])
        .when(|org| tokens::create(org, Issuer::Token(by("tok_p", &scopes)), cmd, NOW))
        .then_ok();
    match &decision.events[0].1 {
        events::Event::TokenCreated(e) => assert_eq!(e.expires_at, parent_expiry),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_parent_expiring_within_the_hour_cannot_issue_even_by_default() {
    let scopes = write();
    let parent_expiry = NOW + HOUR / 2;
    let mut cmd = create(&["read"]);
    cmd.expires_by_default = true;
    given([issued_until("tok_p", &["write"], None, parent_expiry)])
        .when(|org| tokens::create(org, Issuer::Token(by("tok_p", &scopes)), cmd, NOW))
        .then_rejected(TokenRejection::OutlivesIssuer {
            latest: parent_expiry,
        });
}

#[test]
fn a_revoked_parent_cannot_issue() {
    let scopes = write();
    given([created("tok_p"), revocation("tok_p")])
        .when(|org| {
            tokens::create(
                org,
                Issuer::Token(by("tok_p", &scopes)),
                create(&["read"]),
                NOW,
            )
        })
        .then_rejected(TokenRejection::IssuerInactive);
}

#[test]
fn revoking_a_token_records_the_revocation() {
    let scopes = write();
    given([created("tok_owner"), created("tok_1")])
        .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_1", NOW))
        .then(vec![revoked("tok_1")]);
}

#[test]
fn revoking_a_token_revokes_what_it_issued_and_theirs_in_one_decision() {
    let scopes = write();
    let decision = given([
        created("tok_owner"),
        issued("tok_a", &["write"], Some("tok_owner")),
        issued("tok_b", &["read"], Some("tok_a")),
        issued("tok_c", &["devices:read"], Some("tok_b")),
        issued("tok_d", &["read"], Some("tok_owner")),
        issued_until("tok_old", &["read"], Some("tok_a"), NOW - 1),
    ])
    .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_a", NOW))
    .then(vec![revoked("tok_a"), revoked("tok_b"), revoked("tok_c")]);
    assert_eq!(
        decision.expectations,
        vec![
            // tok_a has scope write: the owner token that remains must stay as seen.
            (Stream::token("tok_owner"), Expected::Exact(0)),
            (Stream::token("tok_a"), Expected::Exact(0)),
            (Stream::token("tok_b"), Expected::Exact(0)),
            (Stream::token("tok_c"), Expected::Exact(0)),
        ]
    );
}

#[test]
fn revoking_a_token_revokes_a_whole_wide_tree() {
    let scopes = write();
    let mut history = vec![created("tok_owner"), created("tok_a")];
    for i in 0..5 {
        history.push(issued(&format!("tok_c{i}"), &["read"], Some("tok_a")));
        history.push(issued(
            &format!("tok_g{i}"),
            &["read"],
            Some(&format!("tok_c{i}")),
        ));
    }
    let decision = given(history)
        .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_a", NOW))
        .then_ok();
    let mut revoked: Vec<String> = decision
        .into_events()
        .into_iter()
        .map(|e| match e {
            events::Event::TokenRevoked(r) => r.token_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(revoked[0], "tok_a", "the token itself first");
    revoked.sort();
    let mut expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("tok_c{i}"), format!("tok_g{i}")])
        .chain(["tok_a".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(revoked, expected);
}

#[test]
fn revoking_a_revoked_token_again_revokes_what_escaped_it() {
    let scopes = write();
    given([
        created("tok_owner"),
        created("tok_a"),
        revocation("tok_a"),
        // Issued while tok_a was being revoked, or before parents were recorded.
        issued("tok_b", &["read"], Some("tok_a")),
    ])
    .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_a", NOW))
    .then(vec![revoked("tok_b")]);
}

#[test]
fn revoking_a_revoked_token_again_records_nothing() {
    let scopes = write();
    given([created("tok_owner"), created("tok_1"), revocation("tok_1")])
        .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_1", NOW))
        .then_nothing();
}

#[test]
fn another_organizations_token_cannot_be_revoked_and_looks_missing() {
    let scopes = write();
    given([created("tok_owner")])
        .and_in("org_2", [created("tok_2")])
        .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_2", NOW))
        .then_rejected(TokenRejection::NotFound("tok_2".into()));
}

#[test]
fn a_token_cannot_revoke_a_token_holding_scopes_it_lacks() {
    let manager = Scopes::parse(&["read", "tokens:write"]).unwrap();
    given([
        created("tok_owner"),
        issued("tok_m", &["read", "tokens:write"], Some("tok_owner")),
    ])
    .when(|org| tokens::revoke(org, by("tok_m", &manager), "tok_owner", NOW))
    .then_rejected(TokenRejection::NotCovered {
        token_id: "tok_owner".into(),
        missing: vec!["write".into()],
    });
}

#[test]
fn a_token_may_revoke_what_it_covers_what_it_issued_and_itself() {
    let manager = Scopes::parse(&["devices:read", "tokens:write"]).unwrap();
    let history = || {
        given([
            created("tok_owner"),
            issued(
                "tok_m",
                &["devices:read", "tokens:write"],
                Some("tok_owner"),
            ),
            issued("tok_peer", &["devices:read"], Some("tok_owner")),
            issued("tok_child", &["devices:read"], Some("tok_m")),
        ])
    };
    history()
        .when(|org| tokens::revoke(org, by("tok_m", &manager), "tok_peer", NOW))
        .then(vec![revoked("tok_peer")]);
    history()
        .when(|org| tokens::revoke(org, by("tok_m", &manager), "tok_child", NOW))
        .then(vec![revoked("tok_child")]);
    history()
        .when(|org| tokens::revoke(org, by("tok_m", &manager), "tok_m", NOW))
        .then(vec![revoked("tok_m"), revoked("tok_child")]);
}

#[test]
fn the_last_owner_token_cannot_be_revoked() {
    let scopes = write();
    given([
        created("tok_owner"),
        issued("tok_r", &["read"], Some("tok_owner")),
    ])
    .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_owner", NOW))
    .then_rejected(TokenRejection::LastOwnerToken {
        token_id: "tok_owner".into(),
    });
}

#[test]
fn nor_the_owner_token_that_issued_every_other_owner_token() {
    let scopes = write();
    given([
        created("tok_owner"),
        issued("tok_w", &["write"], Some("tok_owner")),
    ])
    .when(|org| tokens::revoke(org, by("tok_w", &scopes), "tok_owner", NOW))
    .then_rejected(TokenRejection::LastOwnerToken {
        token_id: "tok_owner".into(),
    });
}

#[test]
fn an_owner_token_may_go_while_another_remains_which_must_stay_as_seen() {
    let scopes = write();
    let decision = given([created("tok_owner"), created("tok_console")])
        .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_owner", NOW))
        .then(vec![revoked("tok_owner")]);
    assert_eq!(
        decision.expectations,
        vec![
            (Stream::token("tok_console"), Expected::Exact(0)),
            (Stream::token("tok_owner"), Expected::Exact(0)),
        ]
    );
}

#[test]
fn an_expired_owner_token_neither_counts_nor_blocks() {
    let scopes = write();
    given([
        created("tok_owner"),
        issued_until("tok_old", &["write"], None, NOW - 1),
    ])
    .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_owner", NOW))
    .then_rejected(TokenRejection::LastOwnerToken {
        token_id: "tok_owner".into(),
    });
    given([
        created("tok_owner"),
        issued_until("tok_old", &["write"], None, NOW - 1),
    ])
    .when(|org| tokens::revoke(org, by("tok_owner", &scopes), "tok_old", NOW))
    .then(vec![revoked("tok_old")]);
}
