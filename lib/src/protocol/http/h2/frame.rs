//! HTTP/2 frames (RFC 9113 §4 and §6): reading one frame from the start of a buffer, with
//! the checks of length, flags and stream id that do not need the connection's state, and
//! writing frames into a caller-owned buffer.
//!
//! Reading copies nothing: a frame's payload is a slice (or, for DATA, a range) of the
//! input. Writing appends to a `Vec<u8>` that the caller keeps, so a connection whose output
//! buffer has grown once writes frames without allocating.

use std::ops::Range;

use super::{
    StreamId,
    error::{Cause, ErrorCode, FrameError},
};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;

/// The smallest (and default) maximum frame size (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// The largest maximum frame size a peer may advertise.
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// The 31-bit stream id of a header or payload field, without its reserved bit.
fn stream_id(bytes: [u8; 4]) -> StreamId {
    u32::from_be_bytes(bytes) & MAX_WINDOW
}

/// A frame read from the start of a buffer. Slices borrow that buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA (RFC 9113 §6.1): body bytes of a stream.
    Data {
        /// The stream the frame belongs to.
        stream: StreamId,
        /// Where the data lies in the input, padding excluded.
        data: Range<usize>,
        /// The whole payload length, padding included: what flow control counts.
        flow_len: u32,
        /// The sender's last frame on the stream.
        end_stream: bool,
    },
    /// HEADERS (RFC 9113 §6.2): opens a stream, or carries its trailers.
    Headers {
        /// The stream the frame belongs to.
        stream: StreamId,
        /// The first part of the HPACK-encoded header block, padding and priority removed.
        fragment: &'a [u8],
        /// The sender's last frame on the stream.
        end_stream: bool,
        /// The header block ends here; otherwise CONTINUATION frames follow.
        end_headers: bool,
        /// The priority block names the stream itself: a stream error (RFC 9113 §5.3.1),
        /// raised once the header block is decoded, as the HPACK state needs.
        is_self_dependent: bool,
    },
    /// PRIORITY (RFC 9113 §6.3): ignored, except that one for a stream not open counts as a
    /// glitch.
    Priority {
        /// The stream the frame belongs to.
        stream: StreamId,
    },
    /// RST_STREAM (RFC 9113 §6.4): the sender ends a stream.
    RstStream {
        /// The stream ended.
        stream: StreamId,
        /// Why the sender ended it.
        code: ErrorCode,
    },
    /// SETTINGS (RFC 9113 §6.5): the sender's parameters, or the acknowledgement of ours.
    Settings {
        /// An acknowledgement, with an empty payload.
        ack: bool,
        /// A multiple of 6 bytes: identifier and value pairs.
        payload: &'a [u8],
    },
    /// PING (RFC 9113 §6.7): a liveness check to answer, or the answer to one.
    Ping {
        /// An answer to a PING.
        ack: bool,
        /// The opaque bytes an answer echoes.
        data: [u8; 8],
    },
    /// GOAWAY (RFC 9113 §6.8): the sender stops taking new streams.
    GoAway {
        /// The highest stream id the sender may still process.
        last_stream: StreamId,
        /// Why the sender closes the connection.
        code: ErrorCode,
    },
    /// WINDOW_UPDATE (RFC 9113 §6.9): more flow-control credit.
    WindowUpdate {
        /// The stream whose window grows; 0 for the connection's.
        stream: StreamId,
        /// Bytes of credit added, from 1 to 2^31-1 (the reader refuses 0).
        increment: u32,
    },
    /// CONTINUATION (RFC 9113 §6.10): the next part of a header block.
    Continuation {
        /// The stream of the header block.
        stream: StreamId,
        /// The next part of the HPACK-encoded header block.
        fragment: &'a [u8],
        /// The header block ends here.
        end_headers: bool,
    },
    /// A frame of an unknown type, which RFC 9113 §4.1 says to ignore.
    Unknown,
}

/// The outcome of reading a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The input does not hold a whole frame yet.
    Partial,
    /// A frame, and the bytes it took from the input.
    Frame {
        /// The frame read.
        frame: Frame<'a>,
        /// Its length in bytes, header included: the next frame starts at this offset.
        len: usize,
    },
}

