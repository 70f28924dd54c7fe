//! The fields of Sōzu 2.1's records (the requests of its state file and of its `--json`
//! output), so that a record this proxy writes has every field Sōzu's reader requires: Sōzu
//! rejects a record without one of its lists or maps, and writes `null` for what is unset.

use serde_json::{Map, Value, json};

use crate::request::Order;

/// The keys of Sōzu's `RequestHttpFrontend`.
pub const HTTP_FRONTEND_KEYS: &[&str] = &[
    "cluster_id",
    "address",
    "hostname",
    "path",
    "method",
    "position",
    "tags",
    "redirect",
    "required_auth",
    "redirect_scheme",
    "redirect_template",
    "rewrite_host",
    "rewrite_path",
    "rewrite_port",
    "headers",
    "hsts",
];
/// The keys of Sōzu's `RequestTcpFrontend`.
pub const TCP_FRONTEND_KEYS: &[&str] = &["cluster_id", "address", "tags"];
/// The keys of Sōzu's `Cluster`.
pub const CLUSTER_KEYS: &[&str] = &[
    "cluster_id",
    "sticky_session",
    "https_redirect",
    "proxy_protocol",
    "load_balancing",
    "answer_503",
    "load_metric",
    "http2",
    "answers",
    "https_redirect_port",
    "authorized_hashes",
    "www_authenticate",
    "max_connections_per_ip",
    "retry_after",
    "health_check",
    "udp",
];
/// The keys of Sōzu's `AddBackend`.
pub const BACKEND_KEYS: &[&str] = &[
    "cluster_id",
    "backend_id",
    "address",
    "sticky_id",
    "load_balancing_parameters",
    "backup",
];
/// The keys Sōzu's HTTP and HTTPS listeners share.
pub const HTTP_LISTENER_KEYS: &[&str] = &[
    "address",
    "public_address",
    "expect_proxy",
    "sticky_name",
    "front_timeout",
    "back_timeout",
    "connect_timeout",
    "request_timeout",
    "active",
    "http_answers",
    "h2_max_rst_stream_per_window",
    "h2_max_ping_per_window",
    "h2_max_settings_per_window",
    "h2_max_empty_data_per_window",
    "h2_max_continuation_frames",
    "h2_max_glitch_count",
    "h2_initial_connection_window",
    "h2_max_concurrent_streams",
    "h2_stream_shrink_ratio",
    "h2_max_rst_stream_lifetime",
    "h2_max_rst_stream_abusive_lifetime",
    "h2_max_rst_stream_emitted_lifetime",
    "h2_max_header_list_size",
    "h2_stream_idle_timeout_seconds",
    "h2_max_header_table_size",
    "h2_graceful_shutdown_deadline_seconds",
    "h2_max_window_update_stream0_per_window",
    "sozu_id_header",
    "answers",
    "elide_x_real_ip",
    "send_x_real_ip",
    "h2_max_header_fields",
];
/// The keys only Sōzu's HTTPS listeners have.
pub const HTTPS_LISTENER_KEYS: &[&str] = &[
    "versions",
    "cipher_list",
    "cipher_suites",
    "signature_algorithms",
    "groups_list",
    "certificate",
    "certificate_chain",
    "key",
    "send_tls13_tickets",
    "alpn_protocols",
    "strict_sni_binding",
    "disable_http11",
    "hsts",
];
/// The keys of Sōzu's TCP listeners.
pub const TCP_LISTENER_KEYS: &[&str] = &[
    "address",
    "public_address",
    "expect_proxy",
    "front_timeout",
    "back_timeout",
    "connect_timeout",
    "active",
];
/// The keys of Sōzu's `CertificateAndKey`.
pub const CERTIFICATE_KEYS: &[&str] = &[
    "certificate",
    "certificate_chain",
    "key",
    "versions",
    "names",
];

/// The keys of Sōzu's `AddCertificate`.
const ADD_CERTIFICATE_KEYS: &[&str] = &["address", "certificate", "expired_at"];

/// Sōzu's keys of the record of `order`; none for an order Sōzu's state file has no record
/// of.
fn keys_of(order: &Order) -> Vec<&'static str> {
    match order {
        Order::AddHttpFrontend(_) | Order::AddHttpsFrontend(_) => HTTP_FRONTEND_KEYS.to_vec(),
        Order::AddTcpFrontend(_) => TCP_FRONTEND_KEYS.to_vec(),
        Order::AddCluster(_) => CLUSTER_KEYS.to_vec(),
        Order::AddBackend(_) => BACKEND_KEYS.to_vec(),
        Order::AddHttpListener(_) => HTTP_LISTENER_KEYS.to_vec(),
        Order::AddHttpsListener(_) => HTTP_LISTENER_KEYS
            .iter()
            .chain(HTTPS_LISTENER_KEYS)
            .copied()
            .collect(),
        Order::AddTcpListener(_) => TCP_LISTENER_KEYS.to_vec(),
        Order::AddCertificate(_) => ADD_CERTIFICATE_KEYS.to_vec(),
        _ => Vec::new(),
    }
}

/// Adds to `fields`, the record of `order`, each of Sōzu's fields it lacks, as Sōzu writes it
/// unset ([`unset`]); a certificate's nested record too.
pub fn complete(order: &Order, fields: &mut Map<String, Value>) {
    complete_with(&keys_of(order), fields);
    if let Some(Value::Object(certificate)) = fields.get_mut("certificate") {
        if matches!(order, Order::AddCertificate(_)) {
            complete_with(CERTIFICATE_KEYS, certificate);
        }
    }
}

/// Adds each of `keys` that `fields` lacks, unset.
pub fn complete_with(keys: &[&str], fields: &mut Map<String, Value>) {
    for key in keys {
        fields.entry(key.to_string()).or_insert_with(|| unset(key));
    }
}

/// How Sōzu writes its field `key` unset: an empty map or list for maps and lists, else
/// `null`.
pub fn unset(key: &str) -> Value {
    match key {
        "tags" | "answers" => json!({}),
        "headers"
        | "authorized_hashes"
        | "certificate_chain"
        | "signature_algorithms"
        | "cipher_list"
        | "cipher_suites"
        | "groups_list"
        | "versions"
        | "names"
        | "alpn_protocols" => json!([]),
        _ => Value::Null,
    }
}
