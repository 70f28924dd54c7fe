//! Connections through a real HTTP worker: keep-alive, many clients, pipelining with per-request
//! routing, reuse of backend connections and retries, WebSocket upgrades and the PROXY
//! protocol on an HTTP listener.

use std::{net::SocketAddr, thread};

use sozu_command_lib::{
    request::{Cluster, ClusterId, HttpListenerConfig, LoadBalancingAlgorithm, LoadMetric, Order},
    response::{ResponseContent, ResponseStatus},
};
use sozu_e2e::{
    DEADLINE, Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, get, post},
    wait_until,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";

/// A backend answering each request with its name and target: `name /path`.
fn named(name: &'static str) -> HttpBackend {
    HttpBackend::start(move |request| {
        Reply::Send(response(
            200,
            &[],
            format!("{name} {}", request.target()).as_bytes(),
        ))
    })
}

#[test]
fn a_thousand_keep_alive_requests_on_one_connection() {
    let backend = named("one");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    for index in 0..1000 {
        let response = client.get(HOST, &format!("/{index}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("one /{index}"));
        assert!(!response.closes());
    }
    assert_eq!(backend.requests().len(), 1000);
    assert_eq!(backend.connections(), 1, "the backend connection is reused");
}

#[test]
fn two_hundred_concurrent_clients() {
    let backend = named("many");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let clients: Vec<_> = (0..200)
        .map(|client| {
            thread::spawn(move || {
                let mut connection = Client::connect(address);
                for request in 0..5 {
                    let path = format!("/{client}/{request}");
                    let response = connection.get(HOST, &path);
                    assert_eq!(response.status, 200);
                    assert_eq!(response.text(), format!("many {path}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    assert_eq!(backend.requests().len(), 1000);
}

#[test]
fn pipelined_requests_are_answered_in_order_each_routed_on_its_own() {
    let first = named("first");
    let second = named("second");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy("a.example.com", Cluster::new("a"), &[first.address]);
    worker.cluster(Cluster::new("b"), &[second.address]);
    worker.route(address, "b.example.com", "b");

    let hosts = ["a", "a", "b", "a", "b", "b", "nowhere", "a"];
    let mut bytes = Vec::new();
    for (index, host) in hosts.iter().enumerate() {
        bytes.extend_from_slice(&get(&format!("{host}.example.com"), &format!("/{index}")));
    }
    let mut client = Client::connect(address);
    client.send(&bytes);
    for (index, host) in hosts.iter().enumerate() {
        let response = client.response("GET");
        match *host {
            "a" => assert_eq!(response.text(), format!("first /{index}")),
            "b" => assert_eq!(response.text(), format!("second /{index}")),
            _ => assert_eq!(response.status, 404),
        }
    }
    let targets = |backend: &HttpBackend| -> Vec<String> {
        backend
            .requests()
            .iter()
            .map(|request| request.target().to_string())
            .collect()
    };
    assert_eq!(targets(&first), ["/0", "/1", "/3", "/7"]);
    assert_eq!(targets(&second), ["/2", "/4", "/5"]);
    for request in second.requests() {
        assert_eq!(request.header("host"), Some("b.example.com"));
    }
}

#[test]
fn five_hundred_pipelined_requests_larger_than_a_buffer_are_answered_in_order() {
    let backend = named("deep");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut bytes = Vec::new();
    for index in 0..500 {
        bytes.extend_from_slice(&get(HOST, &format!("/{index:0>40}")));
    }
    assert!(bytes.len() > 2 * ServerConfig::default().buffer_size);
    let mut client = Client::connect(address);
    let mut writer = client.stream().try_clone().expect("clone");
    let sender = thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes));
    for index in 0..500 {
        let response = client.response("GET");
        assert_eq!(response.status, 200, "request {index}");
        assert_eq!(response.text(), format!("deep /{index:0>40}"));
    }
    sender.join().expect("sender").expect("send the requests");
    assert_eq!(backend.requests().len(), 500);
}

#[test]
fn keep_alive_requests_share_one_backend_connection() {
    let backend = named("reused");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    for index in 0..5 {
        assert_eq!(client.get(HOST, &format!("/{index}")).status, 200);
    }
    assert_eq!(backend.connections(), 1);
    assert!(backend.requests().iter().all(|r| r.connection == 0));
}

#[test]
fn a_backend_closing_its_idle_connection_does_not_fail_the_next_request() {
    // The backend answers with keep-alive framing, then closes the connection at once, as a
    // server whose keep-alive timeout ran out would.
    let backend = HttpBackend::start(|request| {
        Reply::SendAndClose(response(200, &[], request.target().as_bytes()))
    });
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    for index in 0..10 {
        let path = format!("/{index}");
        assert_eq!(client.get(HOST, &path).text(), path);
        // Let the backend's close reach the proxy's socket before the next request.
        assert!(wait_until(DEADLINE, || backend.open_connections() == 0));
    }
    assert_eq!(backend.requests().len(), 10);
    assert_eq!(backend.connections(), 10);
}

/// A backend answering each request with its name, except `/slow`, which it never answers.
fn named_with_a_slow_path(name: &'static str) -> HttpBackend {
    HttpBackend::start(move |request| match request.target() {
        "/slow" => Reply::Hang,
        _ => Reply::Send(response(200, &[], name.as_bytes())),
    })
}

/// LEAST_LOADED comparing requests: while one backend holds a request it has not answered,
/// new requests go to the idle one (before requests were counted, every backend had 0 and
/// ties alternated between them).
#[test]
fn least_loaded_by_requests_avoids_the_backend_holding_a_slow_request() {
    let first = named_with_a_slow_path("first");
    let second = named_with_a_slow_path("second");
    let mut worker = Worker::start(ServerConfig::default());
    let mut cluster = Cluster::new("app");
    cluster.load_balancing = LoadBalancingAlgorithm::LeastLoaded;
    cluster.load_metric = Some(LoadMetric::Requests);
    let address = worker.http_proxy(HOST, cluster, &[first.address, second.address]);

    let mut slow_client = Client::connect(address);
    slow_client.send(&get(HOST, "/slow"));
    let holds_slow = |backend: &HttpBackend| {
        backend
            .requests()
            .iter()
            .any(|request| request.target() == "/slow")
    };
    assert!(wait_until(DEADLINE, || holds_slow(&first) || holds_slow(&second)));
    let idle = if holds_slow(&first) {
        "second"
    } else {
        "first"
    };

    for index in 0..4 {
        let mut client = Client::connect(address);
        assert_eq!(client.get(HOST, "/").text(), idle, "request {index}");
    }
}

/// A backend that answers the first request of each connection and closes the connection when
/// a second one arrives, as a server does when its keep-alive timeout ends at that moment.
fn one_request_per_connection() -> HttpBackend {
    HttpBackend::start(|request| match request.index {
        0 => Reply::Send(response(200, &[], request.target().as_bytes())),
        _ => Reply::Close,
    })
}

#[test]
fn an_idempotent_request_on_a_kept_connection_the_backend_closed_is_sent_again() {
    let backend = one_request_per_connection();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    for path in ["/1", "/2", "/3"] {
        let response = client.get(HOST, path);
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), path);
    }
    let sent: Vec<(usize, String)> = backend
        .requests()
        .iter()
        .map(|request| (request.connection, request.target().to_string()))
        .collect();
    let expected = [(0, "/1"), (0, "/2"), (1, "/2"), (1, "/3"), (2, "/3")];
    let expected: Vec<(usize, String)> = expected
        .iter()
        .map(|(connection, path)| (*connection, path.to_string()))
        .collect();
    assert_eq!(sent, expected);
}

#[test]
fn a_post_on_a_kept_connection_the_backend_closed_is_not_sent_again() {
    let backend = one_request_per_connection();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    assert_eq!(client.get(HOST, "/first").status, 200);
    let response = client.exchange("POST", &post(HOST, "/order", b"pay once"));
    assert_eq!(response.status, 502);
    assert!(response.closes());
    client.assert_closed();
    let posts = backend
        .requests()
        .iter()
        .filter(|request| request.method() == "POST")
        .count();
    assert_eq!(posts, 1, "a non-idempotent request was sent twice");
}

#[test]
fn a_failed_connect_is_retried_on_another_backend() {
    let live = named("live");
    let dead = free_address();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[dead, live.address]);
    // Each request on its own connection, so each picks a backend.
    for index in 0..4 {
        let mut client = Client::connect(address);
        let response = client.get(HOST, &format!("/{index}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("live /{index}"));
    }
    // The dead backend was tried, and its failures did not reach a client.
    let response = worker.order(Order::QueryClusterById(ClusterId {
        cluster_id: "app".to_string(),
    }));
    assert_eq!(response.status, ResponseStatus::Ok);
    let Some(ResponseContent::Clusters(clusters)) = response.content else {
        panic!("no cluster information: {response:?}");
    };
    let dead_backend = clusters[0]
        .backends
        .iter()
        .find(|b| b.backend.address == dead)
        .expect("the dead backend");
    let failures = dead_backend
        .runtime
        .as_ref()
        .map_or(0, |runtime| runtime.failures);
    assert!(failures > 0, "the dead backend was never tried");
}

#[test]
fn websocket_upgrade_then_bytes_both_ways() {
    let backend = HttpBackend::start(|request| {
        assert_eq!(request.header("upgrade"), Some("websocket"));
        Reply::Echo(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec(),
        )
    });
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("ws"), &[backend.address]);
    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert!(response.head.connection_has("upgrade"));
    let received = &backend.requests()[0];
    assert!(received.head.connection_has("upgrade"));
    assert_eq!(
        received.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // Frames are opaque to the proxy: any bytes, both ways, several rounds.
    for round in 0..20u8 {
        let frame: Vec<u8> = (0..=255u8).map(|b| b ^ round).collect();
        client.send(&frame);
        assert_eq!(client.read_raw(frame.len()), frame);
    }
    let big = vec![0x5a; 1 << 20];
    let mut writer = client.stream().try_clone().expect("clone");
    let sent = big.clone();
    let sender = thread::spawn(move || std::io::Write::write_all(&mut writer, &sent));
    assert_eq!(client.read_raw(big.len()), big);
    sender.join().expect("sender").expect("send a large frame");
    client.shutdown_write();
    client.assert_closed();
}

#[test]
fn bytes_sent_right_after_an_upgrade_request_reach_the_backend() {
    let backend = HttpBackend::start(|_| {
        Reply::Echo(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec(),
        )
    });
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("ws"), &[backend.address]);
    let mut client = Client::connect(address);
    client.send(b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly frame");
    assert_eq!(client.response("GET").status, 101);
    assert_eq!(client.read_raw(11), b"early frame");
}

#[test]
fn a_refused_upgrade_leaves_an_ordinary_keep_alive_connection() {
    let backend =
        HttpBackend::start(|request| Reply::Send(response(200, &[], request.target().as_bytes())));
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("ws"), &[backend.address]);
    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert!(!response.head.has("upgrade"));
    assert_eq!(client.get(HOST, "/next").text(), "/next");
    assert_eq!(backend.connections(), 1);
}

#[test]
fn proxy_protocol_address_is_the_forwarded_client() {
    let backend = named("behind");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = HttpListenerConfig::new(free_address());
    listener.expect_proxy = true;
    listener.send_x_real_ip = true;
    let address: SocketAddr =
        worker.http_proxy_with(listener, HOST, Cluster::new("app"), &[backend.address]);
    let mut client = Client::connect(address);
    client.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n");
    assert_eq!(client.get(HOST, "/").status, 200);
    assert_eq!(client.get(HOST, "/again").status, 200);
    for request in backend.requests() {
        assert_eq!(request.header("x-forwarded-for"), Some("192.0.2.7"));
        assert_eq!(request.header("x-real-ip"), Some("192.0.2.7"));
        let forwarded = request.header("forwarded").unwrap_or_default();
        assert!(forwarded.starts_with("for=192.0.2.7;"), "{forwarded}");
    }

    // Without the header, the listener refuses the connection.
    let mut client = Client::connect(address);
    client.send(&get(HOST, "/no-header"));
    client.assert_closed();
    assert_eq!(backend.requests().len(), 2);
}
