//! TCP mode: every connection accepted on a TCP listener is piped to a backend of the cluster
//! its first bytes chose among the listener's frontends (content routing), or of the
//! listener's default frontend.
//!
//! A session goes `ExpectProxy` (when the listener expects a PROXY header) → `Sniff` (where
//! the connection goes, [`crate::protocol::sniff`]) → `Pipe`. The client's first bytes wait in
//! their buffer (the very buffer the PROXY header was read into, never a copy) until the pipe
//! replays them; a PROXY header for the backend, when the cluster sends one, goes ahead of
//! them from storage of its own.

use std::{rc::Rc, sync::Arc, time::Duration};

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
    session::{Action, Context, Outcome, SessionIo, Stage, backs::Slot},
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
pub fn first_stage(io: &mut SessionIo, pool: &Pool, expect_proxy: bool, then: AfterProxy) -> Stage {
    if expect_proxy {
        Stage::ExpectProxy(Box::new(ExpectProxy {
            buffer: pool.checkout(),
            then,
        }))
    } else {
        after_proxy(io, pool, then, pool.checkout())
    }
}

/// The stage that follows the PROXY header (or the accept, when none is expected), starting
/// with the client's bytes read so far, `already_read`. TLS starts here and nowhere else.
fn after_proxy(io: &mut SessionIo, pool: &Pool, then: AfterProxy, already_read: Buffer) -> Stage {
    match then {
        AfterProxy::Pipe {
            splice,
            inspect_timeout,
        } => Stage::Sniff(Box::new(Sniff::new(already_read, splice, inspect_timeout))),
        AfterProxy::Http(None) => Stage::Http(Box::new(Http::with_input(pool, already_read))),
        AfterProxy::Http(Some(config)) => {
            // What followed the PROXY header is the start of the TLS stream (the ClientHello).
            match io.front.start_tls(config, pool.buffer_size(), already_read) {
                Ok(()) => Stage::Http(Box::new(Http::new(pool))),
                Err(error) => {
                    log::error!("session {}: cannot start TLS: {error}", io.uid);
                    Stage::Closed
                }
            }
        }
    }
}

/// Reads the client's first bytes until the listener's content router decides where the
/// connection goes, then turns into the stage that carries it out (its pipe, most often).
pub fn sniff(sniff: &mut Sniff, io: &mut SessionIo, context: &mut Context<'_>) -> Outcome {
    let timer_key = io.timer_key(TimeoutKind::Front);
    loop {
        let mut router = context.content_routers.get_mut(&io.listener_address);
        let verdict = sniff.decide(router.as_deref_mut(), io.client_address);
        if let (Some(router), false) = (router, verdict == Verdict::NeedMore) {
            router.record_decision_time(context.now.saturating_duration_since(io.started));
            io.set_decided_by(router.last_decider());
        }
        match verdict {
            Verdict::NeedMore => {}
            Verdict::Route(cluster_id) => {
                return route(sniff, io, context, Some(cluster_id), None, None);
            }
            Verdict::Close => return Outcome::Act(Action::Close),
            Verdict::Decision(decision) => return carry_out(sniff, io, context, decision),
        }
        // The router waits only while more bytes may come.
        if sniff.is_complete() {
            return Outcome::Act(Action::Close);
        }
        if sniff.inspection == Inspection::Starting {
            sniff.inspection = Inspection::Waiting;
            io.front_timeout.set_after(
                context.now,
                sniff.inspect_timeout,
                timer_key,
                context.timers,
            );
        }
        if !io.front.readiness.event.contains(Ready::READABLE) {
            return Outcome::Act(Action::Wait);
        }
        match io.front.read(sniff.buffer.space()) {
            Transfer::Moved(count) => sniff.buffer.fill(count),
            Transfer::WouldBlock => return Outcome::Act(Action::Wait),
            Transfer::Closed => sniff.inspection = Inspection::Over,
            Transfer::Error(_) => return Outcome::Act(Action::Close),
        }
    }
}

