//! Orders applied to a running worker, and the queries it answers.
//!
//! An order is first checked in full against what the worker can do (listeners it can bind,
//! answers and routes it can compile) and against the [`ConfigState`]; only then does it
//! change the running structures, so an order that fails changes nothing.

use std::{collections::BTreeMap, io, net::SocketAddr};

use log::{debug, info};
use mio::{Interest, Token, net::TcpListener};
use sozu_command_lib::{
    request::{
        AddBackend, HttpFrontend, HttpListenerConfig, ListenerAddress, MetricsConfiguration, Order,
        Request,
    },
    response::{
        BackendInformation, ClusterInformation, Response, ResponseContent, RunState, WorkerStatus,
    },
    state::ConfigState,
};

use super::{ListenerSocket, Owner, Run, Server};
use crate::{
    http::HttpListener,
    https::HttpsSettings,
    protocol::http::{answers::Answers, parser::Limits},
    protocol::tls::{LoadedCertificate, load_certificate},
    router::Router,
};

impl Server {
    pub(super) fn handle_request(&mut self, request: Request) {
        let Request { id, order } = request;
        debug!("order {id}: {order}");
        let response = match order {
            Order::Status => Response::ok(id, Some(ResponseContent::WorkerStatus(self.status()))),
            Order::SoftStop => {
                info!(
                    "soft stop: no more accepts, waiting for {} sessions",
                    self.sessions.len()
                );
                self.deactivate_all();
                self.respond(Response::processing(id.clone(), "draining sessions"));
                self.run = Run::Draining { request_id: id };
                return;
            }
            Order::HardStop => {
                info!("hard stop: closing {} sessions", self.sessions.len());
                let keys: Vec<usize> = self.sessions.iter().map(|(key, _)| key).collect();
                for key in keys {
                    self.close_session(key);
                }
                self.respond(Response::ok(id, None));
                self.flush_channel();
                self.run = Run::Stopped;
                return;
            }
            Order::QueryClusterById(query) => {
                let clusters = self.cluster_information(Some(&query.cluster_id));
                Response::ok(id, Some(ResponseContent::Clusters(clusters)))
            }
            Order::Logging(filter) => match self.log_filter_handler.as_mut() {
                Some(handler) => match handler(&filter.filter) {
                    Ok(()) => Response::ok(id, None),
                    Err(message) => Response::failure(id, message),
                },
                None => Response::failure(id, "this worker's logger is not changed by orders"),
            },
            Order::QueryMetrics(query) => {
                let content = if query.list {
                    ResponseContent::MetricNames(self.recorder.metrics.names())
                } else {
                    ResponseContent::Metrics(self.metrics_snapshot(&query))
                };
                Response::ok(id, Some(content))
            }
            Order::ConfigureMetrics(configuration) => {
                match configuration {
                    MetricsConfiguration::Enabled => self.recorder.metrics.set_enabled(true),
                    MetricsConfiguration::Disabled => self.recorder.metrics.set_enabled(false),
                    MetricsConfiguration::Clear => self.recorder.metrics.clear(),
                }
                Response::ok(id, None)
            }
            Order::QueryClustersHashes => Response::ok(
                id,
                Some(ResponseContent::ClusterHashes(self.state.cluster_hashes())),
            ),
            Order::ListListeners | Order::ListFrontends(_) | Order::QueryClustersByDomain(_) => {
                Response::failure(id, format!("{order} is answered by the main process"))
            }
            order if order.is_state_change() => match self.apply_order(&order) {
                Ok(()) => Response::ok(id, None),
                Err(message) => Response::failure(id, message),
            },
            order => Response::failure(id, format!("{order} is not handled by a worker")),
        };
        self.respond(response);
    }

    fn status(&self) -> WorkerStatus {
        let listeners: BTreeMap<SocketAddr, bool> = self
            .state
            .http_listeners
            .iter()
            .map(|(address, l)| (*address, l.active))
            .chain(
                self.state
                    .https_listeners
                    .iter()
                    .map(|(a, l)| (*a, l.active)),
            )
            .chain(self.state.tcp_listeners.iter().map(|(a, l)| (*a, l.active)))
            .collect();
        WorkerStatus {
            run_state: match self.run {
                Run::Running => RunState::Running,
                Run::Draining { .. } => RunState::Stopping,
                Run::Stopped => RunState::Stopped,
            },
            sessions: self.sessions.len() as u64,
            max_connections: self.config.max_connections as u64,
            listeners,
        }
    }

