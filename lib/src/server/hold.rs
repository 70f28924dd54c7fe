//! Holding: while a cluster with a `hold_timeout` has no available backend, a session that
//! asks to connect to it waits in the cluster's queue instead of failing (an HTTP request's
//! connect is deferred; a TCP connection waits with the bytes it sent kept in its buffer).
//! Each loop turn releases the queues, in arrival order, of clusters that have a backend
//! again (added, registered, back from a failed health check or a retry backoff); a session
//! waiting past its deadline gets the cluster's 503 answer (HTTP) or a close (TCP), as does a
//! session arriving when the cluster already holds `max_held` in this worker. A held session
//! whose client leaves stops waiting at once.
//!
//! Events tell subscribers when a cluster starts holding (`HOLD_STARTED`), and, once per loop
//! turn at most, how many of its sessions were released (`HOLD_RELEASED`) or timed out
//! (`HOLD_TIMED_OUT`) and how many still wait.

use std::{
    collections::{HashMap, VecDeque},
    rc::Rc,
    time::Instant,
};

use log::debug;
use sozu_command_lib::{
    request::DEFAULT_MAX_HELD,
    response::{Event, EventKind},
};

use super::{SWEEP_INTERVAL, Server, event_response};
use crate::{
    metrics::HoldEvent,
    session::{Action, Failure, Stage, backs::Slot, endpoint::Ready},
};

/// A session waiting for a backend of a cluster.
#[derive(Debug)]
struct Held {
    key: usize,
    /// Tells the session from a later one in the same slab slot.
    uid: u64,
    slot: Slot,
    sticky_id: Option<String>,
    deadline: Instant,
}

/// The sessions waiting for a backend, per cluster, in arrival order.
#[derive(Debug, Default)]
pub(super) struct HoldQueues {
    queues: HashMap<String, VecDeque<Held>>,
}

impl HoldQueues {
    fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    fn depth(&self, cluster_id: &str) -> usize {
        self.queues.get(cluster_id).map_or(0, VecDeque::len)
    }

    /// Takes the oldest session waiting for `cluster_id` whose deadline passed at `now`, or
    /// (with `any`) the oldest one at all.
    fn pop(&mut self, cluster_id: &str, now: Instant, any: bool) -> Option<Held> {
        let queue = self.queues.get_mut(cluster_id)?;
        let position = if any {
            0
        } else {
            queue.iter().position(|held| held.deadline <= now)?
        };
        let held = queue.remove(position);
        if queue.is_empty() {
            self.queues.remove(cluster_id);
        }
        held
    }
}

impl Server {
    /// Parks the connect of the session's `slot` to `cluster_id`, which has no available
    /// backend, when the cluster holds and has room; false when the session must get its
    /// failure at once.
    pub(super) fn hold(
        &mut self,
        key: usize,
        slot: Slot,
        cluster_id: &str,
        sticky_id: Option<&str>,
        now: Instant,
    ) -> bool {
        let Some(cluster) = self.state.clusters.get(cluster_id) else {
            return false;
        };
        let Some(timeout) = cluster.hold_timeout.filter(|timeout| !timeout.is_zero()) else {
            return false;
        };
        let max_held = cluster.max_held.unwrap_or(DEFAULT_MAX_HELD);
        let Some(uid) = self.sessions.get(key).map(|session| session.io.uid) else {
            return false;
        };
        if self.holds.queues.get(cluster_id).is_some_and(|queue| {
            queue
                .iter()
                .any(|held| held.key == key && held.uid == uid && held.slot == slot)
        }) {
            // The stage asked again for this slot (more bytes came): it keeps its place.
            return true;
        }
        let depth = self.holds.depth(cluster_id);
        if u64::try_from(depth).unwrap_or(u64::MAX) >= max_held {
            debug!("cluster `{cluster_id}` holds {depth} already: refusing one more");
            self.recorder
                .metrics
                .hold(cluster_id, HoldEvent::Refused, depth);
            return false;
        }
        let Some(deadline) = now.checked_add(timeout) else {
            return false;
        };
        debug!("session {uid}: held until a backend of `{cluster_id}` is available");
        if depth == 0 {
            let message = format!(
                "no available backend: holding for up to {}s, at most {max_held} at once",
                timeout.as_secs_f32()
            );
            self.hold_event(cluster_id, EventKind::HoldStarted, message);
        }
        let queue = self.holds.queues.entry(cluster_id.to_string()).or_default();
        queue.push_back(Held {
            key,
            uid,
            slot,
            sticky_id: sticky_id.map(str::to_string),
            deadline,
        });
        self.recorder
            .metrics
            .hold(cluster_id, HoldEvent::Held, depth.saturating_add(1));
        true
    }

