//! Consistent hashing: rendezvous hashing (HRW) and the Maglev lookup table (MAGLEV), and the
//! fixed hashes of backend ids and client keys they rely on. Every hash here is stable across
//! processes and versions: changing one moves clients between backends on upgrade.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::Candidate;

/// Rendezvous (highest random weight) hashing: each candidate scores a hash of (key, id) and
/// the highest score wins. Removing a candidate moves only its own keys; adding one moves only
/// the keys it now wins.
///
/// Weighted scores use `weight / -ln(u)` with `u` the hash mapped into (0, 1) (Schindelhauer
/// and Schomaker's weighted distributed hash tables): a candidate wins a share of the keys
/// proportional to its weight. Invariant: `backends` has one entry per candidate, in order.
#[derive(Debug, Default)]
pub(super) struct Rendezvous {
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
    pub(super) fn new(candidates: &[Candidate<'_>]) -> Self {
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

    pub(super) fn pick(&self, key: u64) -> Option<usize> {
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
pub(super) struct MaglevTable {
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
    pub(super) fn claim(&mut self, slots: &mut [u32]) -> bool {
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
    pub(super) fn new(candidates: &[Candidate<'_>]) -> Self {
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

    pub(super) fn lookup(&self, key: u64) -> Option<usize> {
        let size = self.slots.len() as u64;
        let slot = mix(key ^ KEY_SEED).checked_rem(size)?;
        self.slots.get(slot as usize).map(|&index| index as usize)
    }
}

/// Seeds that make the hashes below independent of each other. Changing any of them, or the
/// functions, moves clients between backends on upgrade.
const ID_SEED: u64 = 0x5bd1_e995_2f1c_3a4d;
const OFFSET_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const SKIP_SEED: u64 = 0xc2b2_ae3d_27d4_eb4f;
const KEY_SEED: u64 = 0x1656_67b1_9e37_79f9;
pub(super) const CLIENT_SEED: u64 = 0x27d4_eb2f_1656_67c5;

/// FNV-1a over `bytes` from a seeded basis, then `mix` so that ids differing in one byte
/// (`backend-1`, `backend-2`) get unrelated hashes. Fixed, so stable across processes.
pub(super) fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
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
    use super::*;
    use crate::load_balancing::tests::{candidates, ids};

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
}
