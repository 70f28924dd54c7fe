//! HTTP: the HTTP/1.1 stage of a session, the HTTP/2 one ([`h2`]), and the parts they share.
//!
//! A session reads a request head, routes it (`route`), and then either answers by itself
//! (redirections, authentication, answer frontends, errors: `answers`) or forwards the
//! request to a backend of the frontend's cluster and relays the response. Requests on a
//! keep-alive connection are handled one after the other, each routed on its own, so
//! pipelined requests are answered in order; the backend connection is kept for the next
//! request to the same cluster. A WebSocket `Upgrade` accepted with 101 turns the session
//! into a byte pipe; other upgrades are removed from the request (`upgrade`), and CONNECT is
//! refused with 405: the proxy opens no tunnel.
//!
//! Bodies are forwarded as they come, never buffered whole: the framing trackers of the
//! parser find where a message ends (`body`), so bytes after it (a pipelined request, say)
//! are never sent with it. No byte crosses from one exchange to the next on the backend side
//! either: a backend connection that holds bytes after a complete response, or sends any
//! while no request is outstanding, is closed, never reused (see [`back_is_reusable`]).
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
//! the proxy's answers, the response side), `record` (request ids, the access-log record).

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
mod stream;
pub(crate) mod upgrade;

use std::time::Instant;

pub use listener::HttpListener;

use crate::{
    pool::{Buffer, Pool},
    protocol::http::{
        connection::{AnswerExtra, Step, answer, answer_with},
        parser::Header,
        stream::{Phase, Stream},
    },
    session::endpoint::{Ready, Unread},
    session::{
        Action, BackConnection, BackUse, Context, FIRST_REQUEST_GRACE, Failure, Session, Stage,
        backs::Slot,
    },
};

/// The backend connection slot of HTTP/1: one backend connection at a time.
const SLOT: Slot = Slot::FIRST;

/// The HTTP stage of a session: the HTTP/1 codec's buffers and the stream it carries.
pub struct Http {
    front_buf: Buffer,
    back_buf: Buffer,
    /// Whether the stage holds its scratch space (`headers`, `request_out`, `response_out`,
    /// the stream's texts), which it lends while it idles ([`spares`]).
    holds_scratch: bool,
    headers: Vec<Header>,
    /// Head to send to the backend, and how much of it was sent.
    request_out: Vec<u8>,
    request_out_sent: usize,
    /// Head (or whole answer) to send to the client, and how much of it was sent.
    response_out: Vec<u8>,
    response_out_sent: usize,
    stream: Stream,
    /// Requests answered on this connection.
    served: u64,
    /// When the last exchange ended: a kept connection idles from then on.
    idle_since: Instant,
    /// The cluster the attached backend connection belongs to.
    back_cluster: String,
    back_use: BackUse,
    /// The sticky id of the attached backend connection's backend.
    back_sticky_id: Option<String>,
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
            stream: Stream::default(),
            served: 0,
            idle_since: Instant::now(),
            back_cluster: String::new(),
            back_use: BackUse::New,
            back_sticky_id: None,
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

    fn is_back_reused(&self) -> bool {
        self.back_use == BackUse::Reused
    }
}

/// Drives an HTTP session until it would block.
pub fn ready(session: &mut Session, context: &mut Context<'_>) -> Action {
    for _ in 0..1024 {
        let step = step(session, context);
        match step {
            Step::Progress => continue,
            Step::Wait => return Action::Wait,
            Step::Do(action) => return action,
        }
    }
    // A session that keeps making progress yields to the others; its sockets are still ready
    // and it will be driven again on the next turn.
    Action::Yield
}

fn step(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    match http.stream.phase {
        Phase::Head => match back_news(session) {
            Unread::Nothing => connection::read_request_head(session, context),
            Unread::Bytes => {
                log::warn!(
                    "session {}: the backend sent bytes with no request outstanding",
                    session.uid
                );
                Step::Do(Action::DropBack(SLOT))
            }
            Unread::End => Step::Do(Action::DropBack(SLOT)),
        },
        Phase::Connecting => Step::Wait,
        Phase::Answering(close) => connection::write_answer(session, context, close),
        Phase::Forwarding => connection::forward(session, context),
    }
}

