//! Faults on live HTTP requests (issue 14), through a real worker with a raw-socket client
//! and a real HTTP backend: answers of the proxy that never reach the backend, delays on
//! either side, the share of requests a probability faults, and the fault's name in the
//! access log.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::{Duration, Instant},
};

use sozu_command_lib::{
    config::{AccessLogFormat, LogTarget},
    request::{AddFault, Cluster, Fault, Order},
};
use sozu_e2e::{
    DEADLINE, TempDir, Worker,
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, Response},
    temporary_directory, wait_until,
};
use sozu_lib::server::{AccessLogSettings, ServerConfig};

fn add_fault(worker: &mut Worker, json: serde_json::Value) {
    let fault: Fault = serde_json::from_value(json).expect("a valid fault");
    worker.ok(Order::AddFault(AddFault { fault }));
}

/// A worker writing access logs in `format` to a file of a fresh directory.
fn logging_worker(format: AccessLogFormat, name: &str) -> (Worker, PathBuf, TempDir) {
    let directory = temporary_directory(&format!("faults-{name}"));
    let path = directory.path().join("access.log");
    let worker = Worker::start(ServerConfig {
        access_logs: Some(AccessLogSettings {
            target: Some(LogTarget::File(path.clone())),
            format,
            colored: false,
        }),
        ..ServerConfig::default()
    });
    (worker, path, directory)
}

/// The access log's lines once it has `count` of them.
fn log_lines(worker: &mut Worker, path: &PathBuf, count: usize) -> Vec<String> {
    // A round trip on the command channel: the worker flushed its lines before answering.
    worker.ok(Order::Status);
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(path)
        .is_ok_and(|text| text.lines().count() >= count)));
    let text = std::fs::read_to_string(path).expect("read the access log");
    text.lines().map(str::to_string).collect()
}

fn get(client: &mut Client, path: &str) -> Response {
    client.get("app.test", path)
}

#[test]
fn http_error_is_answered_by_the_proxy_and_labelled_in_the_access_log() {
    let backend = HttpBackend::ok("from the backend");
    let (mut worker, path, _directory) = logging_worker(AccessLogFormat::Ascii, "ascii");
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "injected-503", "cluster_id": "app", "type": "http_error",
            "status": 503, "body": "injected outage", "headers": [["X-Fault", "yes"]],
            "path_prefix": "/api"}),
    );
    let mut client = Client::connect(address);
    let faulted = get(&mut client, "/api/users");
    assert_eq!(faulted.status, 503);
    assert_eq!(faulted.text(), "injected outage");
    assert_eq!(faulted.header("X-Fault"), Some("yes"));
    // The selector leaves other paths alone, on the same kept connection.
    let clean = get(&mut client, "/index.html");
    assert_eq!(clean.status, 200);
    assert_eq!(clean.text(), "from the backend");
    assert_eq!(
        backend.requests().len(),
        1,
        "the faulted request never left"
    );

    let lines = log_lines(&mut worker, &path, 2);
    assert!(
        lines[0].contains(" 503 ") && lines[0].ends_with("fault=\"injected-503\""),
        "{}",
        lines[0]
    );
    assert!(!lines[1].contains("fault="), "{}", lines[1]);
}

#[test]
fn the_json_access_log_names_the_fault() {
    let backend = HttpBackend::ok("ok");
    let (mut worker, path, _directory) = logging_worker(AccessLogFormat::Json, "json");
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "gone", "cluster_id": "app", "type": "down"}),
    );
    let mut client = Client::connect(address);
    assert_eq!(get(&mut client, "/").status, 503);
    let lines = log_lines(&mut worker, &path, 1);
    let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON line");
    assert_eq!(line["fault"], "gone");
    assert_eq!(line["status"], 503);
    assert_eq!(line["answered_by_proxy"], true);
    assert_eq!(backend.requests().len(), 0);
}

