//! Scenarios of the directory: people, their devices, groups and memberships.

use events::event::{
    DeviceRegistered, DeviceRemoved, GroupCreated, GroupMemberAdded, GroupMemberRemoved,
    UserDeactivated, UserProfile, UserProvisioned, UserReactivated, UserRemoved,
};
use events::stream::Stream;
use events::{Event, Expected};

use super::{ORG, given};
use crate::domain::Rejection;
use crate::domain::directory::{self, NewGroup, NewUser, Role};

fn profile(name: &str) -> UserProfile {
    UserProfile {
        user_name: format!("{name}@example.com"),
        email: format!("{name}@example.com"),
        display_name: name.into(),
        given_name: None,
        family_name: None,
        external_id: Some(format!("ext-{name}")),
    }
}

fn provisioned(id: &str, name: &str) -> (Stream, Event) {
    (
        Stream::user(id),
        UserProvisioned {
            user_id: id.into(),
            profile: profile(name),
            role: "member".into(),
            active: true,
            source: "scim".into(),
        }
        .into(),
    )
}

fn device_of(device_id: &str, owner: &str) -> (Stream, Event) {
    (
        Stream::device(device_id),
        DeviceRegistered {
            device_id: device_id.into(),
            key_id: "key_1".into(),
            hostname: device_id.into(),
            os: "linux".into(),
            os_version: "6.1".into(),
            public_key: device_id.into(),
            ipv4: "100.64.0.1".into(),
            ipv6: "fd7a::1".into(),
            tags: vec![],
            owner: Some(owner.into()),
            ephemeral: false,
            credential_hash: [1; 32],
            key_expires_at: None,
        }
        .into(),
    )
}

fn group(id: &str, name: &str) -> (Stream, Event) {
    (
        Stream::group(id),
        GroupCreated {
            group_id: id.into(),
            display_name: name.into(),
            external_id: None,
            source: "scim".into(),
        }
        .into(),
    )
}

#[test]
fn removing_a_user_removes_every_device_they_own_in_the_same_decision() {
    let d = given([
        provisioned("usr_a", "alice"),
        provisioned("usr_b", "bob"),
        device_of("dev_1", "usr_a"),
        device_of("dev_2", "bob@example.com"),
        device_of("dev_3", "ALICE@example.com"),
    ])
    .when(|org| directory::remove_user(org, "usr_a", "api"))
    .then(vec![
        DeviceRemoved {
            device_id: "dev_1".into(),
            reason: "user_removed".into(),
        }
        .into(),
        DeviceRemoved {
            device_id: "dev_3".into(),
            reason: "user_removed".into(),
        }
        .into(),
        UserRemoved {
            user_id: "usr_a".into(),
            reason: "api".into(),
        }
        .into(),
    ]);
    assert!(
        d.expectations
            .contains(&(Stream::device("dev_1"), Expected::Exact(0)))
    );
    assert!(
        d.expectations
            .contains(&(Stream::user("usr_a"), Expected::Exact(0)))
    );
    // A registration racing the removal moves the allocator, so the removal is decided again.
    assert!(
        d.expectations
            .contains(&(Stream::ipam(ORG), Expected::NoStream))
    );
}

#[test]
fn a_user_name_email_or_external_id_is_unique_in_the_organization() {
    let new = |p: UserProfile| NewUser {
        id: "usr_new".into(),
        profile: p,
        role: Role::Member,
        active: true,
        source: "scim",
    };
    let alice = || given([provisioned("usr_a", "alice")]);
    let mut p = profile("carol");
    p.user_name = "ALICE@example.com".into();
    alice()
        .when(|org| directory::provision_user(org, new(p.clone())))
        .then_refused(Rejection::Conflict);
    let mut p = profile("carol");
    p.external_id = Some("ext-alice".into());
    alice()
        .when(|org| directory::provision_user(org, new(p.clone())))
        .then_refused(Rejection::Conflict);
    // External ids are case-exact.
    let mut p = profile("carol");
    p.external_id = Some("EXT-ALICE".into());
    alice()
        .when(|org| directory::provision_user(org, new(p.clone())))
        .then_ok();
    // Another organization's people do not count.
    given([])
        .and_in("org_2", [provisioned("usr_a", "alice")])
        .when(|org| directory::provision_user(org, new(profile("alice"))))
        .then_ok();
}

#[test]
fn deactivating_and_reactivating_happen_once_each() {
    given([provisioned("usr_a", "alice")])
        .when(|org| directory::set_active(org, "usr_a", false))
        .then(vec![
            UserDeactivated {
                user_id: "usr_a".into(),
            }
            .into(),
        ]);
    let deactivated = (
        Stream::user("usr_a"),
        Event::from(UserDeactivated {
            user_id: "usr_a".into(),
        }),
    );
    given([provisioned("usr_a", "alice"), deactivated.clone()])
        .when(|org| directory::set_active(org, "usr_a", false))
        .then_nothing();
    given([provisioned("usr_a", "alice"), deactivated])
        .when(|org| directory::set_active(org, "usr_a", true))
        .then(vec![
            UserReactivated {
                user_id: "usr_a".into(),
            }
            .into(),
        ]);
}

#[test]
fn membership_changes_append_only_what_changes() {
    let base = || {
        given([
            provisioned("usr_a", "alice"),
            provisioned("usr_b", "bob"),
            group("grp_1", "Engineering"),
            (
                Stream::group("grp_1"),
                GroupMemberAdded {
                    group_id: "grp_1".into(),
                    user_id: "usr_a".into(),
                }
                .into(),
            ),
        ])
    };
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    base()
        .when(|org| directory::set_members(org, "grp_1", &ids(&["usr_a"]), &[]))
        .then_nothing();
    base()
        .when(|org| directory::replace_members(org, "grp_1", &ids(&["usr_b"])))
        .then(vec![
            GroupMemberRemoved {
                group_id: "grp_1".into(),
                user_id: "usr_a".into(),
            }
            .into(),
            GroupMemberAdded {
                group_id: "grp_1".into(),
                user_id: "usr_b".into(),
            }
            .into(),
        ]);
    base()
        .when(|org| directory::set_members(org, "grp_1", &ids(&["usr_zz"]), &[]))
        .then_refused(Rejection::Invalid);
    base()
        .when(|org| {
            directory::create_group(
                org,
                NewGroup {
                    id: "grp_2".into(),
                    display_name: "engineering".into(),
                    external_id: None,
                    source: "scim",
                    members: vec![],
                },
            )
        })
        .then_refused(Rejection::Conflict);
}

#[test]
fn a_removed_user_leaves_their_groups_and_the_lookups() {
    let ids = given([
        provisioned("usr_a", "alice"),
        group("grp_1", "Engineering"),
        (
            Stream::group("grp_1"),
            GroupMemberAdded {
                group_id: "grp_1".into(),
                user_id: "usr_a".into(),
            }
            .into(),
        ),
        (
            Stream::user("usr_a"),
            UserRemoved {
                user_id: "usr_a".into(),
                reason: "scim".into(),
            }
            .into(),
        ),
    ]);
    // The same userName may join again once the first person is gone.
    ids.when(|org| {
        assert!(org.user("usr_a").is_none() && org.user_by_name("alice@example.com").is_none());
        assert_eq!(org.members("grp_1").count(), 0);
        assert_eq!(org.groups_of("usr_a").count(), 0);
        directory::provision_user(
            org,
            NewUser {
                id: "usr_a2".into(),
                profile: profile("alice"),
                role: Role::Admin,
                active: true,
                source: "scim",
            },
        )
    })
    .then_ok();
}
