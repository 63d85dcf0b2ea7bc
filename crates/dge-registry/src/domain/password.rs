//! The password rules, shared by sign-up, password reset and password change.
//!
//! A password is NFKC-normalised before any rule or hash (NIST SP 800-63B §5.1.1.2),
//! counted in characters, and must:
//! - follow the five rules of the sign-up page (length and character classes);
//! - not contain the login, a name or the local part of the email address;
//! - not be common or guessable, as estimated by zxcvbn.

use dge_core::{Secret, Violations};
use unicode_normalization::UnicodeNormalization;

/// Shortest password accepted, in characters.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted, in characters (NIST SP 800-63B asks for at least 64).
pub const PASSWORD_MAX_CHARS: usize = 256;

/// How many characters zxcvbn scores.
const ZXCVBN_CHARS: usize = 64;

/// The least zxcvbn score accepted (0 to 4). 4 means at least 10^10 guesses, "strong
/// protection from an offline slow-hash attack". With 3, common French choices such as
/// `Azerty123456!` or `Soleil2024!!!` (about 10^8 guesses) would pass; everyday
/// passwords of 12 characters made of words (`Printemps-2025!`, `Velo.Rouge.1987`)
/// reach 4.
pub const MIN_STRENGTH_SCORE: u8 = 4;

/// Words of this site and of French habits that zxcvbn's English-centred
/// dictionaries miss; zxcvbn weighs them as it weighs the person's own data.
const CONTEXT_WORDS: &[&str] = &[
    "datagrandest",
    "grandest",
    "region",
    "alsace",
    "lorraine",
    "champagne",
    "ardenne",
    "strasbourg",
    "nancy",
    "metz",
    "reims",
    "mulhouse",
    "motdepasse",
    "azerty",
    "azertyuiop",
    "qsdfghjklm",
    "wxcvbn",
    "bonjour",
    "soleil",
    "bienvenue",
    "france",
    "jetaime",
];

/// The rules shown next to every new-password field, in the order of [`rules_met`].
pub const PASSWORD_RULES: [&str; 7] = [
    "Le mot de passe doit contenir au moins 12 caractères",
    "Le mot de passe doit contenir des minuscules",
    "Le mot de passe doit contenir des majuscules",
    "Le mot de passe doit contenir des chiffres",
    "Le mot de passe doit contenir des caractères spéciaux",
    "Le mot de passe ne doit contenir ni votre login, ni votre nom ou prénom, ni votre adresse électronique",
    "Le mot de passe ne doit pas être un mot de passe courant ou facile à deviner",
];

/// What the person told us about themselves: a password must not contain it.
#[derive(Debug, Clone, Default)]
pub struct PasswordContext {
    /// Login, lower-cased or not.
    pub login: String,
    /// First name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Email address.
    pub email: String,
}

impl PasswordContext {
    /// Lower-cased pieces of 3 characters or more: the login, each word of the names,
    /// the email's local part and each of its words.
    fn pieces(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_alphanumeric())
                .map(str::to_lowercase)
                .filter(|w| w.chars().count() >= 3)
                .collect()
        };
        let login = vec![self.login.trim().to_lowercase()]
            .into_iter()
            .filter(|l| l.chars().count() >= 3)
            .collect();
        let mut names = words(&self.given_name);
        names.extend(words(&self.family_name));
        let local = self.email.trim().rsplit_once('@').map_or("", |(l, _)| l);
        let mut email = words(local);
        if local.chars().count() >= 3 {
            email.push(local.to_lowercase());
        }
        (login, names, email)
    }
}

/// The NFKC form of a password, as hashed and checked.
#[must_use]
pub fn normalise_password(raw: &str) -> String {
    raw.nfkc().collect()
}

fn contains_any(haystack: &str, pieces: &[String]) -> bool {
    let folded = fold(haystack);
    pieces
        .iter()
        .any(|p| haystack.contains(p.as_str()) || folded.contains(&fold(p)))
}

