//! Live figures of a running proxy: what `sozu top` and the dashboard page show.
//!
//! A [`Sample`] is one look at the proxy: its workers, listeners, clusters, the backends whose
//! rows are wanted, and each worker's metrics as recorded (counts, gauges and distributions as
//! histograms). Two samples make [`Figures`]: rates from the counters' increase divided by the
//! time between the samples, percentiles of the durations recorded between them, gauges as
//! they are now ([`window`]). [`History`] keeps the last minute of figures for sparklines and
//! charts, [`EventLog`] the latest events.
//!
//! Everything here is plain computation on values: `sozu top` reads its samples over the
//! command socket (`cli::top`), the main process builds them from its own state for the
//! dashboard (`main_process::dashboard`).

mod events;
mod figures;
#[cfg(test)]
pub mod fixtures;
mod history;
mod window;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, Serializer};
use sozu_command_lib::{
    request::ListenerType,
    response::{AggregatedMetrics, BackendInformation, BackendStatus, ListenersList, WorkerInfo},
};

pub use self::{
    events::{EventLog, LoggedEvent, describe},
    figures::{BackendFigures, BackendState, ClusterFigures, Figures, Rates},
    history::{History, Point},
};

/// One look at a running proxy.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken: rates divide by the time between two samples.
    pub taken: Instant,
    /// The same moment on the wall clock, for display.
    pub time: SystemTime,
    pub workers: Vec<WorkerInfo>,
    pub listeners: Vec<Listener>,
    /// Every cluster of the routing state.
    pub clusters: Vec<String>,
    /// The backends whose rows are wanted.
    pub backends: Vec<BackendFacts>,
    /// Each worker's figures by worker id, distributions as recorded (`QUERY_METRICS` with
    /// `workers` and `histograms`).
    pub metrics: BTreeMap<String, AggregatedMetrics>,
}

/// A listener of the routing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub address: SocketAddr,
    pub protocol: ListenerType,
    /// Whether it accepts connections.
    pub active: bool,
}

impl Listener {
    /// Every listener of a `LIST_LISTENERS` answer, HTTP first, then HTTPS, then TCP.
    pub fn all(list: &ListenersList) -> Vec<Listener> {
        let http = list.http.iter().map(|l| Listener {
            address: l.config.address,
            protocol: ListenerType::Http,
            active: l.active,
        });
        let https = list.https.iter().map(|l| Listener {
            address: l.config.http.address,
            protocol: ListenerType::Https,
            active: l.active,
        });
        let tcp = list.tcp.iter().map(|l| Listener {
            address: l.config.address,
            protocol: ListenerType::Tcp,
            active: l.active,
        });
        http.chain(https).chain(tcp).collect()
    }
}

/// What the routing state (and, when asked, the workers) say of a backend; its figures come
/// from the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFacts {
    pub cluster_id: String,
    pub backend_id: String,
    /// Unknown for a backend removed from the state that still finishes connections.
    pub address: Option<SocketAddr>,
    /// Removed from the state: takes no new connection, finishes those it has.
    pub draining: bool,
    pub health: Health,
}

impl BackendFacts {
    /// A backend of a `QUERY_CLUSTER_BY_ID` answer; `checked` tells whether its cluster has
    /// health checks.
    pub fn of(information: &BackendInformation, checked: bool) -> BackendFacts {
        let runtime = information.runtime.as_ref();
        let health = match (checked, runtime) {
            (false, _) => Health::Unchecked,
            (true, None) => Health::Unknown,
            (true, Some(runtime)) if runtime.healthy => Health::Passing,
            (true, Some(_)) => Health::Failing,
        };
        BackendFacts {
            cluster_id: information.backend.cluster_id.clone(),
            backend_id: information.backend.backend_id.clone(),
            address: Some(information.backend.address),
            draining: runtime.is_some_and(|runtime| runtime.status == BackendStatus::Draining),
            health,
        }
    }
}

/// What active health checks say of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Its cluster has no health check.
    Unchecked,
    /// It answers its health checks.
    Passing,
    /// It fails its health checks (in at least one worker) and gets no traffic.
    Failing,
    /// Its cluster has health checks, and their outcome is not known here.
    Unknown,
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Unchecked => "-",
            Health::Passing => "passing",
            Health::Failing => "failing",
            Health::Unknown => "checked",
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a time before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn serialize_unix_millis<S: Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(unix_millis(*time))
}

/// A duration as fractional milliseconds, or null.
fn serialize_millis<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_f64(duration.as_secs_f64() * 1000.0),
        None => serializer.serialize_none(),
    }
}

/// A duration as fractional seconds, or null.
fn serialize_seconds<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_f64(duration.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}
