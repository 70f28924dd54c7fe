//! Strict HTTP/1.1 message reading for the test clients and backends, written apart from the
//! proxy's parser so that a test never trusts the code it checks.
//!
//! A [`Reader`] owns a stream and the bytes read from it but not consumed yet. It reads one
//! head at a time ([`Reader::read_head`]) and then the body its framing gives
//! ([`Reader::read_body`]); bytes after a message stay in the reader for the next one.
//! Anything that RFC 9112 does not allow a sender to write is an error here: bare LF or CR,
//! obs-fold, whitespace before a colon, control characters in values, Content-Length with
//! Transfer-Encoding, a Content-Length that is not plain digits, a broken chunk.

use std::{
    fmt,
    io::{self, Read},
    net::TcpStream,
};

/// Longest head accepted, to bound a reader fed garbage.
const MAX_HEAD: usize = 256 * 1024;

/// Why a message could not be read.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The peer ended its stream inside a message.
    Truncated,
    /// The bytes break HTTP/1.1 syntax or framing.
    Invalid(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Io(error) => write!(f, "read failed: {error}"),
            WireError::Truncated => f.write_str("the stream ended inside a message"),
            WireError::Invalid(why) => write!(f, "invalid message: {why}"),
        }
    }
}

fn invalid(why: impl Into<String>) -> WireError {
    WireError::Invalid(why.into())
}

/// A message head as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The bytes of the head, final empty line included.
    pub raw: Vec<u8>,
    /// The request or status line, without its CRLF.
    pub start_line: String,
    /// Field lines in order: name as written, value without surrounding whitespace.
    pub fields: Vec<(String, String)>,
}

impl Head {
    /// The value of the first field named `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The values of every field named `name`, in order.
    pub fn fields_named(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Whether a field named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.field(name).is_some()
    }

    /// Whether a Connection field lists `option` (case-insensitive).
    pub fn connection_has(&self, option: &str) -> bool {
        self.fields_named("connection")
            .iter()
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(option))
    }

    /// The framing the fields announce for a message that may have a body: chunked,
    /// Content-Length, or `otherwise` when neither is present.
    fn framing(&self, otherwise: Framing) -> Result<Framing, WireError> {
        let lengths = self.fields_named("content-length");
        let codings = self.fields_named("transfer-encoding");
        if !lengths.is_empty() && !codings.is_empty() {
            return Err(invalid("both Content-Length and Transfer-Encoding"));
        }
        if !codings.is_empty() {
            return match codings.as_slice() {
                [coding] if coding.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                _ => Err(invalid(format!("Transfer-Encoding {codings:?}"))),
            };
        }
        let mut length = None;
        for value in lengths.iter().flat_map(|value| value.split(',')) {
            let value = value.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("Content-Length `{value}`")));
            }
            let value: usize = value
                .parse()
                .map_err(|_| invalid(format!("Content-Length `{value}`")))?;
            if length.is_some_and(|length| length != value) {
                return Err(invalid("differing Content-Length values"));
            }
            length = Some(value);
        }
        Ok(length.map_or(otherwise, Framing::Length))
    }

    /// The framing of a request's body.
    pub fn request_framing(&self) -> Result<Framing, WireError> {
        self.framing(Framing::None)
    }

    /// The framing of a response's body, for a request made with `method` (RFC 9112 §6.3).
    pub fn response_framing(&self, method: &str) -> Result<Framing, WireError> {
        let status = self.status()?;
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::None);
        }
        self.framing(Framing::UntilClose)
    }

    /// The status code of a status line.
    pub fn status(&self) -> Result<u16, WireError> {
        let mut parts = self.start_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(invalid(format!("status line `{}`", self.start_line)));
        }
        let code = parts.next().unwrap_or_default();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!("status line `{}`", self.start_line)));
        }
        code.parse()
            .map_err(|_| invalid(format!("status line `{}`", self.start_line)))
    }
}

/// Where a body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A body as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// The bytes on the wire (chunk framing included).
    pub raw: Vec<u8>,
    /// The content (chunk framing removed).
    pub data: Vec<u8>,
}

