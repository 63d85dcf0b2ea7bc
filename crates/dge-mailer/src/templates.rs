//! The French email templates, embedded at build time.
//!
//! Each kind has a one-line subject, a text body and an HTML body. The bodies extend
//! `_layout.txt` and `_layout.html` (greeting, signature and footer written once) and
//! the HTML ones draw their styled pieces from `_macros.html`. HTML bodies are
//! auto-escaped; subjects and text bodies are not, and never reach a header except
//! the subject, whose control characters are stripped before sending.

use minijinja::Environment;

macro_rules! kind {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../templates/", $name, ".subject.txt")),
            include_str!(concat!("../templates/", $name, ".txt")),
            include_str!(concat!("../templates/", $name, ".html")),
        )
    };
}

/// Mail kinds, with their three templates.
const KINDS: &[(&str, &str, &str, &str)] = &[
    kind!("confirm_email"),
    kind!("account_pending"),
    kind!("account_activated"),
    kind!("account_rejected"),
    kind!("signup_existing"),
    kind!("signup_unconfirmed"),
    kind!("admin_signup_notice"),
    kind!("admin_signup_digest"),
    kind!("admin_pending_reminder"),
    // Local accounts (issue 3): password reset and change, email change, deletion.
    kind!("password_reset"),
    kind!("password_reset_federated"),
    kind!("password_changed"),
    kind!("email_change_confirm"),
    kind!("email_change_requested"),
    kind!("email_changed"),
    kind!("account_deleted"),
    // Identity broker (issue 6): the code proving an account before a link.
    kind!("link_code"),
    // Identity broker (issue 6): an upstream identity was linked to an existing account.
    kind!("federated_link_added"),
    // Security (issue 9): password login locked after repeated failures.
    kind!("account_locked"),
    // Security: two-step codes locked after wrong codes that followed the right password.
    kind!("account_code_locked"),
    // Security (issue 9): two-step verification turned on or off.
    kind!("mfa_enabled"),
    kind!("mfa_disabled"),
    // Security: a recovery code stood in for the authenticator at a login.
    kind!("mfa_recovery_code_used"),
    // Administration: an account suspended, then reactivated.
    kind!("account_suspended"),
    kind!("account_reactivated"),
];

/// Templates the kinds extend or import.
const SHARED: &[(&str, &str)] = &[
    ("_layout.txt", include_str!("../templates/_layout.txt")),
    ("_layout.html", include_str!("../templates/_layout.html")),
    ("_macros.html", include_str!("../templates/_macros.html")),
];

/// The names of every mail kind.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.0)
}

/// A template environment holding every mail template.
///
/// # Panics
/// Never in a build whose tests pass: the templates are embedded and parsed by the
/// test `every_template_parses`.
#[must_use]
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in SHARED {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("mail template {name} is invalid: {e}"));
    }
    for (name, subject, text, html) in KINDS {
        for (suffix, source) in [("subject.txt", subject), ("txt", text), ("html", html)] {
            env.add_template_owned(format!("{name}.{suffix}"), (*source).to_owned())
                .unwrap_or_else(|e| panic!("mail template {name}.{suffix} is invalid: {e}"));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        let env = super::environment();
        for kind in super::kinds() {
            for suffix in ["subject.txt", "txt", "html"] {
                assert!(env.get_template(&format!("{kind}.{suffix}")).is_ok());
            }
        }
    }
}
