//! Where a webhook may send: the SSRF guard and the one HTTP client deliveries use.
//!
//! A URL is checked when it is stored, but that check alone is beaten by DNS rebinding (the
//! name answers differently later), so the client's resolver checks every answer again at
//! connect time. IP-literal URLs bypass resolvers entirely, so [`Egress::check_literal`] must run
//! before each attempt. Operators open holes with `--webhook-allow-cidr`; an allowed CIDR
//! overrides every refusal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// How long a URL's name may take to resolve when it is stored.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest URL a webhook may have, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The SSRF policy: the built-in refusals minus the operator's allowed CIDRs.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allow: Vec<IpNet>,
}

/// Why a destination is refused. Messages name the address and the reason, never the whole URL
/// (its query may hold a receiver's token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "{ip} is {} {reason} address; allow it with --webhook-allow-cidr",
        article(reason)
    )]
    Address { ip: IpAddr, reason: &'static str },
    #[error(
        "{host} resolves to {} {reason} address; allow it with --webhook-allow-cidr",
        article(reason)
    )]
    Resolved {
        host: String,
        ip: IpAddr,
        reason: &'static str,
    },
    #[error("{host} does not resolve: {error}")]
    Unresolved { host: String, error: String },
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("the scheme must be http or https, not {0}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry a user name or password")]
    UserInfo,
    #[error("the URL is {0} bytes long; the limit is 2048")]
    TooLong(usize),
    #[error("not a URL: {0}")]
    Invalid(String),
}

impl Egress {
    pub fn new(allow: Vec<IpNet>) -> Egress {
        Egress { allow }
    }

    /// Why `ip` may not be a destination (None: it may). Allowed CIDRs override every refusal.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        match ip {
            IpAddr::V4(v4) => v4_refusal(v4),
            // Mapped and NAT64 addresses reach the IPv4 host they embed, so that host decides,
            // allowed CIDRs included.
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => self.refusal(IpAddr::V4(v4)),
                None => v6_refusal(v6),
            },
        }
    }

    /// Checks a destination URL before it is stored: scheme http or https, a host, no userinfo,
    /// at most 2048 bytes; an IP-literal host is checked now; a name is resolved and refused if
    /// any address is refused, or if it does not resolve.
    pub async fn check_url(&self, url: &str) -> Result<url::Url, Refused> {
        if url.len() > MAX_URL_LEN {
            return Err(Refused::TooLong(url.len()));
        }
        let parsed = url::Url::parse(url).map_err(|e| Refused::Invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Refused::Scheme(parsed.scheme().to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Refused::UserInfo);
        }
        match parsed.host() {
            None => return Err(Refused::NoHost),
            Some(url::Host::Domain(name)) => {
                let port = parsed.port_or_known_default().unwrap_or(80);
                // A name server that does not answer must not hold the request for long.
                let lookup = tokio::net::lookup_host((name, port));
                let addrs = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Ok(found) => found.map_err(|e| Refused::Unresolved {
                        host: name.to_owned(),
                        error: e.to_string(),
                    })?,
                    Err(_) => {
                        return Err(Refused::Unresolved {
                            host: name.to_owned(),
                            error: "no answer within 3 s".into(),
                        });
                    }
                };
                self.check_resolved(name, addrs.map(|a| a.ip()))?;
            }
            Some(_) => self.check_literal(&parsed)?,
        }
        Ok(parsed)
    }

    /// The client every delivery uses: no redirects, no proxy (a proxy would resolve names
    /// beyond the guard), connect timeout 5 s, total timeout `timeout`, user agent
    /// `QuickZTNA-Webhooks/<version>`, and a resolver that refuses a name if any address it
    /// resolves to is refused.
    pub fn client(self: &Arc<Self>, version: &str, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .user_agent(format!("QuickZTNA-Webhooks/{version}"))
            .dns_resolver(Arc::new(GuardedResolver {
                egress: Arc::clone(self),
            }))
            .build()
            // Fails only if the TLS backend cannot start, which no request could survive either.
            .expect("the webhook HTTP client builds")
    }

    /// Checks an IP-literal host again right before each attempt (no DNS involved); a named
    /// host passes here, since the client's resolver checks it.
    pub fn check_literal(&self, url: &url::Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(Refused::NoHost),
        };
        match self.refusal(ip) {
            Some(reason) => Err(Refused::Address { ip, reason }),
            None => Ok(()),
        }
    }

    /// Every address must pass: a name that mixes a public address with a private one would
    /// otherwise reach the private one whenever the client happens to try it.
    fn check_resolved(
        &self,
        host: &str,
        addrs: impl Iterator<Item = IpAddr>,
    ) -> Result<(), Refused> {
        let mut any = false;
        for ip in addrs {
            any = true;
            if let Some(reason) = self.refusal(ip) {
                return Err(Refused::Resolved {
                    host: host.to_owned(),
                    ip,
                    reason,
                });
            }
        }
        if any {
            Ok(())
        } else {
            Err(Refused::NoAddress(host.to_owned()))
        }
    }
}

