//! A session: a client connection, the backend connections it opened (by slot, [`backs`]),
//! and the protocol stage that moves bytes between them.
//!
//! The event loop ([`crate::server`]) owns sessions and their sockets. It calls
//! [`Session::ready`] when a socket of the session has an event; the session works until it
//! would block and returns an [`Action`] for what only the loop can do: open a backend
//! connection, or close. Stages never reach into the loop.
//!
//! A [`Session`] is its [`Stage`] and a [`SessionIo`] (sockets, addresses, timeouts), kept
//! apart so that [`Stage::ready`] lends a stage's own state and the `SessionIo` at once: no
//! protocol code takes the whole session. A stage that becomes another (an upgrade to a
//! pipe, HTTP/2, the end of a PROXY header or of sniffing, a fault that lingers) returns
//! the next stage in an [`Outcome`], which the stage's `match` puts in place. A stage can be
//! driven in a unit test with a `SessionIo` over loopback sockets and a [`Context`].

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use sozu_command_lib::request::{Cluster, Timeouts};

pub mod backs;
pub mod endpoint;
pub mod mux;
mod rare;
pub mod shaper;

pub use rare::Rare;

use crate::{
    backends::BackendLease,
    faults::FaultSet,
    metrics::Recorder,
    pool::Pool,
    protocol::http::{self, Http, HttpListener, auth::Authorized, h2, splice::BodySplice},
    protocol::{pipe::Pipe, proxy_protocol::ProxyAddresses, reply::Reply, sniff::Sniff},
    router::content::{ContentRouter, Decider},
    session::endpoint::{Endpoint, Ready},
    tcp,
    timer::{Timeout, TimeoutKind, TimerKey, Timers},
};
use backs::{Backs, Slot};
use shaper::Shaper;

/// What a session asks of the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the next event.
    Wait,
    /// The session could go on but yields to the others: the loop drives it again once every
    /// other event of the same poll has been handled.
    Yield,
    /// Open a connection to a backend of `cluster_id` (the one named by `sticky_id` when it
    /// is available) in `slot`, replacing any backend connection the slot has. The id is
    /// shared: a TCP session hands over its own ([`SessionIo::cluster_id`]), not a copy.
    Connect {
        slot: Slot,
        cluster_id: Rc<str>,
        sticky_id: Option<String>,
    },
    /// Open a connection in `slot` to `remote`, a `host:port` a script chose (no cluster):
    /// its name is resolved off the event loop first.
    ConnectRemote { slot: Slot, remote: String },
    /// The backend connection of the slot just got established.
    Connected(Slot),
    /// The backend connection of the slot failed before any byte was sent: try another
    /// backend.
    ConnectFailed(Slot),
    /// A kept backend connection turned out closed: open another one in the slot, without
    /// counting a failure against the backend.
    Reconnect { slot: Slot, cluster_id: Rc<str> },
    /// An exchange ended and the backend connection stays for the next request (unless its
    /// backend has many connections idle with clients: `Server::bound_kept_backs`).
    ExchangeDone,
    /// An exchange ended and the slot's backend connection must be closed.
    DropBack(Slot),
    /// The session switched to a byte pipe (after a protocol upgrade); drive it again.
    Upgraded,
    /// Close the session.
    Close,
}

/// Why the loop asks the session to answer by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No backend of the cluster is available.
    NoBackend,
    /// The client is over its connection cap for the cluster.
    TooManyConnections { retry_after: u64 },
    /// The backend did not answer in time.
    BackTimeout,
    /// The client did not send (or finish) its request in time.
    FrontTimeout,
}

/// How long a stopping worker waits for the first request of a connection it just accepted.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Whether a backend connection attached to a session served an earlier request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackUse {
    /// Opened for the current request.
    New,
    /// Taken from the idle pool, or kept from an earlier request: the backend may have closed
    /// it meanwhile.
    Reused,
}

