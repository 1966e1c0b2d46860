//! The OpenID Connect relying party (`quickztna::sso::oidc`) against a real provider: discovery,
//! the code flow with PKCE, and the refusals (issuer mismatch, replayed code, wrong nonce, an ID
//! token minted for another client).

use quickztna::sso::oidc::{OidcError, Provider, RelyingParty, http_client};
use serde_json::{Value, json};

use crate::oidc_provider::{Browser, ClientSpec, OidcProvider, query_param};

const REDIRECT: &str = "http://127.0.0.1:9/sso/callback";
const OTHER_REDIRECT: &str = "http://127.0.0.1:9/other/callback";

async fn provider() -> OidcProvider {
    OidcProvider::start(
        &[
            ClientSpec::new("quickztna", "rp-secret-1", REDIRECT),
            ClientSpec::new("other-app", "other-secret-2", OTHER_REDIRECT),
        ],
        &json!({"alice": {"email": "alice@acme.test", "email_verified": true,
                          "name": "Alice Liddell", "preferred_username": "alice",
                          "groups": ["eng", "ops"]}}),
    )
    .await
}

fn party(op: &OidcProvider, client_id: &str, secret: &str, redirect: &str) -> RelyingParty {
    RelyingParty {
        issuer: op.issuer.clone(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        redirect_uri: redirect.into(),
    }
}

#[tokio::test]
async fn code_flow_with_pkce_yields_the_verified_identity_and_groups() {
    let op = provider().await;
    let rp = Provider::discover(
        http_client(),
        party(&op, "quickztna", "rp-secret-1", REDIRECT),
    )
    .await
    .expect("discover");
    let auth = rp.authorize();
    assert_eq!(
        query_param(&auth.url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&auth.url, "scope").unwrap().contains("groups"));
    let callback = Browser::new().authorize(&auth.url, "alice", REDIRECT).await;
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(auth.state.as_str())
    );
    let code = query_param(&callback, "code").expect("code");

    let me = rp
        .finish(&code, &auth.pkce_verifier, &auth.nonce)
        .await
        .expect("finish");
    assert_eq!(me.issuer, op.issuer);
    assert_eq!(me.subject, "alice");
    assert_eq!(me.email.as_deref(), Some("alice@acme.test"));
    assert!(me.email_verified);
    assert_eq!(me.name.as_deref(), Some("Alice Liddell"));
    assert_eq!(me.preferred_username.as_deref(), Some("alice"));
    assert_eq!(me.groups, Some(vec!["eng".to_string(), "ops".to_string()]));

    // The same code a second time: the provider refuses it, and the error shows no code.
    let err = rp
        .finish(&code, &auth.pkce_verifier, &auth.nonce)
        .await
        .expect_err("a replayed code is refused");
    assert!(
        matches!(err, OidcError::Refused(ref e) if e == "invalid_grant"),
        "{err}"
    );
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(&code) && !text.contains("rp-secret-1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_wrong_verifier_or_nonce_is_refused() {
    let op = provider().await;
    let rp = Provider::discover(
        http_client(),
        party(&op, "quickztna", "rp-secret-1", REDIRECT),
    )
    .await
    .expect("discover");
    let browser = Browser::new();

    let auth = rp.authorize();
    let callback = browser.authorize(&auth.url, "alice", REDIRECT).await;
    let code = query_param(&callback, "code").unwrap();
    let other = rp.authorize();
    let err = rp
        .finish(&code, &other.pkce_verifier, &auth.nonce)
        .await
        .expect_err("PKCE binds the code to its verifier");
    assert!(matches!(err, OidcError::Refused(_)), "{err}");

    let auth = rp.authorize();
    let callback = browser.authorize(&auth.url, "alice", REDIRECT).await;
    let code = query_param(&callback, "code").unwrap();
    let err = rp
        .finish(&code, &auth.pkce_verifier, "another-nonce")
        .await
        .expect_err("the nonce binds the token to this login");
    assert!(
        matches!(err, OidcError::InvalidIdToken(ref e) if e.contains("nonce")),
        "{err}"
    );
}

#[tokio::test]
async fn an_id_token_for_another_client_is_refused() {
    let op = provider().await;
    let ours = Provider::discover(
        http_client(),
        party(&op, "quickztna", "rp-secret-1", REDIRECT),
    )
    .await
    .expect("discover");
    let theirs = Provider::discover(
        http_client(),
        party(&op, "other-app", "other-secret-2", OTHER_REDIRECT),
    )
    .await
    .expect("discover");

    // A genuine ID token, signed by the same provider, but issued to `other-app`.
    let auth = theirs.authorize();
    let callback = Browser::new()
        .authorize(&auth.url, "alice", OTHER_REDIRECT)
        .await;
    let code = query_param(&callback, "code").unwrap();
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", op.issuer))
        .basic_auth("other-app", Some("other-secret-2"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", OTHER_REDIRECT),
                ("code_verifier", auth.pkce_verifier.as_str()),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().expect("id token");
    theirs
        .verify_id_token(id_token, &auth.nonce)
        .await
        .expect("valid for its own audience");
    let err = ours
        .verify_id_token(id_token, &auth.nonce)
        .await
        .expect_err("another client's token");
    assert!(
        matches!(err, OidcError::InvalidIdToken(ref e) if e.contains("audience")),
        "{err}"
    );

    // And that client's code, brought to us: the provider will not redeem it for us.
    let auth = theirs.authorize();
    let callback = Browser::new()
        .authorize(&auth.url, "alice", OTHER_REDIRECT)
        .await;
    let code = query_param(&callback, "code").unwrap();
    let err = ours
        .finish(&code, &auth.pkce_verifier, &auth.nonce)
        .await
        .expect_err("a code issued to another client");
    assert!(matches!(err, OidcError::Refused(_)), "{err}");
}

#[tokio::test]
async fn discovery_wants_the_exact_issuer() {
    let op = provider().await;
    // The same provider under another spelling of its address (what `/common` does at Entra).
    let mut p = party(&op, "quickztna", "rp-secret-1", REDIRECT);
    p.issuer = op.issuer.replace("127.0.0.1", "localhost");
    let err = Provider::discover(http_client(), p)
        .await
        .expect_err("mismatch");
    assert!(
        matches!(err, OidcError::Discovery(ref e) if e.contains("issuer")),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("rp-secret-1"));

    let mut p = party(&op, "quickztna", "rp-secret-1", REDIRECT);
    p.issuer = "not a url".into();
    let err = Provider::discover(http_client(), p)
        .await
        .expect_err("bad url");
    assert!(matches!(err, OidcError::InvalidUrl { .. }), "{err}");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_again_once() {
    let clients = [ClientSpec::new("quickztna", "rp-secret-1", REDIRECT)];
    let accounts = json!({});
    let op = OidcProvider::start_with(&clients, &accounts, 0, true).await;
    let rp = Provider::discover(
        http_client(),
        party(&op, "quickztna", "rp-secret-1", REDIRECT),
    )
    .await
    .expect("discover");
    // The provider restarts with a new key under the same issuer: tokens name a key id the
    // relying party did not see at discovery.
    let port = op.port();
    drop(op);
    let op = OidcProvider::start_with(&clients, &accounts, port, true).await;
    let auth = rp.authorize();
    let callback = Browser::new().authorize(&auth.url, "dora", REDIRECT).await;
    let code = query_param(&callback, "code").unwrap();
    let me = rp
        .finish(&code, &auth.pkce_verifier, &auth.nonce)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", op.stderr()));
    assert_eq!(me.email.as_deref(), Some("dora@example.com"));
}
