//! HTTP/2 toward a backend: a connection to a backend of a cluster with `http2 = true`
//! (cleartext with prior knowledge, RFC 9113 §3.3) carrying many streams at once, each seen
//! by its owner as an HTTP/1.1 connection.
//!
//! A [`Link`] is the connection-level state of one such connection: the HPACK encoder and
//! decoder, the connection's flow-control windows, the backend's SETTINGS, the flood
//! counters, GOAWAY, and one [`LinkStream`] per stream handle, by key. The socket is not
//! in it: every call that sends or receives is given the socket
//! (`session::mux::Mux` owns both and shares them with the sessions' handles).
//!
//! Per stream, what its owner writes is an HTTP/1.1 request as the proxy renders it for any
//! backend (from an HTTP/1.1 client or from an HTTP/2 stream), and it goes out as one
//! HTTP/2 stream (HEADERS, DATA within the backend's flow-control windows, trailers); what
//! its owner reads is the response of that stream written as HTTP/1.1 (status line, fields,
//! a chunked body whose trailer section carries the response's trailers). The session's
//! HTTP/1.1 parsers then read both with their usual strictness, so an exchange cannot mean
//! one thing on one side and another on the other. A handle carries one exchange at a time;
//! its next request opens the next stream.
//!
//! Flow control is per stream: the data of a stream waits in its own buffer, and the
//! stream's window is opened again only when its owner read it, so a slow reader stalls
//! only its stream; the connection's window is given back as frames are read. A stream is
//! opened only while fewer than the backend's SETTINGS_MAX_CONCURRENT_STREAMS are open; a
//! request beyond waits (its owner is told when it may write again).
//!
//! The backend is held to the limits of an HTTP/2 client (the defaults of the listener keys
//! `h2_*`): floods of PING, SETTINGS, empty DATA, WINDOW_UPDATE, RST_STREAM and CONTINUATION
//! frames, header blocks and lists over the limits end the connection with GOAWAY, and every
//! stream on it fails (a 502 before the response head, a cut after). A RST_STREAM ends its
//! stream only. A GOAWAY lets the streams the backend names (up to its last stream id)
//! finish and fails the later ones as not processed; no new stream opens.
//!
//! Every value read from the wire goes through checked arithmetic.

use std::{
    io::{ErrorKind, IoSlice, Read, Write},
    time::Instant,
};

use mio::Token;
use rustc_hash::FxHashMap;
use slab::Slab;
use sozu_command_lib::request::H2Config;

use super::{
    StreamId,
    assembly::HeaderAssembly,
    error::ErrorCode,
    flood::Flood,
    frame::{self, MAX_WINDOW, PREFACE},
    headers::{HeaderEncoder, NeverIndexed, Scratch},
    hpack::Decoder,
    settings::{self, DEFAULT_WINDOW, PeerSettings},
};
use crate::{
    protocol::http::parser::{self, ChunkedBody, Method},
    session::{
        endpoint::{Ready, Transfer},
        mux::Wakes,
    },
};

/// The receive window of each stream, advertised in the proxy's SETTINGS.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The receive window of the connection, opened right after the SETTINGS.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Frames for the backend beyond which no more request bytes are taken.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// The longest request head taken (the proxy renders heads shorter than its buffers).
const MAX_HEAD: usize = 64 * 1024;
/// The streams a connection carries at once when the backend does not say
/// (SETTINGS_MAX_CONCURRENT_STREAMS unset), and the most it carries whatever it says.
pub const MAX_STREAMS: u32 = 128;

/// What happened over a backend connection, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Streams opened toward the backend.
    pub streams: u64,
    /// RST_STREAM frames the backend sent for a stream in flight.
    pub resets_received: u64,
    /// GOAWAY frames the backend sent.
    pub goaways_received: u64,
    /// Streams in flight that a GOAWAY said the backend did not process.
    pub streams_refused: u64,
    /// Streams opened while another one was in flight on the connection.
    pub streams_shared: u64,
    /// The proxy ended the connection for the backend's protocol error or flood.
    pub ended_by_proxy: bool,
}

/// The request side of a stream.
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

/// How the response body is written for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body may come (HEAD, 204, 304).
    Empty,
    /// The backend declared a content-length: the data goes as it is, and must add up.
    Length { remaining: u64 },
    /// No content-length: chunks, and the trailers in the trailer section.
    Chunked,
}

/// The response side of a stream.
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

