//! Content routing of a TCP listener: where a connection goes, from its first bytes, before
//! anything is forwarded.
//!
//! The listener's Sniff stage (`protocol::sniff`) keeps the bytes read so far and calls
//! [`ContentRouter::decide`] on every read and on its inspection deadline; the router answers
//! [`Verdict::NeedMore`] until it can decide. It holds the listener's TCP frontends' rules
//! (`rule`), its script ([`script`]) and its default frontend. Nothing here does I/O: a
//! script's `remote` host name is resolved by [`resolver`], off the event loop, by the caller.
//!
//! # Precedence
//!
//! 1. Rules, most specific first: exact `sni`, `alpn`, `http_host` and `prefix`; then
//!    `*.suffix` names; then `/regex/` names and `regex` rules; then `protocol` detectors.
//!    Rules of the same specificity are tried in the order their frontends were added. A rule
//!    that cannot tell yet (a ClientHello cut short, a regex that has not matched) holds the
//!    rules after it: the router waits for more bytes rather than let a less specific rule
//!    take the connection.
//! 2. When every rule has said no, the script, if the listener has one (or the embedding
//!    program's [`TcpRouter`]); its `nil` ([`Decision::Wait`]) waits.
//! 3. When no rule and no script decide, and no more bytes will come (`complete`), the
//!    default frontend (the one without a rule); without one the connection is closed. A
//!    listener with neither rules nor a script decides at once, before any byte.
//!
//! Only the first `inspect_bytes` bytes are looked at, and that many bytes make the
//! decision `complete`: 10 MB without a match go to the default after `inspect_bytes`.

mod client_hello;
mod detect;
pub mod resolver;
mod rule;
pub mod script;

use std::{collections::BTreeMap, net::SocketAddr, rc::Rc, time::Duration};

use sozu_command_lib::{
    request::{RuleError, TcpFrontend, TcpListenerConfig, TcpRule},
    response::FilteredMetric,
};

use self::rule::{CompiledRule, Facts};
pub use self::{
    client_hello::{ClientHello, Hello, MAX_HELLO, read as read_client_hello},
    script::{Decision, Script, ScriptError, Target},
};
use crate::metrics::{Timing, sample};

/// Whether some bytes match a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The bytes match the rule whatever follows.
    Match,
    /// The bytes cannot match the rule whatever follows.
    NoMatch,
    /// More bytes could change the answer.
    NeedMore,
}

impl Judgement {
    fn from_match(matched: bool) -> Judgement {
        if matched {
            Judgement::Match
        } else {
            Judgement::NoMatch
        }
    }

    /// Matches if either does; else needs more if either does.
    fn or(self, other: Judgement) -> Judgement {
        match (self, other) {
            (Judgement::Match, _) | (_, Judgement::Match) => Judgement::Match,
            (Judgement::NeedMore, _) | (_, Judgement::NeedMore) => Judgement::NeedMore,
            _ => Judgement::NoMatch,
        }
    }
}

/// What to do with a connection, given its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Wait for more bytes (or for the inspection deadline).
    NeedMore,
    /// Connect to this cluster and forward every byte buffered so far. The router's own copy
    /// of the id, shared: a verdict allocates nothing.
    Route(Rc<str>),
    /// Close the connection without a word.
    Close,
    /// What a script or a [`TcpRouter`] decided beyond a plain cluster or a plain close: a
    /// `remote`, bytes to send instead or first, a farewell, a file.
    Decision(Decision),
}

/// What decided where a connection goes. Cheap to clone: a session keeps it for its access
/// log line without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// A TCP frontend's content rule matched: the rule as written, shared with the router.
    Rule(Rc<str>),
    /// The listener's Lua script decided.
    Script,
    /// The embedding program's [`TcpRouter`].
    Program,
    /// The default frontend took it (or, without one, it was closed).
    Default,
}

impl Decider {
    /// The decider as the access log names it: the rule as written, `script`, `program` or
    /// `default`.
    pub fn label(&self) -> &str {
        match self {
            Decider::Rule(rule) => rule,
            Decider::Script => "script",
            Decider::Program => "program",
            Decider::Default => "default",
        }
    }
}

