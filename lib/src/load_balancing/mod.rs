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
//!
//! What the algorithms precompute lives beside this file: `weighted` (smooth round-robin and
//! weighted random draws) and `hashing` (rendezvous hashing, the Maglev table, stable hashes).

mod hashing;
mod weighted;

use std::{
    cmp::Ordering, collections::hash_map::RandomState, hash::BuildHasher, net::IpAddr,
    time::Duration,
};

use log::error;
use sozu_command_lib::request::{LoadBalancingAlgorithm, LoadMetric};

use hashing::{CLIENT_SEED, MaglevTable, Rendezvous, hash_bytes};
use weighted::{SmoothRoundRobin, WeightedSampler};

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
    /// size of at least 100 slots per backend (see `hashing::maglev_table_size`): for 1,000 backends
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

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const PICKS: usize = 100_000;

    pub(crate) fn ids(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("backend-{i}")).collect()
    }

    pub(crate) fn candidates<'a>(ids: &'a [String], weights: &[u32]) -> Vec<Candidate<'a>> {
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

    /// With equal loads, each algorithm shares picks (keys `0..PICKS`) by weight: exactly for
    /// the deterministic ones (100,000 picks are 10,000 whole windows of total weight 10),
    /// within a tolerance for those that sample or hash.
    #[test]
    fn every_algorithm_with_equal_loads_shares_picks_by_weight() {
        let ids = ids(4);
        let list = candidates(&ids, &WEIGHTS);
        for (algorithm, tolerance) in [
            (LoadBalancingAlgorithm::RoundRobin, 0.0),
            (LoadBalancingAlgorithm::LeastLoaded, 0.0),
            (LoadBalancingAlgorithm::Random, 0.01),
            (LoadBalancingAlgorithm::PowerOfTwo, 0.01),
            (LoadBalancingAlgorithm::Hrw, 0.015),
            (LoadBalancingAlgorithm::Maglev, 0.015),
        ] {
            let shares = shares(&mut balancer(algorithm, &list), &list);
            for (share, expected) in shares.iter().zip(WEIGHT_SHARES) {
                assert!(
                    (share - expected).abs() <= tolerance,
                    "{algorithm:?}: shares {shares:?}, expected {WEIGHT_SHARES:?} ± {tolerance}"
                );
            }
        }
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
