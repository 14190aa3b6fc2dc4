//! `spillway-operator`: parse arguments, init tracing, then run the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spillway_operator::config::{LogFormat, RunArgs};
use tracing_subscriber::EnvFilter;

/// The Spillway operator: reconciles StreamingPipelines into worker Deployments.
#[derive(Debug, Parser)]
#[command(name = "spillway-operator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the StreamingPipeline CustomResourceDefinition as YAML (what `crds/` holds).
    Crd,
    /// Run the controller: watch StreamingPipelines and reconcile them into workers.
    Run(Box<RunArgs>),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", spillway_api::crd::crd_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            // The API server's TLS: one crypto provider (the build has more than one).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            let fmt = tracing_subscriber::fmt().with_env_filter(filter);
            match args.log_format {
                LogFormat::Json => fmt.json().init(),
                LogFormat::Text => fmt.init(),
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(spillway_operator::controller::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
