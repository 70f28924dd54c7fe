//! One direction of one faulted connection: how many bytes may move now, and when.
//!
//! A copy path tells the lane what it read ([`Lane::received`]) and what it wrote
//! ([`Lane::sent`]), and asks before writing ([`Lane::allowance`]) and before relaying a
//! close ([`Lane::close`]). Every method takes the instant from the caller: the lane never
//! reads the clock, so its arithmetic is tested exactly.

use std::{
    collections::VecDeque,
    rc::Rc,
    time::{Duration, Instant},
};

use sozu_command_lib::request::Effect;

use super::{Allowance, rng::FaultRng};

/// Chunks of received bytes remembered by a latency lane; past this, new bytes join the last
/// chunk (and wait as long as it does, or a little more), so memory stays bounded.
const MAX_CHUNKS: usize = 64;

/// How much a bandwidth lane lets through at once: this much time's worth of bytes.
pub const BANDWIDTH_SLICE: Duration = Duration::from_millis(10);

/// What one direction of a faulted connection is doing.
#[derive(Debug)]
pub struct Lane {
    shaping: Shaping,
    rng: FaultRng,
    /// The fault the lane belongs to, once known: a session drops the lanes of a fault that
    /// changed or went.
    fault: Option<Rc<str>>,
}

#[derive(Debug)]
enum Shaping {
    /// Bytes wait `latency` ± `jitter` after they arrive; `due` counts bytes received due at
    /// once with nothing waiting ahead of them (never stored: a `latency 0` lane allocates
    /// nothing), and `chunks` holds, in order after them, when each
    /// chunk of received bytes may leave and how many bytes it has.
    Latency {
        latency: Duration,
        jitter: Duration,
        due: usize,
        chunks: VecDeque<(Instant, usize)>,
    },
    /// A token bucket kept as the instant from which the next byte may leave.
    Bandwidth {
        bytes_per_second: u64,
        next_free: Instant,
    },
    /// Bytes leave in slices of `slice` bytes, `delay` apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: Duration,
        slice: usize,
        next_slice: Instant,
    },
    /// Closes once `left` more bytes went through.
    LimitData { left: u64 },
    /// Nothing moves; the connection is cut at `until`, or held while the fault lasts.
    Timeout { until: Option<Instant> },
    /// Bytes move until `at`, then the connection is reset.
    ResetPeer { at: Instant },
    /// Bytes move; a close waits `delay`.
    SlowClose {
        delay: Duration,
        closing_since: Option<Instant>,
    },
    /// Nothing of this fault acts on this direction.
    Open,
}

impl Lane {
    /// The lane of `effect` for a connection that started (or a response that began) at
    /// `now`. Effects that do not shape bytes give an open lane.
    pub fn new(effect: &Effect, now: Instant, rng: FaultRng) -> Self {
        let shaping = match effect {
            Effect::Latency { latency, jitter } => Shaping::Latency {
                latency: *latency,
                jitter: *jitter,
                due: 0,
                chunks: VecDeque::new(),
            },
            Effect::Bandwidth { rate } => Shaping::Bandwidth {
                bytes_per_second: rate.saturating_mul(1_000).max(1),
                next_free: now,
            },
            Effect::Slicer {
                average_size,
                size_variation,
                delay,
            } => Shaping::Slicer {
                average_size: *average_size,
                size_variation: *size_variation,
                delay: *delay,
                slice: 0,
                next_slice: now,
            },
            Effect::LimitData { bytes } => Shaping::LimitData { left: *bytes },
            Effect::Timeout { timeout } => Shaping::Timeout {
                until: (!timeout.is_zero())
                    .then(|| now.checked_add(*timeout))
                    .flatten(),
            },
            Effect::ResetPeer { timeout } => Shaping::ResetPeer {
                at: now.checked_add(*timeout).unwrap_or(now),
            },
            Effect::SlowClose { delay } => Shaping::SlowClose {
                delay: *delay,
                closing_since: None,
            },
            _ => Shaping::Open,
        };
        let mut lane = Lane {
            shaping,
            rng,
            fault: None,
        };
        lane.next_slice_size();
        lane
    }

    /// Whether `effect` does anything to the bytes of a direction: a `latency` of 0 ± 0 lets
    /// every byte through at once, so a fault with it gets no lane (it still acts: its name
    /// labels what it touched), and its copy paths pay nothing more than a route without
    /// fault.
    pub fn shapes(effect: &Effect) -> bool {
        match effect {
            Effect::Latency { latency, jitter } => !(latency.is_zero() && jitter.is_zero()),
            _ => true,
        }
    }

