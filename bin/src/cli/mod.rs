//! The command line, compatible with Sōzu's: global flags, then a subcommand.
//!
//! The clap structures below declare every subcommand; each one's work lives in its own module
//! (`config check` in [`config_check`]). Subcommands that talk to a running proxy will read
//! the configuration only to find its `command_socket`.

mod config_check;

use std::{num::ParseIntError, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// The sozu proxy engine: a reverse proxy for HTTP, HTTPS and TCP whose routing changes while it
/// runs.
#[derive(Debug, Parser)]
#[command(name = "sozu", version)]
pub struct Cli {
    /// The configuration file.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON, one value per line.
    #[arg(short, long, global = true)]
    pub json: bool,
    /// How long to wait for the proxy's answer, in milliseconds; 0 waits without limit.
    #[arg(short, long, global = true, value_name = "MS", value_parser = milliseconds)]
    pub timeout: Option<Duration>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file: print its warnings and the orders it turns into, or its
    /// errors. Exits with 0 when the file is valid, 1 otherwise.
    Check,
}

fn milliseconds(text: &str) -> Result<Duration, ParseIntError> {
    text.parse().map(Duration::from_millis)
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check::run(&cli),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["sozu", "config", "check", "-c", "a.toml", "-j", "-t", "500"])
                .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("a.toml")));
        assert!(cli.json);
        assert_eq!(cli.timeout, Some(Duration::from_millis(500)));
        let cli = Cli::try_parse_from(["sozu", "--config", "b.toml", "config", "check"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("b.toml")));
        assert!(!cli.json);
    }
}
