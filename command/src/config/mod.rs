//! The configuration file: Sōzu's `config.toml` format parsed into a typed [`Config`], and the
//! orders that build the same routing state from empty.
//!
//! [`Config::load`] reads the file and every file it names (certificates, answers), so that
//! orders carry contents, never paths. Relative paths resolve against the configuration file's
//! folder, or against the current folder when only there they name something (Sōzu's way). Every key of Sōzu 2.1 is recognised: keys in force become typed fields; keys of
//! features not built yet are accepted with a [`ConfigWarning`] when ignoring them only changes
//! tuning, and refused when ignoring them would change what traffic gets. Unknown top-level
//! keys are warned about and ignored, as Sōzu ignores them; unknown keys inside a table, invalid
//! values and missing keys are [`ConfigError`]s that name the key and its line; all the errors
//! of a file are reported at once, as [`ConfigErrors`]. A frontend whose address has no
//! listener gets one with the defaults, as in Sōzu, with an info note.
//!
//! `doc/configure.md` describes every key for operators.

mod answers;
mod cluster;
mod content;
mod document;
mod error;
mod faults;
mod files;
mod frontend;
mod global;
mod listener;
mod provider;
mod registration;
pub mod tls;

#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use self::{answers::LISTENER_LEGACY_KEYS, faults::DEFAULT_TOXIPROXY_ADDRESS};
use self::{
    document::{Document, Table},
    files::Files,
};
pub use self::{
    error::{ConfigError, ConfigErrors, ConfigWarning, Severity},
    frontend::Frontend,
    listener::Listener,
    provider::EtcdProvider,
    registration::RegistrationConfig,
};
use crate::request::{
    AddBackend, AddCertificate, AddFault, Cluster, ConnectionLimit, Fault, Order, Timeouts,
};

/// The default `splice_min_body_bytes`: below a few pipe-fulls, a kernel pipe costs more
/// system calls than it saves copies.
pub const DEFAULT_SPLICE_MIN_BODY: u64 = 64 * 1024;

/// A parsed configuration file: the settings of the main process and the workers, and the
/// routing state to build at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The Unix socket of the command channel.
    pub command_socket: PathBuf,
    /// The size of a command channel's buffer, in bytes.
    pub command_buffer_size: usize,
    /// The largest message accepted on the command channel, in bytes.
    pub max_command_buffer_size: usize,
    /// The user ids whose processes may give orders; `None` admits every user the socket's
    /// permissions let in (its owner and root).
    pub command_allowed_uids: Option<Vec<u32>>,
    /// How long the command line waits for an answer.
    pub ctl_command_timeout: Duration,
    /// The state file loaded at start and written by `automatic_state_save`.
    pub saved_state: Option<PathBuf>,
    /// Save the state to `saved_state` after every routing change.
    pub automatic_state_save: bool,

    /// A level (`info`) or a filter in `env_logger` syntax (`info,sozu_lib::http=debug`).
    pub log_level: String,
    /// Where logs go (`log_target`, default stdout).
    pub log_target: LogTarget,
    /// Log levels in colour (ANSI escapes), as Sōzu's `log_colored`.
    pub log_colored: bool,
    /// Where access logs go; `None` sends them with the other logs.
    pub access_logs_target: Option<LogTarget>,
    /// How access logs are written (`access_logs_format`, default one text line per request).
    pub access_logs_format: AccessLogFormat,
    /// Access log lines in colour, as Sōzu's `access_logs_colored` (default `log_colored`).
    /// Only text lines written to stdout are coloured, as in Sōzu.
    pub access_logs_colored: bool,
    /// A file each order that changes something is appended to, one text line per order with
    /// the user and process that sent it (`audit_logs_target`).
    pub audit_logs_target: Option<PathBuf>,
    /// The same as `audit_logs_target`, one JSON object per line (`audit_logs_json_target`).
    pub audit_logs_json_target: Option<PathBuf>,

    /// Worker processes started (`worker_count`, 1 to 1024, default 2).
    pub worker_count: u16,
    /// Start a new worker when one dies.
    pub worker_automatic_restart: bool,
    /// How long the main process waits for a worker's answer before calling it not answering.
    pub worker_timeout: Duration,
    /// Where the main process writes its process id (`pid_file_path`); `None` writes none.
    pub pid_file_path: Option<PathBuf>,

    /// Sessions a worker keeps at once; accepting pauses at the cap.
    pub max_connections: usize,
    /// Buffers a worker's pool holds at most.
    pub max_buffers: usize,
    /// The size of one buffer, in bytes.
    pub buffer_size: usize,
    /// Listener defaults (the top-level `front_timeout`, `back_timeout`, `connect_timeout` and
    /// `request_timeout`): a listener without its own timeout takes these.
    pub timeouts: Timeouts,
    /// Start listening on every listener at start (`ActivateListener` orders).
    pub activate_listeners: bool,
    /// Cap on connections from one client address to one cluster; 0 means no cap.
    pub max_connections_per_ip: u64,
    /// The `Retry-After` value of 429 answers.
    pub retry_after: Duration,
    /// Keep figures for the proxy and listeners only, not per cluster and backend.
    pub disable_cluster_metrics: bool,
    /// Capacity of the kernel pipes of spliced TCP listeners, in bytes; 0 keeps the kernel's.
    pub splice_pipe_capacity: usize,
    /// The least HTTP/1 body left after its head that moves with `splice(2)`, in bytes
    /// (`splice_min_body_bytes`); 0 splices no HTTP body.
    pub splice_min_body: u64,
    /// The `[metrics]` section; `None` sends metrics nowhere (they can still be queried).
    pub metrics: Option<MetricsConfig>,
    /// `[toxiproxy]`: where the Toxiproxy-compatible API is served; off when `None`.
    pub toxiproxy: Option<SocketAddr>,
    /// `[provider.etcd]`: the etcd cluster this node takes routing from, if any.
    pub etcd: Option<EtcdProvider>,
    /// `[registration]`: registrations of services and the registration socket.
    pub registration: RegistrationConfig,

    /// The routing state, in file order within each kind.
    pub listeners: Vec<Listener>,
    /// `[clusters.ID]` sections, as `ADD_CLUSTER` orders.
    pub clusters: Vec<Cluster>,
    /// The backends of every cluster, as `ADD_BACKEND` orders.
    pub backends: Vec<AddBackend>,
    /// SNI certificates of HTTPS frontends, one per listener and certificate file.
    pub certificates: Vec<AddCertificate>,
    /// The frontends of every cluster, as their `ADD_*_FRONTEND` orders.
    pub frontends: Vec<Frontend>,
    /// `[[faults]]`, added after everything they may name.
    pub faults: Vec<Fault>,
}

