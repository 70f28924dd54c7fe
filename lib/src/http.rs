//! HTTP/1.1 listeners and their sessions.
//!
//! A session reads a request head, routes it ([`crate::router`]), and then either answers by
//! itself (redirections, authentication, answer frontends, errors) or forwards the request to
//! a backend of the frontend's cluster and relays the response. Requests on a keep-alive
//! connection are handled one after the other, each routed on its own, so pipelined requests
//! are answered in order; the backend connection is kept for the next request to the same
//! cluster. A WebSocket `Upgrade` accepted with 101 turns the session into a byte pipe; other
//! upgrades are removed from the request ([`crate::protocol::http::upgrade`]), and CONNECT is
//! refused with 405: the proxy opens no tunnel.
//!
//! Bodies are forwarded as they come, never buffered whole: the framing trackers of the
//! parser find where a message ends, so bytes after it (a pipelined request, say) are never
//! sent with it. No byte crosses from one exchange to the next on the backend side either: a
//! backend connection that holds bytes after a complete response, or sends any while no
//! request is outstanding, is closed, never reused (see [`back_is_reusable`]).
//!
//! HTTP/1.0 clients get what HTTP/1.0 knows: no interim (1xx) response, and a chunked
//! response without its chunks, delimited by the end of the connection.

use std::{fmt::Write as _, io::IoSlice, net::SocketAddr, time::Instant};

use sozu_command_lib::request::{
    FixedAnswer, HeaderEdit, HeaderPosition, Hsts, HttpListenerConfig, RedirectPolicy,
    RedirectScheme,
};

use crate::{
    https::HttpsSettings,
    metrics::RequestRecord,
    pool::{Buffer, Pool},
    protocol::{
        http::{
            answers::{AnswerContext, Answers, reason},
            editor::{self, RequestEdits, ResponseEdits},
            parser::{
                BodyFraming, BodyProgress, ChunkedBody, ContentLengthBody, Header, HeaderKind,
                Limits, Method, ParseError, Parsed, Persistence, RequestHead, Version,
                parse_request_head, parse_response_head,
            },
            upgrade,
        },
        pipe::Pipe,
    },
    router::Router,
    session::{Action, BackConnection, Context, Session, Stage},
    socket::{Endpoint, Ready, Transfer, Unread},
    timer::{self, TimeoutKind},
};

/// An HTTP or HTTPS listener as sessions see it: settings, routes and answers.
pub struct HttpListener {
    pub config: HttpListenerConfig,
    pub router: Router,
    pub answers: Answers,
    /// TLS settings and certificates, for an HTTPS listener.
    pub tls: Option<HttpsSettings>,
    /// HSTS policy of an HTTPS listener, for frontends without their own.
    pub hsts: Option<Hsts>,
    pub limits: Limits,
}

impl HttpListener {
    /// The address clients know the listener by.
    pub fn public_address(&self) -> SocketAddr {
        self.config.public_address.unwrap_or(self.config.address)
    }
}

/// Where a message body stands.
#[derive(Debug, Clone)]
enum Body {
    /// Complete (or there is none).
    Done,
    Length(ContentLengthBody),
    Chunked(ChunkedBody),
    /// Ends when the backend closes.
    UntilClose,
}

impl Body {
    fn new(framing: BodyFraming, limits: &Limits) -> Body {
        match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => Body::Done,
            BodyFraming::ContentLength(length) => Body::Length(ContentLengthBody::new(length)),
            BodyFraming::Chunked => Body::Chunked(ChunkedBody::new(limits)),
            BodyFraming::UntilClose => Body::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many of `input`'s bytes belong to the body; `Err` when the chunked framing is
    /// broken. Moves to `Done` when the body ends within `input`.
    fn take(&mut self, input: &[u8]) -> Result<usize, ()> {
        let progress = match self {
            Body::Done => return Ok(0),
            Body::UntilClose => return Ok(input.len()),
            Body::Length(body) => body.feed(input),
            Body::Chunked(body) => body.feed(input).map_err(|_| ())?,
        };
        Ok(match progress {
            BodyProgress::Partial => input.len(),
            BodyProgress::Complete { len } => {
                *self = Body::Done;
                len
            }
        })
    }
}

/// The phase of the current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head.
    Head,
    /// Waiting for the connection to a backend.
    Connecting,
    /// Sending the request and relaying the response.
    Forward,
    /// Writing a response of the proxy; then close, or the next request.
    Answer { close: bool },
}

/// Per-request state, reset for each request.
#[derive(Default)]
struct Exchange {
    /// When the first byte of the request head arrived.
    head_started: Option<Instant>,
    method: Option<Method>,
    cluster_id: String,
    host: String,
    path: String,
    request_id: String,
    /// Request body bytes still to take from the front buffer.
    request_body: Option<Body>,
    /// Bytes of this request sent to the backend.
    request_sent: u64,
    /// The backend sent something for this request.
    response_started: bool,
    response_body: Option<Body>,
    /// The final response head was parsed.
    response_head_done: bool,
    /// The client connection ends after this exchange.
    close: bool,
    /// The client speaks HTTP/1.0.
    client_http10: bool,
    /// The response body is chunked and the client speaks HTTP/1.0: it gets the chunks' data
    /// only.
    dechunk: bool,
    /// The backend connection must not be reused after this exchange.
    back_close: bool,
    /// The request offers the backend a WebSocket upgrade.
    offers_upgrade: bool,
    /// The backend accepted the upgrade (101): the connection becomes a pipe after the head.
    switches_protocol: bool,
    /// The sticky cookie's name, when the cluster is sticky.
    sticky_name: Option<String>,
    /// The backend the request's sticky cookie names.
    requested_sticky: Option<String>,
    /// Sticky cookie to set on the response: (name, backend sticky id).
    sticky_cookie: Option<(String, String)>,
    /// Header rules of the frontend that apply to the response.
    response_rules: Vec<HeaderEdit>,
    hsts: Option<Hsts>,
    /// A request that failed on a reused backend connection may be sent again.
    retryable: bool,
    /// When the request was routed, its head fully sent to the backend, and its response head
    /// read.
    routed_at: Option<Instant>,
    request_sent_at: Option<Instant>,
    first_byte_time: Option<std::time::Duration>,
    method_text: String,
    user_agent: String,
    /// The status sent to the client, and whether the proxy wrote the answer itself.
    status: Option<u16>,
    answered_by_proxy: bool,
    /// Request bytes read from the client, response bytes written to it.
    bytes_in: u64,
    bytes_out: u64,
    /// A backend connection served this request.
    used_backend: bool,
    /// The exchange was recorded (metrics and access log).
    recorded: bool,
}

