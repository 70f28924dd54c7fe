//! The response side of a backend HTTP/2 connection: the frames the backend sends, checked
//! and held to the flood limits, and the response of the stream in flight written as
//! HTTP/1.1 for the session to read.

use std::time::Instant;

use super::{Framing, Link, PendingBlock, Response};
use crate::protocol::http::h2::{
    StreamId,
    error::{Cause, ErrorCode, FrameError},
    exchange,
    flood::{Lifetime, Windowed},
    frame::{self, Decoded, Frame, MAX_WINDOW},
    headers::{self, BlockError, ListLimits},
};
use crate::{protocol::http::parser::Method, session::endpoint::Transfer};

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
            if let Err(error) = outcome {
                let code = match error {
                    FrameError::Connection(code, _) | FrameError::Stream(_, code, _) => code,
                };
                self.fail(code);
            }
        }
        self.input.drain(..offset.min(self.input.len()));
    }

    pub(super) fn handle(
        &mut self,
        frame: Frame<'_>,
        input: &[u8],
        now: Instant,
    ) -> Result<(), FrameError> {
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

    pub(super) fn count(&mut self, kind: Windowed, now: Instant) -> Result<(), FrameError> {
        self.flood.record(kind, now, &self.limits).map_err(calm)
    }

    pub(super) fn count_lifetime(&mut self, kind: Lifetime) -> Result<(), FrameError> {
        self.flood.record_lifetime(kind, &self.limits).map_err(calm)
    }

    pub(super) fn check_block_size(&self) -> Result<(), FrameError> {
        if self.block.len() > self.limits.max_header_list_size as usize {
            return Err(calm(Cause::HeaderBlockTooLarge));
        }
        Ok(())
    }

    pub(super) fn data(
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
                exchange::push_chunk(&mut self.decoded, data);
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
    pub(super) fn header_block(&mut self, pending: PendingBlock) -> Result<(), FrameError> {
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
    pub(super) fn response_head(
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
