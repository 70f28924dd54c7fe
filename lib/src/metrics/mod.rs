//! What a worker counts: requests, answers by status, bytes, connections and timings, for the
//! proxy as a whole, each listener, each cluster and each backend.
//!
//! Figures are plain integers and histograms owned by the worker's loop: no lock, and no
//! allocation on the hot path once a cluster or backend has been seen (its entry is created on
//! its first request). Timing histograms are created on their first sample, so idle clusters
//! cost a few words. A request's figures are recorded once, on the way it took (its listener,
//! cluster and backend: [`RequestKey`]); the proxy's, each listener's, each cluster's and each
//! backend's are the sums of their ways', added up when figures are read (histograms of the
//! same bounds add up exactly), so a request costs one lookup and two samples, not four of
//! each. [`Metrics::snapshot`] turns the figures into the command channel's
//! [`AggregatedMetrics`], with histograms as recorded values so that the main process can merge
//! the workers' distributions ([`merge`]) before computing percentiles; [`prometheus`] renders
//! the text exposition format; [`statsd`] pushes figures over UDP.
//!
//! Names: `requests`, `status.2xx` (and `status.404` for each error code), `bytes_in` (from
//! clients), `bytes_out` (to clients), `connections` (total accepted or opened),
//! `active_connections`, `connect_time`, `first_byte_time` (request sent to response head),
//! `response_time` (request head read to response end), `connect_failures`, `retries`,
//! `proxy_answers.CODE` (answers the proxy wrote itself), `tls.handshakes`,
//! `tls.handshake_failures`, `http.spliced_bytes` (HTTP body bytes moved with `splice(2)`),
//! `descriptors.reclaimed` and `descriptors.exhausted` (the worker out of descriptors),
//! `backends.up`/`down`/`draining`, `up` (a backend: 1 or 0).

mod h2;
mod hold;
pub mod merge;
pub mod prometheus;
pub mod statsd;
pub mod statsd_names;

use h2::H2Figures;
pub use hold::HoldEvent;
use hold::HoldFigures;

use std::{collections::BTreeMap, hash::BuildHasher, net::SocketAddr, time::Duration};

use hashbrown::{Equivalent, HashTable};
use hdrhistogram::Histogram;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::{
    access_log::AccessLog,
    protocol::http::h2::{Cause, Counters, backend::LinkCounters},
};
use sozu_command_lib::{
    request::QueryMetrics,
    response::{AggregatedMetrics, BackendStatus, ClusterMetrics, FilteredMetric, HistogramData},
};

/// The longest duration a histogram records (longer samples are clamped): one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// A distribution of durations, in microseconds.
#[derive(Debug, Clone)]
pub struct Timing {
    histogram: Histogram<u32>,
    sum: u64,
}

impl Timing {
    fn new() -> Option<Timing> {
        Histogram::new_with_bounds(1, MAX_MICROS, 2)
            .ok()
            .map(|histogram| Timing { histogram, sum: 0 })
    }

    fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        // In bounds by the clamp: recording cannot fail.
        let _ = self.histogram.record(micros);
        self.sum = self.sum.saturating_add(micros);
    }

    /// Adds the samples of `other`, as if they had been recorded here.
    fn add(&mut self, other: &Timing) {
        // Same bounds on both sides: the counts add up index by index, and cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum = self.sum.saturating_add(other.sum);
    }

    pub(crate) fn data(&self) -> HistogramData {
        HistogramData {
            values: self
                .histogram
                .iter_recorded()
                .map(|value| (value.value_iterated_to(), value.count_at_value().into()))
                .collect(),
            sum: self.sum,
        }
    }
}

/// Records into an optional timing, creating it on the first sample.
pub(crate) fn sample(timing: &mut Option<Box<Timing>>, duration: Duration) {
    if timing.is_none() {
        *timing = Timing::new().map(Box::new);
    }
    if let Some(timing) = timing {
        timing.record(duration);
    }
}

/// Adds the samples of `from` into `into`, creating it when it had none.
fn add_timing(into: &mut Option<Box<Timing>>, from: Option<&Timing>) {
    match (into.as_mut(), from) {
        (_, None) => {}
        (Some(into), Some(from)) => into.add(from),
        (None, Some(from)) => *into = Some(Box::new(from.clone())),
    }
}