/// Lower case without diacritics, so `Clément` is found in `clement2024`.
fn fold(s: &str) -> String {
    s.to_lowercase()
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect()
}

/// Whether zxcvbn finds the password strong enough, given the person's own data.
fn strong_enough(password: &str, ctx: &PasswordContext) -> bool {
    let (login, names, email) = ctx.pieces();
    let mut inputs: Vec<&str> = CONTEXT_WORDS.to_vec();
    inputs.extend(login.iter().chain(&names).chain(&email).map(String::as_str));
    // Only the first characters are scored, for the same reason: a long password
    // whose start is already strong is strong.
    let scored: String = password.chars().take(ZXCVBN_CHARS).collect();
    u8::from(zxcvbn::zxcvbn(&scored, &inputs).score()) >= MIN_STRENGTH_SCORE
}

/// Which of the [`PASSWORD_RULES`] `password` (already normalised) meets.
#[must_use]
pub fn rules_met(password: &str, ctx: &PasswordContext) -> [bool; 7] {
    let lower = password.to_lowercase();
    let (login, names, email) = ctx.pieces();
    // zxcvbn's cost grows faster than the length: it never sees a password that the
    // length rules already refuse.
    let within_bounds =
        (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&password.chars().count());
    let personal = contains_any(&lower, &login)
        || contains_any(&lower, &names)
        || contains_any(&lower, &email);
    [
        password.chars().count() >= PASSWORD_MIN_CHARS,
        password.chars().any(char::is_lowercase),
        password.chars().any(char::is_uppercase),
        password.chars().any(|c| c.is_ascii_digit()),
        password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
        !password.is_empty() && !personal,
        !password.is_empty() && within_bounds && strong_enough(password, ctx),
    ]
}

const CLASS_CODES: [&str; 5] = [
    "too_short",
    "no_lowercase",
    "no_uppercase",
    "no_digit",
    "no_special",
];

/// The first personal piece the password contains, as a violation code and message.
fn personal_violation(lower: &str, ctx: &PasswordContext) -> Option<(&'static str, &'static str)> {
    let (login, names, email) = ctx.pieces();
    if contains_any(lower, &login) {
        Some((
            "contains_login",
            "Le mot de passe ne doit pas contenir votre login.",
        ))
    } else if contains_any(lower, &names) {
        Some((
            "contains_name",
            "Le mot de passe ne doit pas contenir votre nom ou votre prénom.",
        ))
    } else if contains_any(lower, &email) {
        Some((
            "contains_email",
            "Le mot de passe ne doit pas contenir votre adresse électronique.",
        ))
    } else {
        None
    }
}

/// Checks a new password and its confirmation, recording every broken rule on
/// `field` and `confirmation_field`. Returns the normalised password.
pub fn check_new_password(
    v: &mut Violations,
    fields: (&'static str, &'static str),
    password: &Secret<String>,
    confirmation: &Secret<String>,
    ctx: &PasswordContext,
) -> Secret<String> {
    let (field, confirmation_field) = fields;
    let password = normalise_password(password.expose());
    let confirmation = normalise_password(confirmation.expose());
    let met = rules_met(&password, ctx);
    if password.is_empty() {
        v.add(field, "required", "Le mot de passe est obligatoire.");
    } else if password.chars().count() > PASSWORD_MAX_CHARS {
        v.add(
            field,
            "too_long",
            format!("Le mot de passe ne peut pas dépasser {PASSWORD_MAX_CHARS} caractères."),
        );
    } else if let Some(i) = met[..5].iter().position(|ok| !ok) {
        v.add(field, CLASS_CODES[i], format!("{}.", PASSWORD_RULES[i]));
    } else if let Some((code, message)) = personal_violation(&password.to_lowercase(), ctx) {
        v.add(field, code, message);
    } else if !met[6] {
        v.add(
            field,
            "too_common",
            "Ce mot de passe est trop courant ou trop facile à deviner : évitez les suites \
             de touches, les mots seuls suivis de chiffres et les dates ; assemblez plutôt \
             plusieurs mots inattendus.",
        );
    }
    if !password.is_empty() && password != confirmation {
        v.add(
            confirmation_field,
            "mismatch",
            "La confirmation ne correspond pas au mot de passe.",
        );
    }
    Secret::new(password)
}

