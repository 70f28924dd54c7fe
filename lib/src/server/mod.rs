//! The event loop of a worker: one thread, one `mio::Poll`, every listener and session.
//!
//! Orders arrive on the command channel and are applied between events; each gets exactly one
//! final response. Sockets are registered once, edge-triggered, for reading and writing; a
//! token names its owner (a listener, or one end of a session) in the `sockets` slab, so a
//! socket keeps its token for life. Timeouts live in `Timers`. Nothing here blocks, and input
//! never panics the loop: a session in trouble is closed and the loop goes on.

use std::{
    collections::HashMap,
    io::{self, ErrorKind},
    net::SocketAddr,
    os::fd::OwnedFd,
    rc::Rc,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use log::{debug, error, info};
use mio::{Events, Interest, Poll, Token, Waker, net::TcpListener};
use rustc_hash::FxHashMap;
use slab::Slab;
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    request::{ListenerType, Request, Timeouts},
    response::Response,
    scm::{Listeners, ScmSocket},
    state::ConfigState,
};

use crate::{
    access_log::AccessLog,
    backends::{BackendKey, BackendMap},
    faults::FaultSet,
    health::{HealthRecord, Probe},
    metrics::{Metrics, Recorder, statsd::Statsd},
    pool::Pool,
    protocol::http::{HttpListener, auth::Authorized, splice::BodySplice},
    router::content::{ContentRouter, TcpRouter, resolver::Resolver},
    session::endpoint::Ready,
    session::{
        Action, Context, FIRST_REQUEST_GRACE, Failure, Session, Stage, backs::Slot, mux::Wakes,
    },
    timer::Timers,
};

mod accept;
mod backend_pool;
mod batch;
mod channel;
mod config;
mod connect;
mod content;
mod drain;
mod faults;
mod handed_listeners;
mod health;
mod hold;
mod mux;
mod observations;
mod orders;
mod per_ip;
mod reclaim;
mod remote;
mod shared;
mod tcp_routers;
mod validation;

pub use tcp_routers::{TcpRouters, WorkerGone};

use backend_pool::BackendPool;
use channel::event_response;
use observations::STATSD_INTERVAL;

pub use config::{AccessLogSettings, ServerConfig, StatsdSettings};

pub use orders::{ApplyError, bind_listener};
pub use validation::{OrderError, Validated, check, validate};

