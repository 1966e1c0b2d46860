//! The typed policy (DESIGN §3.4): what [`super::parse`] builds and what lint and the
//! evaluator read. Every name a person wrote keeps its place in the file ([`At`]), so a problem
//! found long after parsing can still point at the line and column that caused it.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

/// A place in the policy text: 1-based line and column (characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A value with the JSON pointer and position of the node it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub pointer: String,
    pub pos: Pos,
}

impl<T> At<T> {
    pub fn new(value: T, pointer: impl Into<String>, pos: Pos) -> At<T> {
        At {
            value,
            pointer: pointer.into(),
            pos,
        }
    }
}

/// A whole policy file. Sections keep the order they were written in, so lint output and
/// "the first rule that covers this one" follow the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub version: u32,
    pub tag_owners: Vec<TagOwner>,
    pub hosts: Vec<HostAlias>,
    pub postures: Vec<Posture>,
    /// The postures a rule's sources must pass when the rule names none of its own.
    pub default_posture: Vec<At<String>>,
    pub rules: Vec<Rule>,
    pub tests: Vec<PolicyTest>,
}

impl Policy {
    pub fn host(&self, name: &str) -> Option<&HostAlias> {
        self.hosts.iter().find(|h| h.name.value == name)
    }

    pub fn posture(&self, name: &str) -> Option<&Posture> {
        self.postures.iter().find(|p| p.name.value == name)
    }

    /// The postures a rule's sources must pass: its own list, or the default one.
    pub fn required_postures<'a>(&'a self, rule: &'a Rule) -> &'a [At<String>] {
        rule.posture.as_deref().unwrap_or(&self.default_posture)
    }
}

/// `tag:x: [group:sre, user:a@b]`: who may apply the tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TagOwner {
    /// The tag, with its `tag:` prefix.
    pub tag: At<String>,
    pub owners: Vec<At<Principal>>,
}

/// `hosts: { db-subnet: 10.20.0.0/16 }`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAlias {
    pub name: At<String>,
    pub net: IpNet,
}

/// A named set of device requirements, all of which must hold (AND, unlike Tailscale's
/// per-OS default lists).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Posture {
    pub name: At<String>,
    /// Per operating system (`linux`, `macos`, `windows`…); a device whose OS is not listed
    /// passes this signal.
    pub min_os_version: BTreeMap<String, Version>,
    pub min_client_version: Option<Version>,
    pub disk_encrypted: Option<bool>,
    pub firewall: Option<bool>,
    pub screen_lock: Option<bool>,
}

impl Default for At<String> {
    fn default() -> Self {
        At::new(String::new(), "", Pos::default())
    }
}

/// A dotted version compared numerically (`1.10.0` > `1.9.2`), never as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// `14`, `6.1`, `1.4.0`; a suffix after `-` or `+` (`1.4.0-rc1`) is ignored.
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.trim().split(['-', '+']).next().unwrap_or("");
        let parts: Option<Vec<u32>> = core.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(|mut p| {
            // 14 and 14.0 are the same version.
            while p.len() > 1 && p.last() == Some(&0) {
                p.pop();
            }
            Version(p)
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Deny,
}

/// A named accept or deny rule. Names are how lint, diffs, audit events and test failures
/// refer to a rule: line numbers shift, names don't.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: At<String>,
    pub action: Action,
    pub src: Vec<At<Principal>>,
    pub dst: Vec<At<Principal>>,
    /// Never empty: an absent or empty `proto` is tcp, udp and icmp.
    pub protos: Vec<Proto>,
    /// Never empty: an absent `ports` is every port. ICMP has no ports and ignores them.
    pub ports: Vec<At<PortRange>>,
    /// `None`: the policy's `default_posture` applies.
    pub posture: Option<Vec<At<String>>>,
    /// Where the rule itself starts (`/rules/3`).
    pub pointer: String,
    pub pos: Pos,
}

/// Who a rule is about, on either side.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// `*`: every device.
    Any,
    /// `user:alice@example.com`: the person's untagged devices (by email or user id).
    User(String),
    /// `group:sre`: its members' untagged devices.
    Group(String),
    /// `tag:production`, stored with its prefix.
    Tag(String),
    /// `host:db-subnet`: the devices whose address is in the alias's prefix.
    Host(String),
    /// `10.0.0.0/8` or a single address.
    Cidr(IpNet),
    /// `autogroup:member`: devices owned by a person (untagged).
    Member,
    /// `autogroup:tagged`: devices with at least one tag.
    Tagged,
    /// `autogroup:self`: the source's owner's own untagged devices; destination only.
    SelfDevices,
    /// `token:<id>`: an API token, only as a tag owner (automation gets exactly its tags).
    /// It selects no device.
    Token(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Any => f.write_str("*"),
            Principal::User(u) => write!(f, "user:{u}"),
            Principal::Group(g) => write!(f, "group:{g}"),
            Principal::Tag(t) => f.write_str(t),
            Principal::Host(h) => write!(f, "host:{h}"),
            Principal::Cidr(n) => write!(f, "{n}"),
            Principal::Member => f.write_str("autogroup:member"),
            Principal::Tagged => f.write_str("autogroup:tagged"),
            Principal::SelfDevices => f.write_str("autogroup:self"),
            Principal::Token(t) => write!(f, "token:{t}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Icmp];

    pub fn has_ports(self) -> bool {
        !matches!(self, Proto::Icmp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        })
    }
}

/// An inclusive port range, `lo <= hi`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 1, hi: 65535 };

    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ALL {
            f.write_str("*")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// A policy test: every device of `src` must reach each `accept` target and none may reach
/// any `deny` target.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTest {
    pub name: At<String>,
    pub src: At<Principal>,
    /// Empty: tcp, udp or icmp (accept if one passes; deny only if all are blocked).
    pub protos: Vec<Proto>,
    pub accept: Vec<At<Target>>,
    pub deny: Vec<At<Target>>,
    pub pointer: String,
    pub pos: Pos,
}

/// A test destination, `tag:production:22`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub dst: Principal,
    pub port: u16,
}
