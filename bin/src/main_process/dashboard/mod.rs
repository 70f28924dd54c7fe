//! The dashboard: `GET /dashboard` on the Prometheus admin address (`[metrics]
//! prometheus_address`) serves one page, whose HTML, CSS and JavaScript are compiled into the
//! binary; the page asks `GET /dashboard/data` every second for the live figures as JSON
//! (doc/observability.md describes its shape).
//!
//! A data request samples the proxy: the workers' metrics through a task, the rest from the
//! main state. Figures are computed since the previous sample ([`crate::live`]); the last
//! minute of them and the latest events are kept, so that a page just opened has a minute of
//! history. A request within [`FRESH`] of the last sample gets the last answer, so that many
//! open pages do not make the workers answer more than about once a second; requests arriving
//! while the workers are asked wait for the same answer. Nothing here changes the proxy.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant, SystemTime},
};

use log::debug;
use serde::Serialize;
use sozu_command_lib::{
    request::{Order, QueryMetrics},
    response::{AggregatedMetrics, Event, FilteredMetric, ResponseContent},
    state::ConfigState,
};

use super::{Main, queries, tasks::Purpose, tasks::Task};
use crate::live::{
    BackendFacts, EventLog, Figures, Health, History, Listener, LoggedEvent, Point, Sample,
};

/// How long an answer is served again instead of asking the workers.
const FRESH: Duration = Duration::from_millis(900);
/// How many events the page gets, the latest ones.
const EVENTS_KEPT: usize = 100;
/// The version of the JSON shape, raised when a field changes meaning or goes away.
const DATA_VERSION: u32 = 1;

/// The page, one self-contained document: nothing is fetched from elsewhere.
const PAGE: &str = concat!(
    include_str!("page_head.html"),
    "<style>\n",
    include_str!("page.css"),
    "</style>\n",
    include_str!("page_body.html"),
    "<script>\n",
    include_str!("page.js"),
    "</script>\n</body>\n</html>\n"
);

/// The page may run its own inline script and style, and talk to this address only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What a request on the admin address asks of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Page,
    Data,
}

impl Route {
    /// The dashboard route of a request head, if it is a GET of one.
    pub fn of(request: &[u8]) -> Option<Route> {
        let line = request
            .split(|byte| *byte == b'\r' || *byte == b'\n')
            .next()?;
        let target = line.strip_prefix(b"GET ")?;
        let path_end = target
            .iter()
            .position(|byte| *byte == b' ' || *byte == b'?')
            .unwrap_or(target.len());
        match target.get(..path_end)? {
            b"/dashboard" | b"/dashboard/" => Some(Route::Page),
            b"/dashboard/data" => Some(Route::Data),
            _ => None,
        }
    }
}

/// What the dashboard keeps between requests.
#[derive(Debug)]
pub struct Dashboard {
    previous: Option<Sample>,
    history: History,
    events: EventLog,
    /// The last data answer's body, and when its sample was taken.
    latest: Option<(Instant, Vec<u8>)>,
    /// Connections waiting for the sample being taken.
    waiting: Vec<u64>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            previous: None,
            history: History::default(),
            events: EventLog::new(EVENTS_KEPT),
            latest: None,
            waiting: Vec::new(),
        }
    }
}

impl Dashboard {
    /// Keeps an event for the page's event stream.
    pub fn record(&mut self, event: &Event) {
        self.events.push(event.clone(), SystemTime::now());
    }
}

/// The JSON answer of `/dashboard/data`.
#[derive(Serialize)]
struct Data<'a> {
    version: u32,
    #[serde(flatten)]
    figures: &'a Figures,
    /// Workers that did not answer this time, with why.
    missing: &'a [String],
    history: Vec<&'a Point>,
    events: Vec<&'a LoggedEvent>,
}

impl Main {
    /// Answers a dashboard request on connection `scrape` of the admin address.
    pub(super) fn serve_dashboard(&mut self, scrape: u64, route: Route) {
        match route {
            Route::Page => {
                let response = response("text/html; charset=utf-8", PAGE.as_bytes());
                self.answer_scrape_with(scrape, response);
            }
            Route::Data => self.dashboard_data(scrape),
        }
    }