/// The rules with whether each is met, for a page (`met` is `None` before any try).
#[must_use]
pub fn rules_for_page(
    password: Option<&str>,
    ctx: &PasswordContext,
) -> Vec<(&'static str, Option<bool>)> {
    let met = password.map(|p| rules_met(&normalise_password(p), ctx));
    PASSWORD_RULES
        .iter()
        .enumerate()
        .map(|(i, text)| (*text, met.map(|m| m[i])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PasswordContext {
        PasswordContext {
            login: "jdupont".into(),
            given_name: "Jeanne".into(),
            family_name: "Clément-Dupont".into(),
            email: "jeanne.clement@grandest.fr".into(),
        }
    }

    fn codes(pw: &str) -> Vec<(&'static str, &'static str)> {
        let mut v = Violations::new();
        let s = Secret::new(pw.to_owned());
        check_new_password(
            &mut v,
            ("password", "password_confirmation"),
            &s,
            &s,
            &ctx(),
        );
        v.iter().map(|x| (x.field, x.code)).collect()
    }

    #[test]
    fn strong_passwords_pass() {
        for pw in [
            "Printemps-Vélo-2025!",
            "Mirabelle-de-Lorraine-ab12-7!",
            "Correct-Horse-9",
        ] {
            assert_eq!(codes(pw), [], "{pw}");
        }
    }

    #[test]
    fn personal_data_is_refused() {
        assert_eq!(codes("xxJDUPONTxx-1"), [("password", "contains_login")]);
        assert_eq!(codes("Velo-Jeanne-42!"), [("password", "contains_name")]);
        assert_eq!(codes("Velo-clement-42!"), [("password", "contains_name")]);
        let mut c = ctx();
        c.email = "zorglub.tartempion@grandest.fr".into();
        let mut v = Violations::new();
        let s = Secret::new("Zorglub-Velo-42!".to_owned());
        check_new_password(&mut v, ("password", "password_confirmation"), &s, &s, &c);
        assert_eq!(
            v.iter().map(|x| x.code).collect::<Vec<_>>(),
            ["contains_email"]
        );
    }

    #[test]
    fn common_passwords_are_refused() {
        for pw in [
            "Azerty123456!",
            "Password1234!",
            "P@ssw0rd2024!",
            "Soleil2024!!!",
            "Motdepasse123!",
        ] {
            assert_eq!(codes(pw), [("password", "too_common")], "{pw}");
        }
    }

    #[test]
    fn rules_for_page_say_which_are_met() {
        let rules = rules_for_page(Some("azerty"), &ctx());
        assert_eq!(rules.len(), 7);
        assert_eq!(rules[0].1, Some(false));
        assert_eq!(rules[1].1, Some(true));
        assert_eq!(rules[2].1, Some(false));
        assert_eq!(rules[5].1, Some(true));
        assert_eq!(rules[6].1, Some(false));
        assert!(rules_for_page(None, &ctx()).iter().all(|r| r.1.is_none()));
    }

    #[test]
    fn passwords_are_nfkc_normalised_and_counted_in_characters() {
        // The full-width letters fold to ASCII under NFKC.
        assert_eq!(normalise_password("Ｖｅｌｏ"), "Velo");
        let long = "é".repeat(PASSWORD_MAX_CHARS);
        let mut v = Violations::new();
        let s = Secret::new(long);
        check_new_password(
            &mut v,
            ("password", "password_confirmation"),
            &s,
            &s,
            &ctx(),
        );
        assert!(v.iter().all(|x| x.code != "too_long"));
    }
}
