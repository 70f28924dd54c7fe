//! The HTTP router of one listener: which frontend takes a request, from its host, path and
//! method.
//!
//! The listener adds and removes [`HttpFrontend`]s as orders arrive; a session calls
//! [`Router::lookup`] once per request, which borrows the matching [`Route`] and allocates
//! nothing. What to do with the request (forward, redirect, answer, edit headers) is read from
//! the route's frontend by the caller; [`RouteMatch::rewrite`] and
//! [`RouteMatch::rewritten_redirect`] expand its templates (see `template` for their syntax).
//!
//! # Precedence
//!
//! A request goes to the first frontend that takes it, in this order:
//!
//! 1. PRE frontends, one by one, in the order they were added;
//! 2. TREE frontends (the default position), most specific hostname first. Labels are
//!    compared from the right (TLD first); at each label an exact label beats a regex label
//!    (regex labels in the order they were added), which beats the leftmost `*`; the catch-all
//!    `*` comes last. Among the frontends of one hostname pattern, EQUALS rules come first,
//!    then REGEX rules in the order they were added, then PREFIX rules, longest first (see
//!    `path`). When no frontend of the most specific hostname takes the path and method, the
//!    next less specific hostname is tried: `api.example.com` with only `/v1` falls back to
//!    `*.example.com` for `/`;
//! 3. POST frontends, one by one, in the order they were added.
//!
//! A frontend with a method takes only that method (compared byte for byte: methods are
//! case-sensitive); one without takes any.
//!
//! # Hostnames
//!
//! The host is given as `host[:port]` (the Host header, or the authority of an absolute-form
//! target). The port and one trailing dot are ignored, and labels compare without case:
//! `API.Example.com.:8080` is `api.example.com`; `[::1]:8080` is the IPv6 literal `[::1]`.
//! As in Sōzu, `*.example.com` stands for exactly one label (`a.example.com`, not
//! `a.b.example.com` nor `example.com`); `*` alone matches every hostname. A regex label
//! (`/api[0-9]+/.example.com`) must match one whole label, case-insensitively. A hostname
//! longer than 253 bytes (the DNS limit) or with an empty label only matches `*`.
//!
//! # Paths
//!
//! Rules see the path without its query, normalised (see `normalize`: percent-encoding of
//! unreserved characters decoded, repeated slashes merged, dot segments removed, `%2F` kept),
//! so that `//admin` or `/%61dmin` cannot slip past an `/admin` rule; the request is still
//! forwarded as received. PREFIX is a byte prefix (the empty prefix takes every path), EQUALS
//! the whole path, REGEX an unanchored search (write `^` to anchor it), as Sōzu does. The
//! percent-encoding of PREFIX and EQUALS values is normalised the same way when the frontend
//! is added (`/%7euser` is `/~user`).
//!
//! # Rewrites
//!
//! `rewrite_host` and `rewrite_path` are templates, compiled when the frontend is added: `$HOST[0]` (or `%HOST`) is the hostname, `$HOST[n]` the n-th capture of
//! the hostname pattern in the order its labels are written (the label of a leading `*`, then
//! the groups of each regex label); `$PATH[0]` (or `%PATH`) is the path without query,
//! `$PATH[1]` the rest after a PREFIX, `$PATH[n]` the n-th group of a REGEX; `%PORT` the
//! request's port. A template naming a capture the frontend cannot have is refused. The
//! query of the request is appended to a rewritten path. A redirect frontend sends to its
//! rewritten host, port and path; its `redirect_template` (as in Sōzu) is the whole answer,
//! compiled when the frontend is added, where `%REDIRECT_LOCATION` is the target. Unlike
//! Sōzu, `$PATH[n]` of a REGEX is its n-th group (Sōzu shifts them by one), and `$HOST[n]`
//! counts labels from the left in the tree as in PRE and POST rules.

pub mod content;
mod host;
mod normalize;
mod path;
mod redirect;
mod template;
mod trie;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use hashbrown::HashMap;
use rustc_hash::FxBuildHasher;

use sozu_command_lib::{
    hostname::HostnameError,
    request::{FrontendKey, HttpFrontend, PathRuleKind, RulePosition},
    rules::FieldsChecked,
};

use crate::protocol::http::answers;

use host::{HostKey, HostPattern};
use path::PathMatcher;
pub use template::TemplateError;
use template::{Template, Values};
use trie::Trie;

