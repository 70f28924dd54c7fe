//! Header blocks: decoding a request's HPACK block into the HTTP/1.1 head the rest of the
//! proxy reads (RFC 9113 §8.3.1 checks, then the HTTP/1.1 parser's own), and encoding a
//! response head or trailers.
//!
//! A request is written out as an HTTP/1.1 head (`method SP target SP HTTP/1.1`, `host`
//! from `:authority`, the fields, cookies joined into one line as RFC 9113 §8.2.3 asks)
//! and parsed by [`parser::parse_request_head`], so an HTTP/2 request gets the same
//! [`RequestHead`] as an HTTP/1.1 one and exactly the same strictness (Content-Length
//! syntax, Host syntax): no message can mean one thing to the proxy and another to an
//! HTTP/1.1 backend. A request with a body and no content-length gets
//! `transfer-encoding: chunked`, the framing its DATA frames need on HTTP/1.1.
//!
//! The fields a peer marked never indexed (RFC 7541 §6.2.3) are named in a [`NeverIndexed`]
//! beside the HTTP/1.1 head, which has no room for the mark: encoded toward an HTTP/2 peer,
//! fields of those names are never indexed either, as the RFC asks of an intermediary.

use std::ops::Range;

use super::{
    error::Cause,
    hpack::{Decoder, Indexing, encode_integer},
};
use crate::protocol::http::parser::{
    self, Header, HeaderKind, Limits, Parsed, RequestHead, ResponseHead,
};

/// The bound of one header list, from the listener's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListLimits {
    /// The RFC 9113 §6.5.2 size: names and values plus 32 bytes per field.
    pub max_size: u32,
    /// The most fields a header list may have; more is a stream error.
    pub max_fields: u32,
}

/// A decoded request head, written as HTTP/1.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Positions into `bytes`.
    pub head: RequestHead,
    /// The head in HTTP/1.1 form, final empty line included.
    pub bytes: Vec<u8>,
    /// The head's field lines, as the HTTP/1.1 parser found them in `bytes`.
    pub fields: Vec<Header>,
    /// The content-length the client declared, which its DATA frames must add up to.
    pub content_length: Option<u64>,
    /// The fields the client marked never indexed.
    pub never_indexed: NeverIndexed,
}

/// The names of the fields a peer marked never indexed (RFC 7541 §6.2.3) in one header
/// block. The proxy carries a message as HTTP/1.1, where the mark has no place, and may
/// edit it: it keeps the names beside it, and encodes every field of these names never
/// indexed toward the next HTTP/2 peer. A field may always be sent never indexed, so a name
/// shared with a field the sender let be indexed costs that field its indexing only. Empty
/// (the usual case), it allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeverIndexed(Vec<Box<[u8]>>);

/// No field marked never indexed.
static NONE: NeverIndexed = NeverIndexed(Vec::new());

impl NeverIndexed {
    /// The empty set, for a message no peer marked (an HTTP/1.1 one, the proxy's own).
    pub fn none() -> &'static NeverIndexed {
        &NONE
    }

    /// Whether a field named `name` (lowercase) was marked never indexed.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.0.iter().any(|marked| **marked == *name)
    }

    /// Adds `name` (lowercase).
    pub fn insert(&mut self, name: &[u8]) {
        if !self.contains(name) {
            self.0.push(name.into());
        }
    }

    /// Adds the names of `other`.
    pub fn add_all(&mut self, other: &NeverIndexed) {
        for name in &other.0 {
            self.insert(name);
        }
    }

    /// Forgets every name (their allocations stay).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Why a header block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The block could not be decoded: the HPACK state is lost, the connection must end.
    Compression,
    /// The block was decoded but the request is refused: the stream is reset.
    Stream(Cause),
}

/// The buffers of header block decoding, kept from one block to the next so that a
/// connection decodes its requests without allocating once they have grown.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// The pseudo-header and Host values of the block, which [`Pseudo`] points into.
    values: Vec<u8>,
    /// The Cookie values, joined.
    cookies: Vec<u8>,
    /// Regular fields as HTTP/1.1 lines.
    lines: Vec<u8>,
    /// The fields of the block marked never indexed.
    never_indexed: NeverIndexed,
}

impl Scratch {
    /// The fields marked never indexed in the block decoded last.
    pub fn never_indexed(&self) -> &NeverIndexed {
        &self.never_indexed
    }
}

