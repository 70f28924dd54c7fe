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

mod backend;
mod certificate;
mod cluster;
mod clusters_of_workers;
mod content;
mod decode;
mod fault;
mod frontend;
mod h2;
mod json;
mod json_read;
mod listener;
mod query;
mod registration;
#[cfg(test)]
mod tests;
mod timeouts;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use backend::*;
pub use certificate::*;
pub use cluster::*;
pub use clusters_of_workers::*;
pub use content::*;
pub use fault::*;
pub use frontend::*;
pub use h2::*;
pub use json::{write_certificate_facts, write_order};
pub use json_read::{read_worker_request, read_written_order, read_written_request};
pub use listener::*;
pub use query::*;
pub use registration::*;
pub use timeouts::*;

/// One message from a client (or the main process) to the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the client; the response carries the same id.
    pub id: String,
    /// What to do.
    pub order: Order,
}

/// A request as the main process sends it to its workers: `{"id":…,"order":…}` as a
/// [`Request`], and after the order, when the main process checked a certificate the order
/// brings, `"certificate_facts":{…}`: what it read of the certificate, which the worker then
/// takes instead of reading the certificate again. A worker trusts them as it trusts its
/// orders; a request without them (any client's, an older main process's) is read as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRequest {
    /// The request's id, as in [`Request::id`].
    pub id: String,
    /// The order, as in [`Request::order`].
    pub order: Order,
    /// The facts of the certificate of an `ADD_CERTIFICATE` or `REPLACE_CERTIFICATE` order,
    /// as the main process read them; absent when it gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_facts: Option<crate::certificate::CertificateFacts>,
}

impl From<Request> for WorkerRequest {
    fn from(request: Request) -> Self {
        WorkerRequest {
            id: request.id,
            order: request.order,
            certificate_facts: None,
        }
    }
}

impl Request {
    /// A request with the id `id`.
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
///
/// Its `Deserialize` is written by hand (`decode.rs`) for speed; the JSON is the same as
/// serde's derived internal tagging reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Order {
    // Clusters and backends.
    /// Adds a cluster, or replaces the settings of the one with that id (its frontends and backends
    /// stay).
    AddCluster(Cluster),
    /// Removes a cluster, its frontends and its backends. Fails when no cluster has that id.
    RemoveCluster(ClusterId),
    /// Adds a backend to a cluster. Fails when the cluster does not exist or already has a backend
    /// with that id.
    AddBackend(AddBackend),
    /// Removes a backend; with `drain_timeout`, its open sessions get that long before they are
    /// closed. Fails when the cluster has no backend with that id at that address.
    RemoveBackend(RemoveBackend),

    // Frontends.
    /// Routes requests of a cleartext HTTP listener to a cluster (or answers them). Fails when the
    /// listener or the cluster does not exist, or a frontend with the same hostname, path and
    /// method is there already.
    AddHttpFrontend(HttpFrontend),
    /// Removes an HTTP route; fails when it does not exist.
    RemoveHttpFrontend(HttpFrontend),
    /// Routes requests of an HTTPS listener to a cluster (or answers them). Fails when the listener
    /// or the cluster does not exist, or a frontend with the same hostname, path and method is
    /// there already.
    AddHttpsFrontend(HttpFrontend),
    /// Removes an HTTPS route; fails when it does not exist.
    RemoveHttpsFrontend(HttpFrontend),
    /// Sends the connections of a TCP listener to a cluster. Fails when the listener or the cluster
    /// does not exist, or a frontend of the listener has the same rule.
    AddTcpFrontend(TcpFrontend),
    /// Removes a TCP frontend; fails when it does not exist.
    RemoveTcpFrontend(TcpFrontend),

    // Certificates.
    /// Adds an SNI certificate to an HTTPS listener. Fails when it does not parse, does not match
    /// its key, the listener has it already, or it has expired (unless `allow_expired`).
    AddCertificate(AddCertificate),
    /// Replaces a certificate of an HTTPS listener, named by its fingerprint, with a new one in one
    /// step. Fails when the old one is not there.
    ReplaceCertificate(ReplaceCertificate),
    /// Removes a certificate from an HTTPS listener, by fingerprint.
    RemoveCertificate(RemoveCertificate),

