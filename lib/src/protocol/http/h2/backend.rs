//! HTTP/2 toward a backend: the connection to a backend of a cluster with `http2 = true`
//! (cleartext with prior knowledge, RFC 9113 §3.3), seen by its session as an HTTP/1.1
//! connection.
//!
//! A [`Link`] sits in the backend's [`Endpoint`](crate::session::endpoint::Endpoint), as TLS
//! sits in a client's: what the session writes is an HTTP/1.1 request as the proxy renders
//! it for any backend (from an HTTP/1.1 client or from an HTTP/2 stream), and it goes out as
//! one HTTP/2 stream (HEADERS, DATA within the backend's flow-control windows, trailers);
//! what the session reads is the response of that stream written as HTTP/1.1 (status line,
//! fields, a chunked body whose trailer section carries the response's trailers). The
//! session's HTTP/1.1 parsers then read both with their usual strictness, so an exchange
//! cannot mean one thing on one side and another on the other.
//!
//! One stream is in flight at a time; the next request of the connection (a reused backend
//! connection) opens the next stream. The backend is held to the limits of an HTTP/2
//! client (the defaults of the listener keys `h2_*`): floods of PING, SETTINGS, empty DATA,
//! WINDOW_UPDATE, RST_STREAM and CONTINUATION frames, header blocks and lists over the limits
//! end the connection with GOAWAY, and its exchange fails (a 502 before the response head).
//! A RST_STREAM of the stream in flight ends its exchange the same way; a GOAWAY lets the
//! stream in flight finish when the backend names it, and the connection is not reused.
//!
//! Every value read from the wire goes through checked arithmetic.

use std::{
    io::{ErrorKind, IoSlice, Read, Write},
    time::Instant,
};

use loona_hpack::Decoder;
use sozu_command_lib::request::H2Config;

use super::{
    StreamId,
    error::ErrorCode,
    flood::Flood,
    frame::{self, MAX_WINDOW, PREFACE},
    headers::{HeaderEncoder, Scratch},
    settings::{self, DEFAULT_WINDOW, PeerSettings},
};
use crate::{
    protocol::http::parser::{self, ChunkedBody, Method},
    session::endpoint::Transfer,
};

/// The receive window of each stream, advertised in the proxy's SETTINGS.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The receive window of the connection, opened right after the SETTINGS.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Frames for the backend beyond which no more request bytes are taken.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// The longest request head taken (the proxy renders heads shorter than its buffers).
const MAX_HEAD: usize = 64 * 1024;

/// What happened over a backend connection, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Streams opened toward the backend.
    pub streams: u64,
    /// RST_STREAM frames the backend sent for a stream in flight.
    pub resets_received: u64,
    /// GOAWAY frames the backend sent.
    pub goaways_received: u64,
    /// The proxy ended the connection for the backend's protocol error or flood.
    pub ended_by_proxy: bool,
}

/// The request side of the stream in flight.
#[derive(Debug)]
enum Request {
    /// No request: the next bytes start a head.
    Idle,
    /// Bytes of a head not yet whole.
    Head(Vec<u8>),
    /// The body, framed as the head said.
    Body(RequestBody),
    /// The request was sent whole.
    Sent,
}

#[derive(Debug)]
enum RequestBody {
    Length {
        remaining: u64,
    },
    Chunked {
        chunked: ChunkedBody,
        trailers: Vec<u8>,
    },
}

/// How the response body is written for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body may come (HEAD, 204, 304).
    Empty,
    /// The backend declared a content-length: the data goes as it is, and must add up.
    Length { remaining: u64 },
    /// No content-length: chunks, and the trailers in the trailer section.
    Chunked,
}

/// The response side of the stream in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Response {
    /// No stream in flight.
    Idle,
    /// The request went (at least its head); the response head is awaited.
    AwaitingHead { method: Method },
    /// The head was written; data and trailers may come.
    Body(Framing),
    /// The response ended.
    Done,
}

/// A header block whose CONTINUATION frames are still coming.
#[derive(Clone, Copy, Debug)]
struct PendingBlock {
    stream: StreamId,
    end_stream: bool,
    continuations: u32,
}

