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
    /// Offset of the first byte.
    pub start: usize,
    /// Offset just past the last byte (exclusive).
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `buf`, the buffer it was parsed from (empty if `buf` is
    /// too short, which only happens with another buffer).
    pub fn slice(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Number of bytes covered (0 for an empty span).
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span covers no byte.
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
    /// The head is whole and valid; `T` tells what it holds.
    Complete(T),
}

/// A request method. Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the response has no body whatever its framing fields say.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`: authority-form target; a 2xx answer turns the connection into a tunnel.
    Connect,
    /// `OPTIONS`, the only method that may use the asterisk-form target.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH`.
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

/// The HTTP/1 minor version of a message, from its request or status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Version {
    /// `HTTP/1.0`: no persistence unless asked for, no Host required, no chunked coding.
    Http10,
    /// `HTTP/1.1`: persistent by default, Host required.
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
    /// The port after the colon; `None` when the authority has none, and the default port of the
    /// scheme applies.
    pub port: Option<u16>,
}

/// Where the body of a message ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the message ends with its head.
    None,
    /// `Content-Length`: exactly this many bytes follow the head.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`: the body ends with its last chunk and trailer section.
    Chunked,
    /// A response body that ends when the backend closes the connection.
    UntilClose,
}

/// Whether the connection may carry another message after this one (RFC 9112 §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Persistence {
    /// The connection may carry another message (the HTTP/1.1 default).
    #[default]
    KeepAlive,
    /// The connection closes after this message (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    Close,
}

/// The field names the proxy acts on, recognised during the scan, case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`, whose options decide persistence, upgrade and hop-by-hop fields.
    Connection,
    /// `Keep-Alive` (hop-by-hop, removed when forwarding).
    KeepAlive,
    /// `Proxy-Connection` (hop-by-hop, removed when forwarding).
    ProxyConnection,
    /// `TE` (hop-by-hop, removed when forwarding).
    Te,
    /// `Upgrade`.
    Upgrade,
    /// `Expect`.
    Expect,
    /// `Cookie`, read for sticky sessions.
    Cookie,
    /// `Authorization`, checked against a frontend's Basic auth credentials.
    Authorization,
    /// `Forwarded` (RFC 7239), rewritten by the proxy.
    Forwarded,
    /// `X-Forwarded-For`, rewritten by the proxy.
    XForwardedFor,
    /// `X-Forwarded-Proto`, rewritten by the proxy.
    XForwardedProto,
    /// `X-Forwarded-Port`, rewritten by the proxy.
    XForwardedPort,
    /// `X-Forwarded-Host`, rewritten by the proxy.
    XForwardedHost,
    /// `X-Real-IP`, rewritten by the proxy.
    XRealIp,
    /// The request-id field whose name was given to [`parse_request_head`].
    RequestId,
    /// Any field the proxy forwards without looking at it.
    Other,
}