    // Listeners.
    /// Adds a cleartext HTTP listener, inactive until `ACTIVATE_LISTENER`. Fails when another
    /// listener has its address.
    AddHttpListener(HttpListenerConfig),
    /// Adds an HTTPS listener, inactive until `ACTIVATE_LISTENER`. Fails when another listener has
    /// its address or its TLS settings do not load.
    AddHttpsListener(HttpsListenerConfig),
    /// Adds a TCP listener, inactive until `ACTIVATE_LISTENER`. Fails when another listener has its
    /// address.
    AddTcpListener(TcpListenerConfig),
    /// Removes a listener with its frontends (and, for HTTPS, its certificates). Fails when no
    /// listener of that kind has that address.
    RemoveListener(ListenerAddress),
    /// Starts accepting connections on a listener. Fails when the listener does not exist, or in a
    /// worker when its address cannot be bound.
    ActivateListener(ListenerAddress),
    /// Stops accepting new connections on a listener.
    DeactivateListener(ListenerAddress),
    /// Changes an HTTP listener's settings without rebinding.
    UpdateHttpListenerConfig(UpdateHttpListener),
    /// Changes an HTTPS listener's settings without rebinding.
    UpdateHttpsListenerConfig(UpdateHttpsListener),
    /// Changes a TCP listener's settings without rebinding.
    UpdateTcpListenerConfig(UpdateTcpListener),

    // Limits and health checks.
    /// Sets the cap on connections from one client address to one cluster (0: no cap); clusters may
    /// set their own.
    SetMaxConnectionsPerIp(ConnectionLimit),
    /// Sets (or replaces) a cluster's active health check. Fails when the cluster does not exist.
    SetHealthCheck(SetHealthCheck),
    /// Removes a cluster's health check; its backends count as healthy again.
    RemoveHealthCheck(ClusterId),

    // Faults.
    /// Starts injecting a fault (`doc/faults.md`). Fails when a fault has that name already or its
    /// target does not exist.
    AddFault(AddFault),
    /// Replaces the settings of an existing fault, by name. Fails when no fault has that name.
    UpdateFault(AddFault),
    /// Removes a fault by name. Fails when no fault has that name.
    RemoveFault(FaultName),
    /// Removes every fault.
    ResetFaults,

    // Queries.
    /// Each worker's run state, sessions and listeners.
    Status,
    /// The worker processes of the main process.
    ListWorkers,
    /// The frontends matching some filters.
    ListFrontends(FrontendFilters),
    /// Every listener and its settings.
    ListListeners,
    /// A cluster's settings, frontends and backends, with the workers' view of its backends.
    QueryClusterById(ClusterId),
    /// The clusters with a frontend for a domain (and path).
    QueryClustersByDomain(DomainFilter),
    /// A hash of each cluster's configuration, to compare nodes.
    QueryClustersHashes,
    /// A cluster query answered by each worker and the main process, side by side.
    QueryClustersOfWorkers(ClustersOfWorkers),
    /// The certificates of the state, by listener.
    QueryCertificatesFromTheState(CertificateFilters),
    /// The certificates each worker serves.
    QueryCertificatesFromWorkers(CertificateFilters),
    /// Metrics, or the names of the metrics.
    QueryMetrics(QueryMetrics),
    /// The default cap on connections per client address and cluster.
    QueryMaxConnectionsPerIp,
    /// The health checks of one cluster or all.
    QueryHealthChecks(HealthCheckFilter),
    /// Requests served by cluster, the state's sizes and the orders received since start.
    CountRequests,
    /// The active faults with their remaining lease and figures.
    ListFaults,

