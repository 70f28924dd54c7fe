//! HTTP/2 error codes (RFC 9113 §7) and the two scopes of an error (§5.4): a connection
//! error ends the connection with GOAWAY, a stream error resets one stream with RST_STREAM.

use super::StreamId;

/// An error code of RST_STREAM and GOAWAY frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `NO_ERROR` (0x0): a graceful shutdown, not an error.
    NoError,
    /// `PROTOCOL_ERROR` (0x1): the peer broke the protocol.
    ProtocolError,
    /// `INTERNAL_ERROR` (0x2): the endpoint failed on its own side.
    InternalError,
    /// `FLOW_CONTROL_ERROR` (0x3): the peer broke flow control.
    FlowControlError,
    /// `SETTINGS_TIMEOUT` (0x4): a SETTINGS frame was not acknowledged in time.
    SettingsTimeout,
    /// `STREAM_CLOSED` (0x5): a frame arrived on a half-closed stream.
    StreamClosed,
    /// `FRAME_SIZE_ERROR` (0x6): a frame had an invalid size.
    FrameSizeError,
    /// `REFUSED_STREAM` (0x7): the stream was refused before any processing; it can be retried.
    RefusedStream,
    /// `CANCEL` (0x8): the stream is no longer needed.
    Cancel,
    /// `COMPRESSION_ERROR` (0x9): the HPACK state cannot be kept in step.
    CompressionError,
    /// `CONNECT_ERROR` (0xa): the connection of a CONNECT request failed.
    ConnectError,
    /// `ENHANCE_YOUR_CALM` (0xb): the peer behaves abusively (floods, rapid resets).
    EnhanceYourCalm,
    /// `INADEQUATE_SECURITY` (0xc): the TLS parameters are below what HTTP/2 requires.
    InadequateSecurity,
    /// `HTTP_1_1_REQUIRED` (0xd): the request must be sent over HTTP/1.1.
    Http11Required,
    /// A code this endpoint does not know, which RFC 9113 §7 says to read as INTERNAL_ERROR
    /// but which is kept for logs.
    Unknown(u32),
}

impl ErrorCode {
    /// The code a frame carries, as a variant; unknown codes are kept in [`ErrorCode::Unknown`].
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

