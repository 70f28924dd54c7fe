//! Responses: `{id, status: OK | PROCESSING | FAILURE, message, content}`.
//!
//! Every request gets exactly one final response (OK or FAILURE) with the request's id, possibly
//! preceded by PROCESSING responses while the main process waits for its workers. Queries carry
//! their result in `content`.

use std::{collections::BTreeMap, fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};

use crate::request::{
    AddBackend, CertificateAndKey, Cluster, Fingerprint, HealthCheckConfig, HttpFrontend,
    HttpListenerConfig, HttpsListenerConfig, RegistrationIds, RegistrationInfo, TcpFrontend,
    TcpListenerConfig,
};

/// One message from the proxy to a client: the answer, or a progress note, for the request with the
/// same `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// The id of the request this answers.
    pub id: String,
    /// Whether the order succeeded, failed, or is still being carried out.
    pub status: ResponseStatus,
    /// What went wrong on FAILURE, or a short note; may be empty.
    #[serde(default)]
    pub message: String,
    /// The result of a query; `None` for orders that only change something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ResponseContent>,
}

impl Response {
    /// A final answer saying the order succeeded, with the query's result if any.
    pub fn ok(id: impl Into<String>, content: Option<ResponseContent>) -> Self {
        Response {
            id: id.into(),
            status: ResponseStatus::Ok,
            message: String::new(),
            content,
        }
    }

    /// A progress note, sent before the final answer while the main process waits for its workers;
    /// `message` says what is awaited.
    pub fn processing(id: impl Into<String>, message: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            status: ResponseStatus::Processing,
            message: message.into(),
            content: None,
        }
    }

    /// A final answer saying the order failed; `message` says why.
    pub fn failure(id: impl Into<String>, message: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            status: ResponseStatus::Failure,
            message: message.into(),
            content: None,
        }
    }

    /// Whether this response ends the exchange for its request.
    pub fn is_final(&self) -> bool {
        self.status != ResponseStatus::Processing
    }
}

/// Where a request stands, written `OK`, `PROCESSING` or `FAILURE` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseStatus {
    /// The order was carried out; final.
    Ok,
    /// The order is being carried out; a final response follows.
    Processing,
    /// The order was refused or failed; final. The response's `message` says why.
    Failure,
}

impl fmt::Display for ResponseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseStatus::Ok => "OK",
            ResponseStatus::Processing => "PROCESSING",
            ResponseStatus::Failure => "FAILURE",
        })
    }
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseContent {
    /// The workers of the main process (`LIST_WORKERS`).
    Workers(Vec<WorkerInfo>),
    /// What one worker reports about itself.
    WorkerStatus(WorkerStatus),
    /// Metrics (`QUERY_METRICS`), merged across workers unless asked per worker.
    Metrics(AggregatedMetrics),
    /// The names of the metrics that exist (`QUERY_METRICS` with `list`).
    MetricNames(Vec<String>),
    /// The clusters asked for (`QUERY_CLUSTER_BY_ID`, `QUERY_CLUSTERS_BY_DOMAIN`).
    Clusters(Vec<ClusterInformation>),
    /// A hash of each cluster's configuration, by cluster id (`QUERY_CLUSTERS_HASHES`): two nodes
    /// with equal hashes route a cluster the same way.
    ClusterHashes(BTreeMap<String, u64>),
    /// The frontends that match the filters of `LIST_FRONTENDS`.
    Frontends(ListedFrontends),
    /// Every listener with its settings and whether it accepts connections (`LIST_LISTENERS`).
    Listeners(ListenersList),
    /// The certificates asked for (`QUERY_CERTIFICATES_FROM_THE_STATE`,
    /// `QUERY_CERTIFICATES_FROM_WORKERS`).
    Certificates(Vec<CertificateSummary>),
    /// Requests served since start, by cluster id (`COUNT_REQUESTS`).
    RequestCounts(BTreeMap<String, u64>),
    /// The cap on connections from one client address to one cluster; 0 means no cap
    /// (`QUERY_MAX_CONNECTIONS_PER_IP`).
    MaxConnectionsPerIp(u64),
    /// Health checks by cluster id (`QUERY_HEALTH_CHECKS`).
    HealthChecks(BTreeMap<String, HealthCheckConfig>),
    /// The active faults (`LIST_FAULTS`).
    Faults(Vec<FaultInformation>),
    /// One event, sent to a client after `SUBSCRIBE_EVENTS`.
    Event(Event),
    /// Answers of each worker, by worker id, when they are not merged.
    WorkerResponses(BTreeMap<String, ResponseContent>),
    /// The answer to `REGISTER`.
    Registered(RegistrationIds),
    /// The answer to `LIST_REGISTRATIONS`.
    Registrations(Vec<RegistrationInfo>),
}

/// One worker process of the main process, as `LIST_WORKERS` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's number; a worker started in place of a dead one keeps it.
    pub id: u32,
    /// The worker's process id.
    pub pid: i32,
    /// Whether the worker runs, stops, or stopped answering.
    pub run_state: RunState,
    /// How many times this worker slot was restarted after dying.
    #[serde(default)]
    pub restarts: u32,
}

