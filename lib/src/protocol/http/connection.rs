//! The HTTP/1 codec, request side: reading request heads from the front buffer, acting on the
//! routing decision (`routing`), sending the request on, writing the proxy's own answers, and
//! moving to the next request of a kept connection. The response side is in
//! [`super::response`].

use std::{fmt::Write as _, rc::Rc, time::Duration};

use sozu_command_lib::request::{Cluster, HeaderPosition, Hsts, HttpFrontend};

use crate::{
    protocol::http::{
        Http, HttpListener, SLOT,
        answers::{AnswerContext, Template},
        body::{Body, Sent, send_message},
        diagnostics::Diagnostic,
        editor::{self, RequestEdits},
        faults, h2,
        parser::{
            BodyFraming, Header, Method, ParseError, Parsed, Persistence, RequestHead,
            parse_request_head,
        },
        record::{new_request_id, record_stream},
        response,
        route::{Close, Forward, Retry},
        splice::{Relayed, SplicedBody},
        stream::{Phase, RequestSide, ResponseSide, Stream},
        upgrade,
    },
    router::Rewrite,
    session::endpoint::{Ready, Transfer},
    session::shaper::Way,
    session::{Action, BackConnection, BackUse, Context, SessionIo},
    timer::{self, TimeoutKind},
};

mod routing;

/// What a step of the session achieved.
pub(super) enum Step {
    /// Something moved; try again.
    Progress,
    /// Nothing more until the next event.
    Wait,
    /// The event loop must act.
    Do(Action),
    /// The HTTP/1 stage is over: the session goes on in the stage this names.
    Become(Next),
}

/// What the HTTP/1 stage turns into.
pub(super) enum Next {
    /// A byte pipe over the stage's buffers, after a 101.
    Pipe,
    /// HTTP/2, which took the bytes read so far as the start of its connection.
    H2(Box<h2::H2>),
}

/// Reads and parses a request head, then routes the request.
pub(super) fn read_request_head(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let mut parse = !http.front_buf.is_empty();
    if http.served == 0 {
        match h2::session::detect(http, io, listener) {
            h2::session::Detect::Http1 => {}
            h2::session::Detect::NeedMore => parse = false,
            h2::session::Detect::H2 => return h2::session::start(http, io, context, listener),
        }
    }
    listener.spares.attach(http);
    if parse {
        let parsed = parse_request_head(
            http.front_buf.data(),
            &listener.limits,
            listener.config.sozu_id_header.as_bytes(),
            &mut http.headers,
        );
        match parsed {
            Ok(Parsed::Complete(head)) => return routing::route(http, io, context, listener, head),
            Ok(Parsed::Partial) => {}
            Err(error) => return refuse(http, io, context, listener, error),
        }
    }
    if http.front_buf.is_full() {
        // The parser refuses an oversized head before the buffer fills; stay safe anyway.
        let extra = AnswerExtra {
            capacity: Some(http.front_buf.capacity()),
            ..AnswerExtra::default()
        };
        return render_answer(
            http,
            io,
            context,
            listener,
            Rendered::Page(431, "request head too large", extra),
            Close::AfterAnswer,
        );
    }
    if io.front.read_closed || !io.front.readiness.event.contains(Ready::READABLE) {
        if io.front.read_closed {
            return Step::Do(Action::Close);
        }
        lend_idle_buffers(http, listener);
        arm_head_timeout(http, io, context);
        return Step::Wait;
    }
    match io.front.read(http.front_buf.space()) {
        Transfer::Moved(count) => {
            http.front_buf.fill(count);
            if http.stream.head_started.is_none() {
                http.stream.head_started = Some(context.now);
            }
            Step::Progress
        }
        Transfer::WouldBlock => {
            lend_idle_buffers(http, listener);
            arm_head_timeout(http, io, context);
            Step::Wait
        }
        Transfer::Closed | Transfer::Error(_) => Step::Do(Action::Close),
    }
}