/// The pseudo-header fields of a request (RFC 9113 §8.3.1), and its Host field: ranges of
/// [`Scratch::values`].
#[derive(Default)]
struct Pseudo {
    method: Option<Range<usize>>,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    /// `:status`, read in responses only.
    status: Option<Range<usize>>,
    host: Option<Range<usize>>,
}

/// Fields gathered while a block is decoded: the checks run field by field, and the first
/// failure is kept while decoding goes on (the HPACK state must stay in step).
struct Collect<'l, 's> {
    limits: &'l ListLimits,
    size: u64,
    fields: u32,
    pseudo: Pseudo,
    seen_regular: bool,
    scratch: &'s mut Scratch,
    is_trailer: bool,
    failure: Option<Cause>,
}

impl Collect<'_, '_> {
    fn field(&mut self, name: &[u8], value: &[u8], indexing: Indexing) {
        self.size = self
            .size
            .saturating_add(name.len() as u64)
            .saturating_add(value.len() as u64)
            .saturating_add(32);
        self.fields = self.fields.saturating_add(1);
        if self.failure.is_some() {
            return;
        }
        if self.size > u64::from(self.limits.max_size) {
            self.failure = Some(Cause::HeaderListTooLarge);
        } else if self.fields > self.limits.max_fields {
            self.failure = Some(Cause::TooManyHeaderFields);
        } else if let Err(cause) = self.check(name, value) {
            self.failure = Some(cause);
        } else if indexing == Indexing::Never {
            // Host goes on as `:authority` toward an HTTP/2 backend.
            let name = if name == b"host" { b":authority" } else { name };
            self.scratch.never_indexed.insert(name);
        }
    }

    /// Keeps `value` in the scratch values; where it lies there.
    fn keep(&mut self, value: &[u8]) -> Range<usize> {
        let values = &mut self.scratch.values;
        let start = values.len();
        values.extend_from_slice(value);
        start..values.len()
    }

    fn check(&mut self, name: &[u8], value: &[u8]) -> Result<(), Cause> {
        if !is_valid_value(value) {
            return Err(Cause::Malformed);
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.seen_regular || self.is_trailer {
                return Err(Cause::Malformed);
            }
            let is_set = match pseudo {
                b"method" => self.pseudo.method.is_some(),
                b"scheme" => self.pseudo.scheme.is_some(),
                b"authority" => self.pseudo.authority.is_some(),
                b"path" => self.pseudo.path.is_some(),
                b"status" => self.pseudo.status.is_some(),
                // `:protocol` (RFC 8441) is refused: extended CONNECT is not advertised.
                _ => return Err(Cause::Malformed),
            };
            if is_set {
                return Err(Cause::Malformed);
            }
            let kept = Some(self.keep(value));
            match pseudo {
                b"method" => self.pseudo.method = kept,
                b"scheme" => self.pseudo.scheme = kept,
                b"authority" => self.pseudo.authority = kept,
                b"status" => self.pseudo.status = kept,
                _ => self.pseudo.path = kept,
            }
            return Ok(());
        }
        self.seen_regular = true;
        if !name.iter().all(|&byte| is_lowercase_tchar(byte)) || name.is_empty() {
            return Err(Cause::Malformed);
        }
        match name {
            // Connection-specific fields (RFC 9113 §8.2.2).
            b"connection" | b"proxy-connection" | b"keep-alive" | b"transfer-encoding"
            | b"upgrade" => Err(Cause::Malformed),
            b"te" if value != b"trailers" => Err(Cause::Malformed),
            b"host" if !self.is_trailer => {
                if self.pseudo.host.is_some() {
                    return Err(Cause::Malformed);
                }
                self.pseudo.host = Some(self.keep(value));
                Ok(())
            }
            b"cookie" if !self.is_trailer => {
                let cookies = &mut self.scratch.cookies;
                if !cookies.is_empty() {
                    cookies.extend_from_slice(b"; ");
                }
                cookies.extend_from_slice(value);
                Ok(())
            }
            _ => {
                push_line(&mut self.scratch.lines, name, value);
                Ok(())
            }
        }
    }
}

fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A `tchar` without uppercase letters: HTTP/2 field names are lowercase (RFC 9113 §8.2.1).
fn is_lowercase_tchar(byte: u8) -> bool {
    !byte.is_ascii_uppercase() && parser::is_tchar(byte)
}

