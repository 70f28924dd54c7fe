//! HTTP: the HTTP/1.1 stage of a session, the HTTP/2 one ([`h2`]), and the parts they share.
//!
//! A session reads a request head, routes it (`route`), and then either answers by itself
//! (redirections, authentication, answer frontends, errors: `answers`) or forwards the
//! request to a backend of the frontend's cluster and relays the response. Requests on a
//! keep-alive connection are handled one after the other, each routed on its own, so
//! pipelined requests are answered in order; the backend connection is kept for the next
//! request to the same cluster, for one back timeout: a client idle longer gives it to the
//! worker's idle pool ([`Http::release_idle_back`]). A waiting connection also lends its
//! buffers, scratch space and per-request state (`spares`), so it holds little more than
//! its sockets. A WebSocket `Upgrade` accepted with 101 turns the session
//! into a byte pipe; other upgrades are removed from the request (`upgrade`), and CONNECT is
//! refused with 405: the proxy opens no tunnel.
//!
//! Bodies are forwarded as they come, never buffered whole: the framing trackers of the
//! parser find where a message ends (`body`), so bytes after it (a pipelined request, say)
//! are never sent with it. The rest of a large body of known length between two plain
//! sockets moves through a kernel pipe (`splice`), no more bytes than its length owes. No byte crosses from one exchange to the next on the backend side
//! either: a backend connection that holds bytes after a complete response, or sends any
//! while no request is outstanding, is closed, never reused (see [`Http::is_back_reusable`]).
//!
//! HTTP/1.0 clients get what HTTP/1.0 knows: no interim (1xx) response, and a chunked
//! response without its chunks, delimited by the end of the connection.
//!
//! The parts: [`parser`] (message heads, zero-copy over the buffer), `editor` (header
//! edits), [`h2`] (HTTP/2 toward clients, a codec of its own whose requests come out as the
//! same HTTP/1.1 heads), `listener` (what a listener gives its sessions), `route` (the routing policy,
//! without I/O), `outcome` (a routing decision and the faults drawn on it, as a forward or an
//! answer, for both codecs), `faults` (faults on requests and their write budget), `auth` (Basic authentication), `stream` (one request and its response
//! as typed phases), `connection` and `response` (the HTTP/1 codec: the request side and
//! the proxy's answers, the response side), `record` (request ids, the access-log record), `splice` (large bodies of known length
//! moved from socket to socket through a kernel pipe).

pub(crate) mod answers;
pub(crate) mod auth;
mod body;
mod connection;
pub(crate) mod diagnostics;
pub(crate) mod editor;
mod faults;
pub mod h2;
pub(crate) mod listener;
mod outcome;
pub mod parser;
mod record;
mod response;
pub(crate) mod route;
pub mod spares;
pub(crate) mod splice;
mod stream;
pub(crate) mod upgrade;

use std::time::{Duration, Instant};

pub use listener::HttpListener;

use crate::{
    pool::{Buffer, Pool},
    protocol::http::{
        connection::{AnswerExtra, Next, Rendered, Step, answer, render_answer},
        parser::Header,
        splice::SplicedBody,
        stream::{Phase, StreamBox},
    },
    protocol::pipe::Pipe,
    session::endpoint::{Ready, Unread},
    session::{
        Action, BackConnection, BackUse, Context, FIRST_REQUEST_GRACE, Failure, Outcome, SessionIo,
        Stage, backs::Slot,
    },
};

/// The backend connection slot of HTTP/1: one backend connection at a time.
const SLOT: Slot = Slot::FIRST;

/// The HTTP stage of a session: the HTTP/1 codec's buffers and the stream it carries.
pub struct Http {
    front_buf: Buffer,
    back_buf: Buffer,
    /// Whether the stage holds its scratch space (`headers`, `request_out`, `response_out`,
    /// the stream), which it lends while it idles ([`spares`]).
    holds_scratch: bool,
    headers: Vec<Header>,
    /// Head to send to the backend, and how much of it was sent.
    request_out: Vec<u8>,
    request_out_sent: usize,
    /// Head (or whole answer) to send to the client, and how much of it was sent.
    response_out: Vec<u8>,
    response_out_sent: usize,
    stream: StreamBox,
    /// Requests answered on this connection.
    served: u64,
    /// When the last exchange ended: a kept connection idles from then on.
    idle_since: Instant,
    back_use: BackUse,
    /// The sticky id of the attached backend connection's backend.
    back_sticky_id: Option<String>,
    /// The rest of the request body, when it moves through a kernel pipe.
    request_splice: Option<Box<SplicedBody>>,
    /// The rest of the response body, when it moves through a kernel pipe.
    response_splice: Option<Box<SplicedBody>>,
}

impl Http {
    /// A stage with no request yet, whose buffers come from `pool`.
    pub fn new(pool: &Pool) -> Http {
        Http {
            front_buf: pool.checkout(),
            back_buf: pool.checkout(),
            // The scratch space comes from the listener's spares on the first read.
            holds_scratch: false,
            headers: Vec::new(),
            request_out: Vec::new(),
            request_out_sent: 0,
            response_out: Vec::new(),
            response_out_sent: 0,
            stream: StreamBox::default(),
            served: 0,
            idle_since: Instant::now(),
            back_use: BackUse::New,
            back_sticky_id: None,
            request_splice: None,
            response_splice: None,
        }
    }

