//! Random policies written out as JSON and as YAML parse back to the same rules, without a
//! single problem, and every position the parser keeps is the one the [`Source`] gives for its
//! pointer.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::model::*;
use super::reference::policy;
use super::{Format, Parsed, parse};

fn text(policy: &Policy) -> Value {
    let strings = |ps: &[At<Principal>]| ps.iter().map(|p| p.value.to_string()).collect::<Vec<_>>();
    let rules: Vec<Value> = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rule = json!({
                "name": format!("r{i}"),
                "action": if r.action == Action::Accept { "accept" } else { "deny" },
                "src": strings(&r.src),
                "dst": strings(&r.dst),
                "proto": r.protos.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "ports": r.ports.iter().map(|p| p.value.to_string()).collect::<Vec<_>>(),
            });
            if let Some(ps) = &r.posture {
                rule["posture"] = json!(ps.iter().map(|p| p.value.clone()).collect::<Vec<_>>());
            }
            rule
        })
        .collect();
    json!({
        "version": 1,
        "hosts": { "h0": "10.0.0.0/30", "h1": "10.0.0.6/32" },
        "postures": {
            "p0": { "disk_encrypted": true },
            "p1": { "min_os_version": { "linux": "6.1" } },
        },
        "default_posture": policy.default_posture.iter().map(|p| p.value.clone()).collect::<Vec<_>>(),
        "rules": rules,
    })
}

type Shape = (
    Action,
    Vec<Principal>,
    Vec<Principal>,
    Vec<Proto>,
    Vec<PortRange>,
    Option<Vec<String>>,
);

fn shape(p: &Policy) -> Vec<Shape> {
    let values = |ps: &[At<Principal>]| ps.iter().map(|p| p.value.clone()).collect();
    p.rules
        .iter()
        .map(|r| {
            (
                r.action,
                values(&r.src),
                values(&r.dst),
                r.protos.clone(),
                r.ports.iter().map(|p| p.value).collect(),
                r.posture
                    .as_ref()
                    .map(|ps| ps.iter().map(|p| p.value.clone()).collect()),
            )
        })
        .collect()
}

fn positions_agree(parsed: &Parsed) -> Result<(), TestCaseError> {
    for r in &parsed.policy.rules {
        let ats = r.src.iter().chain(&r.dst).map(|a| (&a.pointer, a.pos));
        let ports = r.ports.iter().map(|a| (&a.pointer, a.pos));
        for (pointer, pos) in ats.chain(ports).chain([(&r.name.pointer, r.name.pos)]) {
            prop_assert_eq!(parsed.source.pos(pointer), Some(pos), "{}", pointer);
            prop_assert!(pos.line >= 1 && pos.column >= 1);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_policies_round_trip_through_json_and_yaml(policy in policy()) {
        let value = text(&policy);
        let json_text = serde_json::to_string_pretty(&value).unwrap();
        let yaml_text = serde_saphyr::to_string(&value).unwrap();
        for (text, format) in [(json_text, Format::Json), (yaml_text, Format::Yaml)] {
            let parsed = parse(&text, format).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            prop_assert_eq!(&parsed.diagnostics, &vec![], "{}", text);
            prop_assert_eq!(shape(&parsed.policy), shape(&policy), "{}", text);
            prop_assert_eq!(parsed.policy.default_posture.len(), policy.default_posture.len());
            positions_agree(&parsed)?;
        }
    }
}
