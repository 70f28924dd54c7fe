//! Metrics, access logs and statsd of a real worker: a known number of requests with known
//! statuses and sizes, then the figures must say exactly that.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use sozu_command_lib::{
    config::{AccessLogFormat, LogTarget},
    request::{
        Cluster, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType,
        MetricsConfiguration, Order, QueryMetrics,
    },
    response::{AggregatedMetrics, FilteredMetric, ResponseContent},
};
use sozu_e2e::{
    DEADLINE, Worker, backend::Backend, backend_order, free_address, temporary_directory,
    wait_until,
};
use sozu_lib::{
    metrics::{merge, prometheus},
    server::{AccessLogSettings, ServerConfig, StatsdSettings},
};

const BODY: &str = "twelve bytes";

/// An HTTP listener routing `known.test` to a backend answering `BODY`.
fn setup(config: ServerConfig) -> (Worker, SocketAddr) {
    let backend = Backend::http_ok(BODY);
    let mut worker = Worker::start(config);
    let address = free_address();
    worker.ok(Order::AddHttpListener(HttpListenerConfig::new(address)));
    worker.ok(Order::AddCluster(Cluster::new("known")));
    worker.ok(Order::AddBackend(backend_order(
        "known",
        "known-0",
        backend.address,
    )));
    worker.ok(Order::AddHttpFrontend(HttpFrontend::new(
        Some("known".to_string()),
        address,
        "known.test",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Http,
    }));
    (worker, address)
}

