//! The HTTP/2 connection state machine: bytes in, events out; commands in, bytes out.
//!
//! [`Connection::receive`] reads one frame (or the preface) from the start of the input
//! and says how many bytes it took, with the event it produced if any. Frames the protocol
//! answers by itself (SETTINGS, PING, WINDOW_UPDATE credit, errors) are answered into the
//! output buffer. A connection error writes GOAWAY and leaves the connection closed; a
//! stream error writes RST_STREAM and the connection goes on. Every value read from the
//! wire goes through checked arithmetic.
//!
//! Here: reading frames and the connection's state; `blocks`: complete header blocks
//! (requests, trailers); `send`: the sending side (credit, responses, data, resets,
//! shutdown, deadlines).

use std::{
    collections::VecDeque,
    ops::Range,
    time::{Duration, Instant},
};

use sozu_command_lib::request::H2Config;

mod blocks;
mod send;

use super::{
    StreamId,
    assembly::HeaderAssembly,
    error::{Cause, ConnectionError, ErrorCode, FrameError},
    flood::{Flood, Lifetime, Windowed},
    frame::{self, Decoded, Frame, MAX_WINDOW},
    headers::{HeaderEncoder, ListLimits, Request, Scratch},
    hpack::Decoder,
    settings::{self, DEFAULT_WINDOW, PeerSettings},
    stream::{Recv, Send, Stream},
};

/// What a frame meant for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new stream with its request head.
    Request {
        /// The new stream's id.
        stream: StreamId,
        /// The decoded and validated request head.
        request: Box<Request>,
        /// The request has no body: the HEADERS frame ended the stream.
        end_stream: bool,
    },
    /// Request body bytes: `data` is a range of the input given to `receive`. The session
    /// gives the flow-control credit back with [`Connection::release`] once it has
    /// forwarded them.
    Data {
        /// The stream the bytes belong to.
        stream: StreamId,
        /// Where the bytes lie in the input, padding excluded.
        data: Range<usize>,
        /// The request body ends with these bytes.
        end_stream: bool,
    },
    /// The request's trailers, as HTTP/1.1 field lines; they end the request.
    Trailers {
        /// The stream the trailers end.
        stream: StreamId,
        /// The trailer fields, each as an HTTP/1.1 field line with its CRLF.
        fields: Vec<u8>,
    },
    /// The client reset a stream.
    Reset {
        /// The stream reset.
        stream: StreamId,
        /// The client's reason.
        code: ErrorCode,
    },
    /// The proxy reset a stream the session knew, because of the client's error.
    Aborted {
        /// The stream reset.
        stream: StreamId,
        /// What the client did wrong.
        cause: Cause,
    },
    /// The client will open no more streams; those up to `last_stream` may finish.
    GoAway {
        /// The highest stream id the client may still expect an answer on.
        last_stream: StreamId,
        /// Why the client closes the connection.
        code: ErrorCode,
    },
}

/// The outcome of [`Connection::receive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The input does not hold a whole frame: read more and call again with the longer
    /// input. Nothing was consumed.
    NeedMore,
    /// `len` bytes were consumed (a frame or the preface).
    Consumed {
        /// Bytes consumed from the start of the input.
        len: usize,
        /// What they meant for the session; `None` for frames the connection handled alone.
        event: Option<Event>,
    },
}

/// A command the connection cannot carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The stream id names no open stream.
    #[error("no open stream {0}")]
    UnknownStream(StreamId),
    /// A response head was already sent on the stream.
    #[error("stream {0} already has its response head")]
    HeadAlreadySent(StreamId),
    /// Body or trailers before the response head.
    #[error("stream {0} has no response head yet")]
    NoHead(StreamId),
    /// The stream's response already ended, or the stream was reset.
    #[error("stream {0} is closed for sending")]
    SendClosed(StreamId),
    /// The connection was closed (GOAWAY sent after an error, or the client went away).
    #[error("the connection is closed")]
    ConnectionClosed,
}

