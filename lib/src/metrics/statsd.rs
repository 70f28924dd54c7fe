//! Pushing figures to a statsd server over UDP, in the lines Sōzu's workers send.
//!
//! Every flush sends what changed since the previous one: counters as deltas (`|c`), gauges as
//! values (`|g`), and one `|ms` line per timing sample recorded in the interval, in whole
//! milliseconds (past `MAX_SAMPLES` samples of one figure in one interval, the samples are
//! thinned and each line carries its sample rate, `|@0.25`). Figures carry Sōzu's names
//! (`statsd_names`). Lines are batched into datagrams of at most 1,400 bytes. With
//! `tagged_metrics`, the worker, version, cluster and backend are tags after the name
//! (`sozu.cluster.requests,origin=WRK-00,version=…,cluster_id=api:3|c`); without, they are part
//! of the name (`sozu.WRK-00.cluster.api.requests:3|c`).

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, UdpSocket},
};

use sozu_command_lib::response::{AggregatedMetrics, FilteredMetric, HistogramData};

use super::{
    merge::difference,
    statsd_names::{Level, sozu_name},
};

const MAX_DATAGRAM: usize = 1_400;
/// At most this many `|ms` lines per figure and interval.
const MAX_SAMPLES: u64 = 1_000;
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a figure was counted.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Proxy,
    Listener(&'a str),
    Cluster(&'a str),
    Backend(&'a str, &'a str),
}

impl Scope<'_> {
    fn level(self) -> Level {
        match self {
            Scope::Proxy => Level::Proxy,
            Scope::Listener(_) => Level::Listener,
            Scope::Cluster(_) => Level::Cluster,
            Scope::Backend(..) => Level::Backend,
        }
    }
}

/// A statsd destination and what was last sent to it.
pub struct Statsd {
    socket: UdpSocket,
    address: SocketAddr,
    prefix: String,
    tagged: bool,
    /// The worker, as Sōzu names it: `WRK-00`.
    origin: String,
    /// Last counter values and distributions, by line key, to send differences.
    last_counts: HashMap<String, u64>,
    last_histograms: HashMap<String, HistogramData>,
    batch: String,
}

impl Statsd {
    /// A client that sends the figures of worker `worker_id` to `address` from an ephemeral UDP
    /// port, prefixing every name with `prefix`; `tagged` sends the cluster, backend and
    /// listener as DogStatsD tags rather than in the name.
    pub fn new(
        address: SocketAddr,
        prefix: &str,
        tagged: bool,
        worker_id: u32,
    ) -> io::Result<Statsd> {
        let bind: SocketAddr = if address.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(Statsd {
            socket,
            address,
            prefix: prefix.to_string(),
            tagged,
            origin: format!("WRK-{worker_id:02}"),
            last_counts: HashMap::new(),
            last_histograms: HashMap::new(),
            batch: String::with_capacity(MAX_DATAGRAM),
        })
    }

    /// Sends what changed since the last flush.
    pub fn flush(&mut self, metrics: &AggregatedMetrics) {
        for (name, value) in &metrics.proxy {
            self.line(Scope::Proxy, name, value);
        }
        for (listener, figures) in &metrics.listeners {
            for (name, value) in figures {
                self.line(Scope::Listener(listener), name, value);
            }
        }
        for (cluster_id, cluster) in &metrics.clusters {
            let scope = Scope::Cluster(cluster_id);
            for (name, value) in &cluster.cluster {
                self.line(scope, name, value);
            }
            // Sōzu counts the backends a cluster has: those up and those down.
            let total: i64 = ["backends.up", "backends.down"]
                .iter()
                .filter_map(|name| match cluster.cluster.get(*name) {
                    Some(FilteredMetric::Gauge(gauge)) => Some(*gauge),
                    _ => None,
                })
                .fold(0, i64::saturating_add);
            if cluster.cluster.contains_key("backends.up") {
                let key = self.key(scope, "cluster.total_backends");
                self.push(&key, &format!("{total}|g"));
            }
            for (backend_id, figures) in &cluster.backends {
                for (name, value) in figures {
                    self.line(Scope::Backend(cluster_id, backend_id), name, value);
                }
            }
        }
        self.send_batch();
    }

