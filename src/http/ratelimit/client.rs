//! Who an unauthenticated client is, for its buckets: its address, IPv6 aggregated by /64, and
//! behind a trusted reverse proxy the address that proxy forwarded.
//!
//! An IPv6 host usually holds a whole /64 (SLAAC, privacy addresses), so a bucket per /128
//! would give it 2^64 buckets. `X-Forwarded-For` is believed only when the connection comes
//! from a configured proxy: anyone else could write any address into it. The header is read
//! from the right, skipping trusted proxies; the first address that is not one is the client
//! (the left part is whatever the client sent, and may be forged).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` is believed. Empty (the default): none, and
/// every client is the address of its connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most address of `forwarded_for` (the `X-Forwarded-For` values, in order) that is
    /// not a trusted proxy. An entry that does not parse ends the walk at the last address
    /// known good; a chain of trusted proxies only gives its left-most one.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let entries = forwarded_for.flat_map(|v| v.split(',')).rev();
        for entry in entries {
            let Some(ip) = parse_entry(entry.trim()) else {
                return client;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                return client;
            }
        }
        client
    }
}

/// The name of a client's buckets: an IPv4 address as it is, an IPv6 address by its /64.
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

/// A `--trusted-proxy` value: a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    IpNet::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or a CIDR like 10.0.0.0/8"))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`) or in brackets.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    IpAddr::from_str(entry)
        .ok()
        .or_else(|| SocketAddr::from_str(entry).ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| Ipv6Addr::from_str(e).ok())
                .map(IpAddr::V6)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter()
                .map(|n| parse_trusted_proxy(n).unwrap())
                .collect(),
        )
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_key_and_ipv4_ones_do_not() {
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(client_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_ne!(client_key(ip("192.0.2.1")), client_key(ip("192.0.2.2")));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_trusted() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("203.0.113.9"), ["198.51.100.1"].into_iter()),
            ip("203.0.113.9")
        );
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), ["198.51.100.1"].into_iter()),
            ip("203.0.113.9"),
            "a client that is not a proxy cannot name another address"
        );
        assert_eq!(
            trusted.client(ip("10.1.2.3"), ["198.51.100.1"].into_iter()),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "fd00::/8", "192.0.2.7"]);
        // The client wrote "1.1.1.1" itself; the first proxy appended the address it saw.
        let xff = ["1.1.1.1, 198.51.100.1", "192.0.2.7"];
        assert_eq!(
            trusted.client(ip("10.0.0.1"), xff.into_iter()),
            ip("198.51.100.1")
        );
        // Only trusted hops: the left-most is as close to the client as we can tell.
        assert_eq!(
            trusted.client(ip("10.0.0.1"), ["10.9.9.9, 192.0.2.7"].into_iter()),
            ip("10.9.9.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.1"), std::iter::empty()),
            ip("10.0.0.1")
        );
        // Garbage ends the walk at the last good hop.
        assert_eq!(
            trusted.client(
                ip("10.0.0.1"),
                ["198.51.100.1, nonsense, 192.0.2.7"].into_iter()
            ),
            ip("192.0.2.7")
        );
        // Ports and brackets are accepted.
        assert_eq!(
            trusted.client(ip("fd00::1"), ["[2001:db8::5]:443"].into_iter()),
            ip("2001:db8::5")
        );
        assert_eq!(
            trusted.client(ip("fd00::1"), ["198.51.100.3:5678"].into_iter()),
            ip("198.51.100.3")
        );
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs_or_single_addresses() {
        assert_eq!(
            parse_trusted_proxy("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_proxy("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(parse_trusted_proxy(" ::1 ").unwrap().to_string(), "::1/128");
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("proxy.local").is_err());
        // Host bits are ignored: 10.1.2.3/8 is 10.0.0.0/8.
        assert!(proxies(&["10.1.2.3/8"]).contains(ip("10.200.0.1")));
    }
}
