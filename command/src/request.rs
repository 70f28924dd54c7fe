//! Orders: every change and query the proxy accepts, as one serde enum with stable JSON names.
//!
//! A message on the command channel is a [`Request`]: `{"id": "...", "order": {"type": "...", ...}}`.
//! The `type` tag names the order in `SCREAMING_SNAKE_CASE` (`ADD_CLUSTER`, `REMOVE_BACKEND` …)
//! and the other fields are the order's own. Fields with a default may be left out. Older field
//! names of Sōzu are accepted as aliases: `app_id` for `cluster_id`, and `ip_address` + `port`
//! for a backend's `address`.
//!
//! Orders carry contents, never file paths: the configuration loader reads certificate and
//! answer files, so a worker never touches the file system to apply an order.

use std::{collections::BTreeMap, fmt, net::SocketAddr, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One message from a client (or the main process) to the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the client; the response carries the same id.
    pub id: String,
    pub order: Order,
}

impl Request {
    pub fn new(id: impl Into<String>, order: Order) -> Self {
        Request {
            id: id.into(),
            order,
        }
    }
}

/// Every order of the command channel.
///
/// Orders that change the routing state are listed by [`Order::is_state_change`]; the others
/// are queries or act on processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Order {
    // Clusters and backends.
    AddCluster(Cluster),
    RemoveCluster(ClusterId),
    AddBackend(AddBackend),
    RemoveBackend(RemoveBackend),

    // Frontends.
    AddHttpFrontend(HttpFrontend),
    RemoveHttpFrontend(HttpFrontend),
    AddHttpsFrontend(HttpFrontend),
    RemoveHttpsFrontend(HttpFrontend),
    AddTcpFrontend(TcpFrontend),
    RemoveTcpFrontend(TcpFrontend),

    // Certificates.
    AddCertificate(AddCertificate),
    ReplaceCertificate(ReplaceCertificate),
    RemoveCertificate(RemoveCertificate),

    // Listeners.
    AddHttpListener(HttpListenerConfig),
    AddHttpsListener(HttpsListenerConfig),
    AddTcpListener(TcpListenerConfig),
    RemoveListener(ListenerAddress),
    ActivateListener(ListenerAddress),
    DeactivateListener(ListenerAddress),
    UpdateHttpListenerConfig(UpdateHttpListener),
    UpdateHttpsListenerConfig(UpdateHttpsListener),
    UpdateTcpListenerConfig(UpdateTcpListener),

    // Limits and health checks.
    SetMaxConnectionsPerIp(ConnectionLimit),
    SetHealthCheck(SetHealthCheck),
    RemoveHealthCheck(ClusterId),

    // Queries.
    Status,
    ListWorkers,
    ListFrontends(FrontendFilters),
    ListListeners,
    QueryClusterById(ClusterId),
    QueryClustersByDomain(DomainFilter),
    QueryClustersHashes,
    QueryCertificatesFromTheState(CertificateFilters),
    QueryCertificatesFromWorkers(CertificateFilters),
    QueryMetrics(QueryMetrics),
    QueryMaxConnectionsPerIp,
    QueryHealthChecks(HealthCheckFilter),
    CountRequests,

    // Processes, state and logging.
    SaveState(StatePath),
    LoadState(StatePath),
    ReloadConfiguration(ReloadConfiguration),
    UpgradeMain,
    UpgradeWorker(WorkerId),
    LaunchWorker,
    SoftStop,
    HardStop,
    ConfigureMetrics(MetricsConfiguration),
    Logging(LoggingFilter),
    SubscribeEvents,
}

impl Order {
    /// Whether the order changes the routing state (and so belongs in a saved state).
    pub fn is_state_change(&self) -> bool {
        matches!(
            self,
            Order::AddCluster(_)
                | Order::RemoveCluster(_)
                | Order::AddBackend(_)
                | Order::RemoveBackend(_)
                | Order::AddHttpFrontend(_)
                | Order::RemoveHttpFrontend(_)
                | Order::AddHttpsFrontend(_)
                | Order::RemoveHttpsFrontend(_)
                | Order::AddTcpFrontend(_)
                | Order::RemoveTcpFrontend(_)
                | Order::AddCertificate(_)
                | Order::ReplaceCertificate(_)
                | Order::RemoveCertificate(_)
                | Order::AddHttpListener(_)
                | Order::AddHttpsListener(_)
                | Order::AddTcpListener(_)
                | Order::RemoveListener(_)
                | Order::ActivateListener(_)
                | Order::DeactivateListener(_)
                | Order::UpdateHttpListenerConfig(_)
                | Order::UpdateHttpsListenerConfig(_)
                | Order::UpdateTcpListenerConfig(_)
                | Order::SetMaxConnectionsPerIp(_)
                | Order::SetHealthCheck(_)
                | Order::RemoveHealthCheck(_)
        )
    }

