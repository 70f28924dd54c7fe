//! TCP mode: every connection accepted on a TCP listener is piped to a backend of the cluster
//! its first bytes chose among the listener's frontends (content routing), or of the
//! listener's default frontend.
//!
//! A session goes `ExpectProxy` (when the listener expects a PROXY header) → `Sniff` (where
//! the connection goes, [`crate::protocol::sniff`]) → `Pipe`. The client's first bytes wait in
//! their buffer (the very buffer the PROXY header was read into, never a copy) until the pipe
//! replays them; a PROXY header for the backend, when the cluster sends one, goes ahead of
//! them from storage of its own.

use std::{sync::Arc, time::Duration};

use crate::{
    faults::{ConnectionPlan, ConnectionVerdict, Route},
    session::shaper::{self, Shaper},
};

use rustls::ServerConfig;
use sozu_command_lib::request::ProxyProtocolConfig;

use crate::{
    metrics::RequestRecord,
    pool::{Buffer, Pool},
    protocol::http::Http,
    protocol::{
        pipe::{Pipe, PipeStatus},
        proxy_protocol,
        reply::{FileRegion, Reply, ReplyStatus},
        sniff::{Inspection, Sniff},
    },
    router::content::{Decider, Decision, Target, Verdict},
    session::endpoint::{Ready, Transfer},
    session::{Action, Context, Session, Stage, backs::Slot},
    timer::TimeoutKind,
};

/// Waiting for the PROXY protocol header a listener with `expect_proxy` requires.
pub struct ExpectProxy {
    buffer: Buffer,
    then: AfterProxy,
}

/// The stage that follows the PROXY header.
#[derive(Debug, Clone)]
pub enum AfterProxy {
    /// TCP mode: the first bytes decide where the connection goes (awaited at most
    /// `inspect_timeout`), then a pipe through kernel pipes of the given capacity when `splice`
    /// is set (0: the kernel's default).
    Pipe {
        splice: Option<usize>,
        inspect_timeout: Duration,
    },
    /// HTTP, over TLS when a TLS configuration is given.
    Http(Option<Arc<ServerConfig>>),
}

/// Sets up the first stage of a session accepted on a listener: the PROXY header when the
/// listener expects one, else what follows it.
pub fn first_stage(session: &mut Session, pool: &Pool, expect_proxy: bool, then: AfterProxy) {
    session.stage = if expect_proxy {
        Stage::ExpectProxy(ExpectProxy {
            buffer: pool.checkout(),
            then,
        })
    } else {
        after_proxy(session, pool, then, pool.checkout())
    };
}

/// The stage that follows the PROXY header (or the accept, when none is expected), starting
/// with the client's bytes read so far, `already_read`. TLS starts here and nowhere else.
fn after_proxy(
    session: &mut Session,
    pool: &Pool,
    then: AfterProxy,
    already_read: Buffer,
) -> Stage {
    match then {
        AfterProxy::Pipe {
            splice,
            inspect_timeout,
        } => Stage::Sniff(Sniff::new(already_read, splice, inspect_timeout)),
        AfterProxy::Http(None) => Stage::Http(Box::new(Http::with_input(pool, already_read))),
        AfterProxy::Http(Some(config)) => {
            // What followed the PROXY header is the start of the TLS stream (the ClientHello).
            match session
                .front
                .start_tls(config, pool.buffer_size(), already_read)
            {
                Ok(()) => Stage::Http(Box::new(Http::new(pool))),
                Err(error) => {
                    log::error!("session {}: cannot start TLS: {error}", session.uid);
                    Stage::Closed
                }
            }
        }
    }
}

