//! Faults on HTTP/2 streams. Each stream draws its faults when routed, as an HTTP/1 request
//! does ([`crate::protocol::http::outcome`]), into a write budget of its own
//! (`Exchange::shaper`), asked where the stream's bytes cross its own backend connection:
//! the request on its way to the backend, the response taken from the backend's buffer. The
//! client connection and its output are shared by all streams and never held: a faulted
//! stream waits alone, and a cut or a reset ends that stream (`RST_STREAM`) and its backend
//! connection, never the client connection.
//!
//! The session's own shaper only carries the resume timer: after each run, it is set at the
//! earliest instant a stream's budget asked for.

use std::{net::SocketAddr, rc::Rc, time::Instant};

use super::{H2, Mux, Released};
use crate::{
    faults::{FaultSet, RequestAnswer},
    protocol::http::{
        HttpListener,
        faults::{self as http_faults, Verdict},
        h2::{
            ErrorCode,
            exchange::{Exchange, Failure, State},
        },
        outcome,
        route::Close,
    },
    session::{
        BackConnection, SessionIo,
        endpoint::Endpoint,
        shaper::{self, Budget, Shaper, Way},
    },
};

/// How many of the `pending` bytes of a stream going `way` may move now (0: none yet), or
/// the failure that ends the stream: a cut, or a reset (its backend connection `back` is
/// then reset too).
pub(super) fn stream_budget(
    shaper: Option<&mut Shaper>,
    back: &Endpoint,
    way: Way,
    now: Instant,
    pending: usize,
) -> Result<usize, Failure> {
    match http_faults::allowance(shaper, way, now, || pending) {
        Budget::UpTo(limit) => Ok(limit),
        Budget::Wait => Ok(0),
        Budget::Cut => Err(Failure::Reset),
        Budget::Reset => {
            shaper::reset_on_close(back);
            Err(Failure::Reset)
        }
    }
}

/// Sets the session's resume timer (armed after the run, by `Session::ready`) at the
/// earliest instant a stream's budget asked for.
pub(super) fn ask_resume(h2: &mut H2, io: &mut SessionIo, now: Instant) {
    let next = h2
        .mux
        .exchanges
        .iter_mut()
        .filter_map(|exchange| exchange.shaper.as_deref_mut()?.next_resume(now))
        .min();
    if let Some(at) = next {
        io.shaper.get_or_insert_with(Box::default).wake_at(at);
    }
}

impl H2 {
    /// Drops the lanes of faults that `is_current` no longer knows from every stream's
    /// budget. Returns whether any went: the session must be driven again.
    pub(crate) fn drop_stale_faults(&mut self, is_current: impl Fn(&Rc<str>) -> bool) -> bool {
        let mut dropped = false;
        for exchange in &mut self.mux.exchanges {
            if let Some(shaper) = exchange.shaper.as_deref_mut() {
                dropped |= shaper.drop_stale(&is_current);
            }
        }
        dropped
    }
}

/// Draws the faults on the backend just chosen for a stream (`back`), before any byte of
/// its request went there; the answer of one that answers the stream instead.
pub(super) fn backend_chosen(
    exchange: &mut Exchange,
    back: &BackConnection,
    faults: &mut FaultSet,
    addresses: (SocketAddr, SocketAddr),
    now: Instant,
) -> Option<RequestAnswer> {
    let waiting = exchange.request_out().len();
    let chosen = http_faults::Chosen {
        addresses,
        cluster_id: &exchange.stream.cluster_id,
        backend_id: &back.backend_id,
    };
    let shaper = exchange.shaper.as_deref_mut();
    match http_faults::draw_backend(faults, shaper, chosen, waiting, now) {
        Verdict::Answer(answer) => Some(answer),
        Verdict::Forward => None,
    }
}

impl Mux {
    /// Answers the exchange at `index` as a fault on its backend says, and gives back its
    /// backend connection, clean: nothing of the request went there.
    pub(super) fn answer_fault(
        &mut self,
        index: usize,
        fault: RequestAnswer,
        listener: &HttpListener,
        now: Instant,
    ) {
        let Some(exchange) = self.exchanges.get_mut(index) else {
            return;
        };
        exchange.release_credit(&mut self.codec, &mut self.out);
        if let Some(slot) = exchange.slot.take() {
            self.released.push(Released {
                slot,
                reusable: true,
            });
        }
        exchange.state = State::Answering;
        let cluster = exchange.stream.cluster_id.clone();
        let answer = outcome::fault_answer(&cluster, fault, Close::KeepAlive);
        let rendered = answer.rendered();
        if exchange
            .answer(&mut self.codec, listener, rendered, now, &mut self.out)
            .is_err()
        {
            exchange.reset(&mut self.codec, ErrorCode::InternalError, &mut self.out);
            exchange.mark_done();
        }
    }
}

/// The names of the faults that acted on a stream, for its record.
pub(super) fn labels(shaper: &Option<Box<Shaper>>) -> &[Rc<str>] {
    shaper.as_deref().map_or(&[], Shaper::labels)
}
