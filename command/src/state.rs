//! `ConfigState`: the single model of the routing state (listeners, clusters, backends,
//! frontends, certificates, limits).
//!
//! [`ConfigState::apply`] validates an order and changes the state, or refuses it with a
//! [`StateError`] that names the problem and leaves the state exactly as it was.
//! [`ConfigState::diff`] yields the orders that turn one state into another, which serves
//! reloads, restarted workers and upgrades. A state is saved as one order per JSON line, the
//! orders that build it from empty, so a saved file can be read and edited by hand.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    io::{self, BufRead, Write},
    net::SocketAddr,
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::{
    certificate::CertificateFacts,
    request::{
        AddBackend, CertificateAndKey, Cluster, ClusterId, Fault, Fingerprint, HttpFrontend,
        HttpListenerConfig, HttpsListenerConfig, ListenerType, Order, RemoveBackend,
        SetHealthCheck, TcpFrontend, TcpListenerConfig,
    },
    rules::{self, FieldsChecked},
};

/// A listener's settings and whether it accepts connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerState<T> {
    /// The listener's settings, as added and then updated.
    pub config: T,
    /// Whether the listener accepts connections (`ACTIVATE_LISTENER` sets it, `DEACTIVATE_LISTENER`
    /// clears it).
    pub active: bool,
}

/// A certificate loaded on an HTTPS listener, with what was read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    /// The certificate, its chain and its private key, in PEM: in a worker, the very text its
    /// TLS table decodes at the certificate's first handshake ([`Checked::with_shared_certificate`]).
    pub certificate: Arc<CertificateAndKey>,
    /// As the order that added it said. The state never judges a certificate's validity
    /// against the clock: the main process does, once, for the orders of its clients (see
    /// [`crate::certificate::check_not_expired`]), so that replaying a state (a restarted worker, an
    /// upgrade, a state file) always rebuilds it whole, expired certificates included.
    pub allow_expired: bool,
    /// The names the certificate answers for (its subject alternative names, or its common name).
    pub names: Vec<String>,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// The routing state. Two states are equal when they route the same way.
///
/// Invariants, kept by [`ConfigState::apply`]: every frontend's listener exists and has the
/// frontend's kind; every frontend's and backend's cluster exists; a listener address is used
/// by one listener only; certificates belong to existing HTTPS listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigState {
    /// HTTP listeners by address.
    pub http_listeners: BTreeMap<SocketAddr, ListenerState<HttpListenerConfig>>,
    /// HTTPS listeners by address.
    pub https_listeners: BTreeMap<SocketAddr, ListenerState<HttpsListenerConfig>>,
    /// TCP listeners by address.
    pub tcp_listeners: BTreeMap<SocketAddr, ListenerState<TcpListenerConfig>>,
    /// Clusters by id.
    pub clusters: BTreeMap<String, Cluster>,
    /// Backends by cluster, then by backend id.
    pub backends: BTreeMap<String, BTreeMap<String, AddBackend>>,
    /// HTTP frontends, by listener address, hostname, path and method. Shared: a worker's
    /// router holds the same frontends (see [`ConfigState::http_frontends_of`]).
    pub http_frontends: HttpFrontends,
    /// HTTPS frontends, by listener address, hostname, path and method.
    pub https_frontends: HttpFrontends,
    /// The TCP frontends of each TCP listener, in the order they were added (which breaks
    /// ties between rules of the same specificity); at most one has no rule (the default).
    pub tcp_frontends: BTreeMap<SocketAddr, Vec<TcpFrontend>>,
    /// SNI certificates of each HTTPS listener, by fingerprint.
    pub certificates: BTreeMap<SocketAddr, BTreeMap<Fingerprint, CertificateState>>,
    /// The global cap on connections from one client address to one cluster; 0 is no cap.
    pub max_connections_per_ip: u64,
    /// Faults by name (see [`faults`]).
    pub faults: BTreeMap<String, Fault>,
}

impl ConfigState {
    /// An empty state: no listener, cluster, frontend, certificate nor fault.
    pub fn new() -> Self {
        ConfigState::default()
    }

    /// Validates `order` (its fields by [`rules::check_order`], then against the state) and
    /// applies it. On error the state is unchanged.
    pub fn apply(&mut self, order: &Order) -> Result<(), StateError> {
        let fields = rules::check_order(order)?;
        self.apply_checked(order, Checked::new(fields))
    }

