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
        AddBackend, AddCertificate, Cluster, HttpFrontend, HttpListenerConfig, HttpsListenerConfig,
        Order, TcpFrontend, TcpListenerConfig, default_id_header,
    },
    response::{
        AggregatedMetrics, CertificateSummary, ClusterInformation, ClusterMetrics, FilteredMetric,
        HistogramData, ListedFrontends, ListenersList, ResponseContent, RunState,
    },
    state::{sozu_format, sozu_records},
};
use sozu_lib::{
    metrics::statsd_names::{Level, sozu_name},
    protocol::tls,
};

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
        ResponseContent::ClusterHashes(hashes) => json!({ "CLUSTER_HASHES": { "map": hashes } }),
        ResponseContent::Clusters(clusters) => {
            let vec: Vec<Value> = clusters.iter().map(cluster_information).collect();
            json!({ "CLUSTERS": { "vec": vec } })
        }
        ResponseContent::Frontends(frontends) => {
            json!({ "FRONTEND_LIST": frontend_list(frontends) })
        }
        ResponseContent::Listeners(listeners) => {
            json!({ "LISTENERS_LIST": listeners_list(listeners) })
        }
        ResponseContent::Metrics(metrics) => json!({ "METRICS": aggregated_metrics(metrics) }),
        ResponseContent::Certificates(certificates) => certificate_list(certificates),
        ResponseContent::WorkerResponses(answers) => {
            let map: Option<Map<String, Value>> = answers
                .iter()
                .map(|(worker, content)| {
                    let content_type = shape(content)?;
                    Some((worker.clone(), json!({ "content_type": content_type })))
                })
                .collect();
            json!({ "WORKER_RESPONSES": { "map": map? } })
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

/// The record of `order` with every field of Sōzu's ([`sozu_records::complete`]), those our
/// record leaves unset or empty printed as Sōzu prints them ([`shown_unset`]), and those at
/// their default printed `null`, as Sōzu prints a field its configuration left unset
/// ([`at_default`]).
fn record(order: Order) -> Value {
    let mut fields = sozu_format::record_of(&order).unwrap_or_default();
    sozu_records::complete(&order, &mut fields);
    for (key, value) in &mut fields {
        if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
            *value = shown_unset(key);
        } else if at_default(key, value) {
            *value = Value::Null;
        }
    }
    Value::Object(fields)
}

/// Whether `value` is the default of the optional field `key` of Sōzu's records, which Sōzu
/// prints `null` unless set: a frontend's forward `redirect`, its `redirect_scheme` of the
/// same scheme and `required_auth` off, a backend's `backup` off, a listener's `Sozu-Id`
/// header and strict SNI binding.
fn at_default(key: &str, value: &Value) -> bool {
    match key {
        "redirect" | "redirect_scheme" => *value == json!(0),
        "required_auth" | "backup" => *value == json!(false),
        "strict_sni_binding" => *value == json!(true),
        "sozu_id_header" => *value == json!(default_id_header()),
        _ => false,
    }
}

/// How Sōzu prints the unset field `key`. An empty `cipher_list`, `cipher_suites` or
/// `groups_list` means the TLS library's defaults, listed as Sōzu lists its own;
/// `signature_algorithms` is always empty here: the proxy does not restrict them (the TLS
/// library picks one of those the client offers).
fn shown_unset(key: &str) -> Value {
    match key {
        "cipher_list" | "cipher_suites" => json!(tls::default_cipher_suites()),
        "groups_list" => json!(tls::default_groups()),
        _ => sozu_records::unset(key),
    }
}

fn http_frontend(frontend: &HttpFrontend) -> Value {
    record(Order::AddHttpFrontend(frontend.clone()))
}

fn tcp_frontend(frontend: &TcpFrontend) -> Value {
    record(Order::AddTcpFrontend(frontend.clone()))
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
        "configuration": record(Order::AddCluster(cluster.clone())),
        "http_frontends": information.http_frontends.iter().map(http_frontend).collect::<Vec<_>>(),
        "https_frontends": information.https_frontends.iter().map(http_frontend).collect::<Vec<_>>(),
        "tcp_frontends": information.tcp_frontends.iter().map(tcp_frontend).collect::<Vec<_>>(),
        "backends": backends,
        "udp_frontends": [],
    })
}

