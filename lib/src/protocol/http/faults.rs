//! Faults on HTTP requests: once a request is routed to a cluster, the worker's faults
//! ([`FaultSet::request`]) decide whether the proxy answers it by itself (`http_error`, or the
//! cluster's 503 for `down`, `transient`, `blackout`), and install the request's write budget:
//! the lanes of byte faults on the request and response bodies, and `http_delay` as a lane
//! that holds the request (upstream) or the response (downstream) for the delay. The HTTP copy
//! paths ask that budget ([`budget`]) as the pipe does. A route without faults pays one
//! emptiness check, and nothing is allocated then.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sozu_command_lib::request::Effect;

use crate::{
    faults::{FaultRng, FaultSet, Lane, RequestAnswer, RequestFacts, Route},
    protocol::http::parser::Header,
    session::shaper::{self, Budget, Shaper, Way},
    session::{Action, endpoint::Endpoint},
};

/// What the faults do to a routed request.
pub(super) enum Verdict {
    /// Forward it (through the budget installed on the session, if any).
    Forward,
    /// The proxy answers it by itself.
    Answer(RequestAnswer),
}

/// The request being routed, as the faults see it.
pub(super) struct Routed<'a> {
    pub cluster_id: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a [Header],
    pub buf: &'a [u8],
    /// Bytes of the request (its head) about to go to the backend.
    pub head_len: usize,
}

/// Draws the faults on a request of `client` on `listener` routed to a cluster and installs
/// its write budget in `shaper` (the session's, replacing the previous request's).
pub(super) fn draw(
    faults: &mut FaultSet,
    shaper: &mut Option<Box<Shaper>>,
    (listener, client): (SocketAddr, SocketAddr),
    request: &Routed<'_>,
    now: Instant,
) -> Verdict {
    *shaper = None;
    if faults.is_empty() {
        return Verdict::Forward;
    }
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter_map(|header| {
            let name = std::str::from_utf8(header.name.slice(request.buf)).ok()?;
            let value = std::str::from_utf8(header.value.slice(request.buf)).ok()?;
            Some((name, value))
        })
        .collect();
    let route = Route {
        listener,
        cluster_id: Some(request.cluster_id),
        backend_id: None,
        hostname: Some(request.host).filter(|host| !host.is_empty()),
        client: client.ip(),
    };
    let facts = RequestFacts {
        path: request.path,
        headers: &headers,
    };
    let plan = faults.request(&route, &facts, now);
    if plan.labels.is_empty() {
        return Verdict::Forward;
    }
    let mut upstream = plan.upstream;
    let mut downstream = plan.downstream;
    if !plan.request_delay.is_zero() {
        upstream.push(delay_lane(plan.request_delay, now));
    }
    if !plan.response_delay.is_zero() {
        downstream.push(delay_lane(plan.response_delay, now));
    }
    let mut budget = Shaper::new(plan.labels, upstream, downstream);
    budget.received(Way::ToBackend, now, request.head_len);
    *shaper = Some(Box::new(budget));
    match plan.answer {
        Some(answer) => Verdict::Answer(answer),
        None => Verdict::Forward,
    }
}

/// `http_delay`: a lane that lets bytes go `delay` after they arrive (for the request, after
/// the routing; for the response, after its first bytes come from the backend).
fn delay_lane(delay: Duration, now: Instant) -> Lane {
    let effect = Effect::Latency {
        latency: delay,
        jitter: Duration::ZERO,
    };
    Lane::new(&effect, now, FaultRng::new(0))
}

/// How many of the `pending()` bytes going `way` may be written now (`Ok(0)`: none yet), or
/// the action that ends the session (a cut, or a reset of `front`'s connection). Without a
/// budget, everything, at the cost of one branch.
pub(super) fn budget(
    shaper: Option<&mut Shaper>,
    front: &Endpoint,
    way: Way,
    now: Instant,
    pending: impl FnOnce() -> usize,
) -> Result<usize, Action> {
    let Some(shaper) = shaper else {
        return Ok(usize::MAX);
    };
    let budget = match shaper.due(now) {
        Some(due) => due,
        None => shaper.budget(way, now, pending()),
    };
    match budget {
        Budget::UpTo(limit) => Ok(limit),
        Budget::Wait => Ok(0),
        Budget::Cut => Err(Action::Close),
        Budget::Reset => {
            shaper::reset_on_close(front);
            Err(Action::Close)
        }
    }
}
