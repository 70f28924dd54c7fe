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
    error::{Cause, ErrorCode, FrameError},
    exchange::trailer_fields,
    flood::{Flood, Lifetime, Windowed},
    frame::{self, Decoded, Frame, MAX_WINDOW, PREFACE},
    headers::{self, BlockError, HeaderEncoder, ListLimits, Scratch},
    settings::{self, DEFAULT_WINDOW, PeerSettings},
};
use crate::{
    protocol::http::parser::{
        self, BodyFraming, BodyProgress, ChunkedBody, HeaderKind, Limits, Method, Parsed,
        TargetForm,
    },
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

    /// A new request may start, or the body in progress may move.
    fn can_take_request(&self) -> bool {
        match self.request {
            Request::Idle | Request::Sent => {
                matches!(self.response, Response::Idle | Response::Done) && !self.going_away
            }
            Request::Head(_) => true,
            Request::Body(_) => self.window() > 0,
        }
    }

    /// Bytes of body the backend's windows allow now.
    fn window(&self) -> u64 {
        u64::try_from(self.send_window.min(self.stream_send_window).max(0)).unwrap_or(0)
    }

    /// Takes the next bytes of the request; returns how many.
    fn take_request(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        while taken < input.len() && self.ended.is_none() && self.out.len() < OUT_HIGH_WATER {
            let rest = input.get(taken..).unwrap_or_default();
            let count = match &mut self.request {
                Request::Idle | Request::Sent => {
                    if !self.can_take_request() {
                        break;
                    }
                    self.request = Request::Head(Vec::new());
                    0
                }
                Request::Head(_) => self.take_head(rest),
                Request::Body(_) => self.take_body(rest),
            };
            if count == 0 && !matches!(self.request, Request::Head(_)) {
                break;
            }
            taken += count;
        }
        taken
    }

    /// Takes bytes of a head; once it is whole, sends its HEADERS. Returns the bytes that
    /// belong to the head.
    fn take_head(&mut self, input: &[u8]) -> usize {
        let Request::Head(head) = &mut self.request else {
            return 0;
        };
        let before = head.len();
        let room = MAX_HEAD.saturating_sub(before);
        head.extend_from_slice(input.get(..room.min(input.len())).unwrap_or(input));
        let limits = Limits {
            max_request_line: MAX_HEAD,
            max_header_section: MAX_HEAD,
            max_headers: usize::try_from(self.limits.max_header_fields).unwrap_or(usize::MAX),
        };
        let head_bytes = std::mem::take(head);
        let parsed = parser::parse_request_head(&head_bytes, &limits, b"", &mut self.fields);
        match parsed {
            Ok(Parsed::Complete(parsed)) => {
                let taken = parsed.head_len.saturating_sub(before);
                self.open_stream(&head_bytes, &parsed);
                taken
            }
            Ok(Parsed::Partial) if head_bytes.len() < MAX_HEAD => {
                let taken = head_bytes.len() - before;
                self.request = Request::Head(head_bytes);
                taken
            }
            Ok(Parsed::Partial) | Err(_) => {
                self.fail(ErrorCode::InternalError);
                0
            }
        }
    }

    /// Sends the HEADERS of a request head: pseudo-header fields from the request line and
    /// Host, the other fields but the connection-specific ones (RFC 9113 §8.2.2), and
    /// `te: trailers`.
    fn open_stream(&mut self, bytes: &[u8], head: &parser::RequestHead) {
        let next = if self.stream == 0 {
            1
        } else {
            self.stream.saturating_add(2)
        };
        if next > MAX_WINDOW || head.method == Method::Connect {
            // Stream ids ran out, or a tunnel was asked for: neither goes over this
            // connection (RFC 9113 §8.5 CONNECT is not proxied to HTTP/2 backends).
            self.fail(ErrorCode::NoError);
            return;
        }
        self.stream = next;
        self.counters.streams = self.counters.streams.saturating_add(1);
        let authority = head.authority.map(|authority| authority.span.slice(bytes));
        let path: &[u8] = match head.target_form {
            TargetForm::Absolute if head.path.is_empty() => b"/",
            TargetForm::Absolute if head.path.slice(bytes).starts_with(b"?") => {
                self.scratch.clear();
                self.scratch.push(b'/');
                self.scratch.extend_from_slice(head.path.slice(bytes));
                &self.scratch
            }
            _ => head.path.slice(bytes),
        };
        let path = path.to_vec();
        let mut pseudo: Vec<(&[u8], &[u8])> = vec![
            (b":method", head.method_span.slice(bytes)),
            (b":scheme", b"http"),
            (b":path", &path),
        ];
        if let Some(authority) = authority {
            pseudo.push((b":authority", authority));
        }
        let regular = self.fields.iter().filter_map(|field| {
            let is_connection_specific = field.is_connection_option
                || matches!(
                    field.kind,
                    HeaderKind::Host
                        | HeaderKind::Connection
                        | HeaderKind::KeepAlive
                        | HeaderKind::ProxyConnection
                        | HeaderKind::TransferEncoding
                        | HeaderKind::Upgrade
                );
            (!is_connection_specific && field.kind != HeaderKind::Te)
                .then(|| (field.name.slice(bytes), field.value.slice(bytes)))
        });
        // The proxy relays trailers (to HTTP/2 clients, and in chunked bodies to HTTP/1.1
        // ones), and gRPC services refuse requests without `te: trailers`, which the
        // HTTP/1.1 editing removed as hop-by-hop: it is always sent (RFC 9113 §8.2.2).
        let regular = regular.chain(std::iter::once((&b"te"[..], &b"trailers"[..])));
        let mut block = Vec::with_capacity(bytes.len());
        self.encoder
            .fields(pseudo.into_iter().chain(regular), &mut block);
        let (body, end_stream) = match head.body {
            BodyFraming::ContentLength(0) | BodyFraming::None | BodyFraming::UntilClose => {
                (None, true)
            }
            BodyFraming::ContentLength(remaining) => {
                (Some(RequestBody::Length { remaining }), false)
            }
            BodyFraming::Chunked => (
                Some(RequestBody::Chunked {
                    chunked: ChunkedBody::new(&Limits::default()),
                    trailers: Vec::new(),
                }),
                false,
            ),
        };
        frame::write_headers(
            &mut self.out,
            self.stream,
            &block,
            end_stream,
            self.peer.max_frame_size,
        );
        self.stream_send_window = i64::from(self.peer.initial_window_size);
        self.stream_recv_window = STREAM_WINDOW;
        self.response = Response::AwaitingHead {
            method: head.method,
        };
        self.request = match body {
            Some(body) => Request::Body(body),
            None => Request::Sent,
        };
    }

    /// Takes body bytes within the windows; returns how many.
    fn take_body(&mut self, input: &[u8]) -> usize {
        let window = usize::try_from(self.window()).unwrap_or(usize::MAX);
        let input = input.get(..window.min(input.len())).unwrap_or_default();
        if input.is_empty() {
            return 0;
        }
        let Request::Body(body) = &mut self.request else {
            return 0;
        };
        self.scratch.clear();
        let scratch = &mut self.scratch;
        let (taken, trailers) = match body {
            RequestBody::Length { remaining } => {
                let count = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                scratch.extend_from_slice(input.get(..count).unwrap_or_default());
                *remaining = remaining.saturating_sub(count as u64);
                let end = (*remaining == 0).then(Vec::new);
                (count, end)
            }
            RequestBody::Chunked { chunked, trailers } => {
                match chunked.feed_with_trailers(
                    input,
                    |data| scratch.extend_from_slice(data),
                    |byte| trailers.push(byte),
                ) {
                    Ok(BodyProgress::Partial) => (input.len(), None),
                    Ok(BodyProgress::Complete { len }) => (len, Some(std::mem::take(trailers))),
                    Err(_) => {
                        self.fail(ErrorCode::InternalError);
                        return 0;
                    }
                }
            }
        };
        let data = std::mem::take(&mut self.scratch);
        self.send_data(
            &data,
            trailers
                .as_ref()
                .is_some_and(|t| trailer_fields(t).next().is_none()),
        );
        self.scratch = data;
        if let Some(section) = trailers {
            if trailer_fields(&section).next().is_some() {
                let mut block = Vec::new();
                self.encoder.fields(trailer_fields(&section), &mut block);
                frame::write_headers(
                    &mut self.out,
                    self.stream,
                    &block,
                    true,
                    self.peer.max_frame_size,
                );
            }
            self.request = Request::Sent;
        }
        taken
    }

    /// Queues `data` as DATA frames (the windows were checked), the last one ending the
    /// stream when `end_stream`.
    fn send_data(&mut self, data: &[u8], end_stream: bool) {
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        self.send_window = self.send_window.saturating_sub(len);
        self.stream_send_window = self.stream_send_window.saturating_sub(len);
        let size = usize::try_from(self.peer.max_frame_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut chunks = data.chunks(size).peekable();
        if chunks.peek().is_none() && end_stream {
            frame::write_data(&mut self.out, self.stream, &[], true);
        }
        while let Some(chunk) = chunks.next() {
            let is_last = chunks.peek().is_none();
            frame::write_data(&mut self.out, self.stream, chunk, is_last && end_stream);
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

    /// Reads the whole frames of `input`.
    fn receive(&mut self, now: Instant) {
        let mut offset = 0;
        while self.ended.is_none() {
            let input = std::mem::take(&mut self.input);
            let rest = input.get(offset..).unwrap_or_default();
            let decoded = frame::decode(rest, frame::DEFAULT_MAX_FRAME_SIZE);
            let outcome = match decoded {
                Ok(Decoded::Partial) => {
                    self.input = input;
                    break;
                }
                Ok(Decoded::Frame { frame, len }) => {
                    offset += len;
                    self.handle(frame, rest, now)
                }
                Err(error) => Err(error),
            };
            self.input = input;
            if let Err(error) = outcome {
                let code = match error {
                    FrameError::Connection(code, _) | FrameError::Stream(_, code, _) => code,
                };
                self.fail(code);
            }
        }
        self.input.drain(..offset.min(self.input.len()));
    }

    fn handle(&mut self, frame: Frame<'_>, input: &[u8], now: Instant) -> Result<(), FrameError> {
        if let Some(pending) = self.pending {
            if !matches!(frame, Frame::Continuation { stream, .. } if stream == pending.stream) {
                return Err(protocol(Cause::ExpectedContinuation));
            }
        }
        if !self.has_settings && !matches!(frame, Frame::Settings { ack: false, .. }) {
            return Err(protocol(Cause::FirstFrameNotSettings));
        }
        match frame {
            Frame::Data {
                stream,
                data,
                flow_len,
                end_stream,
            } => {
                let data = input.get(data).unwrap_or_default();
                self.data(stream, data, flow_len, end_stream, now)
            }
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
                ..
            } => {
                self.block.clear();
                self.block.extend_from_slice(fragment);
                self.check_block_size()?;
                let pending = PendingBlock {
                    stream,
                    end_stream,
                    continuations: 0,
                };
                if end_headers {
                    self.header_block(pending)
                } else {
                    self.pending = Some(pending);
                    Ok(())
                }
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } => {
                let Some(mut pending) = self.pending.filter(|p| p.stream == stream) else {
                    return Err(protocol(Cause::UnexpectedContinuation));
                };
                pending.continuations = pending.continuations.saturating_add(1);
                if pending.continuations > self.limits.max_continuation_frames {
                    return Err(calm(Cause::ContinuationFlood));
                }
                self.block.extend_from_slice(fragment);
                self.check_block_size()?;
                if end_headers {
                    self.pending = None;
                    self.header_block(pending)
                } else {
                    self.pending = Some(pending);
                    Ok(())
                }
            }
            Frame::Priority { .. } | Frame::Unknown => Ok(()),
            Frame::RstStream { stream, .. } => {
                self.count(Windowed::RstStream, now)?;
                self.count_lifetime(Lifetime::RstStream)?;
                if stream > self.stream {
                    return Err(protocol(Cause::IdleStream));
                }
                if stream == self.stream
                    && matches!(
                        self.response,
                        Response::AwaitingHead { .. } | Response::Body(_)
                    )
                {
                    self.counters.resets_received = self.counters.resets_received.saturating_add(1);
                    self.end(Transfer::Closed);
                }
                Ok(())
            }
            Frame::Settings { ack, payload } => {
                self.count(Windowed::Settings, now)?;
                if ack {
                    self.decoder
                        .set_max_allowed_table_size(self.limits.max_header_table_size as usize);
                    return Ok(());
                }
                let old_window = i64::from(self.peer.initial_window_size);
                self.peer.apply(payload)?;
                let delta = i64::from(self.peer.initial_window_size) - old_window;
                let window = self.stream_send_window.saturating_add(delta);
                if window > i64::from(MAX_WINDOW) {
                    return Err(FrameError::Connection(
                        ErrorCode::FlowControlError,
                        Cause::WindowOverflow,
                    ));
                }
                self.stream_send_window = window;
                self.encoder
                    .set_peer_table_size(self.peer.header_table_size);
                frame::write_settings_ack(&mut self.out);
                self.has_settings = true;
                Ok(())
            }
            Frame::Ping { ack, data } => {
                self.count(Windowed::Ping, now)?;
                if !ack {
                    frame::write_ping(&mut self.out, data, true);
                }
                Ok(())
            }
            Frame::GoAway { last_stream, .. } => {
                self.counters.goaways_received = self.counters.goaways_received.saturating_add(1);
                self.going_away = true;
                let in_flight = matches!(
                    self.response,
                    Response::AwaitingHead { .. } | Response::Body(_)
                );
                if in_flight && self.stream > last_stream {
                    // The backend did not process the stream (RFC 9113 §6.8): it fails as
                    // a connection closed before the response.
                    self.end(Transfer::Closed);
                }
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                let window = if stream == 0 {
                    self.count(Windowed::ConnectionWindowUpdate, now)?;
                    &mut self.send_window
                } else if stream == self.stream {
                    &mut self.stream_send_window
                } else if stream > self.stream {
                    return Err(protocol(Cause::IdleStream));
                } else {
                    return Ok(());
                };
                let grown = window.saturating_add(i64::from(increment));
                if grown > i64::from(MAX_WINDOW) {
                    return Err(FrameError::Connection(
                        ErrorCode::FlowControlError,
                        Cause::WindowOverflow,
                    ));
                }
                *window = grown;
                Ok(())
            }
        }
    }

    fn count(&mut self, kind: Windowed, now: Instant) -> Result<(), FrameError> {
        self.flood.record(kind, now, &self.limits).map_err(calm)
    }

    fn count_lifetime(&mut self, kind: Lifetime) -> Result<(), FrameError> {
        self.flood.record_lifetime(kind, &self.limits).map_err(calm)
    }

    fn check_block_size(&self) -> Result<(), FrameError> {
        if self.block.len() > self.limits.max_header_list_size as usize {
            return Err(calm(Cause::HeaderBlockTooLarge));
        }
        Ok(())
    }

    fn data(
        &mut self,
        stream: StreamId,
        data: &[u8],
        flow_len: u32,
        end_stream: bool,
        now: Instant,
    ) -> Result<(), FrameError> {
        if data.is_empty() && !end_stream {
            self.count(Windowed::EmptyData, now)?;
        }
        let window_exceeded =
            || FrameError::Connection(ErrorCode::FlowControlError, Cause::WindowExceeded);
        self.recv_window = self
            .recv_window
            .checked_sub(flow_len)
            .ok_or_else(window_exceeded)?;
        if stream > self.stream || stream == 0 {
            return Err(protocol(Cause::IdleStream));
        }
        let Response::Body(framing) = self.response else {
            // Data of a stream that ended (or before its head): its credit goes back.
            if stream == self.stream && matches!(self.response, Response::AwaitingHead { .. }) {
                return Err(protocol(Cause::Malformed));
            }
            self.unreturned = self.unreturned.saturating_add(flow_len);
            return Ok(());
        };
        if stream != self.stream {
            self.unreturned = self.unreturned.saturating_add(flow_len);
            return Ok(());
        }
        self.stream_recv_window = self
            .stream_recv_window
            .checked_sub(flow_len)
            .ok_or_else(window_exceeded)?;
        self.unreturned = self.unreturned.saturating_add(flow_len);
        let len = data.len() as u64;
        let next = match framing {
            Framing::Empty if !data.is_empty() => {
                return Err(protocol(Cause::ContentLengthMismatch));
            }
            Framing::Empty => Framing::Empty,
            Framing::Length { remaining } => {
                let remaining = remaining
                    .checked_sub(len)
                    .ok_or(protocol(Cause::ContentLengthMismatch))?;
                if end_stream && remaining > 0 {
                    return Err(protocol(Cause::ContentLengthMismatch));
                }
                self.decoded.extend_from_slice(data);
                Framing::Length { remaining }
            }
            Framing::Chunked => {
                if !data.is_empty() {
                    use std::fmt::Write as _;
                    let mut size = String::new();
                    let _ = write!(size, "{:x}\r\n", data.len());
                    self.decoded.extend_from_slice(size.as_bytes());
                    self.decoded.extend_from_slice(data);
                    self.decoded.extend_from_slice(b"\r\n");
                }
                if end_stream {
                    self.decoded.extend_from_slice(b"0\r\n\r\n");
                }
                Framing::Chunked
            }
        };
        self.response = if end_stream {
            Response::Done
        } else {
            Response::Body(next)
        };
        Ok(())
    }

    /// A whole header block: the response head (or an interim one), or the trailers.
    fn header_block(&mut self, pending: PendingBlock) -> Result<(), FrameError> {
        let limits = ListLimits {
            max_size: self.limits.max_header_list_size,
            max_fields: self.limits.max_header_fields,
        };
        if pending.stream != self.stream
            || !matches!(
                self.response,
                Response::AwaitingHead { .. } | Response::Body(_)
            )
        {
            // The backend may not open streams, nor send on ended ones. The block is
            // decoded first to keep the HPACK state right, then refused.
            let _ = headers::decode_trailers(
                &mut self.decoder,
                &self.block,
                &limits,
                &mut self.decoding,
            );
            return Err(protocol(Cause::ClosedStream));
        }
        match self.response {
            Response::AwaitingHead { method } => {
                let (status, lines) = headers::decode_response(
                    &mut self.decoder,
                    &self.block,
                    &limits,
                    &mut self.decoding,
                )
                .map_err(block_error)?;
                self.response_head(method, status, &lines, pending.end_stream)
            }
            Response::Body(framing) => {
                let trailers = headers::decode_trailers(
                    &mut self.decoder,
                    &self.block,
                    &limits,
                    &mut self.decoding,
                )
                .map_err(block_error)?;
                if !pending.end_stream {
                    return Err(protocol(Cause::Malformed));
                }
                match framing {
                    Framing::Chunked => {
                        self.decoded.extend_from_slice(b"0\r\n");
                        self.decoded.extend_from_slice(&trailers);
                        self.decoded.extend_from_slice(b"\r\n");
                    }
                    // Trailers after a declared length have no HTTP/1.1 form: dropped.
                    Framing::Length { remaining: 0 } | Framing::Empty => {}
                    Framing::Length { .. } => return Err(protocol(Cause::ContentLengthMismatch)),
                }
                self.response = Response::Done;
                Ok(())
            }
            Response::Idle | Response::Done => Err(protocol(Cause::ClosedStream)),
        }
    }

    /// Writes a response head as HTTP/1.1, with the framing its body needs.
    fn response_head(
        &mut self,
        method: Method,
        status: u16,
        lines: &[u8],
        end_stream: bool,
    ) -> Result<(), FrameError> {
        // RFC 9113 §8.6: no 101 in HTTP/2.
        if status == 101 || (status < 200 && end_stream) {
            return Err(protocol(Cause::Malformed));
        }
        let head_start = self.decoded.len();
        self.decoded.extend_from_slice(b"HTTP/1.1 ");
        self.decoded
            .extend_from_slice(status.to_string().as_bytes());
        self.decoded.extend_from_slice(b" \r\n");
        self.decoded.extend_from_slice(lines);
        if status < 200 {
            self.decoded.extend_from_slice(b"\r\n");
            return Ok(());
        }
        let content_length = content_length(lines);
        let framing = if method == Method::Head || status == 204 || status == 304 {
            Framing::Empty
        } else if let Some(length) = content_length {
            let remaining = length.ok_or(protocol(Cause::ContentLengthMismatch))?;
            Framing::Length { remaining }
        } else if end_stream {
            // A head that ends the stream (gRPC's trailers-only response) has an empty body:
            // said so, an HTTP/2 client gets it as one HEADERS frame ending the stream.
            self.decoded.extend_from_slice(b"content-length: 0\r\n");
            Framing::Length { remaining: 0 }
        } else {
            self.decoded
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        };
        if self.going_away {
            // The connection carries nothing after this response.
            self.decoded.extend_from_slice(b"connection: close\r\n");
        }
        self.decoded.extend_from_slice(b"\r\n");
        self.response = Response::Body(framing);
        if end_stream {
            match framing {
                Framing::Chunked => self.decoded.extend_from_slice(b"0\r\n\r\n"),
                Framing::Length { remaining } if remaining > 0 => {
                    self.decoded.truncate(head_start);
                    return Err(protocol(Cause::ContentLengthMismatch));
                }
                Framing::Length { .. } | Framing::Empty => {}
            }
            self.response = Response::Done;
        }
        Ok(())
    }
}

/// The content-length among HTTP/1.1 field lines: `None` without one, `Some(None)` when it is
/// not one valid number (several different values included).
fn content_length(lines: &[u8]) -> Option<Option<u64>> {
    let mut found: Option<Option<u64>> = None;
    for line in lines.split(|&byte| byte == b'\n') {
        let Some(value) = line.strip_prefix(b"content-length: ") else {
            continue;
        };
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok());
        found = match found {
            None => Some(parsed),
            Some(previous) if previous == parsed => Some(parsed),
            Some(_) => Some(None),
        };
    }
    found
}

fn protocol(cause: Cause) -> FrameError {
    FrameError::Connection(ErrorCode::ProtocolError, cause)
}

fn calm(cause: Cause) -> FrameError {
    FrameError::Connection(ErrorCode::EnhanceYourCalm, cause)
}

/// A header block the proxy cannot take from a backend: the connection ends either way
/// (a stream error on the only stream in flight fails its exchange just the same).
fn block_error(error: BlockError) -> FrameError {
    match error {
        BlockError::Compression => {
            FrameError::Connection(ErrorCode::CompressionError, Cause::Compression)
        }
        BlockError::Stream(cause) => FrameError::Connection(ErrorCode::ProtocolError, cause),
    }
}

#[cfg(test)]
mod tests;
