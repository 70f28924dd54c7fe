//! The loop's side of shared backend HTTP/2 connections ([`Mux`]): choosing one for a
//! session's slot (or opening one), their socket events, waking the sessions whose
//! streams have news, and closing them.
//!
//! A session's slot that forwards to a cluster with `http2 = true` gets a stream handle
//! ([`MuxStream`]) on a connection to the chosen backend: the first one that carries fewer
//! handles than the backend's SETTINGS_MAX_CONCURRENT_STREAMS (at most
//! [`MAX_STREAMS`](crate::protocol::http::h2::backend::MAX_STREAMS), which is also the
//! assumption until the backend's SETTINGS arrive). When all are full, another connection
//! opens, up to [`MAX_CONNECTIONS_PER_BACKEND`] per backend and worker; past that bound, the
//! handle goes to the connection with the fewest handles and its request waits there for a
//! stream to close. A handle on an established connection is attached as a reused backend
//! connection (a request refused by the backend's GOAWAY, not processed, may then go again
//! on another connection, as on a kept HTTP/1.1 connection the backend closed); a handle on
//! a connection still connecting waits for its connect like a new socket.
//!
//! Accounting: the mux holds the [`BackendLease`](crate::backends::BackendLease) of the
//! connection; each handle a lease of its stream ([`BackendLease::for_stream`]), which
//! counts its request. A connection with no handle stays for the idle pool's time, and is
//! closed when its backend is removed; one the backend ended (or sent GOAWAY on, once its
//! streams are done) is closed at once.
//!
//! [`BackendLease::for_stream`]: crate::backends::BackendLease::for_stream

use std::{cell::RefCell, collections::HashMap, net::Shutdown, rc::Rc, time::Instant};

use log::{debug, error, warn};
use mio::Token;
use sozu_command_lib::response::BackendStatus;

use super::{Owner, Server, backend_pool::IDLE_BACKEND_TIMEOUT, connect::OpenError};
use crate::{
    backends::BackendKey,
    protocol::http::h2::backend::Link,
    session::{
        Action, BackConnection, BackUse,
        backs::Slot,
        endpoint::{Endpoint, Readiness, Ready, Transfer},
        mux::{Mux, MuxState, MuxStream, SharedMux},
    },
    timer::Timeout,
};

/// The most HTTP/2 connections a worker opens to one backend.
pub const MAX_CONNECTIONS_PER_BACKEND: usize = 16;

/// The shared backend HTTP/2 connections of a worker, by backend.
#[derive(Debug, Default)]
pub struct Muxes {
    by_backend: HashMap<BackendKey, Vec<SharedMux>>,
    /// The streams each backend last said a connection may carry: what a new connection
    /// is assumed to carry until its SETTINGS arrive.
    known_limits: HashMap<BackendKey, usize>,
}

/// Where a new stream to a backend goes.
enum Choice {
    /// On this connection.
    Existing(SharedMux),
    /// On a new connection.
    Open,
}

impl Muxes {
    pub fn is_empty(&self) -> bool {
        self.by_backend.is_empty()
    }

    /// The connection to `backend` with socket `token`.
    fn find(&self, backend: BackendKey, token: Token) -> Option<SharedMux> {
        self.by_backend
            .get(&backend)?
            .iter()
            .find(|mux| mux.try_borrow().is_ok_and(|mux| mux.token == token))
            .cloned()
    }

    /// Where a new stream to `backend` goes (see the module's docs).
    fn choose(&self, backend: BackendKey) -> Choice {
        let Some(list) = self.by_backend.get(&backend) else {
            return Choice::Open;
        };
        let live: Vec<(&SharedMux, usize, usize)> = list
            .iter()
            .filter_map(|shared| {
                let mux = shared.try_borrow().ok()?;
                let max = match self.known_limits.get(&backend) {
                    Some(known) if !mux.link.has_settings() => *known,
                    _ => mux.link.max_streams(),
                };
                mux.link
                    .accepts_streams()
                    .then(|| (shared, mux.link.handles(), max))
            })
            .collect();
        if let Some((mux, _, _)) = live.iter().find(|(_, handles, max)| handles < max) {
            return Choice::Existing(Rc::clone(mux));
        }
        if live.len() < MAX_CONNECTIONS_PER_BACKEND {
            return Choice::Open;
        }
        live.iter()
            .min_by_key(|(_, handles, _)| *handles)
            .map_or(Choice::Open, |(mux, _, _)| Choice::Existing(Rc::clone(mux)))
    }

