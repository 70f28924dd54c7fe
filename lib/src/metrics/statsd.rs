//! Pushing figures to a statsd server over UDP, as Sōzu's `[metrics]` section configures it.
//!
//! Every flush sends what changed since the previous one: counters as deltas (`|c`), gauges as
//! values (`|g`), and for each distribution the percentiles of the samples recorded in the
//! interval, in milliseconds, as gauges (`response_time.p50`, `.p90`, `.p99`, `.max`) — one
//! line per figure, not per request. Lines are batched into datagrams of at most 1,400 bytes.
//! With `tagged_metrics`, the cluster, backend and listener are DogStatsD tags
//! (`requests:3|c|#cluster:api,backend:api-1`); without, they are part of the name
//! (`sozu.cluster.api.backend.api-1.requests:3|c`).

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, UdpSocket},
};

use sozu_command_lib::response::{AggregatedMetrics, FilteredMetric, HistogramData};

use super::merge::{difference, percentiles};

const MAX_DATAGRAM: usize = 1_400;

/// A statsd destination and what was last sent to it.
pub struct Statsd {
    socket: UdpSocket,
    address: SocketAddr,
    prefix: String,
    tagged: bool,
    /// Last counter values and distributions, by line key, to send differences.
    last_counts: HashMap<String, u64>,
    last_histograms: HashMap<String, HistogramData>,
    batch: String,
}

impl Statsd {
    /// A client that sends to `address` from an ephemeral UDP port, prefixing every name with
    /// `prefix`; `tagged` sends the cluster, backend and listener as DogStatsD tags rather than in
    /// the name.
    pub fn new(address: SocketAddr, prefix: &str, tagged: bool) -> io::Result<Statsd> {
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
            last_counts: HashMap::new(),
            last_histograms: HashMap::new(),
            batch: String::with_capacity(MAX_DATAGRAM),
        })
    }

    /// Sends what changed since the last flush.
    pub fn flush(&mut self, metrics: &AggregatedMetrics) {
        for (name, value) in &metrics.proxy {
            self.line(&[], name, value);
        }
        for (listener, figures) in &metrics.listeners {
            for (name, value) in figures {
                self.line(&[("listener", listener)], name, value);
            }
        }
        for (cluster_id, cluster) in &metrics.clusters {
            for (name, value) in &cluster.cluster {
                self.line(&[("cluster", cluster_id)], name, value);
            }
            for (backend_id, figures) in &cluster.backends {
                for (name, value) in figures {
                    self.line(
                        &[("cluster", cluster_id), ("backend", backend_id)],
                        name,
                        value,
                    );
                }
            }
        }
        self.send_batch();
    }

    fn line(&mut self, tags: &[(&str, &str)], name: &str, value: &FilteredMetric) {
        let key = self.key(tags, name);
        // What was last sent, by metric and tags (tagged names repeat across clusters).
        let state_key = if self.tagged {
            let tags: Vec<String> = tags
                .iter()
                .map(|(tag, value)| format!("{tag}={value}"))
                .collect();
            format!("{key}#{}", tags.join(","))
        } else {
            key.clone()
        };
        match value {
            FilteredMetric::Count(count) => {
                let previous = self.last_counts.insert(state_key, *count).unwrap_or(0);
                let delta = count.saturating_sub(previous);
                if delta > 0 {
                    self.push(&key, tags, &format!("{delta}|c"));
                }
            }
            FilteredMetric::Gauge(gauge) => self.push(&key, tags, &format!("{gauge}|g")),
            FilteredMetric::Histogram(data) => {
                let interval = match self.last_histograms.get(&state_key) {
                    Some(previous) => difference(data, previous),
                    None => data.clone(),
                };
                self.last_histograms.insert(state_key, data.clone());
                if interval.values.is_empty() {
                    return;
                }
                let p = percentiles(&interval);
                for (suffix, micros) in [
                    ("p50", p.p50),
                    ("p90", p.p90),
                    ("p99", p.p99),
                    ("max", p.max),
                ] {
                    let millis = micros as f64 / 1000.0;
                    self.push(&format!("{key}.{suffix}"), tags, &format!("{millis}|g"));
                }
            }
            FilteredMetric::Percentiles(_) => {}
        }
    }

    /// The metric's name on the wire, without tags.
    fn key(&self, tags: &[(&str, &str)], name: &str) -> String {
        let mut key = self.prefix.clone();
        if !self.tagged {
            for (tag, value) in tags {
                key.push('.');
                key.push_str(tag);
                key.push('.');
                key.push_str(&sanitize(value));
            }
        }
        key.push('.');
        key.push_str(name);
        key
    }

    fn push(&mut self, key: &str, tags: &[(&str, &str)], value: &str) {
        let mut line = format!("{key}:{value}");
        if self.tagged && !tags.is_empty() {
            line.push_str("|#");
            let tags: Vec<String> = tags
                .iter()
                .map(|(tag, value)| format!("{tag}:{}", sanitize(value)))
                .collect();
            line.push_str(&tags.join(","));
        }
        if !self.batch.is_empty() && self.batch.len() + 1 + line.len() > MAX_DATAGRAM {
            self.send_batch();
        }
        if !self.batch.is_empty() {
            self.batch.push('\n');
        }
        self.batch.push_str(&line);
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

/// Characters statsd uses as separators (`:`, `|`, `,`, `#`, `@`) become `_`.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(c, ':' | '|' | ',' | '#' | '@' | ' ' | '\n') {
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

    #[test]
    fn counters_go_as_deltas_with_names_or_tags() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = receiver.local_addr().unwrap();

        let mut statsd = Statsd::new(address, "sozu", false).unwrap();
        statsd.flush(&figures(5));
        statsd.flush(&figures(8));
        let text = receive_all(&receiver);
        assert!(text.contains("sozu.requests:5|c"), "{text}");
        assert!(text.contains("sozu.requests:3|c"), "{text}");
        assert!(text.contains("sozu.cluster.api.requests:5|c"), "{text}");
        assert!(
            text.contains("sozu.cluster.api.response_time.p50:2."),
            "{text}"
        );

        let mut statsd = Statsd::new(address, "edge", true).unwrap();
        statsd.flush(&figures(2));
        let text = receive_all(&receiver);
        assert!(text.contains("edge.requests:2|c|#cluster:api"), "{text}");
    }
}
