//! Samples for tests: figures as a worker reports them, built in a few calls.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use sozu_command_lib::response::{
    AggregatedMetrics, FilteredMetric, HistogramData, RunState, WorkerInfo,
};

use super::{BackendFacts, Health, Sample};

/// Traffic figures: `requests` with `success` of them 2xx and the rest 5xx, and response times
/// as `(microseconds, count)` pairs.
pub fn traffic(
    requests: u64,
    success: u64,
    times: &[(u64, u64)],
) -> BTreeMap<String, FilteredMetric> {
    let mut figures = BTreeMap::new();
    figures.insert("requests".to_string(), FilteredMetric::Count(requests));
    figures.insert("status.2xx".to_string(), FilteredMetric::Count(success));
    figures.insert(
        "status.5xx".to_string(),
        FilteredMetric::Count(requests.saturating_sub(success)),
    );
    figures.insert(
        "response_time".to_string(),
        FilteredMetric::Histogram(HistogramData {
            values: times.to_vec(),
            sum: times.iter().map(|(value, count)| value * count).sum(),
        }),
    );
    figures
}

/// A worker's figures for one cluster: its traffic, and each backend's `(id, up, connections,
/// requests)`.
pub fn worker(
    cluster_id: &str,
    cluster: BTreeMap<String, FilteredMetric>,
    backends: &[(&str, bool, i64, u64)],
) -> AggregatedMetrics {
    let mut metrics = AggregatedMetrics {
        proxy: cluster.clone(),
        ..AggregatedMetrics::default()
    };
    let entry = metrics.clusters.entry(cluster_id.to_string()).or_default();
    entry.cluster = cluster;
    for (backend_id, up, connections, requests) in backends {
        let mut figures = traffic(*requests, *requests, &[]);
        figures.insert("up".to_string(), FilteredMetric::Gauge(i64::from(*up)));
        figures.insert(
            "active_connections".to_string(),
            FilteredMetric::Gauge(*connections),
        );
        entry.backends.insert((*backend_id).to_string(), figures);
    }
    metrics
}

/// A sample of one cluster `api`, taken `at` after `start`, with one worker per entry of
/// `workers`, and rows wanted for `backends`.
pub fn sample(
    start: Instant,
    at: Duration,
    workers: Vec<AggregatedMetrics>,
    backends: &[&str],
) -> Sample {
    let infos = (0..workers.len())
        .map(|id| WorkerInfo {
            id: u32::try_from(id).unwrap_or(u32::MAX),
            pid: 1000 + i32::try_from(id).unwrap_or(0),
            run_state: RunState::Running,
            restarts: 0,
        })
        .collect();
    Sample {
        taken: start + at,
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + at,
        workers: infos,
        listeners: Vec::new(),
        clusters: vec!["api".to_string(), "idle".to_string()],
        backends: backends
            .iter()
            .map(|backend_id| BackendFacts {
                cluster_id: "api".to_string(),
                backend_id: (*backend_id).to_string(),
                address: "127.0.0.1:3000".parse().ok(),
                draining: false,
                health: Health::Passing,
            })
            .collect(),
        metrics: workers
            .into_iter()
            .enumerate()
            .map(|(id, metrics)| (id.to_string(), metrics))
            .collect(),
    }
}

/// Two samples of one worker, `interval` apart: its figures `before`, then `after`.
pub fn pair(
    before: AggregatedMetrics,
    after: AggregatedMetrics,
    interval: Duration,
    backends: &[&str],
) -> (Sample, Sample) {
    let start = Instant::now();
    (
        sample(start, Duration::ZERO, vec![before], backends),
        sample(start, interval, vec![after], backends),
    )
}
