//! Rules only, no I/O: what the claims say about a person, and who may come in.
//!
//! - [`profile`]: the claims mapped to a profile (ProConnect's `usual_name`, `siret` …).
//! - [`allow`]: the allow rules of an upstream (email domains, `idp_id`, roles, SIRET).

pub mod allow;
pub mod profile;