    fn line(&mut self, scope: Scope<'_>, name: &str, value: &FilteredMetric) {
        let key = self.key(scope, &sozu_name(scope.level(), name));
        match value {
            FilteredMetric::Count(count) => {
                let previous = self.last_counts.insert(key.clone(), *count).unwrap_or(0);
                let delta = count.saturating_sub(previous);
                if delta > 0 {
                    self.push(&key, &format!("{delta}|c"));
                }
            }
            FilteredMetric::Gauge(gauge) => self.push(&key, &format!("{gauge}|g")),
            FilteredMetric::Histogram(data) => {
                let interval = match self.last_histograms.get(&key) {
                    Some(previous) => difference(data, previous),
                    None => data.clone(),
                };
                self.last_histograms.insert(key.clone(), data.clone());
                self.samples(&key, &interval);
            }
            FilteredMetric::Percentiles(_) => {}
        }
    }

    /// One `|ms` line per sample, thinned past `MAX_SAMPLES` with the rate on each line.
    fn samples(&mut self, key: &str, interval: &HistogramData) {
        let total = interval
            .values
            .iter()
            .map(|(_, count)| *count)
            .fold(0, u64::saturating_add);
        for &(micros, count) in &interval.values {
            if count == 0 {
                continue;
            }
            let millis = micros / 1_000;
            let (lines, value) = if total <= MAX_SAMPLES {
                (count, format!("{millis}|ms"))
            } else {
                let lines = (count.saturating_mul(MAX_SAMPLES) / total).max(1);
                let rate = lines as f64 / count as f64;
                (lines, format!("{millis}|ms|@{rate}"))
            };
            for _ in 0..lines {
                self.push(key, &value);
            }
        }
    }

    /// The line up to its value: Sōzu's name with its tags, or with the scope in it.
    fn key(&self, scope: Scope<'_>, name: &str) -> String {
        let mut key = self.prefix.clone();
        if self.tagged {
            key.push_str(match scope {
                Scope::Proxy => "",
                Scope::Listener(_) => ".listener",
                Scope::Cluster(_) => ".cluster",
                Scope::Backend(..) => ".backend",
            });
            key.push('.');
            key.push_str(name);
            key.push_str(",origin=");
            key.push_str(&self.origin);
            key.push_str(",version=");
            key.push_str(VERSION);
            let tags: &[(&str, &str)] = match scope {
                Scope::Proxy => &[],
                Scope::Listener(listener) => &[("listener", listener)],
                Scope::Cluster(cluster) => &[("cluster_id", cluster)],
                Scope::Backend(cluster, backend) => {
                    &[("cluster_id", cluster), ("backend_id", backend)]
                }
            };
            for (tag, value) in tags {
                key.push(',');
                key.push_str(tag);
                key.push('=');
                key.push_str(&sanitize(value));
            }
        } else {
            key.push('.');
            key.push_str(&self.origin);
            match scope {
                Scope::Proxy => {}
                Scope::Listener(listener) => {
                    key.push_str(".listener.");
                    key.push_str(&sanitize(listener));
                }
                Scope::Cluster(cluster) => {
                    key.push_str(".cluster.");
                    key.push_str(&sanitize(cluster));
                }
                Scope::Backend(cluster, backend) => {
                    key.push_str(".cluster.");
                    key.push_str(&sanitize(cluster));
                    key.push_str(".backend.");
                    key.push_str(&sanitize(backend));
                }
            }
            key.push('.');
            key.push_str(name);
        }
        key
    }

