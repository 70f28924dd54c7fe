//! Start lines: the request line (RFC 9112 §3) with the empty lines that may precede it,
//! and the status line (RFC 9112 §4), matched byte by byte on slices.
//!
//! A step that runs out of bytes before it can decide is [`Stop::Partial`]; a step that
//! sees a wrong byte is the [`Violation`] of that step.

use super::{
    Limits, MAX_LEADING_EMPTY_LINES, Method, Span, Stop, Version, Violation, is_target_byte,
    is_tchar, is_text_byte, partial,
};

/// The offset of the first byte after the empty lines that may precede a request line.
pub(super) fn skip_empty_lines(buf: &[u8]) -> Result<usize, Stop> {
    let mut pos = 0;
    for _ in 0..=MAX_LEADING_EMPTY_LINES {
        match buf.get(pos..).unwrap_or_default() {
            [b'\r', b'\n', ..] => pos += 2,
            [] | [b'\r'] => return Err(Stop::Partial),
            [b'\r', ..] => return Err(Violation::BareCr.into()),
            [b'\n', ..] => return Err(Violation::BareLf.into()),
            _ => return Ok(pos),
        }
    }
    Err(Violation::TooManyEmptyLines.into())
}

pub(super) struct RequestLine {
    pub(super) method: Method,
    pub(super) method_span: Span,
    pub(super) target: Span,
    pub(super) version: Version,
    /// Offset after the CRLF.
    pub(super) end: usize,
}

/// Parses `method SP request-target SP HTTP-version CRLF` at `start`.
pub(super) fn request_line(buf: &[u8], start: usize, limits: &Limits) -> Result<RequestLine, Stop> {
    let input = buf.get(start..).unwrap_or_default();
    let parsed = request_line_parts(input, start);
    match parsed {
        Err(Stop::Partial) if input.len() > limits.max_request_line => {
            Err(Violation::RequestLineTooLong.into())
        }
        Err(Stop::Partial) => Err(partial(buf, limits)),
        Ok(line) if line.end.saturating_sub(start + 2) > limits.max_request_line => {
            Err(Violation::RequestLineTooLong.into())
        }
        parsed => parsed,
    }
}

fn request_line_parts(input: &[u8], start: usize) -> Result<RequestLine, Stop> {
    let method_len = run(input, is_tchar, Violation::InvalidMethod)?;
    let after_method = after_space(input, method_len, Violation::InvalidMethod)?;
    let target_len = run(after_method, is_target_byte, Violation::InvalidTarget)?;
    let after_target = after_space(after_method, target_len, Violation::InvalidTarget)?;
    let (rest, version) = http_version(after_target)?;
    let rest = line_end(rest, Violation::InvalidVersion)?;
    let target_start = start + method_len + 1;
    Ok(RequestLine {
        method: Method::from_token(input.get(..method_len).unwrap_or_default()),
        method_span: Span {
            start,
            end: start + method_len,
        },
        target: Span {
            start: target_start,
            end: target_start + target_len,
        },
        version,
        end: start + (input.len() - rest.len()),
    })
}

/// The length of the run of bytes that `accept` takes at the start of `input`, which must
/// not be empty (`empty`) and must end before `input` does (else more bytes may extend it).
fn run(input: &[u8], accept: impl Fn(u8) -> bool, empty: Violation) -> Result<usize, Stop> {
    match input.iter().position(|&byte| !accept(byte)) {
        None => Err(Stop::Partial),
        Some(0) => Err(empty.into()),
        Some(len) => Ok(len),
    }
}

/// The bytes after the SP expected at `input[at]`, a byte that exists.
fn after_space(input: &[u8], at: usize, otherwise: Violation) -> Result<&[u8], Stop> {
    match input.get(at..).unwrap_or_default() {
        [b' ', rest @ ..] => Ok(rest),
        [] => Err(Stop::Partial),
        _ => Err(otherwise.into()),
    }
}