/// Figures of traffic through a listener, a cluster or a backend.
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    /// Requests that ended (for TCP, connections that ended), answered or not.
    pub requests: u64,
    /// Connections: accepted client connections for the proxy and a listener, established backend
    /// connections for a cluster and a backend.
    pub connections: u64,
    /// Bytes received from clients, summed over ended requests.
    pub bytes_in: u64,
    /// Bytes sent to clients, summed over ended requests.
    pub bytes_out: u64,
    /// Responses by class: 1xx to 5xx.
    pub status_classes: [u64; 5],
    /// Responses by code, for codes of 400 and more.
    pub error_codes: BTreeMap<u16, u64>,
    /// Answers written by the proxy itself, by code.
    pub proxy_answers: BTreeMap<u16, u64>,
    /// Backend connections that failed to establish.
    pub connect_failures: u64,
    /// Failed backend connections followed by another attempt (for a cluster only).
    pub retries: u64,
    /// Time to establish backend connections; `None` until the first sample.
    pub connect_time: Option<Box<Timing>>,
    /// Time from the request sent to the backend to the response head read; `None` until the first
    /// sample.
    pub first_byte_time: Option<Box<Timing>>,
    /// Time from routing a request to its end; `None` until the first sample.
    pub response_time: Option<Box<Timing>>,
}

impl Traffic {
    fn record_status(&mut self, status: u16, by_proxy: bool) {
        if let Some(class) = self
            .status_classes
            .get_mut(usize::from(status / 100).wrapping_sub(1))
        {
            *class += 1;
        }
        if status >= 400 {
            *self.error_codes.entry(status).or_default() += 1;
        }
        if by_proxy {
            *self.proxy_answers.entry(status).or_default() += 1;
        }
    }

    fn record_request(&mut self, record: &RequestRecord<'_>) {
        self.requests += 1;
        self.bytes_in += record.bytes_in;
        self.bytes_out += record.bytes_out;
        if let Some(status) = record.status {
            self.record_status(status, record.answered_by_proxy);
        }
        if let Some(time) = record.first_byte_time {
            sample(&mut self.first_byte_time, time);
        }
        sample(&mut self.response_time, record.total_time);
    }

    /// Adds the figures of `other`, as if its events had been recorded here.
    fn add(&mut self, other: &Traffic) {
        self.requests += other.requests;
        self.connections += other.connections;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (class, count) in self.status_classes.iter_mut().zip(other.status_classes) {
            *class += count;
        }
        for (code, count) in &other.error_codes {
            *self.error_codes.entry(*code).or_default() += count;
        }
        for (code, count) in &other.proxy_answers {
            *self.proxy_answers.entry(*code).or_default() += count;
        }
        self.connect_failures += other.connect_failures;
        self.retries += other.retries;
        add_timing(&mut self.connect_time, other.connect_time.as_deref());
        add_timing(&mut self.first_byte_time, other.first_byte_time.as_deref());
        add_timing(&mut self.response_time, other.response_time.as_deref());
    }

    /// The figures, with `names` filtering them (empty: all).
    fn write(&self, names: &[String], out: &mut BTreeMap<String, FilteredMetric>) {
        let mut put = |name: String, value: FilteredMetric| {
            if names.is_empty() || names.contains(&name) {
                out.insert(name, value);
            }
        };
        put("requests".to_string(), FilteredMetric::Count(self.requests));
        put(
            "connections".to_string(),
            FilteredMetric::Count(self.connections),
        );
        put("bytes_in".to_string(), FilteredMetric::Count(self.bytes_in));
        put(
            "bytes_out".to_string(),
            FilteredMetric::Count(self.bytes_out),
        );
        for (index, count) in self.status_classes.iter().enumerate() {
            put(
                format!("status.{}xx", index + 1),
                FilteredMetric::Count(*count),
            );
        }
        for (code, count) in &self.error_codes {
            put(format!("status.{code}"), FilteredMetric::Count(*count));
        }
        for (code, count) in &self.proxy_answers {
            put(
                format!("proxy_answers.{code}"),
                FilteredMetric::Count(*count),
            );
        }
        put(
            "connect_failures".to_string(),
            FilteredMetric::Count(self.connect_failures),
        );
        put("retries".to_string(), FilteredMetric::Count(self.retries));
        for (name, timing) in [
            ("connect_time", &self.connect_time),
            ("first_byte_time", &self.first_byte_time),
            ("response_time", &self.response_time),
        ] {
            if let Some(timing) = timing {
                put(name.to_string(), FilteredMetric::Histogram(timing.data()));
            }
        }
    }
}