    /// The same lane, belonging to the fault named `fault`.
    pub fn of_fault(mut self, fault: Rc<str>) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The fault the lane belongs to.
    pub fn fault(&self) -> Option<&Rc<str>> {
        self.fault.as_ref()
    }

    /// `count` bytes were read from the source, to be written by this lane.
    pub fn received(&mut self, now: Instant, count: usize) {
        if count == 0 {
            return;
        }
        if let Shaping::Latency {
            latency,
            jitter,
            due,
            chunks,
        } = &mut self.shaping
        {
            let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
            let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            let delay_ms = self.rng.between(
                latency_ms.saturating_sub(jitter_ms),
                latency_ms.saturating_add(jitter_ms),
            );
            let ready = now
                .checked_add(Duration::from_millis(delay_ms))
                .unwrap_or(now);
            // Bytes leave in order: a chunk is never ready before the one ahead of it.
            let ready = chunks.back().map_or(ready, |(last, _)| ready.max(*last));
            if ready <= now && chunks.is_empty() {
                *due = due.saturating_add(count);
                return;
            }
            let full = chunks.len() >= MAX_CHUNKS;
            match chunks.back_mut() {
                Some((last, size)) if full => {
                    *last = ready;
                    *size = size.saturating_add(count);
                }
                _ => chunks.push_back((ready, count)),
            }
        }
    }

    /// How many of the `pending` bytes may be written at `now`.
    pub fn allowance(&mut self, now: Instant, pending: usize) -> Allowance {
        match &mut self.shaping {
            Shaping::Latency { due, chunks, .. } => {
                // Every byte received is due (or none waits): all may go in one write, with
                // the bytes the lane never counted (there before the fault started, or added
                // by the proxy, as an edited HTTP head).
                if chunks.back().is_none_or(|(at, _)| *at <= now) {
                    return Allowance::All;
                }
                let ready = chunks
                    .iter()
                    .take_while(|(at, _)| *at <= now)
                    .map(|(_, size)| *size)
                    .fold(*due, usize::saturating_add);
                match chunks.front() {
                    Some((at, _)) if ready == 0 => Allowance::Later(*at),
                    _ => Allowance::Bytes(ready.min(pending)),
                }
            }
            Shaping::Bandwidth {
                bytes_per_second,
                next_free,
            } => {
                if *next_free > now {
                    return Allowance::Later(*next_free);
                }
                let slice = bytes_for(*bytes_per_second, BANDWIDTH_SLICE).max(1);
                Allowance::Bytes(usize::try_from(slice).unwrap_or(usize::MAX).min(pending))
            }
            Shaping::Slicer {
                slice, next_slice, ..
            } => {
                if *next_slice > now {
                    Allowance::Later(*next_slice)
                } else {
                    Allowance::Bytes((*slice).min(pending))
                }
            }
            Shaping::LimitData { left } => match usize::try_from(*left) {
                Ok(0) => Allowance::Cut,
                Ok(left) => Allowance::Bytes(left.min(pending)),
                Err(_) => Allowance::All,
            },
            Shaping::Timeout { until: None } => Allowance::Held,
            Shaping::Timeout { until: Some(until) } if *until > now => Allowance::Later(*until),
            Shaping::Timeout { .. } => Allowance::Cut,
            Shaping::ResetPeer { at } if *at <= now => Allowance::Reset,
            Shaping::ResetPeer { .. } | Shaping::SlowClose { .. } | Shaping::Open => Allowance::All,
        }
    }

