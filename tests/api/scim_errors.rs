//! SCIM errors: bad payloads (a SCIM error, nothing changed), routing, authentication, scopes,
//! rate limits, and tenancy.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{header, json, spawn_app};
use crate::scim::{PATCH, Scim, USER, assert_scim_error, audit, urlencode};

/// A request that must be refused: method, path, body (`None`: none, or broken JSON for a
/// POST), status, `scimType`.
type BadCase<'a> = (Method, &'a str, Option<Value>, u16, Option<&'a str>);

#[tokio::test]
async fn bad_payloads_get_scim_errors_and_change_nothing() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let id = scim.create_user("keep@example.com", "k").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gid = scim.create_group("G", &[&id]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = audit(&app).await;
    let user_path = format!("/Users/{id}");
    let group_path = format!("/Groups/{gid}");
    let raw = |s: &str| serde_json::from_str::<Value>(s).ok();
    let cases: Vec<BadCase> = vec![
        (Method::POST, "/Users", None, 400, Some("invalidSyntax")),
        (
            Method::POST,
            "/Users",
            raw("[1]"),
            400,
            Some("invalidSyntax"),
        ),
        (
            Method::POST,
            "/Users",
            Some(json!({"userName": 7})),
            400,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Users",
            Some(json!({"displayName": "no userName"})),
            400,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Users",
            Some(json!({"userName": "x@example.com", "emails": [{"value": "not-an-email"}]})),
            400,
            Some("invalidValue"),
        ),
        (
            Method::PUT,
            &user_path,
            Some(json!({"userName": "keep@example.com", "active": "maybe"})),
            400,
            Some("invalidValue"),
        ),
        (
            Method::PATCH,
            &user_path,
            Some(json!({"Operations": []})),
            400,
            Some("invalidSyntax"),
        ),
        (
            Method::PATCH,
            &user_path,
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "remove"}]})),
            400,
            Some("noTarget"),
        ),
        (
            Method::PATCH,
            &user_path,
            Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": "userName", "value": 5}]})),
            400,
            Some("invalidValue"),
        ),
        (
            Method::PATCH,
            &user_path,
            Some(
                json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "emails[type eq", "value": "x"}]}),
            ),
            400,
            Some("invalidPath"),
        ),
        (
            Method::PATCH,
            &group_path,
            Some(
                json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": "usr_nobody"}]}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            Method::GET,
            "/Users?filter=userName%20eq",
            None,
            400,
            Some("invalidFilter"),
        ),
        (
            Method::GET,
            "/Users?count=ten",
            None,
            400,
            Some("invalidValue"),
        ),
    ];
    for (method, path, body, status, scim_type) in cases {
        let resp = match &body {
            Some(b) => scim.send(method.clone(), path, Some(b)).await,
            None if method == Method::POST => scim
                .app
                .request_as(&scim.token, method.clone(), &format!("/scim/v2{path}"))
                .header("content-type", "application/scim+json")
                .body("{not json")
                .send()
                .await
                .unwrap(),
            None => scim.send(method.clone(), path, None).await,
        };
        let err = assert_scim_error(resp, status, scim_type).await;
        eprintln!("{method} {path}: {}", err["detail"]);
    }
    assert_eq!(audit(&app).await, before, "nothing was recorded");
    let user = scim.expect(Method::GET, &user_path, None, 200).await;
    assert_eq!(user["userName"], "keep@example.com");
    assert!(
        user.get("displayName").is_none(),
        "the half-applied PATCH left nothing"
    );
}

