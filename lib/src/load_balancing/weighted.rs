//! Weighted choices that need no key: smooth weighted round-robin (ROUND_ROBIN, and the tie
//! breaker of LEAST_LOADED) and weighted random draws (RANDOM, POWER_OF_TWO, and the hashing
//! algorithms when a connection has no key).

use std::{collections::HashMap, mem};

use super::{Candidate, Rng};

/// nginx's smooth weighted round-robin: on each pick every eligible candidate's `current`
/// grows by its weight, the largest `current` wins and loses the total weight of the eligible
/// candidates. Over any window of total-weight picks each candidate wins exactly its weight's
/// share, spread out (weights 5, 1, 1 give a, a, b, a, c, a, a).
///
/// Invariant: `entries` has one entry per candidate, in the candidates' order.
#[derive(Debug, Default)]
pub(super) struct SmoothRoundRobin {
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
    pub(super) fn rebuild(&mut self, candidates: &[Candidate<'_>]) {
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
    pub(super) fn next_where(
        &mut self,
        mut is_eligible: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
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
pub(super) struct WeightedSampler {
    cumulative: Vec<u64>,
}

impl WeightedSampler {
    pub(super) fn new(candidates: &[Candidate<'_>]) -> Self {
        let cumulative = candidates
            .iter()
            .scan(0_u64, |sum, candidate| {
                *sum = sum.saturating_add(u64::from(candidate.weight));
                Some(*sum)
            })
            .collect();
        Self { cumulative }
    }

    pub(super) fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The candidate whose range `[cumulative[i - 1], cumulative[i])` holds `point`.
    pub(super) fn owner(&self, point: u64) -> usize {
        self.cumulative.partition_point(|&sum| sum <= point)
    }

    pub(super) fn sample(&self, rng: &mut Rng) -> Option<usize> {
        let total = self.total();
        (total > 0).then(|| self.owner(rng.below(total)))
    }

    /// A weighted choice among the candidates other than `excluded`: a point is drawn in the
    /// total range minus the excluded candidate's, then shifted past that range.
    pub(super) fn sample_other(&self, rng: &mut Rng, excluded: usize) -> Option<usize> {
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
