//! The client's IP address behind trusted reverse proxies, for per-address limits.
//!
//! The TCP peer, unless it is one of the configured trusted reverse proxies: then the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the
//! left-most entries are written by the client and cannot be believed).

use std::net::IpAddr;

/// The group of addresses a per-address limit counts together: an IPv4 address
/// alone, an IPv6 address by its /64 (one customer's network, where a client picks
/// new addresses at will). Text that is no address (`unknown`) stays as it is.
#[must_use]
pub fn address_bucket(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(ip) => ip.to_string(),
        Err(_) => address.to_owned(),
    }
}

/// The client address of a request from `peer` carrying `forwarded_for` headers.
#[must_use]
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted_proxies: &[IpAddr],
) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    if !trusted_proxies.contains(&peer) {
        return peer.to_string();
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted_proxies.contains(&ip) => {}
            Ok(ip) => return ip.to_string(),
            // A malformed hop: nothing left of it can be trusted.
            Err(_) => break,
        }
    }
    peer.to_string()
}

#[cfg(test)]
mod tests {
    use super::address_bucket;

    #[test]
    fn an_ipv6_network_counts_as_one_address_and_ipv4_alone() {
        assert_eq!(
            address_bucket("2001:db8:1:2:aaaa::1"),
            address_bucket("2001:db8:1:2:ffff:1:2:3")
        );
        assert_eq!(address_bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_ne!(
            address_bucket("2001:db8:1:2::1"),
            address_bucket("2001:db8:1:3::1")
        );
        assert_eq!(address_bucket("203.0.113.7"), "203.0.113.7");
        assert_ne!(address_bucket("203.0.113.7"), address_bucket("203.0.113.8"));
        assert_eq!(address_bucket("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(address_bucket("unknown"), "unknown");
    }
}
