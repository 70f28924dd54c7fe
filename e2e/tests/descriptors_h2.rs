//! A worker out of descriptors closes idle HTTP/2 backend connections (issue 17, aim 5), as
//! it closes idle HTTP/1 ones (`descriptors.rs`): a shared connection to a backend of an
//! `http2` cluster that no stream handle uses is closed, least recently used first, to accept
//! a client or connect its request; one that carries a stream stays.
//!
//! As in `descriptors.rs`, the worker runs in this test's process, whose open-files limit the
//! test lowers (with `prlimit`), the h2c backends (`h2c_backend.py`) run in processes of their
//! own, and the clients' sockets are made before the limit. This file holds one test: any
//! other test of the process would share the limit.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use socket2::{Domain, Socket, Type};
use sozu_command_lib::request::Cluster;
use sozu_e2e::{
    DEADLINE, PythonServer, Worker,
    descriptors::{limit_leaving, set_open_files_limit},
    http_client::Client,
    wait_until,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "descriptors-h2.test";
/// Routed to a cluster of its own, whose connection carries a stream in flight.
const BUSY_HOST: &str = "busy.test";
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2c_backend.py");
/// Backends of the cluster: each gets its own HTTP/2 connection.
const BACKENDS: usize = 4;

#[test]
fn out_of_descriptors_the_worker_closes_idle_http2_backend_connections_not_busy_ones() {
    let backends: Vec<PythonServer> = (0..BACKENDS)
        .map(|_| PythonServer::start(&[BACKEND]))
        .collect();
    let busy_backend = PythonServer::start(&[BACKEND]);
    let mut worker = Worker::start(ServerConfig::default());
    let mut cluster = Cluster::new("h2");
    cluster.http2 = true;
    let addresses: Vec<SocketAddr> = backends.iter().map(|backend| backend.address).collect();
    let address = worker.http_proxy(HOST, cluster, &addresses);
    let mut busy_cluster = Cluster::new("busy");
    busy_cluster.http2 = true;
    worker.cluster(busy_cluster, &[busy_backend.address]);
    worker.route(address, BUSY_HOST, "busy");

    // One request to each backend, from clients that leave: each backend keeps an HTTP/2
    // connection that no handle uses (for the idle pool's time).
    for index in 0..BACKENDS {
        let mut client = Client::connect(address);
        let request = format!("GET /{index} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let response = client.exchange("GET", request.as_bytes());
        assert_eq!(response.status, 200, "{}", response.text());
        client.assert_closed();
    }

    // A request held by its backend (`/gather/2` waits for a second one, 10 s at most, then
    // gets a 504 without body): its connection carries a stream. Seen once the worker holds
    // the client's socket and the connection's.
    let mut busy = Client::connect(address);
    busy.send(format!("GET /gather/2 HTTP/1.1\r\nHost: {BUSY_HOST}\r\n\r\n").as_bytes());
    assert!(
        wait_until(DEADLINE, || connected_to(busy_backend.address)),
        "the busy request reached its backend"
    );
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a client socket");

    // No descriptor left: the client's accept, then its request's connect if its backend's
    // connection was the one closed, each close an idle HTTP/2 connection.
    set_open_files_limit(limit_leaving(0));
    socket
        .connect(&address.into())
        .expect("connect to the proxy");
    let mut client = Client::over(TcpStream::from(socket));
    let response = client.get(HOST, "/over");
    assert_eq!(response.status, 200, "{}", response.text());
    let reclaimed = worker.proxy_count("descriptors.reclaimed");
    assert!((1..=2).contains(&reclaimed), "{reclaimed} reclaimed");
    assert_eq!(worker.proxy_count("descriptors.exhausted"), 0);

    // The busy connection stayed: its stream gets the backend's own answer (a 504 without
    // body once the backend stops waiting), where a closed one would have got the proxy's
    // 502.
    busy.stream()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    let response = busy.response("GET");
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.text(), "");
    drop((busy, client, worker, backends, busy_backend));
}

/// Whether this process holds an established TCP connection to `backend` (only the worker
/// connects to it), from `/proc/self/net/tcp`: a count of open descriptors would also move
/// when an idle backend connection closes meanwhile.
fn connected_to(backend: SocketAddr) -> bool {
    let SocketAddr::V4(backend) = backend else {
        return false;
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(backend.ip().octets()),
        backend.port()
    );
    std::fs::read_to_string("/proc/self/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let mut fields = line.split_whitespace().skip(2);
            fields.next() == Some(remote.as_str()) && fields.next() == Some("01")
        })
    })
}