    /// Clusters with their backends as this worker sees them.
    fn cluster_information(&self, only: Option<&str>) -> Vec<ClusterInformation> {
        self.state
            .clusters
            .values()
            .filter(|cluster| only.is_none_or(|id| cluster.cluster_id == id))
            .map(|cluster| {
                let cluster_id = &cluster.cluster_id;
                let belongs = |f: &&HttpFrontend| f.cluster_id.as_ref() == Some(cluster_id);
                let configured = self.state.backends.get(cluster_id);
                let mut backends: Vec<BackendInformation> = self
                    .backends
                    .cluster_backends(cluster_id)
                    .map(|runtime| BackendInformation {
                        backend: configured
                            .and_then(|c| c.get(&runtime.id))
                            .filter(|b| b.address == runtime.address)
                            .cloned()
                            .unwrap_or_else(|| AddBackend {
                                cluster_id: cluster_id.clone(),
                                backend_id: runtime.id.clone(),
                                address: runtime.address,
                                sticky_id: runtime.sticky_id.clone(),
                                weight: runtime.weight,
                                backup: runtime.backup,
                            }),
                        runtime: Some(runtime.runtime()),
                    })
                    .collect();
                backends.sort_by(|a, b| a.backend.backend_id.cmp(&b.backend.backend_id));
                ClusterInformation {
                    cluster: cluster.clone(),
                    http_frontends: self
                        .state
                        .http_frontends
                        .values()
                        .filter(belongs)
                        .cloned()
                        .collect(),
                    https_frontends: self
                        .state
                        .https_frontends
                        .values()
                        .filter(belongs)
                        .cloned()
                        .collect(),
                    tcp_frontends: self
                        .state
                        .tcp_frontends
                        .values()
                        .filter(|f| &f.cluster_id == cluster_id)
                        .cloned()
                        .collect(),
                    backends,
                }
            })
            .collect()
    }