    fn insert(&mut self, backend: BackendKey, mux: SharedMux) {
        self.by_backend.entry(backend).or_default().push(mux);
    }

    /// Takes the connection out (it is being closed).
    fn remove(&mut self, backend: BackendKey, token: Token) -> Option<SharedMux> {
        let list = self.by_backend.get_mut(&backend)?;
        let position = list
            .iter()
            .position(|mux| mux.try_borrow().is_ok_and(|mux| mux.token == token))?;
        let mux = list.swap_remove(position);
        if list.is_empty() {
            self.by_backend.remove(&backend);
        }
        Some(mux)
    }

    /// Every connection.
    fn all(&self) -> impl Iterator<Item = &SharedMux> {
        self.by_backend.values().flatten()
    }

    /// The connections no stream handle uses (none carries a stream), as (since when, their
    /// backend, their socket's token): closing one loses no exchange.
    pub(super) fn unused(&self) -> impl Iterator<Item = (Instant, BackendKey, Token)> + '_ {
        self.all().filter_map(|shared| {
            let mux = shared.try_borrow().ok()?;
            (mux.link.handles() == 0).then(|| (mux.since, mux.backend(), mux.token))
        })
    }
}

impl Server {
    /// Gives the session's `slot` a stream to `backend`, on a shared connection (opened if
    /// need be).
    pub(super) fn connect_stream(
        &mut self,
        key: usize,
        slot: Slot,
        backend: BackendKey,
        now: Instant,
    ) -> Action {
        let mux = match self.muxes.choose(backend) {
            Choice::Existing(mux) => mux,
            Choice::Open => match self.open_mux(key, slot, backend, now) {
                Ok(mux) => mux,
                Err(OpenError::Connect) => {
                    self.backends.connect_failed(backend, now);
                    return self.retry_or_give_up(key, slot);
                }
                Err(OpenError::Register) => return Action::Close,
                Err(OpenError::NoDescriptor) => return self.refuse_without_descriptor(key, slot),
            },
        };
        let token = Token(self.sockets.insert(Owner::Back { session: key, slot }));
        let Some(stream) = MuxStream::attach(&mux, token) else {
            error!("a backend HTTP/2 connection was borrowed while a stream joined it");
            self.sockets.remove(token.0);
            return Action::Close;
        };
        let Ok((open, lease, backend_id, address)) = mux.try_borrow().map(|mux| {
            let open = mux.state == MuxState::Open;
            let lease = mux.lease.for_stream();
            (open, lease, mux.backend_id.clone(), mux.address)
        }) else {
            self.sockets.remove(token.0);
            return Action::Close;
        };
        let mut endpoint = Endpoint::mux_stream(stream, token);
        if open {
            endpoint.readiness.event.insert(Ready::WRITABLE);
        }
        let sticky = self.backends.sticky_name(backend);
        let Some(session) = self.sessions.get_mut(key) else {
            return Action::Wait;
        };
        session.io.backs.insert(
            slot,
            BackConnection {
                endpoint,
                lease: Some(lease),
                backend_id,
                address,
                connected: open,
                connect_started: now,
                timeout: Timeout::default(),
            },
        );
        if !open {
            let connect = session.io.timeouts.connect;
            session.io.touch_back(slot, connect, now, &mut self.timers);
            return self.after_open(key);
        }
        session.io.backs.reset_attempts(slot);
        session.io.connect_time = None;
        session.backend_connected(slot, &sticky, BackUse::Reused);
        let after = session.io.timeouts.back;
        session.io.touch_back(slot, after, now, &mut self.timers);
        self.run_session(key)
    }