/// Reads the client's first bytes until the listener's content router decides where the
/// connection goes, then builds its pipe. Returns `None` once the pipe is in place, or the
/// action to take.
pub fn sniff(session: &mut Session, context: &mut Context<'_>) -> Option<Action> {
    let timer_key = session.timer_key(TimeoutKind::Front);
    loop {
        let Stage::Sniff(sniff) = &mut session.stage else {
            return Some(Action::Close);
        };
        let mut router = context.content_routers.get_mut(&session.listener_address);
        let verdict = sniff.decide(router.as_deref_mut(), session.client_address);
        if let (Some(router), false) = (router, verdict == Verdict::NeedMore) {
            router.record_decision_time(context.now.saturating_duration_since(session.started));
            session.decided_by = Some(router.last_decider().clone());
        }
        match verdict {
            Verdict::NeedMore => {}
            Verdict::Route(cluster_id) => {
                return route(session, context, Target::Cluster(cluster_id), None, None);
            }
            Verdict::Close => return Some(Action::Close),
            Verdict::Decision(decision) => return carry_out(session, context, decision),
        }
        // The router waits only while more bytes may come.
        if sniff.is_complete() {
            return Some(Action::Close);
        }
        if sniff.inspection == Inspection::Starting {
            sniff.inspection = Inspection::Waiting;
            session.front_timeout.set_after(
                context.now,
                sniff.inspect_timeout,
                timer_key,
                context.timers,
            );
        }
        if !session.front.readiness.event.contains(Ready::READABLE) {
            return Some(Action::Wait);
        }
        match session.front.read(sniff.buffer.space()) {
            Transfer::Moved(count) => sniff.buffer.fill(count),
            Transfer::WouldBlock => return Some(Action::Wait),
            Transfer::Closed => sniff.inspection = Inspection::Over,
            Transfer::Error(_) => return Some(Action::Close),
        }
    }
}

/// Carries out what a script or a program decided: a connection (to a cluster or a
/// `remote`), or an answer by the proxy. Returns `None` once the next stage is in place.
fn carry_out(
    session: &mut Session,
    context: &mut Context<'_>,
    decision: Decision,
) -> Option<Action> {
    let (bytes, file) = match decision {
        Decision::Connect {
            target,
            data,
            reply,
        } => {
            return route(session, context, target, data, reply);
        }
        Decision::Close(farewell) => (farewell, None),
        Decision::File {
            path,
            reply,
            offset,
            nbytes,
        } => match FileRegion::open(&path, offset, nbytes) {
            Ok(region) => (reply.unwrap_or_default(), Some(region)),
            Err(error) => {
                log::warn!(
                    "session {}: cannot answer with {}: {error}, closing",
                    session.uid,
                    path.display()
                );
                return Some(Action::Close);
            }
        },
        // The router answers `NeedMore` for a wait, never a decision.
        Decision::Wait => return Some(Action::Close),
    };
    session.stage = Stage::Reply(Reply::new(bytes, file));
    let front = session.timeouts.front;
    session.touch_front(front, context.now, context.timers);
    None
}

/// Sends the proxy's answer to the client, then closes.
pub fn reply(session: &mut Session) -> Action {
    let Stage::Reply(reply) = &mut session.stage else {
        return Action::Close;
    };
    match reply.run(&mut session.front) {
        ReplyStatus::Wait => Action::Wait,
        ReplyStatus::Done => Action::Close,
    }
}

/// The backend the connection was sent to cannot be reached: the listener's script hears of
/// it (its `proxy_error(peer, message)`), and the connection closes.
pub fn backend_unreachable(session: &mut Session, context: &mut Context<'_>) -> Action {
    let message = match (&session.remote, &session.cluster_id) {
        (Some(remote), _) => format!("cannot connect to {remote}"),
        (None, Some(cluster_id)) => format!("no backend of cluster {cluster_id} can be reached"),
        (None, None) => "no backend can be reached".to_string(),
    };
    tell_unreachable(session, context, &message)
}

/// Calls the listener's script's `proxy_error(peer, message)`, then closes.
pub fn tell_unreachable(session: &Session, context: &mut Context<'_>, message: &str) -> Action {
    log::debug!("session {}: {message}", session.uid);
    if let Some(router) = context.content_routers.get_mut(&session.listener_address) {
        router.proxy_error(session.client_address, message);
    }
    Action::Close
}

