//! The arguments of queries and of orders that act on processes, the state and logging.

use serde::{Deserialize, Serialize};

use super::Fingerprint;

/// The global cap on concurrent connections from one client address to one cluster; 0 means
/// no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimit {
    /// The cap; 0 means no cap.
    pub max_connections_per_ip: u64,
}

/// `LIST_FRONTENDS`: which frontends to list. With none of `http`, `https`, `tcp` set, every kind
/// is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendFilters {
    /// List HTTP frontends.
    #[serde(default)]
    pub http: bool,
    /// List HTTPS frontends.
    #[serde(default)]
    pub https: bool,
    /// List TCP frontends.
    #[serde(default)]
    pub tcp: bool,
    /// Only frontends whose hostname contains this text; TCP frontends, which have no hostname, are
    /// then left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `QUERY_CLUSTERS_BY_DOMAIN`: the clusters of the HTTP and HTTPS frontends of one hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFilter {
    /// The hostname, compared without case.
    pub hostname: String,
    /// Only frontends whose path rule's value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Which certificates `QUERY_CERTIFICATES_FROM_THE_STATE` and `QUERY_CERTIFICATES_FROM_WORKERS`
/// list; without filters, every one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFilters {
    /// Only the certificate with this fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Only certificates one of whose names contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Each certificate with its PEM, chain and private key (what Sōzu's `certificate list`
    /// prints).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// `QUERY_METRICS`: which figures to return, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMetrics {
    /// List the metric names instead of their values.
    #[serde(default)]
    pub list: bool,
    /// Only these clusters' figures; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_ids: Vec<String>,
    /// Only these backends' figures; empty means all.
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

/// `CONFIGURE_METRICS`: what to do with the figures of every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricsConfiguration {
    /// Record figures (the default at start).
    Enabled,
    /// Stop recording; the figures kept so far stay.
    Disabled,
    /// Forget every figure recorded so far.
    Clear,
}

/// `LOGGING`: the new log filter of the main process and every worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingFilter {
    /// A level (`info`) or a filter in `env_logger` syntax (`info,sozu_lib::http=debug`).
    pub filter: String,
}

/// The file of `SAVE_STATE` and `LOAD_STATE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePath {
    /// The file's path, read by the main process: give an absolute one.
    pub path: String,
    /// What `SAVE_STATE` writes; `LOAD_STATE` tells the formats apart by content.
    #[serde(default, skip_serializing_if = "StateFormat::is_default")]
    pub format: StateFormat,
}

/// The format of a state file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFormat {
    /// One order per JSON line.
    #[default]
    Orders,
    /// Sōzu 2.1's: its JSON requests separated by `\n\0` (`state::sozu_format`).
    Sozu,
}

impl StateFormat {
    fn is_default(&self) -> bool {
        *self == StateFormat::Orders
    }
}

/// `RELOAD_CONFIGURATION`: which configuration file to read again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfiguration {
    /// The configuration file to apply; absent means the one the proxy was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `UPGRADE_WORKER`: which worker to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerId {
    /// The worker's number, as `LIST_WORKERS` shows it.
    pub worker_id: u32,
}