/// The HTTP stage of a session.
pub struct Http {
    front_buf: Buffer,
    back_buf: Buffer,
    headers: Vec<Header>,
    /// Head to send to the backend, and how much of it was sent.
    request_out: Vec<u8>,
    request_out_sent: usize,
    /// Head (or whole answer) to send to the client, and how much of it was sent.
    response_out: Vec<u8>,
    response_out_sent: usize,
    phase: Phase,
    exchange: Exchange,
    /// Requests answered on this connection.
    served: u64,
    /// When the last exchange ended: a kept connection idles from then on.
    idle_since: Instant,
    /// The cluster the attached backend connection belongs to.
    back_cluster: String,
    /// The backend connection was used for an earlier request.
    back_reused: bool,
    /// The sticky id of the attached backend connection's backend.
    back_sticky_id: Option<String>,
}

/// What a step of the session achieved.
enum Step {
    /// Something moved; try again.
    Progress,
    /// Nothing more until the next event.
    Wait,
    /// The event loop must act.
    Do(Action),
}

impl Http {
    pub fn new(pool: &Pool) -> Http {
        Http {
            front_buf: pool.checkout(),
            back_buf: pool.checkout(),
            headers: Vec::with_capacity(32),
            request_out: Vec::with_capacity(1024),
            request_out_sent: 0,
            response_out: Vec::with_capacity(1024),
            response_out_sent: 0,
            phase: Phase::Head,
            exchange: Exchange::default(),
            served: 0,
            idle_since: Instant::now(),
            back_cluster: String::new(),
            back_reused: false,
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
        (!self.exchange.cluster_id.is_empty()).then_some(self.exchange.cluster_id.as_str())
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
    match http.phase {
        Phase::Head => match back_news(session) {
            Unread::Nothing => read_request_head(session, context),
            Unread::Bytes => {
                log::warn!(
                    "session {}: the backend sent bytes with no request outstanding",
                    session.uid
                );
                Step::Do(Action::DropBack)
            }
            Unread::End => Step::Do(Action::DropBack),
        },
        Phase::Connecting => Step::Wait,
        Phase::Answer { close } => write_answer(session, context, close),
        Phase::Forward => forward(session, context),
    }
}

/// What the kept backend connection sent while no request is outstanding on it. Bytes then
/// answer no request (a leftover of an earlier response, or a forged one): kept, they would
/// be read as the response to the next request, so the connection must go, as one the
/// backend closed must.
fn back_news(session: &mut Session) -> Unread {
    let Some(back) = session.back.as_mut().filter(|back| back.connected) else {
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

/// Reads and parses a request head, then routes the request.
fn read_request_head(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Some(listener) = context.listeners.get(&session.listener_address) else {
        return Step::Do(Action::Close);
    };
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    if !http.front_buf.is_empty() {
        let parsed = parse_request_head(
            http.front_buf.data(),
            &listener.limits,
            listener.config.sozu_id_header.as_bytes(),
            &mut http.headers,
        );
        match parsed {
            Ok(Parsed::Complete(head)) => return route(session, context, listener, head),
            Ok(Parsed::Partial) => {}
            Err(error) => return refuse(session, context, listener, error),
        }
    }
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    if http.front_buf.is_full() {
        // The parser refuses an oversized head before the buffer fills; stay safe anyway.
        return answer(
            session,
            context,
            listener,
            431,
            "request head too large",
            true,
        );
    }
    if session.front.read_closed || !session.front.readiness.event.contains(Ready::READABLE) {
        if session.front.read_closed {
            return Step::Do(Action::Close);
        }
        arm_head_timeout(session, context);
        return Step::Wait;
    }
    match session.front.read(http.front_buf.space()) {
        Transfer::Moved(count) => {
            http.front_buf.fill(count);
            if http.exchange.head_started.is_none() {
                http.exchange.head_started = Some(context.now);
            }
            Step::Progress
        }
        Transfer::WouldBlock => {
            arm_head_timeout(session, context);
            Step::Wait
        }
        Transfer::Closed | Transfer::Error(_) => Step::Do(Action::Close),
    }
}

/// While a head is awaited: the idle timeout until its first byte, from the end of the last
/// exchange (for a new connection, the request timeout from accept when it is shorter), then
/// the request timeout from that byte. Neither moves once set: a client cannot stretch them by
/// trickling bytes, nor by sending what holds no request byte (TLS records without data).
fn arm_head_timeout(session: &mut Session, context: &mut Context<'_>) {
    let Stage::Http(http) = &session.stage else {
        return;
    };
    let key = session.timer_key(TimeoutKind::Front);
    let timeouts = session.timeouts;
    let deadline = match http.exchange.head_started {
        Some(started) => timer::later(started, timeouts.request),
        // A new connection (its TLS handshake included) has the request timeout, when shorter,
        // to send its first request: holding connections open costs a client nothing.
        None if http.served == 0 => {
            timer::later(session.started, timeouts.front.min(timeouts.request))
        }
        None => timer::later(http.idle_since, timeouts.front),
    };
    if session.front_timeout.deadline() != Some(deadline) {
        session.front_timeout.set(deadline, key, context.timers);
    }
}

/// Answers a request head that cannot be parsed, and closes.
fn refuse(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    error: ParseError,
) -> Step {
    let status = error.status();
    log::debug!("session {}: {error}: {}", session.uid, error.violation());
    answer(
        session,
        context,
        listener,
        status,
        &error.violation().to_string(),
        true,
    )
}

/// Writes an answer of the proxy into `response_out` and switches to writing it.
fn answer(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    status: u16,
    details: &str,
    close: bool,
) -> Step {
    answer_with(session, context, listener, status, details, close, None)
}

fn answer_with(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    status: u16,
    details: &str,
    close: bool,
    extra: Option<AnswerExtra<'_>>,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let exchange = &mut http.exchange;
    if exchange.request_id.is_empty() {
        new_request_id(exchange, session.uid, http.served);
    }
    exchange.status = Some(status);
    exchange.answered_by_proxy = true;
    let extra = extra.unwrap_or_default();
    let answer_context = AnswerContext {
        request_id: &exchange.request_id,
        cluster_id: (!exchange.cluster_id.is_empty()).then_some(exchange.cluster_id.as_str()),
        backend_id: None,
        host: &exchange.host,
        path: &exchange.path,
        details,
        location: extra.location,
        www_authenticate: extra.www_authenticate,
        retry_after: extra.retry_after,
    };
    let mut extra_fields = String::new();
    if !listener.config.sozu_id_header.is_empty() {
        let _ = write!(
            extra_fields,
            "{}: {}\r\n",
            listener.config.sozu_id_header, exchange.request_id
        );
    }
    if !close && exchange.client_http10 {
        extra_fields.push_str(KEEP_ALIVE_FIELD);
    }
    http.response_out.clear();
    http.response_out_sent = 0;
    listener.answers.render(
        status,
        &answer_context,
        close,
        &extra_fields,
        &mut http.response_out,
    );
    if exchange.method == Some(Method::Head) {
        // A response to HEAD has no body, only the Content-Length a GET would get (RFC 9110
        // §9.3.2); body bytes would be read as the next response on a kept connection. The
        // rendered head holds no empty line before its end: values are stripped of CR and LF.
        if let Some(end) = memchr::memmem::find(&http.response_out, b"\r\n\r\n") {
            http.response_out.truncate(end + 4);
        }
    }
    start_answer(session, context, close)
}

/// What tells an HTTP/1.0 client that its connection stays open: without it, the client
/// takes the connection as closed after the response (RFC 9112 §C.2.2).
const KEEP_ALIVE_FIELD: &str = "Connection: keep-alive\r\n";

/// Extra values of an answer.
#[derive(Default, Clone, Copy)]
struct AnswerExtra<'a> {
    location: Option<&'a str>,
    www_authenticate: Option<&'a str>,
    retry_after: Option<u64>,
}

/// Switches to writing `response_out` to the client.
fn start_answer(session: &mut Session, context: &mut Context<'_>, close: bool) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    http.phase = Phase::Answer { close };
    let after = session.timeouts.front;
    session.touch_front(after, context.now, context.timers);
    Step::Progress
}

fn new_request_id(exchange: &mut Exchange, session_uid: u64, served: u64) {
    exchange.request_id.clear();
    let _ = write!(
        exchange.request_id,
        "{:08x}{:08x}{:08x}",
        worker_seed(),
        session_uid,
        served
    );
}

/// A per-process random value, so request ids of two workers differ.
fn worker_seed() -> u32 {
    use std::{
        hash::{BuildHasher, RandomState},
        sync::OnceLock,
    };
    static SEED: OnceLock<u32> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32)
}

/// Writes the proxy's answer; then closes or goes on with the next request.
fn write_answer(session: &mut Session, context: &mut Context<'_>, close: bool) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    if http.response_out_sent < http.response_out.len() {
        return write_response_out(session, context);
    }
    record_exchange(session, context);
    if close {
        session.front.shutdown_write();
        return Step::Do(Action::Close);
    }
    finish_exchange(session, context)
}

/// Ends an exchange on a connection that stays open: the next request may be in the buffer.
fn finish_exchange(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    http.served += 1;
    http.idle_since = context.now;
    http.phase = Phase::Head;
    http.request_out.clear();
    http.request_out_sent = 0;
    http.response_out.clear();
    http.response_out_sent = 0;
    let back_close = http.exchange.back_close;
    let had_backend = !http.exchange.cluster_id.is_empty();
    let mut exchange = std::mem::take(&mut http.exchange);
    // Keep the allocations of the reusable strings.
    for text in [
        &mut exchange.cluster_id,
        &mut exchange.host,
        &mut exchange.path,
        &mut exchange.request_id,
        &mut exchange.method_text,
        &mut exchange.user_agent,
    ] {
        text.clear();
    }
    http.exchange = Exchange {
        cluster_id: exchange.cluster_id,
        host: exchange.host,
        path: exchange.path,
        request_id: exchange.request_id,
        method_text: exchange.method_text,
        user_agent: exchange.user_agent,
        ..Exchange::default()
    };
    session.back_timeout.cancel();
    let after = session.timeouts.front;
    session.touch_front(after, context.now, context.timers);
    if had_backend {
        let action = if back_close {
            Action::DropBack
        } else {
            Action::ExchangeDone
        };
        return Step::Do(action);
    }
    Step::Progress
}

/// Decides what to do with a parsed request: answer it, or forward it to a cluster. An
/// answered request's head leaves the buffer, so the next request is read after it.
fn route(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    head: RequestHead,
) -> Step {
    let head_len = head.head_len;
    let step = route_request(session, context, listener, head);
    if let Stage::Http(http) = &mut session.stage {
        if matches!(http.phase, Phase::Answer { .. }) {
            http.front_buf.consume(head_len);
        }
    }
    step
}

fn route_request(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    head: RequestHead,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let buf = http.front_buf.data();
    let exchange = &mut http.exchange;
    new_request_id(exchange, session.uid, http.served);
    let host = head
        .authority
        .map(|a| a.span.slice(buf))
        .unwrap_or_default();
    exchange.host.clear();
    exchange.host.push_str(&String::from_utf8_lossy(host));
    exchange.path.clear();
    exchange
        .path
        .push_str(&String::from_utf8_lossy(head.path.slice(buf)));
    exchange.method = Some(head.method);
    exchange
        .method_text
        .push_str(&String::from_utf8_lossy(head.method_span.slice(buf)));
    if let Some(agent) = http
        .headers
        .iter()
        .find(|header| header.name.slice(buf).eq_ignore_ascii_case(b"user-agent"))
    {
        exchange
            .user_agent
            .push_str(&String::from_utf8_lossy(agent.value.slice(buf)));
    }
    exchange.routed_at = Some(context.now);
    exchange.bytes_in = head.head_len as u64;
    exchange.close = head.persistence == Persistence::Close;
    exchange.client_http10 = head.version == Version::Http10;
    session.front_timeout.cancel();

    if head.method == Method::Connect {
        // The proxy opens no tunnel (as nginx): CONNECT is never routed, and the connection
        // closes, since a client may send tunnel bytes right after its request.
        return answer(
            session,
            context,
            listener,
            405,
            "the CONNECT method is not supported",
            true,
        );
    }
    if listener
        .tls
        .as_ref()
        .is_some_and(|tls| tls.strict_sni_binding)
    {
        let host_only = head
            .authority
            .map(|a| a.host.slice(buf))
            .unwrap_or_default();
        let host_only = host_only.strip_suffix(b".").unwrap_or(host_only);
        // A client that sent no SNI bound its connection to no name: it reaches none.
        let server_name = session.front.tls.as_ref().and_then(|tls| tls.server_name());
        if !server_name.is_some_and(|name| host_only.eq_ignore_ascii_case(name.as_bytes())) {
            let close = exchange.close || head.body != BodyFraming::None;
            let details = match server_name {
                Some(_) => "the Host differs from the TLS server name",
                None => "the client sent no TLS server name",
            };
            return answer(session, context, listener, 421, details, close);
        }
    }

    let Some(found) =
        listener
            .router
            .lookup(host, head.path.slice(buf), head.method_span.slice(buf))
    else {
        let close = exchange.close || head.body != BodyFraming::None;
        return answer(
            session,
            context,
            listener,
            404,
            "no frontend matches",
            close,
        );
    };
    let frontend = found.frontend();
    // A request with a body that the proxy answers is not read: close after the answer.
    let close = exchange.close || head.body != BodyFraming::None;
    let public = listener.public_address();

    if let Some(fixed) = &frontend.answer {
        let fixed = fixed.clone();
        return fixed_answer(session, context, listener, &fixed, close);
    }
    let cluster = frontend
        .cluster_id
        .as_deref()
        .and_then(|id| context.clusters.get(id));
    if let Some(cluster) = cluster {
        exchange.cluster_id.clear();
        exchange.cluster_id.push_str(&cluster.cluster_id);
    }
    match frontend.redirect {
        RedirectPolicy::Forward => {}
        RedirectPolicy::Unauthorized => {
            let realm = cluster.and_then(|c| c.www_authenticate.as_deref());
            return unauthorized(
                session,
                context,
                listener,
                realm,
                "denied by the frontend",
                close,
            );
        }
        policy => {
            let status = match policy {
                RedirectPolicy::Found => 302,
                RedirectPolicy::PermanentRedirect => 308,
                _ => 301,
            };
            let location = match found.redirect_location(host, head.path.slice(buf), public.port())
            {
                Some(location) => String::from_utf8_lossy(&location).into_owned(),
                None => {
                    let scheme = match frontend.redirect_scheme {
                        RedirectScheme::UseHttp => "http",
                        RedirectScheme::UseHttps => "https",
                        RedirectScheme::UseSame if listener.tls.is_some() => "https",
                        RedirectScheme::UseSame => "http",
                    };
                    match found.rewritten_redirect(host, head.path.slice(buf), public.port()) {
                        Some(target) => format!("{scheme}://{target}"),
                        None => format!(
                            "{scheme}://{}{}",
                            exchange.host,
                            origin_path(&exchange.path)
                        ),
                    }
                }
            };
            let extra = AnswerExtra {
                location: Some(&location),
                ..AnswerExtra::default()
            };
            return answer_with(
                session,
                context,
                listener,
                status,
                "redirected by the frontend",
                close,
                Some(extra),
            );
        }
    }
    let Some(cluster) = cluster else {
        return answer(
            session,
            context,
            listener,
            503,
            "the frontend's cluster does not exist",
            close,
        );
    };
    if cluster.https_redirect && listener.tls.is_none() {
        let host_only = head
            .authority
            .map(|a| a.host.slice(buf))
            .unwrap_or_default();
        let mut location = format!("https://{}", String::from_utf8_lossy(host_only));
        if let Some(port) = cluster.https_redirect_port.filter(|port| *port != 443) {
            let _ = write!(location, ":{port}");
        }
        location.push_str(origin_path(&exchange.path));
        let extra = AnswerExtra {
            location: Some(&location),
            ..AnswerExtra::default()
        };
        return answer_with(
            session,
            context,
            listener,
            301,
            "HTTPS required",
            close,
            Some(extra),
        );
    }
    if frontend.required_auth && !is_authorized(buf, &http.headers, &cluster.authorized_hashes) {
        let realm = cluster.www_authenticate.as_deref();
        return unauthorized(
            session,
            context,
            listener,
            realm,
            "authentication required",
            close,
        );
    }

    // Forward: build the head for the backend now, while the request bytes are here.
    let rewrite = found.rewrite(host, head.path.slice(buf), public.port());
    // WebSocket is the only upgrade let through, offered in a GET without a body (RFC 6455
    // §4.1); any other Upgrade is removed and the backend answers in HTTP/1.1.
    let upgrade = head
        .upgrade
        .filter(|_| {
            head.is_connection_upgrade
                && head.method == Method::Get
                && head.body == BodyFraming::None
        })
        .and_then(|value| upgrade::offered_websocket(value.slice(buf)));
    let sticky_name = listener.config.sticky_name.as_str();
    let sticky_cookie = cluster.sticky_session.then_some(sticky_name);
    let sticky_id = sticky_cookie
        .and_then(|name| editor::find_cookie(buf, &http.headers, name))
        .map(|value| String::from_utf8_lossy(value).into_owned());
    let request_rules: Vec<HeaderEdit> = Vec::new();
    let rules = if frontend.headers.is_empty() {
        &request_rules[..]
    } else {
        &frontend.headers[..]
    };
    let edits = RequestEdits {
        client: session.client_address,
        listener: public,
        is_tls: listener.tls.is_some(),
        request_id_header: &listener.config.sozu_id_header,
        request_id: &exchange.request_id,
        send_x_real_ip: listener.config.send_x_real_ip,
        elide_x_real_ip: listener.config.elide_x_real_ip,
        rewrite_host: rewrite.as_ref().and_then(|r| r.host.as_deref()),
        rewrite_port: rewrite.as_ref().and_then(|r| r.port),
        rewrite_path: rewrite.as_ref().and_then(|r| r.path.as_deref()),
        rules,
        sticky_cookie,
        upgrade,
    };
    editor::write_request_head(buf, &head, &http.headers, &edits, &mut http.request_out);
    http.request_out_sent = 0;
    exchange.response_rules = frontend
        .headers
        .iter()
        .filter(|rule| rule.position != HeaderPosition::Request)
        .cloned()
        .collect();
    exchange.hsts = if listener.tls.is_some() {
        frontend.hsts.clone().or_else(|| listener.hsts.clone())
    } else {
        None
    };
    exchange.offers_upgrade = upgrade.is_some();
    exchange.request_body = Some(Body::new(head.body, &listener.limits));
    exchange.retryable = head.body == BodyFraming::None && is_idempotent(head.method);
    http.front_buf.consume(head.head_len);

    exchange.sticky_name = sticky_cookie.map(str::to_string);
    exchange.requested_sticky.clone_from(&sticky_id);
    let cluster_id = exchange.cluster_id.clone();
    let back_usable =
        session.back.as_ref().is_some_and(BackConnection::is_clean) && http.back_buf.is_empty();
    let same_backend = back_usable
        && http.back_cluster == cluster_id
        && (sticky_id.is_none() || sticky_id == http.back_sticky_id);
    if same_backend {
        http.phase = Phase::Forward;
        http.back_reused = true;
        if let (Some(name), Some(backend_sticky)) = (&exchange.sticky_name, &http.back_sticky_id) {
            if exchange.requested_sticky.as_ref() != Some(backend_sticky) {
                exchange.sticky_cookie = Some((name.clone(), backend_sticky.clone()));
            }
        }
        return Step::Progress;
    }
    http.phase = Phase::Connecting;
    http.back_reused = false;
    http.back_cluster.clear();
    http.back_cluster.push_str(&cluster_id);
    Step::Do(Action::Connect {
        cluster_id,
        sticky_id,
    })
}

/// Answers 401 with a `WWW-Authenticate` for `realm` (`sozu` when the cluster names none).
fn unauthorized(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    realm: Option<&str>,
    details: &str,
    close: bool,
) -> Step {
    let extra = AnswerExtra {
        www_authenticate: Some(realm.unwrap_or("sozu")),
        ..AnswerExtra::default()
    };
    answer_with(session, context, listener, 401, details, close, Some(extra))
}

/// The path of a redirection target: the request's path, or `/` for an empty one.
fn origin_path(path: &str) -> &str {
    if path.starts_with('/') { path } else { "/" }
}

fn is_idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Options | Method::Trace | Method::Put | Method::Delete
    )
}

