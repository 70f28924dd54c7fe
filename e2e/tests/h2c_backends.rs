//! Clusters with `http2 = true`: the proxy speaks HTTP/2 in cleartext with prior knowledge to
//! their backends, whatever the client speaks. The backend is a real HTTP/2 server on the
//! Python `h2` package (`h2c_backend.py`, installed by `.ci/install-test-tools`), which speaks
//! nothing else: an HTTP/1.1 request would fail. The clients are curl (HTTP/1.1 and HTTP/2
//! with prior knowledge), the Python `h2` client of `h2_client.py`, and raw sockets.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sozu_command_lib::{
    config::{AccessLogFormat, LogTarget},
    request::{
        Cluster, HealthCheckConfig, HttpListenerConfig, Order, RemoveBackend, SetHealthCheck,
    },
    response::EventKind,
};
use sozu_e2e::{
    DEADLINE, PythonServer, Worker, free_address, http_client::Client, run_python,
    temporary_directory, wait_until,
};
use sozu_lib::server::{AccessLogSettings, ServerConfig};

const HOST: &str = "localhost";
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2c_backend.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2_client.py");
const GRPC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_echo.py");

/// The h2c backend, stopped when dropped.
fn h2c_backend() -> PythonServer {
    PythonServer::start(&[BACKEND])
}

/// A worker with an HTTP listener (serving HTTP/1.1, and HTTP/2 with prior knowledge)
/// routing [`HOST`] to an `http2` cluster whose backend is `backend`.
fn proxy(backend: SocketAddr) -> (Worker, SocketAddr) {
    proxy_with(ServerConfig::default(), backend)
}

fn proxy_with(config: ServerConfig, backend: SocketAddr) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(config);
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let mut cluster = Cluster::new("grpc");
    cluster.http2 = true;
    let address = worker.http_proxy_with(listener, HOST, cluster, &[backend]);
    (worker, address)
}

/// Runs curl against the proxy at `address`: its exit success, and what it printed.
fn curl(address: SocketAddr, arguments: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", address.port())])
        .args(arguments)
        .output()
        .expect("curl must be installed (.ci/install-test-tools)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn url(address: SocketAddr, path: &str) -> String {
    format!("http://{HOST}:{}{path}", address.port())
}

/// The Python HTTP/2 client's output lines.
fn run_client(arguments: &[&str]) -> Vec<String> {
    run_python(CLIENT, arguments)
}

#[test]
fn concurrent_h2_streams_reach_an_h2c_backend_byte_for_byte() {
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let port = address.port().to_string();
    // 40 POST streams at once on one client connection, bodies of random sizes up to 300 kB
    // (past every flow-control window), each echoed by the backend.
    let lines = run_client(&["bodies", &port, "40", "11"]);
    assert_eq!(lines.len(), 40, "{lines:?}");
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, status, sent, received] = fields.as_slice() else {
            panic!("unexpected line {line}");
        };
        assert_eq!(*status, "200", "{line}");
        assert_eq!(sent, received, "{line}");
    }
}

#[test]
fn http11_and_http2_clients_reach_an_h2c_backend() {
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let authority = format!("{HOST}:{}", address.port());
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (ok, body) = curl(address, &[version, &url(address, "/hello?x=1")]);
        assert!(ok, "{version}");
        let fields: Vec<&str> = body.split(' ').collect();
        assert_eq!(
            fields[..3],
            ["GET", "/hello?x=1", authority.as_str()],
            "{body}"
        );
    }
    // A body of a random size both ways, from an HTTP/1.1 client with a content-length and
    // with a chunked body.
    let body: Vec<u8> = (0..200_001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let directory = temporary_directory("h2c-body");
    let file = directory.path().join("body");
    std::fs::write(&file, &body).expect("write the body");
    let data = format!("@{}", file.display());
    for extra in [&[][..], &["--header", "Transfer-Encoding: chunked"][..]] {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "--http1.1"])
            .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", address.port())])
            .args(["--data-binary", &data])
            .args(extra)
            .arg(url(address, "/echo"))
            .output()
            .expect("curl must be installed");
        assert!(output.status.success(), "{extra:?}");
        assert!(output.stdout == body, "the echoed body differs ({extra:?})");
    }
}