impl std::fmt::Display for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Routing by the Rust program that embeds the library: the decisions of a script, made by
/// code. Registered on a listener's router with [`ContentRouter::set_program`], it takes the
/// place of the listener's script.
pub trait TcpRouter {
    /// Called with every byte buffered so far, on every read, until it decides (anything but
    /// [`Decision::Wait`]).
    fn route(&mut self, buffered: &[u8], peer: SocketAddr) -> Decision;
}

/// Why a listener's content routing cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A TCP frontend's content rule cannot be compiled.
    #[error("TCP frontend {rule} of cluster `{cluster}`")]
    Rule {
        /// The rule as written in the frontend.
        rule: TcpRule,
        /// The cluster of the frontend.
        cluster: String,
        /// What is wrong with the rule.
        source: RuleError,
    },
    /// The listener's script does not load or has no `route` function.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Counters of a listener's content routing, for its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentStats {
    /// Connections given to the default frontend because the inspection deadline passed (or
    /// the client stopped sending) first.
    pub defaults_by_timeout: u64,
    /// Connections given to the default frontend after `inspect_bytes` without a match.
    pub defaults_by_size: u64,
    /// Connections given to the default frontend because every rule said no.
    pub defaults_by_miss: u64,
    /// Connections the script (or the program's [`TcpRouter`]) decided.
    pub script_decisions: u64,
    /// Calls of the script that failed (error, budget, memory, contract); each closed its
    /// connection.
    pub script_errors: u64,
    /// Bytes looked at, summed over the decisions.
    pub bytes_inspected: u64,
}

/// One rule of the listener, with its frontend's cluster and its hit count.
#[derive(Debug)]
struct Entry {
    rule: TcpRule,
    /// The rule as written, the [`Decider`] of the connections it routes.
    label: Rc<str>,
    cluster: Rc<str>,
    compiled: CompiledRule,
    matches: u64,
}

/// The content routing of one TCP listener.
pub struct ContentRouter {
    inspect_bytes: usize,
    /// Sorted by precedence.
    rules: Vec<Entry>,
    default: Option<Rc<str>>,
    script: Option<Script>,
    /// Asked instead of the script when set.
    program: Option<Box<dyn TcpRouter>>,
    stats: ContentStats,
    /// From the accept to the decision, per connection.
    decision_time: Option<Box<Timing>>,
    last_decider: Decider,
    /// Where a ClientHello split over records is gathered, kept between calls.
    scratch: Vec<u8>,
}

impl ContentRouter {
    /// The router of the listener `config` with its `frontends` (in the order they were
    /// added). Fails on a rule that does not compile or a script that does not load.
    pub fn new(
        config: &TcpListenerConfig,
        frontends: &[TcpFrontend],
    ) -> Result<ContentRouter, ContentError> {
        let script = config.script.as_ref().map(Script::load).transpose()?;
        let mut router = ContentRouter {
            inspect_bytes: usize::try_from(config.inspect_bytes).unwrap_or(usize::MAX),
            rules: Vec::new(),
            default: None,
            script,
            program: None,
            stats: ContentStats::default(),
            decision_time: None,
            last_decider: Decider::Default,
            scratch: Vec::new(),
        };
        router.set_frontends(frontends)?;
        Ok(router)
    }

    /// Replaces the rules and the default with those of `frontends`; on error nothing
    /// changed. Hit counts of rules that stay are kept.
    pub fn set_frontends(&mut self, frontends: &[TcpFrontend]) -> Result<(), ContentError> {
        let mut rules = Vec::new();
        let mut default = None;
        for frontend in frontends {
            let Some(rule) = &frontend.rule else {
                default = Some(Rc::from(frontend.cluster_id.as_str()));
                continue;
            };
            let compiled = CompiledRule::compile(rule).map_err(|source| ContentError::Rule {
                rule: rule.clone(),
                cluster: frontend.cluster_id.clone(),
                source,
            })?;
            let matches = self
                .rules
                .iter()
                .find(|e| e.rule == *rule && *e.cluster == *frontend.cluster_id)
                .map_or(0, |e| e.matches);
            rules.push(Entry {
                rule: rule.clone(),
                label: Rc::from(rule.to_string()),
                cluster: Rc::from(frontend.cluster_id.as_str()),
                compiled,
                matches,
            });
        }
        // A stable sort keeps the order of addition within one specificity.
        rules.sort_by_key(|entry| entry.rule.specificity());
        self.rules = rules;
        self.default = default;
        Ok(())
    }

