//! One walk over the positioned tree that builds the [`Policy`] and reports every structural
//! problem on the way: unknown fields, wrong types, malformed principals, ports, CIDRs and
//! versions. Whatever cannot be understood is left out of the model and reported; the walk
//! never stops early, so a person sees all of them at once.

use std::collections::BTreeSet;

use super::lint::Diagnostic;
use super::model::*;
use super::parse::{Kind, Node, escape};
use super::syntax;

const TOP: &[&str] = &[
    "version",
    "tag_owners",
    "hosts",
    "postures",
    "default_posture",
    "rules",
    "tests",
];
const RULE: &[&str] = &["name", "action", "src", "dst", "proto", "ports", "posture"];
const POSTURE: &[&str] = &[
    "min_os_version",
    "min_client_version",
    "disk_encrypted",
    "firewall",
    "screen_lock",
];
const TEST: &[&str] = &["name", "src", "proto", "accept", "deny"];

pub fn policy(root: &Node) -> (Policy, Vec<Diagnostic>) {
    let mut b = Builder::default();
    let mut p = Policy::default();
    let Some(entries) = b.map(root, "", TOP, None) else {
        return (p, b.diags);
    };
    let mut saw_version = false;
    for (key, _, v) in entries {
        let ptr = format!("/{}", escape(key));
        match key.as_str() {
            "version" => {
                saw_version = true;
                match v.kind {
                    Kind::Int(1) => p.version = 1,
                    _ => b.err(
                        &ptr,
                        v.pos,
                        None,
                        "unsupported version: this server reads version: 1".into(),
                    ),
                }
            }
            "tag_owners" => p.tag_owners = b.tag_owners(v, &ptr),
            "hosts" => p.hosts = b.hosts(v, &ptr),
            "postures" => p.postures = b.postures(v, &ptr),
            "default_posture" => p.default_posture = b.strs(v, &ptr, None),
            "rules" => p.rules = b.list(v, &ptr, |b, n, ptr| b.rule(n, ptr)),
            "tests" => p.tests = b.list(v, &ptr, |b, n, ptr| b.test(n, ptr)),
            _ => {}
        }
    }
    if !saw_version {
        b.err(
            "",
            root.pos,
            None,
            "missing 'version': add 'version: 1'".into(),
        );
    }
    (p, b.diags)
}

#[derive(Default)]
struct Builder {
    diags: Vec<Diagnostic>,
}

impl Builder {
    fn err(&mut self, ptr: &str, pos: Pos, rule: Option<&str>, message: String) {
        self.diags.push(Diagnostic::error(
            ptr,
            pos,
            rule.map(str::to_owned),
            message,
        ));
    }

