//! Who is calling: the peer address, or — behind a proxy listed in `MAILROOM_TRUSTED_PROXIES` —
//! the address the proxy saw, and the key that rate limits use for it.

use ipnet::IpNet;
use std::net::IpAddr;

/// The client of a request that arrived from `peer` with these `X-Forwarded-For` values (in
/// header order). The header is believed only while the hop that added it is a trusted proxy:
/// walking from the right, the first address that is not a trusted proxy is the client.
pub fn client_ip<'a>(peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let hops: Vec<&str> = forwarded_for.into_iter().flat_map(|value| value.split(',')).map(str::trim).collect();
    let mut client = canonical(peer);
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = canonical(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The rate-limit key of a client: the IPv4 address, or the /64 an IPv6 address belongs to
/// (one subscriber usually holds a whole /64 and can rotate addresses inside it).
pub fn limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(peer, ["198.51.100.1"], &[]), peer);
        assert_eq!(client_ip(peer, ["198.51.100.1"], &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        // The client claims to be 1.1.1.1; the proxy appended the address it really saw.
        assert_eq!(client_ip(proxy, ["1.1.1.1, 198.51.100.7"], &trusted).to_string(), "198.51.100.7");
        assert_eq!(client_ip(proxy, ["1.1.1.1", "198.51.100.7, 10.0.0.3"], &trusted).to_string(), "198.51.100.7");
        // Only proxies in the chain: the leftmost is the best we know.
        assert_eq!(client_ip(proxy, ["10.0.0.4"], &trusted).to_string(), "10.0.0.4");
        // Garbage stops the walk at the last good hop.
        assert_eq!(client_ip(proxy, ["nonsense, 10.0.0.5"], &trusted).to_string(), "10.0.0.5");
        assert_eq!(client_ip(proxy, [], &trusted), proxy);
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64_and_mapped_ipv4_is_ipv4() {
        let a = limit_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = limit_key("2001:db8:1:2:ffff:1:2:3".parse().unwrap());
        let c = limit_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
