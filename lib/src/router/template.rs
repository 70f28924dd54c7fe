//! Templates of `rewrite_host` and `rewrite_path`, compiled when a frontend is added and
//! expanded only for the requests its route takes.
//!
//! A template is text with these variables:
//!
//! - `$HOST[0]` (or `%HOST`): the request's hostname, without port or trailing dot;
//! - `$HOST[n]`, n ≥ 1: the n-th capture of the hostname pattern, counting in the order the
//!   labels are written: the label a leading `*` stands for, then the groups of each regex
//!   label (`/api([0-9]+)/.example.com` captures the digits as `$HOST[1]`);
//! - `$PATH[0]` (or `%PATH`): the request's path without its query, normalised as for routing;
//! - `$PATH[n]`, n ≥ 1: for a PREFIX rule, `$PATH[1]` is the rest of the path after the
//!   prefix; for a REGEX rule, `$PATH[n]` is its n-th group; an EQUALS rule has none;
//! - `%PORT`: the port of the request (the one in its Host, else the listener's).
//!
//! A capture that took no part in the match expands to nothing. A template that names a
//! capture its frontend cannot have is refused when the frontend is added. Any other `$` or
//! `%` is literal text, so `%20` stays as written.

use super::host::{self, HostPattern};
use super::path::PathMatcher;

/// Why a template was refused.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// `$HOST` or `$PATH` without a capture number in brackets.
    #[error("`${variable}` must be followed by a capture number in brackets, as `${variable}[1]`")]
    MissingIndex {
        /// `HOST` or `PATH`.
        variable: &'static str,
    },
    /// `$HOST[n]` or `$PATH[n]` names a capture the frontend's pattern does not have.
    #[error("`${variable}[{index}]` does not exist: this frontend has captures 0 to {last}")]
    NoSuchCapture {
        /// `HOST` or `PATH`.
        variable: &'static str,
        /// The capture number written.
        index: usize,
        /// The highest capture number the pattern has.
        last: usize,
    },
}

#[derive(Debug, Clone)]
enum Part {
    Text(Box<[u8]>),
    Host(usize),
    Path(usize),
    Port,
}

/// A template, checked against the captures its frontend provides.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `source` for a frontend providing `host_captures` and `path_captures` captures
    /// past the 0th.
    pub(crate) fn parse(
        source: &str,
        host_captures: usize,
        path_captures: usize,
    ) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut text = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find(['$', '%']) {
            let (before, from) = rest.split_at(at);
            text.extend_from_slice(before.as_bytes());
            let (part, after) = if let Some(after) = from.strip_prefix("$HOST") {
                capture("HOST", after, host_captures, Part::Host)?
            } else if let Some(after) = from.strip_prefix("$PATH") {
                capture("PATH", after, path_captures, Part::Path)?
            } else if let Some(after) = from.strip_prefix("%HOST") {
                (Some(Part::Host(0)), after)
            } else if let Some(after) = from.strip_prefix("%PATH") {
                (Some(Part::Path(0)), after)
            } else if let Some(after) = from.strip_prefix("%PORT") {
                (Some(Part::Port), after)
            } else {
                // A lone `$` or `%`: both are one byte long.
                let (sign, after) = from.split_at(1);
                text.extend_from_slice(sign.as_bytes());
                (None, after)
            };
            if let Some(part) = part {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text).into()));
                }
                parts.push(part);
            }
            rest = after;
        }
        text.extend_from_slice(rest.as_bytes());
        if !text.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Template { parts })
    }

    /// Appends the expansion to `out`.
    pub(crate) fn expand(&self, values: &Values<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Host(0) => out.extend_from_slice(values.host),
                Part::Host(n) => out.extend_from_slice(nth(&values.host_captures, *n)),
                Part::Path(0) => out.extend_from_slice(values.path),
                Part::Path(n) => out.extend_from_slice(nth(&values.path_captures, *n)),
                Part::Port => out.extend_from_slice(values.port.to_string().as_bytes()),
            }
        }
    }
}