/// The inspection deadline passed: the router decides with the bytes it has.
pub fn inspection_over(session: &mut Session) {
    if let Stage::Sniff(sniff) = &mut session.stage {
        sniff.inspection = Inspection::Over;
    }
}

/// Sends the connection to `target`: its pipe replays the bytes read so far (or `data`
/// instead, when a script says so), after the PROXY header a target cluster asks for; the
/// client gets `reply` first. The faults on the route may decide otherwise ([`apply_plan`]).
/// Returns `None` once the pipe is in place, or the action to take.
fn route(
    session: &mut Session,
    context: &mut Context<'_>,
    target: Target,
    data: Option<Vec<u8>>,
    reply: Option<Vec<u8>>,
) -> Option<Action> {
    let plan = if context.faults.is_empty() {
        None
    } else {
        let cluster_id = match &target {
            Target::Cluster(cluster_id) => Some(cluster_id.as_str()),
            Target::Remote(_) => None,
        };
        let route = Route {
            listener: session.listener_address,
            cluster_id,
            backend_id: None,
            hostname: None,
            client: session.client_address.ip(),
        };
        Some(context.faults.connection(&route, context.now)).filter(|plan| !plan.is_clean())
    };
    let Stage::Sniff(sniff) = std::mem::replace(&mut session.stage, Stage::Closed) else {
        return Some(Action::Close);
    };
    let to_backend = match target {
        Target::Cluster(cluster_id) => {
            let to_backend = context
                .clusters
                .get(&cluster_id)
                .and_then(|cluster| cluster.proxy_protocol);
            session.cluster_id = Some(cluster_id);
            to_backend
        }
        Target::Remote(remote) => {
            session.remote = Some(remote);
            None
        }
    };
    let mut buffer = sniff.buffer;
    let mut head = backend_header(session, to_backend);
    if let Some(data) = data {
        buffer.clear();
        head.extend_from_slice(&data);
    }
    let pipe = pipe(session, buffer, context.pool, sniff.splice)
        .with_backend_header(head)
        .with_client_header(reply.unwrap_or_default());
    let waiting = pipe.waiting_for_backend();
    session.stage = Stage::Pipe(pipe);
    let front = session.timeouts.front;
    session.touch_front(front, context.now, context.timers);
    let plan = plan?;
    apply_plan(session, context, plan, waiting)
}

/// How long a connection answered by a fault (`error`) stays open after the answer, reading
/// nothing: closing at once, with the client's request unread, would reset the connection
/// and could destroy the answer before the client reads it.
const ANSWER_LINGER: Duration = Duration::from_millis(500);

/// Acts on what the faults decided for a piped connection, `waiting` bytes of the client
/// already read: close it at once (`blackout`), refuse it as if its cluster had no backend up
/// (`down`, `transient`), answer it and close (`error`), or shape its bytes. Returns `None`
/// when the pipe goes on.
fn apply_plan(
    session: &mut Session,
    context: &mut Context<'_>,
    plan: ConnectionPlan,
    waiting: usize,
) -> Option<Action> {
    let ConnectionPlan {
        verdict,
        upstream,
        downstream,
        labels,
    } = plan;
    let mut faults = Shaper::new(labels, upstream, downstream);
    if verdict == ConnectionVerdict::Proxy {
        faults.received(shaper::Way::ToBackend, context.now, waiting);
    }
    // Installed first: a connection recorded below carries the faults' names.
    match session.shaper.as_mut() {
        Some(earlier) => earlier.absorb(faults),
        None => session.shaper = Some(Box::new(faults)),
    }
    match verdict {
        ConnectionVerdict::Proxy => None,
        ConnectionVerdict::Close => Some(Action::Close),
        ConnectionVerdict::NoBackend => {
            // As a cluster without backend: held for its hold timeout when it holds, then
            // closed.
            let hold = session
                .cluster_id
                .as_ref()
                .and_then(|id| context.clusters.get(id))
                .and_then(|cluster| cluster.hold_timeout)
                .filter(|timeout| !timeout.is_zero());
            match hold {
                Some(timeout) => Some(linger(session, context, timeout)),
                None => Some(Action::Close),
            }
        }
        ConnectionVerdict::Answer(bytes) => {
            let _ = session.front.write(bytes);
            session.front.shutdown_write();
            Some(linger(session, context, ANSWER_LINGER))
        }
    }
}

