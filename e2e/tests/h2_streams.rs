//! HTTP/2 streams under load and failure, driven by a Python client on the `h2` package
//! (`h2_client.py`, installed by `.ci/install-test-tools`) and curl: many concurrent streams
//! with bodies of random sizes, a backend that fails mid-response, a client that resets a
//! stream mid-body, GOAWAY on a soft stop, and floods (Rapid Reset, CONTINUATION) that end
//! the attacker's connection while other clients are served.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use sozu_command_lib::{
    request::{Cluster, HttpListenerConfig, Order, QueryMetrics},
    response::{FilteredMetric, ResponseContent, ResponseStatus},
};
use sozu_e2e::{
    DEADLINE, Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    wait_until,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "localhost";
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2_client.py");
/// ENHANCE_YOUR_CALM (RFC 9113 §7).
const ENHANCE_YOUR_CALM: &str = "11";

fn client(arguments: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg(CLIENT).args(arguments);
    command
}

/// Runs the Python client to its end; its output lines.
fn run_client(arguments: &[&str]) -> Vec<String> {
    let output: Output = client(arguments)
        .output()
        .expect("python3 must be installed (.ci/install-test-tools)");
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A worker with an `h2c` listener routing [`HOST`] to `backend`.
fn h2c_proxy(backend: SocketAddr) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend]);
    (worker, address)
}

/// A figure of the worker's proxy-wide metrics; 0 when absent.
fn proxy_count(worker: &mut Worker, name: &str) -> u64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    match metrics.proxy.get(name) {
        Some(FilteredMetric::Count(count)) => *count,
        _ => 0,
    }
}

/// The sum of the proxy-wide counts whose name starts with `prefix`.
fn proxy_counts(worker: &mut Worker, prefix: &str) -> u64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    metrics
        .proxy
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, figure)| match figure {
            FilteredMetric::Count(count) => *count,
            _ => 0,
        })
        .sum()
}

/// curl in HTTP/2 with prior knowledge: the status it got, or its error.
fn curl_status(address: SocketAddr, path: &str) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--http2-prior-knowledge", "--output", "/dev/null"])
        .args(["--write-out", "%{response_code}"])
        .arg(format!("http://127.0.0.1:{}{path}", address.port()))
        .args(["--header", &format!("Host: {HOST}")])
        .output()
        .expect("curl must be installed (.ci/install-test-tools)");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn concurrent_streams_with_random_bodies_come_back_byte_for_byte() {
    let backend = HttpBackend::start(|request| Reply::Send(response(200, &[], &request.body.data)));
    let (mut worker, address) = h2c_proxy(backend.address);
    let port = address.port().to_string();
    let lines = run_client(&["bodies", &port, "40", "7"]);
    assert_eq!(lines.len(), 40, "{lines:?}");
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, status, sent, received] = fields.as_slice() else {
            panic!("unexpected line {line}");
        };
        assert_eq!(*status, "200", "{line}");
        assert_eq!(sent, received, "{line}");
    }
    assert_eq!(backend.requests().len(), 40);
    // Each stream is a request in the metrics (and the access log); the connection's figures
    // are added when it closes.
    assert_eq!(proxy_count(&mut worker, "requests"), 40);
    assert!(wait_until(DEADLINE, || proxy_count(
        &mut worker,
        "h2.streams"
    ) == 40));
    assert_eq!(proxy_count(&mut worker, "h2.connections"), 1);
}

#[test]
fn a_backend_failure_is_a_502_before_the_response_and_a_reset_after() {
    let backend = HttpBackend::start(|request| match request.target() {
        "/close" => Reply::Close,
        "/cut" => {
            let mut head = response(200, &[], &[b'x'; 1000]);
            // Announce more than is sent, then close.
            let text = String::from_utf8_lossy(&head)
                .replace("Content-Length: 1000", "Content-Length: 100000");
            head = text.into_bytes();
            Reply::SendAndClose(head)
        }
        _ => Reply::Send(response(200, &[], b"fine")),
    });
    let (_worker, address) = h2c_proxy(backend.address);
    assert_eq!(curl_status(address, "/close"), Ok("502".to_string()));
    let cut = curl_status(address, "/cut").expect_err("a cut response is an error");
    assert!(
        cut.contains("INTERNAL_ERROR") || cut.contains("stream"),
        "{cut}"
    );
    assert_eq!(curl_status(address, "/next"), Ok("200".to_string()));
}

#[test]
fn a_client_holding_its_window_closed_does_not_make_the_backend_look_silent() {
    let backend = HttpBackend::start(|_| Reply::Send(response(200, &[], &[b'x'; 100_000])));
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    listener.back_timeout = Duration::from_secs(1);
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend.address]);
    let lines = run_client(&["stalled", &address.port().to_string(), "2.5"]);
    assert_eq!(lines, ["status 200", "body 100000"]);
}

