//! Path rules: which paths of a hostname a frontend takes, and in which order the frontends of
//! one hostname are tried.
//!
//! Rules see the path without its query (`/a?b=c` is matched as `/a`), normalised (see
//! `normalize`). For one hostname:
//!
//! 1. EQUALS rules, whose value is the whole path;
//! 2. REGEX rules, in the order they were added (`is_match`, so unanchored unless the
//!    expression says `^` or `$`, as in Sōzu);
//! 3. PREFIX rules, the longest prefix first (the empty prefix takes every path).
//!
//! A frontend with a method only takes requests with exactly that method; between an EQUALS
//! or PREFIX rule with a method and the same rule without, the one with a method comes first.

use regex::bytes::Regex;
use sozu_command_lib::request::{PathRule, PathRuleKind};

use super::{Route, RouterError, host::HostKey, normalize::normalize_percent_encoding, same_bytes};

/// The path of a request target without its query.
pub(crate) fn without_query(path: &[u8]) -> &[u8] {
    // `memchr` pays off past a few dozen bytes; most paths are shorter.
    let question = if path.len() < 32 {
        path.iter().position(|&b| b == b'?')
    } else {
        memchr::memchr(b'?', path)
    };
    match question {
        Some(question) => path.split_at(question).0,
        None => path,
    }
}

/// The query of a request target, without its `?`, if it has one.
pub(crate) fn query(path: &[u8]) -> Option<&[u8]> {
    path.get(without_query(path).len()..)?.strip_prefix(b"?")
}

/// A compiled path rule.
#[derive(Debug, Clone)]
pub(crate) enum PathMatcher {
    Prefix(Box<[u8]>),
    Equals(Box<[u8]>),
    Regex(Regex),
}

impl PathMatcher {
    /// Compiles a rule; PREFIX and EQUALS values get their percent-encoding normalised, as
    /// request paths do.
    pub(crate) fn new(rule: &PathRule) -> Result<Self, RouterError> {
        let value = normalize_percent_encoding(rule.value.as_bytes()).into();
        Ok(match rule.kind {
            PathRuleKind::Prefix => PathMatcher::Prefix(value),
            PathRuleKind::Equals => PathMatcher::Equals(value),
            PathRuleKind::Regex => {
                PathMatcher::Regex(Regex::new(&rule.value).map_err(|source| {
                    RouterError::PathRegex {
                        path: rule.value.clone(),
                        source,
                    }
                })?)
            }
        })
    }

    /// Whether a path without query matches.
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatcher::Prefix(prefix) => path
                .get(..prefix.len())
                .is_some_and(|start| same_bytes(start, prefix)),
            PathMatcher::Equals(value) => same_bytes(path, value),
            PathMatcher::Regex(regex) => regex.is_match(path),
        }
    }

    /// How many `$PATH[n]` captures, past `$PATH[0]`, a match provides: the rest of the path
    /// after a prefix, or the groups of a regex.
    pub(crate) fn capture_count(&self) -> usize {
        match self {
            PathMatcher::Prefix(_) => 1,
            PathMatcher::Equals(_) => 0,
            PathMatcher::Regex(regex) => regex.captures_len().saturating_sub(1),
        }
    }

    /// Pushes the captures `$PATH[1]`… of a path without query that this rule matched. A
    /// group that took no part in the match captures nothing.
    pub(crate) fn captures<'p>(&self, path: &'p [u8], out: &mut Vec<&'p [u8]>) {
        match self {
            PathMatcher::Prefix(prefix) => out.push(path.get(prefix.len()..).unwrap_or_default()),
            PathMatcher::Equals(_) => {}
            PathMatcher::Regex(regex) => {
                let found = regex.captures(path);
                out.extend((1..regex.captures_len()).map(|i| {
                    found
                        .as_ref()
                        .and_then(|c| c.get(i))
                        .map_or(&b""[..], |m| m.as_bytes())
                }));
            }
        }
    }
}

