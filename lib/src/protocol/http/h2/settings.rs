//! SETTINGS parameters (RFC 9113 §6.5): the values a peer sends, validated, and the ones
//! this endpoint advertises.

use super::{
    error::{Cause, ErrorCode, FrameError},
    frame::{DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE, MAX_WINDOW},
};

/// SETTINGS_HEADER_TABLE_SIZE: the largest HPACK dynamic table the sender's decoder keeps.
pub const HEADER_TABLE_SIZE: u16 = 0x1;
/// SETTINGS_ENABLE_PUSH: a client may only send 0 or 1; the proxy never pushes.
pub const ENABLE_PUSH: u16 = 0x2;
/// SETTINGS_MAX_CONCURRENT_STREAMS: the most streams the sender lets the peer open at once.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// SETTINGS_INITIAL_WINDOW_SIZE: the initial flow-control window of new streams, at most 2^31-1.
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE: the largest frame payload the sender accepts, from 2^14 to 2^24-1.
pub const MAX_FRAME_SIZE: u16 = 0x5;
/// SETTINGS_MAX_HEADER_LIST_SIZE: advisory bound of a header list the sender accepts.
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
/// RFC 8441: extended CONNECT. Never advertised, so `:protocol` is refused.
pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The initial flow-control window of a stream and of a connection (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The initial HPACK dynamic table size (RFC 9113 §6.5.2).
pub const DEFAULT_HEADER_TABLE_SIZE: u32 = 4_096;

/// The peer's settings that this endpoint acts on, as last received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    /// The HPACK dynamic table size the peer's decoder allows the proxy's encoder, in bytes.
    pub header_table_size: u32,
    /// The initial send window of the proxy's streams, in bytes.
    pub initial_window_size: u32,
    /// The largest frame payload the proxy may send, in bytes.
    pub max_frame_size: u32,
    /// Advisory: the largest header list the peer accepts; `None` when unlimited.
    pub max_header_list_size: Option<u32>,
    /// The most streams the peer lets the proxy open at once; `None` when unlimited.
    pub max_concurrent_streams: Option<u32>,
}

impl Default for PeerSettings {
    fn default() -> Self {
        Self {
            header_table_size: DEFAULT_HEADER_TABLE_SIZE,
            initial_window_size: DEFAULT_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: None,
            max_concurrent_streams: None,
        }
    }
}

impl PeerSettings {
    /// Applies the pairs of a SETTINGS payload in order (RFC 9113 §6.5.3), after checking
    /// each value. Unknown identifiers are ignored. On error nothing is changed.
    pub fn apply(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        let mut next = *self;
        for pair in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([pair[0], pair[1]]);
            let value = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            match id {
                HEADER_TABLE_SIZE => next.header_table_size = value,
                ENABLE_PUSH | ENABLE_CONNECT_PROTOCOL if value > 1 => {
                    return Err(bad(ErrorCode::ProtocolError));
                }
                INITIAL_WINDOW_SIZE if value > MAX_WINDOW => {
                    return Err(bad(ErrorCode::FlowControlError));
                }
                INITIAL_WINDOW_SIZE => next.initial_window_size = value,
                MAX_FRAME_SIZE
                    if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
                {
                    return Err(bad(ErrorCode::ProtocolError));
                }
                MAX_FRAME_SIZE => next.max_frame_size = value,
                MAX_HEADER_LIST_SIZE => next.max_header_list_size = Some(value),
                MAX_CONCURRENT_STREAMS => next.max_concurrent_streams = Some(value),
                _ => {}
            }
        }
        *self = next;
        Ok(())
    }
}

fn bad(code: ErrorCode) -> FrameError {
    FrameError::Connection(code, Cause::BadSetting)
}
