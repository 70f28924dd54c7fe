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
        received: u64,
    },
    /// The client ended the stream (half-closed remote).
    Closed,
}

/// The proxy-to-client direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    AwaitingHead,
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
    pub id: StreamId,
    pub recv: Recv,
    pub send: Send,
    pub send_window: i64,
    pub recv_window: u32,
    /// Bytes received and released by the session, not yet returned by WINDOW_UPDATE.
    pub unreturned: u32,
    pub last_activity: Instant,
    /// Since when data waits on a closed send window.
    pub stalled_since: Option<Instant>,
}

impl Stream {
    pub fn is_closed(&self) -> bool {
        self.recv == Recv::Closed && self.send == Send::Closed
    }
}