/// Records the connection, then keeps it open, reading nothing, for `duration`, and closes
/// it.
fn linger(session: &mut Session, context: &mut Context<'_>, duration: Duration) -> Action {
    record_connection(session, context);
    session.stage = Stage::Flushing;
    session.touch_front(duration, context.now, context.timers);
    Action::Wait
}

/// Draws the faults on the backend of a piped connection once it is chosen, and acts on
/// them as on those of its cluster.
fn backend_chosen(session: &mut Session, context: &mut Context<'_>) -> Option<Action> {
    let back = session.backs.get(Slot::FIRST)?;
    let cluster_id = session.cluster_id.as_deref()?;
    if !context.faults.targets_backends_of(cluster_id) {
        return None;
    }
    let route = Route {
        listener: session.listener_address,
        cluster_id: Some(cluster_id),
        backend_id: Some(&back.backend_id),
        hostname: None,
        client: session.client_address.ip(),
    };
    let plan = context.faults.backend_connection(&route, context.now);
    if plan.is_clean() {
        return None;
    }
    let Stage::Pipe(pipe) = &session.stage else {
        return Some(Action::Close);
    };
    let waiting = pipe.waiting_for_backend();
    apply_plan(session, context, plan, waiting)
}

/// A pipe whose first bytes for the backend are `already_read` (the client's bytes read so
/// far): through the kernel when `splice` is set and the kernel allows it, else through pooled
/// buffers.
fn pipe(session: &Session, already_read: Buffer, pool: &Pool, splice: Option<usize>) -> Pipe {
    match splice {
        None => Pipe::new(already_read, pool.checkout()),
        Some(capacity) => match Pipe::spliced(already_read, capacity) {
            Ok(pipe) => pipe,
            Err((already_read, error)) => {
                log::warn!(
                    "session {}: cannot create kernel pipes, copying instead: {error}",
                    session.uid
                );
                Pipe::new(already_read, pool.checkout())
            }
        },
    }
}

/// The PROXY header the backend must receive; empty when the cluster sends none.
fn backend_header(session: &Session, to_backend: Option<ProxyProtocolConfig>) -> Vec<u8> {
    match (to_backend, &session.received_proxy_header) {
        (Some(ProxyProtocolConfig::RelayHeader), Some(raw)) => raw.clone(),
        (Some(ProxyProtocolConfig::SendHeader | ProxyProtocolConfig::RelayHeader), _) => {
            let mut header = Vec::with_capacity(52);
            proxy_protocol::write_v2(session.client_address, session.local_address, &mut header);
            header
        }
        (Some(ProxyProtocolConfig::ExpandHeader) | None, _) => Vec::new(),
    }
}