/// One stream handle of a connection: the exchange it carries now, in both directions.
///
/// Invariant: `response` is `Idle` or `Done` whenever `request` is `Idle` or `Head`; the
/// handle's stream is open (in [`Link`]'s `open`) from its HEADERS until both its request
/// and its response ended, or it was reset.
#[derive(Debug)]
pub struct LinkStream {
    /// Whom to wake when the stream has news (the owner's event-loop token).
    owner: Token,
    /// The stream in flight, or the last one (0: none yet).
    id: StreamId,
    request: Request,
    response: Response,
    send_window: i64,
    recv_window: u32,
    /// Data credit owed to the backend once the owner read the data.
    unreturned: u32,
    /// The response in HTTP/1.1 form, not yet read by the owner from `decoded_sent` on.
    decoded: Vec<u8>,
    decoded_sent: usize,
    /// A request waits on flow control, on the concurrency limit or on the response in
    /// flight: the owner is told it may write again when that changes.
    write_blocked: bool,
    /// Why the stream carries nothing more (after `decoded` is read): reset by the backend,
    /// not processed (GOAWAY), or its connection ended.
    ended: Option<Transfer>,
    /// The fields the owner's client marked never indexed, for the next request head.
    request_never_indexed: NeverIndexed,
    /// The fields the backend marked never indexed in the response heads of the stream in
    /// flight (an interim head's and the final one's together).
    response_never_indexed: NeverIndexed,
}

impl LinkStream {
    fn new(owner: Token) -> Self {
        LinkStream {
            owner,
            id: 0,
            request: Request::Idle,
            response: Response::Idle,
            send_window: 0,
            recv_window: 0,
            unreturned: 0,
            decoded: Vec::new(),
            decoded_sent: 0,
            write_blocked: false,
            ended: None,
            request_never_indexed: NeverIndexed::default(),
            response_never_indexed: NeverIndexed::default(),
        }
    }

    fn has_unread(&self) -> bool {
        self.decoded_sent < self.decoded.len()
    }

    fn is_in_flight(&self) -> bool {
        !matches!(self.request, Request::Idle | Request::Sent)
            || matches!(
                self.response,
                Response::AwaitingHead { .. } | Response::Body(_)
            )
    }
}

