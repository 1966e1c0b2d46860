//! The small languages inside policy strings: principals (`group:sre`), ports (`22`,
//! `1000-2000`, `*`), protocols, and the `"tag:x:22,443"` destination shorthand. Each parser
//! returns a message a person can act on; none panics.

use ipnet::IpNet;

use super::model::{PortRange, Principal, Proto};

/// Parse one principal. `autogroup:self` parses here; that it is a destination only is a
/// lint rule, so the message can say where it was found.
pub fn principal(s: &str) -> Result<Principal, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(Principal::Any);
    }
    if let Some(name) = s.strip_prefix("user:") {
        return if name.is_empty() || name.contains(char::is_whitespace) {
            Err(format!(
                "'{s}' is not a user: expected 'user:' and an email or user id"
            ))
        } else {
            Ok(Principal::User(name.to_owned()))
        };
    }
    if let Some(name) = s.strip_prefix("group:") {
        return if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
            Err(format!(
                "'{s}' is not a group: expected 'group:' and a group name"
            ))
        } else {
            Ok(Principal::Group(name.to_owned()))
        };
    }
    if s.starts_with("tag:") {
        return crate::domain::tag::Tag::parse(s).map(|_| Principal::Tag(s.to_owned()));
    }
    if let Some(name) = s.strip_prefix("host:") {
        return if alias_name_ok(name) {
            Ok(Principal::Host(name.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a host alias: expected 'host:' and a name of a-z, 0-9, '-', '_', '.'"
            ))
        };
    }
    if let Some(id) = s.strip_prefix("token:") {
        return if id.is_empty() || id.contains(char::is_whitespace) {
            Err(format!(
                "'{s}' is not a token: expected 'token:' and a token id"
            ))
        } else {
            Ok(Principal::Token(id.to_owned()))
        };
    }
    if let Some(which) = s.strip_prefix("autogroup:") {
        return match which {
            "member" => Ok(Principal::Member),
            "tagged" => Ok(Principal::Tagged),
            "self" => Ok(Principal::SelfDevices),
            _ => Err(format!(
                "'{s}' is not an autogroup: expected autogroup:member, autogroup:tagged or autogroup:self"
            )),
        };
    }
    cidr(s).map(Principal::Cidr).map_err(|_| {
        format!(
            "'{s}' is not a principal: expected *, user:, group:, tag:, host:, autogroup: or a CIDR"
        )
    })
}

/// A prefix (`10.0.0.0/8`) or a single address (`10.0.0.1`, taken as /32 or /128).
pub fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        // 10.0.0.1/8 names a host bits pattern nobody means; keep the network.
        return Ok(net.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("'{s}' is not a CIDR: expected an address or address/prefix"))
}

/// A host alias name, as written in `hosts:` and after `host:`.
pub fn alias_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// One port item: `22`, `1000-2000` or `*`. Port 0 and inverted ranges are refused.
pub fn port_range(s: &str) -> Result<PortRange, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(PortRange::ALL);
    }
    let one = |p: &str| -> Result<u16, String> {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            Ok(_) => Err(format!("port '{p}' is out of range: ports are 1 to 65535")),
            Err(_) => Err(format!(
                "'{s}' is not a port: expected a number, a range like 1000-2000, or *"
            )),
        }
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (one(lo)?, one(hi)?);
            if lo > hi {
                Err(format!("range '{s}' is inverted: write {hi}-{lo}"))
            } else {
                Ok(PortRange { lo, hi })
            }
        }
        None => one(s).map(|p| PortRange { lo: p, hi: p }),
    }
}

/// A protocol name. Tailscale also takes numbers and sctp/gre/esp; we enforce only these three.
pub fn proto(s: &str) -> Result<Option<Proto>, String> {
    match s.trim() {
        "tcp" => Ok(Some(Proto::Tcp)),
        "udp" => Ok(Some(Proto::Udp)),
        "icmp" => Ok(Some(Proto::Icmp)),
        "any" | "" => Ok(None),
        other => Err(format!(
            "'{other}' is not a protocol: expected tcp, udp, icmp or any"
        )),
    }
}

/// Split `"tag:x:22,443"` into the principal and its port items. `None` when the string has
/// no port suffix (it is then a plain principal). IPv6 prefixes with ports are not supported
/// in the shorthand: their colons are ambiguous.
pub fn split_shorthand(s: &str) -> Option<(&str, Vec<&str>)> {
    let (head, tail) = s.trim().rsplit_once(':')?;
    let looks_like_ports = !tail.is_empty()
        && tail
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-' || b == b'*');
    // `tag:22` is a tag named 22 (then refused), not the principal `tag` on port 22.
    let head_is_principal = head == "*"
        || ["user:", "group:", "tag:", "host:", "autogroup:"]
            .iter()
            .any(|p| head.starts_with(p))
        || cidr(head).is_ok();
    (looks_like_ports && head_is_principal).then(|| (head, tail.split(',').collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorthand_splits_off_its_ports() {
        assert_eq!(
            split_shorthand("tag:x:22,443"),
            Some(("tag:x", vec!["22", "443"]))
        );
        assert_eq!(
            split_shorthand("10.0.0.0/8:1000-2000"),
            Some(("10.0.0.0/8", vec!["1000-2000"]))
        );
        assert_eq!(split_shorthand("*:*"), Some(("*", vec!["*"])));
        assert_eq!(split_shorthand("tag:x"), None);
        assert_eq!(split_shorthand("tag:22"), None);
    }

    #[test]
    fn ports_refuse_zero_overflow_and_inverted_ranges() {
        assert!(port_range("0").is_err());
        assert!(port_range("65536").is_err());
        assert!(port_range("20-10").is_err());
        assert!(port_range("x").is_err());
        assert_eq!(port_range("10-20"), Ok(PortRange { lo: 10, hi: 20 }));
        assert_eq!(port_range("*"), Ok(PortRange::ALL));
    }

    #[test]
    fn principals_parse_every_kind() {
        assert_eq!(principal("*"), Ok(Principal::Any));
        assert_eq!(principal("group:sre"), Ok(Principal::Group("sre".into())));
        assert_eq!(principal("tag:prod"), Ok(Principal::Tag("tag:prod".into())));
        assert_eq!(principal("autogroup:self"), Ok(Principal::SelfDevices));
        assert!(matches!(principal("10.1.2.3"), Ok(Principal::Cidr(_))));
        assert!(principal("tag:Prod").is_err());
        assert!(principal("autogroup:admin").is_err());
        assert!(principal("bogus").is_err());
    }
}