/// Carries out what a script or a program decided: a connection (to a cluster or a
/// `remote`), or an answer by the proxy ([`Reply`]).
fn carry_out(
    sniff: &mut Sniff,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    decision: Decision,
) -> Outcome {
    let (bytes, file) = match decision {
        Decision::Connect {
            target,
            data,
            reply,
        } => {
            let cluster_id = match target {
                Target::Cluster(cluster_id) => Some(Rc::from(cluster_id)),
                Target::Remote(remote) => {
                    io.rare_mut().remote = Some(remote);
                    None
                }
            };
            return route(sniff, io, context, cluster_id, data, reply);
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
                    io.uid,
                    path.display()
                );
                return Outcome::Act(Action::Close);
            }
        },
        // The router answers `NeedMore` for a wait, never a decision.
        Decision::Wait => return Outcome::Act(Action::Close),
    };
    let front = io.timeouts.front;
    io.touch_front(front, context.now, context.timers);
    Outcome::Become {
        next: Stage::Reply(Box::new(Reply::new(bytes, file))),
        then: None,
    }
}

/// Sends the proxy's answer to the client, then closes.
pub fn reply(reply: &mut Reply, io: &mut SessionIo) -> Action {
    match reply.run(&mut io.front) {
        ReplyStatus::Wait => Action::Wait,
        ReplyStatus::Done => Action::Close,
    }
}

/// The backend the connection was sent to cannot be reached: the listener's script hears of
/// it (its `proxy_error(peer, message)`), and the connection closes.
pub fn backend_unreachable(io: &SessionIo, context: &mut Context<'_>) -> Action {
    let message = match (io.remote(), &io.cluster_id) {
        (Some(remote), _) => format!("cannot connect to {remote}"),
        (None, Some(cluster_id)) => format!("no backend of cluster {cluster_id} can be reached"),
        (None, None) => "no backend can be reached".to_string(),
    };
    tell_unreachable(io, context, &message)
}

/// Calls the listener's script's `proxy_error(peer, message)`, then closes.
pub fn tell_unreachable(io: &SessionIo, context: &mut Context<'_>, message: &str) -> Action {
    log::debug!("session {}: {message}", io.uid);
    if let Some(router) = context.content_routers.get_mut(&io.listener_address) {
        router.proxy_error(io.client_address, message);
    }
    Action::Close
}

/// Sends the connection to a backend of `cluster_id`, or to the `remote` a script chose
/// (already in the session) when there is none: its pipe replays the bytes read so far (or
/// `data` instead, when a script says so), after the PROXY header a target cluster asks for;
/// the client gets `reply` first. The faults on the route may decide otherwise
/// ([`apply_plan`]).
fn route(
    sniff: &mut Sniff,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    cluster_id: Option<Rc<str>>,
    data: Option<Vec<u8>>,
    reply: Option<Vec<u8>>,
) -> Outcome {
    let plan = if context.faults.is_empty() {
        None
    } else {
        let route = Route {
            listener: io.listener_address,
            cluster_id: cluster_id.as_deref(),
            backend_id: None,
            hostname: None,
            client: io.client_address.ip(),
        };
        Some(context.faults.connection(&route, context.now)).filter(|plan| !plan.is_clean())
    };
    let to_backend = cluster_id
        .as_deref()
        .and_then(|id| context.clusters.get(id))
        .and_then(|cluster| cluster.proxy_protocol);
    if cluster_id.is_some() {
        io.cluster_id = cluster_id;
    }
    let mut buffer = sniff.buffer.take();
    let mut head = backend_header(io, to_backend);
    if let Some(data) = data {
        buffer.clear();
        head.extend_from_slice(&data);
    }
    let pipe = pipe(buffer, context.pool, sniff.splice)
        .with_backend_header(head)
        .with_client_header(reply.unwrap_or_default());
    let waiting = pipe.waiting_for_backend();
    let front = io.timeouts.front;
    io.touch_front(front, context.now, context.timers);
    let fate = match plan {
        Some(plan) => apply_plan(io, context, plan, waiting),
        None => Fate::Proxy,
    };
    let (next, then) = match fate {
        Fate::Proxy => (Stage::Pipe(pipe), None),
        Fate::Close => (Stage::Pipe(pipe), Some(Action::Close)),
        Fate::Linger => (Stage::Flushing, Some(Action::Wait)),
    };
    Outcome::Become { next, then }
}

/// What the faults on a piped connection leave of it.
enum Fate {
    /// The pipe goes on.
    Proxy,
    /// The connection closes at once.
    Close,
    /// The connection was recorded and stays open, reading nothing, until its front timeout
    /// ([`linger`]): the session goes on as `Stage::Flushing`.
    Linger,
}

/// How long a connection answered by a fault (`error`) stays open after the answer, reading
/// nothing: closing at once, with the client's request unread, would reset the connection
/// and could destroy the answer before the client reads it.
const ANSWER_LINGER: Duration = Duration::from_millis(500);