/// What happened over the connection, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Streams the client opened.
    pub streams_opened: u64,
    /// RST_STREAM frames received from the client.
    pub resets_received: u64,
    /// RST_STREAM frames the proxy sent.
    pub resets_sent: u64,
    /// Streams refused because the client had too many open.
    pub streams_refused: u64,
    /// Times a send found a closed flow-control window.
    pub window_stalls: u64,
    /// GOAWAY frames the proxy sent.
    pub goaways_sent: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client connection preface.
    Preface,
    /// The preface arrived; the first frame must be SETTINGS.
    FirstSettings,
    Open,
    /// GOAWAY was sent (or an error ended the connection): nothing more is read.
    Closed,
}

/// How many streams reset by the proxy are remembered, so that the header blocks the
/// client sent before it saw the reset are dropped rather than taken for a protocol error.
const REMEMBERED_RESETS: usize = 128;

/// One HTTP/2 connection with a client.
pub struct Connection {
    config: H2Config,
    stream_idle_timeout: Duration,
    request_id_header: Box<[u8]>,
    phase: Phase,
    flood: Flood,
    decoder: Decoder,
    encoder: HeaderEncoder,
    peer: PeerSettings,
    /// Open streams, in no order. Few enough (the concurrency limit) for a linear search.
    streams: Vec<Stream>,
    /// The highest stream id the client opened: ids up to it are closed or open, above
    /// it idle.
    last_client_stream: StreamId,
    send_window: i64,
    recv_window: u32,
    /// Connection credit released by the session or owed for discarded data.
    unreturned: u32,
    stalled_since: Option<Instant>,
    /// The header block being received.
    headers: HeaderAssembly,
    /// The deadline of a graceful shutdown in progress; `None` without one or without limit.
    shutdown: Option<Option<Instant>>,
    peer_going_away: bool,
    /// The streams the proxy reset last, oldest first.
    recently_reset: VecDeque<StreamId>,
    /// Reused for encoding header blocks.
    scratch: Vec<u8>,
    /// Reused for decoding header blocks.
    decoding: Scratch,
    /// A request the session is done with, whose buffers the next one reuses.
    spare: Option<Box<Request>>,
    counters: Counters,
}

impl Connection {
    /// A connection for a listener with `config`. `request_id_header` names the field the
    /// proxy uses for request ids.
    pub fn new(
        config: H2Config,
        stream_idle_timeout: Duration,
        request_id_header: &[u8],
        now: Instant,
    ) -> Self {
        Self {
            config,
            stream_idle_timeout,
            request_id_header: request_id_header.into(),
            phase: Phase::Preface,
            flood: Flood::new(now),
            // Until the client acknowledges our SETTINGS, the default table size applies.
            decoder: Decoder::default(),
            encoder: HeaderEncoder::default(),
            peer: PeerSettings::default(),
            streams: Vec::new(),
            last_client_stream: 0,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: DEFAULT_WINDOW,
            unreturned: 0,
            stalled_since: None,
            headers: HeaderAssembly::default(),
            shutdown: None,
            peer_going_away: false,
            recently_reset: VecDeque::new(),
            scratch: Vec::new(),
            decoding: Scratch::default(),
            spare: None,
            counters: Counters::default(),
        }
    }

