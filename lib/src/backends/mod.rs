//! The backends of every cluster, their health as connections reveal it, and the choice of a
//! backend for a new connection.
//!
//! A backend is NORMAL (takes new connections), DOWN (failed `FAILURES_BEFORE_DOWN` connects
//! in a row; one probe connection is let through when its backoff ends, and a success brings it
//! back) or DRAINING (removed by an order: no new connection; it is forgotten when its last
//! connection ends). Backups are chosen only when no normal backend is available.
//!
//! Sessions hold a [`BackendLease`] for each backend connection they have: it counts the
//! connection for its backend from the moment it is attached to a session (connect started,
//! or taken from the idle pool) until it leaves it (pooled, closed, or the session gone), and
//! its `Drop` is the only place a connection stops counting (see `lease.rs`). The lease also
//! counts the request its connection carries, for the `requests` load metric. A key stays valid
//! while the backend has connections, and a stale key (the backend is gone) is simply not found.

mod lease;

use std::{
    cell::Cell,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use slab::Slab;
use sozu_command_lib::{
    request::{AddBackend, Cluster, LoadBalancingAlgorithm, LoadMetric},
    response::{BackendRuntime, BackendStatus, Event, EventKind},
};

pub use lease::BackendLease;
use lease::Counters;

use crate::load_balancing::{Candidate, Load, LoadBalancer, client_key};

/// Connect failures in a row that mark a backend down.
pub const FAILURES_BEFORE_DOWN: u32 = 3;
/// The first wait before a down backend is tried again; it doubles on each failed probe.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Names a backend for as long as it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKey {
    index: usize,
    uid: u64,
}

/// One backend of a cluster, as the worker knows it: where it is, how it is chosen, and its state.
#[derive(Debug)]
pub struct Backend {
    uid: u64,
    /// The cluster the backend belongs to.
    pub cluster_id: String,
    /// The backend's id, unique within its cluster.
    pub id: String,
    /// Where connections to the backend go.
    pub address: SocketAddr,
    /// The value of the sticky session cookie that routes a client back to this backend.
    pub sticky_id: Option<String>,
    /// The backend's share of new connections relative to its cluster's other backends (0 takes
    /// none).
    pub weight: u32,
    /// Used only when no non-backup backend of the cluster is available.
    pub backup: bool,
    /// Whether the backend takes new connections, drains or is down.
    pub status: BackendStatus,
    /// Connections attached to sessions (including connects in progress) and the requests
    /// they carry, counted by leases.
    counters: Rc<Counters>,
    /// Connect failures in a row.
    pub failures: u32,
    /// When a down backend may be probed again.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Exponentially weighted average of connect times.
    connect_time: Duration,
    /// What active health checks say; always true for a cluster without them.
    pub healthy: bool,
}

impl Backend {
    /// The name sticky sessions know the backend by: its sticky id, or else its id.
    pub fn sticky_name(&self) -> &str {
        self.sticky_id.as_deref().unwrap_or(&self.id)
    }

    fn is_eligible(&self, now: Instant) -> bool {
        if !self.healthy {
            return false;
        }
        match self.status {
            BackendStatus::Normal => true,
            BackendStatus::Down => self.retry_at.is_some_and(|at| at <= now),
            BackendStatus::Draining => false,
        }
    }

    /// Connections attached to sessions (including connects in progress).
    pub fn connections(&self) -> u64 {
        self.counters.connections()
    }

    /// Requests forwarded to the backend whose response has not ended.
    pub fn requests(&self) -> u64 {
        self.counters.requests()
    }

    fn load(&self) -> Load {
        Load {
            connections: self.connections(),
            requests: self.requests(),
            average_connect_time: self.connect_time,
        }
    }

    /// The state reported to queries and gauges: a backend failing its health checks is down.
    pub fn reported_status(&self) -> BackendStatus {
        match self.status {
            BackendStatus::Normal if !self.healthy => BackendStatus::Down,
            status => status,
        }
    }

    /// The backend's state as queries report it: status, open connections, failures, health.
    pub fn runtime(&self) -> BackendRuntime {
        BackendRuntime {
            status: self.reported_status(),
            active_connections: self.connections(),
            failures: self.failures,
            healthy: self.healthy,
        }
    }
}

