//! `sozu`: the main process, the workers and the command line, by subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    sozu::cli::run()
}
