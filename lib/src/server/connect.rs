//! Backend connections of sessions: choosing a backend (sticky, balanced, within the
//! per-address cap), opening the socket for a (session, slot) or reusing a pooled one, the
//! connect outcome, retries within the attempt budget, and giving the connection up.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use log::{debug, error, warn};
use mio::{Interest, Token, net::TcpStream};

use super::{Owner, Server};
use crate::{
    backends::{BackendKey, BackendLease, PickError},
    session::endpoint::{Endpoint, Ready},
    session::{Action, BackConnection, BackUse, Failure, backs::Slot},
    timer::Timeout,
};

/// Why a backend socket could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenError {
    /// The connect failed at once: another attempt may do better.
    Connect,
    /// The loop cannot watch the socket (or the session is gone): the session closes.
    Register,
}

impl Server {
    /// Opens a connection to a backend of the cluster in the session's `slot`: the one
    /// `sticky_id` names if it is available, else one the cluster's balancer picks.
    pub(super) fn connect(
        &mut self,
        key: usize,
        slot: Slot,
        cluster_id: &str,
        sticky_id: Option<&str>,
    ) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.io.cluster_id = Some(cluster_id.to_string());
        let uid = session.io.uid;
        let client_ip = session.io.client_address.ip();
        if session.io.counted_for_ip.as_deref() != Some(cluster_id) {
            let cluster = self.state.clusters.get(cluster_id);
            let limit = cluster
                .and_then(|c| c.max_connections_per_ip)
                .unwrap_or(self.state.max_connections_per_ip);
            let count = self
                .per_ip
                .get(&(cluster_id.to_string(), client_ip))
                .copied()
                .unwrap_or(0);
            if limit > 0 && count >= limit {
                debug!(
                    "session {uid}: {client_ip} is over its {limit} connections to `{cluster_id}`"
                );
                let retry_after = cluster
                    .and_then(|c| c.retry_after)
                    .unwrap_or(self.config.retry_after)
                    .as_secs();
                return self.answer_failure(key, Failure::TooManyConnections { retry_after });
            }
            // A keep-alive connection moving to another cluster stops counting for the one
            // it leaves: it counts for the cluster it uses now.
            let left = session.io.counted_for_ip.replace(cluster_id.to_string());
            self.uncount_per_ip(left, client_ip);
            *self
                .per_ip
                .entry((cluster_id.to_string(), client_ip))
                .or_insert(0) += 1;
        }
        let sticky = sticky_id.and_then(|id| self.backends.pick_sticky(cluster_id, id, now));
        let backend =
            match sticky.map_or_else(|| self.backends.pick(cluster_id, Some(client_ip), now), Ok) {
                Ok(backend) => backend,
                Err(PickError::NoBackend(_) | PickError::NoCluster(_)) => {
                    if let Some(held) = self.hold(key, slot, cluster_id, sticky_id, now) {
                        return held;
                    }
                    debug!("session {uid}: no backend available in `{cluster_id}`");
                    return self.answer_failure(key, Failure::NoBackend);
                }
            };
        let http2 = self
            .state
            .clusters
            .get(cluster_id)
            .is_some_and(|cluster| cluster.http2);
        if let Some(back) = self.take_idle(backend, now) {
            // A pooled connection speaks what its cluster spoke when it was opened.
            if back.endpoint.speaks_h2() == http2 {
                return self.reuse(key, slot, backend, back, now);
            }
            self.drop_back(back);
        }
        let Some((address, backend_id)) = self
            .backends
            .get(backend)
            .map(|b| (b.address, b.id.clone()))
        else {
            return self.answer_failure(key, Failure::NoBackend);
        };
        let Some(lease) = self.backends.lease(backend) else {
            return self.answer_failure(key, Failure::NoBackend);
        };
        match self.open_back(key, slot, address, backend_id, Some(lease), now) {
            Ok(()) => {
                if http2 {
                    self.speak_h2(key, slot, now);
                }
                Action::Wait
            }
            Err(OpenError::Connect) => {
                self.backends.connect_failed(backend, now);
                self.retry_or_give_up(key, slot)
            }
            Err(OpenError::Register) => Action::Close,
        }
    }

    /// Opens a socket to `address` in the session's `slot`, registered with the loop, with the
    /// connect timeout armed; counts the attempt. `backend_id` names where it goes in logs and
    /// the access log; `lease` counts it for its backend (none for a script's `remote`).
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
        session.io.connect_attempts += 1;
        let mut stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            Err(error) => {
                debug!(
                    "session {}: connect to {address} failed at once: {error}",
                    session.io.uid
                );
                return Err(OpenError::Connect);
            }
        };
        let _ = stream.set_nodelay(true);
        let token = Token(self.sockets.insert(Owner::Back { session: key, slot }));
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register a connection to {address}: {error}");
            self.sockets.remove(token.0);
            return Err(OpenError::Register);
        }
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

    /// Makes the new connection of the session's `slot` an HTTP/2 one (cleartext, prior
    /// knowledge), the backend held to the HTTP/2 limits of the session's listener.
    fn speak_h2(&mut self, key: usize, slot: Slot, now: Instant) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let limits = self
            .http_listeners
            .get(&session.io.listener_address)
            .map(|listener| listener.config.h2)
            .unwrap_or_default();
        if let Some(back) = session.io.backs.get_mut(slot) {
            back.endpoint.start_h2(limits, now);
        }
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
        let sticky = self
            .backends
            .get(backend)
            .map(|b| b.sticky_id.clone().unwrap_or_else(|| b.id.clone()))
            .unwrap_or_default();
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.io.backs.insert(slot, back);
        session.io.connect_time = None;
        session.backend_connected(slot, &sticky, BackUse::Reused);
        let after = session.io.timeouts.back;
        session.io.touch_back(slot, after, now, &mut self.timers);
        self.run_session(key)
    }

    /// Takes the backend connection of the session's `slot` away: into the pool when it is
    /// clean and idle, else closed.
    pub(super) fn release_back(&mut self, key: usize, slot: Slot) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let reusable = session.is_back_reusable(slot);
        let Some(back) = session.io.backs.take(slot) else {
            return;
        };
        if reusable {
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
            if let Some(lease) = &back.lease {
                self.backends.connect_succeeded(lease.key(), connect_time);
            }
            session.io.connect_time = Some(connect_time);
            if let Some(cluster_id) = &session.io.cluster_id {
                self.recorder
                    .metrics
                    .connected(cluster_id, &back.backend_id, connect_time);
            }
            debug!("session {}: connected to {}", session.io.uid, back.address);
            if let Some(backend) = back.lease.as_ref().and_then(|l| self.backends.get(l.key())) {
                session.backend_connected(
                    slot,
                    backend.sticky_id.as_deref().unwrap_or(&backend.id),
                    BackUse::New,
                );
            }
        }
        session.io.connect_attempts = 0;
        let after = session.io.timeouts.back;
        session.io.touch_back(slot, after, now, &mut self.timers);
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
            if let Some(cluster_id) = &session.io.cluster_id {
                let retried = session.io.connect_attempts < self.config.connect_attempts;
                self.recorder
                    .metrics
                    .connect_failed(cluster_id, &back.backend_id, retried);
            }
            if let Some(lease) = &back.lease {
                self.backends.connect_failed(lease.key(), now);
            }
            self.drop_back(back);
        }
        self.retry_or_give_up(key, slot)
    }

    /// After a failed connect in `slot`: another attempt within the budget, else the
    /// session's answer for no backend.
    pub(super) fn retry_or_give_up(&mut self, key: usize, slot: Slot) -> Action {
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        if session.io.connect_attempts >= self.config.connect_attempts {
            return self.answer_failure(key, Failure::NoBackend);
        }
        match (&session.io.cluster_id, &session.io.remote) {
            (Some(cluster_id), _) => Action::Connect {
                slot,
                cluster_id: cluster_id.clone(),
                sticky_id: None,
            },
            (None, Some(remote)) => Action::ConnectRemote {
                slot,
                remote: remote.clone(),
            },
            (None, None) => self.answer_failure(key, Failure::NoBackend),
        }
    }

    /// Closes a backend connection; its lease ends with it. Closing the socket removes it
    /// from epoll: no `deregister` call is needed, as the descriptor is not shared.
    pub(super) fn drop_back(&mut self, back: BackConnection) {
        self.recorder.metrics.backend_closed(&back.endpoint);
        self.sockets.try_remove(back.endpoint.token.0);
        drop(back);
    }

    /// A connection of `client_ip` stops counting for `cluster_id` (for
    /// `max_connections_per_ip`).
    pub(super) fn uncount_per_ip(&mut self, cluster_id: Option<String>, client_ip: IpAddr) {
        let Some(cluster_id) = cluster_id else {
            return;
        };
        let ip_key = (cluster_id, client_ip);
        if let Some(count) = self.per_ip.get_mut(&ip_key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&ip_key);
            }
        }
    }
}
