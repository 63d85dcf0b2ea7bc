//! `dgectl`, the administrators' command-line tool of DGE Identity.
//!
//! - `cli`: the command line (clap derive types, the help text)
//! - `commands`: one module per noun, each making its gRPC calls and printing the result
//! - `client`: the connection, the bearer token and one client per service
//! - `output`: tables, JSON and date formatting
//! - `status`: status words on the command line and the protobuf enums behind them
//! - `credentials`: the token `dgectl login` keeps for later commands
//! - `error`: failures, their messages and exit statuses
//! - `when`: dates and delays typed on the command line

// A command-line tool prints to its terminal by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod client;
mod commands;
mod credentials;
mod error;
mod output;
mod status;
mod when;

use std::io;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::error::CliError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse_or_exit();
    match commands::run(cli).await {
        Ok(code) => code,
        // The reader went away (`dgectl … | head`): not a failure of ours.
        Err(CliError::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
