//! PATCH bodies as Microsoft Entra (default job and `?aadOptscim062020`) and Okta send them
//! (shapes from the vendors' SCIM documentation), applied to our users and groups.

use super::*;
use serde_json::json;

fn body(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn alice() -> ScimUser {
    ScimUser {
        user_name: "alice@example.com".into(),
        display_name: Some("Alice".into()),
        given_name: Some("Alice".into()),
        family_name: Some("Liddell".into()),
        email: Some("alice@example.com".into()),
        external_id: Some("alice".into()),
        active: true,
    }
}

fn group(members: &[&str]) -> ScimGroup {
    ScimGroup {
        display_name: "Engineering".into(),
        external_id: None,
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

#[test]
fn entra_default_job_disables_with_a_string_and_replaces_one_path_at_a_time() {
    let off = patch_user(
        &alice(),
        &body(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    )
    .unwrap();
    assert!(!off.active);
    let on = patch_user(
        &off,
        &body(json!([{"op": "Replace", "path": "active", "value": "True"}])),
    )
    .unwrap();
    assert!(on.active);
    let updated = patch_user(
        &alice(),
        &body(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Add", "path": "externalId", "value": "mailNickname"},
            {"op": "Add", "path": "roles", "value": []},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "7"}
        ])),
    )
    .unwrap();
    assert_eq!(updated.email.as_deref(), Some("updatedEmail@microsoft.com"));
    assert_eq!(updated.family_name.as_deref(), Some("updatedFamilyName"));
    assert_eq!(updated.external_id.as_deref(), Some("mailNickname"));
    assert_eq!(updated.given_name.as_deref(), Some("Alice"));
}

#[test]
fn entra_adds_a_work_email_to_a_user_without_one() {
    let mut bare = alice();
    bare.email = None;
    let updated = patch_user(
        &bare,
        &body(json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "w@example.com"}])),
    )
    .unwrap();
    assert_eq!(updated.email.as_deref(), Some("w@example.com"));
}