/// Figures of one cluster and its backends.
#[derive(Debug, Default, Clone)]
struct ClusterFigures {
    traffic: Traffic,
    backends: FxHashMap<String, Traffic>,
    hold: HoldFigures,
}

impl ClusterFigures {
    /// The figures of one of the cluster's backends, created on its first use.
    fn backend(&mut self, backend_id: &str) -> Option<&mut Traffic> {
        entry(&mut self.backends, backend_id)
    }
}

/// The entry of `map` for `id`, created on its first use (the id is copied only then).
fn entry<'a, T: Default>(map: &'a mut FxHashMap<String, T>, id: &str) -> Option<&'a mut T> {
    if !map.contains_key(id) {
        map.insert(id.to_string(), T::default());
    }
    map.get_mut(id)
}

/// The way a request took through the worker, on which its figures are recorded: the
/// listener that accepted its client, and the cluster and backend it went to (none when it
/// was not routed, when no backend served it, or when figures are not kept per cluster).
#[derive(Debug, Clone)]
struct RequestKey {
    listener: SocketAddr,
    cluster: Option<Box<str>>,
    backend: Option<Box<str>>,
}

/// A [`RequestKey`] borrowed from a request's record: the form looked up and hashed.
#[derive(Hash, PartialEq, Eq)]
struct RequestKeyRef<'a> {
    listener: SocketAddr,
    cluster: Option<&'a str>,
    backend: Option<&'a str>,
}

impl RequestKey {
    fn borrowed(&self) -> RequestKeyRef<'_> {
        RequestKeyRef {
            listener: self.listener,
            cluster: self.cluster.as_deref(),
            backend: self.backend.as_deref(),
        }
    }
}

impl RequestKeyRef<'_> {
    fn owned(&self) -> RequestKey {
        RequestKey {
            listener: self.listener,
            cluster: self.cluster.map(Box::from),
            backend: self.backend.map(Box::from),
        }
    }

    fn hash(&self) -> u64 {
        FxBuildHasher.hash_one(self)
    }
}

impl Equivalent<RequestKey> for RequestKeyRef<'_> {
    fn equivalent(&self, key: &RequestKey) -> bool {
        *self == key.borrowed()
    }
}

/// What happened to one request (or one TCP connection), for metrics and access logs.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    /// The address of the listener that accepted the client.
    pub listener: SocketAddr,
    /// The client's address (the one a PROXY header gave, if any).
    pub client: SocketAddr,
    /// `HTTP`, `HTTPS` or `TCP`.
    pub protocol: &'static str,
    /// The cluster the request was routed to; `None` when no frontend matched.
    pub cluster_id: Option<&'a str>,
    /// The backend that served the request; `None` when none did (proxy answer, no backend).
    pub backend_id: Option<&'a str>,
    /// The address of that backend, or of a script's `remote`.
    pub backend_address: Option<SocketAddr>,
    /// The request method as sent (empty for TCP).
    pub method: &'a str,
    /// The authority the request was routed by (empty for TCP).
    pub host: &'a str,
    /// The path and query of the request (empty for TCP).
    pub path: &'a str,
    /// The status sent to the client; none for TCP connections and requests left unanswered.
    pub status: Option<u16>,
    /// The proxy wrote the answer itself (an error page, a redirect, a fault) rather than relaying
    /// a backend's.
    pub answered_by_proxy: bool,
    /// Bytes from the client (request) and to the client (response).
    pub bytes_in: u64,
    /// Bytes sent to the client for this request.
    pub bytes_out: u64,
    /// Time to establish the backend connection, when one was opened for this request (`None` for a
    /// reused one).
    pub connect_time: Option<Duration>,
    /// Time from the request sent to the backend to its response head read; `None` without a
    /// backend response.
    pub first_byte_time: Option<Duration>,
    /// Time from routing the request (or accepting the TCP connection) to its end.
    pub total_time: Duration,
    /// The request's User-Agent value (empty when absent).
    pub user_agent: &'a str,
    /// The request's id, carried in the listener's request-id field: the client's, or one the
    /// proxy generated.
    pub request_id: &'a str,
    /// The faults that acted on the request or connection (`fault="…"` in access logs).
    pub faults: &'a [std::rc::Rc<str>],
    /// For a TCP connection of a listener with content routing: what chose where it went.
    pub decided_by: Option<&'a str>,
    /// The protocol spoken to the backend when it is not HTTP/1.1:
    /// `HTTP/2` for a cluster with `http2 = true` (`backend_protocol=HTTP/2` in access logs).
    pub backend_protocol: Option<&'static str>,
}