/// The life of a worker process, written in `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Accepts connections and answers orders.
    Running,
    /// Told to stop: finishing its sessions (soft stop) or closing them (hard stop).
    Stopping,
    /// Exited.
    Stopped,
    /// Did not answer the main process within `worker_timeout`.
    NotAnswering,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Running => "RUNNING",
            RunState::Stopping => "STOPPING",
            RunState::Stopped => "STOPPED",
            RunState::NotAnswering => "NOT_ANSWERING",
        })
    }
}

/// What one worker reports about itself in `STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Whether the worker runs or stops.
    pub run_state: RunState,
    /// Sessions open now.
    pub sessions: u64,
    /// The most sessions the worker keeps at once (`max_connections`).
    pub max_connections: u64,
    /// Listeners by address, and whether each accepts connections.
    pub listeners: BTreeMap<SocketAddr, bool>,
}

/// Everything known about one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInformation {
    /// The cluster's settings.
    pub cluster: Cluster,
    /// The HTTP frontends routing to the cluster.
    #[serde(default)]
    pub http_frontends: Vec<HttpFrontend>,
    /// The HTTPS frontends routing to the cluster.
    #[serde(default)]
    pub https_frontends: Vec<HttpFrontend>,
    /// The TCP frontends routing to the cluster.
    #[serde(default)]
    pub tcp_frontends: Vec<TcpFrontend>,
    /// The cluster's backends, with their health when a worker answered.
    #[serde(default)]
    pub backends: Vec<BackendInformation>,
}

/// A backend and, when a worker answered, what it knows of the backend's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInformation {
    /// The backend's settings, as the order that added it.
    pub backend: AddBackend,
    /// The backend's health as one worker sees it; `None` when only the state was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<BackendRuntime>,
}

/// A backend's health in one worker, as its connections reveal it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRuntime {
    /// Whether the backend takes new connections.
    pub status: BackendStatus,
    /// Connections to the backend open now.
    pub active_connections: u64,
    /// Connection failures in a row; reset by a success.
    pub failures: u32,
    /// What active health checks say: false while the backend fails them. Always true for a
    /// cluster without health checks.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
}

fn healthy_by_default() -> bool {
    true
}

/// Whether a backend gets new connections, written `NORMAL`, `DOWN` or `DRAINING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackendStatus {
    /// Takes new connections.
    Normal,
    /// Failed too often; retried after a backoff.
    Down,
    /// Removed: takes no new connection and is forgotten when its last one ends.
    Draining,
}

impl fmt::Display for BackendStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendStatus::Normal => "NORMAL",
            BackendStatus::Down => "DOWN",
            BackendStatus::Draining => "DRAINING",
        })
    }
}

/// The frontends that `LIST_FRONTENDS` found, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFrontends {
    /// HTTP frontends.
    #[serde(default)]
    pub http: Vec<HttpFrontend>,
    /// HTTPS frontends.
    #[serde(default)]
    pub https: Vec<HttpFrontend>,
    /// TCP frontends.
    #[serde(default)]
    pub tcp: Vec<TcpFrontend>,
}

/// Every listener, by kind, as `LIST_LISTENERS` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenersList {
    /// HTTP listeners.
    #[serde(default)]
    pub http: Vec<ListedListener<HttpListenerConfig>>,
    /// HTTPS listeners.
    #[serde(default)]
    pub https: Vec<ListedListener<HttpsListenerConfig>>,
    /// TCP listeners.
    #[serde(default)]
    pub tcp: Vec<ListedListener<TcpListenerConfig>>,
}

/// One listener's settings and whether it accepts connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedListener<T> {
    /// The listener's settings.
    pub config: T,
    /// Whether the listener accepts connections (activated and not deactivated).
    pub active: bool,
}

/// One certificate served by an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// The HTTPS listener that serves the certificate.
    pub address: SocketAddr,
    /// The SHA-256 of the certificate (DER), which names it in orders.
    pub fingerprint: Fingerprint,
    /// The names the certificate answers for.
    pub names: Vec<String>,
    /// End of validity, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// The certificate, its chain and its private key, when the query asked for them
    /// (`full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<CertificateAndKey>,
}

/// Metrics of the proxy, merged across workers unless asked per worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregatedMetrics {
    /// Figures of the main process.
    #[serde(default)]
    pub main: BTreeMap<String, FilteredMetric>,
    /// Figures of the proxying itself, not tied to a cluster (merged over workers, or per
    /// listener when labelled `name{listener=...}`).
    #[serde(default)]
    pub proxy: BTreeMap<String, FilteredMetric>,
    /// Figures of each listener, by address.
    #[serde(default)]
    pub listeners: BTreeMap<String, BTreeMap<String, FilteredMetric>>,
    /// Figures of each cluster and its backends, by cluster id.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterMetrics>,
    /// Figures of each worker, when asked per worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workers: BTreeMap<String, AggregatedMetrics>,
}