/// The connection to a backend.
#[derive(Debug)]
pub struct BackConnection {
    pub endpoint: Endpoint,
    /// Counts the connection for its backend while it belongs to the session; `None` for a
    /// connection to an address no cluster names (a script's `remote`).
    pub lease: Option<BackendLease>,
    pub backend_id: String,
    pub address: SocketAddr,
    pub connected: bool,
    pub connect_started: Instant,
    /// The back timeout: connecting, or waiting for the backend.
    pub timeout: Timeout,
}

impl BackConnection {
    /// Whether the connection can carry a new request: established, open both ways, and with
    /// nothing unread from the backend. Bytes that arrive with no request outstanding answer
    /// none; on a reused connection they would be read as the response to the next request.
    pub fn is_clean(&self) -> bool {
        self.connected && self.endpoint.is_clean()
    }

    /// [`BackConnection::is_clean`] from the readiness flags ([`Endpoint::is_clean_as_reported`]):
    /// for the kept connection of a session about to send it the next request.
    pub fn is_clean_as_reported(&self) -> bool {
        self.connected && self.endpoint.is_clean_as_reported()
    }

    /// A request is forwarded on the connection: its backend counts it until
    /// [`BackConnection::request_ended`] or the connection leaves the session.
    pub fn request_started(&mut self) {
        if let Some(lease) = &mut self.lease {
            lease.request_started();
        }
    }

    /// The request on the connection got its whole response, or was abandoned.
    pub fn request_ended(&mut self) {
        if let Some(lease) = &mut self.lease {
            lease.request_ended();
        }
    }
}

/// What the session can use from the event loop while it runs.
pub struct Context<'a> {
    pub now: Instant,
    pub timers: &'a mut Timers,
    pub pool: &'a Pool,
    /// HTTP and HTTPS listeners, by address.
    pub listeners: &'a FxHashMap<SocketAddr, HttpListener>,
    /// The content routers of TCP listeners, by address.
    pub content_routers: &'a mut FxHashMap<SocketAddr, ContentRouter>,
    pub clusters: &'a BTreeMap<String, Cluster>,
    /// The Basic-auth credentials each cluster accepts, parsed when its order was applied.
    pub authorized: &'a FxHashMap<String, Authorized>,
    /// Figures and access logs.
    pub recorder: &'a mut Recorder,
    /// The worker's faults, asked when a connection or request is routed.
    pub faults: &'a mut FaultSet,
    /// When HTTP/1 bodies move through kernel pipes.
    pub body_splice: BodySplice,
}

/// Where a session is in its protocol. Stages only move forward.
pub enum Stage {
    /// Reading the PROXY protocol header the listener expects. Boxed, as the other stages
    /// only some sessions pass through: every session of the worker carries room for its
    /// stage, an idle HTTP connection too.
    ExpectProxy(Box<tcp::ExpectProxy>),
    /// Deciding where a TCP connection goes, its first bytes held (boxed).
    Sniff(Box<Sniff>),
    /// Copying bytes both ways (TCP mode, or after an HTTP upgrade).
    Pipe(Pipe),
    /// Answering a TCP client by the proxy (a script's farewell or file), then closing (boxed).
    Reply(Box<Reply>),
    /// HTTP/1.1 requests and responses.
    Http(Box<Http>),
    /// HTTP/2: many streams over the client connection, each on a backend connection slot.
    H2(Box<h2::H2>),
    /// Closing: the last encrypted bytes for the client are still to be sent. The front timeout
    /// is armed once when the stage starts; when it fires the session closes, sent or not.
    Flushing,
    /// Terminal.
    Closed,
}

/// A session: where it is in its protocol, and the rest, kept apart so that a stage can be
/// driven with its own state and the rest borrowed at once (`Stage::ready`).
pub struct Session {
    /// Where the session is in its protocol.
    pub stage: Stage,
    /// Everything else: sockets, addresses, timeouts.
    pub io: SessionIo,
}

