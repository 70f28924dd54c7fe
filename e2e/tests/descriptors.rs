//! A worker out of descriptors (issue 17, aim 5): at its open-files limit it closes idle
//! backend connections, least recently used first, to accept clients and connect their
//! requests; it refuses (a 503, accepts paused) only when none is left to close, and serves
//! the clients waiting in the backlog once descriptors are free again.
//!
//! The worker runs in this test's process, whose open-files limit the test lowers (with
//! `prlimit`) so that the worker has room for exactly the descriptors the test counts: the
//! backend runs in another process, and the clients' sockets are made before the limit
//! (connecting a socket takes no descriptor). This file holds one test: any other test of the
//! process would share the limit.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};
use sozu_command_lib::request::{Cluster, HttpListenerConfig};
use sozu_e2e::{
    PythonServer, Worker,
    descriptors::{limit_leaving, set_open_files_limit},
    free_address,
    http_client::Client,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "descriptors.test";
/// Clients served, each keeping its backend connection, before the worker runs out.
const KEPT: usize = 8;
/// Clients that come once the worker is out of descriptors.
const MORE: usize = 8;

/// An HTTP/1.1 keep-alive backend in its own process, answering each request with the number
/// of its connection (from 1, in the order they were accepted).
const BACKEND: &str = r#"
import http.server, itertools
numbers = itertools.count(1)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.number = next(numbers)
    def do_GET(self):
        body = f"connection {self.number}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *arguments):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A client connected over the socket made beforehand: no descriptor is taken.
fn connect(socket: Socket, address: SocketAddr) -> Client {
    socket
        .connect(&address.into())
        .expect("connect to the proxy");
    Client::over(TcpStream::from(socket))
}

#[test]
fn out_of_descriptors_the_worker_closes_idle_backend_connections_instead_of_refusing() {
    let backend = PythonServer::start(&["-c", BACKEND]);
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    // Kept backend connections stay with their clients for the whole test.
    listener.back_timeout = Duration::from_secs(120);
    listener.front_timeout = Duration::from_secs(120);
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("kept"), &[backend.address]);
    let mut sockets: Vec<Socket> = (0..KEPT + MORE + 3)
        .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("a client socket"))
        .collect();

    // Room for KEPT clients with their backend connections, and one client more.
    let limit = limit_leaving(2 * KEPT + 1);
    set_open_files_limit(limit);

    let mut clients: Vec<Client> = Vec::new();
    for index in 0..KEPT {
        let mut client = connect(sockets.remove(0), address);
        let response = client.get(HOST, &format!("/{index}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("connection {}", index + 1));
        clients.push(client);
    }
    assert_eq!(worker.proxy_count("descriptors.reclaimed"), 0);

    // The worker has one descriptor left: the client takes it, its request needs another.
    // The least recently used kept connection (the first client's) is closed for it.
    let mut client = connect(sockets.remove(0), address);
    let response = client.get(HOST, "/first-over");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), format!("connection {}", KEPT + 1));
    clients.push(client);
    assert_eq!(worker.proxy_count("descriptors.reclaimed"), 1);
    // The most recently used one was kept.
    let response = clients[KEPT - 1].get(HOST, "/again");
    assert_eq!(response.text(), format!("connection {KEPT}"));

    // Each client now needs two descriptors (accept, connect): two kept connections go.
    for index in 1..MORE {
        let mut client = connect(sockets.remove(0), address);
        let response = client.get(HOST, &format!("/more-{index}"));
        assert_eq!(response.status, 200, "{}", response.text());
        clients.push(client);
    }
    assert_eq!(
        worker.proxy_count("descriptors.reclaimed"),
        (1 + 2 * (MORE - 1)) as u64
    );
    // A client whose kept connection was closed is served over a new one.
    let response = clients[0].get(HOST, "/after");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(worker.proxy_count("descriptors.exhausted"), 0);

    // Every descriptor is a client's but one, a kept backend connection: it is closed for
    // the next client, whose request then finds nothing to close: a 503 at once (and the
    // connection closes after it). The accept after that client's found no descriptor
    // either (accept takes one before it looks at the backlog): nothing to close there too.
    let mut refused = connect(sockets.remove(0), address);
    let response = refused.get(HOST, "/nothing-left");
    assert_eq!(response.status, 503);
    assert_eq!(worker.proxy_count("descriptors.exhausted"), 2);

    // A client that sends nothing takes the descriptor back; the next one waits in the
    // backlog, the worker's accepts paused: it tries again every 100 ms, not at every turn
    // of its loop.
    let silent = connect(sockets.remove(0), address);
    let mut waiting = connect(sockets.remove(0), address);
    let exhausted = worker.proxy_count("descriptors.exhausted");
    let started = Instant::now();
    waiting
        .stream()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set a read timeout");
    // A host no frontend routes: the proxy answers by itself, with no backend connection.
    waiting.send(b"GET /waited HTTP/1.1\r\nHost: unrouted.test\r\n\r\n");
    assert!(
        waiting.try_response("GET").is_err(),
        "no descriptor to accept it"
    );
    let tries = worker.proxy_count("descriptors.exhausted") - exhausted;
    let most = started.elapsed().as_millis() / 100 + 2;
    assert!(
        tries <= most as u64,
        "{tries} accepts tried in {:?}",
        started.elapsed()
    );

    // A client leaves: the waiting one is accepted and answered.
    drop(clients.remove(0));
    waiting
        .stream()
        .set_read_timeout(Some(sozu_e2e::DEADLINE))
        .expect("set a read timeout");
    let response = waiting.response("GET");
    assert_eq!(response.status, 404, "{}", response.text());
    drop((clients, refused, silent, waiting, worker, backend));
}
