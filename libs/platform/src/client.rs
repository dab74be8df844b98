//! Who the client is, for rate limits: one rule for every service.
//!
//! - [`TrustedProxies`]: the networks (CIDRs, or single addresses) whose `X-Forwarded-For` is
//!   believed. Behind the gateway, a service sees the gateway's address on every request; the
//!   gateway appends the real client address to `X-Forwarded-For`, and a service believes it
//!   only from a peer in this list (gateway pods move, so a network, not an address).
//! - [`rate_limit_key`]: the key a client's requests are counted under: an IPv4 address as
//!   is, an IPv6 address by its /64 (one subscriber usually holds a whole /64 and can pick any
//!   address in it, so a per-address key would give them 2^64 budgets).
//!
//! The gateway and identity both key their limits with these, so a client has the same
//! identity for both.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Networks whose `X-Forwarded-For` is believed. Empty: nobody's.
///
/// In settings, a list of strings: `["10.42.0.0/16", "127.0.0.1"]` (a bare address is the
/// network of that address alone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses each entry as a CIDR or a single address.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is neither an IP address nor a CIDR such as 10.0.0.0/8")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `peer` is one of the trusted proxies (an IPv4-mapped IPv6 peer counts as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.0.iter().any(|net| net.contains(&peer))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client address of a request: the peer, or, when the peer is a trusted proxy, the
    /// last address it appended to `X-Forwarded-For` (earlier entries are whatever the client
    /// claimed, and are never believed).
    pub fn client_addr(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
            .map_or_else(|| canonical(peer), canonical)
    }
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(&entries)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(proxies: TrustedProxies) -> Self {
        proxies.0.iter().map(ToString::to_string).collect()
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports) as the
/// IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The rate-limit key of a client address: IPv4 as is, IPv6 by its /64.
pub fn rate_limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn forwarded(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("header"));
        headers
    }

    #[test]
    fn cidrs_and_single_addresses_are_trusted() {
        let proxies =
            TrustedProxies::parse(&["10.42.0.0/16", "192.0.2.7", "fd00::/8"]).expect("valid");
        assert!(proxies.contains(ip("10.42.3.4")));
        assert!(!proxies.contains(ip("10.43.0.1")));
        assert!(proxies.contains(ip("192.0.2.7")));
        assert!(!proxies.contains(ip("192.0.2.8")));
        assert!(proxies.contains(ip("fd12::1")));
        assert!(
            proxies.contains(ip("::ffff:10.42.0.9")),
            "a mapped IPv4 peer is IPv4"
        );
    }

    #[test]
    fn a_bad_entry_is_named() {
        let error = TrustedProxies::parse(&["10.0.0.0/8", "gateway"]).expect_err("invalid");
        assert!(error.contains("\"gateway\""), "{error}");
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }

    #[test]
    fn settings_read_a_list_of_strings() {
        let proxies: TrustedProxies =
            serde_json::from_str(r#"["127.0.0.0/8", "::1"]"#).expect("json");
        assert!(proxies.contains(ip("127.0.0.2")));
        assert!(proxies.contains(ip("::1")));
        assert_eq!(
            serde_json::to_string(&proxies).expect("json"),
            r#"["127.0.0.0/8","::1/128"]"#
        );
        assert!(serde_json::from_str::<TrustedProxies>(r#"["nope"]"#).is_err());
    }

    #[test]
    fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).expect("valid");
        let headers = forwarded("198.51.100.7, 203.0.113.9");
        assert_eq!(
            proxies.client_addr(ip("192.0.2.1"), &headers),
            ip("192.0.2.1")
        );
        assert_eq!(
            proxies.client_addr(ip("10.0.0.2"), &headers),
            ip("203.0.113.9")
        );
        // No header, or garbage in it: the proxy itself.
        assert_eq!(
            proxies.client_addr(ip("10.0.0.2"), &http::HeaderMap::new()),
            ip("10.0.0.2")
        );
        assert_eq!(
            proxies.client_addr(ip("10.0.0.2"), &forwarded("x")),
            ip("10.0.0.2")
        );
        assert!(TrustedProxies::default().is_empty());
        assert_eq!(
            TrustedProxies::default().client_addr(ip("10.0.0.2"), &headers),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff::9");
        let c = ip("2001:db8:1:3::1");
        assert_eq!(rate_limit_key(a), rate_limit_key(b));
        assert_ne!(rate_limit_key(a), rate_limit_key(c));
        assert_eq!(rate_limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(rate_limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
