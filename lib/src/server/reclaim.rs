//! Out of descriptors: when the worker cannot open a socket (`EMFILE`, `ENFILE`), it closes
//! idle backend connections, least recently used first, rather than refuse the client: those
//! in the idle pool, those that HTTP/1 sessions keep between requests (for one back
//! timeout), and the shared HTTP/2 connections no stream handle uses (kept for the idle
//! pool's time). They cost their next user a connect, where a refusal costs a client its
//! request. A shared HTTP/2 connection with a handle is never closed for its descriptor (a
//! handle a session keeps between requests holds no descriptor of its own).
//!
//! Connections are closed by batches (an eighth of the idle ones, at least one and at most
//! [`MAX_BATCH`]): finding the least recently used looks at every session, which the batch
//! amortises while the descriptors stay short. Only when no idle backend connection is left
//! does the worker refuse: a request gets a 503, and accepts pause for [`ACCEPT_PAUSE`]
//! (the connections wait in the listener's backlog) instead of failing at every turn of the
//! loop.

use std::{
    io,
    time::{Duration, Instant},
};

use log::{debug, warn};
use mio::Token;

use super::Server;
use crate::backends::BackendKey;

/// The most idle backend connections closed at once.
const MAX_BATCH: usize = 32;
/// How long accepts pause when the worker is out of descriptors with nothing to free.
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The least time between two warnings of a worker out of descriptors.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Whether an error says the process (or the system) has no descriptor left.
pub(super) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What the worker knows of its descriptors running out.
#[derive(Debug, Default)]
pub(super) struct Descriptors {
    /// Accepts wait until then: the worker had no descriptor and nothing to free.
    pub(super) accepts_paused_until: Option<Instant>,
    /// When the last warning was logged.
    warned_at: Option<Instant>,
}

/// An idle backend connection that may be closed for its descriptor.
#[derive(Debug, Clone, Copy)]
enum Idle {
    Pooled {
        backend: BackendKey,
        token: Token,
    },
    /// Kept by the session with this key.
    Kept(usize),
    /// A shared HTTP/2 connection no stream handle uses.
    Mux {
        backend: BackendKey,
        token: Token,
    },
}

/// How many of `idle` connections to close at once.
fn batch_size(idle: usize) -> usize {
    (idle / 8).clamp(1, MAX_BATCH).min(idle)
}

/// The `count` least recently used of `idle` (in no order): a pass that keeps `count` of them,
/// rather than a sort of them all (thousands of sessions may keep a connection).
fn oldest(idle: impl Iterator<Item = (Instant, Idle)>, count: usize) -> Vec<(Instant, Idle)> {
    let mut oldest: Vec<(Instant, Idle)> = Vec::with_capacity(count);
    for candidate in idle {
        if oldest.len() < count {
            oldest.push(candidate);
            continue;
        }
        let newest = oldest
            .iter_mut()
            .max_by_key(|(since, _)| *since)
            .filter(|(since, _)| candidate.0 < *since);
        if let Some(newest) = newest {
            *newest = candidate;
        }
    }
    oldest
}

impl Server {
    /// The worker is out of descriptors: closes a batch of idle backend connections, least
    /// recently used first. Returns how many were closed (none: nothing could be freed).
    pub(super) fn reclaim_descriptors(&mut self, error: &io::Error) -> usize {
        let idle_count = self.idle_pool.pooled().count()
            + self.kept_backs().count()
            + self.muxes.unused().count();
        let count = batch_size(idle_count);
        debug!("out of descriptors: closing {count} idle backend connections");
        if count == 0 {
            self.recorder.metrics.descriptors_exhausted();
            self.warn_out_of_descriptors(error, 0);
            return 0;
        }
        let pooled = self
            .idle_pool
            .pooled()
            .map(|(since, backend, token)| (since, Idle::Pooled { backend, token }));
        let muxes = self
            .muxes
            .unused()
            .map(|(since, backend, token)| (since, Idle::Mux { backend, token }));
        let chosen = oldest(pooled.chain(self.kept_backs()).chain(muxes), count);
        for (_, candidate) in chosen {
            match candidate {
                Idle::Pooled { backend, token } => {
                    if let Some(pooled) = self.idle_pool.remove(backend, token) {
                        self.close_idle(pooled);
                    }
                }
                Idle::Kept(key) => {
                    if let Some(back) = self
                        .sessions
                        .get_mut(key)
                        .and_then(|session| session.take_kept_back())
                    {
                        self.drop_back(back);
                    }
                }
                Idle::Mux { backend, token } => self.close_unused_mux(backend, token),
            }
        }
        self.recorder.metrics.descriptors_reclaimed(count);
        self.warn_out_of_descriptors(error, count);
        count
    }

    /// The backend connections sessions keep between requests, with since when they idle.
    fn kept_backs(&self) -> impl Iterator<Item = (Instant, Idle)> + '_ {
        self.sessions
            .iter()
            .filter_map(|(key, session)| Some((session.kept_back_since()?, Idle::Kept(key))))
    }

    /// Pauses accepts for [`ACCEPT_PAUSE`]: the worker has no descriptor for a connection
    /// and nothing to free.
    pub(super) fn pause_accepts(&mut self) {
        self.descriptors.accepts_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    /// Ends a pause of accepts that is over.
    pub(super) fn resume_accepts(&mut self) {
        if self
            .descriptors
            .accepts_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.descriptors.accepts_paused_until = None;
        }
    }

    /// Says that the worker ran out of descriptors, at most once per [`WARNING_INTERVAL`]:
    /// its open-files limit is too low for its load.
    fn warn_out_of_descriptors(&mut self, error: &io::Error, closed: usize) {
        let now = Instant::now();
        if self
            .descriptors
            .warned_at
            .is_some_and(|at| now.saturating_duration_since(at) < WARNING_INTERVAL)
        {
            return;
        }
        self.descriptors.warned_at = Some(now);
        if closed > 0 {
            warn!(
                "out of descriptors ({error}): closed {closed} idle backend connections (metric \
                 descriptors.reclaimed); raise the open-files limit"
            );
        } else {
            warn!(
                "out of descriptors ({error}) and no idle backend connection to close: refusing \
                 (metric descriptors.exhausted); raise the open-files limit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_an_eighth_of_the_idle_connections_within_bounds() {
        assert_eq!(batch_size(0), 0);
        assert_eq!(batch_size(1), 1);
        assert_eq!(batch_size(15), 1);
        assert_eq!(batch_size(80), 10);
        assert_eq!(batch_size(10_000), MAX_BATCH);
    }

    #[test]
    fn the_least_recently_used_are_chosen() {
        let start = Instant::now();
        let idle = [5, 1, 7, 3, 2, 9].map(|seconds| {
            (
                start + Duration::from_secs(seconds),
                Idle::Kept(seconds as usize),
            )
        });
        let mut chosen: Vec<usize> = oldest(idle.into_iter(), 3)
            .into_iter()
            .map(|(_, candidate)| match candidate {
                Idle::Kept(key) => key,
                Idle::Pooled { .. } | Idle::Mux { .. } => usize::MAX,
            })
            .collect();
        chosen.sort_unstable();
        assert_eq!(chosen, [1, 2, 3]);
        assert!(oldest(idle.into_iter(), 0).is_empty());
    }

    #[test]
    fn emfile_and_enfile_are_out_of_descriptors() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
    }
}
