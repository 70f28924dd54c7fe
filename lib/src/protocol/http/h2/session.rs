//! The HTTP/2 stage of a session: the [`Connection`] codec over the client connection, each
//! stream an `Exchange` routed on its own (`route::decide`, as HTTP/1.1 requests) and
//! forwarded to an HTTP/1.1 backend on a backend connection of its own: a slot of the
//! session, taken from and given back to the idle pool like HTTP/1's.
//!
//! A connection starts here from the HTTP/1 stage, before its first request: on TLS when
//! ALPN chose `h2` (or chose nothing on a listener with `disable_http11`), in cleartext when
//! an `h2c` listener reads the connection preface.
//!
//! Backend connections are opened one at a time (the loop's connect, retry and hold logic is
//! per session); the streams routed meanwhile wait their turn in order, while the others go
//! on. Frames for the client go into one output buffer; frames are read from the client, and
//! data from backends, only while that buffer holds less than `OUT_HIGH_WATER` (64 KiB), so a client
//! that does not read holds its own streams back and nothing grows without bound. Within
//! that, each stream moves at most a quantum per pass, so one stream never starves the others,
//! and a stream's flow-control windows only hold that stream back.
//!
//! `events`: what the loop tells the session besides readiness (timeouts, connects, soft
//! stop, close).

use std::{collections::VecDeque, time::Instant};

use super::{
    Connection, ErrorCode, Event, Progress, StreamId,
    exchange::{Exchange, Failure, State},
    frame::PREFACE,
    headers::Request,
};
use crate::{
    pool::Buffer,
    protocol::http::{
        HttpListener,
        connection::{AnswerExtra, Extra, Rendered as Answer, Step},
        parser::Persistence,
        record::{self, new_request_id},
        route::{self, RouteDecision},
        stream::Stream,
    },
    session::{
        Action, BackConnection, BackUse, Context, Session, Stage,
        backs::Slot,
        endpoint::{Ready, Transfer},
    },
    timer::{TimeoutKind, TimerKey},
};

mod events;

pub(crate) use events::{
    answer_failure, awaits_response, back_timeout, connected, front_timeout, is_back_reusable,
    record_unfinished, stop,
};

/// Frames waiting for the client beyond which nothing more is read (from the client or from
/// backends) until the client takes some.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Which protocol a new connection speaks, from what is known before its first request.
pub(in crate::protocol::http) enum Detect {
    Http1,
    /// The bytes so far may be the start of the HTTP/2 preface: read more.
    NeedMore,
    H2,
}

/// Whether the client connection speaks HTTP/2: ALPN `h2` on TLS (or no ALPN on a listener
/// with `disable_http11`), the preface on a cleartext listener with `h2c`.
pub(in crate::protocol::http) fn detect(session: &Session, listener: &HttpListener) -> Detect {
    let Stage::Http(http) = &session.stage else {
        return Detect::Http1;
    };
    let input = http.front_buf.data();
    if let Some(tls) = session.front.tls.as_ref() {
        if tls.is_handshaking() {
            return Detect::Http1;
        }
        let is_h2 = match tls.alpn_protocol() {
            Some(protocol) => protocol == b"h2",
            None => listener.tls.as_ref().is_some_and(|tls| tls.disable_http11),
        };
        return if is_h2 { Detect::H2 } else { Detect::Http1 };
    }
    if !listener.config.h2c || input.is_empty() {
        Detect::Http1
    } else if input.starts_with(PREFACE) {
        Detect::H2
    } else if PREFACE.starts_with(input) {
        Detect::NeedMore
    } else {
        Detect::Http1
    }
}

/// A backend connection slot being given back.
#[derive(Debug, Clone, Copy)]
struct Released {
    slot: Slot,
    /// Clean, between requests: it may go to the idle pool.
    reusable: bool,
}

/// The HTTP/2 stage: the client's bytes, and what reads them.
pub struct H2 {
    input: Buffer,
    mux: Mux,
}

