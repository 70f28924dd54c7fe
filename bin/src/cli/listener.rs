//! `listener http|https|tcp add|remove|activate|deactivate|update` and `listener list`.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sozu_command_lib::{
    request::{
        H2Patch, Hsts, HttpListenerConfig, HttpListenerPatch, HttpsListenerConfig, ListenerAddress,
        ListenerType, Order, TcpListenerConfig, TlsListenerConfig, TlsListenerPatch,
        UpdateHttpListener, UpdateHttpsListener, UpdateTcpListener, default_hsts_max_age,
    },
    response::ResponseContent,
};

use super::{
    client::{Client, content},
    content::InspectArgs,
    table,
    tls_versions::{self, TlsVersionArg},
};

#[derive(Debug, Subcommand)]
pub enum ListenerCommand {
    Http {
        #[command(subcommand)]
        command: HttpListenerCommand,
    },
    Https {
        #[command(subcommand)]
        command: HttpsListenerCommand,
    },
    Tcp {
        #[command(subcommand)]
        command: TcpListenerCommand,
    },
    /// Every listener, with whether it accepts connections.
    List,
    /// Sōzu's UDP listeners: refused, they are not built yet.
    Udp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        arguments: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would only add indirection"
)]
pub enum HttpListenerCommand {
    Add(HttpAdd),
    Remove(Address),
    Activate(Address),
    Deactivate(Address),
    /// Change a listener's settings without rebinding it.
    Update {
        #[command(flatten)]
        http: HttpUpdate,
        #[command(flatten)]
        h2c: H2c,
    },
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing would only add indirection"
)]
pub enum HttpsListenerCommand {
    Add {
        #[command(flatten)]
        http: HttpAdd,
        /// TLS_V12, TLS_V13 (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "VERSIONS")]
        tls_versions: Vec<TlsVersionArg>,
        /// TLS 1.2 cipher suites (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "CIPHERS")]
        tls_cipher_list: Vec<String>,
    },
    Remove(Address),
    Activate(Address),
    Deactivate(Address),
    Update {
        #[command(flatten)]
        http: HttpUpdate,
        #[command(flatten)]
        tls: TlsUpdate,
    },
}

#[derive(Debug, Subcommand)]
pub enum TcpListenerCommand {
    Add {
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(long, value_name = "ADDR")]
        public_address: Option<SocketAddr>,
        #[arg(long)]
        expect_proxy: bool,
        #[command(flatten)]
        inspect: InspectArgs,
    },
    Remove(Address),
    Activate(Address),
    Deactivate(Address),
    Update {
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(long, value_name = "ADDR")]
        public_address: Option<SocketAddr>,
        #[command(flatten)]
        timeouts: Timeouts,
        #[command(flatten)]
        proxy: ExpectProxy,
        #[command(flatten)]
        inspect: InspectArgs,
        /// Remove the routing script.
        #[arg(long, conflicts_with = "script")]
        no_script: bool,
    },
}

#[derive(Debug, Args)]
pub struct Address {
    #[arg(short, long, value_name = "ADDR")]
    address: SocketAddr,
}