    /// [`ConfigState::apply`] of an order whose check found what `checked` holds: its fields
    /// are not checked again, and its certificate is not read again when `checked` has its
    /// facts. On error the state is unchanged.
    pub fn apply_checked(&mut self, order: &Order, checked: Checked) -> Result<(), StateError> {
        match (order, checked.frontend) {
            (Order::AddHttpFrontend(_), Some(frontend)) => {
                self.insert_checked_frontend(frontend, ListenerType::Http)
            }
            (Order::AddHttpsFrontend(_), Some(frontend)) => {
                self.insert_checked_frontend(frontend, ListenerType::Https)
            }
            _ => self.change(order, checked.certificate, checked.shared_certificate),
        }
    }

    /// [`ConfigState::apply_checked`] of an `ADD_HTTP_FRONTEND` (`kind` HTTP) or
    /// `ADD_HTTPS_FRONTEND` (`kind` HTTPS) order whose frontend the caller took out of it after
    /// its check ([`rules::check_frontend`]): the state keeps `frontend`, shared with its other
    /// holders.
    pub fn add_checked_frontend(
        &mut self,
        frontend: Arc<HttpFrontend>,
        kind: ListenerType,
        _fields: FieldsChecked,
    ) -> Result<(), StateError> {
        self.insert_checked_frontend(frontend, kind)
    }

    fn insert_checked_frontend(
        &mut self,
        frontend: Arc<HttpFrontend>,
        kind: ListenerType,
    ) -> Result<(), StateError> {
        self.insert_shared_http_frontend(frontend, kind)
            .map_err(|refused| refused.0)
    }

    /// [`ConfigState::apply_checked`] of an order the caller gives away: the frontend it adds
    /// is kept as it is instead of copied (a start builds 100,000 of them). On error the state
    /// is unchanged and the order is given back.
    pub fn apply_owned(
        &mut self,
        order: Order,
        checked: Checked,
    ) -> Result<(), Box<(StateError, Order)>> {
        let (frontend, kind) = match order {
            Order::AddHttpFrontend(frontend) => (frontend, ListenerType::Http),
            Order::AddHttpsFrontend(frontend) => (frontend, ListenerType::Https),
            other => {
                return self
                    .change(&other, checked.certificate, checked.shared_certificate)
                    .map_err(|error| Box::new((error, other)));
            }
        };
        self.insert_http_frontend(frontend, kind)
            .map_err(|refused| {
                let (error, frontend) = *refused;
                let order = if kind == ListenerType::Https {
                    Order::AddHttpsFrontend(frontend)
                } else {
                    Order::AddHttpFrontend(frontend)
                };
                Box::new((error, order))
            })
    }

    /// Applies an order whose fields are checked; `certificate`, when given, holds the facts
    /// of the certificate the order brings, and `shared` that certificate, kept instead of a
    /// copy.
    fn change(
        &mut self,
        order: &Order,
        certificate: Option<CertificateFacts>,
        shared: Option<Arc<CertificateAndKey>>,
    ) -> Result<(), StateError> {
        match order {
            Order::AddCluster(cluster) => self.add_cluster(cluster),
            Order::RemoveCluster(id) => self.remove_cluster(id),
            Order::AddBackend(backend) => self.add_backend(backend),
            Order::RemoveBackend(backend) => self.remove_backend(backend),
            Order::AddHttpFrontend(frontend) => {
                self.add_http_frontend(frontend, ListenerType::Http)
            }
            Order::RemoveHttpFrontend(frontend) => {
                self.remove_http_frontend(frontend, ListenerType::Http)
            }
            Order::AddHttpsFrontend(frontend) => {
                self.add_http_frontend(frontend, ListenerType::Https)
            }
            Order::RemoveHttpsFrontend(frontend) => {
                self.remove_http_frontend(frontend, ListenerType::Https)
            }
            Order::AddTcpFrontend(frontend) => self.add_tcp_frontend(frontend),
            Order::RemoveTcpFrontend(frontend) => self.remove_tcp_frontend(frontend),
            Order::AddCertificate(add) => self.add_certificate(add, certificate, shared),
            Order::ReplaceCertificate(replace) => {
                self.replace_certificate(replace, certificate, shared)
            }
            Order::RemoveCertificate(remove) => self.remove_certificate(remove),
            Order::AddHttpListener(config) => self.add_http_listener(config),
            Order::AddHttpsListener(config) => self.add_https_listener(config),
            Order::AddTcpListener(config) => self.add_tcp_listener(config),
            Order::RemoveListener(listener) => self.remove_listener(listener),
            Order::ActivateListener(listener) => self.set_listener_active(listener, true),
            Order::DeactivateListener(listener) => self.set_listener_active(listener, false),
            Order::UpdateHttpListenerConfig(update) => self.update_http_listener(update),
            Order::UpdateHttpsListenerConfig(update) => self.update_https_listener(update),
            Order::UpdateTcpListenerConfig(update) => self.update_tcp_listener(update),
            Order::SetMaxConnectionsPerIp(limit) => {
                self.max_connections_per_ip = limit.max_connections_per_ip;
                Ok(())
            }
            Order::SetHealthCheck(set) => self.set_health_check(set),
            Order::RemoveHealthCheck(id) => {
                self.cluster_mut(&id.cluster_id)?.health_check = None;
                Ok(())
            }
            Order::AddFault(add) => self.add_fault(&add.fault),
            Order::UpdateFault(update) => self.update_fault(&update.fault),
            Order::RemoveFault(fault) => self.remove_fault(&fault.name),
            Order::ResetFaults => {
                self.faults.clear();
                Ok(())
            }
            other => Err(StateError::NotAStateChange {
                order: other.name(),
            }),
        }
    }

