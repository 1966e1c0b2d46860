//! SCIM as the identity providers drive it: Microsoft Entra's provisioning job (default, and
//! with the `?aadOptscim062020` tenant-URL flag), Okta's, and the external `scim2 test` checker.
//! Bodies follow the vendors' SCIM documentation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app;
use crate::scim::{GROUP, PATCH, Scim, USER, audit, urlencode};

fn types_by_scim(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["actor"]["kind"] == "scim")
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ops(ops: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": ops})
}

/// Entra's lookup, create, attribute updates, disable/enable and group sync. `flag` is the
/// tenant URL's query (`?aadOptscim062020` switches Entra to RFC-conformant bodies).
async fn entra(flag: &str) {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let q = if flag.is_empty() {
        "?"
    } else {
        "?aadOptscim062020&"
    };
    let lookup = scim
        .expect(
            Method::GET,
            &format!(
                "/Users{q}filter={}",
                urlencode("userName eq \"Test_User_1@contoso.com\"")
            ),
            None,
            200,
        )
        .await;
    assert_eq!(lookup["totalResults"], 0);
    let created = scim
        .expect(
            Method::POST,
            &format!("/Users{flag}"),
            Some(&json!({
                "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "testuser1",
                "userName": "Test_User_1@contoso.com",
                "active": true,
                "emails": [{"primary": true, "type": "work", "value": "Test_User_1@contoso.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
                "roles": [],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })),
            201,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let user_path = format!("/Users/{id}{flag}");
    let (disable, enable, update) = if flag.is_empty() {
        (
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]),
        )
    } else {
        (
            json!([{"op": "replace", "path": "active", "value": false}]),
            json!([{"op": "replace", "path": "active", "value": true}]),
            json!([{"op": "replace", "value": {
                "emails[type eq \"work\"].value": "updated@contoso.com",
                "name.familyName": "updatedFamilyName",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7"
            }}]),
        )
    };
    let updated = scim
        .expect(Method::PATCH, &user_path, Some(&ops(update)), 200)
        .await;
    assert_eq!(
        updated["emails"],
        json!([{"value": "updated@contoso.com", "type": "work"}])
    );
    assert_eq!(updated["name"]["familyName"], "updatedFamilyName");
    assert_eq!(updated["name"]["givenName"], "givenName");
    let off = scim
        .expect(Method::PATCH, &user_path, Some(&ops(disable)), 200)
        .await;
    assert_eq!(off["active"], false);
    // A disabled user stays readable, and a filter finds them with `active` in the answer.
    let found = scim
        .expect(
            Method::GET,
            &format!(
                "/Users{q}filter={}",
                urlencode("externalId eq \"testuser1\"")
            ),
            None,
            200,
        )
        .await;
    assert_eq!(found["Resources"][0]["active"], false);
    let on = scim
        .expect(Method::PATCH, &user_path, Some(&ops(enable)), 200)
        .await;
    assert_eq!(on["active"], true);

    // Groups: matched by displayName without members, created empty, then PATCHed.
    let other = scim.create_user("other@contoso.com", "other").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let none = scim
        .expect(
            Method::GET,
            &format!(
                "/Groups{q}excludedAttributes=members&filter={}",
                urlencode("displayName eq \"Sales\"")
            ),
            None,
            200,
        )
        .await;
    assert_eq!(none["totalResults"], 0);
    let group = scim
        .expect(
            Method::POST,
            &format!("/Groups{flag}"),
            Some(&json!({"schemas": [GROUP], "externalId": "8aa1a0c0", "displayName": "Sales", "members": []})),
            201,
        )
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    let group_path = format!("/Groups/{gid}{flag}");
    // A nested group (Entra allows one level) is left out; the people are added.
    let nested = scim.create_group("Nested", &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let add = json!([{"op": "Add", "path": "members", "value": [
        {"$ref": null, "value": id}, {"$ref": null, "value": other}, {"$ref": null, "value": nested}
    ]}]);
    assert_eq!(
        scim.expect(Method::PATCH, &group_path, Some(&ops(add)), 204)
            .await,
        Value::Null
    );
    let remove = if flag.is_empty() {
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": other}]}])
    } else {
        json!([{"op": "remove", "path": format!("members[value eq \"{other}\"]")}])
    };
    scim.expect(Method::PATCH, &group_path, Some(&ops(remove)), 204)
        .await;
    let g = scim
        .expect(Method::GET, &format!("/Groups/{gid}"), None, 200)
        .await;
    let members: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [id.as_str()], "only the named member left: {g}");
    scim.expect(
        Method::PATCH,
        &group_path,
        Some(&ops(
            json!([{"op": "Replace", "path": "externalId", "value": "8aa1a0c1"}]),
        )),
        204,
    )
    .await;

    scim.expect(Method::DELETE, &format!("/Users/{other}{flag}"), None, 204)
        .await;
    let events = types_by_scim(&audit(&app).await);
    for t in [
        "user.provisioned",
        "user.updated",
        "user.deactivated",
        "user.reactivated",
        "group.created",
        "group.member_added",
        "group.member_removed",
        "group.updated",
        "user.removed",
    ] {
        assert!(events.iter().any(|e| e == t), "{t} in {events:?}");
    }
}

#[tokio::test]
async fn microsoft_entra_default_job_provisions_disables_and_syncs_groups() {
    entra("").await;
}

#[tokio::test]
async fn microsoft_entra_with_aad_opt_scim_062020_provisions_disables_and_syncs_groups() {
    entra("?aadOptscim062020").await;
}

#[tokio::test]
async fn okta_imports_pushes_deactivates_and_manages_group_membership() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let empty = scim
        .expect(
            Method::GET,
            "/Users?filter=userName%20eq%20%22dade.murphy%40example.com%22&startIndex=1&count=100",
            None,
            200,
        )
        .await;
    assert_eq!(empty["totalResults"], 0);
    assert_eq!(empty["Resources"], json!([]));
    let body = json!({
        "schemas": [USER], "userName": "dade.murphy@example.com",
        "name": {"givenName": "Dade", "familyName": "Murphy"},
        "emails": [{"primary": true, "value": "dade.murphy@example.com", "type": "work"}],
        "displayName": "Dade Murphy", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [], "password": "1mz050nq", "active": true
    });
    let created = scim.expect(Method::POST, "/Users", Some(&body), 201).await;
    assert!(created.get("password").is_none());
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::scim::assert_scim_error(
            scim.send(Method::POST, "/Users", Some(&body)).await,
            409,
            Some("uniqueness")
        )
        .await["status"],
        "409"
    );
    let mut put = body.clone();
    put["id"] = id.clone().into();
    put["name"]["givenName"] = "Crash".into();
    let replaced = scim
        .expect(Method::PUT, &format!("/Users/{id}"), Some(&put), 200)
        .await;
    assert_eq!(replaced["name"]["givenName"], "Crash");
    let off = scim
        .expect(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(&ops(json!([{"op": "replace", "value": {"active": false}}]))),
            200,
        )
        .await;
    assert_eq!(off["active"], false);

    let b = scim.create_user("kate@example.com", "kate").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = scim
        .expect(
            Method::POST,
            "/Groups",
            Some(&json!({"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})),
            201,
        )
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{gid}");
    scim.expect(
        Method::PATCH,
        &path,
        Some(&ops(
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Hackers"}}]),
        )),
        204,
    )
    .await;
    scim.expect(
        Method::PATCH,
        &path,
        Some(&ops(json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "dade.murphy@example.com"}]}]))),
        204,
    )
    .await;
    scim.expect(
        Method::PATCH,
        &path,
        Some(&ops(json!([
            {"op": "remove", "path": format!("members[value eq \"{id}\"]")},
            {"op": "add", "path": "members", "value": [{"value": b, "display": "kate@example.com"}]}
        ]))),
        204,
    )
    .await;
    let g = scim.expect(Method::GET, &path, None, 200).await;
    assert_eq!(g["displayName"], "Hackers");
    assert_eq!(g["members"][0]["value"], b.as_str());
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    scim.expect(
        Method::PATCH,
        &path,
        Some(&ops(
            json!([{"op": "replace", "path": "members", "value": [{"value": id}, {"value": b}]}]),
        )),
        204,
    )
    .await;
    let g = scim.expect(Method::GET, &path, None, 200).await;
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    // Okta's import pages with startIndex/count over a stable order.
    let page1 = scim
        .expect(Method::GET, "/Users?startIndex=1&count=1", None, 200)
        .await;
    let page2 = scim
        .expect(Method::GET, "/Users?startIndex=2&count=1", None, 200)
        .await;
    assert_eq!(page1["totalResults"], 2);
    assert_eq!(page1["Resources"][0]["id"], id.as_str());
    assert_eq!(page2["Resources"][0]["id"], b.as_str());
}

#[tokio::test]
async fn the_scim2_compliance_checker_passes() {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let found = std::process::Command::new("scim2").arg("--help").output();
    if !found.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            !in_ci,
            "scim2 (pip install scim2-cli) must be on PATH in CI"
        );
        eprintln!("skipping: scim2 is not installed (pip install scim2-cli)");
        return;
    }
    let app = spawn_app().await;
    let token = app.token_with(&["scim"]).await;
    let out = tokio::process::Command::new("scim2")
        .arg("-u")
        .arg(app.url("/scim/v2"))
        .arg("test")
        // Not on the command line, where other users of the machine could read it.
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
        .output()
        .await
        .expect("run scim2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            !l.starts_with(' ') && !l.starts_with("SUCCESS") && !l.starts_with("Performing")
        })
        .collect();
    assert!(
        out.status.success(),
        "scim2 test failed: {failed:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SUCCESS check_add_attribute"), "{stdout}");
}
