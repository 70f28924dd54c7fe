//! The write budget of a session: how many bytes each copy path may move now, when faults
//! act on the session ([`crate::faults`]).
//!
//! A session carries a [`Shaper`] only while faults act on it (`Session::shaper` is `None`
//! otherwise, or empty between the requests of a keep-alive HTTP connection: a copy path
//! without faults pays one branch). Every copy path (the pipe's two
//! directions, the HTTP request and response bodies) tells the shaper what it read
//! ([`Shaper::received`]), asks before writing ([`Shaper::budget`]) and says what it wrote
//! ([`Shaper::sent`]); a half-close waits for [`Shaper::may_close`].
//!
//! A write the faults defer is not attempted: the sink's writable flag stays as the kernel
//! left it (edge-triggered, no new event would come for it), and the shaper remembers when
//! to go on. After each run of the session, [`Shaper::arm`] sets the session's resume timer
//! (`TimeoutKind::Resume`) at the earliest such instant, or at a lane's deadline (a reset or a
//! cut due even when no byte moves), and the loop drives the session again then. A write held
//! until its fault changes has no timer: when the worker's faults change, the lanes of faults
//! gone or changed are dropped ([`Shaper::drop_stale`]) and the session is driven again.

use std::{rc::Rc, time::Instant};

use crate::{
    faults::{Allowance, Drawn, Lane},
    session::endpoint::Endpoint,
    timer::{Timeout, TimerKey, Timers},
};

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the client to the backend (the faults' `upstream`).
    ToBackend,
    /// From the backend to the client (`downstream`).
    ToClient,
}

/// What a copy path may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Write at most this many bytes (`usize::MAX`: no limit).
    UpTo(usize),
    /// Write nothing now; the session is driven again when it may.
    Wait,
    /// Close the connection after what was written.
    Cut,
    /// Reset the connection.
    Reset,
}

/// The faults acting on one session: their lanes, their names, and the resume timer.
#[derive(Debug, Default)]
pub struct Shaper {
    to_backend: Vec<Lane>,
    to_client: Vec<Lane>,
    /// The faults that acted, for access logs (`fault="…"`).
    labels: Vec<Rc<str>>,
    /// Faults on backends of the request's cluster that its selectors took when it was
    /// routed: drawn once its backend is chosen ([`Shaper::draw_for_backend`]).
    for_backend: Vec<Rc<str>>,
    /// The earliest instant a deferred write asked for during this run.
    wake: Option<Instant>,
    resume: Timeout,
}

impl Shaper {
    /// The shaper of the faults named `labels`, with their lanes.
    pub fn new(labels: Vec<Rc<str>>, to_backend: Vec<Lane>, to_client: Vec<Lane>) -> Self {
        Shaper {
            to_backend,
            to_client,
            labels,
            ..Shaper::default()
        }
    }

