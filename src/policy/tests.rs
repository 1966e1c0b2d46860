//! Parsing and lint, end to end from text: positions, every problem at once, and no panic
//! on any input.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;

pub const DESIGN_EXAMPLE: &str = r#"version: 1
tag_owners: { tag:production: [group:sre], tag:ci: [group:platform] }
hosts: { db-subnet: 10.20.0.0/16 }
postures:
  baseline: { min_os_version: { linux: "6.1", macos: "14.0" }, min_client_version: "1.4.0", disk_encrypted: true }
default_posture: [baseline]
rules:
  - { name: sre-ssh-prod, action: accept, src: [group:sre], dst: [tag:production], proto: tcp, ports: [22, 443], posture: [baseline] }
  - { name: app-to-db, action: accept, src: [tag:production], dst: [host:db-subnet], proto: tcp, ports: [5432] }
  - { name: no-ci-to-db, action: deny, src: [tag:ci], dst: [host:db-subnet], ports: ["*"] }
tests:
  - { name: sre-can-ssh, src: "user:alice@example.com", accept: ["tag:production:22"], deny: ["host:db-subnet:5432"] }
"#;

fn groups(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn device(id: &str, ip: [u8; 4], tags: &[&str], owner: Option<&str>) -> Device {
    Device {
        id: id.into(),
        ipv4: Ipv4Addr::from(ip),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        owner_id: owner.map(str::to_owned),
        owner_email: owner.map(|o| format!("{o}@example.com")),
        signals: Signals {
            os: "linux".into(),
            os_version: Version::parse("6.5"),
            client_version: Version::parse("1.4.2"),
            disk_encrypted: true,
            firewall: true,
            screen_lock: true,
        },
        blocked: false,
    }
}

fn example_fleet() -> Fleet {
    Fleet {
        devices: vec![
            device("alice-laptop", [100, 64, 0, 1], &[], Some("alice")),
            device(
                "prod-1",
                [100, 64, 0, 2],
                &["tag:production"],
                Some("alice"),
            ),
            device("db", [10, 20, 0, 5], &["tag:ci"], None),
        ],
        users: vec![User {
            id: "alice".into(),
            email: "alice@example.com".into(),
            groups: groups(&["sre"]),
        }],
    }
}

#[test]
fn the_design_example_parses_and_lints_clean_over_a_matching_fleet() {
    let parsed = parse(DESIGN_EXAMPLE, Format::Yaml).unwrap();
    assert_eq!(parsed.diagnostics, vec![]);
    let p = &parsed.policy;
    assert_eq!(p.rules.len(), 3);
    assert_eq!(p.rules[0].name.value, "sre-ssh-prod");
    assert_eq!(p.rules[0].protos, vec![Proto::Tcp]);
    assert_eq!(p.rules[2].protos, Proto::ALL.to_vec());
    assert_eq!(p.rules[1].ports[0].pos.line, 9);
    let diags = lint(&parsed, &groups(&["sre", "platform"]), &example_fleet());
    assert!(lint::is_clean(&diags), "{diags:#?}");
}

#[test]
fn yaml_positions_are_kept_for_rules_principals_and_ports() {
    let text = "version: 1\nrules:\n  - name: a\n    action: accept\n    src: [\"*\"]\n    dst:\n      - tag:x\n    ports: [22, \"80-90\"]\n";
    let parsed = parse(text, Format::Yaml).unwrap();
    let r = &parsed.policy.rules[0];
    assert_eq!((r.name.pos.line, r.name.pos.column), (3, 11));
    assert_eq!(r.dst[0].pointer, "/rules/0/dst/0");
    assert_eq!((r.dst[0].pos.line, r.dst[0].pos.column), (7, 9));
    assert_eq!(r.ports[1].value, PortRange { lo: 80, hi: 90 });
    assert_eq!(
        parsed.source.pos("/rules/0/ports/1"),
        Some(Pos {
            line: 8,
            column: 17
        })
    );
}

#[test]
fn json_positions_map_pointers_to_lines_and_columns() {
    let text = "{\n  \"version\": 1,\n  \"rules\": [\n    {\"name\": \"a\", \"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:x:22,443\"]}\n  ]\n}";
    let parsed = parse(text, Format::Json).unwrap();
    assert_eq!(parsed.diagnostics, vec![]);
    let r = &parsed.policy.rules[0];
    assert_eq!(r.dst[0].value, Principal::Tag("tag:x".into()));
    let ports: Vec<_> = r.ports.iter().map(|p| p.value.lo).collect();
    assert_eq!(ports, vec![22, 443]);
    assert_eq!(
        parsed.source.pos("/rules/0/dst/0"),
        Some(Pos {
            line: 4,
            column: 61
        })
    );
    assert_eq!(
        r.name.pos,
        Pos {
            line: 4,
            column: 14
        }
    );
}

#[test]
fn the_shorthand_and_its_expanded_form_parse_to_the_same_rule() {
    let short =
        "version: 1\nrules: [{name: a, action: accept, src: ['*'], dst: ['tag:x:22,1000-2000']}]";
    let long = "version: 1\nrules: [{name: a, action: accept, src: ['*'], dst: ['tag:x'], ports: ['22', '1000-2000']}]";
    let values = |t| {
        let r = parse(t, Format::Yaml).unwrap().policy.rules.remove(0);
        (
            r.dst.into_iter().map(|x| x.value).collect::<Vec<_>>(),
            r.ports.into_iter().map(|x| x.value).collect::<Vec<_>>(),
        )
    };
    assert_eq!(values(short), values(long));
}

#[test]
fn lint_reports_every_problem_at_once_with_its_place() {
    let text = r#"version: 1
tag_owners: { tag:prod: [group:sre] }
hosts: { db: 10.0.0.0/8, spare: 10.1.0.0/16 }
postures: { unused: { firewall: true } }
rules:
  - { name: a, action: accept, src: [autogroup:self], dst: [host:nope], ports: [0], posture: [missing] }
  - { name: a, action: accept, src: [group:ghosts], dst: [tag:stray], colour: blue }
  - { action: accept, src: ["*"], dst: ["*"] }
  - { name: narrow, action: accept, src: [tag:prod], dst: [host:db], proto: tcp, ports: [22] }
"#;
    let parsed = parse(text, Format::Yaml).unwrap();
    let diags = lint(&parsed, &groups(&["sre"]), &Fleet::default());
    let has = |line: u32, sev: Severity, needle: &str| {
        diags
            .iter()
            .any(|d| d.line == line && d.severity == sev && d.message.contains(needle))
    };
    assert!(has(6, Severity::Error, "autogroup:self"), "{diags:#?}");
    assert!(has(6, Severity::Error, "unknown host alias 'nope'"));
    assert!(has(6, Severity::Error, "out of range"));
    assert!(has(7, Severity::Error, "already used"));
    assert!(has(7, Severity::Error, "unknown group"));
    assert!(has(7, Severity::Error, "'tag:stray' has no owner"));
    assert!(has(7, Severity::Error, "unknown field 'colour'"));
    assert!(has(8, Severity::Error, "needs a unique 'name'"));
    assert!(has(6, Severity::Error, "unknown posture 'missing'"));
    assert!(has(3, Severity::Warning, "'spare' is not used"));
    assert!(has(4, Severity::Warning, "posture 'unused'"));
    let shadow = diags
        .iter()
        .find(|d| d.message.contains("already covers"))
        .unwrap();
    assert_eq!(shadow.rule.as_deref(), Some("narrow"));
    assert_eq!(shadow.pointer, "/rules/3/name");
}

#[test]
fn an_accept_under_a_deny_is_reported_as_never_matching() {
    let text = "version: 1\nrules:\n  - {name: open, action: accept, src: [tag:a], dst: ['10.0.0.0/24'], ports: ['22']}\n  - {name: shut, action: deny, src: ['*'], dst: ['10.0.0.0/8']}\n";
    let parsed = parse(text, Format::Yaml).unwrap();
    let diags = lint(&parsed, &BTreeSet::new(), &Fleet::default());
    assert!(
        diags
            .iter()
            .any(|d| d.rule.as_deref() == Some("open") && d.message.contains("can never match")),
        "{diags:#?}"
    );
}

#[test]
fn unknown_users_empty_sides_and_icmp_ports_are_reported() {
    let text = "version: 1\nrules:\n  - {name: a, action: accept, src: ['user:bob@example.com'], dst: []}\n  - {name: b, action: accept, src: ['*'], dst: ['*'], proto: icmp, ports: [22]}\n";
    let parsed = parse(text, Format::Yaml).unwrap();
    let diags = lint(&parsed, &BTreeSet::new(), &example_fleet());
    let found = |sev: Severity, needle: &str| {
        diags
            .iter()
            .any(|d| d.severity == sev && d.message.contains(needle))
    };
    assert!(
        found(Severity::Error, "unknown user 'user:bob@example.com'"),
        "{diags:#?}"
    );
    assert!(found(Severity::Warning, "'dst' is empty"));
    assert!(found(Severity::Warning, "icmp has no ports"));
    let tokens = "version: 1\ntag_owners: {tag:ci: [token:tok_1]}\nrules: [{name: a, action: accept, src: ['token:tok_1'], dst: [tag:ci]}]";
    let diags = lint(
        &parse(tokens, Format::Yaml).unwrap(),
        &BTreeSet::new(),
        &example_fleet(),
    );
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{diags:#?}");
    assert_eq!(errors[0].pointer, "/rules/0/src/0");
    let known = "version: 1\nrules: [{name: a, action: accept, src: ['user:alice@example.com', 'user:alice'], dst: ['*']}]";
    let diags = lint(
        &parse(known, Format::Yaml).unwrap(),
        &BTreeSet::new(),
        &example_fleet(),
    );
    assert!(lint::is_clean(&diags), "{diags:#?}");
}

#[test]
fn a_failing_test_is_a_lint_error_at_its_destination() {
    let text = DESIGN_EXAMPLE.replace("\"tag:production:22\"", "\"tag:production:8080\"");
    let parsed = parse(&text, Format::Yaml).unwrap();
    let diags = lint(&parsed, &groups(&["sre", "platform"]), &example_fleet());
    let failing: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(failing.len(), 1, "{diags:#?}");
    assert_eq!(failing[0].pointer, "/tests/0/accept/0");
    assert!(
        failing[0]
            .message
            .contains("cannot reach prod-1 on port 8080")
    );
}

#[test]
fn syntax_errors_carry_their_position() {
    let e = parse("version: 1\nrules: [\n", Format::Yaml).unwrap_err();
    assert_eq!(e.message, "not valid YAML: unclosed bracket '['");
    let e = parse("version: 1\nversion: 1\n", Format::Yaml).unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (2, "not valid YAML: duplicate mapping key: version")
    );
    // serde_json keeps the last of duplicate keys silently; the policy walk reports them.
    let json = parse("{\"version\": 1, \"version\": 1}", Format::Json).unwrap();
    assert!(
        json.diagnostics
            .iter()
            .any(|d| d.message == "duplicate key 'version'" && d.column == 16)
    );
    assert_eq!(e.severity, Severity::Error);
    assert!(e.line >= 2, "{e:?}");
    let e = parse("{\"version\": 1,\n \"rules\": [}", Format::Json).unwrap_err();
    assert_eq!((e.line, e.column), (2, 12));
}

#[test]
fn posture_gates_sources_and_compares_versions_numerically() {
    let text = "version: 1\npostures: {new: {min_os_version: {linux: '6.10'}}}\nrules: [{name: a, action: accept, src: ['*'], dst: ['*'], posture: [new]}]";
    let parsed = parse(text, Format::Yaml).unwrap();
    let mut fleet = example_fleet();
    fleet.devices[0].signals.os_version = Version::parse("6.9");
    fleet.devices[1].signals.os_version = Version::parse("6.10.1");
    let c = Compiled::new(&parsed.policy, &fleet);
    assert!(!c.allows(0, 1, Proto::Tcp, 22));
    assert!(c.allows(1, 0, Proto::Tcp, 22));
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        for format in [Format::Yaml, Format::Json] {
            if let Ok(parsed) = parse(&text, format) {
                let _ = lint(&parsed, &BTreeSet::new(), &Fleet::default());
            }
        }
    }

    #[test]
    fn arbitrary_policy_like_text_never_panics(text in "[-a-z:{}\\[\\], \"\n0-9*/.]{0,300}") {
        for format in [Format::Yaml, Format::Json] {
            if let Ok(parsed) = parse(&format!("version: 1\nrules: {text}"), format) {
                let _ = lint(&parsed, &BTreeSet::new(), &example_fleet());
            }
        }
    }
}

#[test]
fn impact_within_a_limit_lists_that_many_and_counts_them_all() {
    let fleet = Fleet {
        devices: (0..30u8)
            .map(|i| device(&format!("d{i:02}"), [100, 64, 0, i + 1], &["tag:a"], None))
            .collect(),
        users: Vec::new(),
    };
    let open = super::parse(
        "version: 1\nrules:\n  - { name: all, action: accept, src: ['*'], dst: ['*'], proto: tcp, ports: ['22', '80'] }\n",
        super::Format::Yaml,
    )
    .unwrap()
    .policy;
    let before = Compiled::new(&Policy::default(), &fleet);
    let after = Compiled::new(&open, &fleet);
    let all = super::impact(&before, &after);
    let some = super::impact_within(&before, &after, 10);
    assert_eq!(all.gained.len(), 30 * 29 * 2);
    assert_eq!(all.gained_count, all.gained.len());
    assert_eq!(some.gained.len(), 10);
    assert_eq!(some.gained_count, all.gained_count);
    assert_eq!(
        some.gained[..],
        all.gained[..10],
        "the first ones, in order"
    );
    assert_eq!((some.lost.len(), some.lost_count), (0, 0));
}
