//! SIRET numbers: 14 digits, the first 9 being the SIREN, checked with the Luhn
//! algorithm. La Poste's establishments (SIREN 356 000 000) are numbered beyond what
//! Luhn allows; INSEE checks them with the sum of the digits modulo 5 instead.

/// SIREN of La Poste, whose establishments follow their own checksum.
const LA_POSTE_SIREN: &str = "356000000";

/// Removes spaces, the way people type a SIRET (`200 052 267 00013`).
#[must_use]
pub fn normalise(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether `siret` (already normalised) is 14 digits with a valid checksum.
#[must_use]
pub fn is_valid(siret: &str) -> bool {
    if siret.len() != 14 || !siret.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let digits = siret.bytes().map(|b| u32::from(b - b'0'));
    if siret.starts_with(LA_POSTE_SIREN) {
        return digits.sum::<u32>().is_multiple_of(5);
    }
    luhn(siret)
}

fn luhn(number: &str) -> bool {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_valid_sirets_pass_and_typos_fail() {
        // Published SIRETs of public bodies.
        for ok in ["21670482500019", "13002526500013", "35600000000001"] {
            assert!(is_valid(ok), "{ok}");
        }
        assert!(!is_valid("21670482500018"), "last digit changed");
        assert!(!is_valid("12670482500019"), "two digits swapped");
        assert!(!is_valid("2167048250001"), "13 digits");
        assert!(!is_valid("2167048250001A"), "a letter");
        assert_eq!(normalise(" 216 704 825 00019 "), "21670482500019");
    }
}
