//! The HTTP/2 connection state machine: bytes in, events out; commands in, bytes out.
//!
//! [`Connection::receive`] reads one frame (or the preface) from the start of the input
//! and says how many bytes it took, with the event it produced if any. Frames the protocol
//! answers by itself (SETTINGS, PING, WINDOW_UPDATE credit, errors) are answered into the
//! output buffer. A connection error writes GOAWAY and leaves the connection closed; a
//! stream error writes RST_STREAM and the connection goes on. Every value read from the
//! wire goes through checked arithmetic.

use std::{
    collections::VecDeque,
    mem,
    ops::Range,
    time::{Duration, Instant},
};

use loona_hpack::Decoder;
use sozu_command_lib::request::H2Config;

use super::{
    StreamId,
    error::{Cause, ConnectionError, ErrorCode, FrameError},
    flood::{Flood, Lifetime, Windowed},
    frame::{self, Decoded, Frame, MAX_WINDOW},
    headers::{self, BlockError, HeaderEncoder, ListLimits, ParsedResponse, Request},
    settings::{self, DEFAULT_WINDOW, PeerSettings},
    stream::{Recv, Send, Stream},
};

/// What a frame meant for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new stream with its request head.
    Request {
        stream: StreamId,
        request: Box<Request>,
        end_stream: bool,
    },
    /// Request body bytes: `data` is a range of the input given to `receive`. The session
    /// gives the flow-control credit back with [`Connection::release`] once it has
    /// forwarded them.
    Data {
        stream: StreamId,
        data: Range<usize>,
        end_stream: bool,
    },
    /// The request's trailers, as HTTP/1.1 field lines; they end the request.
    Trailers { stream: StreamId, fields: Vec<u8> },
    /// The client reset a stream.
    Reset { stream: StreamId, code: ErrorCode },
    /// The proxy reset a stream the session knew, because of the client's error.
    Aborted { stream: StreamId, cause: Cause },
    /// The client will open no more streams; those up to `last_stream` may finish.
    GoAway {
        last_stream: StreamId,
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
    Consumed { len: usize, event: Option<Event> },
}

/// A command the connection cannot carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no open stream {0}")]
    UnknownStream(StreamId),
    #[error("stream {0} already has its response head")]
    HeadAlreadySent(StreamId),
    #[error("stream {0} has no response head yet")]
    NoHead(StreamId),
    #[error("stream {0} is closed for sending")]
    SendClosed(StreamId),
    #[error("the connection is closed")]
    ConnectionClosed,
}

/// What happened over the connection, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub streams_opened: u64,
    pub resets_received: u64,
    pub resets_sent: u64,
    /// Streams refused because the client had too many open.
    pub streams_refused: u64,
    /// Times a send found a closed flow-control window.
    pub window_stalls: u64,
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