/// Where logs go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogTarget {
    /// The process's standard output.
    Stdout,
    /// `file://PATH`.
    File(PathBuf),
    /// `tcp://IP:PORT`.
    Tcp(SocketAddr),
    /// `udp://IP:PORT`.
    Udp(SocketAddr),
    /// `unix://PATH`, a datagram socket.
    Unix(PathBuf),
}

impl LogTarget {
    /// The forms a target is written in.
    pub const EXPECTED: &'static str =
        "stdout, tcp://IP:PORT, udp://IP:PORT, unix://PATH or file://PATH";
}

impl std::str::FromStr for LogTarget {
    type Err = InvalidLogTarget;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidLogTarget(text.to_string());
        let path = |path: &str| {
            (!path.is_empty())
                .then(|| PathBuf::from(path))
                .ok_or_else(invalid)
        };
        if text == "stdout" {
            Ok(LogTarget::Stdout)
        } else if let Some(address) = text.strip_prefix("tcp://") {
            address.parse().map(LogTarget::Tcp).map_err(|_| invalid())
        } else if let Some(address) = text.strip_prefix("udp://") {
            address.parse().map(LogTarget::Udp).map_err(|_| invalid())
        } else if let Some(socket) = text.strip_prefix("unix://") {
            path(socket).map(LogTarget::Unix)
        } else if let Some(file) = text.strip_prefix("file://") {
            path(file).map(LogTarget::File)
        } else {
            Err(invalid())
        }
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::Stdout => f.write_str("stdout"),
            LogTarget::File(path) => write!(f, "file://{}", path.display()),
            LogTarget::Tcp(address) => write!(f, "tcp://{address}"),
            LogTarget::Udp(address) => write!(f, "udp://{address}"),
            LogTarget::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A log target in none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log target `{0}`: expected {expected}", expected = LogTarget::EXPECTED)]
pub struct InvalidLogTarget(pub String);

/// How access logs are written (`access_logs_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// One human-readable line per request.
    #[default]
    Ascii,
    /// One JSON object per request.
    Json,
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where metrics are pushed as statsd over UDP.
    pub address: Option<SocketAddr>,
    /// Where a Prometheus text endpoint is served.
    pub prometheus_address: Option<SocketAddr>,
    /// Statsd metrics with tags rather than names carrying the cluster and backend.
    pub tagged_metrics: bool,
    /// Prefix of every statsd metric name.
    pub prefix: String,
}