fn backend_record(backend: &AddBackend) -> Value {
    record(Order::AddBackend(backend.clone()))
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
            listener(record(order), listed.active, true)
        })
        .collect();
    let https: Map<String, Value> = listeners
        .https
        .iter()
        .map(|listed| {
            let order = Order::AddHttpsListener(HttpsListenerConfig::clone(&listed.config));
            listener(record(order), listed.active, true)
        })
        .collect();
    let tcp: Map<String, Value> = listeners
        .tcp
        .iter()
        .map(|listed| {
            let order = Order::AddTcpListener(TcpListenerConfig::clone(&listed.config));
            listener(record(order), listed.active, false)
        })
        .collect();
    json!({
        "http_listeners": http,
        "https_listeners": https,
        "tcp_listeners": tcp,
        "udp_listeners": {},
    })
}

/// Certificates as Sōzu lists them: the main state's whole (`CERTIFICATES_WITH_FINGERPRINTS`,
/// by fingerprint, when the answer carries their PEM), a worker's as summaries by listener
/// (`CERTIFICATES_BY_ADDRESS`, one per name).
fn certificate_list(certificates: &[CertificateSummary]) -> Value {
    if certificates.iter().all(|listed| listed.pem.is_some()) {
        let certs: Map<String, Value> = certificates
            .iter()
            .filter_map(|listed| {
                let pem = listed.pem.clone()?;
                let order = Order::AddCertificate(AddCertificate {
                    address: listed.address,
                    certificate: pem,
                    allow_expired: false,
                });
                let mut record = sozu_format::record_of(&order).ok()?;
                sozu_records::complete(&order, &mut record);
                let mut certificate = record.remove("certificate").unwrap_or_default();
                if let Value::Object(fields) = &mut certificate {
                    fields.insert("names".to_string(), json!(listed.names));
                    fields.retain(|key, _| sozu_records::CERTIFICATE_KEYS.contains(&key.as_str()));
                }
                Some((listed.fingerprint.to_string(), certificate))
            })
            .collect();
        return json!({ "CERTIFICATES_WITH_FINGERPRINTS": { "certs": certs } });
    }
    let mut by_address: BTreeMap<std::net::SocketAddr, Vec<Value>> = BTreeMap::new();
    for listed in certificates {
        let summaries = by_address.entry(listed.address).or_default();
        summaries.extend(
            listed.names.iter().map(
                |name| json!({ "domain": name, "fingerprint": listed.fingerprint.to_string() }),
            ),
        );
    }
    let list: Vec<Value> = by_address
        .into_iter()
        .map(|(address, summaries)| {
            json!({
                "address": sozu_format::sozu_address(address),
                "certificate_summaries": summaries,
            })
        })
        .collect();
    json!({ "CERTIFICATES_BY_ADDRESS": { "certificates": list } })
}

/// Sōzu's `AggregatedMetrics`: the main process's figures, each worker's (`metrics get -w`),
/// and the clusters' and proxying figures merged over the workers, under Sōzu's names
/// ([`sozu_name`]). Our per-listener figures have no place there and are left out.
fn aggregated_metrics(metrics: &AggregatedMetrics) -> Value {
    let workers: Map<String, Value> = metrics
        .workers
        .iter()
        .map(|(id, worker)| {
            let figures = json!({
                "proxy": figures(&worker.proxy, Level::Proxy),
                "clusters": cluster_metrics(&worker.clusters),
            });
            (id.clone(), figures)
        })
        .collect();
    json!({
        "main": figures(&metrics.main, Level::Proxy),
        "workers": workers,
        "clusters": cluster_metrics(&metrics.clusters),
        "proxying": figures(&metrics.proxy, Level::Proxy),
    })
}

/// Sōzu's `ClusterMetrics` of each cluster, its backends as a list.
fn cluster_metrics(clusters: &BTreeMap<String, ClusterMetrics>) -> Map<String, Value> {
    clusters
        .iter()
        .map(|(cluster_id, cluster)| {
            let backends: Vec<Value> = cluster
                .backends
                .iter()
                .map(|(backend_id, metrics)| {
                    json!({
                        "backend_id": backend_id,
                        "metrics": figures(metrics, Level::Backend),
                    })
                })
                .collect();
            let metrics = json!({
                "cluster": figures(&cluster.cluster, Level::Cluster),
                "backends": backends,
            });
            (cluster_id.clone(), metrics)
        })
        .collect()
}

