//! The HTTP/2 stage of a session: the [`Connection`] codec over the client connection, each
//! stream an `Exchange` routed on its own (`route::decide`, as HTTP/1.1 requests) and
//! forwarded to an HTTP/1.1 backend on a backend connection of its own: a slot of the
//! session, kept idle between streams, or taken from and given back to the loop's pool.
//!
//! New backend connections are opened at once for every stream routed, each in its own slot
//! (the loop's connect attempts, retries and hold are per slot), oldest stream first; a
//! stream that fits an idle connection takes it over instead. Frames for the client go into
//! one output buffer, written once nothing else moves, and after a drive that moved
//! something once the loop has handled the other events of its turn: the frames of every
//! stream the turn moved leave in one write. Frames are read from the client, and data from
//! backends, only while that buffer holds less than `OUT_HIGH_WATER` (64 KiB), so a client
//! that does not read holds its own streams back and nothing grows without bound. Within
//! that, each stream moves at most a quantum per pass, so one stream never starves the
//! others, and a stream's flow-control windows only hold that stream back.
//!
//! - `start`: how a connection becomes HTTP/2;
//! - `slots`: the backend connections by slot (held, idle, given back, connects);
//! - `forward`: an exchange's bytes over its backend connection, within its stream's budget;
//! - `events`: what the loop tells the session besides readiness (timeouts, connects, soft
//!   stop, close).

use std::{collections::VecDeque, time::Instant};

use super::{
    Connection, ErrorCode, Event, Progress, StreamId,
    exchange::{Buffers, Exchange, Failure, State},
    headers::Request,
};
use crate::{
    pool::Buffer,
    protocol::http::{
        HttpListener,
        connection::{AnswerExtra, Rendered as Answer, Step},
        faults,
        outcome::{Outcome, outcome},
        parser::Persistence,
        record::{self, new_request_id, writes_access_lines},
        route,
    },
    session::{
        Action, Context, SessionIo,
        backs::Backs,
        endpoint::{Endpoint, Ready, Transfer},
        shaper::Way,
    },
    timer::{TimeoutKind, TimerKey},
};

mod budget;
mod events;
mod forward;
mod slots;
mod start;

use slots::{Idle, Released};
pub(in crate::protocol::http) use start::{Detect, detect, start};

pub(crate) use events::{
    answer_failure, back_timeout, connected, front_timeout, handles_back_timeout, is_back_reusable,
    record_unfinished, stop,
};

/// Frames waiting for the client beyond which nothing more is read (from the client or from
/// backends) until the client takes some.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Slots given back and connects a session asks the loop for in a row (the loop runs the
/// session again after each) before it yields, so that the loop's own bound on a chain of
/// actions is never reached however many streams finish or connect at once.
const CHAINED_ACTIONS: u32 = 32;

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
    /// Clean backend connections kept between streams.
    idle: Vec<Idle>,
    /// By slot index: whether a stream, a release or an idle connection holds the slot.
    held: Vec<bool>,
    /// Actions asked for since the session last waited (see `CHAINED_ACTIONS`).
    chained: u32,
    /// The buffers of exchanges done with, for the next ones.
    spare: Vec<Buffers>,
    /// The most exchanges open at once so far: as many buffers are kept (open or spare),
    /// so that as many streams at once again start without allocating.
    most_open: usize,
}

impl H2 {
    /// Whether streams wait for a backend connect of their own (see [`Mux::next_connect`]).
    pub(crate) fn wants_connects(&self) -> bool {
        self.mux.wants_connects()
    }
}

/// Drives an HTTP/2 session until it would block.
pub(crate) fn ready(h2: &mut H2, io: &mut SessionIo, context: &mut Context<'_>) -> Action {
    let action = drive(h2, io, context);
    // Without faults, no stream has a budget to wait for.
    if !context.faults.is_empty() {
        budget::ask_resume(h2, io, context.now);
    }
    action
}

