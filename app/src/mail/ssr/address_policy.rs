//! Where Mailroom may connect to: the SMTP host, the OAuth token URL and the default relay are
//! typed by an admin (or an operator), so they must never lead the server to an address that
//! serves something else (SSRF). A name is resolved once, every address it resolves to is
//! checked, and the caller connects only to the checked addresses — resolving again at connect
//! time would let DNS answer differently the second time.
//!
//! Always refused, whatever MAILROOM_SMTP_ALLOWED_NETWORKS says: link-local (cloud metadata
//! services live there, and at fd00:ec2::254 on AWS), the unspecified address (0.0.0.0/8, ::),
//! multicast and broadcast. Loopback and private ranges are allowed unless an allow-list is set,
//! because a relay on the same host or network is the common case. IPv6 forms that carry an IPv4
//! address (mapped, compatible, NAT64) are judged by that IPv4 address: the kernel or a NAT64
//! gateway delivers them there.

use ipnet::IpNet;
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// Which addresses outbound connections may reach.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    /// `None`: every address that is not always refused.
    allowed: Option<Vec<IpNet>>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    NotAllowed,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::LinkLocal => "a link-local address (cloud metadata services live there)",
            Self::Unspecified => "the unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::NotAllowed => "outside MAILROOM_SMTP_ALLOWED_NETWORKS",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the host name does not resolve")]
    Dns,
    #[error("resolving the host name took too long")]
    Timeout,
    #[error("{address} is {refusal}")]
    Refused { address: IpAddr, refusal: Refusal },
}

/// The AWS instance metadata service over IPv6 (not link-local, so named explicitly).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl AddressPolicy {
    pub fn new(allowed: Option<Vec<IpNet>>) -> Self {
        Self { allowed }
    }

    /// Parses MAILROOM_SMTP_ALLOWED_NETWORKS: CIDRs separated by commas and/or spaces; a bare IP
    /// means that one address. A blank value is an error: an empty allow-list would refuse every
    /// host, which is never what setting the variable means.
    pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
        let networks = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!(
                            "MAILROOM_SMTP_ALLOWED_NETWORKS: '{entry}' is not a network (e.g. 10.0.0.0/8, fd00::/8) \
                             or an IP address"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if networks.is_empty() {
            return Err("MAILROOM_SMTP_ALLOWED_NETWORKS is set but lists no network; unset it to allow all".into());
        }
        Ok(networks)
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if let Some(refusal) = always_refused(ip).or_else(|| embedded.and_then(always_refused)) {
            return Err(refusal);
        }
        match &self.allowed {
            None => Ok(()),
            Some(networks) => {
                let inside = |candidate: &IpAddr| networks.iter().any(|net| net.contains(candidate));
                if inside(&ip) || embedded.as_ref().is_some_and(inside) { Ok(()) } else { Err(Refusal::NotAllowed) }
            }
        }
    }

    /// Resolves `host` (a DNS name or an IP literal, IPv6 possibly in brackets) within `limit`
    /// and checks every address: one refused address refuses the host, so a name cannot smuggle
    /// a metadata address in beside a good one. Connect only to the addresses returned.
    pub async fn resolve(&self, host: &str, port: u16, limit: Duration) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(limit, tokio::net::lookup_host((bare, port))).await {
                Err(_) => return Err(ResolveError::Timeout),
                Ok(Err(_)) => return Err(ResolveError::Dns),
                Ok(Ok(addresses)) => addresses.collect(),
            },
        };
        let mut checked: Vec<SocketAddr> = Vec::with_capacity(found.len());
        for address in found {
            self.check(address.ip()).map_err(|refusal| ResolveError::Refused { address: address.ip(), refusal })?;
            if !checked.contains(&address) {
                checked.push(address);
            }
        }
        if checked.is_empty() {
            return Err(ResolveError::Dns);
        }
        Ok(checked)
    }
}

fn always_refused(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => always_refused_v4(v4),
        IpAddr::V6(v6) => always_refused_v6(v6),
    }
}

