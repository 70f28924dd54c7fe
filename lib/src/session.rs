//! A session: a client connection, the backend connection it opened, and the protocol stage
//! that moves bytes between them.
//!
//! The event loop ([`crate::server`]) owns sessions and their sockets. It calls
//! [`Session::ready`] when a socket of the session has an event; the session works until it
//! would block and returns an [`Action`] for what only the loop can do: open a backend
//! connection, or close. Stages never reach into the loop.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use mio::Token;
use rustc_hash::FxHashMap;
use sozu_command_lib::request::Cluster;

use crate::{
    backends::BackendKey,
    metrics::Recorder,
    pool::Pool,
    protocol::http::{self, Failure, Http, HttpListener, auth::Authorized},
    protocol::{pipe::Pipe, proxy_protocol::ProxyAddresses},
    socket::{Endpoint, Ready, Unread},
    tcp,
    timer::{Timeout, TimeoutKind, TimerKey, Timers},
};

/// What a session asks of the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the next event.
    Wait,
    /// The session could go on but yields to the others: drive it again on the next turn.
    Yield,
    /// Open a connection to a backend of `cluster_id` (the one named by `sticky_id` when it
    /// is available), replacing any backend connection the session has.
    Connect {
        cluster_id: String,
        sticky_id: Option<String>,
    },
    /// The backend connection just got established.
    Connected,
    /// The backend connection failed before any byte was sent: try another backend.
    ConnectFailed,
    /// A kept backend connection turned out closed: open another one, without counting a
    /// failure against the backend.
    Reconnect { cluster_id: String },
    /// An exchange ended and the backend connection stays for the next request.
    ExchangeDone,
    /// An exchange ended and the backend connection must be closed.
    DropBack,
    /// The session switched to a byte pipe (after a protocol upgrade); drive it again.
    Upgraded,
    /// Close the session.
    Close,
}

/// The connection to a backend.
#[derive(Debug)]
pub struct BackConnection {
    pub endpoint: Endpoint,
    pub backend: BackendKey,
    pub backend_id: String,
    pub address: SocketAddr,
    pub connected: bool,
    pub connect_started: Instant,
}

impl BackConnection {
    /// Whether the connection can carry a new request: established, open both ways, and with
    /// nothing unread from the backend. Bytes that arrive with no request outstanding answer
    /// none; on a reused connection they would be read as the response to the next request.
    pub fn is_clean(&self) -> bool {
        let event = self.endpoint.readiness.event;
        self.connected
            && !self.endpoint.write_shut
            && !event.contains(Ready::HUP)
            && !event.contains(Ready::ERROR)
            && self.endpoint.unread() == Unread::Nothing
    }
}

/// The timeouts of a listener, copied into each session it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    pub front: Duration,
    pub back: Duration,
    pub connect: Duration,
    pub request: Duration,
}

/// What the session can use from the event loop while it runs.
pub struct Context<'a> {
    pub now: Instant,
    pub timers: &'a mut Timers,
    pub pool: &'a Pool,
    /// HTTP and HTTPS listeners, by address.
    pub listeners: &'a FxHashMap<SocketAddr, HttpListener>,
    pub clusters: &'a BTreeMap<String, Cluster>,
    /// The Basic-auth credentials each cluster accepts, parsed when its order was applied.
    pub authorized: &'a FxHashMap<String, Authorized>,
    /// Figures and access logs.
    pub recorder: &'a mut Recorder,
}

/// Where a session is in its protocol. Stages only move forward.
pub enum Stage {
    /// Reading the PROXY protocol header the listener expects.
    ExpectProxy(tcp::ExpectProxy),
    /// Copying bytes both ways (TCP mode, or after an HTTP upgrade).
    Pipe(Pipe),
    /// HTTP/1.1 requests and responses.
    Http(Box<Http>),
    /// Closing: the last encrypted bytes for the client are still to be sent. The front timeout
    /// is armed once when the stage starts; when it fires the session closes, sent or not.
    Flushing,
    /// Terminal.
    Closed,
}