/// A field value without NUL, CR, LF nor leading or trailing whitespace (RFC 9113 §8.2.1),
/// and without any other control character but HTAB (RFC 9110 §5.5, as the HTTP/1.1 parser).
fn is_valid_value(value: &[u8]) -> bool {
    let is_ows = |byte: &u8| matches!(byte, b' ' | b'\t');
    value.iter().all(|&byte| parser::is_text_byte(byte))
        && !value.first().is_some_and(is_ows)
        && !value.last().is_some_and(is_ows)
}

/// Decodes `block` into fields, checking each, into `scratch` (cleared first); the
/// pseudo-header fields, or why the block is refused.
fn collect(
    decoder: &mut Decoder,
    block: &[u8],
    limits: &ListLimits,
    is_trailer: bool,
    scratch: &mut Scratch,
) -> Result<Pseudo, BlockError> {
    scratch.values.clear();
    scratch.cookies.clear();
    scratch.lines.clear();
    scratch.never_indexed.clear();
    let mut collect = Collect {
        limits,
        size: 0,
        fields: 0,
        pseudo: Pseudo::default(),
        seen_regular: false,
        scratch,
        is_trailer,
        failure: None,
    };
    decoder
        .decode(block, |name, value, indexing| {
            collect.field(name, value, indexing);
        })
        .map_err(|_| BlockError::Compression)?;
    match collect.failure {
        Some(cause) => Err(BlockError::Stream(cause)),
        None => Ok(collect.pseudo),
    }
}

/// Decodes the header block of a request, with `scratch` for the decoding. `end_stream`: the
/// HEADERS frame ended the stream, so the request has no body. The request is written into
/// `buffers` (its bytes and its fields, those of a request done with).
pub fn decode_request(
    decoder: &mut Decoder,
    block: &[u8],
    limits: &ListLimits,
    request_id_header: &[u8],
    end_stream: bool,
    scratch: &mut Scratch,
    buffers: (Vec<u8>, Vec<Header>),
) -> Result<Request, BlockError> {
    let pseudo = collect(decoder, block, limits, false, scratch)?;
    let values = scratch.values.as_slice();
    let value = |range: Option<Range<usize>>| range.and_then(|range| values.get(range));
    let malformed = BlockError::Stream(Cause::Malformed);
    if pseudo.status.is_some() {
        return Err(malformed);
    }
    let method = value(pseudo.method).ok_or(malformed)?;
    let (scheme, path) = (value(pseudo.scheme), value(pseudo.path));
    let authority = value(pseudo.authority);
    let (mut bytes, mut fields) = buffers;
    bytes.clear();
    if method == b"CONNECT" {
        // RFC 9113 §8.5: only `:method` and `:authority`.
        let authority = authority.ok_or(malformed)?;
        if scheme.is_some() || path.is_some() {
            return Err(malformed);
        }
        bytes.extend_from_slice(b"CONNECT ");
        bytes.extend_from_slice(authority);
    } else {
        let scheme = scheme.ok_or(malformed)?;
        let path = path.ok_or(malformed)?;
        let is_asterisk = path == b"*" && method == b"OPTIONS";
        if !(scheme == b"http" || scheme == b"https") || !(path.starts_with(b"/") || is_asterisk) {
            return Err(malformed);
        }
        bytes.extend_from_slice(method);
        bytes.push(b' ');
        bytes.extend_from_slice(path);
    }
    bytes.extend_from_slice(b" HTTP/1.1\r\n");
    // RFC 9113 §8.3.1: `:authority` and Host must name the same thing; one host line.
    let host = match (authority, value(pseudo.host)) {
        (Some(authority), Some(host)) if authority != host => return Err(malformed),
        (Some(authority), _) => Some(authority),
        (None, host) => host,
    };
    if let Some(host) = host {
        push_line(&mut bytes, b"host", host);
    }
    if !scratch.cookies.is_empty() {
        push_line(&mut bytes, b"cookie", &scratch.cookies);
    }
    bytes.extend_from_slice(&scratch.lines);
    bytes.extend_from_slice(b"\r\n");
    let head = parse_rendered(&bytes, limits, request_id_header, &mut fields)?;
    let content_length = match head.body {
        parser::BodyFraming::ContentLength(length) => Some(length),
        _ => None,
    };
    if content_length.is_some() || end_stream {
        return Ok(Request {
            head,
            bytes,
            fields,
            content_length,
            never_indexed: scratch.never_indexed.clone(),
        });
    }
    bytes.truncate(bytes.len().saturating_sub(2));
    bytes.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    let head = parse_rendered(&bytes, limits, request_id_header, &mut fields)?;
    Ok(Request {
        head,
        bytes,
        fields,
        content_length,
        never_indexed: scratch.never_indexed.clone(),
    })
}

