//! The syntax of custom answers: the pages that replace the proxy's built-in ones on a listener
//! or a cluster, by status code.
//!
//! A custom answer is either a whole HTTP response (it starts with `HTTP/`: status line,
//! header fields, empty line, body; LF or CRLF line ends) or only a body, which then gets the
//! built-in head of its status. `Content-Length` and `Connection` lines are dropped, since the
//! proxy writes its own, and `Transfer-Encoding` is refused: an answer is sent in one piece.
//! The configuration loader and the order rules ([`crate::rules`]) parse answers here; the
//! worker renders what this module accepts.

use crate::rules::{self, TOKEN};

/// The statuses whose built-in page can be replaced.
pub const CUSTOM_STATUSES: [u16; 16] = [
    301, 400, 401, 404, 405, 408, 413, 414, 421, 429, 431, 502, 503, 504, 505, 507,
];

/// Why a custom answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// A status outside 100 to 599 (the status given).
    #[error("invalid status {0}: expected 100 to 599")]
    Status(u16),
    /// The answer is longer than [`rules::MAX_ANSWER`] bytes (its length).
    #[error("the answer is {0} bytes long: at most {max} bytes", max = rules::MAX_ANSWER)]
    TooLong(usize),
    /// A text starting with `HTTP/` whose status line is malformed.
    #[error(
        "the answer starts with `HTTP/` but its status line is not `HTTP/1.x CODE REASON` with a \
         code from 100 to 599 and a reason of visible characters"
    )]
    StatusLine,
    /// A header line of a whole response is not `Name: value`.
    #[error(
        "the header line `{line}` is not `Name: value` with a token name and a value of \
             visible characters, spaces and tabs"
    )]
    HeaderLine {
        /// The line, as written.
        line: String,
    },
    /// A `redirect_template` whose status line is not the status of its frontend's redirect.
    #[error("the template answers {found}, but its frontend redirects with {expected}")]
    RedirectStatus {
        /// The status of the frontend's `redirect` policy.
        expected: u16,
        /// The status of the template's status line.
        found: u16,
    },
}

/// A custom answer, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnswer<'a> {
    /// The status sent: the one of the status line for a whole response.
    pub status: u16,
    /// The reason phrase of a whole response's status line, if it has one.
    pub reason: Option<&'a str>,
    /// The header fields of a whole response, `Content-Length` and `Connection` left out; a
    /// body alone has none (it gets the built-in head).
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body sent.
    pub body: &'a str,
    /// Whether the text is a whole response rather than a body.
    pub is_response: bool,
}

/// Splits and checks the custom answer `text` for `status`.
pub fn parse(status: u16, text: &str) -> Result<ParsedAnswer<'_>, AnswerError> {
    if !(100..=599).contains(&status) {
        return Err(AnswerError::Status(status));
    }
    if text.len() > rules::MAX_ANSWER {
        return Err(AnswerError::TooLong(text.len()));
    }
    if !text.starts_with("HTTP/") {
        return Ok(ParsedAnswer {
            status,
            reason: None,
            headers: Vec::new(),
            body: text,
            is_response: false,
        });
    }
    let (head, body) = split_head(text);
    let mut lines = head.split('\n').map(|line| line.trim_end_matches('\r'));
    let (code, reason) = status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        let invalid = || AnswerError::HeaderLine {
            line: line.chars().take(100).collect(),
        };
        let (name, value) = line.split_once(':').ok_or_else(invalid)?;
        let value = value.trim_matches([' ', '\t']);
        check_header_name(name).map_err(|_| invalid())?;
        rules::HEADER_VALUE.check(value).map_err(|_| invalid())?;
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        headers.push((name, value));
    }
    Ok(ParsedAnswer {
        status: code,
        reason,
        headers,
        body,
        is_response: true,
    })
}

/// Checks a frontend's `redirect_template` (Sōzu's meaning: the whole redirection answer, where
/// `%REDIRECT_LOCATION` stands for the computed Location) for a frontend redirecting with
/// `status`: a custom answer, whose status line, if it has one, says `status`. A frontend that
/// does not redirect (`None`) never sends its template, which is then only checked as an
/// answer.
pub fn check_redirect_template(status: Option<u16>, text: &str) -> Result<(), AnswerError> {
    let parsed = parse(status.unwrap_or(301), text)?;
    match status {
        Some(expected) if parsed.status != expected => Err(AnswerError::RedirectStatus {
            expected,
            found: parsed.status,
        }),
        _ => Ok(()),
    }
}

