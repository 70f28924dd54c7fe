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
};

use serde::{Deserialize, Serialize};

use crate::{
    certificate::{self, CertificateError, CertificateFacts},
    request::{
        AddBackend, AddCertificate, CertificateAndKey, CertificateFilters, Cluster, ClusterId,
        ConnectionLimit, Fault, Fingerprint, FrontendKey, HttpFrontend, HttpListenerConfig,
        HttpListenerPatch, HttpsListenerConfig, ListenerAddress, ListenerType, Order,
        RemoveBackend, RemoveCertificate, ReplaceCertificate, SetHealthCheck, TcpFrontend,
        TcpListenerConfig, TcpRule, TlsListenerPatch, UpdateHttpListener, UpdateHttpsListener,
        UpdateTcpListener,
    },
    response::CertificateSummary,
    rules::{self, InvalidField},
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
    /// The certificate, its chain and its private key, in PEM.
    pub certificate: CertificateAndKey,
    /// As the order that added it said. The state never judges a certificate's validity
    /// against the clock: the main process does, once, for the orders of its clients (see
    /// [`certificate::check_not_expired`]), so that replaying a state (a restarted worker, an
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
    /// HTTP frontends, by listener address, hostname, path and method.
    pub http_frontends: BTreeMap<FrontendKey, HttpFrontend>,
    /// HTTPS frontends, by listener address, hostname, path and method.
    pub https_frontends: BTreeMap<FrontendKey, HttpFrontend>,
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

/// Why an order was refused. The message names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The order is a query or acts on processes: the state has nothing to apply.
    #[error("{order} does not change the routing state")]
    NotAStateChange {
        /// The order's name.
        order: &'static str,
    },
    /// `ADD_*_LISTENER` on an address another listener has.
    #[error("a {existing} listener already uses {address}")]
    ListenerExists {
        /// The address asked for.
        address: SocketAddr,
        /// The kind of the listener that has it.
        existing: ListenerType,
    },
    /// The order names a listener that does not exist, or is of another kind.
    #[error("no {kind} listener on {address}")]
    NoListener {
        /// The address named.
        address: SocketAddr,
        /// The kind of listener the order needs.
        kind: ListenerType,
    },
    /// The order names a cluster that does not exist.
    #[error("no cluster `{0}`")]
    NoCluster(String),
    /// A field breaks its rule (range or bytes).
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// `ADD_BACKEND` with the id of a backend the cluster has already.
    #[error("cluster `{cluster}` already has a backend `{backend}`")]
    BackendExists {
        /// The cluster named.
        cluster: String,
        /// The backend id given.
        backend: String,
    },
    /// `REMOVE_BACKEND` of a backend the cluster does not have.
    #[error("cluster `{cluster}` has no backend `{backend}`")]
    NoBackend {
        /// The cluster named.
        cluster: String,
        /// The backend id given.
        backend: String,
    },
    /// `REMOVE_BACKEND` names a backend by id with another address than its own.
    #[error("backend `{backend}` of cluster `{cluster}` has address {actual}, not {given}")]
    BackendAddressMismatch {
        /// The cluster named.
        cluster: String,
        /// The backend named.
        backend: String,
        /// The backend's address.
        actual: SocketAddr,
        /// The address the order gave.
        given: SocketAddr,
    },
    /// `ADD_HTTP(S)_FRONTEND` with the hostname, path and method of a frontend there already.
    #[error("a frontend for {0} already exists")]
    FrontendExists(FrontendKey),
    /// `REMOVE_HTTP(S)_FRONTEND` of a frontend that does not exist.
    #[error("no frontend for {0}")]
    NoFrontend(FrontendKey),
    /// `ADD_TCP_FRONTEND` with the rule of a frontend the listener has already.
    #[error("the TCP listener {address} already has a frontend {rule} (cluster `{cluster}`)")]
    TcpFrontendExists {
        /// The TCP listener.
        address: SocketAddr,
        /// The rule of both frontends.
        rule: TcpRuleName,
        /// The cluster of the frontend there already.
        cluster: String,
    },
    /// `REMOVE_TCP_FRONTEND` of a frontend that does not exist (listener, rule and cluster).
    #[error("no TCP frontend {rule} on {address} for cluster `{cluster}`")]
    NoTcpFrontend {
        /// The TCP listener.
        address: SocketAddr,
        /// The rule given.
        rule: TcpRuleName,
        /// The cluster given.
        cluster: String,
    },
    /// A certificate that does not parse, does not match its key, or was refused for its dates.
    #[error("invalid certificate for {address}")]
    Certificate {
        /// The HTTPS listener.
        address: SocketAddr,
        /// What is wrong with it.
        source: CertificateError,
    },
    /// A certificate the listener has already.
    #[error("certificate {fingerprint} is already loaded on {address}")]
    CertificateExists {
        /// The HTTPS listener.
        address: SocketAddr,
        /// The certificate's fingerprint.
        fingerprint: Fingerprint,
    },
    /// `ADD_FAULT` with the name of a fault that exists.
    #[error("a fault `{0}` already exists")]
    FaultExists(String),
    /// `UPDATE_FAULT` or `REMOVE_FAULT` of a fault that does not exist.
    #[error("no fault `{0}`")]
    NoFault(String),
    /// A fault aimed at a frontend of a listener that does not exist.
    #[error("no listener on {0} for the fault's frontend")]
    NoFaultListener(SocketAddr),
    /// `REMOVE_CERTIFICATE` or `REPLACE_CERTIFICATE` of a certificate the listener does not have.
    #[error("no certificate {fingerprint} on {address}")]
    NoCertificate {
        /// The HTTPS listener.
        address: SocketAddr,
        /// The fingerprint given.
        fingerprint: Fingerprint,
    },
}

