//! Listeners: HTTP, HTTPS and TCP sockets with their settings, and the patches that change
//! those settings without rebinding.

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    CertificateAndKey, H2Config, H2Patch, Hsts, TcpScript, TlsVersion, nullable, optional_seconds,
    seconds, status_keys,
};

/// For a patch type whose listed fields each replace the config field of the same name when
/// set: `set_fields` writes those the patch sets, and `between(old, new)` is the patch that
/// turns `old` into `new` (the listed fields that changed, the other fields as given).
macro_rules! patch_fields {
    (
        $patch:ident for $config:ident { $($field:ident),+ $(,)? }
        between($old:ident, $new:ident) { $($other:ident: $value:expr),* $(,)? }
    ) => {
        impl $patch {
            /// Writes the values the patch sets into `config`, leaving the fields it does
            /// not set.
            fn set_fields(&self, config: &mut $config) {
                $(set(&mut config.$field, &self.$field);)+
            }

            /// The patch that turns `old` into `new`.
            pub fn between($old: &$config, $new: &$config) -> Self {
                $patch {
                    $($field: changed(&$old.$field, &$new.$field),)+
                    $($other: $value,)*
                }
            }
        }
    };
}

/// Settings shared by HTTP and HTTPS listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    /// The address the listener binds, and the key that names it in orders.
    pub address: SocketAddr,
    /// The address clients know the listener by, when it differs (behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<SocketAddr>,
    /// Read a PROXY protocol header before the request.
    #[serde(default)]
    pub expect_proxy: bool,
    /// The name of the cookie that pins a client to a backend of a sticky cluster (default
    /// `SOZUBALANCEID`).
    #[serde(default = "default_sticky_name")]
    pub sticky_name: String,
    /// The header carrying the request id, sent to backends and clients (default `Sozu-Id`); empty
    /// sends none.
    #[serde(default = "default_id_header")]
    pub sozu_id_header: String,
    /// How long a client connection may stay idle.
    #[serde(default = "default_front_timeout", with = "seconds")]
    pub front_timeout: Duration,
    /// How long a backend connection may stay idle while a response is awaited.
    #[serde(default = "default_back_timeout", with = "seconds")]
    pub back_timeout: Duration,
    /// How long connecting to a backend may take.
    #[serde(default = "default_connect_timeout", with = "seconds")]
    pub connect_timeout: Duration,
    /// How long a client may take to send a request's head.
    #[serde(default = "default_request_timeout", with = "seconds")]
    pub request_timeout: Duration,
    /// Answers replacing the built-in pages, by status code.
    #[serde(
        default,
        deserialize_with = "status_keys::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub answers: BTreeMap<u16, String>,
    /// Add an `X-Real-IP` header with the client address.
    #[serde(default)]
    pub send_x_real_ip: bool,
    /// Remove `X-Real-IP` headers sent by the client.
    #[serde(default)]
    pub elide_x_real_ip: bool,
    /// Serve HTTP/2 to clients that start with its preface (prior knowledge, RFC 9113 §3.3)
    /// on a cleartext listener.
    #[serde(default)]
    pub h2c: bool,
    /// HTTP/2 flood limits and tuning.
    #[serde(default, skip_serializing_if = "H2Config::is_default")]
    pub h2: H2Config,
}

impl HttpListenerConfig {
    /// A listener on `address` with every other setting at its default.
    pub fn new(address: SocketAddr) -> Self {
        HttpListenerConfig {
            address,
            public_address: None,
            expect_proxy: false,
            sticky_name: default_sticky_name(),
            sozu_id_header: default_id_header(),
            front_timeout: default_front_timeout(),
            back_timeout: default_back_timeout(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            answers: BTreeMap::new(),
            send_x_real_ip: false,
            elide_x_real_ip: false,
            h2c: false,
            h2: H2Config::default(),
        }
    }
}

/// The sticky session cookie's default name, `SOZUBALANCEID`.
pub fn default_sticky_name() -> String {
    "SOZUBALANCEID".to_string()
}

/// The request id header's default name, `Sozu-Id`.
pub fn default_id_header() -> String {
    "Sozu-Id".to_string()
}

/// TCP listeners splice bulk transfers unless told not to.
pub fn default_splice() -> bool {
    true
}

/// A client connection's default idle limit: 60 seconds.
pub fn default_front_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A backend connection's default idle limit while a response is awaited: 30 seconds.
pub fn default_back_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A backend connect's default limit: 3 seconds.
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}

