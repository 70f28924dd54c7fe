//! The arguments of queries and of orders that act on processes, the state and logging.

use serde::{Deserialize, Serialize};

use super::Fingerprint;

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