/// What the kept backend connection sent while no request is outstanding on it. Bytes then
/// answer no request (a leftover of an earlier response, or a forged one): kept, they would
/// be read as the response to the next request, so the connection must go, as one the
/// backend closed must.
fn back_news(session: &mut Session) -> Unread {
    let Some(back) = session.backs.get_mut(SLOT).filter(|back| back.connected) else {
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
pub fn record_unfinished(session: &mut Session, context: &mut Context<'_>) {
    record::record_stream(session, context);
}

/// Answers the client for an event the loop saw: no backend (503), the per-address cap (429),
/// a connect that failed on every attempt (503).
pub fn answer_for(session: &mut Session, context: &mut Context<'_>, failure: Failure) -> Action {
    let Some(listener) = context.listeners.get(&session.listener_address) else {
        return Action::Close;
    };
    let step = match failure {
        Failure::NoBackend => answer(
            session,
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
            answer_with(
                session,
                context,
                listener,
                429,
                "too many connections",
                route::Close::AfterAnswer,
                extra,
            )
        }
        Failure::BackTimeout => {
            let extra = AnswerExtra {
                duration: Some(session.timeouts.back),
                ..AnswerExtra::default()
            };
            answer_with(
                session,
                context,
                listener,
                504,
                "the backend did not answer in time",
                route::Close::AfterAnswer,
                extra,
            )
        }
        Failure::FrontTimeout => {
            let Stage::Http(http) = &session.stage else {
                return Action::Close;
            };
            if session
                .front
                .tls
                .as_ref()
                .is_some_and(|tls| tls.is_handshaking())
            {
                // A handshake that did not finish in time: nothing can be said to the client.
                return Action::Close;
            }
            let waiting_for_first_request = http.served == 0 && http.stream.head_started.is_none();
            if http.stream.phase == Phase::Head
                && (http.stream.head_started.is_some() || waiting_for_first_request)
            {
                // The timeout `connection::arm_head_timeout` armed.
                let duration = if http.stream.head_started.is_some() {
                    session.timeouts.request
                } else {
                    session.timeouts.front.min(session.timeouts.request)
                };
                let extra = AnswerExtra {
                    duration: Some(duration),
                    ..AnswerExtra::default()
                };
                answer_with(
                    session,
                    context,
                    listener,
                    408,
                    "request timeout",
                    route::Close::AfterAnswer,
                    extra,
                )
            } else {
                return Action::Close;
            }
        }
    };
    match step {
        Step::Do(action) => action,
        Step::Progress | Step::Wait => ready(session, context),
    }
}

/// The backend connection is established (or taken from the pool): start forwarding.
/// `backend_sticky_id` names the backend for sticky sessions.
pub fn connected(session: &mut Session, backend_sticky_id: &str, back_use: BackUse) {
    let Stage::Http(http) = &mut session.stage else {
        return;
    };
    if http.stream.phase == Phase::Connecting {
        http.stream.phase = Phase::Forwarding;
    }
    // Whatever was read from another connection is no part of this one's responses.
    http.back_buf.clear();
    http.back_use = back_use;
    http.back_sticky_id = Some(backend_sticky_id.to_string());
    let stream = &mut http.stream;
    if let Some(name) = &stream.sticky_name {
        if stream.requested_sticky.as_deref() != Some(backend_sticky_id) {
            stream.sticky_cookie = Some((name.clone(), backend_sticky_id.to_string()));
        }
    }
}

/// Whether the exchange is waiting for the response head (a back timeout is then a 504).
pub fn awaits_response(session: &Session) -> bool {
    matches!(&session.stage, Stage::Http(http) if http.stream.awaits_response())
}

/// Whether the session's backend connection in `slot` sits idle between requests, clean: it
/// may serve another session. Nothing may be left of the last response, in the buffer or the
/// socket.
pub fn back_is_reusable(session: &Session, slot: Slot) -> bool {
    let clean = slot == SLOT
        && session
            .backs
            .get(SLOT)
            .is_some_and(BackConnection::is_clean);
    matches!(&session.stage, Stage::Http(http) if clean && http.stream.phase == Phase::Head && http.back_buf.is_empty())
}

/// Whether the session sits between requests with an idle backend connection.
///
/// A connection that has not sent its first request is idle only after
/// `FIRST_REQUEST_GRACE`: a client that just connected usually has its request on the way.
pub fn is_idle(session: &Session, now: Instant) -> bool {
    let Stage::Http(http) = &session.stage else {
        return false;
    };
    let waited =
        http.served > 0 || now.saturating_duration_since(session.started) >= FIRST_REQUEST_GRACE;
    http.stream.phase == Phase::Head && http.front_buf.is_empty() && waited
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
