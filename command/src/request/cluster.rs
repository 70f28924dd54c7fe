//! Clusters: backends routed to as one, how traffic is spread among them, and the active
//! health checks of their backends.

use std::{collections::BTreeMap, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{UnknownName, optional_seconds, parse_name, seconds, status_keys};

/// Names one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterId {
    /// The cluster's id (`app_id` is accepted too).
    #[serde(alias = "app_id")]
    pub cluster_id: String,
}

/// A cluster: backends routed to as one, and how traffic is spread among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The cluster's id, which its frontends and backends name (`app_id` is accepted too).
    #[serde(alias = "app_id")]
    pub cluster_id: String,
    /// Keep a client on the backend named by its sticky cookie.
    #[serde(default)]
    pub sticky_session: bool,
    /// Answer plain HTTP requests with a redirection to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    /// The port of the HTTPS redirection target, when it is not 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect_port: Option<u16>,
    /// PROXY protocol towards the backends (TCP clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolConfig>,
    /// How a backend is chosen for each new connection (default `ROUND_ROBIN`).
    #[serde(default)]
    pub load_balancing: LoadBalancingAlgorithm,
    /// What LEAST_LOADED and POWER_OF_TWO compare; `None` compares connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_metric: Option<LoadMetric>,
    /// Answers that replace the built-in pages for this cluster, by status code: the full
    /// HTTP response (head and body) or only a body, which then gets a head.
    #[serde(
        default,
        deserialize_with = "status_keys::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub answers: BTreeMap<u16, String>,
    /// `user:sha256hex` entries allowed by HTTP Basic authentication on frontends that
    /// require it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_hashes: Vec<String>,
    /// The realm of the `WWW-Authenticate` header sent with 401 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub www_authenticate: Option<String>,
    /// Talk HTTP/2 to the backends.
    #[serde(default)]
    pub http2: bool,
    /// Cap on concurrent connections from one client address to this cluster; `None`
    /// inherits the global cap, `Some(0)` means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<u64>,
    /// The `Retry-After` value sent with 429 answers; `None` inherits the global value.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after: Option<Duration>,
    /// How long a connection or request waits for a backend while the cluster has none
    /// available; `None` (or 0) does not hold: it fails at once.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub hold_timeout: Option<Duration>,
    /// Connections and requests held at once for this cluster in one worker; `None` is
    /// [`DEFAULT_MAX_HELD`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_held: Option<u64>,
    /// Active health checks of the backends; `None` checks nothing and every backend counts as
    /// healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
}

/// Connections and requests a worker holds at once for a cluster without `max_held`.
pub const DEFAULT_MAX_HELD: u64 = 1_000;

impl Cluster {
    /// A cluster with every setting at its default.
    pub fn new(cluster_id: impl Into<String>) -> Self {
        Cluster {
            cluster_id: cluster_id.into(),
            sticky_session: false,
            https_redirect: false,
            https_redirect_port: None,
            proxy_protocol: None,
            load_balancing: LoadBalancingAlgorithm::default(),
            load_metric: None,
            answers: BTreeMap::new(),
            authorized_hashes: Vec::new(),
            www_authenticate: None,
            http2: false,
            max_connections_per_ip: None,
            retry_after: None,
            hold_timeout: None,
            max_held: None,
            health_check: None,
        }
    }
}

/// How a cluster chooses a backend for each new connection, written in `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancingAlgorithm {
    /// Each backend in turn, in proportion to its weight (smooth weighted round-robin); the
    /// default.
    #[default]
    RoundRobin,
    /// A backend at random, in proportion to its weight.
    Random,
    /// The backend with the smallest load (see [`LoadMetric`]) per unit of weight; ties in turn.
    LeastLoaded,
    /// Two backends drawn at random by weight; the less loaded one wins.
    PowerOfTwo,
    /// Rendezvous hashing on the client address.
    Hrw,
    /// Maglev consistent hashing on the client address.
    Maglev,
}

