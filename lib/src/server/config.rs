//! The settings a worker starts with and that no order changes: sizes and caps, access logs,
//! statsd.

use std::{net::SocketAddr, time::Duration};

use sozu_command_lib::config::{AccessLogFormat, DEFAULT_SPLICE_MIN_BODY, LogTarget};

use crate::protocol::tls::KeyCheck;

/// Settings of a worker that orders do not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Sessions open at once; accepting pauses at the cap.
    pub max_connections: usize,
    /// Size of each pooled buffer; a session uses two.
    pub buffer_size: usize,
    /// Buffers allocated at start.
    pub min_buffers: usize,
    /// Free buffers kept for reuse.
    pub max_buffers: usize,
    /// Initial size of the command channel's buffer.
    pub command_buffer_size: usize,
    /// The largest message accepted on the command channel.
    pub max_command_buffer_size: usize,
    /// Backends tried for one connection before giving up.
    pub connect_attempts: u32,
    /// Connections accepted from one listener before serving other events.
    pub accept_batch: usize,
    /// The `Retry-After` of 429 answers, unless the cluster sets its own.
    pub retry_after: Duration,
    /// Access logs; `None` writes none.
    pub access_logs: Option<AccessLogSettings>,
    /// Where figures are pushed as statsd.
    pub statsd: Option<StatsdSettings>,
    /// Keep figures for the proxy and listeners only, not per cluster and backend.
    pub disable_cluster_metrics: bool,
    /// Size of the kernel pipes of TCP listeners with `splice`; 0 keeps the kernel's default.
    pub splice_pipe_capacity: usize,
    /// The least HTTP/1 body left after its head that moves with `splice(2)` (plain HTTP,
    /// `Content-Length` bodies); 0 splices none.
    pub http_splice_min_body: u64,
    /// When the private keys of `ADD_CERTIFICATE` and `REPLACE_CERTIFICATE` are decoded and
    /// checked: `Now` (the default) refuses a bad pair with the order; `OnFirstUse` (which
    /// reads the leaf certificate alone with the order, its chain and key at first use) suits
    /// a worker fed by a main process that checked every pair.
    pub key_check: KeyCheck,
}

/// Where access logs go and how they look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// `None`: through the process's logger, at `info` with the target `access`.
    pub target: Option<LogTarget>,
    /// How each line is written: one human-readable line, or one JSON object.
    pub format: AccessLogFormat,
    /// Human-readable lines in colour (ANSI escapes), as Sōzu colours them.
    pub colored: bool,
}

/// A statsd destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdSettings {
    /// The statsd server's UDP address.
    pub address: SocketAddr,
    /// The prefix of every metric name (`sozu` by default in the configuration file).
    pub prefix: String,
    /// Tags after the name (`,origin=WRK-00,cluster_id=…`) rather than names carrying the
    /// worker, cluster and backend.
    pub tagged: bool,
    /// The worker's id, sent as Sōzu's `origin` (`WRK-00`).
    pub worker_id: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            buffer_size: 16_393,
            min_buffers: 1,
            max_buffers: 1_000,
            command_buffer_size: 1_000_000,
            max_command_buffer_size: 2_000_000,
            connect_attempts: 3,
            accept_batch: 64,
            retry_after: Duration::from_secs(60),
            access_logs: None,
            statsd: None,
            disable_cluster_metrics: false,
            splice_pipe_capacity: 0,
            http_splice_min_body: DEFAULT_SPLICE_MIN_BODY,
            key_check: KeyCheck::Now,
        }
    }
}
