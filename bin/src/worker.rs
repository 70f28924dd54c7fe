//! `sozu worker`: the hidden entry point of a worker process, started by the main process.
//!
//! The main process hands the worker two inherited sockets, named by number on the command
//! line: one carries the listener sockets (SCM_RIGHTS, received once, before anything else),
//! the other is the command channel, on which the main process first sends the orders that
//! build the current state and then every later order. The worker's event loop
//! ([`sozu_lib::server::Server`]) serves until a stop order completes or the main process
//! goes away (its channel closes).

use std::{os::unix::net::UnixStream, process::ExitCode, time::Duration};

use anyhow::Context;
use log::{error, info};
use sozu_command_lib::{
    channel::Channel,
    config::{AccessLogFormat, DEFAULT_SPLICE_MIN_BODY, LogTarget},
    scm::ScmSocket,
};
use sozu_lib::{
    protocol::tls::KeyCheck,
    server::{AccessLogSettings, Server, ServerConfig, StatsdSettings},
};

use crate::{logging, sys};

/// What a worker is told on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The worker's id, as `sozu status` shows it.
    #[arg(long)]
    pub id: u32,
    /// The inherited socket of the command channel.
    #[arg(long)]
    pub channel_fd: i32,
    /// The inherited socket on which the listener sockets arrive.
    #[arg(long)]
    pub scm_fd: i32,
    #[command(flatten)]
    pub settings: WorkerSettings,
}

/// The settings of a worker that orders do not change, as the main process passes them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct WorkerSettings {
    #[arg(long)]
    pub max_connections: usize,
    #[arg(long)]
    pub buffer_size: usize,
    #[arg(long)]
    pub max_buffers: usize,
    #[arg(long)]
    pub command_buffer_size: usize,
    #[arg(long)]
    pub max_command_buffer_size: usize,
    /// The `Retry-After` of 429 answers, in seconds.
    #[arg(long)]
    pub retry_after: u64,
    #[arg(long)]
    pub log_filter: String,
    /// Where logs go (`stdout`, `file://PATH`, `tcp://…`, `udp://…`, `unix://PATH`); absent:
    /// stdout.
    #[arg(long)]
    pub log_target: Option<LogTarget>,
    /// Log levels in colour.
    #[arg(long)]
    #[serde(default)]
    pub log_colored: bool,
    /// Where access logs go (`stdout`, `file://PATH`, `udp://…`); absent: with the logs.
    #[arg(long)]
    pub access_logs_target: Option<String>,
    /// `ascii` or `json`.
    #[arg(long, default_value = "ascii")]
    pub access_logs_format: String,
    /// Text access log lines in colour (`access_logs_colored`, when they go to stdout).
    #[arg(long)]
    #[serde(default)]
    pub access_logs_colored: bool,
    /// Where figures are pushed as statsd.
    #[arg(long)]
    pub statsd_address: Option<std::net::SocketAddr>,
    #[arg(long, default_value = "sozu")]
    pub statsd_prefix: String,
    #[arg(long)]
    pub tagged_metrics: bool,
    #[arg(long)]
    pub disable_cluster_metrics: bool,
    /// Capacity of the kernel pipes of spliced TCP listeners; 0 keeps the kernel's.
    #[arg(long, default_value_t = 0)]
    pub splice_pipe_capacity: usize,
    /// The least HTTP/1 body left after its head that is spliced; 0 splices none.
    #[arg(long, default_value_t = DEFAULT_SPLICE_MIN_BODY)]
    pub splice_min_body: u64,
}