/// The session's parts other than its stage: its sockets, addresses, timeouts and what it
/// decided so far. A stage works on its own state and on these, lent alongside it.
pub struct SessionIo {
    /// Unique for the worker's lifetime; tells this session from a later one in the same slot.
    pub uid: u64,
    /// The session's slot in the loop's session slab.
    pub key: usize,
    pub listener_address: SocketAddr,
    pub front: Endpoint,
    pub backs: Backs,
    /// The client, as the socket or a PROXY header says.
    pub client_address: SocketAddr,
    /// The address the client connected to.
    pub local_address: SocketAddr,
    /// The cluster the session's latest connect went to, shared with the other sessions
    /// naming it.
    pub cluster_id: Option<Rc<str>>,
    /// What few sessions have (a PROXY header, a TCP route's decider or `remote`), boxed so
    /// that the others (an idle HTTP connection) carry 8 bytes for it rather than 72.
    rare: Option<Box<Rare>>,
    /// The listener's timeouts, shared with its other sessions.
    pub timeouts: Rc<Timeouts>,
    pub front_timeout: Timeout,
    pub started: Instant,
    /// The cluster the session counts for in the per-(cluster, client address) limit: the one
    /// its latest request was forwarded to.
    pub counted_for_ip: Option<Rc<str>>,
    /// How long the last backend connect took.
    pub connect_time: Option<Duration>,
    /// The TLS handshake was counted in the metrics.
    pub handshake_counted: bool,
    /// A TCP route's default frontend took the connection ([`SessionIo::decided_by`]): the
    /// most common decider, kept without making the rare parts.
    decided_by_default: bool,
    /// The faults acting on the session, when some do: its write budget.
    pub shaper: Option<Box<Shaper>>,
}

/// Where a new session's client connection comes from.
pub struct Accepted {
    /// Unique for the worker's lifetime.
    pub uid: u64,
    /// The session's slot in the loop's session slab.
    pub key: usize,
    /// The listener that accepted the connection.
    pub listener_address: SocketAddr,
    /// The client's socket.
    pub front: Endpoint,
    /// The client, as the socket reports it.
    pub client_address: SocketAddr,
    /// The address the client connected to.
    pub local_address: SocketAddr,
}

impl Session {
    /// A session on an accepted connection, started at `now`: in no stage yet, with no backend
    /// connection, no cluster and no fault.
    pub fn new(accepted: Accepted, timeouts: Rc<Timeouts>, now: Instant) -> Session {
        Session {
            stage: Stage::Closed,
            io: SessionIo::new(accepted, timeouts, now),
        }
    }
}

impl SessionIo {
    /// The parts of a session on an accepted connection, started at `now`: no backend
    /// connection, no cluster and no fault.
    pub fn new(accepted: Accepted, timeouts: Rc<Timeouts>, now: Instant) -> SessionIo {
        let Accepted {
            uid,
            key,
            listener_address,
            front,
            client_address,
            local_address,
        } = accepted;
        SessionIo {
            uid,
            key,
            listener_address,
            front,
            backs: Backs::default(),
            client_address,
            local_address,
            cluster_id: None,
            rare: None,
            timeouts,
            front_timeout: Timeout::default(),
            started: now,
            counted_for_ip: None,
            connect_time: None,
            handshake_counted: false,
            decided_by_default: false,
            shaper: None,
        }
    }

    /// The key of the session's timer of `kind`.
    pub fn timer_key(&self, kind: TimeoutKind) -> TimerKey {
        TimerKey {
            session: self.key,
            uid: self.uid,
            kind,
        }
    }

    /// Restarts the front idle timeout.
    pub fn touch_front(&mut self, after: Duration, now: Instant, timers: &mut Timers) {
        let key = self.timer_key(TimeoutKind::Front);
        self.front_timeout.set_after(now, after, key, timers);
    }

    /// The timeout of `kind`, while it exists.
    pub fn timeout_mut(&mut self, kind: TimeoutKind) -> Option<&mut Timeout> {
        match kind {
            TimeoutKind::Front => Some(&mut self.front_timeout),
            TimeoutKind::Back(slot) => self.backs.timeout_mut(slot),
            TimeoutKind::Resume => self.shaper.as_mut().map(|shaper| shaper.resume_timeout()),
        }
    }

