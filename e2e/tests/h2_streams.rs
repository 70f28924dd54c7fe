//! HTTP/2 streams under load and failure, driven by a Python client on the `h2` package
//! (`h2_client.py`, installed by `.ci/install-test-tools`) and curl: many concurrent streams
//! with bodies of random sizes, a backend that fails mid-response, a client that resets a
//! stream mid-body, GOAWAY on a soft stop, and floods (Rapid Reset, CONTINUATION) that end
//! the attacker's connection while other clients are served.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use sozu_command_lib::{
    config::{AccessLogFormat, LogTarget},
    request::{Cluster, H2Config, HttpListenerConfig, Order, QueryMetrics},
    response::{FilteredMetric, ResponseContent, ResponseStatus},
};
use sozu_e2e::{
    DEADLINE, Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    run_python, temporary_directory, wait_until,
};
use sozu_lib::server::{AccessLogSettings, ServerConfig};

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
    run_python(CLIENT, arguments)
}

/// A worker with an `h2c` listener routing [`HOST`] to `backend`.
fn h2c_proxy(backend: SocketAddr) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend]);
    (worker, address)
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
    assert_eq!(worker.proxy_count("requests"), 40);
    assert!(wait_until(DEADLINE, || worker.proxy_count("h2.streams") == 40));
    assert_eq!(worker.proxy_count("h2.connections"), 1);
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

/// Runs an attack from the Python client (`arguments` after the port) on an `h2c` listener
/// with the `h2` settings given, while curl asks for pages through the same proxy: every
/// page is served, during the attack and after it. The worker, and the attacker's lines.
fn attack(h2: H2Config, arguments: &[&str]) -> (Worker, Vec<String>) {
    let backend = HttpBackend::start(|request| match request.target() {
        "/big" => Reply::Send(response(200, &[], &[b'x'; 200_000])),
        _ => Reply::Send(response(200, &[], b"served")),
    });
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    listener.h2 = h2;
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend.address]);
    let port = address.port().to_string();
    let mut arguments: Vec<&str> = arguments.to_vec();
    arguments.insert(1, &port);
    let attacker = client(&arguments)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    for _ in 0..5 {
        assert_eq!(curl_status(address, "/"), Ok("200".to_string()));
    }
    let output = attacker.wait_with_output().expect("the client ends");
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(curl_status(address, "/"), Ok("200".to_string()));
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (worker, lines)
}

/// An attack that ends with GOAWAY ENHANCE_YOUR_CALM, counted under `cause` (a metric of
/// `Cause::metric`), while others are served.
fn flood_ends_with_goaway(h2: H2Config, arguments: &[&str], cause: &str) {
    let (mut worker, lines) = attack(h2, arguments);
    assert_eq!(lines, [format!("goaway {ENHANCE_YOUR_CALM}")]);
    // The attacker's connection is counted under the limit it passed, once it is closed.
    assert!(wait_until(DEADLINE, || worker.proxy_count(cause) == 1));
    assert_eq!(proxy_counts(&mut worker, "h2.flood."), 1);
    assert!(worker.proxy_count("h2.goaways_sent") >= 1);
}

#[test]
fn a_rapid_reset_flood_ends_with_goaway_and_others_are_served() {
    flood_ends_with_goaway(
        H2Config::default(),
        &["rapid-reset", "2000"],
        "h2.flood.rst_stream_abusive",
    );
}

#[test]
fn a_continuation_flood_ends_with_goaway_and_others_are_served() {
    flood_ends_with_goaway(
        H2Config::default(),
        &["continuation", "1000"],
        "h2.flood.continuation",
    );
}

#[test]
fn a_ping_flood_ends_with_goaway_and_others_are_served() {
    let h2 = H2Config {
        max_ping_per_window: 20,
        ..H2Config::default()
    };
    flood_ends_with_goaway(h2, &["flood", "ping", "200"], "h2.flood.ping");
}

#[test]
fn a_settings_flood_ends_with_goaway_and_others_are_served() {
    let h2 = H2Config {
        max_settings_per_window: 10,
        ..H2Config::default()
    };
    flood_ends_with_goaway(h2, &["flood", "settings", "100"], "h2.flood.settings");
}

