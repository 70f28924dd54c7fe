//! `sozuctl`: the same command line as `sozu`, under the name Sōzu's users know.

use std::process::ExitCode;

fn main() -> ExitCode {
    sozu::cli::run()
}