/// One field line of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name, as written (case kept).
    pub name: Span,
    /// The value without its leading and trailing whitespace.
    pub value: Span,
    /// The end of the line, after its CRLF: `name.start..line_end` is the whole line.
    pub line_end: usize,
    /// Which field the proxy recognised in the name.
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
    /// The method, recognised from its token.
    pub method: Method,
    /// The method token as written (the name of an [`Method::Other`]).
    pub method_span: Span,
    /// The request-target as written.
    pub target: Span,
    /// Which of the four forms the target has.
    pub target_form: TargetForm,
    /// Path and query: the whole origin-form target; what follows the authority of an
    /// absolute-form one, which may be empty or start with `?` (an implied `/` comes
    /// first); `*` for asterisk-form; empty for authority-form.
    pub path: Span,
    /// The version from the request line.
    pub version: Version,
    /// The authority to route by: the target's for absolute-form and authority-form
    /// (RFC 9112 §3.2.2), the Host field's otherwise; `None` for HTTP/1.0 without Host.
    pub authority: Option<Authority>,
    /// Length of the head from the start of the buffer, final CRLF included: the body
    /// starts at this offset.
    pub head_len: usize,
    /// Where the request body ends (never [`BodyFraming::UntilClose`]).
    pub body: BodyFraming,
    /// Whether the client asks to keep the connection after this request.
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
    /// The version from the status line.
    pub version: Version,
    /// From 100 to 599.
    pub status: u16,
    /// The reason phrase as written (possibly empty).
    pub reason: Span,
    /// Length of the head from the start of the buffer, final CRLF included.
    pub head_len: usize,
    /// Where the response body ends, given the request method and the status.
    pub body: BodyFraming,
    /// Whether the backend keeps the connection after this response.
    pub persistence: Persistence,
    /// The value of the first Upgrade field (meaningful with status 101).
    pub upgrade: Option<Span>,
    /// Connection lists `upgrade`.
    pub is_connection_upgrade: bool,
    /// Connection lists options other than close, keep-alive and upgrade; the fields they name
    /// carry [`Header::is_connection_option`].
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
    /// The client sent a head that breaks this rule.
    #[error("invalid request head")]
    Request(#[source] Violation),
    /// The backend sent a head that breaks this rule.
    #[error("invalid response head")]
    Response(#[source] Violation),
}

impl ParseError {
    /// The rule the head broke, whichever side sent it.
    pub fn violation(self) -> Violation {
        match self {
            Self::Request(violation) | Self::Response(violation) => violation,
        }
    }

    /// The side that sent the invalid head, which decides how the proxy answers.
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
    /// The request line is longer than [`Limits::max_request_line`] (414).
    #[error("request line longer than the limit")]
    RequestLineTooLong,
    /// The head is larger than [`Limits::max_header_section`] (431).
    #[error("header section larger than the limit")]
    HeaderSectionTooLarge,
    /// The head has more field lines than [`Limits::max_headers`] (431).
    #[error("more field lines than the limit")]
    TooManyHeaders,
    /// More than [`MAX_LEADING_EMPTY_LINES`] empty lines precede the request line.
    #[error("too many empty lines before the request line")]
    TooManyEmptyLines,
    /// A line ends with LF alone; the proxy refuses it rather than guess (RFC 9112 §2.2).
    #[error("line ending in a bare LF")]
    BareLf,
    /// A CR is not followed by LF.
    #[error("CR not followed by LF")]
    BareCr,
    /// The method is not a token.
    #[error("invalid method")]
    InvalidMethod,
    /// The request-target is in none of the four forms, or does not fit its method.
    #[error("invalid request target")]
    InvalidTarget,
    /// The version is not `HTTP/` followed by `digit.digit`.
    #[error("invalid HTTP version")]
    InvalidVersion,
    /// A well-formed version other than HTTP/1.x (505 to a client).
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// The status line has no three-digit status from 100 to 599, or is malformed.
    #[error("invalid status line")]
    InvalidStatusLine,
    /// Obsolete line folding, or whitespace before the first field (RFC 9112 §5.2, §2.2).
    #[error("line folding or whitespace at the start of a field line")]
    ObsFold,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1).
    #[error("whitespace between a field name and its colon")]
    WhitespaceBeforeColon,
    /// A field name that is empty or not a token.
    #[error("invalid field name")]
    InvalidFieldName,
    /// A field value holding a control character other than horizontal tab.
    #[error("control character in a field value")]
    InvalidFieldValue,
    /// An HTTP/1.1 request without Host (RFC 9112 §3.2).
    #[error("no Host field in an HTTP/1.1 request")]
    MissingHost,
    /// A request with more than one Host field.
    #[error("more than one Host field")]
    DuplicateHost,
    /// A Host value that is not a valid `uri-host[:port]`: empty host, or port above 65535.
    #[error("invalid Host field")]
    InvalidHost,
    /// A Content-Length that is not a comma list of decimal numbers fitting in 64 bits, or has an
    /// empty element.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several Content-Length values that are not all equal.
    #[error("differing Content-Length values")]
    ConflictingContentLength,
    /// Both framing fields: a request smuggling vector, refused (RFC 9112 §6.3).
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// A Transfer-Encoding list that is not a list of tokens.
    #[error("invalid Transfer-Encoding")]
    InvalidTransferEncoding,
    /// `chunked` listed more than once.
    #[error("chunked applied more than once")]
    ChunkedTwice,
    /// A request whose Transfer-Encoding does not end with `chunked`: its body could not be
    /// delimited.
    #[error("Transfer-Encoding of a request not ending with chunked")]
    TransferEncodingNotChunked,
    /// Transfer-Encoding in an HTTP/1.0 message, which cannot use it.
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// A Connection option that is not a token.
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