/// The backends of one cluster and how it chooses among them.
struct ClusterBackends {
    /// Slab indices of the cluster's backends, draining ones included.
    members: Vec<usize>,
    balancer: LoadBalancer,
    algorithm: LoadBalancingAlgorithm,
    metric: LoadMetric,
    /// Slab indices of the backends the balancer chooses among, in its candidate order.
    eligible: Vec<usize>,
    /// `eligible` must be recomputed (a member or a status changed).
    dirty: bool,
    /// The earliest moment a down backend becomes eligible again.
    next_retry: Option<Instant>,
    /// Whether the last pick found no backend (to report recovery once).
    was_unavailable: bool,
}

impl ClusterBackends {
    fn new(algorithm: LoadBalancingAlgorithm, metric: LoadMetric) -> Self {
        ClusterBackends {
            members: Vec::new(),
            balancer: LoadBalancer::new(algorithm, metric),
            algorithm,
            metric,
            eligible: Vec::new(),
            dirty: true,
            next_retry: None,
            was_unavailable: false,
        }
    }
}

/// Why no backend could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// No cluster has this id.
    #[error("no cluster `{0}`")]
    NoCluster(String),
    /// The cluster has no backend with this id.
    #[error("cluster `{0}` has no available backend")]
    NoBackend(String),
}

/// Every backend of a worker.
#[derive(Default)]
pub struct BackendMap {
    backends: Slab<Backend>,
    /// By cluster id (named by orders, never by a client: a fast hash, looked up on every
    /// connect).
    clusters: FxHashMap<String, ClusterBackends>,
    next_uid: u64,
    /// Events waiting to be reported to the main process.
    events: Vec<Event>,
    /// A draining backend lost its last connection since the last
    /// [`BackendMap::release_drained`].
    drained: Rc<Cell<bool>>,
}

impl BackendMap {
    /// A worker's empty set of backends.
    pub fn new() -> Self {
        BackendMap::default()
    }

    /// Creates the cluster's entry or applies a new algorithm to it.
    pub fn set_cluster(&mut self, cluster: &Cluster) {
        let metric = cluster.load_metric.unwrap_or_default();
        let entry = self
            .clusters
            .entry(cluster.cluster_id.clone())
            .or_insert_with(|| ClusterBackends::new(cluster.load_balancing, metric));
        if entry.algorithm != cluster.load_balancing || entry.metric != metric {
            entry.balancer = LoadBalancer::new(cluster.load_balancing, metric);
            entry.algorithm = cluster.load_balancing;
            entry.metric = metric;
            entry.dirty = true;
        }
    }

    /// Drains every backend of a cluster and forgets the cluster.
    pub fn remove_cluster(&mut self, cluster_id: &str) {
        let Some(cluster) = self.clusters.remove(cluster_id) else {
            return;
        };
        for index in cluster.members {
            if let Some(backend) = self.backends.get_mut(index) {
                backend.status = BackendStatus::Draining;
                backend.counters.start_draining();
                if backend.connections() == 0 {
                    self.backends.remove(index);
                }
            }
        }
    }

    /// Adds a backend. The caller has validated the order against the state, so the cluster
    /// exists there; its entry here is created with default settings if missing.
    pub fn add(&mut self, add: &AddBackend) {
        let uid = self.next_uid;
        self.next_uid += 1;
        let index = self.backends.insert(Backend {
            uid,
            cluster_id: add.cluster_id.clone(),
            id: add.backend_id.clone(),
            address: add.address,
            sticky_id: add.sticky_id.clone(),
            weight: add.weight,
            backup: add.backup,
            status: BackendStatus::Normal,
            counters: Counters::new(self.drained.clone()),
            failures: 0,
            retry_at: None,
            backoff: INITIAL_BACKOFF,
            connect_time: Duration::ZERO,
            healthy: true,
        });
        let cluster = self
            .clusters
            .entry(add.cluster_id.clone())
            .or_insert_with(|| {
                ClusterBackends::new(LoadBalancingAlgorithm::default(), LoadMetric::default())
            });
        cluster.members.push(index);
        cluster.dirty = true;
    }

