//! Fault injection decisions: which faults of the routing state act on a connection or a
//! request, and what they do to it. Pure: no I/O and no clock; every instant comes from the
//! caller, so the same seed and the same instants give the same decisions.
//!
//! A worker keeps one [`FaultSet`], synchronised with the faults of its routing state
//! ([`FaultSet::sync`]). When a TCP connection is routed, [`FaultSet::connection`] decides
//! (by probability, source network and transient counters) which faults apply and returns a
//! [`ConnectionPlan`]: close at once, refuse as if no backend were up, answer a protocol
//! error, or shape the bytes through one [`Lane`] per fault and direction. An HTTP request
//! gets a [`RequestPlan`] from [`FaultSet::request`] the same way, with the HTTP faults
//! (error answer, delays); the faults on a backend of its cluster are picked by their selector
//! then ([`FaultSet::backend_candidates`]) and drawn once its backend is chosen
//! ([`FaultSet::backend_request`]). A copy path asks its lanes how many bytes may move
//! ([`Lane::allowance`]) and gets an [`Allowance`], the shape the session's write budget
//! consumes. A route with no fault costs one emptiness check.

mod lane;
mod payload;
mod rng;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    time::{Duration, Instant},
};

use sozu_command_lib::{
    request::{Effect, Fault, FaultTarget, FixedAnswer},
    response::FilteredMetric,
};

pub use self::{
    lane::{BANDWIDTH_SLICE, Lane},
    payload::error_payload,
    rng::FaultRng,
};

/// How many bytes a copy may move now. Combined over several faults by
/// [`Allowance::and`]: the most restrictive wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// No limit.
    All,
    /// At most this many bytes (never zero).
    Bytes(usize),
    /// Nothing now; ask again at this instant.
    Later(Instant),
    /// Nothing until the fault changes or goes (no timer: the fault's removal resumes it).
    Held,
    /// Close after what was already allowed.
    Cut,
    /// Reset the connection (RST).
    Reset,
}

impl Allowance {
    /// Both limits at once.
    pub fn and(self, other: Allowance) -> Allowance {
        use Allowance::*;
        match (self, other) {
            (Reset, _) | (_, Reset) => Reset,
            (Cut, _) | (_, Cut) => Cut,
            (Held, _) | (_, Held) => Held,
            // Asking again at the earlier instant is safe: the other lane says later again.
            (Later(a), Later(b)) => Later(a.min(b)),
            (Later(at), _) | (_, Later(at)) => Later(at),
            (Bytes(a), Bytes(b)) => Bytes(a.min(b)),
            (Bytes(n), All) | (All, Bytes(n)) => Bytes(n),
            (All, All) => All,
        }
    }
}

/// Where a connection or request is going, to find the faults that apply to it.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The listener that accepted the connection.
    pub listener: SocketAddr,
    /// The cluster it is routed to, once known.
    pub cluster_id: Option<&'a str>,
    /// Known once a backend is chosen; faults on a backend apply from then on.
    pub backend_id: Option<&'a str>,
    /// The request's host name (HTTP only).
    pub hostname: Option<&'a str>,
    /// The client's address.
    pub client: IpAddr,
}

/// The parts of an HTTP request a selector looks at.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request target's path.
    pub path: &'a str,
    /// Its header fields, looked up where they were parsed: nothing is copied per request.
    pub headers: &'a dyn HeaderFields,
}

/// The header fields of a request, as a header selector asks for them.
pub trait HeaderFields {
    /// Whether a field is named `name` (in any case) with exactly `value`.
    fn has(&self, name: &str, value: &str) -> bool;
}

/// Where the faults drawn for a request put their lanes and names: vectors the caller owns,
/// emptied beforehand. A session fills its own again at each request, so a keep-alive
/// connection allocates nothing for its faults once warm.
pub struct Drawn<'a> {
    /// Lanes of the request body.
    pub upstream: &'a mut Vec<Lane>,
    /// Lanes of the response body.
    pub downstream: &'a mut Vec<Lane>,
    /// The names of the faults that acted, for access logs and metrics (`fault="…"`).
    pub labels: &'a mut Vec<Rc<str>>,
}

/// One fault of the state, as a worker applies it: its settings, its random generator and
/// its counters.
#[derive(Debug)]
pub struct ActiveFault {
    fault: Fault,
    /// Shared with the sessions it touches, for their access-log label.
    name: Rc<str>,
    rng: FaultRng,
    /// For `transient`: failures still to inject.
    failures_left: u64,
    touched: u64,
}