    /// Opens a new HTTP/2 connection to `backend` for the session `key` (whose listener's
    /// HTTP/2 limits hold the backend); counts the attempt against the budget of the
    /// session's `slot`.
    fn open_mux(
        &mut self,
        key: usize,
        slot: Slot,
        backend: BackendKey,
        now: Instant,
    ) -> Result<SharedMux, OpenError> {
        let Some(session) = self.sessions.get_mut(key) else {
            return Err(OpenError::Register);
        };
        session.io.backs.count_attempt(slot);
        let limits = self
            .http_listeners
            .get(&session.io.listener_address)
            .map(|listener| listener.config.h2)
            .unwrap_or_default();
        let uid = session.io.uid;
        let Some((address, backend_id)) = self
            .backends
            .get(backend)
            .map(|b| (b.address, b.id.clone()))
        else {
            return Err(OpenError::Connect);
        };
        let Some(lease) = self.backends.lease(backend) else {
            return Err(OpenError::Connect);
        };
        let (socket, token) = self.connect_socket(uid, address, Owner::Mux(backend))?;
        debug!("session {uid}: new HTTP/2 connection to {address}");
        let mux = Rc::new(RefCell::new(Mux {
            socket,
            token,
            readiness: Readiness::default(),
            state: MuxState::Connecting,
            link: Link::new(limits, now, self.wakes.clone()),
            lease,
            backend_id,
            address,
            since: now,
        }));
        self.muxes.insert(backend, Rc::clone(&mux));
        Ok(mux)
    }

    /// The socket of a shared connection has news: its connect ended, frames came, or it
    /// may send again.
    pub(super) fn mux_event(&mut self, backend: BackendKey, token: Token, ready: Ready) {
        let Some(mux) = self.muxes.find(backend, token) else {
            return;
        };
        let Ok(mut guard) = mux.try_borrow_mut() else {
            error!("a backend HTTP/2 connection was borrowed during its event");
            return;
        };
        let mux_ref = &mut *guard;
        mux_ref.readiness.event.insert(ready);
        let event = mux_ref.readiness.event;
        if mux_ref.state == MuxState::Connecting {
            let failed = event.contains(Ready::ERROR)
                || (event.contains(Ready::HUP) && !event.contains(Ready::WRITABLE))
                || mux_ref.socket.take_error().ok().flatten().is_some();
            if failed {
                warn!("connecting to backend {} failed", mux_ref.address);
                drop(guard);
                self.fail_connect(backend, &mux, Instant::now());
                return;
            } else if event.contains(Ready::WRITABLE) {
                mux_ref.state = MuxState::Open;
                let connect_time = mux_ref.since.elapsed();
                self.backends.connect_succeeded(backend, connect_time);
                if let Some(cluster_id) = self.backends.get(backend).map(|b| b.cluster_id.clone()) {
                    self.recorder
                        .metrics
                        .connected(&cluster_id, &mux_ref.backend_id, connect_time);
                }
                for owner in mux_ref.link.owners() {
                    self.wakes.push(owner, Ready::WRITABLE);
                }
            } else {
                return;
            }
        }
        if mux_ref.state == MuxState::Open {
            let Mux {
                socket,
                link,
                readiness,
                ..
            } = mux_ref;
            if readiness.event.contains(Ready::WRITABLE) && !link.flush(socket) {
                readiness.event.remove(Ready::WRITABLE);
            }
            let mut readable = readiness.event.contains(Ready::READABLE);
            link.service(socket, &mut readable);
            if !readable {
                readiness.event.remove(Ready::READABLE);
            }
            if event.contains(Ready::HUP) && !readable {
                link.abort(Transfer::Closed);
            }
            if link.has_settings() {
                self.muxes.known_limits.insert(backend, link.max_streams());
            }
        }
        drop(guard);
        self.close_mux_if_over(backend, &mux);
    }

    /// Drives the sessions whose streams have news, until none has. The news wait in
    /// [`Wakes`], where the links queued them: no connection is looked at, and the batch's
    /// vector is kept from one turn to the next.
    pub(super) fn wake_streams(&mut self) {
        let mut batch = std::mem::take(&mut self.wake_batch);
        // Driving a session may give news to others (a stream closed makes room); the
        // bound only guards against a bug waking forever.
        for _ in 0..64 {
            self.wakes.take_into(&mut batch);
            if batch.is_empty() {
                break;
            }
            for (token, ready) in batch.drain(..) {
                if let Some(Owner::Back { session, slot }) = self.sockets.get(token.0).copied() {
                    if let Some(target) = self.sessions.get_mut(session) {
                        target.io.add_back_event(slot, ready);
                        self.drive(session);
                    }
                }
            }
        }
        self.wake_batch = batch;
    }