    /// Validates an order against the state and the worker, then applies it. On error
    /// nothing changed.
    pub(super) fn apply_order(&mut self, order: &Order) -> Result<(), String> {
        match order {
            Order::ActivateListener(listener) => {
                if self.state.listener_kind(listener.address) != Some(listener.proxy) {
                    return Err(format!(
                        "no {} listener on {}",
                        listener.proxy, listener.address
                    ));
                }
                self.activate(listener)?;
                self.apply_to_state(order)
            }
            Order::AddHttpListener(config) => {
                let listener = http_listener(&self.state, config, None, None)?;
                self.apply_to_state(order)?;
                self.http_listeners.insert(config.address, listener);
                Ok(())
            }
            Order::AddHttpsListener(config) => {
                let settings = HttpsSettings::new(&config.tls).map_err(|error| {
                    format!("listener {}: {}", config.http.address, error_chain(&error))
                })?;
                let hsts = config.tls.hsts.clone();
                let listener = http_listener(&self.state, &config.http, Some(settings), hsts)?;
                self.apply_to_state(order)?;
                self.http_listeners.insert(config.http.address, listener);
                Ok(())
            }
            Order::AddCertificate(add) => {
                let loaded = self.load_certificate(add.address, &add.certificate)?;
                self.apply_to_state(order)?;
                if let Some(settings) = self.https_settings(add.address) {
                    settings.add_certificate(loaded);
                }
                Ok(())
            }
            Order::ReplaceCertificate(replace) => {
                let loaded = self.load_certificate(replace.address, &replace.new_certificate)?;
                self.apply_to_state(order)?;
                if let Some(settings) = self.https_settings(replace.address) {
                    settings.replace_certificate(&replace.old_fingerprint, loaded);
                }
                Ok(())
            }
            Order::RemoveCertificate(remove) => {
                self.apply_to_state(order)?;
                if let Some(settings) = self.https_settings(remove.address) {
                    settings.remove_certificate(&remove.fingerprint);
                }
                Ok(())
            }
            Order::UpdateHttpListenerConfig(update) => {
                let mut config = self.listener_config(update.address)?;
                update.http.apply(&mut config);
                let answers = cluster_answers(&self.state, &config)?;
                self.apply_to_state(order)?;
                if let Some(listener) = self.http_listeners.get_mut(&update.address) {
                    listener.answers = answers;
                    listener.config = config;
                }
                Ok(())
            }
            Order::UpdateHttpsListenerConfig(update) => {
                let mut config = self.listener_config(update.address)?;
                update.http.apply(&mut config);
                let answers = cluster_answers(&self.state, &config)?;
                let mut tls = self
                    .state
                    .https_listeners
                    .get(&update.address)
                    .map(|l| l.config.tls.clone())
                    .ok_or_else(|| format!("no HTTPS listener on {}", update.address))?;
                update.tls.apply(&mut tls);
                let settings = self
                    .https_settings(update.address)
                    .ok_or_else(|| format!("no HTTPS listener on {}", update.address))?
                    .updated(&tls)
                    .map_err(|error| {
                        format!("listener {}: {}", update.address, error_chain(&error))
                    })?;
                self.apply_to_state(order)?;
                if let Some(listener) = self.http_listeners.get_mut(&update.address) {
                    listener.answers = answers;
                    listener.config = config;
                    listener.hsts = tls.hsts;
                    listener.tls = Some(settings);
                }
                Ok(())
            }
            Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
                self.apply_to_state(order)?;
                if let Err(error) = self.add_route(frontend) {
                    let undo = match order {
                        Order::AddHttpFrontend(_) => Order::RemoveHttpFrontend(frontend.clone()),
                        _ => Order::RemoveHttpsFrontend(frontend.clone()),
                    };
                    // The exact inverse of an order that just succeeded cannot fail.
                    let _ = self.state.apply(&undo);
                    return Err(error);
                }
                Ok(())
            }
            Order::RemoveHttpFrontend(frontend) | Order::RemoveHttpsFrontend(frontend) => {
                self.apply_to_state(order)?;
                if let Some(listener) = self.http_listeners.get_mut(&frontend.address) {
                    let _ = listener.router.remove(&frontend.key());
                }
                Ok(())
            }
            Order::AddCluster(cluster) => {
                let mut parsed = Vec::new();
                for (address, listener) in &self.http_listeners {
                    let mut answers = listener.answers.clone();
                    answers
                        .set_cluster(&cluster.cluster_id, &cluster.answers)
                        .map_err(|error| format!("cluster `{}`: {error}", cluster.cluster_id))?;
                    parsed.push((*address, answers));
                }
                self.apply_to_state(order)?;
                for (address, answers) in parsed {
                    if let Some(listener) = self.http_listeners.get_mut(&address) {
                        listener.answers = answers;
                    }
                }
                self.backends.set_cluster(cluster);
                if cluster.health_check.is_none() {
                    self.backends.clear_health(&cluster.cluster_id);
                }
                Ok(())
            }
            Order::RemoveCluster(id) => {
                self.apply_to_state(order)?;
                for listener in self.http_listeners.values_mut() {
                    listener.router.remove_cluster(&id.cluster_id);
                    listener.answers.remove_cluster(&id.cluster_id);
                }
                self.backends.remove_cluster(&id.cluster_id);
                Ok(())
            }
            Order::AddBackend(backend) => {
                self.apply_to_state(order)?;
                self.backends.add(backend);
                Ok(())
            }
            Order::RemoveBackend(backend) => {
                self.apply_to_state(order)?;
                self.backends
                    .remove(&backend.cluster_id, &backend.backend_id);
                Ok(())
            }
            Order::DeactivateListener(listener) => {
                self.apply_to_state(order)?;
                self.deactivate(listener.address);
                Ok(())
            }
            Order::RemoveListener(listener) => {
                self.apply_to_state(order)?;
                self.deactivate(listener.address);
                self.http_listeners.remove(&listener.address);
                Ok(())
            }
            Order::RemoveHealthCheck(id) => {
                self.apply_to_state(order)?;
                self.backends.clear_health(&id.cluster_id);
                Ok(())
            }
            order => self.apply_to_state(order),
        }
    }

    fn apply_to_state(&mut self, order: &Order) -> Result<(), String> {
        self.state.apply(order).map_err(|error| error_chain(&error))
    }

    /// The HTTP settings of the HTTP or HTTPS listener on `address`.
    fn listener_config(&self, address: SocketAddr) -> Result<HttpListenerConfig, String> {
        self.http_listeners
            .get(&address)
            .map(|listener| listener.config.clone())
            .ok_or_else(|| format!("no HTTP or HTTPS listener on {address}"))
    }

    fn https_settings(&self, address: SocketAddr) -> Option<&HttpsSettings> {
        self.http_listeners
            .get(&address)
            .and_then(|l| l.tls.as_ref())
    }

    /// Decodes a certificate for an HTTPS listener; the state checks the rest.
    fn load_certificate(
        &self,
        address: SocketAddr,
        certificate: &sozu_command_lib::request::CertificateAndKey,
    ) -> Result<LoadedCertificate, String> {
        if self.https_settings(address).is_none() {
            return Err(format!("no HTTPS listener on {address}"));
        }
        load_certificate(certificate)
            .map_err(|error| format!("invalid certificate for {address}: {}", error_chain(&error)))
    }

    fn add_route(&mut self, frontend: &HttpFrontend) -> Result<(), String> {
        let listener = self
            .http_listeners
            .get_mut(&frontend.address)
            .ok_or_else(|| format!("no HTTP or HTTPS listener on {}", frontend.address))?;
        listener
            .router
            .add(frontend.clone())
            .map_err(|error| error_chain(&error))
    }

    /// Starts accepting on a listener: an inherited socket for its address, or a new one.
    fn activate(&mut self, listener: &ListenerAddress) -> Result<(), String> {
        let address = listener.address;
        if self.listeners.contains_key(&address) {
            return Ok(());
        }
        let std_listener = match self.inherited.remove(&address) {
            Some(socket) => socket,
            None => bind_listener(address, 1024)
                .map_err(|error| format!("cannot listen on {address}: {error}"))?,
        };
        std_listener
            .set_nonblocking(true)
            .map_err(|error| format!("cannot set {address} non-blocking: {error}"))?;
        let mut socket = TcpListener::from_std(std_listener);
        let token = Token(self.sockets.insert(Owner::Listener(address)));
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            self.sockets.remove(token.0);
            return Err(format!("cannot register listener {address}: {error}"));
        }
        info!("listening on {address} ({})", listener.proxy);
        self.listeners.insert(
            address,
            ListenerSocket {
                kind: listener.proxy,
                socket,
                token,
                pending: true,
            },
        );
        Ok(())
    }

    fn deactivate(&mut self, address: SocketAddr) {
        if let Some(mut listener) = self.listeners.remove(&address) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
            self.sockets.try_remove(listener.token.0);
            info!("stopped listening on {address}");
        }
    }

    pub(super) fn deactivate_all(&mut self) {
        let addresses: Vec<SocketAddr> = self.listeners.keys().copied().collect();
        for address in addresses {
            self.deactivate(address);
        }
    }
}

