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
    faults::{FaultRng, FaultSet, HeaderFields, Lane, RequestAnswer, RequestFacts, Route},
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
/// its write budget in `shaper` (the session's, emptied of the previous request's faults and
/// filled again: a keep-alive connection allocates nothing for them once warm).
pub(super) fn draw(
    faults: &mut FaultSet,
    shaper: &mut Option<Box<Shaper>>,
    (listener, client): (SocketAddr, SocketAddr),
    request: &Routed<'_>,
    now: Instant,
) -> Verdict {
    if faults.is_empty() {
        *shaper = None;
        return Verdict::Forward;
    }
    let route = Route {
        listener,
        cluster_id: Some(request.cluster_id),
        backend_id: None,
        hostname: Some(request.host).filter(|host| !host.is_empty()),
        client: client.ip(),
    };
    let headers = Fields {
        headers: request.headers,
        buf: request.buf,
    };
    let facts = RequestFacts {
        path: request.path,
        headers: &headers,
    };
    let budget = shaper.get_or_insert_with(Box::default);
    let mut drawn = budget.next_request();
    let plan = faults.request(&route, &facts, now, &mut drawn);
    if drawn.labels.is_empty() {
        return Verdict::Forward;
    }
    if !plan.request_delay.is_zero() {
        drawn.upstream.push(delay_lane(plan.request_delay, now));
    }
    if !plan.response_delay.is_zero() {
        drawn.downstream.push(delay_lane(plan.response_delay, now));
    }
    budget.received(Way::ToBackend, now, request.head_len);
    match plan.answer {
        Some(answer) => Verdict::Answer(answer),
        None => Verdict::Forward,
    }
}

/// A request's header fields where the parser left them.
struct Fields<'a> {
    headers: &'a [Header],
    buf: &'a [u8],
}

impl HeaderFields for Fields<'_> {
    fn has(&self, name: &str, value: &str) -> bool {
        self.headers.iter().any(|header| {
            header
                .name
                .slice(self.buf)
                .eq_ignore_ascii_case(name.as_bytes())
                && header.value.slice(self.buf) == value.as_bytes()
        })
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