/// The codec, the frames for the client, the streams.
struct Mux {
    codec: Connection,
    out: Vec<u8>,
    out_sent: usize,
    exchanges: Vec<Exchange>,
    /// Streams routed to a cluster, waiting to connect, oldest first.
    queue: VecDeque<StreamId>,
    connecting: Option<StreamId>,
    released: Vec<Released>,
    /// Streams received, for request ids.
    requests: u64,
    /// The TLS server name the client sent, for routing.
    server_name: Option<String>,
    /// When the connection last had no stream.
    idle_since: Instant,
    /// The connection ends: its GOAWAY goes out, then it closes.
    closing: bool,
    /// Why the proxy ended the connection, when it did, for the metrics.
    ended: Option<super::Cause>,
    expired: Vec<StreamId>,
}

/// Replaces the HTTP/1 stage of a connection that speaks HTTP/2; the bytes it read so far
/// are the start of the HTTP/2 connection.
pub(in crate::protocol::http) fn start(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let Stage::Http(http) = std::mem::replace(&mut session.stage, Stage::Closed) else {
        return Step::Do(Action::Close);
    };
    let config = listener.config.h2;
    let idle = config.stream_idle_timeout.unwrap_or_else(|| {
        session
            .timeouts
            .back
            .max(std::time::Duration::from_secs(30))
    });
    let mut codec = Connection::new(
        config,
        idle,
        listener.config.sozu_id_header.as_bytes(),
        context.now,
    );
    let mut out = Vec::with_capacity(1024);
    codec.start(&mut out);
    let server_name = session
        .front
        .tls
        .as_ref()
        .and_then(|tls| tls.server_name())
        .map(str::to_string);
    session.front_timeout.cancel();
    session.stage = Stage::H2(Box::new(H2 {
        input: http.front_buf,
        mux: Mux {
            codec,
            out,
            out_sent: 0,
            exchanges: Vec::new(),
            queue: VecDeque::new(),
            connecting: None,
            released: Vec::new(),
            requests: 0,
            server_name,
            idle_since: context.now,
            closing: false,
            ended: None,
            expired: Vec::new(),
        },
    }));
    Step::Do(Action::Upgraded)
}

/// Drives an HTTP/2 session until it would block.
pub(crate) fn ready(session: &mut Session, context: &mut Context<'_>) -> Action {
    let Some(listener) = context.listeners.get(&session.listener_address) else {
        return Action::Close;
    };
    for _ in 0..1024 {
        match step(session, context, listener) {
            Step::Progress => continue,
            Step::Wait => {
                arm_front_timeout(session, context);
                return Action::Wait;
            }
            Step::Do(action) => return action,
        }
    }
    Action::Yield
}

/// The parts of the session the stage reads.
struct Env {
    key: usize,
    uid: u64,
    origin: record::Origin,
}

fn step(session: &mut Session, context: &mut Context<'_>, listener: &HttpListener) -> Step {
    let env = Env {
        key: session.key,
        uid: session.uid,
        origin: record::Origin::of_h2(session),
    };
    let timeouts = session.timeouts;
    let Session {
        stage,
        front,
        backs,
        ..
    } = session;
    let Stage::H2(h2) = stage else {
        return Step::Do(Action::Close);
    };
    // Slots given back are gone from the session once the loop took their connection. A
    // connection no stream owns (its stream ended while it was being opened) is given back.
    h2.mux
        .released
        .retain(|released| backs.get(released.slot).is_some());
    for (slot, _) in backs.iter() {
        let owned = h2.mux.exchanges.iter().any(|ex| ex.slot == Some(slot));
        if !owned && !h2.mux.released.iter().any(|released| released.slot == slot) {
            h2.mux.released.push(Released {
                slot,
                reusable: false,
            });
        }
    }
    if let Some(released) = h2.mux.released.first() {
        return Step::Do(Action::DropBack(released.slot));
    }
    let mut progress = false;

    // Frames to the client.
    if h2.mux.out_sent < h2.mux.out.len() && front.readiness.event.contains(Ready::WRITABLE) {
        match front.write(h2.mux.out.get(h2.mux.out_sent..).unwrap_or_default()) {
            Transfer::Moved(count) => {
                h2.mux.out_sent += count;
                if h2.mux.out_sent >= h2.mux.out.len() {
                    h2.mux.out.clear();
                    h2.mux.out_sent = 0;
                }
                progress = true;
            }
            Transfer::WouldBlock => {}
            Transfer::Closed | Transfer::Error(_) => return Step::Do(Action::Close),
        }
    }
    let flushed = h2.mux.out_sent >= h2.mux.out.len();
    if h2.mux.closing || (h2.mux.codec.is_finished() && h2.mux.exchanges.is_empty()) {
        if flushed {
            front.shutdown_write();
            return Step::Do(Action::Close);
        }
        return if progress { Step::Progress } else { Step::Wait };
    }

    // Frames from the client.
    let has_room = h2.mux.backlog() < OUT_HIGH_WATER;
    if has_room
        && !h2.input.is_full()
        && !front.read_closed
        && front.readiness.event.contains(Ready::READABLE)
    {
        match front.read(h2.input.space()) {
            Transfer::Moved(count) => {
                h2.input.fill(count);
                progress = true;
            }
            Transfer::WouldBlock => {}
            Transfer::Closed | Transfer::Error(_) => return Step::Do(Action::Close),
        }
    }
    if has_room && h2.mux.receive(&mut h2.input, &env, listener, context) {
        progress = true;
    }
    if h2.mux.closing {
        return Step::Progress;
    }

    // Streams and their backend connections.
    for index in 0..h2.mux.exchanges.len() {
        if h2.mux.backlog() >= OUT_HIGH_WATER {
            break;
        }
        if h2
            .mux
            .exchange_step(index, backs, &env, &timeouts, listener, context)
        {
            progress = true;
        }
    }
    if let Some(step) = h2.mux.finish_exchanges(backs, &env, context) {
        return step;
    }
    if let Some(action) = h2.mux.next_connect(backs) {
        return Step::Do(action);
    }
    if progress { Step::Progress } else { Step::Wait }
}

