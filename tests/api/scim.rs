//! SCIM 2.0 at `/scim/v2`: round trips, SCIM errors for bad payloads (with nothing changed),
//! scopes, and tenancy. Identity-provider bodies are in `scim_idp.rs`.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, header, json, spawn_app};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM client of one organization.
pub struct Scim<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl<'a> Scim<'a> {
    /// A client with a fresh `scim` token of the app's first organization.
    pub async fn new(app: &'a TestApp) -> Scim<'a> {
        let token = app.token_with(&["scim"]).await;
        Scim { app, token }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut req = self
            .app
            .request_as(&self.token, method, &format!("/scim/v2{path}"));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        req.send().await.expect("SCIM request")
    }

    /// Sends and asserts the status; returns the JSON body (`Null` for an empty one).
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let resp = self.send(method.clone(), path, body).await;
        let got = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        assert_eq!(got, status, "{method} {path}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        }
    }

    pub async fn create_user(&self, user_name: &str, external_id: &str) -> Value {
        self.expect(
            Method::POST,
            "/Users",
            Some(&json!({
                "schemas": [USER], "userName": user_name, "externalId": external_id,
                "name": {"givenName": "Given", "familyName": "Family"},
                "emails": [{"value": user_name, "type": "work", "primary": true}],
                "active": true
            })),
            201,
        )
        .await
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        self.expect(
            Method::POST,
            "/Groups",
            Some(&json!({"schemas": [GROUP], "displayName": name, "members": members})),
            201,
        )
        .await
    }

    pub async fn patch(&self, path: &str, ops: Value) -> Response {
        self.send(
            Method::PATCH,
            path,
            Some(&json!({"schemas": [PATCH], "Operations": ops})),
        )
        .await
    }
}

/// Asserts a SCIM error: status, content type, error schema, `scimType`; returns the body.
pub async fn assert_scim_error(resp: Response, status: u16, scim_type: Option<&str>) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/scim+json")
    );
    assert!(
        header(&resp, "x-request-id").is_some(),
        "X-Request-ID is set"
    );
    let body = json(resp).await;
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], status.to_string(), "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// The whole audit log, as the owner sees it.
pub async fn audit(app: &TestApp) -> Vec<Value> {
    app.list_all(&app.token, "/api/v1/audit-log", "limit=200")
        .await
        .0
}

#[tokio::test]
async fn a_user_round_trips_through_create_get_list_put_patch_and_delete() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let resp = scim
        .send(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER], "userName": "alice@example.com", "externalId": "A-1",
                          "displayName": "Alice", "emails": [{"value": "alice@example.com", "type": "work"}]})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location").expect("Location");
    let created = json(resp).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["meta"]["location"], location.as_str());
    assert_eq!(created["meta"]["resourceType"], "User");
    assert!(location.ends_with(&format!("/scim/v2/Users/{id}")));
    assert_eq!(created["active"], true);
    assert_eq!(
        created["emails"],
        json!([{"value": "alice@example.com", "type": "work"}])
    );

    let got = scim
        .expect(Method::GET, &format!("/Users/{id}"), None, 200)
        .await;
    assert_eq!(got, created);

    // Lookups as Entra and Okta send them, in any case; no match is an empty page, not a 404.
    for (filter, total) in [
        ("userName eq \"ALICE@example.com\"", 1),
        ("externalId eq \"A-1\"", 1),
        ("externalId eq \"a-1\"", 0),
        ("emails[type eq \"work\"].value eq \"alice@example.com\"", 1),
        ("userName eq \"bob@example.com\"", 0),
        ("displayName sw \"Ali\" and active eq true", 1),
    ] {
        let q = format!("/Users?filter={}&startIndex=1&count=100", urlencode(filter));
        let page = scim.expect(Method::GET, &q, None, 200).await;
        assert_eq!(page["totalResults"], total, "{filter}: {page}");
        assert_eq!(
            page["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
        );
    }

    let put = scim
        .expect(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(
                &json!({"schemas": [USER], "userName": "alice@example.com", "externalId": "A-1",
                          "name": {"givenName": "Alice", "familyName": "Liddell"}, "active": true}),
            ),
            200,
        )
        .await;
    assert_eq!(
        put["name"],
        json!({"givenName": "Alice", "familyName": "Liddell"})
    );
    assert!(put.get("displayName").is_none(), "PUT replaces: {put}");

    let patched = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "displayName", "value": "Alice L"}]),
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(json(patched).await["displayName"], "Alice L");

    let only = scim
        .expect(
            Method::GET,
            &format!("/Users/{id}?attributes=userName"),
            None,
            200,
        )
        .await;
    assert_eq!(
        only,
        json!({"schemas": [USER], "id": id, "userName": "alice@example.com"})
    );

    scim.expect(Method::DELETE, &format!("/Users/{id}"), None, 204)
        .await;
    let gone = scim.send(Method::GET, &format!("/Users/{id}"), None).await;
    assert_scim_error(gone, 404, None).await;
    let events: Vec<String> = audit(&app)
        .await
        .iter()
        .filter(|e| e["actor"]["kind"] == "scim")
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for t in ["user.provisioned", "user.updated", "user.removed"] {
        assert!(
            events.iter().any(|e| e == t),
            "{t} by the scim actor in {events:?}"
        );
    }
}

