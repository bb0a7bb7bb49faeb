//! The `nightjar` binary: a thin shell over the crates that do the work.

mod cli;
mod config;
mod control;
mod control_cli;
mod demo;
mod doctor;
mod run;
mod sched;
mod workload;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to files or collectors stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Doctor => ExitCode::from(doctor::run() as u8),
        Command::Blocklist(args) => report(control_cli::run(&args)),
        Command::Xdp(args) => report(control_cli::run_xdp(&args)),
        Command::Pods(args) => report(control_cli::run_pods(&args)),
        Command::DemoWorkload => report(workload::run()),
        Command::Agent(args) => {
            // Configuration problems are usage errors: status 2, like an unknown flag.
            let config = match config::AgentConfig::from_args(&args) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("nightjar: {err:#}");
                    return ExitCode::from(2);
                }
            };
            report(runtime().and_then(|rt| rt.block_on(run::run_agent(config))))
        }
        Command::Demo(args) => report(runtime().and_then(|rt| rt.block_on(demo::run(args)))),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nightjar: {err:#}");
            ExitCode::FAILURE
        }
    }
}