/// The default limit for a client to send a request's head: 10 seconds.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// An HTTPS listener: the HTTP settings and the TLS ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsListenerConfig {
    /// The HTTP settings, as for a cleartext listener.
    pub http: HttpListenerConfig,
    /// The TLS settings: versions, cipher suites, ALPN, default certificate, HSTS.
    #[serde(default)]
    pub tls: TlsListenerConfig,
}

/// TLS settings of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// The TLS versions offered (default TLS 1.2 and 1.3).
    #[serde(default = "default_tls_versions")]
    pub versions: Vec<TlsVersion>,
    /// TLS 1.2 cipher suites; empty means the defaults. The configuration writes rustls's
    /// names (`CipherSuite::as_str`); [`crate::config::tls::cipher_suite`] maps the OpenSSL
    /// and IANA spellings to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_list: Vec<String>,
    /// TLS 1.3 cipher suites, named as `cipher_list`; empty means the defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// Key exchange groups in order of preference, by rustls's names (`X25519`, `secp256r1`,
    /// `secp384r1`; see [`crate::config::tls::group`]); empty means the defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups_list: Vec<String>,
    /// The default certificate, for clients that send no SNI or an unknown name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateAndKey>,
    /// Number of TLS 1.3 session tickets sent after a handshake; 0 disables resumption by ticket.
    #[serde(default = "default_tls13_tickets")]
    pub send_tls13_tickets: u32,
    /// The protocols offered by ALPN, in order of preference (default `http/1.1`); `h2` and
    /// `http/1.1` are accepted.
    #[serde(default = "default_alpn_protocols")]
    pub alpn_protocols: Vec<String>,
    /// Answer 421 to a request whose Host differs from the name sent in SNI.
    #[serde(default = "default_true")]
    pub strict_sni_binding: bool,
    /// Refuse HTTP/1.1 clients. Must be false: `true` is refused because the listener would then
    /// serve HTTP/2 alone.
    #[serde(default)]
    pub disable_http11: bool,
    /// The `Strict-Transport-Security` header added to responses of this listener's frontends that
    /// set none; `None` adds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
}

impl Default for TlsListenerConfig {
    fn default() -> Self {
        TlsListenerConfig {
            versions: default_tls_versions(),
            cipher_list: Vec::new(),
            cipher_suites: Vec::new(),
            groups_list: Vec::new(),
            certificate: None,
            send_tls13_tickets: default_tls13_tickets(),
            alpn_protocols: default_alpn_protocols(),
            strict_sni_binding: true,
            disable_http11: false,
            hsts: None,
        }
    }
}

/// The TLS versions offered by default: TLS 1.2 and TLS 1.3.
pub fn default_tls_versions() -> Vec<TlsVersion> {
    vec![TlsVersion::Tls12, TlsVersion::Tls13]
}

fn default_tls13_tickets() -> u32 {
    4
}

/// The protocols offered by ALPN, as Sōzu: HTTP/2 first, then HTTP/1.1.
pub fn default_alpn_protocols() -> Vec<String> {
    vec!["h2".to_string(), "http/1.1".to_string()]
}

fn default_true() -> bool {
    true
}

/// A TCP listener: connections are piped to a cluster's backends, chosen by the listener's
/// frontends (and content routing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// The address the listener binds, and the key that names it in orders.
    pub address: SocketAddr,
    /// The address clients know the listener by, when it differs (behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<SocketAddr>,
    /// Read a PROXY protocol header (v1 or v2) before the client's bytes.
    #[serde(default)]
    pub expect_proxy: bool,
    /// How long a client connection may stay idle.
    #[serde(default = "default_front_timeout", with = "seconds")]
    pub front_timeout: Duration,
    /// How long a backend connection may stay idle while a response is awaited.
    #[serde(default = "default_back_timeout", with = "seconds")]
    pub back_timeout: Duration,
    /// How long connecting to a backend may take.
    #[serde(default = "default_connect_timeout", with = "seconds")]
    pub connect_timeout: Duration,
    /// Move the bytes of bulk transfers with `splice(2)` through kernel pipes instead of
    /// copying them through user space (on by default).
    #[serde(default = "default_splice")]
    pub splice: bool,
    /// Content routing: past this many bytes without a matching rule, the default frontend.
    #[serde(default = "default_inspect_bytes")]
    pub inspect_bytes: u64,
    /// Content routing: how long the first bytes are waited for before the default frontend
    /// takes the connection (a silent client, or a server-speaks-first protocol).
    #[serde(default = "default_inspect_timeout", with = "seconds")]
    pub inspect_timeout: Duration,
    /// Content routing: the Lua script that decides what the rules leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<TcpScript>,
}

