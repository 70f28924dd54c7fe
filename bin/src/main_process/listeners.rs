//! The listener sockets the main process holds: bound once at start (or received from the
//! previous main process during an upgrade) and handed to every worker it starts, so that all
//! workers accept on the same sockets and a worker that stops refuses no connection.
//!
//! Listeners active at start are bound before the workers start. A listener activated later
//! (an `ACTIVATE_LISTENER` order, a registration on a new address) is bound here too, when
//! the main state takes the order, and its socket is sent on every worker's fd socket before
//! the order goes out: the worker adopts it instead of binding (workers bind a socket
//! themselves only if the main process could not send one). The main process forgets its
//! socket of a listener that is deactivated or removed, so that no socket keeps completing
//! handshakes that nobody accepts.

use std::{
    collections::BTreeMap,
    io,
    net::{SocketAddr, TcpListener},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use log::{error, info, warn};
use sozu_command_lib::{request::ListenerType, scm::Listeners, state::ConfigState};

/// Queue of connections the kernel completes before a worker accepts them.
const BACKLOG: i32 = 1024;

#[derive(Debug, Default)]
pub struct ListenerSockets {
    sockets: BTreeMap<SocketAddr, (ListenerType, TcpListener)>,
}

impl ListenerSockets {
    /// Binds every active listener of `state`.
    pub fn bind_active(state: &ConfigState) -> Result<Self, BindError> {
        let mut sockets = BTreeMap::new();
        for listener in super::queries::active_listeners(state) {
            let (address, kind) = (listener.address, listener.proxy);
            let socket = bind(address).map_err(|source| BindError { address, source })?;
            info!("listening on {address} ({kind})");
            sockets.insert(address, (kind, socket));
        }
        Ok(ListenerSockets { sockets })
    }

    /// Sockets received from a previous main process.
    pub fn adopt(sockets: impl IntoIterator<Item = (SocketAddr, ListenerType, OwnedFd)>) -> Self {
        ListenerSockets {
            sockets: sockets
                .into_iter()
                .map(|(address, kind, fd)| (address, (kind, TcpListener::from(fd))))
                .collect(),
        }
    }

    /// The sockets as [`ScmSocket::send_listeners`](sozu_command_lib::scm::ScmSocket) sends
    /// them.
    pub fn as_scm(&self) -> Listeners<BorrowedFd<'_>> {
        let mut listeners = Listeners::default();
        for (address, (kind, socket)) in &self.sockets {
            let list = match kind {
                ListenerType::Http => &mut listeners.http,
                ListenerType::Https => &mut listeners.https,
                ListenerType::Tcp => &mut listeners.tcp,
            };
            list.push((*address, socket.as_fd()));
        }
        listeners
    }

    /// Every socket with its address and kind, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, ListenerType, BorrowedFd<'_>)> {
        self.sockets
            .iter()
            .map(|(address, (kind, socket))| (*address, *kind, socket.as_fd()))
    }

    /// Binds `address` unless its socket is here already. Returns the new socket, as
    /// [`ScmSocket::send_listeners`](sozu_command_lib::scm::ScmSocket) sends it.
    fn bind_new(
        &mut self,
        address: SocketAddr,
        kind: ListenerType,
    ) -> Result<Option<Listeners<BorrowedFd<'_>>>, BindError> {
        if self.sockets.contains_key(&address) {
            return Ok(None);
        }
        let socket = bind(address).map_err(|source| BindError { address, source })?;
        info!("listening on {address} ({kind})");
        let socket = &self.sockets.entry(address).or_insert((kind, socket)).1;
        let mut listeners = Listeners::default();
        let list = match kind {
            ListenerType::Http => &mut listeners.http,
            ListenerType::Https => &mut listeners.https,
            ListenerType::Tcp => &mut listeners.tcp,
        };
        list.push((address, socket.as_fd()));
        Ok(Some(listeners))
    }

    /// Closes the main process's copy of a listener's socket.
    pub fn forget(&mut self, address: SocketAddr) {
        if self.sockets.remove(&address).is_some() {
            info!("closed the main process's socket of {address}");
        }
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }
}

impl super::Main {
    /// Binds a listener that an order activates and sends its new socket to every worker,
    /// before the order goes out. A socket that cannot be bound is logged: the workers then
    /// try to bind it themselves, and their answers name the error.
    pub(super) fn open_listener(&mut self, address: SocketAddr, kind: ListenerType) {
        let listeners = match self.listeners.bind_new(address, kind) {
            Ok(Some(listeners)) => listeners,
            Ok(None) => return,
            Err(error) => {
                error!("{error}: {}", error.source);
                return;
            }
        };
        for worker in self.workers.values_mut() {
            let Some(fd_socket) = &worker.fd_socket else {
                continue;
            };
            if let Err(error) = fd_socket.send_listeners(&listeners) {
                warn!(
                    "cannot send the socket of {address} to worker {}: {error}",
                    worker.id
                );
                worker.fd_socket = None;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}")]
pub struct BindError {
    pub address: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// A listening socket with `SO_REUSEADDR`, so that a restart does not wait for the previous
/// run's connections in TIME_WAIT.
fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
