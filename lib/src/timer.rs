//! Timeouts of sessions, each firing when due without scanning every session.
//!
//! [`Timers`] is a min-heap of deadlines. A session keeps one [`Timeout`] per kind; moving a
//! deadline later (the common case: a socket was active, so its idle timeout restarts) only
//! writes a field. When the heap entry comes due, [`Timeout::on_due`] compares it with the
//! current deadline and either fires or queues the entry again at the new deadline. So each
//! timeout has at most one live heap entry, and pushing a deadline costs O(1) on the hot path.
//!
//! Every idle connection has an entry (its front timeout), so an entry is kept small (24
//! bytes: its instant as nanoseconds from the heap's epoch, the key packed), and the heap
//! gives back the room a peak of connections left once its entries are gone.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use crate::session::backs::Slot;

/// The furthest a deadline is set: far beyond any timeout the rules accept
/// ([`sozu_command_lib::rules::TIMEOUT`]), and still representable by an `Instant`.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + after`, without the panic of `Instant + Duration` on overflow: `after` comes from
/// orders and the configuration, and no value of theirs may panic the event loop. A duration
/// beyond [`FOREVER`] counts as [`FOREVER`].
pub fn later(at: Instant, after: Duration) -> Instant {
    // `at + FOREVER` fits on every platform the proxy runs on (64-bit seconds); were it not
    // to, the deadline would be `at`, a timeout firing early rather than a crash.
    at.checked_add(after.min(FOREVER)).unwrap_or(at)
}

/// Which timeout of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeoutKind {
    /// The client side: idle connection, or a request head that takes too long.
    Front,
    /// A backend connection of the session: connecting, or waiting for the backend.
    Back(Slot),
    /// A write the session's faults deferred ([`crate::session::shaper`]) may go on: the
    /// session is driven again.
    Resume,
}

/// Names the timeout a heap entry belongs to. `uid` tells a session from a later one that
/// reuses its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub session: usize,
    pub uid: u64,
    pub kind: TimeoutKind,
}

/// [`TimeoutKind::Front`] in an [`Entry`]; a backend slot is its number, below these.
const FRONT: u32 = u32::MAX;
/// [`TimeoutKind::Resume`] in an [`Entry`].
const RESUME: u32 = u32::MAX - 1;
/// The room the heap keeps however few its entries: giving back less saves too little to be
/// worth the copy.
const KEPT_ROOM: usize = 1024;

/// A heap entry: an instant and a [`TimerKey`] in 24 bytes, where `(Instant, TimerKey)` took
/// 40. Ordered by instant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Nanoseconds from the heap's epoch (before it: negative), which spans ±292 years.
    at: i64,
    uid: u64,
    session: u32,
    /// [`FRONT`], [`RESUME`] or a backend slot.
    kind: u32,
}

/// The deadlines of every session of a worker.
#[derive(Debug)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    /// The instant entries count from.
    epoch: Instant,
    /// Entries left by the last sweep: all live then.
    swept_to: usize,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            epoch: Instant::now(),
            swept_to: 0,
        }
    }
}

/// The nanoseconds of `elapsed` as an `i64`, saturating (at 292 years, beyond [`FOREVER`]).
fn signed_nanos(elapsed: Duration) -> i64 {
    i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
}

impl Timers {
    pub fn new() -> Self {
        Timers::default()
    }