    /// Releases the held sessions of clusters that have a backend again, and fails those
    /// whose deadline passed.
    pub(super) fn check_holds(&mut self, now: Instant) {
        if self.holds.is_empty() {
            return;
        }
        let clusters: Vec<String> = self.holds.queues.keys().cloned().collect();
        for cluster_id in clusters {
            // Sessions held again during this turn queue behind: release at most those
            // waiting now.
            let waiting = self.holds.depth(&cluster_id);
            let (mut released, mut timed_out) = (0usize, 0usize);
            for _ in 0..waiting {
                let available = self.backends.has_available(&cluster_id, now);
                let Some(held) = self.holds.pop(&cluster_id, now, available) else {
                    break;
                };
                if self
                    .sessions
                    .get(held.key)
                    .is_none_or(|session| session.io.uid != held.uid)
                {
                    continue;
                }
                let depth = self.holds.depth(&cluster_id);
                let action = if available {
                    released += 1;
                    self.recorder
                        .metrics
                        .hold(&cluster_id, HoldEvent::Released, depth);
                    Action::Connect {
                        slot: held.slot,
                        cluster_id: self.cluster_ids.get(&cluster_id, |id| Rc::from(id)),
                        sticky_id: held.sticky_id,
                    }
                } else {
                    timed_out += 1;
                    self.recorder
                        .metrics
                        .hold(&cluster_id, HoldEvent::TimedOut, depth);
                    self.answer_failure(held.key, held.slot, Failure::NoBackend)
                };
                self.handle_action(held.key, action);
            }
            let depth = self.holds.depth(&cluster_id);
            for (count, kind, what) in [
                (released, EventKind::HoldReleased, "released to a backend"),
                (timed_out, EventKind::HoldTimedOut, "timed out"),
            ] {
                if count > 0 {
                    let message = format!("{count} {what}, {depth} still waiting");
                    self.hold_event(&cluster_id, kind, message);
                }
            }
        }
    }

    fn hold_event(&mut self, cluster_id: &str, kind: EventKind, message: String) {
        debug!("cluster `{cluster_id}`: {kind:?}: {message}");
        self.respond(event_response(Event {
            kind,
            cluster_id: Some(cluster_id.to_string()),
            backend_id: None,
            address: None,
            message,
        }));
    }

    /// When the loop must wake for held sessions: the earliest deadline, and at least once
    /// per sweep to notice backends whose retry backoff ended.
    pub(super) fn next_hold_wake(&self, now: Instant) -> Option<Instant> {
        self.holds
            .queues
            .values()
            .flatten()
            .map(|held| held.deadline)
            .chain(std::iter::once(now + SWEEP_INTERVAL))
            .min()
            .filter(|_| !self.holds.is_empty())
    }

    /// Whether `ready`, seen on the front socket of session `key`, says that the client of a
    /// held session left: a reset, or the end of an HTTP client's stream (a TCP client may
    /// shut its write side and still wait for the answer).
    pub(super) fn is_abandoned(&self, key: usize, ready: Ready) -> bool {
        if self.holds.is_empty() || !(ready.contains(Ready::HUP) || ready.contains(Ready::ERROR)) {
            return false;
        }
        let Some(session) = self.sessions.get(key) else {
            return false;
        };
        let is_held = self
            .holds
            .queues
            .values()
            .flatten()
            .any(|held| held.key == key && held.uid == session.io.uid);
        is_held && (ready.contains(Ready::ERROR) || matches!(session.stage, Stage::Http(_)))
    }

    /// A closing session stops waiting.
    pub(super) fn forget_held(&mut self, key: usize) {
        if self.holds.is_empty() {
            return;
        }
        let mut left = Vec::new();
        self.holds.queues.retain(|cluster_id, queue| {
            let before = queue.len();
            queue.retain(|held| held.key != key);
            if queue.len() < before {
                left.push((cluster_id.clone(), queue.len()));
            }
            !queue.is_empty()
        });
        for (cluster_id, depth) in left {
            debug!("slot {key}: closed while held by `{cluster_id}`");
            self.recorder
                .metrics
                .hold(&cluster_id, HoldEvent::Abandoned, depth);
        }
    }
}
