//! Header blocks of the connection: a complete block decoded into a new stream's request
//! or an open stream's trailers, after the checks of RFC 9113 §8 and the stream limits.

use std::{mem, time::Instant};

use super::{Connection, Event, connection, escalated};
use crate::protocol::http::h2::{
    StreamId,
    assembly::HeaderBlock,
    error::{Cause, ErrorCode, FrameError},
    flood::Lifetime,
    headers::{self, BlockError, Request},
    settings::DEFAULT_WINDOW,
    stream::{Recv, Send, Stream},
};

impl Connection {
    pub(super) fn header_block(
        &mut self,
        pending: HeaderBlock,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        let block = mem::take(&mut self.headers.block);
        let result = self.decode_block(pending, &block, now, out);
        self.headers.block = block;
        result
    }

    /// Decodes a complete header block: a new request, trailers, or a block for a closed
    /// stream. The block is decoded first in every case: the HPACK state must follow the
    /// client's whatever becomes of the stream.
    pub(super) fn decode_block(
        &mut self,
        pending: HeaderBlock,
        block: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event>, FrameError> {
        let HeaderBlock {
            stream: id,
            end_stream,
            is_self_dependent,
            ..
        } = pending;
        let limits = self.list_limits();
        let is_new = self.is_idle(id);
        if !is_new || id % 2 == 0 {
            let trailers =
                headers::decode_trailers(&mut self.decoder, block, &limits, &mut self.decoding);
            return self.trailers(id, trailers, end_stream, is_self_dependent, now);
        }
        self.last_client_stream = id;
        let mut spare = self.spare.take();
        let request = headers::decode_request(
            &mut self.decoder,
            block,
            &limits,
            &self.request_id_header,
            end_stream,
            &mut self.decoding,
            spare
                .as_deref_mut()
                .map(|spare| (mem::take(&mut spare.bytes), mem::take(&mut spare.fields)))
                .unwrap_or_default(),
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
        self.open_stream(id, request, spare, end_stream, now, out)
    }

    /// A header block on a stream that is not new: trailers of an open stream. On a
    /// closed stream (one the proxy reset while the client was still sending) it is
    /// dropped; on an even id it is an error.
    pub(super) fn trailers(
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
    /// the client has too many streams open. `boxed`, a spare box, carries the request.
    pub(super) fn open_stream(
        &mut self,
        id: StreamId,
        request: Request,
        boxed: Option<Box<Request>>,
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
        let request = match boxed {
            Some(mut boxed) => {
                *boxed = request;
                boxed
            }
            None => Box::new(request),
        };
        Ok(Some(Event::Request {
            stream: id,
            request,
            end_stream,
        }))
    }
}
