//! Responses: `{id, status: OK | PROCESSING | FAILURE, message, content}`.
//!
//! Every request gets exactly one final response (OK or FAILURE) with the request's id, possibly
//! preceded by PROCESSING responses while the main process waits for its workers. Queries carry
//! their result in `content`.

use std::{collections::BTreeMap, fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};

use crate::request::{
    AddBackend, Cluster, Fingerprint, HealthCheckConfig, HttpFrontend, HttpListenerConfig,
    HttpsListenerConfig, RegistrationIds, RegistrationInfo, TcpFrontend, TcpListenerConfig,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// The id of the request this answers.
    pub id: String,
    pub status: ResponseStatus,
    /// What went wrong on FAILURE, or a short note; may be empty.
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ResponseContent>,
}

impl Response {
    pub fn ok(id: impl Into<String>, content: Option<ResponseContent>) -> Self {
        Response {
            id: id.into(),
            status: ResponseStatus::Ok,
            message: String::new(),
            content,
        }
    }

    pub fn processing(id: impl Into<String>, message: impl Into<String>) -> Self {
        Response {
            id: id.into(),
            status: ResponseStatus::Processing,
            message: message.into(),
            content: None,
        }
    }

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseStatus {
    Ok,
    Processing,
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
    Workers(Vec<WorkerInfo>),
    /// What one worker reports about itself.
    WorkerStatus(WorkerStatus),
    Metrics(AggregatedMetrics),
    MetricNames(Vec<String>),
    Clusters(Vec<ClusterInformation>),
    ClusterHashes(BTreeMap<String, u64>),
    Frontends(ListedFrontends),
    Listeners(ListenersList),
    Certificates(Vec<CertificateSummary>),
    RequestCounts(BTreeMap<String, u64>),
    MaxConnectionsPerIp(u64),
    HealthChecks(BTreeMap<String, HealthCheckConfig>),
    Faults(Vec<FaultInformation>),
    Event(Event),
    /// Answers of each worker, by worker id, when they are not merged.
    WorkerResponses(BTreeMap<String, ResponseContent>),
    /// The answer to `REGISTER`.
    Registered(RegistrationIds),
    /// The answer to `LIST_REGISTRATIONS`.
    Registrations(Vec<RegistrationInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: u32,
    pub pid: i32,
    pub run_state: RunState,
    /// How many times this worker slot was restarted after dying.
    #[serde(default)]
    pub restarts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Running,
    Stopping,
    Stopped,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub run_state: RunState,
    /// Sessions open now.
    pub sessions: u64,
    pub max_connections: u64,
    /// Listeners by address, and whether each accepts connections.
    pub listeners: BTreeMap<SocketAddr, bool>,
}

/// Everything known about one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInformation {
    pub cluster: Cluster,
    #[serde(default)]
    pub http_frontends: Vec<HttpFrontend>,
    #[serde(default)]
    pub https_frontends: Vec<HttpFrontend>,
    #[serde(default)]
    pub tcp_frontends: Vec<TcpFrontend>,
    #[serde(default)]
    pub backends: Vec<BackendInformation>,
}

/// A backend and, when a worker answered, what it knows of the backend's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInformation {
    pub backend: AddBackend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<BackendRuntime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRuntime {
    pub status: BackendStatus,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFrontends {
    #[serde(default)]
    pub http: Vec<HttpFrontend>,
    #[serde(default)]
    pub https: Vec<HttpFrontend>,
    #[serde(default)]
    pub tcp: Vec<TcpFrontend>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenersList {
    #[serde(default)]
    pub http: Vec<ListedListener<HttpListenerConfig>>,
    #[serde(default)]
    pub https: Vec<ListedListener<HttpsListenerConfig>>,
    #[serde(default)]
    pub tcp: Vec<ListedListener<TcpListenerConfig>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedListener<T> {
    pub config: T,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    pub address: SocketAddr,
    pub fingerprint: Fingerprint,
    /// The names the certificate answers for.
    pub names: Vec<String>,
    /// End of validity, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
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
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterMetrics>,
    /// Figures of each worker, when asked per worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workers: BTreeMap<String, AggregatedMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMetrics {
    #[serde(default)]
    pub cluster: BTreeMap<String, FilteredMetric>,
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
    pub values: Vec<(u64, u64)>,
    /// Sum of the recorded durations, in microseconds.
    pub sum: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub sum: u64,
}

/// Something that happened, sent to subscribers of `SUBSCRIBE_EVENTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Details in words (which certificate expires, which worker restarted …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    BackendDown,
    BackendUp,
    NoAvailableBackends,
    ClusterRecovered,
    RemovedBackendHasNoConnections,
    HealthCheckHealthy,
    HealthCheckUnhealthy,
    WorkerKilled,
    WorkerRelaunched,
    CertificateExpiresSoon,
    ListenerAdded,
    ListenerRemoved,
    ConfigurationReloaded,
    StateLoaded,
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