    /// An HTTP stage whose first input was already read (after a PROXY header).
    pub fn with_input(pool: &Pool, input: Buffer) -> Http {
        let mut http = Http::new(pool);
        http.front_buf = input;
        http
    }

    /// The cluster of the request being forwarded.
    pub fn cluster_id(&self) -> Option<&str> {
        self.stream.cluster_id()
    }

    /// The bytes of scratch space the stage holds (see [`spares`]).
    #[cfg(test)]
    fn scratch_capacity(&self) -> usize {
        self.headers.capacity() * std::mem::size_of::<Header>()
            + self.request_out.capacity()
            + self.response_out.capacity()
            + self.stream.texts_capacity()
    }
}

/// Drives an HTTP stage until it would block, or until it becomes another stage (a pipe
/// after an upgrade, HTTP/2).
pub fn ready(http: &mut Http, io: &mut SessionIo, context: &mut Context<'_>) -> Outcome {
    // Looked up once for all the steps of this event: the listeners do not change meanwhile.
    let listeners = context.listeners;
    let listener = listeners.get(&io.listener_address);
    for _ in 0..1024 {
        match step(http, io, context, listener) {
            Step::Progress => continue,
            Step::Wait => return Outcome::Act(Action::Wait),
            Step::Do(action) => return Outcome::Act(action),
            Step::Become(next) => return upgraded(http, next),
        }
    }
    // A session that keeps making progress yields to the others; its sockets are still ready
    // and it will be driven again on the next turn.
    Outcome::Act(Action::Yield)
}

/// The stage the HTTP stage becomes, built from the stage's buffers: the loop drives the
/// session again.
fn upgraded(http: &mut Http, next: Next) -> Outcome {
    let next = match next {
        Next::Pipe => Stage::Pipe(Pipe::new(http.front_buf.take(), http.back_buf.take())),
        Next::H2(h2) => Stage::H2(h2),
    };
    Outcome::Become {
        next,
        then: Some(Action::Upgraded),
    }
}

/// A step of the stage; `listener` is the session's listener (`None`: it is gone, and the
/// session closes at its next read or forward).
fn step(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: Option<&HttpListener>,
) -> Step {
    match http.stream.phase {
        Phase::Head => match back_news(io) {
            // A `match`, not `map_or`: the default `Step` would be built and dropped (a call
            // to its drop glue) on every step.
            Unread::Nothing => match listener {
                Some(listener) => connection::read_request_head(http, io, context, listener),
                None => Step::Do(Action::Close),
            },
            Unread::Bytes => {
                log::warn!(
                    "session {}: the backend sent bytes with no request outstanding",
                    io.uid
                );
                Step::Do(Action::DropBack(SLOT))
            }
            Unread::End => Step::Do(Action::DropBack(SLOT)),
        },
        Phase::Connecting => Step::Wait,
        Phase::Answering(close) => connection::write_answer(http, io, context, close),
        Phase::Forwarding => match listener {
            Some(listener) => connection::forward(http, io, context, listener),
            None => Step::Do(Action::Close),
        },
    }
}

/// What the kept backend connection sent while no request is outstanding on it. Bytes then
/// answer no request (a leftover of an earlier response, or a forged one): kept, they would
/// be read as the response to the next request, so the connection must go, as one the
/// backend closed must.
fn back_news(io: &mut SessionIo) -> Unread {
    let Some(back) = io.backs.get_mut(SLOT).filter(|back| back.connected) else {
        return Unread::Nothing;
    };
    let endpoint = &mut back.endpoint;
    let event = endpoint.readiness.event;
    if !(event.contains(Ready::READABLE)
        || event.contains(Ready::HUP)
        || event.contains(Ready::ERROR))
    {
        return Unread::Nothing;
    }
    let unread = endpoint.unread();
    if unread == Unread::Nothing {
        // A readable flag left from the last response's reads.
        endpoint.readiness.event.remove(Ready::READABLE);
    }
    unread
}

/// Records a request that ends without a complete answer, when its session closes.
pub fn record_unfinished(http: &mut Http, io: &mut SessionIo, context: &mut Context<'_>) {
    record::record_stream(http, io, context);
}

