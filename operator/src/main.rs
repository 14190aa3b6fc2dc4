//! `spillway-operator`: parse arguments, then run the chosen command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", spillway_api::crd::crd_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
