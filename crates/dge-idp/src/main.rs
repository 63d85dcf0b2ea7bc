//! `dge-idp`: the DGE Identity server.

use std::process::ExitCode;

use clap::Parser;

use dge_idp::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything signs or verifies a token (see the module).
    dge_authz::jose::install();
    dge_idp::telemetry::init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            tracing::error!(error = %e, "dge-idp could not start its threads");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Dev(args) => dge_idp::dev::run(*args).await,
        Command::Serve(args) => dge_idp::serve::run(&args).await,
        Command::CheckConfig(args) => dge_idp::serve::check(&args),
        Command::Migrate(args) => dge_idp::serve::migrate(&args).await,
        Command::ConfigExample => dge_idp::serve::example(),
        Command::CreateAdminToken(args) => dge_idp::serve::create_admin_token(&args).await,
        Command::ListAdminTokens(args) => dge_idp::serve::list_admin_tokens(&args).await,
        Command::RevokeAdminToken(args) => dge_idp::serve::revoke_admin_token(&args).await,
        Command::Probe(args) => dge_idp::serve::probe(&args.url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "dge-idp stopped");
            ExitCode::FAILURE
        }
    }
}
