//! Responses the proxy writes itself: built-in pages for the errors and redirections it
//! generates, and the custom answers that replace them per listener or per cluster.
//!
//! A custom answer is either a whole HTTP response (it starts with `HTTP/`: status line,
//! header fields, empty line, body; LF or CRLF line ends) or only a body, which then gets the
//! built-in head of its status; [`sozu_command_lib::answer`] holds that syntax, shared with the
//! configuration loader. `Content-Length` and `Connection` are always computed by the proxy,
//! so an answer can never mis-frame the connection. Bodies and headers may hold variables,
//! replaced when the answer is sent:
//!
//! | variable | value |
//! |---|---|
//! | `%REQUEST_ID` | the request id (also sent in the request id header) |
//! | `%CLUSTER_ID`, `%BACKEND_ID` | the cluster and backend involved, or `-` |
//! | `%HOST`, `%PATH`, `%ROUTE` | the request's host, path, and both |
//! | `%STATUS`, `%TEMPLATE_NAME` | the status code (Sōzu names its templates by status) |
//! | `%DETAILS`, `%MESSAGE` | why the proxy answered, in words |
//! | `%REDIRECT_LOCATION` | the target of a redirection |
//! | `%WWW_AUTHENTICATE` | the authentication realm |
//! | `%RETRY_AFTER` | seconds before retrying, on 429 |
//! | `%DURATION` | the timeout that ran out, on 408 and 504 (`30s`), else empty |
//! | `%CAPACITY` | the buffer size in bytes a head did not fit in, on 431 and 502, else empty |
//! | `%PHASE` | where an invalid head broke (`StatusLine`, `Headers`), on 400, 414, 431, 502, 505, else empty |
//! | `%SUCCESSFULLY_PARSED`, `%PARTIALLY_PARSED`, `%INVALID` | for an invalid head: its bytes before the broken line, that line up to the fault, and the rest, in hex between quotes (Sōzu's form); else `null` |
//!
//! These are Sōzu's variables, and each is replaced in every answer (Sōzu offers each only
//! in some). Values are HTML-escaped in bodies, so a request cannot inject markup into an
//! error page; values the proxy makes itself (numbers, phases, hex dumps) are written as they
//! are, so that a page's script can read them.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

pub use sozu_command_lib::answer::AnswerError;
use sozu_command_lib::request::FixedAnswer;

use super::diagnostics::Diagnostic;

/// Everything a template may refer to.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnswerContext<'a> {
    pub request_id: &'a str,
    pub cluster_id: Option<&'a str>,
    pub backend_id: Option<&'a str>,
    pub host: &'a str,
    pub path: &'a str,
    pub details: &'a str,
    pub location: Option<&'a str>,
    pub www_authenticate: Option<&'a str>,
    pub retry_after: Option<u64>,
    /// The timeout that ran out.
    pub duration: Option<Duration>,
    /// The size of the buffer a head did not fit in.
    pub capacity: Option<usize>,
    /// Where an invalid head broke.
    pub diagnostic: Option<&'a Diagnostic>,
}

/// A response with variables, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub status: u16,
    reason: String,
    headers: Vec<(String, Text)>,
    body: Text,
}

/// Text with variables, split once when the template is made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Text(Vec<Piece>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variable {
    RequestId,
    ClusterId,
    BackendId,
    Host,
    Path,
    Route,
    Status,
    Details,
    RedirectLocation,
    WwwAuthenticate,
    RetryAfter,
    TemplateName,
    Message,
    Duration,
    Capacity,
    Phase,
    SuccessfullyParsed,
    PartiallyParsed,
    Invalid,
}

impl Variable {
    /// Whether the value may come from the request, and is then HTML-escaped in a body.
    fn is_from_request(self) -> bool {
        !matches!(
            self,
            Variable::Status
                | Variable::TemplateName
                | Variable::RetryAfter
                | Variable::Duration
                | Variable::Capacity
                | Variable::Phase
                | Variable::SuccessfullyParsed
                | Variable::PartiallyParsed
                | Variable::Invalid
        )
    }
}