#[test]
fn a_backend_connection_opened_for_a_stream_reset_meanwhile_is_closed() {
    let backend = HttpBackend::ok("unused");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let address = worker.http_listener(listener);
    let mut cluster = Cluster::new("held");
    cluster.hold_timeout = Some(DEADLINE);
    worker.ok(Order::AddCluster(cluster));
    worker.route(address, HOST, "held");
    let mut child = client(&["held", &address.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut next = move || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "sent");
    // The stream waits for a backend of its cluster; the client resets it meanwhile.
    assert!(wait_until(DEADLINE, || proxy_counts(
        &mut worker,
        "hold.held"
    ) == 1));
    writeln!(stdin, "reset").expect("the client reads");
    assert_eq!(next(), "reset");
    // The backend comes: the connection opened for the stream has no stream any more.
    worker.ok(Order::AddBackend(sozu_e2e::backend_order(
        "held",
        "held-0",
        backend.address,
    )));
    assert!(wait_until(DEADLINE, || backend.connections() == 1));
    assert!(wait_until(DEADLINE, || backend.open_connections() == 0));
    drop(stdin);
    let _ = child.wait();
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let backend = HttpBackend::start(|_| {
        let mut bytes =
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".to_vec();
        bytes.extend(response(200, &[], b"final"));
        Reply::Send(bytes)
    });
    let (_worker, address) = h2c_proxy(backend.address);
    let output = Command::new("curl")
        .args([
            "--silent",
            "--verbose",
            "--max-time",
            "20",
            "--http2-prior-knowledge",
        ])
        .arg(format!("http://127.0.0.1:{}/", address.port()))
        .args(["--header", &format!("Host: {HOST}")])
        .output()
        .expect("curl must be installed (.ci/install-test-tools)");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let early = log.find("< HTTP/2 103").expect("the interim head");
    let link = log
        .find("< link: </style.css>; rel=preload")
        .expect("its field");
    let last = log.find("< HTTP/2 200").expect("the final head");
    assert!(early < link && link < last, "{log}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "final");
}

#[test]
fn a_stream_reset_mid_body_leaves_the_connection_serving() {
    let backend = HttpBackend::ok("after");
    let (_worker, address) = h2c_proxy(backend.address);
    let lines = run_client(&["reset", &address.port().to_string()]);
    assert_eq!(lines, ["get 200"]);
    assert!(
        backend
            .requests()
            .iter()
            .any(|request| request.target() == "/after"),
        "{:?}",
        backend.requests()
    );
}

#[test]
fn a_soft_stop_sends_goaway_and_lets_the_stream_in_flight_finish() {
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let backend = HttpBackend::start(move |_| {
        // The response waits for the test's word, given once the stop began.
        let _ = released.lock().expect("lock").recv_timeout(DEADLINE);
        Reply::Send(response(200, &[], b"late"))
    });
    let (mut worker, address) = h2c_proxy(backend.address);
    let mut child: Child = client(&["slow", &address.port().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut next = move || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "sent");
    assert!(wait_until(DEADLINE, || backend.requests().len() == 1));
    let stop = worker.send(Order::SoftStop);
    // GOAWAY NO_ERROR naming stream 1 as the last one processed.
    assert_eq!(next(), "goaway 0 1");
    release.send(()).expect("the backend waits");
    assert_eq!(next(), "status 200");
    assert_eq!(next(), "ended");
    assert_eq!(worker.response_to(&stop).status, ResponseStatus::Ok);
    assert!(worker.join(DEADLINE), "the worker did not exit");
    let _ = child.wait();
}

/// Runs a flood from the Python client while curl asks for pages through the same proxy:
/// the flood ends with GOAWAY ENHANCE_YOUR_CALM, and every page is served.
fn flood_leaves_others_served(arguments: &[&str]) {
    let backend = HttpBackend::ok("served");
    let (mut worker, address) = h2c_proxy(backend.address);
    let port = address.port().to_string();
    let mut arguments: Vec<&str> = arguments.to_vec();
    arguments.insert(1, &port);
    let attack = client(&arguments)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    for _ in 0..5 {
        assert_eq!(curl_status(address, "/"), Ok("200".to_string()));
    }
    let output = attack.wait_with_output().expect("the client ends");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(printed.trim(), format!("goaway {ENHANCE_YOUR_CALM}"));
    assert_eq!(curl_status(address, "/"), Ok("200".to_string()));
    // The attacker's connection is counted under the limit it passed.
    assert!(wait_until(DEADLINE, || proxy_counts(
        &mut worker,
        "h2.flood."
    ) == 1));
    assert!(proxy_count(&mut worker, "h2.goaways_sent") >= 1);
}

#[test]
fn a_rapid_reset_flood_ends_with_goaway_and_others_are_served() {
    flood_leaves_others_served(&["rapid-reset", "2000"]);
}

#[test]
fn a_continuation_flood_ends_with_goaway_and_others_are_served() {
    flood_leaves_others_served(&["continuation", "1000"]);
}