#[test]
fn trailers_cross_the_h2c_backend_both_ways() {
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    // HTTP/1.1 client: the trailers of its chunked request reach the backend (which echoes
    // them as response trailers), and the response's trailers come back in the trailer
    // section of the chunked response.
    let mut client = Client::connect(address);
    let response = client.exchange(
        "POST",
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5\r\nhello\r\n0\r\nx-check: 42\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
    let transcript = String::from_utf8_lossy(&client.transcript()).into_owned();
    for trailer in [
        "x-body-length: 5\r\n",
        "grpc-status: 0\r\n",
        "x-echo-x-check: 42\r\n",
    ] {
        assert!(
            transcript.contains(trailer),
            "{trailer:?} in {transcript:?}"
        );
    }
    // HTTP/2 client: the response's trailers end its stream.
    let lines = run_client(&["trailers", &address.port().to_string()]);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("status 200"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"trailer grpc-status 0".to_string()),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("ended"), "{lines:?}");
}

#[test]
fn a_backend_reset_is_a_502_before_the_response_and_a_stream_reset_after() {
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let status = ["--output", "/dev/null", "--write-out", "%{response_code}"];
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let mut arguments = vec![version];
        arguments.extend(status);
        let reset = url(address, "/reset");
        arguments.push(&reset);
        assert_eq!(
            curl(address, &arguments),
            (true, "502".to_string()),
            "{version}"
        );
    }
    // After the response head, the client's stream is reset (HTTP/2) or its connection cut
    // (HTTP/1.1): curl fails either way, and the proxy goes on.
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let (ok, _) = curl(address, &[version, &url(address, "/reset-mid")]);
        assert!(!ok, "{version}: a truncated response must not look whole");
    }
    let (ok, body) = curl(
        address,
        &["--http2-prior-knowledge", &url(address, "/hello")],
    );
    assert!(ok && body.starts_with("GET /hello"), "{body}");
}

/// The number of the backend connection that served a GET of `path`.
fn backend_connection(address: SocketAddr, path: &str) -> String {
    let (ok, body) = curl(address, &["--http2-prior-knowledge", &url(address, path)]);
    assert!(ok, "{path}");
    body.rsplit(' ').next().unwrap_or_default().to_string()
}

#[test]
fn a_backend_goaway_finishes_its_stream_and_the_next_request_opens_a_new_connection() {
    let backend = h2c_backend();
    let (mut worker, address) = proxy(backend.address);
    // A client's backend connection goes back to the pool when the client leaves, which may
    // come after the next client's request: which connection serves each request varies.
    let before = backend_connection(address, "/a");
    assert!(before.parse::<u32>().is_ok(), "{before}");
    // The backend answers, then sends GOAWAY naming that stream and closes.
    let (ok, body) = curl(
        address,
        &["--http2-prior-knowledge", &url(address, "/goaway")],
    );
    assert!(ok);
    let gone = body.strip_prefix("bye ").expect("the GOAWAY answer");
    // That connection is never used again.
    for path in ["/b", "/c"] {
        let next = backend_connection(address, path);
        assert!(next.parse::<u32>().is_ok(), "{next}");
        assert_ne!(
            next, gone,
            "{path} went over the connection that sent GOAWAY"
        );
    }
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.goaways_received")
        == 1));
}

#[test]
fn a_hostile_backend_fails_its_own_requests_only() {
    let backend = h2c_backend();
    let (mut worker, address) = proxy(backend.address);
    let port = address.port().to_string();
    let status = |path: &str| {
        let target = url(address, path);
        curl(
            address,
            &[
                "--http2-prior-knowledge",
                "--output",
                "/dev/null",
                "--write-out",
                "%{response_code}",
                &target,
            ],
        )
    };
    // A PING flood and a header list far over the limit: the proxy ends that backend
    // connection (GOAWAY ENHANCE_YOUR_CALM) and answers 502.
    assert_eq!(status("/ping-flood"), (true, "502".to_string()));
    assert_eq!(status("/big-header"), (true, "502".to_string()));
    // Meanwhile and after, other clients are served by the same backend.
    let lines = run_client(&["bodies", &port, "10", "5"]);
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|line| line.split(' ').nth(1) == Some("200")),
        "{lines:?}"
    );
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.ended")
        >= 2));
}

