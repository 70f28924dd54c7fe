//! The command line, compatible with Sōzu's: global flags, then a subcommand.
//!
//! The clap structures below declare every subcommand; each family's flags and work live in
//! its own module. `start` runs the main process; the hidden `worker` and `main` subcommands
//! are the entry points of the processes it starts. Every other subcommand talks to a running
//! proxy through its command socket ([`client`]), found with `--socket` or from the
//! configuration's `command_socket`.

mod backend;
mod certificate;
mod chaos;
mod client;
mod cluster;
mod config_check;
mod config_socket;
mod connection_limit;
mod content;
mod fault;
mod fleet;
mod fleet_export;
mod frontend;
mod listener;
mod metrics;
mod one_command;
mod processes;
mod registration;
mod route;
mod sozu_json;
mod state;
mod table;
mod tls_versions;
mod top;

use std::{
    error::Error, ffi::OsString, num::ParseIntError, path::PathBuf, process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};

use crate::{main_process, worker};

/// The sozu proxy engine: a reverse proxy for HTTP, HTTPS and TCP whose routing changes while it
/// runs.
#[derive(Debug, Parser)]
#[command(name = "sozu", version)]
pub struct Cli {
    /// The configuration file (the command line reads only its `command_socket` and
    /// `ctl_command_timeout`).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The command socket of the running proxy, instead of the configuration's.
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print results as JSON: as Sōzu 2.1 prints them, or with `--json=compact` in our compact
    /// shapes, one value per line.
    #[arg(
        short,
        long,
        global = true,
        value_name = "FORMAT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "sozu"
    )]
    pub json: Option<JsonFormat>,
    /// How long to wait for the proxy's answer, in milliseconds; 0 waits without limit.
    #[arg(short, long, global = true, value_name = "MS", value_parser = milliseconds)]
    pub timeout: Option<Duration>,
    #[command(subcommand)]
    pub command: Command,
}

/// How `--json` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsonFormat {
    /// Sōzu 2.1's shapes (its protobuf JSON), where Sōzu has one; else compact.
    Sozu,
    /// Our shapes, one value per line.
    Compact,
}

/// Each subcommand's flags are defined when the command line names it (`defer`): building
/// the flags of every subcommand cost each process 650 KiB of heap at start (a worker's
/// `sozu worker …` included) and the code pages of every subcommand's definition.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Start the proxy: the main process and its workers.
    Start,
    /// A worker process (started by the main process).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
    /// A new main process taking over from the previous one (hot upgrade).
    #[command(hide = true)]
    Main(main_process::HandoverArgs),
    /// Stop the proxy: workers finish their sessions first, unless --hard.
    Shutdown {
        /// Close every session now.
        #[arg(long)]
        hard: bool,
    },
    /// Hot upgrade: a new main process from the binary on disk takes over, then every worker
    /// is replaced; or only one worker with --worker. Pass a longer -t.
    Upgrade {
        /// Replace only this worker.
        #[arg(long, value_name = "ID")]
        worker: Option<u32>,
    },
    /// One line per worker: id, pid, run state.
    Status,
    /// Metrics of the workers.
    Metrics {
        #[command(subcommand)]
        command: metrics::MetricsCommand,
    },
    /// Set the log level or filter (`info`, `info,sozu_lib=debug`).
    Logging {
        /// A level, or env_logger directives.
        filter: String,
    },
    /// Save, load or count the routing state.
    State {
        #[command(subcommand)]
        command: state::StateCommand,
    },
    /// Apply the difference between the running routing state and the configuration file.
    Reload {
        /// This file rather than the one the proxy started with.
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Clusters: backends routed to as one.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Backends of a cluster.
    Backend {
        #[command(subcommand)]
        command: backend::BackendCommand,
    },
    /// Frontends: which connections and requests go to which cluster.
    Frontend {
        #[command(subcommand)]
        command: frontend::FrontendCommand,
    },
    /// Listeners: the addresses the proxy accepts connections on.
    Listener {
        // Boxed: the update flags make it much larger than the other commands.
        #[command(subcommand)]
        command: Box<listener::ListenerCommand>,
    },
    /// Certificates of HTTPS listeners.
    Certificate {
        #[command(subcommand)]
        command: certificate::CertificateCommand,
    },
    /// Work with the configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print events (backend up or down, worker restarted…) as they happen.
    Events,
    /// A fleet fed from etcd (`[provider.etcd]`): its convergence, and the prefix written from
    /// or printed as a configuration file.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
    },
    /// Services registered with REGISTER (doc/registration.md).
    Registration {
        #[command(subcommand)]
        command: registration::RegistrationCommand,
    },
    /// The global cap on connections from one client address to one cluster.
    ConnectionLimit {
        #[command(subcommand)]
        command: connection_limit::ConnectionLimitCommand,
    },
    /// Faults injected on live routes: latency, bandwidth, resets, hangs, HTTP errors…
    Fault {
        #[command(subcommand)]
        command: fault::FaultCommand,
    },
    /// Vaurien's one command: proxy --proxy to --backend with faults given as --behavior
    /// PERCENT:NAME, and a command socket of its own.
    Chaos(chaos::ChaosArgs),
    /// tproxy's and ProxyMachine's one command: a TCP listener on --bind whose connections go
    /// where a Lua script decides (`remote`s), with a command socket of its own.
    Route(route::RouteArgs),
    /// A live view in the terminal: workers, listeners, clusters, backends and events,
    /// refreshed every second. Keys: q quits, s sorts, / filters, arrows select.
    Top(top::TopArgs),
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