/// Reads the frame at the start of `input`. `max_frame_size` is the size this endpoint
/// advertised: a larger frame is a connection error (RFC 9113 §4.2).
pub fn decode(input: &[u8], max_frame_size: u32) -> Result<Decoded<'_>, FrameError> {
    let Some(header) = input.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::Partial);
    };
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    if length > max_frame_size {
        return Err(FrameError::Connection(
            ErrorCode::FrameSizeError,
            Cause::FrameTooLarge,
        ));
    }
    let kind = header[3];
    let flags = header[4];
    let stream = stream_id([header[5], header[6], header[7], header[8]]);
    // `length` is at most 2^24-1, so the sum cannot overflow a usize of 32 bits or more.
    let len = HEADER_LEN + length as usize;
    let Some(payload) = input.get(HEADER_LEN..len) else {
        return Ok(Decoded::Partial);
    };
    let frame = match kind {
        DATA => data(payload, flags, stream)?,
        HEADERS => headers(payload, flags, stream)?,
        PRIORITY => priority(payload, stream)?,
        RST_STREAM => rst_stream(payload, stream)?,
        SETTINGS => settings(payload, flags, stream)?,
        PUSH_PROMISE => return Err(connection(ErrorCode::ProtocolError, Cause::PushPromise)),
        PING => ping(payload, flags, stream)?,
        GOAWAY => goaway(payload, stream)?,
        WINDOW_UPDATE => window_update(payload, stream)?,
        CONTINUATION => {
            require_stream(stream)?;
            Frame::Continuation {
                stream,
                fragment: payload,
                end_headers: flags & END_HEADERS != 0,
            }
        }
        _ => Frame::Unknown,
    };
    Ok(Decoded::Frame { frame, len })
}

fn connection(code: ErrorCode, cause: Cause) -> FrameError {
    FrameError::Connection(code, cause)
}

fn require_stream(stream: StreamId) -> Result<(), FrameError> {
    if stream == 0 {
        return Err(connection(ErrorCode::ProtocolError, Cause::BadStreamId));
    }
    Ok(())
}

fn require_connection(stream: StreamId) -> Result<(), FrameError> {
    if stream != 0 {
        return Err(connection(ErrorCode::ProtocolError, Cause::BadStreamId));
    }
    Ok(())
}

/// The payload without its padding: the range of `payload` left after the Pad Length
/// byte (when `PADDED` is set) and the padding itself.
fn unpadded(payload: &[u8], flags: u8) -> Result<Range<usize>, FrameError> {
    if flags & PADDED == 0 {
        return Ok(0..payload.len());
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(connection(ErrorCode::FrameSizeError, Cause::BadFrameLength));
    };
    // RFC 9113 §6.1: padding as long as the rest of the payload or longer is an error.
    let end = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(connection(ErrorCode::ProtocolError, Cause::BadPadding))?;
    Ok(1..1 + end)
}

fn data(payload: &[u8], flags: u8, stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_stream(stream)?;
    let range = unpadded(payload, flags)?;
    Ok(Frame::Data {
        stream,
        data: HEADER_LEN + range.start..HEADER_LEN + range.end,
        // Payloads are shorter than 2^24.
        flow_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        end_stream: flags & END_STREAM != 0,
    })
}

fn headers(payload: &[u8], flags: u8, stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_stream(stream)?;
    let range = unpadded(payload, flags)?;
    let mut fragment = payload.get(range).unwrap_or_default();
    let mut is_self_dependent = false;
    if flags & PRIORITY_FLAG != 0 {
        let Some((dependency, rest)) = fragment.split_first_chunk::<5>() else {
            return Err(connection(ErrorCode::FrameSizeError, Cause::BadFrameLength));
        };
        let depends_on = stream_id([dependency[0], dependency[1], dependency[2], dependency[3]]);
        is_self_dependent = depends_on == stream;
        fragment = rest;
    }
    Ok(Frame::Headers {
        stream,
        fragment,
        end_stream: flags & END_STREAM != 0,
        end_headers: flags & END_HEADERS != 0,
        is_self_dependent,
    })
}

