//! Answers the main process computes from its own state, without asking the workers. Each is
//! one pass over what it reads, so that a state of 100,000 frontends answers in milliseconds.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::Arc,
};

use sozu_command_lib::{
    request::{
        DomainFilter, FrontendFilters, HealthCheckConfig, HttpFrontend, ListenerAddress,
        ListenerType, Order,
    },
    response::{
        BackendInformation, ClusterInformation, ListedFrontends, ListedListener, ListenersList,
        ResponseContent,
    },
    state::ConfigState,
};

/// The listeners that accept connections.
pub fn active_listeners(state: &ConfigState) -> Vec<ListenerAddress> {
    let named = |address: &std::net::SocketAddr, proxy| ListenerAddress {
        address: *address,
        proxy,
    };
    let http = state.http_listeners.iter().filter(|(_, l)| l.active);
    let https = state.https_listeners.iter().filter(|(_, l)| l.active);
    let tcp = state.tcp_listeners.iter().filter(|(_, l)| l.active);
    http.map(|(a, _)| named(a, ListenerType::Http))
        .chain(https.map(|(a, _)| named(a, ListenerType::Https)))
        .chain(tcp.map(|(a, _)| named(a, ListenerType::Tcp)))
        .collect()
}

pub fn listeners(state: &ConfigState) -> ListenersList {
    ListenersList {
        http: state
            .http_listeners
            .values()
            .map(|l| ListedListener {
                config: l.config.clone(),
                active: l.active,
            })
            .collect(),
        https: state
            .https_listeners
            .values()
            .map(|l| ListedListener {
                config: l.config.clone(),
                active: l.active,
            })
            .collect(),
        tcp: state
            .tcp_listeners
            .values()
            .map(|l| ListedListener {
                config: l.config.clone(),
                active: l.active,
            })
            .collect(),
    }
}

/// Frontends of the kinds asked (all kinds when none is), whose hostname contains `domain`.
pub fn frontends(state: &ConfigState, filters: &FrontendFilters) -> ListedFrontends {
    let all = !filters.http && !filters.https && !filters.tcp;
    let matches = |frontend: &HttpFrontend| {
        filters
            .domain
            .as_ref()
            .is_none_or(|domain| frontend.hostname.contains(domain.as_str()))
    };
    let mut listed = ListedFrontends::default();
    if all || filters.http {
        listed.http = state
            .http_frontends
            .values()
            .filter(|f| matches(f))
            .map(|frontend| HttpFrontend::clone(frontend))
            .collect();
    }
    if all || filters.https {
        listed.https = state
            .https_frontends
            .values()
            .filter(|f| matches(f))
            .map(|frontend| HttpFrontend::clone(frontend))
            .collect();
    }
    if (all || filters.tcp) && filters.domain.is_none() {
        listed.tcp = state.tcp_frontends.values().flatten().cloned().collect();
    }
    listed
}

/// What the main state knows of one cluster; backends carry no run time figures.
pub fn cluster_information(state: &ConfigState, cluster_id: &str) -> Option<ClusterInformation> {
    let cluster = state.clusters.get(cluster_id)?;
    let belongs = |f: &&Arc<HttpFrontend>| f.cluster_id.as_deref() == Some(cluster_id);
    Some(ClusterInformation {
        cluster: cluster.clone(),
        http_frontends: state
            .http_frontends
            .values()
            .filter(belongs)
            .map(|frontend| HttpFrontend::clone(frontend))
            .collect(),
        https_frontends: state
            .https_frontends
            .values()
            .filter(belongs)
            .map(|frontend| HttpFrontend::clone(frontend))
            .collect(),
        tcp_frontends: state
            .tcp_frontends
            .values()
            .flatten()
            .filter(|f| f.cluster_id == cluster_id)
            .cloned()
            .collect(),
        backends: state
            .backends
            .get(cluster_id)
            .into_iter()
            .flat_map(|backends| backends.values())
            .map(|backend| BackendInformation {
                backend: backend.clone(),
                runtime: None,
            })
            .collect(),
    })
}

/// Clusters that a frontend for `hostname` (and a path starting with `path`, if given) routes
/// to.
pub fn clusters_by_domain(state: &ConfigState, filter: &DomainFilter) -> Vec<ClusterInformation> {
    let ids: BTreeSet<&str> = state
        .http_frontends
        .values()
        .chain(state.https_frontends.values())
        .filter(|f| filter.matches(f))
        .filter_map(|f| f.cluster_id.as_deref())
        .collect();
    ids.into_iter()
        .filter_map(|id| cluster_information(state, id))
        .collect()
}

