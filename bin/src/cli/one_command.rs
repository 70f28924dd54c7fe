//! Proxies started by one command, without a configuration file (`sozu chaos`, `sozu route`):
//! the command's configuration is written beside its command socket (`NAME.sock` gives
//! `NAME.toml`, which `sozu start -c` runs again), checked as `sozu start` checks it, then run
//! by the main process. The command socket makes every other subcommand work on the proxy.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use sozu_command_lib::config::Config;

/// Writes the configuration `config_text` makes for the absolute path of `command_socket`,
/// prints `banner` (given the configuration's path and the socket's), then runs the proxy.
pub fn run(
    command_socket: &Path,
    config_text: impl FnOnce(&Path) -> anyhow::Result<String>,
    banner: impl FnOnce(&Path, &Path) -> String,
) -> ExitCode {
    match prepare(command_socket, config_text) {
        Ok((path, socket)) => {
            println!("{}", banner(&path, &socket));
            crate::main_process::start(&path)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration's path and the socket's absolute path, once the file is written.
fn prepare(
    command_socket: &Path,
    config_text: impl FnOnce(&Path) -> anyhow::Result<String>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let socket =
        std::path::absolute(command_socket).context("cannot resolve the command socket's path")?;
    let text = config_text(&socket)?;
    let path = socket.with_extension("toml");
    let folder = path.parent().unwrap_or(Path::new("/"));
    Config::parse(&text, folder).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, socket))
}