fn priority(payload: &[u8], stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_stream(stream)?;
    let Some(dependency) = payload.first_chunk::<4>().filter(|_| payload.len() == 5) else {
        return Err(FrameError::Stream(
            stream,
            ErrorCode::FrameSizeError,
            Cause::BadFrameLength,
        ));
    };
    if stream_id(*dependency) == stream {
        return Err(FrameError::Stream(
            stream,
            ErrorCode::ProtocolError,
            Cause::SelfDependency,
        ));
    }
    Ok(Frame::Priority { stream })
}

fn rst_stream(payload: &[u8], stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_stream(stream)?;
    let code = u32_payload(payload)?;
    Ok(Frame::RstStream {
        stream,
        code: ErrorCode::from_u32(code),
    })
}

/// A payload of exactly four bytes, read as a big-endian number.
fn u32_payload(payload: &[u8]) -> Result<u32, FrameError> {
    let bytes: [u8; 4] = payload
        .try_into()
        .map_err(|_| connection(ErrorCode::FrameSizeError, Cause::BadFrameLength))?;
    Ok(u32::from_be_bytes(bytes))
}

fn settings(payload: &[u8], flags: u8, stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_connection(stream)?;
    let ack = flags & ACK != 0;
    if (ack && !payload.is_empty()) || payload.len() % 6 != 0 {
        return Err(connection(ErrorCode::FrameSizeError, Cause::BadFrameLength));
    }
    Ok(Frame::Settings { ack, payload })
}

fn ping(payload: &[u8], flags: u8, stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_connection(stream)?;
    let data: [u8; 8] = payload
        .try_into()
        .map_err(|_| connection(ErrorCode::FrameSizeError, Cause::BadFrameLength))?;
    Ok(Frame::Ping {
        ack: flags & ACK != 0,
        data,
    })
}

fn goaway(payload: &[u8], stream: StreamId) -> Result<Frame<'_>, FrameError> {
    require_connection(stream)?;
    let Some((fixed, _debug)) = payload.split_first_chunk::<8>() else {
        return Err(connection(ErrorCode::FrameSizeError, Cause::BadFrameLength));
    };
    Ok(Frame::GoAway {
        last_stream: stream_id([fixed[0], fixed[1], fixed[2], fixed[3]]),
        code: ErrorCode::from_u32(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]])),
    })
}

fn window_update(payload: &[u8], stream: StreamId) -> Result<Frame<'_>, FrameError> {
    let increment = u32_payload(payload)? & MAX_WINDOW;
    if increment == 0 {
        // RFC 9113 §6.9: an error of the connection or of the stream the frame names.
        return Err(if stream == 0 {
            connection(ErrorCode::ProtocolError, Cause::ZeroWindowIncrement)
        } else {
            FrameError::Stream(stream, ErrorCode::ProtocolError, Cause::ZeroWindowIncrement)
        });
    }
    Ok(Frame::WindowUpdate { stream, increment })
}

/// Appends a frame header. `length` must be below 2^24, which every caller guarantees by
/// splitting payloads at the peer's maximum frame size.
fn write_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: StreamId) {
    let length = u32::try_from(length).unwrap_or(MAX_MAX_FRAME_SIZE) & MAX_MAX_FRAME_SIZE;
    let [_, l0, l1, l2] = length.to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, kind, flags]);
    out.extend_from_slice(&(stream & MAX_WINDOW).to_be_bytes());
}

/// Appends a DATA frame. `data` must be no longer than the peer's maximum frame size.
pub fn write_data(out: &mut Vec<u8>, stream: StreamId, data: &[u8], end_stream: bool) {
    let flags = if end_stream { END_STREAM } else { 0 };
    write_header(out, data.len(), DATA, flags, stream);
    out.extend_from_slice(data);
}

