//! The response side of a backend HTTP/2 connection: the frames the backend sends, checked
//! and held to the flood limits, and the response of each stream written as HTTP/1.1 for
//! its owner to read.
//!
//! A response that breaks the rules of its stream (a content-length its data does not add
//! up to, a malformed head) fails that stream only (RST_STREAM); what breaks the connection
//! (framing, HPACK, floods, flow control) fails them all (GOAWAY).

use std::time::Instant;

use super::{Framing, Link, Response};
use crate::protocol::http::h2::{
    StreamId,
    assembly::HeaderBlock,
    error::{Cause, ErrorCode, FrameError},
    exchange,
    flood::{Lifetime, Windowed},
    frame::{self, Decoded, Frame, MAX_WINDOW},
    headers::{self, BlockError, ListLimits},
};
use crate::{
    protocol::http::parser::Method,
    session::endpoint::{Ready, Transfer},
};

impl Link {
    /// Reads the whole frames of `input`.
    pub(super) fn receive(&mut self, now: Instant) {
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
            match outcome {
                Ok(()) => {}
                Err(FrameError::Connection(code, _)) => self.fail(code),
                Err(FrameError::Stream(id, code, _)) => self.fail_stream(id, code),
            }
        }
        self.input.drain(..offset.min(self.input.len()));
    }

    /// Resets stream `id` for the backend's error; its owner's exchange fails.
    fn fail_stream(&mut self, id: StreamId, code: ErrorCode) {
        frame::write_rst_stream(&mut self.out, id, code);
        if let Some(key) = self.open.get(&id).copied() {
            self.end_stream(key, Transfer::Error(std::io::ErrorKind::InvalidData));
        }
    }

    pub(super) fn handle(
        &mut self,
        frame: Frame<'_>,
        input: &[u8],
        now: Instant,
    ) -> Result<(), FrameError> {
        self.headers.check_next(&frame)?;
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
                // What a backend says of priorities is ignored (RFC 9113 §5.3.2).
                let start = (stream, end_stream, false);
                match self
                    .headers
                    .headers(start, fragment, end_headers, &self.limits)?
                {
                    Some(block) => self.header_block(block),
                    None => Ok(()),
                }
            }
            Frame::Continuation {
                stream,
                fragment,
                end_headers,
            } => match self
                .headers
                .continuation(stream, fragment, end_headers, &self.limits)?
            {
                Some(block) => self.header_block(block),
                None => Ok(()),
            },
            Frame::Priority { .. } | Frame::Unknown => Ok(()),
            Frame::RstStream { stream, .. } => {
                self.count(Windowed::RstStream, now)?;
                self.count_lifetime(Lifetime::RstStream)?;
                if stream > self.last_stream {
                    return Err(protocol(Cause::IdleStream));
                }
                if let Some(key) = self.open.get(&stream).copied() {
                    self.counters.resets_received = self.counters.resets_received.saturating_add(1);
                    self.end_stream(key, Transfer::Closed);
                }
                Ok(())
            }
            Frame::Settings { ack, payload } => {
                self.count(Windowed::Settings, now)?;
                if ack {
                    self.decoder
                        .set_max_table_size(self.limits.max_header_table_size);
                    return Ok(());
                }
                let old_window = i64::from(self.peer.initial_window_size);
                self.peer.apply(payload)?;
                let delta = i64::from(self.peer.initial_window_size) - old_window;
                for key in self.open.values() {
                    let Some(stream) = self.streams.get_mut(*key) else {
                        continue;
                    };
                    let window = stream.send_window.saturating_add(delta);
                    if window > i64::from(MAX_WINDOW) {
                        return Err(FrameError::Connection(
                            ErrorCode::FlowControlError,
                            Cause::WindowOverflow,
                        ));
                    }
                    stream.send_window = window;
                }
                self.encoder
                    .set_peer_table_size(self.peer.header_table_size);
                frame::write_settings_ack(&mut self.out);
                self.has_settings = true;
                // More room or a bigger window: requests that waited may go on.
                self.wake_writers();
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
                let last_stream = self
                    .going_away
                    .map_or(last_stream, |before| before.min(last_stream));
                self.going_away = Some(last_stream);
                // The backend did not process the later streams (RFC 9113 §6.8): each fails
                // as a connection closed before its response, and may go again elsewhere.
                let refused: Vec<usize> = self
                    .open
                    .iter()
                    .filter(|(id, _)| **id > last_stream)
                    .map(|(_, key)| *key)
                    .collect();
                for key in refused {
                    self.counters.streams_refused = self.counters.streams_refused.saturating_add(1);
                    self.end_stream(key, Transfer::Closed);
                }
                // The handles between requests learn that their next one goes elsewhere.
                for (_, stream) in self.streams.iter() {
                    if !stream.is_in_flight() {
                        self.wakes.push(stream.owner, Ready::READABLE);
                    }
                }
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                let window = if stream == 0 {
                    self.count(Windowed::ConnectionWindowUpdate, now)?;
                    &mut self.send_window
                } else if let Some(key) = self.open.get(&stream).copied() {
                    match self.streams.get_mut(key) {
                        Some(open) => &mut open.send_window,
                        None => return Ok(()),
                    }
                } else if stream > self.last_stream {
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
                self.wake_writers();
                Ok(())
            }
        }
    }

    pub(super) fn count(&mut self, kind: Windowed, now: Instant) -> Result<(), FrameError> {
        self.flood.record(kind, now, &self.limits).map_err(calm)
    }

    pub(super) fn count_lifetime(&mut self, kind: Lifetime) -> Result<(), FrameError> {
        self.flood.record_lifetime(kind, &self.limits).map_err(calm)
    }

    pub(super) fn data(
        &mut self,
        id: StreamId,
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
        // The connection's credit goes back once the frames read are handled: a stream's
        // data waits within its own window, never holding the others'.
        self.unreturned = self.unreturned.saturating_add(flow_len);
        if id > self.last_stream || id == 0 {
            return Err(protocol(Cause::IdleStream));
        }
        let Some(key) = self.open.get(&id).copied() else {
            // Data of a stream that ended or was reset: dropped.
            return Ok(());
        };
        let Some(stream) = self.streams.get_mut(key) else {
            return Ok(());
        };
        let Response::Body(framing) = stream.response else {
            return Err(stream_error(id, Cause::Malformed));
        };
        stream.recv_window = stream
            .recv_window
            .checked_sub(flow_len)
            .ok_or_else(window_exceeded)?;
        stream.unreturned = stream.unreturned.saturating_add(flow_len);
        let len = data.len() as u64;
        let next = match framing {
            Framing::Empty if !data.is_empty() => {
                return Err(stream_error(id, Cause::ContentLengthMismatch));
            }
            Framing::Empty => Framing::Empty,
            Framing::Length { remaining } => {
                let remaining = remaining
                    .checked_sub(len)
                    .ok_or(stream_error(id, Cause::ContentLengthMismatch))?;
                if end_stream && remaining > 0 {
                    return Err(stream_error(id, Cause::ContentLengthMismatch));
                }
                stream.decoded.extend_from_slice(data);
                Framing::Length { remaining }
            }
            Framing::Chunked => {
                exchange::push_chunk(&mut stream.decoded, data);
                if end_stream {
                    stream.decoded.extend_from_slice(b"0\r\n\r\n");
                }
                Framing::Chunked
            }
        };
        stream.response = if end_stream {
            Response::Done
        } else {
            Response::Body(next)
        };
        let owner = stream.owner;
        self.wakes.push(owner, Ready::READABLE);
        if end_stream {
            self.close_if_done(key);
        }
        Ok(())
    }

    /// A whole header block: the response head (or an interim one), or the trailers.
    pub(super) fn header_block(&mut self, pending: HeaderBlock) -> Result<(), FrameError> {
        let limits = ListLimits {
            max_size: self.limits.max_header_list_size,
            max_fields: self.limits.max_header_fields,
        };
        let id = pending.stream;
        let open = self.open.get(&id).copied();
        let response = open
            .and_then(|key| self.streams.get(key))
            .map(|stream| stream.response);
        let (Some(key), Some(response @ (Response::AwaitingHead { .. } | Response::Body(_)))) =
            (open, response)
        else {
            // The backend may not open streams; a stream the proxy reset may still get the
            // blocks the backend sent meanwhile. The block is decoded first to keep the
            // HPACK state right.
            let _ = headers::decode_trailers(
                &mut self.decoder,
                &self.headers.block,
                &limits,
                &mut self.decoding,
            );
            if id > self.last_stream || id == 0 || id % 2 == 0 || open.is_some() {
                return Err(protocol(Cause::ClosedStream));
            }
            return Ok(());
        };
        match response {
            Response::AwaitingHead { method } => {
                let (status, lines) = headers::decode_response(
                    &mut self.decoder,
                    &self.headers.block,
                    &limits,
                    &mut self.decoding,
                )
                .map_err(|error| block_error(id, error))?;
                if let Some(stream) = self.streams.get_mut(key) {
                    let marked = self.decoding.never_indexed();
                    stream.response_never_indexed.add_all(marked);
                }
                self.response_head(key, method, status, &lines, pending.end_stream)?;
            }
            Response::Body(framing) => {
                let trailers = headers::decode_trailers(
                    &mut self.decoder,
                    &self.headers.block,
                    &limits,
                    &mut self.decoding,
                )
                .map_err(|error| block_error(id, error))?;
                if !pending.end_stream {
                    return Err(stream_error(id, Cause::Malformed));
                }
                let Some(stream) = self.streams.get_mut(key) else {
                    return Ok(());
                };
                match framing {
                    Framing::Chunked => {
                        stream.decoded.extend_from_slice(b"0\r\n");
                        stream.decoded.extend_from_slice(&trailers);
                        stream.decoded.extend_from_slice(b"\r\n");
                    }
                    // Trailers after a declared length have no HTTP/1.1 form: dropped.
                    Framing::Length { remaining: 0 } | Framing::Empty => {}
                    Framing::Length { .. } => {
                        return Err(stream_error(id, Cause::ContentLengthMismatch));
                    }
                }
                stream.response = Response::Done;
            }
            Response::Idle | Response::Done => return Err(protocol(Cause::ClosedStream)),
        }
        if let Some(stream) = self.streams.get(key) {
            self.wakes.push(stream.owner, Ready::READABLE);
        }
        self.close_if_done(key);
        Ok(())
    }

    /// Writes a response head of `key` as HTTP/1.1, with the framing its body needs.
    pub(super) fn response_head(
        &mut self,
        key: usize,
        method: Method,
        status: u16,
        lines: &[u8],
        end_stream: bool,
    ) -> Result<(), FrameError> {
        let going_away = self.going_away.is_some();
        let Some(stream) = self.streams.get_mut(key) else {
            return Ok(());
        };
        let id = stream.id;
        // RFC 9113 §8.6: no 101 in HTTP/2.
        if status == 101 || (status < 200 && end_stream) {
            return Err(stream_error(id, Cause::Malformed));
        }
        let decoded = &mut stream.decoded;
        let head_start = decoded.len();
        decoded.extend_from_slice(b"HTTP/1.1 ");
        decoded.extend_from_slice(status.to_string().as_bytes());
        decoded.extend_from_slice(b" \r\n");
        decoded.extend_from_slice(lines);
        if status < 200 {
            decoded.extend_from_slice(b"\r\n");
            return Ok(());
        }
        let content_length = content_length(lines);
        let framing = if method == Method::Head || status == 204 || status == 304 {
            Framing::Empty
        } else if let Some(length) = content_length {
            let Some(remaining) = length else {
                decoded.truncate(head_start);
                return Err(stream_error(id, Cause::ContentLengthMismatch));
            };
            Framing::Length { remaining }
        } else if end_stream {
            // A head that ends the stream (gRPC's trailers-only response) has an empty body:
            // said so, an HTTP/2 client gets it as one HEADERS frame ending the stream.
            decoded.extend_from_slice(b"content-length: 0\r\n");
            Framing::Length { remaining: 0 }
        } else {
            decoded.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        };
        if going_away {
            // The connection carries nothing after this response.
            decoded.extend_from_slice(b"connection: close\r\n");
        }
        decoded.extend_from_slice(b"\r\n");
        stream.response = Response::Body(framing);
        if end_stream {
            match framing {
                Framing::Chunked => decoded.extend_from_slice(b"0\r\n\r\n"),
                Framing::Length { remaining } if remaining > 0 => {
                    decoded.truncate(head_start);
                    return Err(stream_error(id, Cause::ContentLengthMismatch));
                }
                Framing::Length { .. } | Framing::Empty => {}
            }
            stream.response = Response::Done;
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

fn stream_error(id: StreamId, cause: Cause) -> FrameError {
    FrameError::Stream(id, ErrorCode::ProtocolError, cause)
}

fn calm(cause: Cause) -> FrameError {
    FrameError::Connection(ErrorCode::EnhanceYourCalm, cause)
}

/// A header block the proxy cannot take from a backend: a compression error ends the
/// connection (the HPACK state is lost), a malformed list fails its stream.
fn block_error(id: StreamId, error: BlockError) -> FrameError {
    match error {
        BlockError::Compression => {
            FrameError::Connection(ErrorCode::CompressionError, Cause::Compression)
        }
        BlockError::Stream(cause) => stream_error(id, cause),
    }
}