    // Processes, state and logging.
    /// Writes the state (every state-changing order applied so far) to a file, in this proxy's
    /// format or Sōzu's.
    SaveState(StatePath),
    /// Applies the orders of a state file (this proxy's format or Sōzu's).
    LoadState(StatePath),
    /// Reads the configuration file again and applies the difference as orders.
    ReloadConfiguration(ReloadConfiguration),
    /// Replaces the main process by a new executable, keeping the workers and listeners.
    UpgradeMain,
    /// Replaces one worker by a new one; the old one finishes its sessions.
    UpgradeWorker(WorkerId),
    /// Starts one more worker.
    LaunchWorker,
    /// Stops accepting, lets sessions end, then exits.
    SoftStop,
    /// Closes every session and exits at once.
    HardStop,
    /// Turns metrics on, off, or clears them.
    ConfigureMetrics(MetricsConfiguration),
    /// Changes the log filter of every process.
    Logging(LoggingFilter),
    /// Keeps the channel open and sends an [`crate::response::Event`] for each event from now on.
    SubscribeEvents,

    // Registrations of services (`doc/registration.md`).
    /// Registers a service's routes for a lease (`doc/registration.md`); only order the
    /// registration socket takes with `RENEW` and `DEREGISTER`.
    Register(Register),
    /// Extends a registration's lease. Fails when the registration is unknown or expired.
    Renew(RegistrationId),
    /// Removes a registration and the routes it added. Fails when the registration is unknown.
    Deregister(RegistrationId),
    /// The live registrations.
    ListRegistrations,

    // Batches, from the main process to its workers (`doc/protocol.md`).
    /// Opens a batch: the state changes that follow are applied as usual, each checked and
    /// refused on its own, but answered once, at `END_BATCH`. Refused from clients.
    BeginBatch,
    /// Closes a batch: one answer for every state change since `BEGIN_BATCH`, OK when each was
    /// applied, FAILURE naming each refused one otherwise. Refused from clients.
    EndBatch,
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
                | Order::AddFault(_)
                | Order::UpdateFault(_)
                | Order::RemoveFault(_)
                | Order::ResetFaults
        )
    }

    /// Whether the order is one of a service's registration, the only orders the
    /// registration socket accepts.
    pub fn is_registration(&self) -> bool {
        matches!(
            self,
            Order::Register(_) | Order::Renew(_) | Order::Deregister(_)
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
            Order::AddFault(_) => "ADD_FAULT",
            Order::UpdateFault(_) => "UPDATE_FAULT",
            Order::RemoveFault(_) => "REMOVE_FAULT",
            Order::ResetFaults => "RESET_FAULTS",
            Order::ListFaults => "LIST_FAULTS",
            Order::Status => "STATUS",
            Order::ListWorkers => "LIST_WORKERS",
            Order::ListFrontends(_) => "LIST_FRONTENDS",
            Order::ListListeners => "LIST_LISTENERS",
            Order::QueryClusterById(_) => "QUERY_CLUSTER_BY_ID",
            Order::QueryClustersByDomain(_) => "QUERY_CLUSTERS_BY_DOMAIN",
            Order::QueryClustersHashes => "QUERY_CLUSTERS_HASHES",
            Order::QueryClustersOfWorkers(_) => "QUERY_CLUSTERS_OF_WORKERS",
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
            Order::Register(_) => "REGISTER",
            Order::Renew(_) => "RENEW",
            Order::Deregister(_) => "DEREGISTER",
            Order::ListRegistrations => "LIST_REGISTRATIONS",
            Order::BeginBatch => "BEGIN_BATCH",
            Order::EndBatch => "END_BATCH",
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the values an enumeration accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{given}`, expected one of {expected}")]
pub struct UnknownName {
    /// The value given.
    pub given: String,
    /// The values accepted, separated by commas.
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

    /// Writes `duration` as whole seconds, dropping any fraction.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    /// Reads a whole number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Optional durations written as a whole number of seconds.
pub mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `duration` as whole seconds (or `null`), dropping any fraction.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&duration.as_secs()),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a whole number of seconds, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|secs| secs.map(Duration::from_secs))
    }
}