#[test]
fn entra_flagged_job_sends_booleans_and_value_maps() {
    let off = patch_user(
        &alice(),
        &body(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .unwrap();
    assert!(!off.active);
    let updated = patch_user(
        &alice(),
        &body(json!([{"op": "replace", "value": {
            "name.givenName": "Alicia",
            "displayName": "Alicia L",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
            "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName": "Pleasance"
        }}])),
    )
    .unwrap();
    assert_eq!(updated.given_name.as_deref(), Some("Alicia"));
    assert_eq!(updated.family_name.as_deref(), Some("Pleasance"));
    assert_eq!(updated.display_name.as_deref(), Some("Alicia L"));
}

#[test]
fn entra_membership_changes_with_and_without_the_flag() {
    let g = group(&["u1", "u2", "u3"]);
    let added = patch_group(
        &g,
        &body(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u4"}, {"$ref": null, "value": "u1"}]}])),
    )
    .unwrap();
    assert_eq!(added.members, ["u1", "u2", "u3", "u4"]);
    // The default job names the members to remove in `value`: only those go.
    let removed = patch_group(
        &added,
        &body(
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u2"}]}]),
        ),
    )
    .unwrap();
    assert_eq!(removed.members, ["u1", "u3", "u4"]);
    let flagged = patch_group(
        &removed,
        &body(json!([{"op": "remove", "path": "members[value eq \"u3\"]"}])),
    )
    .unwrap();
    assert_eq!(flagged.members, ["u1", "u4"]);
    let renamed = patch_group(
        &flagged,
        &body(json!([
            {"op": "Replace", "path": "displayName", "value": "Eng"},
            {"op": "Replace", "path": "externalId", "value": "0f3b"}
        ])),
    )
    .unwrap();
    assert_eq!(renamed.display_name, "Eng");
    assert_eq!(renamed.external_id.as_deref(), Some("0f3b"));
    assert_eq!(renamed.members, ["u1", "u4"]);
}

#[test]
fn okta_deactivates_without_a_path_and_pushes_groups() {
    let off = patch_user(
        &alice(),
        &body(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .unwrap();
    assert!(!off.active);
    let g = group(&["u1", "u2"]);
    let renamed = patch_group(
        &g,
        &body(json!([{"op": "replace", "value": {"id": "grp_1", "displayName": "Test SCIMv2"}}])),
    )
    .unwrap();
    assert_eq!(renamed.display_name, "Test SCIMv2");
    assert_eq!(renamed.members, ["u1", "u2"]);
    let changed = patch_group(
        &renamed,
        &body(json!([
            {"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u9", "display": "test.user@okta.local"}]}
        ])),
    )
    .unwrap();
    assert_eq!(changed.members, ["u2", "u9"]);
    let replaced = patch_group(
        &changed,
        &body(json!([{"op": "replace", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}])),
    )
    .unwrap();
    assert_eq!(replaced.members, ["a", "b"]);
    let emptied = patch_group(
        &replaced,
        &body(json!([{"op": "remove", "path": "members"}])),
    )
    .unwrap();
    assert!(emptied.members.is_empty());
}

#[test]
fn scim2_tester_shapes_add_replace_and_remove_whole_attributes() {
    let mut bare = alice();
    bare.email = None;
    bare.given_name = None;
    bare.family_name = None;
    let added = patch_user(
        &bare,
        &body(json!([
            {"op": "add", "path": "emails", "value": [{"value": "n@x.com", "type": "work"}]},
            {"op": "add", "path": "name", "value": {"givenName": "G", "familyName": "F"}}
        ])),
    )
    .unwrap();
    assert_eq!(added.email.as_deref(), Some("n@x.com"));
    assert_eq!(added.given_name.as_deref(), Some("G"));
    let removed = patch_user(
        &added,
        &body(json!([
            {"op": "remove", "path": "emails"},
            {"op": "remove", "path": "name"},
            {"op": "remove", "path": "displayName"},
            {"op": "remove", "path": "externalId"}
        ])),
    )
    .unwrap();
    assert_eq!(removed.email, None);
    assert_eq!(removed.given_name, None);
    assert_eq!(removed.display_name, None);
    assert_eq!(removed.external_id, None);
    let replaced = patch_user(
        &added,
        &body(json!([{"op": "replace", "path": "emails", "value": [{"value": "r@x.com", "type": "work"}]}])),
    )
    .unwrap();
    assert_eq!(replaced.email.as_deref(), Some("r@x.com"));
}

#[test]
fn bad_bodies_are_refused_with_the_right_scim_type() {
    let cases = [
        (json!({"Operations": []}), "invalidSyntax"),
        (body(json!([])), "invalidSyntax"),
        (
            body(json!([{"op": "move", "path": "active"}])),
            "invalidSyntax",
        ),
        (body(json!([{"op": "remove"}])), "noTarget"),
        (
            body(json!([{"op": "add", "path": "active"}])),
            "invalidValue",
        ),
        (body(json!([{"op": "add", "value": "x"}])), "invalidValue"),
        (
            body(json!([{"op": "replace", "path": "emails[type eq]", "value": "x"}])),
            "invalidPath",
        ),
        (
            body(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
            "invalidValue",
        ),
        (
            body(json!([{"op": "replace", "path": "userName", "value": 7}])),
            "invalidValue",
        ),
        (
            body(json!([{"op": "remove", "path": "userName"}])),
            "invalidValue",
        ),
        (
            body(json!([{"op": "replace", "path": "emails[type co \"w\"].value", "value": "x"}])),
            "noTarget",
        ),
    ];
    for (b, scim_type) in cases {
        let mut user = alice();
        user.email = None;
        let err = patch_user(&user, &b).unwrap_err();
        assert_eq!(
            err.scim_type.map(|t| t.as_str()),
            Some(scim_type),
            "{b}: {}",
            err.detail
        );
    }
}

#[test]
fn op_names_are_case_insensitive() {
    let ops = parse(&body(json!([
        {"op": "ADD", "path": "displayName", "value": "x"},
        {"op": "rEpLaCe", "path": "displayName", "value": "y"},
        {"op": "Remove", "path": "displayName"}
    ])))
    .unwrap();
    assert_eq!(
        ops.iter().map(|o| o.op).collect::<Vec<_>>(),
        [Op::Add, Op::Replace, Op::Remove]
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            "[a-zA-Z@. ]{0,12}".prop_map(Value::String),
            any::<i32>().prop_map(|n| json!(n)),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "value",
                        "type",
                        "givenName",
                        "active",
                        "display"
                    ]),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn operation() -> impl Strategy<Value = Value> {
        let paths = vec![
            "",
            "active",
            "displayName",
            "name",
            "name.givenName",
            "emails",
            "EMAILS.value",
            "emails[type eq \"work\"].value",
            "emails[type eq \"work\"]",
            "members",
            "members[value eq \"u1\"]",
            "members[value eq \"u1\"].display",
            "externalId",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "roles",
            "userName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "displayName[value pr]",
            "emails[not (type eq \"x\")].primary",
        ];
        (
            proptest::sample::select(vec!["add", "Replace", "remove", "REMOVE"]),
            proptest::sample::select(paths),
            proptest::option::of(value()),
        )
            .prop_map(|(op, path, value)| {
                let mut o = json!({"op": op});
                if !path.is_empty() {
                    o["path"] = path.into();
                }
                if let Some(v) = value {
                    o["value"] = v;
                }
                o
            })
    }

    proptest! {
        #[test]
        fn any_operations_leave_a_valid_resource_or_a_scim_error(
            ops in proptest::collection::vec(operation(), 1..5)
        ) {
            let b = body(Value::Array(ops));
            if let Ok(user) = patch_user(&alice(), &b) {
                prop_assert!(!user.user_name.is_empty());
            }
            if let Ok(g) = patch_group(&group(&["u1", "u2"]), &b) {
                let mut unique = g.members.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), g.members.len());
            }
        }
    }
}
