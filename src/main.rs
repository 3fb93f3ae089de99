//! The `keepers` binary: the desktop app with no subcommand (or a folder), the command line otherwise.

use clap::Parser;

/// mimalloc keeps freed memory for reuse: with the system allocator, the backbone's large
/// activations are unmapped when freed and faulted back in on the next batch (about a third of
/// scoring time on the CPU went to page faults; `keepers bench scoring` shows the difference).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
