//! Scenarios of signing in: who the person is, and what their `groups` claim changes.

use events::event::{
    GroupCreated, GroupMemberAdded, GroupMemberRemoved, SsoDomainAdded, UserDeactivated,
    UserInvited, UserProfile, UserProvisioned, UserSignedIn,
};
use events::stream::Stream;
use events::{Event, Expected};

use super::{HOUR, NOW, ORG, given};
use crate::domain::Rejection;
use crate::domain::directory::sign_in::{SignIn, SignedIn, claimed_names, sign_in};

const ISS: &str = "https://idp.example.com";

fn person(sub: &str, email: &str, verified: bool) -> SignIn {
    SignIn {
        issuer: ISS.into(),
        subject: sub.into(),
        email: Some(email.into()),
        email_verified: verified,
        name: Some("A Person".into()),
        groups: None,
        invitation: None,
        new_user_id: "usr_new".into(),
        new_group_ids: vec!["grp_n1".into(), "grp_n2".into(), "grp_n3".into()],
        now: NOW,
    }
}

fn invited(id: &str, email: &str, code: u8, expires_at: i64) -> (Stream, Event) {
    (
        Stream::user(id),
        UserInvited {
            user_id: id.into(),
            email: email.into(),
            role: "member".into(),
            invitation_hash: [code; 32],
            expires_at,
        }
        .into(),
    )
}

fn signed_in(id: &str, sub: &str) -> (Stream, Event) {
    (
        Stream::user(id),
        UserSignedIn {
            user_id: id.into(),
            issuer: ISS.into(),
            subject: sub.into(),
            email: String::new(),
        }
        .into(),
    )
}

fn domain(d: &str, role: &str) -> (Stream, Event) {
    (
        Stream::org(ORG),
        SsoDomainAdded {
            org_id: ORG.into(),
            domain: d.into(),
            role: role.into(),
        }
        .into(),
    )
}

fn group(id: &str, name: &str, source: &str) -> (Stream, Event) {
    (
        Stream::group(id),
        GroupCreated {
            group_id: id.into(),
            display_name: name.into(),
            external_id: None,
            source: source.into(),
        }
        .into(),
    )
}

fn member(group: &str, user: &str) -> (Stream, Event) {
    (
        Stream::group(group),
        GroupMemberAdded {
            group_id: group.into(),
            user_id: user.into(),
        }
        .into(),
    )
}

/// Runs the sign-in on `events`; the user it resolved to, or the rejection.
fn resolve(events: Vec<(Stream, Event)>, s: &SignIn) -> Result<SignedIn, Rejection> {
    let mut out = None;
    let then = given(events).when(|org| {
        let r = sign_in(org, s);
        out = Some(r.clone());
        r.map(|r| r.decision)
    });
    drop(then);
    out.expect("decided")
}

#[test]
fn an_invitation_code_links_the_pending_user_whatever_the_email() {
    let mut s = person("sub-1", "other@elsewhere.test", false);
    s.invitation = Some([7; 32]);
    let r = resolve(vec![invited("usr_a", "alice@acme.test", 7, NOW + HOUR)], &s).unwrap();
    assert_eq!(r.user_id, "usr_a");
    assert!(!r.provisioned);
    // An expired invitation links nobody.
    let r = resolve(vec![invited("usr_a", "alice@acme.test", 7, NOW - 1)], &s);
    assert!(matches!(r, Err(Rejection::Forbidden(_))));
}

#[test]
fn a_linked_identity_wins_and_a_deactivated_user_is_refused() {
    let events = vec![
        invited("usr_a", "alice@acme.test", 7, NOW + HOUR),
        signed_in("usr_a", "sub-1"),
    ];
    let s = person("sub-1", "changed@acme.test", false);
    assert_eq!(resolve(events.clone(), &s).unwrap().user_id, "usr_a");
    let mut events = events;
    events.push((
        Stream::user("usr_a"),
        UserDeactivated {
            user_id: "usr_a".into(),
        }
        .into(),
    ));
    assert!(matches!(resolve(events, &s), Err(Rejection::Forbidden(_))));
}

#[test]
fn email_matches_only_when_verified_and_only_users_without_an_identity() {
    let events = vec![invited("usr_a", "alice@acme.test", 7, NOW + HOUR)];
    let r = resolve(events.clone(), &person("sub-1", "ALICE@acme.test", true)).unwrap();
    assert_eq!(r.user_id, "usr_a");
    assert!(resolve(events, &person("sub-1", "alice@acme.test", false)).is_err());
    // Alice already signed in with another identity: a second identity claiming her verified
    // address is not her.
    let linked = vec![
        invited("usr_a", "alice@acme.test", 7, NOW + HOUR),
        signed_in("usr_a", "sub-1"),
    ];
    assert!(resolve(linked, &person("sub-2", "alice@acme.test", true)).is_err());
}

