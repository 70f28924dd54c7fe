//! Load balancing: which backend of a cluster gets the next connection.
//!
//! Pure algorithms, with no socket and no clock. `backends.rs` owns the backends of a cluster
//! and their states; it keeps the list of the backends that may get traffic now (up, not
//! draining, with the backup fallback already applied), describes each one as a [`Candidate`],
//! and asks a [`LoadBalancer`] for an index into that list:
//!
//! - [`LoadBalancer::set_candidates`] whenever the set of eligible backends, their order or their
//!   weights change. It rebuilds what the algorithm precomputes (round-robin state, cumulative
//!   weights, the Maglev lookup table).
//! - [`LoadBalancer::pick`] for every new connection, with the same list in the same order and
//!   up-to-date loads, and for HRW and MAGLEV a key that identifies the client
//!   ([`client_key`]).
//!
//! A backend with weight 0 is never picked. Hashing (HRW, MAGLEV) is stable: it depends only on
//! the backend ids, their weights and the key, never on the process, so every worker sends a
//! client to the same backend, and so does the next version of the proxy.

use std::{
    cmp::{Ordering, Reverse},
    collections::{BinaryHeap, HashMap, hash_map::RandomState},
    hash::BuildHasher,
    mem,
    net::IpAddr,
    time::Duration,
};

use log::error;
use sozu_command_lib::request::{LoadBalancingAlgorithm, LoadMetric};

/// What a backend carries now, as `backends.rs` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Connections open to the backend.
    pub connections: u64,
    /// Requests sent to the backend that have not been answered yet.
    pub requests: u64,
    /// Average time to open a connection to the backend; zero while unknown.
    pub average_connect_time: Duration,
}

impl Load {
    /// The cost that LEAST_LOADED and POWER_OF_TWO compare, before dividing by the weight.
    ///
    /// CONNECTION_TIME is `(connections + 1) × average connect time` in microseconds: a backend
    /// is as costly as the time a new connection would wait behind the ones it already has, so
    /// a slow backend gets fewer connections even when its count is low. A backend whose
    /// connect time is still unknown costs 0, so a new backend gets tried at once.
    fn cost(&self, metric: LoadMetric) -> u64 {
        match metric {
            LoadMetric::Connections => self.connections,
            LoadMetric::Requests => self.requests,
            LoadMetric::ConnectionTime => {
                let micros =
                    u64::try_from(self.average_connect_time.as_micros()).unwrap_or(u64::MAX);
                self.connections.saturating_add(1).saturating_mul(micros)
            }
        }
    }
}

/// One backend that may get the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The backend id, stable across reloads: round-robin state and hashing follow it.
    pub id: &'a str,
    /// Relative share of the traffic; 0 means the backend is never picked.
    pub weight: u32,
    /// Read by LEAST_LOADED and POWER_OF_TWO only.
    pub load: Load,
}

/// Picks a backend among candidates with one of Sōzu's algorithms.
///
/// Invariant: the precomputed `state` describes a list of exactly `candidate_count` candidates,
/// the one given to the last [`LoadBalancer::set_candidates`], and every index it yields is
/// below `candidate_count`.
#[derive(Debug)]
pub struct LoadBalancer {
    metric: LoadMetric,
    rng: Rng,
    candidate_count: usize,
    state: State,
}

impl LoadBalancer {
    /// A balancer with no candidate yet, seeded from the process's random source.
    ///
    /// `metric` is what LEAST_LOADED and POWER_OF_TWO compare; the other algorithms ignore it.
    pub fn new(algorithm: LoadBalancingAlgorithm, metric: LoadMetric) -> Self {
        // std seeds each `RandomState` from the operating system's random source, so two
        // workers (and two clusters) draw different sequences without a `rand` dependency.
        Self::with_seed(algorithm, metric, RandomState::new().hash_one(0_u8))
    }

    /// A balancer whose random choices (RANDOM, POWER_OF_TWO, HRW and MAGLEV without a key)
    /// follow from `seed`, for reproducible tests and benchmarks.
    pub fn with_seed(algorithm: LoadBalancingAlgorithm, metric: LoadMetric, seed: u64) -> Self {
        let state = match algorithm {
            LoadBalancingAlgorithm::RoundRobin => State::RoundRobin(SmoothRoundRobin::default()),
            LoadBalancingAlgorithm::Random => State::Random(WeightedSampler::default()),
            LoadBalancingAlgorithm::LeastLoaded => State::LeastLoaded(SmoothRoundRobin::default()),
            LoadBalancingAlgorithm::PowerOfTwo => State::PowerOfTwo(WeightedSampler::default()),
            LoadBalancingAlgorithm::Hrw => State::Hrw {
                rendezvous: Rendezvous::default(),
                fallback: WeightedSampler::default(),
            },
            LoadBalancingAlgorithm::Maglev => State::Maglev {
                table: MaglevTable::default(),
                fallback: WeightedSampler::default(),
            },
        };
        Self {
            metric,
            rng: Rng { state: seed },
            candidate_count: 0,
            state,
        }
    }