impl Mux {
    /// Frame bytes not yet written to the client.
    fn backlog(&self) -> usize {
        self.out.len().saturating_sub(self.out_sent)
    }

    /// Reads the frames in the input; returns whether any was read.
    fn receive(
        &mut self,
        input_buf: &mut Buffer,
        env: &Env,
        listener: &HttpListener,
        context: &mut Context<'_>,
    ) -> bool {
        let mut progress = false;
        while !input_buf.is_empty() && self.backlog() < OUT_HIGH_WATER {
            let input = input_buf.data();
            match self.codec.receive(input, context.now, &mut self.out) {
                Ok(Progress::NeedMore) => {
                    if input_buf.is_full() {
                        // A frame larger than the buffer: the buffer size is below the
                        // minimum HTTP/2 frame size plus its header.
                        log::warn!("session {}: HTTP/2 frame larger than the buffer", env.uid);
                        self.closing = true;
                    }
                    break;
                }
                Ok(Progress::Consumed { len, event }) => {
                    if let Some(event) = event {
                        self.on_event(event, input, env, listener, context);
                    }
                    input_buf.consume(len);
                    progress = true;
                }
                Err(error) => {
                    log::debug!("session {}: HTTP/2 connection error: {error:?}", env.uid);
                    self.closing = true;
                    self.ended = Some(error.cause);
                    return true;
                }
            }
        }
        progress
    }