#[tokio::test]
async fn paging_is_one_based_stable_and_total_counts_every_match() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let u = scim
            .create_user(&format!("u{n}@example.com"), &format!("x{n}"))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let page = scim
        .expect(Method::GET, "/Users?startIndex=2&count=2", None, 200)
        .await;
    assert_eq!(page["totalResults"], 5);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);
    let got: Vec<&str> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[1].as_str(), ids[2].as_str()]);
    let none = scim.expect(Method::GET, "/Users?count=0", None, 200).await;
    assert_eq!(none["totalResults"], 5);
    assert_eq!(none["Resources"], json!([]));
    let searched = scim
        .expect(
            Method::POST,
            "/Users/.search",
            Some(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                          "filter": "userName ew \"example.com\"", "startIndex": 5, "count": 10}),
            ),
            200,
        )
        .await;
    assert_eq!(searched["Resources"][0]["id"], ids[4].as_str());
}

#[tokio::test]
async fn groups_round_trip_with_members_and_users_show_their_groups() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    let a = scim.create_user("a@example.com", "a").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = scim.create_user("b@example.com", "b").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = scim.create_group("Engineering", &[&a]).await;
    let gid = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["members"][0]["value"], a.as_str());
    assert!(
        g["members"][0]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Users/{a}"))
    );
    let user = scim
        .expect(Method::GET, &format!("/Users/{a}"), None, 200)
        .await;
    assert_eq!(user["groups"][0]["value"], gid.as_str());
    assert_eq!(user["groups"][0]["display"], "Engineering");

    let put = scim
        .expect(
            Method::PUT,
            &format!("/Groups/{gid}"),
            Some(&json!({"schemas": [GROUP], "displayName": "Eng", "members": [{"value": b}]})),
            200,
        )
        .await;
    assert_eq!(put["displayName"], "Eng");
    assert_eq!(
        put["members"],
        json!([{"value": b, "$ref": format!("{}/scim/v2/Users/{b}", app.address)}])
    );
    let filtered = scim
        .expect(
            Method::GET,
            &format!(
                "/Groups?excludedAttributes=members&filter={}",
                urlencode("displayName eq \"eng\"")
            ),
            None,
            200,
        )
        .await;
    assert_eq!(filtered["totalResults"], 1);
    assert!(filtered["Resources"][0].get("members").is_none());
    scim.expect(Method::DELETE, &format!("/Groups/{gid}"), None, 204)
        .await;
    assert_scim_error(
        scim.send(Method::GET, &format!("/Groups/{gid}"), None)
            .await,
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn uniqueness_conflicts_are_409_uniqueness() {
    let app = spawn_app().await;
    let scim = Scim::new(&app).await;
    scim.create_user("dup@example.com", "d1").await;
    let again = scim
        .send(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER], "userName": "DUP@example.com"})),
        )
        .await;
    assert_scim_error(again, 409, Some("uniqueness")).await;
    let ext = scim
        .send(
            Method::POST,
            "/Users",
            Some(&json!({"schemas": [USER], "userName": "other@example.com", "externalId": "d1"})),
        )
        .await;
    assert_scim_error(ext, 409, Some("uniqueness")).await;
    scim.create_group("Ops", &[]).await;
    let g = scim
        .send(
            Method::POST,
            "/Groups",
            Some(&json!({"schemas": [GROUP], "displayName": "ops"})),
        )
        .await;
    assert_scim_error(g, 409, Some("uniqueness")).await;
}

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
        501,
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

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