/// Content routing's default byte limit: 4096 bytes.
pub fn default_inspect_bytes() -> u64 {
    4096
}

/// Content routing's default wait for the first bytes: 2 seconds.
pub fn default_inspect_timeout() -> Duration {
    Duration::from_secs(2)
}

impl TcpListenerConfig {
    /// A listener on `address` with every other setting at its default.
    pub fn new(address: SocketAddr) -> Self {
        TcpListenerConfig {
            address,
            public_address: None,
            expect_proxy: false,
            front_timeout: default_front_timeout(),
            back_timeout: default_back_timeout(),
            connect_timeout: default_connect_timeout(),
            splice: default_splice(),
            inspect_bytes: default_inspect_bytes(),
            inspect_timeout: default_inspect_timeout(),
            script: None,
        }
    }
}

/// The kinds of listener, written `HTTP`, `HTTPS`, `TCP` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerType {
    /// Cleartext HTTP (HTTP/1.1, and HTTP/2 with prior knowledge when `h2c` is on).
    Http,
    /// HTTP over TLS.
    Https,
    /// Bytes piped to a backend, whatever the protocol.
    Tcp,
}

impl ListenerType {
    /// The kind's name as in JSON: `HTTP`, `HTTPS` or `TCP`.
    pub fn name(self) -> &'static str {
        match self {
            ListenerType::Http => "HTTP",
            ListenerType::Https => "HTTPS",
            ListenerType::Tcp => "TCP",
        }
    }
}

impl fmt::Display for ListenerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerAddress {
    /// The address the listener is bound to.
    pub address: SocketAddr,
    /// The listener's kind, which must be that of the listener on `address`.
    pub proxy: ListenerType,
}

/// Changes to an HTTP listener's settings, applied without rebinding; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerPatch {
    /// `null` removes the public address.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_address: Option<Option<SocketAddr>>,
    /// New value of `expect_proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_proxy: Option<bool>,
    /// New name of the sticky session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_name: Option<String>,
    /// New request id header; empty sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sozu_id_header: Option<String>,
    /// New client idle limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub front_timeout: Option<Duration>,
    /// New backend idle limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub back_timeout: Option<Duration>,
    /// New backend connect limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// New request head limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// Answers to set, by status code; an empty string restores the built-in page.
    #[serde(
        default,
        deserialize_with = "status_keys::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub answers: BTreeMap<u16, String>,
    /// New value of `send_x_real_ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_x_real_ip: Option<bool>,
    /// New value of `elide_x_real_ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elide_x_real_ip: Option<bool>,
    /// New value of `h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2c: Option<bool>,
    /// Changes to the HTTP/2 settings; empty changes nothing.
    #[serde(default, skip_serializing_if = "H2Patch::is_empty")]
    pub h2: H2Patch,
}

impl HttpListenerPatch {
    /// Writes the patch's values into `config`, leaving the fields it does not set. Answers given
    /// as empty strings go back to the built-in page.
    pub fn apply(&self, config: &mut HttpListenerConfig) {
        self.set_fields(config);
        for (code, answer) in &self.answers {
            if answer.is_empty() {
                config.answers.remove(code);
            } else {
                config.answers.insert(*code, answer.clone());
            }
        }
        self.h2.apply(&mut config.h2);
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == HttpListenerPatch::default()
    }
}

patch_fields! {
    HttpListenerPatch for HttpListenerConfig {
        public_address, expect_proxy, sticky_name, sozu_id_header, front_timeout, back_timeout,
        connect_timeout, request_timeout, send_x_real_ip, elide_x_real_ip, h2c,
    }
    between(old, new) {
        answers: answers_between(&old.answers, &new.answers),
        h2: H2Patch::between(&old.h2, &new.h2),
    }
}

