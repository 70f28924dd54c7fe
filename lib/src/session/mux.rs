//! A backend HTTP/2 connection shared by many sessions: [`Mux`] holds the socket and the
//! connection's state ([`Link`]), and each session's slot that forwards to it holds a
//! [`MuxStream`], a handle on one stream, instead of a socket.
//!
//! The event loop owns the muxes (`server::mux`): a mux's socket token maps to it, the loop
//! reads the frames when the socket is readable and flushes when it is writable, and wakes
//! the (session, slot) of every stream that got bytes, lost its stream, or may write again:
//! every link queues those news in the loop's one [`Wakes`] as they happen, so the loop
//! finds them without looking at each connection; they go through the handles' own tokens,
//! which map to their (session, slot) like a socket's. Through its handle, a session writes its request
//! (framed and sent at once, the socket shared) and reads its response, as HTTP/1.1, through
//! the same [`Endpoint`](super::endpoint::Endpoint) calls as for any backend connection.
//!
//! The mux and its handles share it through `Rc<RefCell<_>>`: the loop is single-threaded,
//! and a borrow never outlives one call (a session never holds one while the loop runs).

use std::{cell::RefCell, io::IoSlice, rc::Rc, time::Instant};

use log::error;
use mio::{Token, net::TcpStream};

use crate::{
    backends::{BackendKey, BackendLease},
    protocol::http::h2::{backend::Link, headers::NeverIndexed},
    session::endpoint::{Readiness, Ready, Transfer},
};

/// The streams' owners to wake, and for what: one queue per worker, shared by the loop and
/// the [`Link`] of every shared connection, which pushes to it as news happen (frames read,
/// room made, the connection ended), whoever drives it (the loop or a session through its
/// handle). The loop drains it ([`Wakes::take_into`]) into a batch it keeps, so a turn
/// allocates nothing once both have grown to the busiest turn's size.
#[derive(Debug, Clone, Default)]
pub struct Wakes(Rc<RefCell<Vec<(Token, Ready)>>>);

impl Wakes {
    /// Queues news for `owner`.
    pub fn push(&self, owner: Token, ready: Ready) {
        match self.0.try_borrow_mut() {
            Ok(mut queue) => queue.push((owner, ready)),
            Err(_) => error!("the wake queue was borrowed twice"),
        }
    }

    /// Drops the news queued for `owner` (it went away; its token may be reused).
    pub fn forget(&self, owner: Token) {
        match self.0.try_borrow_mut() {
            Ok(mut queue) => queue.retain(|(queued, _)| *queued != owner),
            Err(_) => error!("the wake queue was borrowed twice"),
        }
    }

    /// Moves the queued news to `batch`, which must be empty: the two vectors swap, so
    /// both keep their allocations.
    pub fn take_into(&self, batch: &mut Vec<(Token, Ready)>) {
        match self.0.try_borrow_mut() {
            Ok(mut queue) => std::mem::swap(&mut *queue, batch),
            Err(_) => error!("the wake queue was borrowed twice"),
        }
    }
}

/// Whether a mux's socket is connected yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxState {
    /// The connect is in progress: its streams wait.
    Connecting,
    /// Established: streams flow.
    Open,
    /// The connect failed: its streams fail with it.
    Failed,
}

/// A backend HTTP/2 connection: its socket, its state, and who leases it.
#[derive(Debug)]
pub struct Mux {
    /// The socket, registered with the loop under `token`.
    pub socket: TcpStream,
    pub token: Token,
    pub readiness: Readiness,
    pub state: MuxState,
    /// The connection's HTTP/2 state and its streams.
    pub link: Link,
    /// Counts the connection for its backend while it lives.
    pub lease: BackendLease,
    pub backend_id: String,
    pub address: std::net::SocketAddr,
    /// When it was opened, then when its last handle left: an idle mux is closed after the
    /// idle pool's time.
    pub since: Instant,
}

impl Mux {
    /// The backend the connection goes to.
    pub fn backend(&self) -> BackendKey {
        self.lease.key()
    }
}

/// A mux as the loop and the handles share it.
pub type SharedMux = Rc<RefCell<Mux>>;

/// A session's handle on one stream of a [`Mux`]: what the session's backend endpoint
/// reads from and writes to. Dropping it cancels the stream in flight.
#[derive(Debug)]
pub struct MuxStream {
    mux: SharedMux,
    key: usize,
}