/// Why [`Server::new`] or [`Server::run`] failed: the worker cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The mio poll (epoll) cannot be created.
    #[error("cannot create the event loop")]
    Poll(#[source] io::Error),
    /// The command channel's socket cannot be registered with the poll.
    #[error("cannot register the command channel")]
    RegisterChannel(#[source] io::Error),
    /// The command channel cannot be made non-blocking.
    #[error("the command channel failed")]
    Channel(#[source] ChannelError),
    /// The access log file or socket cannot be opened.
    #[error("cannot open the access log target")]
    AccessLog(#[source] io::Error),
    /// The UDP socket that sends to statsd cannot be created.
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
    /// The loop's waker: the resolver answered, or a router was registered.
    Waker,
    Listener(SocketAddr),
    Front(usize),
    /// A backend connection of a session, in one of its slots.
    Back {
        session: usize,
        slot: Slot,
    },
    /// A kept-alive backend connection waiting in the pool of its backend.
    Idle(BackendKey),
    /// A backend HTTP/2 connection shared by sessions' streams ([`mux`]).
    Mux(BackendKey),
    /// A health check in flight, by its slot.
    Probe(usize),
}

/// How often idle connections are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A bound listener of the worker.
struct ListenerSocket {
    kind: ListenerType,
    socket: TcpListener,
    token: Token,
    /// The listener may have connections waiting that were not accepted yet.
    pending: bool,
    /// Accepted sockets inherit `TCP_NODELAY` from the listener ([`accept::nodelay_on_accepted`]):
    /// no `setsockopt` per connection. Otherwise each accepted socket gets it.
    nodelay_inherited: bool,
    /// The listener's timeouts, as its sessions hold them (shared): kept in step with the
    /// listener's orders, so an accept looks nothing up.
    timeouts: Rc<Timeouts>,
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
    listeners: FxHashMap<SocketAddr, ListenerSocket>,
    /// Routes, answers and settings of HTTP and HTTPS listeners.
    http_listeners: FxHashMap<SocketAddr, HttpListener>,
    /// Where connections accepted on each TCP listener go, from their first bytes.
    content_routers: FxHashMap<SocketAddr, ContentRouter>,
    /// The Basic-auth credentials of each cluster that lists some.
    authorized: FxHashMap<String, Authorized>,
    /// Sessions that yielded with work left, to drive again once this poll's events are
    /// handled (a session that yields again there waits for the next poll, taken without
    /// blocking).
    yielded: Vec<usize>,
    /// Listener sockets received from another process, used when their listener is activated.
    inherited: HashMap<SocketAddr, std::net::TcpListener>,
    /// Where the main process sends the sockets of listeners activated later.
    fd_socket: Option<ScmSocket>,
    channel: Channel<Response, Request>,
    state: ConfigState,
    backends: BackendMap,
    timers: Timers,
    pool: Pool,
    config: ServerConfig,
    next_uid: u64,
    run: Run,
    /// Connections per (cluster, client address), for `max_connections_per_ip`.
    per_ip: per_ip::PerIp,
    /// The cluster ids sessions hold, shared.
    cluster_ids: shared::Shared<str>,
    /// The listeners' timeouts sessions hold, shared.
    timeouts: shared::Shared<Timeouts>,
    recorder: Recorder,
    statsd: Option<Statsd>,
    next_statsd_flush: Instant,
    /// Idle backend connections.
    idle_pool: BackendPool,
    /// What the loop knows of its descriptors running out ([`reclaim`]).
    descriptors: reclaim::Descriptors,
    /// Backend HTTP/2 connections shared by sessions' streams.
    muxes: mux::Muxes,
    /// Streams whose sessions must be told (their handle's token) of news of their
    /// connection, and what: the links of `muxes` queue them there.
    wakes: Wakes,
    /// The wakes being delivered, kept between turns (`Server::wake_streams`).
    wake_batch: Vec<(Token, Ready)>,
    next_sweep: Instant,
    /// Health checks in flight, and what they found so far per backend.
    probes: Slab<Probe>,
    health: HashMap<BackendKey, HealthRecord>,
    /// Applies a `LOGGING` order: the logger belongs to the program that runs the worker.
    log_filter_handler: Option<LogFilterHandler>,
    /// Backends draining with a deadline.
    drains: Vec<drain::Drain>,
    /// Sessions waiting for a backend of their cluster.
    holds: hold::HoldQueues,
    /// The faults of the state, as they act on this worker's traffic.
    faults: FaultSet,
    /// Wakes the loop from other threads (the resolver, router registrations).
    waker: Arc<Waker>,
    /// Resolves the host names of scripts' `remote`s; started at the first one.
    resolver: Option<Resolver>,
    /// Sessions waiting for the resolver, by name.
    awaiting_names: remote::AwaitingNames,
    /// Routers the embedding program registered, on their way in.
    registrations: mpsc::Receiver<tcp_routers::Registration>,
    registrations_sender: mpsc::Sender<tcp_routers::Registration>,
    /// Registered routers whose listener does not exist yet.
    waiting_programs: HashMap<SocketAddr, Box<dyn TcpRouter + Send>>,
    /// The batch of orders open on the channel, answered at its end.
    batch: Option<batch::Batch>,
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
        let waker_token = Token(sockets.insert(Owner::Waker));
        let waker = Waker::new(poll.registry(), waker_token)
            .map(Arc::new)
            .map_err(ServerError::Poll)?;
        let (registrations_sender, registrations) = mpsc::channel();
        let access_log = config
            .access_logs
            .as_ref()
            .map(|settings| {
                AccessLog::new(settings.target.as_ref(), settings.format, settings.colored)
            })
            .transpose()
            .map_err(ServerError::AccessLog)?;
        let statsd = config
            .statsd
            .as_ref()
            .map(|settings| {
                Statsd::new(
                    settings.address,
                    &settings.prefix,
                    settings.tagged,
                    settings.worker_id,
                )
            })
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
            listeners: FxHashMap::default(),
            http_listeners: FxHashMap::default(),
            content_routers: FxHashMap::default(),
            authorized: FxHashMap::default(),
            yielded: Vec::new(),
            inherited,
            fd_socket: None,
            channel,
            state: ConfigState::new(),
            backends: BackendMap::new(),
            timers: Timers::new(),
            pool: Pool::new(config.buffer_size, config.min_buffers, config.max_buffers),
            config,
            next_uid: 0,
            run: Run::Running,
            per_ip: per_ip::PerIp::default(),
            cluster_ids: shared::Shared::default(),
            timeouts: shared::Shared::default(),
            recorder,
            statsd,
            next_statsd_flush: Instant::now() + STATSD_INTERVAL,
            idle_pool: BackendPool::default(),
            descriptors: reclaim::Descriptors::default(),
            muxes: mux::Muxes::default(),
            wakes: Wakes::default(),
            wake_batch: Vec::new(),
            next_sweep: Instant::now() + SWEEP_INTERVAL,
            probes: Slab::new(),
            health: HashMap::new(),
            log_filter_handler: None,
            drains: Vec::new(),
            holds: hold::HoldQueues::default(),
            faults: FaultSet::new(faults::entropy()),
            waker,
            resolver: None,
            awaiting_names: remote::AwaitingNames::default(),
            registrations,
            registrations_sender,
            waiting_programs: HashMap::new(),
            batch: None,
        })
    }

    /// Lets `LOGGING` orders change the program's log filter through `handler`; without one,
    /// the worker refuses them.
    pub fn handle_log_filter(&mut self, handler: LogFilterHandler) {
        self.log_filter_handler = Some(handler);
    }

    /// Applies the orders that build `state`, before serving (a worker started by the main
    /// process gets the current state this way).
    pub fn load_state(&mut self, state: &ConfigState) -> Result<(), ApplyError> {
        for order in state.orders() {
            self.apply_order(order)?;
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
            // What each backend socket reported is known before any session runs: a session
            // about to reuse its kept backend connection sees the bytes or the close that came
            // with this batch from the flags, without asking the kernel.
            for event in events.iter() {
                self.note_back_event(event.token(), Ready::from_event(event));
            }
            for event in events.iter() {
                self.dispatch(event.token(), Ready::from_event(event));
            }
            self.wake_streams();
            self.drive_yielded();
            self.accept_pending();
            // One reading of the clock serves the turn's timers and periodic work.
            let now = Instant::now();
            self.fire_timers(now);
            self.check_drains(now);
            self.check_holds(now);
            self.send_events();
            self.flush_observations(now);
            self.housekeeping(now);
            self.check_drained();
            self.wake_streams();
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
        if !self.idle_pool.is_empty()
            || !self.muxes.is_empty()
            || !self.probes.is_empty()
            || self.has_health_checks()
        {
            wake_at(self.next_sweep);
        }
        if let Some(at) = self.descriptors.accepts_paused_until {
            wake_at(at);
        }
        if let Some(at) = self.next_drain_wake() {
            wake_at(at);
        }
        if let Some(at) = self.next_hold_wake(now) {
            wake_at(at);
        }
        if let Run::Draining { .. } = self.run {
            // Fresh connections become idle after their grace without any event.
            wake_at(now + FIRST_REQUEST_GRACE / 4);
        }
        timeout
    }

    fn has_health_checks(&self) -> bool {
        self.state
            .clusters
            .values()
            .any(|cluster| cluster.health_check.is_some())
    }

    /// Notes the readiness of a backend connection's socket on its session, without driving it.
    fn note_back_event(&mut self, token: Token, ready: Ready) {
        if let Some(Owner::Back { session: key, slot }) = self.sockets.get(token.0).copied() {
            if let Some(session) = self.sessions.get_mut(key) {
                session.io.add_back_event(slot, ready);
            }
        }
    }

    fn dispatch(&mut self, token: Token, ready: Ready) {
        match self.sockets.get(token.0).copied() {
            Some(Owner::Channel) => self.channel_ready(ready),
            Some(Owner::Waker) => {
                self.receive_registrations();
                self.receive_resolved();
            }
            Some(Owner::Listener(address)) => {
                if let Some(listener) = self.listeners.get_mut(&address) {
                    listener.pending = true;
                }
            }
            Some(Owner::Front(key)) => {
                if self.is_abandoned(key, ready) {
                    self.close_session(key);
                    return;
                }
                if let Some(session) = self.sessions.get_mut(key) {
                    session.io.add_front_event(ready);
                    self.drive(key);
                }
            }
            // Its flags were noted before any session ran (`note_back_event`). Noted again
            // now, they would be stale when the session already read what the event reported
            // (driven for another event of the batch): an HTTP/2 session's connection, idle
            // once its response was read, would look written to and be given back, checked
            // and pooled, at every request.
            Some(Owner::Back { session: key, .. }) => {
                if self.sessions.contains(key) {
                    self.drive(key);
                }
            }
            Some(Owner::Idle(backend)) => self.idle_event(backend, token),
            Some(Owner::Mux(backend)) => self.mux_event(backend, token, ready),
            Some(Owner::Probe(slot)) => self.probe_event(slot),
            None => debug!("event for unknown token {token:?}"),
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
        self.sweep_muxes(now);
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
            content_routers,
            authorized,
            state,
            recorder,
            faults,
            config,
            ..
        } = self;
        let session = sessions.get_mut(key)?;
        let mut context = Context {
            now: Instant::now(),
            timers,
            pool,
            listeners: http_listeners,
            content_routers,
            clusters: &state.clusters,
            authorized,
            recorder,
            faults,
            body_splice: BodySplice {
                min_body: config.http_splice_min_body,
                pipe_capacity: config.splice_pipe_capacity,
            },
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
        if !session.io.handshake_counted
            && session
                .io
                .front
                .tls
                .as_ref()
                .is_some_and(|tls| !tls.is_handshaking())
        {
            session.io.handshake_counted = true;
            self.recorder.metrics.tls_handshake(true);
        }
    }

    /// Drives again the sessions that yielded while this poll's events were handled.
    fn drive_yielded(&mut self) {
        for key in std::mem::take(&mut self.yielded) {
            self.drive(key);
        }
    }

    /// Lets the session answer by itself for something the loop found.
    fn answer_failure(&mut self, key: usize, slot: Slot, failure: Failure) -> Action {
        self.with_session(key, |session, context| {
            session.answer_failure(slot, failure, context)
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
                    slot,
                    cluster_id,
                    sticky_id,
                } => {
                    self.release_back(key, slot);
                    self.connect(key, slot, cluster_id, sticky_id.as_deref())
                }
                Action::Reconnect { slot, cluster_id } => {
                    self.release_back(key, slot);
                    self.connect(key, slot, cluster_id, None)
                }
                Action::ConnectRemote { slot, remote } => {
                    self.release_back(key, slot);
                    self.connect_remote(key, slot, &remote)
                }
                Action::ConnectFailed(slot) => self.connect_failed(key, slot),
                Action::Connected(slot) => self.connected_and_run(key, slot),
                Action::ExchangeDone => {
                    self.bound_kept_backs(key);
                    self.run_session(key)
                }
                Action::Upgraded => self.run_session(key),
                Action::DropBack(slot) => {
                    self.release_back(key, slot);
                    self.run_session(key)
                }
            };
        }
        error!("session in slot {key} looped without settling, closing it");
        self.close_session(key);
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
        if is_flushing || !session.io.front.has_pending_output() || session.io.front.flush() {
            self.close_session(key);
            return;
        }
        self.release_backs(key);
        if let Some(session) = self.sessions.get_mut(key) {
            session.stage = Stage::Flushing;
            let after = session.io.timeouts.front;
            session
                .io
                .touch_front(after, Instant::now(), &mut self.timers);
        }
    }

    fn close_session(&mut self, key: usize) {
        self.forget_held(key);
        self.record_unfinished(key);
        self.release_backs(key);
        let Some(mut session) = self.sessions.try_remove(key) else {
            return;
        };
        if session
            .io
            .front
            .tls
            .as_ref()
            .is_some_and(|tls| tls.is_handshaking())
        {
            self.recorder.metrics.tls_handshake(false);
        }
        debug!(
            "session {}: closed after {:?} ({} bytes in, {} out)",
            session.io.uid,
            session.io.started.elapsed(),
            session.io.front.bytes_read,
            session.io.front.bytes_written
        );
        // Dropping the session closes its socket, which leaves epoll by itself.
        self.sockets.try_remove(session.io.front.token.0);
        self.uncount_per_ip(
            session.io.counted_for_ip.take(),
            session.io.client_address.ip(),
        );
    }

    /// Records what a closing session had not recorded yet.
    fn record_unfinished(&mut self, key: usize) {
        self.with_session(key, |session, context| session.record_unfinished(context));
    }

    /// Acts on the timeouts due at `now`.
    fn fire_timers(&mut self, now: Instant) {
        // Entries of closed sessions and of backend connections gone from their slot (an
        // HTTP/2 stream's, each request) wait for their instant in the heap; at thousands per
        // second they would pile up. Sweep them when they outnumber the live ones.
        if self.timers.needs_sweep(8 * self.sessions.len() + 4096) {
            let sessions = &mut self.sessions;
            self.timers.retain(|at, key| {
                sessions
                    .get_mut(key.session)
                    .filter(|session| session.io.uid == key.uid)
                    .and_then(|session| session.io.timeout_mut(key.kind))
                    .is_some_and(|timeout| timeout.is_queued_at(at))
            });
        }
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(timeout) = self
                .sessions
                .get_mut(key.session)
                .filter(|s| s.io.uid == key.uid)
                .and_then(|session| session.io.timeout_mut(key.kind))
            else {
                // The session closed, or the connection left the slot with its timeout.
                continue;
            };
            if timeout.on_due(at, now, key, &mut self.timers) {
                debug!("session {}: {:?} timeout", key.uid, key.kind);
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
            let mut idle = Vec::new();
            let mut told = Vec::new();
            for (key, session) in self.sessions.iter_mut() {
                if session.is_idle(now) {
                    idle.push(key);
                } else if session.stop_gracefully(now) {
                    told.push(key);
                }
            }
            for key in idle {
                self.close_session(key);
            }
            for key in told {
                self.drive(key);
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
}
