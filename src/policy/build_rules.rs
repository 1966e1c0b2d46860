//! Rules and tests, the larger half of [`super::build`]: the `dst` shorthand, ports and
//! protocols, and test destinations.

use std::collections::BTreeSet;

use super::build::{Builder, RULE, TEST};
use super::model::*;
use super::parse::{Kind, Node};
use super::syntax;

impl Builder {
    fn protos(&mut self, node: &Node, ptr: &str, rule: Option<&str>) -> Vec<Proto> {
        let mut out = BTreeSet::new();
        for s in self.strs(node, ptr, rule) {
            match syntax::proto(&s.value) {
                Ok(Some(p)) => {
                    out.insert(p);
                }
                Ok(None) => out.extend(Proto::ALL),
                Err(m) => self.err(&s.pointer, s.pos, rule, m),
            }
        }
        out.into_iter().collect()
    }

    fn ports(&mut self, items: &[(String, String, Pos)], rule: Option<&str>) -> Vec<At<PortRange>> {
        let mut out = Vec::new();
        for (text, ptr, pos) in items {
            for part in text.split(',') {
                match syntax::port_range(part) {
                    Ok(r) => out.push(At::new(r, ptr.clone(), *pos)),
                    Err(m) => self.err(ptr, *pos, rule, m),
                }
            }
        }
        out
    }