/// A connection waiting for a request head with nothing buffered lends its buffers' memory
/// to the pool, and its scratch space to the listener's spares, until bytes arrive, so an
/// idle keep-alive connection holds neither: the next read takes them again (pops from free
/// lists, no allocation once warm).
fn lend_idle_buffers(http: &mut Http, listener: &HttpListener) {
    if http.front_buf.is_empty() {
        http.front_buf.release();
        http.back_buf.release();
        listener.spares.lend(http);
    }
}

/// While a head is awaited: the idle timeout until its first byte, from the end of the last
/// exchange (for a new connection, the request timeout from accept when it is shorter), then
/// the request timeout from that byte. Neither moves once set: a client cannot stretch them by
/// trickling bytes, nor by sending what holds no request byte (TLS records without data).
fn arm_head_timeout(http: &mut Http, io: &mut SessionIo, context: &mut Context<'_>) {
    let key = io.timer_key(TimeoutKind::Front);
    let timeouts = *io.timeouts;
    let deadline = match http.stream.head_started {
        Some(started) => timer::later(started, timeouts.request),
        // A new connection (its TLS handshake included) has the request timeout, when shorter,
        // to send its first request: holding connections open costs a client nothing.
        None if http.served == 0 => timer::later(io.started, timeouts.front.min(timeouts.request)),
        None => timer::later(http.idle_since, timeouts.front),
    };
    if io.front_timeout.deadline() != Some(deadline) {
        io.front_timeout.set(deadline, key, context.timers);
    }
}

/// Answers a request head that cannot be parsed, and closes.
fn refuse(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
    error: ParseError,
) -> Step {
    let status = error.status();
    log::debug!("session {}: {error}: {}", io.uid, error.violation());
    let id_header = listener.config.sozu_id_header.as_bytes();
    let headers = &mut http.headers;
    let diagnostic = Diagnostic::locate(http.front_buf.data(), |prefix| {
        parse_request_head(prefix, &listener.limits, id_header, headers).is_err()
    });
    let extra = AnswerExtra {
        capacity: Some(http.front_buf.capacity()),
        diagnostic: Some(&diagnostic),
        ..AnswerExtra::default()
    };
    render_answer(
        http,
        io,
        context,
        listener,
        Rendered::Page(status, &error.violation().to_string(), extra),
        Close::AfterAnswer,
    )
}

/// Writes an answer of the proxy into `response_out` and switches to writing it.
pub(super) fn answer(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
    status: u16,
    details: &str,
    close: Close,
) -> Step {
    let extra = AnswerExtra::default();
    render_answer(
        http,
        io,
        context,
        listener,
        Rendered::Page(status, details, extra),
        close,
    )
}

/// What the proxy answers with.
#[derive(Clone, Copy)]
pub(super) enum Rendered<'a> {
    /// The listener's (or cluster's) page for a status.
    Page(u16, &'a str, AnswerExtra<'a>),
    /// A frontend's own answer: its fixed response, or its redirect template.
    Own(&'a Template, &'a str, AnswerExtra<'a>),
}

/// Renders the proxy's answer to `stream` into `out`, as an HTTP/1.1 response with the
/// request id field (and `Connection: keep-alive` for an HTTP/1.0 client whose connection
/// stays). The one place answers are rendered, for both HTTP codecs.
pub(super) fn render(
    stream: &mut Stream,
    listener: &HttpListener,
    rendered: Rendered<'_>,
    closes: bool,
    out: &mut Vec<u8>,
) {
    let (status, details, extra) = match rendered {
        Rendered::Page(status, details, extra) => (status, details, extra),
        Rendered::Own(template, details, extra) => (template.status, details, extra),
    };
    stream.status = Some(status);
    stream.answered_by_proxy = true;
    let answer_context = AnswerContext {
        request_id: &stream.request_id,
        cluster_id: stream.cluster_id(),
        backend_id: None,
        host: &stream.host,
        path: &stream.path,
        details,
        location: extra.location,
        www_authenticate: extra.www_authenticate,
        retry_after: extra.retry_after,
        duration: extra.duration,
        capacity: extra.capacity,
        diagnostic: extra.diagnostic,
    };
    let mut extra_fields = String::new();
    if !listener.config.sozu_id_header.is_empty() {
        let _ = write!(
            extra_fields,
            "{}: {}\r\n",
            listener.config.sozu_id_header, stream.request_id
        );
    }
    if !closes && stream.is_http10() {
        extra_fields.push_str(KEEP_ALIVE_FIELD);
    }
    out.clear();
    match rendered {
        Rendered::Page(..) => {
            listener
                .answers
                .render(status, &answer_context, closes, &extra_fields, out);
        }
        Rendered::Own(template, ..) => template.render(&answer_context, closes, &extra_fields, out),
    }
}