const VARIABLES: [(&str, Variable); 19] = [
    ("%REQUEST_ID", Variable::RequestId),
    ("%CLUSTER_ID", Variable::ClusterId),
    ("%BACKEND_ID", Variable::BackendId),
    ("%HOST", Variable::Host),
    ("%PATH", Variable::Path),
    ("%ROUTE", Variable::Route),
    ("%STATUS", Variable::Status),
    ("%DETAILS", Variable::Details),
    ("%REDIRECT_LOCATION", Variable::RedirectLocation),
    ("%WWW_AUTHENTICATE", Variable::WwwAuthenticate),
    ("%RETRY_AFTER", Variable::RetryAfter),
    ("%TEMPLATE_NAME", Variable::TemplateName),
    ("%MESSAGE", Variable::Message),
    ("%DURATION", Variable::Duration),
    ("%CAPACITY", Variable::Capacity),
    ("%PHASE", Variable::Phase),
    ("%SUCCESSFULLY_PARSED", Variable::SuccessfullyParsed),
    ("%PARTIALLY_PARSED", Variable::PartiallyParsed),
    ("%INVALID", Variable::Invalid),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(Variable),
}

impl Text {
    /// Text taken as it is, without variables.
    fn literal(text: &str) -> Text {
        if text.is_empty() {
            return Text::default();
        }
        Text(vec![Piece::Literal(text.to_string())])
    }

    fn parse(source: &str) -> Text {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(position) = rest.find('%') {
            let (before, at) = rest.split_at(position);
            literal.push_str(before);
            match VARIABLES.iter().find(|(name, _)| at.starts_with(name)) {
                Some((name, variable)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Variable(*variable));
                    rest = at.get(name.len()..).unwrap_or_default();
                }
                None => {
                    literal.push('%');
                    rest = at.get(1..).unwrap_or_default();
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Text(pieces)
    }

    fn render(&self, status: u16, context: &AnswerContext<'_>, escape: bool, out: &mut String) {
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(variable) => {
                    let start = out.len();
                    write_variable(*variable, status, context, out);
                    if escape && variable.is_from_request() {
                        let value = out.split_off(start);
                        escape_html(&value, out);
                    }
                }
            }
        }
    }
}

fn write_variable(variable: Variable, status: u16, context: &AnswerContext<'_>, out: &mut String) {
    match variable {
        Variable::RequestId => out.push_str(context.request_id),
        Variable::ClusterId => out.push_str(context.cluster_id.unwrap_or("-")),
        Variable::BackendId => out.push_str(context.backend_id.unwrap_or("-")),
        Variable::Host => out.push_str(context.host),
        Variable::Path => out.push_str(context.path),
        Variable::Route => {
            out.push_str(context.host);
            out.push_str(context.path);
        }
        Variable::Status | Variable::TemplateName => {
            let _ = write!(out, "{status}");
        }
        Variable::Details | Variable::Message => out.push_str(context.details),
        Variable::RedirectLocation => out.push_str(context.location.unwrap_or_default()),
        Variable::WwwAuthenticate => out.push_str(context.www_authenticate.unwrap_or_default()),
        Variable::RetryAfter => {
            let _ = write!(out, "{}", context.retry_after.unwrap_or_default());
        }
        Variable::Duration => {
            if let Some(duration) = context.duration {
                let _ = write!(out, "{duration:?}");
            }
        }
        Variable::Capacity => {
            if let Some(capacity) = context.capacity {
                let _ = write!(out, "{capacity}");
            }
        }
        Variable::Phase => {
            if let Some(diagnostic) = context.diagnostic {
                out.push_str(diagnostic.phase.name());
            }
        }
        Variable::SuccessfullyParsed => out.push_str(
            context
                .diagnostic
                .map_or("null", |d| &d.successfully_parsed),
        ),
        Variable::PartiallyParsed => {
            out.push_str(context.diagnostic.map_or("null", |d| &d.partially_parsed))
        }
        Variable::Invalid => out.push_str(context.diagnostic.map_or("null", |d| &d.invalid)),
    }
}