/// Why `listener udp …` and `frontend udp …`, Sōzu's subcommands, are refused.
const UDP_NOT_BUILT: &str = "UDP listeners and frontends are not built yet: this proxy refuses \
    them rather than drop their traffic (doc/coming-from-sozu.md)";

/// Where Sōzu's packages put the configuration.
const SOZU_DEFAULT_CONFIG: &str = "/etc/sozu/config.toml";

/// The configuration `sozu start` reads: `-c`, else the `SOZU_CONFIG` environment variable
/// (`environment`), else the `SOZU_CONFIG` the binary was built with (as Sōzu reads it), else
/// [`SOZU_DEFAULT_CONFIG`].
fn start_config(flag: Option<&std::path::Path>, environment: Option<OsString>) -> PathBuf {
    flag.map(PathBuf::from)
        .or_else(|| {
            environment
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| option_env!("SOZU_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(SOZU_DEFAULT_CONFIG))
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Start => {
            let config = start_config(cli.config.as_deref(), std::env::var_os("SOZU_CONFIG"));
            main_process::start(&config)
        }
        Command::Worker(args) => worker::run(args),
        Command::Main(args) => main_process::run_handed_over(args),
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check::run(&cli),
        Command::Top(args) => top::run(&cli, args),
        Command::Chaos(args) => chaos::run(args),
        Command::Route(args) => route::run(args),
        Command::Fleet { command } => fleet::run(&cli, command),
        command => client::run(&cli, command),
    }
}

/// An error followed by its causes, `: `-separated.
pub fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_subcommand_s_flags_are_defined_when_it_is_named() {
        let command = Cli::command();
        for name in ["worker", "cluster", "listener"] {
            let subcommand = command.find_subcommand(name).unwrap();
            assert_eq!(subcommand.get_arguments().count(), 0, "{name}");
            assert_eq!(subcommand.get_subcommands().count(), 0, "{name}");
        }
        let mut command = Cli::command();
        command.build();
        let worker = command.find_subcommand("worker").unwrap();
        assert!(
            worker
                .get_arguments()
                .any(|flag| flag.get_long() == Some("id"))
        );
        let cluster = command.find_subcommand("cluster").unwrap();
        assert!(cluster.find_subcommand("add").is_some());
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["sozu", "config", "check", "-c", "a.toml", "-j", "-t", "500"])
                .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("a.toml")));
        assert_eq!(cli.json, Some(JsonFormat::Sozu));
        assert_eq!(cli.timeout, Some(Duration::from_millis(500)));
        let cli = Cli::try_parse_from(["sozu", "--config", "b.toml", "config", "check"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("b.toml")));
        assert_eq!(cli.json, None);
        let cli = Cli::try_parse_from(["sozu", "status", "--json=compact"]).unwrap();
        assert_eq!(cli.json, Some(JsonFormat::Compact));
    }

    #[test]
    fn sozu_scripts_parse_unchanged() {
        let commands: &[&[&str]] = &[
            &["sozu", "-c", "c.toml", "status"],
            &[
                "sozu",
                "cluster",
                "add",
                "-i",
                "api",
                "--load-balancing-policy",
                "ROUND_ROBIN",
                "-s",
            ],
            &["sozu", "cluster", "list", "-i", "api"],
            &["sozu", "cluster", "remove", "-i", "api"],
            &["sozu", "cluster", "h2", "enable", "-i", "api"],
            &[
                "sozu",
                "cluster",
                "health-check",
                "set",
                "-i",
                "api",
                "-u",
                "/health",
                "--interval",
                "5",
            ],
            &[
                "sozu",
                "backend",
                "add",
                "-i",
                "api",
                "--backend-id",
                "api-1",
                "-a",
                "127.0.0.1:3000",
                "-b",
                "true",
            ],
            &[
                "sozu",
                "backend",
                "remove",
                "-i",
                "api",
                "--backend-id",
                "api-1",
                "-a",
                "127.0.0.1:3000",
            ],
            &[
                "sozu",
                "frontend",
                "http",
                "add",
                "-a",
                "127.0.0.1:8080",
                "--hostname",
                "x.example",
                "-p",
                "/api",
                "id",
                "api",
            ],
            &[
                "sozu",
                "frontend",
                "https",
                "add",
                "-a",
                "127.0.0.1:8443",
                "--hostname",
                "x.example",
                "deny",
            ],
            &[
                "sozu",
                "frontend",
                "http",
                "remove",
                "-a",
                "127.0.0.1:8080",
                "--hostname",
                "x.example",
                "id",
                "api",
            ],
            &[
                "sozu",
                "frontend",
                "tcp",
                "add",
                "-i",
                "db",
                "-a",
                "127.0.0.1:5432",
            ],
            &["sozu", "frontend", "list", "--http", "-d", "example"],
            &[
                "sozu",
                "listener",
                "http",
                "add",
                "-a",
                "127.0.0.1:8081",
                "--expect-proxy",
            ],
            &[
                "sozu",
                "listener",
                "https",
                "update",
                "-a",
                "127.0.0.1:8443",
                "--strict-sni-binding",
            ],
            &[
                "sozu",
                "listener",
                "tcp",
                "activate",
                "-a",
                "127.0.0.1:5432",
            ],
            &["sozu", "listener", "list"],
            &[
                "sozu",
                "certificate",
                "add",
                "-a",
                "127.0.0.1:8443",
                "--certificate",
                "c.pem",
                "--key",
                "k.pem",
            ],
            &[
                "sozu",
                "certificate",
                "remove",
                "-a",
                "127.0.0.1:8443",
                "-f",
                "abababababababababababababababababababababababababababababababab",
            ],
            &["sozu", "certificate", "list", "-d", "example", "-w"],
            &["sozu", "state", "save", "-f", "state.json"],
            &["sozu", "state", "load", "-f", "state.json"],
            &["sozu", "state", "stats"],
            &["sozu", "reload", "-f", "c.toml"],
            &[
                "sozu",
                "metrics",
                "get",
                "--clusters",
                "a,b",
                "--no-clusters",
            ],
            &["sozu", "logging", "debug"],
            &["sozu", "events"],
            &["sozu", "top", "-r", "2"],
            &["sozu", "top", "--refresh-ms", "500"],
            &["sozu", "connection-limit", "set", "10"],
            &["sozu", "registration", "list", "--json"],
            &[
                "sozu",
                "fault",
                "add",
                "-n",
                "slow",
                "-i",
                "api",
                "--type",
                "latency",
                "--latency",
                "200",
                "--ttl",
                "60",
            ],
            &[
                "sozu",
                "fault",
                "update",
                "-n",
                "slow",
                "--probability",
                "0.5",
            ],
            &["sozu", "fault", "remove", "-n", "slow"],
            &["sozu", "fault", "list"],
            &["sozu", "fault", "reset"],
            &[
                "sozu",
                "chaos",
                "--proxy",
                "127.0.0.1:8000",
                "--backend",
                "127.0.0.1:80",
                "--behavior",
                "20:delay,10:error",
                "--protocol",
                "http",
            ],
            &["sozu", "upgrade", "--worker", "1"],
            &["sozu", "shutdown", "--hard"],
            &["sozu", "-c", "c.toml", "fleet", "status", "--json"],
            &["sozu", "-c", "c.toml", "fleet", "import"],
            &[
                "sozu", "-c", "c.toml", "fleet", "export", "--files", "certs",
            ],
        ];
        for command in commands {
            if let Err(error) = Cli::try_parse_from(*command) {
                panic!("{command:?}: {error}");
            }
        }
    }

    /// Issue 11: `sozu start` without `-c` reads `SOZU_CONFIG`, then Sōzu's default path.
    #[test]
    fn start_falls_back_to_sozu_config_then_the_default_path() {
        let flag = std::path::Path::new("given.toml");
        assert_eq!(
            start_config(Some(flag), Some("env.toml".into())),
            PathBuf::from("given.toml")
        );
        assert_eq!(
            start_config(None, Some("env.toml".into())),
            PathBuf::from("env.toml")
        );
        let built = option_env!("SOZU_CONFIG").unwrap_or(SOZU_DEFAULT_CONFIG);
        assert_eq!(start_config(None, None), PathBuf::from(built));
        assert_eq!(start_config(None, Some("".into())), PathBuf::from(built));
    }

    /// `metrics get -r 0` would query the proxy in a tight loop: refused, naming the flag.
    #[test]
    fn a_metrics_refresh_of_zero_seconds_is_refused() {
        let error = match Cli::try_parse_from(["sozu", "metrics", "get", "-r", "0"]) {
            Ok(cli) => panic!("accepted: {cli:?}"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("--refresh"), "{error}");
        assert!(Cli::try_parse_from(["sozu", "metrics", "get", "-r", "1"]).is_ok());
    }

    /// Issue 11: Sōzu's short flags of `metrics get` and its `--cert`/`--old-cert` spellings.
    #[test]
    fn sozu_short_flags_and_aliases_are_read() {
        let cli = Cli::try_parse_from([
            "sozu", "metrics", "get", "-n", "a,b", "-k", "app", "-b", "app-1", "-w",
        ])
        .unwrap();
        let Command::Metrics {
            command:
                metrics::MetricsCommand::Get {
                    names,
                    clusters,
                    backends,
                    workers,
                    ..
                },
        } = cli.command
        else {
            panic!("not metrics get: {cli:?}");
        };
        assert_eq!(
            (names, clusters, backends),
            (
                vec!["a".to_string(), "b".to_string()],
                vec!["app".to_string()],
                vec!["app-1".to_string()]
            )
        );
        assert!(workers);
        for command in [
            &[
                "sozu",
                "certificate",
                "remove",
                "-a",
                "127.0.0.1:443",
                "--cert",
                "c.pem",
            ][..],
            &[
                "sozu",
                "certificate",
                "replace",
                "-a",
                "127.0.0.1:443",
                "--new-certificate",
                "n.pem",
                "--new-key",
                "n.key",
                "--old-cert",
                "c.pem",
            ],
        ] {
            if let Err(error) = Cli::try_parse_from(command) {
                panic!("{command:?}: {error}");
            }
        }
    }
}