/// The one place answers of the proxy are written into `response_out`.
pub(super) fn render_answer(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
    rendered: Rendered<'_>,
    close: Close,
) -> Step {
    let stream = &mut http.stream;
    if stream.request_id.is_empty() {
        new_request_id(stream, io.uid, http.served);
    }
    let closes = close == Close::AfterAnswer;
    render(stream, listener, rendered, closes, &mut http.response_out);
    http.response_out_sent = 0;
    if stream.method == Some(Method::Head) {
        // A response to HEAD has no body, only the Content-Length a GET would get (RFC 9110
        // §9.3.2); body bytes would be read as the next response on a kept connection. The
        // rendered head holds no empty line before its end: values are stripped of CR and LF.
        if let Some(end) = memchr::memmem::find(&http.response_out, b"\r\n\r\n") {
            http.response_out.truncate(end + 4);
        }
    }
    http.stream.phase = Phase::Answering(close);
    // A request forwarded before is over for its backend: the proxy answers it.
    if let Some(back) = io.backs.get_mut(SLOT) {
        back.request_ended();
    }
    let after = io.timeouts.front;
    io.touch_front(after, context.now, context.timers);
    Step::Progress
}

/// What tells an HTTP/1.0 client that its connection stays open: without it, the client
/// takes the connection as closed after the response (RFC 9112 §C.2.2).
const KEEP_ALIVE_FIELD: &str = "Connection: keep-alive\r\n";

/// Extra values of an answer.
#[derive(Default, Clone, Copy)]
pub(super) struct AnswerExtra<'a> {
    pub location: Option<&'a str>,
    pub www_authenticate: Option<&'a str>,
    pub retry_after: Option<u64>,
    pub duration: Option<Duration>,
    pub capacity: Option<usize>,
    pub diagnostic: Option<&'a Diagnostic>,
}

/// Writes the proxy's answer; then closes or goes on with the next request.
pub(super) fn write_answer(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    close: Close,
) -> Step {
    if http.response_out_sent < http.response_out.len() {
        return write_response_out(http, io, context);
    }
    record_stream(http, io, context);
    if close == Close::AfterAnswer {
        io.front.shutdown_write();
        return Step::Do(Action::Close);
    }
    finish_stream(http, io, context)
}

/// Ends a stream on a connection that stays open: the next request may be in the buffer.
pub(super) fn finish_stream(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
) -> Step {
    http.served += 1;
    http.idle_since = context.now;
    http.request_out.clear();
    http.request_out_sent = 0;
    http.response_out.clear();
    http.response_out_sent = 0;
    let back_persistence = http.stream.backend;
    let had_backend = http.stream.cluster_id().is_some();
    http.stream.next();
    // The faults of a request are its own; their room stays for the next one.
    if let Some(shaper) = io.shaper.as_deref_mut() {
        shaper.clear();
    }
    // A kept backend connection idles with the session for one back timeout, then goes to
    // the worker's pool (`Http::release_idle_back`): a client that idles holds none. The
    // deadline only moves later than the one the exchange set: no timer is queued.
    let back_after = io.timeouts.back;
    io.touch_back(SLOT, back_after, context.now, context.timers);
    let after = io.timeouts.front;
    io.touch_front(after, context.now, context.timers);
    if had_backend {
        let action = match back_persistence {
            Persistence::Close => Action::DropBack(SLOT),
            Persistence::KeepAlive => Action::ExchangeDone,
        };
        return Step::Do(action);
    }
    Step::Progress
}

