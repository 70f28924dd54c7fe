//! The listener sockets the main process holds: bound once at start (or received from the
//! previous main process during an upgrade) and handed to every worker it starts, so that all
//! workers accept on the same sockets and a worker that stops refuses no connection.
//!
//! Listeners active at start are bound before the workers start. A listener activated later
//! (an `ACTIVATE_LISTENER` order, a registration on a new address) is bound here too, before
//! the main state takes the order ([`ListenerSockets::bind_activations`]): an address the main
//! process cannot bind refuses the change, which then changes nothing. Its socket is sent on
//! every worker's fd socket before the order goes out: the worker adopts it instead of
//! binding (workers bind a socket themselves only if the main process could not send one). The main process forgets its
//! socket of a listener that is deactivated or removed, so that no socket keeps completing
//! handshakes that nobody accepts, once the change that does so is applied: a change that
//! also activates a listener on the same address again (a state file, a reload, a batch
//! that replaces a listener) gives it the same socket, sent to the workers again, since they
//! still hold the old one when the main process takes the change and the address cannot be
//! bound twice.

use std::{
    collections::{BTreeMap, BTreeSet, btree_map::Entry},
    io,
    net::{SocketAddr, TcpListener},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use log::{error, info, warn};
use sozu_command_lib::{
    request::{ListenerAddress, ListenerType, Order},
    scm::Listeners,
    state::ConfigState,
};

use super::workers::Worker;

/// Queue of connections the kernel completes before a worker accepts them.
const BACKLOG: i32 = 1024;

/// A socket to send to the workers, with its address.
type Sent<'s> = (SocketAddr, Listeners<BorrowedFd<'s>>);