    fn on_event(
        &mut self,
        event: Event,
        input: &[u8],
        env: &Env,
        listener: &HttpListener,
        context: &mut Context<'_>,
    ) {
        match event {
            Event::Request {
                stream,
                request,
                end_stream,
            } => self.on_request(stream, &request, end_stream, env, listener, context),
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let bytes = input.get(data).unwrap_or_default();
                let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                match self.exchange_mut(stream).filter(|ex| ex.takes_body()) {
                    Some(exchange) => exchange.push_body(bytes, end_stream),
                    // Nobody reads this body: its credit goes back at once.
                    None => self.codec.release(stream, len, &mut self.out),
                }
            }
            Event::Trailers { stream, fields } => {
                if let Some(exchange) = self.exchange_mut(stream).filter(|ex| ex.takes_body()) {
                    exchange.push_trailers(&fields);
                }
            }
            Event::Reset { stream, .. } | Event::Aborted { stream, .. } => {
                if let Some(index) = self.exchanges.iter().position(|ex| ex.id == stream) {
                    let mut exchange = self.exchanges.swap_remove(index);
                    exchange.backend = Persistence::Close;
                    self.end_exchange(exchange, env, context);
                }
            }
            Event::GoAway { .. } => {}
        }
    }

    fn exchange_mut(&mut self, id: StreamId) -> Option<&mut Exchange> {
        self.exchanges.iter_mut().find(|exchange| exchange.id == id)
    }

    /// Routes a new request and starts its exchange: queued for a backend, or answered.
    fn on_request(
        &mut self,
        id: StreamId,
        request: &Request,
        end_stream: bool,
        env: &Env,
        listener: &HttpListener,
        context: &mut Context<'_>,
    ) {
        self.requests = self.requests.saturating_add(1);
        let mut stream = Stream::default();
        new_request_id(&mut stream, env.uid, self.requests);
        let buf = request.bytes.as_slice();
        let head = &request.head;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        stream.host = head
            .authority
            .map(|authority| text(authority.span.slice(buf)))
            .unwrap_or_default();
        stream.path = text(head.path.slice(buf));
        stream.method = Some(head.method);
        stream.method_text = text(head.method_span.slice(buf));
        if let Some(agent) = request
            .fields
            .iter()
            .find(|field| field.name.slice(buf).eq_ignore_ascii_case(b"user-agent"))
        {
            stream.user_agent = text(agent.value.slice(buf));
        }
        stream.routed_at = Some(context.now);
        let mut exchange = Exchange::new(id, stream);
        let route_request = route::Request {
            buf,
            head,
            headers: &request.fields,
            server_name: self.server_name.as_deref(),
        };
        let decision = route::decide(
            listener,
            context.clusters,
            context.authorized,
            route_request,
        );
        let (cluster, status, details, extra, own) = match decision {
            RouteDecision::Forward(forward) => {
                exchange.forward(request, forward, listener, env.origin.client, end_stream);
                self.queue.push_back(id);
                self.exchanges.push(exchange);
                return;
            }
            RouteDecision::Fixed { answer, .. } => {
                self.answer_new(
                    exchange,
                    listener,
                    Answer::Own(answer, "", AnswerExtra::default()),
                    env,
                    context,
                );
                return;
            }
            RouteDecision::Answer {
                status,
                details,
                cluster,
                ..
            } => (cluster, status, details, Extra::None, None),
            RouteDecision::Redirect {
                status,
                location,
                template,
                details,
                cluster,
                ..
            } => (
                cluster,
                status,
                details,
                Extra::Location(location),
                template,
            ),
            RouteDecision::Unauthorized {
                realm,
                details,
                cluster,
                ..
            } => (cluster, 401, details, Extra::Realm(realm), None),
        };
        if let Some(cluster) = cluster {
            exchange.stream.cluster_id.push_str(cluster);
        }
        let extra = extra.answer_extra();
        let answer = match own {
            Some(template) => Answer::Own(template, details, extra),
            None => Answer::Page(status, details, extra),
        };
        self.answer_new(exchange, listener, answer, env, context);
    }

    /// Answers a request the proxy does not forward; its body, if any, is dropped.
    fn answer_new(
        &mut self,
        mut exchange: Exchange,
        listener: &HttpListener,
        answer: Answer<'_>,
        env: &Env,
        context: &mut Context<'_>,
    ) {
        let answered = exchange.answer(
            &mut self.codec,
            listener,
            answer,
            context.now,
            &mut self.out,
        );
        if answered.is_err() || exchange.is_done() {
            self.end_exchange(exchange, env, context);
        } else {
            self.exchanges.push(exchange);
        }
    }

    /// Moves one exchange on: its request to the backend, the response to the client.
    /// Returns whether anything moved.
    fn exchange_step(
        &mut self,
        index: usize,
        backs: &mut crate::session::backs::Backs,
        env: &Env,
        timeouts: &sozu_command_lib::request::Timeouts,
        listener: &HttpListener,
        context: &mut Context<'_>,
    ) -> bool {
        let now = context.now;
        let Some(exchange) = self.exchanges.get_mut(index) else {
            return false;
        };
        let mut progress = false;
        let result = match exchange.state {
            State::Forwarding => {
                let Some(slot) = exchange.slot else {
                    return false;
                };
                let Some(back) = backs.get_mut(slot) else {
                    return false;
                };
                // Counted until the slot is given back (its lease then ends the request).
                back.request_started();
                let key = TimerKey {
                    session: env.key,
                    uid: env.uid,
                    kind: TimeoutKind::Back(slot),
                };
                if exchange.back_buf.is_none() {
                    exchange.back_buf = Some(context.pool.checkout());
                }
                let moved = forward(
                    exchange,
                    back,
                    &mut self.codec,
                    listener,
                    now,
                    &mut self.out,
                    &mut progress,
                );
                if moved == Ok(true) {
                    back.timeout
                        .set_after(now, timeouts.back, key, context.timers);
                }
                moved.map(|_| ())
            }
            State::Answering => exchange
                .send_body(&mut self.codec, now, &mut self.out)
                .map(|moved| progress |= moved),
            State::Queued | State::Connecting => Ok(()),
        };
        match result {
            Ok(()) => progress,
            Err(failure) => {
                if !(matches!(failure, Failure::Answer(..)) && self.retry(index)) {
                    self.fail(index, failure, listener, now);
                }
                true
            }
        }
    }

    /// Queues an exchange whose reused backend connection failed again, first in line for
    /// a new connection, when it may be sent again (see [`Exchange::retry`]).
    fn retry(&mut self, index: usize) -> bool {
        let Some(exchange) = self.exchanges.get_mut(index) else {
            return false;
        };
        if !exchange.retry() {
            return false;
        }
        if let Some(slot) = exchange.slot.take() {
            self.released.push(Released {
                slot,
                reusable: false,
            });
        }
        self.queue.push_front(exchange.id);
        true
    }

    /// An exchange failed: answered when nothing of its response went out, else reset. Its
    /// backend connection cannot serve again.
    fn fail(&mut self, index: usize, failure: Failure, listener: &HttpListener, now: Instant) {
        let Some(exchange) = self.exchanges.get_mut(index) else {
            return;
        };
        exchange.backend = Persistence::Close;
        exchange.release_credit(&mut self.codec, &mut self.out);
        let answered = match failure {
            Failure::Answer(status, details) if exchange.can_answer() => {
                exchange.state = State::Answering;
                let answer = Answer::Page(status, details, AnswerExtra::default());
                exchange
                    .answer(&mut self.codec, listener, answer, now, &mut self.out)
                    .is_ok()
            }
            Failure::Answer(..) | Failure::Reset => false,
        };
        if !answered {
            exchange.reset(&mut self.codec, ErrorCode::InternalError, &mut self.out);
            exchange.mark_done();
        }
        if let Some(slot) = exchange.slot.take() {
            self.released.push(Released {
                slot,
                reusable: false,
            });
        }
    }

    /// Takes out the exchanges whose response went out whole (recorded, their slot given
    /// back); asks the loop to take the first slot given back.
    fn finish_exchanges(
        &mut self,
        backs: &crate::session::backs::Backs,
        env: &Env,
        context: &mut Context<'_>,
    ) -> Option<Step> {
        let mut index = 0;
        let mut removed = false;
        while let Some(exchange) = self.exchanges.get(index) {
            if !exchange.is_done() {
                index += 1;
                continue;
            }
            removed = true;
            let mut exchange = self.exchanges.swap_remove(index);
            if !exchange.request_done() {
                // The response is complete before the request: the client may stop sending
                // (RFC 9113 §8.1).
                exchange.release_credit(&mut self.codec, &mut self.out);
                self.codec
                    .reset(exchange.id, ErrorCode::NoError, &mut self.out);
            }
            let back = exchange.slot.and_then(|slot| backs.get(slot));
            let reused = exchange.back_use == BackUse::Reused;
            record::record(
                &mut exchange.stream,
                &env.origin,
                back,
                reused,
                &[],
                context,
            );
            if let Some(slot) = exchange.slot.take() {
                self.released.push(Released {
                    slot,
                    reusable: exchange.leaves_backend_clean(),
                });
            }
        }
        if removed && self.exchanges.is_empty() {
            self.idle_since = context.now;
        }
        self.released
            .first()
            .map(|released| Step::Do(Action::DropBack(released.slot)))
    }

    /// Ends an exchange that will send nothing more: recorded, its slot given back unclean.
    fn end_exchange(&mut self, mut exchange: Exchange, env: &Env, context: &mut Context<'_>) {
        exchange.release_credit(&mut self.codec, &mut self.out);
        self.queue.retain(|&id| id != exchange.id);
        if self.connecting == Some(exchange.id) {
            self.connecting = None;
        }
        record::record(&mut exchange.stream, &env.origin, None, false, &[], context);
        if let Some(slot) = exchange.slot.take() {
            self.released.push(Released {
                slot,
                reusable: false,
            });
        }
        if self.exchanges.is_empty() {
            self.idle_since = context.now;
        }
    }

    /// Starts the next connect, one at a time: a free slot for the oldest queued stream.
    fn next_connect(&mut self, backs: &crate::session::backs::Backs) -> Option<Action> {
        if self.connecting.is_some() {
            return None;
        }
        let id = *self.queue.front()?;
        let slot = (0..=u8::MAX).map(Slot).find(|&slot| {
            backs.get(slot).is_none()
                && !self.exchanges.iter().any(|ex| ex.slot == Some(slot))
                && !self.released.iter().any(|released| released.slot == slot)
        })?;
        self.queue.pop_front();
        let exchange = self.exchange_mut(id)?;
        exchange.slot = Some(slot);
        exchange.state = State::Connecting;
        let cluster_id = exchange.stream.cluster_id.clone();
        let sticky_id = exchange.sticky_id.clone();
        self.connecting = Some(id);
        Some(Action::Connect {
            slot,
            cluster_id,
            sticky_id,
        })
    }
}

