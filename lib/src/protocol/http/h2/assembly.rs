//! Putting a header block together from its HEADERS frame and the CONTINUATION frames that
//! follow it (RFC 9113 §6.10), under the CONTINUATION flood defence: the same for the blocks
//! of clients ([`Connection`](super::Connection)) and of backends
//! ([`Link`](super::backend::Link)). What a complete block means is theirs to decide.

use sozu_command_lib::request::H2Config;

use super::{
    StreamId,
    error::{Cause, ErrorCode, FrameError},
    frame::Frame,
};

/// The frame facts of a header block; its bytes are [`HeaderAssembly::block`].
#[derive(Clone, Copy, Debug)]
pub struct HeaderBlock {
    /// The stream the block belongs to.
    pub stream: StreamId,
    /// The HEADERS frame ended its stream.
    pub end_stream: bool,
    /// The HEADERS frame made its stream depend on itself (a stream error once decoded).
    pub is_self_dependent: bool,
    /// CONTINUATION frames received so far.
    continuations: u32,
}

/// The header block being received.
///
/// Invariant: while `pending` is set, `block` holds the fragments of its frames so far,
/// and no frame but its stream's CONTINUATION may come.
#[derive(Debug, Default)]
pub struct HeaderAssembly {
    /// The fragments of the block, kept (and their allocation) until the next HEADERS.
    pub block: Vec<u8>,
    pending: Option<HeaderBlock>,
}

impl HeaderAssembly {
    /// Refuses any frame but the CONTINUATION of the incomplete block, if there is one.
    pub fn check_next(&self, frame: &Frame<'_>) -> Result<(), FrameError> {
        match self.pending {
            Some(pending) if !matches!(frame, Frame::Continuation { stream, .. } if *stream == pending.stream) => {
                Err(FrameError::Connection(
                    ErrorCode::ProtocolError,
                    Cause::ExpectedContinuation,
                ))
            }
            _ => Ok(()),
        }
    }

    /// A HEADERS frame starts a block: its facts once `end_headers` completes it (its bytes
    /// in [`HeaderAssembly::block`]), `None` while CONTINUATION frames must follow.
    pub fn headers(
        &mut self,
        (stream, end_stream, is_self_dependent): (StreamId, bool, bool),
        fragment: &[u8],
        end_headers: bool,
        limits: &H2Config,
    ) -> Result<Option<HeaderBlock>, FrameError> {
        self.block.clear();
        let block = HeaderBlock {
            stream,
            end_stream,
            is_self_dependent,
            continuations: 0,
        };
        self.append(block, fragment, end_headers, limits)
    }

    /// A CONTINUATION frame of the incomplete block: the block's facts once `end_headers`
    /// completes it. One with no block to continue, one past `max_continuation_frames`,
    /// and a block larger than the header list limit end the connection (a block refused
    /// before it is decoded leaves the HPACK state unknown).
    pub fn continuation(
        &mut self,
        stream: StreamId,
        fragment: &[u8],
        end_headers: bool,
        limits: &H2Config,
    ) -> Result<Option<HeaderBlock>, FrameError> {
        let Some(mut block) = self.pending.take().filter(|p| p.stream == stream) else {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                Cause::UnexpectedContinuation,
            ));
        };
        block.continuations = block.continuations.saturating_add(1);
        if block.continuations > limits.max_continuation_frames {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                Cause::ContinuationFlood,
            ));
        }
        self.append(block, fragment, end_headers, limits)
    }

    /// Forgets the incomplete block (the connection ended).
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    fn append(
        &mut self,
        block: HeaderBlock,
        fragment: &[u8],
        end_headers: bool,
        limits: &H2Config,
    ) -> Result<Option<HeaderBlock>, FrameError> {
        self.block.extend_from_slice(fragment);
        if self.block.len() > limits.max_header_list_size as usize {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                Cause::HeaderBlockTooLarge,
            ));
        }
        if end_headers {
            return Ok(Some(block));
        }
        self.pending = Some(block);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_continuation_frames: u32, max_header_list_size: u32) -> H2Config {
        H2Config {
            max_continuation_frames,
            max_header_list_size,
            ..H2Config::default()
        }
    }

    fn continuation(stream: StreamId) -> Frame<'static> {
        Frame::Continuation {
            stream,
            fragment: b"",
            end_headers: false,
        }
    }

    #[test]
    fn fragments_join_into_one_block_with_the_headers_facts() {
        let limits = limits(4, 1024);
        let mut assembly = HeaderAssembly::default();
        assert!(matches!(
            assembly.headers((3, true, false), b"ab", false, &limits),
            Ok(None)
        ));
        assert!(assembly.check_next(&continuation(3)).is_ok());
        assert!(matches!(
            assembly.check_next(&continuation(5)),
            Err(FrameError::Connection(_, Cause::ExpectedContinuation))
        ));
        assert!(matches!(
            assembly.continuation(3, b"cd", false, &limits),
            Ok(None)
        ));
        let block = assembly.continuation(3, b"ef", true, &limits);
        assert!(matches!(
            block,
            Ok(Some(HeaderBlock {
                stream: 3,
                end_stream: true,
                is_self_dependent: false,
                ..
            }))
        ));
        assert_eq!(assembly.block, b"abcdef");
        assert!(assembly.check_next(&continuation(5)).is_ok(), "complete");
        assert!(matches!(
            assembly.continuation(3, b"", true, &limits),
            Err(FrameError::Connection(_, Cause::UnexpectedContinuation))
        ));
    }

    #[test]
    fn too_many_continuations_or_bytes_end_the_connection() {
        let limits = limits(1, 4);
        let mut assembly = HeaderAssembly::default();
        assert!(matches!(
            assembly.headers((1, false, false), b"a", false, &limits),
            Ok(None)
        ));
        assert!(matches!(
            assembly.continuation(1, b"b", false, &limits),
            Ok(None)
        ));
        assert!(matches!(
            assembly.continuation(1, b"c", true, &limits),
            Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                Cause::ContinuationFlood
            ))
        ));
        assert!(matches!(
            assembly.headers((3, false, false), b"abcde", true, &limits),
            Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                Cause::HeaderBlockTooLarge
            ))
        ));
    }
}
