//! The Prometheus endpoint of the main process: `GET /metrics` on `[metrics]
//! prometheus_address` gathers every worker's figures, merges them and answers in the text
//! exposition format ([`sozu_lib::metrics::prometheus`]).
//!
//! A scrape is a small HTTP/1.1 exchange on a non-blocking socket of the main's event loop: read
//! the request head (at most 8 KiB), ask the workers, write the answer, close. A slow or silent
//! scraper costs one socket and never stalls the loop.

use std::{
    io::{ErrorKind, Read, Write},
    net::SocketAddr,
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

/// One scraper's connection.
pub struct Scrape {
    stream: mio::net::TcpStream,
    token: Token,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    /// The workers were asked; the answer comes when they all answered.
    asked: bool,
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

    pub(super) fn accept_scrapes(&mut self) {
        loop {
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
        if let Some(route) = dashboard::Route::of(&scrape.request) {
            scrape.asked = true;
            self.serve_dashboard(id, route);
            return;
        }
        let is_metrics = scrape.request.starts_with(b"GET /metrics ")
            || scrape.request.starts_with(b"GET /metrics?")
            || scrape.request.starts_with(b"GET / ");
        if !is_metrics {
            scrape.response = http_response(404, "text/plain", b"GET /metrics\n");
            self.write_scrape(id);
            return;
        }
        scrape.asked = true;
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
        let Some(scrape) = self.scrapes.get_mut(&id) else {
            return;
        };
        scrape.response = http_response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.as_bytes(),
        );
        self.write_scrape(id);
    }

    /// Sends a complete answer on a connection of the endpoint, then closes it.
    pub(super) fn answer_scrape_with(&mut self, id: u64, response: Vec<u8>) {
        if let Some(scrape) = self.scrapes.get_mut(&id) {
            scrape.response = response;
        }
        self.write_scrape(id);
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
