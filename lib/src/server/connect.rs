//! Backend connections of sessions: choosing a backend (sticky, balanced, within the
//! per-address cap), opening the socket for a (session, slot) or reusing a pooled one, the
//! connect outcome, retries within the attempt budget, and giving the connection up.
//!
//! Attempts, retries and holding are per (session, slot): the streams of one HTTP/2 session
//! connect at the same time, each within its own budget, to the cluster each was routed to.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    time::Instant,
};

use log::{debug, error, warn};
use mio::{Interest, Token, net::TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::{Owner, Server, reclaim};
use crate::{
    backends::{BackendKey, BackendLease, PickError},
    session::endpoint::{Endpoint, Ready},
    session::{Action, BackConnection, BackUse, Failure, Session, backs::Slot},
    timer::Timeout,
};

/// Why a backend socket could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenError {
    /// The connect failed at once: another attempt may do better.
    Connect,
    /// The loop cannot watch the socket (or the session is gone): the session closes.
    Register,
    /// The worker is out of descriptors and had no idle backend connection to close: the
    /// request is refused (503), and the backend is not blamed.
    NoDescriptor,
}

impl Server {
    /// Opens a connection to a backend of the cluster in the session's `slot`: the one
    /// `sticky_id` names if it is available, else one the cluster's balancer picks.
    pub(super) fn connect(
        &mut self,
        key: usize,
        slot: Slot,
        cluster_id: Rc<str>,
        sticky_id: Option<&str>,
    ) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        // A TCP session's route already named the cluster: its own id came back. Any other
        // id becomes the one the worker's sessions share.
        if session.io.cluster_id.as_ref() != Some(&cluster_id) {
            session.io.cluster_id = Some(self.cluster_ids.get(&cluster_id, |_| cluster_id.clone()));
        }
        let cluster_id = &*cluster_id;
        session
            .io
            .backs
            .connect_to(slot, session.io.cluster_id.clone());
        let uid = session.io.uid;
        let client_ip = session.io.client_address.ip();
        if session.io.counted_for_ip.as_deref() != Some(cluster_id) {
            let cluster = self.state.clusters.get(cluster_id);
            let limit = cluster
                .and_then(|c| c.max_connections_per_ip)
                .unwrap_or(self.state.max_connections_per_ip);
            // Without a limit (the default) there is no count to look up.
            let is_over = limit > 0 && self.per_ip.count(cluster_id, client_ip) >= limit;
            if is_over {
                debug!(
                    "session {uid}: {client_ip} is over its {limit} connections to `{cluster_id}`"
                );
                let retry_after = cluster
                    .and_then(|c| c.retry_after)
                    .unwrap_or(self.config.retry_after)
                    .as_secs();
                return self.answer_failure(key, slot, Failure::TooManyConnections { retry_after });
            }
            // A keep-alive connection moving to another cluster stops counting for the one
            // it leaves: it counts for the cluster it uses now.
            let left = std::mem::replace(
                &mut session.io.counted_for_ip,
                session.io.cluster_id.clone(),
            );
            self.uncount_per_ip(left, client_ip);
            self.per_ip.add(cluster_id, client_ip);
        }
        let sticky = sticky_id.and_then(|id| self.backends.pick_sticky(cluster_id, id, now));
        let backend =
            match sticky.map_or_else(|| self.backends.pick(cluster_id, Some(client_ip), now), Ok) {
                Ok(backend) => backend,
                Err(PickError::NoBackend(_) | PickError::NoCluster(_)) => {
                    if self.hold(key, slot, cluster_id, sticky_id, now) {
                        return self.after_open(key);
                    }
                    debug!("session {uid}: no backend available in `{cluster_id}`");
                    return self.answer_failure(key, slot, Failure::NoBackend);
                }
            };
        let http2 = self
            .state
            .clusters
            .get(cluster_id)
            .is_some_and(|cluster| cluster.http2);
        if http2 {
            return self.connect_stream(key, slot, backend, now);
        }
        if let Some(back) = self.take_idle(backend, now) {
            return self.reuse(key, slot, backend, back, now);
        }
        let Some((address, backend_id)) = self
            .backends
            .get(backend)
            .map(|b| (b.address, b.id.clone()))
        else {
            return self.answer_failure(key, slot, Failure::NoBackend);
        };
        let Some(lease) = self.backends.lease(backend) else {
            return self.answer_failure(key, slot, Failure::NoBackend);
        };
        match self.open_back(key, slot, address, backend_id, Some(lease), now) {
            Ok(()) => self.after_open(key),
            Err(OpenError::Connect) => {
                self.backends.connect_failed(backend, now);
                self.retry_or_give_up(key, slot)
            }
            Err(OpenError::Register) => Action::Close,
            Err(OpenError::NoDescriptor) => self.refuse_without_descriptor(key, slot),
        }
    }

    /// No descriptor for the connect of the session's `slot`, and none to free: the request
    /// is answered 503 at once (another attempt would find none either).
    pub(super) fn refuse_without_descriptor(&mut self, key: usize, slot: Slot) -> Action {
        if let Some(session) = self.sessions.get_mut(key) {
            debug!("session {}: no descriptor to connect", session.io.uid);
            session.io.backs.reset_attempts(slot);
        }
        self.answer_failure(key, slot, Failure::NoBackend)
    }

    /// While the connect of a slot goes on (a socket being opened, or held until a backend is
    /// available), the session waits for its outcome, unless connects of other slots wait
    /// their turn: it is driven again at the end of this loop turn to ask for them (not at
    /// once, so that each chain of actions stays within the loop's bound however many
    /// streams connect, each with its own retries).
    pub(super) fn after_open(&self, key: usize) -> Action {
        let wants_connects = self.sessions.get(key).is_some_and(Session::wants_connects);
        if wants_connects {
            Action::Yield
        } else {
            Action::Wait
        }
    }

    /// Opens a non-blocking connection to `address` for the session `uid`, registered with
    /// the loop (readable and writable) under a new token that `owner` owns. A session's
    /// connection holds back the handshake's last acknowledgement for its first bytes
    /// ([`open_stream`]); a shared HTTP/2 connection does not.
    pub(super) fn connect_socket(
        &mut self,
        uid: u64,
        address: SocketAddr,
        owner: Owner,
    ) -> Result<(TcpStream, Token), OpenError> {
        let acknowledgement = if matches!(owner, Owner::Back { .. }) {
            Acknowledgement::WithFirstBytes
        } else {
            Acknowledgement::AtOnce
        };
        let mut stream = match open_stream(address, acknowledgement) {
            Ok(stream) => stream,
            // Out of descriptors: closing idle backend connections frees some.
            Err(error) if reclaim::is_out_of_descriptors(&error) => {
                if self.reclaim_descriptors(&error) == 0 {
                    return Err(OpenError::NoDescriptor);
                }
                open_stream(address, acknowledgement).map_err(|error| {
                    debug!("session {uid}: connect to {address} failed at once: {error}");
                    if reclaim::is_out_of_descriptors(&error) {
                        OpenError::NoDescriptor
                    } else {
                        OpenError::Connect
                    }
                })?
            }
            Err(error) => {
                debug!("session {uid}: connect to {address} failed at once: {error}");
                return Err(OpenError::Connect);
            }
        };
        let token = Token(self.sockets.insert(owner));
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register a connection to {address}: {error}");
            self.sockets.remove(token.0);
            return Err(OpenError::Register);
        }
        Ok((stream, token))
    }

    /// Opens a socket to `address` in the session's `slot`, registered with the loop, with the
    /// connect timeout armed; counts the slot's attempt. `backend_id` names where it goes in
    /// logs and the access log; `lease` counts it for its backend (none for a script's
    /// `remote`).
    pub(super) fn open_back(
        &mut self,
        key: usize,
        slot: Slot,
        address: SocketAddr,
        backend_id: String,
        lease: Option<BackendLease>,
        now: Instant,
    ) -> Result<(), OpenError> {
        let Some(session) = self.sessions.get_mut(key) else {
            return Err(OpenError::Register);
        };
        session.io.backs.count_attempt(slot);
        let uid = session.io.uid;
        let (stream, token) =
            self.connect_socket(uid, address, Owner::Back { session: key, slot })?;
        let Some(session) = self.sessions.get_mut(key) else {
            self.sockets.remove(token.0);
            return Err(OpenError::Register);
        };
        session.io.backs.insert(
            slot,
            BackConnection {
                endpoint: Endpoint::new(stream, token),
                lease,
                backend_id,
                address,
                connected: false,
                connect_started: now,
                timeout: Timeout::default(),
            },
        );
        let connect = session.io.timeouts.connect;
        session.io.touch_back(slot, connect, now, &mut self.timers);
        Ok(())
    }

    /// Gives the session's `slot` an idle connection to `backend` from the pool.
    pub(super) fn reuse(
        &mut self,
        key: usize,
        slot: Slot,
        backend: BackendKey,
        mut back: BackConnection,
        now: Instant,
    ) -> Action {
        if let Some(owner) = self.sockets.get_mut(back.endpoint.token.0) {
            *owner = Owner::Back { session: key, slot };
        }
        // The socket was writable when pooled; edge-triggered, it stays so until a write fills it.
        back.endpoint.readiness.event.insert(Ready::WRITABLE);
        let sticky = self.backends.sticky_name(backend);
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.io.backs.insert(slot, back);
        session.io.backs.reset_attempts(slot);
        session.io.connect_time = None;
        session.backend_connected(slot, &sticky, BackUse::Reused);
        let after = session.io.timeouts.back;
        session.io.touch_back(slot, after, now, &mut self.timers);
        self.run_session(key)
    }

    /// Takes the backend connection of the session's `slot` away: into the pool when it is
    /// clean and idle, else closed. (A stream of a shared connection is closed: its
    /// connection stays with the loop.)
    pub(super) fn release_back(&mut self, key: usize, slot: Slot) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let reusable = session.is_back_reusable(slot);
        let Some(back) = session.io.backs.take(slot) else {
            return;
        };
        if reusable && !back.endpoint.speaks_h2() {
            self.keep_idle(back);
        } else {
            self.drop_back(back);
        }
    }

    /// Takes every backend connection of the session away (see [`Server::release_back`]).
    pub(super) fn release_backs(&mut self, key: usize) {
        while let Some(slot) = self
            .sessions
            .get(key)
            .and_then(|session| session.io.backs.iter().next())
            .map(|(slot, _)| slot)
        {
            self.release_back(key, slot);
        }
    }

    /// The backend connection of `slot` is up: account for it and start its back idle
    /// timeout.
    pub(super) fn connected(&mut self, key: usize, slot: Slot) {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(back) = session.io.backs.get(slot) {
            let connect_time = now.duration_since(back.connect_started);
            // A stream's connection counted its connect once (`Server::mux_event`).
            let counted = back.endpoint.speaks_h2();
            if let Some(lease) = back.lease.as_ref().filter(|_| !counted) {
                self.backends.connect_succeeded(lease.key(), connect_time);
            }
            session.io.connect_time = Some(connect_time);
            if let Some(cluster_id) = session.io.backs.cluster_id(slot).filter(|_| !counted) {
                self.recorder
                    .metrics
                    .connected(cluster_id, &back.backend_id, connect_time);
            }
            debug!("session {}: connected to {}", session.io.uid, back.address);
            // A stream shares its connection: a failure before its response (a GOAWAY
            // refusing it, the connection lost to another stream's doing) may say nothing
            // of its request, which may then go again as on a kept connection.
            let back_use = if counted {
                BackUse::Reused
            } else {
                BackUse::New
            };
            if let Some(backend) = back.lease.as_ref().and_then(|l| self.backends.get(l.key())) {
                session.backend_connected(slot, backend.sticky_name(), back_use);
            }
        }
        session.io.backs.reset_attempts(slot);
        let after = session.io.timeouts.back;
        session.io.touch_back(slot, after, now, &mut self.timers);
    }

    /// The backend connection of `slot` is up: accounted for, as are those of the other slots
    /// whose connects ended meanwhile (the streams of an HTTP/2 session connect at the same
    /// time, and many may end in one turn: one round of the loop's chain of actions for each
    /// would exceed its bound), then the session runs.
    pub(super) fn connected_and_run(&mut self, key: usize, mut slot: Slot) -> Action {
        loop {
            self.connected(key, slot);
            // Each round accounts for another slot whose connect just ended: the session's
            // slots bound the rounds.
            let action = self.run_session(key);
            self.acknowledge_from_now_on(key, slot);
            match action {
                Action::Connected(next) => slot = next,
                action => return action,
            }
        }
    }

    /// The session ran once with the connection of `slot` up: the acknowledgement held back
    /// for its first bytes ([`Acknowledgement::WithFirstBytes`]) left with them, or leaves
    /// now if it sent none (a client that has not spoken yet, a backend that speaks first).
    /// From now on the connection acknowledges as the kernel does by default, at once while
    /// it is young: a backend that writes its answer in small pieces without `TCP_NODELAY`
    /// is not held by Nagle's algorithm waiting for a delayed acknowledgement.
    fn acknowledge_from_now_on(&self, key: usize, slot: Slot) {
        let stream = self
            .sessions
            .get(key)
            .and_then(|session| session.io.backs.get(slot))
            .and_then(|back| back.endpoint.tcp());
        if let Some(stream) = stream {
            let _ = SockRef::from(stream).set_tcp_quickack(true);
        }
    }

    /// The connect failed before any byte was sent: forget that connection and try another
    /// backend, within the attempt budget.
    pub(super) fn connect_failed(&mut self, key: usize, slot: Slot) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        if let Some(back) = session.io.backs.take(slot) {
            warn!(
                "session {}: connecting to backend {} failed",
                session.io.uid, back.address
            );
            if let Some(cluster_id) = session.io.backs.cluster_id(slot) {
                let retried = session.io.backs.attempts(slot) < self.config.connect_attempts;
                self.recorder
                    .metrics
                    .connect_failed(cluster_id, &back.backend_id, retried);
            }
            if back.endpoint.speaks_h2() {
                self.stream_connect_failed(&back, now);
            } else if let Some(lease) = &back.lease {
                self.backends.connect_failed(lease.key(), now);
            }
            self.drop_back(back);
        }
        self.retry_or_give_up(key, slot)
    }

    /// After a failed connect in `slot`: another attempt within the slot's budget, else the
    /// session's answer for no backend (and the slot's next connect starts afresh).
    pub(super) fn retry_or_give_up(&mut self, key: usize, slot: Slot) -> Action {
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        if session.io.backs.attempts(slot) >= self.config.connect_attempts {
            session.io.backs.reset_attempts(slot);
            return self.answer_failure(key, slot, Failure::NoBackend);
        }
        match (
            session.io.backs.shared_cluster_id(slot),
            session.io.remote(),
        ) {
            (Some(cluster_id), _) => Action::Connect {
                slot,
                cluster_id: Rc::clone(cluster_id),
                sticky_id: None,
            },
            (None, Some(remote)) => Action::ConnectRemote {
                slot,
                remote: remote.clone(),
            },
            (None, None) => self.answer_failure(key, slot, Failure::NoBackend),
        }
    }

    /// Closes a backend connection; its lease ends with it. Closing the socket removes it
    /// from epoll: no `deregister` call is needed, as the descriptor is not shared.
    pub(super) fn drop_back(&mut self, back: BackConnection) {
        let token = back.endpoint.token;
        self.sockets.try_remove(token.0);
        if back.endpoint.speaks_h2() {
            // The token goes back to the slab: news of the stream not delivered yet would
            // reach whatever takes the token next.
            self.wakes.forget(token);
        }
        drop(back);
    }

    /// A connection of `client_ip` stops counting for `cluster_id` (for
    /// `max_connections_per_ip`).
    pub(super) fn uncount_per_ip(&mut self, cluster_id: Option<Rc<str>>, client_ip: IpAddr) {
        let Some(cluster_id) = cluster_id else {
            return;
        };
        self.per_ip.remove(&cluster_id, client_ip);
    }
}