    fn push(&mut self, key: &str, value: &str) {
        let length = key.len() + 1 + value.len();
        if !self.batch.is_empty() && self.batch.len() + 1 + length > MAX_DATAGRAM {
            self.send_batch();
        }
        if !self.batch.is_empty() {
            self.batch.push('\n');
        }
        self.batch.push_str(key);
        self.batch.push(':');
        self.batch.push_str(value);
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // UDP is lossy by nature; a full socket buffer drops this batch rather than block.
        if let Err(error) = self.socket.send_to(self.batch.as_bytes(), self.address) {
            log::debug!("statsd send to {} failed: {error}", self.address);
        }
        self.batch.clear();
    }
}

/// Characters statsd and its tags use as separators (`:`, `|`, `,`, `=`, `#`, `@`, spaces)
/// become `_`.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(c, ':' | '|' | ',' | '=' | '#' | '@' | ' ' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sozu_command_lib::response::ClusterMetrics;

    use super::*;

    fn receive_all(socket: &UdpSocket) -> String {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut text = String::new();
        let mut buffer = [0u8; 2048];
        while let Ok(count) = socket.recv(&mut buffer) {
            assert!(count <= MAX_DATAGRAM);
            text.push_str(std::str::from_utf8(&buffer[..count]).unwrap());
            text.push('\n');
        }
        text
    }

    fn figures(requests: u64) -> AggregatedMetrics {
        let mut metrics = AggregatedMetrics::default();
        metrics
            .proxy
            .insert("requests".to_string(), FilteredMetric::Count(requests));
        let mut cluster = ClusterMetrics::default();
        cluster
            .cluster
            .insert("requests".to_string(), FilteredMetric::Count(requests));
        cluster.cluster.insert(
            "response_time".to_string(),
            FilteredMetric::Histogram(HistogramData {
                values: vec![(2_000, requests)],
                sum: 2_000 * requests,
            }),
        );
        metrics.clusters.insert("api".to_string(), cluster);
        metrics
    }

    fn split_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.is_empty()).collect()
    }

    #[test]
    fn lines_are_sozus_with_names_or_tags() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = receiver.local_addr().unwrap();
        let version = VERSION;

        let mut statsd = Statsd::new(address, "sozu", false, 3).unwrap();
        statsd.flush(&figures(5));
        statsd.flush(&figures(8));
        let text = receive_all(&receiver);
        let lines = split_lines(&text);
        for expected in [
            "sozu.WRK-03.http.requests:5|c",
            "sozu.WRK-03.http.requests:3|c",
            "sozu.WRK-03.cluster.api.requests:5|c",
            "sozu.WRK-03.cluster.api.requests:3|c",
        ] {
            assert!(lines.contains(&expected), "{expected} in {text}");
        }
        // One line per sample: 5 in the first interval, 3 in the second.
        let samples = lines
            .iter()
            .filter(|line| **line == "sozu.WRK-03.cluster.api.request_time:2|ms")
            .count();
        assert_eq!(samples, 8, "{text}");

        let mut statsd = Statsd::new(address, "edge", true, 0).unwrap();
        statsd.flush(&figures(2));
        let text = receive_all(&receiver);
        let lines = split_lines(&text);
        for expected in [
            format!("edge.http.requests,origin=WRK-00,version={version}:2|c"),
            format!("edge.cluster.requests,origin=WRK-00,version={version},cluster_id=api:2|c"),
            format!(
                "edge.cluster.request_time,origin=WRK-00,version={version},cluster_id=api:2|ms"
            ),
        ] {
            assert!(lines.contains(&expected.as_str()), "{expected} in {text}");
        }
    }

    #[test]
    fn many_samples_are_thinned_with_their_rate() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut statsd = Statsd::new(receiver.local_addr().unwrap(), "sozu", false, 0).unwrap();
        statsd.flush(&figures(4 * MAX_SAMPLES));
        let text = receive_all(&receiver);
        let samples = split_lines(&text)
            .into_iter()
            .filter(|line| *line == "sozu.WRK-00.cluster.api.request_time:2|ms|@0.25")
            .count();
        assert_eq!(samples as u64, MAX_SAMPLES, "{text}");
    }
}