    /// `count` bytes were written at `now`.
    pub fn sent(&mut self, now: Instant, count: usize) {
        match &mut self.shaping {
            Shaping::Latency { due, chunks, .. } => {
                let mut left = count.saturating_sub(*due);
                *due = due.saturating_sub(count);
                while left > 0 {
                    let Some((_, size)) = chunks.front_mut() else {
                        break;
                    };
                    if *size > left {
                        *size -= left;
                        break;
                    }
                    left -= *size;
                    chunks.pop_front();
                }
            }
            Shaping::Bandwidth {
                bytes_per_second,
                next_free,
            } => {
                // A write a little late (the loop wakes at millisecond granularity) does not
                // push the next ones back: up to one slice of lateness is made up.
                let start = match next_free.checked_add(BANDWIDTH_SLICE) {
                    Some(catch_up) if catch_up >= now => *next_free,
                    _ => now,
                };
                *next_free = start
                    .checked_add(time_for(*bytes_per_second, count))
                    .unwrap_or(start);
            }
            Shaping::Slicer {
                delay, next_slice, ..
            } => {
                *next_slice = now.checked_add(*delay).unwrap_or(now);
                self.next_slice_size();
            }
            Shaping::LimitData { left } => {
                *left = left.saturating_sub(u64::try_from(count).unwrap_or(u64::MAX));
            }
            Shaping::Timeout { .. }
            | Shaping::ResetPeer { .. }
            | Shaping::SlowClose { .. }
            | Shaping::Open => {}
        }
    }

    /// Whether the close of the source may be relayed at `now` (`All`), or later.
    pub fn close(&mut self, now: Instant) -> Allowance {
        match &mut self.shaping {
            Shaping::SlowClose {
                delay,
                closing_since,
            } => {
                let since = *closing_since.get_or_insert(now);
                match since.checked_add(*delay) {
                    Some(at) if at > now => Allowance::Later(at),
                    _ => Allowance::All,
                }
            }
            _ => Allowance::All,
        }
    }

    /// When the lane must be asked again even if no byte moves: a reset or a cut is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self.shaping {
            Shaping::ResetPeer { at } => Some(at),
            Shaping::Timeout { until } => until,
            _ => None,
        }
    }

    fn next_slice_size(&mut self) {
        if let Shaping::Slicer {
            average_size,
            size_variation,
            slice,
            ..
        } = &mut self.shaping
        {
            let size = self.rng.between(
                average_size.saturating_sub(*size_variation),
                average_size.saturating_add(*size_variation),
            );
            *slice = usize::try_from(size.max(1)).unwrap_or(usize::MAX);
        }
    }
}

