//! One end of a session: a TCP socket (or, toward a backend of an `http2` cluster, a stream
//! of a shared HTTP/2 connection, [`MuxStream`]), its event-loop token, and its readiness;
//! TLS inside a client's.
//!
//! Sockets are registered once, edge-triggered, for both reading and writing. The kernel's
//! side of readiness (`event`) is set by events and cleared when a call would block; the
//! protocol's side (`interest`) says what the session wants to do next. The session is driven
//! while `event & interest` is not empty, so no `epoll_ctl` is needed when interest changes.

use std::{
    io::{self, ErrorKind, IoSlice, Read},
    net::{Shutdown, SocketAddr},
    ops::{BitAnd, BitOr, BitOrAssign, Not},
    sync::Arc,
};

use mio::{Token, net::TcpStream};
use rustls::ServerConfig;

use crate::{
    pool::Buffer,
    protocol::{http::h2::headers::NeverIndexed, tls::TlsStream},
    session::mux::{MuxState, MuxStream},
};

/// A set of readiness flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready(u8);

impl Ready {
    pub const EMPTY: Ready = Ready(0);
    pub const READABLE: Ready = Ready(1);
    pub const WRITABLE: Ready = Ready(2);
    /// The peer closed its write side (or the whole connection): the end of stream is
    /// waiting to be read.
    pub const HUP: Ready = Ready(4);
    pub const ERROR: Ready = Ready(8);
    pub const ALL: Ready = Ready(15);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0 && !other.is_empty()
    }

    pub fn insert(&mut self, other: Ready) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: Ready) {
        self.0 &= !other.0;
    }

    /// The flags of a mio event.
    pub fn from_event(event: &mio::event::Event) -> Ready {
        let mut ready = Ready::EMPTY;
        if event.is_readable() || event.is_read_closed() {
            ready.insert(Ready::READABLE);
        }
        if event.is_writable() || event.is_write_closed() {
            ready.insert(Ready::WRITABLE);
        }
        if event.is_read_closed() {
            ready.insert(Ready::HUP);
        }
        if event.is_error() {
            ready.insert(Ready::ERROR);
        }
        ready
    }
}

impl BitAnd for Ready {
    type Output = Ready;
    fn bitand(self, rhs: Ready) -> Ready {
        Ready(self.0 & rhs.0)
    }
}

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl Not for Ready {
    type Output = Ready;
    fn not(self) -> Ready {
        Ready(!self.0 & Ready::ALL.0)
    }
}

/// What the kernel reported and what the protocol wants, for one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    pub event: Ready,
    pub interest: Ready,
}

impl Readiness {
    /// What can be done now.
    pub fn filter(&self) -> Ready {
        self.event & self.interest
    }

    pub fn can_read(&self) -> bool {
        self.filter().contains(Ready::READABLE)
    }

    pub fn can_write(&self) -> bool {
        self.filter().contains(Ready::WRITABLE)
    }
}

/// What a read or write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Moved this many bytes (more than zero).
    Moved(usize),
    /// Nothing to do until the next event.
    WouldBlock,
    /// End of stream (read) or the peer is gone (write).
    Closed,
    /// A socket error other than the peer going away.
    Error(ErrorKind),
}

impl Transfer {
    /// A failed call: the peer going away is an end of stream, anything else an error.
    pub fn from_error(error: &io::Error) -> Transfer {
        match error.kind() {
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected => Transfer::Closed,
            kind => Transfer::Error(kind),
        }
    }
}

/// What a socket holds that was not read yet ([`Endpoint::unread`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    Nothing,
    Bytes,
    /// The end of the stream, or an error: the connection is over.
    End,
}

/// What an endpoint reads from and writes to.
#[derive(Debug)]
pub enum Socket {
    /// A TCP socket of its own.
    Tcp(TcpStream),
    /// A stream of a backend HTTP/2 connection shared with other sessions (a cluster with
    /// `http2 = true`): reads and writes carry HTTP/1.1 messages, each exchanged as a
    /// stream. Its token is the handle's own, which the loop wakes; no socket is behind it.
    Mux(MuxStream),
}

