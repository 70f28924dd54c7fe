//! Figures of HTTP/2 client connections: streams, resets each way, refused streams,
//! flow-control stalls, GOAWAYs sent, and why connections were ended by the proxy (each
//! reason of `Cause::metric`: flood limits, protocol errors, deadlines).

use std::collections::BTreeMap;

use sozu_command_lib::response::FilteredMetric;

use crate::protocol::http::h2::{Cause, Counters, backend::LinkCounters};

/// The HTTP/2 figures of a worker.
#[derive(Debug, Clone, Default)]
pub(super) struct H2Figures {
    connections: u64,
    totals: Counters,
    /// Connections the proxy ended, by reason.
    ended: BTreeMap<&'static str, u64>,
    /// HTTP/2 connections to backends, closed.
    backend_connections: u64,
    backend: LinkCounters,
    /// Backend connections the proxy ended for the backend's protocol errors or floods.
    backend_ended: u64,
}

impl H2Figures {
    /// Adds what happened over one connection, when it closes; `ended` is why the proxy
    /// ended it, if it did.
    pub(super) fn record(&mut self, counters: &Counters, ended: Option<Cause>) {
        self.connections = self.connections.saturating_add(1);
        let totals = &mut self.totals;
        for (total, value) in [
            (&mut totals.streams_opened, counters.streams_opened),
            (&mut totals.resets_received, counters.resets_received),
            (&mut totals.resets_sent, counters.resets_sent),
            (&mut totals.streams_refused, counters.streams_refused),
            (&mut totals.window_stalls, counters.window_stalls),
            (&mut totals.goaways_sent, counters.goaways_sent),
        ] {
            *total = total.saturating_add(value);
        }
        if let Some(cause) = ended {
            let count = self.ended.entry(cause.metric()).or_default();
            *count = count.saturating_add(1);
        }
    }

    /// Adds what happened over one HTTP/2 connection to a backend, when it closes.
    pub(super) fn record_backend(&mut self, counters: &LinkCounters) {
        self.backend_connections = self.backend_connections.saturating_add(1);
        let totals = &mut self.backend;
        for (total, value) in [
            (&mut totals.streams, counters.streams),
            (&mut totals.resets_received, counters.resets_received),
            (&mut totals.goaways_received, counters.goaways_received),
            (&mut totals.streams_refused, counters.streams_refused),
            (&mut totals.streams_shared, counters.streams_shared),
            (&mut self.backend_ended, u64::from(counters.ended_by_proxy)),
        ] {
            *total = total.saturating_add(value);
        }
    }

    /// The figures, with `names` filtering them (empty: all); nothing before the first
    /// HTTP/2 connection.
    pub(super) fn write(&self, names: &[String], out: &mut BTreeMap<String, FilteredMetric>) {
        let backend = [
            ("h2.backend.connections", self.backend_connections),
            ("h2.backend.streams", self.backend.streams),
            ("h2.backend.resets_received", self.backend.resets_received),
            ("h2.backend.goaways_received", self.backend.goaways_received),
            ("h2.backend.streams_refused", self.backend.streams_refused),
            ("h2.backend.streams_shared", self.backend.streams_shared),
            ("h2.backend.ended", self.backend_ended),
        ];
        let backend = backend.into_iter().filter(|_| self.backend_connections > 0);
        for (name, value) in backend {
            if names.is_empty() || names.iter().any(|n| n == name) {
                out.insert(name.to_string(), FilteredMetric::Count(value));
            }
        }
        if self.connections == 0 {
            return;
        }
        let totals = &self.totals;
        let figures = [
            ("h2.connections", self.connections),
            ("h2.streams", totals.streams_opened),
            ("h2.resets_received", totals.resets_received),
            ("h2.resets_sent", totals.resets_sent),
            ("h2.streams_refused", totals.streams_refused),
            ("h2.window_stalls", totals.window_stalls),
            ("h2.goaways_sent", totals.goaways_sent),
        ];
        let ended = self.ended.iter().map(|(name, count)| (*name, *count));
        for (name, value) in figures.into_iter().chain(ended) {
            if names.is_empty() || names.iter().any(|n| n == name) {
                out.insert(name.to_string(), FilteredMetric::Count(value));
            }
        }
    }
}
