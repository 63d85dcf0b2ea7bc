//! `dgectl check TOKEN RIGHT`: Authorization.Check, for testing a person's token.

use std::process::ExitCode;

use dge_proto::v1::{CheckRequest, CheckResponse};
use serde_json::json;

use crate::cli::CheckArgs;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

/// Prints the verdict; the exit status is 0 when the right is granted, 1 when not,
/// so that scripts can test it.
pub(super) async fn run(
    api: &Api,
    out: OutputFormat,
    args: CheckArgs,
) -> Result<ExitCode, CliError> {
    let request = CheckRequest {
        access_token: args.access_token.expose().to_owned(),
        right: args.right.clone(),
    };
    let response = api
        .authorization()
        .check(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    match out {
        OutputFormat::Table => output::print_line(&verdict(&args.right, &response))?,
        OutputFormat::Json => output::print_json(&json!({
            "right": args.right,
            "allowed": response.allowed,
            "subject": response.subject,
            "reason": response.reason,
        }))?,
    }
    Ok(if response.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verdict(right: &str, response: &CheckResponse) -> String {
    let subject = if response.subject.is_empty() {
        String::new()
    } else {
        format!(" (subject {})", response.subject)
    };
    if response.allowed {
        format!("allowed: {right}{subject}")
    } else {
        format!("denied: {right}: {}{subject}", response.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_names_the_right_the_subject_and_the_reason() {
        let allowed = CheckResponse {
            allowed: true,
            subject: "01J".to_owned(),
            reason: String::new(),
        };
        assert_eq!(
            verdict("datahub:publish", &allowed),
            "allowed: datahub:publish (subject 01J)"
        );
        let denied = CheckResponse {
            allowed: false,
            subject: String::new(),
            reason: "invalid_token".to_owned(),
        };
        assert_eq!(
            verdict("datahub:publish", &denied),
            "denied: datahub:publish: invalid_token"
        );
    }
}
