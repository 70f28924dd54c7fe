//! Holding: while a cluster with a `hold_timeout` has no available backend, HTTP requests and
//! TCP connections wait, are released in arrival order when a backend is added, get the 503
//! answer (or a close) when the timeout passes, and past `max_held` get it at once; a client
//! that leaves while held stops waiting. Events tell when a cluster starts holding, and how
//! many were released or timed out.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use sozu_command_lib::{
    request::{Cluster, Order, QueryMetrics},
    response::{Event, EventKind, FilteredMetric, ResponseContent},
};
use sozu_e2e::{
    DEADLINE, Worker, backend::Backend, backend_order, http_backend::HttpBackend, wait_until,
};
use sozu_lib::server::ServerConfig;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: held.test\r\nConnection: close\r\n\r\n";

/// A cluster named `held` holding for `hold_timeout`, at most `max_held` at once.
fn holding(hold_timeout: Duration, max_held: Option<u64>) -> Cluster {
    let mut cluster = Cluster::new("held");
    cluster.hold_timeout = Some(hold_timeout);
    cluster.max_held = max_held;
    cluster
}

/// Sends `REQUEST` on a thread and returns the whole answer when the proxy closes.
fn request(address: SocketAddr) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.write_all(REQUEST).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
}

/// A holding figure of the `held` cluster; 0 before the cluster held anything.
fn figure(worker: &mut Worker, name: &str) -> u64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    match metrics
        .clusters
        .get("held")
        .and_then(|cluster| cluster.cluster.get(name))
    {
        Some(FilteredMetric::Count(count)) => *count,
        Some(FilteredMetric::Gauge(gauge)) => u64::try_from(*gauge).unwrap_or(0),
        _ => 0,
    }
}

/// Waits until the cluster holds `depth` sessions.
fn wait_depth(worker: &mut Worker, depth: u64) {
    assert!(
        wait_until(DEADLINE, || figure(worker, "hold.depth") == depth),
        "the cluster never held {depth}"
    );
}

/// Adds a backend answering `served` to the `held` cluster.
fn add_backend(worker: &mut Worker) -> HttpBackend {
    let backend = HttpBackend::ok("served");
    worker.ok(Order::AddBackend(backend_order(
        "held",
        "held-0",
        backend.address,
    )));
    backend
}

/// The next event of `kind` for the `held` cluster: its message.
fn hold_event(worker: &mut Worker, kind: EventKind) -> String {
    let event = worker.wait_event(|event: &Event| {
        event.kind == kind && event.cluster_id.as_deref() == Some("held")
    });
    event.message
}

#[test]
fn http_request_held_is_served_when_a_backend_is_added() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("held.test", holding(DEADLINE, None), &[]);
    let client = request(address);
    wait_depth(&mut worker, 1);
    let started = hold_event(&mut worker, EventKind::HoldStarted);
    assert!(started.starts_with("no available backend"), "{started}");

    let _backend = add_backend(&mut worker);
    let answer = client.join().expect("client");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("served"), "{answer}");
    assert_eq!(
        hold_event(&mut worker, EventKind::HoldReleased),
        "1 released to a backend, 0 still waiting"
    );
    assert_eq!(figure(&mut worker, "hold.held"), 1);
    assert_eq!(figure(&mut worker, "hold.released"), 1);
    assert_eq!(figure(&mut worker, "hold.depth"), 0);
}

#[test]
fn past_max_held_a_request_gets_503_at_once() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("held.test", holding(DEADLINE, Some(1)), &[]);
    let first = request(address);
    wait_depth(&mut worker, 1);

    let second = request(address).join().expect("client");
    assert!(second.starts_with("HTTP/1.1 503 "), "{second}");
    assert_eq!(figure(&mut worker, "hold.refused"), 1);
    assert_eq!(figure(&mut worker, "hold.depth"), 1);

    let _backend = add_backend(&mut worker);
    let first = first.join().expect("client");
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
}

#[test]
fn hold_timeout_reached_answers_503_after_it() {
    let hold_timeout = Duration::from_secs(1);
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("held.test", holding(hold_timeout, None), &[]);
    let started = Instant::now();
    let answer = request(address).join().expect("client");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        started.elapsed() >= hold_timeout,
        "answered before the timeout"
    );
    assert_eq!(figure(&mut worker, "hold.timed_out"), 1);
    assert_eq!(figure(&mut worker, "hold.depth"), 0);
    assert_eq!(
        hold_event(&mut worker, EventKind::HoldTimedOut),
        "1 timed out, 0 still waiting"
    );
}

#[test]
fn a_held_client_that_leaves_stops_waiting() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("held.test", holding(DEADLINE, None), &[]);
    let staying = request(address);
    wait_depth(&mut worker, 1);
    let mut leaving = TcpStream::connect(address).expect("connect");
    leaving.write_all(REQUEST).expect("send");
    wait_depth(&mut worker, 2);

    drop(leaving);
    wait_depth(&mut worker, 1);
    assert_eq!(figure(&mut worker, "hold.abandoned"), 1);

    // The one that stayed keeps its place and is served.
    let _backend = add_backend(&mut worker);
    let answer = staying.join().expect("client");
    assert!(answer.ends_with("served"), "{answer}");
    assert_eq!(figure(&mut worker, "hold.released"), 1);
    assert_eq!(figure(&mut worker, "hold.depth"), 0);
}

#[test]
fn tcp_connection_held_then_released_with_its_first_bytes() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy(holding(DEADLINE, None), &[]);
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_read_timeout(Some(DEADLINE)).expect("timeout");
    client.write_all(b"first bytes").expect("send");
    wait_depth(&mut worker, 1);

    let backend = Backend::echo();
    worker.ok(Order::AddBackend(backend_order(
        "held",
        "held-0",
        backend.address,
    )));
    client.write_all(b", then more").expect("send");
    client.shutdown(Shutdown::Write).expect("shutdown");
    let mut echoed = Vec::new();
    let _ = client.read_to_end(&mut echoed);
    assert_eq!(echoed, b"first bytes, then more");
    assert_eq!(figure(&mut worker, "hold.released"), 1);
}