/// A socket of a session: plain, or encrypted when `tls` is set (then reads and writes carry
/// plaintext, and the handshake advances as bytes arrive).
#[derive(Debug)]
pub struct Endpoint {
    pub stream: Socket,
    pub tls: Option<Box<TlsStream>>,
    pub token: Token,
    pub readiness: Readiness,
    /// The peer reported end of stream (read side finished).
    pub read_closed: bool,
    /// We shut our write side down.
    pub write_shut: bool,
    /// The peer reset the connection (a read failed with it gone): nothing more comes from
    /// it ([`Endpoint::read_closed`] is set too), and nothing written reaches it.
    pub reset: bool,
    /// A short read after the peer's hangup drained what preceded its end of stream: the
    /// next read reports the end without asking the kernel.
    end_reached: bool,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Endpoint {
    pub fn new(stream: TcpStream, token: Token) -> Self {
        Endpoint::over(Socket::Tcp(stream), token)
    }

    /// An endpoint on a stream of a shared backend HTTP/2 connection; `token` is the
    /// handle's, through which the loop wakes it.
    pub fn mux_stream(stream: MuxStream, token: Token) -> Self {
        Endpoint::over(Socket::Mux(stream), token)
    }

    fn over(stream: Socket, token: Token) -> Self {
        Endpoint {
            stream,
            tls: None,
            token,
            readiness: Readiness::default(),
            read_closed: false,
            write_shut: false,
            reset: false,
            end_reached: false,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// Starts TLS on the socket. `already_read` holds bytes read from the socket before (what
    /// followed a PROXY header in the same read): they are the start of the TLS stream, so the
    /// socket counts as readable until they are taken. Every TLS session starts here.
    pub fn start_tls(
        &mut self,
        config: Arc<ServerConfig>,
        buffer_limit: usize,
        already_read: Buffer,
    ) -> Result<(), rustls::Error> {
        if !already_read.is_empty() {
            self.readiness.event.insert(Ready::READABLE);
        }
        self.tls = Some(Box::new(TlsStream::new(
            config,
            buffer_limit,
            already_read,
        )?));
        Ok(())
    }

    /// Whether the connection speaks HTTP/2 to its backend (a stream of a shared one).
    pub fn speaks_h2(&self) -> bool {
        matches!(self.stream, Socket::Mux(_))
    }

    /// Encodes the fields named in `never_indexed` never indexed in the next request head,
    /// on a stream of a shared HTTP/2 connection (an HTTP/1.1 backend has no such mark).
    pub fn mark_never_indexed(&self, never_indexed: &NeverIndexed) {
        if let Socket::Mux(handle) = &self.stream {
            handle.mark_never_indexed(never_indexed);
        }
    }

    /// The fields an HTTP/2 backend marked never indexed in the response heads of the
    /// stream in flight: none over HTTP/1.1.
    pub fn response_never_indexed(&self) -> NeverIndexed {
        match &self.stream {
            Socket::Mux(handle) => handle.response_never_indexed(),
            Socket::Tcp(_) => NeverIndexed::default(),
        }
    }

    /// The TCP socket, unless the endpoint is a stream of a shared connection.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Socket::Tcp(stream) => Some(stream),
            Socket::Mux(_) => None,
        }
    }

    /// The TCP socket, unless the endpoint is a stream of a shared connection.
    pub fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.stream {
            Socket::Tcp(stream) => Some(stream),
            Socket::Mux(_) => None,
        }
    }