/// The frontends of one hostname, kept in the order they are tried (see the module doc).
///
/// Invariant: the routes are sorted by [`rank`]: EQUALS rules (those with a method first),
/// then REGEX rules in insertion order, then PREFIX rules by decreasing prefix length (those
/// with a method first); routes of equal rank stay in insertion order. One list rather than
/// one per kind: a router holds one `PathRules` per hostname, most with a single rule.
#[derive(Debug, Default)]
pub(crate) struct PathRules {
    routes: Vec<Route>,
}

impl PathRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub(crate) fn insert(&mut self, route: Route) {
        // Most hostnames have one rule: a first push would reserve room for four routes.
        if self.routes.is_empty() {
            self.routes.reserve_exact(1);
        }
        let new = rank(&route);
        let at = self.routes.partition_point(|r| rank(r) <= new);
        self.routes.insert(at, route);
    }

    /// The first frontend that takes this path (without query) and method.
    pub(crate) fn find(&self, path: &[u8], method: &[u8]) -> Option<&Route> {
        self.routes.iter().find(|route| route.takes(path, method))
    }

    /// Removes and returns the first frontend for which `is_target` holds.
    pub(crate) fn remove(&mut self, is_target: impl Fn(&Route) -> bool) -> Option<Route> {
        let index = self.routes.iter().position(is_target)?;
        Some(self.routes.remove(index))
    }

    /// The lowercase hostname of these rules when it is made of exact labels: every route
    /// of one `PathRules` has the same hostname pattern.
    pub(crate) fn exact_name(&self) -> Option<&[u8]> {
        match self.routes.first()?.host_key() {
            HostKey::Exact(name) => Some(name),
            HostKey::Any | HostKey::Labels(_) => None,
        }
    }

    /// Whether these rules are those of the hostname `name`, made of exact labels.
    pub(crate) fn has_exact_name(&self, name: &[u8]) -> bool {
        self.exact_name().is_some_and(|own| same_bytes(own, name))
    }

    /// Whether a frontend for which `is_target` holds is here.
    pub(crate) fn contains(&self, is_target: impl Fn(&Route) -> bool) -> bool {
        self.routes.iter().any(is_target)
    }

    /// Keeps the frontends for which `keep` holds, in their order.
    pub(crate) fn retain(&mut self, keep: &mut impl FnMut(&Route) -> bool) {
        self.routes.retain(|r| keep(r));
    }
}

/// Where a rule sorts among those of its hostname: EQUALS, REGEX, then PREFIX rules, longer
/// prefixes first; rules with a method before those without, except among REGEX rules, which
/// keep the order they were added in.
fn rank(route: &Route) -> (u8, std::cmp::Reverse<usize>, bool) {
    let without_method = route.method.is_none();
    match &route.path {
        PathMatcher::Equals(_) => (0, std::cmp::Reverse(0), without_method),
        PathMatcher::Regex(_) => (1, std::cmp::Reverse(0), false),
        PathMatcher::Prefix(prefix) => (2, std::cmp::Reverse(prefix.len()), without_method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_split_off() {
        assert_eq!(without_query(b"/a/b?c=d?e"), b"/a/b");
        assert_eq!(query(b"/a/b?c=d?e"), Some(&b"c=d?e"[..]));
        assert_eq!(query(b"/a/b"), None);
        assert_eq!(query(b"/a/b?"), Some(&b""[..]));
    }

    #[test]
    fn prefix_captures_the_rest_of_the_path() {
        let matcher = PathMatcher::Prefix(b"/api"[..].into());
        let mut captures = Vec::new();
        matcher.captures(b"/api/users", &mut captures);
        assert_eq!(captures, [&b"/users"[..]]);
    }

    #[test]
    fn regex_captures_its_groups_in_order() {
        let Ok(regex) = Regex::new("^/v([0-9]+)(/x)?/(.*)$") else {
            panic!("regex refused");
        };
        let matcher = PathMatcher::Regex(regex);
        assert_eq!(matcher.capture_count(), 3);
        let mut captures = Vec::new();
        matcher.captures(b"/v2/users", &mut captures);
        assert_eq!(captures, [&b"2"[..], &b""[..], &b"users"[..]]);
    }
}
