//! Listener sockets handed to a running worker: the main process binds a listener activated
//! at run time once and sends its socket to every worker on the fd socket, just before the
//! order that activates it, so that all workers accept on the one socket (no port is bound
//! twice, and a worker that stops refuses no connection queued on it).

use log::{info, warn};
use sozu_command_lib::scm::ScmSocket;

use super::Server;

impl Server {
    /// Receives listener sockets from `socket` while running: each message is read when an
    /// activation needs a socket, so the sender sends it whole before the order.
    pub fn receive_listeners_from(&mut self, socket: ScmSocket) {
        self.fd_socket = Some(socket);
    }

    /// Takes every listener socket already sent on the fd socket, without waiting. On an error
    /// the fd socket is dropped (its framing is lost) and later listeners are bound here.
    pub(super) fn receive_pending_listeners(&mut self) {
        let Some(socket) = &self.fd_socket else {
            return;
        };
        let received = loop {
            match socket.has_pending() {
                Ok(false) => return,
                Ok(true) => {}
                Err(error) => break error,
            }
            match socket.receive_listeners() {
                Ok(listeners) => {
                    let sockets = listeners
                        .http
                        .into_iter()
                        .chain(listeners.https)
                        .chain(listeners.tcp);
                    for (address, fd) in sockets {
                        info!("received the socket of listener {address}");
                        self.inherited
                            .insert(address, std::net::TcpListener::from(fd));
                    }
                }
                Err(error) => break error,
            }
        };
        warn!("the listener fd socket failed, listeners are bound here from now on: {received}");
        self.fd_socket = None;
    }
}