#[test]
fn an_empty_data_flood_ends_with_goaway_and_others_are_served() {
    let h2 = H2Config {
        max_empty_data_per_window: 10,
        ..H2Config::default()
    };
    flood_ends_with_goaway(h2, &["flood", "empty-data", "100"], "h2.flood.empty_data");
}

#[test]
fn a_window_update_flood_ends_with_goaway_and_others_are_served() {
    let h2 = H2Config {
        max_window_update_stream0_per_window: 10,
        ..H2Config::default()
    };
    flood_ends_with_goaway(
        h2,
        &["flood", "window-update", "100"],
        "h2.flood.window_update",
    );
}

#[test]
fn a_priority_flood_ends_with_goaway_and_others_are_served() {
    // PRIORITY frames for streams that are not open are glitches.
    let h2 = H2Config {
        max_glitch_count: 10,
        ..H2Config::default()
    };
    flood_ends_with_goaway(h2, &["flood", "priority", "100"], "h2.flood.glitches");
}

#[test]
fn made_you_reset_ends_with_goaway_and_others_are_served() {
    // CVE-2025-8671: the client makes the proxy reset the streams it opened; the glitch
    // limit is raised so that the limit of resets sent is the one passed.
    let h2 = H2Config {
        max_rst_stream_emitted_lifetime: 10,
        max_glitch_count: 1000,
        ..H2Config::default()
    };
    flood_ends_with_goaway(
        h2,
        &["flood", "made-you-reset", "50"],
        "h2.flood.rst_stream_emitted",
    );
}

#[test]
fn hpack_bombs_reset_their_stream_and_others_are_served() {
    // Too many fields, then a small block decoding into a large list: the stream is reset
    // (PROTOCOL_ERROR), the connection goes on and serves the next stream.
    for (kind, limits) in [
        (
            "count",
            H2Config {
                max_header_fields: 64,
                ..H2Config::default()
            },
        ),
        (
            "size",
            H2Config {
                max_header_list_size: 32_768,
                ..H2Config::default()
            },
        ),
    ] {
        let (mut worker, lines) = attack(limits, &["hpack", kind]);
        assert_eq!(lines, ["1 reset 1", "3 200"], "{kind}");
        assert!(wait_until(DEADLINE, || worker
            .proxy_count("h2.resets_sent")
            == 1));
    }
}

#[test]
fn an_hpack_table_size_past_the_limit_ends_with_goaway_and_others_are_served() {
    let (mut worker, lines) = attack(H2Config::default(), &["hpack", "table"]);
    // COMPRESSION_ERROR: the HPACK state cannot be kept.
    assert_eq!(lines, ["goaway 9"]);
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.compression")
        == 1));
}

#[test]
fn a_client_that_never_opens_its_window_is_closed_after_the_timeout() {
    let h2 = H2Config {
        stream_idle_timeout: Some(Duration::from_secs(1)),
        ..H2Config::default()
    };
    let (mut worker, lines) = attack(h2, &["zero-window"]);
    assert_eq!(
        lines,
        ["1 200".to_string(), format!("goaway {ENHANCE_YOUR_CALM}")]
    );
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.zero_window_stall")
        == 1));
    assert!(worker.proxy_count("h2.window_stalls") >= 1);
}

#[test]
fn streams_past_the_concurrency_limit_are_refused_and_others_are_served() {
    let h2 = H2Config {
        max_concurrent_streams: 2,
        ..H2Config::default()
    };
    let (mut worker, lines) = attack(h2, &["concurrent", "3"]);
    // REFUSED_STREAM (7) for the third: the client may retry it.
    assert_eq!(lines, ["1 200", "3 200", "5 reset 7"]);
    assert!(wait_until(DEADLINE, || worker
        .proxy_count("h2.streams_refused")
        == 1));
}

