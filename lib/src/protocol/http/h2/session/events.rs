//! What the event loop tells an HTTP/2 session besides readiness: timeouts (the codec's
//! deadlines, a stream's backend), the outcome of a connect, a soft stop, the session's end.

use std::time::{Duration, Instant};

use super::{Env, Exchange, Failure, H2, State, ready};
use crate::{
    protocol::http::{
        connection::{AnswerExtra, Rendered as Answer},
        h2::ErrorCode,
        parser::Persistence,
        record,
    },
    session::{
        Action, BackConnection, BackUse, Context, Failure as LoopFailure, SessionIo, backs::Slot,
    },
};

/// The front timeout fired: streams idle or stalled past their timeout are reset, and a
/// connection idle without streams past the front timeout goes away.
pub(crate) fn front_timeout(h2: &mut H2, io: &mut SessionIo, context: &mut Context<'_>) -> Action {
    let origin = record::Origin::of_h2(io);
    let env = Env {
        key: io.key,
        uid: io.uid,
        origin,
    };
    let front_after = io.timeouts.front;
    let now = context.now;
    let mut expired = std::mem::take(&mut h2.mux.expired);
    if let Err(error) = h2.mux.codec.expire(now, &mut h2.mux.out, &mut expired) {
        h2.mux.closing = true;
        h2.mux.ended = Some(error.cause);
    }
    for id in expired.drain(..) {
        if let Some(index) = h2.mux.exchanges.iter().position(|ex| ex.id == id) {
            let mut exchange = h2.mux.exchanges.swap_remove(index);
            exchange.backend = Persistence::Close;
            h2.mux.end_exchange(exchange, &env, context);
        }
    }
    h2.mux.expired = expired;
    let is_idle = h2.mux.exchanges.is_empty() && h2.mux.codec.open_streams() == 0;
    if is_idle && now.saturating_duration_since(h2.mux.idle_since) >= front_after {
        h2.mux.codec.shutdown(now, &mut h2.mux.out);
        h2.mux.closing = true;
    }
    ready(h2, io, context)
}

/// A backend timeout fired for `slot`: an idle connection goes to the pool; for a stream,
/// 504 when its response head is awaited, else a reset.
pub(crate) fn back_timeout(
    h2: &mut H2,
    io: &mut SessionIo,
    slot: Slot,
    context: &mut Context<'_>,
) -> Action {
    let Some(listener) = context.listeners.get(&io.listener_address) else {
        return Action::Close;
    };
    if h2.mux.expire_idle(slot) {
        return ready(h2, io, context);
    }
    let exchange = h2.mux.exchanges.iter().find(|ex| ex.slot == Some(slot));
    if exchange.is_some_and(Exchange::waits_for_client) {
        // The backend is not silent: the client holds the response back (its windows),
        // which the stream idle timeout bounds.
        let after = io.timeouts.back;
        io.touch_back(slot, after, context.now, context.timers);
        return ready(h2, io, context);
    }
    if let Some(index) = h2.mux.exchanges.iter().position(|ex| ex.slot == Some(slot)) {
        h2.mux.fail(
            index,
            Failure::Answer(504, "the backend did not answer in time"),
            listener,
            context.now,
        );
    }
    ready(h2, io, context)
}

/// The loop's answer for the stream connecting in `slot`: no backend (503), or the client
/// over its connection cap (429).
pub(crate) fn answer_failure(
    h2: &mut H2,
    io: &mut SessionIo,
    slot: Slot,
    context: &mut Context<'_>,
    failure: LoopFailure,
) -> Action {
    let Some(listener) = context.listeners.get(&io.listener_address) else {
        return Action::Close;
    };
    let (status, details, retry_after) = match failure {
        LoopFailure::NoBackend => (503, "no backend available", None),
        LoopFailure::TooManyConnections { retry_after } => {
            (429, "too many connections", Some(retry_after))
        }
        LoopFailure::BackTimeout | LoopFailure::FrontTimeout => return ready(h2, io, context),
    };
    let connecting = h2
        .mux
        .exchanges
        .iter_mut()
        .find(|ex| ex.slot == Some(slot) && ex.state == State::Connecting);
    if let Some(exchange) = connecting {
        // The connect left nothing in the slot.
        exchange.slot = None;
        exchange.state = State::Answering;
        exchange.backend = Persistence::Close;
        let extra = AnswerExtra {
            retry_after,
            ..AnswerExtra::default()
        };
        let answer = Answer::Page(status, details, extra);
        if exchange
            .answer(
                &mut h2.mux.codec,
                listener,
                answer,
                context.now,
                &mut h2.mux.out,
            )
            .is_err()
        {
            exchange.reset(&mut h2.mux.codec, ErrorCode::InternalError, &mut h2.mux.out);
            exchange.mark_done();
        }
    }
    ready(h2, io, context)
}

/// The backend connection of `slot` is established (or taken from the pool, or a stream of
/// a shared one): its stream records `connect_time`, how long a connect it waited for took.
pub(crate) fn connected(
    h2: &mut H2,
    slot: Slot,
    backend_sticky_id: &str,
    back_use: BackUse,
    connect_time: Option<Duration>,
) {
    if let Some(exchange) = h2.mux.exchanges.iter_mut().find(|ex| ex.slot == Some(slot)) {
        exchange.connected(backend_sticky_id, back_use);
        exchange.stream.connect_time = connect_time;
        exchange.backend_sticky = backend_sticky_id.to_string();
    }
}

/// Whether `slot`'s backend connection was given back clean, between requests, or is idle.
pub(crate) fn is_back_reusable(h2: &H2, io: &SessionIo, slot: Slot) -> bool {
    let is_given_back_clean = h2
        .mux
        .released
        .iter()
        .any(|released| released.slot == slot && released.reusable);
    (is_given_back_clean || h2.mux.is_idle_slot(slot))
        && io.backs.get(slot).is_some_and(BackConnection::is_clean)
}

/// Whether the stage handles `slot`'s back timeout: its stream is forwarding (a back timeout
/// is then a 504 or a reset), or its connection is idle (it then goes to the pool).
pub(crate) fn handles_back_timeout(h2: &H2, slot: Slot) -> bool {
    h2.mux.is_idle_slot(slot)
        || h2
            .mux
            .exchanges
            .iter()
            .any(|ex| ex.slot == Some(slot) && ex.state == State::Forwarding)
}

/// A soft stop: GOAWAY, the streams opened so far finish, later ones are refused. Returns
/// whether the GOAWAY was just written (the session must be driven to send it).
pub(crate) fn stop(h2: &mut H2, now: Instant) -> bool {
    let before = h2.mux.out.len();
    h2.mux.codec.shutdown(now, &mut h2.mux.out);
    h2.mux.out.len() > before
}

/// Records the streams a closing session leaves unfinished.
pub(crate) fn record_unfinished(h2: &mut H2, io: &mut SessionIo, context: &mut Context<'_>) {
    let origin = record::Origin::of_h2(io);
    for exchange in &mut h2.mux.exchanges {
        let back = exchange.slot.and_then(|slot| io.backs.get(slot));
        let faults = super::budget::labels(&exchange.shaper);
        record::record(&mut exchange.stream, &origin, back, faults, context);
    }
    context
        .recorder
        .metrics
        .h2_connection(h2.mux.codec.counters(), h2.mux.ended);
}