    /// Closes `mux` if it carries nothing more, or it failed.
    fn close_mux_if_over(&mut self, backend: BackendKey, mux: &SharedMux) {
        let is_over = mux.try_borrow().is_ok_and(|mux| mux.link.is_over());
        if is_over {
            self.close_mux(backend, mux);
        }
    }

    /// Closes a shared connection: out of the table, the socket shut and out of the loop
    /// (the handles left keep the state until they go, and read that it ended).
    fn close_mux(&mut self, backend: BackendKey, mux: &SharedMux) {
        let Ok(token) = mux.try_borrow().map(|mux| mux.token) else {
            return;
        };
        // The table looks at each connection: none may be borrowed meanwhile.
        if self.muxes.remove(backend, token).is_none() {
            return;
        }
        let Ok(mut guard) = mux.try_borrow_mut() else {
            return;
        };
        debug!("closing the HTTP/2 connection to {}", guard.address);
        let Mux { socket, link, .. } = &mut *guard;
        link.abort(Transfer::Closed);
        let _ = self.poll.registry().deregister(socket);
        let _ = socket.shutdown(Shutdown::Both);
        self.sockets.try_remove(token.0);
        self.recorder.metrics.h2_backend_closed(link.counters());
    }

    /// Closes the connection to `backend` with socket `token` if no stream handle uses it
    /// (the worker needs its descriptor).
    pub(super) fn close_unused_mux(&mut self, backend: BackendKey, token: Token) {
        let Some(mux) = self.muxes.find(backend, token) else {
            return;
        };
        if mux.try_borrow().is_ok_and(|mux| mux.link.handles() == 0) {
            self.close_mux(backend, &mux);
        }
    }

    /// A stream's connect failed or timed out while its connection was connecting: that
    /// connection is given up (the backend's failure is counted once, here).
    pub(super) fn stream_connect_failed(&mut self, back: &BackConnection, now: Instant) {
        let Endpoint {
            stream: crate::session::endpoint::Socket::Mux(handle),
            ..
        } = &back.endpoint
        else {
            return;
        };
        let mux = Rc::clone(handle.mux());
        let Ok(backend) = mux.try_borrow().map(|mux| mux.backend()) else {
            return;
        };
        self.fail_connect(backend, &mux, now);
    }

    /// The connect of `mux` failed (or took too long): counted once against its backend,
    /// every stream waiting on it told (an error: their own connects failed), and the
    /// connection closed. Nothing happens to a connection no longer connecting.
    fn fail_connect(&mut self, backend: BackendKey, mux: &SharedMux, now: Instant) {
        let owners: Vec<Token> = match mux.try_borrow_mut() {
            Ok(mut mux) if mux.state == MuxState::Connecting => {
                mux.state = MuxState::Failed;
                mux.link.owners().collect()
            }
            _ => return,
        };
        self.backends.connect_failed(backend, now);
        for owner in owners {
            self.wakes.push(owner, Ready::ERROR);
        }
        self.close_mux(backend, mux);
    }

    /// Closes the connections with no handle kept past the idle pool's time or whose
    /// backend was removed (it drains: its last connection lets it go), and those over.
    pub(super) fn sweep_muxes(&mut self, now: Instant) {
        let backends = &self.backends;
        let is_removed = |backend| {
            backends
                .get(backend)
                .is_none_or(|b| b.status == BackendStatus::Draining)
        };
        let expired: Vec<(BackendKey, SharedMux)> = self
            .muxes
            .all()
            .filter(|shared| {
                shared.try_borrow().is_ok_and(|mux| {
                    let idle = mux.link.handles() == 0
                        && (now.saturating_duration_since(mux.since) >= IDLE_BACKEND_TIMEOUT
                            || is_removed(mux.backend()));
                    idle || mux.link.is_over()
                })
            })
            .filter_map(|shared| Some((shared.try_borrow().ok()?.backend(), Rc::clone(shared))))
            .collect();
        for (backend, mux) in expired {
            self.close_mux(backend, &mux);
        }
    }
}

#[cfg(test)]
mod tests;