/// Parses a rendered head with the HTTP/1.1 parser, whose limits the rendering always fits.
fn parse_rendered(
    bytes: &[u8],
    limits: &ListLimits,
    request_id_header: &[u8],
    fields: &mut Vec<Header>,
) -> Result<RequestHead, BlockError> {
    let parse_limits = Limits {
        max_request_line: bytes.len(),
        max_header_section: bytes.len(),
        max_headers: usize::try_from(limits.max_fields)
            .unwrap_or(usize::MAX)
            .saturating_add(3),
    };
    match parser::parse_request_head(bytes, &parse_limits, request_id_header, fields) {
        Ok(Parsed::Complete(head)) => Ok(head),
        Ok(Parsed::Partial) | Err(_) => Err(BlockError::Stream(Cause::Malformed)),
    }
}

/// Decodes a trailer block: regular fields only, written as HTTP/1.1 field lines (the
/// trailer section of a chunked body, without its final empty line).
pub fn decode_trailers(
    decoder: &mut Decoder,
    block: &[u8],
    limits: &ListLimits,
    scratch: &mut Scratch,
) -> Result<Vec<u8>, BlockError> {
    collect(decoder, block, limits, true, scratch)?;
    Ok(scratch.lines.clone())
}

/// Decodes the header block of a response from an HTTP/2 backend, with `scratch` for the
/// decoding: its `:status` (the only pseudo-header a response has, RFC 9113 §8.3.2) and its
/// regular fields as HTTP/1.1 field lines, with the checks of a request's fields (lowercase
/// names, values, no connection-specific field).
pub fn decode_response(
    decoder: &mut Decoder,
    block: &[u8],
    limits: &ListLimits,
    scratch: &mut Scratch,
) -> Result<(u16, Vec<u8>), BlockError> {
    let pseudo = collect(decoder, block, limits, false, scratch)?;
    let malformed = BlockError::Stream(Cause::Malformed);
    if pseudo.method.is_some()
        || pseudo.scheme.is_some()
        || pseudo.authority.is_some()
        || pseudo.path.is_some()
    {
        return Err(malformed);
    }
    let values = scratch.values.as_slice();
    let status = match pseudo.status.and_then(|range| values.get(range)) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) && a != b'0' => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(malformed),
    };
    let mut lines = Vec::with_capacity(scratch.lines.len() + scratch.cookies.len() + 64);
    if let Some(host) = pseudo.host.and_then(|range| values.get(range)) {
        push_line(&mut lines, b"host", host);
    }
    if !scratch.cookies.is_empty() {
        push_line(&mut lines, b"cookie", &scratch.cookies);
    }
    lines.extend_from_slice(&scratch.lines);
    Ok((status, lines))
}

/// A response head read from an HTTP/1.1 backend: the parsed head, its fields, and the
/// buffer their positions point into.
#[derive(Clone, Copy, Debug)]
pub struct ParsedResponse<'a> {
    /// The parsed status line and framing.
    pub head: &'a ResponseHead,
    /// The head's field lines, positions into `buf`.
    pub fields: &'a [Header],
    /// The buffer the head was parsed from.
    pub buf: &'a [u8],
    /// The fields its sender marked never indexed.
    pub never_indexed: &'a NeverIndexed,
}

/// Encodes header blocks without the HPACK dynamic table (as HAProxy and nginx do): a field
/// of the static table is one byte; another field whose name is in the static table is that
/// index and its value as a literal, otherwise name and value are literals; never Huffman
/// coded. Nothing is searched nor inserted per field, so a response head costs a few
/// instructions per byte; the table stays empty, within any size the peer allows.
pub struct HeaderEncoder {
    /// The table size last signalled to the peer.
    table_size: u32,
    /// A smaller size the peer asked for, to signal at the start of the next block
    /// (RFC 7541 §4.2).
    pending_size: Option<u32>,
    /// Reused for lowercase field names.
    name: Vec<u8>,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self {
            table_size: super::settings::DEFAULT_HEADER_TABLE_SIZE,
            pending_size: None,
            name: Vec::new(),
        }
    }
}

