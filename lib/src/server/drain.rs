//! Drains with a deadline: a backend removed by `REMOVE_BACKEND` with `drain_timeout` keeps
//! its sessions until then, and the sessions still using it at the deadline are closed. Until
//! the drain ends, a `BACKEND_DRAINING` event tells once a second how many sessions are left.
//!
//! The backend map forgets the backend when its last connection closes; a drain whose key no
//! longer names a backend has ended.

use std::time::{Duration, Instant};

use log::info;
use sozu_command_lib::{
    request::RemoveBackend,
    response::{Event, EventKind},
};

use super::{Server, event_response};
use crate::backends::BackendKey;

/// How often a drain reports its progress.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Drain {
    key: BackendKey,
    removal: RemoveBackend,
    deadline: Instant,
    next_report: Instant,
}

impl Drain {
    fn next_wake(&self) -> Instant {
        self.next_report.min(self.deadline)
    }
}

impl Server {
    /// Starts the deadline of a backend that began draining with connections left.
    pub(super) fn start_drain(
        &mut self,
        key: BackendKey,
        removal: &RemoveBackend,
        timeout: Duration,
    ) {
        let now = Instant::now();
        self.drains.push(Drain {
            key,
            removal: removal.clone(),
            deadline: now + timeout,
            next_report: now,
        });
        self.check_drains(now);
    }

    /// When the loop must wake for a drain: its next report or its deadline.
    pub(super) fn next_drain_wake(&self) -> Option<Instant> {
        self.drains.iter().map(Drain::next_wake).min()
    }

    /// Reports the drains that are due, closes the sessions of those whose deadline passed,
    /// and forgets the drains that ended.
    pub(super) fn check_drains(&mut self, now: Instant) {
        let mut index = 0;
        while let Some(drain) = self.drains.get_mut(index) {
            let Some(backend) = self.backends.get(drain.key) else {
                self.drains.swap_remove(index);
                continue;
            };
            let sessions = backend.connections();
            if now >= drain.deadline {
                let removal = drain.removal.clone();
                let key = drain.key;
                self.drains.swap_remove(index);
                info!(
                    "backend {} of cluster {}: drain deadline reached, closing {sessions} session(s)",
                    removal.backend_id, removal.cluster_id
                );
                let message = format!("deadline reached: closing {sessions} session(s)");
                self.respond(event_response(drain_event(&removal, message)));
                self.close_backend_sessions(key);
                continue;
            }
            if now >= drain.next_report {
                drain.next_report = now + REPORT_INTERVAL;
                let left = drain.deadline.saturating_duration_since(now);
                let message = format!(
                    "{sessions} session(s) left, closed in {}s",
                    left.as_secs_f32().ceil()
                );
                let event = drain_event(&drain.removal, message);
                self.respond(event_response(event));
            }
            index += 1;
        }
    }

    /// Closes every session whose backend connection is `key`'s.
    fn close_backend_sessions(&mut self, key: BackendKey) {
        let sessions: Vec<usize> =
            self.sessions
                .iter()
                .filter(|(_, session)| {
                    session.io.backs.iter().any(|(_, back)| {
                        back.lease.as_ref().is_some_and(|lease| lease.key() == key)
                    })
                })
                .map(|(slot, _)| slot)
                .collect();
        for slot in sessions {
            self.close_session(slot);
        }
    }
}

fn drain_event(removal: &RemoveBackend, message: String) -> Event {
    Event {
        kind: EventKind::BackendDraining,
        cluster_id: Some(removal.cluster_id.clone()),
        backend_id: Some(removal.backend_id.clone()),
        address: Some(removal.address),
        message,
    }
}