/// A parsed request head and the bytes its spans point into.
#[derive(Clone, Copy)]
pub(super) struct Message<'a> {
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub fields: &'a [Header],
}

/// What a routing decision to forward says about the request's way to the backend.
#[derive(Clone, Copy)]
pub(super) struct Forwarded<'a> {
    pub cluster: &'a Cluster,
    pub frontend: &'a HttpFrontend,
    pub rewrite: Option<&'a Rewrite>,
    pub sticky_cookie: Option<&'a str>,
    pub sticky_id: Option<&'a str>,
    pub hsts: Option<&'a Hsts>,
}

/// Prepares `stream` to be forwarded (its cluster, the response rules of its frontend, HSTS,
/// the sticky cookie's name and requested backend), and writes the request head for the
/// backend into `out`, edited as the listener and the frontend say. For both HTTP codecs.
pub(super) fn prepare_forward(
    stream: &mut Stream,
    listener: &HttpListener,
    client: std::net::SocketAddr,
    message: Message<'_>,
    forwarded: Forwarded<'_>,
    upgrade: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    let Forwarded {
        cluster,
        frontend,
        rewrite,
        sticky_cookie,
        sticky_id,
        hsts,
    } = forwarded;
    stream.cluster_id.clear();
    stream.cluster_id.push_str(&cluster.cluster_id);
    let edits = RequestEdits {
        client,
        listener: listener.public_address(),
        is_tls: listener.tls.is_some(),
        request_id_header: &listener.config.sozu_id_header,
        request_id: &stream.request_id,
        send_x_real_ip: listener.config.send_x_real_ip,
        elide_x_real_ip: listener.config.elide_x_real_ip,
        rewrite_host: rewrite.and_then(|r| r.host.as_deref()),
        rewrite_port: rewrite.and_then(|r| r.port),
        rewrite_path: rewrite.and_then(|r| r.path.as_deref()),
        rules: &frontend.headers,
        sticky_cookie,
        upgrade,
    };
    editor::write_request_head(message.buf, message.head, message.fields, &edits, out);
    stream.response_rules = frontend
        .headers
        .iter()
        .filter(|rule| rule.position != HeaderPosition::Request)
        .cloned()
        .collect();
    stream.hsts = hsts.cloned();
    stream.sticky_name = sticky_cookie.map(str::to_string);
    stream.requested_sticky = sticky_id.map(str::to_string);
}

/// Prepares the head for the backend now, while the request bytes are here, and asks for a
/// backend connection, unless the attached one serves the same cluster (and backend, for a
/// sticky request). `back` is the attached backend connection and the cluster it was opened
/// for.
fn forward_request(
    http: &mut Http,
    back: Option<(&BackConnection, Option<&str>)>,
    client: std::net::SocketAddr,
    listener: &HttpListener,
    head: &RequestHead,
    forward: Forward<'_>,
) -> Step {
    let Forward {
        cluster,
        frontend,
        rewrite,
        sticky_cookie,
        sticky_id,
        hsts,
        retry,
    } = forward;
    let buf = http.front_buf.data();
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
    let stream = &mut http.stream;
    let message = Message {
        buf,
        head,
        fields: &http.headers,
    };
    let forwarded = Forwarded {
        cluster,
        frontend,
        rewrite: rewrite.as_ref(),
        sticky_cookie,
        sticky_id: sticky_id.as_deref(),
        hsts,
    };
    prepare_forward(
        stream,
        listener,
        client,
        message,
        forwarded,
        upgrade,
        &mut http.request_out,
    );
    http.request_out_sent = 0;
    stream.offers_upgrade = upgrade.is_some();
    stream.request = RequestSide::Sending(Body::new(head.body, &listener.limits));
    stream.retry = retry;
    http.front_buf.consume(head.head_len);
    let same_backend = back.is_some_and(|(back, cluster)| {
        back.is_clean_as_reported() && cluster == Some(stream.cluster_id.as_str())
    }) && http.back_buf.is_empty()
        && (sticky_id.is_none() || sticky_id == http.back_sticky_id);
    if same_backend {
        stream.phase = Phase::Forwarding;
        http.back_use = BackUse::Reused;
        if let (Some(name), Some(backend_sticky)) = (&stream.sticky_name, &http.back_sticky_id) {
            if stream.requested_sticky.as_ref() != Some(backend_sticky) {
                stream.sticky_cookie = Some((name.clone(), backend_sticky.clone()));
            }
        }
        return Step::Progress;
    }
    stream.phase = Phase::Connecting;
    http.back_use = BackUse::New;
    Step::Do(Action::Connect {
        slot: SLOT,
        cluster_id: Rc::from(stream.cluster_id.as_str()),
        sticky_id,
    })
}

