//! Orders applied to a running worker, and the queries it answers.
//!
//! An order is first checked in full against what the worker can do (listeners it can bind,
//! answers and routes it can compile) and against the [`ConfigState`]; only then does it
//! change the running structures, so an order that fails changes nothing.

use std::{collections::BTreeMap, io, net::SocketAddr, rc::Rc, sync::Arc};

use log::{debug, error, info};
use mio::{Interest, Token, net::TcpListener};
use sozu_command_lib::{
    certificate::CertificateFacts,
    request::{
        AddBackend, Hsts, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType,
        MetricsConfiguration, Order, Timeouts, UpdateHttpListener, UpdateHttpsListener,
        WorkerRequest,
    },
    response::{
        BackendInformation, ClusterInformation, Response, ResponseContent, RunState, WorkerStatus,
    },
    state::{Checked, StateError},
};

use super::{
    ListenerSocket, Owner, Run, Server,
    batch::Batch,
    validation::{OrderError, Validated, validate_checked_given, validate_frontend},
};
use crate::{
    https::HttpsSettings,
    protocol::http::{answers::Answers, parser::Limits},
    protocol::{http::HttpListener, tls::TlsError},
    router::Router,
};

impl Server {
    /// Answers a request of the main process (or of the program that embeds the worker),
    /// with the facts of the certificate its order brings when the main process gave them.
    pub(super) fn handle_request(&mut self, request: WorkerRequest) {
        let WorkerRequest {
            id,
            order,
            certificate_facts,
        } = request;
        debug!("order {id}: {order}");
        // Orders and queries see backends as the last closed connections left them.
        self.backends.release_drained();
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
            Order::QueryClustersByDomain(filter) => {
                let frontends = self.state.http_frontends.values();
                let cluster_ids: std::collections::BTreeSet<&str> = frontends
                    .chain(self.state.https_frontends.values())
                    .filter(|frontend| filter.matches(frontend))
                    .filter_map(|frontend| frontend.cluster_id.as_deref())
                    .collect();
                let clusters = cluster_ids
                    .into_iter()
                    .flat_map(|cluster_id| self.cluster_information(Some(cluster_id)))
                    .collect();
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
            Order::QueryCertificatesFromWorkers(filters) => Response::ok(
                id,
                Some(ResponseContent::Certificates(
                    self.state.certificate_summaries(&filters),
                )),
            ),
            Order::QueryClustersHashes => Response::ok(
                id,
                Some(ResponseContent::ClusterHashes(self.state.cluster_hashes())),
            ),
            Order::ListListeners | Order::ListFrontends(_) | Order::QueryClustersOfWorkers(_) => {
                Response::failure(id, format!("{order} is answered by the main process"))
            }
            Order::BeginBatch => {
                if self.batch.is_some() {
                    Response::failure(id, "BEGIN_BATCH: a batch is open already")
                } else {
                    self.batch = Some(Batch::default());
                    return;
                }
            }
            Order::EndBatch => match self.batch.take() {
                Some(batch) => batch.into_response(id),
                None => Response::failure(id, "END_BATCH without BEGIN_BATCH"),
            },
            order if order.is_state_change() => {
                let name = order.name();
                let applied = self.apply_order_given(order, certificate_facts);
                if let Some(batch) = &mut self.batch {
                    batch.record(name, applied.map_err(|error| error_chain(&error)));
                    return;
                }
                match applied {
                    Ok(()) => Response::ok(id, None),
                    Err(error) => Response::failure(id, error_chain(&error)),
                }
            }
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
                let belongs = |f: &&Arc<HttpFrontend>| f.cluster_id.as_ref() == Some(cluster_id);
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
                        .map(|frontend| HttpFrontend::clone(frontend))
                        .collect(),
                    https_frontends: self
                        .state
                        .https_frontends
                        .values()
                        .filter(belongs)
                        .map(|frontend| HttpFrontend::clone(frontend))
                        .collect(),
                    tcp_frontends: self
                        .state
                        .tcp_frontends
                        .values()
                        .flatten()
                        .filter(|f| &f.cluster_id == cluster_id)
                        .cloned()
                        .collect(),
                    backends,
                }
            })
            .collect()
    }

    /// Validates an order (with [`validate_checked`], as the main process does) and applies
    /// it. On error nothing changed. A frontend's route is built from the order's frontend,
    /// which the route and the state then share (a start adds 100,000 of them: a copy of
    /// each, and freeing the order's, were a tenth of a worker's start).
    pub(super) fn apply_order(&mut self, order: Order) -> Result<(), ApplyError> {
        self.apply_order_given(order, None)
    }

    /// [`Server::apply_order`] of an order given with the facts of the certificate it brings,
    /// read by the main process ([`validate_checked_given`]).
    fn apply_order_given(
        &mut self,
        order: Order,
        certificate_facts: Option<CertificateFacts>,
    ) -> Result<(), ApplyError> {
        match order {
            Order::AddHttpFrontend(frontend) => self.add_frontend(frontend, ListenerType::Http),
            Order::AddHttpsFrontend(frontend) => self.add_frontend(frontend, ListenerType::Https),
            order => self.apply_other(&order, certificate_facts),
        }
    }

    /// Adds an HTTP frontend, or an HTTPS one for [`ListenerType::Https`], to the state and to
    /// its listener's router.
    fn add_frontend(
        &mut self,
        frontend: HttpFrontend,
        kind: ListenerType,
    ) -> Result<(), ApplyError> {
        let (route, fields) = validate_frontend(frontend)?;
        let address = route.frontend().address;
        if !self.http_listeners.contains_key(&address) {
            return Err(ApplyError::NoHttpListener { address });
        }
        self.state
            .add_checked_frontend(route.shared_frontend(), kind, fields)?;
        if let Some(listener) = self.http_listeners.get_mut(&address) {
            // The state refused a duplicate already, and the router holds what the state
            // holds.
            if let Err(error) = listener.router.insert(route) {
                error!("the router and the state disagree: {error}");
            }
        }
        Ok(())
    }

    /// [`Server::apply_order_given`] of an order that adds no HTTP or HTTPS frontend.
    fn apply_other(
        &mut self,
        order: &Order,
        certificate_facts: Option<CertificateFacts>,
    ) -> Result<(), ApplyError> {
        let (validated, checked) =
            validate_checked_given(&self.state, order, self.config.key_check, certificate_facts)?;
        let applied = match (order, validated) {
            (Order::ActivateListener(listener), _) => {
                if self.state.listener_kind(listener.address) != Some(listener.proxy) {
                    return Err(ApplyError::Invalid(OrderError::NoListener {
                        address: listener.address,
                        kind: listener.proxy,
                    }));
                }
                self.activate(listener)?;
                self.apply_to_state(order, checked)
            }
            (Order::AddHttpListener(config), Validated::Listener { answers, tls }) => {
                self.add_http_listener(order, checked, config, answers, tls, None)
            }
            (Order::AddHttpsListener(config), Validated::Listener { answers, tls }) => {
                let hsts = config.tls.hsts.clone();
                self.add_http_listener(order, checked, &config.http, answers, tls, hsts)
            }
            (Order::AddCertificate(add), Validated::Certificate(loaded)) => {
                self.require_https_settings(add.address)?;
                self.apply_to_state(order, checked)?;
                if let Some(settings) = self.https_settings(add.address) {
                    settings.add_certificate(loaded);
                }
                Ok(())
            }
            (Order::ReplaceCertificate(replace), Validated::Certificate(loaded)) => {
                self.require_https_settings(replace.address)?;
                self.apply_to_state(order, checked)?;
                if let Some(settings) = self.https_settings(replace.address) {
                    settings.replace_certificate(&replace.old_fingerprint, loaded);
                }
                Ok(())
            }
            (Order::RemoveCertificate(remove), _) => {
                self.apply_to_state(order, checked)?;
                if let Some(settings) = self.https_settings(remove.address) {
                    settings.remove_certificate(&remove.fingerprint);
                }
                Ok(())
            }
            (
                Order::UpdateHttpListenerConfig(UpdateHttpListener { address, .. })
                | Order::UpdateHttpsListenerConfig(UpdateHttpsListener { address, .. }),
                Validated::ListenerUpdate {
                    config,
                    answers,
                    tls,
                },
            ) => {
                let settings = match &tls {
                    Some(tls) => Some(
                        self.require_https_settings(*address)?
                            .updated(tls)
                            .map_err(|source| ApplyError::Tls {
                                address: *address,
                                source,
                            })?,
                    ),
                    None => None,
                };
                self.apply_to_state(order, checked)?;
                if let Some(listener) = self.http_listeners.get_mut(address) {
                    listener.answers = answers;
                    listener.config = *config;
                    if let Some(tls) = tls {
                        listener.hsts = tls.hsts;
                        listener.tls = settings;
                    }
                }
                Ok(())
            }
            (Order::RemoveHttpFrontend(frontend) | Order::RemoveHttpsFrontend(frontend), _) => {
                self.apply_to_state(order, checked)?;
                if let Some(listener) = self.http_listeners.get_mut(&frontend.address) {
                    let _ = listener.router.remove(&frontend.key());
                }
                Ok(())
            }
            (
                Order::AddCluster(cluster),
                Validated::Cluster {
                    answers,
                    authorized,
                },
            ) => {
                self.apply_to_state(order, checked)?;
                for listener in self.http_listeners.values_mut() {
                    listener
                        .answers
                        .set_cluster_templates(&cluster.cluster_id, answers.clone());
                }
                if authorized.is_empty() {
                    self.authorized.remove(&cluster.cluster_id);
                } else {
                    self.authorized
                        .insert(cluster.cluster_id.clone(), authorized);
                }
                self.backends.set_cluster(cluster);
                if cluster.health_check.is_none() {
                    self.backends.clear_health(&cluster.cluster_id);
                }
                Ok(())
            }
            (Order::RemoveCluster(id), _) => {
                self.apply_to_state(order, checked)?;
                for listener in self.http_listeners.values_mut() {
                    listener.router.remove_cluster(&id.cluster_id);
                    listener.answers.remove_cluster(&id.cluster_id);
                }
                self.authorized.remove(&id.cluster_id);
                self.backends.remove_cluster(&id.cluster_id);
                Ok(())
            }
            (Order::AddBackend(backend), _) => {
                self.apply_to_state(order, checked)?;
                self.backends.add(backend);
                Ok(())
            }
            (Order::RemoveBackend(backend), _) => {
                self.apply_to_state(order, checked)?;
                let draining = self
                    .backends
                    .remove(&backend.cluster_id, &backend.backend_id);
                if let (Some(key), Some(timeout)) = (draining, backend.drain_timeout) {
                    self.start_drain(key, backend, timeout);
                }
                Ok(())
            }
            (Order::DeactivateListener(listener), _) => {
                self.apply_to_state(order, checked)?;
                self.deactivate(listener.address);
                Ok(())
            }
            (Order::RemoveListener(listener), _) => {
                self.apply_to_state(order, checked)?;
                self.deactivate(listener.address);
                self.http_listeners.remove(&listener.address);
                Ok(())
            }
            (Order::RemoveHealthCheck(id), _) => {
                self.apply_to_state(order, checked)?;
                self.backends.clear_health(&id.cluster_id);
                Ok(())
            }
            (order, _) => self.apply_to_state(order, checked),
        };
        if applied.is_ok() {
            self.sync_listener_timeouts(order);
            self.sync_content_routers(order);
            self.sync_faults();
        }
        applied
    }

    /// Adds the runtime of an HTTP or HTTPS listener once the state took it.
    fn add_http_listener(
        &mut self,
        order: &Order,
        checked: Checked,
        config: &HttpListenerConfig,
        answers: Answers,
        tls: Option<HttpsSettings>,
        hsts: Option<Hsts>,
    ) -> Result<(), ApplyError> {
        self.apply_to_state(order, checked)?;
        self.http_listeners.insert(
            config.address,
            HttpListener {
                config: config.clone(),
                router: Router::new(),
                answers,
                tls,
                hsts,
                limits: Limits::default(),
                spares: Default::default(),
            },
        );
        Ok(())
    }

    fn apply_to_state(&mut self, order: &Order, checked: Checked) -> Result<(), ApplyError> {
        Ok(self.state.apply_checked(order, checked)?)
    }

    fn https_settings(&self, address: SocketAddr) -> Option<&HttpsSettings> {
        self.http_listeners
            .get(&address)
            .and_then(|l| l.tls.as_ref())
    }

    /// The TLS settings of the HTTPS listener on `address`, which must exist.
    fn require_https_settings(&self, address: SocketAddr) -> Result<&HttpsSettings, ApplyError> {
        self.https_settings(address)
            .ok_or(ApplyError::NoHttpsListener { address })
    }

    /// Starts accepting on a listener: an inherited socket for its address, or a new one.
    fn activate(&mut self, listener: &ListenerAddress) -> Result<(), ApplyError> {
        let address = listener.address;
        if self.listeners.contains_key(&address) {
            return Ok(());
        }
        self.receive_pending_listeners();
        let std_listener = match self.inherited.remove(&address) {
            Some(socket) => socket,
            None => bind_listener(address, 1024)
                .map_err(|source| ApplyError::Bind { address, source })?,
        };
        std_listener
            .set_nonblocking(true)
            .map_err(|source| ApplyError::NonBlocking { address, source })?;
        let timeouts = self.listener_timeouts(address);
        let nodelay_inherited = super::accept::nodelay_on_accepted(&std_listener);
        let mut socket = TcpListener::from_std(std_listener);
        let token = Token(self.sockets.insert(Owner::Listener(address)));
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
        {
            self.sockets.remove(token.0);
            return Err(ApplyError::Register {
                address,
                source: error,
            });
        }
        info!("listening on {address} ({})", listener.proxy);
        self.listeners.insert(
            address,
            ListenerSocket {
                kind: listener.proxy,
                socket,
                token,
                pending: true,
                nodelay_inherited,
                timeouts,
            },
        );
        Ok(())
    }

    /// The timeouts of the listener at `address` as its sessions share them: the state's
    /// (TCP) or the HTTP listener's; the defaults for a listener the worker does not have.
    fn listener_timeouts(&mut self, address: SocketAddr) -> Rc<Timeouts> {
        let timeouts = match self.state.tcp_listeners.get(&address) {
            Some(listener) => listener.config.timeouts(),
            None => self
                .http_listeners
                .get(&address)
                .map(|listener| listener.config.timeouts())
                .unwrap_or_default(),
        };
        self.timeouts.get(&timeouts, |timeouts| Rc::new(*timeouts))
    }

    /// Gives a bound listener whose settings an applied `order` changed its new timeouts.
    fn sync_listener_timeouts(&mut self, order: &Order) {
        let address = match order {
            Order::UpdateTcpListenerConfig(update) => update.address,
            Order::UpdateHttpListenerConfig(UpdateHttpListener { address, .. })
            | Order::UpdateHttpsListenerConfig(UpdateHttpsListener { address, .. }) => *address,
            _ => return,
        };
        if self.listeners.contains_key(&address) {
            let timeouts = self.listener_timeouts(address);
            if let Some(listener) = self.listeners.get_mut(&address) {
                listener.timeouts = timeouts;
            }
        }
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

/// Why a worker refused an order; nothing changed then.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The order breaks a rule, or names what does not exist ([`validate`]).
    #[error(transparent)]
    Invalid(#[from] OrderError),
    /// The routing state refused the change.
    #[error(transparent)]
    State(#[from] StateError),
    /// The order names an HTTP or HTTPS listener the worker does not have.
    #[error("no HTTP or HTTPS listener on {address}")]
    NoHttpListener {
        /// The address the order names.
        address: SocketAddr,
    },
    /// The order names an HTTPS listener the worker does not have.
    #[error("no HTTPS listener on {address}")]
    NoHttpsListener {
        /// The address the order names.
        address: SocketAddr,
    },
    /// An HTTPS listener's new TLS settings are not usable.
    #[error("listener {address}")]
    Tls {
        /// The listener's address.
        address: SocketAddr,
        /// What rustls refused.
        source: TlsError,
    },
    /// The listening socket cannot be bound (address in use, not local, no permission…).
    #[error("cannot listen on {address}")]
    Bind {
        /// The listener's address.
        address: SocketAddr,
        /// The error of `bind` or `listen`.
        source: io::Error,
    },
    /// The bound socket cannot be made non-blocking.
    #[error("cannot set {address} non-blocking")]
    NonBlocking {
        /// The listener's address.
        address: SocketAddr,
        /// The error of `fcntl`.
        source: io::Error,
    },
    /// The listening socket cannot be registered with the event loop.
    #[error("cannot register listener {address}")]
    Register {
        /// The listener's address.
        address: SocketAddr,
        /// The error of the registration.
        source: io::Error,
    },
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
