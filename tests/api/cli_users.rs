//! `quickztna users …` and `quickztna groups …`, run as the real binary against a live server.

use serde_json::{Value, json};

use crate::cli::Cli;
use crate::helpers::spawn_app;
use crate::users::devices_of;

#[tokio::test]
async fn the_cli_invites_lists_gets_and_removes_users_with_their_devices() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let (link, said) = cli
        .ok(&["users", "invite", "alice@example.com", "--role", "admin"])
        .await;
    assert!(
        said.contains("Invited alice@example.com as admin"),
        "{said}"
    );
    assert!(
        link.trim().contains("/sso/login?org="),
        "the link goes to stdout: {link}"
    );
    let (_, said) = cli
        .ok(&["users", "invite", "--domain", "example.org"])
        .await;
    assert!(
        said.contains("People of example.org now join as member"),
        "{said}"
    );

    let (out, _) = cli
        .ok(&["users", "list", "--json", "--filter", "role:admin"])
        .await;
    let users: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(users.len(), 1);
    let id = users[0]["id"].as_str().unwrap().to_owned();
    devices_of(&app, &id, 2).await;
    let (out, _) = cli.ok(&["users", "get", &id]).await;
    assert!(
        out.contains("alice@example.com") && out.contains("devices (2)"),
        "{out}"
    );

    // The seed's pipeline shape works for users too.
    let (out, _) = cli.ok(&["users", "list", "--json"]).await;
    let ids: Vec<Value> = serde_json::from_str(&out).unwrap();
    for u in ids {
        cli.ok(&["users", "remove", u["id"].as_str().unwrap()])
            .await;
    }
    let (out, _) = cli.ok(&["devices", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));

    let failed = cli.run(&["users", "remove", &id]).await;
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no user"));
}

#[tokio::test]
async fn the_cli_lists_groups_and_their_members() {
    let app = spawn_app().await;
    let cli = Cli::new(&app);
    let (out, _) = cli.ok(&["groups", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));
    // Groups come from the identity provider; here, straight through the directory executor.
    let bob = crate::users::user_id(&app, "bob@example.com").await;
    let group = quickztna::domain::directory::NewGroup {
        id: quickztna::mint::id("grp"),
        display_name: "Engineering".into(),
        external_id: Some("8f1c".into()),
        source: "scim",
        members: vec![bob.clone()],
    };
    let command = quickztna::execute::Command::new(
        app.org_id.clone(),
        events::Actor::console("test"),
        "req_test",
    );
    quickztna::directory::execute(&app.state, command, |org| {
        quickztna::domain::directory::create_group(org, group.clone())
    })
    .await
    .unwrap();
    let (out, _) = cli.ok(&["groups", "list"]).await;
    assert!(out.contains("Engineering") && out.contains("scim"), "{out}");
    let (out, _) = cli.ok(&["groups", "members", &group.id, "--json"]).await;
    let members: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["id"], bob.as_str());
    assert_eq!(members[0]["groups"][0]["display_name"], "Engineering");
    let (out, _) = cli
        .ok(&["users", "list", "--json", "--filter", "group:engineering"])
        .await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 1);
    let failed = cli.run(&["groups", "members", "grp_missing"]).await;
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no group"));
}