    /// Starts draining a backend: it takes no new connection and is forgotten when its last
    /// connection ends. Returns its key while it still has connections.
    pub fn remove(&mut self, cluster_id: &str, backend_id: &str) -> Option<BackendKey> {
        let cluster = self.clusters.get_mut(cluster_id)?;
        let found = cluster.members.iter().copied().find(|&index| {
            self.backends
                .get(index)
                .is_some_and(|b| b.id == backend_id && b.status != BackendStatus::Draining)
        });
        let index = found?;
        cluster.dirty = true;
        let backend = self.backends.get_mut(index)?;
        backend.status = BackendStatus::Draining;
        backend.counters.start_draining();
        if backend.connections() == 0 {
            self.forget(index);
            return None;
        }
        Some(BackendKey {
            index,
            uid: backend.uid,
        })
    }

    /// Removes a drained backend for good.
    fn forget(&mut self, index: usize) {
        let Some(backend) = self.backends.try_remove(index) else {
            return;
        };
        if let Some(cluster) = self.clusters.get_mut(&backend.cluster_id) {
            cluster.members.retain(|&member| member != index);
            cluster.dirty = true;
        }
        self.events.push(Event {
            kind: EventKind::RemovedBackendHasNoConnections,
            cluster_id: Some(backend.cluster_id),
            backend_id: Some(backend.id),
            address: Some(backend.address),
            message: String::new(),
        });
    }

    /// The sticky name of the backend `key` names ([`Backend::sticky_name`]); empty once it
    /// is gone.
    pub fn sticky_name(&self, key: BackendKey) -> String {
        self.get(key)
            .map(|backend| backend.sticky_name().to_owned())
            .unwrap_or_default()
    }

    /// The backend `key` names, if it still exists.
    pub fn get(&self, key: BackendKey) -> Option<&Backend> {
        self.backends.get(key.index).filter(|b| b.uid == key.uid)
    }

    fn get_mut(&mut self, key: BackendKey) -> Option<&mut Backend> {
        self.backends
            .get_mut(key.index)
            .filter(|b| b.uid == key.uid)
    }

    /// Whether [`BackendMap::pick`] could choose a backend of the cluster now.
    pub fn has_available(&mut self, cluster_id: &str, now: Instant) -> bool {
        let Some(cluster) = self.clusters.get_mut(cluster_id) else {
            return false;
        };
        refresh_if_stale(cluster, &self.backends, now);
        !cluster.eligible.is_empty()
    }

