//! The event loop of a worker: one thread, one `mio::Poll`, every listener and session.
//!
//! Orders arrive on the command channel and are applied between events; each gets exactly one
//! final response. Sockets are registered once, edge-triggered, for reading and writing; a
//! token names its owner (a listener, or one end of a session) in the `sockets` slab, so a
//! socket keeps its token for life. Timeouts live in [`Timers`]. Nothing here blocks, and input
//! never panics the loop: a session in trouble is closed and the loop goes on.

use std::{
    collections::{BTreeMap, HashMap},
    io::{self, ErrorKind},
    net::{IpAddr, SocketAddr},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use log::{debug, error, info, warn};
use mio::{
    Events, Interest, Poll, Token,
    net::{TcpListener, TcpStream},
};
use slab::Slab;
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    request::{ListenerAddress, ListenerType, Order, Request},
    response::{
        BackendInformation, ClusterInformation, Event, Response, ResponseContent, RunState,
        WorkerStatus,
    },
    scm::Listeners,
    state::ConfigState,
};

use crate::{
    backends::{BackendMap, PickError},
    pool::Pool,
    session::{Action, BackConnection, Context, Session, SessionTimeouts, Stage},
    socket::{Endpoint, Ready},
    tcp,
    timer::{TimeoutKind, Timers},
};

/// Settings of a worker that orders do not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Sessions open at once; accepting pauses at the cap.
    pub max_connections: usize,
    /// Size of each pooled buffer; a session uses two.
    pub buffer_size: usize,
    /// Buffers allocated at start.
    pub min_buffers: usize,
    /// Free buffers kept for reuse.
    pub max_buffers: usize,
    /// Initial size of the command channel's buffer.
    pub command_buffer_size: usize,
    /// The largest message accepted on the command channel.
    pub max_command_buffer_size: usize,
    /// Backends tried for one connection before giving up.
    pub connect_attempts: u32,
    /// Connections accepted from one listener before serving other events.
    pub accept_batch: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            buffer_size: 16_393,
            min_buffers: 1,
            max_buffers: 1_000,
            command_buffer_size: 1_000_000,
            max_command_buffer_size: 2_000_000,
            connect_attempts: 3,
            accept_batch: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the event loop")]
    Poll(#[source] io::Error),
    #[error("cannot register the command channel")]
    RegisterChannel(#[source] io::Error),
    #[error("the command channel failed")]
    Channel(#[source] ChannelError),
}

/// The id of responses that carry events rather than answer a request.
pub const EVENT_RESPONSE_ID: &str = "EVENT";

const CHANNEL_TOKEN: Token = Token(0);

/// Who owns a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Channel,
    Listener(SocketAddr),
    Front(usize),
    Back(usize),
}

/// A bound listener of the worker.
struct ListenerSocket {
    kind: ListenerType,
    socket: TcpListener,
    token: Token,
    /// The listener may have connections waiting that were not accepted yet.
    pending: bool,
}

/// Whether the worker runs, drains or stops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Running,
    /// Soft stop: no more accepts; exit when the last session ends, then answer `request_id`.
    Draining {
        request_id: String,
    },
    Stopped,
}

/// One worker's event loop.
pub struct Server {
    poll: Poll,
    sockets: Slab<Owner>,
    sessions: Slab<Session>,
    listeners: HashMap<SocketAddr, ListenerSocket>,
    /// Listener sockets received from another process, used when their listener is activated.
    inherited: HashMap<SocketAddr, std::net::TcpListener>,
    channel: Channel<Response, Request>,
    state: ConfigState,
    backends: BackendMap,
    timers: Timers,
    pool: Pool,
    config: ServerConfig,
    next_uid: u64,
    run: Run,
    /// Connections per (cluster, client address), for `max_connections_per_ip`.
    per_ip: HashMap<(String, IpAddr), u64>,
}