#[test]
fn probability_one_half_faults_450_to_550_of_1000_requests() {
    let backend = HttpBackend::ok("ok");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "coin", "cluster_id": "app", "type": "http_error",
            "probability": 0.5}),
    );
    let mut client = Client::connect(address);
    let faulted = (0..1_000)
        .filter(|_| get(&mut client, "/").status == 503)
        .count();
    assert!((450..=550).contains(&faulted), "{faulted} of 1000");
    assert_eq!(backend.requests().len(), 1_000 - faulted);
}

/// The shortest time of a few requests on one kept connection.
fn shortest_request(client: &mut Client) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(get(client, "/").status, 200);
            started.elapsed()
        })
        .min()
        .expect("requests")
}

#[test]
fn http_delay_holds_the_request_or_the_response_without_touching_another_cluster() {
    let backend = HttpBackend::ok("ok");
    let mut worker = Worker::start(ServerConfig::default());
    let slow = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    let fast = worker.http_proxy("app.test", Cluster::new("other"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "wait", "cluster_id": "app", "type": "http_delay",
            "delay": 200, "direction": "upstream"}),
    );
    let mut client = Client::connect(slow);
    let delayed = shortest_request(&mut client);
    assert!(
        delayed >= Duration::from_millis(200) && delayed <= Duration::from_millis(230),
        "{delayed:?}"
    );
    let undelayed = shortest_request(&mut Client::connect(fast));
    assert!(undelayed < Duration::from_millis(50), "{undelayed:?}");

    worker.ok(Order::UpdateFault(AddFault {
        fault: serde_json::from_value(serde_json::json!({"name": "wait", "cluster_id": "app",
            "type": "http_delay", "delay": 200, "direction": "both"}))
        .expect("a valid fault"),
    }));
    let both = shortest_request(&mut client);
    assert!(
        both >= Duration::from_millis(400) && both <= Duration::from_millis(460),
        "{both:?}"
    );
}

#[test]
fn latency_on_an_http_cluster_delays_each_response_by_200_to_230_ms() {
    let backend = HttpBackend::ok("ok");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "lag", "cluster_id": "app", "type": "latency", "latency": 200}),
    );
    let delayed = shortest_request(&mut Client::connect(address));
    assert!(
        delayed >= Duration::from_millis(200) && delayed <= Duration::from_millis(230),
        "{delayed:?}"
    );
}

/// 100 KB/s on the response: a 100 KB body takes 0.95 to 1.1 s (the relative bounds of the
/// issue's 1 MB in 9.5 to 11 s), on a kept connection whose next request is not slowed by
/// what is left of the previous one's budget.
#[test]
fn bandwidth_of_100_kb_per_second_paces_a_response_body() {
    let body: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "thin", "cluster_id": "app", "type": "bandwidth", "rate": 100,
            "path_prefix": "/big"}),
    );
    let mut client = Client::connect(address);
    let started = Instant::now();
    let paced = get(&mut client, "/big");
    let elapsed = started.elapsed();
    assert_eq!(paced.body, expected);
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed <= Duration::from_millis(1_100),
        "{elapsed:?}"
    );
    let started = Instant::now();
    assert_eq!(get(&mut client, "/small").body, expected);
    assert!(started.elapsed() < Duration::from_millis(300));
}

/// A response that ends with its backend connection, paced by a fault: the backend has sent
/// it all and closed long before the client took its last bytes, which still all arrive.
#[test]
fn a_paced_close_delimited_response_arrives_whole() {
    let mut reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    reply.extend(std::iter::repeat_n(b'z', 50_000));
    let backend = HttpBackend::start(move |_| Reply::SendAndClose(reply.clone()));
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("app.test", Cluster::new("app"), &[backend.address]);
    add_fault(
        &mut worker,
        serde_json::json!({"name": "thin", "cluster_id": "app", "type": "bandwidth", "rate": 100}),
    );
    let mut stream = TcpStream::connect(address).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .expect("send the request");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("read until the proxy closes");
    let start = body_start(&received);
    assert_eq!(received.len() - start, 50_000);
    assert!(received[start..].iter().all(|&byte| byte == b'z'));
}

/// Where the body of a raw response starts.
fn body_start(response: &[u8]) -> usize {
    response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|end| end + 4)
        .expect("a complete head")
}
