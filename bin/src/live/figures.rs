//! The figures the views show, computed from two samples.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use sozu_command_lib::{
    request::ListenerType,
    response::{AggregatedMetrics, FilteredMetric, HistogramData, WorkerInfo},
};
use sozu_lib::metrics::merge::percentiles;

use super::{
    BackendFacts, Health, Sample, serialize_millis, serialize_seconds, serialize_unix_millis,
    window::window,
};

type Metrics = BTreeMap<String, FilteredMetric>;

/// Everything the views show, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    #[serde(serialize_with = "serialize_unix_millis")]
    pub time: SystemTime,
    /// Time since the previous sample, over which rates are computed; none for a first sample,
    /// whose rates are zero and percentiles unknown.
    #[serde(serialize_with = "serialize_seconds")]
    pub interval: Option<Duration>,
    pub workers: Vec<WorkerInfo>,
    pub listeners: Vec<ListenerFigures>,
    pub proxy: ProxyFigures,
    pub clusters: Vec<ClusterFigures>,
    pub backends: Vec<BackendFigures>,
}

/// Traffic over the interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Requests (and TCP connections) completed per second.
    pub requests: f64,
    /// Responses per second by status class.
    pub statuses: StatusRates,
    /// Median response time of the requests completed in the interval.
    #[serde(rename = "p50_ms", serialize_with = "serialize_millis")]
    pub p50: Option<Duration>,
    /// 99th percentile response time of the requests completed in the interval.
    #[serde(rename = "p99_ms", serialize_with = "serialize_millis")]
    pub p99: Option<Duration>,
}