/// Figures as Sōzu's `FilteredMetrics` (`{"inner": {"COUNT": n}}`), by Sōzu's name. A
/// distribution gives two, as in Sōzu: `NAME` (`PERCENTILES`) and `NAME_histogram`
/// (`HISTOGRAM`), in milliseconds. The command line asks for distributions as recorded
/// (`histograms`), so none comes as percentiles already.
fn figures(figures: &BTreeMap<String, FilteredMetric>, level: Level) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in figures {
        let name = sozu_name(level, name).into_owned();
        let inner = match value {
            FilteredMetric::Gauge(gauge) => json!({ "GAUGE": gauge }),
            FilteredMetric::Count(count) => json!({ "COUNT": count }),
            FilteredMetric::Histogram(data) => {
                let histogram = json!({ "inner": { "HISTOGRAM": histogram(data) } });
                out.insert(format!("{name}_histogram"), histogram);
                json!({ "PERCENTILES": percentiles(data) })
            }
            FilteredMetric::Percentiles(_) => continue,
        };
        out.insert(name, json!({ "inner": inner }));
    }
    out
}

/// Microseconds as Sōzu's whole milliseconds.
fn millis(micros: u64) -> u64 {
    micros / 1000
}

/// Sōzu's `Percentiles` of a distribution recorded in microseconds, in milliseconds: each is
/// the smallest recorded value with at least that share of the samples at or below it.
fn percentiles(data: &HistogramData) -> Value {
    let samples = data
        .values
        .iter()
        .fold(0u64, |total, (_, count)| total.saturating_add(*count));
    let at = |parts: u128, whole: u128| {
        let rank = (u128::from(samples) * parts).div_ceil(whole).max(1);
        let mut seen = 0u128;
        data.values
            .iter()
            .find(|(_, count)| {
                seen += u128::from(*count);
                seen >= rank
            })
            .map_or(0, |(value, _)| millis(*value))
    };
    json!({
        "samples": samples,
        "p_50": at(50, 100),
        "p_90": at(90, 100),
        "p_99": at(99, 100),
        "p_99_9": at(999, 1_000),
        "p_99_99": at(9_999, 10_000),
        "p_99_999": at(99_999, 100_000),
        "p_100": at(1, 1),
        "sum": millis(data.sum),
    })
}

/// Sōzu's `FilteredHistogram` of a distribution recorded in microseconds: cumulative counts
/// of the samples of at most 0, 1, 3, 7, … milliseconds (2ⁿ − 1), up to the largest.
fn histogram(data: &HistogramData) -> Value {
    let mut buckets = Vec::new();
    let mut values = data.values.iter().peekable();
    let mut count = 0u64;
    if let Some(largest) = data.values.last().map(|(value, _)| millis(*value)) {
        let mut le = 0u64;
        loop {
            while let Some((_, samples)) = values.next_if(|(value, _)| millis(*value) <= le) {
                count = count.saturating_add(*samples);
            }
            buckets.push(json!({ "count": count, "le": le }));
            if le >= largest {
                break;
            }
            le = le.saturating_mul(2).saturating_add(1);
        }
    }
    json!({ "sum": millis(data.sum), "count": count, "buckets": buckets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_are_sozus_percentiles_and_histogram_in_milliseconds() {
        // 9 samples under 1 ms, 11 at 1.5 ms, one at 3.2 ms (as microseconds).
        let data = HistogramData {
            values: vec![(400, 9), (1_500, 11), (3_200, 1)],
            sum: 9 * 400 + 11 * 1_500 + 3_200,
        };
        let mut metrics = BTreeMap::new();
        metrics.insert("response_time".to_string(), FilteredMetric::Histogram(data));
        metrics.insert("requests".to_string(), FilteredMetric::Count(21));
        metrics.insert("active_connections".to_string(), FilteredMetric::Gauge(2));
        let shaped = figures(&metrics, Level::Proxy);
        assert_eq!(shaped["http.requests"], json!({ "inner": { "COUNT": 21 } }));
        assert_eq!(
            shaped["client.connections"],
            json!({ "inner": { "GAUGE": 2 } })
        );
        assert_eq!(
            shaped["request_time"],
            json!({ "inner": { "PERCENTILES": {
                "samples": 21, "p_50": 1, "p_90": 1, "p_99": 3, "p_99_9": 3,
                "p_99_99": 3, "p_99_999": 3, "p_100": 3, "sum": 23,
            } } })
        );
        assert_eq!(
            shaped["request_time_histogram"],
            json!({ "inner": { "HISTOGRAM": {
                "sum": 23,
                "count": 21,
                "buckets": [
                    { "count": 9, "le": 0 },
                    { "count": 20, "le": 1 },
                    { "count": 21, "le": 3 },
                ],
            } } })
        );
    }

    #[test]
    fn an_empty_distribution_has_no_bucket() {
        let empty = HistogramData::default();
        assert_eq!(
            histogram(&empty),
            json!({ "sum": 0, "count": 0, "buckets": [] })
        );
        assert_eq!(percentiles(&empty)["p_100"], 0);
    }
}