pub struct Session {
    /// Unique for the worker's lifetime; tells this session from a later one in the same slot.
    pub uid: u64,
    /// The session's slot in the loop's session slab.
    pub key: usize,
    pub listener_address: SocketAddr,
    pub front: Endpoint,
    pub back: Option<BackConnection>,
    /// The client, as the socket or a PROXY header says.
    pub client_address: SocketAddr,
    /// The address the client connected to.
    pub local_address: SocketAddr,
    /// The raw PROXY header received, kept to relay it to the backend.
    pub received_proxy_header: Option<Vec<u8>>,
    pub stage: Stage,
    pub cluster_id: Option<String>,
    pub timeouts: SessionTimeouts,
    pub front_timeout: Timeout,
    pub back_timeout: Timeout,
    pub connect_attempts: u32,
    pub started: Instant,
    /// The cluster the session counts for in the per-(cluster, client address) limit: the one
    /// its latest request was forwarded to.
    pub counted_for_ip: Option<String>,
    /// How long the last backend connect took.
    pub connect_time: Option<Duration>,
    /// The TLS handshake was counted in the metrics.
    pub handshake_counted: bool,
}

impl Session {
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

    /// Restarts the back timeout.
    pub fn touch_back(&mut self, after: Duration, now: Instant, timers: &mut Timers) {
        let key = self.timer_key(TimeoutKind::Back);
        self.back_timeout.set_after(now, after, key, timers);
    }

    /// Tokens of the session's sockets.
    pub fn tokens(&self) -> (Token, Option<Token>) {
        (
            self.front.token,
            self.back.as_ref().map(|b| b.endpoint.token),
        )
    }

    /// Records readiness reported by the loop for one of the session's sockets.
    pub fn add_event(&mut self, token: Token, ready: Ready) {
        if self.front.token == token {
            self.front.readiness.event.insert(ready);
        } else if let Some(back) = self.back.as_mut().filter(|b| b.endpoint.token == token) {
            back.endpoint.readiness.event.insert(ready);
        }
    }

    /// Works until the session would block, and says what the loop must do next.
    pub fn ready(&mut self, context: &mut Context<'_>) -> Action {
        if self.front.has_pending_output() && self.front.readiness.event.contains(Ready::WRITABLE) {
            let flushed = self.front.flush();
            if matches!(self.stage, Stage::Flushing) {
                return if flushed { Action::Close } else { Action::Wait };
            }
        }
        if let Some(action) = self.check_connection() {
            return action;
        }
        loop {
            return match self.stage {
                Stage::ExpectProxy(_) => match tcp::read_proxy_header(self, context) {
                    Some(action) => action,
                    // The header is read and the next stage is in place.
                    None => continue,
                },
                Stage::Pipe(_) => tcp::ready(self, context),
                Stage::Http(_) => http::ready(self, context),
                Stage::Flushing => Action::Wait,
                Stage::Closed => Action::Close,
            };
        }
    }

    /// Detects the end of a backend connect: established, or failed.
    fn check_connection(&mut self) -> Option<Action> {
        let back = self.back.as_mut()?;
        if back.connected {
            return None;
        }
        let event = back.endpoint.readiness.event;
        if event.is_empty() {
            return Some(Action::Wait);
        }
        // A connect that failed is reported with an error flag; writable without one means
        // established, and costs no system call to confirm.
        if event.contains(Ready::WRITABLE)
            && !event.contains(Ready::ERROR)
            && !event.contains(Ready::HUP)
        {
            back.connected = true;
            return Some(Action::Connected);
        }
        // A backend may also accept, answer and close before we look: a hangup alone is no
        // failure. The socket's pending error tells.
        match back.endpoint.stream.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Some(Action::ConnectFailed),
        }
        match back.endpoint.stream.peer_addr() {
            Ok(_) => {
                back.connected = true;
                Some(Action::Connected)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotConnected => Some(Action::Wait),
            Err(_) => Some(Action::ConnectFailed),
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

    /// A timeout of the session fired. Returns what the loop must do.
    pub fn timed_out(&mut self, kind: TimeoutKind, context: &mut Context<'_>) -> Action {
        match (kind, &self.back) {
            (TimeoutKind::Back, Some(back)) if !back.connected => Action::ConnectFailed,
            (TimeoutKind::Back, _) if http::awaits_response(self) => {
                http::answer_for(self, context, Failure::BackTimeout)
            }
            (TimeoutKind::Front, _) if matches!(self.stage, Stage::Http(_)) => {
                http::answer_for(self, context, Failure::FrontTimeout)
            }
            _ => Action::Close,
        }
    }
}