/// HTTP Basic credentials of the request, checked against `user:sha256hex` entries with a
/// comparison whose time does not depend on where the bytes differ.
fn is_authorized(buf: &[u8], headers: &[Header], authorized: &[String]) -> bool {
    use base64::Engine as _;
    use sha2::Digest as _;
    let Some(credentials) = headers
        .iter()
        .find(|header| header.kind == HeaderKind::Authorization)
        .map(|header| header.value.slice(buf))
        .and_then(|value| {
            value
                .strip_prefix(b"Basic ")
                .or_else(|| value.strip_prefix(b"basic "))
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim_ascii())
                .ok()
        })
    else {
        return false;
    };
    let Some(colon) = credentials.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = credentials.split_at(colon);
    let password = password.get(1..).unwrap_or_default();
    let digest = sha2::Sha256::digest(password);
    let mut hex = [0u8; 64];
    for (index, byte) in digest.iter().enumerate() {
        let digits = b"0123456789abcdef";
        if let (Some(high), Some(low)) =
            (hex.get_mut(index * 2), digits.get(usize::from(byte >> 4)))
        {
            *high = *low;
        }
        if let (Some(slot), Some(low)) = (
            hex.get_mut(index * 2 + 1),
            digits.get(usize::from(byte & 0xf)),
        ) {
            *slot = *low;
        }
    }
    let mut found = false;
    for entry in authorized {
        let Some((entry_user, entry_hash)) = entry.split_once(':') else {
            continue;
        };
        let same_user = constant_time_eq(entry_user.as_bytes(), user);
        let same_hash = constant_time_eq(entry_hash.to_ascii_lowercase().as_bytes(), &hex);
        found |= same_user & same_hash;
    }
    found
}