pub(super) struct StatusLine {
    pub(super) version: Version,
    pub(super) status: u16,
    pub(super) reason: Span,
    /// Offset after the CRLF.
    pub(super) end: usize,
}

/// Parses `HTTP-version SP 3DIGIT SP reason-phrase CRLF` at the start of `buf`.
pub(super) fn status_line(buf: &[u8], limits: &Limits) -> Result<StatusLine, Stop> {
    match status_line_parts(buf) {
        Err(Stop::Partial) => Err(partial(buf, limits)),
        parsed => parsed,
    }
}

fn status_line_parts(buf: &[u8]) -> Result<StatusLine, Stop> {
    let (rest, version) = http_version(buf)?;
    let (digits, rest) = match rest {
        [b' ', a, b, c, rest @ ..] => ([*a, *b, *c], rest),
        [] | [b' '] | [b' ', _] | [b' ', _, _] => return Err(Stop::Partial),
        _ => return Err(Violation::InvalidStatusLine.into()),
    };
    let status = status_code(digits).ok_or(Violation::InvalidStatusLine)?;
    // The SP before an empty reason-phrase is tolerated when missing: it is unambiguous.
    let (reason_start, reason_len) = match rest {
        [b' ', after @ ..] => match after.iter().position(|&byte| !is_text_byte(byte)) {
            Some(len) => (buf.len() - after.len(), len),
            None => return Err(Stop::Partial),
        },
        [] => return Err(Stop::Partial),
        _ => (buf.len() - rest.len(), 0),
    };
    let rest = buf.get(reason_start + reason_len..).unwrap_or_default();
    let rest = line_end(rest, Violation::InvalidStatusLine)?;
    Ok(StatusLine {
        version,
        status,
        reason: Span {
            start: reason_start,
            end: reason_start + reason_len,
        },
        end: buf.len() - rest.len(),
    })
}

fn status_code(digits: [u8; 3]) -> Option<u16> {
    match digits {
        [
            hundreds @ b'1'..=b'5',
            tens @ b'0'..=b'9',
            units @ b'0'..=b'9',
        ] => Some(
            u16::from(hundreds - b'0') * 100
                + u16::from(tens - b'0') * 10
                + u16::from(units - b'0'),
        ),
        _ => None,
    }
}

/// Parses `HTTP/DIGIT.DIGIT`. A higher minor version of HTTP/1 is HTTP/1.1, the highest the
/// proxy speaks (RFC 9110 §2.5); another major version is unsupported (505) rather than
/// invalid.
fn http_version(input: &[u8]) -> Result<(&[u8], Version), Stop> {
    const NAME: &[u8] = b"HTTP/";
    let (digits, rest) = match input {
        [b'H', b'T', b'T', b'P', b'/', major, dot, minor, rest @ ..] => {
            ([*major, *dot, *minor], rest)
        }
        shorter
            if shorter.len() < NAME.len() + 3
                && NAME.starts_with(shorter.get(..NAME.len()).unwrap_or(shorter)) =>
        {
            return Err(Stop::Partial);
        }
        _ => return Err(Violation::InvalidVersion.into()),
    };
    let version = match digits {
        [b'1', b'.', b'0'] => Version::Http10,
        [b'1', b'.', minor] if minor.is_ascii_digit() => Version::Http11,
        [major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(Violation::UnsupportedVersion.into());
        }
        _ => return Err(Violation::InvalidVersion.into()),
    };
    Ok((rest, version))
}

/// Expects CRLF at the start of `input`; any other byte breaks `otherwise`.
fn line_end(input: &[u8], otherwise: Violation) -> Result<&[u8], Stop> {
    match input {
        [b'\r', b'\n', rest @ ..] => Ok(rest),
        [] | [b'\r'] => Err(Stop::Partial),
        [b'\r', ..] => Err(Violation::BareCr.into()),
        [b'\n', ..] => Err(Violation::BareLf.into()),
        _ => Err(otherwise.into()),
    }
}