    /// Empties the shaper for the next request of a keep-alive connection, keeping its room,
    /// and hands its vectors to be filled with that request's faults ([`FaultSet::request`]).
    /// An empty shaper acts as none: everything may go, no timer, no label.
    ///
    /// [`FaultSet::request`]: crate::faults::FaultSet::request
    pub fn next_request(&mut self) -> Drawn<'_> {
        self.clear();
        Drawn {
            upstream: &mut self.to_backend,
            downstream: &mut self.to_client,
            labels: &mut self.labels,
        }
    }

    /// Forgets the faults of the request that ended, keeping the room they took: the shaper
    /// then acts as none.
    pub fn clear(&mut self) {
        self.to_backend.clear();
        self.to_client.clear();
        self.labels.clear();
        self.for_backend.clear();
        self.wake = None;
        self.resume.cancel();
    }

    /// Where the faults on a backend that the request's selectors take go, when it is routed.
    pub fn backend_candidates(&mut self) -> &mut Vec<Rc<str>> {
        &mut self.for_backend
    }

    /// Whether faults on a backend wait for the request's backend to be chosen.
    pub fn awaits_backend(&self) -> bool {
        !self.for_backend.is_empty()
    }

    /// Once the request's backend is chosen, draws the faults on a backend that its
    /// selectors took: `draw` gets them and fills the shaper's vectors as at routing; the
    /// lanes it adds toward the backend count the `waiting` bytes of the request, not sent
    /// yet, as received at `now`. The candidates are spent: `None` when there were none.
    pub fn draw_for_backend<R>(
        &mut self,
        now: Instant,
        waiting: usize,
        draw: impl FnOnce(&[Rc<str>], &mut Drawn<'_>) -> R,
    ) -> Option<R> {
        if self.for_backend.is_empty() {
            return None;
        }
        let candidates = std::mem::take(&mut self.for_backend);
        let earlier = self.to_backend.len();
        let result = draw(
            &candidates,
            &mut Drawn {
                upstream: &mut self.to_backend,
                downstream: &mut self.to_client,
                labels: &mut self.labels,
            },
        );
        for lane in self.to_backend.iter_mut().skip(earlier) {
            lane.received(now, waiting);
        }
        // The room stays for the next request.
        self.for_backend = candidates;
        self.for_backend.clear();
        Some(result)
    }

    /// Adds the faults of `later` (those on a backend, drawn once it is chosen).
    pub fn absorb(&mut self, later: Shaper) {
        self.labels.extend(later.labels);
        self.to_backend.extend(later.to_backend);
        self.to_client.extend(later.to_client);
    }

    /// Whether a lane acts on a way, or a resume is asked for or armed: otherwise the shaper
    /// only carries the names of the faults that acted, and every byte may move.
    pub fn is_shaping(&self) -> bool {
        !self.to_backend.is_empty()
            || !self.to_client.is_empty()
            || self.wake.is_some()
            || self.resume.deadline().is_some()
    }

    /// The names of the faults that acted.
    pub fn labels(&self) -> &[Rc<str>] {
        &self.labels
    }

    fn lanes(&mut self, way: Way) -> &mut Vec<Lane> {
        match way {
            Way::ToBackend => &mut self.to_backend,
            Way::ToClient => &mut self.to_client,
        }
    }

    /// Asks to be driven again at `at` (the earliest of such instants wins, at the next
    /// [`Shaper::arm`]).
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(self.wake.map_or(at, |wake| wake.min(at)));
    }

    /// `count` bytes going `way` were read at `now`.
    pub fn received(&mut self, way: Way, now: Instant, count: usize) {
        for lane in self.lanes(way) {
            lane.received(now, count);
        }
    }

    /// How many of the `pending` bytes going `way` may be written at `now`.
    pub fn budget(&mut self, way: Way, now: Instant, pending: usize) -> Budget {
        let lanes = self.lanes(way);
        if lanes.is_empty() {
            return Budget::UpTo(usize::MAX);
        }
        match crate::faults::allowance(lanes, now, pending) {
            Allowance::All => Budget::UpTo(usize::MAX),
            Allowance::Bytes(count) => Budget::UpTo(count),
            Allowance::Later(at) => {
                self.wake_at(at);
                Budget::Wait
            }
            Allowance::Held => Budget::Wait,
            Allowance::Cut => Budget::Cut,
            Allowance::Reset => Budget::Reset,
        }
    }

    /// `count` bytes going `way` were written at `now`.
    pub fn sent(&mut self, way: Way, now: Instant, count: usize) {
        for lane in self.lanes(way) {
            lane.sent(now, count);
        }
    }

    /// Whether the end of the stream going `way` may be relayed at `now` (`slow_close`).
    pub fn may_close(&mut self, way: Way, now: Instant) -> bool {
        let mut later = None;
        for lane in self.lanes(way) {
            if let Allowance::Later(at) = lane.close(now) {
                later = Some(later.map_or(at, |l: Instant| l.min(at)));
            }
        }
        match later {
            Some(at) => {
                self.wake_at(at);
                false
            }
            None => true,
        }
    }

    /// A reset or a cut that is due at `now` whether or not bytes are waiting (`reset_peer`,
    /// `timeout`, `limit_data` spent).
    pub fn due(&mut self, now: Instant) -> Option<Budget> {
        let mut due = None;
        for lane in self.to_backend.iter_mut().chain(self.to_client.iter_mut()) {
            match lane.allowance(now, 1) {
                Allowance::Reset => return Some(Budget::Reset),
                Allowance::Cut => due = Some(Budget::Cut),
                Allowance::All | Allowance::Bytes(_) | Allowance::Later(_) | Allowance::Held => {}
            }
        }
        due
    }

    /// The earliest instant a deferred write asked for during this run, or a lane's deadline
    /// after `now`: when the shaper's owner must be driven again.
    pub fn next_resume(&mut self, now: Instant) -> Option<Instant> {
        let deadline = self
            .to_backend
            .iter()
            .chain(self.to_client.iter())
            .filter_map(Lane::deadline)
            .filter(|at| *at > now)
            .min();
        match (self.wake.take(), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the resume timer at [`Shaper::next_resume`], or disarms it.
    pub fn arm(&mut self, now: Instant, key: TimerKey, timers: &mut Timers) {
        if !self.is_shaping() {
            return;
        }
        match self.next_resume(now) {
            Some(at) => {
                if self.resume.deadline() != Some(at) {
                    self.resume.set(at, key, timers);
                }
            }
            None => self.resume.cancel(),
        }
    }

    /// The resume timer, for the loop to fire.
    pub fn resume_timeout(&mut self) -> &mut Timeout {
        &mut self.resume
    }

    /// Drops the lanes of faults that `is_current` no longer knows (removed or changed).
    /// Returns whether any went: the session must be driven again, what they held may move.
    pub fn drop_stale(&mut self, is_current: impl Fn(&Rc<str>) -> bool) -> bool {
        let before = self.to_backend.len() + self.to_client.len();
        let keep = |lane: &Lane| lane.fault().is_none_or(&is_current);
        self.to_backend.retain(keep);
        self.to_client.retain(keep);
        before != self.to_backend.len() + self.to_client.len()
    }
}

/// Makes the close of `endpoint`'s socket a reset (RST, through `SO_LINGER` 0): its peer
/// sees `ECONNRESET`.
pub fn reset_on_close(endpoint: &Endpoint) {
    // A stream of a shared connection has no socket of its own: dropping it resets it.
    let Some(stream) = endpoint.tcp() else {
        return;
    };
    if let Err(error) = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO)) {
        log::debug!("cannot make a close a reset: {error}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sozu_command_lib::request::Effect;

    use super::*;
    use crate::faults::FaultRng;

    fn lane(effect: Effect, now: Instant, fault: &str) -> Lane {
        Lane::new(&effect, now, FaultRng::new(1)).of_fault(Rc::from(fault))
    }

    #[test]
    fn a_throttled_write_waits_until_the_lane_allows_and_arms_the_resume_timer() {
        let now = Instant::now();
        let mut shaper = Shaper::new(
            vec![Rc::from("slow")],
            Vec::new(),
            vec![lane(Effect::Bandwidth { rate: 1 }, now, "slow")],
        );
        assert_eq!(
            shaper.budget(Way::ToBackend, now, 100),
            Budget::UpTo(usize::MAX)
        );
        assert_eq!(shaper.budget(Way::ToClient, now, 100), Budget::UpTo(10));
        shaper.sent(Way::ToClient, now, 10);
        assert_eq!(shaper.budget(Way::ToClient, now, 90), Budget::Wait);
        let mut timers = Timers::new();
        let key = TimerKey {
            session: 0,
            uid: 0,
            kind: crate::timer::TimeoutKind::Resume,
        };
        shaper.arm(now, key, &mut timers);
        assert_eq!(
            shaper.resume_timeout().deadline(),
            Some(now + Duration::from_millis(10))
        );
    }

    fn resume_key() -> TimerKey {
        TimerKey {
            session: 0,
            uid: 0,
            kind: crate::timer::TimeoutKind::Resume,
        }
    }

    /// Bytes due at `now` go in the same turn, in one write with those the lanes did not
    /// count (an edited head), and no resume timer is asked for: nothing waits. A read of no
    /// byte (a TCP connection whose client sent nothing before its backend was up) counts for
    /// nothing.
    #[test]
    fn a_zero_latency_lane_lets_bytes_through_at_once_and_arms_no_timer() {
        let now = Instant::now();
        let zero = Effect::Latency {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
        };
        let mut shaper = Shaper::new(
            vec![Rc::from("zero")],
            vec![lane(zero.clone(), now, "zero")],
            vec![lane(zero, now, "zero")],
        );
        shaper.received(Way::ToBackend, now, 0);
        shaper.received(Way::ToBackend, now, 10);
        assert_eq!(
            shaper.budget(Way::ToBackend, now, 30),
            Budget::UpTo(usize::MAX)
        );
        shaper.sent(Way::ToBackend, now, 30);
        shaper.received(Way::ToClient, now, 100);
        assert_eq!(
            shaper.budget(Way::ToClient, now, 100),
            Budget::UpTo(usize::MAX)
        );
        let mut timers = Timers::new();
        shaper.arm(now, resume_key(), &mut timers);
        assert_eq!(shaper.resume_timeout().deadline(), None);
        assert!(timers.is_empty(), "no timer armed when nothing waits");
    }

    /// A delayed write asks to be resumed when its bytes are due, never in the past (which
    /// fired the resume timer at once, again and again, until they were).
    #[test]
    fn a_delayed_write_resumes_when_its_bytes_are_due() {
        let start = Instant::now();
        let effect = Effect::Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::ZERO,
        };
        let mut shaper = Shaper::new(
            vec![Rc::from("slow")],
            vec![lane(effect, start, "slow")],
            Vec::new(),
        );
        shaper.received(Way::ToBackend, start, 0);
        let read = start + Duration::from_millis(5);
        shaper.received(Way::ToBackend, read, 10);
        assert_eq!(shaper.budget(Way::ToBackend, read, 10), Budget::Wait);
        let mut timers = Timers::new();
        shaper.arm(read, resume_key(), &mut timers);
        assert_eq!(
            shaper.resume_timeout().deadline(),
            Some(read + Duration::from_millis(100))
        );
    }

    #[test]
    fn a_reset_is_due_without_any_byte_and_stale_lanes_go() {
        let now = Instant::now();
        let mut shaper = Shaper::new(
            vec![Rc::from("reset"), Rc::from("hold")],
            vec![lane(
                Effect::ResetPeer {
                    timeout: Duration::from_millis(100),
                },
                now,
                "reset",
            )],
            vec![lane(
                Effect::Timeout {
                    timeout: Duration::ZERO,
                },
                now,
                "hold",
            )],
        );
        assert_eq!(shaper.due(now), None);
        assert_eq!(shaper.budget(Way::ToClient, now, 5), Budget::Wait);
        assert_eq!(
            shaper.due(now + Duration::from_millis(100)),
            Some(Budget::Reset)
        );
        assert!(shaper.drop_stale(|name| &**name != "hold"));
        assert_eq!(
            shaper.budget(Way::ToClient, now, 5),
            Budget::UpTo(usize::MAX)
        );
        assert!(!shaper.drop_stale(|name| &**name != "hold"));
        assert_eq!(shaper.labels().len(), 2, "the labels stay");
    }
}