#[derive(Debug, Args)]
pub struct Timeouts {
    /// Seconds.
    #[arg(long, value_name = "SECS")]
    front_timeout: Option<u64>,
    #[arg(long, value_name = "SECS")]
    back_timeout: Option<u64>,
    #[arg(long, value_name = "SECS")]
    request_timeout: Option<u64>,
    #[arg(long, value_name = "SECS")]
    connect_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ExpectProxy {
    /// The last of `--expect-proxy` and `--no-expect-proxy` wins, as in Sōzu.
    #[arg(long, overrides_with = "no_expect_proxy")]
    expect_proxy: bool,
    #[arg(long, overrides_with = "expect_proxy")]
    no_expect_proxy: bool,
}

impl ExpectProxy {
    fn patch(&self) -> Option<bool> {
        flag(self.expect_proxy, self.no_expect_proxy)
    }
}

/// The value a pair of `--x`/`--no-x` flags sets, if any.
fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[derive(Debug, Args)]
pub struct HttpAdd {
    #[arg(short, long, value_name = "ADDR")]
    address: SocketAddr,
    #[arg(long, value_name = "ADDR")]
    public_address: Option<SocketAddr>,
    /// A file holding the 404 answer.
    #[arg(long, value_name = "FILE")]
    answer_404: Option<PathBuf>,
    /// A file holding the 503 answer.
    #[arg(long, value_name = "FILE")]
    answer_503: Option<PathBuf>,
    #[arg(long)]
    expect_proxy: bool,
    #[arg(long, value_name = "NAME")]
    sticky_name: Option<String>,
    #[command(flatten)]
    timeouts: Timeouts,
}

#[derive(Debug, Args)]
pub struct HttpUpdate {
    #[arg(short, long, value_name = "ADDR")]
    address: SocketAddr,
    #[arg(long, value_name = "ADDR")]
    public_address: Option<SocketAddr>,
    #[arg(long, value_name = "NAME")]
    sticky_name: Option<String>,
    #[arg(long, value_name = "NAME")]
    sozu_id_header: Option<String>,
    #[command(flatten)]
    timeouts: Timeouts,
    #[command(flatten)]
    proxy: ExpectProxy,
    #[arg(long, value_name = "FILE")]
    answer_301: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_401: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_404: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_408: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_413: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_421: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_429: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_502: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_503: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_504: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    answer_507: Option<PathBuf>,
    #[command(flatten)]
    h2: H2Flags,
}

/// The `--h2-*` flags: HTTP/2 limits and tuning (see doc/http2.md).
#[derive(Debug, Args)]
pub struct H2Flags {
    #[arg(long, value_name = "N")]
    h2_max_rst_stream_per_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_ping_per_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_settings_per_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_empty_data_per_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_window_update_stream0_per_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_continuation_frames: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_glitch_count: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_rst_stream_lifetime: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_rst_stream_abusive_lifetime: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_rst_stream_emitted_lifetime: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_initial_connection_window: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_concurrent_streams: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_stream_shrink_ratio: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_header_list_size: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_header_table_size: Option<u32>,
    #[arg(long, value_name = "N")]
    h2_max_header_fields: Option<u32>,
    #[arg(long, value_name = "SECS")]
    h2_stream_idle_timeout_seconds: Option<u64>,
    /// Zero waits for streams without a deadline.
    #[arg(long, value_name = "SECS")]
    h2_graceful_shutdown_deadline_seconds: Option<u64>,
}

impl H2Flags {
    fn patch(&self) -> H2Patch {
        let seconds = |value: Option<u64>| value.map(Duration::from_secs);
        H2Patch {
            max_rst_stream_per_window: self.h2_max_rst_stream_per_window,
            max_ping_per_window: self.h2_max_ping_per_window,
            max_settings_per_window: self.h2_max_settings_per_window,
            max_empty_data_per_window: self.h2_max_empty_data_per_window,
            max_window_update_stream0_per_window: self.h2_max_window_update_stream0_per_window,
            max_continuation_frames: self.h2_max_continuation_frames,
            max_glitch_count: self.h2_max_glitch_count,
            max_rst_stream_lifetime: self.h2_max_rst_stream_lifetime,
            max_rst_stream_abusive_lifetime: self.h2_max_rst_stream_abusive_lifetime,
            max_rst_stream_emitted_lifetime: self.h2_max_rst_stream_emitted_lifetime,
            initial_connection_window: self.h2_initial_connection_window,
            max_concurrent_streams: self.h2_max_concurrent_streams,
            stream_shrink_ratio: self.h2_stream_shrink_ratio,
            max_header_list_size: self.h2_max_header_list_size,
            max_header_table_size: self.h2_max_header_table_size,
            max_header_fields: self.h2_max_header_fields,
            stream_idle_timeout: seconds(self.h2_stream_idle_timeout_seconds),
            graceful_shutdown_deadline: seconds(self.h2_graceful_shutdown_deadline_seconds),
        }
    }
}

/// `--h2c` / `--no-h2c`: HTTP/2 with prior knowledge on a cleartext listener.
#[derive(Debug, Args)]
pub struct H2c {
    #[arg(long, conflicts_with = "no_h2c")]
    h2c: bool,
    #[arg(long)]
    no_h2c: bool,
}

impl H2c {
    fn patch(&self) -> Option<bool> {
        flag(self.h2c, self.no_h2c)
    }
}

#[derive(Debug, Args)]
pub struct TlsUpdate {
    #[arg(long, conflicts_with = "no_strict_sni_binding")]
    strict_sni_binding: bool,
    #[arg(long)]
    no_strict_sni_binding: bool,
    #[arg(long, conflicts_with = "enable_http11")]
    disable_http11: bool,
    #[arg(long)]
    enable_http11: bool,
    /// Protocols offered by ALPN (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PROTOCOLS",
        conflicts_with = "reset_alpn"
    )]
    alpn_protocols: Vec<String>,
    /// Back to the default ALPN protocols.
    #[arg(long)]
    reset_alpn: bool,
    #[arg(long, value_name = "SECONDS")]
    hsts_max_age: Option<u64>,
    #[arg(long)]
    hsts_include_subdomains: bool,
    #[arg(long)]
    hsts_preload: bool,
    #[arg(long)]
    hsts_force_replace_backend: bool,
    /// Remove the listener's HSTS policy.
    #[arg(long)]
    hsts_disabled: bool,
}

