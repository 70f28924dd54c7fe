//! Faults on HTTP requests: once a request is routed to a cluster, the worker's faults
//! ([`FaultSet::request`]) decide whether the proxy answers it by itself (`http_error`, or the
//! cluster's 503 for `down`, `transient`, `blackout`), and install the request's write budget:
//! the lanes of byte faults on the request and response bodies, and `http_delay` as a lane
//! that holds the request (upstream) or the response (downstream) for the delay. The faults on
//! the backend the request goes to are drawn into the same budget once that backend is chosen
//! ([`draw_backend`]). The HTTP copy paths ask that budget ([`budget`], [`allowance`]) as the
//! pipe does: the session's for HTTP/1, each stream's for HTTP/2. A route without faults pays
//! one emptiness check, and nothing is allocated then.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sozu_command_lib::request::Effect;

use crate::{
    faults::{
        Drawn, FaultRng, FaultSet, HeaderFields, Lane, RequestAnswer, RequestFacts, RequestPlan,
        Route,
    },
    protocol::http::{
        Http, HttpListener, SLOT,
        connection::{self, Step},
        outcome,
        parser::{Header, Persistence, RequestHead},
        route::Close,
        stream::RequestSide,
    },
    session::shaper::{self, Budget, Shaper, Way},
    session::{Action, Context, SessionIo, endpoint::Endpoint},
};

/// What the faults do to a routed request.
pub(super) enum Verdict {
    /// Forward it (through the budget installed, if any).
    Forward,
    /// The proxy answers it by itself.
    Answer(RequestAnswer),
}

/// A routed request as the faults see it.
pub(super) struct Routed<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a [Header],
    /// The bytes the head's spans point into.
    pub buf: &'a [u8],
    /// Its head in HTTP/1.1 form, about to go to the backend.
    pub head: &'a RequestHead,
}

/// Where the faults on a request are drawn: the worker's faults, the request, and the write
/// budget the faults that act go to (the session's for HTTP/1, the stream's for HTTP/2).
pub(super) struct Draw<'a> {
    pub faults: &'a mut FaultSet,
    pub shaper: &'a mut Option<Box<Shaper>>,
    /// The listener's and the client's addresses.
    pub addresses: (SocketAddr, SocketAddr),
    pub request: Routed<'a>,
    pub now: Instant,
}

/// Draws the faults on a request routed to `cluster_id` and installs its write budget in
/// the draw's shaper (emptied of the previous request's faults and filled again: a
/// keep-alive connection allocates nothing for them once warm). A route that no fault can
/// act on costs one pass over the faults.
pub(super) fn draw(draw: Draw<'_>, cluster_id: &str) -> Verdict {
    let Draw {
        faults,
        shaper,
        addresses: (listener, client),
        request,
        now,
    } = draw;
    if faults.is_empty() {
        *shaper = None;
        return Verdict::Forward;
    }
    let route = Route {
        listener,
        cluster_id: Some(cluster_id),
        backend_id: None,
        hostname: Some(request.host).filter(|host| !host.is_empty()),
        client: client.ip(),
    };
    let reach = faults.reach(&route);
    if reach.is_none() {
        if let Some(shaper) = shaper.as_deref_mut() {
            shaper.clear();
        }
        return Verdict::Forward;
    }
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
    let plan = if reach.route {
        faults.request(&route, &facts, now, &mut drawn)
    } else {
        RequestPlan::default()
    };
    let acted = !drawn.labels.is_empty();
    push_delays(&plan, &mut drawn, now);
    if reach.backends {
        faults.backend_candidates(&route, &facts, budget.backend_candidates());
    }
    if acted {
        budget.received(Way::ToBackend, now, request.head.head_len);
    }
    match plan.answer {
        Some(answer) => Verdict::Answer(answer),
        None => Verdict::Forward,
    }
}

/// Where a request went: its listener and client, then its cluster and the backend chosen.
pub(super) struct Chosen<'a> {
    pub addresses: (SocketAddr, SocketAddr),
    pub cluster_id: &'a str,
    pub backend_id: &'a str,
}