    /// Restarts the back timeout of `slot`'s connection.
    pub fn touch_back(&mut self, slot: Slot, after: Duration, now: Instant, timers: &mut Timers) {
        let key = self.timer_key(TimeoutKind::Back(slot));
        if let Some(timeout) = self.backs.timeout_mut(slot) {
            timeout.set_after(now, after, key, timers);
        }
    }

    /// Disarms the back timeout of `slot`'s connection.
    pub fn cancel_back_timeout(&mut self, slot: Slot) {
        if let Some(timeout) = self.backs.timeout_mut(slot) {
            timeout.cancel();
        }
    }

    /// Records readiness reported by the loop for the client socket.
    pub fn add_front_event(&mut self, ready: Ready) {
        self.front.readiness.event.insert(ready);
    }

    /// Records readiness reported by the loop for the socket of `slot`.
    pub fn add_back_event(&mut self, slot: Slot, ready: Ready) {
        if let Some(back) = self.backs.get_mut(slot) {
            back.endpoint.readiness.event.insert(ready);
        }
    }

    /// The client address a PROXY header or the socket reported.
    pub fn set_proxy_addresses(&mut self, addresses: ProxyAddresses) {
        if let ProxyAddresses::Proxied {
            source,
            destination,
        } = addresses
        {
            self.client_address = source;
            self.local_address = destination;
        }
    }
}

/// What a stage's run ends in.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per run of a stage and moved straight into the session: boxing \
              the next stage would allocate at every transition"
)]
pub enum Outcome {
    /// The loop must act; the stage stays.
    Act(Action),
    /// The stage is over: the session goes on in `next`, built by the stage from its own
    /// parts. `then` is what the loop must do next, or `None` to drive the new stage at once.
    Become { next: Stage, then: Option<Action> },
}

impl Session {
    /// Works until the session would block, and says what the loop must do next.
    pub fn ready(&mut self, context: &mut Context<'_>) -> Action {
        let action = self.run_stage(context);
        if let Some(shaper) = self.io.shaper.as_mut() {
            let key = TimerKey {
                session: self.io.key,
                uid: self.io.uid,
                kind: TimeoutKind::Resume,
            };
            shaper.arm(context.now, key, context.timers);
        }
        action
    }

    fn run_stage(&mut self, context: &mut Context<'_>) -> Action {
        let io = &mut self.io;
        if io.front.has_pending_output() && io.front.readiness.event.contains(Ready::WRITABLE) {
            let flushed = io.front.flush();
            if matches!(self.stage, Stage::Flushing) {
                return if flushed { Action::Close } else { Action::Wait };
            }
        }
        // HTTP/2 streams go on while one of them connects.
        let waits = !matches!(self.stage, Stage::H2(_));
        if let Some(action) = io.check_connection(waits) {
            return action;
        }
        self.stage.ready(io, context)
    }

    /// Answers the client by itself for something the loop found about `slot` (an HTTP
    /// answer; for HTTP/2, on the stream of that slot); other stages close.
    pub fn answer_failure(
        &mut self,
        slot: Slot,
        failure: Failure,
        context: &mut Context<'_>,
    ) -> Action {
        self.stage
            .answer_failure(&mut self.io, slot, failure, context)
    }

    /// Whether connects of the session wait their turn while one is being opened (HTTP/2
    /// streams routed at once): the loop runs it again to ask for them.
    pub fn wants_connects(&self) -> bool {
        self.stage.wants_connects()
    }

    /// The backend connection of `slot` is established (`New`) or was taken from the idle
    /// pool (`Reused`); `backend_sticky_id` names its backend for sticky sessions, and
    /// `connect_time` how long a connect the slot's request waited for took.
    pub fn backend_connected(&mut self, slot: Slot, backend_sticky_id: &str, back_use: BackUse) {
        let connect_time = self.io.connect_time;
        self.stage
            .backend_connected(slot, backend_sticky_id, back_use, connect_time);
    }