/// Compares two byte strings in a time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers with a frontend's fixed response.
fn fixed_answer(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    fixed: &FixedAnswer,
    close: bool,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    http.exchange.status = Some(fixed.status);
    http.exchange.answered_by_proxy = true;
    let out = &mut http.response_out;
    out.clear();
    http.response_out_sent = 0;
    let _ = write!(
        AsFmt(out),
        "HTTP/1.1 {} {}\r\n",
        fixed.status,
        reason(fixed.status)
    );
    let mut has_content_type = false;
    for (name, value) in &fixed.headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        let _ = write!(AsFmt(out), "{name}: {value}\r\n");
    }
    if !has_content_type && !fixed.body.is_empty() {
        out.extend_from_slice(b"Content-Type: text/html; charset=utf-8\r\n");
    }
    if !listener.config.sozu_id_header.is_empty() {
        let _ = write!(
            AsFmt(out),
            "{}: {}\r\n",
            listener.config.sozu_id_header,
            http.exchange.request_id
        );
    }
    let is_head = http.exchange.method == Some(Method::Head);
    let _ = write!(AsFmt(out), "Content-Length: {}\r\n", fixed.body.len());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http.exchange.client_http10 {
        out.extend_from_slice(KEEP_ALIVE_FIELD.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(fixed.body.as_bytes());
    }
    start_answer(session, context, close)
}

