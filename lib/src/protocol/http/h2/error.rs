//! HTTP/2 error codes (RFC 9113 §7) and the two scopes of an error (§5.4): a connection
//! error ends the connection with GOAWAY, a stream error resets one stream with RST_STREAM.

use super::StreamId;

/// An error code of RST_STREAM and GOAWAY frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NoError,
    ProtocolError,
    InternalError,
    FlowControlError,
    SettingsTimeout,
    StreamClosed,
    FrameSizeError,
    RefusedStream,
    Cancel,
    CompressionError,
    ConnectError,
    EnhanceYourCalm,
    InadequateSecurity,
    Http11Required,
    /// A code this endpoint does not know, which RFC 9113 §7 says to read as INTERNAL_ERROR
    /// but which is kept for logs.
    Unknown(u32),
}

impl ErrorCode {
    pub fn from_u32(code: u32) -> Self {
        match code {
            0x0 => Self::NoError,
            0x1 => Self::ProtocolError,
            0x2 => Self::InternalError,
            0x3 => Self::FlowControlError,
            0x4 => Self::SettingsTimeout,
            0x5 => Self::StreamClosed,
            0x6 => Self::FrameSizeError,
            0x7 => Self::RefusedStream,
            0x8 => Self::Cancel,
            0x9 => Self::CompressionError,
            0xa => Self::ConnectError,
            0xb => Self::EnhanceYourCalm,
            0xc => Self::InadequateSecurity,
            0xd => Self::Http11Required,
            other => Self::Unknown(other),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            Self::NoError => 0x0,
            Self::ProtocolError => 0x1,
            Self::InternalError => 0x2,
            Self::FlowControlError => 0x3,
            Self::SettingsTimeout => 0x4,
            Self::StreamClosed => 0x5,
            Self::FrameSizeError => 0x6,
            Self::RefusedStream => 0x7,
            Self::Cancel => 0x8,
            Self::CompressionError => 0x9,
            Self::ConnectError => 0xa,
            Self::EnhanceYourCalm => 0xb,
            Self::InadequateSecurity => 0xc,
            Self::Http11Required => 0xd,
            Self::Unknown(other) => other,
        }
    }
}

/// What went wrong, named so that logs and metrics can tell the causes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    #[error("the client did not start with the connection preface")]
    BadPreface,
    #[error("the first frame was not SETTINGS")]
    FirstFrameNotSettings,
    #[error("frame larger than the advertised maximum frame size")]
    FrameTooLarge,
    #[error("frame length invalid for its type")]
    BadFrameLength,
    #[error("frame on stream 0 that needs a stream, or the reverse")]
    BadStreamId,
    #[error("padding longer than the frame")]
    BadPadding,
    #[error("stream depends on itself")]
    SelfDependency,
    #[error("invalid SETTINGS value")]
    BadSetting,
    #[error("PUSH_PROMISE sent by a client")]
    PushPromise,
    #[error("WINDOW_UPDATE with a zero increment")]
    ZeroWindowIncrement,
    #[error("flow-control window above 2^31-1")]
    WindowOverflow,
    #[error("more data than the flow-control window allows")]
    WindowExceeded,
    #[error("frame other than CONTINUATION inside a header block")]
    ExpectedContinuation,
    #[error("CONTINUATION outside a header block")]
    UnexpectedContinuation,
    #[error("stream id not allowed for a new stream")]
    BadNewStreamId,
    #[error("frame on an idle stream")]
    IdleStream,
    #[error("frame on a closed stream")]
    ClosedStream,
    #[error("header block that cannot be decoded")]
    Compression,
    #[error("malformed request")]
    Malformed,
    #[error("trailers without END_STREAM")]
    TrailersWithoutEndStream,
    #[error("body length differs from content-length")]
    ContentLengthMismatch,
    #[error("header list larger than the limit")]
    HeaderListTooLarge,
    #[error("more header fields than the limit")]
    TooManyHeaderFields,
    #[error("more concurrent streams than advertised")]
    TooManyStreams,
    #[error("too many RST_STREAM frames in a window (rapid reset)")]
    RstStreamFlood,
    #[error("too many RST_STREAM frames over the connection")]
    RstStreamLifetime,
    #[error("too many streams reset before their response started (rapid reset)")]
    AbusiveRstStream,
    #[error("too many streams reset by the proxy for the client's errors (MadeYouReset)")]
    EmittedRstStream,
    #[error("too many PING frames in a window")]
    PingFlood,
    #[error("too many SETTINGS frames in a window")]
    SettingsFlood,
    #[error("too many empty DATA frames in a window")]
    EmptyDataFlood,
    #[error("too many connection WINDOW_UPDATE frames in a window")]
    WindowUpdateFlood,
    #[error("too many CONTINUATION frames in a header block")]
    ContinuationFlood,
    #[error("header block larger than the header list limit")]
    HeaderBlockTooLarge,
    #[error("too many protocol glitches")]
    Glitches,
    #[error("stream idle longer than the stream idle timeout")]
    StreamIdle,
    #[error("flow-control window kept closed longer than the stream idle timeout")]
    ZeroWindowStall,
    #[error("graceful shutdown deadline passed with streams still open")]
    ShutdownDeadline,
}

