//! The client's address behind a reverse proxy (`[http] trusted_proxies`).
//!
//! OnAir leaves TLS to a proxy in front, and then every TCP peer is the proxy. A
//! request from a listed proxy names its client in `X-Forwarded-For` (each proxy
//! appends the address it received from) or, failing that, `X-Real-IP`. Only the
//! listed proxies are believed, and only as far as they go: the chain is read from
//! the right, past every listed proxy, and the first address not listed is the
//! client — whatever a client wrote further left is its own claim and is ignored.
//! From any other peer the headers are ignored and the peer is the client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The proxies whose forwarding headers are believed: addresses or CIDR blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `["10.0.0.0/8", "127.0.0.1", "::1"]`; an entry that is neither an
    /// address nor `address/prefix` is an error naming it.
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::with_capacity(list.len());
        for entry in list {
            let bad = || format!("http.trusted_proxies: {entry:?} is not an IP address or CIDR block");
            let (addr, prefix) = match entry.trim().split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
                None => (entry.trim(), None),
            };
            let ip = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = prefix.unwrap_or(max);
            if prefix > max {
                return Err(bad());
            }
            nets.push((ip, prefix));
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether `ip` is a listed proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, prefix)| same_prefix(net, ip, prefix))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if chain.is_empty() {
            return headers.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(parse_hop).unwrap_or(peer);
        }
        let mut client = peer;
        for hop in chain.iter().rev() {
            // A hop that is not an address ends the chain we can follow: the last
            // address we reached is as far as the proxies vouch for.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: an address, or an address with a port
/// (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
        .map(|ip| ip.to_canonical())
}

/// Whether the first `prefix` bits of `a` and `b` are equal (and both are of one family).
fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    let (a, b, bits) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128u32),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn addresses_and_blocks_are_parsed_and_matched() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1", "fd00::/8", "::ffff:192.168.1.1"]);
        assert!(t.contains(ip("10.200.3.4")) && t.contains(ip("127.0.0.1")) && t.contains(ip("fd12::1")));
        assert!(t.contains(ip("192.168.1.1")), "an IPv4-mapped entry matches the IPv4 peer");
        assert!(t.contains(ip("::ffff:10.0.0.1")), "an IPv4-mapped peer matches an IPv4 block");
        assert!(!t.contains(ip("11.0.0.1")) && !t.contains(ip("127.0.0.2")) && !t.contains(ip("fe80::1")));
        assert!(trusted(&["0.0.0.0/0"]).contains(ip("8.8.8.8")));
        assert!(!trusted(&["0.0.0.0/0"]).contains(ip("::1")), "a v4 block does not hold v6 addresses");
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            let err = TrustedProxies::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains("trusted_proxies"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_a_listed_proxy_is_believed_and_only_as_far_as_the_proxies_go() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy = ip("127.0.0.1");
        // From a stranger, the headers are its own claim.
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(t.client_of(ip("198.51.100.7"), &spoofed), ip("198.51.100.7"));
        assert_eq!(TrustedProxies::default().client_of(proxy, &spoofed), proxy);
        // Through two proxies: the first address no proxy is listed for.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(t.client_of(proxy, &chain), ip("203.0.113.9"), "the client's own 1.1.1.1 is ignored");
        // Several header lines are one list, in order.
        let lines = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9:4711")]);
        assert_eq!(t.client_of(proxy, &lines), ip("203.0.113.9"));
        assert_eq!(t.client_of(proxy, &headers(&[("x-forwarded-for", "[2001:db8::5]:443")])), ip("2001:db8::5"));
        // Only proxies in the chain: the farthest one.
        assert_eq!(t.client_of(proxy, &headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")])), ip("10.9.9.9"));
        // Garbage ends the chain at the last address reached.
        assert_eq!(t.client_of(proxy, &headers(&[("x-forwarded-for", "garbage, 10.1.1.1")])), ip("10.1.1.1"));
        assert_eq!(t.client_of(proxy, &headers(&[("x-forwarded-for", "unknown")])), proxy);
        // X-Real-IP when there is no X-Forwarded-For; nothing: the proxy itself.
        assert_eq!(t.client_of(proxy, &headers(&[("x-real-ip", "203.0.113.10")])), ip("203.0.113.10"));
        assert_eq!(t.client_of(proxy, &headers(&[("x-real-ip", "nope")])), proxy);
        assert_eq!(t.client_of(proxy, &HeaderMap::new()), proxy);
    }
}
