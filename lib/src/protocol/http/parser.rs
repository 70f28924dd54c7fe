//! Strict, zero-copy parsing of HTTP/1.1 message heads (RFC 9112, RFC 9110) and the
//! framing of their bodies.
//!
//! Input is the session's read buffer as a byte slice; output is positions ([`Span`]s)
//! into that buffer, never copies. [`parse_request_head`] and [`parse_response_head`]
//! scan a head once, left to right, and record on the way what the proxy needs to route,
//! edit and frame the message: the authority, the body framing, persistence, upgrades and
//! a [`HeaderKind`] per field line. Field lines go to a caller-owned `Vec<Header>` that is
//! cleared on each call, so a session that keeps its vector across requests does not
//! allocate in the steady state. [`ChunkedBody`] and [`ContentLengthBody`] then find
//! where a body ends, incrementally, without copying it.
//!
//! The head parsers are stateless: `Parsed::Partial` means "need more bytes", never an
//! error, and the caller calls again from the start with the longer buffer. A head can
//! only complete when a line does, so a caller may skip the call when the newly read
//! bytes hold no LF.
//!
//! Strictness, chosen so that the proxy and a backend can never disagree on where a
//! message ends (request smuggling):
//! - lines end with CRLF; a bare LF or a bare CR anywhere in a head is invalid;
//! - up to [`MAX_LEADING_EMPTY_LINES`] empty lines before a request line are skipped
//!   (RFC 9112 §2.2), more are invalid;
//! - the request line is `method SP request-target SP HTTP-version CRLF` with single
//!   spaces; the method is a token; the target is visible ASCII without `#`, in one of
//!   the four forms of RFC 9112 §3.2 (absolute-form only for `http` and `https`, without
//!   userinfo; authority-form only with CONNECT, port required; asterisk-form only with
//!   OPTIONS);
//! - HTTP/1.0 and HTTP/1.1 are accepted, and a higher minor version of HTTP/1 is read as
//!   HTTP/1.1 (RFC 9110 §2.5); another well-formed version is a 505;
//! - field names are tokens directly followed by `:`; values hold no control character
//!   but HTAB; obs-fold and whitespace before the first field line are invalid;
//! - HTTP/1.1 requests need exactly one Host, and any Host must be a valid
//!   `uri-host[:port]` with a non-empty host and a port of at most 65535; the
//!   absolute-form authority, when present, is the one used for routing (RFC 9112 §3.2.2);
//! - Content-Length is a comma list of plain decimal numbers (OWS allowed around
//!   each): identical values, repeated or listed, collapse into one (RFC 9110 §8.6),
//!   differing ones and empty elements are invalid;
//! - Transfer-Encoding is a comma list of bare tokens (no parameters, no empty
//!   elements) where `chunked` may appear once; in a request it must come last and the
//!   request must be HTTP/1.1 (RFC 9112 §6.1, §6.3);
//! - a message with both Content-Length and Transfer-Encoding is refused, request or
//!   response, rather than trusting one of them;
//! - the status line is `HTTP-version SP 3DIGIT SP reason CRLF`, status 100 to 599; the
//!   SP before an empty reason may be missing.

#![forbid(unsafe_code)]

mod body;
mod fields;
mod start_line;
mod target;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use body::{BodyProgress, ChunkedBody, ChunkedError, ContentLengthBody, MAX_CHUNK_LINE};

/// How many empty lines may precede a request line (RFC 9112 §2.2 asks to ignore at
/// least one; some clients send a CRLF after a POST body).
pub const MAX_LEADING_EMPTY_LINES: usize = 8;

/// A range of bytes in the buffer that was parsed.
///
/// Invariant: `start <= end`, and both are within the parsed buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `buf`, the buffer it was parsed from (empty if `buf` is
    /// too short, which only happens with another buffer).
    pub fn slice(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }

    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
}

/// Bounds on a head, each refused with its own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CRLF excluded; longer gets a 414.
    pub max_request_line: usize,
    /// Longest head from the first byte of the buffer to the final empty line included
    /// (at most the buffer size); longer gets a 431. Also bounds chunked trailers.
    pub max_header_section: usize,
    /// Most field lines in a head; more gets a 431. Also bounds chunked trailers.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_header_section: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// The outcome of parsing a buffer that may not hold the whole head yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The bytes so far are a valid beginning; read more and parse again.
    Partial,
    Complete(T),
}

/// A request method. Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// Any other token, to be read from [`RequestHead::method_span`].
    Other,
}