impl ActiveFault {
    /// `entropy` seeds the generator of a fault that has no `seed`.
    pub fn new(fault: Fault, entropy: u64) -> Self {
        let failures_left = match fault.effect {
            Effect::Transient { count } => count,
            _ => 0,
        };
        ActiveFault {
            name: Rc::from(fault.name.as_str()),
            rng: FaultRng::new(fault.seed.unwrap_or(entropy)),
            failures_left,
            touched: 0,
            fault,
        }
    }

    /// The fault as the state has it.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }

    /// Connections and requests this fault acted on.
    pub fn touched(&self) -> u64 {
        self.touched
    }

    fn is_on_route(&self, route: &Route<'_>) -> bool {
        match &self.fault.target {
            FaultTarget::Cluster { cluster_id } => route.cluster_id == Some(cluster_id.as_str()),
            FaultTarget::Backend {
                cluster_id,
                backend_id,
            } => {
                route.cluster_id == Some(cluster_id.as_str())
                    && route.backend_id == Some(backend_id.as_str())
            }
            FaultTarget::Frontend { address, hostname } => {
                *address == route.listener
                    && hostname.as_deref().is_none_or(|wanted| {
                        route
                            .hostname
                            .is_some_and(|h| h.eq_ignore_ascii_case(wanted))
                    })
            }
        }
    }

    fn selects(&self, client: IpAddr, request: Option<&RequestFacts<'_>>) -> bool {
        let selector = &self.fault.selector;
        if selector
            .source
            .is_some_and(|network| !network.contains(client))
        {
            return false;
        }
        let Some(request) = request else {
            // TCP traffic has no path nor header: only the source selects it.
            return true;
        };
        let path = selector
            .path_prefix
            .as_deref()
            .is_none_or(|prefix| request.path.starts_with(prefix));
        let header = selector
            .header
            .as_ref()
            .is_none_or(|wanted| request.headers.has(&wanted.name, &wanted.value));
        path && header
    }

    /// Draws whether the fault acts this time, after its route and selector matched.
    /// A `transient` fault acts on the next `count` matches, then never.
    fn draw(&mut self) -> bool {
        if let Effect::Transient { .. } = self.fault.effect {
            if self.failures_left == 0 {
                return false;
            }
        }
        if !self.rng.chance(self.fault.probability.0) {
            return false;
        }
        self.failures_left = self.failures_left.saturating_sub(1);
        self.touched = self.touched.saturating_add(1);
        true
    }

    /// Adds the lanes of this fault's effect to those of a connection or request, in the
    /// fault's directions, each with a generator drawn from the fault's; none for an effect
    /// that leaves bytes as they are ([`Lane::shapes`]).
    fn push_lanes(&mut self, now: Instant, upstream: &mut Vec<Lane>, downstream: &mut Vec<Lane>) {
        if !Lane::shapes(&self.fault.effect) {
            return;
        }
        let direction = self.fault.direction;
        if direction.is_upstream() {
            let rng = FaultRng::new(self.rng.next_u64());
            upstream.push(Lane::new(&self.fault.effect, now, rng).of_fault(self.name.clone()));
        }
        if direction.is_downstream() {
            let rng = FaultRng::new(self.rng.next_u64());
            downstream.push(Lane::new(&self.fault.effect, now, rng).of_fault(self.name.clone()));
        }
    }
}

/// The faults of one worker.
#[derive(Debug)]
pub struct FaultSet {
    faults: BTreeMap<String, ActiveFault>,
    /// Seeds the faults that have no `seed`, each differently.
    entropy: FaultRng,
}

impl FaultSet {
    /// `entropy` makes unseeded faults differ between workers and runs; the caller draws it.
    pub fn new(entropy: u64) -> Self {
        FaultSet {
            faults: BTreeMap::new(),
            entropy: FaultRng::new(entropy),
        }
    }

    /// Whether no fault is set: the one check a route without faults pays.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Takes the faults of the routing state: new and changed ones start afresh (a changed
    /// fault's generator and counters restart), unchanged ones keep their state, and those
    /// gone are dropped. Returns whether a fault went or changed: the lanes it handed out
    /// are then stale ([`FaultSet::is_current`]).
    pub fn sync(&mut self, faults: &BTreeMap<String, Fault>) -> bool {
        let before = self.faults.len();
        self.faults
            .retain(|name, active| faults.get(name) == Some(&active.fault));
        let stale = self.faults.len() != before;
        for (name, fault) in faults {
            if !self.faults.contains_key(name) {
                let entropy = self.entropy.next_u64();
                self.faults
                    .insert(name.clone(), ActiveFault::new(fault.clone(), entropy));
            }
        }
        stale
    }

    /// Whether `name` (a label or lane's fault, as handed out) still names the fault that
    /// handed it out: false once that fault was removed or changed (a changed fault starts
    /// afresh, with a new name handle).
    pub fn is_current(&self, name: &Rc<str>) -> bool {
        self.faults
            .get(&**name)
            .is_some_and(|active| Rc::ptr_eq(&active.name, name))
    }