/// An HTTP/2 connection to a backend carrying the HTTP/1.1 exchanges of its session.
///
/// Invariant: `response` is `Idle` or `Done` whenever `request` is `Idle` or `Head`; a
/// stream is in flight from its HEADERS until its response ends.
pub struct Link {
    limits: H2Config,
    flood: Flood,
    decoder: Decoder<'static>,
    encoder: HeaderEncoder,
    peer: PeerSettings,
    has_settings: bool,
    /// Frames for the backend, not yet written from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// Bytes read from the backend, not yet a whole frame.
    input: Vec<u8>,
    /// The response in HTTP/1.1 form, not yet read by the session from `decoded_sent` on.
    decoded: Vec<u8>,
    decoded_sent: usize,
    /// The stream in flight, or the last one.
    stream: StreamId,
    request: Request,
    response: Response,
    send_window: i64,
    stream_send_window: i64,
    recv_window: u32,
    stream_recv_window: u32,
    /// Data credit owed to the backend once the session read the data.
    unreturned: u32,
    /// The backend sent GOAWAY: no new stream goes on this connection.
    going_away: bool,
    /// Why the connection carries nothing more (after `decoded` is read).
    ended: Option<Transfer>,
    /// A request waits on flow control or on the response in flight: the session is told
    /// it may write again when that changes.
    write_blocked: bool,
    block: Vec<u8>,
    pending: Option<PendingBlock>,
    /// The buffers of header block decoding, kept from one block to the next.
    decoding: Scratch,
    scratch: Vec<u8>,
    fields: Vec<parser::Header>,
    counters: LinkCounters,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Link")
            .field("stream", &self.stream)
            .field("request", &self.request)
            .field("response", &self.response)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A connection about to start: the preface and the proxy's SETTINGS are queued, and go
    /// out with the first write. `limits` bounds what the backend may send.
    pub fn new(limits: H2Config, now: Instant) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(settings::DEFAULT_HEADER_TABLE_SIZE as usize);
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(PREFACE);
        frame::write_settings(
            &mut out,
            &[
                (settings::ENABLE_PUSH, 0),
                (settings::MAX_CONCURRENT_STREAMS, 0),
                (settings::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (settings::HEADER_TABLE_SIZE, limits.max_header_table_size),
                (settings::MAX_HEADER_LIST_SIZE, limits.max_header_list_size),
            ],
        );
        frame::write_window_update(&mut out, 0, CONNECTION_WINDOW - DEFAULT_WINDOW);
        Self {
            limits,
            flood: Flood::new(now),
            decoder,
            encoder: HeaderEncoder::default(),
            peer: PeerSettings::default(),
            has_settings: false,
            out,
            out_sent: 0,
            input: Vec::new(),
            decoded: Vec::new(),
            decoded_sent: 0,
            stream: 0,
            request: Request::Idle,
            response: Response::Idle,
            send_window: i64::from(DEFAULT_WINDOW),
            stream_send_window: i64::from(DEFAULT_WINDOW),
            recv_window: CONNECTION_WINDOW,
            stream_recv_window: STREAM_WINDOW,
            unreturned: 0,
            going_away: false,
            ended: None,
            write_blocked: false,
            block: Vec::new(),
            pending: None,
            decoding: Scratch::default(),
            scratch: Vec::new(),
            fields: Vec::new(),
            counters: LinkCounters::default(),
        }
    }

    /// What happened over the connection so far.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Whether the connection can carry another request: no stream in flight, nothing
    /// unread, and neither side ended it.
    pub fn is_idle(&self) -> bool {
        self.ended.is_none()
            && !self.going_away
            && matches!(self.request, Request::Idle | Request::Sent)
            && matches!(self.response, Response::Idle | Response::Done)
            && self.decoded_sent == self.decoded.len()
            && self.input.is_empty()
    }

    /// Response bytes are waiting for the session.
    pub fn has_unread(&self) -> bool {
        self.decoded_sent < self.decoded.len()
    }

    /// Frames are waiting for the socket.
    pub fn has_pending_output(&self) -> bool {
        self.out_sent < self.out.len()
    }

    /// Reads the response for the session into `space`. `readable` says whether the socket
    /// may have bytes, and is cleared when it has none; `writable` is set when a request
    /// that waited (on flow control, or on the previous response) may go on.
    pub fn read(
        &mut self,
        socket: &mut (impl Read + Write),
        space: &mut [u8],
        readable: &mut bool,
        writable: &mut bool,
    ) -> Transfer {
        if !self.has_unread() && self.ended.is_none() && *readable {
            self.read_frames(socket, readable);
            self.unblock(writable);
        }
        self.flush(socket);
        if self.has_unread() {
            *readable = true;
            return Transfer::Moved(self.deliver(space));
        }
        self.ended.unwrap_or(Transfer::WouldBlock)
    }