/// The figures of every level once the requests' ways are added in ([`Metrics::totals`]).
struct Totals {
    proxy: Traffic,
    listeners: FxHashMap<SocketAddr, Traffic>,
    clusters: FxHashMap<String, ClusterFigures>,
}

/// A backend's state for gauges.
#[derive(Debug, Clone)]
pub struct BackendGauge<'a> {
    /// The cluster of the backend.
    pub cluster_id: &'a str,
    /// The backend's id within its cluster.
    pub backend_id: &'a str,
    /// Whether the backend takes new connections, drains or is down.
    pub status: BackendStatus,
    /// Connections to the backend open now.
    pub connections: u64,
}

/// What a worker records of each request: figures, and the access log line.
pub struct Recorder {
    /// The worker's figures.
    pub metrics: Metrics,
    /// The access log; `None` when access logs are off.
    pub access_log: Option<AccessLog>,
}

impl Recorder {
    /// A request (or TCP connection) ended: counts it and writes its access log line.
    pub fn request_done(&mut self, record: &RequestRecord<'_>) {
        self.metrics.request_done(record);
        if let Some(access_log) = self.access_log.as_mut() {
            access_log.log(record);
        }
    }
}

/// Every figure of a worker.
///
/// Its maps are looked up several times per request or TCP connection, by keys that orders
/// and listeners name (never a client): a fast hash (Fx), not one that resists flooding.
#[derive(Debug, Clone)]
pub struct Metrics {
    enabled: bool,
    proxy: Traffic,
    listeners: FxHashMap<SocketAddr, Traffic>,
    /// By cluster id (names from the configuration, not from clients: a fast hash serves).
    /// Their request figures are in `requests`.
    clusters: FxHashMap<String, ClusterFigures>,
    /// The figures of requests, by the way they took: one lookup per request.
    requests: HashTable<(RequestKey, Traffic)>,
    tls_handshakes: u64,
    tls_handshake_failures: u64,
    /// Bytes of HTTP bodies moved with `splice(2)` (`http.spliced_bytes`).
    spliced_bytes: u64,
    /// Idle backend connections closed for their descriptors (`descriptors.reclaimed`).
    descriptors_reclaimed: u64,
    /// Times the worker had no descriptor for a connection and none to free
    /// (`descriptors.exhausted`).
    descriptors_exhausted: u64,
    h2: H2Figures,
    /// Figures are not kept per cluster and backend (`disable_cluster_metrics`).
    without_clusters: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// Empty figures, recording; `without_clusters` keeps no per-cluster and per-backend figures
    /// (`disable_cluster_metrics`).
    pub fn new(without_clusters: bool) -> Metrics {
        Metrics {
            enabled: true,
            proxy: Traffic::default(),
            listeners: FxHashMap::default(),
            clusters: FxHashMap::default(),
            requests: HashTable::new(),
            tls_handshakes: 0,
            tls_handshake_failures: 0,
            spliced_bytes: 0,
            descriptors_reclaimed: 0,
            descriptors_exhausted: 0,
            h2: H2Figures::default(),
            without_clusters,
        }
    }

    /// Starts or stops recording (the `CONFIGURE_METRICS` order); figures already kept stay.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Whether figures are recorded.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Forgets every figure.
    pub fn clear(&mut self) {
        *self = Metrics {
            enabled: self.enabled,
            without_clusters: self.without_clusters,
            ..Metrics::new(self.without_clusters)
        };
    }

    fn listener(&mut self, address: SocketAddr) -> &mut Traffic {
        self.listeners.entry(address).or_default()
    }

    /// The figures of a cluster, created on its first use.
    fn cluster(&mut self, cluster_id: &str) -> Option<&mut ClusterFigures> {
        if self.without_clusters {
            return None;
        }
        entry(&mut self.clusters, cluster_id)
    }

    /// A client connection was accepted on `listener`.
    pub fn accepted(&mut self, listener: SocketAddr) {
        if !self.enabled {
            return;
        }
        self.proxy.connections += 1;
        self.listener(listener).connections += 1;
    }

    /// A TLS handshake ended, successfully or not.
    pub fn tls_handshake(&mut self, succeeded: bool) {
        if !self.enabled {
            return;
        }
        if succeeded {
            self.tls_handshakes += 1;
        } else {
            self.tls_handshake_failures += 1;
        }
    }

