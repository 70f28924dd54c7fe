//! `QUERY_CLUSTERS_OF_WORKERS`: a cluster query answered by each worker and by the main
//! process, side by side, as Sōzu answers its cluster queries (`sozu cluster list`): a
//! worker whose answer differs from the main process's is out of step.

use serde::{Deserialize, Serialize};

use super::{ClusterId, DomainFilter, HttpFrontend, Order};

/// Which clusters: the one named by `cluster_id`, those of the frontends of `domain`, or,
/// with neither, a hash of every cluster (`QUERY_CLUSTERS_HASHES`). The answer is
/// `WORKER_RESPONSES`: each worker's answer by worker id, the main process's under `main`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClustersOfWorkers {
    /// The cluster with this id, as `QUERY_CLUSTER_BY_ID` answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The clusters of this hostname's frontends, as `QUERY_CLUSTERS_BY_DOMAIN` answers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainFilter>,
}

impl ClustersOfWorkers {
    /// The query each process answers: by id, by domain, or the hashes.
    pub fn query(&self) -> Order {
        match (&self.cluster_id, &self.domain) {
            (Some(cluster_id), _) => Order::QueryClusterById(ClusterId {
                cluster_id: cluster_id.clone(),
            }),
            (None, Some(domain)) => Order::QueryClustersByDomain(domain.clone()),
            (None, None) => Order::QueryClustersHashes,
        }
    }
}

impl DomainFilter {
    /// Whether `frontend` is one of this hostname's (compared without case), with a path
    /// rule starting with `path` when one is given.
    pub fn matches(&self, frontend: &HttpFrontend) -> bool {
        frontend.hostname.eq_ignore_ascii_case(&self.hostname)
            && self
                .path
                .as_ref()
                .is_none_or(|path| frontend.path.value.starts_with(path.as_str()))
    }
}