/// Appends a header block as one HEADERS frame and as many CONTINUATION frames as
/// `max_frame_size` requires.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: StreamId,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let chunk = usize::try_from(max_frame_size.max(DEFAULT_MAX_FRAME_SIZE)).unwrap_or(usize::MAX);
    let mut chunks = block.chunks(chunk).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    write_header(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    while let Some(fragment) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_header(out, fragment.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(fragment);
    }
}

/// Appends a SETTINGS frame with these identifier and value pairs.
pub fn write_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_header(out, settings.len() * 6, SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a SETTINGS acknowledgement to `out`.
pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, SETTINGS, ACK, 0);
}

/// Appends a PING with `data` to `out`; `ack` makes it the answer to a client's PING.
pub fn write_ping(out: &mut Vec<u8>, data: [u8; 8], ack: bool) {
    write_header(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

/// Appends a RST_STREAM ending `stream` with `code` to `out`.
pub fn write_rst_stream(out: &mut Vec<u8>, stream: StreamId, code: ErrorCode) {
    write_header(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_u32().to_be_bytes());
}

/// Appends a GOAWAY to `out`: streams above `last_stream` will not be processed.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: StreamId, code: ErrorCode) {
    write_header(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.to_u32().to_be_bytes());
}

/// Appends a WINDOW_UPDATE granting `increment` bytes to `stream` (0: the connection) to `out`.
pub fn write_window_update(out: &mut Vec<u8>, stream: StreamId, increment: u32) {
    write_header(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// Test helpers that write frames a server never sends, to play the client.
#[cfg(test)]
pub mod client {
    use super::*;

    /// Appends a frame of any `kind` with `flags` and `payload` to `out`, valid or not.
    pub fn raw(out: &mut Vec<u8>, kind: u8, flags: u8, stream: StreamId, payload: &[u8]) {
        write_header(out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
    }

    /// Appends a CONTINUATION carrying `fragment`; `end` sets END_HEADERS.
    pub fn continuation(out: &mut Vec<u8>, stream: StreamId, fragment: &[u8], end: bool) {
        raw(
            out,
            CONTINUATION,
            if end { END_HEADERS } else { 0 },
            stream,
            fragment,
        );
    }

    /// Appends a HEADERS frame with `fragment` and without END_HEADERS, so CONTINUATION frames must
    /// follow; `end_stream` sets END_STREAM.
    pub fn headers_only(out: &mut Vec<u8>, stream: StreamId, fragment: &[u8], end_stream: bool) {
        let flags = if end_stream { END_STREAM } else { 0 };
        raw(out, HEADERS, flags, stream, fragment);
    }

    /// Appends a PRIORITY frame making `stream` depend on `depends_on`, weight 16.
    pub fn priority(out: &mut Vec<u8>, stream: StreamId, depends_on: StreamId) {
        let mut payload = depends_on.to_be_bytes().to_vec();
        payload.push(16);
        raw(out, PRIORITY, 0, stream, &payload);
    }

    /// The DATA frame type.
    pub const KIND_DATA: u8 = DATA;
    /// The HEADERS frame type.
    pub const KIND_HEADERS: u8 = HEADERS;
    /// The PUSH_PROMISE frame type, which a client may not send.
    pub const KIND_PUSH_PROMISE: u8 = PUSH_PROMISE;
    /// The SETTINGS frame type.
    pub const KIND_SETTINGS: u8 = SETTINGS;
    /// The PING frame type.
    pub const KIND_PING: u8 = PING;
    /// The WINDOW_UPDATE frame type.
    pub const KIND_WINDOW_UPDATE: u8 = WINDOW_UPDATE;
    /// The RST_STREAM frame type.
    pub const KIND_RST_STREAM: u8 = RST_STREAM;
    /// The PADDED flag of DATA and HEADERS.
    pub const FLAG_PADDED: u8 = PADDED;
    /// The PRIORITY flag of HEADERS.
    pub const FLAG_PRIORITY: u8 = PRIORITY_FLAG;
    /// The END_HEADERS flag of HEADERS and CONTINUATION.
    pub const FLAG_END_HEADERS: u8 = END_HEADERS;
}