/// `fmt::Write` over a byte vector.
struct AsFmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for AsFmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Sends the request to the backend and relays the response, both ways at once.
fn forward(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Some(listener) = context.listeners.get(&session.listener_address) else {
        return Step::Do(Action::Close);
    };
    let Some(back) = session.back.as_mut() else {
        return Step::Do(Action::Close);
    };
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let front = &mut session.front;
    let back = &mut back.endpoint;
    let mut progress = false;
    let mut front_active = false;
    let mut back_active = false;

    // Client → backend: the head, then body bytes as the framing allows.
    if let Some(body) = http.exchange.request_body.as_mut() {
        match send_message(
            back,
            &http.request_out,
            &mut http.request_out_sent,
            body,
            &mut http.front_buf,
        ) {
            Sent::Nothing => {}
            Sent::Moved { head, body } => {
                if http.request_out_sent == http.request_out.len()
                    && http.exchange.request_sent_at.is_none()
                {
                    http.exchange.request_sent_at = Some(context.now);
                }
                http.exchange.bytes_in += body as u64;
                http.exchange.request_sent += (head + body) as u64;
                http.exchange.used_backend = true;
                progress = true;
                back_active = true;
            }
            Sent::InvalidBody => {
                return answer(
                    session,
                    context,
                    listener,
                    400,
                    "invalid chunked body",
                    true,
                );
            }
            Sent::Failed => return backend_failed(session, context, listener),
        }
        if !body.is_done()
            && !http.front_buf.is_full()
            && !front.read_closed
            && front.readiness.event.contains(Ready::READABLE)
        {
            match front.read(http.front_buf.space()) {
                Transfer::Moved(count) => {
                    http.front_buf.fill(count);
                    progress = true;
                    front_active = true;
                }
                Transfer::WouldBlock => {}
                Transfer::Closed => {
                    // The client ended its stream in the middle of a request body.
                    return Step::Do(Action::Close);
                }
                Transfer::Error(_) => return Step::Do(Action::Close),
            }
        }
        if body.is_done() && http.request_out_sent == http.request_out.len() {
            http.exchange.request_body = None;
            progress = true;
        }
    }

    // Backend → client.
    if !http.exchange.response_head_done {
        match read_response_head(session, context, listener) {
            Step::Progress => progress = true,
            Step::Wait => {}
            other => return other,
        }
    } else {
        match relay_response_body(session, context) {
            Step::Progress => progress = true,
            Step::Wait => {}
            other => return other,
        }
    }
    if front_active {
        let after = session.timeouts.front;
        session.touch_front(after, context.now, context.timers);
    }
    if back_active {
        let after = session.timeouts.back;
        session.touch_back(after, context.now, context.timers);
    }
    if progress { Step::Progress } else { Step::Wait }
}

/// What [`send_message`] achieved.
enum Sent {
    /// Nothing to send, or the socket takes nothing now.
    Nothing,
    /// Bytes of the head and of the body went out.
    Moved { head: usize, body: usize },
    /// The chunked body in the buffer breaks its framing.
    InvalidBody,
    /// The socket failed or its peer is gone.
    Failed,
}