/// The resolver of [`Egress::client`]: the system's answers, each checked at connect time.
struct GuardedResolver {
    egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = Arc::clone(&self.egress);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Refused::Unresolved {
                    host: host.clone(),
                    error: e.to_string(),
                })?
                .collect();
            egress.check_resolved(&host, addrs.iter().map(SocketAddr::ip))?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn article(reason: &str) -> &'static str {
    match reason.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The IPv4 address a v4-mapped (`::ffff:0:0/96`) or NAT64 (`64:ff9b::/96`) address reaches.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || nat64).then(|| Ipv4Addr::from(u128::from(v6) as u32))
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 blocks of the research note §3, most specific first (metadata inside link-local).
const V4_BLOCKS: &[([u8; 4], u8, &str)] = &[
    ([169, 254, 169, 254], 32, "cloud metadata"),
    ([100, 100, 100, 200], 32, "cloud metadata"), // Alibaba Cloud
    ([255, 255, 255, 255], 32, "broadcast"),
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "reserved"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "reserved (6to4 relay)"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

/// The IPv6 blocks of the research note §3, most specific first (`::/8` contains `64:ff9b:1::/48`).
const V6_BLOCKS: &[([u16; 8], u8, &str)] = &[
    ([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, "cloud metadata"), // AWS
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "reserved (local NAT64)",
    ),
    ([0, 0, 0, 0, 0, 0, 0, 0], 8, "reserved"), // v4-compatible, SIIT, ISATAP; holds 64:ff9b::/32
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "reserved (Teredo)"),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "reserved (6to4)"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "reserved (SRv6)"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "private"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    V4_BLOCKS
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    V6_BLOCKS
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn allowing(nets: &[&str]) -> Arc<Egress> {
        Arc::new(Egress::new(
            nets.iter().map(|n| n.parse().unwrap()).collect(),
        ))
    }

    #[test]
    fn refusals_follow_the_table() {
        let egress = Egress::default();
        let table: &[(&str, Option<&str>)] = &[
            ("0.0.0.0", Some("unspecified")),
            ("10.1.2.3", Some("private")),
            ("100.64.0.1", Some("shared (carrier-grade NAT)")),
            ("100.100.100.200", Some("cloud metadata")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.1.1", Some("link-local")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.0.0.8", Some("reserved")),
            ("192.0.2.1", Some("documentation")),
            ("192.88.99.1", Some("reserved (6to4 relay)")),
            ("192.168.1.1", Some("private")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.251", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("198.20.0.1", None),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::127.0.0.1", Some("reserved")),
            ("64:ff9b:1::1", Some("reserved (local NAT64)")),
            ("100::1", Some("discard-only")),
            ("2001:db8::1", Some("documentation")),
            ("2002:c000:204::1", Some("reserved (6to4)")),
            ("3fff::1", Some("documentation")),
            ("5f00::1", Some("reserved (SRv6)")),
            ("fc00::1", Some("private")),
            ("fd12:3456::1", Some("private")),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("fe80::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
        ];
        for (addr, want) in table {
            assert_eq!(egress.refusal(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn an_allowed_cidr_overrides_only_what_it_covers() {
        let egress = allowing(&["127.0.0.0/8"]);
        assert_eq!(egress.refusal(ip("127.0.0.1")), None);
        assert_eq!(egress.refusal(ip("::ffff:127.0.0.1")), None);
        assert_eq!(egress.refusal(ip("10.0.0.1")), Some("private"));
        assert_eq!(egress.refusal(ip("::1")), Some("loopback"));
        let metadata = allowing(&["169.254.169.254/32"]);
        assert_eq!(metadata.refusal(ip("169.254.169.254")), None);
        assert_eq!(metadata.refusal(ip("169.254.169.253")), Some("link-local"));
    }

    #[test]
    fn mapped_and_nat64_forms_are_checked_as_the_ipv4_they_reach() {
        let egress = Egress::default();
        for addr in ["::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "64:ff9b::7f00:1"] {
            assert_eq!(egress.refusal(ip(addr)), Some("loopback"), "{addr}");
        }
        for addr in ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            assert_eq!(egress.refusal(ip(addr)), Some("cloud metadata"), "{addr}");
        }
    }

    #[test]
    fn messages_name_the_address_and_the_reason() {
        let refused = Refused::Address {
            ip: ip("127.0.0.1"),
            reason: "loopback",
        };
        assert_eq!(
            refused.to_string(),
            "127.0.0.1 is a loopback address; allow it with --webhook-allow-cidr"
        );
        let refused = Refused::Resolved {
            host: "x.test".into(),
            ip: ip("0.0.0.0"),
            reason: "unspecified",
        };
        assert_eq!(
            refused.to_string(),
            "x.test resolves to an unspecified address; allow it with --webhook-allow-cidr"
        );
    }

    #[tokio::test]
    async fn check_url_refuses_bad_urls_and_private_destinations() {
        let egress = Egress::default();
        let refuse = |r: Result<url::Url, Refused>| r.unwrap_err();
        assert_eq!(
            refuse(egress.check_url("ftp://example.com/").await),
            Refused::Scheme("ftp".into())
        );
        assert_eq!(
            refuse(egress.check_url("https://user:pw@example.com/").await),
            Refused::UserInfo
        );
        assert!(
            !refuse(egress.check_url("https://user:hunter2@example.com/").await)
                .to_string()
                .contains("hunter2")
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            refuse(egress.check_url(&long).await),
            Refused::TooLong(_)
        ));
        assert!(matches!(
            refuse(egress.check_url("not a url").await),
            Refused::Invalid(_)
        ));
        let localhost = refuse(egress.check_url("http://localhost/").await);
        assert!(
            matches!(
                localhost,
                Refused::Resolved {
                    reason: "loopback",
                    ..
                }
            ),
            "{localhost}"
        );
        assert_eq!(
            refuse(egress.check_url("http://[::1]/").await),
            Refused::Address {
                ip: ip("::1"),
                reason: "loopback"
            }
        );
        assert_eq!(
            refuse(
                egress
                    .check_url("http://169.254.169.254/latest/meta-data/")
                    .await
            ),
            Refused::Address {
                ip: ip("169.254.169.254"),
                reason: "cloud metadata"
            }
        );
        // The URL parser turns the decimal form into the dotted one before the check sees it.
        assert_eq!(
            refuse(egress.check_url("http://2130706433/").await),
            Refused::Address {
                ip: ip("127.0.0.1"),
                reason: "loopback"
            }
        );
        // A name with no answer is refused too (checked without DNS: tests stay off the network).
        assert_eq!(
            egress.check_resolved("empty.test", std::iter::empty()),
            Err(Refused::NoAddress("empty.test".into()))
        );
        // One private answer among public ones refuses the name.
        let mixed = [ip("8.8.8.8"), ip("10.0.0.1")];
        assert_eq!(
            egress.check_resolved("mixed.test", mixed.into_iter()),
            Err(Refused::Resolved {
                host: "mixed.test".into(),
                ip: ip("10.0.0.1"),
                reason: "private"
            })
        );
    }

    #[tokio::test]
    async fn check_url_accepts_an_allowed_destination() {
        let egress = allowing(&["127.0.0.0/8"]);
        let url = egress.check_url("http://127.0.0.1:9/hook").await.unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/hook");
        assert_eq!(egress.check_literal(&url), Ok(()));
    }

    #[test]
    fn check_literal_refuses_a_literal_and_leaves_names_to_the_resolver() {
        let egress = Egress::default();
        let literal = url::Url::parse("http://[::ffff:10.0.0.1]:8080/").unwrap();
        assert_eq!(
            egress.check_literal(&literal),
            Err(Refused::Address {
                ip: ip("::ffff:10.0.0.1"),
                reason: "private"
            })
        );
        let named = url::Url::parse("https://localhost/").unwrap();
        assert_eq!(egress.check_literal(&named), Ok(()));
    }

    /// A receiver on 127.0.0.1 that answers every request with `response`.
    async fn receiver(response: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        port
    }

    const OK: &str = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";

    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    #[tokio::test]
    async fn the_client_refuses_a_name_that_resolves_to_loopback() {
        let port = receiver(OK).await;
        let client = allowing(&[]).client("test", Duration::from_secs(5));
        let err = client
            .post(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        let why = chain(&err);
        assert!(
            why.contains("localhost resolves to a loopback address"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn the_client_reaches_an_allowed_name() {
        let port = receiver(OK).await;
        // Some hosts also map localhost to ::1; allowing it keeps this test about 127/8.
        let client = allowing(&["127.0.0.0/8", "::1/128"]).client("test", Duration::from_secs(5));
        let response = client
            .post(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    #[tokio::test]
    async fn the_client_does_not_follow_redirects() {
        let port = receiver(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:9/elsewhere\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        let client = allowing(&["127.0.0.0/8"]).client("test", Duration::from_secs(5));
        let response = client
            .post(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 301);
    }
}