/// The figures of one cluster and of each of its backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetrics {
    /// Figures of the cluster as a whole, by metric name.
    #[serde(default)]
    pub cluster: BTreeMap<String, FilteredMetric>,
    /// Figures of each backend of the cluster, by backend id, then by metric name.
    #[serde(default)]
    pub backends: BTreeMap<String, BTreeMap<String, FilteredMetric>>,
}

/// One metric's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilteredMetric {
    /// A level that goes up and down (active connections).
    Gauge(i64),
    /// A total since start or the last clear.
    Count(u64),
    /// A distribution of durations in microseconds.
    Percentiles(Percentiles),
    /// A distribution of durations in microseconds, as recorded: what workers send so that
    /// the main process can merge distributions exactly before computing percentiles.
    Histogram(HistogramData),
}

/// The recorded values of a distribution: `(value, count)` pairs, values in microseconds,
/// each value standing for the bucket of values equivalent to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramData {
    /// `(value, count)` pairs, in increasing value order: `count` samples were recorded in the
    /// bucket of `value` (microseconds).
    pub values: Vec<(u64, u64)>,
    /// Sum of the recorded durations, in microseconds.
    pub sum: u64,
}

/// A distribution of durations summed up, all figures in microseconds except `samples`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many durations were recorded.
    pub samples: u64,
    /// The median.
    pub p50: u64,
    /// The 90th percentile.
    pub p90: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p99_9: u64,
    /// The longest duration recorded.
    pub max: u64,
    /// The sum of the recorded durations.
    pub sum: u64,
}

/// Something that happened, sent to subscribers of `SUBSCRIBE_EVENTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The cluster concerned, when the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The backend concerned, when the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// The address concerned: a backend's or a listener's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Details in words (which certificate expires, which worker restarted …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The kinds of event, written in `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// A backend failed `FAILURES_BEFORE_DOWN` connections in a row and gets no new connection
    /// until a retry succeeds.
    BackendDown,
    /// A backend that was down accepted a connection again.
    BackendUp,
    /// A cluster has no backend left that may take a connection.
    NoAvailableBackends,
    /// A cluster that had no available backend has one again.
    ClusterRecovered,
    /// A removed (draining) backend closed its last connection and is forgotten.
    RemovedBackendHasNoConnections,
    /// A backend passed enough active health checks in a row to be called healthy.
    HealthCheckHealthy,
    /// A backend failed enough active health checks in a row to be called unhealthy.
    HealthCheckUnhealthy,
    /// A worker died or was killed.
    WorkerKilled,
    /// The main process started a worker in place of one that died.
    WorkerRelaunched,
    /// A certificate served by an HTTPS listener expires within 30 days or has expired (the message
    /// names it and says when).
    CertificateExpiresSoon,
    /// A listener was added.
    ListenerAdded,
    /// A listener was removed.
    ListenerRemoved,
    /// The configuration file was read again and applied (`RELOAD_CONFIGURATION`).
    ConfigurationReloaded,
    /// A saved state was loaded (`LOAD_STATE`).
    StateLoaded,
    /// The state was written to a file (`SAVE_STATE` or `automatic_state_save`).
    StateSaved,
    /// A key of the etcd prefix that the node did not apply (`[provider.etcd]`).
    FleetValueRefused,
    /// A backend removed with a `drain_timeout` still has sessions: how many, and how long
    /// until they are closed (the message says), once a second in each worker.
    BackendDraining,
    /// A fault was added or replaced: injected failures start.
    FaultStarted,
    /// A fault's lease ran out: the main process removed it.
    FaultExpired,
    /// A fault was removed by an order.
    FaultRemoved,
    /// A cluster with a `hold_timeout` has no available backend: its new connections and
    /// requests wait (the first one started waiting, in this worker).
    HoldStarted,
    /// Held connections and requests of a cluster went on to a backend that became
    /// available: how many, and how many still wait (the message says).
    HoldReleased,
    /// Held connections and requests of a cluster waited `hold_timeout` and got the 503
    /// answer or a close: how many, and how many still wait (the message says).
    HoldTimedOut,
}

/// A fault as `LIST_FAULTS` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultInformation {
    /// The fault's settings, as given when it was added.
    pub fault: crate::request::Fault,
    /// Milliseconds until the lease ends; `None` for a fault without `ttl`.
    pub remaining_ms: Option<u64>,
    /// Connections and requests the fault acted on, summed over the workers.
    pub touched: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_serialises_with_uppercase_status() {
        let response = Response::failure("7", "no cluster `api`");
        let json = serde_json::to_string(&response).unwrap();
        assert_eq!(
            json,
            r#"{"id":"7","status":"FAILURE","message":"no cluster `api`"}"#
        );
        let back: Response = serde_json::from_str(&json).unwrap();
        assert_eq!(back, response);
        assert!(back.is_final());
    }

    #[test]
    fn content_is_tagged_by_kind() {
        let response = Response::ok("q", Some(ResponseContent::MaxConnectionsPerIp(12)));
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["content"]["type"], "MAX_CONNECTIONS_PER_IP");
        assert_eq!(json["content"]["data"], 12);
    }
}