/// The runtime of an HTTP or HTTPS listener, with the answers of the clusters known so far.
fn http_listener(
    state: &ConfigState,
    config: &HttpListenerConfig,
    tls: Option<HttpsSettings>,
    hsts: Option<sozu_command_lib::request::Hsts>,
) -> Result<HttpListener, String> {
    let answers = cluster_answers(state, config)?;
    Ok(HttpListener {
        config: config.clone(),
        router: Router::new(),
        answers,
        tls,
        hsts,
        limits: Limits::default(),
    })
}

/// A listener's answers with those of every cluster of the state.
fn cluster_answers(state: &ConfigState, config: &HttpListenerConfig) -> Result<Answers, String> {
    let mut answers = Answers::new(&config.answers)
        .map_err(|error| format!("listener {}: {error}", config.address))?;
    for cluster in state.clusters.values() {
        answers
            .set_cluster(&cluster.cluster_id, &cluster.answers)
            .map_err(|error| format!("cluster `{}`: {error}", cluster.cluster_id))?;
    }
    Ok(answers)
}

/// Binds a non-blocking listening socket with `SO_REUSEADDR` and `SO_REUSEPORT`, so several
/// workers (and a new process during an upgrade) can listen on the same address.
pub fn bind_listener(address: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// An error and its causes, in one line.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