/// Sends `request` on a new connection and reads the answer until the proxy closes.
fn exchange(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

const FOUND: &str =
    "GET /a HTTP/1.1\r\nHost: known.test\r\nUser-Agent: tester/1\r\nConnection: close\r\n\r\n";
const NOT_FOUND: &str = "GET /b HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n";

fn metrics(worker: &mut Worker) -> AggregatedMetrics {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    match response.content {
        Some(ResponseContent::Metrics(metrics)) => metrics,
        other => panic!("no metrics: {other:?}"),
    }
}

fn count(figures: &std::collections::BTreeMap<String, FilteredMetric>, name: &str) -> u64 {
    match figures.get(name) {
        Some(FilteredMetric::Count(count)) => *count,
        other => panic!("{name}: {other:?} in {figures:?}"),
    }
}

#[test]
fn counts_and_bytes_match_the_requests_sent() {
    let (mut worker, address) = setup(ServerConfig::default());
    let mut bytes_out = 0;
    for _ in 0..5 {
        let answer = exchange(address, FOUND);
        assert!(answer.ends_with(BODY), "{answer}");
        bytes_out += answer.len() as u64;
    }
    for _ in 0..3 {
        let answer = exchange(address, NOT_FOUND);
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        bytes_out += answer.len() as u64;
    }
    let figures = metrics(&mut worker);
    assert_eq!(count(&figures.proxy, "requests"), 8);
    assert_eq!(count(&figures.proxy, "status.2xx"), 5);
    assert_eq!(count(&figures.proxy, "status.4xx"), 3);
    assert_eq!(count(&figures.proxy, "status.404"), 3);
    assert_eq!(count(&figures.proxy, "proxy_answers.404"), 3);
    assert_eq!(count(&figures.proxy, "connections"), 8);
    assert_eq!(count(&figures.proxy, "bytes_out"), bytes_out);
    assert_eq!(
        count(&figures.proxy, "bytes_in"),
        5 * FOUND.len() as u64 + 3 * NOT_FOUND.len() as u64
    );
    let cluster = &figures.clusters["known"];
    assert_eq!(count(&cluster.cluster, "requests"), 5);
    assert_eq!(count(&cluster.backends["known-0"], "status.2xx"), 5);
    assert_eq!(cluster.cluster["backends.up"], FilteredMetric::Gauge(1));
    let Some(FilteredMetric::Histogram(times)) = cluster.cluster.get("response_time") else {
        panic!("no response time: {cluster:?}");
    };
    assert_eq!(times.values.iter().map(|(_, n)| n).sum::<u64>(), 5);

    // Merged and rendered the way the main process serves them.
    let text = prometheus::render(&merge::merge([figures]), "sozu");
    assert!(text.contains("sozu_requests_total 8\n"), "{text}");
    assert!(
        text.contains("sozu_cluster_requests_total{cluster=\"known\"} 5\n"),
        "{text}"
    );
    assert!(text.contains("sozu_cluster_response_time_seconds_count{cluster=\"known\"} 5\n"));
}

#[test]
fn metrics_can_be_disabled_and_cleared() {
    let (mut worker, address) = setup(ServerConfig::default());
    exchange(address, FOUND);
    worker.ok(Order::ConfigureMetrics(MetricsConfiguration::Disabled));
    exchange(address, FOUND);
    assert_eq!(count(&metrics(&mut worker).proxy, "requests"), 1);
    worker.ok(Order::ConfigureMetrics(MetricsConfiguration::Enabled));
    worker.ok(Order::ConfigureMetrics(MetricsConfiguration::Clear));
    exchange(address, FOUND);
    assert_eq!(count(&metrics(&mut worker).proxy, "requests"), 1);
}

#[test]
fn access_log_lines_are_json_and_match_the_requests() {
    let directory = temporary_directory("access");
    let path = directory.path().join("access.log");
    let (mut worker, address) = setup(ServerConfig {
        access_logs: Some(AccessLogSettings {
            target: Some(LogTarget::File(path.clone())),
            format: AccessLogFormat::Json,
            colored: false,
        }),
        ..ServerConfig::default()
    });
    exchange(address, FOUND);
    exchange(address, NOT_FOUND);
    exchange(address, FOUND);
    // A round trip on the command channel: the worker flushed its lines before answering.
    worker.ok(Order::Status);
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(&path)
        .is_ok_and(|text| text.lines().count() == 3)));
    let text = std::fs::read_to_string(&path).expect("read the access log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let statuses: Vec<u64> = lines
        .iter()
        .map(|line| line["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [200, 404, 200]);
    assert_eq!(lines[0]["host"], "known.test");
    assert_eq!(lines[0]["path"], "/a");
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["cluster"], "known");
    assert_eq!(lines[0]["backend"], "known-0");
    assert_eq!(lines[0]["user_agent"], "tester/1");
    assert_eq!(lines[1]["answered_by_proxy"], true);
    assert_eq!(lines[0]["bytes_in"], FOUND.len());
    assert!(
        lines
            .iter()
            .all(|line| line["request_id"].as_str().is_some_and(|id| !id.is_empty()))
    );
    std::fs::remove_dir_all(directory).expect("clean up");
}

#[test]
fn statsd_receives_sozus_lines() {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind a statsd receiver");
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (_worker, address) = setup(ServerConfig {
        statsd: Some(StatsdSettings {
            address: receiver.local_addr().expect("receiver address"),
            prefix: "edge".to_string(),
            tagged: true,
            worker_id: 7,
        }),
        ..ServerConfig::default()
    });
    for _ in 0..4 {
        exchange(address, FOUND);
    }
    let version = env!("CARGO_PKG_VERSION");
    let requests =
        format!("edge.cluster.requests,origin=WRK-07,version={version},cluster_id=known:");
    let timing =
        format!("edge.cluster.request_time,origin=WRK-07,version={version},cluster_id=known:");
    let proxy = format!("edge.http.requests,origin=WRK-07,version={version}:");
    // Counters come as deltas and may straddle two flushes: add them up.
    let (mut cluster_requests, mut samples, mut proxy_requests) = (0u64, 0, 0u64);
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    let delta = |line: &str, key: &str| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_suffix("|c"))
            .and_then(|count| count.parse::<u64>().ok())
    };
    assert!(
        wait_until(DEADLINE, || {
            if let Ok(count) = receiver.recv(&mut buffer) {
                let datagram = String::from_utf8_lossy(&buffer[..count]).into_owned();
                for line in datagram.lines() {
                    cluster_requests += delta(line, &requests).unwrap_or(0);
                    proxy_requests += delta(line, &proxy).unwrap_or(0);
                    if line.starts_with(&timing) && line.ends_with("|ms") {
                        samples += 1;
                    }
                }
                text.push_str(&datagram);
                text.push('\n');
            }
            cluster_requests == 4 && proxy_requests == 4 && samples == 4
        }),
        "statsd lines: {text}"
    );
}