    fn cluster_mut(&mut self, cluster_id: &str) -> Result<&mut Cluster, StateError> {
        self.clusters
            .get_mut(cluster_id)
            .ok_or_else(|| StateError::NoCluster(cluster_id.to_string()))
    }

    fn require_cluster(&self, cluster_id: &str) -> Result<(), StateError> {
        if self.clusters.contains_key(cluster_id) {
            Ok(())
        } else {
            Err(StateError::NoCluster(cluster_id.to_string()))
        }
    }

    /// Adds a cluster, or replaces the settings of an existing one (its frontends and backends
    /// stay), as Sōzu does: the CLI changes a cluster by sending it again.
    fn add_cluster(&mut self, cluster: &Cluster) -> Result<(), StateError> {
        self.clusters
            .insert(cluster.cluster_id.clone(), cluster.clone());
        Ok(())
    }

    /// Removes a cluster with its backends and frontends.
    fn remove_cluster(&mut self, id: &ClusterId) -> Result<(), StateError> {
        let cluster_id = &id.cluster_id;
        self.clusters
            .remove(cluster_id)
            .ok_or_else(|| StateError::NoCluster(cluster_id.clone()))?;
        self.backends.remove(cluster_id);
        let belongs = |frontend: &HttpFrontend| frontend.cluster_id.as_ref() == Some(cluster_id);
        self.http_frontends.retain(|frontend| !belongs(frontend));
        self.https_frontends.retain(|frontend| !belongs(frontend));
        for frontends in self.tcp_frontends.values_mut() {
            frontends.retain(|frontend| &frontend.cluster_id != cluster_id);
        }
        self.tcp_frontends
            .retain(|_, frontends| !frontends.is_empty());
        self.remove_cluster_faults(cluster_id);
        Ok(())
    }

    fn add_backend(&mut self, backend: &AddBackend) -> Result<(), StateError> {
        self.require_cluster(&backend.cluster_id)?;
        match self
            .backends
            .entry(backend.cluster_id.clone())
            .or_default()
            .entry(backend.backend_id.clone())
        {
            Entry::Occupied(_) => Err(StateError::BackendExists {
                cluster: backend.cluster_id.clone(),
                backend: backend.backend_id.clone(),
            }),
            Entry::Vacant(entry) => {
                entry.insert(backend.clone());
                Ok(())
            }
        }
    }

    fn remove_backend(&mut self, backend: &RemoveBackend) -> Result<(), StateError> {
        let missing = || StateError::NoBackend {
            cluster: backend.cluster_id.clone(),
            backend: backend.backend_id.clone(),
        };
        let backends = self
            .backends
            .get_mut(&backend.cluster_id)
            .ok_or_else(missing)?;
        let existing = backends.get(&backend.backend_id).ok_or_else(missing)?;
        if existing.address != backend.address {
            return Err(StateError::BackendAddressMismatch {
                cluster: backend.cluster_id.clone(),
                backend: backend.backend_id.clone(),
                actual: existing.address,
                given: backend.address,
            });
        }
        backends.remove(&backend.backend_id);
        if backends.is_empty() {
            self.backends.remove(&backend.cluster_id);
        }
        Ok(())
    }

    fn add_http_frontend(
        &mut self,
        frontend: &HttpFrontend,
        kind: ListenerType,
    ) -> Result<(), StateError> {
        self.insert_http_frontend(frontend.clone(), kind)
            .map_err(|refused| refused.0)
    }

