//! Single sign-on through a real OpenID provider (tests/oidc): the settings API, who a person
//! is when they sign in (invitation, linked identity, domain rule), the `groups` claim, and the
//! refusals that must change nothing.

use std::os::unix::fs::PermissionsExt;

use quickztna::domain::directory::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::assert_problem;
use crate::oidc_provider::{Browser, query_param};
use crate::sso_fixture::{CLIENT_SECRET, OTHER_CLIENT, SsoApp};

#[tokio::test]
async fn the_oidc_settings_are_discovered_first_and_keep_the_secret_out_of_the_log() {
    let sso = SsoApp::start().await;
    let app = &sso.app;
    let settings = sso.get("/api/v1/sso").await;
    assert_eq!(settings["oidc"]["issuer"], sso.op.issuer.as_str());
    assert_eq!(settings["oidc"]["client_id"], "quickztna");
    assert_eq!(settings["oidc"]["redirect_uri"], app.url("/sso/callback"));
    assert!(!settings.to_string().contains(CLIENT_SECRET));

    let file = app.data_dir().join(format!("secrets/oidc-{}", app.org_id));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLIENT_SECRET);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (events, _) = app.list_all(&app.token, "/api/v1/audit-log", "").await;
    let configured: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "org.oidc_configured")
        .collect();
    assert_eq!(configured.len(), 1);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains(CLIENT_SECRET)
    );

    let put = |body: serde_json::Value| {
        app.request(Method::PUT, "/api/v1/sso/oidc")
            .json(&body)
            .send()
    };
    // An issuer that does not answer, or answers as another issuer: nothing is recorded.
    let head = app.state.log().head();
    let resp = put(json!({"issuer": "http://127.0.0.1:9", "client_id": "x", "client_secret": "y"}))
        .await
        .unwrap();
    assert_problem(resp, 422, "unprocessable_entity").await;
    let other_spelling = sso.op.issuer.replace("127.0.0.1", "localhost");
    let resp = put(json!({"issuer": other_spelling, "client_id": "x", "client_secret": "y"}))
        .await
        .unwrap();
    let body = assert_problem(resp, 422, "unprocessable_entity").await;
    assert!(
        body["detail"].as_str().unwrap().contains("issuer"),
        "{body}"
    );
    // Plain http:// only on the loopback; never another scheme.
    for issuer in [
        "http://idp.example.com",
        "ftp://127.0.0.1/",
        "https://u@idp.example.com",
    ] {
        let resp = put(json!({"issuer": issuer, "client_id": "x", "client_secret": "y"}))
            .await
            .unwrap();
        assert_problem(resp, 400, "invalid_argument").await;
    }
    assert_eq!(app.state.log().head(), head, "refusals record nothing");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLIENT_SECRET);

    // users:read sees the settings; only users:write changes them.
    let reader = app.token_with(&["users:read"]).await;
    let resp = app
        .request_as(&reader, Method::GET, "/api/v1/sso")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .request_as(&reader, Method::PUT, "/api/v1/sso/oidc")
        .json(&json!({"issuer": sso.op.issuer, "client_id": "x", "client_secret": "y"}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "permission_denied").await;

    // Domain rules are listed and removed here.
    let resp = app.delete("/api/v1/sso/domains/acme.test").await;
    assert_problem(resp, 404, "not_found").await;
    sso.add_domain("acme.test", Role::Auditor).await;
    let settings = sso.get("/api/v1/sso").await;
    assert_eq!(
        settings["domains"],
        json!([{"domain": "acme.test", "role": "auditor"}])
    );
    // Another organization sees none of it, and cannot end this rule.
    let (_, globex) = app.second_org("globex").await;
    let theirs = app
        .request_as(&globex, Method::GET, "/api/v1/sso")
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::helpers::json(theirs).await,
        json!({"oidc": null, "domains": []})
    );
    let resp = app
        .request_as(&globex, Method::DELETE, "/api/v1/sso/domains/acme.test")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    assert_eq!(
        sso.get("/api/v1/sso").await["domains"][0]["domain"],
        "acme.test"
    );
    assert_eq!(
        app.delete("/api/v1/sso/domains/ACME.test").await.status(),
        204
    );
    assert_eq!(sso.get("/api/v1/sso").await["domains"], json!([]));
}

