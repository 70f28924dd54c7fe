//! The hostnames of TREE frontends, most specific first.
//!
//! A hostname made of exact labels only (the common case, and the most specific match a
//! hostname can have) is found with one hash lookup of the whole lowercase name. The other
//! patterns (with a `*` or a regex label) live in a tree with one node per label, read from
//! the right (TLD first): each node keeps its exact children in a hash map keyed by the
//! lowercase label, and its regex children and `*.` frontends apart, so a lookup walks the
//! labels of one hostname and never its siblings. Either way its cost does not depend on how
//! many hostnames there are. The hostname is folded to lowercase in a stack buffer; a lookup
//! allocates nothing.

use std::hash::BuildHasher;

use hashbrown::{Equivalent, HashMap, HashTable};
use regex::Regex;
use rustc_hash::FxBuildHasher;
use sozu_command_lib::hostname::LabelPattern;

use super::host::{self, HostKey, MAX_NAME};
use super::path::PathRules;
use super::{Route, same_bytes};

/// The hostnames of TREE frontends, and the frontends of each.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    /// Frontends of hostnames made of exact labels, by lowercase hostname. The hostname is
    /// read from the routes (see [`PathRules::exact_name`]) rather than kept as a key: one
    /// copy less of every hostname.
    exact: HashTable<Exact>,
    /// The patterns with a `*` or a regex label.
    root: Node,
    /// The frontends of the catch-all `*`, tried after every hostname of the tree.
    any: PathRules,
}

/// The frontends of one hostname of exact labels in [`Trie::exact`], with the hash of that
/// hostname. Growing the table moves each entry by its hash: found again from the routes
/// (the first route, its frontend, its hostname, each a pointer away), it was 9 % of a worker's
/// start at 100,000 frontends (see doc/benchmarks.md).
#[derive(Debug)]
struct Exact {
    hash: u64,
    rules: PathRules,
}

impl Exact {
    /// Whether these are the frontends of `name` (lowercase), of hash `hash`.
    fn is(&self, hash: u64, name: &[u8]) -> bool {
        self.hash == hash && self.rules.has_exact_name(name)
    }
}

/// The hostname made of the labels on the way from the root to this node.
///
/// Invariant: a node other than the root holds at least one frontend, itself or below. A
/// pattern of exact labels only is never in a node: [`Trie::exact`] has it.
#[derive(Debug, Default)]
struct Node {
    /// Frontends of exactly this hostname.
    routes: PathRules,
    /// Frontends of `*.` this hostname: one more label, any.
    wildcard: PathRules,
    /// Children by lowercase label.
    exact: HashMap<Box<[u8]>, Node, FxBuildHasher>,
    /// Children whose label is a regex, in the order they were added.
    regexes: Vec<(Regex, Node)>,
}

impl Trie {
    pub(crate) fn insert(&mut self, route: Route) {
        let rules = match route.host_key() {
            HostKey::Any => &mut self.any,
            HostKey::Exact(name) => {
                let hash = name_hash(name);
                let exact = match self.exact.find_entry(hash, |exact| exact.is(hash, name)) {
                    Ok(entry) => entry.into_mut(),
                    Err(absent) => absent
                        .into_table()
                        .insert_unique(
                            hash,
                            Exact {
                                hash,
                                rules: PathRules::default(),
                            },
                            |exact| exact.hash,
                        )
                        .into_mut(),
                };
                &mut exact.rules
            }
            HostKey::Labels(labels) => self.root.rules_mut(labels),
        };
        rules.insert(route);
    }

    /// The frontends of exactly `host`, if it has any.
    pub(crate) fn rules(&self, host: HostKey<'_>) -> Option<&PathRules> {
        match host {
            HostKey::Any => Some(&self.any),
            HostKey::Exact(name) => {
                let hash = name_hash(name);
                self.exact
                    .find(hash, |exact| exact.is(hash, name))
                    .map(|exact| &exact.rules)
            }
            HostKey::Labels(labels) => self.root.rules(labels),
        }
    }

    /// Removes the first frontend of `host` for which `is_target` holds.
    pub(crate) fn remove(
        &mut self,
        host: HostKey<'_>,
        is_target: impl Fn(&Route) -> bool,
    ) -> Option<Route> {
        match host {
            HostKey::Any => self.any.remove(is_target),
            HostKey::Exact(name) => {
                let hash = name_hash(name);
                let mut entry = self
                    .exact
                    .find_entry(hash, |exact| exact.is(hash, name))
                    .ok()?;
                let removed = entry.get_mut().rules.remove(is_target)?;
                if entry.get().rules.is_empty() {
                    entry.remove();
                }
                Some(removed)
            }
            HostKey::Labels(labels) => self.root.remove(labels, &is_target),
        }
    }

    /// Keeps the frontends for which `keep` holds and drops the nodes left empty.
    pub(crate) fn retain(&mut self, keep: &mut impl FnMut(&Route) -> bool) {
        self.exact.retain(|exact| {
            exact.rules.retain(keep);
            !exact.rules.is_empty()
        });
        self.root.retain(keep);
        self.any.retain(keep);
    }

