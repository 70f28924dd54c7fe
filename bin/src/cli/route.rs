//! `sozu route`: tproxy's and ProxyMachine's one command, no configuration file. One TCP
//! listener sends each connection where a Lua script decides (doc/content-routing.md); as no
//! cluster exists, the script names `remote`s. The proxy has its own command socket, so every
//! other subcommand works on it (`sozu --socket sozu-route.sock listener tcp update
//! --script route.lua` reloads the script).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// The Lua script that decides, `function route(data, peer)`.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// Where to accept connections.
    #[arg(short, long, value_name = "ADDR")]
    pub bind: SocketAddr,
    /// How many worker processes.
    #[arg(short, long, value_name = "COUNT", default_value_t = 1)]
    pub workers: u16,
    /// The command socket of this proxy.
    #[arg(long, value_name = "PATH", default_value = "sozu-route.sock")]
    pub command_socket: PathBuf,
}

impl RouteArgs {
    /// The configuration file of this proxy. Paths are absolute: the file is written beside
    /// the command socket, not beside the script.
    pub fn config_text(&self, command_socket: &std::path::Path) -> anyhow::Result<String> {
        let script = std::path::absolute(&self.script)
            .with_context(|| format!("cannot resolve {}", self.script.display()))?;
        Ok(format!(
            "command_socket = {socket:?}\n\
             worker_count = {workers}\n\
             activate_listeners = true\n\n\
             [[listeners]]\n\
             protocol = \"tcp\"\n\
             address = \"{bind}\"\n\
             script = {script:?}\n",
            socket = command_socket.display().to_string(),
            workers = self.workers,
            bind = self.bind,
            script = script.display().to_string(),
        ))
    }
}

/// Writes the configuration beside the command socket (`sozu-route.toml` by default) and runs
/// the proxy from it.
pub fn run(args: &RouteArgs) -> ExitCode {
    super::one_command::run(
        &args.command_socket,
        |socket| args.config_text(socket),
        |path, socket| {
            format!(
                "routing {} with {} ({}); other subcommands: `sozu --socket {} …`",
                args.bind,
                args.script.display(),
                path.display(),
                socket.display()
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;
    use sozu_command_lib::config::{Config, Listener};

    use crate::cli::{Cli, Command};

    #[test]
    fn one_listener_decided_by_the_script_and_a_command_socket() {
        let dir = std::env::temp_dir().join(format!("sozu-route-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("route.lua");
        std::fs::write(&script, "function route(d, p) return { close = true } end").unwrap();
        let line = [
            "sozu",
            "route",
            script.to_str().unwrap(),
            "--bind",
            "127.0.0.1:5000",
            "-w",
            "2",
        ];
        let Command::Route(args) = Cli::try_parse_from(line).unwrap().command else {
            panic!("not sozu route");
        };
        let text = args.config_text(Path::new("/run/r.sock")).unwrap();
        let (config, _) = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(config.worker_count, 2);
        assert_eq!(config.command_socket, Path::new("/run/r.sock"));
        let [Listener::Tcp(listener)] = config.listeners.as_slice() else {
            panic!("one TCP listener: {:?}", config.listeners);
        };
        assert_eq!(listener.address, "127.0.0.1:5000".parse().unwrap());
        let source = &listener.script.as_ref().unwrap().source;
        assert!(source.contains("close = true"), "{source}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