#[tokio::test]
async fn an_invited_person_signs_in_once_by_link_then_by_their_identity() {
    let sso = SsoApp::start().await;
    let (alice, link) = sso.invite("alice@acme.test", Role::Member).await;
    assert_eq!(sso.users()[0].2, "pending");

    let resp = Browser::new()
        .sign_in(&link, "alice", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let users = sso.users();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].0.as_str(), users[0].2.as_str()),
        (alice.as_str(), "active")
    );
    {
        let models = sso.app.state.models().load();
        let user = models
            .state
            .org(&sso.app.org_id)
            .user(&alice)
            .unwrap()
            .clone();
        assert_eq!(
            user.identities,
            vec![(sso.op.issuer.clone(), "alice".to_owned())]
        );
        assert!(user.last_sign_in_at.is_some());
    }
    assert!(
        sso.event_types()
            .await
            .contains(&"user.signed_in".to_owned())
    );

    // Later sign-ins need no link: the identity is linked to her.
    let resp = Browser::new()
        .sign_in(&sso.login_url(), "alice", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sso.users().len(), 1);

    // The invitation was used up: another person cannot take it.
    sso.invite("carol@acme.test", Role::Member).await;
    let resp = Browser::new()
        .sign_in(&link, "mallory", &sso.callback())
        .await;
    assert_problem(resp, 403, "permission_denied").await;
    // A pending invitation also matches by verified email, without the link.
    sso.op
        .set_account(
            "carol",
            &json!({"email": "carol@acme.test", "email_verified": true}),
        )
        .await;
    let resp = Browser::new()
        .sign_in(&sso.login_url(), "carol", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sso.users().iter().filter(|u| u.2 == "active").count(), 2);
}

#[tokio::test]
async fn a_domain_rule_lets_verified_people_join_and_refuses_everyone_else() {
    let sso = SsoApp::start().await;
    sso.add_domain("acme.test", Role::Auditor).await;

    let resp = Browser::new()
        .sign_in(&sso.login_url(), "bob", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let users = sso.users();
    assert_eq!(users.len(), 1);
    let (_, email, status, source, role) = &users[0];
    assert_eq!(
        (
            email.as_str(),
            status.as_str(),
            source.as_str(),
            role.as_str()
        ),
        ("bob@acme.test", "active", "sso", "auditor")
    );
    let types = sso.event_types().await;
    assert!(types.contains(&"user.provisioned".to_owned()), "{types:?}");

    // Another domain, and an address the provider does not vouch for: refused, nothing written.
    let head = sso.app.state.log().head();
    for who in ["mallory", "eve"] {
        let resp = Browser::new()
            .sign_in(&sso.login_url(), who, &sso.callback())
            .await;
        let body = assert_problem(resp, 403, "permission_denied").await;
        assert!(
            body["detail"].as_str().unwrap().contains("not invited"),
            "{body}"
        );
    }
    assert_eq!(sso.app.state.log().head(), head);
    assert_eq!(sso.users().len(), 1);
}

#[tokio::test]
async fn the_groups_claim_creates_and_updates_oidc_groups_and_never_touches_scim_groups() {
    let sso = SsoApp::start().await;
    sso.add_domain("acme.test", Role::Member).await;
    sso.scim_group("sec").await;
    sso.op
        .set_account(
            "alice",
            &json!({"email": "alice@acme.test", "email_verified": true,
                    "groups": ["eng", "ops", "sec", " ", "ENG"]}),
        )
        .await;
    let resp = Browser::new()
        .sign_in(&sso.login_url(), "alice", &sso.callback())
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let alice = sso.user_id("alice@acme.test").unwrap();
    let mut mine = sso.groups_of(&alice);
    mine.sort();
    assert_eq!(
        mine,
        vec![("eng".into(), "oidc".into()), ("ops".into(), "oidc".into())]
    );

    // Next sign-in: she left eng and joined qa.
    sso.op
        .set_account(
            "alice",
            &json!({"email": "alice@acme.test", "email_verified": true, "groups": ["ops", "qa"]}),
        )
        .await;
    Browser::new()
        .sign_in(&sso.login_url(), "alice", &sso.callback())
        .await;
    let mut mine = sso.groups_of(&alice);
    mine.sort();
    assert_eq!(
        mine,
        vec![("ops".into(), "oidc".into()), ("qa".into(), "oidc".into())]
    );
    let mut groups = sso.groups();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            ("eng".into(), "oidc".into(), 0),
            ("ops".into(), "oidc".into(), 1),
            ("qa".into(), "oidc".into(), 1),
            ("sec".into(), "scim".into(), 0),
        ]
    );

    // A token without the claim changes no membership.
    sso.op
        .set_account(
            "alice",
            &json!({"email": "alice@acme.test", "email_verified": true}),
        )
        .await;
    Browser::new()
        .sign_in(&sso.login_url(), "alice", &sso.callback())
        .await;
    assert_eq!(sso.groups_of(&alice).len(), 2);
}

