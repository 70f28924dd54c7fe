//! HTTP/2 (RFC 9113) toward clients, as a socket-free state machine.
//!
//! [`Connection`] takes the bytes a client sent and gives back one [`Event`] per frame
//! that matters to the session (a new request with its head, request data, trailers, a
//! reset, a GOAWAY), answering on its own what the protocol requires (SETTINGS ACK, PING
//! ACK, WINDOW_UPDATE, RST_STREAM, GOAWAY). The session then sends responses through its
//! commands (head, data within the flow-control windows, trailers, reset, shutdown). Every
//! byte to send goes into a `Vec<u8>` the caller owns; request data is handed out as a range
//! of the input, never copied.
//!
//! - [`frame`]: reading and writing frames, with the checks that need no state;
//! - `assembly`: a header block put together from HEADERS and CONTINUATION frames, for
//!   the blocks of clients and of backends alike;
//! - [`settings`]: the client's SETTINGS;
//! - [`hpack`]: HPACK decoding (tables, Huffman code), and its integers;
//! - [`headers`]: header blocks: request heads translated to the HTTP/1.1
//!   [`RequestHead`](crate::protocol::http::parser::RequestHead), response heads;
//! - [`flood`]: the counters of the flood defences;
//! - [`stream`]: the state of one stream;
//! - [`connection`]: the state machine;
//! - [`backend`]: HTTP/2 toward the backends of clusters with `http2 = true`, each
//!   connection carrying the HTTP/1.1 exchanges of many sessions as concurrent streams;
//! - [`session`]: the stage of a session that serves a client in HTTP/2 with it, each
//!   stream an `exchange` forwarded to an HTTP/1.1 backend.

mod assembly;
pub mod backend;
pub mod connection;
pub mod error;
mod exchange;
pub mod flood;
pub mod frame;
pub mod headers;
pub mod hpack;
pub mod session;
pub mod settings;
pub mod stream;

#[cfg(test)]
mod tests;

pub use connection::{Connection, Counters, Event, Progress, SendError};
pub use error::{Cause, ConnectionError, ErrorCode};
pub use session::H2;

/// A stream identifier: 31 bits, odd for streams the client opens.
pub type StreamId = u32;
