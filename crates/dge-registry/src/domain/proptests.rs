//! Property tests of normalisation and of the password rules.

use dge_core::{Secret, Violations};
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::password::{
    PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, PasswordContext, check_new_password,
    normalise_password, rules_met,
};
use super::signup::{clean_text, normalise_email, normalise_phone};

fn ctx() -> PasswordContext {
    PasswordContext {
        login: "jdupont".into(),
        given_name: "Jeanne".into(),
        family_name: "Dupont".into(),
        email: "jeanne.dupont@grandest.fr".into(),
    }
}

fn check(password: &str) -> Vec<&'static str> {
    let mut v = Violations::new();
    let s = Secret::new(password.to_owned());
    check_new_password(
        &mut v,
        ("password", "password_confirmation"),
        &s,
        &s,
        &ctx(),
    );
    v.iter().map(|x| x.code).collect()
}

/// Local parts and domains as people type them: mixed case, accents, spaces around.
fn typed_email() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9][A-Za-z0-9._+-]{0,20}",
        prop::collection::vec("[a-zA-Z0-9éèÉÈçÇàÀ]{1,12}", 1..4),
        "(fr|FR|eu|com|org)",
        "[ \t]{0,2}",
    )
        .prop_map(|(local, labels, tld, pad)| {
            format!("{pad}{local}@{}.{tld}{pad}", labels.join("."))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn email_normalisation_is_idempotent_and_the_key_ignores_case(raw in typed_email()) {
        if let Some((address, key)) = normalise_email(&raw) {
            prop_assert_eq!(normalise_email(&address), Some((address.clone(), key.clone())));
            prop_assert_eq!(&key, &address.to_lowercase());
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            prop_assert!(domain.is_ascii(), "domain not IDNA-encoded: {}", domain);
            prop_assert_eq!(domain, domain.to_lowercase());
            let shouted = normalise_email(&raw.to_uppercase()).map(|(_, k)| k);
            let whispered = normalise_email(&raw.to_lowercase()).map(|(_, k)| k);
            prop_assert_eq!(shouted, whispered);
        }
    }

    #[test]
    fn any_address_with_a_control_character_is_refused(
        local in "[a-z]{1,8}", c in prop::char::range('\u{0}', '\u{1f}')
    ) {
        prop_assert_eq!(normalise_email(&format!("{local}{c}x@exemple.fr")), None);
    }

    #[test]
    fn clean_text_is_idempotent_trimmed_and_nfc(raw in "\\PC{0,40}") {
        let once = clean_text(&raw);
        prop_assert_eq!(clean_text(&once), once.clone());
        prop_assert_eq!(once.trim(), once.as_str());
        prop_assert_eq!(once.nfc().collect::<String>(), once);
    }

    #[test]
    fn french_mobiles_are_e164_in_both_notations(digits in "[124-8][0-9]{7}") {
        let pairs: Vec<String> = digits.as_bytes().chunks(2)
            .map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        let national = format!("06 {}", pairs.join(" "));
        let international = format!("+33 6{digits}");
        let expected = format!("+336{digits}");
        prop_assert_eq!(normalise_phone(&national), Some(expected.clone()));
        prop_assert_eq!(normalise_phone(&international), Some(expected));
    }

    #[test]
    fn an_accepted_password_meets_every_rule(raw in "\\PC{0,40}") {
        let codes = check(&raw);
        let password = normalise_password(&raw);
        if codes.is_empty() {
            let n = password.chars().count();
            prop_assert!((PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n));
            prop_assert!(rules_met(&password, &ctx()).iter().all(|ok| *ok));
            prop_assert!(!password.to_lowercase().contains("jdupont"));
            prop_assert!(!password.to_lowercase().contains("jeanne"));
        } else {
            prop_assert!(!rules_met(&password, &ctx()).iter().all(|ok| *ok) || n_over_max(&password));
        }
    }

    #[test]
    fn the_rules_see_the_nfkc_form(raw in "\\PC{0,30}") {
        prop_assert_eq!(check(&raw), check(&normalise_password(&raw)));
        prop_assert_eq!(normalise_password(&normalise_password(&raw)), normalise_password(&raw));
    }

    #[test]
    fn short_passwords_are_always_refused(raw in "\\PC{0,11}") {
        let n = normalise_password(&raw).chars().count();
        prop_assume!(n < PASSWORD_MIN_CHARS);
        let codes = check(&raw);
        prop_assert!(codes.contains(&"too_short") || codes.contains(&"required"), "{:?}", codes);
    }

    #[test]
    fn the_login_anywhere_is_refused(
        before in "[A-Z][a-z]{3,6}[0-9]{2}", after in "[a-z]{3,6}[!?#]", upper in any::<bool>()
    ) {
        let login = if upper { "JDUPONT" } else { "jdupont" };
        let codes = check(&format!("{before}{login}{after}"));
        prop_assert!(codes.contains(&"contains_login"), "{:?}", codes);
    }
}

fn n_over_max(password: &str) -> bool {
    password.chars().count() > PASSWORD_MAX_CHARS
}