#[tokio::test]
async fn a_wrong_state_a_replayed_code_and_another_clients_code_are_refused_and_change_nothing() {
    let sso = SsoApp::start().await;
    sso.add_domain("acme.test", Role::Member).await;
    let head = sso.app.state.log().head();
    let browser = Browser::new();

    // A callback whose state this server never issued.
    let callback = browser
        .authorize(&sso.login_url(), "bob", &sso.callback())
        .await;
    let code = query_param(&callback, "code").unwrap();
    let forged = format!("{}?code={code}&state=not-ours", sso.callback());
    assert_problem(browser.get(&forged).await, 400, "invalid_argument").await;
    assert_eq!(sso.app.state.log().head(), head);

    // The genuine callback works once; the same URL again finds its state used.
    assert_eq!(browser.get(&callback).await.status(), 200);
    let head = sso.app.state.log().head();
    assert_problem(browser.get(&callback).await, 400, "invalid_argument").await;
    // The used code under a fresh state of ours: the provider refuses to redeem it again.
    let fresh = browser
        .authorize(&sso.login_url(), "bob", &sso.callback())
        .await;
    let state = query_param(&fresh, "state").unwrap();
    let replay = format!("{}?code={code}&state={state}", sso.callback());
    assert_problem(browser.get(&replay).await, 403, "permission_denied").await;
    assert_eq!(sso.app.state.log().head(), head);

    // A code the provider issued to another application (same provider, same redirect URI),
    // brought back under one of our states: it is not ours to redeem.
    let ours = browser
        .get(&sso.login_url())
        .await
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let state = query_param(&ours, "state").unwrap();
    let mut theirs = reqwest::Url::parse(&ours).unwrap();
    let pairs: Vec<(String, String)> = theirs
        .query_pairs()
        .map(|(k, v)| match k.as_ref() {
            "client_id" => (k.into_owned(), OTHER_CLIENT.to_owned()),
            _ => (k.into_owned(), v.into_owned()),
        })
        .collect();
    theirs.query_pairs_mut().clear().extend_pairs(pairs);
    let foreign = browser
        .authorize(theirs.as_str(), "bob", &sso.callback())
        .await;
    assert_eq!(
        query_param(&foreign, "state").as_deref(),
        Some(state.as_str())
    );
    assert_problem(browser.get(&foreign).await, 403, "permission_denied").await;
    assert_eq!(sso.app.state.log().head(), head);
    assert_eq!(sso.users().len(), 1, "only bob's first sign-in");
}