    /// The stable name of the order, as its JSON `type` tag.
    pub fn name(&self) -> &'static str {
        match self {
            Order::AddCluster(_) => "ADD_CLUSTER",
            Order::RemoveCluster(_) => "REMOVE_CLUSTER",
            Order::AddBackend(_) => "ADD_BACKEND",
            Order::RemoveBackend(_) => "REMOVE_BACKEND",
            Order::AddHttpFrontend(_) => "ADD_HTTP_FRONTEND",
            Order::RemoveHttpFrontend(_) => "REMOVE_HTTP_FRONTEND",
            Order::AddHttpsFrontend(_) => "ADD_HTTPS_FRONTEND",
            Order::RemoveHttpsFrontend(_) => "REMOVE_HTTPS_FRONTEND",
            Order::AddTcpFrontend(_) => "ADD_TCP_FRONTEND",
            Order::RemoveTcpFrontend(_) => "REMOVE_TCP_FRONTEND",
            Order::AddCertificate(_) => "ADD_CERTIFICATE",
            Order::ReplaceCertificate(_) => "REPLACE_CERTIFICATE",
            Order::RemoveCertificate(_) => "REMOVE_CERTIFICATE",
            Order::AddHttpListener(_) => "ADD_HTTP_LISTENER",
            Order::AddHttpsListener(_) => "ADD_HTTPS_LISTENER",
            Order::AddTcpListener(_) => "ADD_TCP_LISTENER",
            Order::RemoveListener(_) => "REMOVE_LISTENER",
            Order::ActivateListener(_) => "ACTIVATE_LISTENER",
            Order::DeactivateListener(_) => "DEACTIVATE_LISTENER",
            Order::UpdateHttpListenerConfig(_) => "UPDATE_HTTP_LISTENER_CONFIG",
            Order::UpdateHttpsListenerConfig(_) => "UPDATE_HTTPS_LISTENER_CONFIG",
            Order::UpdateTcpListenerConfig(_) => "UPDATE_TCP_LISTENER_CONFIG",
            Order::SetMaxConnectionsPerIp(_) => "SET_MAX_CONNECTIONS_PER_IP",
            Order::SetHealthCheck(_) => "SET_HEALTH_CHECK",
            Order::RemoveHealthCheck(_) => "REMOVE_HEALTH_CHECK",
            Order::Status => "STATUS",
            Order::ListWorkers => "LIST_WORKERS",
            Order::ListFrontends(_) => "LIST_FRONTENDS",
            Order::ListListeners => "LIST_LISTENERS",
            Order::QueryClusterById(_) => "QUERY_CLUSTER_BY_ID",
            Order::QueryClustersByDomain(_) => "QUERY_CLUSTERS_BY_DOMAIN",
            Order::QueryClustersHashes => "QUERY_CLUSTERS_HASHES",
            Order::QueryCertificatesFromTheState(_) => "QUERY_CERTIFICATES_FROM_THE_STATE",
            Order::QueryCertificatesFromWorkers(_) => "QUERY_CERTIFICATES_FROM_WORKERS",
            Order::QueryMetrics(_) => "QUERY_METRICS",
            Order::QueryMaxConnectionsPerIp => "QUERY_MAX_CONNECTIONS_PER_IP",
            Order::QueryHealthChecks(_) => "QUERY_HEALTH_CHECKS",
            Order::CountRequests => "COUNT_REQUESTS",
            Order::SaveState(_) => "SAVE_STATE",
            Order::LoadState(_) => "LOAD_STATE",
            Order::ReloadConfiguration(_) => "RELOAD_CONFIGURATION",
            Order::UpgradeMain => "UPGRADE_MAIN",
            Order::UpgradeWorker(_) => "UPGRADE_WORKER",
            Order::LaunchWorker => "LAUNCH_WORKER",
            Order::SoftStop => "SOFT_STOP",
            Order::HardStop => "HARD_STOP",
            Order::ConfigureMetrics(_) => "CONFIGURE_METRICS",
            Order::Logging(_) => "LOGGING",
            Order::SubscribeEvents => "SUBSCRIBE_EVENTS",
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterId {
    #[serde(alias = "app_id")]
    pub cluster_id: String,
}

/// A cluster: backends routed to as one, and how traffic is spread among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
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
    #[serde(default)]
    pub load_balancing: LoadBalancingAlgorithm,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
}

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
            health_check: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancingAlgorithm {
    #[default]
    RoundRobin,
    Random,
    LeastLoaded,
    PowerOfTwo,
    /// Rendezvous hashing on the client address.
    Hrw,
    /// Maglev consistent hashing on the client address.
    Maglev,
}

impl LoadBalancingAlgorithm {
    pub const ALL: [LoadBalancingAlgorithm; 6] = [
        LoadBalancingAlgorithm::RoundRobin,
        LoadBalancingAlgorithm::Random,
        LoadBalancingAlgorithm::LeastLoaded,
        LoadBalancingAlgorithm::PowerOfTwo,
        LoadBalancingAlgorithm::Hrw,
        LoadBalancingAlgorithm::Maglev,
    ];

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
    pub const ALL: [LoadMetric; 3] = [
        LoadMetric::Connections,
        LoadMetric::Requests,
        LoadMetric::ConnectionTime,
    ];

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

/// A name that is not one of the values an enumeration accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{given}`, expected one of {expected}")]
pub struct UnknownName {
    pub given: String,
    pub expected: String,
}

/// Matches `s` against the names of `all`, ignoring case and treating `-` as `_`.
fn parse_name<T: Copy>(
    s: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, UnknownName> {
    let wanted = s.trim().replace('-', "_");
    all.iter()
        .copied()
        .find(|&item| name(item).eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| UnknownName {
            given: s.to_string(),
            expected: all
                .iter()
                .map(|&item| name(item))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Active health checking of a cluster's backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path requested from each backend.
    pub uri: String,
    #[serde(default = "default_health_interval", with = "seconds")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout", with = "seconds")]
    pub timeout: Duration,
    #[serde(default = "default_threshold")]
    pub healthy_threshold: u32,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHealthCheck {
    #[serde(alias = "app_id")]
    pub cluster_id: String,
    pub health_check: HealthCheckConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFilter {
    #[serde(default, alias = "app_id", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// A backend server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(try_from = "RawBackend")]
pub struct AddBackend {
    pub cluster_id: String,
    pub backend_id: String,
    pub address: SocketAddr,
    /// The value of the sticky cookie that designates this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_id: Option<String>,
    /// Relative share of traffic for the weighted algorithms; 0 sends nothing.
    pub weight: u32,
    /// Used only when no normal backend of the cluster is up.
    pub backup: bool,
}

pub const DEFAULT_BACKEND_WEIGHT: u32 = 100;

/// Removes a backend. The backend drains: no new connection goes to it, and it is forgotten
/// once its last connection ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBackend")]
pub struct RemoveBackend {
    pub cluster_id: String,
    pub backend_id: String,
    pub address: SocketAddr,
}

/// The wire form of a backend, accepting Sōzu's older field names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(alias = "app_id")]
    cluster_id: String,
    backend_id: String,
    #[serde(default)]
    address: Option<SocketAddr>,
    #[serde(default)]
    ip_address: Option<std::net::IpAddr>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    sticky_id: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    load_balancing_parameters: Option<LoadBalancingParameters>,
    #[serde(default)]
    backup: Option<bool>,
}

/// Sōzu's nested form of a backend's weight.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBalancingParameters {
    weight: u32,
}

/// A backend message that names no usable address.
#[derive(Debug, thiserror::Error)]
pub enum BackendAddressError {
    #[error("a backend needs `address`, or `ip_address` and `port`")]
    Missing,
    #[error("`address` {address} and `ip_address`/`port` disagree")]
    Conflicting { address: SocketAddr },
}

impl RawBackend {
    fn address(&self) -> Result<SocketAddr, BackendAddressError> {
        let legacy = match (self.ip_address, self.port) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            (None, None) => None,
            _ => return Err(BackendAddressError::Missing),
        };
        match (self.address, legacy) {
            (Some(address), Some(legacy)) if address != legacy => {
                Err(BackendAddressError::Conflicting { address })
            }
            (Some(address), _) | (None, Some(address)) => Ok(address),
            (None, None) => Err(BackendAddressError::Missing),
        }
    }
}

impl TryFrom<RawBackend> for AddBackend {
    type Error = BackendAddressError;

    fn try_from(raw: RawBackend) -> Result<Self, Self::Error> {
        let address = raw.address()?;
        let weight = raw
            .weight
            .or(raw.load_balancing_parameters.map(|p| p.weight))
            .unwrap_or(DEFAULT_BACKEND_WEIGHT);
        Ok(AddBackend {
            cluster_id: raw.cluster_id,
            backend_id: raw.backend_id,
            address,
            sticky_id: raw.sticky_id,
            weight,
            backup: raw.backup.unwrap_or(false),
        })
    }
}

impl TryFrom<RawBackend> for RemoveBackend {
    type Error = BackendAddressError;

    fn try_from(raw: RawBackend) -> Result<Self, Self::Error> {
        let address = raw.address()?;
        Ok(RemoveBackend {
            cluster_id: raw.cluster_id,
            backend_id: raw.backend_id,
            address,
        })
    }
}

/// An HTTP or HTTPS frontend: which requests on a listener go to which cluster, and what is
/// done to them on the way.
///
/// A frontend is identified by its listener address, hostname, path rule and method; the
/// remaining fields describe what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct HttpFrontend {
    /// The cluster requests go to. A frontend without a cluster redirects, denies or answers.
    #[serde(default, alias = "app_id", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub address: SocketAddr,
    /// An exact name, `*.suffix`, or labels between slashes as regular expressions
    /// (`/api[0-9]+/.example.com`).
    pub hostname: String,
    #[serde(default, skip_serializing_if = "PathRule::is_any")]
    pub path: PathRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default)]
    pub position: RulePosition,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub redirect: RedirectPolicy,
    #[serde(default)]
    pub redirect_scheme: RedirectScheme,
    /// The target of a redirection, with `%HOST`, `%PATH` and `%PORT` replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_template: Option<String>,
    /// New Host for the backend; `$HOST[n]` and `$PATH[n]` insert captures of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_port: Option<u16>,
    /// Requests must carry HTTP Basic credentials listed in the cluster's `authorized_hashes`.
    #[serde(default)]
    pub required_auth: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderEdit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// Answer every request with this response, without any backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<FixedAnswer>,
}

impl HttpFrontend {
    /// A frontend forwarding every path of `hostname` on `address` to `cluster_id`.
    pub fn new(
        cluster_id: Option<String>,
        address: SocketAddr,
        hostname: impl Into<String>,
    ) -> Self {
        HttpFrontend {
            cluster_id,
            address,
            hostname: hostname.into(),
            path: PathRule::default(),
            method: None,
            position: RulePosition::default(),
            tags: BTreeMap::new(),
            redirect: RedirectPolicy::default(),
            redirect_scheme: RedirectScheme::default(),
            redirect_template: None,
            rewrite_host: None,
            rewrite_path: None,
            rewrite_port: None,
            required_auth: false,
            headers: Vec::new(),
            hsts: None,
            answer: None,
        }
    }

