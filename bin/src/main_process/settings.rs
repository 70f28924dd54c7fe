//! The settings of the main process, taken from the configuration file at start and handed
//! as they are to a new main process during a hot upgrade (which must not depend on a file
//! that may have changed since).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sozu_command_lib::config::{AccessLogFormat, Config, LogTarget};

use crate::worker::WorkerSettings;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The configuration file the proxy started with, absolute: `sozu reload` and SIGHUP
    /// read it again.
    pub config_path: PathBuf,
    pub command_socket: PathBuf,
    pub command_buffer_size: usize,
    pub max_command_buffer_size: usize,
    /// Users admitted on the command socket besides root and the proxy's own user; `None`
    /// admits whoever the socket's mode (0600) lets in.
    #[serde(default)]
    pub command_allowed_uids: Option<Vec<u32>>,
    pub saved_state: Option<PathBuf>,
    pub automatic_state_save: bool,
    pub log_filter: String,
    pub log_output: LogTarget,
    /// `log_colored`.
    #[serde(default)]
    pub log_colored: bool,
    /// `audit_logs_target` and `audit_logs_json_target`: where each order that changes
    /// something is recorded, as text and as JSON.
    #[serde(default)]
    pub audit_logs_target: Option<PathBuf>,
    #[serde(default)]
    pub audit_logs_json_target: Option<PathBuf>,
    pub worker_count: u16,
    pub worker_automatic_restart: bool,
    pub worker_timeout: Duration,
    pub pid_file_path: Option<PathBuf>,
    /// Where the Prometheus endpoint listens, and the prefix of its metric names.
    pub prometheus_address: Option<std::net::SocketAddr>,
    pub metrics_prefix: String,
    /// `[toxiproxy] address`: where the Toxiproxy-compatible API listens.
    #[serde(default)]
    pub toxiproxy_address: Option<std::net::SocketAddr>,
    pub worker: WorkerSettings,
    /// `[provider.etcd]`.
    #[serde(default)]
    pub etcd: Option<sozu_command_lib::config::EtcdProvider>,
    /// `[registration]`.
    pub registration: sozu_command_lib::config::RegistrationConfig,
}

impl Settings {
    /// The settings of `config`, read from `config_path`.
    pub fn new(config_path: PathBuf, config: &Config) -> Settings {
        let log_output = config.log_target.clone();
        Settings {
            config_path,
            command_socket: config.command_socket.clone(),
            command_buffer_size: config.command_buffer_size,
            max_command_buffer_size: config.max_command_buffer_size,
            command_allowed_uids: config.command_allowed_uids.clone(),
            saved_state: config.saved_state.clone(),
            automatic_state_save: config.automatic_state_save,
            log_filter: config.log_level.clone(),
            log_output,
            log_colored: config.log_colored,
            audit_logs_target: config.audit_logs_target.clone(),
            audit_logs_json_target: config.audit_logs_json_target.clone(),
            worker_count: config.worker_count,
            worker_automatic_restart: config.worker_automatic_restart,
            worker_timeout: config.worker_timeout,
            pid_file_path: config.pid_file_path.clone(),
            prometheus_address: config
                .metrics
                .as_ref()
                .and_then(|metrics| metrics.prometheus_address),
            toxiproxy_address: config.toxiproxy,
            metrics_prefix: config
                .metrics
                .as_ref()
                .map_or_else(|| "sozu".to_string(), |metrics| metrics.prefix.clone()),
            worker: WorkerSettings {
                max_connections: config.max_connections,
                buffer_size: config.buffer_size,
                max_buffers: config.max_buffers,
                command_buffer_size: config.command_buffer_size,
                max_command_buffer_size: config.max_command_buffer_size,
                retry_after: config.retry_after.as_secs(),
                log_filter: config.log_level.clone(),
                log_target: Some(config.log_target.clone()),
                log_colored: config.log_colored,
                access_logs_target: config.access_logs_target.as_ref().map(ToString::to_string),
                access_logs_format: match config.access_logs_format {
                    AccessLogFormat::Ascii => "ascii".to_string(),
                    AccessLogFormat::Json => "json".to_string(),
                },
                // As Sōzu: only lines that reach stdout are coloured.
                access_logs_colored: config.access_logs_colored
                    && matches!(
                        config
                            .access_logs_target
                            .as_ref()
                            .unwrap_or(&config.log_target),
                        LogTarget::Stdout
                    ),
                statsd_address: config.metrics.as_ref().and_then(|metrics| metrics.address),
                statsd_prefix: config
                    .metrics
                    .as_ref()
                    .map_or_else(|| "sozu".to_string(), |metrics| metrics.prefix.clone()),
                tagged_metrics: config
                    .metrics
                    .as_ref()
                    .is_some_and(|metrics| metrics.tagged_metrics),
                disable_cluster_metrics: config.disable_cluster_metrics,
                splice_pipe_capacity: config.splice_pipe_capacity,
                splice_min_body: config.splice_min_body,
            },
            etcd: config.etcd.clone(),
            registration: config.registration.clone(),
        }
    }

    /// The most output a client may leave unread before it is disconnected: a few of the
    /// largest messages.
    pub fn max_client_backlog(&self) -> usize {
        self.max_command_buffer_size.saturating_mul(4).max(1 << 20)
    }
}