    /// Rebuilds what the algorithm precomputes for `candidates`.
    ///
    /// Call it when the eligible backends, their order or their weights change, not when only
    /// their loads do. Cost: O(n) for every algorithm but MAGLEV, which fills a table of a prime
    /// size of at least 100 slots per backend (see `maglev_table_size`): for 1,000 backends
    /// about 3 ms with equal weights and 8 ms with unequal ones on an idle core, against at
    /// most 0.1 ms for the others (`benches/benches/load_balancing.rs`).
    ///
    /// Round-robin state is kept by backend id, so an unrelated change neither resets nor
    /// favours the backends that stay.
    pub fn set_candidates(&mut self, candidates: &[Candidate<'_>]) {
        self.candidate_count = candidates.len();
        match &mut self.state {
            State::RoundRobin(round_robin) | State::LeastLoaded(round_robin) => {
                round_robin.rebuild(candidates)
            }
            State::Random(sampler) | State::PowerOfTwo(sampler) => {
                *sampler = WeightedSampler::new(candidates)
            }
            State::Hrw {
                rendezvous,
                fallback,
            } => {
                *rendezvous = Rendezvous::new(candidates);
                *fallback = WeightedSampler::new(candidates);
            }
            State::Maglev { table, fallback } => {
                *table = MaglevTable::new(candidates);
                *fallback = WeightedSampler::new(candidates);
            }
        }
    }

    /// The index in `candidates` of the backend that gets the next connection, or `None` when
    /// no candidate has a weight above 0.
    ///
    /// Precondition: `candidates` is the list given to the last
    /// [`LoadBalancer::set_candidates`], in the same order; only the loads may differ. `key`
    /// identifies the client for HRW and MAGLEV; without one they pick at random, weighted.
    ///
    /// A caller that breaks the precondition still never gets a panic nor a backend of weight
    /// 0: a list of another length, or a pick that lands on a missing or weight-0 candidate,
    /// rebuilds the state from `candidates` (logged as our bug) and picks again. A list of the
    /// same length with other ids gets picks computed for the old list until the next
    /// `set_candidates`.
    pub fn pick(&mut self, candidates: &[Candidate<'_>], key: Option<u64>) -> Option<usize> {
        if candidates.len() != self.candidate_count {
            error!(
                "load balancer: pick among {} candidates but set_candidates had {}, rebuilding",
                candidates.len(),
                self.candidate_count
            );
            self.set_candidates(candidates);
            return self.pick_eligible(candidates, key);
        }
        if let Some(index) = self.pick_eligible(candidates, key) {
            return Some(index);
        }
        if candidates.iter().all(|candidate| candidate.weight == 0) {
            return None;
        }
        error!("load balancer: weights changed without set_candidates, rebuilding");
        self.set_candidates(candidates);
        self.pick_eligible(candidates, key)
    }

    /// The algorithm's choice, if it names a candidate of weight above 0.
    fn pick_eligible(&mut self, candidates: &[Candidate<'_>], key: Option<u64>) -> Option<usize> {
        let Self {
            metric, rng, state, ..
        } = self;
        let index = match state {
            State::RoundRobin(round_robin) => round_robin.next_where(|_| true),
            State::Random(sampler) => sampler.sample(rng),
            State::LeastLoaded(round_robin) => least_loaded(candidates, *metric, round_robin),
            State::PowerOfTwo(sampler) => power_of_two(candidates, *metric, sampler, rng),
            State::Hrw {
                rendezvous,
                fallback,
            } => match key {
                Some(key) => rendezvous.pick(key),
                None => fallback.sample(rng),
            },
            State::Maglev { table, fallback } => match key {
                Some(key) => table.lookup(key),
                None => fallback.sample(rng),
            },
        }?;
        candidates
            .get(index)
            .is_some_and(|candidate| candidate.weight > 0)
            .then_some(index)
    }
}

/// The key that HRW and MAGLEV hash to send a client to the same backend every time.
///
/// It hashes the client's IP address, not its port, which changes with every connection; an
/// IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) gets the key of its IPv4
/// address. Stable across processes and versions.
pub fn client_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(ip) => hash_bytes(&ip.octets(), CLIENT_SEED),
        IpAddr::V6(ip) => hash_bytes(&ip.octets(), CLIENT_SEED),
    }
}

/// What each algorithm precomputes from the candidates.
#[derive(Debug)]
enum State {
    /// Smooth weighted round-robin, as nginx: each candidate gets exactly its weight's share of
    /// every window of total-weight picks, interleaved.
    RoundRobin(SmoothRoundRobin),
    /// Weighted random.
    Random(WeightedSampler),
    /// The smallest `cost / weight`; ties broken by smooth weighted round-robin among the tied
    /// candidates, as nginx's `least_conn`.
    LeastLoaded(SmoothRoundRobin),
    /// Two distinct candidates drawn at random, weighted; the one with the smaller
    /// `cost / weight` wins, the first drawn on a tie.
    PowerOfTwo(WeightedSampler),
    /// Rendezvous hashing of the key; weighted random without a key.
    Hrw {
        rendezvous: Rendezvous,
        fallback: WeightedSampler,
    },
    /// Maglev consistent hashing of the key; weighted random without a key.
    Maglev {
        table: MaglevTable,
        fallback: WeightedSampler,
    },
}

/// Orders `a` before `b` when `a` carries less load per unit of weight.
///
/// The ratios are compared cross-multiplied in 128 bits, so they are exact and a weight of 0
/// does not divide by zero (the callers skip those candidates anyway).
fn compare_load(a: &Candidate<'_>, b: &Candidate<'_>, metric: LoadMetric) -> Ordering {
    let a_side = u128::from(a.load.cost(metric)) * u128::from(b.weight);
    let b_side = u128::from(b.load.cost(metric)) * u128::from(a.weight);
    a_side.cmp(&b_side)
}

fn least_loaded(
    candidates: &[Candidate<'_>],
    metric: LoadMetric,
    round_robin: &mut SmoothRoundRobin,
) -> Option<usize> {
    let least = candidates
        .iter()
        .filter(|candidate| candidate.weight > 0)
        .min_by(|a, b| compare_load(a, b, metric))?;
    round_robin.next_where(|index| {
        candidates.get(index).is_some_and(|candidate| {
            candidate.weight > 0 && compare_load(candidate, least, metric) == Ordering::Equal
        })
    })
}

fn power_of_two(
    candidates: &[Candidate<'_>],
    metric: LoadMetric,
    sampler: &WeightedSampler,
    rng: &mut Rng,
) -> Option<usize> {
    let first = sampler.sample(rng)?;
    let Some(second) = sampler.sample_other(rng, first) else {
        return Some(first);
    };
    let (Some(a), Some(b)) = (candidates.get(first), candidates.get(second)) else {
        return Some(first);
    };
    match compare_load(b, a, metric) {
        Ordering::Less => Some(second),
        Ordering::Equal | Ordering::Greater => Some(first),
    }
}

/// nginx's smooth weighted round-robin: on each pick every eligible candidate's `current`
/// grows by its weight, the largest `current` wins and loses the total weight of the eligible
/// candidates. Over any window of total-weight picks each candidate wins exactly its weight's
/// share, spread out (weights 5, 1, 1 give a, a, b, a, c, a, a).
///
/// Invariant: `entries` has one entry per candidate, in the candidates' order.
#[derive(Debug, Default)]
struct SmoothRoundRobin {
    entries: Vec<RoundRobinEntry>,
}

#[derive(Debug)]
struct RoundRobinEntry {
    id: Box<str>,
    weight: i64,
    current: i64,
}

impl SmoothRoundRobin {
    /// Follows the new candidates, keeping the `current` of every id already known so that a
    /// change elsewhere in the list does not restart the cycle; new ids start at 0.
    fn rebuild(&mut self, candidates: &[Candidate<'_>]) {
        let previous: HashMap<Box<str>, i64> = mem::take(&mut self.entries)
            .into_iter()
            .map(|entry| (entry.id, entry.current))
            .collect();
        self.entries = candidates
            .iter()
            .map(|candidate| RoundRobinEntry {
                id: candidate.id.into(),
                weight: i64::from(candidate.weight),
                current: previous.get(candidate.id).copied().unwrap_or(0),
            })
            .collect();
    }

    /// One round among the entries of weight above 0 for which `is_eligible(index)` holds.
    ///
    /// `current` stays within a few total weights of 0 (its sum over the entries only moves
    /// when the candidates change), so the saturating operations never saturate in practice;
    /// they are there so that no input can overflow.
    fn next_where(&mut self, mut is_eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (index, entry) in self.entries.iter_mut().enumerate() {
            if entry.weight == 0 || !is_eligible(index) {
                continue;
            }
            entry.current = entry.current.saturating_add(entry.weight);
            total = total.saturating_add(entry.weight);
            if best.is_none_or(|(_, current)| entry.current > current) {
                best = Some((index, entry.current));
            }
        }
        let (index, _) = best?;
        let winner = self.entries.get_mut(index)?;
        winner.current = winner.current.saturating_sub(total);
        Some(index)
    }
}

/// Weighted random choice by binary search in cumulative weights.
///
/// Invariant: `cumulative[i]` is the sum of the weights of candidates `0..=i`, so it never
/// decreases and a candidate of weight 0 owns an empty range.
#[derive(Debug, Default)]
struct WeightedSampler {
    cumulative: Vec<u64>,
}

impl WeightedSampler {
    fn new(candidates: &[Candidate<'_>]) -> Self {
        let cumulative = candidates
            .iter()
            .scan(0_u64, |sum, candidate| {
                *sum = sum.saturating_add(u64::from(candidate.weight));
                Some(*sum)
            })
            .collect();
        Self { cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The candidate whose range `[cumulative[i - 1], cumulative[i])` holds `point`.
    fn owner(&self, point: u64) -> usize {
        self.cumulative.partition_point(|&sum| sum <= point)
    }

    fn sample(&self, rng: &mut Rng) -> Option<usize> {
        let total = self.total();
        (total > 0).then(|| self.owner(rng.below(total)))
    }

    /// A weighted choice among the candidates other than `excluded`: a point is drawn in the
    /// total range minus the excluded candidate's, then shifted past that range.
    fn sample_other(&self, rng: &mut Rng, excluded: usize) -> Option<usize> {
        let end = *self.cumulative.get(excluded)?;
        let start = match excluded.checked_sub(1) {
            Some(previous) => *self.cumulative.get(previous)?,
            None => 0,
        };
        let excluded_weight = end.checked_sub(start)?;
        let rest = self.total().checked_sub(excluded_weight)?;
        if rest == 0 {
            return None;
        }
        let point = rng.below(rest);
        let point = if point >= start {
            point.saturating_add(excluded_weight)
        } else {
            point
        };
        Some(self.owner(point))
    }
}

/// Rendezvous (highest random weight) hashing: each candidate scores a hash of (key, id) and
/// the highest score wins. Removing a candidate moves only its own keys; adding one moves only
/// the keys it now wins.
///
/// Weighted scores use `weight / -ln(u)` with `u` the hash mapped into (0, 1) (Schindelhauer
/// and Schomaker's weighted distributed hash tables): a candidate wins a share of the keys
/// proportional to its weight. Invariant: `backends` has one entry per candidate, in order.
#[derive(Debug, Default)]
struct Rendezvous {
    backends: Vec<RendezvousBackend>,
    /// All the weights above 0 are equal: scores are then ordered as the raw hashes, and the
    /// pick skips the logarithms.
    is_uniform: bool,
}

#[derive(Debug)]
struct RendezvousBackend {
    id_hash: u64,
    weight: u32,
}

impl Rendezvous {
    fn new(candidates: &[Candidate<'_>]) -> Self {
        let backends: Vec<RendezvousBackend> = candidates
            .iter()
            .map(|candidate| RendezvousBackend {
                id_hash: hash_bytes(candidate.id.as_bytes(), ID_SEED),
                weight: candidate.weight,
            })
            .collect();
        let mut weights = backends
            .iter()
            .map(|backend| backend.weight)
            .filter(|&weight| weight > 0);
        let is_uniform = weights
            .next()
            .is_none_or(|first| weights.all(|weight| weight == first));
        Self {
            backends,
            is_uniform,
        }
    }

    fn pick(&self, key: u64) -> Option<usize> {
        let key = mix(key ^ KEY_SEED);
        let scored = self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, backend)| backend.weight > 0)
            .map(|(index, backend)| (index, mix(key ^ backend.id_hash), backend.weight));
        if self.is_uniform {
            scored
                .max_by_key(|&(_, hash, _)| hash)
                .map(|(index, _, _)| index)
        } else {
            scored
                .map(|(index, hash, weight)| (index, weighted_score(hash, weight)))
                .max_by(|(_, a), (_, b)| a.total_cmp(b))
                .map(|(index, _)| index)
        }
    }
}

/// `weight / -ln(u)`, with `u` the top 53 bits of `hash` mapped to the middle of their
/// interval, so `0 < u < 1` and the score is finite and positive.
fn weighted_score(hash: u64, weight: u32) -> f64 {
    const UNIT: f64 = 1.0 / (1_u64 << 53) as f64;
    let u = ((hash >> 11) as f64 + 0.5) * UNIT;
    f64::from(weight) / -u.ln()
}

/// Table sizes for MAGLEV, all prime. A cluster gets the smallest one with at least 100 slots
/// per backend of weight above 0, which keeps each backend's share within about 1% of its
/// weight: 65,537 slots up to 655 backends, 131,071 up to 1,310, and so on; past 10,485
/// backends the largest one serves, with a coarser balance.
const MAGLEV_TABLE_SIZES: [usize; 5] = [65_537, 131_071, 262_147, 524_287, 1_048_573];

fn maglev_table_size(backends: usize) -> usize {
    let wanted = backends.saturating_mul(100);
    let [.., largest] = MAGLEV_TABLE_SIZES;
    MAGLEV_TABLE_SIZES
        .iter()
        .copied()
        .find(|&size| size >= wanted)
        .unwrap_or(largest)
}

/// Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size `M`
/// where each backend owns slots in proportion to its weight, filled so that a change of the
/// backends moves few slots. Lookup is `table[hash(key) % M]`.
///
/// Each backend walks its own permutation of the slots, `offset + j × skip (mod M)` with offset
/// and skip from two hashes of its id, and takes turns claiming its next free slot. The paper
/// gives every backend one turn per round; here turns follow the weights (a backend's turns are
/// spaced by `1 / weight` on a virtual clock), so with equal weights the order is the paper's
/// and a backend of weight 2 claims twice as many slots as one of weight 1.
///
/// Invariant: `slots` is empty, or each of its entries is the index of a candidate of weight
/// above 0 in the list it was built from.
#[derive(Debug, Default)]
struct MaglevTable {
    slots: Vec<u32>,
}

/// A backend filling the Maglev table.
struct MaglevFiller {
    index: u32,
    /// The next slot of its permutation.
    position: u64,
    skip: u64,
    /// Distance between two of its turns on the virtual clock: `2^20 × max weight / weight`,
    /// so at least 2^20 (rounding skews shares by under one slot in a table of 2^20), and the
    /// clock stays below `table size × 2^20 < 2^41` when the table is full.
    turn_length: u64,
}

impl MaglevFiller {
    /// Takes the next free slot of this filler's permutation; false if none is free (the
    /// table is full).
    ///
    /// The permutation visits every slot within `slots.len()` steps: the length is prime and
    /// `0 < skip < length`, and `position < length` stays true.
    fn claim(&mut self, slots: &mut [u32]) -> bool {
        let length = slots.len() as u64;
        for _ in 0..slots.len() {
            let slot = slots.get_mut(self.position as usize);
            // Both terms are below `length`: a subtraction replaces a division.
            self.position += self.skip;
            if self.position >= length {
                self.position -= length;
            }
            if let Some(slot) = slot.filter(|slot| **slot == EMPTY_SLOT) {
                *slot = self.index;
                return true;
            }
        }
        false
    }
}

/// Fills `slots` with fillers of equal weights taking one turn each per round, in order, as in
/// the paper. Gives the same table as `fill_by_weight` would, without its heap.
fn fill_in_rounds(fillers: &mut [MaglevFiller], slots: &mut [u32]) {
    // Every turn claims one slot, so the table is full after as many turns as slots.
    for turn in (0..fillers.len()).cycle().take(slots.len()) {
        let claimed = fillers
            .get_mut(turn)
            .is_some_and(|filler| filler.claim(slots));
        if !claimed {
            return;
        }
    }
}

/// Fills `slots` with fillers taking turns on a virtual clock, each turn `turn_length` after
/// the filler's previous one; simultaneous turns go to the earlier candidate.
fn fill_by_weight(fillers: &mut [MaglevFiller], slots: &mut [u32]) {
    let mut turns: BinaryHeap<Reverse<(u64, usize)>> = fillers
        .iter()
        .enumerate()
        .map(|(filler, state)| Reverse((state.turn_length, filler)))
        .collect();
    let mut filled = 0;
    while filled < slots.len() {
        // Rescheduling the earliest turn in place costs one sift instead of a pop and a push.
        let Some(mut turn) = turns.peek_mut() else {
            return;
        };
        let Reverse((time, filler)) = *turn;
        let Some(state) = fillers.get_mut(filler) else {
            return;
        };
        if !state.claim(slots) {
            return;
        }
        filled += 1;
        *turn = Reverse((time.saturating_add(state.turn_length), filler));
    }
}

/// A free slot while the Maglev table is filled; never an index, see `MaglevTable::new`.
const EMPTY_SLOT: u32 = u32::MAX;

impl MaglevTable {
    /// Builds the table. Candidates beyond index `u32::MAX - 1` are left out (they would need a
    /// wider table for a cluster no one runs).
    fn new(candidates: &[Candidate<'_>]) -> Self {
        let eligible = candidates
            .iter()
            .enumerate()
            .filter(|(_, candidate)| candidate.weight > 0)
            .filter_map(|(index, candidate)| {
                let index = u32::try_from(index).ok().filter(|&i| i != EMPTY_SLOT)?;
                Some((index, candidate))
            });
        let size = maglev_table_size(eligible.clone().count());
        let modulus = size as u64;
        let max_weight = eligible
            .clone()
            .map(|(_, candidate)| u64::from(candidate.weight))
            .max()
            .unwrap_or(1);
        let mut fillers: Vec<MaglevFiller> = eligible
            .map(|(index, candidate)| {
                let id = candidate.id.as_bytes();
                MaglevFiller {
                    index,
                    position: hash_bytes(id, OFFSET_SEED) % modulus,
                    skip: hash_bytes(id, SKIP_SEED) % (modulus - 1) + 1,
                    turn_length: (max_weight << 20) / u64::from(candidate.weight),
                }
            })
            .collect();
        if fillers.is_empty() {
            return Self::default();
        }

        let mut slots = vec![EMPTY_SLOT; size];
        let first_turn_length = fillers.first().map(|filler| filler.turn_length);
        let is_uniform = fillers
            .iter()
            .all(|filler| Some(filler.turn_length) == first_turn_length);
        if is_uniform {
            fill_in_rounds(&mut fillers, &mut slots);
        } else {
            fill_by_weight(&mut fillers, &mut slots);
        }
        Self { slots }
    }

    fn lookup(&self, key: u64) -> Option<usize> {
        let size = self.slots.len() as u64;
        let slot = mix(key ^ KEY_SEED).checked_rem(size)?;
        self.slots.get(slot as usize).map(|&index| index as usize)
    }
}

/// wyrand (Wang Yi): one addition and one 128-bit multiplication per number, statistically
/// sound for load balancing; not cryptographic, and nothing here needs it to be.
#[derive(Debug)]
struct Rng {
    state: u64,
}

impl Rng {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let product = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((product >> 64) as u64) ^ (product as u64)
    }

    /// A number in `0..bound` (0 when `bound` is 0), by Lemire's multiply-shift; its bias, at
    /// most `bound / 2^64`, is far below anything a load balancer can notice.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

/// Seeds that make the hashes below independent of each other. Changing any of them, or the
/// functions, moves clients between backends on upgrade.
const ID_SEED: u64 = 0x5bd1_e995_2f1c_3a4d;
const OFFSET_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const SKIP_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;
const KEY_SEED: u64 = 0x1656_67b1_9e37_79f9;
const CLIENT_SEED: u64 = 0x27d4_eb2f_1656_67c5;

/// FNV-1a over `bytes` from a seeded basis, then `mix` so that ids differing in one byte
/// (`backend-1`, `backend-2`) get unrelated hashes. Fixed, so stable across processes.
fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes.iter().fold(FNV_OFFSET_BASIS ^ seed, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    mix(hash)
}

/// The SplitMix64 finaliser: a bijection of `u64` in which every input bit flips about half
/// of the output bits.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const PICKS: usize = 100_000;

    fn ids(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("backend-{i}")).collect()
    }

    fn candidates<'a>(ids: &'a [String], weights: &[u32]) -> Vec<Candidate<'a>> {
        ids.iter()
            .zip(weights)
            .map(|(id, &weight)| Candidate {
                id,
                weight,
                load: Load::default(),
            })
            .collect()
    }

    fn with_connections<'a>(mut list: Vec<Candidate<'a>>, counts: &[u64]) -> Vec<Candidate<'a>> {
        for (candidate, &connections) in list.iter_mut().zip(counts) {
            candidate.load.connections = connections;
        }
        list
    }

    fn balancer(algorithm: LoadBalancingAlgorithm, list: &[Candidate<'_>]) -> LoadBalancer {
        let mut balancer = LoadBalancer::with_seed(algorithm, LoadMetric::Connections, 42);
        balancer.set_candidates(list);
        balancer
    }

    /// Share of the picks of each candidate, over `PICKS` picks with keys `0..PICKS`.
    fn shares(balancer: &mut LoadBalancer, list: &[Candidate<'_>]) -> Vec<f64> {
        let mut counts = vec![0_usize; list.len()];
        for key in 0..PICKS as u64 {
            let index = balancer
                .pick(list, Some(key))
                .expect("a candidate has weight");
            counts[index] += 1;
        }
        counts
            .iter()
            .map(|&count| count as f64 / PICKS as f64)
            .collect()
    }

    fn assert_shares_near(shares: &[f64], expected: &[f64], tolerance: f64) {
        for (share, expected) in shares.iter().zip(expected) {
            assert!(
                (share - expected).abs() <= tolerance,
                "shares {shares:?}, expected {expected:?} ± {tolerance}"
            );
        }
    }

    /// The backend id each key in `0..PICKS` goes to.
    fn owners(algorithm: LoadBalancingAlgorithm, list: &[Candidate<'_>]) -> Vec<String> {
        let mut balancer = balancer(algorithm, list);
        (0..PICKS as u64)
            .map(|key| {
                let index = balancer
                    .pick(list, Some(key))
                    .expect("a candidate has weight");
                list[index].id.to_owned()
            })
            .collect()
    }

    const WEIGHTS: [u32; 4] = [1, 2, 3, 4];
    const WEIGHT_SHARES: [f64; 4] = [0.1, 0.2, 0.3, 0.4];

    #[test]
    fn round_robin_gives_each_backend_exactly_its_weight_share() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(
            &mut balancer(LoadBalancingAlgorithm::RoundRobin, &list),
            &list,
        );
        // 100,000 picks are 10,000 whole windows of total weight 10.
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.0);
    }

    #[test]
    fn round_robin_interleaves_a_heavy_backend() {
        let ids = ids(3);
        let list = candidates(&ids, &[5, 1, 1]);
        let mut balancer = balancer(LoadBalancingAlgorithm::RoundRobin, &list);
        let picks: Vec<usize> = (0..7).filter_map(|_| balancer.pick(&list, None)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_follows_ids_when_the_list_is_reordered() {
        let ids = ids(3);
        let list = candidates(&ids, &[5, 1, 1]);
        let mut balancer = balancer(LoadBalancingAlgorithm::RoundRobin, &list);
        let first: Vec<&str> = (0..3)
            .filter_map(|_| balancer.pick(&list, None))
            .map(|index| list[index].id)
            .collect();
        let reversed: Vec<Candidate<'_>> = list.iter().rev().copied().collect();
        balancer.set_candidates(&reversed);
        let rest: Vec<&str> = (0..4)
            .filter_map(|_| balancer.pick(&reversed, None))
            .map(|index| reversed[index].id)
            .collect();
        assert_eq!(first, ["backend-0", "backend-0", "backend-1"]);
        assert_eq!(rest, ["backend-0", "backend-2", "backend-0", "backend-0"]);
    }

    #[test]
    fn random_respects_weights_within_one_percent() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(&mut balancer(LoadBalancingAlgorithm::Random, &list), &list);
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.01);
    }

    #[test]
    fn hrw_respects_weights_within_one_and_a_half_percent() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(&mut balancer(LoadBalancingAlgorithm::Hrw, &list), &list);
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.015);
    }

