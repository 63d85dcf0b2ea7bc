//! The client's IP address, for per-address throttling.
//!
//! The TCP peer, unless it is one of the configured trusted reverse proxies: then the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the
//! left-most entries are written by the client and cannot be believed).

#[cfg(test)]
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::Pages;

/// The client's address as text (`unknown` when the server was not given peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

pub use dge_core::net::client_address;

impl FromRequestParts<Pages> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, pages: &Pages) -> Result<Self, Self::Rejection> {
        Ok(Self(dge_oidc::http::client_address_of(
            parts,
            &pages.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_direct_peer_is_the_client_whatever_it_claims() {
        let got = client_address(
            Some(ip("203.0.113.7")),
            &["198.51.100.1"],
            &[ip("10.0.0.1")],
        );
        assert_eq!(got, "203.0.113.7");
    }

    #[test]
    fn behind_a_trusted_proxy_the_last_untrusted_hop_is_the_client() {
        let got = client_address(
            Some(ip("10.0.0.1")),
            &["1.1.1.1, 203.0.113.7", "10.0.0.2"],
            &[ip("10.0.0.1"), ip("10.0.0.2")],
        );
        assert_eq!(got, "203.0.113.7");
    }

    #[test]
    fn a_malformed_hop_falls_back_to_the_proxy() {
        let got = client_address(Some(ip("10.0.0.1")), &["junk"], &[ip("10.0.0.1")]);
        assert_eq!(got, "10.0.0.1");
        assert_eq!(client_address(None, &[], &[]), "unknown");
    }
}