    /// Which faults may act on a request on `route`, in one pass: for a route no fault may
    /// act on, that pass is all the faults cost.
    pub fn reach(&self, route: &Route<'_>) -> Reach {
        let mut reach = Reach::default();
        for active in self.faults.values() {
            reach.route |= active.is_on_route(route);
            reach.backends |= matches!(&active.fault.target,
                FaultTarget::Backend { cluster_id, .. } if route.cluster_id == Some(cluster_id.as_str()));
        }
        reach
    }

    /// Whether a fault targets one backend of `cluster_id`: such faults apply once the
    /// backend is chosen ([`FaultSet::connection`] with the backend in the route).
    pub fn targets_backends_of(&self, cluster_id: &str) -> bool {
        self.faults.values().any(|active| {
            matches!(&active.fault.target, FaultTarget::Backend { cluster_id: id, .. } if id == cluster_id)
        })
    }

    /// The fault named `name`.
    pub fn get(&self, name: &str) -> Option<&ActiveFault> {
        self.faults.get(name)
    }

    /// How many connections and requests each fault touched.
    pub fn touched(&self) -> impl Iterator<Item = (&str, u64)> {
        self.faults
            .iter()
            .map(|(name, active)| (name.as_str(), active.touched))
    }

    /// Adds the touched counters to a worker's proxy metrics, under [`touched_metric`].
    pub fn write_metrics(&self, proxy: &mut BTreeMap<String, FilteredMetric>) {
        for (name, touched) in self.touched() {
            proxy.insert(touched_metric(name), FilteredMetric::Count(touched));
        }
    }

    /// What the faults do to a new TCP connection on `route`, started at `now`.
    pub fn connection(&mut self, route: &Route<'_>, now: Instant) -> ConnectionPlan {
        self.connection_among(route, now, |_| true)
    }

    /// What the faults on the route's backend alone do to a connection whose cluster's
    /// faults were drawn already, by [`FaultSet::connection`] before its backend was chosen:
    /// none is drawn twice.
    pub fn backend_connection(&mut self, route: &Route<'_>, now: Instant) -> ConnectionPlan {
        self.connection_among(route, now, |target| {
            matches!(target, FaultTarget::Backend { .. })
        })
    }

    fn connection_among(
        &mut self,
        route: &Route<'_>,
        now: Instant,
        among: impl Fn(&FaultTarget) -> bool,
    ) -> ConnectionPlan {
        let mut plan = ConnectionPlan::default();
        for active in self.faults.values_mut() {
            if !among(&active.fault.target) {
                continue;
            }
            // HTTP faults mean nothing to raw TCP: they are not even drawn.
            let is_http = matches!(
                active.fault.effect,
                Effect::HttpError(_) | Effect::HttpDelay { .. }
            );
            if is_http || !active.is_on_route(route) || !active.selects(route.client, None) {
                continue;
            }
            if !active.draw() {
                continue;
            }
            plan.labels.push(active.name.clone());
            let verdict = match &active.fault.effect {
                Effect::Blackout => Some(ConnectionVerdict::Close),
                Effect::Down | Effect::Transient { .. } => Some(ConnectionVerdict::NoBackend),
                Effect::Error { protocol } => {
                    Some(ConnectionVerdict::Answer(error_payload(*protocol)))
                }
                _ => {
                    active.push_lanes(now, &mut plan.upstream, &mut plan.downstream);
                    None
                }
            };
            if plan.verdict == ConnectionVerdict::Proxy {
                if let Some(verdict) = verdict {
                    plan.verdict = verdict;
                }
            }
        }
        plan
    }

    /// What the faults do to an HTTP request on `route`, read at `now`; the lanes and names
    /// of those that act go to `drawn`.
    pub fn request(
        &mut self,
        route: &Route<'_>,
        request: &RequestFacts<'_>,
        now: Instant,
        drawn: &mut Drawn<'_>,
    ) -> RequestPlan {
        self.request_among(now, drawn, |active| {
            active.is_on_route(route) && active.selects(route.client, Some(request))
        })
    }

    /// Adds to `candidates` the faults on one backend of the route's cluster whose selector
    /// takes `request`: they are drawn once its backend is chosen
    /// ([`FaultSet::backend_request`]).
    pub fn backend_candidates(
        &self,
        route: &Route<'_>,
        request: &RequestFacts<'_>,
        candidates: &mut Vec<Rc<str>>,
    ) {
        for active in self.faults.values() {
            let on_cluster = matches!(&active.fault.target,
                FaultTarget::Backend { cluster_id, .. } if route.cluster_id == Some(cluster_id.as_str()));
            if on_cluster && active.selects(route.client, Some(request)) {
                candidates.push(active.name.clone());
            }
        }
    }