    /// `at` in an entry: exact for any instant within 292 years of the epoch.
    fn offset(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.epoch) {
            Some(after) => signed_nanos(after),
            None => signed_nanos(self.epoch.saturating_duration_since(at)).saturating_neg(),
        }
    }

    /// The instant of an entry (the one [`Timers::offset`] was given).
    fn instant(&self, offset: i64) -> Instant {
        let distance = Duration::from_nanos(offset.unsigned_abs());
        let at = if offset >= 0 {
            self.epoch.checked_add(distance)
        } else {
            self.epoch.checked_sub(distance)
        };
        at.unwrap_or(self.epoch)
    }

    fn entry(&self, at: Instant, key: TimerKey) -> Option<Entry> {
        let kind = match key.kind {
            TimeoutKind::Front => FRONT,
            TimeoutKind::Resume => RESUME,
            TimeoutKind::Back(Slot(slot)) if slot < RESUME => slot,
            TimeoutKind::Back(_) => return None,
        };
        Some(Entry {
            at: self.offset(at),
            uid: key.uid,
            session: u32::try_from(key.session).ok()?,
            kind,
        })
    }

    fn unpack(&self, entry: &Entry) -> (Instant, TimerKey) {
        let kind = match entry.kind {
            FRONT => TimeoutKind::Front,
            RESUME => TimeoutKind::Resume,
            slot => TimeoutKind::Back(Slot(slot)),
        };
        let key = TimerKey {
            session: usize::try_from(entry.session).unwrap_or(usize::MAX),
            uid: entry.uid,
            kind,
        };
        (self.instant(entry.at), key)
    }

    /// The earliest queued deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse(entry)| self.instant(entry.at))
    }

    /// How long the event loop may wait before a timer is due (None: no timer queued).
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    /// The next entry due at `now`, removed from the heap.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        let now = self.offset(now);
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.at <= now => {
                let due = self.heap.pop().map(|Reverse(entry)| self.unpack(&entry));
                self.give_back_room();
                due
            }
            _ => None,
        }
    }

    /// Queues an entry. A key no entry can hold (a session slot or a backend slot beyond 32
    /// bits: more than memory could hold) is refused: returns false.
    fn push(&mut self, at: Instant, key: TimerKey) -> bool {
        let Some(entry) = self.entry(at, key) else {
            return false;
        };
        self.heap.push(Reverse(entry));
        true
    }

    /// Frees most of the heap's room once a peak of entries is gone (thousands of
    /// connections that came at once and left, or went idle with one timeout each instead of
    /// two): the room left is twice the entries, and at least [`KEPT_ROOM`]. The heap grows
    /// again by doubling; shrinking only below a quarter makes each entry pay a constant.
    fn give_back_room(&mut self) {
        let room = self.heap.capacity();
        if room > KEPT_ROOM && self.heap.len() < room / 4 {
            self.heap
                .shrink_to(self.heap.len().saturating_mul(2).max(KEPT_ROOM));
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether stale entries may outnumber the live ones enough for a sweep to be due: more
    /// than `floor` entries, and more than twice as many as the last sweep left, so that
    /// sweeping costs a constant per entry pushed however many timeouts are live.
    pub fn needs_sweep(&self, floor: usize) -> bool {
        self.heap.len() > floor.max(self.swept_to.saturating_mul(2))
    }

    /// Keeps only the entries `is_live` accepts (given each entry's instant and key): the
    /// others, of timeouts that no longer exist (their session or backend connection went) or
    /// that were queued again at another instant, would otherwise stay until their instant.
    pub fn retain(&mut self, mut is_live: impl FnMut(Instant, &TimerKey) -> bool) {
        let mut heap = std::mem::take(&mut self.heap);
        heap.retain(|Reverse(entry)| {
            let (at, key) = self.unpack(entry);
            is_live(at, &key)
        });
        self.heap = heap;
        self.swept_to = self.heap.len();
        self.give_back_room();
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// One timeout of a session.
///
/// Invariant: when `deadline` is set, `queued` is set and `queued <= deadline`; the heap holds
/// an entry at `queued` for this timeout. Entries at another instant are stale and ignored.
#[derive(Debug, Default, Clone)]
pub struct Timeout {
    deadline: Option<Instant>,
    queued: Option<Instant>,
}

impl Timeout {
    /// Arms the timeout to fire at `at`, replacing any earlier deadline.
    pub fn set(&mut self, at: Instant, key: TimerKey, timers: &mut Timers) {
        self.deadline = Some(at);
        if self.queued.is_none_or(|queued| at < queued) && timers.push(at, key) {
            self.queued = Some(at);
        }
    }

    /// Arms the timeout to fire `after` from `now`.
    pub fn set_after(&mut self, now: Instant, after: Duration, key: TimerKey, timers: &mut Timers) {
        self.set(later(now, after), key, timers);
    }

    /// Disarms the timeout. Its heap entry stays and is ignored when due.
    pub fn cancel(&mut self) {
        self.deadline = None;
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this timeout's heap entry is the one at `at` (any other entry of it is stale).
    pub fn is_queued_at(&self, at: Instant) -> bool {
        self.queued == Some(at)
    }

    /// Handles this timeout's heap entry for instant `at` coming due at `now`. Returns true
    /// when the timeout fires (it is then disarmed).
    pub fn on_due(
        &mut self,
        at: Instant,
        now: Instant,
        key: TimerKey,
        timers: &mut Timers,
    ) -> bool {
        if self.queued != Some(at) {
            return false;
        }
        self.queued = None;
        match self.deadline {
            Some(deadline) if deadline <= now => {
                self.deadline = None;
                true
            }
            Some(deadline) => {
                if timers.push(deadline, key) {
                    self.queued = Some(deadline);
                }
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: usize) -> TimerKey {
        TimerKey {
            session,
            uid: session as u64,
            kind: TimeoutKind::Front,
        }
    }

    /// Pops every due entry and returns the sessions whose timeout fired.
    fn fire(timers: &mut Timers, timeouts: &mut [Timeout], now: Instant) -> Vec<usize> {
        let mut fired = Vec::new();
        while let Some((at, key)) = timers.pop_due(now) {
            if timeouts[key.session].on_due(at, now, key, timers) {
                fired.push(key.session);
            }
        }
        fired
    }

    /// Issue 10, item 3: a timeout of u64::MAX seconds panicked the worker on `Instant +
    /// Duration` overflow.
    #[test]
    fn a_huge_timeout_never_panics_and_never_fires() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default()];
        timeouts[0].set_after(start, Duration::MAX, key(0), &mut timers);
        let ten_years = start + Duration::from_secs(10 * 365 * 24 * 3600);
        assert!(fire(&mut timers, &mut timeouts, ten_years).is_empty());
        assert_eq!(later(start, Duration::from_secs(u64::MAX)), start + FOREVER);
        assert_eq!(
            later(start, Duration::from_secs(5)),
            start + Duration::from_secs(5)
        );
    }

    /// A backend connection that leaves its slot takes its timeout along, and the next one in
    /// the slot queues a new entry: the old entry is stale though its session lives. The
    /// sweep drops it (it kept every entry of a live session, so an HTTP/2 session, which
    /// changes connections at each stream, grew the heap until every turn swept it whole).
    #[test]
    fn a_sweep_drops_the_stale_entries_of_live_sessions() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut current = Timeout::default();
        for request in 1..=100 {
            current = Timeout::default();
            current.set(start + Duration::from_secs(request), key(0), &mut timers);
        }
        assert_eq!(timers.len(), 100);
        assert!(timers.needs_sweep(10));
        timers.retain(|at, _| current.is_queued_at(at));
        assert_eq!(timers.len(), 1, "only the live entry stays");
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_secs(100))
        );
        // The next sweep waits for the heap to double, whatever the floor.
        current.set(start + Duration::from_secs(1), key(0), &mut timers);
        assert!(!timers.needs_sweep(0));
        current.set(start, key(0), &mut timers);
        assert!(timers.needs_sweep(0));
    }

    /// Every idle connection has a front timeout queued: its entry stays small.
    #[test]
    fn an_entry_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<Entry>>(), 24);
    }

    /// Keys and instants come out of the heap as they went in: every kind of timeout, an
    /// instant before the heap's epoch, and one at the furthest deadline.
    #[test]
    fn entries_keep_their_instant_and_key() {
        let before = Instant::now();
        let mut timers = Timers::new();
        let kinds = [
            TimeoutKind::Front,
            TimeoutKind::Resume,
            TimeoutKind::Back(Slot::FIRST),
            TimeoutKind::Back(Slot(RESUME - 1)),
        ];
        let far = later(before, Duration::MAX);
        for (index, kind) in kinds.into_iter().enumerate() {
            let key = TimerKey {
                session: index,
                uid: u64::MAX - index as u64,
                kind,
            };
            assert!(timers.push(before, key));
            assert!(timers.push(far, key));
        }
        let mut due = Vec::new();
        while let Some(entry) = timers.pop_due(before) {
            due.push(entry);
        }
        due.sort();
        let expected: Vec<_> = kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| {
                let key = TimerKey {
                    session: index,
                    uid: u64::MAX - index as u64,
                    kind,
                };
                (before, key)
            })
            .collect();
        assert_eq!(due, expected);
        assert_eq!(timers.next_deadline(), Some(far));
        assert_eq!(timers.len(), kinds.len());
    }

    /// 10,000 connections came at once and their timeouts fired: the heap gives back the
    /// room they took (it kept room for 16,384 entries, 640 KiB, for the worker's life).
    #[test]
    fn the_heap_gives_back_the_room_of_a_peak() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default(); 10_000];
        for (session, timeout) in timeouts.iter_mut().enumerate() {
            timeout.set(start + Duration::from_secs(1), key(session), &mut timers);
        }
        timeouts[0].set(start, key(0), &mut timers);
        assert!(timers.heap.capacity() >= 10_000);
        assert_eq!(fire(&mut timers, &mut timeouts, start), [0]);
        assert!(timers.heap.capacity() >= 10_000, "most entries are live");
        let fired = fire(&mut timers, &mut timeouts, start + Duration::from_secs(1));
        assert_eq!(fired.len(), 9_999);
        assert!(
            timers.heap.capacity() <= 2 * KEPT_ROOM,
            "{}",
            timers.heap.capacity()
        );
        // A sweep that leaves few entries gives the room back too.
        for (session, timeout) in timeouts.iter_mut().enumerate() {
            timeout.set(start + Duration::from_secs(2), key(session), &mut timers);
        }
        timers.retain(|_, key| key.session < 10);
        assert_eq!(timers.len(), 10);
        assert!(timers.heap.capacity() <= 2 * KEPT_ROOM);
    }

    #[test]
    fn fires_when_due_and_only_then() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default(), Timeout::default()];
        timeouts[0].set(start + Duration::from_secs(1), key(0), &mut timers);
        timeouts[1].set(start + Duration::from_secs(2), key(1), &mut timers);
        assert_eq!(timers.poll_timeout(start), Some(Duration::from_secs(1)));
        assert!(fire(&mut timers, &mut timeouts, start).is_empty());
        assert_eq!(
            fire(&mut timers, &mut timeouts, start + Duration::from_secs(1)),
            [0]
        );
        assert_eq!(
            fire(&mut timers, &mut timeouts, start + Duration::from_secs(5)),
            [1]
        );
        assert!(timers.is_empty());
    }

    #[test]
    fn a_later_deadline_is_requeued_without_a_new_entry() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default()];
        for step in 1..=100 {
            timeouts[0].set(
                start + Duration::from_millis(1000 + step),
                key(0),
                &mut timers,
            );
        }
        assert_eq!(timers.len(), 1, "pushing the deadline later adds no entry");
        assert!(
            fire(
                &mut timers,
                &mut timeouts,
                start + Duration::from_millis(1001)
            )
            .is_empty()
        );
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_millis(1100))
        );
        assert_eq!(
            fire(
                &mut timers,
                &mut timeouts,
                start + Duration::from_millis(1100)
            ),
            [0]
        );
    }

    #[test]
    fn an_earlier_deadline_fires_early_once() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default()];
        timeouts[0].set(start + Duration::from_secs(10), key(0), &mut timers);
        timeouts[0].set(start + Duration::from_secs(1), key(0), &mut timers);
        assert_eq!(
            fire(&mut timers, &mut timeouts, start + Duration::from_secs(1)),
            [0]
        );
        assert!(fire(&mut timers, &mut timeouts, start + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn a_cancelled_timeout_never_fires() {
        let start = Instant::now();
        let mut timers = Timers::new();
        let mut timeouts = vec![Timeout::default()];
        timeouts[0].set(start + Duration::from_secs(1), key(0), &mut timers);
        timeouts[0].cancel();
        assert!(fire(&mut timers, &mut timeouts, start + Duration::from_secs(2)).is_empty());
        timeouts[0].set(start + Duration::from_secs(3), key(0), &mut timers);
        assert_eq!(
            fire(&mut timers, &mut timeouts, start + Duration::from_secs(3)),
            [0]
        );
    }
}
