//! `spillway`: parse arguments, init tracing, run the command.

use std::process::ExitCode;

use clap::Parser;
use spillway_worker::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<ExitCode> {
    let args = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,spillway_worker=info,spillway=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match args.command {
        Command::Validate {
            files,
            check_registry,
        } => tokio::runtime::Runtime::new()?
            .block_on(async { Ok(cli::validate(&files, check_registry).await) }),
        Command::Bench(cmd) => cli::bench(cmd),
        Command::Maintain(cmd) => tokio::runtime::Runtime::new()?.block_on(cli::maintain(cmd)),
        Command::Produce(a) => tokio::runtime::Runtime::new()?.block_on(cli::produce(a)),
        Command::Run {
            file,
            http,
            termination_log,
        } => {
            let serve = spillway_worker::runner::Serve {
                http: Some(http),
                termination_log,
            };
            tokio::runtime::Runtime::new()?.block_on(cli::run(file, serve))
        }
        Command::Demo {
            duration,
            count,
            rps,
            dir,
            http,
        } => tokio::runtime::Runtime::new()?.block_on(cli::demo(duration, count, rps, dir, http)),
    }
}
