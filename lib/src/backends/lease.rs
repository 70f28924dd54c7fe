//! Counting the connections of a backend: a [`BackendLease`] is one connection attached to a
//! session, and the only thing that opens and closes a count.
//!
//! A backend shares its [`Counters`] with its leases. Creating a lease counts the connection;
//! dropping it (connection pooled, closed, or the session gone) uncounts it, and when a
//! draining backend loses its last connection the map is told, so it can forget the backend.
//!
//! A stream of a shared HTTP/2 connection gets its own lease from the connection's
//! ([`BackendLease::for_stream`]): it counts the stream's request, not a connection.
//!
//! A lease also counts the request its connection carries, from the moment it is forwarded
//! to the backend until its response ends or the exchange is abandoned: ending the lease ends
//! its request too, so a count never outlives its connection.

use std::{cell::Cell, rc::Rc};

use super::BackendKey;

/// What the leases of a backend share with it.
#[derive(Debug)]
pub(super) struct Counters {
    connections: Cell<u64>,
    /// Requests forwarded to the backend whose response has not ended.
    requests: Cell<u64>,
    /// The backend was removed: it goes when its last connection ends.
    draining: Cell<bool>,
    /// Shared by every backend of the map: a draining backend lost its last connection.
    drained: Rc<Cell<bool>>,
}

impl Counters {
    /// The counters of a new backend of the map whose `drained` flag is given.
    pub(super) fn new(drained: Rc<Cell<bool>>) -> Rc<Self> {
        Rc::new(Counters {
            connections: Cell::new(0),
            requests: Cell::new(0),
            draining: Cell::new(false),
            drained,
        })
    }

    /// Connections attached to sessions (including connects in progress).
    pub(super) fn connections(&self) -> u64 {
        self.connections.get()
    }

    /// Requests forwarded to the backend whose response has not ended.
    pub(super) fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// From now on, the last lease to end tells the map that the backend can be forgotten.
    pub(super) fn start_draining(&self) {
        self.draining.set(true);
    }
}

/// One backend connection attached to a session, counted for its backend while the lease
/// lives.
#[derive(Debug)]
pub struct BackendLease {
    key: BackendKey,
    counters: Rc<Counters>,
    /// The connection carries a request, counted in `counters.requests`.
    request: Request,
    /// What the lease counts besides its request.
    counts: Counts,
}

/// What a lease counts besides its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counts {
    /// A connection to the backend.
    Connection,
    /// Only its request: a stream of a connection another lease counts.
    Stream,
}

/// Whether a backend connection carries a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    None,
    Active,
}

impl BackendLease {
    /// Counts one more connection to the backend `key`, whose counters these are.
    pub(super) fn new(key: BackendKey, counters: Rc<Counters>) -> Self {
        counters
            .connections
            .set(counters.connections.get().saturating_add(1));
        BackendLease {
            key,
            counters,
            request: Request::None,
            counts: Counts::Connection,
        }
    }

    /// A lease for a stream of this lease's connection: it counts the stream's request,
    /// and no connection.
    pub fn for_stream(&self) -> BackendLease {
        BackendLease {
            key: self.key,
            counters: Rc::clone(&self.counters),
            request: Request::None,
            counts: Counts::Stream,
        }
    }

    /// The backend the connection goes to.
    pub fn key(&self) -> BackendKey {
        self.key
    }

    /// A request is forwarded on the connection: counts it for the backend, once however
    /// often it is said.
    pub fn request_started(&mut self) {
        if self.request == Request::None {
            self.request = Request::Active;
            let requests = &self.counters.requests;
            requests.set(requests.get().saturating_add(1));
        }
    }

    /// The request's response ended, or the exchange was abandoned: the backend no longer
    /// counts it. Nothing happens when no request is counted.
    pub fn request_ended(&mut self) {
        if self.request == Request::Active {
            self.request = Request::None;
            let requests = &self.counters.requests;
            requests.set(requests.get().saturating_sub(1));
        }
    }
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        self.request_ended();
        if self.counts == Counts::Stream {
            return;
        }
        let counters = &self.counters;
        let left = counters.connections.get().saturating_sub(1);
        counters.connections.set(left);
        if left == 0 && counters.draining.get() {
            counters.drained.set(true);
        }
    }
}