/// The entry of the HPACK static table (RFC 7541 Appendix A) that holds both `name` and
/// `value`, for the fields a response or request head often has.
fn static_field(name: &[u8], value: &[u8]) -> Option<usize> {
    Some(match (name, value) {
        (b":method", b"GET") => 2,
        (b":method", b"POST") => 3,
        (b":path", b"/") => 4,
        (b":path", b"/index.html") => 5,
        (b":scheme", b"http") => 6,
        (b":scheme", b"https") => 7,
        (b":status", b"200") => 8,
        (b":status", b"204") => 9,
        (b":status", b"206") => 10,
        (b":status", b"304") => 11,
        (b":status", b"400") => 12,
        (b":status", b"404") => 13,
        (b":status", b"500") => 14,
        (b"accept-encoding", b"gzip, deflate") => 16,
        _ => return None,
    })
}

/// The first entry of the HPACK static table (RFC 7541 Appendix A) named `name`.
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

/// Writes an HPACK string literal, not Huffman coded (RFC 7541 §5.2).
fn push_literal(block: &mut Vec<u8>, text: &[u8]) {
    encode_integer(text.len(), 7, 0, block);
    block.extend_from_slice(text);
}

impl HeaderEncoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE. The table never grows past the default 4096
    /// bytes, so only a smaller value changes anything.
    pub fn set_peer_table_size(&mut self, size: u32) {
        let size = size.min(super::settings::DEFAULT_HEADER_TABLE_SIZE);
        if size != self.table_size {
            self.pending_size = Some(size);
        }
    }

    fn start_block(&mut self, block: &mut Vec<u8>) {
        block.clear();
        if let Some(size) = self.pending_size.take() {
            // A dynamic table size update: `001` and a 5-bit prefix integer.
            encode_integer(usize::try_from(size).unwrap_or(0), 5, 0x20, block);
            self.table_size = size;
        }
    }

    fn field(
        &mut self,
        name: &[u8],
        value: &[u8],
        never_indexed: &NeverIndexed,
        block: &mut Vec<u8>,
    ) {
        self.name.clear();
        self.name.extend(name.iter().map(u8::to_ascii_lowercase));
        let name = self.name.as_slice();
        if let Some(index) = static_field(name, value) {
            // Indexed field (§6.1).
            encode_integer(index, 7, 0x80, block);
            return;
        }
        // Literal without indexing (§6.2.2); never indexed (§6.2.3) for credentials and
        // cookies, so that no later hop stores them in a table, and for the fields the
        // sender marked so (an intermediary keeps the representation).
        let is_sensitive = matches!(
            name,
            b"authorization" | b"proxy-authorization" | b"cookie" | b"set-cookie"
        ) || never_indexed.contains(name);
        let leading = if is_sensitive { 0x10 } else { 0x00 };
        match static_name(name) {
            Some(index) => encode_integer(index, 4, leading, block),
            None => {
                block.push(leading);
                push_literal(block, name);
            }
        }
        push_literal(block, value);
    }

    /// Encodes a response head read from an HTTP/1.1 backend: `:status`, then the fields
    /// but the connection-specific ones (RFC 9113 §8.2.2), names in lowercase.
    pub fn response(&mut self, response: ParsedResponse<'_>, block: &mut Vec<u8>) {
        self.start_block(block);
        let mut status = [0u8; 3];
        let digits = response.head.status.min(999);
        status[0] = b'0' + u8::try_from(digits / 100).unwrap_or(0);
        status[1] = b'0' + u8::try_from(digits / 10 % 10).unwrap_or(0);
        status[2] = b'0' + u8::try_from(digits % 10).unwrap_or(0);
        self.field(b":status", &status, response.never_indexed, block);
        for field in response.fields {
            let is_connection_specific = field.is_connection_option
                || matches!(
                    field.kind,
                    HeaderKind::Connection
                        | HeaderKind::KeepAlive
                        | HeaderKind::ProxyConnection
                        | HeaderKind::TransferEncoding
                        | HeaderKind::Upgrade
                );
            if !is_connection_specific {
                let buf = response.buf;
                let (name, value) = (field.name.slice(buf), field.value.slice(buf));
                self.field(name, value, response.never_indexed, block);
            }
        }
    }

    /// Encodes trailers (or any list of fields), those named in `never_indexed` never
    /// indexed.
    pub fn fields<'f>(
        &mut self,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        never_indexed: &NeverIndexed,
        block: &mut Vec<u8>,
    ) {
        self.start_block(block);
        for (name, value) in fields {
            self.field(name, value, never_indexed, block);
        }
    }
}

#[cfg(test)]
mod tests;