impl MuxStream {
    /// A new handle on `mux`, whose owner is woken through `owner`.
    pub fn attach(mux: &SharedMux, owner: Token) -> Option<MuxStream> {
        let key = mux.try_borrow_mut().ok()?.link.attach(owner);
        Some(MuxStream {
            mux: Rc::clone(mux),
            key,
        })
    }

    /// The mux the handle is on.
    pub fn mux(&self) -> &SharedMux {
        &self.mux
    }

    /// Whether its connection is connected yet (`None`: borrowed, which the loop never
    /// lets happen while a session runs).
    pub fn state(&self) -> Option<MuxState> {
        self.mux.try_borrow().ok().map(|mux| mux.state)
    }

    /// Reads the response for the session (see [`Link::read`]).
    pub fn read(&self, space: &mut [u8], readable: &mut bool, writable: &mut bool) -> Transfer {
        let Ok(mut mux) = self.mux.try_borrow_mut() else {
            error!("a backend HTTP/2 connection was borrowed twice");
            return Transfer::Error(std::io::ErrorKind::Other);
        };
        let Mux { socket, link, .. } = &mut *mux;
        link.read(self.key, socket, space, readable, writable)
    }

    /// Writes request bytes (see [`Link::write`]).
    pub fn write(&self, slices: &[IoSlice<'_>], writable: &mut bool) -> Transfer {
        let Ok(mut mux) = self.mux.try_borrow_mut() else {
            error!("a backend HTTP/2 connection was borrowed twice");
            return Transfer::Error(std::io::ErrorKind::Other);
        };
        if mux.state == MuxState::Connecting {
            *writable = false;
            return Transfer::WouldBlock;
        }
        let Mux { socket, link, .. } = &mut *mux;
        link.write(self.key, socket, slices, writable)
    }

    /// Whether the handle can carry another request (see [`Link::is_idle`]).
    pub fn is_idle(&self) -> bool {
        self.mux
            .try_borrow()
            .is_ok_and(|mux| mux.link.is_idle(self.key))
    }

    /// Encodes the fields named in `never_indexed` never indexed in the next request head
    /// (see [`Link::mark_never_indexed`]).
    pub fn mark_never_indexed(&self, never_indexed: &NeverIndexed) {
        match self.mux.try_borrow_mut() {
            Ok(mut mux) => mux.link.mark_never_indexed(self.key, never_indexed),
            Err(_) => error!("a backend HTTP/2 connection was borrowed twice"),
        }
    }

    /// The fields the backend marked never indexed in the response heads (see
    /// [`Link::response_never_indexed`]).
    pub fn response_never_indexed(&self) -> NeverIndexed {
        self.mux
            .try_borrow()
            .ok()
            .and_then(|mux| mux.link.response_never_indexed(self.key).cloned())
            .unwrap_or_default()
    }

    /// Response bytes are waiting for the session.
    pub fn has_unread(&self) -> bool {
        self.mux
            .try_borrow()
            .is_ok_and(|mux| mux.link.has_unread(self.key))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let Ok(mut mux) = self.mux.try_borrow_mut() else {
            error!("a backend HTTP/2 connection was borrowed while a stream left it");
            return;
        };
        let Mux {
            socket,
            link,
            since,
            ..
        } = &mut *mux;
        link.detach(self.key);
        link.flush(socket);
        if link.handles() == 0 {
            *since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_the_wakes_keeps_both_allocations() {
        let wakes = Wakes::default();
        let mut batch = Vec::new();
        for _ in 0..8 {
            wakes.push(Token(1), Ready::READABLE);
        }
        wakes.take_into(&mut batch);
        assert_eq!(batch.len(), 8);
        let batch_at = batch.as_ptr();
        batch.clear();
        wakes.push(Token(2), Ready::WRITABLE);
        wakes.take_into(&mut batch);
        assert_eq!(batch, [(Token(2), Ready::WRITABLE)]);
        batch.clear();
        wakes.push(Token(3), Ready::WRITABLE);
        wakes.take_into(&mut batch);
        assert_eq!(
            batch.as_ptr(),
            batch_at,
            "the first batch's vector came back: no new allocation"
        );
    }

    #[test]
    fn a_forgotten_owner_gets_no_news() {
        let wakes = Wakes::default();
        wakes.push(Token(1), Ready::READABLE);
        wakes.push(Token(2), Ready::READABLE);
        wakes.forget(Token(1));
        let mut batch = Vec::new();
        wakes.take_into(&mut batch);
        assert_eq!(batch, [(Token(2), Ready::READABLE)]);
    }
}
