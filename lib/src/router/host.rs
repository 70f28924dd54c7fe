//! Hostnames as requests carry them, and the hostname pattern of one frontend.
//!
//! A request's `host[:port]` is reduced to its hostname by [`normalize`]; labels are then read
//! with ASCII case folding, so nothing is allocated to compare them. Patterns come from
//! [`sozu_command_lib::hostname::parse_pattern`]; this module only adds the catch-all `*`.

use sozu_command_lib::hostname::{HostnameError, LabelPattern, check_pattern, parse_pattern};

/// The longest hostname a pattern other than `*` can match, as in DNS.
pub(crate) const MAX_NAME: usize = 253;

/// The hostname of `host[:port]`: the port and one trailing dot removed.
///
/// `Example.COM.:8080` gives `Example.COM`, `[::1]:8080` gives `[::1]`. The case is kept:
/// every comparison folds it.
pub(crate) fn normalize(host: &[u8]) -> &[u8] {
    // The port is the digits after the last colon; scanning from the right reads only them,
    // and stops before the colons of an IPv6 literal (`[::1]:80`, `[::1]`).
    let name = match host.iter().rposition(|b| !b.is_ascii_digit()) {
        Some(colon) if host.get(colon) == Some(&b':') => host.split_at(colon).0,
        _ => host,
    };
    name.strip_suffix(b".").unwrap_or(name)
}

/// The port written after a hostname, if there is a valid one.
pub(crate) fn port(host: &[u8]) -> Option<u16> {
    let after_name = host.get(normalize(host).len()..)?;
    let digits = after_name.strip_prefix(b".").unwrap_or(after_name);
    std::str::from_utf8(digits.strip_prefix(b":")?)
        .ok()?
        .parse()
        .ok()
}

/// The rightmost label of a normalized hostname, and the labels left of it.
///
/// An IPv6 literal is a single label even though it may contain dots (`[::ffff:1.2.3.4]`).
pub(crate) fn split_last_label(name: &[u8]) -> (&[u8], Option<&[u8]>) {
    if name.first() == Some(&b'[') {
        return (name, None);
    }
    // Labels are short: a plain scan beats `memrchr` and its set-up.
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => {
            let (left, dot_and_label) = name.split_at(dot);
            (dot_and_label.get(1..).unwrap_or_default(), Some(left))
        }
        None => (name, None),
    }
}

/// The labels of a normalized hostname, leftmost first.
fn labels(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let is_literal = name.first() == Some(&b'[');
    name.split(move |&b| b == b'.' && !is_literal)
}

/// Whether a label written in a request matches one label of a pattern.
///
/// An empty label matches nothing: a pattern has no empty label.
pub(crate) fn label_matches(pattern: &LabelPattern, label: &[u8]) -> bool {
    if label.is_empty() {
        return false;
    }
    match pattern {
        LabelPattern::Exact(exact) => exact.as_bytes().eq_ignore_ascii_case(label),
        LabelPattern::Wildcard => true,
        LabelPattern::Regex(regex) => std::str::from_utf8(label).is_ok_and(|l| regex.is_match(l)),
    }
}

/// The hostname pattern of a frontend.
#[derive(Debug, Clone)]
pub(crate) enum HostPattern {
    /// `*` alone: every non-empty hostname (even one longer than [`MAX_NAME`]), tried after
    /// every other pattern of its position.
    Any,
    /// Exact labels only: the lowercase hostname, labels joined by dots. One allocation
    /// instead of one per label, as a router holds one per frontend.
    Exact(Box<[u8]>),
    /// Exact labels only, written in lowercase (the common case): the name is the hostname
    /// the pattern was parsed from, which the route holds (it is given to
    /// [`HostPattern::key`]), read from there instead of copied: a worker saves an
    /// allocation per frontend.
    AsWritten,
    /// Labels leftmost first, as [`parse_pattern`] gives them, at least one of them a wildcard
    /// or a regex; a wildcard stands for exactly one label and only comes first. Matches
    /// hostnames of at most [`MAX_NAME`] bytes.
    Labels(Box<[LabelPattern]>),
}

impl HostPattern {
    /// The pattern of `hostname`; [`HostPattern::key`] must then be given the same hostname.
    pub(crate) fn parse(hostname: &str) -> Result<Self, HostnameError> {
        // Without a wildcard, a regex or an IPv6 literal, every label is exact: checking the
        // name is enough (one pass over its bytes for the common name), and its labels need
        // not be split, copied and joined again. A worker compiles a route per frontend.
        let is_exact = !hostname.bytes().any(|b| matches!(b, b'*' | b'/' | b'['));
        if is_exact {
            check_pattern(hostname)?;
            return Ok(if hostname.bytes().any(|b| b.is_ascii_uppercase()) {
                HostPattern::Exact(hostname.to_ascii_lowercase().into_bytes().into())
            } else {
                HostPattern::AsWritten
            });
        }
        let labels = parse_pattern(hostname)?;
        Ok(match labels.as_slice() {
            [LabelPattern::Wildcard] => HostPattern::Any,
            _ => match exact_name(&labels) {
                Some(name) if *name == *hostname.as_bytes() => HostPattern::AsWritten,
                Some(name) => HostPattern::Exact(name),
                None => HostPattern::Labels(labels.into()),
            },
        })
    }