impl ConfigState {
    /// An empty state: no listener, cluster, frontend, certificate nor fault.
    pub fn new() -> Self {
        ConfigState::default()
    }

    /// Validates `order` (its fields by [`rules::check_order`], then against the state) and
    /// applies it. On error the state is unchanged.
    pub fn apply(&mut self, order: &Order) -> Result<(), StateError> {
        rules::check_order(order)?;
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
            Order::AddCertificate(add) => self.add_certificate(add),
            Order::ReplaceCertificate(replace) => self.replace_certificate(replace),
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
        self.http_frontends.retain(|_, frontend| !belongs(frontend));
        self.https_frontends
            .retain(|_, frontend| !belongs(frontend));
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

    fn require_listener(&self, address: SocketAddr, kind: ListenerType) -> Result<(), StateError> {
        if self.listener_kind(address) == Some(kind) {
            Ok(())
        } else {
            Err(StateError::NoListener { address, kind })
        }
    }

    /// The kind of the listener on `address`, if any.
    pub fn listener_kind(&self, address: SocketAddr) -> Option<ListenerType> {
        if self.http_listeners.contains_key(&address) {
            Some(ListenerType::Http)
        } else if self.https_listeners.contains_key(&address) {
            Some(ListenerType::Https)
        } else if self.tcp_listeners.contains_key(&address) {
            Some(ListenerType::Tcp)
        } else {
            None
        }
    }

    fn add_http_frontend(
        &mut self,
        frontend: &HttpFrontend,
        kind: ListenerType,
    ) -> Result<(), StateError> {
        self.require_listener(frontend.address, kind)?;
        if let Some(cluster_id) = &frontend.cluster_id {
            self.require_cluster(cluster_id)?;
        }
        let frontends = self.http_frontends_mut(kind);
        match frontends.entry(frontend.key()) {
            Entry::Occupied(entry) => Err(StateError::FrontendExists(entry.key().clone())),
            Entry::Vacant(entry) => {
                entry.insert(frontend.clone());
                Ok(())
            }
        }
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

    fn http_frontends_mut(
        &mut self,
        kind: ListenerType,
    ) -> &mut BTreeMap<FrontendKey, HttpFrontend> {
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

    fn inspect_certificate(
        address: SocketAddr,
        certificate: &CertificateAndKey,
    ) -> Result<CertificateFacts, StateError> {
        certificate::inspect(certificate)
            .map_err(|source| StateError::Certificate { address, source })
    }

    fn add_certificate(&mut self, add: &AddCertificate) -> Result<(), StateError> {
        self.require_listener(add.address, ListenerType::Https)?;
        let facts = Self::inspect_certificate(add.address, &add.certificate)?;
        let certificates = self.certificates.entry(add.address).or_default();
        if certificates.contains_key(&facts.fingerprint) {
            return Err(StateError::CertificateExists {
                address: add.address,
                fingerprint: facts.fingerprint,
            });
        }
        certificates.insert(
            facts.fingerprint,
            CertificateState {
                certificate: add.certificate.clone(),
                allow_expired: add.allow_expired,
                names: facts.names,
                not_after: facts.not_after,
            },
        );
        Ok(())
    }

    fn replace_certificate(&mut self, replace: &ReplaceCertificate) -> Result<(), StateError> {
        let address = replace.address;
        self.require_listener(address, ListenerType::Https)?;
        let facts = Self::inspect_certificate(address, &replace.new_certificate)?;
        let no_old = || StateError::NoCertificate {
            address,
            fingerprint: replace.old_fingerprint.clone(),
        };
        let certificates = self.certificates.get_mut(&address).ok_or_else(no_old)?;
        if !certificates.contains_key(&replace.old_fingerprint) {
            return Err(no_old());
        }
        if facts.fingerprint != replace.old_fingerprint
            && certificates.contains_key(&facts.fingerprint)
        {
            return Err(StateError::CertificateExists {
                address,
                fingerprint: facts.fingerprint,
            });
        }
        certificates.remove(&replace.old_fingerprint);
        certificates.insert(
            facts.fingerprint,
            CertificateState {
                certificate: replace.new_certificate.clone(),
                allow_expired: replace.allow_expired,
                names: facts.names,
                not_after: facts.not_after,
            },
        );
        Ok(())
    }

    fn remove_certificate(&mut self, remove: &RemoveCertificate) -> Result<(), StateError> {
        let missing = || StateError::NoCertificate {
            address: remove.address,
            fingerprint: remove.fingerprint.clone(),
        };
        let certificates = self
            .certificates
            .get_mut(&remove.address)
            .ok_or_else(missing)?;
        certificates
            .remove(&remove.fingerprint)
            .ok_or_else(missing)?;
        if certificates.is_empty() {
            self.certificates.remove(&remove.address);
        }
        Ok(())
    }

    fn require_free_address(&self, address: SocketAddr) -> Result<(), StateError> {
        match self.listener_kind(address) {
            Some(existing) => Err(StateError::ListenerExists { address, existing }),
            None => Ok(()),
        }
    }

    fn add_http_listener(&mut self, config: &HttpListenerConfig) -> Result<(), StateError> {
        self.require_free_address(config.address)?;
        self.http_listeners.insert(
            config.address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    fn add_https_listener(&mut self, config: &HttpsListenerConfig) -> Result<(), StateError> {
        let address = config.http.address;
        self.require_free_address(address)?;
        if let Some(certificate) = &config.tls.certificate {
            Self::inspect_certificate(address, certificate)?;
        }
        self.https_listeners.insert(
            address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    fn add_tcp_listener(&mut self, config: &TcpListenerConfig) -> Result<(), StateError> {
        self.require_free_address(config.address)?;
        self.tcp_listeners.insert(
            config.address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    /// Removes a listener with its frontends and certificates.
    fn remove_listener(&mut self, listener: &ListenerAddress) -> Result<(), StateError> {
        let address = listener.address;
        self.require_listener(address, listener.proxy)?;
        match listener.proxy {
            ListenerType::Http => {
                self.http_listeners.remove(&address);
                self.http_frontends.retain(|key, _| key.address != address);
            }
            ListenerType::Https => {
                self.https_listeners.remove(&address);
                self.https_frontends.retain(|key, _| key.address != address);
                self.certificates.remove(&address);
            }
            ListenerType::Tcp => {
                self.tcp_listeners.remove(&address);
                self.tcp_frontends.remove(&address);
            }
        }
        self.remove_listener_faults(address);
        Ok(())
    }

    fn set_listener_active(
        &mut self,
        listener: &ListenerAddress,
        active: bool,
    ) -> Result<(), StateError> {
        let address = listener.address;
        let missing = || StateError::NoListener {
            address,
            kind: listener.proxy,
        };
        let flag = match listener.proxy {
            ListenerType::Http => self.http_listeners.get_mut(&address).map(|l| &mut l.active),
            ListenerType::Https => self
                .https_listeners
                .get_mut(&address)
                .map(|l| &mut l.active),
            ListenerType::Tcp => self.tcp_listeners.get_mut(&address).map(|l| &mut l.active),
        };
        *flag.ok_or_else(missing)? = active;
        Ok(())
    }

    fn update_http_listener(&mut self, update: &UpdateHttpListener) -> Result<(), StateError> {
        let listener =
            self.http_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Http,
                })?;
        update.http.apply(&mut listener.config);
        Ok(())
    }

    fn update_https_listener(&mut self, update: &UpdateHttpsListener) -> Result<(), StateError> {
        if let Some(Some(certificate)) = &update.tls.certificate {
            Self::inspect_certificate(update.address, certificate)?;
        }
        let listener =
            self.https_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Https,
                })?;
        update.http.apply(&mut listener.config.http);
        update.tls.apply(&mut listener.config.tls);
        Ok(())
    }

    fn update_tcp_listener(&mut self, update: &UpdateTcpListener) -> Result<(), StateError> {
        let listener =
            self.tcp_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Tcp,
                })?;
        update.apply(&mut listener.config);
        Ok(())
    }

    fn set_health_check(&mut self, set: &SetHealthCheck) -> Result<(), StateError> {
        self.cluster_mut(&set.cluster_id)?.health_check = Some(set.health_check.clone());
        Ok(())
    }

    /// The orders that turn `self` into `target`.
    ///
    /// Removals come before additions where they could collide (a frontend whose settings
    /// changed is removed, then added), and new certificates are added before old ones are
    /// removed, so a listener that keeps serving never lacks a certificate.
    pub fn diff(&self, target: &ConfigState) -> Vec<Order> {
        let mut orders = Vec::new();
        self.diff_removed_faults(target, &mut orders);
        self.diff_removed_frontends(target, &mut orders);
        self.diff_removed_backends(target, &mut orders);
        for cluster_id in self.clusters.keys() {
            if !target.clusters.contains_key(cluster_id) {
                orders.push(Order::RemoveCluster(ClusterId {
                    cluster_id: cluster_id.clone(),
                }));
            }
        }
        self.diff_listeners(target, &mut orders);
        for (cluster_id, cluster) in &target.clusters {
            if self.clusters.get(cluster_id) != Some(cluster) {
                orders.push(Order::AddCluster(cluster.clone()));
            }
        }
        for (cluster_id, backends) in &target.backends {
            let current = self.backends.get(cluster_id);
            for (backend_id, backend) in backends {
                if current.and_then(|c| c.get(backend_id)) != Some(backend) {
                    orders.push(Order::AddBackend(backend.clone()));
                }
            }
        }
        self.diff_certificates(target, &mut orders);
        for (key, frontend) in &target.http_frontends {
            if self.http_frontends.get(key) != Some(frontend) {
                orders.push(Order::AddHttpFrontend(frontend.clone()));
            }
        }
        for (key, frontend) in &target.https_frontends {
            if self.https_frontends.get(key) != Some(frontend) {
                orders.push(Order::AddHttpsFrontend(frontend.clone()));
            }
        }
        for (address, frontends) in &target.tcp_frontends {
            let kept = kept_tcp_frontends(self.tcp_frontends.get(address), frontends);
            for frontend in frontends.iter().skip(kept) {
                orders.push(Order::AddTcpFrontend(frontend.clone()));
            }
        }
        self.diff_activation(target, &mut orders);
        if self.max_connections_per_ip != target.max_connections_per_ip {
            orders.push(Order::SetMaxConnectionsPerIp(ConnectionLimit {
                max_connections_per_ip: target.max_connections_per_ip,
            }));
        }
        self.diff_added_faults(target, &mut orders);
        orders
    }

    /// Frontends that are gone or changed in `target`. Those of a listener that changes kind
    /// are removed too, since the listener goes first.
    fn diff_removed_frontends(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        for (key, frontend) in &self.http_frontends {
            if target.http_frontends.get(key) != Some(frontend) {
                orders.push(Order::RemoveHttpFrontend(frontend.clone()));
            }
        }
        for (key, frontend) in &self.https_frontends {
            if target.https_frontends.get(key) != Some(frontend) {
                orders.push(Order::RemoveHttpsFrontend(frontend.clone()));
            }
        }
        for (address, frontends) in &self.tcp_frontends {
            let kept = kept_tcp_frontends(target.tcp_frontends.get(address), frontends);
            for frontend in frontends.iter().skip(kept) {
                orders.push(Order::RemoveTcpFrontend(frontend.clone()));
            }
        }
    }

    fn diff_removed_backends(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        for (cluster_id, backends) in &self.backends {
            let kept = target.backends.get(cluster_id);
            for (backend_id, backend) in backends {
                if kept.and_then(|k| k.get(backend_id)) != Some(backend) {
                    orders.push(Order::RemoveBackend(RemoveBackend {
                        cluster_id: cluster_id.clone(),
                        backend_id: backend_id.clone(),
                        address: backend.address,
                        drain_timeout: None,
                    }));
                }
            }
        }
    }

    /// Removes listeners that are gone (or change kind), adds new ones, and updates the
    /// settings of those that stay.
    fn diff_listeners(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        let remove = |address: &SocketAddr, proxy| {
            Order::RemoveListener(ListenerAddress {
                address: *address,
                proxy,
            })
        };
        for address in self.http_listeners.keys() {
            if !target.http_listeners.contains_key(address) {
                orders.push(remove(address, ListenerType::Http));
            }
        }
        for address in self.https_listeners.keys() {
            if !target.https_listeners.contains_key(address) {
                orders.push(remove(address, ListenerType::Https));
            }
        }
        for address in self.tcp_listeners.keys() {
            if !target.tcp_listeners.contains_key(address) {
                orders.push(remove(address, ListenerType::Tcp));
            }
        }
        for (address, listener) in &target.http_listeners {
            match self.http_listeners.get(address) {
                None => orders.push(Order::AddHttpListener(listener.config.clone())),
                Some(current) => {
                    let patch = HttpListenerPatch::between(&current.config, &listener.config);
                    if !patch.is_empty() {
                        orders.push(Order::UpdateHttpListenerConfig(UpdateHttpListener {
                            address: *address,
                            http: patch,
                        }));
                    }
                }
            }
        }
        for (address, listener) in &target.https_listeners {
            match self.https_listeners.get(address) {
                None => orders.push(Order::AddHttpsListener(listener.config.clone())),
                Some(current) => {
                    let http =
                        HttpListenerPatch::between(&current.config.http, &listener.config.http);
                    let tls = TlsListenerPatch::between(&current.config.tls, &listener.config.tls);
                    if !http.is_empty() || !tls.is_empty() {
                        orders.push(Order::UpdateHttpsListenerConfig(UpdateHttpsListener {
                            address: *address,
                            http,
                            tls,
                        }));
                    }
                }
            }
        }
        for (address, listener) in &target.tcp_listeners {
            match self.tcp_listeners.get(address) {
                None => orders.push(Order::AddTcpListener(listener.config.clone())),
                Some(current) if current.config != listener.config => {
                    orders.push(Order::UpdateTcpListenerConfig(UpdateTcpListener::between(
                        &current.config,
                        &listener.config,
                    )));
                }
                Some(_) => {}
            }
        }
    }

    /// Adds the certificates `target` has and `self` lacks, then removes those `target` lacks
    /// on listeners that stay (a removed listener takes its certificates with it).
    fn diff_certificates(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        for (address, certificates) in &target.certificates {
            let current = self.certificates.get(address);
            for (fingerprint, state) in certificates {
                if current.is_none_or(|c| !c.contains_key(fingerprint)) {
                    orders.push(Order::AddCertificate(AddCertificate {
                        address: *address,
                        certificate: state.certificate.clone(),
                        allow_expired: state.allow_expired,
                    }));
                }
            }
        }
        for (address, certificates) in &self.certificates {
            if !target.https_listeners.contains_key(address) {
                continue;
            }
            let kept = target.certificates.get(address);
            for fingerprint in certificates.keys() {
                if kept.is_none_or(|k| !k.contains_key(fingerprint)) {
                    orders.push(Order::RemoveCertificate(RemoveCertificate {
                        address: *address,
                        fingerprint: fingerprint.clone(),
                    }));
                }
            }
        }
    }

    /// Activates or deactivates listeners whose flag differs. New listeners start inactive.
    fn diff_activation(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        let mut toggle = |address: &SocketAddr, proxy, was: Option<bool>, active: bool| {
            if was.unwrap_or(false) != active {
                let listener = ListenerAddress {
                    address: *address,
                    proxy,
                };
                orders.push(if active {
                    Order::ActivateListener(listener)
                } else {
                    Order::DeactivateListener(listener)
                });
            }
        };
        for (address, listener) in &target.http_listeners {
            let was = self.http_listeners.get(address).map(|l| l.active);
            toggle(address, ListenerType::Http, was, listener.active);
        }
        for (address, listener) in &target.https_listeners {
            let was = self.https_listeners.get(address).map(|l| l.active);
            toggle(address, ListenerType::Https, was, listener.active);
        }
        for (address, listener) in &target.tcp_listeners {
            let was = self.tcp_listeners.get(address).map(|l| l.active);
            toggle(address, ListenerType::Tcp, was, listener.active);
        }
    }

    /// The orders that build this state from empty.
    pub fn orders(&self) -> Vec<Order> {
        ConfigState::default().diff(self)
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

    /// The certificates that pass `filters`: a fingerprint, and a part of one of their names.
    pub fn certificate_summaries(&self, filters: &CertificateFilters) -> Vec<CertificateSummary> {
        self.certificates
            .iter()
            .flat_map(|(address, certificates)| {
                certificates
                    .iter()
                    .map(move |(fingerprint, certificate)| (address, fingerprint, certificate))
            })
            .filter(|(_, fingerprint, _)| {
                filters
                    .fingerprint
                    .as_ref()
                    .is_none_or(|wanted| wanted == *fingerprint)
            })
            .filter(|(_, _, certificate)| {
                filters.domain.as_ref().is_none_or(|domain| {
                    certificate
                        .names
                        .iter()
                        .any(|name| name.contains(domain.as_str()))
                })
            })
            .map(|(address, fingerprint, certificate)| CertificateSummary {
                address: *address,
                fingerprint: fingerprint.clone(),
                names: certificate.names.clone(),
                not_after: Some(certificate.not_after),
                pem: filters.full.then(|| certificate.certificate.clone()),
            })
            .collect()
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
                let belongs = |f: &&HttpFrontend| f.cluster_id.as_ref() == Some(cluster_id);
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

/// How many TCP frontends of a listener stay when `current` becomes `target`: those of their
/// common beginning. The rest is removed and added again, which keeps the order of addition,
/// on which the precedence of rules of the same specificity depends.
fn kept_tcp_frontends(target: Option<&Vec<TcpFrontend>>, current: &[TcpFrontend]) -> usize {
    target.map_or(0, |target| {
        current
            .iter()
            .zip(target)
            .take_while(|(a, b)| a == b)
            .count()
    })
}

/// A TCP frontend's rule in messages: `sni = "a.test"`, or `without a rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRuleName(pub Option<TcpRule>);

impl std::fmt::Display for TcpRuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(rule) => write!(f, "with {rule}"),
            None => f.write_str("without a rule"),
        }
    }
}

/// Why a saved state could not be loaded; names the line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read line {line}")]
    Read {
        /// The number of the line being read, from 1.
        line: usize,
        /// Why the read failed.
        source: io::Error,
    },
    /// A line is not a valid order.
    #[error("line {line} is not a valid order")]
    Parse {
        /// The line's number, from 1.
        line: usize,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// An order of the file was refused by the state.
    #[error("line {line}: {order} refused")]
    Apply {
        /// The line's number, from 1.
        line: usize,
        /// The order's name.
        order: &'static str,
        /// Why the state refused it.
        source: Box<StateError>,
    },
}

mod faults;
pub mod sozu_format;
pub mod sozu_records;
#[cfg(test)]
mod tests;
