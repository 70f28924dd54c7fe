//! Logs of the main process and the workers: `env_logger` lines tagged with the process's role
//! and pid, to stdout, a file, or a TCP, UDP or Unix datagram socket (`log_target`, as in Sōzu),
//! with a filter that can change while the process runs. A socket that cannot be reached is
//! named on stderr, where lines then go.
//!
//! The filter comes from the configuration's `log_level`; `RUST_LOG`, when set, overrides it at
//! start. A `LOGGING` order replaces it at run time.

use std::{
    fs::OpenOptions,
    io::Write,
    sync::{OnceLock, RwLock},
};

use log::{Log, Metadata, Record};
use sozu_command_lib::config::LogTarget;
use sozu_lib::log_socket::LogSocket;

/// The process-wide logger: an `env_logger` logger that [`set_filter`] can replace.
struct SwappableLogger {
    role: String,
    output: LogTarget,
    style: Style,
    inner: RwLock<env_logger::Logger>,
}

/// How lines look.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Levels in colour (`log_colored`).
    pub levels: bool,
    /// ANSI escapes in messages are written (coloured access lines, `access_logs_colored`);
    /// without, they are stripped.
    pub escapes: bool,
}

static LOGGER: OnceLock<SwappableLogger> = OnceLock::new();

/// Installs the logger of this process. `role` tags every line (`main`, `worker 2`);
/// `colored` writes levels in colour. Does nothing when a logger is already installed.
pub fn init(role: impl Into<String>, filter: &str, output: LogTarget, colored: bool) {
    let style = Style {
        levels: colored,
        escapes: colored,
    };
    init_styled(role, filter, output, style);
}

/// [`init`] with the [`Style`] of lines.
pub fn init_styled(role: impl Into<String>, filter: &str, output: LogTarget, style: Style) {
    let role = role.into();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| filter.to_string());
    let inner = build(&role, &filter, &output, style);
    let max_level = inner.filter();
    let logger = LOGGER.get_or_init(|| SwappableLogger {
        role,
        output,
        style,
        inner: RwLock::new(inner),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max_level);
    }
}

/// Replaces the filter: a level (`debug`) or `env_logger` directives (`info,sozu_lib=debug`).
pub fn set_filter(filter: &str) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let inner = build(&logger.role, filter, &logger.output, logger.style);
    log::set_max_level(inner.filter());
    if let Ok(mut current) = logger.inner.write() {
        *current = inner;
    }
}

fn build(role: &str, filter: &str, output: &LogTarget, style: Style) -> env_logger::Logger {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(filter);
    builder.write_style(if style.escapes {
        env_logger::WriteStyle::Always
    } else {
        env_logger::WriteStyle::Never
    });
    let role = role.to_string();
    let pid = std::process::id();
    let levels = style.levels;
    builder.format(move |buf, record| {
        let style = if levels {
            buf.default_level_style(record.level())
        } else {
            Default::default()
        };
        writeln!(
            buf,
            "{} {style}{:<5}{style:#} {role}[{pid}] {}",
            buf.timestamp_millis(),
            record.level(),
            record.args()
        )
    });
    match output {
        LogTarget::Stdout => {
            builder.target(env_logger::Target::Stdout);
        }
        LogTarget::Tcp(_) | LogTarget::Udp(_) | LogTarget::Unix(_) => {
            match LogSocket::connect(output) {
                Ok(Some(socket)) => {
                    builder.target(env_logger::Target::Pipe(Box::new(socket)));
                }
                Ok(None) => {
                    builder.target(env_logger::Target::Stdout);
                }
                Err(error) => {
                    eprintln!("cannot reach the log target {output}: {error}; logging to stderr");
                    builder.target(env_logger::Target::Stderr);
                }
            }
        }
        LogTarget::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                builder.target(env_logger::Target::Pipe(Box::new(file)));
            }
            Err(error) => {
                eprintln!(
                    "cannot open the log file {}: {error}; logging to stderr",
                    path.display()
                );
                builder.target(env_logger::Target::Stderr);
            }
        },
    }
    builder.build()
}

impl Log for SwappableLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.read().is_ok_and(|inner| inner.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if let Ok(inner) = self.inner.read() {
            inner.log(record);
        }
    }

    fn flush(&self) {
        if let Ok(inner) = self.inner.read() {
            inner.flush();
        }
    }
}

/// Checks a filter: a level, or comma-separated directives that each end with a level
/// (`info,sozu_lib::protocol::http=debug`). `env_logger` skips what it cannot read; an operator should
/// be told instead.
pub fn check_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        return Err("empty log filter".to_string());
    }
    for directive in directives {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level)
            .trim();
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "invalid log directive `{directive}`: expected a level among {} \
                 or MODULE=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_levels_or_module_directives() {
        assert!(check_filter("debug").is_ok());
        assert!(check_filter("info,sozu_lib::http=TRACE").is_ok());
        assert!(check_filter("verbose").is_err());
        assert!(check_filter(" , ").is_err());
    }
}