    /// How the pattern is filed and matched; `written` is the hostname of the frontend it
    /// was parsed from.
    pub(crate) fn key<'a>(&'a self, written: &'a str) -> HostKey<'a> {
        match self {
            HostPattern::Any => HostKey::Any,
            HostPattern::Exact(name) => HostKey::Exact(name),
            HostPattern::AsWritten => HostKey::Exact(written.as_bytes()),
            HostPattern::Labels(labels) => HostKey::Labels(labels),
        }
    }

    /// How many `$HOST[n]` captures, past `$HOST[0]`, a match provides: one for a wildcard,
    /// and the groups of each regex label.
    pub(crate) fn capture_count(&self) -> usize {
        match self {
            HostPattern::Any | HostPattern::Exact(_) | HostPattern::AsWritten => 0,
            HostPattern::Labels(patterns) => patterns
                .iter()
                .map(|pattern| match pattern {
                    LabelPattern::Exact(_) => 0,
                    LabelPattern::Wildcard => 1,
                    LabelPattern::Regex(regex) => regex.captures_len().saturating_sub(1),
                })
                .sum(),
        }
    }

    /// Pushes the captures `$HOST[1]`… of a normalized hostname this pattern matched, in the
    /// order the labels are written. A group that took no part in the match captures nothing.
    pub(crate) fn captures<'h>(&self, name: &'h [u8], out: &mut Vec<&'h [u8]>) {
        let HostPattern::Labels(patterns) = self else {
            return;
        };
        for (pattern, label) in patterns.iter().zip(labels(name)) {
            match pattern {
                LabelPattern::Exact(_) => {}
                LabelPattern::Wildcard => out.push(label),
                LabelPattern::Regex(regex) => {
                    let groups = regex.captures_len().saturating_sub(1);
                    let found = std::str::from_utf8(label)
                        .ok()
                        .and_then(|l| regex.captures(l));
                    out.extend((1..=groups).map(|i| {
                        found
                            .as_ref()
                            .and_then(|c| c.get(i))
                            .map_or(&b""[..], |m| m.as_str().as_bytes())
                    }));
                }
            }
        }
    }
}

/// A hostname pattern as the tree files it, its name borrowed from the route.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HostKey<'a> {
    /// `*` alone.
    Any,
    /// The lowercase hostname of exact labels.
    Exact(&'a [u8]),
    /// Labels leftmost first, one of them a wildcard or a regex.
    Labels(&'a [LabelPattern]),
}

impl HostKey<'_> {
    /// Whether a normalized hostname matches, label by label.
    pub(crate) fn matches(self, name: &[u8]) -> bool {
        match self {
            HostKey::Any => !name.is_empty(),
            // Equal bytes are equal labels: both sides split at the same dots.
            HostKey::Exact(exact) => name.len() <= MAX_NAME && exact.eq_ignore_ascii_case(name),
            HostKey::Labels(patterns) => {
                if name.len() > MAX_NAME {
                    return false;
                }
                let mut labels = labels(name);
                patterns
                    .iter()
                    .all(|pattern| labels.next().is_some_and(|l| label_matches(pattern, l)))
                    && labels.next().is_none()
            }
        }
    }
}

