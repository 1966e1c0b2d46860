//! Token scopes: `read`, `write`, per endpoint group (`devices:read`, …), `audit:read`,
//! `events:read`, `tokens:write`, `scim`.
//!
//! `write` allows everything and implies `read`; `read` allows every GET; `X:write` implies
//! `X:read`.

use std::fmt;

/// An endpoint group that per-group scopes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Devices,
    Users,
    Policy,
    Keys,
    Posture,
    Audit,
    Events,
    Webhooks,
    Tokens,
    Scim,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Devices => "devices",
            Group::Users => "users",
            Group::Policy => "policy",
            Group::Keys => "keys",
            Group::Posture => "posture",
            Group::Audit => "audit",
            Group::Events => "events",
            Group::Webhooks => "webhooks",
            Group::Tokens => "tokens",
            Group::Scim => "scim",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// What an endpoint needs: access to a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub group: Group,
    pub access: Access,
}

impl Need {
    pub const fn read(group: Group) -> Need {
        Need {
            group,
            access: Access::Read,
        }
    }

    pub const fn write(group: Group) -> Need {
        Need {
            group,
            access: Access::Write,
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.group, self.access) {
            (Group::Scim, _) => f.write_str("scim"),
            (g, Access::Read) => write!(f, "{}:read", g.name()),
            (g, Access::Write) => write!(f, "{}:write", g.name()),
        }
    }
}

/// One granted scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Read,
    Write,
    Group(Group, Access),
}

/// Every scope string a token may carry.
pub const ALL: &[&str] = &[
    "read",
    "write",
    "devices:read",
    "devices:write",
    "users:read",
    "users:write",
    "policy:read",
    "policy:write",
    "keys:read",
    "keys:write",
    "posture:read",
    "posture:write",
    "audit:read",
    "events:read",
    "webhooks:read",
    "webhooks:write",
    "tokens:write",
    "scim",
];

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        let group = |name: &str| match name {
            "devices" => Some(Group::Devices),
            "users" => Some(Group::Users),
            "policy" => Some(Group::Policy),
            "keys" => Some(Group::Keys),
            "posture" => Some(Group::Posture),
            "webhooks" => Some(Group::Webhooks),
            _ => None,
        };
        let parsed = match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "audit:read" => Some(Scope::Group(Group::Audit, Access::Read)),
            "events:read" => Some(Scope::Group(Group::Events, Access::Read)),
            "tokens:write" => Some(Scope::Group(Group::Tokens, Access::Write)),
            "scim" => Some(Scope::Group(Group::Scim, Access::Write)),
            other => other.split_once(':').and_then(|(g, a)| {
                let access = match a {
                    "read" => Access::Read,
                    "write" => Access::Write,
                    _ => return None,
                };
                group(g).map(|g| Scope::Group(g, access))
            }),
        };
        parsed.ok_or_else(|| {
            format!(
                "unknown scope '{}'; allowed: {}",
                super::text::echo(s),
                ALL.join(", ")
            )
        })
    }

    /// Whether this scope alone satisfies `need`.
    pub fn allows(self, need: Need) -> bool {
        match self {
            Scope::Write => true,
            Scope::Read => need.access == Access::Read && need.group != Group::Scim,
            Scope::Group(g, a) => {
                g == need.group && (a == need.access || a == Access::Write)
                    // tokens:write lets its holder see the tokens it manages.
                    || (g == Group::Tokens && need.group == Group::Tokens)
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Read => f.write_str("read"),
            Scope::Write => f.write_str("write"),
            Scope::Group(g, a) => Need {
                group: *g,
                access: *a,
            }
            .fmt(f),
        }
    }
}

/// The scopes of one token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(pub Vec<Scope>);

impl Scopes {
    /// Parses and normalizes (sorted, deduplicated) scope strings; empty is an error.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Scopes, String> {
        if items.is_empty() {
            return Err("at least one scope is required".into());
        }
        let mut out = Vec::with_capacity(items.len());
        for s in items {
            let scope = Scope::parse(s.as_ref())?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        out.sort_by_key(|s| s.to_string());
        Ok(Scopes(out))
    }

    pub fn allows(&self, need: Need) -> bool {
        self.0.iter().any(|s| s.allows(need))
    }

    /// True if every scope in `other` is allowed by these: a token may only mint tokens no
    /// more powerful than itself.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|s| match s {
            Scope::Write => self.0.contains(&Scope::Write),
            Scope::Read => self.0.contains(&Scope::Write) || self.0.contains(&Scope::Read),
            Scope::Group(g, a) => self.allows(Need {
                group: *g,
                access: *a,
            }),
        })
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scope_parses_and_prints_back() {
        for s in ALL {
            assert_eq!(Scope::parse(s).unwrap().to_string(), *s);
        }
        assert!(Scope::parse("devices:admin").is_err());
        assert!(Scope::parse("tokens:read").is_err());
        assert!(Scope::parse("").is_err());
    }

    #[test]
    fn write_implies_read_and_groups_stay_in_their_lane() {
        let dev_w = Scopes::parse(&["devices:write"]).unwrap();
        assert!(dev_w.allows(Need::read(Group::Devices)));
        assert!(dev_w.allows(Need::write(Group::Devices)));
        assert!(!dev_w.allows(Need::read(Group::Users)));
        let read = Scopes::parse(&["read"]).unwrap();
        assert!(read.allows(Need::read(Group::Audit)));
        assert!(!read.allows(Need::write(Group::Devices)));
        assert!(!read.allows(Need::write(Group::Scim)));
        let write = Scopes::parse(&["write"]).unwrap();
        assert!(write.allows(Need::write(Group::Tokens)));
    }

    #[test]
    fn a_token_cannot_mint_a_more_powerful_one() {
        let dev_w = Scopes::parse(&["devices:write", "tokens:write"]).unwrap();
        assert!(dev_w.covers(&Scopes::parse(&["devices:read"]).unwrap()));
        assert!(!dev_w.covers(&Scopes::parse(&["read"]).unwrap()));
        assert!(!dev_w.covers(&Scopes::parse(&["write"]).unwrap()));
        let read = Scopes::parse(&["read", "tokens:write"]).unwrap();
        assert!(read.covers(&Scopes::parse(&["audit:read"]).unwrap()));
        assert!(!read.covers(&Scopes::parse(&["keys:write"]).unwrap()));
    }
}