fn always_refused_v4(ip: Ipv4Addr) -> Option<Refusal> {
    if ip.octets()[0] == 0 {
        Some(Refusal::Unspecified)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if ip.is_broadcast() {
        Some(Refusal::Broadcast)
    } else {
        None
    }
}

fn always_refused_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 || ip == AWS_METADATA_V6 {
        Some(Refusal::LinkLocal)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address delivers to: IPv4-mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, and the deprecated IPv4-compatible `::a.b.c.d` (but `::` and `::1` are
/// IPv6's own).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let compatible = segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback();
    (nat64 || compatible).then_some(low)
}

#[cfg(test)]
mod tests {
    use super::{AddressPolicy, Refusal, ResolveError};
    use std::{
        net::{IpAddr, SocketAddr},
        time::Duration,
    };

    const LIMIT: Duration = Duration::from_secs(10);

    fn ten_slash_eight() -> AddressPolicy {
        AddressPolicy::new(Some(AddressPolicy::parse_networks("10.0.0.0/8").unwrap()))
    }

    #[test]
    fn addresses_are_judged_by_the_table() {
        use Refusal::*;
        // (address, under the default policy, under allowed = 10.0.0.0/8)
        let table: &[(&str, Option<Refusal>, Option<Refusal>)] = &[
            // Link-local, cloud metadata included: refused even where allowed.
            ("169.254.169.254", Some(LinkLocal), Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal), Some(LinkLocal)),
            ("169.254.1.1", Some(LinkLocal), Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal), Some(LinkLocal)),
            ("febf:ffff::1", Some(LinkLocal), Some(LinkLocal)),
            ("fd00:ec2::254", Some(LinkLocal), Some(LinkLocal)),
            // IPv6 forms that carry an IPv4 address are judged by it.
            ("::ffff:169.254.169.254", Some(LinkLocal), Some(LinkLocal)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal), Some(LinkLocal)),
            ("::169.254.169.254", Some(LinkLocal), Some(LinkLocal)),
            ("::ffff:0.0.0.0", Some(Unspecified), Some(Unspecified)),
            ("::ffff:224.0.0.1", Some(Multicast), Some(Multicast)),
            ("64:ff9b::ffff:ffff", Some(Broadcast), Some(Broadcast)),
            ("::ffff:127.0.0.1", None, Some(NotAllowed)),
            ("::ffff:10.1.2.3", None, None),
            ("64:ff9b::a01:203", None, None),
            ("::10.1.2.3", None, None),
            // Unspecified: all of 0.0.0.0/8, and ::.
            ("0.0.0.0", Some(Unspecified), Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified), Some(Unspecified)),
            ("::", Some(Unspecified), Some(Unspecified)),
            // Multicast and broadcast.
            ("224.0.0.1", Some(Multicast), Some(Multicast)),
            ("239.255.255.250", Some(Multicast), Some(Multicast)),
            ("ff02::1", Some(Multicast), Some(Multicast)),
            ("255.255.255.255", Some(Broadcast), Some(Broadcast)),
            // Loopback and private ranges: allowed by default, not outside the allow-list.
            ("127.0.0.1", None, Some(NotAllowed)),
            ("127.8.9.10", None, Some(NotAllowed)),
            ("::1", None, Some(NotAllowed)),
            ("10.0.0.5", None, None),
            ("10.1.2.3", None, None),
            ("10.255.255.255", None, None),
            ("11.0.0.1", None, Some(NotAllowed)),
            ("192.168.1.1", None, Some(NotAllowed)),
            ("172.16.0.1", None, Some(NotAllowed)),
            ("100.64.0.1", None, Some(NotAllowed)),
            ("fd12::1", None, Some(NotAllowed)),
            // Public.
            ("8.8.8.8", None, Some(NotAllowed)),
            ("2001:db8::1", None, Some(NotAllowed)),
            ("2606:4700::1111", None, Some(NotAllowed)),
        ];
        let default = AddressPolicy::default();
        let allow_ten = ten_slash_eight();
        for (text, by_default, within_ten) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(default.check(ip).err(), *by_default, "{text} under the default policy");
            assert_eq!(allow_ten.check(ip).err(), *within_ten, "{text} with allowed = 10.0.0.0/8");
        }
    }

    #[test]
    fn an_allowed_ipv6_network_admits_mapped_addresses_by_either_form() {
        let policy = AddressPolicy::new(Some(AddressPolicy::parse_networks("::ffff:10.0.0.0/104").unwrap()));
        assert_eq!(policy.check("::ffff:10.9.9.9".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("10.9.9.9".parse().unwrap()), Err(Refusal::NotAllowed));
        assert_eq!(ten_slash_eight().check("::ffff:10.9.9.9".parse().unwrap()), Ok(()));
    }

    #[test]
    fn an_allowed_network_cannot_admit_what_is_always_refused() {
        let policy = AddressPolicy::new(Some(AddressPolicy::parse_networks("0.0.0.0/0 ::/0").unwrap()));
        assert_eq!(policy.check("169.254.169.254".parse().unwrap()), Err(Refusal::LinkLocal));
        assert_eq!(policy.check("fd00:ec2::254".parse().unwrap()), Err(Refusal::LinkLocal));
        assert_eq!(policy.check("8.8.8.8".parse().unwrap()), Ok(()));
    }

    #[test]
    fn networks_are_parsed_from_commas_and_spaces() {
        let networks =
            AddressPolicy::parse_networks(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8  ::1\t172.16.5.4/12 ").unwrap();
        let shown: Vec<String> = networks.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "::1/128", "172.16.0.0/12"]);
    }

    #[test]
    fn a_bad_network_entry_is_named() {
        for bad in ["10.0.0.0/33", "example.com", "10.0.0/8", "fd00::/129", "10.0.0.1/"] {
            let err = AddressPolicy::parse_networks(&format!("127.0.0.1/8, {bad}")).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn a_blank_network_list_is_refused() {
        assert!(AddressPolicy::parse_networks(" , ").is_err());
    }

    #[test]
    fn refusals_read_as_sentences() {
        let err = ResolveError::Refused { address: "169.254.169.254".parse().unwrap(), refusal: Refusal::LinkLocal };
        assert_eq!(err.to_string(), "169.254.169.254 is a link-local address (cloud metadata services live there)");
    }

    #[tokio::test]
    async fn localhost_resolves_and_is_allowed_by_default() {
        let found = AddressPolicy::default().resolve("localhost", 587, LIMIT).await.unwrap();
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 587), "{found:?}");
    }

    #[tokio::test]
    async fn localhost_is_refused_outside_the_allowed_networks() {
        let err = ten_slash_eight().resolve("localhost", 587, LIMIT).await.unwrap_err();
        assert!(
            matches!(err, ResolveError::Refused { refusal: Refusal::NotAllowed, address } if address.is_loopback())
        );
    }

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves() {
        let policy = AddressPolicy::default();
        let v6: SocketAddr = "[::1]:25".parse().unwrap();
        assert_eq!(policy.resolve("[::1]", 25, LIMIT).await.unwrap(), [v6]);
        assert_eq!(policy.resolve("::1", 25, LIMIT).await.unwrap(), [v6]);
        let v4: SocketAddr = "127.0.0.1:465".parse().unwrap();
        assert_eq!(policy.resolve("127.0.0.1", 465, LIMIT).await.unwrap(), [v4]);
    }

    #[tokio::test]
    async fn the_metadata_address_is_refused_as_a_literal() {
        for host in ["169.254.169.254", "[::ffff:169.254.169.254]", "[fd00:ec2::254]"] {
            let err = AddressPolicy::default().resolve(host, 80, LIMIT).await.unwrap_err();
            assert!(matches!(err, ResolveError::Refused { refusal: Refusal::LinkLocal, .. }), "{host}: {err:?}");
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_dns_error() {
        let err = AddressPolicy::default().resolve("no-such-host.invalid", 25, LIMIT).await.unwrap_err();
        assert_eq!(err, ResolveError::Dns);
    }
}