    /// The entries of a mapping; unknown and duplicate keys are reported, then skipped.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        ptr: &str,
        known: &[&str],
        rule: Option<&str>,
    ) -> Option<Vec<&'n (String, Pos, Node)>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(ptr, node.pos, rule, "expected a mapping".into());
            return None;
        };
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for entry @ (key, kpos, _) in entries {
            let kptr = format!("{ptr}/{}", escape(key));
            if !seen.insert(key.as_str()) {
                self.err(&kptr, *kpos, rule, format!("duplicate key '{key}'"));
            } else if !known.is_empty() && !known.contains(&key.as_str()) {
                self.err(
                    &kptr,
                    *kpos,
                    rule,
                    format!(
                        "unknown field '{key}': expected one of {}",
                        known.join(", ")
                    ),
                );
            } else {
                kept.push(entry);
            }
        }
        Some(kept)
    }

    fn list<T>(
        &mut self,
        node: &Node,
        ptr: &str,
        mut item: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Vec<T> {
        let Kind::Seq(items) = &node.kind else {
            self.err(ptr, node.pos, None, "expected a list".into());
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| item(self, n, &format!("{ptr}/{i}")))
            .collect()
    }

    /// A scalar as text: policies write `22` and `"22"` alike.
    fn scalar(&mut self, node: &Node, ptr: &str, rule: Option<&str>) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            _ => {
                self.err(ptr, node.pos, rule, "expected a string".into());
                None
            }
        }
    }

    /// A list of strings; a single string stands for a list of one.
    fn strs(&mut self, node: &Node, ptr: &str, rule: Option<&str>) -> Vec<At<String>> {
        match &node.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let p = format!("{ptr}/{i}");
                    self.scalar(n, &p, rule).map(|s| At::new(s, p, n.pos))
                })
                .collect(),
            _ => self
                .scalar(node, ptr, rule)
                .map(|s| vec![At::new(s, ptr, node.pos)])
                .unwrap_or_default(),
        }
    }

    fn principals(&mut self, items: Vec<At<String>>, rule: Option<&str>) -> Vec<At<Principal>> {
        items
            .into_iter()
            .filter_map(|s| match syntax::principal(&s.value) {
                Ok(p) => Some(At::new(p, s.pointer, s.pos)),
                Err(m) => {
                    self.err(&s.pointer, s.pos, rule, m);
                    None
                }
            })
            .collect()
    }

    fn tag_owners(&mut self, node: &Node, ptr: &str) -> Vec<TagOwner> {
        let Some(entries) = self.map(node, ptr, &[], None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (tag, kpos, v) in entries {
            let p = format!("{ptr}/{}", escape(tag));
            if let Err(m) = crate::domain::tag::Tag::parse(tag) {
                self.err(&p, *kpos, None, m);
                continue;
            }
            let owners = self.strs(v, &p, None);
            let owners = self.principals(owners, None);
            for o in &owners {
                if !matches!(
                    o.value,
                    Principal::User(_) | Principal::Group(_) | Principal::Tag(_)
                ) {
                    let m = format!(
                        "'{}' cannot own a tag: owners are user:, group: or tag:",
                        o.value
                    );
                    self.err(&o.pointer, o.pos, None, m);
                }
            }
            out.push(TagOwner {
                tag: At::new(tag.clone(), p, *kpos),
                owners,
            });
        }
        out
    }

    fn hosts(&mut self, node: &Node, ptr: &str) -> Vec<HostAlias> {
        let Some(entries) = self.map(node, ptr, &[], None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, kpos, v) in entries {
            let p = format!("{ptr}/{}", escape(name));
            if !syntax::alias_name_ok(name) {
                let m = format!("'{name}' is not a host alias name: use a-z, 0-9, '-', '_', '.'");
                self.err(&p, *kpos, None, m);
                continue;
            }
            let Some(text) = self.scalar(v, &p, None) else {
                continue;
            };
            match syntax::cidr(&text) {
                Ok(net) => out.push(HostAlias {
                    name: At::new(name.clone(), p, *kpos),
                    net,
                }),
                Err(m) => self.err(&p, v.pos, None, m),
            }
        }
        out
    }

    fn version(&mut self, node: &Node, ptr: &str) -> Option<Version> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(i) => i.to_string(),
            _ => {
                // 14.0 unquoted is the float 14: its digits are gone before we see them.
                self.err(
                    ptr,
                    node.pos,
                    None,
                    "write versions as strings, e.g. \"14.0\"".into(),
                );
                return None;
            }
        };
        let v = Version::parse(&text);
        if v.is_none() {
            self.err(
                ptr,
                node.pos,
                None,
                format!("'{text}' is not a version like 1.4.0"),
            );
        }
        v
    }

    fn flag(&mut self, node: &Node, ptr: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.err(ptr, node.pos, None, "expected true or false".into());
                None
            }
        }
    }

    fn postures(&mut self, node: &Node, ptr: &str) -> Vec<Posture> {
        let Some(entries) = self.map(node, ptr, &[], None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, kpos, v) in entries {
            let p = format!("{ptr}/{}", escape(name));
            let mut posture = Posture {
                name: At::new(name.clone(), p.clone(), *kpos),
                ..Posture::default()
            };
            for (key, _, sig) in self.map(v, &p, POSTURE, None).unwrap_or_default() {
                let sp = format!("{p}/{key}");
                match key.as_str() {
                    "min_os_version" => {
                        for (os, _, ver) in self.map(sig, &sp, &[], None).unwrap_or_default() {
                            let op = format!("{sp}/{}", escape(os));
                            if let Some(ver) = self.version(ver, &op) {
                                posture.min_os_version.insert(os.to_lowercase(), ver);
                            }
                        }
                    }
                    "min_client_version" => posture.min_client_version = self.version(sig, &sp),
                    "disk_encrypted" => posture.disk_encrypted = self.flag(sig, &sp),
                    "firewall" => posture.firewall = self.flag(sig, &sp),
                    "screen_lock" => posture.screen_lock = self.flag(sig, &sp),
                    _ => {}
                }
            }
            out.push(posture);
        }
        out
    }

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

    fn rule(&mut self, node: &Node, ptr: &str) -> Option<Rule> {
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

    fn test(&mut self, node: &Node, ptr: &str) -> Option<PolicyTest> {
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
