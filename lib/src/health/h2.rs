//! The health probe of a cluster with `http2 = true`, whose backends speak HTTP/2 in cleartext
//! with prior knowledge (RFC 9113 §3.3) and may speak nothing else: the probe opens one
//! stream, `GET` of the check's `uri`, and reads the `:status` of its response.
//!
//! What goes out: the connection preface, the probe's SETTINGS (no push, its header list
//! limit), and one HEADERS frame ending the stream; then a SETTINGS acknowledgement for the
//! backend's SETTINGS, a PING answer for its PINGs, and a GOAWAY once the status is known. The
//! frames are read and written by [`frame`], the header blocks encoded and decoded by
//! [`headers`], as for any HTTP/2 peer of the proxy; the probe adds only what one stream
//! needs. Everything the backend sends is bounded: one frame at a time of at most the default
//! maximum frame size, a header block of at most [`MAX_BLOCK`] bytes in at most
//! [`MAX_CONTINUATIONS`] CONTINUATION frames, at most [`MAX_FRAMES`] frames in all; anything
//! else is a failed check, never a panic.

use crate::protocol::http::h2::{
    ErrorCode, StreamId,
    error::FrameError,
    frame::{self, DEFAULT_MAX_FRAME_SIZE, Decoded, Frame, PREFACE},
    headers::{self, BlockError, HeaderEncoder, ListLimits, NeverIndexed, Scratch},
    hpack::Decoder,
    settings,
};

/// The probe's one stream.
const STREAM: StreamId = 1;

/// The longest response header block taken, HEADERS and CONTINUATION fragments together.
const MAX_BLOCK: usize = 16 * 1024;

/// The most CONTINUATION frames one header block may have.
const MAX_CONTINUATIONS: u32 = 64;

/// The most frames read before the status: past this, the backend floods the probe.
const MAX_FRAMES: u32 = 1_000;

/// The bound of the decoded response header list (advertised in the probe's SETTINGS).
const LIMITS: ListLimits = ListLimits {
    max_size: MAX_BLOCK as u32,
    max_fields: 128,
};

/// Writes what opens the probe's stream: the preface, the probe's SETTINGS and the HEADERS of
/// `GET uri` on `authority`.
pub fn request(uri: &str, authority: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(PREFACE);
    frame::write_settings(
        out,
        &[
            (settings::ENABLE_PUSH, 0),
            (settings::MAX_HEADER_LIST_SIZE, LIMITS.max_size),
        ],
    );
    let mut block = Vec::with_capacity(64 + uri.len() + authority.len());
    HeaderEncoder::default().fields(
        [
            (&b":method"[..], &b"GET"[..]),
            (b":scheme", b"http"),
            (b":authority", authority.as_bytes()),
            (b":path", uri.as_bytes()),
            (b"user-agent", b"sozu-health-check"),
        ],
        NeverIndexed::none(),
        &mut block,
    );
    frame::write_headers(out, STREAM, &block, true, DEFAULT_MAX_FRAME_SIZE);
}

/// Writes the GOAWAY that ends the probe's connection once its answer is known.
pub fn goodbye(out: &mut Vec<u8>) {
    frame::write_goaway(out, 0, ErrorCode::NoError);
}

/// The reading side of an HTTP/2 probe: frames received so far, until the final status of
/// the probe's stream.
pub struct Reply {
    decoder: Decoder,
    scratch: Scratch,
    /// Bytes received, not yet a whole frame (at most one frame and one read).
    input: Vec<u8>,
    /// The response header block being gathered.
    block: Vec<u8>,
    /// A header block of the stream is open: only its CONTINUATION frames may come.
    is_in_block: bool,
    continuations: u32,
    frames: u32,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Reply")
            .field("input", &self.input.len())
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Reply {
    /// Nothing received yet; the HPACK table bounded by the default size the probe keeps.
    pub fn new() -> Self {
        Reply {
            decoder: Decoder::default(),
            scratch: Scratch::default(),
            input: Vec::new(),
            block: Vec::new(),
            is_in_block: false,
            continuations: 0,
            frames: 0,
        }
    }

    /// Takes `bytes` the backend sent, and the frames they complete. Returns the final status
    /// of the probe's response once it is known, and appends what the protocol requires in
    /// return to `out` (SETTINGS and PING acknowledgements). An error names what the backend
    /// did wrong: the check fails.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<Option<u16>, String> {
        self.input.extend_from_slice(bytes);
        let mut taken = 0;
        let result = loop {
            let rest = self.input.get(taken..).unwrap_or_default();
            let (frame, len) = match frame::decode(rest, DEFAULT_MAX_FRAME_SIZE) {
                Ok(Decoded::Partial) => break Ok(None),
                Ok(Decoded::Frame { frame, len }) => (frame, len),
                Err(error) => break Err(frame_error(error)),
            };
            taken += len;
            self.frames += 1;
            if self.frames > MAX_FRAMES {
                break Err(format!("more than {MAX_FRAMES} frames before the status"));
            }
            match handle(frame, &mut self.block, &mut self.is_in_block, out) {
                Ok(Handled::Next) => {}
                Ok(Handled::Continued) => {
                    self.continuations += 1;
                    if self.continuations > MAX_CONTINUATIONS {
                        break Err("too many CONTINUATION frames".to_string());
                    }
                }
                Ok(Handled::Block) => match self.status() {
                    Ok(Some(status)) => break Ok(Some(status)),
                    Ok(None) => {}
                    Err(error) => break Err(error),
                },
                Err(error) => break Err(error),
            }
            if self.block.len() > MAX_BLOCK {
                break Err(format!("response header block over {MAX_BLOCK} bytes"));
            }
        };
        self.input.drain(..taken.min(self.input.len()));
        result
    }

