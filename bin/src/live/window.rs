//! What happened between two samples: each worker's figures minus what they were at the
//! previous sample, merged over workers.
//!
//! Counts become their increase, distributions the durations recorded in between, gauges stay
//! as they are now. A worker whose count went down restarted (or its figures were cleared):
//! everything it counted since is new. Subtracting per worker before merging keeps one
//! worker's restart from hiding the others' traffic.

use std::collections::BTreeMap;

use sozu_command_lib::response::{AggregatedMetrics, ClusterMetrics, FilteredMetric};
use sozu_lib::metrics::merge::{difference, merge};

type Figures = BTreeMap<String, FilteredMetric>;

/// The merged figures of what happened from `previous` to `current`, both by worker id.
pub fn window(
    previous: &BTreeMap<String, AggregatedMetrics>,
    current: &BTreeMap<String, AggregatedMetrics>,
) -> AggregatedMetrics {
    merge(
        current
            .iter()
            .map(|(worker, now)| match previous.get(worker) {
                Some(before) => since(before, now),
                // A worker started since: all it counted is new.
                None => now.clone(),
            }),
    )
}

fn since(before: &AggregatedMetrics, now: &AggregatedMetrics) -> AggregatedMetrics {
    AggregatedMetrics {
        main: figures_since(Some(&before.main), &now.main),
        proxy: figures_since(Some(&before.proxy), &now.proxy),
        listeners: now
            .listeners
            .iter()
            .map(|(address, figures)| {
                let earlier = before.listeners.get(address);
                (address.clone(), figures_since(earlier, figures))
            })
            .collect(),
        clusters: now
            .clusters
            .iter()
            .map(|(cluster_id, cluster)| {
                let earlier = before.clusters.get(cluster_id);
                let backends = cluster
                    .backends
                    .iter()
                    .map(|(backend_id, figures)| {
                        let earlier = earlier.and_then(|c| c.backends.get(backend_id));
                        (backend_id.clone(), figures_since(earlier, figures))
                    })
                    .collect();
                let figures = ClusterMetrics {
                    cluster: figures_since(earlier.map(|c| &c.cluster), &cluster.cluster),
                    backends,
                };
                (cluster_id.clone(), figures)
            })
            .collect(),
        workers: BTreeMap::new(),
    }
}

fn figures_since(before: Option<&Figures>, now: &Figures) -> Figures {
    now.iter()
        .map(|(name, value)| {
            let earlier = before.and_then(|figures| figures.get(name));
            (name.clone(), value_since(earlier, value))
        })
        .collect()
}

fn value_since(before: Option<&FilteredMetric>, now: &FilteredMetric) -> FilteredMetric {
    match (before, now) {
        (Some(FilteredMetric::Count(before)), FilteredMetric::Count(now)) => {
            FilteredMetric::Count(now.checked_sub(*before).unwrap_or(*now))
        }
        (Some(FilteredMetric::Histogram(before)), FilteredMetric::Histogram(now)) => {
            let count = |values: &[(u64, u64)]| -> u64 {
                values.iter().map(|(_, n)| *n).fold(0, u64::saturating_add)
            };
            if count(&now.values) < count(&before.values) {
                FilteredMetric::Histogram(now.clone())
            } else {
                FilteredMetric::Histogram(difference(now, before))
            }
        }
        (_, now) => now.clone(),
    }
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::response::HistogramData;

    use super::*;

    fn worker(requests: u64, active: i64, times: &[(u64, u64)]) -> AggregatedMetrics {
        let mut metrics = AggregatedMetrics::default();
        let proxy = &mut metrics.proxy;
        proxy.insert("requests".into(), FilteredMetric::Count(requests));
        proxy.insert("active_connections".into(), FilteredMetric::Gauge(active));
        proxy.insert(
            "response_time".into(),
            FilteredMetric::Histogram(HistogramData {
                values: times.to_vec(),
                sum: times.iter().map(|(value, n)| value * n).sum(),
            }),
        );
        metrics
    }

    fn by_worker(workers: &[AggregatedMetrics]) -> BTreeMap<String, AggregatedMetrics> {
        workers
            .iter()
            .enumerate()
            .map(|(id, metrics)| (id.to_string(), metrics.clone()))
            .collect()
    }

    #[test]
    fn counts_become_increases_and_gauges_stay_current() {
        let previous = by_worker(&[worker(10, 4, &[]), worker(5, 1, &[])]);
        let current = by_worker(&[worker(16, 2, &[]), worker(9, 3, &[])]);
        let window = window(&previous, &current);
        assert_eq!(window.proxy["requests"], FilteredMetric::Count(10));
        assert_eq!(window.proxy["active_connections"], FilteredMetric::Gauge(5));
    }

    #[test]
    fn a_restarted_worker_counts_from_zero_without_hiding_the_others() {
        // Worker 0 restarted: its 3 requests are new; worker 1 served 4 more.
        let previous = by_worker(&[worker(100, 0, &[]), worker(50, 0, &[])]);
        let current = by_worker(&[worker(3, 0, &[]), worker(54, 0, &[])]);
        assert_eq!(
            window(&previous, &current).proxy["requests"],
            FilteredMetric::Count(7)
        );
    }

    #[test]
    fn distributions_keep_only_the_durations_recorded_in_between() {
        let previous = by_worker(&[worker(0, 0, &[(100, 5)])]);
        let current = by_worker(&[worker(0, 0, &[(100, 6), (9000, 2)])]);
        let FilteredMetric::Histogram(data) = &window(&previous, &current).proxy["response_time"]
        else {
            panic!("a histogram");
        };
        assert_eq!(data.values, vec![(100, 1), (9000, 2)]);
        assert_eq!(data.sum, 18_100);
    }

    #[test]
    fn a_new_worker_brings_everything_it_counted() {
        let previous = by_worker(&[worker(10, 0, &[])]);
        let current = by_worker(&[worker(12, 0, &[]), worker(4, 0, &[])]);
        assert_eq!(
            window(&previous, &current).proxy["requests"],
            FilteredMetric::Count(6)
        );
    }
}
