//! `dge-idp`: the DGE Identity server.

use std::process::ExitCode;

use clap::Parser;

use dge_idp::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    dge_idp::telemetry::init();
    let result = match cli.command {
        Command::Dev(args) => dge_idp::dev::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "dge-idp stopped");
            ExitCode::FAILURE
        }
    }
}