    /// Whether the backend connection of `slot` sits idle and clean between requests: it may
    /// go to the idle pool and serve another session.
    pub fn is_back_reusable(&self, slot: Slot) -> bool {
        self.stage.is_back_reusable(&self.io, slot)
    }

    /// Since when the backend connection an HTTP/1 session keeps between requests idles, if
    /// it keeps one, clean, with a socket of its own: the loop may close it when it runs out
    /// of descriptors.
    pub fn kept_back_since(&self) -> Option<Instant> {
        let Stage::Http(http) = &self.stage else {
            return None;
        };
        // A stream handle on a shared HTTP/2 connection holds no descriptor of its own.
        let is_shared = self
            .io
            .backs
            .get(Slot::FIRST)
            .is_some_and(|back| back.endpoint.speaks_h2());
        http.kept_back_since(&self.io).filter(|_| !is_shared)
    }

    /// Takes away the backend connection an HTTP/1 session keeps between requests (see
    /// [`Session::kept_back_since`]), for the loop to close: the next request gets a pooled
    /// connection or a new one.
    pub fn take_kept_back(&mut self) -> Option<BackConnection> {
        self.kept_back_since()?;
        let Stage::Http(http) = &mut self.stage else {
            return None;
        };
        // The stage forgets the connection's sticky id, as when its back timeout fires.
        let _ = http.release_idle_back();
        self.io.backs.take(Slot::FIRST)
    }

    /// Whether the session waits for a request with nothing in flight (a stopping worker
    /// closes such sessions).
    pub fn is_idle(&self, now: Instant) -> bool {
        self.stage.is_idle(&self.io, now)
    }

    /// A soft stop began: a session that can say so to its client (HTTP/2's GOAWAY) does.
    /// Returns whether the session must be driven to send it.
    pub fn stop_gracefully(&mut self, now: Instant) -> bool {
        self.stage.stop_gracefully(now)
    }

    /// Records what the closing session had not recorded yet: its TCP connection, or an
    /// HTTP request that got no complete answer.
    pub fn record_unfinished(&mut self, context: &mut Context<'_>) {
        self.stage.record_unfinished(&mut self.io, context);
    }

    /// A timeout of the session fired. Returns what the loop must do.
    pub fn timed_out(&mut self, kind: TimeoutKind, context: &mut Context<'_>) -> Action {
        match self.stage.timed_out(&mut self.io, kind, context) {
            Some(action) => action,
            None => self.ready(context),
        }
    }
}

impl Stage {
    /// Drives the stage with the session's other parts until it would block, applying the
    /// transitions it returns, and says what the loop must do next.
    pub fn ready(&mut self, io: &mut SessionIo, context: &mut Context<'_>) -> Action {
        let outcome = match self {
            Stage::ExpectProxy(expect) => tcp::read_proxy_header(expect, io, context),
            Stage::Sniff(sniff) => tcp::sniff(sniff, io, context),
            Stage::Pipe(pipe) => tcp::ready(pipe, io, context),
            Stage::Reply(reply) => Outcome::Act(tcp::reply(reply, io)),
            Stage::Http(http) => http::ready(http, io, context),
            Stage::H2(h2) => Outcome::Act(h2::session::ready(h2, io, context)),
            Stage::Flushing => Outcome::Act(Action::Wait),
            Stage::Closed => Outcome::Act(Action::Close),
        };
        self.settle(outcome, io, context)
    }

    /// Applies what a run of the stage ended in: the next stage, driven at once unless the
    /// loop must act first.
    fn settle(
        &mut self,
        outcome: Outcome,
        io: &mut SessionIo,
        context: &mut Context<'_>,
    ) -> Action {
        match outcome {
            Outcome::Act(action) => action,
            Outcome::Become { next, then } => {
                *self = next;
                match then {
                    Some(action) => action,
                    None => self.ready(io, context),
                }
            }
        }
    }