    /// Chooses a backend of the cluster for a new connection from `client`.
    pub fn pick(
        &mut self,
        cluster_id: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<BackendKey, PickError> {
        let cluster = self
            .clusters
            .get_mut(cluster_id)
            .ok_or_else(|| PickError::NoCluster(cluster_id.to_string()))?;
        refresh_if_stale(cluster, &self.backends, now);
        let candidates: Vec<Candidate<'_>> = cluster
            .eligible
            .iter()
            .filter_map(|&index| self.backends.get(index))
            .map(|backend| Candidate {
                id: &backend.id,
                weight: backend.weight,
                load: backend.load(),
            })
            .collect();
        let picked = cluster
            .balancer
            .pick(&candidates, client.map(client_key))
            .and_then(|position| cluster.eligible.get(position).copied());
        drop(candidates);
        let Some(index) = picked else {
            if !cluster.was_unavailable {
                cluster.was_unavailable = true;
                self.events.push(Event {
                    kind: EventKind::NoAvailableBackends,
                    cluster_id: Some(cluster_id.to_string()),
                    backend_id: None,
                    address: None,
                    message: String::new(),
                });
            }
            return Err(PickError::NoBackend(cluster_id.to_string()));
        };
        let backend = self
            .backends
            .get_mut(index)
            .ok_or_else(|| PickError::NoBackend(cluster_id.to_string()))?;
        if backend.status == BackendStatus::Down {
            // One probe at a time: the next one waits for another backoff period.
            backend.retry_at = Some(now + backend.backoff);
            cluster.dirty = true;
        }
        Ok(BackendKey {
            index,
            uid: backend.uid,
        })
    }

    /// The backend of the cluster whose sticky id is `sticky_id`, if the balancer could pick
    /// it now: up, of weight above 0, and not a backup while a normal backend takes traffic
    /// (as HAProxy's `cookie` persistence, which ignores a server that is not usable).
    /// Otherwise the caller picks as if there was no cookie.
    pub fn pick_sticky(
        &mut self,
        cluster_id: &str,
        sticky_id: &str,
        now: Instant,
    ) -> Option<BackendKey> {
        let cluster = self.clusters.get_mut(cluster_id)?;
        refresh_if_stale(cluster, &self.backends, now);
        cluster.eligible.iter().find_map(|&index| {
            let backend = self.backends.get(index)?;
            let matches = backend.sticky_name() == sticky_id;
            matches.then_some(BackendKey {
                index,
                uid: backend.uid,
            })
        })
    }

    /// Counts a connection to the backend for as long as the lease lives; `None` when the
    /// backend is gone.
    pub fn lease(&self, key: BackendKey) -> Option<BackendLease> {
        let backend = self.get(key)?;
        Some(BackendLease::new(key, backend.counters.clone()))
    }

    /// A connect to the backend succeeded after `connect_time`.
    pub fn connect_succeeded(&mut self, key: BackendKey, connect_time: Duration) {
        let Some(backend) = self.get_mut(key) else {
            return;
        };
        backend.failures = 0;
        backend.backoff = INITIAL_BACKOFF;
        backend.connect_time = if backend.connect_time.is_zero() {
            connect_time
        } else {
            (backend.connect_time * 7 + connect_time) / 8
        };
        if backend.status == BackendStatus::Down {
            backend.status = BackendStatus::Normal;
            backend.retry_at = None;
            let event = Event {
                kind: EventKind::BackendUp,
                cluster_id: Some(backend.cluster_id.clone()),
                backend_id: Some(backend.id.clone()),
                address: Some(backend.address),
                message: String::new(),
            };
            let cluster_id = backend.cluster_id.clone();
            self.events.push(event);
            self.mark_dirty(&cluster_id);
        }
        self.note_recovery(key);
    }

    /// Reports a cluster that found no backend before and has one now.
    fn note_recovery(&mut self, key: BackendKey) {
        let Some(backend) = self.backends.get(key.index).filter(|b| b.uid == key.uid) else {
            return;
        };
        if let Some(cluster) = self.clusters.get_mut(&backend.cluster_id) {
            if cluster.was_unavailable {
                cluster.was_unavailable = false;
                self.events.push(Event {
                    kind: EventKind::ClusterRecovered,
                    cluster_id: Some(backend.cluster_id.clone()),
                    backend_id: None,
                    address: None,
                    message: String::new(),
                });
            }
        }
    }

    /// A connect to the backend failed (refused, reset or timed out).
    pub fn connect_failed(&mut self, key: BackendKey, now: Instant) {
        let Some(backend) = self.get_mut(key) else {
            return;
        };
        backend.failures = backend.failures.saturating_add(1);
        match backend.status {
            BackendStatus::Normal if backend.failures >= FAILURES_BEFORE_DOWN => {
                backend.status = BackendStatus::Down;
                backend.retry_at = Some(now + backend.backoff);
                let event = Event {
                    kind: EventKind::BackendDown,
                    cluster_id: Some(backend.cluster_id.clone()),
                    backend_id: Some(backend.id.clone()),
                    address: Some(backend.address),
                    message: format!("{} connect failures in a row", backend.failures),
                };
                let cluster_id = backend.cluster_id.clone();
                self.events.push(event);
                self.mark_dirty(&cluster_id);
            }
            BackendStatus::Down => {
                backend.backoff = (backend.backoff * 2).min(MAX_BACKOFF);
                backend.retry_at = Some(now + backend.backoff);
                let cluster_id = backend.cluster_id.clone();
                self.mark_dirty(&cluster_id);
            }
            BackendStatus::Normal | BackendStatus::Draining => {}
        }
    }

    /// Forgets the draining backends whose last lease ended.
    pub fn release_drained(&mut self) {
        if !self.drained.replace(false) {
            return;
        }
        let drained: Vec<usize> = self
            .backends
            .iter()
            .filter(|(_, b)| b.status == BackendStatus::Draining && b.connections() == 0)
            .map(|(index, _)| index)
            .collect();
        for index in drained {
            self.forget(index);
        }
    }

    fn mark_dirty(&mut self, cluster_id: &str) {
        if let Some(cluster) = self.clusters.get_mut(cluster_id) {
            cluster.dirty = true;
        }
    }

    /// The backends of a cluster, draining ones included.
    pub fn cluster_backends(&self, cluster_id: &str) -> impl Iterator<Item = &Backend> {
        self.clusters
            .get(cluster_id)
            .into_iter()
            .flat_map(|cluster| cluster.members.iter())
            .filter_map(|&index| self.backends.get(index))
    }

    /// The backends of a cluster that active health checks probe (all but draining ones).
    pub fn probe_targets(&self, cluster_id: &str) -> Vec<(BackendKey, SocketAddr)> {
        self.clusters
            .get(cluster_id)
            .into_iter()
            .flat_map(|cluster| cluster.members.iter())
            .filter_map(|&index| {
                let backend = self.backends.get(index)?;
                (backend.status != BackendStatus::Draining).then_some((
                    BackendKey {
                        index,
                        uid: backend.uid,
                    },
                    backend.address,
                ))
            })
            .collect()
    }

    /// Applies the verdict of health checks to a backend, with an event when it changes.
    pub fn set_healthy(&mut self, key: BackendKey, healthy: bool, reason: &str) {
        let Some(backend) = self.get_mut(key) else {
            return;
        };
        if backend.healthy == healthy {
            return;
        }
        backend.healthy = healthy;
        let event = Event {
            kind: if healthy {
                EventKind::HealthCheckHealthy
            } else {
                EventKind::HealthCheckUnhealthy
            },
            cluster_id: Some(backend.cluster_id.clone()),
            backend_id: Some(backend.id.clone()),
            address: Some(backend.address),
            message: reason.to_string(),
        };
        let cluster_id = backend.cluster_id.clone();
        self.events.push(event);
        self.mark_dirty(&cluster_id);
    }

    /// Forgets health verdicts of a cluster whose checks were removed.
    pub fn clear_health(&mut self, cluster_id: &str) {
        let keys: Vec<BackendKey> = self
            .probe_targets(cluster_id)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            if let Some(backend) = self.get_mut(key) {
                backend.healthy = true;
            }
        }
        self.mark_dirty(cluster_id);
    }