    /// `count` bytes of an HTTP body went to their sink through a kernel pipe.
    pub fn spliced(&mut self, count: usize) {
        if self.enabled {
            self.spliced_bytes += count as u64;
        }
    }

    /// `count` idle backend connections were closed to free their descriptors.
    pub fn descriptors_reclaimed(&mut self, count: usize) {
        if self.enabled {
            self.descriptors_reclaimed += count as u64;
        }
    }

    /// The worker had no descriptor for a connection and no idle backend connection to free.
    pub fn descriptors_exhausted(&mut self) {
        if self.enabled {
            self.descriptors_exhausted += 1;
        }
    }

    /// An HTTP/2 client connection closed, after what `counters` tell; the proxy ended it
    /// for `ended`, if it did.
    pub fn h2_connection(&mut self, counters: &Counters, ended: Option<Cause>) {
        if self.enabled {
            self.h2.record(counters, ended);
        }
    }

    /// An HTTP/2 backend connection closed after what `counters` tell (`h2.backend.*`).
    pub fn h2_backend_closed(&mut self, counters: &LinkCounters) {
        if self.enabled {
            self.h2.record_backend(counters);
        }
    }

    /// A backend connection was established after `connect_time`.
    pub fn connected(&mut self, cluster_id: &str, backend_id: &str, connect_time: Duration) {
        if !self.enabled {
            return;
        }
        let Some(cluster) = self.cluster(cluster_id) else {
            return;
        };
        cluster.traffic.connections += 1;
        sample(&mut cluster.traffic.connect_time, connect_time);
        if let Some(backend) = cluster.backend(backend_id) {
            backend.connections += 1;
            sample(&mut backend.connect_time, connect_time);
        }
    }

    /// A connect to a backend failed; `retried` when another attempt follows.
    pub fn connect_failed(&mut self, cluster_id: &str, backend_id: &str, retried: bool) {
        if !self.enabled {
            return;
        }
        let Some(cluster) = self.cluster(cluster_id) else {
            return;
        };
        cluster.traffic.connect_failures += 1;
        cluster.traffic.retries += u64::from(retried);
        if let Some(backend) = cluster.backend(backend_id) {
            backend.connect_failures += 1;
        }
    }

    /// A connection or request of the cluster was held, released, timed out or refused;
    /// `depth` is the count waiting for the cluster after it.
    pub fn hold(&mut self, cluster_id: &str, event: HoldEvent, depth: usize) {
        if !self.enabled {
            return;
        }
        if let Some(cluster) = self.cluster(cluster_id) {
            cluster.hold.record(event, depth);
        }
    }

    /// A request (or TCP connection) ended: its figures go to the way it took.
    pub fn request_done(&mut self, record: &RequestRecord<'_>) {
        if !self.enabled {
            return;
        }
        let key = RequestKeyRef {
            listener: record.listener,
            cluster: record.cluster_id.filter(|_| !self.without_clusters),
            backend: record
                .backend_id
                .filter(|_| record.cluster_id.is_some() && !self.without_clusters),
        };
        let (_, traffic) = self
            .requests
            .entry(
                key.hash(),
                |(way, _)| key.equivalent(way),
                |(way, _)| way.borrowed().hash(),
            )
            .or_insert_with(|| (key.owned(), Traffic::default()))
            .into_mut();
        traffic.record_request(record);
    }