    /// The route `pick` chooses among the frontends of the most specific hostname pattern
    /// matching `name` (a normalized hostname), falling back to less specific patterns while
    /// `pick` chooses none.
    ///
    /// The hostname of exact labels comes first. Then, at each label from the right: the exact
    /// child, then the regex children in the order they were added, then, for the leftmost
    /// label only, the `*.` frontends. The catch-all `*` comes last.
    pub(crate) fn find<'t>(
        &'t self,
        name: &[u8],
        pick: &impl Fn(&'t PathRules) -> Option<&'t Route>,
    ) -> Option<&'t Route> {
        if name.is_empty() {
            return None;
        }
        let mut buffer = [0; MAX_NAME];
        match buffer.get_mut(..name.len()) {
            Some(folded) => {
                for (to, from) in folded.iter_mut().zip(name) {
                    *to = from.to_ascii_lowercase();
                }
                let folded = &*folded;
                let hash = name_hash(folded);
                (self.exact)
                    .find(hash, |exact| exact.is(hash, folded))
                    .and_then(|exact| pick(&exact.rules))
                    .or_else(|| self.root.find(Some(folded), pick))
            }
            // Longer than any hostname a pattern other than `*` matches.
            None => None,
        }
        .or_else(|| pick(&self.any))
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.wildcard.is_empty()
            && self.exact.is_empty()
            && self.regexes.is_empty()
    }

    /// The frontends of the hostname `labels` (leftmost first) below this node, creating the
    /// nodes on the way.
    fn rules_mut(&mut self, labels: &[LabelPattern]) -> &mut PathRules {
        match labels.split_last() {
            None => &mut self.routes,
            // `parse_pattern` only accepts a wildcard as the leftmost label.
            Some((LabelPattern::Wildcard, _)) => &mut self.wildcard,
            Some((LabelPattern::Exact(label), left)) => self
                .exact
                .entry(label.as_bytes().into())
                .or_default()
                .rules_mut(left),
            Some((LabelPattern::Regex(regex), left)) => {
                let index = self
                    .regexes
                    .iter()
                    .position(|(r, _)| r.as_str() == regex.as_str())
                    .unwrap_or_else(|| {
                        self.regexes.push((regex.clone(), Node::default()));
                        self.regexes.len() - 1
                    });
                // `index` was just found or pushed.
                self.regexes[index].1.rules_mut(left)
            }
        }
    }

    /// The frontends of the hostname `labels` (leftmost first) below this node, if any.
    fn rules(&self, labels: &[LabelPattern]) -> Option<&PathRules> {
        match labels.split_last() {
            None => Some(&self.routes),
            Some((LabelPattern::Wildcard, _)) => Some(&self.wildcard),
            Some((LabelPattern::Exact(label), left)) => {
                self.exact.get(label.as_bytes())?.rules(left)
            }
            Some((LabelPattern::Regex(regex), left)) => self
                .regexes
                .iter()
                .find(|(r, _)| r.as_str() == regex.as_str())?
                .1
                .rules(left),
        }
    }

    fn remove(
        &mut self,
        labels: &[LabelPattern],
        is_target: &impl Fn(&Route) -> bool,
    ) -> Option<Route> {
        match labels.split_last() {
            None => self.routes.remove(is_target),
            Some((LabelPattern::Wildcard, _)) => self.wildcard.remove(is_target),
            Some((LabelPattern::Exact(label), left)) => {
                let child = self.exact.get_mut(label.as_bytes())?;
                let removed = child.remove(left, is_target)?;
                if child.is_empty() {
                    self.exact.remove(label.as_bytes());
                }
                Some(removed)
            }
            Some((LabelPattern::Regex(regex), left)) => {
                let index = self
                    .regexes
                    .iter()
                    .position(|(r, _)| r.as_str() == regex.as_str())?;
                let (_, child) = self.regexes.get_mut(index)?;
                let removed = child.remove(left, is_target)?;
                if child.is_empty() {
                    self.regexes.remove(index);
                }
                Some(removed)
            }
        }
    }

    fn retain(&mut self, keep: &mut impl FnMut(&Route) -> bool) {
        self.routes.retain(keep);
        self.wildcard.retain(keep);
        self.exact.retain(|_, child| {
            child.retain(keep);
            !child.is_empty()
        });
        self.regexes.retain_mut(|(_, child)| {
            child.retain(keep);
            !child.is_empty()
        });
    }

    /// See [`Trie::find`]. `rest` is what is left of the lowercase hostname at this node,
    /// `None` once every label has been read.
    fn find<'t>(
        &'t self,
        rest: Option<&[u8]>,
        pick: &impl Fn(&'t PathRules) -> Option<&'t Route>,
    ) -> Option<&'t Route> {
        let Some(rest) = rest else {
            return pick(&self.routes);
        };
        let (label, left) = host::split_last_label(rest);
        if label.is_empty() {
            return None;
        }
        if let Some(child) = self.exact.get(&Lowercase(label)) {
            if let found @ Some(_) = child.find(left, pick) {
                return found;
            }
        }
        if !self.regexes.is_empty() {
            let text = std::str::from_utf8(label).ok();
            for (regex, child) in &self.regexes {
                if text.is_some_and(|l| regex.is_match(l)) {
                    if let found @ Some(_) = child.find(left, pick) {
                        return found;
                    }
                }
            }
        }
        match left {
            None => pick(&self.wildcard),
            Some(_) => None,
        }
    }
}

/// The hash of a lowercase hostname in [`Trie::exact`].
fn name_hash(name: &[u8]) -> u64 {
    FxBuildHasher.hash_one(name)
}

/// A lowercase label or hostname looked up among the keys of a map. It hashes as the keys do
/// and compares with [`same_bytes`].
#[derive(Hash)]
struct Lowercase<'a>(&'a [u8]);

impl Equivalent<Box<[u8]>> for Lowercase<'_> {
    fn equivalent(&self, key: &Box<[u8]>) -> bool {
        same_bytes(self.0, key)
    }
}