#[test]
fn access_log_lines_of_streams_say_http2() {
    let directory = temporary_directory("h2-access");
    let path = directory.path().join("access.log");
    let backend = HttpBackend::ok("logged");
    let mut worker = Worker::start(ServerConfig {
        access_logs: Some(AccessLogSettings {
            target: Some(LogTarget::File(path.clone())),
            format: AccessLogFormat::Json,
            colored: false,
        }),
        ..ServerConfig::default()
    });
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend.address]);
    assert_eq!(curl_status(address, "/two"), Ok("200".to_string()));
    // The same listener serves HTTP/1.1 to a client without the preface.
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "20", "--output", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/one", address.port()))
        .args(["--header", &format!("Host: {HOST}")])
        .output()
        .expect("curl must be installed (.ci/install-test-tools)");
    assert!(output.status.success());
    // A round trip on the command channel: the worker flushed its lines before answering.
    worker.ok(Order::Status);
    assert!(wait_until(DEADLINE, || std::fs::read_to_string(&path)
        .is_ok_and(|text| text.lines().count() == 2)));
    let text = std::fs::read_to_string(&path).expect("read the access log");
    let protocols: Vec<(String, String)> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .map(|line| (line["path"].to_string(), line["protocol"].to_string()))
        .collect();
    assert_eq!(
        protocols,
        [
            (r#""/two""#.to_string(), r#""HTTP/2""#.to_string()),
            (r#""/one""#.to_string(), r#""HTTP""#.to_string())
        ]
    );
}

#[test]
fn trailers_of_a_chunked_response_are_relayed_as_a_trailers_frame() {
    let backend = HttpBackend::start(|_| {
        Reply::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Grpc-Status\r\n\r\n\
              5\r\nhello\r\n0\r\nGrpc-Status: 0\r\nX-Checksum:  abc \r\n\r\n"
                .to_vec(),
        )
    });
    let (_worker, address) = h2c_proxy(backend.address);
    let lines = run_client(&["trailers", &address.port().to_string()]);
    assert_eq!(
        lines,
        [
            "status 200",
            "body hello",
            "trailer grpc-status 0",
            "trailer x-checksum abc",
            "ended"
        ]
    );
}

#[test]
fn an_idempotent_request_failing_on_a_reused_backend_connection_is_sent_again_once() {
    // The backend serves the first request, keeps its connection, and closes it without
    // answering the second one: the proxy had taken it from its pool.
    let served = std::sync::atomic::AtomicUsize::new(0);
    let backend = HttpBackend::start(move |_| {
        match served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            1 => Reply::Close,
            _ => Reply::Send(response(200, &[], b"again")),
        }
    });
    let (_worker, address) = h2c_proxy(backend.address);
    // Two streams, one after the other, on one connection.
    let port = address.port().to_string();
    let lines = run_client(&["sequential", &port, "/first", "/second"]);
    assert_eq!(lines, ["/first 200", "/second 200"]);
    let targets: Vec<String> = backend
        .requests()
        .iter()
        .map(|request| request.target().to_string())
        .collect();
    assert_eq!(targets, ["/first", "/second", "/second"]);
    // The second request went again on a connection of its own.
    assert_eq!(backend.connections(), 2);
}

/// Issue 16: a session forwards more than 256 streams at once, each on a backend connection
/// of its own (slots were numbered by a byte). The backend answers none before it holds
/// every request: all 300 are in flight together.
#[test]
fn three_hundred_streams_are_forwarded_at_once() {
    const STREAMS: usize = 300;
    let arrived = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&arrived);
    let backend = HttpBackend::start(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        let all_in = wait_until(DEADLINE, || seen.load(Ordering::SeqCst) >= STREAMS);
        let status = if all_in { 200 } else { 504 };
        Reply::Send(response(status, &[], b"together"))
    });
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    listener.h2 = H2Config {
        max_concurrent_streams: 400,
        ..H2Config::default()
    };
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend.address]);
    let lines = run_client(&["concurrent", &address.port().to_string(), "300"]);
    assert_eq!(lines.len(), STREAMS, "{lines:?}");
    for line in &lines {
        assert!(line.ends_with(" 200"), "{line}");
    }
    assert_eq!(arrived.load(Ordering::SeqCst), STREAMS);
    assert_eq!(backend.connections(), STREAMS);
}
