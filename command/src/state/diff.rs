//! [`ConfigState::diff`]: the orders that turn one state into another, used for reloads,
//! restarted workers, upgrades and saved states.

use std::net::SocketAddr;

use super::ConfigState;
use crate::request::{
    AddCertificate, ClusterId, ConnectionLimit, HttpFrontend, HttpListenerPatch, ListenerAddress,
    ListenerType, Order, RemoveBackend, RemoveCertificate, TcpFrontend, TlsListenerPatch,
    UpdateHttpListener, UpdateHttpsListener, UpdateTcpListener,
};

impl ConfigState {
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
        for frontend in target.http_frontends.values() {
            if self.http_frontends.get_same_key(frontend) != Some(frontend) {
                orders.push(Order::AddHttpFrontend(HttpFrontend::clone(frontend)));
            }
        }
        for frontend in target.https_frontends.values() {
            if self.https_frontends.get_same_key(frontend) != Some(frontend) {
                orders.push(Order::AddHttpsFrontend(HttpFrontend::clone(frontend)));
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
        for frontend in self.http_frontends.values() {
            if target.http_frontends.get_same_key(frontend) != Some(frontend) {
                orders.push(Order::RemoveHttpFrontend(HttpFrontend::clone(frontend)));
            }
        }
        for frontend in self.https_frontends.values() {
            if target.https_frontends.get_same_key(frontend) != Some(frontend) {
                orders.push(Order::RemoveHttpsFrontend(HttpFrontend::clone(frontend)));
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
                        certificate: crate::request::CertificateAndKey::clone(&state.certificate),
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

    /// Whether `order` is one of [`ConfigState::orders`]: taking it again would recreate an
    /// item identical to one the state holds, and change nothing. A query of the item the
    /// order names, without building the orders (a state file merged on a running state asks
    /// it of each of its orders). A certificate's leaf is decoded to find it only where the
    /// listener has certificates.
    pub fn is_in_force(&self, order: &Order) -> bool {
        match order {
            Order::AddCluster(cluster) => self.clusters.get(&cluster.cluster_id) == Some(cluster),
            Order::AddBackend(backend) => {
                self.backends
                    .get(&backend.cluster_id)
                    .and_then(|backends| backends.get(&backend.backend_id))
                    == Some(backend)
            }
            Order::AddHttpFrontend(frontend) => self
                .http_frontends
                .get_same_key(frontend)
                .is_some_and(|held| **held == *frontend),
            Order::AddHttpsFrontend(frontend) => self
                .https_frontends
                .get_same_key(frontend)
                .is_some_and(|held| **held == *frontend),
            Order::AddTcpFrontend(frontend) => self
                .tcp_frontends
                .get(&frontend.address)
                .is_some_and(|held| held.contains(frontend)),
            Order::AddCertificate(add) => self.certificates.get(&add.address).is_some_and(|held| {
                !held.is_empty()
                    && crate::certificate::fingerprint(&add.certificate.certificate).is_ok_and(
                        |fingerprint| {
                            held.get(&fingerprint).is_some_and(|state| {
                                *state.certificate == add.certificate
                                    && state.allow_expired == add.allow_expired
                            })
                        },
                    )
            }),
            Order::AddHttpListener(config) => self
                .http_listeners
                .get(&config.address)
                .is_some_and(|held| held.config == *config),
            Order::AddHttpsListener(config) => self
                .https_listeners
                .get(&config.http.address)
                .is_some_and(|held| held.config == *config),
            Order::AddTcpListener(config) => self
                .tcp_listeners
                .get(&config.address)
                .is_some_and(|held| held.config == *config),
            Order::ActivateListener(listener) => {
                let address = &listener.address;
                match listener.proxy {
                    ListenerType::Http => self.http_listeners.get(address).map(|l| l.active),
                    ListenerType::Https => self.https_listeners.get(address).map(|l| l.active),
                    ListenerType::Tcp => self.tcp_listeners.get(address).map(|l| l.active),
                }
                .unwrap_or(false)
            }
            Order::SetMaxConnectionsPerIp(limit) => {
                self.max_connections_per_ip == limit.max_connections_per_ip
                    && self.max_connections_per_ip != ConfigState::default().max_connections_per_ip
            }
            Order::AddFault(add) => self.faults.get(&add.fault.name) == Some(&add.fault),
            _ => false,
        }
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