    pub(super) fn rule(&mut self, node: &Node, ptr: &str) -> Option<Rule> {
        let name = match &node.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == "name"),
            _ => None,
        };
        let name = match name.map(|(_, _, v)| &v.kind) {
            Some(Kind::Str(s)) if !s.trim().is_empty() => At::new(
                s.clone(),
                format!("{ptr}/name"),
                name.map_or(node.pos, |n| n.2.pos),
            ),
            _ => {
                self.err(
                    ptr,
                    node.pos,
                    None,
                    "every rule needs a unique 'name'".into(),
                );
                At::new(String::new(), format!("{ptr}/name"), node.pos)
            }
        };
        let rn = Some(name.value.as_str()).filter(|n| !n.is_empty());
        let entries = self.map(node, ptr, RULE, rn)?;
        let mut rule = Rule {
            name: name.clone(),
            action: Action::Accept,
            src: Vec::new(),
            dst: Vec::new(),
            protos: Proto::ALL.to_vec(),
            ports: Vec::new(),
            posture: None,
            pointer: ptr.to_owned(),
            pos: node.pos,
        };
        let mut saw = BTreeSet::new();
        let mut explicit_ports = Vec::new();
        let mut shorthand: Vec<(Vec<String>, String, Pos)> = Vec::new();
        for (key, _, v) in entries {
            let p = format!("{ptr}/{key}");
            saw.insert(key.as_str());
            match key.as_str() {
                "action" => match &v.kind {
                    Kind::Str(s) if s == "accept" => rule.action = Action::Accept,
                    Kind::Str(s) if s == "deny" => rule.action = Action::Deny,
                    _ => self.err(&p, v.pos, rn, "'action' is accept or deny".into()),
                },
                "src" => {
                    let items = self.strs(v, &p, rn);
                    rule.src = self.principals(items, rn);
                }
                "dst" => {
                    let mut plain = Vec::new();
                    for item in self.strs(v, &p, rn) {
                        match syntax::split_shorthand(&item.value) {
                            Some((head, ports)) => {
                                let ports = ports.into_iter().map(str::to_owned).collect();
                                shorthand.push((ports, item.pointer.clone(), item.pos));
                                plain.push(At::new(head.to_owned(), item.pointer, item.pos));
                            }
                            None => plain.push(item),
                        }
                    }
                    rule.dst = self.principals(plain, rn);
                }
                "proto" => {
                    let protos = self.protos(v, &p, rn);
                    if !protos.is_empty() {
                        rule.protos = protos;
                    }
                }
                "ports" => {
                    explicit_ports = self
                        .strs(v, &p, rn)
                        .into_iter()
                        .map(|s| (s.value, s.pointer, s.pos))
                        .collect()
                }
                "posture" => rule.posture = Some(self.strs(v, &p, rn)),
                _ => {}
            }
        }
        for required in ["action", "src", "dst"] {
            if !saw.contains(required) {
                self.err(ptr, node.pos, rn, format!("the rule has no '{required}'"));
            }
        }
        if let Some((first, _, _)) = shorthand.first() {
            if !explicit_ports.is_empty() {
                let (_, sp, spos) = &shorthand[0];
                let m = "ports are given both in 'dst' and in 'ports': keep one".to_owned();
                self.err(sp, *spos, rn, m);
            } else if shorthand.len() != rule.dst.len()
                || shorthand.iter().any(|(ports, _, _)| ports != first)
            {
                let (_, sp, spos) = &shorthand[0];
                let m = "every destination of a rule must name the same ports: split the rule"
                    .to_owned();
                self.err(sp, *spos, rn, m);
            }
            explicit_ports = shorthand
                .first()
                .map(|(ports, ptr, pos)| vec![(ports.join(","), ptr.clone(), *pos)])
                .unwrap_or_default();
        }
        rule.ports = if explicit_ports.is_empty() {
            vec![At::new(PortRange::ALL, ptr, node.pos)]
        } else {
            self.ports(&explicit_ports, rn)
        };
        Some(rule)
    }

    pub(super) fn test(&mut self, node: &Node, ptr: &str) -> Option<PolicyTest> {
        let entries = self.map(node, ptr, TEST, None)?;
        let mut test = PolicyTest {
            name: At::new(String::new(), format!("{ptr}/name"), node.pos),
            src: At::new(Principal::Any, format!("{ptr}/src"), node.pos),
            protos: Vec::new(),
            accept: Vec::new(),
            deny: Vec::new(),
            pointer: ptr.to_owned(),
            pos: node.pos,
        };
        let (mut has_name, mut has_src) = (false, false);
        for (key, _, v) in entries {
            let p = format!("{ptr}/{key}");
            match key.as_str() {
                "name" => {
                    if let Some(s) = self.scalar(v, &p, None) {
                        has_name = !s.trim().is_empty();
                        test.name = At::new(s, p, v.pos);
                    }
                }
                "src" => {
                    if let Some(s) = self.scalar(v, &p, None) {
                        match syntax::principal(&s) {
                            Ok(pr) => {
                                has_src = true;
                                test.src = At::new(pr, p, v.pos);
                            }
                            Err(m) => self.err(&p, v.pos, None, m),
                        }
                    }
                }
                "proto" => {
                    let protos = self.protos(v, &p, None);
                    test.protos = if protos.len() == Proto::ALL.len() {
                        Vec::new()
                    } else {
                        protos
                    };
                }
                "accept" | "deny" => {
                    let targets = self.targets(v, &p);
                    if key == "accept" {
                        test.accept = targets;
                    } else {
                        test.deny = targets;
                    }
                }
                _ => {}
            }
        }
        if !has_name {
            self.err(ptr, node.pos, None, "every test needs a 'name'".into());
        }
        if !has_src {
            self.err(ptr, node.pos, None, "the test has no valid 'src'".into());
            return None;
        }
        Some(test)
    }

    fn targets(&mut self, node: &Node, ptr: &str) -> Vec<At<Target>> {
        let mut out = Vec::new();
        for s in self.strs(node, ptr, None) {
            let parsed = syntax::split_shorthand(&s.value)
                .filter(|(_, ports)| ports.len() == 1)
                .ok_or_else(|| {
                    format!(
                        "'{}' is not a test destination like tag:x:22 (one port)",
                        s.value
                    )
                })
                .and_then(|(head, ports)| {
                    let port: u16 =
                        ports[0].parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                            format!("'{}' is not one port from 1 to 65535", ports[0])
                        })?;
                    Ok(Target {
                        dst: syntax::principal(head)?,
                        port,
                    })
                });
            match parsed {
                Ok(t) => out.push(At::new(t, s.pointer, s.pos)),
                Err(m) => self.err(&s.pointer, s.pos, None, m),
            }
        }
        out
    }
}
