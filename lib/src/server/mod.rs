//! The event loop of a worker: one thread, one `mio::Poll`, every listener and session.
//!
//! Orders arrive on the command channel and are applied between events; each gets exactly one
//! final response. Sockets are registered once, edge-triggered, for reading and writing; a
//! token names its owner (a listener, or one end of a session) in the `sockets` slab, so a
//! socket keeps its token for life. Timeouts live in [`Timers`]. Nothing here blocks, and input
//! never panics the loop: a session in trouble is closed and the loop goes on.

use std::{
    collections::HashMap,
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
use rustc_hash::FxHashMap;
use slab::Slab;
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    config::{AccessLogFormat, LogTarget},
    request::{ListenerType, QueryMetrics, Request},
    response::{AggregatedMetrics, Event, Response, ResponseContent},
    scm::Listeners,
    state::ConfigState,
};

use crate::{
    access_log::AccessLog,
    backends::{BackendKey, BackendMap, PickError},
    health::{HealthRecord, Probe},
    http::{self, Failure, HttpListener},
    metrics::{BackendGauge, Metrics, Recorder, RequestRecord, statsd::Statsd},
    pool::Pool,
    session::{Action, BackConnection, Context, Session, SessionTimeouts, Stage},
    socket::{Endpoint, Ready},
    tcp,
    timer::{TimeoutKind, Timers},
};

mod health;
mod orders;
mod validation;

pub use orders::bind_listener;
pub use validation::{OrderError, Validated, validate};

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
    /// The `Retry-After` of 429 answers, unless the cluster sets its own.
    pub retry_after: Duration,
    /// Access logs; `None` writes none.
    pub access_logs: Option<AccessLogSettings>,
    /// Where figures are pushed as statsd.
    pub statsd: Option<StatsdSettings>,
    /// Keep figures for the proxy and listeners only, not per cluster and backend.
    pub disable_cluster_metrics: bool,
    /// Size of the kernel pipes of TCP listeners with `splice`; 0 keeps the kernel's default.
    pub splice_pipe_capacity: usize,
}

/// Where access logs go and how they look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// `None`: through the process's logger, at `info` with the target `access`.
    pub target: Option<LogTarget>,
    pub format: AccessLogFormat,
}

/// A statsd destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsdSettings {
    pub address: SocketAddr,
    pub prefix: String,
    /// DogStatsD tags rather than names carrying the cluster and backend.
    pub tagged: bool,
}

/// How often figures are pushed to statsd.
const STATSD_INTERVAL: Duration = Duration::from_secs(1);

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
            retry_after: Duration::from_secs(60),
            access_logs: None,
            statsd: None,
            disable_cluster_metrics: false,
            splice_pipe_capacity: 0,
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
    #[error("cannot open the access log target")]
    AccessLog(#[source] io::Error),
    #[error("cannot create the statsd socket")]
    Statsd(#[source] io::Error),
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
    /// A kept-alive backend connection waiting in the pool of its backend.
    Idle(BackendKey),
    /// A health check in flight, by its slot.
    Probe(usize),
}

/// A backend connection kept alive after its session was done with it, for the next request
/// to the same backend from any session: no connect, no accept on the backend.
struct IdleBackend {
    back: BackConnection,
    since: Instant,
}

/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 64;
/// How long an idle backend connection is kept.
const IDLE_BACKEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often idle connections are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Routes, answers and settings of HTTP and HTTPS listeners.
    http_listeners: FxHashMap<SocketAddr, HttpListener>,
    /// Sessions that yielded with work left, to drive again on the next turn.
    yielded: Vec<usize>,
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
    recorder: Recorder,
    statsd: Option<Statsd>,
    next_statsd_flush: Instant,
    /// Idle backend connections, most recently used last.
    idle: HashMap<BackendKey, Vec<IdleBackend>>,
    next_sweep: Instant,
    /// Health checks in flight, and what they found so far per backend.
    probes: Slab<Probe>,
    health: HashMap<BackendKey, HealthRecord>,
    /// Applies a `LOGGING` order: the logger belongs to the program that runs the worker.
    log_filter_handler: Option<LogFilterHandler>,
}