/// The first stream waits for the backend connection's connect: its access log line gives
/// that connect's time, per stream (issue 16); the second goes on the connection already
/// open, and took no connect.
#[test]
fn access_logs_and_metrics_name_the_backend_protocol_and_each_stream_s_connect() {
    let directory = temporary_directory("h2c-access");
    let path = directory.path().join("access.log");
    let backend = h2c_backend();
    let config = ServerConfig {
        access_logs: Some(AccessLogSettings {
            target: Some(LogTarget::File(path.clone())),
            format: AccessLogFormat::Json,
            colored: false,
        }),
        ..ServerConfig::default()
    };
    let (mut worker, address) = proxy_with(config, backend.address);
    for version in ["--http2-prior-knowledge", "--http1.1"] {
        let (ok, _) = curl(address, &[version, &url(address, "/logged")]);
        assert!(ok, "{version}");
    }
    // A round trip on the command channel: the worker flushed its lines before answering.
    worker.ok(Order::Status);
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(&path)
        .is_ok_and(|text| text.lines().count() == 2)));
    let text = std::fs::read_to_string(&path).expect("read the access log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let protocols: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            (
                line["protocol"].to_string(),
                line["backend_protocol"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        protocols,
        [
            (r#""HTTP/2""#.to_string(), r#""HTTP/2""#.to_string()),
            (r#""HTTP""#.to_string(), r#""HTTP/2""#.to_string())
        ]
    );
    assert!(lines[0]["connect_us"].is_u64(), "{}", lines[0]);
    assert!(lines[1]["connect_us"].is_null(), "{}", lines[1]);
    // The backend connection (kept in the pool, shared by both clients) adds its figures
    // once it closes: when the backend goes away.
    drop(backend);
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.streams")
        == 2));
    assert_eq!(worker.proxy_count("h2.backend.connections"), 1);
}

#[test]
fn a_grpc_round_trip_crosses_the_proxy() {
    let service = PythonServer::start(&[GRPC, "server"]);
    let (_worker, address) = proxy(service.address);
    let lines = run_python(GRPC, &["client", &address.port().to_string(), "12"]);
    assert_eq!(lines.len(), 13, "{lines:?}");
    for line in &lines[..12] {
        let fields: Vec<&str> = line.split(' ').collect();
        let ["echo", size, "same", length] = fields.as_slice() else {
            panic!("unexpected line {line}");
        };
        // The service's trailing metadata came back in the response's trailers.
        assert_eq!(size, length, "{line}");
    }
    // A gRPC error is a status in the trailers of a 200 response.
    assert_eq!(lines[12], "fail NOT_FOUND missing");
}

/// `gather` lines of the Python client (`STREAM STATUS SENT RECEIVED CONNECTION`): each
/// stream answered 200 with its body byte for byte. Returns the backend connections used.
fn gathered(lines: &[String]) -> std::collections::BTreeSet<String> {
    let mut connections = std::collections::BTreeSet::new();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, status, sent, received, connection] = fields.as_slice() else {
            panic!("unexpected line {line}");
        };
        assert_eq!(*status, "200", "{line}");
        assert_eq!(sent, received, "{line}");
        connections.insert(connection.to_string());
    }
    connections
}

/// What the backend's `/stats` says: connections accepted, and the most streams in flight
/// at once on one of them.
fn backend_stats(address: SocketAddr) -> (u32, u32) {
    let (ok, body) = curl(
        address,
        &["--http2-prior-knowledge", &url(address, "/stats")],
    );
    assert!(ok, "{body}");
    let numbers: Vec<u32> = body
        .split(' ')
        .map(|field| field.parse().expect("a number"))
        .collect();
    let [connections, most] = numbers[..] else {
        panic!("unexpected stats {body}");
    };
    (connections, most)
}

/// A backend allowing 20 streams per connection, behind a proxy that already spoke to it
/// once (so it knows the backend's limit).
fn backend_of_20_streams() -> (PythonServer, Worker, SocketAddr) {
    let backend = PythonServer::start(&[BACKEND, "20"]);
    let (worker, address) = proxy(backend.address);
    assert_eq!(backend_connection(address, "/warm"), "1");
    (backend, worker, address)
}

#[test]
fn fifty_streams_of_one_client_share_backend_connections_within_their_limit() {
    let (backend, mut worker, address) = backend_of_20_streams();
    let port = address.port().to_string();
    // The backend answers none until all 50 are in flight at once: 50 streams need 3
    // connections of 20, and no more are opened.
    let lines = run_client(&["gather", &port, "50", "3", "50"]);
    assert_eq!(lines.len(), 50, "{lines:?}");
    let connections = gathered(&lines);
    assert!(connections.len() <= 3, "{connections:?}");
    let (opened, most) = backend_stats(address);
    assert!(opened <= 3, "{opened} backend connections");
    assert!((2..=20).contains(&most), "{most} streams at once on one");
    // The connections' figures are added when they close: when the backend goes away.
    drop(backend);
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.connections")
        == u64::from(opened)));
    // Every stream but the first of each connection went beside others.
    assert_eq!(worker.proxy_count("h2.backend.streams_shared"), 47);
}

