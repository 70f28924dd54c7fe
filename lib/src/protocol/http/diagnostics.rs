//! What an answer says about a head the proxy could not parse: Sōzu's `%PHASE`,
//! `%SUCCESSFULLY_PARSED`, `%PARTIALLY_PARSED` and `%INVALID` (see `answers`).
//!
//! The parser reports which rule a head broke, not where. The byte that broke it is found by
//! parsing shorter prefixes of the head: the shortest prefix the parser refuses ends with it.
//! That costs a few parses of one head, on a request or response that is refused anyway.

use std::fmt::Write as _;

/// The part of a head where it broke, named as Sōzu names its parsing phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The request line or status line.
    StatusLine,
    /// The field lines.
    Headers,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::StatusLine => "StatusLine",
            Phase::Headers => "Headers",
        }
    }
}

/// Where a refused head broke, and its bytes around that place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub phase: Phase,
    /// The lines before the broken one, in [`hex_dump`] form.
    pub successfully_parsed: String,
    /// The broken line up to the byte that broke it.
    pub partially_parsed: String,
    /// That byte and the rest of the head as received.
    pub invalid: String,
}

/// Bytes shown at most in a dump; longer runs keep their first and last bytes.
const WINDOW: usize = 32;

impl Diagnostic {
    /// Locates the fault of the head in `buf`, which the parser refused: `refuses(prefix)`
    /// says whether the parser refuses `prefix` (rather than waiting for more bytes).
    pub fn locate(buf: &[u8], refuses: impl FnMut(&[u8]) -> bool) -> Diagnostic {
        let fault = first_refused_byte(buf, refuses);
        let (before, from_fault) = buf.split_at(fault);
        let line_start = before
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |newline| newline + 1);
        let (complete_lines, broken_line) = before.split_at(line_start);
        let phase = if complete_lines
            .iter()
            .all(|byte| matches!(byte, b'\r' | b'\n'))
        {
            Phase::StatusLine
        } else {
            Phase::Headers
        };
        Diagnostic {
            phase,
            successfully_parsed: hex_dump(complete_lines),
            partially_parsed: hex_dump(broken_line),
            invalid: hex_dump(from_fault),
        }
    }
}

/// The index of the byte with which the parser starts refusing `buf`: the last byte of the
/// shortest refused prefix, or 0 when even the whole of `buf` is accepted.
fn first_refused_byte(buf: &[u8], mut refuses: impl FnMut(&[u8]) -> bool) -> usize {
    // Invariant: the prefix of length `accepted` is not refused, that of length `refused` is.
    let (mut accepted, mut refused) = (0, buf.len());
    if !refuses(buf) {
        return 0;
    }
    while refused - accepted > 1 {
        let middle = accepted + (refused - accepted) / 2;
        if refuses(buf.get(..middle).unwrap_or(buf)) {
            refused = middle;
        } else {
            accepted = middle;
        }
    }
    refused.saturating_sub(1)
}

/// `bytes` as Sōzu shows them: two hex digits per byte separated by spaces, between double
/// quotes; past [`WINDOW`] bytes, the first and last bytes around ` … `.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(WINDOW * 3 + 8);
    out.push('"');
    let write = |out: &mut String, run: &[u8]| {
        for (index, byte) in run.iter().enumerate() {
            if index > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{byte:02x}");
        }
    };
    if bytes.len() <= WINDOW {
        write(&mut out, bytes);
    } else {
        let half = WINDOW / 2 - 1;
        let (head, _) = bytes.split_at(half);
        let (_, tail) = bytes.split_at(bytes.len() - half);
        write(&mut out, head);
        out.push_str(" … ");
        write(&mut out, tail);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parser::{Limits, parse_request_head};

    fn locate(head: &[u8]) -> Diagnostic {
        let limits = Limits::default();
        let mut headers = Vec::new();
        Diagnostic::locate(head, |prefix| {
            parse_request_head(prefix, &limits, b"", &mut headers).is_err()
        })
    }

    #[test]
    fn a_bad_field_line_is_split_at_its_fault() {
        let diagnostic = locate(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n");
        assert_eq!(diagnostic.phase, Phase::Headers);
        assert_eq!(
            diagnostic.successfully_parsed,
            hex_dump(b"GET / HTTP/1.1\r\nHost: a\r\n")
        );
        assert_eq!(diagnostic.partially_parsed, hex_dump(b"Bad"));
        assert_eq!(diagnostic.invalid, hex_dump(b" Name: x\r\n\r\n"));
    }

    #[test]
    fn a_bad_request_line_is_the_status_line_phase() {
        let diagnostic = locate(b"GET / HTTP/9\r\n\r\n");
        assert_eq!(diagnostic.phase, Phase::StatusLine);
        assert_eq!(diagnostic.successfully_parsed, "\"\"");
    }

    #[test]
    fn dumps_are_hex_and_long_runs_are_cut() {
        assert_eq!(hex_dump(b"GE\x00"), "\"47 45 00\"");
        let long = hex_dump(&[0xab; 100]);
        assert!(long.starts_with("\"ab ab"), "{long}");
        assert_eq!(long.matches("ab").count(), 30, "{long}");
        assert!(long.contains(" … "), "{long}");
    }
}