    /// What the faults among `candidates` (as [`FaultSet::backend_candidates`] found them,
    /// and unchanged since) that target the route's backend do to a request sent to it.
    pub fn backend_request(
        &mut self,
        route: &Route<'_>,
        candidates: &[Rc<str>],
        now: Instant,
        drawn: &mut Drawn<'_>,
    ) -> RequestPlan {
        self.request_among(now, drawn, |active| {
            candidates.iter().any(|name| Rc::ptr_eq(name, &active.name))
                && active.is_on_route(route)
        })
    }

    fn request_among(
        &mut self,
        now: Instant,
        drawn: &mut Drawn<'_>,
        among: impl Fn(&ActiveFault) -> bool,
    ) -> RequestPlan {
        let mut plan = RequestPlan::default();
        for active in self.faults.values_mut() {
            // Protocol errors are for raw TCP: they are not even drawn for HTTP.
            let is_tcp = matches!(active.fault.effect, Effect::Error { .. });
            if is_tcp || !among(active) {
                continue;
            }
            if !active.draw() {
                continue;
            }
            drawn.labels.push(active.name.clone());
            let direction = active.fault.direction;
            match &active.fault.effect {
                Effect::HttpError(answer) => {
                    plan.answer
                        .get_or_insert_with(|| RequestAnswer::Fixed(answer.clone()));
                }
                Effect::Down | Effect::Transient { .. } | Effect::Blackout => {
                    plan.answer.get_or_insert(RequestAnswer::NoBackend);
                }
                Effect::HttpDelay { delay } => {
                    if direction.is_upstream() {
                        plan.request_delay = plan.request_delay.saturating_add(*delay);
                    }
                    if direction.is_downstream() {
                        plan.response_delay = plan.response_delay.saturating_add(*delay);
                    }
                }
                _ => active.push_lanes(now, drawn.upstream, drawn.downstream),
            }
        }
        plan
    }
}

/// Which faults may act on a request ([`FaultSet::reach`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// A fault is on the request's route (its listener, host name or cluster).
    pub route: bool,
    /// A fault is on a backend of its cluster: drawn once the backend is chosen.
    pub backends: bool,
}

impl Reach {
    /// Whether no fault may act on the request.
    pub fn is_none(self) -> bool {
        !self.route && !self.backends
    }
}

/// What happens to a faulted TCP connection as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionVerdict {
    /// Proxy it, through the plan's lanes.
    #[default]
    Proxy,
    /// `blackout`: close at once.
    Close,
    /// `down`, `transient`: as if the cluster had no backend up.
    NoBackend,
    /// `error`: answer these bytes, then close.
    Answer(&'static [u8]),
}

/// The faults acting on one TCP connection.
#[derive(Debug, Default)]
pub struct ConnectionPlan {
    /// What happens to the connection as a whole.
    pub verdict: ConnectionVerdict,
    /// Lanes of bytes going to the backend.
    pub upstream: Vec<Lane>,
    /// Lanes of bytes going to the client.
    pub downstream: Vec<Lane>,
    /// The names of the faults that acted, for access logs and metrics (`fault="…"`).
    pub labels: Vec<Rc<str>>,
}

impl ConnectionPlan {
    /// Whether no fault acted.
    pub fn is_clean(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How a faulted HTTP request is answered by the proxy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAnswer {
    /// `http_error`: this answer, without contacting the backend.
    Fixed(FixedAnswer),
    /// `down`, `transient`, `blackout`: the cluster's answer for no backend up (503).
    NoBackend,
}

/// The faults acting on one HTTP request.
#[derive(Debug, Default)]
pub struct RequestPlan {
    /// The proxy answers the request itself, when set.
    pub answer: Option<RequestAnswer>,
    /// `http_delay` upstream: wait this long before forwarding the request.
    pub request_delay: Duration,
    /// `http_delay` downstream: wait this long before relaying the response.
    pub response_delay: Duration,
}

/// The name of a fault's touched counter among a worker's proxy metrics, labelled as access
/// logs label faulted requests.
pub fn touched_metric(fault: &str) -> String {
    format!("fault.touched{{fault=\"{fault}\"}}")
}

/// What all `lanes` allow together for `pending` bytes at `now`.
pub fn allowance(lanes: &mut [Lane], now: Instant, pending: usize) -> Allowance {
    lanes.iter_mut().fold(Allowance::All, |allowed, lane| {
        allowed.and(lane.allowance(now, pending))
    })
}

#[cfg(test)]
mod tests;