/// The answers to set (an empty string restores the built-in page) so that `old` becomes `new`.
fn answers_between(
    old: &BTreeMap<u16, String>,
    new: &BTreeMap<u16, String>,
) -> BTreeMap<u16, String> {
    let mut answers: BTreeMap<u16, String> = old
        .keys()
        .filter(|code| !new.contains_key(code))
        .map(|code| (*code, String::new()))
        .collect();
    for (code, answer) in new {
        if old.get(code) != Some(answer) {
            answers.insert(*code, answer.clone());
        }
    }
    answers
}

/// Replaces `field` with the patch's value, when the patch has one.
fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *field = value.clone();
    }
}

/// The new value when it differs from the old one.
fn changed<T: Clone + PartialEq>(old: &T, new: &T) -> Option<T> {
    (old != new).then(|| new.clone())
}

/// `UPDATE_HTTP_LISTENER_CONFIG`: changes the settings of a cleartext HTTP listener in place. Fails
/// when no HTTP listener has that address or a value breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHttpListener {
    /// The listener to change.
    pub address: SocketAddr,
    /// The changes.
    #[serde(default)]
    pub http: HttpListenerPatch,
}

/// `UPDATE_HTTPS_LISTENER_CONFIG`: changes the settings of an HTTPS listener in place. Fails when
/// no HTTPS listener has that address, a value breaks its rule, or the TLS settings do not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHttpsListener {
    /// The listener to change.
    pub address: SocketAddr,
    /// Changes to the HTTP settings.
    #[serde(default)]
    pub http: HttpListenerPatch,
    /// Changes to the TLS settings.
    #[serde(default)]
    pub tls: TlsListenerPatch,
}

/// Changes to an HTTPS listener's TLS settings; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerPatch {
    /// New TLS versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<TlsVersion>>,
    /// New TLS 1.2 cipher suites; empty restores the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_list: Option<Vec<String>>,
    /// New TLS 1.3 cipher suites; empty restores the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<String>>,
    /// New key exchange groups; empty restores the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_list: Option<Vec<String>>,
    /// `null` removes the default certificate.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<Option<CertificateAndKey>>,
    /// New number of TLS 1.3 session tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_tls13_tickets: Option<u32>,
    /// New ALPN protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    /// New value of `strict_sni_binding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_sni_binding: Option<bool>,
    /// New value of `disable_http11` (only `false` is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_http11: Option<bool>,
    /// `null` removes the listener's HSTS policy.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub hsts: Option<Option<Hsts>>,
}

impl TlsListenerPatch {
    /// Writes the patch's values into `config`, leaving the fields it does not set.
    pub fn apply(&self, config: &mut TlsListenerConfig) {
        self.set_fields(config);
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == TlsListenerPatch::default()
    }
}

patch_fields! {
    TlsListenerPatch for TlsListenerConfig {
        versions, cipher_list, cipher_suites, groups_list, certificate, send_tls13_tickets,
        alpn_protocols, strict_sni_binding, disable_http11, hsts,
    }
    between(old, new) {}
}

/// Changes to a TCP listener's settings; absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTcpListener {
    /// The listener to change (`UPDATE_TCP_LISTENER_CONFIG`); fails when no TCP listener has that
    /// address.
    pub address: SocketAddr,
    /// `null` removes the public address.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_address: Option<Option<SocketAddr>>,
    /// New value of `expect_proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_proxy: Option<bool>,
    /// New client idle limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub front_timeout: Option<Duration>,
    /// New backend idle limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub back_timeout: Option<Duration>,
    /// New backend connect limit, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// New value of `splice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splice: Option<bool>,
    /// New content routing byte limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspect_bytes: Option<u64>,
    /// New content routing wait for the first bytes, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub inspect_timeout: Option<Duration>,
    /// A new script; `null` removes the script.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub script: Option<Option<TcpScript>>,
}

impl UpdateTcpListener {
    /// Writes the update's values into `config`, leaving the fields it does not set.
    pub fn apply(&self, config: &mut TcpListenerConfig) {
        self.set_fields(config);
    }
}

patch_fields! {
    UpdateTcpListener for TcpListenerConfig {
        public_address, expect_proxy, front_timeout, back_timeout, connect_timeout, splice,
        inspect_bytes, inspect_timeout, script,
    }
    between(old, new) {
        address: new.address,
    }
}