fn escape_html(value: &str, out: &mut String) {
    for character in value.chars() {
        match character {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
}

/// The reason phrase of a status the proxy may send.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// What the built-in page of a status says.
fn builtin_message(status: u16) -> &'static str {
    match status {
        301 | 302 | 307 | 308 => {
            "This page has moved to <a href=\"%REDIRECT_LOCATION\">%REDIRECT_LOCATION</a>."
        }
        400 => "The request could not be understood: %DETAILS",
        401 => "This resource requires authentication.",
        404 => "No service is configured for %ROUTE.",
        405 => "This proxy does not open tunnels: %DETAILS",
        408 => "The request took too long to arrive.",
        413 => "The request body is larger than allowed.",
        414 => "The request target is longer than allowed.",
        421 => "This connection cannot serve requests for %HOST.",
        429 => "Too many connections from your address: retry in %RETRY_AFTER seconds.",
        431 => "The request header fields are larger than allowed.",
        502 => "The backend answered in a way the proxy could not forward: %DETAILS",
        503 => "No backend is available for this service: %DETAILS",
        504 => "The backend did not answer in time.",
        _ => "%DETAILS",
    }
}

impl Template {
    /// The built-in answer for `status`.
    pub fn builtin(status: u16) -> Template {
        let mut headers = vec![(
            "Content-Type".to_string(),
            Text::parse("text/html; charset=utf-8"),
        )];
        match status {
            301 | 302 | 307 | 308 => {
                headers.push(("Location".to_string(), Text::parse("%REDIRECT_LOCATION")))
            }
            401 => headers.push((
                "WWW-Authenticate".to_string(),
                Text::parse("Basic realm=\"%WWW_AUTHENTICATE\""),
            )),
            405 => headers.push(("Allow".to_string(), Text::parse(FORWARDED_METHODS))),
            429 => headers.push(("Retry-After".to_string(), Text::parse("%RETRY_AFTER"))),
            _ => {}
        }
        headers.push(("Cache-Control".to_string(), Text::parse("no-cache")));
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n<p>{message}</p>\n<p><small>request id: %REQUEST_ID</small></p></body></html>\n",
            reason = reason(status),
            message = builtin_message(status),
        );
        Template {
            status,
            reason: reason(status).to_string(),
            headers,
            body: Text::parse(&body),
        }
    }

    /// A custom answer for `status`: a whole response or only a body (see the module docs).
    pub fn custom(status: u16, text: &str) -> Result<Template, AnswerError> {
        let parsed = sozu_command_lib::answer::parse(status, text)?;
        if !parsed.is_response {
            let mut template = Template::builtin(status);
            template.body = Text::parse(parsed.body);
            return Ok(template);
        }
        Ok(Template {
            status: parsed.status,
            reason: parsed
                .reason
                .unwrap_or_else(|| reason(parsed.status))
                .to_string(),
            headers: parsed
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_string(), Text::parse(value)))
                .collect(),
            body: Text::parse(parsed.body),
        })
    }

    /// A redirect frontend's `redirect_template` for its redirect `status`: a custom answer
    /// (see the module docs) whose status line, if it has one, says `status`.
    pub fn redirect(status: u16, text: &str) -> Result<Template, AnswerError> {
        sozu_command_lib::answer::check_redirect_template(Some(status), text)?;
        Template::custom(status, text)
    }

    /// A frontend's fixed response, taken as it is (no variables). `Content-Length` and
    /// `Connection` are the proxy's; a body without a `Content-Type` gets the built-in one.
    pub fn fixed(answer: &FixedAnswer) -> Template {
        let mut headers: Vec<(String, Text)> = answer
            .headers
            .iter()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case("content-length")
                    && !name.eq_ignore_ascii_case("connection")
            })
            .map(|(name, value)| (name.clone(), Text::literal(value)))
            .collect();
        let has_content_type = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !has_content_type && !answer.body.is_empty() {
            headers.push((
                "Content-Type".to_string(),
                Text::literal("text/html; charset=utf-8"),
            ));
        }
        Template {
            status: answer.status,
            reason: reason(answer.status).to_string(),
            headers,
            body: Text::literal(&answer.body),
        }
    }

    /// Writes the response. `close` adds `Connection: close`; the caller closes after it.
    /// `extra` header lines (each ending with CRLF) are added, e.g. a request id.
    pub fn render(&self, context: &AnswerContext<'_>, close: bool, extra: &str, out: &mut Vec<u8>) {
        let mut body = String::new();
        self.body.render(self.status, context, true, &mut body);
        let mut head = String::with_capacity(256);
        let _ = write!(head, "HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            let start = head.len();
            value.render(self.status, context, false, &mut head);
            // A value may come from the request; never let it end the header line.
            let rendered = head.split_off(start);
            head.extend(rendered.chars().filter(|c| *c != '\r' && *c != '\n'));
            head.push_str("\r\n");
        }
        head.push_str(extra);
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "\r\n"
        });
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
    }
}

