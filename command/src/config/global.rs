//! The top-level settings of the configuration file and its `[metrics]` section: everything
//! but the routing state.

use std::time::Duration;

use super::{
    AccessLogFormat, Config, DEFAULT_SPLICE_MIN_BODY, Loader, LogTarget, MetricsConfig,
    document::{Field, Table},
    error::ConfigError,
    files::Files,
};
use crate::{
    request::{
        Timeouts, default_back_timeout, default_connect_timeout, default_front_timeout,
        default_request_timeout,
    },
    rules::{self, Bounds, Unit},
};

/// A user id; `u32::MAX` is `(uid_t) -1`, which names no user.
const USER_ID: Bounds = Bounds {
    min: 0,
    max: 4_294_967_294,
    unit: Unit::None,
};

/// Every key of the top level.
pub(super) const KEYS: &[&str] = &[
    "command_socket",
    "command_buffer_size",
    "max_command_buffer_size",
    "command_allowed_uids",
    "ctl_command_timeout",
    "saved_state",
    "automatic_state_save",
    "log_level",
    "log_target",
    "log_colored",
    "access_logs_target",
    "access_logs_format",
    "access_logs_colored",
    "audit_logs_target",
    "audit_logs_json_target",
    "worker_count",
    "worker_automatic_restart",
    "worker_timeout",
    "handle_process_affinity",
    "pid_file_path",
    "max_connections",
    "min_buffers",
    "max_buffers",
    "buffer_size",
    "slab_entries_per_connection",
    "front_timeout",
    "back_timeout",
    "connect_timeout",
    "request_timeout",
    "accept_queue_timeout",
    "zombie_check_interval",
    "evict_on_queue_full",
    "activate_listeners",
    "disable_cluster_metrics",
    "max_connections_per_ip",
    "retry_after",
    "basic_auth_max_credential_bytes",
    "splice_pipe_capacity_bytes",
    "splice_min_body_bytes",
    "metrics",
    "toxiproxy",
    "faults",
    "provider",
    "registration",
    "listeners",
    "clusters",
    "frontends",
];

/// Top-level keys accepted and not in force, with what is done instead.
const IGNORED: &[(&str, &str)] = &[
    (
        "handle_process_affinity",
        "pinning workers to CPU cores is not built yet",
    ),
    (
        "min_buffers",
        "buffers are allocated on demand, up to `max_buffers`",
    ),
    (
        "slab_entries_per_connection",
        "session slots are sized by the worker",
    ),
    ("accept_queue_timeout", "the accept queue is not built yet"),
    (
        "zombie_check_interval",
        "the zombie session check is not built yet",
    ),
    ("evict_on_queue_full", "the accept queue is not built yet"),
    (
        "basic_auth_max_credential_bytes",
        "the credential size limit is not built yet",
    ),
];