    /// What identifies the frontend among those of its listener.
    pub fn key(&self) -> FrontendKey {
        FrontendKey {
            address: self.address,
            hostname: self.hostname.to_ascii_lowercase(),
            path: self.path.clone(),
            method: self.method.clone(),
        }
    }
}

/// Identity of an HTTP or HTTPS frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FrontendKey {
    pub address: SocketAddr,
    pub hostname: String,
    pub path: PathRule,
    pub method: Option<String>,
}

impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.address, self.hostname, self.path)?;
        if let Some(method) = &self.method {
            write!(f, " {method}")?;
        }
        Ok(())
    }
}

/// Which paths of a hostname a frontend takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    pub kind: PathRuleKind,
    pub value: String,
}

impl PathRule {
    pub fn prefix(value: impl Into<String>) -> Self {
        PathRule {
            kind: PathRuleKind::Prefix,
            value: value.into(),
        }
    }

    /// The empty prefix, which every path has.
    pub fn is_any(&self) -> bool {
        self.kind == PathRuleKind::Prefix && self.value.is_empty()
    }
}

impl Default for PathRule {
    fn default() -> Self {
        PathRule::prefix("")
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PathRuleKind::Prefix => write!(f, "{}", self.value),
            PathRuleKind::Equals => write!(f, "={}", self.value),
            PathRuleKind::Regex => write!(f, "~{}", self.value),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathRuleKind {
    #[default]
    Prefix,
    Regex,
    Equals,
}

/// When a frontend is tried: PRE rules one by one before the hostname tree, TREE rules by the
/// most specific match, POST rules one by one after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RulePosition {
    Pre,
    #[default]
    Tree,
    Post,
}

/// What an HTTP frontend does with the requests it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPolicy {
    /// Forward to the cluster.
    #[default]
    Forward,
    /// Answer 301 Moved Permanently.
    Permanent,
    /// Answer 302 Found.
    Found,
    /// Answer 308 Permanent Redirect.
    PermanentRedirect,
    /// Answer 401 Unauthorized (a `deny` frontend).
    Unauthorized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectScheme {
    #[default]
    UseSame,
    UseHttp,
    UseHttps,
}

/// A header added, replaced or deleted on requests, responses or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdit {
    pub position: HeaderPosition,
    pub key: String,
    /// An empty value deletes the header.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HeaderPosition {
    Request,
    Response,
    Both,
}

