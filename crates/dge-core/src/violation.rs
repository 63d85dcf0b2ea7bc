//! Per-field validation errors.
//!
//! A rule broken on a form or a gRPC request becomes a [`Violation`]: the field, a
//! stable machine code and a French sentence for the person. Pages show the sentence
//! next to the field; gRPC returns them all as `google.rpc.BadRequest` details.

use tonic_types::{ErrorDetails, StatusExt};

/// One broken rule on one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, as named in the form and in the proto message (`email`, `password`).
    pub field: &'static str,
    /// A stable code for programs (`too_short`, `taken`).
    pub code: &'static str,
    /// The French sentence shown to the person.
    pub message: String,
}

/// All the rules a request broke.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// No violation yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a broken rule.
    pub fn add(&mut self, field: &'static str, code: &'static str, message: impl Into<String>) {
        self.0.push(Violation {
            field,
            code,
            message: message.into(),
        });
    }

    /// Adds the violations of another check after these.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// Whether no rule was broken.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The violations, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, Violation> {
        self.0.iter()
    }

    /// The first message for a field, for a page.
    #[must_use]
    pub fn message_for(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|v| v.field == field)
            .map(|v| v.message.as_str())
    }

    /// `Ok(())` when nothing was broken.
    ///
    /// # Errors
    /// Returns `self` when at least one rule was broken.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// `INVALID_ARGUMENT` with one `BadRequest` field violation per broken rule.
    #[must_use]
    pub fn into_status(self) -> tonic::Status {
        let mut details = ErrorDetails::new();
        for v in &self.0 {
            details.add_bad_request_violation(v.field, format!("{}: {}", v.code, v.message));
        }
        let summary = self
            .0
            .iter()
            .map(|v| v.field)
            .collect::<Vec<_>>()
            .join(", ");
        tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            format!("invalid fields: {summary}"),
            details,
        )
    }
}

impl<'a> IntoIterator for &'a Violations {
    type Item = &'a Violation;
    type IntoIter = std::slice::Iter<'a, Violation>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_every_field_violation() {
        let mut v = Violations::new();
        v.add("email", "invalid", "Adresse invalide");
        v.add("password", "too_short", "Trop court");
        let status = v.into_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["email", "password"]);
    }
}