    /// The code as written in a frame.
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
    /// The client did not start with the connection preface (RFC 9113 §3.4).
    #[error("the client did not start with the connection preface")]
    BadPreface,
    /// The client's first frame after the preface was not SETTINGS (RFC 9113 §3.4).
    #[error("the first frame was not SETTINGS")]
    FirstFrameNotSettings,
    /// A frame longer than the SETTINGS_MAX_FRAME_SIZE the proxy advertised (RFC 9113 §4.2).
    #[error("frame larger than the advertised maximum frame size")]
    FrameTooLarge,
    /// A frame whose length does not fit its type (a PING that is not 8 bytes…).
    #[error("frame length invalid for its type")]
    BadFrameLength,
    /// A frame on stream 0 that needs a stream, or on a stream one that belongs to the connection.
    #[error("frame on stream 0 that needs a stream, or the reverse")]
    BadStreamId,
    /// A padding length at least as long as the frame's payload (RFC 9113 §6.1).
    #[error("padding longer than the frame")]
    BadPadding,
    /// A priority that makes a stream depend on itself (RFC 9113 §5.3.1).
    #[error("stream depends on itself")]
    SelfDependency,
    /// A SETTINGS value out of its range (RFC 9113 §6.5.2).
    #[error("invalid SETTINGS value")]
    BadSetting,
    /// A PUSH_PROMISE from a client, which may not push (RFC 9113 §8.4).
    #[error("PUSH_PROMISE sent by a client")]
    PushPromise,
    /// A WINDOW_UPDATE with an increment of 0 (RFC 9113 §6.9).
    #[error("WINDOW_UPDATE with a zero increment")]
    ZeroWindowIncrement,
    /// A WINDOW_UPDATE that takes a window above 2^31-1 (RFC 9113 §6.9.1).
    #[error("flow-control window above 2^31-1")]
    WindowOverflow,
    /// DATA beyond the flow-control window the proxy granted.
    #[error("more data than the flow-control window allows")]
    WindowExceeded,
    /// A frame other than CONTINUATION in the middle of a header block (RFC 9113 §6.10).
    #[error("frame other than CONTINUATION inside a header block")]
    ExpectedContinuation,
    /// A CONTINUATION frame with no header block open.
    #[error("CONTINUATION outside a header block")]
    UnexpectedContinuation,
    /// A new stream whose id is even, or not above every id the client used before (RFC 9113
    /// §5.1.1).
    #[error("stream id not allowed for a new stream")]
    BadNewStreamId,
    /// A frame other than HEADERS or PRIORITY on a stream that was never opened.
    #[error("frame on an idle stream")]
    IdleStream,
    /// A frame on a stream that is closed.
    #[error("frame on a closed stream")]
    ClosedStream,
    /// A header block HPACK cannot decode: the decoder's state is lost, so the connection ends.
    #[error("header block that cannot be decoded")]
    Compression,
    /// A request whose fields break RFC 9113 §8.1.1 (pseudo-fields, connection fields, uppercase
    /// names…).
    #[error("malformed request")]
    Malformed,
    /// A trailer section on a HEADERS frame without END_STREAM.
    #[error("trailers without END_STREAM")]
    TrailersWithoutEndStream,
    /// A request body whose length differs from its content-length (RFC 9113 §8.1.1).
    #[error("body length differs from content-length")]
    ContentLengthMismatch,
    /// A decoded header list larger than the proxy's limit.
    #[error("header list larger than the limit")]
    HeaderListTooLarge,
    /// More header fields than the proxy's limit.
    #[error("more header fields than the limit")]
    TooManyHeaderFields,
    /// A new stream beyond the SETTINGS_MAX_CONCURRENT_STREAMS the proxy advertised.
    #[error("more concurrent streams than advertised")]
    TooManyStreams,
    /// Too many RST_STREAM frames from the client within the flood window (rapid reset,
    /// CVE-2023-44487).
    #[error("too many RST_STREAM frames in a window (rapid reset)")]
    RstStreamFlood,
    /// Too many RST_STREAM frames from the client over the connection's lifetime.
    #[error("too many RST_STREAM frames over the connection")]
    RstStreamLifetime,
    /// Too many streams the client reset before their response started (rapid reset).
    #[error("too many streams reset before their response started (rapid reset)")]
    AbusiveRstStream,
    /// Too many streams the proxy had to reset for the client's errors (MadeYouReset).
    #[error("too many streams reset by the proxy for the client's errors (MadeYouReset)")]
    EmittedRstStream,
    /// Too many PING frames within the flood window.
    #[error("too many PING frames in a window")]
    PingFlood,
    /// Too many SETTINGS frames within the flood window.
    #[error("too many SETTINGS frames in a window")]
    SettingsFlood,
    /// Too many DATA frames without payload nor END_STREAM within the flood window.
    #[error("too many empty DATA frames in a window")]
    EmptyDataFlood,
    /// Too many WINDOW_UPDATE frames for the connection within the flood window.
    #[error("too many connection WINDOW_UPDATE frames in a window")]
    WindowUpdateFlood,
    /// Too many CONTINUATION frames in one header block (CONTINUATION flood).
    #[error("too many CONTINUATION frames in a header block")]
    ContinuationFlood,
    /// A header block whose encoded size passes the header list limit before it ends.
    #[error("header block larger than the header list limit")]
    HeaderBlockTooLarge,
    /// The client made more protocol glitches (frames a correct client has no reason to send) than
    /// tolerated.
    #[error("too many protocol glitches")]
    Glitches,
    /// A stream saw no frame for longer than the stream idle timeout.
    #[error("stream idle longer than the stream idle timeout")]
    StreamIdle,
    /// The client kept a stream's flow-control window closed longer than the stream idle timeout.
    #[error("flow-control window kept closed longer than the stream idle timeout")]
    ZeroWindowStall,
    /// A graceful shutdown (GOAWAY sent on a soft stop) reached its deadline with streams still
    /// open.
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
    /// The code the GOAWAY carried.
    pub code: ErrorCode,
    /// What the client did, for logs and metrics.
    #[source]
    pub cause: Cause,
}

/// An error found while reading a frame, before it is known what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A connection error: answer with GOAWAY carrying the code, then close.
    Connection(ErrorCode, Cause),
    /// A stream error: reset the stream with RST_STREAM carrying the code; the connection goes on.
    Stream(StreamId, ErrorCode, Cause),
}