impl Method {
    fn from_token(token: &[u8]) -> Self {
        match token {
            b"GET" => Self::Get,
            b"HEAD" => Self::Head,
            b"POST" => Self::Post,
            b"PUT" => Self::Put,
            b"DELETE" => Self::Delete,
            b"CONNECT" => Self::Connect,
            b"OPTIONS" => Self::Options,
            b"TRACE" => Self::Trace,
            b"PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }
}

/// The form of a request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`.
    Absolute,
    /// `host:port`, with CONNECT.
    Authority,
    /// `*`, with OPTIONS.
    Asterisk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

impl Version {
    /// The version as written on the wire.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Http10 => b"HTTP/1.0",
            Self::Http11 => b"HTTP/1.1",
        }
    }
}

/// A validated `uri-host[:port]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authority {
    /// The whole `host[:port]`.
    pub span: Span,
    /// The host alone, brackets included for an IPv6 literal.
    pub host: Span,
    pub port: Option<u16>,
}

/// Where the body of a message ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the message ends with its head.
    None,
    ContentLength(u64),
    Chunked,
    /// A response body that ends when the backend closes the connection.
    UntilClose,
}

/// Whether the connection may carry another message after this one (RFC 9112 §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Persistence {
    #[default]
    KeepAlive,
    Close,
}

/// The field names the proxy acts on, recognised during the scan, case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Upgrade,
    Expect,
    Cookie,
    Authorization,
    Forwarded,
    XForwardedFor,
    XForwardedProto,
    XForwardedPort,
    XForwardedHost,
    XRealIp,
    /// The request-id field whose name was given to [`parse_request_head`].
    RequestId,
    Other,
}

/// One field line of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    /// The value without its leading and trailing whitespace.
    pub value: Span,
    /// The end of the line, after its CRLF: `name.start..line_end` is the whole line.
    pub line_end: usize,
    pub kind: HeaderKind,
    /// Named by a Connection option, so hop-by-hop (RFC 9110 §7.6.1). Never set on Host,
    /// Content-Length, Transfer-Encoding or Connection: the proxy keeps those whatever a
    /// client lists.
    pub is_connection_option: bool,
}

impl Header {
    /// The whole field line, CRLF included.
    pub fn line(&self) -> Span {
        Span {
            start: self.name.start,
            end: self.line_end,
        }
    }
}

/// What the proxy needs from a request head. Positions are into the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Where the request line starts, after skipped empty lines.
    pub start: usize,
    pub method: Method,
    pub method_span: Span,
    pub target: Span,
    pub target_form: TargetForm,
    /// Path and query: the whole origin-form target; what follows the authority of an
    /// absolute-form one, which may be empty or start with `?` (an implied `/` comes
    /// first); `*` for asterisk-form; empty for authority-form.
    pub path: Span,
    pub version: Version,
    /// The authority to route by: the target's for absolute-form and authority-form
    /// (RFC 9112 §3.2.2), the Host field's otherwise; `None` for HTTP/1.0 without Host.
    pub authority: Option<Authority>,
    /// Length of the head from the start of the buffer, final CRLF included: the body
    /// starts at this offset.
    pub head_len: usize,
    pub body: BodyFraming,
    pub persistence: Persistence,
    /// The value of the first Upgrade field, ignored (`None`) in HTTP/1.0 (RFC 9110 §7.8).
    pub upgrade: Option<Span>,
    /// Connection lists `upgrade`.
    pub is_connection_upgrade: bool,
    /// Connection lists options other than close, keep-alive and upgrade; the fields
    /// they name carry [`Header::is_connection_option`].
    pub has_connection_options: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request (ignored in HTTP/1.0, RFC 9110 §10.1.1).
    pub expects_continue: bool,
}

/// What the proxy needs from a response head. Positions are into the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    /// From 100 to 599.
    pub status: u16,
    pub reason: Span,
    /// Length of the head from the start of the buffer, final CRLF included.
    pub head_len: usize,
    pub body: BodyFraming,
    pub persistence: Persistence,
    /// The value of the first Upgrade field (meaningful with status 101).
    pub upgrade: Option<Span>,
    pub is_connection_upgrade: bool,
    pub has_connection_options: bool,
}

/// Who sent the bytes that failed to parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The client: answer with [`ParseError::status`] and close.
    Frontend,
    /// The backend: answer 502 and close the backend connection.
    Backend,
}