/// Answers the client for an event the loop saw: no backend (503), the per-address cap (429),
/// a connect that failed on every attempt (503).
pub fn answer_for(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    failure: Failure,
) -> Outcome {
    let Some(listener) = context.listeners.get(&io.listener_address) else {
        return Outcome::Act(Action::Close);
    };
    let step = match failure {
        Failure::NoBackend => answer(
            http,
            io,
            context,
            listener,
            503,
            "no backend available",
            route::Close::AfterAnswer,
        ),
        Failure::TooManyConnections { retry_after } => {
            let extra = AnswerExtra {
                retry_after: Some(retry_after),
                ..AnswerExtra::default()
            };
            render_answer(
                http,
                io,
                context,
                listener,
                Rendered::Page(429, "too many connections", extra),
                route::Close::AfterAnswer,
            )
        }
        Failure::BackTimeout => {
            let extra = AnswerExtra {
                duration: Some(io.timeouts.back),
                ..AnswerExtra::default()
            };
            render_answer(
                http,
                io,
                context,
                listener,
                Rendered::Page(504, "the backend did not answer in time", extra),
                route::Close::AfterAnswer,
            )
        }
        Failure::FrontTimeout => {
            if io
                .front
                .tls
                .as_ref()
                .is_some_and(|tls| tls.is_handshaking())
            {
                // A handshake that did not finish in time: nothing can be said to the client.
                return Outcome::Act(Action::Close);
            }
            let waiting_for_first_request = http.served == 0 && http.stream.head_started.is_none();
            if http.stream.phase == Phase::Head
                && (http.stream.head_started.is_some() || waiting_for_first_request)
            {
                // The timeout `connection::arm_head_timeout` armed.
                let duration = if http.stream.head_started.is_some() {
                    io.timeouts.request
                } else {
                    io.timeouts.front.min(io.timeouts.request)
                };
                let extra = AnswerExtra {
                    duration: Some(duration),
                    ..AnswerExtra::default()
                };
                render_answer(
                    http,
                    io,
                    context,
                    listener,
                    Rendered::Page(408, "request timeout", extra),
                    route::Close::AfterAnswer,
                )
            } else {
                return Outcome::Act(Action::Close);
            }
        }
    };
    match step {
        Step::Do(action) => Outcome::Act(action),
        Step::Become(next) => upgraded(http, next),
        Step::Progress | Step::Wait => ready(http, io, context),
    }
}

impl Http {
    /// The backend connection is established (or taken from the pool): start forwarding.
    /// `backend_sticky_id` names the backend for sticky sessions; `connect_time` is how long
    /// the connect took, when the request waited for one.
    pub fn connected(
        &mut self,
        backend_sticky_id: &str,
        back_use: BackUse,
        connect_time: Option<Duration>,
    ) {
        self.stream.connect_time = connect_time;
        if self.stream.phase == Phase::Connecting {
            self.stream.phase = Phase::Forwarding;
        }
        // Whatever was read from another connection is no part of this one's responses.
        self.back_buf.clear();
        self.back_use = back_use;
        self.back_sticky_id = Some(backend_sticky_id.to_string());
        let stream = &mut self.stream;
        if let Some(name) = &stream.sticky_name {
            if stream.requested_sticky.as_deref() != Some(backend_sticky_id) {
                stream.sticky_cookie = Some((name.clone(), backend_sticky_id.to_string()));
            }
        }
    }

    /// Whether the exchange is waiting for the response head (a back timeout is then a 504).
    pub fn awaits_response(&self) -> bool {
        self.stream.awaits_response()
    }

    /// Whether the session's backend connection in `slot` sits idle between requests, clean:
    /// it may serve another session. Nothing may be left of the last response, in the buffer
    /// or the socket.
    pub fn is_back_reusable(&self, io: &SessionIo, slot: Slot) -> bool {
        slot == SLOT
            && io.backs.get(SLOT).is_some_and(BackConnection::is_clean)
            && self.stream.phase == Phase::Head
            && self.back_buf.is_empty()
    }

    /// Since when the backend connection the stage keeps between requests idles, when it
    /// keeps one that could serve another request ([`Http::is_back_reusable`]).
    pub fn kept_back_since(&self, io: &SessionIo) -> Option<Instant> {
        self.is_back_reusable(io, SLOT).then_some(self.idle_since)
    }

    /// Whether no request is under way: the stage waits for (or reads) the next request
    /// head, and its backend connection, if it kept one, serves nothing.
    pub fn is_between_requests(&self) -> bool {
        self.stream.phase == Phase::Head
    }

    /// The back timeout of the kept backend connection fired between requests: the connection
    /// leaves the session, for the worker's idle pool (or closed, when the pool has no room
    /// or the connection is not clean), and its sticky id with it. The next request gets a
    /// pooled connection or a new one.
    pub fn release_idle_back(&mut self) -> Action {
        self.back_sticky_id = None;
        Action::DropBack(SLOT)
    }

    /// Whether the session sits between requests with an idle backend connection.
    ///
    /// A connection that has not sent its first request is idle only after
    /// `FIRST_REQUEST_GRACE`: a client that just connected usually has its request on the way.
    pub fn is_idle(&self, io: &SessionIo, now: Instant) -> bool {
        let waited =
            self.served > 0 || now.saturating_duration_since(io.started) >= FIRST_REQUEST_GRACE;
        self.stream.phase == Phase::Head && self.front_buf.is_empty() && waited
    }
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("phase", &self.stream.phase)
            .field("served", &self.served)
            .finish()
    }
}

#[cfg(test)]
mod tests;