/// Sends a message on: what is left of its edited head (`out` from `out_sent`), then the body
/// bytes in `buffer` that its framing allows, in one `writev`. Bytes after the body (a
/// pipelined request) stay in the buffer.
fn send_message(
    sink: &mut Endpoint,
    out: &[u8],
    out_sent: &mut usize,
    body: &mut Body,
    buffer: &mut Buffer,
) -> Sent {
    let head = out.get(*out_sent..).unwrap_or_default();
    let available = match body.clone().take(buffer.data()) {
        Ok(count) => count,
        Err(()) => return Sent::InvalidBody,
    };
    if (head.is_empty() && available == 0) || !sink.readiness.event.contains(Ready::WRITABLE) {
        return Sent::Nothing;
    }
    let body_bytes = buffer.data().get(..available).unwrap_or_default();
    match sink.write_vectored(&[IoSlice::new(head), IoSlice::new(body_bytes)]) {
        Transfer::Moved(count) => {
            let from_head = count.min(head.len());
            *out_sent += from_head;
            let from_body = count - from_head;
            let mut taken = 0;
            if from_body > 0 {
                taken = body
                    .take(buffer.data().get(..from_body).unwrap_or_default())
                    .unwrap_or(from_body);
                buffer.consume(taken);
            }
            Sent::Moved {
                head: from_head,
                body: taken,
            }
        }
        Transfer::WouldBlock => Sent::Nothing,
        Transfer::Closed | Transfer::Error(_) => Sent::Failed,
    }
}

/// Sends a chunked body without its chunked coding (to an HTTP/1.0 client): once `out` (the
/// head, then the data of earlier chunks) is sent, the chunks in `buffer` are taken and their
/// data put in `out`. So `out` never holds more than a buffer's worth of data.
fn send_dechunked(
    sink: &mut Endpoint,
    out: &mut Vec<u8>,
    out_sent: &mut usize,
    body: &mut Body,
    buffer: &mut Buffer,
) -> Sent {
    let mut framing_taken = false;
    if *out_sent == out.len() && !buffer.is_empty() {
        let Body::Chunked(chunked) = body else {
            return Sent::Nothing;
        };
        out.clear();
        *out_sent = 0;
        let input = buffer.data();
        let taken = match chunked.feed_with(input, |data| out.extend_from_slice(data)) {
            Ok(BodyProgress::Partial) => input.len(),
            Ok(BodyProgress::Complete { len }) => {
                *body = Body::Done;
                len
            }
            Err(_) => return Sent::InvalidBody,
        };
        buffer.consume(taken);
        framing_taken = taken > 0;
    }
    // Taking chunk framing alone moves the body on too.
    let unsent = if framing_taken {
        Sent::Moved { head: 0, body: 0 }
    } else {
        Sent::Nothing
    };
    let pending = out.get(*out_sent..).unwrap_or_default();
    if pending.is_empty() || !sink.readiness.event.contains(Ready::WRITABLE) {
        return unsent;
    }
    match sink.write(pending) {
        Transfer::Moved(count) => {
            *out_sent += count;
            Sent::Moved {
                head: count,
                body: 0,
            }
        }
        Transfer::WouldBlock => unsent,
        Transfer::Closed | Transfer::Error(_) => Sent::Failed,
    }
}

/// The backend connection failed while the request was being sent or the response awaited.
fn backend_failed(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    if http.exchange.response_head_done || http.response_out_sent < http.response_out.len() {
        // Part of the final response went out, or an interim one is on its way: the client
        // cannot be told more than a cut.
        return Step::Do(Action::Close);
    }
    if http.exchange.response_started {
        // The backend closed inside a head: no response, as if it had sent nothing.
        return answer(
            session,
            context,
            listener,
            502,
            "the backend closed the connection inside its response head",
            true,
        );
    }
    if http.back_reused && http.exchange.retryable {
        // A kept connection the backend closed meanwhile (RFC 9112 §9.3.1): send the request
        // again on a new connection, once.
        http.back_reused = false;
        http.exchange.retryable = false;
        http.request_out_sent = 0;
        http.exchange.request_body = Some(Body::Done);
        http.phase = Phase::Connecting;
        return Step::Do(Action::Reconnect {
            cluster_id: http.exchange.cluster_id.clone(),
        });
    }
    answer(
        session,
        context,
        listener,
        502,
        "the backend closed the connection before answering",
        true,
    )
}