    /// Decodes the header block just completed: its status when final; an interim (1xx)
    /// response is skipped, the final one follows on the same stream (RFC 9113 §8.1).
    fn status(&mut self) -> Result<Option<u16>, String> {
        let decoded =
            headers::decode_response(&mut self.decoder, &self.block, &LIMITS, &mut self.scratch);
        self.block.clear();
        self.continuations = 0;
        match decoded {
            Ok((status, _)) if (100..200).contains(&status) => Ok(None),
            Ok((status, _)) => Ok(Some(status)),
            Err(BlockError::Compression) => Err("response header block not decodable".to_string()),
            Err(BlockError::Stream(cause)) => Err(format!("invalid response head: {cause}")),
        }
    }
}

/// What a frame did to the probe's reading.
enum Handled {
    /// Nothing to decode yet.
    Next,
    /// A CONTINUATION frame added to the open header block.
    Continued,
    /// The header block of the stream is whole in `block`.
    Block,
}

/// Handles one frame: gathers the stream's header block in `block`, and answers SETTINGS
/// and PING in `out`.
fn handle(
    frame: Frame<'_>,
    block: &mut Vec<u8>,
    is_in_block: &mut bool,
    out: &mut Vec<u8>,
) -> Result<Handled, String> {
    // RFC 9113 §6.10: nothing but the block's CONTINUATION frames while it is open.
    if *is_in_block && !matches!(frame, Frame::Continuation { stream: STREAM, .. }) {
        return Err("frame other than CONTINUATION inside a header block".to_string());
    }
    match frame {
        Frame::Settings { ack: false, .. } => frame::write_settings_ack(out),
        Frame::Ping { ack: false, data } => frame::write_ping(out, data, true),
        Frame::Headers {
            stream: STREAM,
            fragment,
            end_headers,
            ..
        } => {
            block.extend_from_slice(fragment);
            *is_in_block = !end_headers;
            if end_headers {
                return Ok(Handled::Block);
            }
        }
        Frame::Continuation {
            stream: STREAM,
            fragment,
            end_headers,
        } if *is_in_block => {
            block.extend_from_slice(fragment);
            *is_in_block = !end_headers;
            return Ok(if end_headers {
                Handled::Block
            } else {
                Handled::Continued
            });
        }
        Frame::Continuation { .. } => {
            return Err("CONTINUATION outside a header block".to_string());
        }
        Frame::Headers { stream, .. } => {
            return Err(format!("HEADERS on stream {stream}, not the probe's"));
        }
        Frame::RstStream {
            stream: STREAM,
            code,
        } => return Err(format!("the backend reset the probe's stream ({code:?})")),
        Frame::GoAway { last_stream, code }
            if last_stream < STREAM || code != ErrorCode::NoError =>
        {
            return Err(format!("the backend went away ({code:?})"));
        }
        Frame::Settings { ack: true, .. }
        | Frame::Ping { ack: true, .. }
        | Frame::Data { .. }
        | Frame::Priority { .. }
        | Frame::RstStream { .. }
        | Frame::GoAway { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Unknown => {}
    }
    Ok(Handled::Next)
}

fn frame_error(error: FrameError) -> String {
    match error {
        FrameError::Connection(_, cause) | FrameError::Stream(_, _, cause) => {
            format!("invalid frame: {cause}")
        }
    }
}

#[cfg(test)]
mod tests;