/// Changes the log filter of the program running a worker; the error says why a filter is
/// refused.
pub type LogFilterHandler = Box<dyn FnMut(&str) -> Result<(), String>>;

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
        let access_log = config
            .access_logs
            .as_ref()
            .map(|settings| AccessLog::new(settings.target.as_ref(), settings.format))
            .transpose()
            .map_err(ServerError::AccessLog)?;
        let statsd = config
            .statsd
            .as_ref()
            .map(|settings| Statsd::new(settings.address, &settings.prefix, settings.tagged))
            .transpose()
            .map_err(ServerError::Statsd)?;
        let recorder = Recorder {
            metrics: Metrics::new(config.disable_cluster_metrics),
            access_log,
        };
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
            http_listeners: FxHashMap::default(),
            yielded: Vec::new(),
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
            recorder,
            statsd,
            next_statsd_flush: Instant::now() + STATSD_INTERVAL,
            idle: HashMap::new(),
            next_sweep: Instant::now() + SWEEP_INTERVAL,
            probes: Slab::new(),
            health: HashMap::new(),
            log_filter_handler: None,
        })
    }

    /// Lets `LOGGING` orders change the program's log filter through `handler`; without one,
    /// the worker refuses them.
    pub fn handle_log_filter(&mut self, handler: LogFilterHandler) {
        self.log_filter_handler = Some(handler);
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
            self.drive_yielded();
            self.accept_pending();
            self.fire_timers();
            self.send_events();
            self.flush_observations();
            self.housekeeping(Instant::now());
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
        let accepts_waiting = self.can_accept() && self.listeners.values().any(|l| l.pending);
        if accepts_waiting || !self.yielded.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let mut timeout = self.timers.poll_timeout(now);
        let mut wake_at = |at: Instant| {
            let after = at.saturating_duration_since(now);
            timeout = Some(timeout.map_or(after, |timeout| timeout.min(after)));
        };
        if self.statsd.is_some() {
            wake_at(self.next_statsd_flush);
        }
        if let Some(at) = self
            .recorder
            .access_log
            .as_ref()
            .and_then(AccessLog::next_flush)
        {
            wake_at(at);
        }
        if !self.idle.is_empty() || !self.probes.is_empty() || self.has_health_checks() {
            wake_at(self.next_sweep);
        }
        if let Run::Draining { .. } = self.run {
            // Fresh connections become idle after their grace without any event.
            wake_at(now + http::FIRST_REQUEST_GRACE / 4);
        }
        timeout
    }

    fn has_health_checks(&self) -> bool {
        self.state
            .clusters
            .values()
            .any(|cluster| cluster.health_check.is_some())
    }

    /// Writes the access log lines of this turn, and pushes figures to statsd when due.
    fn flush_observations(&mut self) {
        let now = Instant::now();
        if let Some(access_log) = self.recorder.access_log.as_mut() {
            access_log.flush_if_due(now);
        }
        if now < self.next_statsd_flush {
            return;
        }
        self.next_statsd_flush = now + STATSD_INTERVAL;
        if self.statsd.is_some() && self.recorder.metrics.is_enabled() {
            let snapshot = self.metrics_snapshot(&QueryMetrics::default());
            if let Some(statsd) = self.statsd.as_mut() {
                statsd.flush(&snapshot);
            }
        }
    }

    /// The worker's figures for a query.
    fn metrics_snapshot(&self, query: &QueryMetrics) -> AggregatedMetrics {
        let gauges: Vec<BackendGauge<'_>> = self
            .state
            .clusters
            .keys()
            .flat_map(|cluster_id| {
                self.backends
                    .cluster_backends(cluster_id)
                    .map(|backend| BackendGauge {
                        cluster_id: &backend.cluster_id,
                        backend_id: &backend.id,
                        status: backend.reported_status(),
                        connections: backend.connections,
                    })
            })
            .collect();
        self.recorder
            .metrics
            .snapshot(query, self.sessions.len(), &gauges)
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
            Some(Owner::Idle(backend)) => self.idle_event(backend, token),
            Some(Owner::Probe(slot)) => self.probe_event(slot),
            None => debug!("event for unknown token {token:?}"),
        }
    }

    /// An idle backend connection has news: the backend closed it, or sent what nobody asked
    /// for. Either way it cannot carry a request any more.
    fn idle_event(&mut self, backend: BackendKey, token: Token) {
        let Some(list) = self.idle.get_mut(&backend) else {
            return;
        };
        if let Some(position) = list
            .iter()
            .position(|idle| idle.back.endpoint.token == token)
        {
            let idle = list.swap_remove(position);
            self.drop_back(idle.back);
        }
    }

    /// Keeps a backend connection for later, or closes it if the pool is full or its backend
    /// takes no new connection.
    fn keep_idle(&mut self, back: BackConnection) {
        self.backends.connection_closed(back.backend);
        let takes_connections = self
            .backends
            .get(back.backend)
            .is_some_and(|b| b.status == sozu_command_lib::response::BackendStatus::Normal);
        let list = self.idle.entry(back.backend).or_default();
        if !takes_connections || list.len() >= MAX_IDLE_PER_BACKEND {
            self.drop_back(back);
            return;
        }
        if let Some(owner) = self.sockets.get_mut(back.endpoint.token.0) {
            *owner = Owner::Idle(back.backend);
        }
        list.push(IdleBackend {
            back,
            since: Instant::now(),
        });
    }

    /// A live idle connection to `backend`, if the pool has one. One the backend sent anything
    /// on since it was pooled, even if no event said so yet, is closed instead.
    fn take_idle(&mut self, backend: BackendKey, now: Instant) -> Option<BackConnection> {
        loop {
            let idle = self.idle.get_mut(&backend)?.pop()?;
            let alive =
                idle.back.is_clean() && now.duration_since(idle.since) < IDLE_BACKEND_TIMEOUT;
            if alive {
                return Some(idle.back);
            }
            self.drop_back(idle.back);
        }
    }

    /// Once a tick: closes idle connections kept too long or whose backend is gone, and runs
    /// the health checks that are due.
    fn housekeeping(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        self.run_health_checks(now);
        self.sweep_idle(now);
    }

    /// Closes idle connections kept too long or whose backend is gone.
    fn sweep_idle(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let backends = &self.backends;
        self.idle.retain(|backend, list| {
            let gone = backends.get(*backend).is_none();
            let (keep, old): (Vec<IdleBackend>, Vec<IdleBackend>) = std::mem::take(list)
                .into_iter()
                .partition(|idle| !gone && now.duration_since(idle.since) < IDLE_BACKEND_TIMEOUT);
            *list = keep;
            expired.extend(old);
            !list.is_empty()
        });
        for idle in expired {
            self.drop_back(idle.back);
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
                self.create_http_session(listener, stream, peer)
            }
        }
    }

    fn create_tcp_session(&mut self, listener: SocketAddr, stream: TcpStream, peer: SocketAddr) {
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
            .default_tcp_frontend(listener)
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
        let timeouts = SessionTimeouts {
            front: config.front_timeout,
            back: config.back_timeout,
            connect: config.connect_timeout,
            request: config.front_timeout,
        };
        let then = tcp::AfterProxy::Pipe {
            to_backend,
            splice: config.splice.then_some(self.config.splice_pipe_capacity),
        };
        let Some(key) = self.new_session(
            listener,
            stream,
            peer,
            timeouts,
            Some(cluster_id),
            |session, pool| tcp::first_stage(session, pool, config.expect_proxy, then),
        ) else {
            return;
        };
        self.drive(key);
    }

    fn create_http_session(&mut self, listener: SocketAddr, stream: TcpStream, peer: SocketAddr) {
        let Some(http_listener) = self.http_listeners.get(&listener) else {
            return;
        };
        let config = http_listener.config.clone();
        let tls_config = http_listener
            .tls
            .as_ref()
            .map(|settings| settings.config.clone());
        let timeouts = SessionTimeouts {
            front: config.front_timeout,
            back: config.back_timeout,
            connect: config.connect_timeout,
            request: config.request_timeout,
        };
        let then = tcp::AfterProxy::Http(tls_config);
        let Some(key) =
            self.new_session(listener, stream, peer, timeouts, None, |session, pool| {
                tcp::first_stage(session, pool, config.expect_proxy, then)
            })
        else {
            return;
        };
        self.drive(key);
    }

    /// Registers an accepted connection and stores its session; returns the session's key.
    fn new_session(
        &mut self,
        listener: SocketAddr,
        mut stream: TcpStream,
        peer: SocketAddr,
        timeouts: SessionTimeouts,
        cluster_id: Option<String>,
        first_stage: impl FnOnce(&mut Session, &Pool),
    ) -> Option<usize> {
        let _ = stream.set_nodelay(true);
        // A listener bound to one address is the connection's local address; only a wildcard
        // listener needs to ask the kernel (`getsockname`).
        let local = if listener.ip().is_unspecified() {
            stream.local_addr().unwrap_or(listener)
        } else {
            listener
        };
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
            return None;
        }
        let uid = self.next_uid;
        self.next_uid += 1;
        let now = Instant::now();
        self.recorder.metrics.accepted(listener);
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
            cluster_id,
            timeouts,
            front_timeout: Default::default(),
            back_timeout: Default::default(),
            connect_attempts: 0,
            started: now,
            counted_for_ip: None,
            connect_time: None,
            handshake_counted: false,
        };
        first_stage(&mut session, &self.pool);
        session.touch_front(timeouts.front, now, &mut self.timers);
        entry.insert(session);
        debug!("session {uid}: accepted {peer} on {listener}");
        Some(key)
    }

    /// Runs a session until it waits, acting on what it asks.
    fn drive(&mut self, key: usize) {
        let action = self.run_session(key);
        self.handle_action(key, action);
    }

    /// Runs `work` on a session with the context it may use.
    fn with_session<R>(
        &mut self,
        key: usize,
        work: impl FnOnce(&mut Session, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let Server {
            sessions,
            timers,
            pool,
            http_listeners,
            state,
            recorder,
            ..
        } = self;
        let session = sessions.get_mut(key)?;
        let mut context = Context {
            now: Instant::now(),
            timers,
            pool,
            listeners: http_listeners,
            clusters: &state.clusters,
            recorder,
        };
        Some(work(session, &mut context))
    }

    /// Lets the session work until it would block.
    fn run_session(&mut self, key: usize) -> Action {
        let action = self
            .with_session(key, |session, context| session.ready(context))
            .unwrap_or(Action::Wait);
        self.note_handshake(key);
        action
    }

    /// Counts a TLS handshake once it completed.
    fn note_handshake(&mut self, key: usize) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if !session.handshake_counted
            && session
                .front
                .tls
                .as_ref()
                .is_some_and(|tls| !tls.is_handshaking())
        {
            session.handshake_counted = true;
            self.recorder.metrics.tls_handshake(true);
        }
    }

    /// Drives again the sessions that yielded on the last turn.
    fn drive_yielded(&mut self) {
        for key in std::mem::take(&mut self.yielded) {
            self.drive(key);
        }
    }

    /// Lets an HTTP session answer by itself for something the loop found.
    fn answer_failure(&mut self, key: usize, failure: Failure) -> Action {
        self.with_session(key, |session, context| {
            if matches!(session.stage, Stage::Http(_)) {
                http::answer_for(session, context, failure)
            } else {
                Action::Close
            }
        })
        .unwrap_or(Action::Wait)
    }

    fn handle_action(&mut self, key: usize, mut action: Action) {
        // Each round makes progress: connect attempts are bounded, and a session runs until it
        // waits or yields. The bound only guards against a bug looping forever.
        for _ in 0..64 {
            action = match action {
                Action::Wait => return,
                Action::Yield => {
                    self.yielded.push(key);
                    return;
                }
                Action::Close => {
                    self.close_when_flushed(key);
                    return;
                }
                Action::Connect {
                    cluster_id,
                    sticky_id,
                } => {
                    self.release_back(key);
                    self.connect(key, &cluster_id, sticky_id.as_deref())
                }
                Action::Reconnect { cluster_id } => {
                    self.release_back(key);
                    self.connect(key, &cluster_id, None)
                }
                Action::ConnectFailed => self.connect_failed(key),
                Action::Connected => {
                    self.connected(key);
                    self.run_session(key)
                }
                Action::ExchangeDone | Action::Upgraded => self.run_session(key),
                Action::DropBack => {
                    self.release_back(key);
                    self.run_session(key)
                }
            };
        }
        error!("session in slot {key} looped without settling, closing it");
        self.close_session(key);
    }

    /// Opens a connection to a backend of the cluster for the session: the one `sticky_id`
    /// names if it is available, else one the cluster's balancer picks.
    fn connect(&mut self, key: usize, cluster_id: &str, sticky_id: Option<&str>) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.cluster_id = Some(cluster_id.to_string());
        let uid = session.uid;
        let client_ip = session.client_address.ip();
        if session.counted_for_ip.as_deref() != Some(cluster_id) {
            let cluster = self.state.clusters.get(cluster_id);
            let limit = cluster
                .and_then(|c| c.max_connections_per_ip)
                .unwrap_or(self.state.max_connections_per_ip);
            let count = self
                .per_ip
                .get(&(cluster_id.to_string(), client_ip))
                .copied()
                .unwrap_or(0);
            if limit > 0 && count >= limit {
                debug!(
                    "session {uid}: {client_ip} is over its {limit} connections to `{cluster_id}`"
                );
                let retry_after = cluster
                    .and_then(|c| c.retry_after)
                    .unwrap_or(self.config.retry_after)
                    .as_secs();
                return self.answer_failure(key, Failure::TooManyConnections { retry_after });
            }
            // A keep-alive connection moving to another cluster stops counting for the one
            // it leaves: it counts for the cluster it uses now.
            let left = session.counted_for_ip.replace(cluster_id.to_string());
            self.uncount_per_ip(left, client_ip);
            *self
                .per_ip
                .entry((cluster_id.to_string(), client_ip))
                .or_insert(0) += 1;
        }
        let sticky = sticky_id.and_then(|id| self.backends.pick_sticky(cluster_id, id, now));
        let backend =
            match sticky.map_or_else(|| self.backends.pick(cluster_id, Some(client_ip), now), Ok) {
                Ok(backend) => backend,
                Err(PickError::NoBackend(_) | PickError::NoCluster(_)) => {
                    debug!("session {uid}: no backend available in `{cluster_id}`");
                    return self.answer_failure(key, Failure::NoBackend);
                }
            };
        if let Some(back) = self.take_idle(backend, now) {
            return self.reuse(key, backend, back, now);
        }
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        let Some((address, backend_id)) = self
            .backends
            .get(backend)
            .map(|b| (b.address, b.id.clone()))
        else {
            return self.answer_failure(key, Failure::NoBackend);
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
            backend_id,
            address,
            connected: false,
            connect_started: now,
        });
        let connect = session.timeouts.connect;
        session.touch_back(connect, now, &mut self.timers);
        Action::Wait
    }

    /// Closes the session's backend connection, if it has one.
    /// Gives the session an idle connection to `backend` from the pool.
    fn reuse(
        &mut self,
        key: usize,
        backend: BackendKey,
        mut back: BackConnection,
        now: Instant,
    ) -> Action {
        if let Some(owner) = self.sockets.get_mut(back.endpoint.token.0) {
            *owner = Owner::Back(key);
        }
        // The socket was writable when pooled; edge-triggered, it stays so until a write fills it.
        back.endpoint.readiness.event.insert(Ready::WRITABLE);
        self.backends.connection_opened(backend);
        let sticky = self
            .backends
            .get(backend)
            .map(|b| b.sticky_id.clone().unwrap_or_else(|| b.id.clone()))
            .unwrap_or_default();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.back = Some(back);
        session.connect_time = None;
        http::connected(session, &sticky, true);
        let after = session.timeouts.back;
        session.touch_back(after, now, &mut self.timers);
        self.run_session(key)
    }

    /// Takes the session's backend connection away: into the pool when it is clean and idle,
    /// else closed.
    fn release_back(&mut self, key: usize) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let reusable = http::back_is_reusable(session);
        let Some(back) = session.back.take() else {
            return;
        };
        if reusable {
            self.keep_idle(back);
        } else {
            self.backends.connection_closed(back.backend);
            self.drop_back(back);
        }
    }

    /// The backend connection is up: account for it and start the back idle timeout.
    fn connected(&mut self, key: usize) {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(back) = &session.back {
            let connect_time = now.duration_since(back.connect_started);
            self.backends.connect_succeeded(back.backend, connect_time);
            session.connect_time = Some(connect_time);
            if let Some(cluster_id) = &session.cluster_id {
                self.recorder
                    .metrics
                    .connected(cluster_id, &back.backend_id, connect_time);
            }
            debug!("session {}: connected to {}", session.uid, back.address);
            if let Some(backend) = self.backends.get(back.backend) {
                http::connected(
                    session,
                    backend.sticky_id.as_deref().unwrap_or(&backend.id),
                    false,
                );
            }
        }
        session.connect_attempts = 0;
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
            if let Some(cluster_id) = &session.cluster_id {
                let retried = session.connect_attempts < self.config.connect_attempts;
                self.recorder
                    .metrics
                    .connect_failed(cluster_id, &back.backend_id, retried);
            }
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
                    sticky_id: None,
                }
            }
            _ => self.answer_failure(key, Failure::NoBackend),
        }
    }

    /// Closes a backend connection. Closing the socket removes it from epoll: no
    /// `deregister` call is needed, as the descriptor is not shared.
    fn drop_back(&mut self, back: BackConnection) {
        self.sockets.try_remove(back.endpoint.token.0);
        drop(back);
    }

    /// Closes the session once the client socket has sent what is pending (the end of an
    /// encrypted answer, a close_notify), within one front timeout: a session already flushing
    /// is closed for good, so a client that stops reading cannot hold it open by never
    /// letting the last bytes out.
    fn close_when_flushed(&mut self, key: usize) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let is_flushing = matches!(session.stage, Stage::Flushing);
        if is_flushing || !session.front.has_pending_output() || session.front.flush() {
            self.close_session(key);
            return;
        }
        self.release_back(key);
        if let Some(session) = self.sessions.get_mut(key) {
            session.stage = Stage::Flushing;
            let after = session.timeouts.front;
            session.touch_front(after, Instant::now(), &mut self.timers);
        }
    }

    fn close_session(&mut self, key: usize) {
        self.record_unfinished(key);
        let Some(mut session) = self.sessions.try_remove(key) else {
            return;
        };
        if session
            .front
            .tls
            .as_ref()
            .is_some_and(|tls| tls.is_handshaking())
        {
            self.recorder.metrics.tls_handshake(false);
        }
        debug!(
            "session {}: closed after {:?} ({} bytes in, {} out)",
            session.uid,
            session.started.elapsed(),
            session.front.bytes_read,
            session.front.bytes_written
        );
        // Dropping the session closes its socket, which leaves epoll by itself.
        self.sockets.try_remove(session.front.token.0);
        let reusable = http::back_is_reusable(&session);
        if let Some(back) = session.back.take() {
            if reusable {
                self.keep_idle(back);
            } else {
                self.backends.connection_closed(back.backend);
                self.drop_back(back);
            }
        }
        self.uncount_per_ip(session.counted_for_ip.take(), session.client_address.ip());
    }

    /// A connection of `client_ip` stops counting for `cluster_id` (for
    /// `max_connections_per_ip`).
    fn uncount_per_ip(&mut self, cluster_id: Option<String>, client_ip: IpAddr) {
        let Some(cluster_id) = cluster_id else {
            return;
        };
        let ip_key = (cluster_id, client_ip);
        if let Some(count) = self.per_ip.get_mut(&ip_key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&ip_key);
            }
        }
    }

    /// Records what a closing session had not recorded yet: its TCP connection, or an HTTP
    /// request that got no complete answer.
    fn record_unfinished(&mut self, key: usize) {
        self.with_session(key, |session, context| match &session.stage {
            Stage::Http(_) => http::record_unfinished(session, context),
            // A pipe on an HTTP listener is an upgraded request, recorded as such.
            Stage::Pipe(_) | Stage::ExpectProxy(_)
                if !context.listeners.contains_key(&session.listener_address) =>
            {
                let back = session.back.as_ref();
                let record = RequestRecord {
                    listener: session.listener_address,
                    client: session.client_address,
                    protocol: "TCP",
                    cluster_id: session.cluster_id.as_deref(),
                    backend_id: back.map(|b| b.backend_id.as_str()),
                    backend_address: back.map(|b| b.address),
                    method: "",
                    host: "",
                    path: "",
                    status: None,
                    answered_by_proxy: false,
                    bytes_in: session.front.bytes_read,
                    bytes_out: session.front.bytes_written,
                    connect_time: session.connect_time,
                    first_byte_time: None,
                    total_time: context.now.duration_since(session.started),
                    user_agent: "",
                    request_id: "",
                };
                context.recorder.request_done(&record);
            }
            _ => {}
        });
    }

    fn fire_timers(&mut self) {
        // Entries of closed sessions wait for their deadline in the heap; at thousands of
        // connections per second they would pile up. Sweep them when they outnumber the live
        // timeouts (two per session) several times over: amortized, a constant per entry.
        if self.timers.len() > 8 * self.sessions.len() + 4096 {
            let sessions = &self.sessions;
            self.timers.retain(|key| {
                sessions
                    .get(key.session)
                    .is_some_and(|session| session.uid == key.uid)
            });
        }
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
                let action = self
                    .with_session(key.session, |session, context| {
                        session.timed_out(key.kind, context)
                    })
                    .unwrap_or(Action::Wait);
                self.handle_action(key.session, action);
            }
        }
    }

    /// Ends a soft stop once the last session is gone. Keep-alive sessions waiting between
    /// requests are closed: their next request could not be served anyway.
    fn check_drained(&mut self) {
        if let Run::Draining { .. } = &self.run {
            let now = Instant::now();
            let idle: Vec<usize> = self
                .sessions
                .iter()
                .filter(|(_, session)| http::is_idle(session, now))
                .map(|(key, _)| key)
                .collect();
            for key in idle {
                self.close_session(key);
            }
        }
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
}

fn event_response(event: Event) -> Response {
    Response::ok(EVENT_RESPONSE_ID, Some(ResponseContent::Event(event)))
}
