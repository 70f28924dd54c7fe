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
