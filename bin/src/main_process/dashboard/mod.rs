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
                self.answer(scrape, response);
            }
            Route::Data => self.dashboard_data(scrape),
        }
    }

    fn dashboard_data(&mut self, scrape: u64) {
        if let Some((taken, body)) = &self.dashboard.latest {
            if taken.elapsed() < FRESH {
                let response = response("application/json", body);
                self.answer(scrape, response);
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
            self.answer(scrape, response("application/json", &body));
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

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{AddBackend, Cluster, HealthCheckConfig, Order};

    use super::*;
    use crate::live::fixtures::{pair, traffic, worker};

    #[test]
    fn routes_are_gets_of_the_dashboard_paths() {
        let route = |head: &str| Route::of(head.as_bytes());
        assert_eq!(
            route("GET /dashboard HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Route::Page)
        );
        assert_eq!(route("GET /dashboard/ HTTP/1.1\r\n\r\n"), Some(Route::Page));
        assert_eq!(
            route("GET /dashboard/data HTTP/1.1\r\n\r\n"),
            Some(Route::Data)
        );
        assert_eq!(
            route("GET /dashboard/data?t=1 HTTP/1.1\r\n\r\n"),
            Some(Route::Data)
        );
        assert_eq!(route("POST /dashboard/data HTTP/1.1\r\n\r\n"), None);
        assert_eq!(route("GET /dashboardx HTTP/1.1\r\n\r\n"), None);
        assert_eq!(route("GET /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(route("GET /dashboard"), Some(Route::Page));
        assert_eq!(route(""), None);
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("<script>") && PAGE.contains("<style>"));
        for outside in ["http:", "https:", "src=", "@import", "url("] {
            assert!(!PAGE.contains(outside), "the page contains {outside:?}");
        }
        assert!(PAGE.contains("fetch(\"/dashboard/data\""));
        let answer = String::from_utf8(response("text/html; charset=utf-8", PAGE.as_bytes()))
            .expect("an ASCII head and a UTF-8 page");
        assert!(answer.contains("Content-Security-Policy: default-src 'none';"));
        assert!(answer.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
    }

    #[test]
    fn backends_of_the_state_and_those_still_draining() {
        let mut state = ConfigState::new();
        let mut checked = Cluster::new("api");
        checked.health_check = Some(HealthCheckConfig::new("/health"));
        let orders = [
            Order::AddCluster(checked),
            Order::AddCluster(Cluster::new("web")),
            Order::AddBackend(AddBackend {
                cluster_id: "api".into(),
                backend_id: "a".into(),
                address: "127.0.0.1:3000".parse().expect("an address"),
                sticky_id: None,
                weight: 100,
                backup: false,
            }),
        ];
        for order in &orders {
            state.apply(order).expect("a valid order");
        }
        // The worker still has `old`, removed from the state, and `gone`'s traffic figures
        // without gauges (it finished draining).
        let mut figures = worker(
            "api",
            traffic(1, 1, &[]),
            &[("a", true, 0, 1), ("old", false, 3, 0)],
        );
        if let Some(cluster) = figures.clusters.get_mut("api") {
            cluster.backends.insert("gone".into(), traffic(5, 5, &[]));
        }
        let metrics = BTreeMap::from([("0".to_string(), figures)]);
        let facts = backend_facts(&state, &metrics);
        let summary: Vec<(&str, bool, Health, bool)> = facts
            .iter()
            .map(|f| {
                (
                    f.backend_id.as_str(),
                    f.draining,
                    f.health,
                    f.address.is_some(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", false, Health::Unknown, true),
                ("old", true, Health::Unknown, false)
            ]
        );
    }

    #[test]
    fn the_data_answer_has_the_documented_shape() {
        let (before, after) = pair(
            worker("api", traffic(10, 10, &[(900, 10)]), &[("a", true, 1, 10)]),
            worker(
                "api",
                traffic(14, 13, &[(900, 13), (4000, 1)]),
                &[("a", false, 0, 14)],
            ),
            Duration::from_secs(1),
            &["a"],
        );
        let figures = Figures::between(Some(&before), &after);
        let mut history = History::default();
        history.record(&figures);
        let mut events = EventLog::new(10);
        events.push(
            Event {
                kind: sozu_command_lib::response::EventKind::BackendDown,
                cluster_id: Some("api".into()),
                backend_id: Some("a".into()),
                address: None,
                message: String::new(),
            },
            SystemTime::UNIX_EPOCH,
        );
        let data = Data {
            version: DATA_VERSION,
            figures: &figures,
            missing: &[],
            history: history.points().collect(),
            events: events.events().collect(),
        };
        let json = serde_json::to_value(&data).expect("JSON");
        let keys = |value: &serde_json::Value| -> Vec<String> {
            value
                .as_object()
                .map(|object| object.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(json["interval"], 1.0);
        assert_eq!(json["time"], 1_800_000_001_000u64);
        let rates = ["p50_ms", "p99_ms", "requests", "statuses"];
        let mut proxy = rates.to_vec();
        proxy.insert(0, "active_connections");
        assert_eq!(keys(&json["proxy"]), proxy);
        assert_eq!(
            keys(&json["proxy"]["statuses"]),
            ["1xx", "2xx", "3xx", "4xx", "5xx"]
        );
        let api = &json["clusters"][0];
        assert_eq!(api["id"], "api");
        assert_eq!(api["requests"], 4.0);
        assert_eq!(api["statuses"]["5xx"], 1.0);
        assert!(
            api["p99_ms"]
                .as_f64()
                .is_some_and(|p99| p99 > 3.9 && p99 < 4.1),
            "{api}"
        );
        assert_eq!(
            api["backends"],
            serde_json::json!({"up": 0, "down": 1, "draining": 0})
        );
        let backend = &json["backends"][0];
        assert_eq!(
            keys(backend),
            [
                "active_connections",
                "address",
                "backend_id",
                "cluster_id",
                "down_in",
                "health",
                "p50_ms",
                "p99_ms",
                "reported_by",
                "requests",
                "state",
                "statuses"
            ]
        );
        assert_eq!(backend["state"], "DOWN");
        assert_eq!(backend["health"], "PASSING");
        assert_eq!(keys(&json["history"][0]), ["clusters", "proxy", "time"]);
        assert_eq!(json["history"][0]["clusters"]["api"]["requests"], 4.0);
        assert_eq!(json["events"][0]["kind"], "BACKEND_DOWN");
        assert_eq!(json["events"][0]["seq"], 1);
        assert_eq!(json["events"][0]["time"], 0);
        assert_eq!(json["workers"][0]["run_state"], "RUNNING");
    }
}
