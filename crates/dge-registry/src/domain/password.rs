//! The password rules, shared by sign-up, password reset and password change.
//!
//! A password is NFKC-normalised before any rule or hash (NIST SP 800-63B §5.1.1.2),
//! counted in characters, and must:
//! - follow the five rules of the sign-up page (length and character classes);
//! - not contain the login, a name or the local part of the email address;
//! - not appear in the list of breached passwords shipped with the product;
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

/// Passwords of 12 characters or more found in public leaks, NFKC-normalised,
/// lower-cased, deduplicated and sorted (by bytes), one a line. Built from the
/// frequency list of `@zxcvbn-ts/language-common` 4.1.3 (MIT) and the common-password
/// list of Django 5.1.4 (BSD-3-Clause, list by Royce Williams); see
/// `data/BREACHED-PASSWORDS.md`. Shorter entries are left out: the length rule
/// already refuses them.
const BREACHED_PASSWORDS: &str = include_str!("../../data/breached-passwords.txt");

/// Whether `password` (already normalised), ignoring case and any symbols around
/// it, is in [`BREACHED_PASSWORDS`]. A binary search over the sorted lines: no
/// allocation beyond the lower-cased copy, no network.
#[must_use]
pub fn is_breached(password: &str) -> bool {
    static SORTED: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| BREACHED_PASSWORDS.lines().collect());
    let listed = |candidate: &str| SORTED.binary_search(&candidate).is_ok();
    let lower = password.to_lowercase();
    let trimmed = lower.trim_matches(|c: char| !c.is_alphanumeric());
    listed(&lower) || (trimmed.chars().count() >= PASSWORD_MIN_CHARS && listed(trimmed))
}

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
        !password.is_empty()
            && within_bounds
            && !is_breached(password)
            && strong_enough(password, ctx),
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
    } else if is_breached(&password) {
        v.add(
            field,
            "breached",
            "Ce mot de passe figure dans des listes de mots de passe divulgués lors de fuites \
             de données : choisissez-en un autre, que vous n'utilisez nulle part ailleurs.",
        );
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
            "P@ssw0rd2024!",
            "Soleil2024!!!",
            "Motdepasse123!",
        ] {
            assert_eq!(codes(pw), [("password", "too_common")], "{pw}");
        }
    }

    #[test]
    fn breached_passwords_are_refused() {
        // Entries of the shipped list, as typed with capitals and symbols around them
        // so that the class rules pass and only the list can refuse them.
        for pw in [
            "Qwerty123456!",
            "!1Qaz2Wsx3Edc",
            "Administrator!",
            "Leavemealone",
        ] {
            assert!(is_breached(&pw.to_lowercase()) || is_breached(pw), "{pw}");
        }
        assert_eq!(codes("Qwerty123456!"), [("password", "breached")]);
        assert_eq!(codes("!1Qaz2Wsx3Edc"), [("password", "breached")]);
        // zxcvbn would call it too common; the list says more precisely why.
        assert_eq!(codes("Password1234!"), [("password", "breached")]);
        // The list is sorted by bytes, as the binary search needs.
        let lines: Vec<&str> = BREACHED_PASSWORDS.lines().collect();
        assert!(lines.len() > 400);
        assert!(lines.windows(2).all(|w| w[0] < w[1]));
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() >= PASSWORD_MIN_CHARS)
        );
        // Every entry is a password someone can type and the check finds: no encoded
        // (`$hex[…]`) or spreadsheet leftovers, no control characters, normalised.
        for line in &lines {
            assert!(
                !line.starts_with("$hex[") && !line.chars().any(char::is_control),
                "{line:?}"
            );
            assert_eq!(*line, line.nfkc().collect::<String>().to_lowercase());
            assert!(is_breached(line), "{line:?} can never match");
        }
        // Strong passwords and near misses are not in it.
        assert!(!is_breached("Mirabelle-de-Lorraine-ab12-7!"));
        assert!(!is_breached("qwerty1234567"));
        let rules = rules_for_page(Some("Qwerty123456!"), &ctx());
        assert_eq!(rules[6].1, Some(false));
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