/// A header block whose CONTINUATION frames are still coming.
#[derive(Clone, Copy, Debug)]
struct PendingBlock {
    stream: StreamId,
    end_stream: bool,
    is_self_dependent: bool,
    continuations: u32,
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
    decoder: Decoder<'static>,
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
    /// The fragments of the header block being received.
    block: Vec<u8>,
    pending: Option<PendingBlock>,
    /// The deadline of a graceful shutdown in progress; `None` without one or without limit.
    shutdown: Option<Option<Instant>>,
    peer_going_away: bool,
    /// The streams the proxy reset last, oldest first.
    recently_reset: VecDeque<StreamId>,
    /// Reused for encoding header blocks.
    scratch: Vec<u8>,
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
        let mut decoder = Decoder::new();
        // Until the client acknowledges our SETTINGS, the default table size applies.
        decoder.set_max_allowed_table_size(settings::DEFAULT_HEADER_TABLE_SIZE as usize);
        Self {
            config,
            stream_idle_timeout,
            request_id_header: request_id_header.into(),
            phase: Phase::Preface,
            flood: Flood::new(now),
            decoder,
            encoder: HeaderEncoder::default(),
            peer: PeerSettings::default(),
            streams: Vec::new(),
            last_client_stream: 0,
            send_window: i64::from(DEFAULT_WINDOW),
            recv_window: DEFAULT_WINDOW,
            unreturned: 0,
            stalled_since: None,
            block: Vec::new(),
            pending: None,
            shutdown: None,
            peer_going_away: false,
            recently_reset: VecDeque::new(),
            scratch: Vec::new(),
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

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

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
        self.pending = None;
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
        if let Some(pending) = self.pending {
            if !matches!(frame, Frame::Continuation { stream, .. } if stream == pending.stream) {
                return Err(connection(
                    ErrorCode::ProtocolError,
                    Cause::ExpectedContinuation,
                ));
            }
        }
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
                self.block.clear();
                self.block.extend_from_slice(fragment);
                self.check_block_size()?;
                let block = PendingBlock {
                    stream,
                    end_stream,
                    is_self_dependent,
                    continuations: 0,
                };
                if !end_headers {
                    self.pending = Some(block);
                    return Ok(None);
                }
                self.header_block(block, now, out)
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } => {
                let Some(mut pending) = self.pending.filter(|p| p.stream == stream) else {
                    return Err(connection(
                        ErrorCode::ProtocolError,
                        Cause::UnexpectedContinuation,
                    ));
                };
                pending.continuations = pending.continuations.saturating_add(1);
                if pending.continuations > self.config.max_continuation_frames {
                    return Err(connection(
                        ErrorCode::EnhanceYourCalm,
                        Cause::ContinuationFlood,
                    ));
                }
                self.block.extend_from_slice(fragment);
                self.check_block_size()?;
                if !end_headers {
                    self.pending = Some(pending);
                    return Ok(None);
                }
                self.pending = None;
                self.header_block(pending, now, out)
            }
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

