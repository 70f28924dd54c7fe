//! Accepting connections: a bounded batch per listener per turn, and the first stage of each
//! session, by listener kind.

use std::{io::ErrorKind, net::SocketAddr, rc::Rc, time::Instant};

use log::{debug, error, warn};
use mio::{Interest, Token, net::TcpStream};
use sozu_command_lib::request::{ListenerType, Timeouts};

use super::{Owner, Run, Server, reclaim};
use crate::{
    pool::Pool,
    router::content::ContentRouter,
    session::endpoint::Endpoint,
    session::{Accepted, Session},
    tcp,
};

/// Sets `TCP_NODELAY` on a listening socket, which the sockets it accepts inherit (Linux
/// copies the listener's options into each accepted socket): one `setsockopt` per listener
/// instead of one per connection. Returns whether it is set; if not, each accepted socket
/// must get it.
pub(super) fn nodelay_on_accepted(listener: &std::net::TcpListener) -> bool {
    match socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        Ok(()) => true,
        Err(error) => {
            warn!("cannot set TCP_NODELAY on a listener, setting it per connection: {error}");
            false
        }
    }
}

impl Server {
    pub(super) fn can_accept(&self) -> bool {
        self.run == Run::Running
            && self.sessions.len() < self.config.max_connections
            && self.descriptors.accepts_paused_until.is_none()
    }

    /// Accepts waiting connections, a bounded batch per listener per turn. Out of descriptors,
    /// idle backend connections are closed to accept (`reclaim`); with none to close, accepts
    /// pause and the connections wait in the backlog.
    pub(super) fn accept_pending(&mut self) {
        self.resume_accepts();
        let pending: Vec<SocketAddr> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.pending)
            .map(|(address, _)| *address)
            .collect();
        for address in pending {
            for _ in 0..self.config.accept_batch {
                if !self.can_accept() {
                    return;
                }
                let Some(listener) = self.listeners.get_mut(&address) else {
                    break;
                };
                match listener.socket.accept() {
                    Ok((stream, peer)) => {
                        if !listener.nodelay_inherited {
                            let _ = stream.set_nodelay(true);
                        }
                        let (kind, timeouts) = (listener.kind, Rc::clone(&listener.timeouts));
                        self.create_session(address, kind, timeouts, stream, peer);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        listener.pending = false;
                        break;
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) if reclaim::is_out_of_descriptors(&error) => {
                        if self.reclaim_descriptors(&error) == 0 {
                            self.pause_accepts();
                            return;
                        }
                    }
                    Err(error) => {
                        // ENOBUFS and the like: leave the connection in the backlog and retry
                        // on the next turn rather than spin.
                        warn!("accept on {address} failed: {error}");
                        listener.pending = false;
                        break;
                    }
                }
            }
        }
    }

    /// Starts the session of a connection accepted on `listener`, of `kind`, whose sessions
    /// hold `timeouts`.
    pub(super) fn create_session(
        &mut self,
        listener: SocketAddr,
        kind: ListenerType,
        timeouts: Rc<Timeouts>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        match kind {
            ListenerType::Tcp => self.create_tcp_session(listener, timeouts, stream, peer),
            ListenerType::Http | ListenerType::Https => {
                self.create_http_session(listener, timeouts, stream, peer)
            }
        }
    }

    pub(super) fn create_tcp_session(
        &mut self,
        listener: SocketAddr,
        timeouts: Rc<Timeouts>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let Some(config) = self.state.tcp_listeners.get(&listener).map(|l| &l.config) else {
            return;
        };
        if !self
            .content_routers
            .get(&listener)
            .is_some_and(ContentRouter::can_route)
        {
            debug!(
                "TCP listener {listener} has no frontend, script nor program, closing connection \
                 from {peer}"
            );
            return;
        }
        let expect_proxy = config.expect_proxy;
        let then = tcp::AfterProxy::Pipe {
            splice: config.splice.then_some(self.config.splice_pipe_capacity),
            inspect_timeout: config.inspect_timeout,
        };
        let Some(key) = self.new_session(listener, stream, peer, timeouts, |session, pool| {
            session.stage = tcp::first_stage(&mut session.io, pool, expect_proxy, then);
        }) else {
            return;
        };
        self.drive(key);
    }

    pub(super) fn create_http_session(
        &mut self,
        listener: SocketAddr,
        timeouts: Rc<Timeouts>,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let Some(http_listener) = self.http_listeners.get(&listener) else {
            return;
        };
        let tls_config = http_listener
            .tls
            .as_ref()
            .map(|settings| settings.config.clone());
        let expect_proxy = http_listener.config.expect_proxy;
        let then = tcp::AfterProxy::Http(tls_config);
        let Some(key) = self.new_session(listener, stream, peer, timeouts, |session, pool| {
            session.stage = tcp::first_stage(&mut session.io, pool, expect_proxy, then);
        }) else {
            return;
        };
        self.drive(key);
    }

    /// Registers an accepted connection and stores its session; returns the session's key.
    pub(super) fn new_session(
        &mut self,
        listener: SocketAddr,
        mut stream: TcpStream,
        peer: SocketAddr,
        timeouts: Rc<Timeouts>,
        first_stage: impl FnOnce(&mut Session, &Pool),
    ) -> Option<usize> {
        // A listener bound to one address is the connection's local address; only a wildcard
        // listener needs to ask the kernel (`getsockname`).
        let local = if listener.ip().is_unspecified() {
            stream.local_addr().unwrap_or(listener)
        } else {
            listener
        };
        let entry = self.sessions.vacant_entry();
        let key = entry.key();
        let token = Token(self.sockets.insert(Owner::Front(key)));
        if let Err(error) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register a connection from {peer}: {error}");
            self.sockets.remove(token.0);
            return None;
        }
        let uid = self.next_uid;
        self.next_uid += 1;
        let now = Instant::now();
        self.recorder.metrics.accepted(listener);
        let accepted = Accepted {
            uid,
            key,
            listener_address: listener,
            front: Endpoint::new(stream, token),
            client_address: peer,
            local_address: local,
        };
        let front = timeouts.front;
        let mut session = Session::new(accepted, timeouts, now);
        first_stage(&mut session, &self.pool);
        session.io.touch_front(front, now, &mut self.timers);
        entry.insert(session);
        debug!("session {uid}: accepted {peer} on {listener}");
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::nodelay_on_accepted;

    #[test]
    fn accepted_sockets_inherit_nodelay_from_their_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(nodelay_on_accepted(&listener));
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "no setsockopt per connection needed"
        );
    }
}
