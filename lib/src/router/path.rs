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

use super::{Route, RouterError, normalize::normalize_percent_encoding, same_bytes};

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
/// Invariant: `equals` has the rules with a method before those without; `prefixes` is sorted
/// by decreasing prefix length, then rules with a method first; `regexes` is in insertion
/// order.
#[derive(Debug, Default)]
pub(crate) struct PathRules {
    equals: Vec<Route>,
    regexes: Vec<Route>,
    prefixes: Vec<Route>,
}

impl PathRules {
    pub(crate) fn is_empty(&self) -> bool {
        self.equals.is_empty() && self.regexes.is_empty() && self.prefixes.is_empty()
    }

    pub(crate) fn insert(&mut self, route: Route) {
        // Most hostnames have one rule: a first push would reserve room for four routes of
        // several hundred bytes each, which dominates memory at 100,000 frontends.
        let list = match &route.path {
            PathMatcher::Equals(_) => &mut self.equals,
            PathMatcher::Regex(_) => &mut self.regexes,
            PathMatcher::Prefix(_) => &mut self.prefixes,
        };
        if list.is_empty() {
            list.reserve_exact(1);
        }
        match &route.path {
            PathMatcher::Equals(_) => {
                let at = if route.method.is_some() {
                    self.equals.partition_point(|r| r.method.is_some())
                } else {
                    self.equals.len()
                };
                self.equals.insert(at, route);
            }
            PathMatcher::Regex(_) => self.regexes.push(route),
            PathMatcher::Prefix(prefix) => {
                let rank = (std::cmp::Reverse(prefix.len()), route.method.is_none());
                let at = self.prefixes.partition_point(|r| prefix_rank(r) <= rank);
                self.prefixes.insert(at, route);
            }
        }
    }

    /// The first frontend that takes this path (without query) and method.
    pub(crate) fn find(&self, path: &[u8], method: &[u8]) -> Option<&Route> {
        let takes = |route: &&Route| route.takes(path, method);
        (self.equals.iter().find(takes))
            .or_else(|| self.regexes.iter().find(takes))
            .or_else(|| self.prefixes.iter().find(takes))
    }

    /// Removes and returns the first frontend for which `is_target` holds.
    pub(crate) fn remove(&mut self, is_target: impl Fn(&Route) -> bool) -> Option<Route> {
        [&mut self.equals, &mut self.regexes, &mut self.prefixes]
            .into_iter()
            .find_map(|routes| {
                let index = routes.iter().position(&is_target)?;
                Some(routes.remove(index))
            })
    }

    /// Whether a frontend for which `is_target` holds is here.
    pub(crate) fn contains(&self, is_target: impl Fn(&Route) -> bool) -> bool {
        [&self.equals, &self.regexes, &self.prefixes]
            .into_iter()
            .any(|routes| routes.iter().any(&is_target))
    }

    /// Keeps the frontends for which `keep` holds, in their order.
    pub(crate) fn retain(&mut self, keep: &mut impl FnMut(&Route) -> bool) {
        self.equals.retain(|r| keep(r));
        self.regexes.retain(|r| keep(r));
        self.prefixes.retain(|r| keep(r));
    }
}

/// Where a PREFIX rule sorts: longer prefixes first, then rules with a method.
fn prefix_rank(route: &Route) -> (std::cmp::Reverse<usize>, bool) {
    let length = match &route.path {
        PathMatcher::Prefix(prefix) => prefix.len(),
        PathMatcher::Equals(_) | PathMatcher::Regex(_) => 0,
    };
    (std::cmp::Reverse(length), route.method.is_none())
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