    #[test]
    fn maglev_respects_weights_within_one_and_a_half_percent() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(&mut balancer(LoadBalancingAlgorithm::Maglev, &list), &list);
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.015);
    }

    #[test]
    fn hashing_without_a_key_picks_at_random_by_weight() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        for algorithm in [LoadBalancingAlgorithm::Hrw, LoadBalancingAlgorithm::Maglev] {
            let mut balancer = balancer(algorithm, &list);
            let mut counts = [0_usize; 4];
            for _ in 0..PICKS {
                counts[balancer.pick(&list, None).expect("a candidate has weight")] += 1;
            }
            let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / PICKS as f64).collect();
            assert_shares_near(&shares, &WEIGHT_SHARES, 0.01);
        }
    }

    #[test]
    fn least_loaded_with_equal_loads_shares_by_weight_exactly() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(
            &mut balancer(LoadBalancingAlgorithm::LeastLoaded, &list),
            &list,
        );
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.0);
    }

    /// Every pick opens a connection that stays open: the balancer must keep the connection
    /// counts proportional to the weights.
    fn shares_with_growing_connections(algorithm: LoadBalancingAlgorithm) -> Vec<f64> {
        let ids = ids(4);
        let mut list = candidates(&ids, &WEIGHTS);
        let mut balancer = balancer(algorithm, &list);
        for _ in 0..PICKS {
            let index = balancer.pick(&list, None).expect("a candidate has weight");
            list[index].load.connections += 1;
        }
        list.iter()
            .map(|candidate| candidate.load.connections as f64 / PICKS as f64)
            .collect()
    }

    #[test]
    fn least_loaded_keeps_connections_proportional_to_weights() {
        let shares = shares_with_growing_connections(LoadBalancingAlgorithm::LeastLoaded);
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.001);
    }

    #[test]
    fn power_of_two_keeps_connections_near_proportional_to_weights() {
        let shares = shares_with_growing_connections(LoadBalancingAlgorithm::PowerOfTwo);
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.02);
    }

    #[test]
    fn power_of_two_with_equal_loads_shares_by_weight() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        let shares = shares(
            &mut balancer(LoadBalancingAlgorithm::PowerOfTwo, &list),
            &list,
        );
        assert_shares_near(&shares, &WEIGHT_SHARES, 0.01);
    }

    #[test]
    fn least_loaded_picks_the_smallest_load_per_weight() {
        let ids = ids(3);
        let list = with_connections(candidates(&ids, &[1, 1, 1]), &[5, 2, 7]);
        let mut balancer = balancer(LoadBalancingAlgorithm::LeastLoaded, &list);
        assert_eq!(balancer.pick(&list, None), Some(1));

        // Ratios 2, 1 and 0.5.
        let list = with_connections(candidates(&ids, &[1, 1, 4]), &[2, 1, 2]);
        balancer.set_candidates(&list);
        assert_eq!(balancer.pick(&list, None), Some(2));
    }

    #[test]
    fn least_loaded_reads_the_chosen_metric() {
        let ids = ids(2);
        let mut list = candidates(&ids, &[1, 1]);
        list[0].load = Load {
            connections: 1,
            requests: 9,
            average_connect_time: Duration::from_millis(1),
        };
        list[1].load = Load {
            connections: 3,
            requests: 2,
            average_connect_time: Duration::from_micros(100),
        };
        let pick = |metric| {
            let mut balancer =
                LoadBalancer::with_seed(LoadBalancingAlgorithm::LeastLoaded, metric, 1);
            balancer.set_candidates(&list);
            balancer.pick(&list, None)
        };
        assert_eq!(pick(LoadMetric::Connections), Some(0));
        assert_eq!(pick(LoadMetric::Requests), Some(1));
        // 2 × 1,000 µs against 4 × 100 µs.
        assert_eq!(pick(LoadMetric::ConnectionTime), Some(1));
    }

    #[test]
    fn least_loaded_spreads_ties_in_turn() {
        let ids = ids(4);
        let list = with_connections(candidates(&ids, &[1, 1, 1, 1]), &[3, 1, 1, 1]);
        let mut balancer = balancer(LoadBalancingAlgorithm::LeastLoaded, &list);
        let picks: Vec<usize> = (0..6).filter_map(|_| balancer.pick(&list, None)).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn power_of_two_favours_less_loaded_backends_markedly() {
        let ids = ids(4);
        let list = with_connections(candidates(&ids, &[1, 1, 1, 1]), &[0, 10, 20, 30]);
        let shares = shares(
            &mut balancer(LoadBalancingAlgorithm::PowerOfTwo, &list),
            &list,
        );
        // A backend wins when the other one drawn is more loaded: 3/6, 2/6, 1/6 and 0 of the
        // 6 equally likely pairs.
        assert_shares_near(&shares, &[0.5, 1.0 / 3.0, 1.0 / 6.0, 0.0], 0.01);
        assert_eq!(shares[3], 0.0);
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let ids = ids(5);
        let list = candidates(&ids, &[0, 3, 0, 1, 0]);
        for algorithm in LoadBalancingAlgorithm::ALL {
            let mut balancer = balancer(algorithm, &list);
            for key in 0..10_000 {
                let key = (key % 2 == 0).then_some(key);
                let index = balancer.pick(&list, key).expect("a candidate has weight");
                assert!(list[index].weight > 0, "{algorithm:?} picked {index}");
            }
        }
    }

    #[test]
    fn no_candidate_of_positive_weight_gives_none() {
        let ids = ids(3);
        let zeros = candidates(&ids, &[0, 0, 0]);
        for algorithm in LoadBalancingAlgorithm::ALL {
            let mut balancer = balancer(algorithm, &[]);
            assert_eq!(balancer.pick(&[], Some(7)), None, "{algorithm:?}");
            assert_eq!(balancer.pick(&[], None), None, "{algorithm:?}");
            balancer.set_candidates(&zeros);
            assert_eq!(balancer.pick(&zeros, Some(7)), None, "{algorithm:?}");
            assert_eq!(balancer.pick(&zeros, None), None, "{algorithm:?}");
        }
    }

    fn moved_fraction(before: &[String], after: &[String]) -> f64 {
        let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
        moved as f64 / before.len() as f64
    }

    #[test]
    fn hrw_adding_a_fifth_backend_moves_a_fifth_of_the_keys_to_it_only() {
        let ids = ids(5);
        let before = owners(LoadBalancingAlgorithm::Hrw, &candidates(&ids[..4], &[1; 4]));
        let after = owners(LoadBalancingAlgorithm::Hrw, &candidates(&ids, &[1; 5]));
        let moved = moved_fraction(&before, &after);
        assert!((0.15..=0.25).contains(&moved), "moved {moved}");
        for (b, a) in before.iter().zip(&after) {
            assert!(b == a || a == "backend-4", "{b} moved to {a}");
        }
    }

    #[test]
    fn maglev_adding_a_fifth_backend_moves_about_a_fifth_of_the_keys() {
        let ids = ids(5);
        let before = owners(
            LoadBalancingAlgorithm::Maglev,
            &candidates(&ids[..4], &[1; 4]),
        );
        let after = owners(LoadBalancingAlgorithm::Maglev, &candidates(&ids, &[1; 5]));
        let moved = moved_fraction(&before, &after);
        assert!((0.15..=0.25).contains(&moved), "moved {moved}");
    }

    #[test]
    fn hrw_removing_a_backend_moves_only_its_keys() {
        let ids = ids(5);
        let before = owners(LoadBalancingAlgorithm::Hrw, &candidates(&ids, &WEIGHTS));
        let without: Vec<String> = ids
            .iter()
            .filter(|id| *id != "backend-2")
            .cloned()
            .collect();
        let after = owners(
            LoadBalancingAlgorithm::Hrw,
            &candidates(&without, &[1, 2, 4]),
        );
        for (b, a) in before.iter().zip(&after) {
            assert!(b == a || b == "backend-2", "{b} moved to {a}");
        }
    }

    #[test]
    fn maglev_removing_a_backend_moves_little_more_than_its_keys() {
        let ids = ids(5);
        let before = owners(LoadBalancingAlgorithm::Maglev, &candidates(&ids, &[1; 5]));
        let without: Vec<String> = ids
            .iter()
            .filter(|id| *id != "backend-2")
            .cloned()
            .collect();
        let after = owners(
            LoadBalancingAlgorithm::Maglev,
            &candidates(&without, &[1; 4]),
        );
        let share = before.iter().filter(|id| *id == "backend-2").count() as f64 / PICKS as f64;
        let moved = moved_fraction(&before, &after);
        assert!(moved < 1.3 * share, "moved {moved}, its share {share}");
    }

    #[test]
    fn hashing_picks_are_the_same_in_every_instance() {
        let ids = ids(7);
        let list = candidates(&ids, &[1, 2, 3, 1, 2, 3, 1]);
        for algorithm in [LoadBalancingAlgorithm::Hrw, LoadBalancingAlgorithm::Maglev] {
            let mut first = LoadBalancer::with_seed(algorithm, LoadMetric::Connections, 1);
            let mut second = LoadBalancer::new(algorithm, LoadMetric::Requests);
            first.set_candidates(&list);
            second.set_candidates(&list);
            for key in 0..10_000 {
                assert_eq!(first.pick(&list, Some(key)), second.pick(&list, Some(key)));
            }
        }
    }

    #[test]
    fn pick_with_a_list_of_another_length_never_panics() {
        let ids = ids(6);
        let four = candidates(&ids[..4], &WEIGHTS);
        let lists = [
            candidates(&ids[..2], &[1, 1]),
            Vec::new(),
            candidates(&ids, &[1, 0, 1, 0, 1, 0]),
            candidates(&ids[..1], &[0]),
        ];
        for algorithm in LoadBalancingAlgorithm::ALL {
            for list in &lists {
                let mut balancer = balancer(algorithm, &four);
                for key in 0..100 {
                    match balancer.pick(list, Some(key)) {
                        Some(index) => assert!(list[index].weight > 0, "{algorithm:?}"),
                        None => assert!(list.iter().all(|c| c.weight == 0), "{algorithm:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn pick_after_weights_changed_without_set_candidates_skips_weight_zero() {
        let ids = ids(2);
        let before = candidates(&ids, &[1, 1]);
        let after = candidates(&ids, &[0, 1]);
        for algorithm in LoadBalancingAlgorithm::ALL {
            let mut balancer = balancer(algorithm, &before);
            for key in 0..100 {
                assert_eq!(balancer.pick(&after, Some(key)), Some(1), "{algorithm:?}");
            }
        }
    }

    #[test]
    fn maglev_table_fills_every_slot_with_a_weighted_candidate() {
        let ids = ids(5);
        let list = candidates(&ids, &[2, 0, 1, 3, 0]);
        let table = MaglevTable::new(&list);
        assert_eq!(table.slots.len(), 65_537);
        let mut counts = [0_usize; 5];
        for &index in &table.slots {
            counts[index as usize] += 1;
        }
        // Turns follow the weights exactly, so the slot counts are within one turn of them.
        assert_eq!(counts[1] + counts[4], 0);
        for (index, weight) in [(0, 2.0), (2, 1.0), (3, 3.0)] {
            let expected = 65_537.0 * weight / 6.0;
            assert!((counts[index] as f64 - expected).abs() <= 1.0, "{counts:?}");
        }
    }

    #[test]
    fn maglev_rounds_fill_as_turns_of_equal_weights_do() {
        let fillers = || -> Vec<MaglevFiller> {
            (0..7_u32)
                .map(|index| MaglevFiller {
                    index,
                    position: u64::from(index) * 9_001 % 65_537,
                    skip: u64::from(index) * 4_999 % 65_536 + 1,
                    turn_length: 1 << 20,
                })
                .collect()
        };
        let mut in_rounds = vec![EMPTY_SLOT; 65_537];
        let mut by_weight = vec![EMPTY_SLOT; 65_537];
        fill_in_rounds(&mut fillers(), &mut in_rounds);
        fill_by_weight(&mut fillers(), &mut by_weight);
        assert!(!in_rounds.contains(&EMPTY_SLOT));
        assert_eq!(in_rounds, by_weight);
    }

    #[test]
    fn maglev_table_has_at_least_100_slots_per_backend() {
        assert_eq!(maglev_table_size(0), 65_537);
        assert_eq!(maglev_table_size(655), 65_537);
        assert_eq!(maglev_table_size(656), 131_071);
        assert_eq!(maglev_table_size(1_000), 131_071);
        assert_eq!(maglev_table_size(100_000), 1_048_573);
    }

    #[test]
    fn client_key_ignores_the_ipv6_mapping_of_an_ipv4_address() {
        let ip = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            client_key(IpAddr::V4(ip)),
            client_key(IpAddr::V6(ip.to_ipv6_mapped()))
        );
        assert_ne!(
            client_key(IpAddr::V4(ip)),
            client_key(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)))
        );
    }
}
