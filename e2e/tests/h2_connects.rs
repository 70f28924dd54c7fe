//! The backend connections of one HTTP/2 client's streams open at the same time: each stream
//! connects, retries and is held in a slot of its own, whatever the others do.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sozu_command_lib::request::{Cluster, HttpFrontend, HttpListenerConfig, Order, PathRule};
use sozu_e2e::{
    Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    wait_until,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "localhost";

/// How long the first backend waits for its sibling's connection before it lets its own open.
const SIBLING_WAIT: Duration = Duration::from_secs(5);

/// A listener whose accept queue (of length 0: one connection fits) is full: a connect to it
/// stays pending, the kernel dropping its handshake, until the queue is drained. Returns the
/// connection that fills it.
fn full_listener() -> (TcpListener, TcpStream) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("create a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind an ephemeral port");
    socket.listen(0).expect("listen");
    let listener: TcpListener = socket.into();
    let filler =
        TcpStream::connect(listener.local_addr().expect("address")).expect("fill the queue");
    (listener, filler)
}

/// Routes the paths starting with `prefix` of [`HOST`] to `cluster_id`.
fn route_prefix(worker: &mut Worker, address: SocketAddr, prefix: &str, cluster_id: &str) {
    let mut frontend = HttpFrontend::new(Some(cluster_id.to_string()), address, HOST);
    frontend.path = PathRule::prefix(prefix);
    worker.ok(Order::AddHttpFrontend(frontend));
}

#[test]
fn streams_to_two_clusters_connect_at_the_same_time() {
    // The backend of `b` answers at once; the connection to the backend of `a` can only
    // open once `b`'s backend accepted its own (bounded wait). The client asks `a` first: if
    // the session connected its streams one after the other, `b`'s connect would wait for
    // `a`'s, which waits for `b`'s.
    let backend_b = Arc::new(HttpBackend::ok("from b"));
    let (listener, _filler) = full_listener();
    let sibling_first = Arc::new(AtomicBool::new(false));
    let backend_a = {
        let backend_b = backend_b.clone();
        let sibling_first = sibling_first.clone();
        HttpBackend::start_on(
            listener,
            move |listener| {
                let opened = wait_until(SIBLING_WAIT, || backend_b.connections() > 0);
                sibling_first.store(opened, Ordering::SeqCst);
                // Drains the connection that filled the queue: the proxy's opens next.
                let _ = listener.accept();
            },
            |_| Reply::Send(response(200, &[], b"from a")),
        )
    };
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    let address = worker.http_listener(listener);
    worker.cluster(Cluster::new("a"), &[backend_a.address]);
    worker.cluster(Cluster::new("b"), &[backend_b.address]);
    route_prefix(&mut worker, address, "/a", "a");
    route_prefix(&mut worker, address, "/b", "b");

    // nghttp sends its requests at once, as streams of one connection, in this order.
    let urls: Vec<String> = ["/a", "/b"]
        .iter()
        .map(|path| format!("http://{HOST}:{}{path}", address.port()))
        .collect();
    let output = Command::new("nghttp")
        .args(["--verbose", "--timeout", "20"])
        .args(&urls)
        .output()
        .expect("nghttp must be installed (.ci/install-test-tools installs nghttp2-client)");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "nghttp failed: {log}");
    assert_eq!(log.matches("] Connected").count(), 1, "{log}");
    assert!(
        sibling_first.load(Ordering::SeqCst),
        "the connection to b's backend did not open while a's was pending"
    );
    assert_eq!(log.matches(":status: 200").count(), 2, "{log}");
    assert!(log.contains("from a") && log.contains("from b"), "{log}");
    assert_eq!(backend_a.requests().len(), 1);
    assert_eq!(backend_b.requests().len(), 1);
}
