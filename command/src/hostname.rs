//! Hostname patterns of HTTP frontends: exact names, a leading `*` wildcard label, and labels
//! written as regular expressions between slashes.
//!
//! `api.example.com` matches itself; `*.example.com` matches one or more labels in front of
//! `example.com` (not `example.com` itself); `/api[0-9]+/.example.com` matches `api1.example.com`.
//! A regex label is anchored: it must match the whole label. Names compare case-insensitively,
//! so patterns are kept in lowercase (regex labels are compiled case-insensitive).

use std::fmt;

/// One label of a hostname pattern, in the order written (leftmost first).
#[derive(Debug, Clone)]
pub enum LabelPattern {
    /// A label compared without case (`example`).
    Exact(String),
    /// `*`, allowed as the leftmost label only.
    Wildcard,
    /// A regular expression between slashes (`/api[0-9]+/`), matching a whole label without case.
    Regex(regex::Regex),
}

impl PartialEq for LabelPattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (LabelPattern::Exact(a), LabelPattern::Exact(b)) => a == b,
            (LabelPattern::Wildcard, LabelPattern::Wildcard) => true,
            (LabelPattern::Regex(a), LabelPattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for LabelPattern {}

impl fmt::Display for LabelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelPattern::Exact(label) => f.write_str(label),
            LabelPattern::Wildcard => f.write_str("*"),
            LabelPattern::Regex(regex) => {
                let source = regex.as_str();
                let inner = source
                    .strip_prefix("(?i)^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(source);
                write!(f, "/{inner}/")
            }
        }
    }
}

/// Why a hostname pattern is refused.
#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    /// The pattern is empty.
    #[error("the hostname is empty")]
    Empty,
    /// The pattern is longer than 253 characters (the pattern given).
    #[error("the hostname `{0}` is longer than 253 characters")]
    TooLong(String),
    /// Two dots in a row, or a dot at an end.
    #[error("the hostname `{hostname}` has an empty label")]
    EmptyLabel {
        /// The pattern.
        hostname: String,
    },
    /// `*` elsewhere than the leftmost label.
    #[error("in hostname `{hostname}`, `*` is only allowed as the leftmost label")]
    MisplacedWildcard {
        /// The pattern.
        hostname: String,
    },
    /// A label with a character other than letters, digits, `-` and `_`.
    #[error(
        "in hostname `{hostname}`, the label `{label}` has a character other than letters, digits, `-` and `_`"
    )]
    InvalidCharacter {
        /// The pattern.
        hostname: String,
        /// The label.
        label: String,
    },
    /// A label starts with `/` and does not end with one.
    #[error("in hostname `{hostname}`, a regex label is not closed by `/`")]
    UnclosedRegex {
        /// The pattern.
        hostname: String,
    },
    /// A regex label that does not compile.
    #[error("in hostname `{hostname}`, invalid regex label `{label}`")]
    InvalidRegex {
        /// The pattern.
        hostname: String,
        /// The label.
        label: String,
        /// Why it does not compile.
        source: regex::Error,
    },
}

/// Splits and checks a hostname pattern.
///
/// A port suffix is not part of a pattern: frontends match hostnames with the port stripped.
pub fn parse_pattern(hostname: &str) -> Result<Vec<LabelPattern>, HostnameError> {
    let mut labels = Vec::new();
    walk_pattern(hostname, |label| {
        labels.push(match label {
            Checked::Exact(label) => LabelPattern::Exact(label.to_ascii_lowercase()),
            Checked::Wildcard => LabelPattern::Wildcard,
            Checked::Regex(regex) => LabelPattern::Regex(regex),
        });
    })?;
    Ok(labels)
}

/// Checks a hostname pattern as [`parse_pattern`] does, with the same errors, without
/// keeping its labels: the configuration reader and the check of each order only need to
/// know, and the main process checks each of 100,000 frontends several times at start.
pub fn check_pattern(hostname: &str) -> Result<(), HostnameError> {
    if is_plain_name(hostname) {
        return Ok(());
    }
    walk_pattern(hostname, drop)
}

/// Whether `hostname` is made of letters, digits, `-` and `_` in labels that are not empty,
/// at most 253 bytes: the common case, a pattern of exact labels only, told in one pass over
/// its bytes. Anything else (a wildcard, a regex, an IPv6 literal, an error) is for
/// [`walk_pattern`].
fn is_plain_name(hostname: &str) -> bool {
    if hostname.len() > 253 {
        return false;
    }
    let mut previous = b'.';
    for &byte in hostname.as_bytes() {
        let allowed = if byte == b'.' {
            previous != b'.'
        } else {
            byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
        };
        if !allowed {
            return false;
        }
        previous = byte;
    }
    previous != b'.'
}

/// A label of a pattern once checked.
enum Checked<'a> {
    /// As written (an IPv6 literal is one such label, brackets included).
    Exact(&'a str),
    Wildcard,
    Regex(regex::Regex),
}

/// Splits and checks a hostname pattern, giving `take` each label, leftmost first.
fn walk_pattern<'a>(
    hostname: &'a str,
    mut take: impl FnMut(Checked<'a>),
) -> Result<(), HostnameError> {
    if hostname.is_empty() {
        return Err(HostnameError::Empty);
    }
    if hostname.len() > 253 {
        return Err(HostnameError::TooLong(hostname.to_string()));
    }
    if let Some(literal) = hostname.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match literal.parse::<std::net::Ipv6Addr>() {
            Ok(_) => {
                take(Checked::Exact(hostname));
                Ok(())
            }
            Err(_) => Err(HostnameError::InvalidCharacter {
                hostname: hostname.to_string(),
                label: hostname.to_string(),
            }),
        };
    }
    let mut rest = hostname;
    let mut is_first = true;
    loop {
        let (label, remainder) = split_label(rest, hostname)?;
        take(label_pattern(label, hostname, is_first)?);
        is_first = false;
        match remainder {
            Some(remainder) => rest = remainder,
            None => return Ok(()),
        }
    }
}