/// Sends the request to the backend and relays the response, both ways at once.
pub(super) fn forward(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    if let Some(step) = faults::backend_chosen(http, io, context, listener) {
        return step;
    }
    let Some(back) = io.backs.get_mut(SLOT) else {
        return Step::Do(Action::Close);
    };
    back.request_started();
    let mut progress = false;
    if http.request_splice.is_some() {
        match relay_spliced_request(http, io, context, listener) {
            Ok(moved) => progress = moved,
            Err(step) => return step,
        }
    }
    let shaped = faults::shapes(io);
    let Some(back) = io.backs.get_mut(SLOT) else {
        return Step::Do(Action::Close);
    };
    let front = &mut io.front;
    let back = &mut back.endpoint;
    let mut front_active = false;
    let mut back_active = false;

    // Client → backend: the head, then body bytes as the framing allows.
    if http.request_splice.is_none()
        && let RequestSide::Sending(body) = &mut http.stream.request
    {
        let limit = match faults::budget(
            io.shaper.as_deref_mut(),
            front,
            Way::ToBackend,
            context.now,
            || {
                http.request_out.len().saturating_sub(http.request_out_sent)
                    + http.front_buf.data().len()
            },
        ) {
            Ok(limit) => limit,
            Err(action) => return Step::Do(action),
        };
        match send_message(
            back,
            &http.request_out,
            &mut http.request_out_sent,
            body,
            &mut http.front_buf,
            limit,
        ) {
            Sent::Nothing => {}
            Sent::Moved { head, body } => {
                if let Some(shaper) = io.shaper.as_deref_mut() {
                    shaper.sent(Way::ToBackend, context.now, head + body);
                }
                if http.request_out_sent == http.request_out.len()
                    && http.stream.request_sent_at.is_none()
                {
                    http.stream.request_sent_at = Some(context.now);
                }
                http.stream.bytes_in += body as u64;
                http.stream.request_sent += (head + body) as u64;
                http.stream.used_backend = true;
                progress = true;
                back_active = true;
            }
            Sent::InvalidBody => {
                return answer(
                    http,
                    io,
                    context,
                    listener,
                    400,
                    "invalid chunked body",
                    Close::AfterAnswer,
                );
            }
            Sent::Failed => return backend_failed(http, io, context, listener),
        }
        let RequestSide::Sending(body) = &mut http.stream.request else {
            return Step::Do(Action::Close);
        };
        if http.request_out_sent == http.request_out.len() && http.front_buf.is_empty() && !shaped {
            // Every body byte read so far went out: the rest may go socket to socket.
            http.request_splice = SplicedBody::start(context.body_splice, body, front, back);
            progress |= http.request_splice.is_some();
        }
        if http.request_splice.is_none()
            && !body.is_done()
            && !http.front_buf.is_full()
            && !front.read_closed
            && front.readiness.event.contains(Ready::READABLE)
        {
            match front.read(http.front_buf.space()) {
                Transfer::Moved(count) => {
                    http.front_buf.fill(count);
                    if let Some(shaper) = io.shaper.as_deref_mut() {
                        shaper.received(Way::ToBackend, context.now, count);
                    }
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
            http.stream.request = RequestSide::Sent;
            progress = true;
        }
    }

    // Backend → client.
    let step = if http.stream.has_response_head() {
        response::relay_response_body(http, io, context)
    } else {
        response::read_response_head(http, io, context, listener)
    };
    // Each variant by name: a catch-all binding would make the other arms drop `step`
    // through a call to its drop glue.
    match step {
        Step::Progress => progress = true,
        Step::Wait => {}
        Step::Do(action) => return Step::Do(action),
        Step::Become(next) => return Step::Become(next),
    }
    if front_active {
        let after = io.timeouts.front;
        io.touch_front(after, context.now, context.timers);
    }
    if back_active {
        let after = io.timeouts.back;
        io.touch_back(SLOT, after, context.now, context.timers);
    }
    if progress { Step::Progress } else { Step::Wait }
}

/// Moves the rest of the request body through its kernel pipe: whether bytes moved, or the
/// step that ends the exchange.
fn relay_spliced_request(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Result<bool, Step> {
    let (Some(spliced), Some(back)) = (http.request_splice.as_mut(), io.backs.get_mut(SLOT)) else {
        return Err(Step::Do(Action::Close));
    };
    let (filled, drained) = match spliced.relay(&mut io.front, &mut back.endpoint) {
        Relayed::Moved { filled, drained } => (filled, drained),
        Relayed::Nothing => return Ok(false),
        // The client ended its stream in the middle of a request body.
        Relayed::Cut | Relayed::SourceFailed => return Err(Step::Do(Action::Close)),
        Relayed::SinkFailed => return Err(backend_failed(http, io, context, listener)),
    };
    if spliced.is_done() {
        http.request_splice = None;
        http.stream.request = RequestSide::Sent;
    }
    let timeouts = *io.timeouts;
    if filled > 0 {
        io.touch_front(timeouts.front, context.now, context.timers);
    }
    if drained > 0 {
        http.stream.bytes_in += drained as u64;
        http.stream.request_sent += drained as u64;
        context.recorder.metrics.spliced(drained);
        io.touch_back(SLOT, timeouts.back, context.now, context.timers);
    }
    Ok(true)
}

/// The backend connection failed while the request was being sent or the response awaited.
pub(super) fn backend_failed(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let stream = &mut http.stream;
    if stream.has_response_head() || http.response_out_sent < http.response_out.len() {
        // Part of the final response went out, or an interim one is on its way: the client
        // cannot be told more than a cut.
        return Step::Do(Action::Close);
    }
    if matches!(stream.response, ResponseSide::ReadingHead) {
        // The backend closed inside a head: no response, as if it had sent nothing.
        return answer(
            http,
            io,
            context,
            listener,
            502,
            "the backend closed the connection inside its response head",
            Close::AfterAnswer,
        );
    }
    if http.back_use == BackUse::Reused && stream.retry == Retry::Once {
        // A kept connection the backend closed meanwhile (RFC 9112 §9.3.1): send the request
        // again on a new connection, once.
        http.back_use = BackUse::New;
        stream.retry = Retry::Never;
        http.request_out_sent = 0;
        stream.request = RequestSide::Sending(Body::Done);
        stream.phase = Phase::Connecting;
        return Step::Do(Action::Reconnect {
            slot: SLOT,
            // The kept connection served this cluster: its slot holds the shared id.
            cluster_id: io
                .backs
                .shared_cluster_id(SLOT)
                .filter(|id| ***id == *stream.cluster_id)
                .map_or_else(|| Rc::from(stream.cluster_id.as_str()), Rc::clone),
        });
    }
    answer(
        http,
        io,
        context,
        listener,
        502,
        "the backend closed the connection before answering",
        Close::AfterAnswer,
    )
}

/// Writes pending bytes of `response_out` to the client.
pub(super) fn write_response_out(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
) -> Step {
    if !io.front.readiness.event.contains(Ready::WRITABLE) {
        return Step::Wait;
    }
    let pending = http
        .response_out
        .get(http.response_out_sent..)
        .unwrap_or_default();
    match io.front.write(pending) {
        Transfer::Moved(count) => {
            http.response_out_sent += count;
            http.stream.bytes_out += count as u64;
            let after = io.timeouts.front;
            io.touch_front(after, context.now, context.timers);
            Step::Progress
        }
        Transfer::WouldBlock => Step::Wait,
        Transfer::Closed | Transfer::Error(_) => Step::Do(Action::Close),
    }
}
