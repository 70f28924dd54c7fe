//! What the worker observes, going out: access log lines flushed each turn, figures pushed
//! to statsd every [`STATSD_INTERVAL`], and the snapshot of figures that queries and statsd
//! read.

use std::time::{Duration, Instant};

use sozu_command_lib::{request::QueryMetrics, response::AggregatedMetrics};

use super::Server;
use crate::metrics::BackendGauge;

/// How often figures are pushed to statsd.
pub(super) const STATSD_INTERVAL: Duration = Duration::from_secs(1);

impl Server {
    /// Writes the access log lines of this turn, and pushes figures to statsd when due
    /// (`now` is the turn's time).
    pub(super) fn flush_observations(&mut self, now: Instant) {
        if let Some(access_log) = self.recorder.access_log.as_mut() {
            access_log.flush_if_due(now);
        }
        if now < self.next_statsd_flush {
            return;
        }
        self.next_statsd_flush = now + STATSD_INTERVAL;
        if self.statsd.is_some() && self.recorder.metrics.is_enabled() {
            let snapshot = self.metrics_snapshot(&QueryMetrics::default());
            if let Some(statsd) = self.statsd.as_mut() {
                statsd.flush(&snapshot);
            }
        }
    }

    /// The worker's figures for a query.
    pub(super) fn metrics_snapshot(&self, query: &QueryMetrics) -> AggregatedMetrics {
        let gauges: Vec<BackendGauge<'_>> = self
            .state
            .clusters
            .keys()
            .flat_map(|cluster_id| {
                self.backends
                    .cluster_backends(cluster_id)
                    .map(|backend| BackendGauge {
                        cluster_id: &backend.cluster_id,
                        backend_id: &backend.id,
                        status: backend.reported_status(),
                        connections: backend.connections(),
                    })
            })
            .collect();
        let mut snapshot = self
            .recorder
            .metrics
            .snapshot(query, self.sessions.len(), &gauges);
        self.faults.write_metrics(&mut snapshot.proxy);
        for (address, router) in &self.content_routers {
            let figures = snapshot.listeners.entry(address.to_string()).or_default();
            router.write_metrics(&query.metric_names, figures);
        }
        snapshot
    }
}
