//! Backends that misbehave, through a real HTTP worker (issue 10): each case has a backend
//! written for it, and checks every byte each client receives. A response never leaks into the
//! exchange after it (bodies on HEAD, 204 and 304, bytes past a Content-Length, bytes sent
//! between requests); CONNECT never reaches a backend; only a WebSocket upgrade the client
//! asked for turns a connection into a pipe; HTTP/1.0 clients get neither interim responses
//! nor chunked bodies; HTTP/1.2 is served as HTTP/1.1; a response head cut by the backend is a
//! 502; a TLS client that sent no SNI cannot reach a name under strict SNI binding; a PROXY header
//! sent to a TCP backend never costs a byte of the client's stream (`proxy_protocol`).

#[path = "hostile_backend/proxy_protocol.rs"]
mod proxy_protocol;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sozu_command_lib::request::{
    Cluster, HttpFrontend, HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType,
    Order, TlsListenerConfig,
};
use sozu_e2e::{
    DEADLINE, Worker, backend_order, free_address,
    http_client::Client,
    scripted_backend::{Connection, ScriptedBackend},
    tls::{certificate, tls_connect},
    wait_until,
    wire::Head,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";

/// A listener whose own answers have short bodies, so a test can spell them out.
fn listener() -> HttpListenerConfig {
    let mut listener = HttpListenerConfig::new(free_address());
    listener.answers = BTreeMap::from([
        (404, "no route".to_string()),
        (405, "refused".to_string()),
        (421, "misdirected".to_string()),
        (502, "bad gateway".to_string()),
    ]);
    listener
}

fn proxy(backend: &ScriptedBackend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy_with(listener(), HOST, Cluster::new("app"), &[backend.address]);
    (worker, address)
}

/// A backend answering each request with `reply(head)`, in one write.
fn answering(reply: impl Fn(&Head) -> Vec<u8> + Send + Sync + 'static) -> ScriptedBackend {
    ScriptedBackend::start(move |connection: &mut Connection| {
        while let Some(head) = connection.request() {
            connection.send(&reply(&head));
        }
    })
}

fn target(head: &Head) -> &str {
    head.start_line.split(' ').nth(1).unwrap_or_default()
}

/// `200 OK` with `body` and its Content-Length.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the client receives for [`ok`]: the same, with the request id, and a
/// `Connection: close` when the connection ends after it.
fn relayed_ok(body: &str, close: bool) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nSozu-Id: -\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

/// What the client receives when the proxy answers `status_line` itself with the body of
/// [`listener`], then closes; `fields` come where the built-in page puts its own.
fn proxy_answer(status_line: &str, fields: &str, body: &str) -> String {
    format!(
        "{status_line}\r\nContent-Type: text/html; charset=utf-8\r\n{fields}Cache-Control: no-cache\r\nSozu-Id: -\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Everything `client` received, with each request id (24 hex digits) replaced by `-`.
fn transcript(client: &Client) -> String {
    let text = String::from_utf8_lossy(&client.transcript()).into_owned();
    let mut masked = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("Sozu-Id: ") {
        let (before, after) = rest.split_at(at + "Sozu-Id: ".len());
        masked.push_str(before);
        let id = after.get(..24).unwrap_or_default();
        assert!(
            id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a request id: {after:?}"
        );
        masked.push('-');
        rest = &after[24..];
    }
    masked.push_str(rest);
    masked
}

/// A response that forges a whole second response after the first: if the proxy ever took it
/// for the answer to the next request, that client would read `smuggled`.
const FORGED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

fn get(path: &str, close: bool) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

#[test]
fn a_body_sent_with_a_head_response_never_reaches_the_next_request() {
    let backend = answering(|head| {
        if head.start_line.starts_with("HEAD ") {
            // The length a GET would get, then a body no HEAD response may have.
            format!("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{FORGED}").into_bytes()
        } else {
            ok(target(head))
        }
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange("HEAD", b"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n");
    client.exchange("GET", &get("/second", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nSozu-Id: -\r\n\r\n{}",
            relayed_ok("/second", true)
        )
    );
    // Another client gets its own answer too: the tainted connection was not pooled.
    let mut other = Client::connect(address);
    other.exchange("GET", &get("/other", true));
    other.assert_closed();
    assert_eq!(transcript(&other), relayed_ok("/other", true));
    let first_connection: Vec<String> = backend
        .requests()
        .iter()
        .filter(|(connection, _)| *connection == 0)
        .map(|(_, head)| head.start_line.clone())
        .collect();
    assert_eq!(first_connection, ["HEAD /h HTTP/1.1"]);
}

#[test]
fn bytes_past_the_content_length_never_reach_the_next_request() {
    let backend = answering(|head| {
        let mut bytes = ok(target(head));
        bytes.extend_from_slice(FORGED.as_bytes());
        bytes
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange("GET", &get("/first", false));
    client.exchange("GET", &get("/second", false));
    client.exchange("GET", &get("/third", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        [
            relayed_ok("/first", false),
            relayed_ok("/second", false),
            relayed_ok("/third", true)
        ]
        .concat()
    );
    // Each response tainted its connection: three requests, three connections.
    assert_eq!(backend.connections(), 3);
}

#[test]
fn bodies_on_204_and_304_never_reach_the_next_request() {
    let backend = answering(|head| match target(head) {
        "/204" => format!("HTTP/1.1 204 No Content\r\n\r\n{FORGED}").into_bytes(),
        "/304" => {
            format!("HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\n{FORGED}").into_bytes()
        }
        other => ok(other),
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange("GET", &get("/204", false));
    client.exchange("GET", &get("/after-204", false));
    client.exchange("GET", &get("/304", false));
    client.exchange("GET", &get("/after-304", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        [
            "HTTP/1.1 204 No Content\r\nSozu-Id: -\r\n\r\n".to_string(),
            relayed_ok("/after-204", false),
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\nSozu-Id: -\r\n\r\n".to_string(),
            relayed_ok("/after-304", true),
        ]
        .concat()
    );
}

#[test]
fn bytes_a_backend_sends_between_requests_close_its_connection() {
    let forge = Arc::new(AtomicBool::new(false));
    let backend = {
        let forge = forge.clone();
        ScriptedBackend::start(move |connection: &mut Connection| {
            while let Some(head) = connection.request() {
                connection.send(&ok(target(&head)));
                if connection.index == 0 {
                    // Once the client has its answer, a response to nothing.
                    assert!(wait_until(DEADLINE, || forge.load(Ordering::SeqCst)));
                    connection.send(FORGED.as_bytes());
                }
            }
        })
    };
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange("GET", &get("/first", false));
    forge.store(true, Ordering::SeqCst);
    assert!(
        wait_until(DEADLINE, || backend.has_ended(0)),
        "the proxy kept a backend connection that spoke out of turn"
    );
    client.exchange("GET", &get("/second", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        [relayed_ok("/first", false), relayed_ok("/second", true)].concat()
    );
    let mut other = Client::connect(address);
    other.exchange("GET", &get("/other", true));
    assert_eq!(transcript(&other), relayed_ok("/other", true));
}

#[test]
fn connect_is_refused_with_405_and_never_reaches_a_backend() {
    // A backend that would open the tunnel.
    let backend = answering(|head| {
        if head.start_line.starts_with("CONNECT ") {
            b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec()
        } else {
            ok(target(head))
        }
    });
    let (_worker, address) = proxy(&backend);
    let mut tunnel = Client::connect(address);
    tunnel.exchange(
        "CONNECT",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    tunnel.assert_closed();
    assert_eq!(
        transcript(&tunnel),
        proxy_answer(
            "HTTP/1.1 405 Method Not Allowed",
            "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n",
            "refused"
        )
    );
    // The next client's request, cookies included, goes to the backend as an HTTP request.
    let mut next = Client::connect(address);
    next.exchange(
        "GET",
        b"GET /next HTTP/1.1\r\nHost: example.com\r\nCookie: session=secret\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(transcript(&next), relayed_ok("/next", true));
    let requests: Vec<String> = backend
        .requests()
        .iter()
        .map(|(_, head)| head.start_line.clone())
        .collect();
    assert_eq!(requests, ["GET /next HTTP/1.1"]);
}

#[test]
fn upgrades_other_than_websocket_are_stripped_and_answered_in_http_1_1() {
    // A backend that switches to whatever protocol it is offered.
    let backend = answering(|head| {
        match head.field("upgrade") {
        Some(protocol) => format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        )
        .into_bytes(),
        None => ok(target(head)),
    }
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange(
        "GET",
        b"GET /h2c HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    );
    client.exchange(
        "GET",
        b"GET /custom HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\nUpgrade: TLS/1.2, custom/2\r\n\r\n",
    );
    client.exchange("GET", &get("/last", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        [
            relayed_ok("/h2c", false),
            relayed_ok("/custom", false),
            relayed_ok("/last", true)
        ]
        .concat()
    );
    for (_, head) in backend.requests() {
        for field in ["upgrade", "http2-settings", "connection"] {
            assert!(!head.has(field), "{field} forwarded: {:?}", head.start_line);
        }
    }
}

#[test]
fn a_refused_websocket_upgrade_leaves_an_http_connection() {
    let backend = answering(|head| ok(target(head)));
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange(
        "GET",
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    // The next request is routed on its own, not piped to the backend that refused.
    client.exchange(
        "GET",
        b"GET /elsewhere HTTP/1.1\r\nHost: nowhere.test\r\n\r\n",
    );
    client.exchange("GET", &get("/last", true));
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        [
            relayed_ok("/chat", false),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nSozu-Id: -\r\nContent-Length: 8\r\n\r\nno route".to_string(),
            relayed_ok("/last", true),
        ]
        .concat()
    );
    let requests: Vec<String> = backend
        .requests()
        .iter()
        .map(|(_, head)| head.start_line.clone())
        .collect();
    assert_eq!(requests, ["GET /chat HTTP/1.1", "GET /last HTTP/1.1"]);
}

#[test]
fn a_101_nobody_asked_for_is_a_502_and_the_backend_connection_is_closed() {
    let backend = answering(|head| match target(head) {
        // The client asked for WebSocket; the backend switches to something else.
        "/other-protocol" => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec()
        }
        _ => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec()
        }
    });
    let (_worker, address) = proxy(&backend);
    let requests: [&[u8]; 2] = [
        b"GET /plain HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET /other-protocol HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ];
    for (index, request) in requests.into_iter().enumerate() {
        let mut client = Client::connect(address);
        client.exchange("GET", request);
        client.assert_closed();
        assert_eq!(
            transcript(&client),
            proxy_answer("HTTP/1.1 502 Bad Gateway", "", "bad gateway")
        );
        assert!(
            wait_until(DEADLINE, || backend.has_ended(index)),
            "the backend connection of request {index} was kept"
        );
    }
}

#[test]
fn an_http_1_0_client_gets_no_interim_response_and_no_chunked_body() {
    let backend = answering(|head| {
        let coding = match target(head) {
            "/gzip" => "gzip, chunked",
            _ => "chunked",
        };
        format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\nX-Kind: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        .into_bytes()
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange(
        "GET",
        b"GET /old HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n",
    );
    client.assert_closed();
    // The chunks' data, delimited by the end of the connection.
    assert_eq!(
        transcript(&client),
        "HTTP/1.1 200 OK\r\nX-Kind: chunked\r\nSozu-Id: -\r\nConnection: close\r\n\r\nhello world"
    );
    // A transfer coding an HTTP/1.0 client cannot undo is the backend's fault.
    let mut client = Client::connect(address);
    client.exchange("GET", b"GET /gzip HTTP/1.0\r\nHost: example.com\r\n\r\n");
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        proxy_answer("HTTP/1.1 502 Bad Gateway", "", "bad gateway")
    );
    // An HTTP/1.1 client gets the same responses as they are.
    let mut client = Client::connect(address);
    let response = client.exchange("GET", &get("/new", false));
    assert_eq!(response.status, 100);
    assert_eq!(client.response("GET").status, 103);
    assert_eq!(client.response("GET").text(), "hello world");
}

#[test]
fn an_http_1_2_request_is_served_as_http_1_1() {
    let backend = answering(|_| b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec());
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.exchange("GET", b"GET /v HTTP/1.2\r\nHost: example.com\r\n\r\n");
    // Kept alive as an HTTP/1.1 connection is.
    client.exchange(
        "GET",
        b"GET /w HTTP/1.9\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    client.assert_closed();
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSozu-Id: -\r\n";
    assert_eq!(
        transcript(&client),
        format!("{answer}\r\nok{answer}Connection: close\r\n\r\nok")
    );
    let requests: Vec<String> = backend
        .requests()
        .iter()
        .map(|(_, head)| head.start_line.clone())
        .collect();
    assert_eq!(requests, ["GET /v HTTP/1.1", "GET /w HTTP/1.1"]);
}

#[test]
fn a_backend_closing_inside_its_response_head_gives_a_502() {
    let backend = ScriptedBackend::start(|connection: &mut Connection| {
        if let Some(head) = connection.request() {
            let cut: &[u8] = match target(&head) {
                "/after-continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 O",
                _ => b"HTTP/1.1 200 OK\r\nContent-Le",
            };
            connection.send(cut);
        }
    });
    let (_worker, address) = proxy(&backend);
    let bad_gateway = proxy_answer("HTTP/1.1 502 Bad Gateway", "", "bad gateway");
    let mut client = Client::connect(address);
    client.send(&get("/cut", false));
    assert_eq!(client.response("GET").status, 502);
    client.assert_closed();
    assert_eq!(transcript(&client), bad_gateway);

    let mut client = Client::connect(address);
    client.send(&get("/after-continue", false));
    assert_eq!(client.response("GET").status, 100);
    assert_eq!(client.response("GET").status, 502);
    client.assert_closed();
    assert_eq!(
        transcript(&client),
        format!("HTTP/1.1 100 Continue\r\n\r\n{bad_gateway}")
    );
}

#[test]
fn a_tls_client_without_sni_reaches_no_name_under_strict_sni_binding() {
    let backend = answering(|head| ok(target(head)));
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig {
            address,
            ..listener()
        },
        tls: TlsListenerConfig {
            certificate: Some(certificate("localhost")),
            ..TlsListenerConfig::default()
        },
    }));
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(backend_order(
        "web",
        "web-0",
        backend.address,
    )));
    worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
        Some("web".to_string()),
        address,
        "localhost",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    let mut stream = tls_connect(address, None, &rustls::version::TLS13).expect("handshake");
    std::io::Write::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let mut received = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut received);
    let received = String::from_utf8_lossy(&received);
    let (head, body) = received.split_once("\r\n\r\n").expect("a whole answer");
    assert!(
        head.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
        "{received}"
    );
    assert!(head.ends_with("\r\nConnection: close"), "{received}");
    assert_eq!(body, "misdirected");
    assert_eq!(backend.connections(), 0);
}