    /// Keeps `frontend` once its listener and cluster are found and no frontend has its key;
    /// otherwise gives it back with the reason.
    fn insert_http_frontend(
        &mut self,
        frontend: HttpFrontend,
        kind: ListenerType,
    ) -> Result<(), Box<(StateError, HttpFrontend)>> {
        self.insert_shared_http_frontend(Arc::new(frontend), kind)
            .map_err(|refused| {
                let (error, frontend) = *refused;
                Box::new((error, Arc::unwrap_or_clone(frontend)))
            })
    }

    /// [`ConfigState::insert_http_frontend`] of a frontend shared with its holders.
    fn insert_shared_http_frontend(
        &mut self,
        frontend: Arc<HttpFrontend>,
        kind: ListenerType,
    ) -> Result<(), Box<(StateError, Arc<HttpFrontend>)>> {
        let known = self
            .require_listener(frontend.address, kind)
            .and_then(|()| match &frontend.cluster_id {
                Some(cluster_id) => self.require_cluster(cluster_id),
                None => Ok(()),
            });
        if let Err(error) = known {
            return Err(Box::new((error, frontend)));
        }
        self.http_frontends_mut(kind)
            .insert(frontend)
            .map_err(|frontend| Box::new((StateError::FrontendExists(frontend.key()), frontend)))
    }

    fn remove_http_frontend(
        &mut self,
        frontend: &HttpFrontend,
        kind: ListenerType,
    ) -> Result<(), StateError> {
        let key = frontend.key();
        match self.http_frontends_mut(kind).remove(&key) {
            Some(_) => Ok(()),
            None => Err(StateError::NoFrontend(key)),
        }
    }

    /// The HTTP frontends, or the HTTPS ones for [`ListenerType::Https`].
    pub fn http_frontends_of(&self, kind: ListenerType) -> &HttpFrontends {
        if kind == ListenerType::Https {
            &self.https_frontends
        } else {
            &self.http_frontends
        }
    }

    fn http_frontends_mut(&mut self, kind: ListenerType) -> &mut HttpFrontends {
        if kind == ListenerType::Https {
            &mut self.https_frontends
        } else {
            &mut self.http_frontends
        }
    }

    /// Adds a TCP frontend after those of its listener. Two frontends of a listener never
    /// carry the same rule (nor both none), since only the first could ever take a connection.
    fn add_tcp_frontend(&mut self, frontend: &TcpFrontend) -> Result<(), StateError> {
        self.require_listener(frontend.address, ListenerType::Tcp)?;
        self.require_cluster(&frontend.cluster_id)?;
        if let Some(existing) = self.tcp_frontend_with_rule_of(frontend) {
            return Err(StateError::TcpFrontendExists {
                address: frontend.address,
                rule: TcpRuleName(frontend.rule.clone()),
                cluster: existing.cluster_id.clone(),
            });
        }
        self.tcp_frontends
            .entry(frontend.address)
            .or_default()
            .push(frontend.clone());
        Ok(())
    }

    /// The frontend of `frontend`'s listener that takes the same connections, whatever its
    /// cluster.
    pub fn tcp_frontend_with_rule_of(&self, frontend: &TcpFrontend) -> Option<&TcpFrontend> {
        self.tcp_frontends
            .get(&frontend.address)?
            .iter()
            .find(|f| f.is_same_rule(frontend))
    }

    /// Removes the frontend of the same listener, rule and cluster.
    fn remove_tcp_frontend(&mut self, frontend: &TcpFrontend) -> Result<(), StateError> {
        let missing = || StateError::NoTcpFrontend {
            address: frontend.address,
            rule: TcpRuleName(frontend.rule.clone()),
            cluster: frontend.cluster_id.clone(),
        };
        let frontends = self
            .tcp_frontends
            .get_mut(&frontend.address)
            .ok_or_else(missing)?;
        let position = frontends
            .iter()
            .position(|f| f.is_same_rule(frontend) && f.cluster_id == frontend.cluster_id)
            .ok_or_else(missing)?;
        frontends.remove(position);
        if frontends.is_empty() {
            self.tcp_frontends.remove(&frontend.address);
        }
        Ok(())
    }

    /// The frontend without a rule of the TCP listener on `address`: where connections go
    /// when no rule (and no script) decides.
    pub fn default_tcp_frontend(&self, address: SocketAddr) -> Option<&TcpFrontend> {
        self.tcp_frontends
            .get(&address)?
            .iter()
            .find(|frontend| frontend.rule.is_none())
    }