/// Why a frontend could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A frontend with the same hostname, path and method already exists on the listener.
    #[error("frontend {0} already exists")]
    Duplicate(Box<FrontendKey>),
    /// The listener has no frontend with this hostname, path and method.
    #[error("no frontend {0}")]
    NotFound(Box<FrontendKey>),
    /// The hostname is not a valid hostname or wildcard pattern.
    #[error("invalid hostname pattern")]
    Hostname(#[from] HostnameError),
    /// The frontend's path regex does not compile.
    #[error("invalid path regex `{path}`")]
    PathRegex {
        /// The regex as written.
        path: String,
        /// What the regex crate refused.
        source: regex::Error,
    },
    /// A rewrite template (`rewrite_host`, `rewrite_path`…) names a capture the frontend's patterns
    /// do not have.
    #[error("invalid {field} `{template}`")]
    Template {
        /// The frontend field that holds the template, as in the configuration (`rewrite_host`…).
        field: &'static str,
        /// The template as written.
        template: String,
        /// What is wrong with it.
        source: TemplateError,
    },
    /// The frontend's `redirect_template` is not a valid answer template.
    #[error("invalid redirect_template")]
    RedirectTemplate(#[source] answers::AnswerError),
}

/// A frontend, compiled for matching.
#[derive(Debug)]
pub struct Route {
    /// Shared with the worker's state (see [`Route::shared_frontend`]).
    frontend: Arc<HttpFrontend>,
    host: HostPattern,
    path: PathMatcher,
    method: Option<Box<[u8]>>,
    /// Templates and answer, compiled; `None` for the frontends without any (most of them),
    /// which keeps a route at a third of its size with them inline.
    compiled: Option<Box<CompiledOptions>>,
}

/// What a route compiles from the options of its frontend.
#[derive(Debug)]
struct CompiledOptions {
    rewrite_host: Option<Template>,
    rewrite_path: Option<Template>,
    /// The whole answer of a redirect frontend, when it has its own.
    redirect_template: Option<answers::Template>,
    /// The frontend's fixed response, ready to render.
    fixed_answer: Option<answers::Template>,
}

impl CompiledOptions {
    fn is_empty(&self) -> bool {
        self.rewrite_host.is_none()
            && self.rewrite_path.is_none()
            && self.redirect_template.is_none()
            && self.fixed_answer.is_none()
    }
}

impl Route {
    /// Compiles the patterns and templates of `frontend`.
    pub fn compile(frontend: impl Into<Arc<HttpFrontend>>) -> Result<Self, RouterError> {
        let frontend = frontend.into();
        let host = HostPattern::parse(&frontend.hostname)?;
        let path = PathMatcher::new(&frontend.path)?;
        let compile = |field: &'static str, source: &Option<String>| {
            source
                .as_deref()
                .map(|source| {
                    Template::parse(source, host.capture_count(), path.capture_count()).map_err(
                        |error| RouterError::Template {
                            field,
                            template: source.to_string(),
                            source: error,
                        },
                    )
                })
                .transpose()
        };
        let rewrite_host = compile("rewrite_host", &frontend.rewrite_host)?;
        let rewrite_path = compile("rewrite_path", &frontend.rewrite_path)?;
        let redirect_template = match (
            frontend.redirect.redirect_status(),
            &frontend.redirect_template,
        ) {
            (Some(status), Some(text)) => Some(
                answers::Template::redirect(status, text).map_err(RouterError::RedirectTemplate)?,
            ),
            _ => None,
        };
        let compiled = CompiledOptions {
            fixed_answer: frontend.answer.as_ref().map(answers::Template::fixed),
            rewrite_host,
            rewrite_path,
            redirect_template,
        };
        Ok(Route {
            method: frontend.method.as_deref().map(|m| m.as_bytes().into()),
            host,
            path,
            compiled: (!compiled.is_empty()).then(|| Box::new(compiled)),
            frontend,
        })
    }

    /// Whether [`Route::compile`] takes `frontend`, whose fields are checked (`_fields`), with
    /// its error, without building the route when it has no path regex nor template: the main
    /// process checks every frontend it is given and keeps no route. Then only the hostname
    /// could be refused, and the fields' check refused it already with
    /// [`sozu_command_lib::hostname::check_pattern`], the check [`Route::compile`] makes of it: it is not made a
    /// second time (in the main process, a third: the configuration's reader makes it too).
    pub fn check(frontend: &HttpFrontend, _fields: FieldsChecked) -> Result<(), RouterError> {
        let is_plain = frontend.path.kind != PathRuleKind::Regex
            && frontend.rewrite_host.is_none()
            && frontend.rewrite_path.is_none()
            && frontend.redirect_template.is_none();
        if is_plain {
            Ok(())
        } else {
            Route::compile(frontend.clone()).map(drop)
        }
    }

    /// The frontend as the order that added it described it.
    pub fn frontend(&self) -> &HttpFrontend {
        &self.frontend
    }

    /// The frontend the route holds, for a worker's state to keep the same one: the state and
    /// the router keep one copy of it between them.
    pub fn shared_frontend(&self) -> Arc<HttpFrontend> {
        Arc::clone(&self.frontend)
    }

    /// The cluster requests are sent to; `None` for a frontend that only answers, redirects or
    /// denies.
    pub fn cluster_id(&self) -> Option<&str> {
        self.frontend.cluster_id.as_deref()
    }

    /// The frontend's fixed response, when it answers by itself.
    pub fn fixed_answer(&self) -> Option<&answers::Template> {
        self.compiled.as_ref()?.fixed_answer.as_ref()
    }

    /// The whole answer of a redirect frontend with a `redirect_template`.
    pub fn redirect_template(&self) -> Option<&answers::Template> {
        self.compiled.as_ref()?.redirect_template.as_ref()
    }

    /// Whether this frontend takes a path (without query) and method; the hostname is the
    /// caller's business.
    fn takes(&self, path: &[u8], method: &[u8]) -> bool {
        self.method.as_deref().is_none_or(|m| same_bytes(m, method)) && self.path.matches(path)
    }

    /// Whether this frontend takes the request, hostname included (`name` is normalized).
    fn takes_request(&self, name: &[u8], path: &[u8], method: &[u8]) -> bool {
        self.takes(path, method) && self.host_key().matches(name)
    }

    /// The hostname pattern as the tree files it.
    fn host_key(&self) -> HostKey<'_> {
        self.host.key(&self.frontend.hostname)
    }

    fn has_key(&self, key: &FrontendKey) -> bool {
        let frontend = &self.frontend;
        frontend.address == key.address
            && frontend.hostname.eq_ignore_ascii_case(&key.hostname)
            && frontend.path == key.path
            && frontend.method == key.method
    }
}