#[derive(Debug, Default)]
pub struct ListenerSockets {
    sockets: BTreeMap<SocketAddr, (ListenerType, TcpListener)>,
    /// Listeners that the change being applied deactivated or removed: their sockets are
    /// closed when it is applied ([`ListenerSockets::settle`]), unless it activates a
    /// listener on the same address again.
    retiring: BTreeSet<SocketAddr>,
    /// Sockets bound for the change being taken ([`ListenerSockets::bind_activations`]) and
    /// not yet sent to the workers: [`ListenerSockets::release`] closes them if the state
    /// refuses the change.
    fresh: BTreeSet<SocketAddr>,
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
        Ok(ListenerSockets {
            sockets,
            ..ListenerSockets::default()
        })
    }

    /// Sockets received from a previous main process.
    pub fn adopt(sockets: impl IntoIterator<Item = (SocketAddr, ListenerType, OwnedFd)>) -> Self {
        ListenerSockets {
            sockets: sockets
                .into_iter()
                .map(|(address, kind, fd)| (address, (kind, TcpListener::from(fd))))
                .collect(),
            ..ListenerSockets::default()
        }
    }

    /// The sockets as [`ScmSocket::send_listeners`](sozu_command_lib::scm::ScmSocket) sends
    /// them.
    pub fn as_scm(&self) -> Listeners<BorrowedFd<'_>> {
        let mut listeners = Listeners::default();
        for (address, (kind, socket)) in &self.sockets {
            push(&mut listeners, *kind, *address, socket.as_fd());
        }
        listeners
    }

    /// Every socket with its address and kind, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, ListenerType, BorrowedFd<'_>)> {
        self.sockets
            .iter()
            .map(|(address, (kind, socket))| (*address, *kind, socket.as_fd()))
    }

    /// Binds the address of each activation of `orders` that has no socket, before the main
    /// state takes them: the first address that cannot be bound is the error, and the sockets
    /// this call bound are closed again. The others wait for [`ListenerSockets::follow`] to
    /// send them to the workers, or for [`ListenerSockets::release`] if the state refuses
    /// the change.
    pub fn bind_activations<'o>(
        &mut self,
        orders: impl IntoIterator<Item = &'o Order>,
    ) -> Result<(), BindError> {
        let mut bound = Vec::new();
        for order in orders {
            let Order::ActivateListener(ListenerAddress { address, proxy }) = order else {
                continue;
            };
            let Entry::Vacant(entry) = self.sockets.entry(*address) else {
                continue;
            };
            match bind(*address) {
                Ok(socket) => {
                    entry.insert((*proxy, socket));
                    self.fresh.insert(*address);
                    bound.push(*address);
                }
                Err(source) => {
                    for address in bound {
                        self.fresh.remove(&address);
                        self.sockets.remove(&address);
                    }
                    return Err(BindError {
                        address: *address,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Closes the sockets bound for a change ([`ListenerSockets::bind_activations`]) that
    /// the state refused.
    pub fn release(&mut self) {
        for address in std::mem::take(&mut self.fresh) {
            self.sockets.remove(&address);
        }
    }

    /// What `order`, taken by the main state, does to the sockets before it goes to the
    /// workers: an activation takes the socket bound for it
    /// ([`ListenerSockets::bind_activations`]), or the socket of a listener that the same
    /// change retired on that address (the workers dropped their copy with the retiring
    /// order); a deactivation or a removal retires its socket. Returns the socket
    /// every worker must get before the order, with its address, as
    /// [`ScmSocket::send_listeners`](sozu_command_lib::scm::ScmSocket) sends it.
    fn follow(&mut self, order: &Order) -> Result<Option<Sent<'_>>, BindError> {
        match order {
            Order::ActivateListener(ListenerAddress { address, proxy }) => {
                let (address, kind) = (*address, *proxy);
                let entry = match self.sockets.entry(address) {
                    Entry::Occupied(entry) if self.fresh.remove(&address) => {
                        info!("listening on {address} ({kind})");
                        entry.into_mut()
                    }
                    Entry::Occupied(entry) if self.retiring.remove(&address) => {
                        info!("the socket of {address} is kept for its new listener ({kind})");
                        entry.into_mut()
                    }
                    Entry::Occupied(_) => return Ok(None),
                    Entry::Vacant(entry) => {
                        let socket =
                            bind(address).map_err(|source| BindError { address, source })?;
                        info!("listening on {address} ({kind})");
                        entry.insert((kind, socket))
                    }
                };
                entry.0 = kind;
                let mut listeners = Listeners::default();
                push(&mut listeners, kind, address, entry.1.as_fd());
                Ok(Some((address, listeners)))
            }
            Order::DeactivateListener(ListenerAddress { address, .. })
            | Order::RemoveListener(ListenerAddress { address, .. }) => {
                if self.sockets.contains_key(address) {
                    self.retiring.insert(*address);
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Closes the sockets of the listeners the change just applied retired.
    pub fn settle(&mut self) {
        for address in std::mem::take(&mut self.retiring) {
            if self.sockets.remove(&address).is_some() {
                info!("closed the main process's socket of {address}");
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }
}

impl super::Main {
    /// Makes `next`, the state once `orders` are applied to a copy of it, the main state, once
    /// the sockets their activations need are bound ([`ListenerSockets::bind_activations`]):
    /// an address that cannot be bound refuses the change, and the state stays as it was.
    pub(super) fn replace_state(
        &mut self,
        next: ConfigState,
        orders: &[Order],
    ) -> Result<(), BindError> {
        self.listeners.bind_activations(orders)?;
        self.state = next;
        Ok(())
    }

    /// Follows the orders of a change the main state took, before they go to the workers
    /// ([`ListenerSockets::follow`]), then closes the sockets it retired.
    pub(super) fn follow_listeners(&mut self, orders: &[Order]) {
        for order in orders {
            follow(&mut self.listeners, &mut self.workers, order);
        }
        self.listeners.settle();
    }
}

/// [`ListenerSockets::follow`] for one order of a change, sending the socket it gives to
/// every worker. A socket that cannot be bound is logged: the workers then try to bind it
/// themselves, and their answers name the error. The caller settles the change once all its
/// orders are followed.
pub(super) fn follow(
    sockets: &mut ListenerSockets,
    workers: &mut BTreeMap<u32, Worker>,
    order: &Order,
) {
    let (address, listeners) = match sockets.follow(order) {
        Ok(Some(listeners)) => listeners,
        Ok(None) => return,
        Err(error) => {
            error!("{error}: {}", error.source);
            return;
        }
    };
    for worker in workers.values_mut() {
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

/// Adds a socket to the list of its kind.
fn push<'s>(
    listeners: &mut Listeners<BorrowedFd<'s>>,
    kind: ListenerType,
    address: SocketAddr,
    socket: BorrowedFd<'s>,
) {
    let list = match kind {
        ListenerType::Http => &mut listeners.http,
        ListenerType::Https => &mut listeners.https,
        ListenerType::Tcp => &mut listeners.tcp,
    };
    list.push((address, socket));
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
