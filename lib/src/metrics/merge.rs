//! Merging the figures of several workers, and turning distributions into percentiles.
//!
//! Counts and gauges add up; distributions are merged value by value, so the percentiles of
//! the merge are those of every sample together, not an average of percentiles.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use sozu_command_lib::response::{AggregatedMetrics, FilteredMetric, HistogramData, Percentiles};

/// The sum of several workers' figures.
pub fn merge(snapshots: impl IntoIterator<Item = AggregatedMetrics>) -> AggregatedMetrics {
    let mut total = AggregatedMetrics::default();
    for snapshot in snapshots {
        merge_figures(&mut total.main, snapshot.main);
        merge_figures(&mut total.proxy, snapshot.proxy);
        for (listener, figures) in snapshot.listeners {
            merge_figures(total.listeners.entry(listener).or_default(), figures);
        }
        for (cluster_id, cluster) in snapshot.clusters {
            let entry = total.clusters.entry(cluster_id).or_default();
            merge_figures(&mut entry.cluster, cluster.cluster);
            for (backend_id, figures) in cluster.backends {
                merge_figures(entry.backends.entry(backend_id).or_default(), figures);
            }
        }
    }
    total
}

fn merge_figures(
    total: &mut BTreeMap<String, FilteredMetric>,
    figures: BTreeMap<String, FilteredMetric>,
) {
    for (name, value) in figures {
        match total.get_mut(&name) {
            None => {
                total.insert(name, value);
            }
            Some(existing) => merge_value(existing, value),
        }
    }
}

fn merge_value(existing: &mut FilteredMetric, value: FilteredMetric) {
    match (existing, value) {
        (FilteredMetric::Count(a), FilteredMetric::Count(b)) => *a = a.saturating_add(b),
        (FilteredMetric::Gauge(a), FilteredMetric::Gauge(b)) => *a = a.saturating_add(b),
        (FilteredMetric::Histogram(a), FilteredMetric::Histogram(b)) => {
            let mut values: BTreeMap<u64, u64> = a.values.iter().copied().collect();
            for (value, count) in b.values {
                *values.entry(value).or_default() += count;
            }
            a.values = values.into_iter().collect();
            a.sum = a.sum.saturating_add(b.sum);
        }
        // Percentiles cannot be merged exactly; keep the first set. Workers send histograms.
        _ => {}
    }
}

/// The samples recorded between two snapshots of one distribution.
pub fn difference(current: &HistogramData, previous: &HistogramData) -> HistogramData {
    let before: BTreeMap<u64, u64> = previous.values.iter().copied().collect();
    HistogramData {
        values: current
            .values
            .iter()
            .filter_map(|(value, count)| {
                let new = count.saturating_sub(before.get(value).copied().unwrap_or(0));
                (new > 0).then_some((*value, new))
            })
            .collect(),
        sum: current.sum.saturating_sub(previous.sum),
    }
}

/// Percentiles of a distribution, in microseconds.
pub fn percentiles(data: &HistogramData) -> Percentiles {
    let Ok(mut histogram) = Histogram::<u64>::new(2) else {
        return Percentiles::default();
    };
    for (value, count) in &data.values {
        // An auto-resizing histogram accepts any value.
        let _ = histogram.record_n(*value, *count);
    }
    Percentiles {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p99_9: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        sum: data.sum,
    }
}

/// Replaces every distribution by its percentiles, for display.
pub fn into_percentiles(metrics: &mut AggregatedMetrics) {
    let convert = |figures: &mut BTreeMap<String, FilteredMetric>| {
        for value in figures.values_mut() {
            if let FilteredMetric::Histogram(data) = value {
                *value = FilteredMetric::Percentiles(percentiles(data));
            }
        }
    };
    convert(&mut metrics.main);
    convert(&mut metrics.proxy);
    metrics.listeners.values_mut().for_each(convert);
    for cluster in metrics.clusters.values_mut() {
        convert(&mut cluster.cluster);
        cluster.backends.values_mut().for_each(convert);
    }
    metrics.workers.values_mut().for_each(into_percentiles);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: &[(u64, u64)]) -> FilteredMetric {
        FilteredMetric::Histogram(HistogramData {
            values: values.to_vec(),
            sum: values.iter().map(|(v, n)| v * n).sum(),
        })
    }

    fn worker(requests: u64, times: &[(u64, u64)]) -> AggregatedMetrics {
        let mut metrics = AggregatedMetrics::default();
        metrics
            .proxy
            .insert("requests".to_string(), FilteredMetric::Count(requests));
        metrics
            .proxy
            .insert("response_time".to_string(), histogram(times));
        metrics
    }

    #[test]
    fn counts_add_and_histograms_merge_sample_by_sample() {
        // One worker answers fast, the other slow: the merged p50 is a real sample, not an
        // average of the two medians.
        let mut merged = merge([worker(3, &[(100, 3)]), worker(1, &[(10_000, 1)])]);
        assert_eq!(merged.proxy["requests"], FilteredMetric::Count(4));
        into_percentiles(&mut merged);
        let FilteredMetric::Percentiles(p) = &merged.proxy["response_time"] else {
            panic!("not percentiles");
        };
        assert_eq!(p.samples, 4);
        assert_eq!(p.p50, 100);
        assert!(p.max >= 9_900, "{p:?}");
        assert_eq!(p.sum, 10_300);
    }

    #[test]
    fn difference_keeps_only_new_samples() {
        let previous = HistogramData {
            values: vec![(10, 2)],
            sum: 20,
        };
        let current = HistogramData {
            values: vec![(10, 3), (50, 1)],
            sum: 80,
        };
        assert_eq!(
            difference(&current, &previous),
            HistogramData {
                values: vec![(10, 1), (50, 1)],
                sum: 60
            }
        );
    }
}