/// What [`Router::lookup`] found: the route of the frontend that takes the request.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'r> {
    route: &'r Route,
}

/// New values for a request that a frontend rewrites; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new Host.
    pub host: Option<Vec<u8>>,
    /// The new path, with the request's query appended.
    pub path: Option<Vec<u8>>,
    /// The new port of the Host.
    pub port: Option<u16>,
}

impl<'r> RouteMatch<'r> {
    /// The compiled frontend that matched.
    pub fn route(&self) -> &'r Route {
        self.route
    }

    /// The matched frontend as the order that added it described it.
    pub fn frontend(&self) -> &'r HttpFrontend {
        &self.route.frontend
    }

    /// The cluster the request goes to; `None` for a frontend that only answers, redirects or
    /// denies.
    pub fn cluster_id(&self) -> Option<&'r str> {
        self.route.cluster_id()
    }

    /// The rewrites of the frontend for this request, or `None` when it has none.
    ///
    /// `host` and `target` are those given to [`Router::lookup`]; templates see the normalised
    /// path, as the rules did; `listener_port` stands for
    /// `%PORT` when the host has no port. The request's query, if any, is appended to a
    /// rewritten path (after `&` if the template already wrote a `?`).
    pub fn rewrite(&self, host: &[u8], target: &[u8], listener_port: u16) -> Option<Rewrite> {
        let route = self.route;
        let port = route.frontend.rewrite_port;
        let compiled = route.compiled.as_deref();
        let rewrite_host = compiled.and_then(|compiled| compiled.rewrite_host.as_ref());
        let rewrite_path = compiled.and_then(|compiled| compiled.rewrite_path.as_ref());
        if rewrite_host.is_none() && rewrite_path.is_none() && port.is_none() {
            return None;
        }
        let path = normalize::normalize(path::without_query(target));
        let values = Values::new(&route.host, &route.path, host, &path, listener_port);
        let expand = |template: &Template| {
            let mut out = Vec::new();
            template.expand(&values, &mut out);
            out
        };
        Some(Rewrite {
            host: rewrite_host.map(expand),
            path: rewrite_path.map(|template| with_query(expand(template), target)),
            port,
        })
    }
}

/// `rewritten` followed by the query of the request target, if it has a non-empty one.
fn with_query(mut rewritten: Vec<u8>, target: &[u8]) -> Vec<u8> {
    if let Some(query) = path::query(target).filter(|q| !q.is_empty()) {
        let separator = if rewritten.contains(&b'?') {
            b'&'
        } else {
            b'?'
        };
        rewritten.push(separator);
        rewritten.extend_from_slice(query);
    }
    rewritten
}

/// The frontends of one listener, by position.
///
/// The address of a frontend is part of its key, not of the match: the caller adds the
/// frontends of its own listener only.
#[derive(Debug, Default)]
pub struct Router {
    pre: Vec<Route>,
    tree: Trie,
    post: Vec<Route>,
    /// The PRE and POST frontends, and where each sits. A TREE frontend is found in the tree
    /// from its key's hostname, parsed anew: an index of every key (or of every parsed
    /// pattern) here would double the router's memory per frontend.
    listed: HashMap<FrontendKey, RulePosition, FxBuildHasher>,
    /// How many frontends the router holds.
    len: usize,
}