const METRICS_KEYS: &[&str] = &[
    "address",
    "prometheus_address",
    "tagged_metrics",
    "prefix",
    "detail",
];

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The top-level settings, with an empty routing state. An invalid value is recorded and
/// replaced by its default, so that every error of the file is found in one pass.
pub(super) fn settings(loader: &mut Loader, top: &mut Table<'_, '_>) -> Config {
    for &(key, reason) in IGNORED {
        let warning = top.ignore(key, &format!("accepted and ignored: {reason}"));
        loader.warn(warning);
    }

    let command_socket = top.with("command_socket", |field| loader.files.path(field));
    let command_socket = loader.or(command_socket, loader.files.resolve("sozu.sock"));
    let command_buffer_size = top.number("command_buffer_size", &rules::COMMAND_BUFFER_SIZE);
    let command_buffer_size = loader.or(command_buffer_size, 1_000_000);
    let max_command_buffer_size = top.with("max_command_buffer_size", |field| {
        let size: usize = field.number(&rules::MAX_COMMAND_BUFFER_SIZE)?;
        if size < command_buffer_size {
            return Err(field.invalid(format!(
                "at least `command_buffer_size` ({command_buffer_size})"
            )));
        }
        Ok(size)
    });
    let max_command_buffer_size =
        loader.or(max_command_buffer_size, command_buffer_size.max(2_000_000));
    let command_allowed_uids = top.with("command_allowed_uids", allowed_uids);
    let command_allowed_uids = loader.keep(command_allowed_uids).flatten();
    let ctl_command_timeout = top.with("ctl_command_timeout", |field| {
        field.milliseconds(&rules::CTL_COMMAND_TIMEOUT)
    });
    let ctl_command_timeout = loader.or(ctl_command_timeout, Duration::from_millis(1000));
    let saved_state = top.with("saved_state", |field| loader.files.path(field));
    let saved_state = loader.keep(saved_state).flatten();
    let automatic_state_save = top.with("automatic_state_save", |field| {
        let save = field.bool()?;
        if save && saved_state.is_none() {
            return Err(field.requires("`saved_state`, the file the state is saved to"));
        }
        Ok(save)
    });
    let automatic_state_save = loader.or(automatic_state_save, false);

    let log_level = top.with("log_level", log_level);
    let log_level = loader.or(log_level, "info".to_string());
    let access_logs_target = top.with("access_logs_target", |field| {
        log_target(field, &loader.files)
    });
    let access_logs_target = loader.keep(access_logs_target).flatten();
    let audit_logs_target = top.with("audit_logs_target", |field| loader.files.path(field));
    let audit_logs_target = loader.keep(audit_logs_target).flatten();
    let audit_logs_json_target =
        top.with("audit_logs_json_target", |field| loader.files.path(field));
    let audit_logs_json_target = loader.keep(audit_logs_json_target).flatten();
    let log_target = top.with("log_target", |field| log_target(field, &loader.files));
    let log_target = loader.or(log_target, LogTarget::Stdout);
    let log_colored = top.bool("log_colored");
    let log_colored = loader.or(log_colored, false);
    let access_logs_colored = top.bool("access_logs_colored");
    let access_logs_colored = loader.or(access_logs_colored, log_colored);
    let access_logs_format = access_logs_format(loader, top);

    let worker_count = top.number("worker_count", &rules::WORKER_COUNT);
    let worker_count = loader.or(worker_count, 2);
    let worker_automatic_restart = top.bool("worker_automatic_restart");
    let worker_automatic_restart = loader.or(worker_automatic_restart, true);
    let worker_timeout = top.seconds("worker_timeout", &rules::TIMEOUT);
    let worker_timeout = loader.or(worker_timeout, Duration::from_secs(10));
    let pid_file_path = top.with("pid_file_path", |field| loader.files.path(field));
    let pid_file_path = loader.keep(pid_file_path).flatten();

    let max_connections = top.number("max_connections", &rules::MAX_CONNECTIONS);
    let max_connections = loader.or(max_connections, 10_000);
    let max_buffers = top.number("max_buffers", &rules::MAX_BUFFERS);
    let max_buffers = loader.or(max_buffers, 1_000);
    let buffer_size = top.number("buffer_size", &rules::BUFFER_SIZE);
    let buffer_size = loader.or(buffer_size, 16_393);
    let front_timeout = top.seconds("front_timeout", &rules::TIMEOUT);
    let front_timeout = loader.or(front_timeout, default_front_timeout());
    let back_timeout = top.seconds("back_timeout", &rules::TIMEOUT);
    let back_timeout = loader.or(back_timeout, default_back_timeout());
    let connect_timeout = top.seconds("connect_timeout", &rules::TIMEOUT);
    let connect_timeout = loader.or(connect_timeout, default_connect_timeout());
    let request_timeout = top.seconds("request_timeout", &rules::TIMEOUT);
    let request_timeout = loader.or(request_timeout, default_request_timeout());
    let activate_listeners = top.bool("activate_listeners");
    let activate_listeners = loader.or(activate_listeners, true);
    let max_connections_per_ip =
        top.number("max_connections_per_ip", &rules::MAX_CONNECTIONS_PER_IP);
    let max_connections_per_ip = loader.or(max_connections_per_ip, 0);
    let retry_after = top.seconds("retry_after", &rules::HEADER_SECONDS);
    let retry_after = loader.or(retry_after, Duration::from_secs(60));
    let disable_cluster_metrics = top.bool("disable_cluster_metrics");
    let disable_cluster_metrics = loader.or(disable_cluster_metrics, false);
    let splice_pipe_capacity =
        top.number("splice_pipe_capacity_bytes", &rules::SPLICE_PIPE_CAPACITY);
    let splice_pipe_capacity = loader.or(splice_pipe_capacity, 0);
    let splice_min_body = top.number("splice_min_body_bytes", &rules::SPLICE_MIN_BODY);
    let splice_min_body = loader.or(splice_min_body, DEFAULT_SPLICE_MIN_BODY);
    let metrics = top.field("metrics").map(|field| metrics(loader, field));
    let metrics = metrics.and_then(|metrics| loader.keep(metrics));
    let toxiproxy = top
        .field("toxiproxy")
        .map(|field| super::faults::toxiproxy(loader, field));
    let toxiproxy = toxiproxy.and_then(|address| loader.keep(address));

    Config {
        command_socket,
        command_buffer_size,
        max_command_buffer_size,
        command_allowed_uids,
        ctl_command_timeout,
        saved_state,
        automatic_state_save,
        log_level,
        log_target,
        log_colored,
        access_logs_target,
        access_logs_format,
        access_logs_colored,
        audit_logs_target,
        audit_logs_json_target,
        worker_count,
        worker_automatic_restart,
        worker_timeout,
        pid_file_path,
        max_connections,
        max_buffers,
        buffer_size,
        timeouts: Timeouts {
            front: front_timeout,
            back: back_timeout,
            connect: connect_timeout,
            request: request_timeout,
        },
        activate_listeners,
        max_connections_per_ip,
        retry_after,
        disable_cluster_metrics,
        splice_pipe_capacity,
        splice_min_body,
        metrics,
        toxiproxy,
        etcd: None,
        registration: super::RegistrationConfig::default(),
        listeners: Vec::new(),
        clusters: Vec::new(),
        backends: Vec::new(),
        certificates: Vec::new(),
        frontends: Vec::new(),
        faults: Vec::new(),
    }
}