    fn set_health_check(&mut self, set: &SetHealthCheck) -> Result<(), StateError> {
        self.cluster_mut(&set.cluster_id)?.health_check = Some(set.health_check.clone());
        Ok(())
    }

    /// Writes the state as one order per JSON line.
    pub fn save(&self, writer: &mut impl Write) -> io::Result<()> {
        for order in self.orders() {
            serde_json::to_writer(&mut *writer, &order)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    }

    /// Reads a state saved by [`ConfigState::save`] (or written by hand): one order per line;
    /// blank lines and lines starting with `#` are skipped. The first bad line is named.
    pub fn load(reader: impl BufRead) -> Result<ConfigState, LoadError> {
        let mut state = ConfigState::new();
        for (index, line) in reader.lines().enumerate() {
            let line_number = index + 1;
            let line = line.map_err(|source| LoadError::Read {
                line: line_number,
                source,
            })?;
            let text = line.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let order: Order = serde_json::from_str(text).map_err(|source| LoadError::Parse {
                line: line_number,
                source,
            })?;
            state.apply(&order).map_err(|source| LoadError::Apply {
                line: line_number,
                order: order.name(),
                source: Box::new(source),
            })?;
        }
        Ok(state)
    }

    /// Per-cluster hashes of the routing state, to compare workers cheaply.
    pub fn cluster_hashes(&self) -> BTreeMap<String, u64> {
        use std::hash::{Hash, Hasher};
        self.clusters
            .keys()
            .map(|cluster_id| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                self.clusters.get(cluster_id).hash(&mut hasher);
                self.backends.get(cluster_id).hash(&mut hasher);
                let belongs = |f: &&Arc<HttpFrontend>| f.cluster_id.as_ref() == Some(cluster_id);
                self.http_frontends
                    .values()
                    .filter(belongs)
                    .for_each(|frontend| frontend.hash(&mut hasher));
                self.https_frontends
                    .values()
                    .filter(belongs)
                    .for_each(|frontend| frontend.hash(&mut hasher));
                self.tcp_frontends
                    .values()
                    .flatten()
                    .filter(|frontend| &frontend.cluster_id == cluster_id)
                    .for_each(|frontend| frontend.hash(&mut hasher));
                (cluster_id.clone(), hasher.finish())
            })
            .collect()
    }
}

/// What the check of an order found, so that [`ConfigState::apply_checked`] does not find it
/// again: the proof that its fields are checked, and what the check read of the order (the
/// facts of the certificate it brings, the frontend it adds shared with a worker's router).
#[derive(Debug, Clone)]
pub struct Checked {
    certificate: Option<CertificateFacts>,
    shared_certificate: Option<Arc<CertificateAndKey>>,
    frontend: Option<Arc<HttpFrontend>>,
}

impl Checked {
    /// An order whose fields [`rules::check_order`] accepted.
    pub fn new(_fields: FieldsChecked) -> Self {
        Checked {
            certificate: None,
            shared_certificate: None,
            frontend: None,
        }
    }

    /// With the facts of the certificate the order brings (`ADD_CERTIFICATE`,
    /// `REPLACE_CERTIFICATE`), read from that certificate by the caller's check.
    pub fn with_certificate(mut self, facts: CertificateFacts) -> Self {
        self.certificate = Some(facts);
        self
    }

    /// With the certificate the order brings (`ADD_CERTIFICATE`, `REPLACE_CERTIFICATE`), equal
    /// to the order's: the state keeps this one instead of a copy, shared with its other
    /// holders (a worker's TLS table, which decodes it at first use: each key's text is held
    /// once).
    pub fn with_shared_certificate(mut self, certificate: Arc<CertificateAndKey>) -> Self {
        self.shared_certificate = Some(certificate);
        self
    }

    /// The facts of the certificate the order brings, when the check read them: the main
    /// process gives them to its workers with the order.
    pub fn certificate(&self) -> Option<&CertificateFacts> {
        self.certificate.as_ref()
    }

    /// With the frontend the order adds (`ADD_HTTP_FRONTEND`, `ADD_HTTPS_FRONTEND`), equal to
    /// the order's: the state keeps this one instead of a copy, shared with its other holders.
    pub fn with_frontend(mut self, frontend: Arc<HttpFrontend>) -> Self {
        self.frontend = Some(frontend);
        self
    }
}

mod certificates;
mod diff;
mod error;
mod faults;
mod frontends;
mod listeners;
pub mod sozu_format;
pub mod sozu_records;

pub use error::{LoadError, StateError, TcpRuleName};
pub use frontends::HttpFrontends;

#[cfg(test)]
mod tests;