    /// Events since the last call (draining backends whose last lease ended are forgotten
    /// first, and reported).
    pub fn take_events(&mut self) -> Vec<Event> {
        self.release_drained();
        std::mem::take(&mut self.events)
    }
}

/// Recomputes the eligible backends if a change or a down backend's retry time made them stale.
fn refresh_if_stale(cluster: &mut ClusterBackends, backends: &Slab<Backend>, now: Instant) {
    if cluster.dirty || cluster.next_retry.is_some_and(|at| at <= now) {
        refresh_eligible(cluster, backends, now);
    }
}

/// Recomputes which backends the balancer chooses among: the eligible normal ones of weight
/// above 0, or the eligible backups of weight above 0 when no normal backend is left (as
/// HAProxy, where a server of weight 0 is not usable and backups take over when no active
/// server is).
fn refresh_eligible(cluster: &mut ClusterBackends, backends: &Slab<Backend>, now: Instant) {
    let eligible = |backup: bool| -> Vec<usize> {
        cluster
            .members
            .iter()
            .copied()
            .filter(|&index| {
                backends
                    .get(index)
                    .is_some_and(|b| b.backup == backup && b.weight > 0 && b.is_eligible(now))
            })
            .collect()
    };
    let mut chosen = eligible(false);
    if chosen.is_empty() {
        chosen = eligible(true);
    }
    cluster.next_retry = cluster
        .members
        .iter()
        .filter_map(|&index| backends.get(index))
        .filter(|b| b.status == BackendStatus::Down)
        .filter_map(|b| b.retry_at)
        .filter(|&at| at > now)
        .min();
    if chosen != cluster.eligible {
        let candidates: Vec<Candidate<'_>> = chosen
            .iter()
            .filter_map(|&index| backends.get(index))
            .map(|backend| Candidate {
                id: &backend.id,
                weight: backend.weight,
                load: backend.load(),
            })
            .collect();
        cluster.balancer.set_candidates(&candidates);
        cluster.eligible = chosen;
    }
    cluster.dirty = false;
}

#[cfg(test)]
pub(crate) mod tests;