/// HTTP Strict Transport Security sent on HTTPS answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    pub enabled: bool,
    #[serde(default = "default_hsts_max_age", with = "seconds")]
    pub max_age: Duration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
    /// Replace a `Strict-Transport-Security` header sent by the backend.
    #[serde(default)]
    pub force_replace_backend: bool,
}

pub fn default_hsts_max_age() -> Duration {
    Duration::from_secs(31_536_000)
}

/// A response sent by a frontend without any backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedAnswer {
    pub status: u16,
    /// Extra header fields, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

/// A TCP frontend: every connection accepted on a TCP listener goes to one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct TcpFrontend {
    #[serde(alias = "app_id")]
    pub cluster_id: String,
    pub address: SocketAddr,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A certificate with its key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAndKey {
    pub certificate: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
    pub key: String,
    /// TLS versions this certificate is offered with; empty means the listener's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<TlsVersion>,
    /// Names the certificate answers for; empty means the names it carries (SAN and CN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl CertificateAndKey {
    /// A certificate and its key in PEM, without chain, serving the names it carries.
    pub fn new(certificate: impl Into<String>, key: impl Into<String>) -> Self {
        CertificateAndKey {
            certificate: certificate.into(),
            certificate_chain: Vec::new(),
            key: key.into(),
            versions: Vec::new(),
            names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCertificate {
    pub address: SocketAddr,
    pub certificate: CertificateAndKey,
    /// Accept a certificate whose validity has ended.
    #[serde(default)]
    pub allow_expired: bool,
}

/// Swaps one certificate for another atomically: a handshake sees one or the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCertificate {
    pub address: SocketAddr,
    pub new_certificate: CertificateAndKey,
    pub old_fingerprint: Fingerprint,
    #[serde(default)]
    pub allow_expired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveCertificate {
    pub address: SocketAddr,
    pub fingerprint: Fingerprint,
}

/// The SHA-256 of a certificate's DER encoding, written in lowercase hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        use sha2::Digest;
        Fingerprint(sha2::Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A fingerprint that is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hexadecimal digits (a SHA-256), got `{0}`")]
pub struct InvalidFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidFingerprint(s.to_string());
        let digits = s.trim().replace(':', "");
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "TLS_V12", alias = "TLSv1.2", alias = "TLS_V1_2")]
    Tls12,
    #[serde(rename = "TLS_V13", alias = "TLSv1.3", alias = "TLS_V1_3")]
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS_V12",
            TlsVersion::Tls13 => "TLS_V13",
        }
    }
}

