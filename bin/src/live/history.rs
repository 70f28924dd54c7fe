//! The last minute of figures, for sparklines and charts.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::{Figures, Rates, serialize_unix_millis};

/// How far back the history goes.
pub const SPAN: Duration = Duration::from_secs(60);

/// The rates of one interval: the proxy's, and those of each cluster that had traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    #[serde(serialize_with = "serialize_unix_millis")]
    pub time: SystemTime,
    pub proxy: Rates,
    /// Clusters without a request in the interval are left out.
    pub clusters: BTreeMap<String, Rates>,
}

/// Points of the last [`SPAN`], oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<Point>,
}

impl History {
    /// Adds the rates of `figures` (a first sample, without an interval, has none) and forgets
    /// the points older than [`SPAN`] before it.
    pub fn record(&mut self, figures: &Figures) {
        if figures.interval.is_none() {
            return;
        }
        let clusters = figures
            .clusters
            .iter()
            .filter(|cluster| cluster.rates.requests > 0.0)
            .map(|cluster| (cluster.id.clone(), cluster.rates.clone()))
            .collect();
        self.points.push_back(Point {
            time: figures.time,
            proxy: figures.proxy.rates.clone(),
            clusters,
        });
        while self.points.front().is_some_and(|oldest| {
            figures
                .time
                .duration_since(oldest.time)
                .is_ok_and(|age| age > SPAN)
        }) {
            self.points.pop_front();
        }
    }

    pub fn points(&self) -> impl ExactSizeIterator<Item = &Point> {
        self.points.iter()
    }

    /// The rates of a cluster (the proxy's with `None`) at each point, oldest first; a point
    /// where the cluster had no traffic gives zero rates.
    pub fn series(&self, cluster: Option<&str>) -> Vec<Rates> {
        self.points
            .iter()
            .map(|point| match cluster {
                None => point.proxy.clone(),
                Some(id) => point.clusters.get(id).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::live::fixtures::{pair, sample, traffic, worker};

    /// Figures of the second before `at` seconds, in which cluster `api` completed
    /// `requests` requests.
    fn second(at: u64, requests: u64) -> Figures {
        let (mut before, mut after) = pair(
            worker("api", traffic(0, 0, &[]), &[]),
            worker("api", traffic(requests, requests, &[]), &[]),
            Duration::from_secs(1),
            &[],
        );
        let shift = Duration::from_secs(at - 1);
        for sample in [&mut before, &mut after] {
            sample.time += shift;
        }
        Figures::between(Some(&before), &after)
    }

    #[test]
    fn the_history_keeps_the_last_minute() {
        let mut history = History::default();
        for at in 1..=90 {
            history.record(&second(at, at));
        }
        let requests: Vec<f64> = history
            .series(Some("api"))
            .iter()
            .map(|r| r.requests)
            .collect();
        assert_eq!(requests.len(), 61);
        assert_eq!(requests.first(), Some(&30.0));
        assert_eq!(requests.last(), Some(&90.0));
    }

    #[test]
    fn a_cluster_without_traffic_has_zero_rates_at_that_point() {
        let mut history = History::default();
        history.record(&second(1, 5));
        history.record(&second(2, 0));
        let requests: Vec<f64> = history
            .series(Some("api"))
            .iter()
            .map(|r| r.requests)
            .collect();
        assert_eq!(requests, [5.0, 0.0]);
        assert!(
            history
                .points()
                .nth(1)
                .is_some_and(|p| p.clusters.is_empty())
        );
        assert!(
            history
                .series(Some("other"))
                .iter()
                .all(|r| *r == Rates::default())
        );
    }

    #[test]
    fn a_first_sample_adds_no_point() {
        let mut history = History::default();
        let first = sample(Instant::now(), Duration::ZERO, Vec::new(), &[]);
        history.record(&Figures::between(None, &first));
        assert_eq!(history.points().len(), 0);
    }
}