pub fn run(client: &mut Client, command: &ListenerCommand) -> anyhow::Result<()> {
    let order = match command {
        ListenerCommand::List => return list(client),
        ListenerCommand::Udp { .. } => bail!(super::UDP_NOT_BUILT),
        ListenerCommand::Http { command } => match command {
            HttpListenerCommand::Add(add) => Order::AddHttpListener(add.config()?),
            HttpListenerCommand::Remove(a) => Order::RemoveListener(named(a, ListenerType::Http)),
            HttpListenerCommand::Activate(a) => {
                Order::ActivateListener(named(a, ListenerType::Http))
            }
            HttpListenerCommand::Deactivate(a) => {
                Order::DeactivateListener(named(a, ListenerType::Http))
            }
            HttpListenerCommand::Update { http, h2c } => {
                let mut patch = http.patch()?;
                patch.h2c = h2c.patch();
                Order::UpdateHttpListenerConfig(UpdateHttpListener {
                    address: http.address,
                    http: patch,
                })
            }
        },
        ListenerCommand::Https { command } => match command {
            HttpsListenerCommand::Add {
                http,
                tls_versions,
                tls_cipher_list,
            } => {
                let mut tls = TlsListenerConfig::default();
                let tls_versions = tls_versions::supported(tls_versions);
                if !tls_versions.is_empty() {
                    tls.versions = tls_versions;
                }
                tls.cipher_list = tls_cipher_list.clone();
                Order::AddHttpsListener(HttpsListenerConfig {
                    http: http.config()?,
                    tls,
                })
            }
            HttpsListenerCommand::Remove(a) => Order::RemoveListener(named(a, ListenerType::Https)),
            HttpsListenerCommand::Activate(a) => {
                Order::ActivateListener(named(a, ListenerType::Https))
            }
            HttpsListenerCommand::Deactivate(a) => {
                Order::DeactivateListener(named(a, ListenerType::Https))
            }
            HttpsListenerCommand::Update { http, tls } => {
                Order::UpdateHttpsListenerConfig(UpdateHttpsListener {
                    address: http.address,
                    http: http.patch()?,
                    tls: tls.patch(),
                })
            }
        },
        ListenerCommand::Tcp { command } => match command {
            TcpListenerCommand::Add {
                address,
                public_address,
                expect_proxy,
                inspect,
            } => {
                let mut config = TcpListenerConfig::new(*address);
                config.public_address = *public_address;
                config.expect_proxy = *expect_proxy;
                if let Some(bytes) = inspect.inspect_bytes {
                    config.inspect_bytes = bytes;
                }
                if let Some(timeout) = inspect.inspect_timeout() {
                    config.inspect_timeout = timeout;
                }
                config.script = inspect.script()?;
                Order::AddTcpListener(config)
            }
            TcpListenerCommand::Remove(a) => Order::RemoveListener(named(a, ListenerType::Tcp)),
            TcpListenerCommand::Activate(a) => Order::ActivateListener(named(a, ListenerType::Tcp)),
            TcpListenerCommand::Deactivate(a) => {
                Order::DeactivateListener(named(a, ListenerType::Tcp))
            }
            TcpListenerCommand::Update {
                address,
                public_address,
                timeouts,
                proxy,
                inspect,
                no_script,
            } => {
                if timeouts.request_timeout.is_some() {
                    bail!("a TCP listener has no request timeout");
                }
                let script = if *no_script {
                    Some(None)
                } else {
                    inspect.script()?.map(Some)
                };
                Order::UpdateTcpListenerConfig(UpdateTcpListener {
                    address: *address,
                    public_address: public_address.map(Some),
                    expect_proxy: proxy.patch(),
                    front_timeout: timeouts.front_timeout.map(Duration::from_secs),
                    back_timeout: timeouts.back_timeout.map(Duration::from_secs),
                    connect_timeout: timeouts.connect_timeout.map(Duration::from_secs),
                    splice: None,
                    inspect_bytes: inspect.inspect_bytes,
                    inspect_timeout: inspect.inspect_timeout(),
                    script,
                })
            }
        },
    };
    client.order_and_print(order)
}