impl Server {
    /// A worker that reads orders from `channel`, with listener sockets handed over by another
    /// process (they are used when their listener is activated; others are bound here).
    pub fn new(
        config: ServerConfig,
        mut channel: Channel<Response, Request>,
        inherited: Listeners<OwnedFd>,
    ) -> Result<Self, ServerError> {
        let poll = Poll::new().map_err(ServerError::Poll)?;
        channel.nonblocking().map_err(ServerError::Channel)?;
        let mut sockets = Slab::with_capacity(2 * config.max_connections.min(65_536) + 16);
        let channel_token = Token(sockets.insert(Owner::Channel));
        debug_assert_eq!(channel_token, CHANNEL_TOKEN);
        poll.registry()
            .register(
                &mut channel,
                CHANNEL_TOKEN,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(ServerError::RegisterChannel)?;
        let inherited = inherited
            .http
            .into_iter()
            .chain(inherited.https)
            .chain(inherited.tcp)
            .map(|(address, fd)| (address, std::net::TcpListener::from(fd)))
            .collect();
        Ok(Server {
            poll,
            sockets,
            sessions: Slab::with_capacity(config.max_connections.min(65_536)),
            listeners: HashMap::new(),
            inherited,
            channel,
            state: ConfigState::new(),
            backends: BackendMap::new(),
            timers: Timers::new(),
            pool: Pool::new(config.buffer_size, config.min_buffers, config.max_buffers),
            config,
            next_uid: 0,
            run: Run::Running,
            per_ip: HashMap::new(),
        })
    }

    /// Applies the orders that build `state`, before serving (a worker started by the main
    /// process gets the current state this way).
    pub fn load_state(&mut self, state: &ConfigState) -> Result<(), String> {
        for order in state.orders() {
            self.apply_order(&order)?;
        }
        Ok(())
    }

    /// Runs until a stop order completes or the command channel closes.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        while self.run != Run::Stopped {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(error));
            }
            for event in events.iter() {
                self.dispatch(event.token(), Ready::from_event(event));
            }
            self.accept_pending();
            self.fire_timers();
            self.send_events();
            self.check_drained();
            if self.channel.is_closed() && self.run == Run::Running {
                info!("command channel closed, stopping");
                self.run = Run::Stopped;
            }
        }
        info!("worker stopped");
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.can_accept() && self.listeners.values().any(|l| l.pending) {
            return Some(Duration::ZERO);
        }
        self.timers.poll_timeout(Instant::now())
    }

    fn dispatch(&mut self, token: Token, ready: Ready) {
        match self.sockets.get(token.0).copied() {
            Some(Owner::Channel) => self.channel_ready(ready),
            Some(Owner::Listener(address)) => {
                if let Some(listener) = self.listeners.get_mut(&address) {
                    listener.pending = true;
                }
            }
            Some(Owner::Front(key) | Owner::Back(key)) => {
                if let Some(session) = self.sessions.get_mut(key) {
                    session.add_event(token, ready);
                    self.drive(key);
                }
            }
            None => debug!("event for unknown token {token:?}"),
        }
    }

    fn can_accept(&self) -> bool {
        self.run == Run::Running && self.sessions.len() < self.config.max_connections
    }

    /// Accepts waiting connections, a bounded batch per listener per turn.
    fn accept_pending(&mut self) {
        let pending: Vec<SocketAddr> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.pending)
            .map(|(address, _)| *address)
            .collect();
        for address in pending {
            for _ in 0..self.config.accept_batch {
                if !self.can_accept() {
                    return;
                }
                let Some(listener) = self.listeners.get_mut(&address) else {
                    break;
                };
                match listener.socket.accept() {
                    Ok((stream, peer)) => {
                        let kind = listener.kind;
                        self.create_session(address, kind, stream, peer);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        listener.pending = false;
                        break;
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => {
                        // EMFILE and the like: leave the connection in the backlog and retry on
                        // the next turn rather than spin.
                        warn!("accept on {address} failed: {error}");
                        listener.pending = false;
                        break;
                    }
                }
            }
        }
    }

    fn create_session(
        &mut self,
        listener: SocketAddr,
        kind: ListenerType,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        match kind {
            ListenerType::Tcp => self.create_tcp_session(listener, stream, peer),
            ListenerType::Http | ListenerType::Https => {
                debug!("{kind} listener {listener}: protocol not served by this worker yet");
            }
        }
    }

    fn create_tcp_session(
        &mut self,
        listener: SocketAddr,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) {
        let Some(config) = self
            .state
            .tcp_listeners
            .get(&listener)
            .map(|l| l.config.clone())
        else {
            return;
        };
        let Some(cluster_id) = self
            .state
            .tcp_frontends
            .get(&listener)
            .map(|f| f.cluster_id.clone())
        else {
            debug!("TCP listener {listener} has no frontend, closing connection from {peer}");
            return;
        };
        let to_backend = self
            .state
            .clusters
            .get(&cluster_id)
            .and_then(|c| c.proxy_protocol);
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(listener);
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let token = Token(self.sockets.insert(Owner::Front(key)));
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register a connection from {peer}: {error}");
            self.sockets.remove(token.0);
            return;
        }
        let uid = self.next_uid;
        self.next_uid += 1;
        let now = Instant::now();
        let timeouts = SessionTimeouts {
            front: config.front_timeout,
            back: config.back_timeout,
            connect: config.connect_timeout,
            request: config.front_timeout,
        };
        let mut session = Session {
            uid,
            key,
            listener_address: listener,
            front: Endpoint::new(stream, token),
            back: None,
            client_address: peer,
            local_address: local,
            received_proxy_header: None,
            stage: Stage::Closed,
            cluster_id: Some(cluster_id.clone()),
            timeouts,
            front_timeout: Default::default(),
            back_timeout: Default::default(),
            connect_attempts: 0,
            started: now,
            counted_for_ip: None,
        };
        session.stage = tcp::first_stage(&session, &self.pool, config.expect_proxy, to_backend);
        session.touch_front(timeouts.front, now, &mut self.timers);
        let expect_proxy = config.expect_proxy;
        entry.insert(session);
        debug!("session {uid}: accepted {peer} on {listener}");
        if expect_proxy {
            self.drive(key);
        } else {
            self.handle_action(key, Action::Connect { cluster_id });
        }
    }

    /// Runs a session until it waits, acting on what it asks.
    fn drive(&mut self, key: usize) {
        let action = self.run_session(key);
        self.handle_action(key, action);
    }

    /// Lets the session work until it would block.
    fn run_session(&mut self, key: usize) -> Action {
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        let mut context = Context {
            now: Instant::now(),
            timers: &mut self.timers,
            pool: &self.pool,
        };
        session.ready(&mut context)
    }

    fn handle_action(&mut self, key: usize, mut action: Action) {
        // Each round makes progress: connect attempts are bounded, and a connected session
        // runs until it waits. The bound only guards against a bug looping forever.
        for _ in 0..64 {
            action = match action {
                Action::Wait => return,
                Action::Close => {
                    self.close_session(key);
                    return;
                }
                Action::Connect { cluster_id } => self.connect(key, &cluster_id),
                Action::ConnectFailed => self.connect_failed(key),
                Action::Connected => {
                    self.connected(key);
                    self.run_session(key)
                }
            };
        }
        error!("session in slot {key} looped without settling, closing it");
        self.close_session(key);
    }

    /// Opens a connection to a backend of the cluster for the session.
    fn connect(&mut self, key: usize, cluster_id: &str) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        let client_ip = session.client_address.ip();
        if session.counted_for_ip.is_none() {
            let limit = self
                .state
                .clusters
                .get(cluster_id)
                .and_then(|c| c.max_connections_per_ip)
                .unwrap_or(self.state.max_connections_per_ip);
            let count = self
                .per_ip
                .entry((cluster_id.to_string(), client_ip))
                .or_insert(0);
            if limit > 0 && *count >= limit {
                debug!(
                    "session {}: {client_ip} is over its {limit} connections to `{cluster_id}`",
                    session.uid
                );
                return Action::Close;
            }
            *count += 1;
            session.counted_for_ip = Some(cluster_id.to_string());
        }
        let backend = match self.backends.pick(cluster_id, Some(client_ip), now) {
            Ok(backend) => backend,
            Err(PickError::NoBackend(_) | PickError::NoCluster(_)) => {
                debug!(
                    "session {}: no backend available in `{cluster_id}`",
                    session.uid
                );
                return Action::Close;
            }
        };
        let Some(address) = self.backends.get(backend).map(|b| b.address) else {
            return Action::Close;
        };
        session.connect_attempts += 1;
        let mut stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            Err(error) => {
                debug!(
                    "session {}: connect to {address} failed at once: {error}",
                    session.uid
                );
                self.backends.connect_failed(backend, now);
                return self.retry_or_give_up(key);
            }
        };
        let _ = stream.set_nodelay(true);
        let token = Token(self.sockets.insert(Owner::Back(key)));
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register a connection to {address}: {error}");
            self.sockets.remove(token.0);
            return Action::Close;
        }
        self.backends.connection_opened(backend);
        session.back = Some(BackConnection {
            endpoint: Endpoint::new(stream, token),
            backend,
            address,
            connected: false,
            connect_started: now,
        });
        let connect = session.timeouts.connect;
        session.touch_back(connect, now, &mut self.timers);
        Action::Wait
    }

    /// The backend connection is up: account for it and start the back idle timeout.
    fn connected(&mut self, key: usize) {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(back) = &session.back {
            self.backends
                .connect_succeeded(back.backend, now.duration_since(back.connect_started));
            debug!("session {}: connected to {}", session.uid, back.address);
        }
        let after = session.timeouts.back;
        session.touch_back(after, now, &mut self.timers);
    }

    /// The connect failed before any byte was sent: forget that connection and try another
    /// backend, within the attempt budget.
    fn connect_failed(&mut self, key: usize) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        if let Some(back) = session.back.take() {
            warn!(
                "session {}: connecting to backend {} failed",
                session.uid, back.address
            );
            self.backends.connect_failed(back.backend, now);
            self.backends.connection_closed(back.backend);
            self.drop_back(back);
        }
        self.retry_or_give_up(key)
    }

    fn retry_or_give_up(&mut self, key: usize) -> Action {
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.back_timeout.cancel();
        match &session.cluster_id {
            Some(cluster_id) if session.connect_attempts < self.config.connect_attempts => {
                Action::Connect {
                    cluster_id: cluster_id.clone(),
                }
            }
            _ => Action::Close,
        }
    }

    fn drop_back(&mut self, mut back: BackConnection) {
        let _ = self.poll.registry().deregister(&mut back.endpoint.stream);
        self.sockets.try_remove(back.endpoint.token.0);
    }

    fn close_session(&mut self, key: usize) {
        let Some(mut session) = self.sessions.try_remove(key) else {
            return;
        };
        debug!(
            "session {}: closed after {:?} ({} bytes in, {} out)",
            session.uid,
            session.started.elapsed(),
            session.front.bytes_read,
            session.front.bytes_written
        );
        let _ = self.poll.registry().deregister(&mut session.front.stream);
        self.sockets.try_remove(session.front.token.0);
        if let Some(back) = session.back.take() {
            self.backends.connection_closed(back.backend);
            self.drop_back(back);
        }
        if let Some(cluster_id) = session.counted_for_ip.take() {
            let ip_key = (cluster_id, session.client_address.ip());
            if let Some(count) = self.per_ip.get_mut(&ip_key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_ip.remove(&ip_key);
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(session) = self
                .sessions
                .get_mut(key.session)
                .filter(|s| s.uid == key.uid)
            else {
                continue;
            };
            let timeout = match key.kind {
                TimeoutKind::Front => &mut session.front_timeout,
                TimeoutKind::Back => &mut session.back_timeout,
            };
            if timeout.on_due(at, now, key, &mut self.timers) {
                debug!("session {}: {:?} timeout", session.uid, key.kind);
                let action = session.timed_out(key.kind);
                self.handle_action(key.session, action);
            }
        }
    }

    /// Ends a soft stop once the last session is gone.
    fn check_drained(&mut self) {
        if let Run::Draining { request_id } = &self.run {
            if self.sessions.is_empty() {
                let response = Response::ok(request_id.clone(), None);
                self.respond(response);
                self.flush_channel();
                self.run = Run::Stopped;
            }
        }
    }

    fn send_events(&mut self) {
        for event in self.backends.take_events() {
            info!("event {:?} for cluster {:?}", event.kind, event.cluster_id);
            self.respond(event_response(event));
        }
    }

    fn channel_ready(&mut self, ready: Ready) {
        if ready.contains(Ready::WRITABLE) {
            if let Err(error) = self.channel.writable() {
                warn!("command channel write failed: {error}");
            }
        }
        if ready.contains(Ready::READABLE) || ready.contains(Ready::HUP) {
            if let Err(error) = self.channel.readable() {
                warn!("command channel read failed: {error}");
            }
            loop {
                match self.channel.read_message() {
                    Ok(Some(request)) => self.handle_request(request),
                    Ok(None) => break,
                    Err(ChannelError::InvalidMessage { id, source, .. }) => {
                        let id = id.unwrap_or_default();
                        self.respond(Response::failure(id, format!("invalid message: {source}")));
                    }
                    Err(error) if error.is_fatal() => {
                        warn!("command channel failed: {error}");
                        break;
                    }
                    Err(error) => self.respond(Response::failure("", error.to_string())),
                }
                if self.run == Run::Stopped {
                    break;
                }
            }
        }
    }

    fn respond(&mut self, response: Response) {
        if let Err(error) = self.channel.write_message(&response) {
            warn!("cannot send response {}: {error}", response.id);
        }
    }

    fn flush_channel(&mut self) {
        let _ = self.channel.blocking();
        let _ = self.channel.writable();
    }

    fn handle_request(&mut self, request: Request) {
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
                let belongs = |f: &&sozu_command_lib::request::HttpFrontend| {
                    f.cluster_id.as_ref() == Some(cluster_id)
                };
                let configured = self.state.backends.get(cluster_id);
                let mut backends: Vec<BackendInformation> = self
                    .backends
                    .cluster_backends(cluster_id)
                    .map(|runtime| BackendInformation {
                        backend: configured
                            .and_then(|c| c.get(&runtime.id))
                            .filter(|b| b.address == runtime.address)
                            .cloned()
                            .unwrap_or_else(|| sozu_command_lib::request::AddBackend {
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

    /// Validates an order against the state, then applies it to the running worker. On error
    /// nothing changed.
    fn apply_order(&mut self, order: &Order) -> Result<(), String> {
        // Binding can fail after validation; do it first so a failed bind changes nothing.
        if let Order::ActivateListener(listener) = order {
            if self.state.listener_kind(listener.address) != Some(listener.proxy) {
                return Err(format!(
                    "no {} listener on {}",
                    listener.proxy, listener.address
                ));
            }
            self.activate(listener)?;
        }
        if let Err(error) = self.state.apply(order) {
            if let Order::ActivateListener(listener) = order {
                self.deactivate(listener.address);
            }
            return Err(error_chain(&error));
        }
        match order {
            Order::AddCluster(cluster) => self.backends.set_cluster(cluster),
            Order::RemoveCluster(id) => self.backends.remove_cluster(&id.cluster_id),
            Order::AddBackend(backend) => self.backends.add(backend),
            Order::RemoveBackend(backend) => self
                .backends
                .remove(&backend.cluster_id, &backend.backend_id),
            Order::DeactivateListener(listener) => self.deactivate(listener.address),
            Order::RemoveListener(listener) => self.deactivate(listener.address),
            _ => {}
        }
        Ok(())
    }

    /// Starts accepting on a listener: an inherited socket for its address, or a new one.
    fn activate(&mut self, listener: &ListenerAddress) -> Result<(), String> {
        let address = listener.address;
        if self.listeners.contains_key(&address) {
            return Ok(());
        }
        let std_listener = match self.inherited.remove(&address) {
            Some(socket) => socket,
            None => {
                bind(address).map_err(|error| format!("cannot listen on {address}: {error}"))?
            }
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

    fn deactivate_all(&mut self) {
        let addresses: Vec<SocketAddr> = self.listeners.keys().copied().collect();
        for address in addresses {
            self.deactivate(address);
        }
    }
}

/// Binds a listening socket with `SO_REUSEADDR` and `SO_REUSEPORT`, so several workers (and a
/// new worker during an upgrade) can listen on the same address.
fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// An error and its causes, in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn event_response(event: Event) -> Response {
    Response::ok(EVENT_RESPONSE_ID, Some(ResponseContent::Event(event)))
}