#[test]
fn fifty_streams_of_five_clients_share_backend_connections_within_their_limit() {
    let (_backend, _worker, address) = backend_of_20_streams();
    let port = address.port().to_string();
    let clients: Vec<_> = (0..5)
        .map(|seed| {
            let port = port.clone();
            std::thread::spawn(move || {
                run_client(&["gather", &port, "10", &seed.to_string(), "50"])
            })
        })
        .collect();
    let mut connections = std::collections::BTreeSet::new();
    for client in clients {
        let lines = client.join().expect("the client ran");
        assert_eq!(lines.len(), 10, "{lines:?}");
        connections.extend(gathered(&lines));
    }
    assert!(connections.len() <= 3, "{connections:?}");
    let (opened, most) = backend_stats(address);
    assert!(opened <= 3, "{opened} backend connections");
    assert!(most <= 20, "{most} streams at once on one");
}

/// The Python client of `mode` with stdin piped, its first line read.
fn held_client(arguments: &[&str]) -> (Child, String) {
    let mut child = Command::new("python3")
        .arg(CLIENT)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (.ci/install-test-tools)");
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line).expect("a first line");
    (child, line.trim().to_string())
}

/// Lets a held client go on, and returns the rest of what it printed.
fn release(mut child: Child) -> String {
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"go\n")
        .expect("the client reads its stdin");
    let output = child.wait_with_output().expect("the client ends");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn a_slow_reading_client_stream_does_not_stall_the_others_on_its_backend_connection() {
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let port = address.port().to_string();
    assert_eq!(backend_connection(address, "/warm"), "1");
    // A client reads the head of a 4 MB response and never opens its window: far more than
    // the proxy's buffers and the stream's window toward the backend.
    let (stuck, first) = held_client(&["stuck", &port, "/big/4000000"]);
    assert_eq!(first, "status 200");
    // Meanwhile, streams of another client go over the same backend connection and finish.
    let lines = run_client(&["gather", &port, "10", "8", "1"]);
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert_eq!(gathered(&lines).into_iter().collect::<Vec<_>>(), ["1"]);
    assert_eq!(
        backend_stats(address).0,
        1,
        "one backend connection for all"
    );
    assert_eq!(release(stuck), "body 4000000");
}

#[test]
fn a_backend_goaway_mid_flight_fails_the_unprocessed_streams_over_to_a_new_connection() {
    let backend = h2c_backend();
    let (mut worker, address) = proxy(backend.address);
    let port = address.port().to_string();
    // Ten GETs at once, on the first backend connection; the backend answers the first
    // five, and its GOAWAY says it did not process the others: they go again on a new
    // connection.
    let paths: Vec<String> = (0..10).map(|index| format!("/drain/10/{index}")).collect();
    let mut arguments = vec!["timed", port.as_str()];
    arguments.extend(paths.iter().map(String::as_str));
    let lines = run_client(&arguments);
    assert_eq!(lines.len(), 10, "{lines:?}");
    let mut by_connection = std::collections::BTreeMap::<String, usize>::new();
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, status, _, "drained", connection] = fields.as_slice() else {
            panic!("unexpected line {line}");
        };
        assert_eq!(*status, "200", "{line}");
        *by_connection.entry(connection.to_string()).or_default() += 1;
    }
    assert_eq!(
        by_connection,
        [("1".to_string(), 5), ("2".to_string(), 5)].into()
    );
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.streams_refused")
        == 5));
}

