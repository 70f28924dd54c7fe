//! The command socket and its clients: a Unix socket on which any number of clients send
//! requests, one JSON object per line, and read responses the same way.
//!
//! Who may connect: the socket is mode 0600, so its owner (and root) only. With
//! `command_allowed_uids`, it is mode 0666 and the user at the other end of each connection
//! (`SO_PEERCRED`) decides: root, the proxy's own user and the listed users are served; any
//! other is logged, sent one FAILURE answer (request id `""`) and disconnected.
//!
//! Every client is a non-blocking [`Channel`] in the main event loop. A client that does not
//! read what it is sent is disconnected once its backlog passes
//! [`Settings::max_client_backlog`](super::settings::Settings::max_client_backlog), so a slow
//! or stuck client never holds the main process.

use std::{
    fs,
    io::ErrorKind,
    os::unix::{fs::FileTypeExt, net::UnixStream as StdUnixStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use log::{debug, info, warn};
use mio::{Interest, Token, net::UnixListener};
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    request::Request,
    response::Response,
};

use super::{Main, Owner, tasks::ClientRef};
use crate::sys;

/// One connection to the command socket.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub token: Token,
    pub channel: Channel<Response, Request>,
    /// The client asked for events (`SUBSCRIBE_EVENTS`).
    pub subscribed: bool,
    /// The client closed its writing side (as `socat` does at the end of its input): it still
    /// gets the answers to what it sent, then the connection closes.
    pub input_closed: bool,
    /// `(uid, pid)` at the other end (`SO_PEERCRED`), when the kernel told.
    pub peer: Option<(u32, i32)>,
    /// A client of the registration socket: registration orders only.
    pub restricted: bool,
}

