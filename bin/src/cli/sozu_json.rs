//! `--json` as Sōzu 2.1 prints it: the protobuf JSON of its `ResponseContent`, the oneof named
//! in capitals (`{"WORKERS": {"vec": [...]}}`), enumerations as numbers, addresses as
//! `{"ip": {"inner": {"V4": n}}, "port": p}`, unset fields as `null`. The records of listeners,
//! clusters, frontends and backends are those of Sōzu's state file
//! ([`sozu_format::record_of`]), completed with Sōzu's `null`s.
//!
//! Contents Sōzu has no shape for (or whose shape needs what our answers do not carry, as the
//! PEM of listed certificates) have none here: the caller prints them compactly.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sozu_command_lib::{
    config::LISTENER_LEGACY_KEYS,
    request::{
        AddBackend, Cluster, HttpFrontend, HttpListenerConfig, HttpsListenerConfig, Order,
        TcpFrontend, TcpListenerConfig,
    },
    response::{ClusterInformation, ListedFrontends, ListenersList, ResponseContent, RunState},
    state::sozu_format,
};

/// The keys of Sōzu's `RequestHttpFrontend`.
const HTTP_FRONTEND_KEYS: &[&str] = &[
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
const TCP_FRONTEND_KEYS: &[&str] = &["cluster_id", "address", "tags"];
/// The keys of Sōzu's `Cluster`.
const CLUSTER_KEYS: &[&str] = &[
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
const BACKEND_KEYS: &[&str] = &[
    "cluster_id",
    "backend_id",
    "address",
    "sticky_id",
    "load_balancing_parameters",
    "backup",
];
/// The keys Sōzu's HTTP and HTTPS listeners share.
const HTTP_LISTENER_KEYS: &[&str] = &[
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
const HTTPS_LISTENER_KEYS: &[&str] = &[
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
const TCP_LISTENER_KEYS: &[&str] = &[
    "address",
    "public_address",
    "expect_proxy",
    "front_timeout",
    "back_timeout",
    "connect_timeout",
    "active",
];
/// Sōzu's JSON for `content`, or `None` when Sōzu has no such shape.
pub fn shape(content: &ResponseContent) -> Option<Value> {
    Some(match content {
        ResponseContent::Workers(workers) => {
            let vec: Vec<Value> = workers
                .iter()
                .map(|worker| {
                    json!({
                        "id": worker.id,
                        "pid": worker.pid,
                        "run_state": run_state(worker.run_state),
                    })
                })
                .collect();
            json!({ "WORKERS": { "vec": vec } })
        }
        ResponseContent::RequestCounts(counts) => {
            json!({ "REQUEST_COUNTS": { "map": request_counts(counts) } })
        }
        ResponseContent::ClusterHashes(hashes) => {
            answered_by_main(json!({ "CLUSTER_HASHES": { "map": hashes } }))
        }
        ResponseContent::Clusters(clusters) => {
            let vec: Vec<Value> = clusters.iter().map(cluster_information).collect();
            answered_by_main(json!({ "CLUSTERS": { "vec": vec } }))
        }
        ResponseContent::Frontends(frontends) => {
            json!({ "FRONTEND_LIST": frontend_list(frontends) })
        }
        ResponseContent::Listeners(listeners) => {
            json!({ "LISTENERS_LIST": listeners_list(listeners) })
        }
        _ => return None,
    })
}

/// What Sōzu prints for a change that succeeded.
pub fn done() -> Value {
    json!({})
}

/// Sōzu's `RunState` number.
fn run_state(state: RunState) -> u8 {
    match state {
        RunState::Running => 0,
        RunState::Stopping => 1,
        RunState::Stopped => 2,
        RunState::NotAnswering => 3,
    }
}

/// A query Sōzu sends to each worker and to its main process, answered here by the main
/// process alone (its state is the one the workers apply): Sōzu's `WORKER_RESPONSES` with the
/// `main` entry.
fn answered_by_main(content_type: Value) -> Value {
    json!({ "WORKER_RESPONSES": { "map": { "main": { "content_type": content_type } } } })
}

/// Sōzu counts the requests that make its state, by request name (`AddCluster`); ours are
/// counted by what the state holds (`state.clusters`). Counts of zero are left out, as Sōzu
/// lists only the requests its state has.
fn request_counts(counts: &BTreeMap<String, u64>) -> Map<String, Value> {
    const NAMES: &[(&str, &str)] = &[
        ("state.clusters", "AddCluster"),
        ("state.backends", "AddBackend"),
        ("state.http_frontends", "AddHttpFrontend"),
        ("state.https_frontends", "AddHttpsFrontend"),
        ("state.tcp_frontends", "AddTcpFrontend"),
        ("state.certificates", "AddCertificate"),
        ("state.http_listeners", "AddHttpListener"),
        ("state.https_listeners", "AddHttpsListener"),
        ("state.tcp_listeners", "AddTcpListener"),
        ("state.active_listeners", "ActivateListener"),
    ];
    NAMES
        .iter()
        .filter_map(|(ours, sozu)| {
            let count = *counts.get(*ours)?;
            (count > 0).then(|| (sozu.to_string(), json!(count)))
        })
        .collect()
}

/// The record of `order` with Sōzu's `keys`, those our record lacks set as Sōzu prints them
/// unset: an empty map or list for maps and lists, else `null`.
fn record(order: Order, keys: &[&str]) -> Value {
    let mut fields = sozu_format::record_of(&order).unwrap_or_default();
    for key in keys {
        let value = fields.entry(key.to_string()).or_insert(Value::Null);
        if value.is_null() {
            *value = unset(key);
        }
    }
    Value::Object(fields)
}

/// How Sōzu prints the unset field `key`. An empty `cipher_list`, `cipher_suites` or
/// `groups_list` means the TLS library's defaults, which Sōzu would list; `signature_algorithms`
/// is always empty here: the proxy does not restrict them (the TLS library picks one of those
/// the client offers).
fn unset(key: &str) -> Value {
    match key {
        "tags" | "answers" => json!({}),
        "headers"
        | "authorized_hashes"
        | "certificate_chain"
        | "signature_algorithms"
        | "cipher_list"
        | "cipher_suites"
        | "groups_list" => json!([]),
        _ => Value::Null,
    }
}

fn http_frontend(frontend: &HttpFrontend) -> Value {
    record(Order::AddHttpFrontend(frontend.clone()), HTTP_FRONTEND_KEYS)
}

fn tcp_frontend(frontend: &TcpFrontend) -> Value {
    record(Order::AddTcpFrontend(frontend.clone()), TCP_FRONTEND_KEYS)
}

fn frontend_list(frontends: &ListedFrontends) -> Value {
    json!({
        "http_frontends": frontends.http.iter().map(http_frontend).collect::<Vec<_>>(),
        "https_frontends": frontends.https.iter().map(http_frontend).collect::<Vec<_>>(),
        "tcp_frontends": frontends.tcp.iter().map(tcp_frontend).collect::<Vec<_>>(),
        "udp_frontends": [],
    })
}

fn cluster_information(information: &ClusterInformation) -> Value {
    let cluster: &Cluster = &information.cluster;
    let backends: Vec<Value> = information
        .backends
        .iter()
        .map(|backend| backend_record(&backend.backend))
        .collect();
    json!({
        "configuration": record(Order::AddCluster(cluster.clone()), CLUSTER_KEYS),
        "http_frontends": information.http_frontends.iter().map(http_frontend).collect::<Vec<_>>(),
        "https_frontends": information.https_frontends.iter().map(http_frontend).collect::<Vec<_>>(),
        "tcp_frontends": information.tcp_frontends.iter().map(tcp_frontend).collect::<Vec<_>>(),
        "backends": backends,
        "udp_frontends": [],
    })
}

fn backend_record(backend: &AddBackend) -> Value {
    record(Order::AddBackend(backend.clone()), BACKEND_KEYS)
}

/// A listener's record with its activity and Sōzu's `http_answers` (its legacy per-status
/// pages, never set here: `answers` holds them), by address.
fn listener(mut value: Value, active: bool, http: bool) -> (String, Value) {
    if let Value::Object(fields) = &mut value {
        fields.insert("active".to_string(), json!(active));
        if http {
            let legacy: Map<String, Value> = LISTENER_LEGACY_KEYS
                .iter()
                .map(|key| (key.to_string(), Value::Null))
                .collect();
            fields.insert("http_answers".to_string(), Value::Object(legacy));
        }
    }
    (address_key(&value), value)
}

/// The `IP:PORT` Sōzu keys a listener by, from its record's address.
fn address_key(value: &Value) -> String {
    let address = &value["address"];
    let port = address["port"].as_u64().unwrap_or_default();
    match address["ip"]["inner"]["V4"].as_u64() {
        Some(bits) => {
            let ip = std::net::Ipv4Addr::from(u32::try_from(bits).unwrap_or_default());
            format!("{ip}:{port}")
        }
        None => {
            let v6 = &address["ip"]["inner"]["V6"];
            let high = u128::from(v6["high"].as_u64().unwrap_or_default());
            let low = u128::from(v6["low"].as_u64().unwrap_or_default());
            format!("[{}]:{port}", std::net::Ipv6Addr::from((high << 64) | low))
        }
    }
}

fn listeners_list(listeners: &ListenersList) -> Value {
    let http: Map<String, Value> = listeners
        .http
        .iter()
        .map(|listed| {
            let order = Order::AddHttpListener(HttpListenerConfig::clone(&listed.config));
            listener(record(order, HTTP_LISTENER_KEYS), listed.active, true)
        })
        .collect();
    let https_keys: Vec<&str> = HTTP_LISTENER_KEYS
        .iter()
        .chain(HTTPS_LISTENER_KEYS)
        .copied()
        .collect();
    let https: Map<String, Value> = listeners
        .https
        .iter()
        .map(|listed| {
            let order = Order::AddHttpsListener(HttpsListenerConfig::clone(&listed.config));
            listener(record(order, &https_keys), listed.active, true)
        })
        .collect();
    let tcp: Map<String, Value> = listeners
        .tcp
        .iter()
        .map(|listed| {
            let order = Order::AddTcpListener(TcpListenerConfig::clone(&listed.config));
            listener(record(order, TCP_LISTENER_KEYS), listed.active, false)
        })
        .collect();
    json!({
        "http_listeners": http,
        "https_listeners": https,
        "tcp_listeners": tcp,
        "udp_listeners": {},
    })
}
