//! The `loadtest` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => loadtest::report_json::run_command(args),
        Command::Compare(args) => loadtest::compare::run(args),
        Command::Upstream(args) => loadtest::upstream::run(args),
        Command::Idp(args) => loadtest::idp::run(args),
        Command::Bench(args) => loadtest::bench::run(args),
        Command::Report(args) => loadtest::report_html::rerender(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "scenario file x: requests[0]...".
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