/// Acts on what the faults decided for a piped connection, `waiting` bytes of the client
/// already read: close it at once (`blackout`), refuse it as if its cluster had no backend up
/// (`down`, `transient`), answer it and close (`error`), or shape its bytes.
fn apply_plan(
    io: &mut SessionIo,
    context: &mut Context<'_>,
    plan: ConnectionPlan,
    waiting: usize,
) -> Fate {
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
    match io.shaper.as_mut() {
        Some(earlier) => earlier.absorb(faults),
        None => io.shaper = Some(Box::new(faults)),
    }
    match verdict {
        ConnectionVerdict::Proxy => Fate::Proxy,
        ConnectionVerdict::Close => Fate::Close,
        ConnectionVerdict::NoBackend => {
            // As a cluster without backend: held for its hold timeout when it holds, then
            // closed.
            let hold = io
                .cluster_id
                .as_deref()
                .and_then(|id| context.clusters.get(id))
                .and_then(|cluster| cluster.hold_timeout)
                .filter(|timeout| !timeout.is_zero());
            match hold {
                Some(timeout) => linger(io, context, timeout),
                None => Fate::Close,
            }
        }
        ConnectionVerdict::Answer(bytes) => {
            let _ = io.front.write(bytes);
            io.front.shutdown_write();
            linger(io, context, ANSWER_LINGER)
        }
    }
}

/// Records the connection, then keeps it open, reading nothing, for `duration`, and closes
/// it.
fn linger(io: &mut SessionIo, context: &mut Context<'_>, duration: Duration) -> Fate {
    record_connection(io, context);
    io.touch_front(duration, context.now, context.timers);
    Fate::Linger
}

/// Draws the faults on the backend of a piped connection once it is chosen, and acts on
/// them as on those of its cluster; `None` when none acts.
fn backend_chosen(pipe: &Pipe, io: &mut SessionIo, context: &mut Context<'_>) -> Option<Fate> {
    let back = io.backs.get(Slot::FIRST)?;
    let cluster_id = io.cluster_id.as_deref()?;
    if !context.faults.targets_backends_of(cluster_id) {
        return None;
    }
    let route = Route {
        listener: io.listener_address,
        cluster_id: Some(cluster_id),
        backend_id: Some(&back.backend_id),
        hostname: None,
        client: io.client_address.ip(),
    };
    let plan = context.faults.backend_connection(&route, context.now);
    if plan.is_clean() {
        return None;
    }
    let waiting = pipe.waiting_for_backend();
    Some(apply_plan(io, context, plan, waiting))
}

/// A pipe whose first bytes for the backend are `already_read` (the client's bytes read so
/// far), through pooled buffers; with `splice`, each direction moves to a kernel pipe of that
/// capacity once its bytes come in bulk.
fn pipe(already_read: Buffer, pool: &Pool, splice: Option<usize>) -> Pipe {
    let pipe = Pipe::new(already_read, pool.checkout());
    match splice {
        Some(capacity) => pipe.splicing_bulk(capacity),
        None => pipe,
    }
}

/// The PROXY header the backend must receive; empty when the cluster sends none.
fn backend_header(io: &SessionIo, to_backend: Option<ProxyProtocolConfig>) -> Vec<u8> {
    match (to_backend, io.received_proxy_header()) {
        (Some(ProxyProtocolConfig::RelayHeader), Some(raw)) => raw.clone(),
        (Some(ProxyProtocolConfig::SendHeader | ProxyProtocolConfig::RelayHeader), _) => {
            let mut header = Vec::with_capacity(52);
            proxy_protocol::write_v2(io.client_address, io.local_address, &mut header);
            header
        }
        (Some(ProxyProtocolConfig::ExpandHeader) | None, _) => Vec::new(),
    }
}

/// Drives a piped session until it would block: connect first, then copy.
pub fn ready(pipe: &mut Pipe, io: &mut SessionIo, context: &mut Context<'_>) -> Outcome {
    Outcome::Act(match run_pipe(pipe, io, context) {
        Ok(action) => action,
        Err(Fate::Proxy) => return ready(pipe, io, context),
        Err(Fate::Close) => Action::Close,
        Err(Fate::Linger) => {
            return Outcome::Become {
                next: Stage::Flushing,
                then: Some(Action::Wait),
            };
        }
    })
}