    /// The error of a connect that failed, if any: `Err` when it cannot be known. A stream
    /// of a shared connection has its connection's: `NotConnected` once that failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match &self.stream {
            Socket::Tcp(stream) => stream.take_error(),
            Socket::Mux(handle) => {
                let failed = !matches!(handle.state(), Some(MuxState::Connecting | MuxState::Open));
                Ok(failed.then(|| ErrorKind::NotConnected.into()))
            }
        }
    }

    /// The peer's address; `NotConnected` while a connect is in progress (for a stream of
    /// a shared connection, while that connection connects).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.stream {
            Socket::Tcp(stream) => stream.peer_addr(),
            Socket::Mux(handle) if handle.state() == Some(MuxState::Open) => {
                handle.mux().try_borrow().map_or_else(
                    |_| Err(ErrorKind::NotConnected.into()),
                    |mux| Ok(mux.address),
                )
            }
            Socket::Mux(_) => Err(ErrorKind::NotConnected.into()),
        }
    }

    /// Reads into `space`. A short read means the kernel had no more at that moment, so the
    /// readable flag is cleared without another call to see `EAGAIN`, unless the peer
    /// already reported a hangup: then the end of stream is still to be read, and on a plain
    /// socket the next read reports it without a call ([`Endpoint::note_drained`]).
    pub fn read(&mut self, space: &mut [u8]) -> Transfer {
        if space.is_empty() {
            return Transfer::WouldBlock;
        }
        let stream = match &mut self.stream {
            Socket::Tcp(stream) => stream,
            Socket::Mux(handle) => {
                let mut readable = self.readiness.event.contains(Ready::READABLE);
                let mut writable = false;
                let transfer = handle.read(space, &mut readable, &mut writable);
                if !readable {
                    self.readiness.event.remove(Ready::READABLE);
                }
                if writable {
                    self.readiness.event.insert(Ready::WRITABLE);
                }
                match transfer {
                    Transfer::Moved(count) => self.bytes_read += count as u64,
                    Transfer::Closed => self.read_closed = true,
                    Transfer::WouldBlock | Transfer::Error(_) => {}
                }
                return transfer;
            }
        };
        if let Some(tls) = self.tls.as_mut() {
            let mut readable = self.readiness.event.contains(Ready::READABLE);
            let transfer = tls.read(stream, space, &mut readable);
            // After a hangup, a short read still leaves the end of stream to read.
            let end_pending =
                matches!(transfer, Transfer::Moved(_)) && self.readiness.event.contains(Ready::HUP);
            if !readable && !end_pending {
                self.readiness.event.remove(Ready::READABLE);
            }
            match transfer {
                Transfer::Moved(count) => self.bytes_read += count as u64,
                Transfer::Closed => self.read_closed = true,
                Transfer::WouldBlock | Transfer::Error(_) => {}
            }
            return transfer;
        }
        if self.end_reached {
            self.read_closed = true;
            self.readiness.event.remove(Ready::READABLE);
            return Transfer::Closed;
        }
        loop {
            match stream.read(space) {
                Ok(0) => {
                    self.read_closed = true;
                    self.readiness.event.remove(Ready::READABLE);
                    return Transfer::Closed;
                }
                Ok(count) => {
                    self.bytes_read += count as u64;
                    if count < space.len() {
                        self.note_drained();
                    }
                    return Transfer::Moved(count);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.readiness.event.remove(Ready::READABLE);
                    return Transfer::WouldBlock;
                }
                Err(error) => return self.read_failed(error),
            }
        }
    }

    /// The peer's stream ended and everything before its end was read: known from the read
    /// that returned 0, or from a short read after the hangup (the next read reports the end
    /// without a call).
    pub fn read_to_the_end(&self) -> bool {
        self.read_closed || self.end_reached
    }

    /// A read took less than it had room for: the kernel had nothing more. Without a hangup
    /// reported, more may come later (the readable flag is cleared, so no call is made to
    /// see `EAGAIN`). After one without an error (the peer's FIN: TCP delivers in order, so
    /// every byte before it was queued when the hangup was reported), what was read was
    /// the last: the end of stream is known without another call, which would return 0.
    fn note_drained(&mut self) {
        let event = self.readiness.event;
        if !event.contains(Ready::HUP) {
            self.readiness.event.remove(Ready::READABLE);
        } else if !event.contains(Ready::ERROR) {
            self.end_reached = true;
        }
    }

    /// Writes `data`, clearing the writable flag when the kernel takes less than offered.
    pub fn write(&mut self, data: &[u8]) -> Transfer {
        self.write_vectored(&[IoSlice::new(data)])
    }

    /// Writes several slices in one system call.
    pub fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> Transfer {
        self.send(slices, false)
    }

    /// Writes the last bytes of our stream, which [`Endpoint::shutdown_write`] or the close
    /// follows at once: on a plain socket the kernel holds the tail of them (`MSG_MORE`) so
    /// that the end of stream leaves in the same segment, not in one of its own.
    pub fn write_before_end(&mut self, data: &[u8]) -> Transfer {
        self.send(&[IoSlice::new(data)], true)
    }

    /// Writes `slices`, holding the tail in the kernel when `more` follows at once (plain
    /// sockets only).
    fn send(&mut self, slices: &[IoSlice<'_>], more: bool) -> Transfer {
        let offered: usize = slices.iter().map(|slice| slice.len()).sum();
        if offered == 0 {
            return Transfer::WouldBlock;
        }
        let stream = match &mut self.stream {
            Socket::Tcp(stream) => stream,
            Socket::Mux(handle) => {
                let mut writable = self.readiness.event.contains(Ready::WRITABLE);
                let transfer = handle.write(slices, &mut writable);
                if !writable {
                    self.readiness.event.remove(Ready::WRITABLE);
                }
                if let Transfer::Moved(count) = transfer {
                    self.bytes_written += count as u64;
                }
                return transfer;
            }
        };
        if let Some(tls) = self.tls.as_mut() {
            let mut writable = self.readiness.event.contains(Ready::WRITABLE);
            let transfer = tls.write(stream, slices, &mut writable);
            if !writable {
                self.readiness.event.remove(Ready::WRITABLE);
            }
            if let Transfer::Moved(count) = transfer {
                self.bytes_written += count as u64;
            }
            return transfer;
        }
        let flags = if more {
            libc::MSG_MORE | libc::MSG_NOSIGNAL
        } else {
            libc::MSG_NOSIGNAL
        };
        let socket = socket2::SockRef::from(&*stream);
        loop {
            // One slice (the most frequent case) goes by `send`, which skips the file layer
            // a `writev` goes through (the vector's copy from user memory, the file checks);
            // several go by `sendmsg`, in one call.
            let written = match slices {
                [slice] => socket.send_with_flags(slice, flags),
                _ => socket.send_vectored_with_flags(slices, flags),
            };
            match written {
                Ok(0) => return Transfer::Closed,
                Ok(count) => {
                    self.bytes_written += count as u64;
                    if count < offered {
                        self.readiness.event.remove(Ready::WRITABLE);
                    }
                    return Transfer::Moved(count);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.readiness.event.remove(Ready::WRITABLE);
                    return Transfer::WouldBlock;
                }
                Err(error) => return self.failed(error),
            }
        }
    }

    /// A read failed with `error`. When the peer is gone (a reset), its stream ended for good:
    /// unmarked, a stage waiting for the end of the stream would wait for an event that never
    /// comes (the socket is edge-triggered and its readable flag is cleared).
    pub fn read_failed(&mut self, error: io::Error) -> Transfer {
        let transfer = self.failed(error);
        if transfer == Transfer::Closed {
            self.read_closed = true;
            self.reset = true;
        }
        transfer
    }

    fn failed(&mut self, error: io::Error) -> Transfer {
        self.readiness
            .event
            .remove(Ready::READABLE | Ready::WRITABLE);
        Transfer::from_error(&error)
    }

    /// Shuts our write side: the peer reads end of stream once it has read what we sent. On
    /// TLS, a close_notify is queued and the socket is shut once it is sent.
    pub fn shutdown_write(&mut self) {
        if self.write_shut {
            return;
        }
        self.write_shut = true;
        if let Some(tls) = self.tls.as_mut() {
            tls.close();
        }
        if self.flush() {
            // The peer may be gone already; nothing more to do then. A stream of a shared
            // connection ends with its request's framing.
            if let Some(stream) = self.tcp() {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
    }

    /// Whether closing the socket now ends our stream as [`Endpoint::shutdown_write`] would:
    /// a plain socket whose peer's end of stream was read, so nothing is left unread (the
    /// close sends a FIN, not a reset) and no encrypted or framed bytes wait to be sent.
    pub fn closes_like_shutdown(&self) -> bool {
        self.tls.is_none() && self.tcp().is_some() && self.read_closed && !self.reset
    }

    /// What the peer sent that was not read yet. It asks the kernel (a non-blocking `MSG_PEEK`
    /// of one byte, which consumes nothing), so a stale readable flag does not count. For plain
    /// sockets: backend connections.
    pub fn unread(&self) -> Unread {
        if self.read_closed {
            return Unread::End;
        }
        let stream = match &self.stream {
            Socket::Tcp(stream) => stream,
            Socket::Mux(handle) if handle.has_unread() => return Unread::Bytes,
            Socket::Mux(handle) if !handle.is_idle() => return Unread::End,
            Socket::Mux(_) => return Unread::Nothing,
        };
        let mut byte = [0u8; 1];
        loop {
            return match stream.peek(&mut byte) {
                Ok(0) => Unread::End,
                Ok(_) => Unread::Bytes,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => Unread::Nothing,
                Err(_) => Unread::End,
            };
        }
    }

    /// Whether an established connection can carry a new request: open both ways, no hangup
    /// or error reported, and nothing unread. Bytes that arrive with no request outstanding
    /// answer none; on a reused connection they would be read as the response to the next
    /// request.
    pub fn is_clean(&self) -> bool {
        let event = self.readiness.event;
        !self.write_shut
            && !event.contains(Ready::HUP)
            && !event.contains(Ready::ERROR)
            && self.unread() == Unread::Nothing
    }

    /// [`Endpoint::is_clean`] from the flags the event loop keeps current: the kernel is asked
    /// (a `MSG_PEEK`) only when a readable flag is set, which a read that filled the buffer may
    /// leave behind. For a connection whose events of the current batch were all noted before
    /// its session runs (the event loop notes backend events first).
    pub fn is_clean_as_reported(&self) -> bool {
        let event = self.readiness.event;
        !self.write_shut
            && !event.contains(Ready::HUP)
            && !event.contains(Ready::ERROR)
            && (!event.contains(Ready::READABLE) || self.unread() == Unread::Nothing)
    }

    /// Encrypted bytes are waiting for the socket. (A shared connection's frames are its
    /// own to send.)
    pub fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Sends pending encrypted bytes; true when nothing is left (or nothing can be sent any
    /// more because the socket failed).
    pub fn flush(&mut self) -> bool {
        let (Some(tls), Socket::Tcp(stream)) = (self.tls.as_mut(), &mut self.stream) else {
            return true;
        };
        match tls.flush(stream) {
            Ok(()) => {
                if self.write_shut {
                    let _ = stream.shutdown(Shutdown::Write);
                }
                true
            }
            Err(Transfer::WouldBlock) => {
                self.readiness.event.remove(Ready::WRITABLE);
                false
            }
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests;