fn named(address: &Address, proxy: ListenerType) -> ListenerAddress {
    ListenerAddress {
        address: address.address,
        proxy,
    }
}

fn read_answer(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the answer file {}", path.display()))
}

impl HttpAdd {
    fn config(&self) -> anyhow::Result<HttpListenerConfig> {
        let mut config = HttpListenerConfig::new(self.address);
        config.public_address = self.public_address;
        config.expect_proxy = self.expect_proxy;
        if let Some(name) = &self.sticky_name {
            config.sticky_name = name.clone();
        }
        let t = &self.timeouts;
        let seconds = Duration::from_secs;
        config.front_timeout = t.front_timeout.map_or(config.front_timeout, seconds);
        config.back_timeout = t.back_timeout.map_or(config.back_timeout, seconds);
        config.request_timeout = t.request_timeout.map_or(config.request_timeout, seconds);
        config.connect_timeout = t.connect_timeout.map_or(config.connect_timeout, seconds);
        for (code, file) in [(404, &self.answer_404), (503, &self.answer_503)] {
            if let Some(file) = file {
                config.answers.insert(code, read_answer(file)?);
            }
        }
        Ok(config)
    }
}

impl HttpUpdate {
    fn patch(&self) -> anyhow::Result<HttpListenerPatch> {
        let mut answers = BTreeMap::new();
        for (code, file) in [
            (301, &self.answer_301),
            (401, &self.answer_401),
            (404, &self.answer_404),
            (408, &self.answer_408),
            (413, &self.answer_413),
            (421, &self.answer_421),
            (429, &self.answer_429),
            (502, &self.answer_502),
            (503, &self.answer_503),
            (504, &self.answer_504),
            (507, &self.answer_507),
        ] {
            if let Some(file) = file {
                answers.insert(code, read_answer(file)?);
            }
        }
        let seconds = |value: Option<u64>| value.map(Duration::from_secs);
        Ok(HttpListenerPatch {
            public_address: self.public_address.map(Some),
            expect_proxy: self.proxy.patch(),
            sticky_name: self.sticky_name.clone(),
            sozu_id_header: self.sozu_id_header.clone(),
            front_timeout: seconds(self.timeouts.front_timeout),
            back_timeout: seconds(self.timeouts.back_timeout),
            connect_timeout: seconds(self.timeouts.connect_timeout),
            request_timeout: seconds(self.timeouts.request_timeout),
            answers,
            send_x_real_ip: None,
            elide_x_real_ip: None,
            h2c: None,
            h2: self.h2.patch(),
        })
    }
}

impl TlsUpdate {
    fn patch(&self) -> TlsListenerPatch {
        let alpn_protocols = if self.reset_alpn {
            Some(TlsListenerConfig::default().alpn_protocols)
        } else if self.alpn_protocols.is_empty() {
            None
        } else {
            Some(self.alpn_protocols.clone())
        };
        let hsts_set = self.hsts_max_age.is_some()
            || self.hsts_include_subdomains
            || self.hsts_preload
            || self.hsts_force_replace_backend;
        let hsts = if self.hsts_disabled {
            Some(None)
        } else if hsts_set {
            Some(Some(Hsts {
                enabled: true,
                max_age: self
                    .hsts_max_age
                    .map_or_else(default_hsts_max_age, Duration::from_secs),
                include_subdomains: self.hsts_include_subdomains,
                preload: self.hsts_preload,
                force_replace_backend: self.hsts_force_replace_backend,
            }))
        } else {
            None
        };
        TlsListenerPatch {
            strict_sni_binding: flag(self.strict_sni_binding, self.no_strict_sni_binding),
            disable_http11: flag(self.disable_http11, self.enable_http11),
            alpn_protocols,
            hsts,
            ..TlsListenerPatch::default()
        }
    }
}