    /// Writes the server preface: SETTINGS, and a WINDOW_UPDATE that opens the connection
    /// window to `h2_initial_connection_window`.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        frame::write_settings(
            out,
            &[
                (settings::ENABLE_PUSH, 0),
                (
                    settings::MAX_CONCURRENT_STREAMS,
                    self.config.max_concurrent_streams,
                ),
                (
                    settings::HEADER_TABLE_SIZE,
                    self.config.max_header_table_size,
                ),
                (
                    settings::MAX_HEADER_LIST_SIZE,
                    self.config.max_header_list_size,
                ),
            ],
        );
        let target = self.config.initial_connection_window.min(MAX_WINDOW);
        if let Some(increment) = target.checked_sub(DEFAULT_WINDOW).filter(|&i| i > 0) {
            frame::write_window_update(out, 0, increment);
            self.recv_window = target;
        }
    }

    /// Gives back the request of an [`Event::Request`] once read: the next request is
    /// decoded into its buffers.
    pub fn recycle(&mut self, request: Box<Request>) {
        self.spare = Some(request);
    }

    /// What happened over the connection so far, for the metrics.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The connection's flood counters.
    pub fn flood(&self) -> &Flood {
        &self.flood
    }

    /// Open streams.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The connection is done: closed by an error, or going away with no stream left.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Closed
            || (self.peer_going_away || self.shutdown.is_some()) && self.streams.is_empty()
    }

    /// Reads the frame (or the preface) at the start of `input`.
    pub fn receive(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Progress, ConnectionError> {
        match self.phase {
            Phase::Closed => return Ok(Progress::NeedMore),
            Phase::Preface => return self.preface(input, out),
            _ => {}
        }
        let (frame, len) = match frame::decode(input, frame::DEFAULT_MAX_FRAME_SIZE) {
            Ok(Decoded::Partial) => return Ok(Progress::NeedMore),
            Ok(Decoded::Frame { frame, len }) => (frame, len),
            Err(error) => {
                let len = frame_len(input);
                let event = self.fail(error, out)?;
                return Ok(Progress::Consumed { len, event });
            }
        };
        let event = match self.handle(frame, now, out) {
            Ok(event) => event,
            Err(error) => self.fail(error, out)?,
        };
        Ok(Progress::Consumed { len, event })
    }

    fn preface(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, ConnectionError> {
        match input.get(..frame::PREFACE.len()) {
            Some(preface) if preface == frame::PREFACE => {
                self.phase = Phase::FirstSettings;
                Ok(Progress::Consumed {
                    len: frame::PREFACE.len(),
                    event: None,
                })
            }
            None if frame::PREFACE.starts_with(input) => Ok(Progress::NeedMore),
            _ => Err(self.close(ErrorCode::ProtocolError, Cause::BadPreface, out)),
        }
    }

    /// Acts on a frame error: a stream error resets the stream, a connection error ends
    /// the connection.
    fn fail(
        &mut self,
        error: FrameError,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, ConnectionError> {
        match error {
            FrameError::Connection(code, cause) => Err(self.close(code, cause, out)),
            FrameError::Stream(stream, code, cause) => {
                self.reset_for_error(stream, code, cause, out)
            }
        }
    }

    /// Writes GOAWAY and closes the connection.
    fn close(&mut self, code: ErrorCode, cause: Cause, out: &mut Vec<u8>) -> ConnectionError {
        if self.phase != Phase::Closed {
            frame::write_goaway(out, self.last_client_stream, code);
            self.counters.goaways_sent = self.counters.goaways_sent.saturating_add(1);
        }
        self.phase = Phase::Closed;
        self.shutdown = None;
        self.peer_going_away = false;
        self.headers.abandon();
        self.streams.clear();
        ConnectionError { code, cause }
    }

    /// Resets a stream because of the client's error, counting it against the MadeYouReset
    /// and glitch limits.
    fn reset_for_error(
        &mut self,
        stream: StreamId,
        code: ErrorCode,
        cause: Cause,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, ConnectionError> {
        let was_open = self.remove_stream(stream).is_some();
        self.write_reset(stream, code, out);
        self.count(Lifetime::EmittedRstStream, out)?;
        self.count(Lifetime::Glitch, out)?;
        Ok(was_open.then_some(Event::Aborted { stream, cause }))
    }

    fn count(&mut self, kind: Lifetime, out: &mut Vec<u8>) -> Result<(), ConnectionError> {
        self.flood
            .record_lifetime(kind, &self.config)
            .map_err(|cause| self.close(ErrorCode::EnhanceYourCalm, cause, out))
    }

    fn count_frame(
        &mut self,
        kind: Windowed,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), ConnectionError> {
        self.flood
            .record(kind, now, &self.config)
            .map_err(|cause| self.close(ErrorCode::EnhanceYourCalm, cause, out))
    }

    fn handle(
        &mut self,
        frame: Frame<'_>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        self.headers.check_next(&frame)?;
        if self.phase == Phase::FirstSettings
            && !matches!(frame, Frame::Settings { ack: false, .. })
        {
            return Err(connection(
                ErrorCode::ProtocolError,
                Cause::FirstFrameNotSettings,
            ));
        }
        match frame {
            Frame::Data {
                stream,
                data,
                flow_len,
                end_stream,
            } => self.data(stream, data, flow_len, end_stream, now, out),
            Frame::Headers {
                stream,
                fragment,
                end_stream,
                end_headers,
                is_self_dependent,
            } => {
                let start = (stream, end_stream, is_self_dependent);
                match self
                    .headers
                    .headers(start, fragment, end_headers, &self.config)?
                {
                    Some(block) => self.header_block(block, now, out),
                    None => Ok(None),
                }
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } => match self
                .headers
                .continuation(stream, fragment, end_headers, &self.config)?
            {
                Some(block) => self.header_block(block, now, out),
                None => Ok(None),
            },
            Frame::Priority { stream } => {
                // Priorities are ignored (RFC 9113 §5.3.2). One for a stream that is not
                // open is the PRIORITY flood pattern: a glitch.
                if self.stream(stream).is_none() {
                    self.count(Lifetime::Glitch, out).map_err(escalated)?;
                }
                Ok(None)
            }
            Frame::RstStream { stream, code } => self.rst_stream(stream, code, now, out),
            Frame::Settings { ack, payload } => self.settings(ack, payload, now, out),
            Frame::Ping { ack, data } => {
                self.count_frame(Windowed::Ping, now, out)
                    .map_err(escalated)?;
                if !ack {
                    frame::write_ping(out, data, true);
                }
                Ok(None)
            }
            Frame::GoAway { last_stream, code } => {
                self.peer_going_away = true;
                Ok(Some(Event::GoAway { last_stream, code }))
            }
            Frame::WindowUpdate { stream, increment } => {
                self.window_update(stream, increment, now, out)
            }
            Frame::Unknown => Ok(None),
        }
    }

    fn list_limits(&self) -> ListLimits {
        ListLimits {
            max_size: self.config.max_header_list_size,
            max_fields: self.config.max_header_fields,
        }
    }

    fn stream(&self, id: StreamId) -> Option<&Stream> {
        self.streams.iter().find(|stream| stream.id == id)
    }

    fn stream_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|stream| stream.id == id)
    }

    fn remove_stream(&mut self, id: StreamId) -> Option<Stream> {
        let index = self.streams.iter().position(|stream| stream.id == id)?;
        let stream = self.streams.swap_remove(index);
        // Give memory back after a burst, `h2_stream_shrink_ratio` times more than needed.
        let ratio = usize::try_from(self.config.stream_shrink_ratio.max(2)).unwrap_or(2);
        let needed = self.streams.len().max(8);
        if self.streams.capacity() > needed.saturating_mul(ratio) {
            self.streams.shrink_to(needed);
        }
        Some(stream)
    }

    /// Removes a stream closed both ways.
    fn remove_if_closed(&mut self, id: StreamId) {
        if self.stream(id).is_some_and(Stream::is_closed) {
            self.remove_stream(id);
        }
    }

    /// Is `id` above every stream the client opened?
    fn is_idle(&self, id: StreamId) -> bool {
        id > self.last_client_stream
    }

    fn data(
        &mut self,
        id: StreamId,
        data: Range<usize>,
        flow_len: u32,
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        if data.is_empty() && !end_stream {
            self.count_frame(Windowed::EmptyData, now, out)
                .map_err(escalated)?;
        }
        self.recv_window = self.recv_window.checked_sub(flow_len).ok_or(connection(
            ErrorCode::FlowControlError,
            Cause::WindowExceeded,
        ))?;
        let data_len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let padding = flow_len.saturating_sub(u32::try_from(data.len()).unwrap_or(u32::MAX));
        let Some(stream) = self.stream_mut(id) else {
            if self.is_idle(id) {
                return Err(connection(ErrorCode::ProtocolError, Cause::IdleStream));
            }
            // A stream closed (maybe reset by us while the data was in flight): the data is
            // dropped, and its connection credit returned.
            self.return_connection_credit(flow_len, out);
            return Ok(None);
        };
        let Recv::Body {
            content_length,
            received,
        } = stream.recv
        else {
            self.return_connection_credit(flow_len, out);
            return Err(FrameError::Stream(
                id,
                ErrorCode::StreamClosed,
                Cause::ClosedStream,
            ));
        };
        let Some(window) = stream.recv_window.checked_sub(flow_len) else {
            self.return_connection_credit(flow_len, out);
            return Err(FrameError::Stream(
                id,
                ErrorCode::FlowControlError,
                Cause::WindowExceeded,
            ));
        };
        stream.recv_window = window;
        stream.last_activity = now;
        let received = received.saturating_add(data_len);
        let too_long = content_length.is_some_and(|length| received > length);
        let too_short = end_stream && content_length.is_some_and(|length| received != length);
        if too_long || too_short {
            self.return_connection_credit(flow_len, out);
            return Err(FrameError::Stream(
                id,
                ErrorCode::ProtocolError,
                Cause::ContentLengthMismatch,
            ));
        }
        stream.recv = if end_stream {
            Recv::Closed
        } else {
            Recv::Body {
                content_length,
                received,
            }
        };
        // Padding is never handed to the session: its credit goes back at once.
        if padding > 0 {
            self.release(id, padding, out);
        }
        self.remove_if_closed(id);
        Ok(Some(Event::Data {
            stream: id,
            data,
            end_stream,
        }))
    }

    fn rst_stream(
        &mut self,
        id: StreamId,
        code: ErrorCode,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        self.count_frame(Windowed::RstStream, now, out)
            .map_err(escalated)?;
        self.count(Lifetime::RstStream, out).map_err(escalated)?;
        if self.is_idle(id) {
            return Err(connection(ErrorCode::ProtocolError, Cause::IdleStream));
        }
        let Some(stream) = self.remove_stream(id) else {
            return Ok(None);
        };
        self.counters.resets_received = self.counters.resets_received.saturating_add(1);
        if stream.send == Send::AwaitingHead {
            self.count(Lifetime::AbusiveRstStream, out)
                .map_err(escalated)?;
        }
        Ok(Some(Event::Reset { stream: id, code }))
    }

    fn settings(
        &mut self,
        ack: bool,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        self.count_frame(Windowed::Settings, now, out)
            .map_err(escalated)?;
        if ack {
            self.decoder
                .set_max_table_size(self.config.max_header_table_size);
            return Ok(None);
        }
        let old_window = i64::from(self.peer.initial_window_size);
        self.peer.apply(payload)?;
        // RFC 9113 §6.9.2: a new initial window moves every stream's send window by the
        // difference; one past 2^31-1 is a connection error.
        let delta = i64::from(self.peer.initial_window_size) - old_window;
        for stream in &mut self.streams {
            let window = stream.send_window.saturating_add(delta);
            if window > i64::from(MAX_WINDOW) {
                return Err(connection(
                    ErrorCode::FlowControlError,
                    Cause::WindowOverflow,
                ));
            }
            stream.send_window = window;
        }
        self.encoder
            .set_peer_table_size(self.peer.header_table_size);
        frame::write_settings_ack(out);
        if self.phase == Phase::FirstSettings {
            self.phase = Phase::Open;
        }
        Ok(None)
    }

    fn window_update(
        &mut self,
        id: StreamId,
        increment: u32,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        if id == 0 {
            self.count_frame(Windowed::ConnectionWindowUpdate, now, out)
                .map_err(escalated)?;
            let window = self.send_window.saturating_add(i64::from(increment));
            if window > i64::from(MAX_WINDOW) {
                return Err(connection(
                    ErrorCode::FlowControlError,
                    Cause::WindowOverflow,
                ));
            }
            self.send_window = window;
            if window > 0 {
                self.stalled_since = None;
            }
            return Ok(None);
        }
        if self.is_idle(id) {
            return Err(connection(ErrorCode::ProtocolError, Cause::IdleStream));
        }
        let Some(stream) = self.stream_mut(id) else {
            return Ok(None);
        };
        let window = stream.send_window.saturating_add(i64::from(increment));
        if window > i64::from(MAX_WINDOW) {
            return Err(FrameError::Stream(
                id,
                ErrorCode::FlowControlError,
                Cause::WindowOverflow,
            ));
        }
        stream.send_window = window;
        if window > 0 {
            stream.stalled_since = None;
        }
        Ok(None)
    }
}

fn connection(code: ErrorCode, cause: Cause) -> FrameError {
    FrameError::Connection(code, cause)
}

/// A flood limit already ended the connection (its GOAWAY is written): passes the error on.
fn escalated(error: ConnectionError) -> FrameError {
    FrameError::Connection(error.code, error.cause)
}

/// The length of the frame at the start of `input`, from its header (which a frame error
/// implies is whole).
fn frame_len(input: &[u8]) -> usize {
    match input.first_chunk::<3>() {
        Some(length) => {
            frame::HEADER_LEN
                + usize::try_from(u32::from_be_bytes([0, length[0], length[1], length[2]]))
                    .unwrap_or(0)
        }
        None => input.len(),
    }
}