#[test]
fn a_backend_killed_mid_flight_fails_its_streams_502_before_the_head_and_cut_after() {
    let mut backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let port = address.port().to_string();
    assert_eq!(backend_connection(address, "/warm"), "1");
    let (stuck, first) = held_client(&["stuck", &port, "/big/4000000"]);
    assert_eq!(first, "status 200");
    // Five POSTs the backend holds (it waits for 100 at once).
    let gathering = {
        let port = port.clone();
        std::thread::spawn(move || run_client(&["gather", &port, "5", "9", "100"]))
    };
    // In flight at once on the backend: the big response, the five, and the `/stats` asking.
    assert!(wait_until(DEADLINE, || backend_stats(address).1 >= 7));
    backend.stop();
    // Each gets a 502 (and, its upload cut short, may be reset once answered).
    let lines = gathering.join().expect("the client ran");
    let answered: Vec<&String> = lines.iter().filter(|l| !l.ends_with("reset")).collect();
    assert_eq!(answered.len(), 5, "{lines:?}");
    assert!(
        answered
            .iter()
            .all(|line| line.split(' ').nth(1) == Some("502")),
        "{lines:?}"
    );
    assert_eq!(release(stuck), "reset");
}

#[test]
fn an_idle_backend_connection_closes_when_its_backend_is_removed() {
    let backend = h2c_backend();
    let (mut worker, address) = proxy(backend.address);
    assert_eq!(backend_connection(address, "/a"), "1");
    // The connection stays for the next requests of any client.
    assert_eq!(backend_connection(address, "/b"), "1");
    assert_eq!(worker.proxy_count("h2.backend.connections"), 0);
    worker.ok(Order::RemoveBackend(RemoveBackend {
        cluster_id: "grpc".to_string(),
        backend_id: "grpc-0".to_string(),
        address: backend.address,
        drain_timeout: None,
    }));
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.backend.connections")
        == 1));
    assert_eq!(worker.proxy_count("h2.backend.streams"), 2);
}

/// Health checks of an `http2 = true` cluster speak HTTP/2 with prior knowledge (issue 16):
/// the h2c-only backend answers them (an HTTP/1.1 probe fails its preface) and stays in the
/// rotation; once its health path answers 503 it goes out, and comes back when it recovers.
#[test]
fn health_checks_of_an_h2c_backend_speak_http2() {
    let directory = temporary_directory("h2c-health");
    let status = directory.path().join("status");
    let checks = directory.path().join("status.log");
    std::fs::write(&status, "200").expect("write the health status");
    let status_argument = status.to_string_lossy().into_owned();
    let backend = PythonServer::start(&[BACKEND, "100", &status_argument]);
    let (mut worker, address) = proxy(backend.address);
    worker.ok(Order::SetHealthCheck(SetHealthCheck {
        cluster_id: "grpc".to_string(),
        health_check: HealthCheckConfig {
            uri: "/health".to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            expected_status: 0,
        },
    }));
    let checked = || {
        std::fs::read_to_string(&checks)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        wait_until(DEADLINE, || checked() >= 2),
        "the backend answered no HTTP/2 health check"
    );
    // Every event that came is read with the answer to this order.
    worker.proxy_count("h2.backend.streams");
    assert!(
        !worker
            .events
            .iter()
            .any(|event| event.kind == EventKind::HealthCheckUnhealthy),
        "{:?}",
        worker.events
    );
    let (ok, body) = curl(address, &["--http1.1", &url(address, "/up")]);
    assert!(ok && body.starts_with("GET /up "), "{body}");

    std::fs::write(&status, "503").expect("write the health status");
    let event = worker.wait_event(|event| event.kind == EventKind::HealthCheckUnhealthy);
    assert_eq!(event.backend_id.as_deref(), Some("grpc-0"));
    let (_, body) = curl(
        address,
        &[
            "--http1.1",
            "--write-out",
            "%{http_code}",
            &url(address, "/down"),
        ],
    );
    assert!(body.ends_with("503"), "{body}");

    std::fs::write(&status, "200").expect("write the health status");
    let event = worker.wait_event(|event| event.kind == EventKind::HealthCheckHealthy);
    assert_eq!(event.backend_id.as_deref(), Some("grpc-0"));
    let (ok, body) = curl(address, &["--http1.1", &url(address, "/again")]);
    assert!(ok && body.starts_with("GET /again "), "{body}");
    drop(backend);
}

#[test]
fn fields_marked_never_indexed_stay_never_indexed_through_the_proxy() {
    // RFC 7541 §6.2.3: an intermediary re-encodes a field its sender marked never indexed
    // with the same representation, both ways. The client marks `x-secret`, the backend
    // `x-token`; `x-plain` is sent without that mark both ways.
    let backend = h2c_backend();
    let (_worker, address) = proxy(backend.address);
    let lines = run_client(&["sensitive", &address.port().to_string()]);
    assert_eq!(lines, ["backend x-secret", "client x-token"]);
}
