//! The idle pool: backend connections kept alive after their session was done with them, for
//! the next request to the same backend from any session (no connect, no accept on the
//! backend).
//!
//! A pooled connection belongs to no session and counts for no backend (its
//! [`BackendLease`](crate::backends::BackendLease) ended when it was pooled; taking it out
//! takes a new one). One that is readable, has bytes queued, or saw a hangup or an error is
//! never handed out: it is given back to the caller to close.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use mio::Token;

use super::{Owner, Server};
use crate::{
    backends::{BackendKey, BackendLease},
    session::{
        BackConnection,
        backs::Slot,
        endpoint::{Endpoint, Ready},
    },
    timer::Timeout,
};

/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 64;
/// Connections of a backend that HTTP/1 clients keep between requests, at most: beyond, a
/// connection goes to the pool as its exchange ends (see [`Server::bound_kept_backs`]).
const MAX_KEPT_PER_BACKEND: u64 = MAX_IDLE_PER_BACKEND as u64;
/// How long an idle backend connection is kept.
pub(super) const IDLE_BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// An established backend connection that no session uses.
#[derive(Debug)]
pub struct IdleConnection {
    pub endpoint: Endpoint,
    pub backend: BackendKey,
    pub backend_id: String,
    pub address: SocketAddr,
    since: Instant,
}

impl IdleConnection {
    /// Takes a connection out of its session: it stops counting for its backend. `None` for
    /// a connection to no backend (a script's `remote`), which is never kept.
    pub fn new(back: BackConnection, now: Instant) -> Option<IdleConnection> {
        let BackConnection {
            endpoint,
            lease,
            backend_id,
            address,
            ..
        } = back;
        Some(IdleConnection {
            endpoint,
            backend: lease?.key(),
            backend_id,
            address,
            since: now,
        })
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) < IDLE_BACKEND_TIMEOUT
    }
}

/// Idle connections by backend, most recently pooled last.
#[derive(Debug, Default)]
pub struct BackendPool {
    idle: HashMap<BackendKey, Vec<IdleConnection>>,
}

impl BackendPool {
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Keeps a connection for a later request; hands it back, to close, when its backend's
    /// pool is full.
    #[must_use = "a refused connection must be closed"]
    pub fn keep(&mut self, connection: IdleConnection) -> Option<IdleConnection> {
        let list = self.idle.entry(connection.backend).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            return Some(connection);
        }
        list.push(connection);
        None
    }

    /// A connection to `backend` that can carry a request, the most recently pooled first.
    /// Those kept too long, or on which the backend sent anything since they were pooled (even
    /// if no event said so yet), are handed to `close` on the way. The one handed out carries
    /// no readable flag: the kernel just said it has nothing to read.
    pub fn take(
        &mut self,
        backend: BackendKey,
        now: Instant,
        mut close: impl FnMut(IdleConnection),
    ) -> Option<IdleConnection> {
        let list = self.idle.get_mut(&backend)?;
        let mut found = None;
        while let Some(mut idle) = list.pop() {
            if idle.endpoint.is_clean() && idle.is_fresh(now) {
                // A readable flag left set (the event of bytes its last session read before
                // the event came) is stale. Kept, it would have the connection read right
                // after its request is written: when that read finds the response, the
                // response's own event comes after the exchange ended, and the connection,
                // idle, looks written to and is given back to be checked (a peek) and pooled
                // again with the flag, for every request or two.
                idle.endpoint.readiness.event.remove(Ready::READABLE);
                found = Some(idle);
                break;
            }
            close(idle);
        }
        if list.is_empty() {
            self.idle.remove(&backend);
        }
        found
    }

    /// Takes out the pooled connection of `backend` with socket `token` (its backend closed
    /// it, or sent what nobody asked for: it cannot carry a request any more).
    pub fn remove(&mut self, backend: BackendKey, token: Token) -> Option<IdleConnection> {
        let list = self.idle.get_mut(&backend)?;
        let position = list.iter().position(|idle| idle.endpoint.token == token)?;
        let idle = list.swap_remove(position);
        if list.is_empty() {
            self.idle.remove(&backend);
        }
        Some(idle)
    }

    /// Every pooled connection, as (when it was pooled, its backend, its socket's token).
    pub fn pooled(&self) -> impl Iterator<Item = (Instant, BackendKey, Token)> + '_ {
        self.idle
            .values()
            .flatten()
            .map(|idle| (idle.since, idle.backend, idle.endpoint.token))
    }

    /// Takes out the connections kept too long or whose backend is gone.
    pub fn sweep(
        &mut self,
        now: Instant,
        is_gone: impl Fn(BackendKey) -> bool,
    ) -> Vec<IdleConnection> {
        let mut expired = Vec::new();
        self.idle.retain(|backend, list| {
            let gone = is_gone(*backend);
            let (keep, old): (Vec<IdleConnection>, Vec<IdleConnection>) = std::mem::take(list)
                .into_iter()
                .partition(|idle| !gone && idle.is_fresh(now));
            *list = keep;
            expired.extend(old);
            !list.is_empty()
        });
        expired
    }
}

