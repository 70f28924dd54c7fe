//! Figures of held connections and requests (see `server/hold.rs`): how many were held,
//! released to a backend, timed out, refused or abandoned by their client, and how many wait
//! now, per cluster.

use std::collections::BTreeMap;

use sozu_command_lib::response::FilteredMetric;

/// What happened to a held connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEvent {
    /// It started waiting for a backend.
    Held,
    /// A backend became available: it goes on.
    Released,
    /// Its cluster's `hold_timeout` passed: it got the 503 answer or a close.
    TimedOut,
    /// The cluster had `max_held` waiting already: it got the 503 answer or a close at once.
    Refused,
    /// It was closed while it waited (its client left, or the worker stopped).
    Abandoned,
}

/// The holding figures of one cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct HoldFigures {
    held: u64,
    released: u64,
    timed_out: u64,
    refused: u64,
    abandoned: u64,
    depth: u64,
}

impl HoldFigures {
    /// Counts `event`; `depth` is the count waiting after it.
    pub(super) fn record(&mut self, event: HoldEvent, depth: usize) {
        let count = match event {
            HoldEvent::Held => &mut self.held,
            HoldEvent::Released => &mut self.released,
            HoldEvent::TimedOut => &mut self.timed_out,
            HoldEvent::Refused => &mut self.refused,
            HoldEvent::Abandoned => &mut self.abandoned,
        };
        *count = count.saturating_add(1);
        self.depth = u64::try_from(depth).unwrap_or(u64::MAX);
    }

    /// Adds another cluster's figures (for the proxy's totals).
    pub(super) fn add(&mut self, other: &HoldFigures) {
        self.held = self.held.saturating_add(other.held);
        self.released = self.released.saturating_add(other.released);
        self.timed_out = self.timed_out.saturating_add(other.timed_out);
        self.refused = self.refused.saturating_add(other.refused);
        self.abandoned = self.abandoned.saturating_add(other.abandoned);
        self.depth = self.depth.saturating_add(other.depth);
    }

    /// The figures, with `names` filtering them (empty: all); nothing for a cluster that
    /// never held.
    pub(super) fn write(&self, names: &[String], out: &mut BTreeMap<String, FilteredMetric>) {
        if self.held == 0 && self.refused == 0 {
            return;
        }
        let figures = [
            ("hold.held", FilteredMetric::Count(self.held)),
            ("hold.released", FilteredMetric::Count(self.released)),
            ("hold.timed_out", FilteredMetric::Count(self.timed_out)),
            ("hold.refused", FilteredMetric::Count(self.refused)),
            ("hold.abandoned", FilteredMetric::Count(self.abandoned)),
            (
                "hold.depth",
                FilteredMetric::Gauge(i64::try_from(self.depth).unwrap_or(i64::MAX)),
            ),
        ];
        for (name, value) in figures {
            if names.is_empty() || names.iter().any(|n| n == name) {
                out.insert(name.to_string(), value);
            }
        }
    }
}