/// A head that cannot be parsed, and which side sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid request head")]
    Request(#[source] Violation),
    #[error("invalid response head")]
    Response(#[source] Violation),
}

impl ParseError {
    pub fn violation(self) -> Violation {
        match self {
            Self::Request(violation) | Self::Response(violation) => violation,
        }
    }

    pub fn blame(self) -> Blame {
        match self {
            Self::Request(_) => Blame::Frontend,
            Self::Response(_) => Blame::Backend,
        }
    }

    /// The status to answer the client with.
    pub fn status(self) -> u16 {
        match self {
            Self::Request(violation) => violation.request_status(),
            Self::Response(_) => 502,
        }
    }
}

/// The rule a head broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("request line longer than the limit")]
    RequestLineTooLong,
    #[error("header section larger than the limit")]
    HeaderSectionTooLarge,
    #[error("more field lines than the limit")]
    TooManyHeaders,
    #[error("too many empty lines before the request line")]
    TooManyEmptyLines,
    #[error("line ending in a bare LF")]
    BareLf,
    #[error("CR not followed by LF")]
    BareCr,
    #[error("invalid method")]
    InvalidMethod,
    #[error("invalid request target")]
    InvalidTarget,
    #[error("invalid HTTP version")]
    InvalidVersion,
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("invalid status line")]
    InvalidStatusLine,
    #[error("line folding or whitespace at the start of a field line")]
    ObsFold,
    #[error("whitespace between a field name and its colon")]
    WhitespaceBeforeColon,
    #[error("invalid field name")]
    InvalidFieldName,
    #[error("control character in a field value")]
    InvalidFieldValue,
    #[error("no Host field in an HTTP/1.1 request")]
    MissingHost,
    #[error("more than one Host field")]
    DuplicateHost,
    #[error("invalid Host field")]
    InvalidHost,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("differing Content-Length values")]
    ConflictingContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    #[error("chunked applied more than once")]
    ChunkedTwice,
    #[error("Transfer-Encoding of a request not ending with chunked")]
    TransferEncodingNotChunked,
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    #[error("invalid Connection option")]
    InvalidConnection,
}

impl Violation {
    /// The status a server answers to a request that breaks this rule.
    pub fn request_status(self) -> u16 {
        match self {
            Self::RequestLineTooLong => 414,
            Self::HeaderSectionTooLarge | Self::TooManyHeaders => 431,
            Self::UnsupportedVersion => 505,
            _ => 400,
        }
    }
}

/// Why a parse step stopped: kept apart so that "need more bytes" never becomes an
/// error on the way out.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Partial,
    Invalid(Violation),
}

impl From<Violation> for Stop {
    fn from(violation: Violation) -> Self {
        Self::Invalid(violation)
    }
}

/// Parses the head of a request at the start of `buf`.
///
/// `request_id_header` is the name of the field the proxy uses for request ids, marked
/// [`HeaderKind::RequestId`] (empty for none). `headers` is cleared, then receives the
/// field lines in order; its content is unspecified unless the result is `Complete`.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
    request_id_header: &[u8],
    headers: &mut Vec<Header>,
) -> Result<Parsed<RequestHead>, ParseError> {
    headers.clear();
    match request_head(buf, limits, request_id_header, headers) {
        Ok(head) => Ok(Parsed::Complete(head)),
        Err(Stop::Partial) => Ok(Parsed::Partial),
        Err(Stop::Invalid(violation)) => Err(ParseError::Request(violation)),
    }
}

/// Parses the head of a response at the start of `buf`, answering a request made with
/// `request_method` (HEAD and CONNECT change the framing, RFC 9112 §6.3).
///
/// `headers` is cleared, then receives the field lines in order; its content is
/// unspecified unless the result is `Complete`. A 1xx head is complete on its own: the
/// final response follows it at `head_len`.
pub fn parse_response_head(
    buf: &[u8],
    limits: &Limits,
    request_method: Method,
    headers: &mut Vec<Header>,
) -> Result<Parsed<ResponseHead>, ParseError> {
    headers.clear();
    match response_head(buf, limits, request_method, headers) {
        Ok(head) => Ok(Parsed::Complete(head)),
        Err(Stop::Partial) => Ok(Parsed::Partial),
        Err(Stop::Invalid(violation)) => Err(ParseError::Response(violation)),
    }
}