/// Responses per second by status class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusRates {
    #[serde(rename = "1xx")]
    pub informational: f64,
    #[serde(rename = "2xx")]
    pub success: f64,
    #[serde(rename = "3xx")]
    pub redirection: f64,
    #[serde(rename = "4xx")]
    pub client_error: f64,
    #[serde(rename = "5xx")]
    pub server_error: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProxyFigures {
    #[serde(flatten)]
    pub rates: Rates,
    /// Client sessions open now.
    pub active_connections: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerFigures {
    pub address: SocketAddr,
    pub protocol: ListenerType,
    pub active: bool,
    /// Requests completed per second through this listener.
    pub requests: f64,
    /// Client connections accepted per second.
    pub connections: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterFigures {
    pub id: String,
    #[serde(flatten)]
    pub rates: Rates,
    /// Connections open to its backends now.
    pub active_connections: u64,
    pub backends: BackendCounts,
}

/// A cluster's backends by state. A backend is up when every worker that reports it takes
/// connections to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackendCounts {
    pub up: usize,
    pub down: usize,
    pub draining: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendFigures {
    pub cluster_id: String,
    pub backend_id: String,
    pub address: Option<SocketAddr>,
    pub state: BackendState,
    /// Workers that report it down, out of `reported_by` that report it.
    pub down_in: usize,
    pub reported_by: usize,
    pub health: Health,
    /// Connections open to it now.
    pub active_connections: u64,
    #[serde(flatten)]
    pub rates: Rates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackendState {
    /// Every worker takes connections to it.
    Up,
    /// At least one worker takes no connection to it: failed connects, or failed health
    /// checks.
    Down,
    /// Removed: finishes its connections, takes no new one.
    Draining,
    /// No worker reports it yet.
    Unknown,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "UP",
            BackendState::Down => "DOWN",
            BackendState::Draining => "DRAINING",
            BackendState::Unknown => "?",
        }
    }
}

impl Figures {
    /// The figures of `current`, with rates and percentiles over the time since `previous`.
    pub fn between(previous: Option<&Sample>, current: &Sample) -> Figures {
        let interval =
            previous.map(|previous| current.taken.saturating_duration_since(previous.taken));
        let window = window(
            previous.map_or(&current.metrics, |previous| &previous.metrics),
            &current.metrics,
        );
        let seconds = interval.map_or(0.0, |interval| interval.as_secs_f64());
        let listeners = current
            .listeners
            .iter()
            .map(|listener| {
                let figures = window.listeners.get(&listener.address.to_string());
                ListenerFigures {
                    address: listener.address,
                    protocol: listener.protocol,
                    active: listener.active,
                    requests: per_second(figures.map_or(0, |f| count(f, "requests")), seconds),
                    connections: per_second(
                        figures.map_or(0, |f| count(f, "connections")),
                        seconds,
                    ),
                }
            })
            .collect();
        Figures {
            time: current.time,
            interval,
            workers: current.workers.clone(),
            listeners,
            proxy: ProxyFigures {
                rates: Rates::of(&window.proxy, seconds),
                active_connections: gauge(&window.proxy, "active_connections"),
            },
            clusters: cluster_figures(current, &window, seconds),
            backends: current
                .backends
                .iter()
                .map(|facts| backend_figures(facts, &current.metrics, &window, seconds))
                .collect(),
        }
    }
}

impl Rates {
    fn of(figures: &Metrics, seconds: f64) -> Rates {
        let rate = |name: &str| per_second(count(figures, name), seconds);
        let times = match figures.get("response_time") {
            Some(FilteredMetric::Histogram(data)) => Some(data),
            _ => None,
        };
        let (p50, p99) = times.map_or((None, None), quantiles);
        Rates {
            requests: rate("requests"),
            statuses: StatusRates {
                informational: rate("status.1xx"),
                success: rate("status.2xx"),
                redirection: rate("status.3xx"),
                client_error: rate("status.4xx"),
                server_error: rate("status.5xx"),
            },
            p50,
            p99,
        }
    }
}

/// The median and 99th percentile of a distribution in microseconds; none without samples.
fn quantiles(data: &HistogramData) -> (Option<Duration>, Option<Duration>) {
    let computed = percentiles(data);
    if computed.samples == 0 {
        return (None, None);
    }
    (
        Some(Duration::from_micros(computed.p50)),
        Some(Duration::from_micros(computed.p99)),
    )
}

/// `count` per second over `seconds`; zero over no time.
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn count(figures: &Metrics, name: &str) -> u64 {
    match figures.get(name) {
        Some(FilteredMetric::Count(count)) => *count,
        _ => 0,
    }
}

fn gauge(figures: &Metrics, name: &str) -> u64 {
    match figures.get(name) {
        Some(FilteredMetric::Gauge(value)) => u64::try_from(*value).unwrap_or(0),
        _ => 0,
    }
}

/// Every cluster of the state, and those with traffic in the window, sorted by id.
fn cluster_figures(
    current: &Sample,
    window: &AggregatedMetrics,
    seconds: f64,
) -> Vec<ClusterFigures> {
    let ids: BTreeSet<&str> = current
        .clusters
        .iter()
        .map(String::as_str)
        .chain(window.clusters.keys().map(String::as_str))
        .collect();
    ids.into_iter()
        .map(|id| {
            let figures = window.clusters.get(id);
            ClusterFigures {
                id: id.to_string(),
                rates: figures.map_or_else(Rates::default, |f| Rates::of(&f.cluster, seconds)),
                active_connections: figures.map_or(0, |f| {
                    f.backends
                        .values()
                        .map(|backend| gauge(backend, "active_connections"))
                        .fold(0, u64::saturating_add)
                }),
                backends: backend_counts(&current.metrics, id),
            }
        })
        .collect()
}

/// Up, down and draining backends of a cluster, from each worker's gauges: a backend is up
/// when every worker that reports it says so. A draining backend is reported down by every
/// worker; how many drain is the largest count a worker gives.
pub fn backend_counts(
    metrics: &BTreeMap<String, AggregatedMetrics>,
    cluster_id: &str,
) -> BackendCounts {
    let mut up: BTreeMap<&str, bool> = BTreeMap::new();
    let mut draining = 0;
    for worker in metrics.values() {
        let Some(cluster) = worker.clusters.get(cluster_id) else {
            continue;
        };
        let drains = usize::try_from(gauge(&cluster.cluster, "backends.draining")).unwrap_or(0);
        draining = draining.max(drains);
        for (backend_id, figures) in &cluster.backends {
            if let Some(FilteredMetric::Gauge(value)) = figures.get("up") {
                *up.entry(backend_id).or_insert(true) &= *value > 0;
            }
        }
    }
    let up_count = up.values().filter(|is_up| **is_up).count();
    let not_up = up.len().saturating_sub(up_count);
    BackendCounts {
        up: up_count,
        down: not_up.saturating_sub(draining),
        draining: draining.min(not_up),
    }
}

fn backend_figures(
    facts: &BackendFacts,
    metrics: &BTreeMap<String, AggregatedMetrics>,
    window: &AggregatedMetrics,
    seconds: f64,
) -> BackendFigures {
    let reports: Vec<bool> = metrics
        .values()
        .filter_map(|worker| {
            let figures = worker
                .clusters
                .get(&facts.cluster_id)?
                .backends
                .get(&facts.backend_id)?;
            match figures.get("up") {
                Some(FilteredMetric::Gauge(value)) => Some(*value > 0),
                _ => None,
            }
        })
        .collect();
    let down_in = reports.iter().filter(|is_up| !**is_up).count();
    let state = if facts.draining {
        BackendState::Draining
    } else if reports.is_empty() {
        BackendState::Unknown
    } else if down_in == 0 {
        BackendState::Up
    } else {
        BackendState::Down
    };
    let figures = window
        .clusters
        .get(&facts.cluster_id)
        .and_then(|cluster| cluster.backends.get(&facts.backend_id));
    BackendFigures {
        cluster_id: facts.cluster_id.clone(),
        backend_id: facts.backend_id.clone(),
        address: facts.address,
        state,
        down_in,
        reported_by: reports.len(),
        health: facts.health,
        active_connections: figures.map_or(0, |f| gauge(f, "active_connections")),
        rates: figures.map_or_else(Rates::default, |f| Rates::of(f, seconds)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::live::fixtures::{pair, sample, traffic, worker};

    #[test]
    fn rates_are_counter_increases_over_the_time_between_samples() {
        let (before, after) = pair(
            worker(
                "api",
                traffic(100, 90, &[(1000, 100)]),
                &[("a", true, 1, 100)],
            ),
            worker(
                "api",
                traffic(140, 120, &[(1000, 100), (2000, 39), (50_000, 1)]),
                &[("a", true, 3, 140)],
            ),
            Duration::from_secs(2),
            &["a"],
        );
        let figures = Figures::between(Some(&before), &after);
        assert_eq!(figures.interval, Some(Duration::from_secs(2)));
        let api = figures.clusters.iter().find(|c| c.id == "api").unwrap();
        assert_eq!(api.rates.requests, 20.0);
        assert_eq!(api.rates.statuses.success, 15.0);
        assert_eq!(api.rates.statuses.server_error, 5.0);
        // Only the 40 durations recorded in between: none of the 100 earlier 1 ms ones.
        let near_2ms = Duration::from_micros(1990)..=Duration::from_micros(2020);
        assert!(
            api.rates.p50.is_some_and(|p50| near_2ms.contains(&p50)),
            "{api:?}"
        );
        assert!(
            api.rates
                .p99
                .is_some_and(|p99| p99 >= Duration::from_millis(49))
        );
        assert_eq!(api.active_connections, 3);
        let backend = &figures.backends[0];
        assert_eq!(backend.rates.requests, 20.0);
        assert_eq!(backend.state, BackendState::Up);
    }

    #[test]
    fn a_first_sample_has_no_rates_and_lists_idle_clusters() {
        let current = sample(
            Instant::now(),
            Duration::ZERO,
            vec![worker("api", traffic(10, 10, &[(500, 10)]), &[])],
            &[],
        );
        let figures = Figures::between(None, &current);
        assert_eq!(figures.interval, None);
        let ids: Vec<&str> = figures.clusters.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["api", "idle"]);
        assert_eq!(figures.clusters[0].rates, Rates::default());
    }

    #[test]
    fn a_backend_down_in_one_worker_is_down() {
        let workers = vec![
            worker(
                "api",
                traffic(0, 0, &[]),
                &[("a", true, 0, 0), ("b", true, 0, 0)],
            ),
            worker(
                "api",
                traffic(0, 0, &[]),
                &[("a", true, 0, 0), ("b", false, 0, 0)],
            ),
        ];
        let current = sample(Instant::now(), Duration::ZERO, workers, &["a", "b", "new"]);
        let figures = Figures::between(None, &current);
        let states: Vec<(BackendState, usize, usize)> = figures
            .backends
            .iter()
            .map(|b| (b.state, b.down_in, b.reported_by))
            .collect();
        assert_eq!(
            states,
            [
                (BackendState::Up, 0, 2),
                (BackendState::Down, 1, 2),
                (BackendState::Unknown, 0, 0)
            ]
        );
        assert_eq!(
            figures.clusters[0].backends,
            BackendCounts {
                up: 1,
                down: 1,
                draining: 0
            }
        );
    }

    #[test]
    fn draining_backends_are_not_counted_down() {
        let mut metrics = worker(
            "api",
            traffic(0, 0, &[]),
            &[("a", true, 0, 0), ("old", false, 2, 0)],
        );
        if let Some(cluster) = metrics.clusters.get_mut("api") {
            cluster
                .cluster
                .insert("backends.draining".into(), FilteredMetric::Gauge(1));
        }
        let by_worker = BTreeMap::from([("0".to_string(), metrics)]);
        assert_eq!(
            backend_counts(&by_worker, "api"),
            BackendCounts {
                up: 1,
                down: 0,
                draining: 1
            }
        );
    }

    #[test]
    fn rates_over_no_time_are_zero() {
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(10, 4.0), 2.5);
    }
}