impl FromStr for TlsVersion {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_uppercase()
            .replace(['.', '_', '-'], "")
            .as_str()
        {
            "TLSV12" | "TLS12" => Ok(TlsVersion::Tls12),
            "TLSV13" | "TLS13" => Ok(TlsVersion::Tls13),
            _ => Err(UnknownName {
                given: s.to_string(),
                expected: "TLS_V12, TLS_V13".to_string(),
            }),
        }
    }
}

/// Settings shared by HTTP and HTTPS listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    pub address: SocketAddr,
    /// The address clients know the listener by, when it differs (behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<SocketAddr>,
    /// Read a PROXY protocol header before the request.
    #[serde(default)]
    pub expect_proxy: bool,
    #[serde(default = "default_sticky_name")]
    pub sticky_name: String,
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
}

impl HttpListenerConfig {
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
        }
    }
}

pub fn default_sticky_name() -> String {
    "SOZUBALANCEID".to_string()
}

pub fn default_id_header() -> String {
    "Sozu-Id".to_string()
}

pub fn default_front_timeout() -> Duration {
    Duration::from_secs(60)
}

pub fn default_back_timeout() -> Duration {
    Duration::from_secs(30)
}

pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}

pub fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// An HTTPS listener: the HTTP settings and the TLS ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsListenerConfig {
    pub http: HttpListenerConfig,
    #[serde(default)]
    pub tls: TlsListenerConfig,
}

/// TLS settings of an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
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
    #[serde(default = "default_alpn_protocols")]
    pub alpn_protocols: Vec<String>,
    /// Answer 421 to a request whose Host differs from the name sent in SNI.
    #[serde(default = "default_true")]
    pub strict_sni_binding: bool,
    #[serde(default)]
    pub disable_http11: bool,
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

pub fn default_tls_versions() -> Vec<TlsVersion> {
    vec![TlsVersion::Tls12, TlsVersion::Tls13]
}

fn default_tls13_tickets() -> u32 {
    4
}