/// Sees every byte a [`Reader`] reads, in order.
type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// A stream and the bytes read from it that no message consumed yet.
pub struct Reader {
    stream: TcpStream,
    pending: Vec<u8>,
    /// Called with every byte read, in order.
    tap: Option<Tap>,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            pending: Vec::new(),
            tap: None,
        }
    }

    /// A reader that shows `tap` every byte it reads.
    pub fn with_tap(stream: TcpStream, tap: impl FnMut(&[u8]) + Send + 'static) -> Reader {
        Reader {
            stream,
            pending: Vec::new(),
            tap: Some(Box::new(tap)),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes read and not consumed by a message.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Takes the bytes read and not consumed by a message.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Reads more bytes; returns how many (0 at end of stream).
    pub fn fill(&mut self) -> Result<usize, WireError> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(count) => {
                    let read = &chunk[..count];
                    if let Some(tap) = self.tap.as_mut() {
                        tap(read);
                    }
                    self.pending.extend_from_slice(read);
                    return Ok(count);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(WireError::Io(error)),
            }
        }
    }

    /// Reads one head; `None` when the stream ends before its first byte.
    pub fn read_head(&mut self) -> Result<Option<Head>, WireError> {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                let raw: Vec<u8> = self.pending.drain(..end + 4).collect();
                return parse_head(raw).map(Some);
            }
            if self.pending.len() > MAX_HEAD {
                return Err(invalid("head larger than the test limit"));
            }
            if self.fill()? == 0 {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
        }
    }

    /// Reads a body with the given framing.
    pub fn read_body(&mut self, framing: Framing) -> Result<Body, WireError> {
        match framing {
            Framing::None => Ok(Body::default()),
            Framing::Length(length) => {
                while self.pending.len() < length {
                    if self.fill()? == 0 {
                        return Err(WireError::Truncated);
                    }
                }
                let data: Vec<u8> = self.pending.drain(..length).collect();
                Ok(Body {
                    raw: data.clone(),
                    data,
                })
            }
            Framing::Chunked => self.read_chunked(),
            Framing::UntilClose => {
                while self.fill()? > 0 {}
                let data = self.take_pending();
                Ok(Body {
                    raw: data.clone(),
                    data,
                })
            }
        }
    }

    /// Reads a line ending in CRLF from `pending`, filling as needed; the line without CRLF.
    fn read_line(&mut self, consumed: &mut Vec<u8>) -> Result<Vec<u8>, WireError> {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..end + 2).collect();
                consumed.extend_from_slice(&line);
                let line = &line[..end];
                if line.contains(&b'\r') || line.contains(&b'\n') {
                    return Err(invalid("bare CR or LF in a chunk line"));
                }
                return Ok(line.to_vec());
            }
            if self.pending.len() > MAX_HEAD {
                return Err(invalid("chunk line larger than the test limit"));
            }
            if self.fill()? == 0 {
                return Err(WireError::Truncated);
            }
        }
    }

    fn read_chunked(&mut self) -> Result<Body, WireError> {
        let mut body = Body::default();
        loop {
            let line = self.read_line(&mut body.raw)?;
            let size = line.split(|&b| b == b';').next().unwrap_or_default();
            if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) || size.len() > 15 {
                return Err(invalid(format!(
                    "chunk size `{}`",
                    String::from_utf8_lossy(&line)
                )));
            }
            let size = usize::from_str_radix(&String::from_utf8_lossy(size), 16)
                .map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailer fields, then the empty line.
                loop {
                    let trailer = self.read_line(&mut body.raw)?;
                    if trailer.is_empty() {
                        return Ok(body);
                    }
                }
            }
            while self.pending.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(WireError::Truncated);
                }
            }
            let chunk: Vec<u8> = self.pending.drain(..size + 2).collect();
            if !chunk.ends_with(b"\r\n") {
                return Err(invalid("chunk data not followed by CRLF"));
            }
            body.data.extend_from_slice(&chunk[..size]);
            body.raw.extend_from_slice(&chunk);
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Parses a head that ends with CRLF CRLF.
fn parse_head(raw: Vec<u8>) -> Result<Head, WireError> {
    let text = &raw[..raw.len() - 4];
    let mut lines = Vec::new();
    let mut rest = text;
    loop {
        match find(rest, b"\r\n") {
            Some(end) => {
                lines.push(&rest[..end]);
                rest = &rest[end + 2..];
            }
            None => {
                lines.push(rest);
                break;
            }
        }
    }
    for line in &lines {
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(invalid("bare CR or LF in a head"));
        }
    }
    let start_line =
        String::from_utf8(lines[0].to_vec()).map_err(|_| invalid("start line is not UTF-8"))?;
    if start_line.is_empty() || start_line.starts_with([' ', '\t']) {
        return Err(invalid(format!("start line `{start_line}`")));
    }
    let mut fields = Vec::new();
    for line in &lines[1..] {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(invalid("obs-fold"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| invalid("field line without colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(invalid(format!(
                "field name `{}`",
                String::from_utf8_lossy(name)
            )));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(invalid("control character in a field value"));
        }
        let value = value.trim_ascii();
        fields.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(Head {
        raw,
        start_line,
        fields,
    })
}