#[tokio::test]
async fn routing_errors_and_unknown_paths_are_scim_errors() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    assert_scim_error(scim.send(Method::GET, "/Nope", None).await, 404, None).await;
    assert_scim_error(
        scim.send(Method::GET, "/Users/usr_missing", None).await,
        404,
        None,
    )
    .await;
    for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let resp = scim.send(method, path, None).await;
            assert!(header(&resp, "allow").is_some_and(|a| a.contains("GET")));
            assert_scim_error(resp, 405, None).await;
        }
    }
    let spc = scim
        .expect(Method::GET, "/ServiceProviderConfig", None, 200)
        .await;
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let types = scim.expect(Method::GET, "/ResourceTypes", None, 200).await;
    assert_eq!(types["totalResults"], 2);
    let schema = scim
        .expect(Method::GET, &format!("/Schemas/{USER}"), None, 200)
        .await;
    assert_eq!(schema["name"], "User");
    assert_scim_error(
        scim.send(Method::GET, "/Schemas/urn:nope", None).await,
        404,
        None,
    )
    .await;
    assert_scim_error(
        scim.send(Method::POST, "/Bulk", Some(&json!({}))).await,
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn authentication_scope_and_rate_limit_errors_are_scim_errors() {
    let app = spawn_app().await;
    let no_token = app
        .client
        .get(app.url("/scim/v2/Users"))
        .send()
        .await
        .unwrap();
    assert!(header(&no_token, "www-authenticate").is_some());
    assert_scim_error(no_token, 401, None).await;
    // `scim` is a scope of its own: `read` and other groups' scopes do not reach SCIM.
    let read = app.token_with(&["read"]).await;
    // `scim` is a scope of its own: `read` and other groups' scopes do not reach SCIM.
    let devices = app.token_with(&["devices:write", "users:write"]).await;
    for token in [&read, &devices] {
        let resp = app
            .request_as(token, Method::GET, "/scim/v2/Users")
            .send()
            .await
            .unwrap();
        assert_scim_error(resp, 403, None).await;
    }
    // The REST API keeps its problems.
    let rest = app
        .request_as(&read, Method::POST, "/api/v1/tokens")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&rest, "content-type").as_deref(),
        Some("application/problem+json")
    );

    // SCIM writes share the organization's write budget, and its 429 is a SCIM error too.
    let scim = Scim::new(&app).await;
    quickztna::bootstrap::set_limits(
        &app.state,
        &app.org_id,
        1000,
        1,
        events::Actor::console("test"),
    )
    .await
    .unwrap();
    app.wait_caught_up().await;
    let mut limited = None;
    for n in 0..5 {
        let resp = scim
            .send(
                Method::POST,
                "/Users",
                Some(&json!({"userName": format!("r{n}@example.com")})),
            )
            .await;
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let limited = limited.expect("a 429 within 5 writes at 1 a minute");
    assert!(header(&limited, "retry-after").is_some());
    assert_scim_error(limited, 429, None).await;
}

#[tokio::test]
async fn a_scim_token_of_one_organization_cannot_see_or_touch_another_s_directory() {
    let app = spawn_app().await;
    let a = Scim::new(&app).await;
    let user = a.create_user("a@acme.example", "a").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = a.create_group("Acme", &[&user]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, owner_b) = app.second_org("globex").await;
    let token_b = {
        let resp = app
            .request_as(&owner_b, Method::POST, "/api/v1/tokens")
            .json(&json!({"scopes": ["scim"], "description": "globex idp", "expires_in": "2h"}))
            .send()
            .await
            .unwrap();
        json(resp).await["token"].as_str().unwrap().to_owned()
    };
    let b = Scim {
        app: &app,
        token: token_b,
    };
    let list = b.expect(Method::GET, "/Users", None, 200).await;
    assert_eq!(list["totalResults"], 0);
    let filtered = b
        .expect(
            Method::GET,
            &format!(
                "/Users?filter={}",
                urlencode("userName eq \"a@acme.example\"")
            ),
            None,
            200,
        )
        .await;
    assert_eq!(filtered["totalResults"], 0);
    assert_eq!(
        b.expect(Method::GET, "/Groups", None, 200).await["totalResults"],
        0
    );
    let before = audit(&app).await;
    for (method, path) in [
        (Method::GET, format!("/Users/{user}")),
        (Method::DELETE, format!("/Users/{user}")),
        (Method::GET, format!("/Groups/{group}")),
        (Method::DELETE, format!("/Groups/{group}")),
    ] {
        assert_scim_error(b.send(method, &path, None).await, 404, None).await;
    }
    assert_scim_error(
        b.send(
            Method::PUT,
            &format!("/Users/{user}"),
            Some(&json!({"userName": "x@y.z"})),
        )
        .await,
        404,
        None,
    )
    .await;
    assert_scim_error(
        b.patch(
            &format!("/Users/{user}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await,
        404,
        None,
    )
    .await;
    assert_scim_error(
        b.patch(
            &format!("/Groups/{group}"),
            json!([{"op": "remove", "path": "members"}]),
        )
        .await,
        404,
        None,
    )
    .await;
    // Org B cannot put org A's user into its own group either.
    let own = b.create_group("Globex", &[]).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_scim_error(
        b.patch(
            &format!("/Groups/{own}"),
            json!([{"op": "add", "path": "members", "value": [{"value": user}]}]),
        )
        .await,
        400,
        Some("invalidValue"),
    )
    .await;
    let after: Vec<Value> = audit(&app).await;
    assert_eq!(after, before, "org A's audit log is unchanged");
    let still = a
        .expect(Method::GET, &format!("/Users/{user}"), None, 200)
        .await;
    assert_eq!(still["active"], true);
}
