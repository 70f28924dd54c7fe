//! The Prometheus endpoint of the main process: `GET /metrics` on `[metrics]
//! prometheus_address` gathers every worker's figures, merges them and answers in the text
//! exposition format ([`sozu_lib::metrics::prometheus`]).
//!
//! A scrape is a small HTTP/1.1 exchange on a non-blocking socket of the main's event loop: read
//! the request head (at most 8 KiB), route it ([`Route`]), ask the workers, write the answer,
//! close. A slow or silent scraper never stalls the loop and cannot hold the main process: the
//! request head must arrive within [`SCRAPE_TIMEOUT`] of the accept and the answer must be
//! taken within [`SCRAPE_TIMEOUT`] of being ready (a slow-loris client is closed), and at most
//! [`MAX_SCRAPES`] connections are open at once: past that, new ones wait in the listen
//! backlog until one ends.

use std::{
    io::{ErrorKind, Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use mio::{Interest, Token, net::TcpListener};
use sozu_command_lib::{
    request::{Order, QueryMetrics},
    response::ResponseContent,
};
use sozu_lib::metrics::{merge, prometheus};

use super::{Main, Owner, PROMETHEUS, dashboard, tasks::Purpose, tasks::Task};

const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may take to send its request head, and to read the answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections to the endpoint open at once.
pub const MAX_SCRAPES: usize = 64;

/// One scraper's connection.
pub struct Scrape {
    stream: mio::net::TcpStream,
    token: Token,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    /// The workers were asked; the answer comes when they all answered.
    asked: bool,
    /// When the connection is closed if the scraper has not sent its request, or has not
    /// read its answer, by then; `None` while the workers are asked (the task has its own
    /// timeout).
    deadline: Option<Instant>,
}

/// What a request asks for. A new page is one more variant here and one more arm in
/// [`Main::serve_route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (or `/`): the workers' figures.
    Metrics,
    /// The dashboard's page or its data.
    Dashboard(dashboard::Route),
    NotFound,
}

/// The route of a request head, from its request line.
fn route(request: &[u8]) -> Route {
    if let Some(page) = dashboard::Route::of(request) {
        return Route::Dashboard(page);
    }
    let line = request
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&byte| byte == b' ');
    let (method, target) = (parts.next(), parts.next().unwrap_or_default());
    let path = target
        .split(|&byte| byte == b'?')
        .next()
        .unwrap_or_default();
    match (method, path) {
        (Some(b"GET"), b"/metrics" | b"/") => Route::Metrics,
        _ => Route::NotFound,
    }
}

/// Binds the endpoint with `SO_REUSEPORT`, so a new main process binds it during an upgrade
/// while the old one still holds it.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    sozu_lib::server::bind_listener(address, 128).map(TcpListener::from_std)
}

impl Main {
    /// Starts serving the endpoint, when the configuration has one.
    pub(super) fn serve_prometheus(&mut self) {
        let Some(address) = self.settings.prometheus_address else {
            return;
        };
        let mut listener = match bind(address) {
            Ok(listener) => listener,
            Err(error) => {
                warn!("cannot listen for Prometheus scrapes on {address}: {error}");
                return;
            }
        };
        if let Err(error) =
            self.poll
                .registry()
                .register(&mut listener, PROMETHEUS, Interest::READABLE)
        {
            warn!("cannot serve the Prometheus endpoint: {error}");
            return;
        }
        if let Ok(address) = listener.local_addr() {
            info!("Prometheus endpoint on http://{address}/metrics");
        }
        self.prometheus = Some(listener);
    }