    /// The figures of the proxy, of each listener and of each cluster and its backends: what
    /// was recorded on them, plus the request figures of every way through them.
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            proxy: self.proxy.clone(),
            listeners: self.listeners.clone(),
            clusters: self.clusters.clone(),
        };
        for (way, traffic) in &self.requests {
            totals.proxy.add(traffic);
            totals
                .listeners
                .entry(way.listener)
                .or_default()
                .add(traffic);
            let Some(cluster) = way
                .cluster
                .as_deref()
                .and_then(|id| entry(&mut totals.clusters, id))
            else {
                continue;
            };
            cluster.traffic.add(traffic);
            if let Some(backend) = way.backend.as_deref().and_then(|id| cluster.backend(id)) {
                backend.add(traffic);
            }
        }
        totals
    }

    /// The figures asked for. `sessions` is the count of open sessions; `backends` gives the
    /// state of every backend for the gauges.
    pub fn snapshot(
        &self,
        query: &QueryMetrics,
        sessions: usize,
        backends: &[BackendGauge<'_>],
    ) -> AggregatedMetrics {
        let names = &query.metric_names;
        let totals = self.totals();
        let mut snapshot = AggregatedMetrics::default();
        totals.proxy.write(names, &mut snapshot.proxy);
        let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
        let gauges = [(
            "active_connections",
            i64::try_from(sessions).unwrap_or(i64::MAX),
        )];
        for (name, value) in gauges {
            if wanted(name) {
                snapshot
                    .proxy
                    .insert(name.to_string(), FilteredMetric::Gauge(value));
            }
        }
        for (name, value) in [
            ("tls.handshakes", self.tls_handshakes),
            ("tls.handshake_failures", self.tls_handshake_failures),
            ("http.spliced_bytes", self.spliced_bytes),
            ("descriptors.reclaimed", self.descriptors_reclaimed),
            ("descriptors.exhausted", self.descriptors_exhausted),
        ] {
            if wanted(name) {
                snapshot
                    .proxy
                    .insert(name.to_string(), FilteredMetric::Count(value));
            }
        }
        let mut hold = HoldFigures::default();
        for cluster in totals.clusters.values() {
            hold.add(&cluster.hold);
        }
        hold.write(names, &mut snapshot.proxy);
        self.h2.write(names, &mut snapshot.proxy);
        for (address, traffic) in &totals.listeners {
            let mut figures = BTreeMap::new();
            traffic.write(names, &mut figures);
            snapshot.listeners.insert(address.to_string(), figures);
        }
        if query.no_clusters {
            return snapshot;
        }
        let cluster_wanted =
            |id: &str| query.cluster_ids.is_empty() || query.cluster_ids.iter().any(|c| c == id);
        let backend_wanted =
            |id: &str| query.backend_ids.is_empty() || query.backend_ids.iter().any(|b| b == id);
        for (cluster_id, cluster) in &totals.clusters {
            if !cluster_wanted(cluster_id) {
                continue;
            }
            let entry = snapshot.clusters.entry(cluster_id.clone()).or_default();
            cluster.traffic.write(names, &mut entry.cluster);
            cluster.hold.write(names, &mut entry.cluster);
            for (backend_id, traffic) in &cluster.backends {
                if backend_wanted(backend_id) {
                    traffic.write(names, entry.backends.entry(backend_id.clone()).or_default());
                }
            }
        }
        for gauge in backends {
            if !cluster_wanted(gauge.cluster_id) {
                continue;
            }
            let entry: &mut ClusterMetrics = snapshot
                .clusters
                .entry(gauge.cluster_id.to_string())
                .or_default();
            let state = match gauge.status {
                BackendStatus::Normal => "backends.up",
                BackendStatus::Down => "backends.down",
                BackendStatus::Draining => "backends.draining",
            };
            if wanted(state) {
                let slot = entry
                    .cluster
                    .entry(state.to_string())
                    .or_insert(FilteredMetric::Gauge(0));
                if let FilteredMetric::Gauge(count) = slot {
                    *count += 1;
                }
            }
            if backend_wanted(gauge.backend_id) {
                let figures = entry
                    .backends
                    .entry(gauge.backend_id.to_string())
                    .or_default();
                if wanted("active_connections") {
                    figures.insert(
                        "active_connections".to_string(),
                        FilteredMetric::Gauge(i64::try_from(gauge.connections).unwrap_or(i64::MAX)),
                    );
                }
                if wanted("up") {
                    let up = i64::from(gauge.status == BackendStatus::Normal);
                    figures.insert("up".to_string(), FilteredMetric::Gauge(up));
                }
            }
        }
        snapshot
    }

    /// Every metric name a snapshot may hold.
    pub fn names(&self) -> Vec<String> {
        let mut all = BTreeMap::new();
        let everything = QueryMetrics::default();
        let snapshot = self.snapshot(&everything, 0, &[]);
        for name in snapshot.proxy.keys() {
            all.insert(name.clone(), ());
        }
        for figures in snapshot.listeners.values() {
            all.extend(figures.keys().map(|name| (name.clone(), ())));
        }
        for cluster in snapshot.clusters.values() {
            all.extend(cluster.cluster.keys().map(|name| (name.clone(), ())));
            for figures in cluster.backends.values() {
                all.extend(figures.keys().map(|name| (name.clone(), ())));
            }
        }
        all.into_keys().collect()
    }
}

#[cfg(test)]
mod tests;