/// The statuses the proxy answers by itself, whose built-in pages are prepared up front.
pub const PROXY_STATUSES: [u16; 14] = [
    301, 400, 401, 404, 405, 408, 413, 414, 421, 429, 431, 502, 503, 504,
];

/// The `Allow` of a 405: the methods of RFC 9110 §9 and PATCH (RFC 5789). The proxy forwards
/// any method but CONNECT, which it refuses; a field cannot say "any", so it names the
/// registered methods it forwards.
pub const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/// The answers of one listener, with each cluster's own overrides.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    builtin: BTreeMap<u16, Template>,
    listener: BTreeMap<u16, Template>,
    clusters: BTreeMap<String, BTreeMap<u16, Template>>,
}

impl Answers {
    /// Templates from a listener's `answers` map.
    pub fn new(answers: &BTreeMap<u16, String>) -> Result<Answers, AnswerError> {
        Ok(Answers {
            builtin: PROXY_STATUSES
                .iter()
                .map(|&status| (status, Template::builtin(status)))
                .collect(),
            listener: parse_answers(answers)?,
            clusters: BTreeMap::new(),
        })
    }

    pub fn set_cluster(
        &mut self,
        cluster_id: &str,
        answers: &BTreeMap<u16, String>,
    ) -> Result<(), AnswerError> {
        self.set_cluster_templates(cluster_id, parse_answers(answers)?);
        Ok(())
    }

    /// Sets a cluster's answers, parsed already by [`parse_answers`].
    pub fn set_cluster_templates(&mut self, cluster_id: &str, templates: BTreeMap<u16, Template>) {
        if templates.is_empty() {
            self.clusters.remove(cluster_id);
        } else {
            self.clusters.insert(cluster_id.to_string(), templates);
        }
    }

    pub fn remove_cluster(&mut self, cluster_id: &str) {
        self.clusters.remove(cluster_id);
    }

    /// Writes the answer for `status`: the cluster's, else the listener's, else the built-in.
    pub fn render(
        &self,
        status: u16,
        context: &AnswerContext<'_>,
        close: bool,
        extra: &str,
        out: &mut Vec<u8>,
    ) {
        let custom = context
            .cluster_id
            .and_then(|cluster| self.clusters.get(cluster))
            .and_then(|templates| templates.get(&status))
            .or_else(|| self.listener.get(&status))
            .or_else(|| self.builtin.get(&status));
        match custom {
            Some(template) => template.render(context, close, extra, out),
            None => Template::builtin(status).render(context, close, extra, out),
        }
    }
}

