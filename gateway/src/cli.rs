//! Command line: `gateway run --config FILE`, `gateway validate FILE`.

use clap::{Parser, Subcommand};
use control_api::store::build;
use policies::state::Durable;
use policies::Format;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "gateway", version, about = "API gateway on Pingora: routing, policies, hot reload")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve traffic with the given config (YAML, or JSON by extension).
    Run {
        /// Config file; reloaded on change, on SIGHUP and through the admin API.
        #[arg(long = "config", value_name = "FILE", default_value = "conf/gateway.yaml")]
        config: PathBuf,
    },
    /// Check a config file: prints `ok`, or every error with its field path and exits 1.
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => crate::server::run(&config),
        Command::Validate { file } => validate(&file),
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let prepare = crate::upstream::prepare_hook();
    match build(&bytes, Format::from_path(file), &Durable::new(), Some(&prepare)) {
        Ok((snapshot, _)) => {
            // Warnings go to stderr: the config is valid, but a person should read them.
            for w in &snapshot.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            match snapshot.warnings.len() {
                0 => println!("ok ({} APIs)", snapshot.apis.len()),
                1 => println!("ok ({} APIs, 1 warning)", snapshot.apis.len()),
                n => println!("ok ({} APIs, {n} warnings)", snapshot.apis.len()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let errors = e.errors();
            if errors.is_empty() {
                eprintln!("{}: {e}", file.display());
            }
            for err in errors {
                eprintln!("{}: {err}", file.display());
            }
            ExitCode::FAILURE
        }
    }
}