    /// A timeout of `kind` fired: what the loop must do, or `None` to drive the session
    /// again (the write budget's resume, the end of a TCP connection's inspection).
    pub fn timed_out(
        &mut self,
        io: &mut SessionIo,
        kind: TimeoutKind,
        context: &mut Context<'_>,
    ) -> Option<Action> {
        if let TimeoutKind::Back(slot) = kind {
            if io.backs.get(slot).is_some_and(|back| !back.connected) {
                return Some(Action::ConnectFailed(slot));
            }
        }
        let action = match (kind, &mut *self) {
            (TimeoutKind::Resume, _) => return None,
            (TimeoutKind::Back(slot), Stage::H2(h2))
                if h2::session::handles_back_timeout(h2, slot) =>
            {
                h2::session::back_timeout(h2, io, slot, context)
            }
            (TimeoutKind::Back(_), Stage::Http(http)) if http.awaits_response() => {
                let outcome = http::answer_for(http, io, context, Failure::BackTimeout);
                self.settle(outcome, io, context)
            }
            (TimeoutKind::Back(_), Stage::Http(http)) if http.is_between_requests() => {
                http.release_idle_back()
            }
            (TimeoutKind::Front, Stage::Http(http)) => {
                let outcome = http::answer_for(http, io, context, Failure::FrontTimeout);
                self.settle(outcome, io, context)
            }
            (TimeoutKind::Front, Stage::H2(h2)) => h2::session::front_timeout(h2, io, context),
            (TimeoutKind::Front, Stage::Sniff(sniff)) => {
                sniff.inspection_over();
                return None;
            }
            _ => Action::Close,
        };
        Some(action)
    }

    /// Answers the client by itself for something the loop found about `slot` (an HTTP
    /// answer; for HTTP/2, on the stream of that slot); other stages close.
    pub fn answer_failure(
        &mut self,
        io: &mut SessionIo,
        slot: Slot,
        failure: Failure,
        context: &mut Context<'_>,
    ) -> Action {
        match self {
            Stage::Http(http) => {
                let outcome = http::answer_for(http, io, context, failure);
                self.settle(outcome, io, context)
            }
            Stage::H2(h2) => h2::session::answer_failure(h2, io, slot, context, failure),
            Stage::Pipe(_)
                if failure == Failure::NoBackend
                    && !context.listeners.contains_key(&io.listener_address) =>
            {
                tcp::backend_unreachable(io, context)
            }
            Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => Action::Close,
        }
    }

    /// Whether streams of the stage wait for a backend connect of their own while one is
    /// being opened (HTTP/2 streams routed at once).
    pub fn wants_connects(&self) -> bool {
        match self {
            Stage::H2(h2) => h2.wants_connects(),
            Stage::Http(_)
            | Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => false,
        }
    }

    /// The backend connection of `slot` is established (`New`) or was taken from the idle
    /// pool (`Reused`); `backend_sticky_id` names its backend for sticky sessions, and
    /// `connect_time` how long a connect the slot's request waited for took.
    pub fn backend_connected(
        &mut self,
        slot: Slot,
        backend_sticky_id: &str,
        back_use: BackUse,
        connect_time: Option<Duration>,
    ) {
        match self {
            Stage::Http(http) if slot == Slot::FIRST => {
                http.connected(backend_sticky_id, back_use, connect_time);
            }
            Stage::H2(h2) => {
                h2::session::connected(h2, slot, backend_sticky_id, back_use, connect_time)
            }
            Stage::Http(_)
            | Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => {}
        }
    }

    /// Whether the backend connection of `slot` sits idle and clean between requests.
    pub fn is_back_reusable(&self, io: &SessionIo, slot: Slot) -> bool {
        match self {
            Stage::Http(http) => http.is_back_reusable(io, slot),
            Stage::H2(h2) => h2::session::is_back_reusable(h2, io, slot),
            Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => false,
        }
    }