/// Whether the transfer codings of a message are `chunked` alone.
fn is_chunked_alone(buf: &[u8], headers: &[Header]) -> bool {
    let mut codings = headers
        .iter()
        .filter(|header| header.kind == HeaderKind::TransferEncoding)
        .flat_map(|header| header.value.slice(buf).split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    codings
        .next()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Reads and parses the backend's response head; forwards 1xx heads (not to HTTP/1.0
/// clients), switches to a pipe on a 101 that accepts the WebSocket upgrade offered, and
/// prepares the edited head of the final response.
fn read_response_head(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let Some(back_connection) = session.back.as_mut() else {
        return Step::Do(Action::Close);
    };
    let back = &mut back_connection.endpoint;
    // A 1xx head being written to the client blocks reading the next head.
    if http.response_out_sent < http.response_out.len() {
        return write_response_out(session, context);
    }
    let method = http.exchange.method.unwrap_or(Method::Get);
    if !http.back_buf.is_empty() {
        match parse_response_head(
            http.back_buf.data(),
            &listener.limits,
            method,
            &mut http.headers,
        ) {
            Ok(Parsed::Complete(head)) => {
                let buf = http.back_buf.data();
                let client_http10 = http.exchange.client_http10;
                if (100..200).contains(&head.status) && head.status != 101 {
                    // Interim response: relay it as is and read the final one. HTTP/1.0 has no
                    // 1xx: its clients never see one (RFC 9110 §15.2).
                    if !client_http10 {
                        http.response_out.clear();
                        http.response_out
                            .extend_from_slice(buf.get(..head.head_len).unwrap_or_default());
                        http.response_out_sent = 0;
                    }
                    http.back_buf.consume(head.head_len);
                    return Step::Progress;
                }
                let upgrade = head.status == 101
                    && http.exchange.offers_upgrade
                    && head
                        .upgrade
                        .is_some_and(|value| upgrade::switches_to_websocket(value.slice(buf)));
                if head.status == 101 && !upgrade {
                    http.exchange.back_close = true;
                    let details = if http.exchange.offers_upgrade {
                        "101 to a protocol the client did not ask for"
                    } else {
                        "101 without an upgrade request"
                    };
                    return answer(session, context, listener, 502, details, true);
                }
                // An HTTP/1.0 client knows no transfer coding: the proxy removes `chunked`
                // (RFC 9112 §7.1.3), and cannot remove any other.
                let dechunk = client_http10 && head.body == BodyFraming::Chunked;
                let has_transfer_coding = http
                    .headers
                    .iter()
                    .any(|header| header.kind == HeaderKind::TransferEncoding);
                if client_http10
                    && head.body != BodyFraming::None
                    && has_transfer_coding
                    && !(dechunk && is_chunked_alone(buf, &http.headers))
                {
                    http.exchange.back_close = true;
                    return answer(
                        session,
                        context,
                        listener,
                        502,
                        "a transfer coding an HTTP/1.0 client cannot decode",
                        true,
                    );
                }
                http.exchange.dechunk = dechunk;
                // A backend that closes after this response costs its own connection only,
                // unless the body ends with that close: then the client learns the end the
                // same way. A body without its chunks ends with the connection too.
                let close = http.exchange.close
                    || head.body == BodyFraming::UntilClose
                    || dechunk
                    || http.exchange.request_body.is_some();
                http.exchange.back_close |= head.persistence == Persistence::Close;
                http.exchange.close = close && !upgrade;
                // A refused upgrade (any other status) leaves an HTTP connection.
                http.exchange.switches_protocol = upgrade;
                let set_sticky = http
                    .exchange
                    .sticky_cookie
                    .as_ref()
                    .map(|(name, value)| (name.as_str(), value.as_str()));
                let edits = ResponseEdits {
                    request_id_header: &listener.config.sozu_id_header,
                    request_id: &http.exchange.request_id,
                    rules: &http.exchange.response_rules,
                    hsts: http.exchange.hsts.as_ref(),
                    set_sticky,
                    close: http.exchange.close,
                    upgrade,
                    client_http10,
                };
                editor::write_response_head(
                    buf,
                    &head,
                    &http.headers,
                    &edits,
                    &mut http.response_out,
                );
                http.response_out_sent = 0;
                http.back_buf.consume(head.head_len);
                http.exchange.response_head_done = true;
                http.exchange.status = Some(head.status);
                http.exchange.first_byte_time = http
                    .exchange
                    .request_sent_at
                    .map(|sent| context.now.saturating_duration_since(sent));
                http.exchange.response_body = Some(if upgrade {
                    Body::Done
                } else {
                    Body::new(head.body, &listener.limits)
                });
                if upgrade {
                    session.back_timeout.cancel();
                } else {
                    // The body is awaited from the backend too: one that stalls after the head
                    // must not hold the client until the front timeout.
                    let after = session.timeouts.back;
                    session.touch_back(after, context.now, context.timers);
                }
                return Step::Progress;
            }
            Ok(Parsed::Partial) => {}
            Err(error) => {
                log::warn!("session {}: {error}: {}", session.uid, error.violation());
                http.exchange.back_close = true;
                return answer(
                    session,
                    context,
                    listener,
                    502,
                    &error.violation().to_string(),
                    true,
                );
            }
        }
        if http.back_buf.is_full() {
            return answer(
                session,
                context,
                listener,
                502,
                "response head too large",
                true,
            );
        }
    }
    if back.read_closed {
        return backend_failed(session, context, listener);
    }
    if !back.readiness.event.contains(Ready::READABLE) {
        return Step::Wait;
    }
    match back.read(http.back_buf.space()) {
        Transfer::Moved(count) => {
            http.back_buf.fill(count);
            http.exchange.response_started = true;
            let after = session.timeouts.back;
            session.touch_back(after, context.now, context.timers);
            Step::Progress
        }
        Transfer::WouldBlock => Step::Wait,
        Transfer::Closed | Transfer::Error(_) => backend_failed(session, context, listener),
    }
}

/// Writes pending bytes of `response_out` to the client.
fn write_response_out(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    if !session.front.readiness.event.contains(Ready::WRITABLE) {
        return Step::Wait;
    }
    let pending = http
        .response_out
        .get(http.response_out_sent..)
        .unwrap_or_default();
    match session.front.write(pending) {
        Transfer::Moved(count) => {
            http.response_out_sent += count;
            http.exchange.bytes_out += count as u64;
            let after = session.timeouts.front;
            session.touch_front(after, context.now, context.timers);
            Step::Progress
        }
        Transfer::WouldBlock => Step::Wait,
        Transfer::Closed | Transfer::Error(_) => Step::Do(Action::Close),
    }
}

/// Relays the response head and body to the client, and ends the exchange when the body is
/// complete.
fn relay_response_body(session: &mut Session, context: &mut Context<'_>) -> Step {
    let front_key = session.timer_key(TimeoutKind::Front);
    let back_key = session.timer_key(TimeoutKind::Back);
    let timeouts = session.timeouts;
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let Some(back_connection) = session.back.as_mut() else {
        return Step::Do(Action::Close);
    };
    let back = &mut back_connection.endpoint;
    let front = &mut session.front;
    let Some(body) = http.exchange.response_body.as_mut() else {
        return Step::Do(Action::Close);
    };
    let mut progress = false;

    let sent = if http.exchange.dechunk {
        send_dechunked(
            front,
            &mut http.response_out,
            &mut http.response_out_sent,
            body,
            &mut http.back_buf,
        )
    } else {
        send_message(
            front,
            &http.response_out,
            &mut http.response_out_sent,
            body,
            &mut http.back_buf,
        )
    };
    match sent {
        Sent::Nothing => {}
        Sent::Moved { head, body } => {
            http.exchange.bytes_out += (head + body) as u64;
            progress = true;
            session
                .front_timeout
                .set_after(context.now, timeouts.front, front_key, context.timers);
            // The exchange moves: a slow reader does not make the backend look silent.
            session
                .back_timeout
                .set_after(context.now, timeouts.back, back_key, context.timers);
        }
        Sent::InvalidBody => {
            log::warn!("session {}: invalid chunked response body", session.uid);
            return Step::Do(Action::Close);
        }
        Sent::Failed => return Step::Do(Action::Close),
    }
    let head_sent = http.response_out_sent == http.response_out.len();
    if head_sent && body.is_done() {
        record_exchange(session, context);
        let Stage::Http(http) = &mut session.stage else {
            return Step::Do(Action::Close);
        };
        if http.exchange.switches_protocol {
            return upgrade_to_pipe(session, context);
        }
        if !http.back_buf.is_empty() {
            // Bytes after a complete response answer no request (a body on a HEAD response,
            // a 204 or a 304, bytes past the Content-Length): read as the next response, they
            // would reach the wrong request. The connection can carry no other request.
            log::warn!(
                "session {}: the backend sent {} bytes past the end of its response",
                session.uid,
                http.back_buf.data().len()
            );
            http.exchange.back_close = true;
        }
        if http.exchange.request_body.is_some() {
            // The backend answered before the whole request was sent: the connection
            // cannot carry another request.
            http.exchange.close = true;
            http.exchange.back_close = true;
        }
        if http.exchange.close {
            if !http.exchange.back_close {
                // The client leaves, but the backend connection is clean: back to waiting
                // for a request, so the loop can pool it for another session.
                http.phase = Phase::Head;
            }
            session.front.shutdown_write();
            return Step::Do(Action::Close);
        }
        return finish_exchange(session, context);
    }
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let Some(body) = http.exchange.response_body.as_mut() else {
        return Step::Do(Action::Close);
    };
    if !http.back_buf.is_full()
        && !back.read_closed
        && back.readiness.event.contains(Ready::READABLE)
    {
        match back.read(http.back_buf.space()) {
            Transfer::Moved(count) => {
                http.back_buf.fill(count);
                progress = true;
                session.back_timeout.set_after(
                    context.now,
                    timeouts.back,
                    back_key,
                    context.timers,
                );
            }
            Transfer::WouldBlock => {}
            Transfer::Closed => {
                if matches!(body, Body::UntilClose) {
                    *body = Body::Done;
                    http.exchange.close = true;
                    http.exchange.back_close = true;
                    progress = true;
                } else if http.back_buf.is_empty() {
                    // The backend ended its stream before the end of the body: the client
                    // gets a cut response and the connection closes.
                    log::warn!(
                        "session {}: backend closed in the middle of a response",
                        session.uid
                    );
                    return Step::Do(Action::Close);
                }
            }
            Transfer::Error(_) => return Step::Do(Action::Close),
        }
    } else if back.read_closed && http.back_buf.is_empty() && !body.is_done() {
        if matches!(body, Body::UntilClose) {
            *body = Body::Done;
            http.exchange.close = true;
            http.exchange.back_close = true;
            progress = true;
        } else {
            return Step::Do(Action::Close);
        }
    }
    if progress { Step::Progress } else { Step::Wait }
}

/// After a 101: the rest of the connection is a pipe of bytes both ways.
fn upgrade_to_pipe(session: &mut Session, context: &mut Context<'_>) -> Step {
    let Stage::Http(http) = std::mem::replace(&mut session.stage, Stage::Closed) else {
        return Step::Do(Action::Close);
    };
    let Http {
        front_buf,
        back_buf,
        ..
    } = *http;
    session.stage = Stage::Pipe(Pipe::new(front_buf, back_buf));
    let after = session.timeouts.front;
    session.touch_front(after, context.now, context.timers);
    Step::Do(Action::Upgraded)
}

/// Records the current exchange (metrics and access log), once.
fn record_exchange(session: &mut Session, context: &mut Context<'_>) {
    let Stage::Http(http) = &mut session.stage else {
        return;
    };
    let exchange = &mut http.exchange;
    let Some(routed_at) = exchange.routed_at else {
        return;
    };
    if exchange.recorded {
        return;
    }
    exchange.recorded = true;
    let back = session.back.as_ref().filter(|_| exchange.used_backend);
    let record = RequestRecord {
        listener: session.listener_address,
        client: session.client_address,
        protocol: if session.front.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        },
        cluster_id: (!exchange.cluster_id.is_empty()).then_some(exchange.cluster_id.as_str()),
        backend_id: back.map(|b| b.backend_id.as_str()),
        backend_address: back.map(|b| b.address),
        method: &exchange.method_text,
        host: &exchange.host,
        path: &exchange.path,
        status: exchange.status,
        answered_by_proxy: exchange.answered_by_proxy,
        bytes_in: exchange.bytes_in,
        bytes_out: exchange.bytes_out,
        connect_time: if exchange.used_backend && !http.back_reused {
            session.connect_time
        } else {
            None
        },
        first_byte_time: exchange.first_byte_time,
        total_time: Instant::now().saturating_duration_since(routed_at),
        user_agent: &exchange.user_agent,
        request_id: &exchange.request_id,
    };
    context.recorder.request_done(&record);
}

/// Records a request that ends without a complete answer, when its session closes.
pub fn record_unfinished(session: &mut Session, context: &mut Context<'_>) {
    record_exchange(session, context);
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
            true,
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
                true,
                Some(extra),
            )
        }
        Failure::BackTimeout => answer(
            session,
            context,
            listener,
            504,
            "the backend did not answer in time",
            true,
        ),
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
            let waiting_for_first_request =
                http.served == 0 && http.exchange.head_started.is_none();
            if http.phase == Phase::Head
                && (http.exchange.head_started.is_some() || waiting_for_first_request)
            {
                answer(session, context, listener, 408, "request timeout", true)
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

/// Why the loop asks the session to answer by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NoBackend,
    TooManyConnections { retry_after: u64 },
    BackTimeout,
    FrontTimeout,
}