impl Router {
    /// A router with no frontend: every lookup misses.
    pub fn new() -> Self {
        Router::default()
    }

    /// How many frontends the router holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the router holds no frontend.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a frontend. Fails, changing nothing, when one with the same key exists or when
    /// its hostname, path regex or a template is invalid.
    pub fn add(&mut self, frontend: HttpFrontend) -> Result<(), RouterError> {
        self.insert(Route::compile(frontend)?)
    }

    /// Adds a compiled route; refused when a frontend with its key is in already.
    ///
    /// The route's [`FrontendKey`] (a copy of its hostname in lower case) is made only when
    /// PRE or POST frontends are listed by theirs, or this one is to be: a start of 100,000
    /// TREE frontends made and dropped one each for nothing.
    pub fn insert(&mut self, route: Route) -> Result<(), RouterError> {
        let frontend = &route.frontend;
        let in_tree = self
            .tree
            .rules(route.host_key())
            .is_some_and(|rules| rules.contains(|r| r.frontend.has_same_key(frontend)));
        let position = frontend.position;
        let key =
            (position != RulePosition::Tree || !self.listed.is_empty()).then(|| frontend.key());
        let is_listed = key
            .as_ref()
            .is_some_and(|key| self.listed.contains_key(key));
        if in_tree || is_listed {
            return Err(RouterError::Duplicate(Box::new(frontend.key())));
        }
        match position {
            RulePosition::Pre => self.pre.push(route),
            RulePosition::Tree => self.tree.insert(route),
            RulePosition::Post => self.post.push(route),
        }
        if let Some(key) = key.filter(|_| position != RulePosition::Tree) {
            self.listed.insert(key, position);
        }
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// Removes the frontend with this key and gives it back.
    pub fn remove(&mut self, key: &FrontendKey) -> Result<Arc<HttpFrontend>, RouterError> {
        let is_target = |route: &Route| route.has_key(key);
        let removed = match self.listed.get(key) {
            Some(RulePosition::Pre) => take_first(&mut self.pre, is_target),
            Some(RulePosition::Post) => take_first(&mut self.post, is_target),
            // The hostname parsed when the frontend was added.
            Some(RulePosition::Tree) | None => HostPattern::parse(&key.hostname)
                .ok()
                .and_then(|host| self.tree.remove(host.key(&key.hostname), is_target)),
        };
        let route = removed.ok_or_else(|| RouterError::NotFound(Box::new(key.clone())))?;
        self.listed.remove(key);
        self.len = self.len.saturating_sub(1);
        Ok(route.frontend)
    }

    /// Removes every frontend of a cluster; returns how many there were.
    pub fn remove_cluster(&mut self, cluster_id: &str) -> usize {
        let mut listed = Vec::new();
        let mut removed = 0;
        let mut keep = |route: &Route| {
            let belongs = route.cluster_id() == Some(cluster_id);
            if belongs {
                removed += 1;
                if route.frontend.position != RulePosition::Tree {
                    listed.push(route.frontend.key());
                }
            }
            !belongs
        };
        self.pre.retain(|route| keep(route));
        self.post.retain(|route| keep(route));
        self.tree.retain(&mut keep);
        for key in &listed {
            self.listed.remove(key);
        }
        self.len = self.len.saturating_sub(removed);
        removed
    }

    /// The frontend that takes a request to `host` (`host[:port]`), `target` (the path, with
    /// or without query) and `method`, by the precedence of the module doc.
    pub fn lookup(&self, host: &[u8], target: &[u8], method: &[u8]) -> Option<RouteMatch<'_>> {
        let name = host::normalize(host);
        let path = normalize::normalize(path::without_query(target));
        let path = path.as_ref();
        let takes = |route: &&Route| route.takes_request(name, path, method);
        self.pre
            .iter()
            .find(takes)
            .or_else(|| self.tree.find(name, &|rules| rules.find(path, method)))
            .or_else(|| self.post.iter().find(takes))
            .map(|route| RouteMatch { route })
    }
}

/// Whether two byte strings are equal, compared in place, eight bytes at a time.
///
/// Labels, paths and methods are short: for them a call to libc's `memcmp`, which `==` on
/// slices makes, costs more than the comparison (it was most of a lookup's time).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| chunk.try_into().ok().map(u64::from_ne_bytes);
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    (&mut a_words)
        .zip(&mut b_words)
        .all(|(x, y)| word(x) == word(y))
        && a_words
            .remainder()
            .iter()
            .zip(b_words.remainder())
            .all(|(x, y)| x == y)
}

/// Removes and returns the first route for which `is_target` holds.
fn take_first(routes: &mut Vec<Route>, is_target: impl Fn(&Route) -> bool) -> Option<Route> {
    let index = routes.iter().position(is_target)?;
    Some(routes.remove(index))
}