impl WorkerSettings {
    /// The command-line flags that carry these settings to a worker.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--max-connections={}", self.max_connections),
            format!("--buffer-size={}", self.buffer_size),
            format!("--max-buffers={}", self.max_buffers),
            format!("--command-buffer-size={}", self.command_buffer_size),
            format!("--max-command-buffer-size={}", self.max_command_buffer_size),
            format!("--retry-after={}", self.retry_after),
            format!("--log-filter={}", self.log_filter),
        ];
        if let Some(target) = &self.log_target {
            args.push(format!("--log-target={target}"));
        }
        if self.log_colored {
            args.push("--log-colored".to_string());
        }
        if let Some(target) = &self.access_logs_target {
            args.push(format!("--access-logs-target={target}"));
        }
        args.push(format!("--access-logs-format={}", self.access_logs_format));
        if self.access_logs_colored {
            args.push("--access-logs-colored".to_string());
        }
        if let Some(address) = self.statsd_address {
            args.push(format!("--statsd-address={address}"));
        }
        args.push(format!("--statsd-prefix={}", self.statsd_prefix));
        if self.tagged_metrics {
            args.push("--tagged-metrics".to_string());
        }
        if self.disable_cluster_metrics {
            args.push("--disable-cluster-metrics".to_string());
        }
        args.push(format!(
            "--splice-pipe-capacity={}",
            self.splice_pipe_capacity
        ));
        args.push(format!("--splice-min-body={}", self.splice_min_body));
        args
    }

    fn server_config(&self, worker_id: u32) -> anyhow::Result<ServerConfig> {
        let target = self
            .access_logs_target
            .as_deref()
            .map(str::parse::<LogTarget>)
            .transpose()?;
        let format = match self.access_logs_format.as_str() {
            "json" => AccessLogFormat::Json,
            _ => AccessLogFormat::Ascii,
        };
        Ok(ServerConfig {
            max_connections: self.max_connections,
            buffer_size: self.buffer_size,
            max_buffers: self.max_buffers,
            command_buffer_size: self.command_buffer_size,
            max_command_buffer_size: self.max_command_buffer_size,
            retry_after: Duration::from_secs(self.retry_after),
            access_logs: Some(AccessLogSettings {
                target,
                format,
                colored: self.access_logs_colored,
            }),
            statsd: self.statsd_address.map(|address| StatsdSettings {
                address,
                prefix: self.statsd_prefix.clone(),
                tagged: self.tagged_metrics,
                worker_id,
            }),
            disable_cluster_metrics: self.disable_cluster_metrics,
            splice_pipe_capacity: self.splice_pipe_capacity,
            http_splice_min_body: self.splice_min_body,
            // The main process checked every certificate's key before sending its order
            // (`main_process::orders::apply_order`): decoding each again here would only delay
            // the start.
            key_check: KeyCheck::OnFirstUse,
            ..ServerConfig::default()
        })
    }
}

pub fn run(args: &WorkerArgs) -> ExitCode {
    let output = args
        .settings
        .log_target
        .clone()
        .unwrap_or(LogTarget::Stdout);
    // Coloured access lines without a target of their own go through the logger, which
    // must then keep their escapes.
    let style = logging::Style {
        levels: args.settings.log_colored,
        escapes: args.settings.log_colored || args.settings.access_logs_colored,
    };
    logging::init_styled(
        format!("worker {}", args.id),
        &args.settings.log_filter,
        output,
        style,
    );
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("worker {} failed: {error:#}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &WorkerArgs) -> anyhow::Result<()> {
    let channel = sys::take_inherited_fd(args.channel_fd).context("the command channel")?;
    let scm = sys::take_inherited_fd(args.scm_fd).context("the listener socket channel")?;
    let scm = ScmSocket::new(UnixStream::from(scm))?;
    let listeners = scm
        .receive_listeners()
        .context("cannot receive the listener sockets")?;
    let inherited = listeners.http.len() + listeners.https.len() + listeners.tcp.len();
    if !listeners.https.is_empty() {
        sozu_lib::protocol::tls::seed_random_in_background();
    }
    let settings = &args.settings;
    let channel = Channel::from_std(
        UnixStream::from(channel),
        settings.command_buffer_size,
        settings.max_command_buffer_size,
    )?;
    let mut server = Server::new(settings.server_config(args.id)?, channel, listeners)?;
    server.receive_listeners_from(scm);
    server.handle_log_filter(Box::new(|filter| {
        logging::check_filter(filter)?;
        logging::set_filter(filter);
        Ok(())
    }));
    info!("started with {inherited} listener socket(s)");
    server.run()?;
    Ok(())
}