    /// A header block larger than the header list limit is a CONTINUATION flood: it is
    /// refused before being decoded, which loses the HPACK state, so the connection ends.
    fn check_block_size(&self) -> Result<(), FrameError> {
        if self.block.len() > self.config.max_header_list_size as usize {
            return Err(connection(
                ErrorCode::EnhanceYourCalm,
                Cause::HeaderBlockTooLarge,
            ));
        }
        Ok(())
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

    fn header_block(
        &mut self,
        pending: PendingBlock,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        let block = mem::take(&mut self.block);
        let result = self.decode_block(pending, &block, now, out);
        self.block = block;
        result
    }

    /// Decodes a complete header block: a new request, trailers, or a block for a closed
    /// stream. The block is decoded first in every case: the HPACK state must follow the
    /// client's whatever becomes of the stream.
    fn decode_block(
        &mut self,
        pending: PendingBlock,
        block: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        let PendingBlock {
            stream: id,
            end_stream,
            is_self_dependent,
            ..
        } = pending;
        let limits = self.list_limits();
        let is_new = self.is_idle(id);
        if !is_new || id % 2 == 0 {
            let trailers = headers::decode_trailers(&mut self.decoder, block, &limits);
            return self.trailers(id, trailers, end_stream, is_self_dependent, now);
        }
        self.last_client_stream = id;
        let request = headers::decode_request(
            &mut self.decoder,
            block,
            &limits,
            &self.request_id_header,
            end_stream,
        );
        let request = match request {
            Err(BlockError::Compression) => {
                return Err(connection(ErrorCode::CompressionError, Cause::Compression));
            }
            Err(BlockError::Stream(cause)) => {
                return Err(FrameError::Stream(id, ErrorCode::ProtocolError, cause));
            }
            Ok(_) if is_self_dependent => {
                return Err(FrameError::Stream(
                    id,
                    ErrorCode::ProtocolError,
                    Cause::SelfDependency,
                ));
            }
            // A request ended by its HEADERS has no body: a Content-Length announcing one
            // disagrees with its framing (RFC 9113 §8.1.1).
            Ok(request) if end_stream && request.content_length.is_some_and(|l| l > 0) => {
                return Err(FrameError::Stream(
                    id,
                    ErrorCode::ProtocolError,
                    Cause::ContentLengthMismatch,
                ));
            }
            Ok(request) => request,
        };
        self.open_stream(id, request, end_stream, now, out)
    }

    /// A header block on a stream that is not new: trailers of an open stream. On a
    /// closed stream (one the proxy reset while the client was still sending) it is
    /// dropped; on an even id it is an error.
    fn trailers(
        &mut self,
        id: StreamId,
        trailers: Result<Vec<u8>, BlockError>,
        end_stream: bool,
        is_self_dependent: bool,
        now: Instant,
    ) -> Result<Option<Event>, FrameError> {
        let fields = match trailers {
            Err(BlockError::Compression) => {
                return Err(connection(ErrorCode::CompressionError, Cause::Compression));
            }
            _ if id % 2 == 0 => {
                return Err(connection(ErrorCode::ProtocolError, Cause::BadNewStreamId));
            }
            _ if self.stream(id).is_none() => {
                if self.recently_reset.contains(&id) {
                    return Ok(None);
                }
                return Err(connection(ErrorCode::StreamClosed, Cause::ClosedStream));
            }
            Err(BlockError::Stream(cause)) => {
                return Err(FrameError::Stream(id, ErrorCode::ProtocolError, cause));
            }
            Ok(_) if is_self_dependent => {
                return Err(FrameError::Stream(
                    id,
                    ErrorCode::ProtocolError,
                    Cause::SelfDependency,
                ));
            }
            Ok(fields) => fields,
        };
        let recv = self.stream(id).map_or(Recv::Closed, |stream| stream.recv);
        let Recv::Body {
            content_length,
            received,
        } = recv
        else {
            return Err(FrameError::Stream(
                id,
                ErrorCode::StreamClosed,
                Cause::ClosedStream,
            ));
        };
        if !end_stream {
            return Err(FrameError::Stream(
                id,
                ErrorCode::ProtocolError,
                Cause::TrailersWithoutEndStream,
            ));
        }
        if content_length.is_some_and(|length| length != received) {
            return Err(FrameError::Stream(
                id,
                ErrorCode::ProtocolError,
                Cause::ContentLengthMismatch,
            ));
        }
        if let Some(stream) = self.stream_mut(id) {
            stream.recv = Recv::Closed;
            stream.last_activity = now;
        }
        self.remove_if_closed(id);
        Ok(Some(Event::Trailers { stream: id, fields }))
    }

    /// Opens a stream for a decoded request, unless the connection is shutting down or
    /// the client has too many streams open.
    fn open_stream(
        &mut self,
        id: StreamId,
        request: Request,
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        if self.shutdown.is_some() {
            // After our GOAWAY, new streams are refused; the client may retry them.
            self.write_reset(id, ErrorCode::RefusedStream, out);
            return Ok(None);
        }
        if self.streams.len() >= self.config.max_concurrent_streams as usize {
            self.write_reset(id, ErrorCode::RefusedStream, out);
            self.counters.streams_refused = self.counters.streams_refused.saturating_add(1);
            self.count(Lifetime::Glitch, out).map_err(escalated)?;
            return Ok(None);
        }
        self.streams.push(Stream {
            id,
            recv: if end_stream {
                Recv::Closed
            } else {
                Recv::Body {
                    content_length: request.content_length,
                    received: 0,
                }
            },
            send: Send::AwaitingHead,
            send_window: i64::from(self.peer.initial_window_size),
            recv_window: DEFAULT_WINDOW,
            unreturned: 0,
            last_activity: now,
            stalled_since: None,
        });
        self.counters.streams_opened = self.counters.streams_opened.saturating_add(1);
        Ok(Some(Event::Request {
            stream: id,
            request: Box::new(request),
            end_stream,
        }))
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
                .set_max_allowed_table_size(self.config.max_header_table_size as usize);
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

    /// Returns connection credit for data that no stream will release.
    fn return_connection_credit(&mut self, amount: u32, out: &mut Vec<u8>) {
        self.unreturned = self.unreturned.saturating_add(amount);
        self.flush_connection_credit(out);
    }

    /// Sends WINDOW_UPDATE for the connection once half its window is owed.
    fn flush_connection_credit(&mut self, out: &mut Vec<u8>) {
        let target = self
            .config
            .initial_connection_window
            .clamp(DEFAULT_WINDOW, MAX_WINDOW);
        if self.unreturned >= target / 2 {
            let increment = self.unreturned.min(target.saturating_sub(self.recv_window));
            if increment > 0 {
                frame::write_window_update(out, 0, increment);
                self.recv_window = self.recv_window.saturating_add(increment);
            }
            self.unreturned = 0;
        }
    }

    /// The session forwarded `amount` bytes of a stream's data: their flow-control credit
    /// goes back to the client, in WINDOW_UPDATE frames once half a window is owed.
    pub fn release(&mut self, id: StreamId, amount: u32, out: &mut Vec<u8>) {
        if let Some(stream) = self.stream_mut(id) {
            stream.unreturned = stream.unreturned.saturating_add(amount);
            let is_receiving = matches!(stream.recv, Recv::Body { .. });
            if is_receiving && stream.unreturned >= DEFAULT_WINDOW / 2 {
                let increment = stream
                    .unreturned
                    .min(DEFAULT_WINDOW.saturating_sub(stream.recv_window));
                if increment > 0 {
                    frame::write_window_update(out, id, increment);
                    stream.recv_window = stream.recv_window.saturating_add(increment);
                }
                stream.unreturned = 0;
            }
        }
        self.return_connection_credit(amount, out);
    }

    fn open_for_send(&mut self, id: StreamId) -> Result<&mut Stream, SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::ConnectionClosed);
        }
        self.stream_mut(id).ok_or(SendError::UnknownStream(id))
    }

    /// Sends the response head of a stream, translated from an HTTP/1.1 response. A 1xx
    /// head is interim: more heads may follow.
    pub fn send_response(
        &mut self,
        id: StreamId,
        response: ParsedResponse<'_>,
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let stream = self.open_for_send(id)?;
        if stream.send != Send::AwaitingHead {
            return Err(SendError::HeadAlreadySent(id));
        }
        let is_interim = response.head.status < 200;
        if !is_interim {
            stream.send = if end_stream { Send::Closed } else { Send::Body };
        }
        stream.last_activity = now;
        let mut block = mem::take(&mut self.scratch);
        self.encoder.response(response, &mut block);
        frame::write_headers(
            out,
            id,
            &block,
            end_stream && !is_interim,
            self.peer.max_frame_size,
        );
        self.scratch = block;
        self.remove_if_closed(id);
        Ok(())
    }

    /// Sends trailers, which end the stream.
    pub fn send_trailers<'f>(
        &mut self,
        id: StreamId,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let stream = self.open_for_send(id)?;
        match stream.send {
            Send::AwaitingHead => return Err(SendError::NoHead(id)),
            Send::Closed => return Err(SendError::SendClosed(id)),
            Send::Body => stream.send = Send::Closed,
        }
        let mut block = mem::take(&mut self.scratch);
        self.encoder.fields(fields, &mut block);
        frame::write_headers(out, id, &block, true, self.peer.max_frame_size);
        self.scratch = block;
        self.remove_if_closed(id);
        Ok(())
    }

    /// Sends as much of `data` as both flow-control windows allow, in frames no larger
    /// than the client accepts; returns how many bytes were taken. `end_stream` ends the
    /// stream once all of `data` is sent. Zero with data left means the window is closed:
    /// call again after the client sends WINDOW_UPDATE (a window kept closed past the
    /// stream idle timeout resets the stream, see [`Connection::expire`]).
    pub fn send_data(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<usize, SendError> {
        let connection_window = self.send_window;
        let max_frame = usize::try_from(self.peer.max_frame_size).unwrap_or(usize::MAX);
        let stream = self.open_for_send(id)?;
        match stream.send {
            Send::AwaitingHead => return Err(SendError::NoHead(id)),
            Send::Closed => return Err(SendError::SendClosed(id)),
            Send::Body => {}
        }
        let window = stream.send_window.min(connection_window).max(0);
        let allowed = usize::try_from(window).unwrap_or(0).min(data.len());
        let sent = data.get(..allowed).unwrap_or_default();
        let is_last = allowed == data.len() && end_stream;
        let mut chunks = sent.chunks(max_frame.max(1)).peekable();
        if sent.is_empty() && is_last {
            frame::write_data(out, id, &[], true);
        }
        while let Some(chunk) = chunks.next() {
            frame::write_data(out, id, chunk, is_last && chunks.peek().is_none());
        }
        let sent_len = i64::try_from(allowed).unwrap_or(i64::MAX);
        stream.send_window = stream.send_window.saturating_sub(sent_len);
        stream.last_activity = now;
        let newly_stalled = allowed < data.len() && stream.stalled_since.is_none();
        if newly_stalled {
            stream.stalled_since = Some(now);
        } else if allowed == data.len() {
            stream.stalled_since = None;
        }
        if is_last {
            stream.send = Send::Closed;
        }
        if newly_stalled {
            self.counters.window_stalls = self.counters.window_stalls.saturating_add(1);
        }
        self.send_window = self.send_window.saturating_sub(sent_len);
        if allowed < data.len() && self.send_window <= 0 {
            self.stalled_since.get_or_insert(now);
        }
        self.remove_if_closed(id);
        Ok(allowed)
    }

    /// Resets a stream for the session (a backend failure, a cancelled request). Not
    /// counted against the client.
    pub fn reset(&mut self, id: StreamId, code: ErrorCode, out: &mut Vec<u8>) {
        if self.remove_stream(id).is_some() {
            self.write_reset(id, code, out);
        }
    }

    /// Writes RST_STREAM and remembers the stream.
    fn write_reset(&mut self, id: StreamId, code: ErrorCode, out: &mut Vec<u8>) {
        frame::write_rst_stream(out, id, code);
        self.counters.resets_sent = self.counters.resets_sent.saturating_add(1);
        if self.recently_reset.len() >= REMEMBERED_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// Starts a graceful shutdown: GOAWAY with NO_ERROR and the last stream the client
    /// opened, which may all finish; later streams are refused. With a non-zero
    /// `h2_graceful_shutdown_deadline_seconds`, [`Connection::expire`] ends the connection
    /// at that deadline.
    pub fn shutdown(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.phase == Phase::Closed || self.shutdown.is_some() {
            return;
        }
        frame::write_goaway(out, self.last_client_stream, ErrorCode::NoError);
        self.counters.goaways_sent = self.counters.goaways_sent.saturating_add(1);
        let deadline = self.config.graceful_shutdown_deadline;
        self.shutdown = Some((!deadline.is_zero()).then(|| now + deadline));
    }

    /// Applies the deadlines at `now`: streams idle or stalled on a closed window past the
    /// stream idle timeout are reset (their ids pushed to `expired`), and a connection
    /// whose own window stays closed that long, or whose graceful shutdown deadline
    /// passed, ends.
    pub fn expire(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        expired: &mut Vec<StreamId>,
    ) -> Result<(), ConnectionError> {
        if let Some(Some(deadline)) = self.shutdown {
            if now >= deadline && !self.streams.is_empty() {
                return Err(self.close(ErrorCode::NoError, Cause::ShutdownDeadline, out));
            }
        }
        let timeout = self.stream_idle_timeout;
        let is_past = |since: Instant| now.saturating_duration_since(since) >= timeout;
        let is_stream_waiting = self.streams.iter().any(|s| s.stalled_since.is_some());
        if is_stream_waiting && self.stalled_since.is_some_and(is_past) {
            return Err(self.close(ErrorCode::EnhanceYourCalm, Cause::ZeroWindowStall, out));
        }
        let mut index = 0;
        while let Some(stream) = self.streams.get(index) {
            let stalled = stream.stalled_since.is_some_and(is_past);
            if stalled || is_past(stream.last_activity) {
                let id = stream.id;
                let code = if stalled {
                    ErrorCode::FlowControlError
                } else {
                    ErrorCode::Cancel
                };
                self.streams.swap_remove(index);
                self.write_reset(id, code, out);
                expired.push(id);
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// The next instant [`Connection::expire`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.stream_idle_timeout;
        let streams = self.streams.iter().map(|stream| {
            stream.stalled_since.map_or(stream.last_activity, |since| {
                since.min(stream.last_activity)
            })
        });
        let shutdown = self.shutdown.flatten();
        let is_stream_waiting = self.streams.iter().any(|s| s.stalled_since.is_some());
        self.stalled_since
            .filter(|_| is_stream_waiting)
            .into_iter()
            .chain(streams)
            .map(|since| since + timeout)
            .chain(shutdown)
            .min()
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