/// Reads `[n]` after `$HOST` or `$PATH` and checks `n` against the captures available.
fn capture<'s>(
    variable: &'static str,
    after: &'s str,
    available: usize,
    part: fn(usize) -> Part,
) -> Result<(Option<Part>, &'s str), TemplateError> {
    let (digits, rest) = after
        .strip_prefix('[')
        .and_then(|inside| inside.split_once(']'))
        .ok_or(TemplateError::MissingIndex { variable })?;
    let index: usize = digits
        .parse()
        .map_err(|_| TemplateError::MissingIndex { variable })?;
    if index > available {
        return Err(TemplateError::NoSuchCapture {
            variable,
            index,
            last: available,
        });
    }
    Ok((Some(part(index)), rest))
}

/// The n-th capture (1-based), or nothing.
fn nth<'v>(captures: &[&'v [u8]], n: usize) -> &'v [u8] {
    n.checked_sub(1)
        .and_then(|i| captures.get(i))
        .copied()
        .unwrap_or_default()
}

/// What the variables of a template stand for, for one request.
pub(crate) struct Values<'r> {
    host: &'r [u8],
    host_captures: Vec<&'r [u8]>,
    path: &'r [u8],
    path_captures: Vec<&'r [u8]>,
    port: u16,
}

impl<'r> Values<'r> {
    /// The values for a request to `host` (`host[:port]`) and `path` (normalised, without
    /// query) that matched these patterns. `listener_port` stands for `%PORT` when the host
    /// has no port.
    pub(crate) fn new(
        host_pattern: &HostPattern,
        path_matcher: &PathMatcher,
        host: &'r [u8],
        path: &'r [u8],
        listener_port: u16,
    ) -> Self {
        let name = host::normalize(host);
        let mut host_captures = Vec::new();
        host_pattern.captures(name, &mut host_captures);
        let mut path_captures = Vec::new();
        path_matcher.captures(path, &mut path_captures);
        Values {
            host: name,
            host_captures,
            path,
            path_captures,
            port: host::port(host).unwrap_or(listener_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(source: &str, values: &Values<'_>) -> String {
        let Ok(template) = Template::parse(source, 2, 1) else {
            panic!("template refused: {source}");
        };
        let mut out = Vec::new();
        template.expand(values, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn values() -> Values<'static> {
        Values {
            host: b"api1.example.com",
            host_captures: vec![b"api1", b"1"],
            path: b"/v1/users",
            path_captures: vec![b"/users"],
            port: 8080,
        }
    }

    #[test]
    fn variables_are_replaced() {
        let values = values();
        assert_eq!(
            expand("$HOST[2].internal:%PORT$PATH[1]", &values),
            "1.internal:8080/users"
        );
        assert_eq!(expand("%HOST%PATH", &values), "api1.example.com/v1/users");
        assert_eq!(
            expand("$HOST[0]$PATH[0]", &values),
            "api1.example.com/v1/users"
        );
    }

    #[test]
    fn other_signs_are_text() {
        let values = values();
        assert_eq!(expand("/a%20b$x%", &values), "/a%20b$x%");
        assert_eq!(expand("", &values), "");
    }

    #[test]
    fn unknown_captures_are_refused() {
        assert!(matches!(
            Template::parse("$HOST[3]", 2, 0),
            Err(TemplateError::NoSuchCapture {
                variable: "HOST",
                index: 3,
                last: 2
            })
        ));
        assert!(matches!(
            Template::parse("$PATH[1]", 0, 0),
            Err(TemplateError::NoSuchCapture { .. })
        ));
        assert!(matches!(
            Template::parse("$PATH", 0, 0),
            Err(TemplateError::MissingIndex { variable: "PATH" })
        ));
        assert!(matches!(
            Template::parse("$HOST[x]", 1, 0),
            Err(TemplateError::MissingIndex { .. })
        ));
    }
}