/// When a new backend connection acknowledges the backend's side of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Acknowledgement {
    /// As the kernel does by default: an ACK alone as soon as the connect ends.
    AtOnce,
    /// With the first bytes sent, in their segment (`TCP_QUICKACK` off before the connect,
    /// like HAProxy's `option tcp-smart-connect`): one packet fewer per connection, and the
    /// backend accepts it with the bytes already there. The kernel sends it alone after
    /// its delayed-acknowledgement timeout, up to 200 ms, if nothing is sent: the session's
    /// first run once connected ends the hold ([`Server::connected_and_run`]).
    WithFirstBytes,
}

/// Opens a non-blocking TCP connection to `address`, without Nagle's delay, its
/// handshake's last acknowledgement sent as `acknowledgement` says.
pub(super) fn open_stream(
    address: SocketAddr,
    acknowledgement: Acknowledgement,
) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    // Best effort: a socket without them still works, as the kernel's default.
    let _ = socket.set_tcp_nodelay(true);
    if acknowledgement == Acknowledgement::WithFirstBytes {
        let _ = socket.set_tcp_quickack(false);
    }
    match socket.connect(&address.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    Ok(TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        time::Duration,
    };

    use mio::{Events, Poll};

    use super::*;
    use crate::protocol::pipe::tests::segments_sent;

    /// Less than the kernel's delayed-acknowledgement timeout (200 ms on Linux), after which a
    /// held acknowledgement leaves alone: a check made later than this after the connect says
    /// nothing, and is made again on a new connection.
    const BEFORE_DELAYED_ACK: Duration = Duration::from_millis(100);

    /// Opens a connection to `listener` as `acknowledgement` says and waits until it is
    /// established (writable); with when the connect began.
    fn connected(listener: &TcpListener, acknowledgement: Acknowledgement) -> (TcpStream, Instant) {
        let began = Instant::now();
        let mut stream = open_stream(listener.local_addr().unwrap(), acknowledgement).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut stream, Token(0), Interest::WRITABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(events.iter().any(|event| event.is_writable()));
        (stream, began)
    }

    /// Runs `check` on new connections until one runs within [`BEFORE_DELAYED_ACK`] of its
    /// connect (a loaded machine may pause the test longer), at most ten times.
    fn within_delayed_ack(mut check: impl FnMut() -> Option<()>) {
        let settled = (0..10).any(|_| check().is_some());
        assert!(
            settled,
            "no attempt ran within {BEFORE_DELAYED_ACK:?} of its connect"
        );
    }

    /// A session's backend connection sends its first bytes with the handshake's last
    /// acknowledgement: a SYN and one segment of data, where the kernel's default sends a
    /// SYN, an ACK, then the data.
    #[test]
    fn the_first_bytes_carry_the_last_acknowledgement_of_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for (acknowledgement, segments) in [
            (Acknowledgement::AtOnce, 3),
            (Acknowledgement::WithFirstBytes, 2),
        ] {
            within_delayed_ack(|| {
                let (mut stream, began) = connected(&listener, acknowledgement);
                stream.write_all(b"hello").unwrap();
                let in_time = began.elapsed() < BEFORE_DELAYED_ACK;
                let (mut accepted, _) = listener.accept().unwrap();
                let mut received = [0; 5];
                accepted.read_exact(&mut received).unwrap();
                assert_eq!(&received, b"hello");
                in_time.then_some(())?;
                assert_eq!(segments_sent(&stream), segments, "{acknowledgement:?}");
                Some(())
            });
        }
    }

    /// With nothing to send, the held acknowledgement leaves when asked: the backend
    /// accepts the connection at once (a backend that speaks first is not kept waiting for
    /// the kernel's delayed-acknowledgement timeout).
    #[test]
    fn with_nothing_to_send_the_acknowledgement_leaves_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        within_delayed_ack(|| {
            let (stream, began) = connected(&listener, Acknowledgement::WithFirstBytes);
            let accepted_early = listener.accept().is_ok();
            let sent = segments_sent(&stream);
            SockRef::from(&stream).set_tcp_quickack(true).unwrap();
            let in_time = began.elapsed() < BEFORE_DELAYED_ACK;
            let sent_after = segments_sent(&stream);
            let accepted = listener.accept().is_ok();
            in_time.then_some(())?;
            assert!(!accepted_early, "accepted before the ACK");
            assert_eq!(sent, 1, "the SYN alone");
            assert_eq!(sent_after, 2, "the SYN, then the ACK");
            assert!(accepted);
            Some(())
        });
    }
}
