//! The dashboard of the real binary: `/dashboard/data`'s JSON shape on its own, and the page in
//! headless Chromium, driven over the DevTools protocol, while a client loop sends requests:
//! it draws without console errors, its charts hold points, its backend table lists every
//! backend, and its screenshot is not blank. `/metrics` answers as before.

mod common;

use std::{
    io::{Cursor, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
};

use base64::Engine;
use common::{Backend, DEADLINE, Load, Proxy, free_address, wait_until};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// One HTTP/1.1 exchange; returns the head and the body (read up to its `Content-Length`, as
/// Chromium keeps its connections open).
fn exchange(address: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                return (head.to_string(), body.to_string());
            }
        }
        match stream.read(&mut chunk).expect("read the answer") {
            0 => break,
            count => answer.extend_from_slice(chunk.get(..count).unwrap_or_default()),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn get(address: SocketAddr, path: &str) -> (String, String) {
    exchange(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    )
}

/// A proxy with a Prometheus address, clusters `api` (backends `api-a`, `api-b`) and `web`
/// (`web-c`).
fn proxy_with_clusters() -> (Proxy, SocketAddr, Vec<Backend>) {
    let admin = free_address();
    let proxy = Proxy::start(&format!("[metrics]\nprometheus_address = \"{admin}\"\n"));
    let backends = vec![
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    ];
    proxy.route("api", "api.test", &backends[0]);
    proxy.add_backend("api", &backends[1]);
    proxy.route("web", "web.test", &backends[2]);
    (proxy, admin, backends)
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn dashboard_data_answers_the_documented_json() {
    let (proxy, admin, _backends) = proxy_with_clusters();
    let _load = Load::start(proxy.http, &["api.test", "web.test"]);
    let mut data = Value::Null;
    let has_rates = wait_until(DEADLINE, || {
        let (head, body) = get(admin, "/dashboard/data");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        data = serde_json::from_str(&body).expect("the data is JSON");
        data["interval"].is_number()
            && data["clusters"]
                .as_array()
                .is_some_and(|clusters| clusters.iter().all(|c| c["requests"].as_f64() > Some(0.0)))
    });
    assert!(has_rates, "no rates: {data:#}");

    assert_eq!(
        keys(&data),
        [
            "backends",
            "clusters",
            "events",
            "history",
            "interval",
            "listeners",
            "missing",
            "proxy",
            "time",
            "version",
            "workers"
        ]
    );
    assert_eq!(data["version"], 1);
    assert!(
        data["time"]
            .as_u64()
            .is_some_and(|time| time > 1_700_000_000_000)
    );
    let rates = ["p50_ms", "p99_ms", "requests", "statuses"];
    assert_eq!(
        keys(&data["proxy"]),
        [&["active_connections"][..], &rates].concat()
    );
    assert_eq!(
        keys(&data["proxy"]["statuses"]),
        ["1xx", "2xx", "3xx", "4xx", "5xx"]
    );
    let workers = data["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2);
    for worker in workers {
        assert_eq!(keys(worker), ["id", "pid", "restarts", "run_state"]);
        assert_eq!(worker["run_state"], "RUNNING");
    }
    assert_eq!(
        data["listeners"],
        json!([{
            "address": proxy.http.to_string(),
            "protocol": "HTTP",
            "active": true,
            "requests": data["listeners"][0]["requests"],
            "connections": data["listeners"][0]["connections"],
        }])
    );
    let clusters = data["clusters"].as_array().expect("clusters");
    let ids: Vec<&str> = clusters.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["api", "web"]);
    for cluster in clusters {
        assert_eq!(
            keys(cluster),
            [
                "active_connections",
                "backends",
                "id",
                "p50_ms",
                "p99_ms",
                "requests",
                "statuses"
            ]
        );
        assert!(cluster["statuses"]["2xx"].as_f64() > Some(0.0), "{cluster}");
        assert!(cluster["p99_ms"].as_f64() > Some(0.0), "{cluster}");
    }
    assert_eq!(
        clusters[0]["backends"],
        json!({"up": 2, "down": 0, "draining": 0})
    );
    let backends = data["backends"].as_array().expect("backends");
    let listed: Vec<(&str, &str, &str)> = backends
        .iter()
        .map(|b| {
            let field = |name: &str| b[name].as_str().unwrap_or_default();
            (field("cluster_id"), field("backend_id"), field("state"))
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("api", "api-a", "UP"),
            ("api", "api-b", "UP"),
            ("web", "web-c", "UP")
        ]
    );
    assert_eq!(backends[0]["health"], "UNCHECKED");
    assert_eq!(backends[0]["reported_by"], 2);
    let points = data["history"].as_array().expect("history");
    assert!(!points.is_empty());
    assert_eq!(keys(&points[0]), ["clusters", "proxy", "time"]);
    assert!(data["events"].is_array());
    assert_eq!(data["missing"], json!([]));

    // The page is there, /metrics is as before, nothing else answers, nothing is changed.
    let (head, page) = get(admin, "/dashboard");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none';"),
        "{head}"
    );
    assert!(page.starts_with("<!doctype html>"));
    let (head, metrics) = get(admin, "/metrics");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(metrics.contains("sozu_cluster_requests_total{cluster=\"api\"}"));
    let (head, _) = exchange(
        admin,
        "POST /dashboard/data HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (status, _) = common::get(proxy.http, "admin").expect("the HTTP listener answers");
    assert_eq!(status, 404, "the dashboard is only on the admin address");
}

/// A headless Chromium of its own, with a new empty profile, debugged on a port it chose.
struct Chromium {
    child: Child,
    port: u16,
}

impl Chromium {
    fn start(profile: &Path) -> Chromium {
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium must be installed (.ci/install-test-tools installs it)");
        let mut chromium = Chromium { child, port: 0 };
        // Chromium writes the port it listens on in the profile.
        let found = wait_until(DEADLINE, || {
            let written = std::fs::read_to_string(profile.join("DevToolsActivePort"));
            chromium.port = written
                .ok()
                .and_then(|text| text.lines().next().and_then(|port| port.parse().ok()))
                .unwrap_or(0);
            chromium.port != 0
        });
        assert!(found, "chromium did not open its debugging port");
        chromium
    }

    /// The page Chromium opened, over a DevTools websocket.
    fn page(&self) -> Page {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut url = None;
        let listed = wait_until(DEADLINE, || {
            let (_, body) = get(address, "/json/list");
            let targets: Value = serde_json::from_str(&body).unwrap_or_default();
            url = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|target| target["type"] == "page")
                    .and_then(|target| target["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            });
            url.is_some()
        });
        assert!(listed, "no page in chromium");
        let url = url.unwrap_or_default();
        let stream = TcpStream::connect(address).expect("connect to chromium");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("a DevTools websocket");
        Page {
            socket,
            next_id: 0,
            events: Vec::new(),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page driven with DevTools commands; the events received meanwhile are kept.
struct Page {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(command.to_string()))
            .expect("send a DevTools command");
        loop {
            let message = self.socket.read().expect("a DevTools message");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let value: Value = serde_json::from_str(text).unwrap_or_default();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
            if value["method"].is_string() {
                self.events.push(value);
            }
        }
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Console errors, uncaught exceptions and errors the browser logged.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|event| match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => {
                    matches!(event["params"]["type"].as_str(), Some("error" | "assert"))
                }
                Some("Log.entryAdded") => event["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect()
    }
}

/// How much of a PNG is not its most common colour, and how many colours it has.
fn painted(png: &[u8]) -> (f64, usize) {
    let decoder = png::Decoder::new(Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG of a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's pixels");
    let channels = frame.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for pixel in pixels
        .get(..frame.buffer_size())
        .unwrap_or_default()
        .chunks(channels)
    {
        *counts.entry(pixel.to_vec()).or_insert(0usize) += 1;
    }
    let total: usize = counts.values().sum();
    let background = counts.values().copied().max().unwrap_or(0);
    (
        (total - background) as f64 / total.max(1) as f64,
        counts.len(),
    )
}

/// What the test waits for in the page: live figures, charts with points, every backend.
const READY: &str = r##"(() => {
  const charts = ["chart-requests", "chart-statuses", "chart-p99"]
    .map((id) => Number(document.getElementById(id).dataset.points || 0));
  const rows = Array.from(document.querySelectorAll("#backends tbody tr[data-state]"))
    .map((row) => row.cells[1].textContent + " " + row.dataset.state);
  return {
    live: document.getElementById("status").classList.contains("live"),
    charts,
    rows,
    clusters: document.querySelectorAll("#clusters tbody tr").length,
  };
})()"##;

#[test]
fn the_dashboard_page_draws_live_figures_in_chromium() {
    let (proxy, admin, _backends) = proxy_with_clusters();
    let _load = Load::start(proxy.http, &["api.test", "web.test"]);
    let chromium = Chromium::start(&proxy.dir.path().join("chromium"));
    let mut page = chromium.page();
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        page.call(domain, json!({}));
    }
    page.call(
        "Page.navigate",
        json!({"url": format!("http://{admin}/dashboard")}),
    );

    let mut state = Value::Null;
    let ready = wait_until(DEADLINE, || {
        state = page.evaluate(READY);
        state["live"] == true
            && state["charts"]
                .as_array()
                .is_some_and(|charts| charts.iter().all(|points| points.as_u64() > Some(1)))
            && state["rows"] == json!(["api-a UP", "api-b UP", "web-c UP"])
    });
    assert!(
        ready,
        "the page is not ready: {state}; errors: {:?}",
        page.errors()
    );
    assert_eq!(state["clusters"], 2, "{state}");
    let totals = page.evaluate("document.getElementById('totals').textContent");
    assert!(
        totals
            .as_str()
            .is_some_and(|text| text.contains("requests/s")),
        "{totals}"
    );

    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .expect("a base64 screenshot");
    let (share, colours) = painted(&png);
    assert!(
        share > 0.05 && colours > 50,
        "a blank screenshot: {share} painted, {colours} colours"
    );
    assert!(
        page.errors().is_empty(),
        "console errors: {:?}",
        page.errors()
    );
}