    /// Whether the stage waits for a request with nothing in flight.
    pub fn is_idle(&self, io: &SessionIo, now: Instant) -> bool {
        match self {
            Stage::Http(http) => http.is_idle(io, now),
            // An HTTP/2 connection goes away by GOAWAY (see `stop_gracefully`).
            Stage::H2(_)
            | Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => false,
        }
    }

    /// A soft stop began: HTTP/2 says so with GOAWAY. Returns whether the session must be
    /// driven to send it.
    pub fn stop_gracefully(&mut self, now: Instant) -> bool {
        match self {
            Stage::H2(h2) => h2::session::stop(h2, now),
            Stage::Http(_)
            | Stage::ExpectProxy(_)
            | Stage::Sniff(_)
            | Stage::Pipe(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => false,
        }
    }

    /// Records what the closing session had not recorded yet: its TCP connection, or an
    /// HTTP request that got no complete answer.
    pub fn record_unfinished(&mut self, io: &mut SessionIo, context: &mut Context<'_>) {
        match self {
            Stage::Http(http) => http::record_unfinished(http, io, context),
            Stage::H2(h2) => h2::session::record_unfinished(h2, io, context),
            // A pipe on an HTTP listener is an upgraded request, recorded as such.
            Stage::Pipe(_) | Stage::Sniff(_) | Stage::ExpectProxy(_) | Stage::Reply(_)
                if !context.listeners.contains_key(&io.listener_address) =>
            {
                tcp::record_connection(io, context)
            }
            Stage::Pipe(_)
            | Stage::Sniff(_)
            | Stage::ExpectProxy(_)
            | Stage::Reply(_)
            | Stage::Flushing
            | Stage::Closed => {}
        }
    }
}

impl SessionIo {
    /// Detects the end of a backend connect, in the first slot that has news of one:
    /// established, or failed. While a connect is in progress without news, the stage waits
    /// when it `waits`.
    fn check_connection(&mut self, waits: bool) -> Option<Action> {
        let mut connecting = false;
        for (slot, back) in self.backs.iter_mut().filter(|(_, back)| !back.connected) {
            connecting = true;
            match connect_outcome(back) {
                Some(ConnectOutcome::Established) => return Some(Action::Connected(slot)),
                Some(ConnectOutcome::Failed) => return Some(Action::ConnectFailed(slot)),
                None => {}
            }
        }
        (connecting && waits).then_some(Action::Wait)
    }
}

/// How a backend connect ended.
enum ConnectOutcome {
    Established,
    Failed,
}

/// How a backend connect ended, as its socket's events tell: `None` while it goes on.
fn connect_outcome(back: &mut BackConnection) -> Option<ConnectOutcome> {
    let event = back.endpoint.readiness.event;
    if event.is_empty() {
        return None;
    }
    if back.endpoint.speaks_h2() {
        // A stream of a shared connection: its connection's state tells, whatever event
        // woke it (an event meant for a token's former owner included).
        return match (back.endpoint.take_error(), back.endpoint.peer_addr()) {
            (Ok(Some(_)) | Err(_), _) => Some(ConnectOutcome::Failed),
            (Ok(None), Ok(_)) => {
                back.connected = true;
                Some(ConnectOutcome::Established)
            }
            (Ok(None), Err(_)) => None,
        };
    }
    // A connect that failed is reported with an error flag; writable without one means
    // established, and costs no system call to confirm.
    if event.contains(Ready::WRITABLE)
        && !event.contains(Ready::ERROR)
        && !event.contains(Ready::HUP)
    {
        back.connected = true;
        return Some(ConnectOutcome::Established);
    }
    // A backend may also accept, answer and close before we look: a hangup alone is no
    // failure. The socket's pending error tells.
    match back.endpoint.take_error() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => return Some(ConnectOutcome::Failed),
    }
    match back.endpoint.peer_addr() {
        Ok(_) => {
            back.connected = true;
            Some(ConnectOutcome::Established)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotConnected => None,
        Err(_) => Some(ConnectOutcome::Failed),
    }
}

#[cfg(test)]
mod tests;