fn request_head(
    buf: &[u8],
    limits: &Limits,
    request_id_header: &[u8],
    headers: &mut Vec<Header>,
) -> Result<RequestHead, Stop> {
    let start = start_line::skip_empty_lines(buf)?;
    let line = start_line::request_line(buf, start, limits)?;
    let target = target::classify(buf, line.target, line.method)?;
    let mut fields = fields::Fields::new(fields::Message::Request);
    let head_len = fields::scan(
        buf,
        line.end,
        limits,
        request_id_header,
        &mut fields,
        headers,
    )?;
    if fields.has_connection_options {
        fields::mark_connection_options(buf, headers);
    }
    let body = fields.request_framing(line.version)?;
    let host = match (line.version, fields.host) {
        (Version::Http11, None) => return Err(Violation::MissingHost.into()),
        (_, host) => host,
    };
    let is_http11 = line.version == Version::Http11;
    Ok(RequestHead {
        start,
        method: line.method,
        method_span: line.method_span,
        target: line.target,
        target_form: target.form,
        path: target.path,
        version: line.version,
        authority: target.authority.or(host),
        head_len,
        body,
        persistence: fields.persistence(line.version),
        upgrade: fields.upgrade.filter(|_| is_http11),
        is_connection_upgrade: fields.is_connection_upgrade,
        has_connection_options: fields.has_connection_options,
        expects_continue: fields.expects_continue && is_http11,
    })
}

fn response_head(
    buf: &[u8],
    limits: &Limits,
    request_method: Method,
    headers: &mut Vec<Header>,
) -> Result<ResponseHead, Stop> {
    let line = start_line::status_line(buf, limits)?;
    let mut fields = fields::Fields::new(fields::Message::Response);
    let head_len = fields::scan(buf, line.end, limits, b"", &mut fields, headers)?;
    if fields.has_connection_options {
        fields::mark_connection_options(buf, headers);
    }
    let body = fields.response_framing(line.version, line.status, request_method)?;
    let persistence = match body {
        BodyFraming::UntilClose => Persistence::Close,
        _ => fields.persistence(line.version),
    };
    Ok(ResponseHead {
        version: line.version,
        status: line.status,
        reason: line.reason,
        head_len,
        body,
        persistence,
        upgrade: fields.upgrade,
        is_connection_upgrade: fields.is_connection_upgrade,
        has_connection_options: fields.has_connection_options,
    })
}

/// "Need more bytes", unless the buffer is already past the header section limit.
fn partial(buf: &[u8], limits: &Limits) -> Stop {
    if buf.len() > limits.max_header_section {
        Stop::Invalid(Violation::HeaderSectionTooLarge)
    } else {
        Stop::Partial
    }
}

/// A 256-entry membership table for byte classes.
type ByteClass = [bool; 256];

const fn with_range(mut table: ByteClass, first: u8, last: u8) -> ByteClass {
    let mut byte = first as usize;
    while byte <= last as usize {
        table[byte] = true;
        byte += 1;
    }
    table
}

const ALPHANUMERIC: ByteClass = with_range(
    with_range(with_range([false; 256], b'0', b'9'), b'a', b'z'),
    b'A',
    b'Z',
);

const fn union(mut table: ByteClass, members: &[u8]) -> ByteClass {
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

/// `tchar` (RFC 9110 §5.6.2).
const TCHAR: ByteClass = union(ALPHANUMERIC, b"!#$%&'*+-.^_`|~");

/// Bytes allowed in a request-target: visible ASCII but `#` (a fragment is never sent,
/// and backends disagree on what follows it).
const TARGET: ByteClass = {
    let mut table = with_range([false; 256], 0x21, 0x7e);
    table[b'#' as usize] = false;
    table
};

/// HTAB, SP, VCHAR and obs-text: the bytes of a field value (RFC 9110 §5.5) and of a
/// reason-phrase (RFC 9112 §4).
const TEXT: ByteClass = with_range(
    with_range(union([false; 256], b"\t"), 0x20, 0x7e),
    0x80,
    0xff,
);

pub(crate) fn is_tchar(byte: u8) -> bool {
    TCHAR[usize::from(byte)]
}

fn is_target_byte(byte: u8) -> bool {
    TARGET[usize::from(byte)]
}

pub(crate) fn is_text_byte(byte: u8) -> bool {
    TEXT[usize::from(byte)]
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&byte| is_tchar(byte))
}

/// `bytes` without optional whitespace (SP, HTAB) on either side.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = bytes
        .iter()
        .position(|byte| !is_ows(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_ows(byte))
        .map_or(start, |last| last + 1);
    bytes.get(start..end).unwrap_or_default()
}