/// Drives a piped session until it would block: connect first, then copy.
pub fn ready(session: &mut Session, context: &mut Context<'_>) -> Action {
    let Stage::Pipe(pipe) = &mut session.stage else {
        return Action::Close;
    };
    let Some(back) = session.backs.get_mut(Slot::FIRST) else {
        return match (&session.cluster_id, &session.remote) {
            (Some(cluster_id), _) => Action::Connect {
                slot: Slot::FIRST,
                cluster_id: cluster_id.clone(),
                sticky_id: None,
            },
            (None, Some(remote)) => Action::ConnectRemote {
                slot: Slot::FIRST,
                remote: remote.clone(),
            },
            (None, None) => Action::Close,
        };
    };
    if !back.connected {
        return Action::Wait;
    }
    if pipe.first_run() {
        if let Some(action) = backend_chosen(session, context) {
            return action;
        }
        return ready(session, context);
    }
    let shaping = session
        .shaper
        .as_deref_mut()
        .filter(|faults| faults.is_shaping())
        .map(|faults| (faults, context.now));
    match pipe.run(&mut session.front, &mut back.endpoint, shaping) {
        PipeStatus::Wait {
            front_active,
            back_active,
        } => {
            let timeouts = session.timeouts;
            if front_active {
                session.touch_front(timeouts.front, context.now, context.timers);
            }
            if back_active {
                session.touch_back(Slot::FIRST, timeouts.back, context.now, context.timers);
            }
            Action::Wait
        }
        PipeStatus::Done | PipeStatus::Broken => Action::Close,
        PipeStatus::Reset => {
            shaper::reset_on_close(&session.front);
            shaper::reset_on_close(&back.endpoint);
            Action::Close
        }
    }
}

/// Reads the PROXY header. Returns `None` once the header is read and the next stage is set
/// up, or the action to take while it is not.
pub fn read_proxy_header(session: &mut Session, context: &mut Context<'_>) -> Option<Action> {
    let timer_key = session.timer_key(TimeoutKind::Front);
    let Stage::ExpectProxy(expect) = &mut session.stage else {
        return Some(Action::Close);
    };
    loop {
        match proxy_protocol::parse(expect.buffer.data()) {
            Ok(Some(header)) => {
                let raw = expect
                    .buffer
                    .data()
                    .get(..header.length)
                    .map(<[u8]>::to_vec);
                expect.buffer.consume(header.length);
                let Stage::ExpectProxy(expect) =
                    std::mem::replace(&mut session.stage, Stage::Closed)
                else {
                    return Some(Action::Close);
                };
                session.received_proxy_header = raw;
                session.set_proxy_addresses(header.addresses);
                session.stage = after_proxy(session, context.pool, expect.then, expect.buffer);
                return None;
            }
            Ok(None) if expect.buffer.is_full() => return Some(Action::Close),
            Ok(None) => {}
            Err(error) => {
                log::debug!("session {}: {error}", session.uid);
                return Some(Action::Close);
            }
        }
        if !session.front.readiness.event.contains(Ready::READABLE) {
            return Some(Action::Wait);
        }
        match session.front.read(expect.buffer.space()) {
            Transfer::Moved(count) => {
                expect.buffer.fill(count);
                session.front_timeout.set_after(
                    context.now,
                    session.timeouts.front,
                    timer_key,
                    context.timers,
                );
            }
            Transfer::WouldBlock => return Some(Action::Wait),
            Transfer::Closed | Transfer::Error(_) => return Some(Action::Close),
        }
    }
}

/// Records a TCP connection (metrics and access log) when its session closes.
pub fn record_connection(session: &Session, context: &mut Context<'_>) {
    let back = session.backs.get(Slot::FIRST);
    let record = RequestRecord {
        listener: session.listener_address,
        client: session.client_address,
        protocol: "TCP",
        cluster_id: session.cluster_id.as_deref(),
        backend_id: back.map(|b| b.backend_id.as_str()),
        backend_address: back.map(|b| b.address),
        method: "",
        host: "",
        path: "",
        status: None,
        answered_by_proxy: false,
        bytes_in: session.front.bytes_read,
        bytes_out: session.front.bytes_written,
        connect_time: session.connect_time,
        first_byte_time: None,
        total_time: context.now.duration_since(session.started),
        user_agent: "",
        request_id: "",
        faults: session
            .shaper
            .as_ref()
            .map_or(&[], |faults| faults.labels()),
        decided_by: session.decided_by.as_ref().map(Decider::label),
        backend_protocol: None,
    };
    context.recorder.request_done(&record);
}