/// Parses the custom answers of a listener or a cluster, by status.
pub fn parse_answers(
    answers: &BTreeMap<u16, String>,
) -> Result<BTreeMap<u16, Template>, AnswerError> {
    answers
        .iter()
        .map(|(status, text)| Template::custom(*status, text).map(|t| (*status, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &Template, context: &AnswerContext<'_>, close: bool) -> String {
        let mut out = Vec::new();
        template.render(context, close, "", &mut out);
        String::from_utf8(out).unwrap()
    }

    fn content_length_matches(response: &str) {
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{response}");
    }

    #[test]
    fn every_builtin_answer_is_well_framed() {
        for status in PROXY_STATUSES {
            let context = AnswerContext {
                request_id: "id-1",
                location: Some("https://example.com/"),
                www_authenticate: Some("realm"),
                retry_after: Some(60),
                ..AnswerContext::default()
            };
            let response = render(&Template::builtin(status), &context, true);
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{response}"
            );
            assert!(response.contains("Connection: close\r\n\r\n"));
            content_length_matches(&response);
        }
    }

    #[test]
    fn redirect_unauthorized_and_too_many_carry_their_headers() {
        let context = AnswerContext {
            location: Some("https://example.com/a"),
            www_authenticate: Some("admin"),
            retry_after: Some(30),
            ..AnswerContext::default()
        };
        assert!(
            render(&Template::builtin(301), &context, false)
                .contains("Location: https://example.com/a\r\n")
        );
        assert!(
            render(&Template::builtin(401), &context, false)
                .contains("WWW-Authenticate: Basic realm=\"admin\"\r\n")
        );
        assert!(render(&Template::builtin(429), &context, false).contains("Retry-After: 30\r\n"));
    }

    #[test]
    fn request_values_are_escaped_in_bodies_and_cannot_split_headers() {
        let context = AnswerContext {
            host: "<script>",
            path: "/x",
            location: Some("/a\r\nSet-Cookie: evil=1"),
            ..AnswerContext::default()
        };
        let response = render(&Template::builtin(404), &context, false);
        assert!(response.contains("&lt;script&gt;/x"), "{response}");
        assert!(!response.contains("<script>"));
        let response = render(&Template::builtin(301), &context, false);
        let (head, _) = response.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("\r\nSet-Cookie"), "{response}");
        assert!(
            head.contains("Location: /aSet-Cookie: evil=1\r\n"),
            "{response}"
        );
    }

    #[test]
    fn custom_body_keeps_the_builtin_head() {
        let template = Template::custom(503, "<p>down for %CLUSTER_ID</p>").unwrap();
        let context = AnswerContext {
            cluster_id: Some("api"),
            ..AnswerContext::default()
        };
        let response = render(&template, &context, true);
        assert!(response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(response.ends_with("<p>down for api</p>"));
        content_length_matches(&response);
    }

    #[test]
    fn custom_whole_response_with_lf_lines_is_reframed() {
        let text = "HTTP/1.1 503 Maintenance\nContent-Type: text/plain\nContent-Length: 999\nX-Why: %DETAILS\n\nback soon\n";
        let template = Template::custom(503, text).unwrap();
        let context = AnswerContext {
            details: "upgrade",
            ..AnswerContext::default()
        };
        let response = render(&template, &context, false);
        assert!(response.starts_with(
            "HTTP/1.1 503 Maintenance\r\nContent-Type: text/plain\r\nX-Why: upgrade\r\n"
        ));
        assert!(!response.contains("999"));
        content_length_matches(&response);
    }

    #[test]
    fn invalid_custom_answers_are_refused() {
        assert!(Template::custom(503, "HTTP/1.1 abc Nope\r\n\r\n").is_err());
        assert!(Template::custom(503, "HTTP/1.1 503 X\r\nbad header\r\n\r\n").is_err());
        assert!(Template::custom(999, "body").is_err());
    }

    #[test]
    fn cluster_answers_override_listener_answers() {
        let listener = BTreeMap::from([(503, "listener".to_string())]);
        let mut answers = Answers::new(&listener).unwrap();
        answers
            .set_cluster("api", &BTreeMap::from([(503, "cluster".to_string())]))
            .unwrap();
        let mut out = Vec::new();
        let context = AnswerContext {
            cluster_id: Some("api"),
            ..AnswerContext::default()
        };
        answers.render(503, &context, true, "", &mut out);
        assert!(out.ends_with(b"cluster"));
        out.clear();
        answers.render(503, &AnswerContext::default(), true, "", &mut out);
        assert!(out.ends_with(b"listener"));
        out.clear();
        answers.render(404, &AnswerContext::default(), true, "", &mut out);
        assert!(String::from_utf8(out).unwrap().contains("404 Not Found"));
    }

    #[test]
    fn fixed_answer_is_taken_literally_and_reframed() {
        let answer = FixedAnswer {
            status: 200,
            headers: vec![
                ("X-Fixed".to_string(), "%HOST".to_string()),
                ("Content-Length".to_string(), "1".to_string()),
                ("Connection".to_string(), "keep-alive".to_string()),
            ],
            body: "100% %HOST".to_string(),
        };
        let context = AnswerContext {
            host: "example.com",
            ..AnswerContext::default()
        };
        let response = render(&Template::fixed(&answer), &context, true);
        assert_eq!(
            response,
            "HTTP/1.1 200 OK\r\nX-Fixed: %HOST\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\n100% %HOST"
        );
        let empty = FixedAnswer {
            status: 204,
            headers: Vec::new(),
            body: String::new(),
        };
        let response = render(&Template::fixed(&empty), &context, false);
        assert_eq!(
            response,
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