/// The protocols offered by ALPN. `h2` is accepted for compatibility and ignored until the
/// HTTP/2 frontend exists, so clients fall back to `http/1.1`.
pub fn default_alpn_protocols() -> Vec<String> {
    vec!["http/1.1".to_string()]
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListenerConfig {
    pub address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<SocketAddr>,
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
    /// Move bytes with `splice(2)` through a pipe instead of copying them through user space.
    #[serde(default)]
    pub splice: bool,
}

impl TcpListenerConfig {
    pub fn new(address: SocketAddr) -> Self {
        TcpListenerConfig {
            address,
            public_address: None,
            expect_proxy: false,
            front_timeout: default_front_timeout(),
            back_timeout: default_back_timeout(),
            connect_timeout: default_connect_timeout(),
            splice: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerType {
    Http,
    Https,
    Tcp,
}

impl ListenerType {
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
    pub address: SocketAddr,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_proxy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sozu_id_header: Option<String>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub front_timeout: Option<Duration>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub back_timeout: Option<Duration>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_x_real_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elide_x_real_ip: Option<bool>,
}

impl HttpListenerPatch {
    pub fn apply(&self, config: &mut HttpListenerConfig) {
        set(&mut config.public_address, &self.public_address);
        set(&mut config.expect_proxy, &self.expect_proxy);
        set(&mut config.sticky_name, &self.sticky_name);
        set(&mut config.sozu_id_header, &self.sozu_id_header);
        set(&mut config.front_timeout, &self.front_timeout);
        set(&mut config.back_timeout, &self.back_timeout);
        set(&mut config.connect_timeout, &self.connect_timeout);
        set(&mut config.request_timeout, &self.request_timeout);
        for (code, answer) in &self.answers {
            if answer.is_empty() {
                config.answers.remove(code);
            } else {
                config.answers.insert(*code, answer.clone());
            }
        }
        set(&mut config.send_x_real_ip, &self.send_x_real_ip);
        set(&mut config.elide_x_real_ip, &self.elide_x_real_ip);
    }

    /// The patch that turns `old` into `new`.
    pub fn between(old: &HttpListenerConfig, new: &HttpListenerConfig) -> Self {
        let mut answers: BTreeMap<u16, String> = old
            .answers
            .keys()
            .filter(|code| !new.answers.contains_key(code))
            .map(|code| (*code, String::new()))
            .collect();
        for (code, answer) in &new.answers {
            if old.answers.get(code) != Some(answer) {
                answers.insert(*code, answer.clone());
            }
        }
        HttpListenerPatch {
            public_address: changed(&old.public_address, &new.public_address),
            expect_proxy: changed(&old.expect_proxy, &new.expect_proxy),
            sticky_name: changed(&old.sticky_name, &new.sticky_name),
            sozu_id_header: changed(&old.sozu_id_header, &new.sozu_id_header),
            front_timeout: changed(&old.front_timeout, &new.front_timeout),
            back_timeout: changed(&old.back_timeout, &new.back_timeout),
            connect_timeout: changed(&old.connect_timeout, &new.connect_timeout),
            request_timeout: changed(&old.request_timeout, &new.request_timeout),
            answers,
            send_x_real_ip: changed(&old.send_x_real_ip, &new.send_x_real_ip),
            elide_x_real_ip: changed(&old.elide_x_real_ip, &new.elide_x_real_ip),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == HttpListenerPatch::default()
    }
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHttpListener {
    pub address: SocketAddr,
    #[serde(default)]
    pub http: HttpListenerPatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateHttpsListener {
    pub address: SocketAddr,
    #[serde(default)]
    pub http: HttpListenerPatch,
    #[serde(default)]
    pub tls: TlsListenerPatch,
}

/// Changes to an HTTPS listener's TLS settings; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<TlsVersion>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_list: Option<Vec<String>>,
    /// `null` removes the default certificate.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<Option<CertificateAndKey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_tls13_tickets: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn_protocols: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_sni_binding: Option<bool>,
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
    pub fn apply(&self, config: &mut TlsListenerConfig) {
        set(&mut config.versions, &self.versions);
        set(&mut config.cipher_list, &self.cipher_list);
        set(&mut config.cipher_suites, &self.cipher_suites);
        set(&mut config.groups_list, &self.groups_list);
        set(&mut config.certificate, &self.certificate);
        set(&mut config.send_tls13_tickets, &self.send_tls13_tickets);
        set(&mut config.alpn_protocols, &self.alpn_protocols);
        set(&mut config.strict_sni_binding, &self.strict_sni_binding);
        set(&mut config.disable_http11, &self.disable_http11);
        set(&mut config.hsts, &self.hsts);
    }

    /// The patch that turns `old` into `new`.
    pub fn between(old: &TlsListenerConfig, new: &TlsListenerConfig) -> Self {
        TlsListenerPatch {
            versions: changed(&old.versions, &new.versions),
            cipher_list: changed(&old.cipher_list, &new.cipher_list),
            cipher_suites: changed(&old.cipher_suites, &new.cipher_suites),
            groups_list: changed(&old.groups_list, &new.groups_list),
            certificate: changed(&old.certificate, &new.certificate),
            send_tls13_tickets: changed(&old.send_tls13_tickets, &new.send_tls13_tickets),
            alpn_protocols: changed(&old.alpn_protocols, &new.alpn_protocols),
            strict_sni_binding: changed(&old.strict_sni_binding, &new.strict_sni_binding),
            disable_http11: changed(&old.disable_http11, &new.disable_http11),
            hsts: changed(&old.hsts, &new.hsts),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == TlsListenerPatch::default()
    }
}

/// Changes to a TCP listener's settings; absent fields stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTcpListener {
    pub address: SocketAddr,
    /// `null` removes the public address.
    #[serde(
        default,
        deserialize_with = "nullable::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_address: Option<Option<SocketAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_proxy: Option<bool>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub front_timeout: Option<Duration>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub back_timeout: Option<Duration>,
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splice: Option<bool>,
}

impl UpdateTcpListener {
    pub fn apply(&self, config: &mut TcpListenerConfig) {
        set(&mut config.public_address, &self.public_address);
        set(&mut config.expect_proxy, &self.expect_proxy);
        set(&mut config.front_timeout, &self.front_timeout);
        set(&mut config.back_timeout, &self.back_timeout);
        set(&mut config.connect_timeout, &self.connect_timeout);
        set(&mut config.splice, &self.splice);
    }

    /// The update that turns `old` into `new`.
    pub fn between(old: &TcpListenerConfig, new: &TcpListenerConfig) -> Self {
        UpdateTcpListener {
            address: new.address,
            public_address: changed(&old.public_address, &new.public_address),
            expect_proxy: changed(&old.expect_proxy, &new.expect_proxy),
            front_timeout: changed(&old.front_timeout, &new.front_timeout),
            back_timeout: changed(&old.back_timeout, &new.back_timeout),
            connect_timeout: changed(&old.connect_timeout, &new.connect_timeout),
            splice: changed(&old.splice, &new.splice),
        }
    }
}

/// The global cap on concurrent connections from one client address to one cluster; 0 means
/// no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimit {
    pub max_connections_per_ip: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendFilters {
    #[serde(default)]
    pub http: bool,
    #[serde(default)]
    pub https: bool,
    #[serde(default)]
    pub tcp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFilter {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFilters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMetrics {
    /// List the metric names instead of their values.
    #[serde(default)]
    pub list: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_ids: Vec<String>,
    /// Only these metrics; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_names: Vec<String>,
    /// Leave out per-cluster and per-backend figures.
    #[serde(default)]
    pub no_clusters: bool,
    /// One set of figures per worker instead of their merge.
    #[serde(default)]
    pub workers: bool,
    /// Distributions as recorded (`HISTOGRAM`: values and counts) instead of percentiles, so
    /// that a client can subtract two answers and get the percentiles of what happened between
    /// them (what `sozu top` does).
    #[serde(default)]
    pub histograms: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsConfiguration {
    Enabled,
    Disabled,
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFilter {
    /// A level (`info`) or a filter in `env_logger` syntax (`info,sozu_lib::http=debug`).
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePath {
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfiguration {
    /// The configuration file to apply; absent means the one the proxy was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerId {
    pub worker_id: u32,
}

/// Maps keyed by HTTP status. JSON writes the keys as strings (`{"503": "..."}`); serde reads
/// them back as numbers only at the top level, not inside an internally tagged enum such as
/// [`Order`], so the keys are read as strings and parsed here.
mod status_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u16, String>, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer)?
            .into_iter()
            .map(|(code, answer)| {
                let status = code.trim().parse().map_err(|_| {
                    D::Error::custom(format!("invalid status code `{code}` in answers"))
                })?;
                Ok((status, answer))
            })
            .collect()
    }
}

/// Patch fields that tell "leave as is" (absent) from "remove" (`null`).
mod nullable {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// Durations written as a whole number of seconds.
pub mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Optional durations written as a whole number of seconds.
pub mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&duration.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|secs| secs.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Request, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn order_round_trips_through_json() {
        let order = Order::AddHttpFrontend(HttpFrontend::new(
            Some("api".to_string()),
            "127.0.0.1:8080".parse().unwrap(),
            "api.example.com",
        ));
        let request = Request::new("1", order);
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""type":"ADD_HTTP_FRONTEND""#), "{json}");
        assert_eq!(parse(&json).unwrap(), request);
    }

    #[test]
    fn orders_with_answers_round_trip_through_json() {
        let answers = BTreeMap::from([(404, "gone".to_string()), (503, "down".to_string())]);
        let mut cluster = Cluster::new("api");
        cluster.answers = answers.clone();
        let mut listener = HttpListenerConfig::new("127.0.0.1:8080".parse().unwrap());
        listener.answers = answers.clone();
        let patch = HttpListenerPatch {
            answers,
            ..HttpListenerPatch::default()
        };
        let update = UpdateHttpListener {
            address: listener.address,
            http: patch,
        };
        for order in [
            Order::AddCluster(cluster),
            Order::AddHttpListener(listener.clone()),
            Order::AddHttpsListener(HttpsListenerConfig {
                http: listener,
                tls: TlsListenerConfig::default(),
            }),
            Order::UpdateHttpListenerConfig(update),
        ] {
            let request = Request::new("1", order);
            let json = serde_json::to_string(&request).unwrap();
            assert_eq!(parse(&json).unwrap(), request, "{json}");
        }
        let request = parse(
            r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"c","answers":{"503":"x"}}}"#,
        )
        .unwrap();
        let Order::AddCluster(cluster) = request.order else {
            panic!("not a cluster");
        };
        assert_eq!(cluster.answers, BTreeMap::from([(503, "x".to_string())]));
        assert!(
            parse(r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"c","answers":{"5x3":"x"}}}"#)
                .is_err()
        );
    }

    #[test]
    fn app_id_is_accepted_for_cluster_id() {
        let request =
            parse(r#"{"id":"a","order":{"type":"REMOVE_CLUSTER","app_id":"web"}}"#).unwrap();
        assert_eq!(
            request.order,
            Order::RemoveCluster(ClusterId {
                cluster_id: "web".to_string()
            })
        );
    }

    #[test]
    fn backend_accepts_ip_address_and_port() {
        let request = parse(
            r#"{"id":"a","order":{"type":"ADD_BACKEND","app_id":"web","backend_id":"b1",
                "ip_address":"10.0.0.1","port":8080}}"#,
        )
        .unwrap();
        let Order::AddBackend(backend) = request.order else {
            panic!("not a backend: {request:?}");
        };
        assert_eq!(backend.address, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(backend.weight, DEFAULT_BACKEND_WEIGHT);
        assert!(!backend.backup);
    }

    #[test]
    fn backend_without_address_is_refused_with_a_reason() {
        let error = parse(
            r#"{"id":"a","order":{"type":"ADD_BACKEND","cluster_id":"web","backend_id":"b1","port":80}}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("ip_address"), "{error}");
    }

    #[test]
    fn unknown_field_is_named() {
        let error =
            parse(r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"x","stickky":true}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("stickky"), "{error}");
    }

    #[test]
    fn unknown_order_is_named() {
        let error = parse(r#"{"id":"a","order":{"type":"LAUNCH_ROCKET"}}"#).unwrap_err();
        assert!(error.to_string().contains("LAUNCH_ROCKET"), "{error}");
    }

    #[test]
    fn unit_orders_need_only_their_type() {
        assert_eq!(
            parse(r#"{"id":"s","order":{"type":"STATUS"}}"#)
                .unwrap()
                .order,
            Order::Status
        );
    }

    #[test]
    fn every_load_balancing_name_parses_case_insensitively() {
        for algorithm in LoadBalancingAlgorithm::ALL {
            assert_eq!(algorithm.name().to_lowercase().parse(), Ok(algorithm));
            let json = serde_json::to_string(&algorithm).unwrap();
            assert_eq!(json, format!("\"{}\"", algorithm.name()));
        }
        assert!("round-robin".parse::<LoadBalancingAlgorithm>().is_ok());
        assert!("fastest".parse::<LoadBalancingAlgorithm>().is_err());
    }

    #[test]
    fn order_names_match_their_json_tags() {
        let orders = [
            Order::Status,
            Order::SoftStop,
            Order::QueryClustersHashes,
            Order::RemoveCluster(ClusterId {
                cluster_id: "c".to_string(),
            }),
            Order::SetMaxConnectionsPerIp(ConnectionLimit {
                max_connections_per_ip: 3,
            }),
            Order::UpdateTcpListenerConfig(UpdateTcpListener {
                address: "127.0.0.1:1".parse().unwrap(),
                public_address: None,
                expect_proxy: None,
                front_timeout: None,
                back_timeout: None,
                connect_timeout: None,
                splice: None,
            }),
        ];
        for order in orders {
            let json = serde_json::to_value(&order).unwrap();
            assert_eq!(json["type"], order.name());
        }
    }

    #[test]
    fn answers_by_status_round_trip_inside_an_order() {
        let mut cluster = Cluster::new("api");
        cluster.answers.insert(503, "busy".to_string());
        let request = Request::new("1", Order::AddCluster(cluster));
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(parse(&json).unwrap(), request);
        let error = parse(
            r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"x","answers":{"x":"y"}}}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("invalid status code `x`"),
            "{error}"
        );
    }

    #[test]
    fn fingerprint_round_trips_as_hex() {
        let fingerprint = Fingerprint::of_der(b"certificate");
        let text = fingerprint.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse(), Ok(fingerprint));
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn listener_timeouts_default_to_sozu_values() {
        let request = parse(
            r#"{"id":"l","order":{"type":"ADD_HTTP_LISTENER","address":"127.0.0.1:80","front_timeout":5}}"#,
        )
        .unwrap();
        let Order::AddHttpListener(listener) = request.order else {
            panic!("not a listener: {request:?}");
        };
        assert_eq!(listener.front_timeout, Duration::from_secs(5));
        assert_eq!(listener.back_timeout, Duration::from_secs(30));
        assert_eq!(listener.sticky_name, "SOZUBALANCEID");
    }
}