impl Config {
    /// Reads and checks a configuration file and every file it names.
    ///
    /// On success, also returns the warnings about keys accepted but not in force.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigErrors> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let absolute = std::path::absolute(path).map_err(read_error)?;
        let folder = absolute.parent().unwrap_or(Path::new("/"));
        Config::parse(&text, folder)
    }

    /// Checks the text of a configuration file whose relative paths resolve against `folder`.
    pub fn parse(text: &str, folder: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigErrors> {
        let doc = Document::new(text);
        let root = doc.parse()?;
        let mut loader = Loader {
            files: Files::new(folder),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let mut top = doc.table("the top level", root.get_ref(), 0);
        let ignored = top.ignored_unknown_keys(&[global::KEYS]);
        loader.warnings.extend(ignored);
        let mut config = global::settings(&mut loader, &mut top);
        let etcd = top
            .field("provider")
            .map(|field| provider::read(&mut loader, field));
        config.etcd = etcd.and_then(|etcd| loader.keep(etcd)).flatten();
        let registration = top
            .field("registration")
            .map(|field| registration::read(&mut loader, field));
        config.registration = registration
            .and_then(|registration| loader.keep(registration))
            .unwrap_or_default();
        let mut listeners = listener::read_all(&mut loader, &mut top, &config);
        let mut routing = frontend::Routing::new(&mut listeners, &config);
        let (clusters, backends) = cluster::read_all(&mut loader, &mut top, &mut routing);
        frontend::read_top_level(&mut loader, &mut top, &mut routing);
        let faults = top
            .field("faults")
            .map(|field| faults::read_all(&mut loader, field))
            .unwrap_or_default();
        loader.keep(top.unused());
        if let Some(errors) = ConfigErrors::new(loader.errors) {
            return Err(errors);
        }
        let (certificates, frontends) = routing.finish();
        config.listeners = listeners.into_listeners();
        config.clusters = clusters;
        config.backends = backends;
        config.certificates = certificates;
        config.frontends = frontends;
        config.faults = faults;
        let mut warnings = loader.warnings;
        warnings.sort_by_key(|warning| warning.line);
        Ok((config, warnings))
    }

    /// The orders that build this configuration's routing state from empty: listeners, their
    /// activation, clusters, backends, certificates, frontends, the connection limit, then the faults.
    pub fn orders(&self) -> Vec<Order> {
        self.clone().into_orders()
    }

    /// [`Config::orders`], taking the configuration apart instead of copying it: at 100,000
    /// frontends, a copy of each and freeing the originals was a tenth of a start.
    pub fn into_orders(self) -> Vec<Order> {
        self.into_order_iter().collect()
    }

    /// The orders of [`Config::into_orders`], one at a time: a start applies each as it comes,
    /// without a vector of every order (at 100,000 frontends, 70 MB written once and read once).
    pub fn into_order_iter(self) -> impl Iterator<Item = Order> {
        let listener_orders: Vec<Order> = self
            .listeners
            .iter()
            .map(Listener::add_order)
            .chain(
                self.listeners
                    .iter()
                    .filter(|_| self.activate_listeners)
                    .map(|listener| Order::ActivateListener(listener.listener_address())),
            )
            .collect();
        let limit = (self.max_connections_per_ip != 0).then_some(Order::SetMaxConnectionsPerIp(
            ConnectionLimit {
                max_connections_per_ip: self.max_connections_per_ip,
            },
        ));
        listener_orders
            .into_iter()
            .chain(self.clusters.into_iter().map(Order::AddCluster))
            .chain(self.backends.into_iter().map(Order::AddBackend))
            .chain(self.certificates.into_iter().map(Order::AddCertificate))
            .chain(self.frontends.into_iter().map(Frontend::into_order))
            .chain(limit)
            .chain(
                self.faults
                    .into_iter()
                    .map(|fault| Order::AddFault(AddFault { fault })),
            )
    }
}

/// What reading a file needs at every step: the files it names, and the errors and warnings
/// found so far.
struct Loader {
    files: Files,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Loader {
    /// Records the unknown keys of `table`.
    fn check_keys(&mut self, table: &mut Table<'_, '_>, known: &[&'static [&'static str]]) {
        self.errors.extend(table.unknown_keys(known));
    }

    /// The value, or `None` once its error is recorded.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.errors.push(error)).ok()
    }

    /// The value of an optional key, or `default` when it is absent or invalid (the error is
    /// recorded).
    fn or<T>(&mut self, value: Result<Option<T>, ConfigError>, default: T) -> T {
        self.keep(value).flatten().unwrap_or(default)
    }

    fn warn(&mut self, warning: Option<ConfigWarning>) {
        self.warnings.extend(warning);
    }
}
