//! SCIM 2.0 at `/scim/v2`: users and groups round trip, paging, uniqueness; the SCIM client the
//! other SCIM tests share. Errors and tenancy are in `scim_errors.rs`, identity-provider bodies
//! in `scim_idp.rs`.

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

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
