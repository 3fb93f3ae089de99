//! The `keepers` binary: the desktop app with no subcommand (or a folder), the command line otherwise.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = keepers::cli::Cli::parse();
    match keepers::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