/// The bytes `rate` moves in `duration`, without overflow.
fn bytes_for(bytes_per_second: u64, duration: Duration) -> u64 {
    let bytes = u128::from(bytes_per_second).saturating_mul(duration.as_nanos()) / 1_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// The time `count` bytes take at `rate`, without overflow.
fn time_for(bytes_per_second: u64, count: usize) -> Duration {
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let rate = bytes_per_second.max(1);
    let nanos = u128::from(count % rate) * 1_000_000_000 / u128::from(rate);
    Duration::new(count / rate, u32::try_from(nanos).unwrap_or(999_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(effect: Effect, now: Instant) -> Lane {
        Lane::new(&effect, now, FaultRng::new(3))
    }

    /// Moves `total` bytes through `lane` as a copy path would, jumping to each instant the
    /// lane names; returns how long it took and the sizes of the writes.
    fn drain(lane: &mut Lane, start: Instant, total: usize) -> (Duration, Vec<usize>) {
        let mut now = start;
        let mut left = total;
        let mut writes = Vec::new();
        lane.received(now, total);
        while left > 0 {
            match lane.allowance(now, left) {
                Allowance::All => {
                    writes.push(left);
                    lane.sent(now, left);
                    left = 0;
                }
                Allowance::Bytes(count) => {
                    assert!(count > 0 && count <= left);
                    writes.push(count);
                    lane.sent(now, count);
                    left -= count;
                }
                Allowance::Later(at) => {
                    assert!(at > now, "a lane never asks to wait for the past");
                    now = at;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (now - start, writes)
    }

    #[test]
    fn bandwidth_of_100_kb_per_second_moves_a_megabyte_in_about_ten_seconds() {
        let start = Instant::now();
        let mut lane = lane(Effect::Bandwidth { rate: 100 }, start);
        let (elapsed, writes) = drain(&mut lane, start, 1_000_000);
        assert!(
            elapsed >= Duration::from_millis(9_500) && elapsed <= Duration::from_secs(11),
            "{elapsed:?}"
        );
        assert!(writes.iter().all(|&w| w <= 1_000));
    }

    /// The event loop wakes up to a millisecond after the instant a lane names: a lane that
    /// counted from the wake-up would lose a tenth of its rate at 10 ms slices.
    #[test]
    fn bandwidth_keeps_its_rate_when_woken_late() {
        let start = Instant::now();
        let mut lane = lane(Effect::Bandwidth { rate: 100 }, start);
        let mut now = start;
        let mut left = 100_000usize;
        lane.received(now, left);
        while left > 0 {
            match lane.allowance(now, left) {
                Allowance::Bytes(count) => {
                    lane.sent(now, count);
                    left -= count;
                }
                Allowance::Later(at) => now = at + Duration::from_millis(1),
                other => panic!("unexpected {other:?}"),
            }
        }
        let elapsed = now - start;
        assert!(
            elapsed >= Duration::from_millis(950) && elapsed <= Duration::from_millis(1_010),
            "{elapsed:?}"
        );
    }

    #[test]
    fn latency_holds_bytes_until_they_are_due() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Latency {
                latency: Duration::from_millis(200),
                jitter: Duration::ZERO,
            },
            start,
        );
        lane.received(start, 10);
        assert_eq!(
            lane.allowance(start, 10),
            Allowance::Later(start + Duration::from_millis(200))
        );
        let later = start + Duration::from_millis(50);
        lane.received(later, 5);
        let due = start + Duration::from_millis(200);
        assert_eq!(lane.allowance(due, 15), Allowance::Bytes(10));
        lane.sent(due, 10);
        assert_eq!(
            lane.allowance(due, 5),
            Allowance::Later(later + Duration::from_millis(200))
        );
    }

    /// A `latency 0` lane lets what it received through in the same turn, in one write with
    /// the bytes it never counted (an edited HTTP head is longer than the one read), and
    /// remembers nothing.
    #[test]
    fn zero_latency_lets_everything_through_at_once_and_stores_nothing() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Latency {
                latency: Duration::ZERO,
                jitter: Duration::ZERO,
            },
            start,
        );
        lane.received(start, 10);
        assert_eq!(lane.allowance(start, 25), Allowance::All);
        let Shaping::Latency { chunks, .. } = &lane.shaping else {
            unreachable!()
        };
        assert_eq!(chunks.capacity(), 0, "nothing stored, nothing allocated");
    }

    /// Bytes due on arrival are not stored, yet never wait behind bytes that came after them
    /// and are due later (a jitter reaching the latency draws delays of 0).
    #[test]
    fn bytes_due_on_arrival_never_wait_behind_later_ones() {
        let start = Instant::now();
        let effect = Effect::Latency {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
        };
        let mut exercised = false;
        for seed in 0..50 {
            let mut delays = FaultRng::new(seed);
            let due = (0..20).take_while(|_| delays.between(0, 2) == 0).count();
            let mut lane = Lane::new(&effect, start, FaultRng::new(seed));
            for _ in 0..20 {
                lane.received(start, 1);
            }
            let allowed = lane.allowance(start, 20);
            match due {
                0 => assert!(
                    matches!(allowed, Allowance::Later(at) if at > start),
                    "seed {seed}"
                ),
                20 => assert_eq!(allowed, Allowance::All, "seed {seed}"),
                due => {
                    exercised = true;
                    assert_eq!(allowed, Allowance::Bytes(due), "seed {seed}");
                }
            }
        }
        assert!(exercised);
    }

    /// Once every chunk is due, the bytes the lane did not count go with them.
    #[test]
    fn bytes_all_due_go_in_one_write() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Latency {
                latency: Duration::from_millis(20),
                jitter: Duration::ZERO,
            },
            start,
        );
        lane.received(start, 10);
        let due = start + Duration::from_millis(20);
        assert_eq!(lane.allowance(due, 40), Allowance::All);
        lane.sent(due, 40);
        assert_eq!(lane.allowance(due, 5), Allowance::All);
    }

    /// An empty read (a connection whose client sent nothing before its backend was up)
    /// made a chunk of no byte due at once: the lane then asked to be woken in the past, and
    /// the session spun on its resume timer until the real bytes were due.
    #[test]
    fn an_empty_read_never_asks_to_wait_for_the_past() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO,
            },
            start,
        );
        lane.received(start, 0);
        let read = start + Duration::from_millis(5);
        lane.received(read, 10);
        assert_eq!(
            lane.allowance(read, 10),
            Allowance::Later(read + Duration::from_millis(100))
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_keeps_bytes_in_order() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::from_millis(50),
            },
            start,
        );
        for step in 0..200u64 {
            lane.received(start + Duration::from_millis(step), 1);
        }
        let Shaping::Latency { chunks, .. } = &lane.shaping else {
            unreachable!()
        };
        assert!(chunks.len() <= MAX_CHUNKS);
        let first = chunks.front().unwrap().0 - start;
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        assert!(
            chunks
                .iter()
                .zip(chunks.iter().skip(1))
                .all(|(a, b)| a.0 <= b.0)
        );
    }

    #[test]
    fn the_slicer_delivers_the_same_bytes_in_many_slices() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Slicer {
                average_size: 100,
                size_variation: 40,
                delay: Duration::from_micros(500),
            },
            start,
        );
        let (_, writes) = drain(&mut lane, start, 10_000);
        assert_eq!(writes.iter().sum::<usize>(), 10_000);
        assert!(writes.len() >= 10_000 / 140);
        assert!(
            writes[..writes.len() - 1]
                .iter()
                .all(|w| (60..=140).contains(w))
        );
    }

    #[test]
    fn limit_data_lets_exactly_n_bytes_through_then_cuts() {
        let start = Instant::now();
        let mut lane = lane(Effect::LimitData { bytes: 1_500 }, start);
        assert_eq!(lane.allowance(start, 1_000), Allowance::Bytes(1_000));
        lane.sent(start, 1_000);
        assert_eq!(lane.allowance(start, 1_000), Allowance::Bytes(500));
        lane.sent(start, 500);
        assert_eq!(lane.allowance(start, 1_000), Allowance::Cut);
    }

    #[test]
    fn timeout_holds_then_cuts_and_zero_holds_for_good() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::Timeout {
                timeout: Duration::from_millis(300),
            },
            start,
        );
        let end = start + Duration::from_millis(300);
        assert_eq!(lane.allowance(start, 10), Allowance::Later(end));
        assert_eq!(lane.deadline(), Some(end));
        assert_eq!(lane.allowance(end, 10), Allowance::Cut);
        let mut forever = self::lane(
            Effect::Timeout {
                timeout: Duration::ZERO,
            },
            start,
        );
        assert_eq!(forever.allowance(end, 10), Allowance::Held);
        assert_eq!(forever.deadline(), None);
    }

    #[test]
    fn reset_peer_passes_data_then_resets() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::ResetPeer {
                timeout: Duration::from_millis(20),
            },
            start,
        );
        assert_eq!(lane.allowance(start, 10), Allowance::All);
        let at = start + Duration::from_millis(20);
        assert_eq!(lane.deadline(), Some(at));
        assert_eq!(lane.allowance(at, 10), Allowance::Reset);
    }

    #[test]
    fn slow_close_delays_the_close_only() {
        let start = Instant::now();
        let mut lane = lane(
            Effect::SlowClose {
                delay: Duration::from_millis(40),
            },
            start,
        );
        assert_eq!(lane.allowance(start, 10), Allowance::All);
        let closing = start + Duration::from_millis(5);
        let at = closing + Duration::from_millis(40);
        assert_eq!(lane.close(closing), Allowance::Later(at));
        assert_eq!(
            lane.close(at - Duration::from_millis(1)),
            Allowance::Later(at)
        );
        assert_eq!(lane.close(at), Allowance::All);
    }

    #[test]
    fn extreme_parameters_never_overflow() {
        let start = Instant::now();
        let effects = [
            Effect::Bandwidth { rate: u64::MAX },
            Effect::Latency {
                latency: Duration::MAX,
                jitter: Duration::MAX,
            },
            Effect::Slicer {
                average_size: u64::MAX,
                size_variation: u64::MAX,
                delay: Duration::MAX,
            },
            Effect::LimitData { bytes: u64::MAX },
            Effect::Timeout {
                timeout: Duration::MAX,
            },
            Effect::ResetPeer {
                timeout: Duration::MAX,
            },
            Effect::SlowClose {
                delay: Duration::MAX,
            },
        ];
        for effect in effects {
            let mut lane = lane(effect, start);
            lane.received(start, usize::MAX);
            lane.received(start, usize::MAX);
            let _ = lane.allowance(start, usize::MAX);
            lane.sent(start, usize::MAX);
            let _ = lane.allowance(start, usize::MAX);
            let _ = lane.close(start);
        }
        assert_eq!(
            time_for(1, usize::MAX).as_secs(),
            u64::try_from(usize::MAX).unwrap()
        );
        assert_eq!(bytes_for(u64::MAX, Duration::MAX), u64::MAX);
    }
}
