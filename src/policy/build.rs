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
pub(super) const RULE: &[&str] = &["name", "action", "src", "dst", "proto", "ports", "posture"];
const POSTURE: &[&str] = &[
    "min_os_version",
    "min_client_version",
    "disk_encrypted",
    "firewall",
    "screen_lock",
];
pub(super) const TEST: &[&str] = &["name", "src", "proto", "accept", "deny"];

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
pub(super) struct Builder {
    pub(super) diags: Vec<Diagnostic>,
}

impl Builder {
    pub(super) fn err(&mut self, ptr: &str, pos: Pos, rule: Option<&str>, message: String) {
        self.diags.push(Diagnostic::error(
            ptr,
            pos,
            rule.map(str::to_owned),
            message,
        ));
    }

    /// The entries of a mapping; unknown and duplicate keys are reported, then skipped.
    pub(super) fn map<'n>(
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

    pub(super) fn list<T>(
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
    pub(super) fn scalar(&mut self, node: &Node, ptr: &str, rule: Option<&str>) -> Option<String> {
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
    pub(super) fn strs(&mut self, node: &Node, ptr: &str, rule: Option<&str>) -> Vec<At<String>> {
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

    pub(super) fn principals(
        &mut self,
        items: Vec<At<String>>,
        rule: Option<&str>,
    ) -> Vec<At<Principal>> {
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
                    Principal::User(_)
                        | Principal::Group(_)
                        | Principal::Tag(_)
                        | Principal::Token(_)
                ) {
                    let m = format!(
                        "'{}' cannot own a tag: owners are user:, group:, tag: or token:",
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
}