/// The backend connection is established (or taken from the pool, `reused`): start
/// forwarding. `backend_sticky_id` names the backend for sticky sessions.
pub fn connected(session: &mut Session, backend_sticky_id: &str, reused: bool) {
    let Stage::Http(http) = &mut session.stage else {
        return;
    };
    if http.phase == Phase::Connecting {
        http.phase = Phase::Forward;
    }
    // Whatever was read from another connection is no part of this one's responses.
    http.back_buf.clear();
    http.back_reused = reused;
    http.back_sticky_id = Some(backend_sticky_id.to_string());
    let exchange = &mut http.exchange;
    if let Some(name) = &exchange.sticky_name {
        if exchange.requested_sticky.as_deref() != Some(backend_sticky_id) {
            exchange.sticky_cookie = Some((name.clone(), backend_sticky_id.to_string()));
        }
    }
}

/// Whether the exchange is waiting for the response head (a back timeout is then a 504).
pub fn awaits_response(session: &Session) -> bool {
    matches!(&session.stage, Stage::Http(http) if http.phase == Phase::Forward && !http.exchange.response_head_done)
}

/// Whether the session's backend connection sits idle between requests, clean: it may serve
/// another session. Nothing may be left of the last response, in the buffer or the socket.
pub fn back_is_reusable(session: &Session) -> bool {
    let clean = session.back.as_ref().is_some_and(BackConnection::is_clean);
    matches!(&session.stage, Stage::Http(http) if clean && http.phase == Phase::Head && http.back_buf.is_empty())
}

/// Whether the session sits between requests with an idle backend connection.
///
/// A connection that has not sent its first request is idle only after
/// [`FIRST_REQUEST_GRACE`]: a client that just connected usually has its request on the way.
pub fn is_idle(session: &Session, now: Instant) -> bool {
    let Stage::Http(http) = &session.stage else {
        return false;
    };
    let waited =
        http.served > 0 || now.saturating_duration_since(session.started) >= FIRST_REQUEST_GRACE;
    http.phase == Phase::Head && http.front_buf.is_empty() && waited
}

/// How long a stopping worker waits for the first request of a connection it just accepted.
pub const FIRST_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("phase", &self.phase)
            .field("served", &self.served)
            .finish()
    }
}