/// The user ids allowed on the command socket: a list of at least one.
fn allowed_uids(field: Field<'_, '_>) -> Result<Vec<u32>, ConfigError> {
    let uids = field
        .items()?
        .into_iter()
        .map(|item| item.number(&USER_ID))
        .collect::<Result<Vec<u32>, _>>()?;
    if uids.is_empty() {
        return Err(field.invalid(
            "a list of at least one user id (leave the key out to admit every user \
             the socket's permissions let in)",
        ));
    }
    Ok(uids)
}

/// A level, or an `env_logger` filter whose directives each end with a level.
fn log_level(field: Field<'_, '_>) -> Result<String, ConfigError> {
    let text = field.string()?;
    let valid = text
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .all(|directive| {
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            LOG_LEVELS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(level.trim()))
        });
    if !valid {
        return Err(field.invalid(format!(
            "a level among {}, or a filter such as \"info,sozu_lib::http=debug\"",
            LOG_LEVELS.join(", ")
        )));
    }
    Ok(text.to_string())
}

/// `stdout`, `tcp://IP:PORT`, `udp://IP:PORT`, `unix://PATH` or `file://PATH`; relative paths
/// are resolved against the configuration's folder.
fn log_target(field: Field<'_, '_>, files: &Files) -> Result<LogTarget, ConfigError> {
    let text = field.string()?;
    let target: LogTarget = text
        .parse()
        .map_err(|_| field.invalid(LogTarget::EXPECTED))?;
    Ok(match target {
        LogTarget::File(path) => LogTarget::File(files.folder_join(&path)),
        LogTarget::Unix(path) => LogTarget::Unix(files.folder_join(&path)),
        other => other,
    })
}

/// `ascii`, `json`, or Sōzu's `protobuf`, which is accepted and written as ascii.
fn access_logs_format(loader: &mut Loader, top: &mut Table<'_, '_>) -> AccessLogFormat {
    let Some(field) = top.field("access_logs_format") else {
        return AccessLogFormat::default();
    };
    let format = field.choice(&[
        ("ascii", Some(AccessLogFormat::Ascii)),
        ("json", Some(AccessLogFormat::Json)),
        ("protobuf", None),
    ]);
    match loader.keep(format) {
        Some(Some(format)) => format,
        Some(None) => {
            loader.warn(Some(field.warning(
                "protobuf access logs are not built yet: access logs are written as ascii",
            )));
            AccessLogFormat::Ascii
        }
        None => AccessLogFormat::default(),
    }
}

/// The `[metrics]` section: statsd, Prometheus, or both.
fn metrics(loader: &mut Loader, field: Field<'_, '_>) -> Result<MetricsConfig, ConfigError> {
    let mut table = field.table("[metrics]")?;
    loader.check_keys(&mut table, &[METRICS_KEYS]);
    let address = table.address("address")?;
    let prometheus_address = table.address("prometheus_address")?;
    let tagged_metrics = table.bool("tagged_metrics")?.unwrap_or(false);
    let prefix = table
        .string("prefix")?
        .unwrap_or_else(|| "sozu".to_string());
    let detail = table.ignore(
        "detail",
        "accepted and ignored: metrics are kept per cluster and backend",
    );
    loader.warn(detail);
    if address.is_none() && prometheus_address.is_none() {
        return Err(ConfigError::MissingKey {
            key: "address",
            section: "[metrics] (set `address` for statsd or `prometheus_address`)".to_string(),
            line: table.line(),
        });
    }
    table.unused()?;
    Ok(MetricsConfig {
        address,
        prometheus_address,
        tagged_metrics,
        prefix,
    })
}
