//! Email addresses printed without their local part, for logs.

use std::fmt;

/// Displays an address as `j***@example.fr`: enough to tell two people apart in an
/// incident, not enough to read someone's address out of a log.
pub struct MaskedEmail<'a>(pub &'a str);

impl fmt::Display for MaskedEmail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.rsplit_once('@') {
            Some((local, domain)) => {
                let first = local.chars().next().unwrap_or('*');
                write!(f, "{first}***@{domain}")
            }
            None => f.write_str("***"),
        }
    }
}

impl fmt::Debug for MaskedEmail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_local_part() {
        assert_eq!(
            MaskedEmail("jeanne.dupont@grandest.fr").to_string(),
            "j***@grandest.fr"
        );
        assert_eq!(MaskedEmail("not-an-address").to_string(), "***");
    }
}