fn list(client: &mut Client) -> anyhow::Result<()> {
    let response = client.order(Order::ListListeners)?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    let ResponseContent::Listeners(listeners) = content(response)? else {
        bail!("unexpected answer to LIST_LISTENERS");
    };
    let active = |active: bool| if active { "yes" } else { "no" }.to_string();
    let public = |address: Option<SocketAddr>| address.map(|a| a.to_string()).unwrap_or_default();
    let mut rows = Vec::new();
    for listener in &listeners.http {
        rows.push(vec![
            listener.config.address.to_string(),
            "HTTP".to_string(),
            active(listener.active),
            public(listener.config.public_address),
        ]);
    }
    for listener in &listeners.https {
        rows.push(vec![
            listener.config.http.address.to_string(),
            "HTTPS".to_string(),
            active(listener.active),
            public(listener.config.http.public_address),
        ]);
    }
    for listener in &listeners.tcp {
        rows.push(vec![
            listener.config.address.to_string(),
            "TCP".to_string(),
            active(listener.active),
            public(listener.config.public_address),
        ]);
    }
    table::print(&["ADDRESS", "PROTOCOL", "ACTIVE", "PUBLIC ADDRESS"], &rows)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(subcommand)]
        listener: ListenerCommand,
    }

    fn parse(args: &[&str]) -> ListenerCommand {
        let mut all = vec!["listener"];
        all.extend_from_slice(args);
        match Command::try_parse_from(all) {
            Ok(command) => command.listener,
            Err(error) => panic!("{args:?}: {error}"),
        }
    }

    #[test]
    fn h2_flags_patch_the_listener() {
        let command = parse(&[
            "https",
            "update",
            "-a",
            "127.0.0.1:8443",
            "--h2-max-rst-stream-per-window",
            "50",
            "--h2-max-header-list-size",
            "32768",
            "--h2-stream-idle-timeout-seconds",
            "20",
            "--h2-graceful-shutdown-deadline-seconds",
            "0",
        ]);
        let ListenerCommand::Https {
            command: HttpsListenerCommand::Update { http, .. },
        } = command
        else {
            panic!("{command:?}");
        };
        let patch = http.patch().unwrap();
        assert_eq!(
            patch.h2,
            H2Patch {
                max_rst_stream_per_window: Some(50),
                max_header_list_size: Some(32_768),
                stream_idle_timeout: Some(Duration::from_secs(20)),
                graceful_shutdown_deadline: Some(Duration::ZERO),
                ..H2Patch::default()
            }
        );
    }

    #[test]
    fn h2c_flags_switch_prior_knowledge_on_and_off() {
        for (flag, expected) in [("--h2c", Some(true)), ("--no-h2c", Some(false))] {
            let command = parse(&["http", "update", "-a", "127.0.0.1:8080", flag]);
            let ListenerCommand::Http {
                command: HttpListenerCommand::Update { h2c, .. },
            } = command
            else {
                panic!("{command:?}");
            };
            assert_eq!(h2c.patch(), expected);
        }
    }

    /// Issue 11: as in Sōzu, the last of `--expect-proxy` and `--no-expect-proxy` wins.
    #[test]
    fn the_last_expect_proxy_flag_wins() {
        for (flags, expected) in [
            (["--expect-proxy", "--no-expect-proxy"], Some(false)),
            (["--no-expect-proxy", "--expect-proxy"], Some(true)),
        ] {
            let mut args = vec!["tcp", "update", "-a", "127.0.0.1:5432"];
            args.extend(flags);
            let command = parse(&args);
            let ListenerCommand::Tcp {
                command: TcpListenerCommand::Update { proxy, .. },
            } = command
            else {
                panic!("{command:?}");
            };
            assert_eq!(proxy.patch(), expected, "{flags:?}");
        }
    }
}