fn drive(h2: &mut H2, io: &mut SessionIo, context: &mut Context<'_>) -> Action {
    let Some(listener) = context.listeners.get(&io.listener_address) else {
        return Action::Close;
    };
    let mut worked = false;
    for _ in 0..1024 {
        match step(h2, io, context, listener, worked) {
            Step::Progress => {
                worked = true;
                continue;
            }
            Step::Wait => {
                arm_front_timeout(h2, io, context);
                return Action::Wait;
            }
            Step::Do(action) => return action,
            // HTTP/2 turns into no other stage.
            Step::Become(_) => return Action::Close,
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

/// One pass over the connection and its streams; `worked`: an earlier pass of this drive
/// moved something.
fn step(
    h2: &mut H2,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
    worked: bool,
) -> Step {
    let env = Env {
        key: io.key,
        uid: io.uid,
        origin: record::Origin::of_h2(io),
    };
    let timeouts = *io.timeouts;
    let SessionIo { front, backs, .. } = io;
    if h2.mux.chained >= CHAINED_ACTIONS {
        h2.mux.chained = 0;
        return Step::Do(Action::Yield);
    }
    if let Some(slot) = h2.mux.settle_slots(backs) {
        h2.mux.chained += 1;
        return Step::Do(Action::DropBack(slot));
    }
    let mut progress = false;

    if h2.mux.closing || (h2.mux.codec.is_finished() && h2.mux.exchanges.is_empty()) {
        progress = match flush(&mut h2.mux, front) {
            Ok(moved) => moved,
            Err(step) => return step,
        };
        if h2.mux.backlog() == 0 {
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
    // Giving a slot back runs the session again at once: the frames wait for the next write.
    if let Some(step) = h2.mux.finish_exchanges(backs, &env, timeouts.back, context) {
        h2.mux.chained += 1;
        return step;
    }
    if let Some(action) = h2.mux.next_connect(backs) {
        h2.mux.chained += 1;
        // A new connection leaves the session waiting for its outcome: the frames go first.
        if let Err(step) = flush(&mut h2.mux, front) {
            return step;
        }
        return Step::Do(action);
    }
    // Frames to the client: written once nothing else moves; after a drive that moved
    // something, once the loop has handled the other events of its turn (the session yields
    // and is driven again at the end of the turn), so that the frames of every stream the
    // turn moved leave in one write. Sooner when the buffer is full, to make room.
    let is_full = h2.mux.backlog() >= OUT_HIGH_WATER;
    let can_write = h2.mux.backlog() > 0 && front.readiness.event.contains(Ready::WRITABLE);
    if !progress && worked && can_write && !is_full {
        return Step::Do(Action::Yield);
    }
    if !progress || is_full {
        match flush(&mut h2.mux, front) {
            Ok(moved) => progress |= moved,
            Err(step) => return step,
        }
    }
    if progress {
        return Step::Progress;
    }
    h2.mux.chained = 0;
    Step::Wait
}

/// Writes the frames waiting for the client, as far as the socket takes them, in one call.
/// Returns whether any byte went.
fn flush(mux: &mut Mux, front: &mut Endpoint) -> Result<bool, Step> {
    if mux.backlog() == 0 || !front.readiness.event.contains(Ready::WRITABLE) {
        return Ok(false);
    }
    match front.write(mux.out.get(mux.out_sent..).unwrap_or_default()) {
        Transfer::Moved(count) => {
            mux.out_sent = mux.out_sent.saturating_add(count);
            if mux.out_sent >= mux.out.len() {
                mux.out.clear();
                mux.out_sent = 0;
            }
            Ok(true)
        }
        Transfer::WouldBlock => Ok(false),
        Transfer::Closed | Transfer::Error(_) => Err(Step::Do(Action::Close)),
    }
}

impl Mux {
    /// A connection's streams, from its codec, the frames it wrote so far (`out`), and the
    /// TLS server name the client sent.
    fn new(codec: Connection, out: Vec<u8>, server_name: Option<String>, now: Instant) -> Mux {
        Mux {
            codec,
            out,
            out_sent: 0,
            exchanges: Vec::new(),
            queue: VecDeque::new(),
            released: Vec::new(),
            requests: 0,
            server_name,
            idle_since: now,
            closing: false,
            ended: None,
            expired: Vec::new(),
            idle: Vec::new(),
            held: Vec::new(),
            chained: 0,
            spare: Vec::new(),
            most_open: 0,
        }
    }

    /// Keeps the buffers of an exchange done with for a next one, as many as the streams
    /// forwarded at once.
    fn recycle(&mut self, exchange: Exchange) {
        let buffers = exchange.into_buffers();
        let kept = self.spare.len().saturating_add(self.exchanges.len());
        if buffers.is_worth_keeping() && kept < self.most_open {
            self.spare.push(buffers);
        }
    }

    /// Adds an exchange to those open.
    fn open(&mut self, exchange: Exchange) {
        self.exchanges.push(exchange);
        self.most_open = self.most_open.max(self.exchanges.len());
    }

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
            } => {
                self.on_request(stream, &request, end_stream, env, listener, context);
                self.codec.recycle(request);
            }
            Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let bytes = input.get(data).unwrap_or_default();
                let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                match self.exchange_mut(stream).filter(|ex| ex.takes_body()) {
                    Some(exchange) => {
                        if let Some(shaper) = exchange.shaper.as_deref_mut() {
                            shaper.received(Way::ToBackend, context.now, bytes.len());
                        }
                        exchange.push_body(bytes, end_stream);
                    }
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
        // The stream of an exchange done with keeps its texts' allocations.
        let mut exchange = Exchange::with_buffers(id, self.spare.pop().unwrap_or_default());
        let buf = request.bytes.as_slice();
        let head = &request.head;
        let stream = &mut exchange.stream;
        new_request_id(stream, env.uid, self.requests);
        stream.describe(buf, head, &request.fields, writes_access_lines(context));
        stream.routed_at = Some(context.now);
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
        let draw = faults::Draw {
            faults: context.faults,
            shaper: &mut exchange.shaper,
            addresses: (env.origin.listener, env.origin.client),
            request: faults::Routed {
                host: &exchange.stream.host,
                path: &exchange.stream.path,
                headers: &request.fields,
                buf,
                head,
            },
            now: context.now,
        };
        let answer = match outcome(decision, draw) {
            Outcome::Forward(forward) => {
                exchange.forward(request, forward, listener, env.origin.client, end_stream);
                self.queue.push_back(id);
                self.open(exchange);
                return;
            }
            Outcome::Answer(answer) => answer,
        };
        if let Some(cluster) = answer.cluster {
            exchange.stream.cluster_id.push_str(cluster);
        }
        self.answer_new(exchange, listener, answer.rendered(), env, context);
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
            self.open(exchange);
        }
    }

    /// Moves one exchange on: its request to the backend, the response to the client.
    /// Returns whether anything moved.
    fn exchange_step(
        &mut self,
        index: usize,
        backs: &mut Backs,
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
                let addresses = (env.origin.listener, env.origin.client);
                if let Some(fault) =
                    budget::backend_chosen(exchange, back, context.faults, addresses, now)
                {
                    self.answer_fault(index, fault, listener, now);
                    return true;
                }
                if exchange.back_buf.is_none() {
                    exchange.back_buf = Some(context.pool.checkout());
                }
                let moved = forward::forward(
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

    /// Takes out the exchanges whose response went out whole (recorded, their slot kept
    /// idle or given back, see `slots`); asks the loop to take the first slot given back.
    fn finish_exchanges(
        &mut self,
        backs: &mut Backs,
        env: &Env,
        idle_after: std::time::Duration,
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
            let faults = budget::labels(&exchange.shaper);
            record::record(&mut exchange.stream, &env.origin, back, faults, context);
            let key = TimerKey {
                session: env.key,
                uid: env.uid,
                kind: TimeoutKind::Front,
            };
            let timers = (context.now, &mut *context.timers);
            self.leave_slot(&mut exchange, backs, key, timers, idle_after);
            self.recycle(exchange);
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
        let faults = budget::labels(&exchange.shaper);
        record::record(&mut exchange.stream, &env.origin, None, faults, context);
        if let Some(slot) = exchange.slot.take() {
            self.released.push(Released {
                slot,
                reusable: false,
            });
        }
        if self.exchanges.is_empty() {
            self.idle_since = context.now;
        }
        self.recycle(exchange);
    }
}

/// Sets the front timeout to the codec's next deadline, or to the idle timeout of a
/// connection without streams.
fn arm_front_timeout(h2: &mut H2, io: &mut SessionIo, context: &mut Context<'_>) {
    let idle = (h2.mux.exchanges.is_empty() && h2.mux.codec.open_streams() == 0)
        .then(|| h2.mux.idle_since + io.timeouts.front);
    let deadline = h2.mux.codec.next_deadline().into_iter().chain(idle).min();
    let key = io.timer_key(TimeoutKind::Front);
    match deadline {
        Some(at) if io.front_timeout.deadline() != Some(at) => {
            io.front_timeout.set(at, key, context.timers);
        }
        Some(_) => {}
        None => io.front_timeout.cancel(),
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