    /// Applies a listener's new settings. A script that fails to load is refused and the old
    /// one stays.
    pub fn set_config(&mut self, config: &TcpListenerConfig) -> Result<(), ContentError> {
        self.script = config.script.as_ref().map(Script::load).transpose()?;
        self.inspect_bytes = usize::try_from(config.inspect_bytes).unwrap_or(usize::MAX);
        Ok(())
    }

    /// Registers the embedding program's decision function, asked where the script would be.
    pub fn set_program(&mut self, program: Box<dyn TcpRouter>) {
        self.program = Some(program);
    }

    /// Whether a connection may go anywhere: the listener has a frontend, a script or a
    /// program.
    pub fn can_route(&self) -> bool {
        !self.rules.is_empty() || self.default.is_some() || self.has_decider()
    }

    /// Whether something besides the rules decides (a script or a program).
    fn has_decider(&self) -> bool {
        self.script.is_some() || self.program.is_some()
    }

    /// Decides where the connection goes.
    ///
    /// `data`: every byte read so far; `complete`: no more bytes will be waited for
    /// (inspect_timeout passed, or the buffer is full, or the client half-closed).
    pub fn decide(&mut self, data: &[u8], peer: SocketAddr, complete: bool) -> Verdict {
        let by_size = data.len() >= self.inspect_bytes;
        let data = data.get(..self.inspect_bytes).unwrap_or(data);
        let complete = complete || by_size;
        if self.rules.is_empty() && !self.has_decider() {
            return self.default_verdict(data, peer);
        }
        let mut facts = Facts::new(data, &mut self.scratch);
        for entry in &mut self.rules {
            match entry.compiled.judge(&mut facts) {
                Judgement::Match => {
                    entry.matches = entry.matches.saturating_add(1);
                    log::debug!(
                        "{peer}: content rule {} chose `{}`",
                        entry.rule,
                        entry.cluster
                    );
                    let cluster = Rc::clone(&entry.cluster);
                    let label = entry.label.clone();
                    self.decided(data, Decider::Rule(label));
                    return Verdict::Route(cluster);
                }
                Judgement::NeedMore if !complete => return Verdict::NeedMore,
                Judgement::NeedMore | Judgement::NoMatch => {}
            }
        }
        // The script is asked on bytes, and once more with none when inspection ends before
        // any byte came (a silent client): never on an empty buffer that may still fill.
        if (complete || !data.is_empty())
            && let Some(verdict) = self.ask_decider(data, peer)
        {
            return verdict;
        }
        if !complete && self.has_decider() {
            return Verdict::NeedMore;
        }
        let reason = if by_size {
            &mut self.stats.defaults_by_size
        } else if complete {
            &mut self.stats.defaults_by_timeout
        } else {
            &mut self.stats.defaults_by_miss
        };
        *reason = reason.saturating_add(1);
        self.default_verdict(data, peer)
    }

    /// The verdict of the program or the script, `None` when it waits (or there is none). A
    /// failing script call closes the connection.
    fn ask_decider(&mut self, data: &[u8], peer: SocketAddr) -> Option<Verdict> {
        let (decision, decider) = if let Some(program) = &mut self.program {
            (program.route(data, peer), Decider::Program)
        } else {
            let script = self.script.as_ref()?;
            match script.route(data, peer) {
                Ok(decision) => (decision, Decider::Script),
                Err(error) => {
                    self.stats.script_errors = self.stats.script_errors.saturating_add(1);
                    log::warn!("{peer}: {}, closing", with_cause(&error));
                    self.decided(data, Decider::Script);
                    return Some(Verdict::Close);
                }
            }
        };
        let verdict = match decision {
            Decision::Wait => return None,
            Decision::Connect {
                target: Target::Cluster(cluster),
                data: None,
                reply: None,
            } => Verdict::Route(Rc::from(cluster)),
            Decision::Close(farewell) if farewell.is_empty() => Verdict::Close,
            decision => Verdict::Decision(decision),
        };
        log::debug!("{peer}: the listener's script or program decided {verdict:?}");
        self.stats.script_decisions = self.stats.script_decisions.saturating_add(1);
        self.decided(data, decider);
        Some(verdict)
    }