/// The hostname of exact labels joined by dots, or `None` when a label is a wildcard or a
/// regex.
fn exact_name(labels: &[LabelPattern]) -> Option<Box<[u8]>> {
    let mut name = Vec::new();
    for label in labels {
        let LabelPattern::Exact(label) = label else {
            return None;
        };
        if !name.is_empty() {
            name.push(b'.');
        }
        name.extend_from_slice(label.as_bytes());
    }
    Some(name.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_port_and_trailing_dot() {
        assert_eq!(normalize(b"Example.com:8080"), b"Example.com");
        assert_eq!(normalize(b"example.com."), b"example.com");
        assert_eq!(normalize(b"example.com.:80"), b"example.com");
        assert_eq!(normalize(b"[::1]:8080"), b"[::1]");
        assert_eq!(normalize(b"[::1]"), b"[::1]");
        assert_eq!(normalize(b"[::ffff:1.2.3.4]"), b"[::ffff:1.2.3.4]");
        assert_eq!(normalize(b"example.com:"), b"example.com");
        assert_eq!(normalize(b""), b"");
    }

    #[test]
    fn port_is_read_after_the_name() {
        assert_eq!(port(b"example.com:8080"), Some(8080));
        assert_eq!(port(b"example.com.:81"), Some(81));
        assert_eq!(port(b"[::1]:443"), Some(443));
        assert_eq!(port(b"example.com"), None);
        assert_eq!(port(b"example.com:x"), None);
    }

    #[test]
    fn labels_are_split_from_the_right() {
        assert_eq!(split_last_label(b"a.b.c"), (&b"c"[..], Some(&b"a.b"[..])));
        assert_eq!(split_last_label(b"c"), (&b"c"[..], None));
        assert_eq!(
            split_last_label(b"[::ffff:1.2.3.4]"),
            (&b"[::ffff:1.2.3.4]"[..], None)
        );
    }

    #[test]
    fn a_pattern_of_exact_labels_is_one_name() {
        let Ok(HostPattern::Exact(name)) = HostPattern::parse("API.Example.com") else {
            panic!("exact labels give an exact name");
        };
        assert_eq!(&*name, b"api.example.com");
        let pattern = HostPattern::Exact(name);
        let key = pattern.key("API.Example.com");
        assert!(key.matches(b"api.EXAMPLE.com"));
        assert!(!key.matches(b"api.example.co"));
        assert!(!key.matches(b"x.api.example.com"));
        assert_eq!(pattern.capture_count(), 0);
        assert!(matches!(
            HostPattern::parse("*.example.com"),
            Ok(HostPattern::Labels(_))
        ));
    }

    #[test]
    fn a_lowercase_name_is_shared_with_the_frontend() {
        let parse = |hostname: &str| match HostPattern::parse(hostname) {
            Ok(pattern) => pattern,
            Err(error) => panic!("{hostname} refused: {error}"),
        };
        let shared = parse("api.example.com");
        assert!(matches!(shared, HostPattern::AsWritten));
        assert!(matches!(
            shared.key("api.example.com"),
            HostKey::Exact(b"api.example.com")
        ));
        assert!(shared.key("api.example.com").matches(b"API.example.com"));
        assert_eq!(shared.capture_count(), 0);
        assert!(matches!(parse("[::1]"), HostPattern::AsWritten));
        // Written otherwise than the lowercase name: the name is kept.
        assert!(matches!(parse("API.example.com"), HostPattern::Exact(_)));
        assert!(matches!(parse("[::FFFF:1.2.3.4]"), HostPattern::Exact(_)));
        assert!(matches!(parse("*.example.com"), HostPattern::Labels(_)));
        assert!(matches!(parse("*"), HostPattern::Any));
    }

    /// What [`HostPattern::parse`] gives, taken from the labels [`parse_pattern`] splits: the
    /// short way for names of exact labels must agree with it, errors included.
    #[test]
    fn exact_names_parse_as_their_labels_say() {
        let names = [
            "example.com",
            "a-b_c.d9.example",
            "Example.COM",
            "x",
            "",
            ".",
            "a..b",
            "a.",
            ".a",
            "a b.com",
            "é.com",
            "a.*.com",
            "*.example.com",
            "*",
            "/a+/.com",
            "[::1]",
            "[::1",
            "api.example.com:8080",
        ];
        let long = format!("{}.com", "a".repeat(250));
        for hostname in names.iter().copied().chain([long.as_str()]) {
            match (HostPattern::parse(hostname), parse_pattern(hostname)) {
                (Err(error), Err(expected)) => {
                    assert_eq!(error.to_string(), expected.to_string(), "{hostname}");
                }
                (Ok(pattern), Ok(labels)) => match (&pattern, exact_name(&labels)) {
                    (HostPattern::Any, _) => assert_eq!(labels, [LabelPattern::Wildcard]),
                    (HostPattern::Labels(own), None) => assert_eq!(**own, *labels),
                    (HostPattern::Exact(_) | HostPattern::AsWritten, Some(name)) => {
                        assert!(
                            matches!(pattern.key(hostname), HostKey::Exact(own) if *own == *name),
                            "{hostname}"
                        );
                    }
                    _ => panic!("{hostname}: {pattern:?} from {labels:?}"),
                },
                (parsed, expected) => panic!("{hostname}: {parsed:?} against {expected:?}"),
            }
        }
    }

    #[test]
    fn pattern_captures_follow_the_written_order() {
        let Ok(pattern) = HostPattern::parse("/(a)b/./c(d)?/.com") else {
            panic!("pattern refused");
        };
        assert_eq!(pattern.capture_count(), 2);
        let mut captures = Vec::new();
        pattern.captures(b"AB.c.com", &mut captures);
        assert_eq!(captures, [&b"A"[..], &b""[..]]);
    }
}