/// Moves an exchange's bytes over its backend connection: the request out, the response in
/// and on to the client. Returns whether the backend connection moved.
fn forward(
    exchange: &mut Exchange,
    back: &mut BackConnection,
    codec: &mut Connection,
    listener: &HttpListener,
    now: Instant,
    out: &mut Vec<u8>,
    progress: &mut bool,
) -> Result<bool, Failure> {
    let endpoint = &mut back.endpoint;
    let mut moved = false;
    let pending = exchange.request_out();
    if !pending.is_empty() && endpoint.readiness.event.contains(Ready::WRITABLE) {
        match endpoint.write(pending) {
            Transfer::Moved(count) => {
                exchange.request_written(count, codec, now, out);
                moved = true;
            }
            Transfer::WouldBlock => {}
            Transfer::Closed | Transfer::Error(_) => {
                return Err(Failure::Answer(
                    502,
                    "the backend closed the connection before answering",
                ));
            }
        }
    }
    if exchange.wants_backend_input() && endpoint.readiness.event.contains(Ready::READABLE) {
        if let Some(buf) = exchange.back_buf.as_mut() {
            match endpoint.read(buf.space()) {
                Transfer::Moved(count) => {
                    buf.fill(count);
                    moved = true;
                }
                Transfer::WouldBlock => {}
                Transfer::Closed | Transfer::Error(_) => exchange.backend_closed()?,
            }
        }
    } else if endpoint.read_closed && exchange.wants_backend_input() {
        exchange.backend_closed()?;
    }
    if exchange.awaits_response() {
        while exchange.awaits_response() && exchange.read_head(codec, listener, now, out)? {
            *progress = true;
        }
    }
    if exchange.decode_body()? {
        *progress = true;
    }
    if exchange.send_body(codec, now, out)? {
        *progress = true;
    }
    *progress |= moved;
    Ok(moved)
}

/// Sets the front timeout to the codec's next deadline, or to the idle timeout of a
/// connection without streams.
fn arm_front_timeout(session: &mut Session, context: &mut Context<'_>) {
    let Stage::H2(h2) = &session.stage else {
        return;
    };
    let idle = (h2.mux.exchanges.is_empty() && h2.mux.codec.open_streams() == 0)
        .then(|| h2.mux.idle_since + session.timeouts.front);
    let deadline = h2.mux.codec.next_deadline().into_iter().chain(idle).min();
    let key = session.timer_key(TimeoutKind::Front);
    match deadline {
        Some(at) if session.front_timeout.deadline() != Some(at) => {
            session.front_timeout.set(at, key, context.timers);
        }
        Some(_) => {}
        None => session.front_timeout.cancel(),
    }
}

impl std::fmt::Debug for H2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2")
            .field("streams", &self.mux.exchanges.len())
            .field("requests", &self.mux.requests)
            .finish()
    }
}