/// Creates the command socket at `path`: readable and writable by its owner only, or by
/// everyone when `open_to_all` (the users admitted are then checked on each connection).
///
/// A socket file nobody answers on is left over from a run that did not clean up: it is
/// replaced. A socket somebody answers on belongs to a running proxy: refused.
pub fn bind(path: &Path, open_to_all: bool) -> anyhow::Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => bail!(
            "{} exists and is not a socket: remove it or set another command_socket",
            path.display()
        ),
        Ok(_) => match StdUnixStream::connect(path) {
            Ok(_) => bail!(
                "another sozu is running on socket {}: stop it first (sozu shutdown --socket {}) \
                 or give this one another command_socket",
                path.display(),
                path.display()
            ),
            Err(error) => {
                warn!(
                    "replacing the stale command socket {} (nobody answers on it: {error})",
                    path.display()
                );
                fs::remove_file(path).with_context(|| {
                    format!("cannot remove the stale socket {}", path.display())
                })?;
            }
        },
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect {}", path.display()));
        }
    }
    let mask = if open_to_all { 0o111 } else { 0o177 };
    let listener = sys::with_umask(mask, || std::os::unix::net::UnixListener::bind(path))
        .with_context(|| format!("cannot create the command socket {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(UnixListener::from_std(listener))
}

/// Tells a refused connection why, in one FAILURE answer, and closes it. The socket is new:
/// its buffer takes the line at once, and a client that is not reading loses nothing else.
fn refuse(mut stream: mio::net::UnixStream, refusal: &str) {
    let mut line = serde_json::to_vec(&Response::failure("", refusal)).unwrap_or_default();
    line.push(b'\n');
    if let Err(error) = std::io::Write::write_all(&mut stream, &line) {
        debug!("command socket: cannot tell a refused client why: {error}");
    }
}

impl Main {
    pub(super) fn accept_clients(&mut self) {
        loop {
            match self.command_listener.accept() {
                Ok((stream, _)) => match self.refusal(&stream) {
                    None => {
                        self.add_client(stream);
                    }
                    Some(refusal) => refuse(stream, &refusal),
                },
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    warn!("cannot accept on the command socket: {error}");
                    return;
                }
            }
        }
    }

    /// Why the user at the other end of `stream` may not give orders, if it may not: not
    /// root, not the proxy's own user, and not in `command_allowed_uids`.
    fn refusal(&self, stream: &mio::net::UnixStream) -> Option<String> {
        let allowed = self.settings.command_allowed_uids.as_ref()?;
        let (uid, pid) = match sys::peer_credentials(stream) {
            Ok(credentials) => credentials,
            Err(error) => {
                warn!("command socket: cannot tell who connected ({error}): refused");
                return Some("the proxy cannot tell who you are".to_string());
            }
        };
        if uid == 0 || uid == sys::own_uid() || allowed.contains(&uid) {
            return None;
        }
        warn!(
            "command socket: refused a connection of uid {uid} (pid {pid}): not in \
             command_allowed_uids"
        );
        Some(format!(
            "uid {uid} may not give orders to this proxy (command_allowed_uids)"
        ))
    }

    /// Adds a connection (accepted, or handed over by a previous main process). Returns its
    /// id.
    pub(super) fn add_client(&mut self, stream: mio::net::UnixStream) -> u64 {
        self.next_client += 1;
        let id = self.next_client;
        let peer = sys::peer_credentials(&stream).ok();
        let mut channel = Channel::new(
            stream,
            self.settings.command_buffer_size,
            self.settings.max_command_buffer_size,
        );
        let token = self.register_owner(Owner::Client(id));
        if let Err(error) = self.poll.registry().register(
            &mut channel,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot register a command client: {error}");
            self.release_token(token);
            return id;
        }
        debug!("client {id} connected");
        self.clients.insert(
            id,
            Client {
                id,
                token,
                channel,
                subscribed: false,
                input_closed: false,
                peer,
                restricted: false,
            },
        );
        id
    }

    pub(super) fn client_ready(&mut self, id: u64, readable: bool, writable: bool) {
        if writable {
            if let Some(client) = self.clients.get_mut(&id) {
                if let Err(error) = client.channel.writable() {
                    debug!("client {id}: {error}");
                }
            }
        }
        if readable {
            self.read_requests(id);
        }
        self.close_if_done(id);
    }

    /// Disconnects a client whose input ended once it has nothing more to receive: no answer
    /// pending from the workers and nothing left to write.
    pub(super) fn close_if_done(&mut self, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.channel.is_closed() {
            client.input_closed = true;
        }
        if !client.input_closed || client.channel.has_pending_output() {
            return;
        }
        let waiting = self
            .tasks
            .values()
            .any(|task| task.client.as_ref().is_some_and(|c| c.client == id))
            || self
                .stop
                .as_ref()
                .is_some_and(|stop| stop.clients.iter().any(|c| c.client == id))
            || self
                .replacement
                .as_ref()
                .is_some_and(|replacement| replacement.is_for(id))
            || self
                .pending_main_upgrade
                .as_ref()
                .is_some_and(|pending| pending.is_for(id))
            || self
                .successor
                .as_ref()
                .is_some_and(|successor| successor.is_for(id));
        if !waiting {
            self.disconnect(id);
        }
    }

    fn read_requests(&mut self, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Err(error) = client.channel.readable() {
            debug!("client {id}: {error}");
        }
        loop {
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            match client.channel.read_message() {
                Ok(Some(request)) => self.handle_request(id, request),
                Ok(None) => return,
                Err(ChannelError::InvalidMessage {
                    id: request_id,
                    source,
                    ..
                }) => {
                    let response = Response::failure(
                        request_id.unwrap_or_default(),
                        format!("invalid request: {source}"),
                    );
                    self.send_to_client(id, &response);
                }
                Err(error) if error.is_fatal() => {
                    debug!("client {id}: {error}");
                    self.disconnect(id);
                    return;
                }
                Err(error) => {
                    let response = Response::failure("", format!("refused: {error}"));
                    self.send_to_client(id, &response);
                }
            }
        }
    }

    /// Answers a client's request, if the client is still there.
    pub(super) fn reply(&mut self, to: &ClientRef, response: Response) {
        self.send_to_client(to.client, &response);
        if response.is_final() {
            self.close_if_done(to.client);
        }
    }

    pub(super) fn send_to_client(&mut self, id: u64, response: &Response) {
        if id == super::provider::CLIENT {
            self.fleet_answer(response);
            return;
        }
        let max_backlog = self.settings.max_client_backlog();
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        match client.channel.write_message(response) {
            Ok(()) => {}
            Err(ChannelError::OutgoingMessageTooLarge { size, max }) => {
                let refusal = Response::failure(
                    response.id.clone(),
                    format!(
                        "the answer ({size} bytes) is larger than max_command_buffer_size \
                         ({max} bytes): narrow the query with filters, or raise the setting"
                    ),
                );
                let _ = client.channel.write_message(&refusal);
            }
            Err(error) if error.is_fatal() => {
                debug!("client {id}: {error}");
                self.disconnect(id);
                return;
            }
            Err(error) => warn!("cannot answer client {id}: {error}"),
        }
        if client.channel.pending_output_len() > max_backlog {
            warn!(
                "client {id} does not read its answers ({} bytes waiting): disconnecting it",
                client.channel.pending_output_len()
            );
            self.disconnect(id);
        }
    }

    pub(super) fn disconnect(&mut self, id: u64) {
        if let Some(mut client) = self.clients.remove(&id) {
            let _ = self.poll.registry().deregister(&mut client.channel);
            self.release_token(client.token);
            debug!("client {id} disconnected");
            self.registrations_client_gone(id);
        }
    }

    /// Writes what is still queued for clients before the process exits, for at most a
    /// moment: a client that does not read loses its answer.
    pub(super) fn flush_clients(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(500);
        for client in self.clients.values_mut() {
            while client.channel.has_pending_output() && Instant::now() < deadline {
                match client.channel.writable() {
                    Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        if !self.clients.is_empty() {
            info!("closing {} command connection(s)", self.clients.len());
        }
    }
}
