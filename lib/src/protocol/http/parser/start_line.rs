//! Start lines: the request line (RFC 9112 §3) with the empty lines that may precede it,
//! and the status line (RFC 9112 §4), parsed with nom's streaming combinators.
//!
//! nom's `Incomplete` becomes [`Stop::Partial`] here, at the boundary, and each of its
//! errors the [`Violation`] of the step that failed.

use nom::IResult;
use nom::bytes::streaming::{tag, take, take_while, take_while1};

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
    let at = |rest: &[u8]| start + (input.len() - rest.len());
    let (rest, method) = step(take_while1(is_tchar)(input), Violation::InvalidMethod)?;
    let (rest, _) = step(tag(&b" "[..])(rest), Violation::InvalidMethod)?;
    let target_start = at(rest);
    let (rest, target) = step(take_while1(is_target_byte)(rest), Violation::InvalidTarget)?;
    let (rest, _) = step(tag(&b" "[..])(rest), Violation::InvalidTarget)?;
    let (rest, version) = http_version(rest)?;
    let rest = line_end(rest, Violation::InvalidVersion)?;
    Ok(RequestLine {
        method: Method::from_token(method),
        method_span: Span {
            start,
            end: start + method.len(),
        },
        target: Span {
            start: target_start,
            end: target_start + target.len(),
        },
        version,
        end: at(rest),
    })
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
    let at = |rest: &[u8]| buf.len() - rest.len();
    let (rest, version) = http_version(buf)?;
    let (rest, _) = step(tag(&b" "[..])(rest), Violation::InvalidStatusLine)?;
    let (rest, digits) = step(take(3usize)(rest), Violation::InvalidStatusLine)?;
    let status = status_code(digits).ok_or(Violation::InvalidStatusLine)?;
    // The SP before an empty reason-phrase is tolerated when missing: it is unambiguous.
    let (rest, reason) = match rest {
        [b' ', after @ ..] => step(
            take_while(is_text_byte)(after),
            Violation::InvalidStatusLine,
        )?,
        [] => return Err(Stop::Partial),
        _ => (rest, &[][..]),
    };
    let reason_start = at(rest) - reason.len();
    let rest = line_end(rest, Violation::InvalidStatusLine)?;
    Ok(StatusLine {
        version,
        status,
        reason: Span {
            start: reason_start,
            end: reason_start + reason.len(),
        },
        end: at(rest),
    })
}

fn status_code(digits: &[u8]) -> Option<u16> {
    match *digits {
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
    let (rest, _) = step(tag(&b"HTTP/"[..])(input), Violation::InvalidVersion)?;
    let (rest, digits) = step(take(3usize)(rest), Violation::InvalidVersion)?;
    let version = match *digits {
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

/// Converts a nom step at the parser boundary: `Incomplete` is `Partial`, never an error.
fn step<O>(result: IResult<&[u8], O, ()>, violation: Violation) -> Result<(&[u8], O), Stop> {
    result.map_err(|error| match error {
        nom::Err::Incomplete(_) => Stop::Partial,
        nom::Err::Error(()) | nom::Err::Failure(()) => Stop::Invalid(violation),
    })
}
