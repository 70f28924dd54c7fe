//! `[[listeners]]`: HTTP, HTTPS and TCP listeners. UDP listeners are refused: they are not
//! built, and ignoring one would drop its traffic.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use rustc_hash::FxHashMap;

use super::{
    Config, Loader, answers, content,
    document::{Field, Table},
    error::{ConfigError, ConfigWarning},
    tls::{self, CertificateFiles},
};
use crate::{
    request::{
        H2_NUMBER_KEYS, HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType,
        Order, TcpListenerConfig, TlsListenerConfig, TlsVersion,
    },
    rules,
};

/// A listener of the configuration, as its `Add…Listener` order carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a configuration has a handful of listeners; boxing would only add indirection"
)]
pub enum Listener {
    /// An HTTP listener (`protocol = "http"`).
    Http(HttpListenerConfig),
    /// An HTTPS listener (`protocol = "https"`).
    Https(HttpsListenerConfig),
    /// A TCP listener (`protocol = "tcp"`).
    Tcp(TcpListenerConfig),
}

impl Listener {
    /// The address the listener binds.
    pub fn address(&self) -> SocketAddr {
        match self {
            Listener::Http(config) => config.address,
            Listener::Https(config) => config.http.address,
            Listener::Tcp(config) => config.address,
        }
    }

    /// The listener's kind.
    pub fn kind(&self) -> ListenerType {
        match self {
            Listener::Http(_) => ListenerType::Http,
            Listener::Https(_) => ListenerType::Https,
            Listener::Tcp(_) => ListenerType::Tcp,
        }
    }

    /// What names the listener in `ActivateListener` and the like.
    pub fn listener_address(&self) -> ListenerAddress {
        ListenerAddress {
            address: self.address(),
            proxy: self.kind(),
        }
    }

    /// The order that adds the listener.
    pub fn add_order(&self) -> Order {
        match self {
            Listener::Http(config) => Order::AddHttpListener(config.clone()),
            Listener::Https(config) => Order::AddHttpsListener(config.clone()),
            Listener::Tcp(config) => Order::AddTcpListener(config.clone()),
        }
    }

    fn expects_proxy(&self) -> bool {
        match self {
            Listener::Http(config) => config.expect_proxy,
            Listener::Https(config) => config.http.expect_proxy,
            Listener::Tcp(config) => config.expect_proxy,
        }
    }
}

/// Keys of every kind of listener.
const COMMON_KEYS: &[&str] = &[
    "protocol",
    "address",
    "public_address",
    "expect_proxy",
    "front_timeout",
    "back_timeout",
    "connect_timeout",
];

/// Keys of HTTP and HTTPS listeners, besides the `answer_NNN` ones.
const HTTP_KEYS: &[&str] = &[
    "request_timeout",
    "sticky_name",
    "sozu_id_header",
    "answers",
    "elide_x_real_ip",
    "send_x_real_ip",
];

/// Keys of HTTPS listeners.
const TLS_KEYS: &[&str] = &[
    "certificate",
    "certificate_chain",
    "key",
    "tls_versions",
    "cipher_list",
    "cipher_suites",
    "groups_list",
    "send_tls13_tickets",
    "alpn_protocols",
    "strict_sni_binding",
    "disable_http11",
    "hsts",
];

/// HTTP/2 durations of HTTP and HTTPS listeners; the numbers are [`H2_NUMBER_KEYS`].
const H2_DURATION_KEYS: &[&str] = &[
    "h2_stream_idle_timeout_seconds",
    "h2_graceful_shutdown_deadline_seconds",
];

/// Keys of HTTP listeners only.
const CLEARTEXT_KEYS: &[&str] = &["h2c"];

/// Keys of TCP listeners only (our extension).
const TCP_KEYS: &[&str] = &["splice", "inspect_bytes", "inspect_timeout", "script"];

/// Keys of UDP listeners, which are refused.
const UDP_KEYS: &[&str] = &["max_rx_datagram_size", "max_flows"];

