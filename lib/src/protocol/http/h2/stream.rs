//! One HTTP/2 stream as the connection codec sees it: what each direction may still carry
//! and its flow-control windows. Routing and forwarding state belong to the session.

use std::time::Instant;

use super::StreamId;

/// The client-to-proxy direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// DATA (and trailers) may come.
    Body {
        /// The declared content-length, which the DATA frames must add up to.
        content_length: Option<u64>,
        /// Body bytes received so far, checked against `content_length`.
        received: u64,
    },
    /// The client ended the stream (half-closed remote).
    Closed,
}

/// The proxy-to-client direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// No response head sent yet.
    AwaitingHead,
    /// The response head was sent; body bytes and trailers may follow.
    Body,
    /// The proxy ended the stream (half-closed local).
    Closed,
}

/// A stream that is open in at least one direction.
///
/// Invariant: `send_window <= 2^31-1`; it may be negative after the client lowers
/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.9.2). `recv_window` never exceeds what was
/// advertised.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The stream's id (odd: opened by the client).
    pub id: StreamId,
    /// Where the request side is.
    pub recv: Recv,
    /// Where the response side is.
    pub send: Send,
    /// Bytes the proxy may still send on the stream (the client's credit).
    pub send_window: i64,
    /// Bytes the client may still send on the stream (the proxy's credit).
    pub recv_window: u32,
    /// Bytes received and released by the session, not yet returned by WINDOW_UPDATE.
    pub unreturned: u32,
    /// When a frame was last received or sent on the stream, for the stream idle timeout.
    pub last_activity: Instant,
    /// Since when data waits on a closed send window.
    pub stalled_since: Option<Instant>,
}

impl Stream {
    /// Whether both directions ended: the stream can be forgotten.
    pub fn is_closed(&self) -> bool {
        self.recv == Recv::Closed && self.send == Send::Closed
    }
}