#[test]
fn a_domain_rule_provisions_verified_people_with_its_role() {
    let events = vec![domain("acme.test", "auditor")];
    let d = given(events.clone())
        .when(|org| sign_in(org, &person("sub-9", "bob@acme.test", true)).map(|r| r.decision))
        .then_ok();
    let events_out = d.into_events();
    match &events_out[0] {
        Event::UserProvisioned(UserProvisioned {
            user_id,
            role,
            source,
            profile: UserProfile { email, .. },
            ..
        }) => {
            assert_eq!(
                (
                    user_id.as_str(),
                    role.as_str(),
                    source.as_str(),
                    email.as_str()
                ),
                ("usr_new", "auditor", "sso", "bob@acme.test")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(events_out[1], Event::UserSignedIn(_)));
    for s in [
        person("sub-9", "bob@acme.test", false),
        person("sub-9", "bob@other.test", true),
    ] {
        assert!(matches!(
            resolve(events.clone(), &s),
            Err(Rejection::Forbidden(_))
        ));
    }
}

#[test]
fn the_groups_claim_syncs_oidc_groups_only() {
    let events = vec![
        invited("usr_a", "alice@acme.test", 7, NOW + HOUR),
        signed_in("usr_a", "sub-1"),
        group("grp_old", "old", "oidc"),
        member("grp_old", "usr_a"),
        group("grp_ops", "ops", "oidc"),
        group("grp_sec", "sec", "scim"),
    ];
    let mut s = person("sub-1", "alice@acme.test", true);
    s.groups = Some(vec!["OPS".into(), "sec".into(), "eng".into()]);
    let d = given(events.clone())
        .when(|org| sign_in(org, &s).map(|r| r.decision))
        .then_ok();
    assert!(
        d.expectations
            .contains(&(Stream::group("grp_n1"), Expected::NoStream))
    );
    let out = d.into_events();
    assert!(
        out.contains(
            &GroupMemberAdded {
                group_id: "grp_ops".into(),
                user_id: "usr_a".into()
            }
            .into()
        )
    );
    assert!(
        out.contains(
            &GroupCreated {
                group_id: "grp_n1".into(),
                display_name: "eng".into(),
                external_id: None,
                source: "oidc".into()
            }
            .into()
        )
    );
    assert!(
        out.contains(
            &GroupMemberRemoved {
                group_id: "grp_old".into(),
                user_id: "usr_a".into()
            }
            .into()
        )
    );
    assert!(
        !out.iter()
            .any(|e| matches!(e, Event::GroupMemberAdded(m) if m.group_id == "grp_sec")),
        "a SCIM group is the provider's SCIM feed's: {out:?}"
    );
    // Without the claim nothing about groups changes.
    s.groups = None;
    let out = given(events)
        .when(|org| sign_in(org, &s).map(|r| r.decision))
        .then_ok()
        .into_events();
    assert_eq!(out.len(), 1, "{out:?}");
}

#[test]
fn claimed_names_are_trimmed_deduplicated_and_bounded() {
    let claimed: Vec<String> = ["a", " a ", "A", "", "b\u{7}", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(claimed_names(&claimed), vec!["a", "c"]);
    let many: Vec<String> = (0..500).map(|i| format!("g{i}")).collect();
    assert_eq!(claimed_names(&many).len(), 200);
}

fn laptop() -> crate::domain::registration::Register {
    crate::domain::registration::Register {
        device_id: "dev_l".into(),
        hostname: crate::domain::hostname::Hostname::normalize("laptop").unwrap(),
        os: "linux".into(),
        os_version: "6.1".into(),
        public_key: crate::domain::public_key::PublicKey::from_bytes(&[3; 32]),
        credential_hash: [4; 32],
    }
}

#[test]
fn a_device_joins_only_for_an_active_owner_and_expects_them_unchanged() {
    use crate::domain::owned_registration::{OwnerRefusal, register_for_owner};
    let events = vec![
        invited("usr_a", "alice@acme.test", 7, NOW + HOUR),
        signed_in("usr_a", "sub-1"),
    ];
    let d = given(events.clone())
        .when(|org| register_for_owner(org, "usr_a", laptop(), NOW))
        .then_ok();
    assert!(
        d.expectations
            .contains(&(Stream::user("usr_a"), Expected::Exact(1)))
    );
    match &d.events[0].1 {
        Event::DeviceRegistered(r) => {
            assert_eq!(r.owner.as_deref(), Some("usr_a"));
            assert!(r.key_id.is_empty() && r.tags.is_empty());
            assert!(
                r.key_expires_at.is_some(),
                "it expires like any untagged device"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut gone = events;
    gone.push((
        Stream::user("usr_a"),
        UserDeactivated {
            user_id: "usr_a".into(),
        }
        .into(),
    ));
    given(gone)
        .when(|org| register_for_owner(org, "usr_a", laptop(), NOW))
        .then_rejected(OwnerRefusal::OwnerInactive);
    given([])
        .when(|org| register_for_owner(org, "usr_nobody", laptop(), NOW))
        .then_rejected(OwnerRefusal::OwnerInactive);
}