/// An HTTP/2 connection to a backend carrying the HTTP/1.1 exchanges of many owners, one
/// stream each at a time.
pub struct Link {
    limits: H2Config,
    flood: Flood,
    decoder: Decoder,
    encoder: HeaderEncoder,
    peer: PeerSettings,
    has_settings: bool,
    /// Frames for the backend, not yet written from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// Bytes read from the backend, not yet a whole frame.
    input: Vec<u8>,
    /// The last stream opened.
    last_stream: StreamId,
    streams: Slab<LinkStream>,
    /// The open streams: id to key in `streams`.
    open: FxHashMap<StreamId, usize>,
    send_window: i64,
    recv_window: u32,
    /// Connection credit owed to the backend: given back once the frames read are handled.
    unreturned: u32,
    /// The backend sent GOAWAY naming this last stream: no new stream goes on.
    going_away: Option<StreamId>,
    /// Why the connection carries nothing more.
    ended: Option<Transfer>,
    /// The header block being received.
    headers: HeaderAssembly,
    /// The buffers of header block decoding, kept from one block to the next.
    decoding: Scratch,
    scratch: Vec<u8>,
    fields: Vec<parser::Header>,
    counters: LinkCounters,
    /// Where owners to wake, and for what, are queued (the loop's).
    wakes: Wakes,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Link")
            .field("last_stream", &self.last_stream)
            .field("streams", &self.streams.len())
            .field("open", &self.open.len())
            .field("going_away", &self.going_away)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A connection about to start: the preface and the proxy's SETTINGS are queued, and go
    /// out with the first write. `limits` bounds what the backend may send; its streams'
    /// owners are woken through `wakes`.
    pub fn new(limits: H2Config, now: Instant, wakes: Wakes) -> Self {
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
            // Until the backend acknowledges our SETTINGS, the default table size applies.
            decoder: Decoder::default(),
            encoder: HeaderEncoder::default(),
            peer: PeerSettings::default(),
            has_settings: false,
            out,
            out_sent: 0,
            input: Vec::new(),
            last_stream: 0,
            streams: Slab::new(),
            open: FxHashMap::default(),
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: CONNECTION_WINDOW,
            unreturned: 0,
            going_away: None,
            ended: None,
            headers: HeaderAssembly::default(),
            decoding: Scratch::default(),
            scratch: Vec::new(),
            fields: Vec::new(),
            counters: LinkCounters::default(),
            wakes,
        }
    }

    /// What happened over the connection so far.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// A new stream handle for `owner`, woken through its token; returns its key.
    pub fn attach(&mut self, owner: Token) -> usize {
        self.streams.insert(LinkStream::new(owner))
    }

    /// The handle `key` goes away: a stream still in flight is cancelled (RST_STREAM), and
    /// the owners that waited for a stream to close may go on.
    pub fn detach(&mut self, key: usize) {
        let Some(stream) = self.streams.try_remove(key) else {
            return;
        };
        self.wakes.forget(stream.owner);
        if self.open.remove(&stream.id).is_some() {
            if self.ended.is_none() {
                frame::write_rst_stream(&mut self.out, stream.id, ErrorCode::Cancel);
            }
            self.wake_writers();
        }
    }

    /// How many handles the connection has.
    pub fn handles(&self) -> usize {
        self.streams.len()
    }

    /// Whether the backend's SETTINGS arrived.
    pub fn has_settings(&self) -> bool {
        self.has_settings
    }

    /// The most streams the backend lets the connection carry at once (its
    /// SETTINGS_MAX_CONCURRENT_STREAMS, at most [`MAX_STREAMS`]).
    pub fn max_streams(&self) -> usize {
        let max = self
            .peer
            .max_concurrent_streams
            .map_or(MAX_STREAMS, |max| max.min(MAX_STREAMS));
        usize::try_from(max).unwrap_or(usize::MAX)
    }

    /// Whether the connection may get new handles: neither side ended it, the backend did
    /// not send GOAWAY, and stream ids are left.
    pub fn accepts_streams(&self) -> bool {
        self.ended.is_none() && self.going_away.is_none() && self.last_stream < MAX_WINDOW - 2
    }

    /// Whether the connection carries nothing more: ended, or gone away with no stream left.
    pub fn is_over(&self) -> bool {
        self.ended.is_some() || (self.going_away.is_some() && self.open.is_empty())
    }

    /// Whether the handle can carry another request: no stream in flight, nothing unread,
    /// and neither side ended it.
    pub fn is_idle(&self, key: usize) -> bool {
        self.accepts_streams()
            && self.streams.get(key).is_some_and(|stream| {
                stream.ended.is_none() && !stream.is_in_flight() && !stream.has_unread()
            })
    }

    /// The fields to encode never indexed in the next request head of `key` (RFC 7541
    /// §6.2.3: those its client marked so), in place of any set before.
    pub fn mark_never_indexed(&mut self, key: usize, never_indexed: &NeverIndexed) {
        if let Some(stream) = self.streams.get_mut(key) {
            stream.request_never_indexed.clone_from(never_indexed);
        }
    }

    /// The fields the backend marked never indexed in the response heads of `key`'s stream.
    pub fn response_never_indexed(&self, key: usize) -> Option<&NeverIndexed> {
        self.streams
            .get(key)
            .map(|stream| &stream.response_never_indexed)
    }

    /// Response bytes are waiting for the owner of `key`.
    pub fn has_unread(&self, key: usize) -> bool {
        self.streams.get(key).is_some_and(LinkStream::has_unread)
    }

    /// Frames are waiting for the socket.
    pub fn has_pending_output(&self) -> bool {
        self.out_sent < self.out.len()
    }

    /// Every handle's owner, for when the connection ends or connects.
    pub fn owners(&self) -> impl Iterator<Item = Token> + '_ {
        self.streams.iter().map(|(_, stream)| stream.owner)
    }

    /// Ends the connection from outside (its socket failed, or the proxy closes it):
    /// every stream fails.
    pub fn abort(&mut self, transfer: Transfer) {
        self.end(transfer);
    }

    /// Reads the response of `key` for its owner into `space`; `readable` is cleared when
    /// nothing is left to read now, and `writable` set when its request may go on.
    pub fn read(
        &mut self,
        key: usize,
        socket: &mut impl Write,
        space: &mut [u8],
        readable: &mut bool,
        writable: &mut bool,
    ) -> Transfer {
        let Some(stream) = self.streams.get_mut(key) else {
            return Transfer::Closed;
        };
        if stream.write_blocked && self.ended.is_some() {
            stream.write_blocked = false;
            *writable = true;
        }
        if stream.has_unread() {
            let count = self.deliver(key, space);
            self.flush(socket);
            return Transfer::Moved(count);
        }
        *readable = false;
        let ended = self.streams.get(key).and_then(|stream| stream.ended);
        ended.or(self.ended).unwrap_or(Transfer::WouldBlock)
    }

    /// Reads and handles what the socket has, until it would block or the connection ends;
    /// gives the connection's credit back and sends what that queued. `readable` is
    /// cleared when the socket has nothing more.
    pub fn service(&mut self, socket: &mut (impl Read + Write), readable: &mut bool) {
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
        let credit = std::mem::take(&mut self.unreturned);
        if credit > 0 && self.ended.is_none() {
            frame::write_window_update(&mut self.out, 0, credit);
            self.recv_window = self.recv_window.saturating_add(credit).min(MAX_WINDOW);
        }
        if self.flush(socket) {
            self.wake_writers();
        }
    }

    /// Tells the owners whose request waited that it may try again (a stream closed and
    /// made room, a window grew, or the frames queued went out).
    fn wake_writers(&mut self) {
        for (_, stream) in self.streams.iter_mut() {
            if std::mem::take(&mut stream.write_blocked) {
                self.wakes.push(stream.owner, Ready::WRITABLE);
            }
        }
    }

    /// Takes request bytes of `key` from `slices` (as many as flow control and the frames
    /// already queued allow) and sends them as frames. `writable` is cleared when nothing
    /// more can go now.
    pub fn write(
        &mut self,
        key: usize,
        socket: &mut impl Write,
        slices: &[IoSlice<'_>],
        writable: &mut bool,
    ) -> Transfer {
        let stream_end = self.streams.get(key).map(|stream| stream.ended);
        let Some(stream_end) = stream_end else {
            return Transfer::Closed;
        };
        if let Some(end) = stream_end.or(self.ended) {
            return match end {
                Transfer::Moved(_) | Transfer::WouldBlock => Transfer::Closed,
                end => end,
            };
        }
        if self.going_away.is_some() && !self.streams.get(key).is_some_and(LinkStream::is_in_flight)
        {
            // No new stream on a connection going away: the owner tries another.
            return Transfer::Closed;
        }
        let mut taken = 0;
        for slice in slices {
            let count = self.take_request(key, slice);
            taken += count;
            if count < slice.len() {
                break;
            }
        }
        if !self.flush(socket) {
            // The owner is told once the frames queued went out.
            *writable = false;
            if let Some(stream) = self.streams.get_mut(key) {
                stream.write_blocked = true;
            }
        }
        if let Some(end) = self.ended.filter(|_| taken == 0) {
            return end;
        }
        if taken == 0 {
            if let Some(stream) = self.streams.get_mut(key) {
                stream.write_blocked = true;
            }
            *writable = false;
            return Transfer::WouldBlock;
        }
        Transfer::Moved(taken)
    }

    /// Writes queued frames; true when none is left (or the socket failed, which ends the
    /// connection).
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

    /// The connection ends: every stream's owner is told.
    fn end(&mut self, transfer: Transfer) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(transfer);
        for (_, stream) in self.streams.iter_mut() {
            stream.write_blocked = false;
            self.wakes
                .push(stream.owner, Ready::READABLE | Ready::WRITABLE);
        }
    }

    /// The stream of `key` ends without a whole response (reset, not processed): its owner
    /// reads `transfer` once it read what came before.
    fn end_stream(&mut self, key: usize, transfer: Transfer) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if stream.ended.is_none() {
            stream.ended = Some(transfer);
        }
        stream.write_blocked = false;
        let owner = stream.owner;
        if self.open.remove(&stream.id).is_some() {
            self.wake_writers();
        }
        self.wakes.push(owner, Ready::READABLE | Ready::WRITABLE);
    }

    /// Closes the stream of `key` once both its request and its response ended.
    fn close_if_done(&mut self, key: usize) {
        let Some(stream) = self.streams.get(key) else {
            return;
        };
        if matches!(stream.request, Request::Sent)
            && matches!(stream.response, Response::Done)
            && self.open.remove(&stream.id).is_some()
        {
            self.wake_writers();
        }
    }

    /// Copies response bytes of `key` into `space`; once all are read, the stream's data
    /// credit goes back.
    fn deliver(&mut self, key: usize, space: &mut [u8]) -> usize {
        let Some(stream) = self.streams.get_mut(key) else {
            return 0;
        };
        let pending = stream
            .decoded
            .get(stream.decoded_sent..)
            .unwrap_or_default();
        let count = pending.len().min(space.len());
        if let (Some(target), Some(source)) = (space.get_mut(..count), pending.get(..count)) {
            target.copy_from_slice(source);
        }
        stream.decoded_sent += count;
        if stream.decoded_sent == stream.decoded.len() {
            stream.decoded.clear();
            stream.decoded_sent = 0;
            let credit = std::mem::take(&mut stream.unreturned);
            let receiving = matches!(
                stream.response,
                Response::Body(_) | Response::AwaitingHead { .. }
            );
            if credit > 0 && receiving && self.ended.is_none() {
                frame::write_window_update(&mut self.out, stream.id, credit);
                stream.recv_window = stream.recv_window.saturating_add(credit).min(MAX_WINDOW);
            }
        }
        count
    }

    /// Ends the connection for an error: GOAWAY to the backend, and every stream fails.
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
