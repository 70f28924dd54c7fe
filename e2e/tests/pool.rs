//! Backend connections outlive client sessions: a kept-alive backend connection serves the
//! next session's request to the same backend, without a new connect.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use sozu_command_lib::{
    request::{
        Cluster, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType, Order,
        QueryMetrics,
    },
    response::{FilteredMetric, ResponseContent},
};
use sozu_e2e::{DEADLINE, Worker, backend::Backend, backend_order, free_address, wait_until};
use sozu_lib::server::ServerConfig;

fn setup(backend: &Backend) -> (Worker, SocketAddr) {
    setup_with(backend, HttpListenerConfig::new)
}

/// A worker with an HTTP listener made by `listener` (from its address), routing `pool.test`
/// to `backend`.
fn setup_with(
    backend: &Backend,
    listener: impl FnOnce(SocketAddr) -> HttpListenerConfig,
) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    worker.ok(Order::AddHttpListener(listener(address)));
    worker.ok(Order::AddCluster(Cluster::new("pooled")));
    worker.ok(Order::AddBackend(backend_order(
        "pooled",
        "pooled-0",
        backend.address,
    )));
    worker.ok(Order::AddHttpFrontend(HttpFrontend::new(
        Some("pooled".to_string()),
        address,
        "pool.test",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Http,
    }));
    (worker, address)
}

fn request_on_new_connection(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: pool.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn sessions_one_after_the_other_share_one_backend_connection() {
    let backend = Backend::http_ok("pooled answer");
    let (_worker, address) = setup(&backend);
    for _ in 0..5 {
        assert!(request_on_new_connection(address).ends_with("pooled answer"));
    }
    assert_eq!(backend.received().len(), 5);
    assert_eq!(backend.accepted(), 1, "the backend connection was reused");
}

#[test]
fn concurrent_sessions_use_their_own_backend_connections() {
    let backend = Backend::http_ok("pooled answer");
    let (_worker, address) = setup(&backend);
    let mut first = TcpStream::connect(address).expect("connect");
    let mut second = TcpStream::connect(address).expect("connect");
    for stream in [&mut first, &mut second] {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: pool.test\r\n\r\n")
            .expect("send");
    }
    for stream in [&mut first, &mut second] {
        let mut answer = [0u8; 512];
        let count = stream.read(&mut answer).expect("answer");
        assert!(String::from_utf8_lossy(&answer[..count]).ends_with("pooled answer"));
    }
    assert_eq!(backend.accepted(), 2);
    drop((first, second));
    // Both connections went back to the pool: the next sessions connect to nobody new.
    for _ in 0..4 {
        assert!(request_on_new_connection(address).ends_with("pooled answer"));
    }
    assert_eq!(backend.accepted(), 2);
}

/// The connections the worker counts for the backend: those sessions hold (pooled ones count
/// for no backend).
fn backend_connections(worker: &mut Worker) -> i64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    match metrics.clusters["pooled"].backends["pooled-0"].get("active_connections") {
        Some(FilteredMetric::Gauge(count)) => *count,
        other => panic!("active_connections: {other:?}"),
    }
}

/// Reads from `stream` until `count` answers ending in `body` arrived.
fn read_answers(stream: &mut TcpStream, body: &str, count: usize) -> String {
    let mut answers = Vec::new();
    let mut chunk = [0u8; 4096];
    while String::from_utf8_lossy(&answers).matches(body).count() < count {
        let read = stream.read(&mut chunk).expect("answer");
        assert!(read > 0, "the connection closed after {answers:?}");
        answers.extend_from_slice(&chunk[..read]);
    }
    String::from_utf8_lossy(&answers).into_owned()
}

/// Issue 17 (aim 5): a keep-alive client that idles for a back timeout holds no backend
/// connection: the connection goes to the pool (the backend counts it no more), and the
/// client's next requests, pipelined, are answered in order over the pooled connection.
#[test]
fn a_keep_alive_client_idle_for_a_back_timeout_gives_its_backend_connection_to_the_pool() {
    let backend = Backend::http_ok("pooled answer");
    let (mut worker, address) = setup_with(&backend, |address| {
        let mut listener = HttpListenerConfig::new(address);
        listener.back_timeout = Duration::from_secs(1);
        listener
    });
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let request = "GET /first HTTP/1.1\r\nHost: pool.test\r\n\r\n";
    client.write_all(request.as_bytes()).expect("send");
    let answer = read_answers(&mut client, "pooled answer", 1);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(backend_connections(&mut worker), 1);

    assert!(
        wait_until(DEADLINE, || backend_connections(&mut worker) == 0),
        "the idle session still holds its backend connection"
    );

    let pipelined = "GET /second HTTP/1.1\r\nHost: pool.test\r\n\r\nGET /third HTTP/1.1\r\nHost: pool.test\r\n\r\n";
    client.write_all(pipelined.as_bytes()).expect("send");
    let answers = read_answers(&mut client, "pooled answer", 2);
    assert_eq!(
        answers.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "{answers}"
    );
    let paths: Vec<String> = backend
        .received()
        .iter()
        .map(|head| {
            String::from_utf8_lossy(head)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "GET /first HTTP/1.1",
            "GET /second HTTP/1.1",
            "GET /third HTTP/1.1"
        ]
    );
    assert_eq!(backend.accepted(), 1, "the pooled connection served them");
}

/// Issue 17 (aim 5): clients that each send a request and then idle keep at most 64
/// connections of a backend between requests. The next ones give theirs to the pool as their
/// exchange ends, where the next client's request takes it: 80 such clients cost the backend
/// 65 connections, not one each, and every client is still served on its next request.
#[test]
fn idle_clients_keep_at_most_64_connections_of_a_backend() {
    let backend = Backend::http_ok("pooled answer");
    let (mut worker, address) = setup(&backend);
    let request = b"GET / HTTP/1.1\r\nHost: pool.test\r\n\r\n";
    let mut clients = Vec::new();
    for _ in 0..80 {
        let mut client = TcpStream::connect(address).expect("connect");
        client.set_read_timeout(Some(DEADLINE)).expect("timeout");
        client.write_all(request).expect("send");
        read_answers(&mut client, "pooled answer", 1);
        clients.push(client);
    }
    assert_eq!(backend_connections(&mut worker), 64);
    assert_eq!(backend.accepted(), 65);
    for client in &mut clients {
        client.write_all(request).expect("send");
        read_answers(client, "pooled answer", 1);
    }
    assert_eq!(backend.received().len(), 160);
    assert!(backend.accepted() <= 66, "{}", backend.accepted());
}
