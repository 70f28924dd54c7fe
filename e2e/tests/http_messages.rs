//! Message semantics through a real HTTP worker: bodiless responses (HEAD, 204, 304),
//! interim responses, close-delimited bodies, HTTP/1.0 clients, `Connection: close`, half-closed
//! clients, responses cut by the backend, and which timeout applies to what.

use std::{
    io::Write,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use sozu_command_lib::request::{Cluster, HttpListenerConfig};
use sozu_e2e::{
    Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, get},
    wire::{Framing, WireError},
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";

fn proxy_with(listener: HttpListenerConfig, backend: &HttpBackend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("app"), &[backend.address]);
    (worker, address)
}

fn proxy(backend: &HttpBackend) -> (Worker, SocketAddr) {
    proxy_with(HttpListenerConfig::new(free_address()), backend)
}

#[test]
fn responses_without_a_body_keep_the_connection_in_step() {
    let backend = HttpBackend::start(|request| {
        Reply::Send(match request.target() {
            // A HEAD response announces the length of the GET body, and has none.
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            "/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            "/304" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            other => response(200, &[], other.as_bytes()),
        })
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let head = client.exchange("HEAD", b"HEAD /head HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert_eq!(client.get(HOST, "/after-head").text(), "/after-head");
    assert_eq!(client.get(HOST, "/204").status, 204);
    assert_eq!(client.get(HOST, "/after-204").text(), "/after-204");
    assert_eq!(client.get(HOST, "/304").status, 304);
    assert_eq!(client.get(HOST, "/after-304").text(), "/after-304");
    assert_eq!(backend.connections(), 1);
}

#[test]
fn interim_responses_are_relayed_before_the_final_one() {
    let backend = HttpBackend::start(|request| {
        let mut bytes = Vec::new();
        if request.header("expect") == Some("100-continue") {
            bytes.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n");
        }
        bytes.extend_from_slice(&response(201, &[], &request.body.data));
        Reply::Send(bytes)
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.send(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(client.response("POST").status, 100);
    let hints = client.response("POST");
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</style.css>; rel=preload"));
    let last = client.response("POST");
    assert_eq!(last.status, 201);
    assert_eq!(last.text(), "hello");
    assert_eq!(client.get(HOST, "/next").status, 201);
}

#[test]
fn a_close_delimited_response_is_relayed_whole_then_the_connection_closes() {
    let backend = HttpBackend::start(|_| {
        Reply::SendAndClose(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
        )
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.get(HOST, "/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "until the end");
    // The client cannot know the end otherwise: the proxy closes, and says so.
    assert!(response.closes(), "{:?}", response.head);
    assert_eq!(response.framing, Framing::UntilClose);
}

#[test]
fn http_1_0_clients_get_a_closed_connection_unless_they_keep_it_alive() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.exchange("GET", b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n");
    assert_eq!(response.text(), "ok");
    assert!(response.closes());
    client.assert_closed();

    let mut client = Client::connect(address);
    let keep = b"GET / HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..2 {
        let response = client.exchange("GET", keep);
        assert_eq!(response.text(), "ok");
        // An HTTP/1.0 client closes unless told otherwise (RFC 9112 §C.2.2).
        assert!(
            response.head.connection_has("keep-alive"),
            "{:?}",
            response.head
        );
    }
    // The proxy's own answers too.
    let unknown = b"GET / HTTP/1.0\r\nHost: nowhere.test\r\nConnection: keep-alive\r\n\r\n";
    let response = client.exchange("GET", unknown);
    assert_eq!(response.status, 404);
    assert!(
        response.head.connection_has("keep-alive"),
        "{:?}",
        response.head
    );
    assert_eq!(client.exchange("GET", keep).text(), "ok");
    // HTTP/1.0 without Host reaches no frontend.
    let mut client = Client::connect(address);
    assert_eq!(
        client.exchange("GET", b"GET / HTTP/1.0\r\n\r\n").status,
        404
    );
}

#[test]
fn connection_close_from_the_client_ends_the_connection_after_the_response() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.text(), "ok");
    assert!(response.closes());
    client.assert_closed();
    assert!(!backend.requests()[0].head.has("connection"));
}

#[test]
fn a_client_that_half_closes_still_gets_its_responses() {
    let backend =
        HttpBackend::start(|request| Reply::Send(response(200, &[], request.target().as_bytes())));
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let mut bytes = get(HOST, "/one");
    bytes.extend_from_slice(&get(HOST, "/two"));
    client.send(&bytes);
    client.shutdown_write();
    assert_eq!(client.response("GET").text(), "/one");
    assert_eq!(client.response("GET").text(), "/two");
    client.assert_closed();
}

#[test]
fn a_response_cut_by_the_backend_is_cut_for_the_client() {
    let backend = HttpBackend::start(|_| {
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part".to_vec())
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.send(&get(HOST, "/"));
    assert!(matches!(
        client.try_response("GET"),
        Err(WireError::Truncated)
    ));
}

#[test]
fn a_backend_stalling_inside_a_response_is_cut_at_the_back_timeout() {
    let backend = HttpBackend::start(|_| {
        // Part of the body, then nothing: the connection stays open for a next request.
        Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part".to_vec())
    });
    let mut listener = HttpListenerConfig::new(free_address());
    listener.back_timeout = Duration::from_secs(1);
    let (_worker, address) = proxy_with(listener, &backend);
    let mut client = Client::connect(address);
    client.send(&get(HOST, "/"));
    let started = Instant::now();
    assert!(matches!(
        client.try_response("GET"),
        Err(WireError::Truncated)
    ));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "cut after {elapsed:?}"
    );
}

#[test]
fn request_timeout_bounds_the_head_not_a_slow_body() {
    let backend = HttpBackend::start(|request| Reply::Send(response(200, &[], &request.body.data)));
    let mut listener = HttpListenerConfig::new(free_address());
    listener.request_timeout = Duration::from_secs(1);
    let (_worker, address) = proxy_with(listener, &backend);
    let mut client = Client::connect(address);
    let mut writer = client.stream().try_clone().expect("clone");
    let sender = thread::spawn(move || {
        writer
            .write_all(b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\n")
            .expect("send the head");
        // Two seconds of body, a byte every 200 ms: longer than the request timeout.
        for byte in b"slow body!" {
            thread::sleep(Duration::from_millis(200));
            writer.write_all(&[*byte]).expect("send the body");
        }
    });
    let response = client.response("POST");
    sender.join().expect("sender");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow body!");
}

#[test]
fn a_head_written_one_byte_at_a_time_is_parsed() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let request =
        b"GET /bytes HTTP/1.1\r\nHost: example.com\r\nX-Long: abcdefghijklmnopqrstuvwxyz\r\n\r\n";
    for byte in request {
        client.send(&[*byte]);
    }
    assert_eq!(client.response("GET").text(), "ok");
    assert_eq!(backend.requests()[0].target(), "/bytes");
}

#[test]
fn field_values_are_forwarded_byte_for_byte() {
    let backend =
        HttpBackend::start(|request| Reply::Send(response(200, &[], request.head.raw.as_slice())));
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let request = b"GET /%C3%A9t%C3%A9?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\nX-Obs-Text: caf\xe9 \"quoted\"\t tab\r\nX-Empty:\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n".to_vec();
    let response = client.exchange("GET", &request);
    assert_eq!(response.status, 200);
    let received = &backend.requests()[0];
    assert_eq!(received.target(), "/%C3%A9t%C3%A9?a=1&b=%20");
    let raw = &received.head.raw;
    for line in [
        &b"X-Obs-Text: caf\xe9 \"quoted\"\t tab\r\n"[..],
        b"X-Empty:\r\n",
        b"X-Many: 1\r\nX-Many: 2\r\n",
    ] {
        assert!(
            raw.windows(line.len()).any(|window| window == line),
            "{:?} not in {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(raw)
        );
    }
}