/// Draws the faults on the backend chosen for a request (those its selectors took when it
/// was routed, [`draw`]) into its write budget, before any of its `waiting` bytes went to
/// the backend. Without candidates, one emptiness check.
pub(super) fn draw_backend(
    faults: &mut FaultSet,
    shaper: Option<&mut Shaper>,
    chosen: Chosen<'_>,
    waiting: usize,
    now: Instant,
) -> Verdict {
    let Some(shaper) = shaper.filter(|shaper| shaper.awaits_backend()) else {
        return Verdict::Forward;
    };
    let (listener, client) = chosen.addresses;
    let route = Route {
        listener,
        cluster_id: Some(chosen.cluster_id),
        backend_id: Some(chosen.backend_id),
        hostname: None,
        client: client.ip(),
    };
    let answer = shaper.draw_for_backend(now, waiting, |candidates, drawn| {
        let plan = faults.backend_request(&route, candidates, now, drawn);
        push_delays(&plan, drawn, now);
        plan.answer
    });
    match answer.flatten() {
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

/// The lanes of a plan's `http_delay`s.
fn push_delays(plan: &RequestPlan, drawn: &mut Drawn<'_>, now: Instant) {
    if !plan.request_delay.is_zero() {
        drawn.upstream.push(delay_lane(plan.request_delay, now));
    }
    if !plan.response_delay.is_zero() {
        drawn.downstream.push(delay_lane(plan.response_delay, now));
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

/// What the budget allows now of the `pending()` bytes going `way`: a reset or a cut that is
/// due comes first. Without a budget, or one that shapes nothing (no fault, or only faults
/// that leave bytes as they are), everything, at the cost of a branch or two.
pub(super) fn allowance(
    shaper: Option<&mut Shaper>,
    way: Way,
    now: Instant,
    pending: impl FnOnce() -> usize,
) -> Budget {
    let Some(shaper) = shaper.filter(|shaper| shaper.is_shaping()) else {
        return Budget::UpTo(usize::MAX);
    };
    match shaper.due(now) {
        Some(due) => due,
        None => shaper.budget(way, now, pending()),
    }
}

/// How many of the `pending()` bytes going `way` may be written now (`Ok(0)`: none yet), or
/// the action that ends the session (a cut, or a reset of `front`'s connection).
pub(super) fn budget(
    shaper: Option<&mut Shaper>,
    front: &Endpoint,
    way: Way,
    now: Instant,
    pending: impl FnOnce() -> usize,
) -> Result<usize, Action> {
    match allowance(shaper, way, now, pending) {
        Budget::UpTo(limit) => Ok(limit),
        Budget::Wait => Ok(0),
        Budget::Cut => Err(Action::Close),
        Budget::Reset => {
            shaper::reset_on_close(front);
            Err(Action::Close)
        }
    }
}

/// Whether faults act on the bytes of the session's exchange: then every byte goes through
/// the write budget, and no body is spliced.
pub(super) fn shapes(io: &SessionIo) -> bool {
    io.shaper.as_deref().is_some_and(Shaper::is_shaping)
}

/// Draws the faults on the backend just chosen for an HTTP/1 session's request, before any
/// byte of it went there ([`draw_backend`]); the step that answers the request when one of
/// them does. The backend connection stays, clean, for the next request.
pub(super) fn backend_chosen(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Option<Step> {
    if !io.shaper.as_deref().is_some_and(Shaper::awaits_backend) {
        return None;
    }
    let back = io.backs.get(SLOT)?;
    let chosen = Chosen {
        addresses: (io.listener_address, io.client_address),
        cluster_id: &http.stream.cluster_id,
        backend_id: &back.backend_id,
    };
    let waiting = http.request_out.len().saturating_sub(http.request_out_sent);
    let shaper = io.shaper.as_deref_mut();
    let Verdict::Answer(fault) = draw_backend(context.faults, shaper, chosen, waiting, context.now)
    else {
        return None;
    };
    // A body the proxy does not read would be taken for the next request.
    let body_read = match &http.stream.request {
        RequestSide::Sending(body) => body.is_done(),
        RequestSide::Sent => true,
    };
    let close = if body_read && http.stream.client == Persistence::KeepAlive {
        Close::KeepAlive
    } else {
        Close::AfterAnswer
    };
    let cluster = http.stream.cluster_id.clone();
    let answer = outcome::fault_answer(&cluster, fault, close);
    Some(connection::render_answer(
        http,
        io,
        context,
        listener,
        answer.rendered(),
        answer.close,
    ))
}