    /// Accepts scrapers up to [`MAX_SCRAPES`]; the others wait in the backlog, and are
    /// accepted when a scrape ends.
    pub(super) fn accept_scrapes(&mut self) {
        while self.scrapes.len() < MAX_SCRAPES {
            let Some(listener) = &self.prometheus else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    self.next_scrape += 1;
                    let id = self.next_scrape;
                    let token = self.register_owner(Owner::Scrape(id));
                    if let Err(error) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot register a scrape: {error}");
                        self.release_token(token);
                        continue;
                    }
                    self.scrapes.insert(
                        id,
                        Scrape {
                            stream,
                            token,
                            request: Vec::new(),
                            response: Vec::new(),
                            written: 0,
                            asked: false,
                            deadline: Some(Instant::now() + SCRAPE_TIMEOUT),
                        },
                    );
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    warn!("cannot accept a scrape: {error}");
                    return;
                }
            }
        }
    }

    /// Reads the scraper's request, or writes its answer.
    pub(super) fn scrape_ready(&mut self, id: u64) {
        let Some(scrape) = self.scrapes.get_mut(&id) else {
            return;
        };
        if !scrape.response.is_empty() {
            self.write_scrape(id);
            return;
        }
        if scrape.asked {
            return;
        }
        let mut chunk = [0u8; 2048];
        loop {
            match scrape.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close_scrape(id);
                    return;
                }
                Ok(count) => {
                    scrape
                        .request
                        .extend_from_slice(chunk.get(..count).unwrap_or_default());
                    if scrape.request.windows(4).any(|w| w == b"\r\n\r\n")
                        || scrape.request.len() > MAX_REQUEST
                    {
                        break;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close_scrape(id);
                    return;
                }
            }
        }
        let route = route(&scrape.request);
        self.serve_route(id, route);
    }

    /// Answers a scrape's request, or asks the workers for what it needs.
    fn serve_route(&mut self, id: u64, route: Route) {
        match route {
            Route::Metrics => self.ask_for_metrics(id),
            Route::Dashboard(page) => {
                if self.mark_asked(id) {
                    self.serve_dashboard(id, page);
                }
            }
            Route::NotFound => {
                self.answer(id, http_response(404, "text/plain", b"GET /metrics\n"));
            }
        }
    }

    /// The scrape waits for an answer of the main process (whose task has its own timeout), not
    /// for its scraper; false when the scrape is gone.
    fn mark_asked(&mut self, id: u64) -> bool {
        let Some(scrape) = self.scrapes.get_mut(&id) else {
            return false;
        };
        scrape.asked = true;
        scrape.deadline = None;
        true
    }

    fn ask_for_metrics(&mut self, id: u64) {
        if !self.mark_asked(id) {
            return;
        }
        let targets = self.serving_workers();
        let task = Task::new(
            Purpose::Scrape { scrape: id },
            None,
            self.settings.worker_timeout,
        );
        self.start_task(
            task,
            &targets,
            &[Order::QueryMetrics(QueryMetrics::default())],
        );
    }

    /// Every worker answered the scrape's query: merge, render, answer.
    pub(super) fn answer_scrape(&mut self, id: u64, task: &Task) {
        let snapshots = task.contents.values().filter_map(|content| match content {
            ResponseContent::Metrics(metrics) => Some(metrics.clone()),
            _ => None,
        });
        let mut merged = merge::merge(snapshots);
        self.add_fleet_metrics(&mut merged);
        let text = prometheus::render(&merged, &self.settings.metrics_prefix);
        if !task.failures.is_empty() {
            debug!("scrape with missing workers: {}", task.failures.join("; "));
        }
        let response = http_response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.as_bytes(),
        );
        self.answer(id, response);
    }

    /// Sends `response`, which the scraper must take within [`SCRAPE_TIMEOUT`].
    pub(super) fn answer(&mut self, id: u64, response: Vec<u8>) {
        let Some(scrape) = self.scrapes.get_mut(&id) else {
            return;
        };
        scrape.response = response;
        scrape.deadline = Some(Instant::now() + SCRAPE_TIMEOUT);
        self.write_scrape(id);
    }

    /// The earliest deadline of a scrape, for the event loop's wait.
    pub(super) fn next_scrape_deadline(&self) -> Option<Instant> {
        self.scrapes
            .values()
            .filter_map(|scrape| scrape.deadline)
            .min()
    }

    /// Closes the scrapes whose scraper is too slow.
    pub(super) fn close_late_scrapes(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .scrapes
            .iter()
            .filter(|(_, scrape)| scrape.deadline.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            debug!("scrape {id}: no request or no reading within {SCRAPE_TIMEOUT:?}, closing");
            self.close_scrape(id);
        }
    }

    fn write_scrape(&mut self, id: u64) {
        let Some(scrape) = self.scrapes.get_mut(&id) else {
            return;
        };
        while scrape.written < scrape.response.len() {
            match scrape
                .stream
                .write(scrape.response.get(scrape.written..).unwrap_or_default())
            {
                Ok(count) => scrape.written += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close_scrape(id);
    }

    fn close_scrape(&mut self, id: u64) {
        if let Some(mut scrape) = self.scrapes.remove(&id) {
            let _ = self.poll.registry().deregister(&mut scrape.stream);
            self.release_token(scrape.token);
            // A slot is free: a scraper may wait in the backlog.
            self.accept_scrapes();
        }
    }
}

fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b""), Route::NotFound);
    }
}