/// The listeners of a configuration, and how frontends find them by address.
#[derive(Default)]
pub(super) struct Listeners {
    list: Vec<Listener>,
    /// Index in `list` by address; looked up for every frontend, with a hash made for keys
    /// that are not hostile (a configuration file's addresses).
    by_address: FxHashMap<SocketAddr, usize>,
    /// Addresses of the refused UDP listeners, to explain why their frontends have no listener.
    udp: HashSet<SocketAddr>,
}

impl Listeners {
    /// The listener at the address of a frontend's `address` field. When there is none, a
    /// listener of kind `wanted` is created with the defaults of `settings`, as Sōzu does, and
    /// an info note says so.
    pub fn find_or_create(
        &mut self,
        address: SocketAddr,
        wanted: ListenerType,
        settings: &Config,
        field: Field<'_, '_>,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Result<&Listener, ConfigError> {
        if self.udp.contains(&address) {
            return Err(field.refused(
                "the listener at this address is a udp listener, and UDP is not built yet",
            ));
        }
        let index = match self.by_address.get(&address) {
            Some(&index) => index,
            None => {
                warnings.push(field.info(format!(
                    "no listener at {address}, so one is created ({wanted}, with the defaults), \
                     as Sōzu does"
                )));
                let index = self.list.len();
                self.list.push(default_listener(wanted, address, settings));
                self.by_address.insert(address, index);
                index
            }
        };
        Ok(&self.list[index])
    }

    /// Whether the listener at `address` reads a PROXY protocol header.
    pub fn expects_proxy(&self, address: SocketAddr) -> bool {
        self.by_address
            .get(&address)
            .and_then(|&index| self.list.get(index))
            .is_some_and(Listener::expects_proxy)
    }

    pub fn into_listeners(self) -> Vec<Listener> {
        self.list
    }
}

/// Every `[[listeners]]` entry; `settings` gives the default timeouts.
pub(super) fn read_all(
    loader: &mut Loader,
    top: &mut Table<'_, '_>,
    settings: &Config,
) -> Listeners {
    let mut listeners = Listeners::default();
    let Some(field) = top.field("listeners") else {
        return listeners;
    };
    let Some(items) = loader.keep(field.items()) else {
        return listeners;
    };
    let mut lines = HashMap::new();
    for item in items {
        let read = read(loader, item, settings, &mut listeners.udp);
        let Some((listener, line)) = loader.keep(read) else {
            continue;
        };
        let address = listener.address();
        if let Some(&first_line) = lines.get(&address) {
            loader.errors.push(ConfigError::Duplicate {
                what: "listener",
                name: address.to_string(),
                key: "address",
                line,
                first_line,
            });
            continue;
        }
        lines.insert(address, line);
        listeners.by_address.insert(address, listeners.list.len());
        listeners.list.push(listener);
    }
    listeners
}

/// One listener, with the line of its address.
fn read(
    loader: &mut Loader,
    item: Field<'_, '_>,
    settings: &Config,
    udp: &mut HashSet<SocketAddr>,
) -> Result<(Listener, usize), ConfigError> {
    let mut table = item.table("[[listeners]]")?;
    loader.check_keys(
        &mut table,
        &[
            COMMON_KEYS,
            HTTP_KEYS,
            answers::LISTENER_LEGACY_KEYS,
            TLS_KEYS,
            &H2_NUMBER_KEYS,
            H2_DURATION_KEYS,
            CLEARTEXT_KEYS,
            TCP_KEYS,
            UDP_KEYS,
        ],
    );
    let address_field = table.required("address")?;
    let address = address_field.address()?;
    let protocol_field = table.required("protocol")?;
    let protocol = protocol_field.choice(&[
        ("http", Some(ListenerType::Http)),
        ("https", Some(ListenerType::Https)),
        ("tcp", Some(ListenerType::Tcp)),
        ("udp", None),
    ])?;
    let Some(protocol) = protocol else {
        udp.insert(address);
        return Err(protocol_field.refused(
            "UDP listeners are not built yet, and ignoring the listener would drop its traffic",
        ));
    };
    ignore(loader, &mut table, UDP_KEYS, "it applies to udp listeners");
    let listener = match protocol {
        ListenerType::Http => {
            ignore(
                loader,
                &mut table,
                TLS_KEYS,
                "it applies to https listeners",
            );
            ignore(loader, &mut table, TCP_KEYS, "it applies to tcp listeners");
            let mut config = http(loader, &mut table, address, settings)?;
            config.h2c = table.bool("h2c")?.unwrap_or(false);
            Listener::Http(config)
        }
        ListenerType::Https => {
            ignore(loader, &mut table, TCP_KEYS, "it applies to tcp listeners");
            ignore(
                loader,
                &mut table,
                CLEARTEXT_KEYS,
                "it applies to http listeners",
            );
            let http = http(loader, &mut table, address, settings)?;
            let tls = tls(loader, &mut table)?;
            Listener::Https(HttpsListenerConfig { http, tls })
        }
        ListenerType::Tcp => {
            let reason = "it applies to http and https listeners";
            ignore(loader, &mut table, HTTP_KEYS, reason);
            ignore(loader, &mut table, answers::LISTENER_LEGACY_KEYS, reason);
            ignore(loader, &mut table, TLS_KEYS, reason);
            ignore(loader, &mut table, &H2_NUMBER_KEYS, reason);
            ignore(loader, &mut table, H2_DURATION_KEYS, reason);
            ignore(loader, &mut table, CLEARTEXT_KEYS, reason);
            let mut config = tcp(&mut table, address, settings)?;
            content::read_listener_keys(loader, &mut table, &mut config)?;
            Listener::Tcp(config)
        }
    };
    table.unused()?;
    Ok((listener, address_field.line()))
}

/// A listener with nothing but its address, and the default timeouts of `settings`.
fn default_listener(kind: ListenerType, address: SocketAddr, settings: &Config) -> Listener {
    match kind {
        ListenerType::Http => Listener::Http(default_http(address, settings)),
        ListenerType::Https => Listener::Https(HttpsListenerConfig {
            http: default_http(address, settings),
            tls: TlsListenerConfig::default(),
        }),
        ListenerType::Tcp => {
            let mut config = TcpListenerConfig::new(address);
            config.set_timeouts(settings.timeouts);
            Listener::Tcp(config)
        }
    }
}

fn default_http(address: SocketAddr, settings: &Config) -> HttpListenerConfig {
    let mut config = HttpListenerConfig::new(address);
    config.set_timeouts(settings.timeouts);
    config
}

/// Warns about each of `keys` that the table has: accepted and ignored for `reason`.
fn ignore(loader: &mut Loader, table: &mut Table<'_, '_>, keys: &[&'static str], reason: &str) {
    let message = format!("accepted and ignored: {reason}");
    for &key in keys {
        let warning = table.ignore(key, &message);
        loader.warn(warning);
    }
}

/// The settings HTTP and HTTPS listeners share.
fn http(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    address: SocketAddr,
    settings: &Config,
) -> Result<HttpListenerConfig, ConfigError> {
    let mut config = HttpListenerConfig::new(address);
    config.public_address = table.address("public_address")?;
    config.expect_proxy = table.bool("expect_proxy")?.unwrap_or(false);
    if let Some(sticky_name) = table.text("sticky_name", &rules::TOKEN)? {
        config.sticky_name = sticky_name;
    }
    if let Some(sozu_id_header) = table.with("sozu_id_header", |field| match field.string()? {
        "" => Ok(""),
        _ => field.checked(rules::check_edited_header_name),
    })? {
        config.sozu_id_header = sozu_id_header.to_string();
    }
    config.front_timeout = timeout(table, "front_timeout", settings.timeouts.front)?;
    config.back_timeout = timeout(table, "back_timeout", settings.timeouts.back)?;
    config.connect_timeout = timeout(table, "connect_timeout", settings.timeouts.connect)?;
    config.request_timeout = timeout(table, "request_timeout", settings.timeouts.request)?;
    config.answers = answers::custom_answers(loader, table, answers::LISTENER_LEGACY_KEYS)?;
    config.send_x_real_ip = table.bool("send_x_real_ip")?.unwrap_or(false);
    config.elide_x_real_ip = table.bool("elide_x_real_ip")?.unwrap_or(false);
    for key in H2_NUMBER_KEYS {
        if let Some(value) = table.number(key, &rules::h2_bounds(key))? {
            if let Some(field) = config.h2.number_mut(key) {
                *field = value;
            }
        }
    }
    config.h2.stream_idle_timeout =
        table.seconds("h2_stream_idle_timeout_seconds", &rules::TIMEOUT)?;
    if let Some(deadline) = table.seconds(
        "h2_graceful_shutdown_deadline_seconds",
        &rules::H2_SHUTDOWN_DEADLINE,
    )? {
        config.h2.graceful_shutdown_deadline = deadline;
    }
    Ok(config)
}

/// The listener's `key` timeout, or the configuration's `default` when the listener sets none.
fn timeout(
    table: &mut Table<'_, '_>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    Ok(table.seconds(key, &rules::TIMEOUT)?.unwrap_or(default))
}

/// The TLS settings of an HTTPS listener.
fn tls(loader: &mut Loader, table: &mut Table<'_, '_>) -> Result<TlsListenerConfig, ConfigError> {
    let mut config = TlsListenerConfig::default();
    if let Some(field) = table.field("tls_versions") {
        config.versions = tls::versions(field, &mut loader.warnings)?;
    }
    // Sōzu's `cipher_list` names TLS 1.3 suites too: each suite goes to the list of its
    // version, `cipher_list` for TLS 1.2 and `cipher_suites` for TLS 1.3.
    let mut suites = Vec::new();
    for key in ["cipher_suites", "cipher_list"] {
        if let Some(field) = table.field(key) {
            suites.extend(tls::cipher_suites(field)?);
        }
    }
    for suite in suites {
        let list = match suite.version {
            TlsVersion::Tls12 => &mut config.cipher_list,
            TlsVersion::Tls13 => &mut config.cipher_suites,
        };
        if !list.iter().any(|name| name == suite.name) {
            list.push(suite.name.to_string());
        }
    }
    if let Some(field) = table.field("groups_list") {
        config.groups_list = tls::groups(field, &mut loader.warnings)?;
    }
    config.certificate =
        CertificateFiles::read(loader, table)?.map(|files| files.contents(Vec::new()));
    if let Some(tickets) = table.number("send_tls13_tickets", &rules::TLS13_TICKETS)? {
        config.send_tls13_tickets = tickets;
    }
    if let Some(field) = table.field("alpn_protocols") {
        config.alpn_protocols = tls::alpn_protocols(field)?;
    }
    if let Some(strict) = table.bool("strict_sni_binding")? {
        config.strict_sni_binding = strict;
    }
    if let Some(disable) = table.bool("disable_http11")? {
        config.disable_http11 = disable;
    }
    config.hsts = table
        .field("hsts")
        .map(|field| tls::hsts(loader, field))
        .transpose()?;
    Ok(config)
}

fn tcp(
    table: &mut Table<'_, '_>,
    address: SocketAddr,
    settings: &Config,
) -> Result<TcpListenerConfig, ConfigError> {
    let mut config = TcpListenerConfig::new(address);
    config.public_address = table.address("public_address")?;
    config.expect_proxy = table.bool("expect_proxy")?.unwrap_or(false);
    config.front_timeout = timeout(table, "front_timeout", settings.timeouts.front)?;
    config.back_timeout = timeout(table, "back_timeout", settings.timeouts.back)?;
    config.connect_timeout = timeout(table, "connect_timeout", settings.timeouts.connect)?;
    if let Some(splice) = table.bool("splice")? {
        config.splice = splice;
    }
    Ok(config)
}