/// The main state's answer to a cluster query (`QUERY_CLUSTER_BY_ID`,
/// `QUERY_CLUSTERS_BY_DOMAIN`, or else `QUERY_CLUSTERS_HASHES`), as a worker answers it.
pub fn clusters_answer(state: &ConfigState, query: &Order) -> ResponseContent {
    match query {
        Order::QueryClusterById(query) => ResponseContent::Clusters(
            cluster_information(state, &query.cluster_id)
                .into_iter()
                .collect(),
        ),
        Order::QueryClustersByDomain(filter) => {
            ResponseContent::Clusters(clusters_by_domain(state, filter))
        }
        _ => ResponseContent::ClusterHashes(cluster_hashes(state)),
    }
}

/// Certificates whose fingerprint is the one asked, and one of whose names contains `domain`.
pub fn health_checks(
    state: &ConfigState,
    cluster_id: Option<&str>,
) -> BTreeMap<String, HealthCheckConfig> {
    state
        .clusters
        .values()
        .filter(|cluster| cluster_id.is_none_or(|id| cluster.cluster_id == id))
        .filter_map(|cluster| {
            let check = cluster.health_check.clone()?;
            Some((cluster.cluster_id.clone(), check))
        })
        .collect()
}

/// The same hashes as [`ConfigState::cluster_hashes`] (so that they compare with a worker's),
/// in one pass over the frontends instead of one pass per cluster.
pub fn cluster_hashes(state: &ConfigState) -> BTreeMap<String, u64> {
    let mut hashers: HashMap<&str, DefaultHasher> = state
        .clusters
        .iter()
        .map(|(cluster_id, cluster)| {
            let mut hasher = DefaultHasher::new();
            Some(cluster).hash(&mut hasher);
            state.backends.get(cluster_id).hash(&mut hasher);
            (cluster_id.as_str(), hasher)
        })
        .collect();
    let http = state.http_frontends.values();
    let https = state.https_frontends.values();
    for frontend in http.chain(https) {
        if let Some(hasher) = frontend
            .cluster_id
            .as_deref()
            .and_then(|id| hashers.get_mut(id))
        {
            frontend.hash(hasher);
        }
    }
    for frontend in state.tcp_frontends.values().flatten() {
        if let Some(hasher) = hashers.get_mut(frontend.cluster_id.as_str()) {
            frontend.hash(hasher);
        }
    }
    hashers
        .into_iter()
        .map(|(id, hasher)| (id.to_string(), hasher.finish()))
        .collect()
}

/// How many objects the state holds, under `state.` keys.
pub fn state_counts(state: &ConfigState) -> BTreeMap<String, u64> {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let backends: usize = state.backends.values().map(BTreeMap::len).sum();
    let certificates: usize = state.certificates.values().map(BTreeMap::len).sum();
    let active_listeners = state.http_listeners.values().filter(|l| l.active).count()
        + state.https_listeners.values().filter(|l| l.active).count()
        + state.tcp_listeners.values().filter(|l| l.active).count();
    [
        ("state.clusters", count(state.clusters.len())),
        ("state.backends", count(backends)),
        ("state.http_frontends", count(state.http_frontends.len())),
        ("state.https_frontends", count(state.https_frontends.len())),
        ("state.tcp_frontends", count(state.tcp_frontends.len())),
        ("state.certificates", count(certificates)),
        ("state.http_listeners", count(state.http_listeners.len())),
        ("state.https_listeners", count(state.https_listeners.len())),
        ("state.tcp_listeners", count(state.tcp_listeners.len())),
        ("state.active_listeners", count(active_listeners)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{
        AddBackend, Cluster, HttpListenerConfig, Order, TcpFrontend, TcpListenerConfig,
    };

    use super::*;

    #[test]
    fn one_pass_cluster_hashes_equal_the_state_ones() {
        let mut state = ConfigState::new();
        let http = "127.0.0.1:8080".parse().unwrap();
        let tcp = "127.0.0.1:9000".parse().unwrap();
        let orders = [
            Order::AddHttpListener(HttpListenerConfig::new(http)),
            Order::AddTcpListener(TcpListenerConfig::new(tcp)),
            Order::AddCluster(Cluster::new("a")),
            Order::AddCluster(Cluster::new("b")),
            Order::AddBackend(AddBackend {
                cluster_id: "a".into(),
                backend_id: "a-1".into(),
                address: "127.0.0.1:3000".parse().unwrap(),
                sticky_id: None,
                weight: 100,
                backup: false,
            }),
            Order::AddHttpFrontend(HttpFrontend::new(Some("a".into()), http, "a.example")),
            Order::AddHttpFrontend(HttpFrontend::new(Some("b".into()), http, "b.example")),
            Order::AddHttpFrontend(HttpFrontend::new(Some("a".into()), http, "c.example")),
            Order::AddTcpFrontend(TcpFrontend::new("b", tcp)),
        ];
        for order in &orders {
            state.apply(order).unwrap();
        }
        assert_eq!(cluster_hashes(&state), state.cluster_hashes());
        let counts = state_counts(&state);
        assert_eq!(counts["state.clusters"], 2);
        assert_eq!(counts["state.http_frontends"], 3);
        assert_eq!(counts["state.backends"], 1);
    }
}