    fn dashboard_data(&mut self, scrape: u64) {
        if let Some((taken, body)) = &self.dashboard.latest {
            if taken.elapsed() < FRESH {
                let response = response("application/json", body);
                self.answer_scrape_with(scrape, response);
                return;
            }
        }
        self.dashboard.waiting.push(scrape);
        if self.dashboard.waiting.len() > 1 {
            // The workers are being asked already.
            return;
        }
        let targets = self.serving_workers();
        let task = Task::new(Purpose::Dashboard, None, self.settings.worker_timeout);
        self.start_task(
            task,
            &targets,
            &[Order::QueryMetrics(QueryMetrics::default())],
        );
    }

    /// The workers answered: figures since the last sample, to every waiting connection.
    pub(super) fn answer_dashboard(&mut self, task: &Task) {
        let metrics: BTreeMap<String, AggregatedMetrics> = task
            .contents
            .iter()
            .filter_map(|(worker, content)| match content {
                ResponseContent::Metrics(metrics) => Some((worker.to_string(), metrics.clone())),
                _ => None,
            })
            .collect();
        if !task.failures.is_empty() {
            debug!(
                "dashboard sample with missing workers: {}",
                task.failures.join("; ")
            );
        }
        let sample = Sample {
            taken: Instant::now(),
            time: SystemTime::now(),
            workers: self.worker_list(),
            listeners: Listener::all(&queries::listeners(&self.state)),
            clusters: self.state.clusters.keys().cloned().collect(),
            backends: backend_facts(&self.state, &metrics),
            metrics,
        };
        let dashboard = &mut self.dashboard;
        let figures = Figures::between(dashboard.previous.as_ref(), &sample);
        dashboard.history.record(&figures);
        let data = Data {
            version: DATA_VERSION,
            figures: &figures,
            missing: &task.failures,
            history: dashboard.history.points().collect(),
            events: dashboard.events.events().collect(),
        };
        let body = match serde_json::to_vec(&data) {
            Ok(body) => body,
            Err(error) => {
                format!("{{\"error\":\"cannot write the figures: {error}\"}}").into_bytes()
            }
        };
        dashboard.previous = Some(sample);
        dashboard.latest = Some((Instant::now(), body.clone()));
        for scrape in std::mem::take(&mut self.dashboard.waiting) {
            self.answer_scrape_with(scrape, response("application/json", &body));
        }
    }
}

/// Every backend of the state, and those the workers still report that the state no longer
/// has: removed, finishing their connections.
fn backend_facts(
    state: &ConfigState,
    metrics: &BTreeMap<String, AggregatedMetrics>,
) -> Vec<BackendFacts> {
    let health = |cluster_id: &str| {
        let checked = state
            .clusters
            .get(cluster_id)
            .is_some_and(|cluster| cluster.health_check.is_some());
        if checked {
            Health::Unknown
        } else {
            Health::Unchecked
        }
    };
    let mut facts: Vec<BackendFacts> = state
        .backends
        .iter()
        .flat_map(|(cluster_id, backends)| {
            backends.values().map(move |backend| BackendFacts {
                cluster_id: cluster_id.clone(),
                backend_id: backend.backend_id.clone(),
                address: Some(backend.address),
                draining: false,
                health: health(cluster_id),
            })
        })
        .collect();
    let mut draining: BTreeSet<(&str, &str)> = BTreeSet::new();
    for worker in metrics.values() {
        for (cluster_id, cluster) in &worker.clusters {
            let known = state.backends.get(cluster_id);
            for (backend_id, figures) in &cluster.backends {
                let is_live = matches!(figures.get("up"), Some(FilteredMetric::Gauge(_)));
                if is_live && !known.is_some_and(|known| known.contains_key(backend_id)) {
                    draining.insert((cluster_id, backend_id));
                }
            }
        }
    }
    facts.extend(
        draining
            .into_iter()
            .map(|(cluster_id, backend_id)| BackendFacts {
                cluster_id: cluster_id.to_string(),
                backend_id: backend_id.to_string(),
                address: None,
                draining: true,
                health: health(cluster_id),
            }),
    );
    facts
}

/// A complete answer: the page or its data, never cached, closed after.
fn response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: {CONTENT_SECURITY_POLICY}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}