/// The loop's side of the pool: sockets of pooled connections belong to the pool.
impl Server {
    /// An idle backend connection has news: the backend closed it, or sent what nobody asked
    /// for. Either way it cannot carry a request any more.
    pub(super) fn idle_event(&mut self, backend: BackendKey, token: Token) {
        if let Some(idle) = self.idle_pool.remove(backend, token) {
            self.close_idle(idle);
        }
    }

    /// Keeps a backend connection for later, or closes it if the pool is full or its backend
    /// takes no new connection.
    pub(super) fn keep_idle(&mut self, back: BackConnection) {
        let Some(backend) = back.lease.as_ref().map(BackendLease::key) else {
            self.drop_back(back);
            return;
        };
        let takes_connections = self
            .backends
            .get(backend)
            .is_some_and(|b| b.status == sozu_command_lib::response::BackendStatus::Normal);
        let Some(idle) = IdleConnection::new(back, Instant::now()) else {
            return;
        };
        if !takes_connections {
            self.close_idle(idle);
            return;
        }
        let (token, backend) = (idle.endpoint.token, idle.backend);
        match self.idle_pool.keep(idle) {
            None => {
                if let Some(owner) = self.sockets.get_mut(token.0) {
                    *owner = Owner::Idle(backend);
                }
            }
            Some(refused) => self.close_idle(refused),
        }
    }

    /// An HTTP/1 exchange of the session `key` ended and the session keeps its backend
    /// connection for its next request (for one back timeout). When the backend has more
    /// than [`MAX_KEPT_PER_BACKEND`] connections idle with clients, this one goes to the pool
    /// at once instead (or is closed when the pool is full), where any client's next request
    /// takes it. Otherwise a burst of clients that each send a request and then idle (10,000
    /// in two seconds) holds a backend connection per client for a back timeout: twice the
    /// sockets, and the connections' state left as holes in the heap once they are gone.
    pub(super) fn bound_kept_backs(&mut self, key: usize) {
        let Server {
            sessions, backends, ..
        } = self;
        let Some(session) = sessions.get_mut(key) else {
            return;
        };
        let idle_with_clients = session
            .io
            .backs
            .get(Slot::FIRST)
            .and_then(|back| back.lease.as_ref())
            .and_then(|lease| backends.get(lease.key()))
            .map_or(0, |backend| {
                backend.connections().saturating_sub(backend.requests())
            });
        if idle_with_clients <= MAX_KEPT_PER_BACKEND {
            return;
        }
        if let Some(back) = session.take_kept_back() {
            self.keep_idle(back);
        }
    }

    /// A live idle connection to `backend`, if the pool has one, attached to a session again.
    pub(super) fn take_idle(
        &mut self,
        backend: BackendKey,
        now: Instant,
    ) -> Option<BackConnection> {
        let Server {
            idle_pool, sockets, ..
        } = self;
        let idle = idle_pool.take(backend, now, |stale| {
            sockets.try_remove(stale.endpoint.token.0);
        })?;
        let Some(lease) = self.backends.lease(backend) else {
            self.close_idle(idle);
            return None;
        };
        Some(BackConnection {
            endpoint: idle.endpoint,
            lease: Some(lease),
            backend_id: idle.backend_id,
            address: idle.address,
            connected: true,
            connect_started: now,
            timeout: Timeout::default(),
        })
    }

    /// Closes idle connections kept too long or whose backend is gone.
    pub(super) fn sweep_idle(&mut self, now: Instant) {
        let backends = &self.backends;
        let expired = self
            .idle_pool
            .sweep(now, |backend| backends.get(backend).is_none());
        for idle in expired {
            self.close_idle(idle);
        }
    }

    /// Closes an idle backend connection. Closing the socket removes it from epoll.
    pub(super) fn close_idle(&mut self, idle: IdleConnection) {
        self.sockets.try_remove(idle.endpoint.token.0);
    }
}

#[cfg(test)]
mod tests;