    /// Reads and handles what the socket has, until it would block or the connection ends.
    fn read_frames(&mut self, socket: &mut impl Read, readable: &mut bool) {
        let mut chunk = [0u8; 16 * 1024];
        while *readable && self.ended.is_none() {
            match socket.read(&mut chunk) {
                Ok(0) => self.end(Transfer::Closed),
                Ok(count) => {
                    self.input
                        .extend_from_slice(chunk.get(..count).unwrap_or_default());
                    self.receive(Instant::now());
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => *readable = false,
                Err(error) => self.end(Transfer::from_error(&error)),
            }
        }
    }

    /// Sets `writable` when a request that waited may go on.
    fn unblock(&mut self, writable: &mut bool) {
        if self.write_blocked && self.can_take_request() {
            self.write_blocked = false;
            *writable = true;
        }
    }

    /// Sends queued frames when `writable`, and reads what the backend sent when `readable`
    /// (keeping the response for [`Link::read`]). Afterwards `readable` says whether the
    /// session has something to read, `writable` whether it may write.
    pub fn service(
        &mut self,
        socket: &mut (impl Read + Write),
        readable: &mut bool,
        writable: &mut bool,
    ) {
        if *writable && !self.flush(socket) {
            *writable = false;
        }
        self.read_frames(socket, readable);
        if self.has_unread() || self.ended.is_some() {
            *readable = true;
        }
        self.unblock(writable);
        if !self.flush(socket) {
            *writable = false;
        }
    }

    /// Takes request bytes from `slices` (as many as flow control and the frames already
    /// queued allow) and sends them as frames. `writable` is cleared when nothing more can
    /// go now.
    pub fn write(
        &mut self,
        socket: &mut (impl Read + Write),
        slices: &[IoSlice<'_>],
        writable: &mut bool,
    ) -> Transfer {
        if let Some(end) = self.ended {
            return match end {
                Transfer::Moved(_) | Transfer::WouldBlock => Transfer::Closed,
                end => end,
            };
        }
        let mut taken = 0;
        for slice in slices {
            let count = self.take_request(slice);
            taken += count;
            if count < slice.len() {
                break;
            }
        }
        if !self.flush(socket) {
            *writable = false;
        }
        if let Some(end) = self.ended.filter(|_| taken == 0) {
            return end;
        }
        if taken == 0 {
            self.write_blocked = true;
            *writable = false;
            return Transfer::WouldBlock;
        }
        Transfer::Moved(taken)
    }

    /// Writes queued frames; true when none is left (or the socket failed, which the next
    /// read reports).
    pub fn flush(&mut self, socket: &mut impl Write) -> bool {
        while let Some(pending) = self
            .out
            .get(self.out_sent..)
            .filter(|rest| !rest.is_empty())
        {
            match socket.write(pending) {
                Ok(0) => {
                    self.end(Transfer::Closed);
                    return true;
                }
                Ok(count) => self.out_sent += count,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
                Err(error) => {
                    self.end(Transfer::from_error(&error));
                    return true;
                }
            }
        }
        self.out.clear();
        self.out_sent = 0;
        true
    }

    fn end(&mut self, transfer: Transfer) {
        if self.ended.is_none() {
            self.ended = Some(transfer);
        }
    }

    /// Copies response bytes into `space`; once all are read, the data credit goes back.
    fn deliver(&mut self, space: &mut [u8]) -> usize {
        let pending = self.decoded.get(self.decoded_sent..).unwrap_or_default();
        let count = pending.len().min(space.len());
        if let (Some(target), Some(source)) = (space.get_mut(..count), pending.get(..count)) {
            target.copy_from_slice(source);
        }
        self.decoded_sent += count;
        if self.decoded_sent == self.decoded.len() {
            self.decoded.clear();
            self.decoded_sent = 0;
            self.return_credit();
        }
        count
    }

    fn return_credit(&mut self) {
        let credit = std::mem::take(&mut self.unreturned);
        if credit == 0 || self.ended.is_some() {
            return;
        }
        frame::write_window_update(&mut self.out, 0, credit);
        self.recv_window = self.recv_window.saturating_add(credit).min(MAX_WINDOW);
        if matches!(
            self.response,
            Response::Body(_) | Response::AwaitingHead { .. }
        ) {
            frame::write_window_update(&mut self.out, self.stream, credit);
            self.stream_recv_window = self
                .stream_recv_window
                .saturating_add(credit)
                .min(MAX_WINDOW);
        }
    }

    /// Ends the connection for an error: GOAWAY to the backend, and the exchange fails.
    fn fail(&mut self, code: ErrorCode) {
        if self.ended.is_none() {
            frame::write_goaway(&mut self.out, 0, code);
            self.counters.ended_by_proxy = true;
        }
        self.end(Transfer::Error(ErrorKind::InvalidData));
    }
}

mod request;
mod response;

#[cfg(test)]
mod tests;