    fn default_verdict(&mut self, data: &[u8], peer: SocketAddr) -> Verdict {
        self.decided(data, Decider::Default);
        match &self.default {
            Some(cluster) => Verdict::Route(Rc::clone(cluster)),
            None => {
                log::debug!("{peer}: no content rule matched and no default frontend, closing");
                Verdict::Close
            }
        }
    }

    /// Accounts for a decision made on `data` by `decider`.
    fn decided(&mut self, data: &[u8], decider: Decider) {
        self.last_decider = decider;
        let inspected = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.stats.bytes_inspected = self.stats.bytes_inspected.saturating_add(inspected);
    }

    /// Tells the script that the backend it chose cannot be reached (its optional
    /// `proxy_error(peer, message)`). A failure is logged and counted.
    pub fn proxy_error(&mut self, peer: SocketAddr, message: &str) {
        let Some(script) = &self.script else {
            return;
        };
        if let Err(error) = script.proxy_error(peer, message) {
            self.stats.script_errors = self.stats.script_errors.saturating_add(1);
            log::warn!("{peer}: {}", with_cause(&error));
        }
    }

    /// What made the last decision (a verdict other than [`Verdict::NeedMore`]): read by
    /// the caller right after [`ContentRouter::decide`], for the access log.
    pub fn last_decider(&self) -> &Decider {
        &self.last_decider
    }

    /// The listener's content routing counters: connections given to the default frontend and why,
    /// script decisions and errors.
    pub fn stats(&self) -> &ContentStats {
        &self.stats
    }

    /// Records how long a connection waited for its decision.
    pub fn record_decision_time(&mut self, waited: Duration) {
        sample(&mut self.decision_time, waited);
    }

    /// Writes the listener's figures (those of `names`, or all when it is empty): its
    /// counters as `content.*`, the decision time, and each rule's matches as
    /// `content.rule_matches.<cluster> <rule>`.
    pub fn write_metrics(&self, names: &[String], out: &mut BTreeMap<String, FilteredMetric>) {
        let mut put = |name: String, value: FilteredMetric| {
            if names.is_empty() || names.contains(&name) {
                out.insert(name, value);
            }
        };
        let stats = &self.stats;
        let matches = self
            .rules
            .iter()
            .fold(0u64, |total, entry| total.saturating_add(entry.matches));
        for (name, value) in [
            ("content.matches", matches),
            ("content.defaults_by_timeout", stats.defaults_by_timeout),
            ("content.defaults_by_size", stats.defaults_by_size),
            ("content.defaults_by_miss", stats.defaults_by_miss),
            ("content.script_decisions", stats.script_decisions),
            ("content.script_errors", stats.script_errors),
            ("content.bytes_inspected", stats.bytes_inspected),
        ] {
            put(name.to_string(), FilteredMetric::Count(value));
        }
        if let Some(timing) = &self.decision_time {
            put(
                "content.decision_time".to_string(),
                FilteredMetric::Histogram(timing.data()),
            );
        }
        for (rule, cluster, matches) in self.rule_matches() {
            put(rule.matches_metric(cluster), FilteredMetric::Count(matches));
        }
    }

    /// Each rule with its cluster and how many connections it took, in precedence order.
    pub fn rule_matches(&self) -> impl Iterator<Item = (&TcpRule, &str, u64)> {
        self.rules
            .iter()
            .map(|entry| (&entry.rule, &*entry.cluster, entry.matches))
    }
}

/// A script error with Lua's message (which names the script's line).
fn with_cause(error: &ScriptError) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests;