impl Cause {
    /// The metric counting this cause: `h2.` then the cause in snake case.
    pub fn metric(self) -> &'static str {
        match self {
            Self::BadPreface => "h2.bad_preface",
            Self::FirstFrameNotSettings => "h2.first_frame_not_settings",
            Self::FrameTooLarge => "h2.frame_too_large",
            Self::BadFrameLength => "h2.bad_frame_length",
            Self::BadStreamId => "h2.bad_stream_id",
            Self::BadPadding => "h2.bad_padding",
            Self::SelfDependency => "h2.self_dependency",
            Self::BadSetting => "h2.bad_setting",
            Self::PushPromise => "h2.push_promise",
            Self::ZeroWindowIncrement => "h2.zero_window_increment",
            Self::WindowOverflow => "h2.window_overflow",
            Self::WindowExceeded => "h2.window_exceeded",
            Self::ExpectedContinuation => "h2.expected_continuation",
            Self::UnexpectedContinuation => "h2.unexpected_continuation",
            Self::BadNewStreamId => "h2.bad_new_stream_id",
            Self::IdleStream => "h2.idle_stream",
            Self::ClosedStream => "h2.closed_stream",
            Self::Compression => "h2.compression",
            Self::Malformed => "h2.malformed",
            Self::TrailersWithoutEndStream => "h2.trailers_without_end_stream",
            Self::ContentLengthMismatch => "h2.content_length_mismatch",
            Self::HeaderListTooLarge => "h2.header_list_too_large",
            Self::TooManyHeaderFields => "h2.too_many_header_fields",
            Self::TooManyStreams => "h2.too_many_streams",
            Self::RstStreamFlood => "h2.flood.rst_stream",
            Self::RstStreamLifetime => "h2.flood.rst_stream_lifetime",
            Self::AbusiveRstStream => "h2.flood.rst_stream_abusive",
            Self::EmittedRstStream => "h2.flood.rst_stream_emitted",
            Self::PingFlood => "h2.flood.ping",
            Self::SettingsFlood => "h2.flood.settings",
            Self::EmptyDataFlood => "h2.flood.empty_data",
            Self::WindowUpdateFlood => "h2.flood.window_update",
            Self::ContinuationFlood => "h2.flood.continuation",
            Self::HeaderBlockTooLarge => "h2.flood.header_block",
            Self::Glitches => "h2.flood.glitches",
            Self::StreamIdle => "h2.stream_idle",
            Self::ZeroWindowStall => "h2.zero_window_stall",
            Self::ShutdownDeadline => "h2.shutdown_deadline",
        }
    }
}

/// An error that ends the connection: a GOAWAY with `code` was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 connection error {code:?}")]
pub struct ConnectionError {
    pub code: ErrorCode,
    #[source]
    pub cause: Cause,
}

/// An error found while reading a frame, before it is known what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    Connection(ErrorCode, Cause),
    Stream(StreamId, ErrorCode, Cause),
}