/// `HTTP/1.x CODE REASON`, the reason optional.
fn status_line(line: &str) -> Result<(u16, Option<&str>), AnswerError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..=599).contains(code));
    let reason = parts.next().map(|reason| reason.trim_matches([' ', '\t']));
    match code {
        Some(code)
            if version.starts_with("HTTP/1.")
                && reason.is_none_or(|reason| reason.bytes().all(rules::is_field_value_byte)) =>
        {
            Ok((code, reason.filter(|reason| !reason.is_empty())))
        }
        _ => Err(AnswerError::StatusLine),
    }
}

/// A header name an answer may carry: a token, and not `Transfer-Encoding`.
pub fn check_header_name(name: &str) -> Result<(), &'static str> {
    TOKEN.check(name)?;
    if name.eq_ignore_ascii_case("transfer-encoding") {
        return Err("a header name other than Transfer-Encoding (an answer has a Content-Length)");
    }
    Ok(())
}

/// Splits a response text at its empty line (CRLF or LF).
fn split_head(text: &str) -> (&str, &str) {
    for separator in ["\r\n\r\n", "\n\n"] {
        if let Some(position) = text.find(separator) {
            let (head, rest) = text.split_at(position);
            return (head, rest.get(separator.len()..).unwrap_or_default());
        }
    }
    (text, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_alone_keeps_its_status() {
        let parsed = parse(503, "<p>down</p>").unwrap();
        assert!(!parsed.is_response);
        assert_eq!((parsed.status, parsed.body), (503, "<p>down</p>"));
    }

    #[test]
    fn a_whole_response_is_split_and_its_framing_dropped() {
        let text =
            "HTTP/1.1 503 Busy\r\nX-A: 1\r\nContent-Length: 9\r\nConnection: close\r\n\r\nbody";
        let parsed = parse(503, text).unwrap();
        assert_eq!(parsed.reason, Some("Busy"));
        assert_eq!(parsed.headers, [("X-A", "1")]);
        assert_eq!(parsed.body, "body");
        let parsed = parse(503, "HTTP/1.1 503\n\nx").unwrap();
        assert_eq!((parsed.reason, parsed.body), (None, "x"));
    }

    #[test]
    fn bytes_that_break_a_head_are_refused() {
        assert_eq!(parse(999, "x"), Err(AnswerError::Status(999)));
        assert_eq!(
            parse(503, "HTTP/1.1 abc Nope\r\n\r\n"),
            Err(AnswerError::StatusLine)
        );
        assert_eq!(
            parse(503, "HTTP/1.1 503 A\rB\r\n\r\n"),
            Err(AnswerError::StatusLine)
        );
        for head in [
            "HTTP/1.1 503 X\r\nbad header\r\n\r\n",
            "HTTP/1.1 503 X\r\nA: b\rInjected: 1\r\n\r\n",
            "HTTP/1.1 503 X\r\nA: b\0\r\n\r\n",
            "HTTP/1.1 503 X\r\nA B: c\r\n\r\n",
        ] {
            assert!(
                matches!(parse(503, head), Err(AnswerError::HeaderLine { .. })),
                "{head:?}"
            );
        }
        assert_eq!(
            parse(503, "HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(AnswerError::HeaderLine {
                line: "Transfer-Encoding: chunked".to_string()
            })
        );
        assert!(matches!(
            parse(503, &"x".repeat(rules::MAX_ANSWER + 1)),
            Err(AnswerError::TooLong(_))
        ));
    }

    #[test]
    fn a_redirect_template_answers_with_its_frontends_status() {
        let template = "HTTP/1.1 301 Moved Permanently\r\nLocation: %REDIRECT_LOCATION\r\n\r\n";
        assert_eq!(check_redirect_template(Some(301), template), Ok(()));
        assert_eq!(check_redirect_template(None, template), Ok(()));
        assert_eq!(
            check_redirect_template(Some(308), "moved to %REDIRECT_LOCATION"),
            Ok(())
        );
        assert_eq!(
            check_redirect_template(Some(302), template),
            Err(AnswerError::RedirectStatus {
                expected: 302,
                found: 301
            })
        );
        assert_eq!(
            check_redirect_template(Some(301), "HTTP/1.1 x\r\n\r\n"),
            Err(AnswerError::StatusLine)
        );
    }
}