/// The first label of `rest` and what follows its dot. A regex label runs to the next `/`
/// that ends the label, so it may contain dots.
fn split_label<'a>(
    rest: &'a str,
    hostname: &str,
) -> Result<(&'a str, Option<&'a str>), HostnameError> {
    let end = if let Some(body) = rest.strip_prefix('/') {
        let close = body
            .match_indices('/')
            .map(|(i, _)| i + 1)
            .find(|&i| matches!(rest.as_bytes().get(i + 1), None | Some(b'.')))
            .ok_or_else(|| HostnameError::UnclosedRegex {
                hostname: hostname.to_string(),
            })?;
        close + 1
    } else {
        rest.find('.').unwrap_or(rest.len())
    };
    let (label, after) = rest.split_at(end);
    match after.strip_prefix('.') {
        Some("") => Err(HostnameError::EmptyLabel {
            hostname: hostname.to_string(),
        }),
        Some(remainder) => Ok((label, Some(remainder))),
        None => Ok((label, None)),
    }
}

fn label_pattern<'a>(
    label: &'a str,
    hostname: &str,
    is_first: bool,
) -> Result<Checked<'a>, HostnameError> {
    if label.is_empty() {
        return Err(HostnameError::EmptyLabel {
            hostname: hostname.to_string(),
        });
    }
    if label == "*" {
        return if is_first {
            Ok(Checked::Wildcard)
        } else {
            Err(HostnameError::MisplacedWildcard {
                hostname: hostname.to_string(),
            })
        };
    }
    if let Some(source) = label.strip_prefix('/').and_then(|l| l.strip_suffix('/')) {
        return regex::Regex::new(&format!("(?i)^(?:{source})$"))
            .map(Checked::Regex)
            .map_err(|source| HostnameError::InvalidRegex {
                hostname: hostname.to_string(),
                label: label.to_string(),
                source,
            });
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(HostnameError::InvalidCharacter {
            hostname: hostname.to_string(),
            label: label.to_string(),
        });
    }
    Ok(Checked::Exact(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(hostname: &str) -> Vec<String> {
        parse_pattern(hostname)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn exact_names_are_lowercased() {
        assert_eq!(labels("API.Example.com"), ["api", "example", "com"]);
    }

    #[test]
    fn plain_names_take_the_short_check_and_nothing_else_does() {
        let longest = "a".repeat(253);
        for name in ["example.com", "h0.example.com", "a_b-c.D9", "x", &longest] {
            assert!(is_plain_name(name), "{name:?}");
            assert!(walk_pattern(name, drop).is_ok(), "{name:?}");
        }
        let too_long = "a".repeat(254);
        for name in [
            "",
            ".example.com",
            "example.com.",
            "a..b",
            "*.example.com",
            "/a.b/.com",
            "[::1]",
            "a b.com",
            "é.com",
            &too_long,
        ] {
            assert!(!is_plain_name(name), "{name:?}");
        }
    }

    #[test]
    fn wildcard_only_leftmost() {
        assert_eq!(labels("*.example.com"), ["*", "example", "com"]);
        assert!(matches!(
            parse_pattern("api.*.com"),
            Err(HostnameError::MisplacedWildcard { .. })
        ));
    }

    #[test]
    fn regex_label_may_contain_dots() {
        assert_eq!(
            labels("/a.c[0-9]/.example.com"),
            ["/a.c[0-9]/", "example", "com"]
        );
        let Ok(patterns) = parse_pattern("/api[0-9]+/.example.com") else {
            panic!("regex label refused");
        };
        let LabelPattern::Regex(regex) = &patterns[0] else {
            panic!("not a regex: {patterns:?}");
        };
        assert!(regex.is_match("API12"));
        assert!(!regex.is_match("xapi1"));
    }

    #[test]
    fn ipv6_literal_is_one_label() {
        assert_eq!(labels("[::1]"), ["[::1]"]);
        assert!(parse_pattern("[nope]").is_err());
    }

    /// Issue 17: the check without labels refuses exactly what the parser refuses, with the
    /// same message.
    #[test]
    fn checking_a_pattern_refuses_what_parsing_refuses() {
        let patterns = [
            "example.com",
            "API.Example.com",
            "*.example.com",
            "*",
            "api.*.com",
            "/a.c[0-9]/.example.com",
            "/api(/.com",
            "/api.com",
            "[::1]",
            "[nope]",
            "",
            "a..b",
            "example.com.",
            "exa mple.com",
            &"a".repeat(254),
        ];
        for pattern in patterns {
            let parsed = parse_pattern(pattern).map(drop).map_err(|e| e.to_string());
            let checked = check_pattern(pattern).map_err(|e| e.to_string());
            assert_eq!(checked, parsed, "{pattern}");
        }
    }

    #[test]
    fn invalid_patterns_say_why() {
        assert!(matches!(parse_pattern(""), Err(HostnameError::Empty)));
        assert!(matches!(
            parse_pattern("a..b"),
            Err(HostnameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            parse_pattern("example.com."),
            Err(HostnameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            parse_pattern("exa mple.com"),
            Err(HostnameError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            parse_pattern("/api(/.com"),
            Err(HostnameError::InvalidRegex { .. })
        ));
        assert!(matches!(
            parse_pattern("/api.com"),
            Err(HostnameError::UnclosedRegex { .. })
        ));
    }
}
