//! The client's IP address behind trusted reverse proxies, for per-address limits.
//!
//! The TCP peer, unless it is one of the configured trusted reverse proxies: then the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the
//! left-most entries are written by the client and cannot be believed).

use std::net::IpAddr;

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