/// [`ready`]'s work, until the faults drawn on the backend once it is chosen
/// ([`backend_chosen`]) decide the connection's fate (`Err`).
fn run_pipe(
    pipe: &mut Pipe,
    io: &mut SessionIo,
    context: &mut Context<'_>,
) -> Result<Action, Fate> {
    let Some(back) = io.backs.get_mut(Slot::FIRST) else {
        return Ok(match (&io.cluster_id, io.remote()) {
            (Some(cluster_id), _) => Action::Connect {
                slot: Slot::FIRST,
                cluster_id: Rc::clone(cluster_id),
                sticky_id: None,
            },
            (None, Some(remote)) => Action::ConnectRemote {
                slot: Slot::FIRST,
                remote: remote.clone(),
            },
            (None, None) => Action::Close,
        });
    };
    if !back.connected {
        return Ok(Action::Wait);
    }
    if pipe.first_run() {
        return Err(backend_chosen(pipe, io, context).unwrap_or(Fate::Proxy));
    }
    let shaping = io
        .shaper
        .as_deref_mut()
        .filter(|faults| faults.is_shaping())
        .map(|faults| (faults, context.now));
    match pipe.run(&mut io.front, &mut back.endpoint, shaping) {
        PipeStatus::Wait {
            front_active,
            back_active,
        } => {
            let timeouts = *io.timeouts;
            if front_active {
                io.touch_front(timeouts.front, context.now, context.timers);
            }
            if back_active {
                io.touch_back(Slot::FIRST, timeouts.back, context.now, context.timers);
            }
            Ok(Action::Wait)
        }
        PipeStatus::Done | PipeStatus::Broken => Ok(Action::Close),
        PipeStatus::Reset => {
            shaper::reset_on_close(&io.front);
            shaper::reset_on_close(&back.endpoint);
            Ok(Action::Close)
        }
    }
}

/// Reads the PROXY header, then turns into the stage that follows it.
pub fn read_proxy_header(
    expect: &mut ExpectProxy,
    io: &mut SessionIo,
    context: &mut Context<'_>,
) -> Outcome {
    let timer_key = io.timer_key(TimeoutKind::Front);
    loop {
        match proxy_protocol::parse(expect.buffer.data()) {
            Ok(Some(header)) => {
                let raw = expect
                    .buffer
                    .data()
                    .get(..header.length)
                    .map(<[u8]>::to_vec);
                expect.buffer.consume(header.length);
                io.rare_mut().received_proxy_header = raw;
                io.set_proxy_addresses(header.addresses);
                let already_read = expect.buffer.take();
                let next = after_proxy(io, context.pool, expect.then.clone(), already_read);
                return Outcome::Become { next, then: None };
            }
            Ok(None) if expect.buffer.is_full() => return Outcome::Act(Action::Close),
            Ok(None) => {}
            Err(error) => {
                log::debug!("session {}: {error}", io.uid);
                return Outcome::Act(Action::Close);
            }
        }
        if !io.front.readiness.event.contains(Ready::READABLE) {
            return Outcome::Act(Action::Wait);
        }
        match io.front.read(expect.buffer.space()) {
            Transfer::Moved(count) => {
                expect.buffer.fill(count);
                io.front_timeout.set_after(
                    context.now,
                    io.timeouts.front,
                    timer_key,
                    context.timers,
                );
            }
            Transfer::WouldBlock => return Outcome::Act(Action::Wait),
            Transfer::Closed | Transfer::Error(_) => return Outcome::Act(Action::Close),
        }
    }
}

/// Records a TCP connection (metrics and access log) when its session closes.
pub fn record_connection(io: &SessionIo, context: &mut Context<'_>) {
    let back = io.backs.get(Slot::FIRST);
    let record = RequestRecord {
        listener: io.listener_address,
        client: io.client_address,
        protocol: "TCP",
        cluster_id: io.cluster_id.as_deref(),
        backend_id: back.map(|b| b.backend_id.as_str()),
        backend_address: back.map(|b| b.address),
        method: "",
        host: "",
        path: "",
        status: None,
        answered_by_proxy: false,
        bytes_in: io.front.bytes_read,
        bytes_out: io.front.bytes_written,
        connect_time: io.connect_time,
        first_byte_time: None,
        total_time: context.now.duration_since(io.started),
        user_agent: "",
        request_id: "",
        faults: io.shaper.as_ref().map_or(&[], |faults| faults.labels()),
        decided_by: io.decided_by().map(Decider::label),
        backend_protocol: None,
    };
    context.recorder.request_done(&record);
}

#[cfg(test)]
mod tests;
