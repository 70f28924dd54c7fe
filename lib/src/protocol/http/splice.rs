//! HTTP/1 bodies through a kernel pipe: once a message's head went out and every body byte
//! read with it was sent, the rest of a large body of known length moves from one socket
//! to the other with `splice(2)` ([`crate::protocol::splice`]), never copied into user
//! space.
//!
//! Only the counted remainder is spliced: each splice from the source takes at most the
//! bytes the `Content-Length` still owes, so bytes after the body (a pipelined message, or
//! a backend's extra bytes) stay in the socket, where the buffered path finds them. Chunked
//! bodies, bodies that end with the connection, TLS and HTTP/2 backend streams stay on the
//! buffered path, and so does a message whose session faults shape (the caller's check):
//! their bytes must be seen, decoded or budgeted.

use std::os::fd::{AsRawFd, RawFd};

use crate::{
    protocol::{
        http::body::Body,
        splice::{KernelPipe, Spliced},
    },
    session::endpoint::{Endpoint, Ready},
};

/// When HTTP/1 bodies are spliced: the worker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodySplice {
    /// The least body left, after the bytes read with the head, that is spliced; 0 splices
    /// none.
    pub min_body: u64,
    /// The capacity asked of each kernel pipe; 0 keeps the kernel's default.
    pub pipe_capacity: usize,
}

/// The rest of a body of known length on its way through a kernel pipe.
///
/// Invariant: the pipe holds body bytes only, and `unread` plus the bytes in the pipe are
/// what the body still owes its sink.
#[derive(Debug)]
pub struct SplicedBody {
    pipe: KernelPipe,
    /// Bytes of the body still in the source socket.
    unread: u64,
}

/// What one round of [`SplicedBody::relay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// `filled` bytes came from the source into the pipe, `drained` went to the sink.
    Moved { filled: usize, drained: usize },
    /// Neither socket is ready.
    Nothing,
    /// The source ended before the body did, and the pipe is empty: the message is cut.
    Cut,
    /// The source socket failed.
    SourceFailed,
    /// The sink socket failed, or its peer is gone.
    SinkFailed,
}

impl SplicedBody {
    /// A spliced body for the rest of `body`, when it is worth it and allowed: a
    /// `Content-Length` body owing at least `settings.min_body` bytes, between two plain TCP
    /// sockets. The caller makes sure every body byte it read was sent already. `None` keeps
    /// the body on the buffered path (also when the kernel gives no pipe).
    pub fn start(
        settings: BodySplice,
        body: &Body,
        source: &Endpoint,
        sink: &Endpoint,
    ) -> Option<Box<SplicedBody>> {
        let Body::Length(length) = body else {
            return None;
        };
        let unread = length.remaining();
        if settings.min_body == 0
            || unread < settings.min_body
            || plain_fd(source).is_none()
            || plain_fd(sink).is_none()
        {
            return None;
        }
        match KernelPipe::new(settings.pipe_capacity) {
            Ok(pipe) => Some(Box::new(SplicedBody { pipe, unread })),
            Err(error) => {
                log::warn!("no kernel pipe for a body, it is copied instead: {error}");
                None
            }
        }
    }

    /// Whether the whole body reached the sink's socket.
    pub fn is_done(&self) -> bool {
        self.unread == 0 && self.pipe.is_empty()
    }

    /// Fills the pipe from `source` with at most what the body owes, then drains it into
    /// `sink`, as far as the sockets' readiness allows. A socket that would block loses its
    /// flag (edge-triggered: its next event sets it again).
    pub fn relay(&mut self, source: &mut Endpoint, sink: &mut Endpoint) -> Relayed {
        let Some(source_fd) = plain_fd(source) else {
            return Relayed::SourceFailed;
        };
        let Some(sink_fd) = plain_fd(sink) else {
            return Relayed::SinkFailed;
        };
        let mut filled = 0;
        if self.unread > 0
            && !source.read_closed
            && source.readiness.event.contains(Ready::READABLE)
        {
            let limit = usize::try_from(self.unread).unwrap_or(usize::MAX);
            match self.pipe.fill_from_at_most(source_fd, limit) {
                Spliced::Moved(count) => {
                    filled = count;
                    self.unread = self.unread.saturating_sub(count as u64);
                    source.bytes_read += count as u64;
                }
                Spliced::End => {
                    source.read_closed = true;
                    source.readiness.event.remove(Ready::READABLE);
                }
                Spliced::WouldBlock => source.readiness.event.remove(Ready::READABLE),
                // The socket may hold more: it stays readable until the pipe is drained.
                Spliced::Full => {}
                Spliced::Failed(kind) => {
                    source.read_failed(kind.into());
                    return Relayed::SourceFailed;
                }
            }
        }
        let mut drained = 0;
        if !self.pipe.is_empty() && sink.readiness.event.contains(Ready::WRITABLE) {
            match self.pipe.drain_into(sink_fd, usize::MAX) {
                Spliced::Moved(count) => {
                    drained = count;
                    sink.bytes_written += count as u64;
                }
                Spliced::WouldBlock | Spliced::Full => {
                    sink.readiness.event.remove(Ready::WRITABLE);
                }
                Spliced::End | Spliced::Failed(_) => return Relayed::SinkFailed,
            }
        }
        if filled > 0 || drained > 0 {
            Relayed::Moved { filled, drained }
        } else if self.unread > 0 && source.read_closed && self.pipe.is_empty() {
            Relayed::Cut
        } else {
            Relayed::Nothing
        }
    }
}

/// The descriptor of a plain TCP socket: not encrypted, not a stream of a shared HTTP/2
/// connection.
fn plain_fd(endpoint: &Endpoint) -> Option<RawFd> {
    if endpoint.tls.is_some() {
        return None;
    }
    endpoint.tcp().map(AsRawFd::as_raw_fd)
}