impl LoadBalancingAlgorithm {
    /// Every algorithm, in the order the CLI lists them.
    pub const ALL: [LoadBalancingAlgorithm; 6] = [
        LoadBalancingAlgorithm::RoundRobin,
        LoadBalancingAlgorithm::Random,
        LoadBalancingAlgorithm::LeastLoaded,
        LoadBalancingAlgorithm::PowerOfTwo,
        LoadBalancingAlgorithm::Hrw,
        LoadBalancingAlgorithm::Maglev,
    ];

    /// The algorithm's name as in JSON and the configuration file (`ROUND_ROBIN`…).
    pub fn name(self) -> &'static str {
        match self {
            LoadBalancingAlgorithm::RoundRobin => "ROUND_ROBIN",
            LoadBalancingAlgorithm::Random => "RANDOM",
            LoadBalancingAlgorithm::LeastLoaded => "LEAST_LOADED",
            LoadBalancingAlgorithm::PowerOfTwo => "POWER_OF_TWO",
            LoadBalancingAlgorithm::Hrw => "HRW",
            LoadBalancingAlgorithm::Maglev => "MAGLEV",
        }
    }
}

impl FromStr for LoadBalancingAlgorithm {
    type Err = UnknownName;

    /// Case-insensitive, with `-` or `_` between words, as the CLI accepts it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, |a| a.name())
    }
}

/// What LEAST_LOADED and POWER_OF_TWO compare between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadMetric {
    /// Active connections.
    #[default]
    Connections,
    /// Requests in flight.
    Requests,
    /// Active connections weighted by the average connection time.
    ConnectionTime,
}

impl LoadMetric {
    /// Every metric, in the order the CLI lists them.
    pub const ALL: [LoadMetric; 3] = [
        LoadMetric::Connections,
        LoadMetric::Requests,
        LoadMetric::ConnectionTime,
    ];

    /// The metric's name as in JSON and the configuration file (`CONNECTIONS`…).
    pub fn name(self) -> &'static str {
        match self {
            LoadMetric::Connections => "CONNECTIONS",
            LoadMetric::Requests => "REQUESTS",
            LoadMetric::ConnectionTime => "CONNECTION_TIME",
        }
    }
}

impl FromStr for LoadMetric {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, |m| m.name())
    }
}

/// What a TCP cluster does with the PROXY protocol towards its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProxyProtocolConfig {
    /// Send a PROXY v2 header built from the client connection.
    SendHeader,
    /// Forward the header received from the client (listener with `expect_proxy`).
    RelayHeader,
    /// Read the client's header and do not send one.
    ExpandHeader,
}

/// Active health checking of a cluster's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path requested from each backend.
    pub uri: String,
    /// Time between two checks of a backend, in seconds (default 10).
    #[serde(default = "default_health_interval", with = "seconds")]
    pub interval: Duration,
    /// How long a check may take before it counts as failed, in seconds (default 5).
    #[serde(default = "default_health_timeout", with = "seconds")]
    pub timeout: Duration,
    /// Checks passed in a row that make an unhealthy backend healthy again (default 3).
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
    /// Checks failed in a row that make a backend unhealthy: it gets no new connection (default 3).
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: u32,
    /// The status a healthy backend answers; 0 accepts any 2xx.
    #[serde(default)]
    pub expected_status: u16,
}

impl HealthCheckConfig {
    /// A health check of `uri` with every other setting at its default.
    pub fn new(uri: impl Into<String>) -> Self {
        HealthCheckConfig {
            uri: uri.into(),
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            healthy_threshold: default_threshold(),
            unhealthy_threshold: default_threshold(),
            expected_status: 0,
        }
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_threshold() -> u32 {
    3
}

/// `SET_HEALTH_CHECK`: sets or replaces the health check of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHealthCheck {
    /// The cluster (`app_id` is accepted too).
    #[serde(alias = "app_id")]
    pub cluster_id: String,
    /// The health check.
    pub health_check: HealthCheckConfig,
}

/// `QUERY_HEALTH_CHECKS`: whose health checks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFilter {
    /// Only this cluster's; `None` lists every cluster's.
    #[serde(default, alias = "app_id", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}
