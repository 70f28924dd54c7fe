//! Answers the proxy writes itself, through a real HTTP worker: errors (404, 408, 429, 502,
//! 503, 504), authentication, redirections, custom answers and answer frontends. Each is
//! framed exactly (Content-Length matches the body, no body for HEAD), and carries
//! `Connection: close` exactly when the proxy then closes the connection.

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use sozu_command_lib::request::{
    Cluster, ConnectionLimit, FixedAnswer, HttpFrontend, HttpListenerConfig, Order, PathRule,
    PathRuleKind, RedirectPolicy, RedirectScheme,
};
use sozu_e2e::{
    DEADLINE, Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, Response, get, post},
    wire::Framing,
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";
/// The SHA-256 of `secret`.
const SECRET_HASH: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// Checks a built-in answer: its status, an HTML body framed by a Content-Length that
/// matches it, and whether it announces the end of the connection.
fn assert_builtin(response: &Response, status: u16, closes: bool) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.framing, Framing::Length(response.body.len()));
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        response.text().contains(&format!("<h1>{status} ")),
        "{}",
        response.text()
    );
    assert_eq!(response.closes(), closes, "{:?}", response.head);
}

fn listener() -> HttpListenerConfig {
    HttpListenerConfig::new(free_address())
}

fn proxy_with(listener: HttpListenerConfig, backend: &HttpBackend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("app"), &[backend.address]);
    (worker, address)
}

#[test]
fn unknown_host_is_404_and_the_connection_stays_open() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy_with(listener(), &backend);
    let mut client = Client::connect(address);
    assert_builtin(&client.get("unknown.test", "/x"), 404, false);
    assert_eq!(client.get(HOST, "/").text(), "ok");
    // A 404 to HEAD has no body: the next response on the connection is read correctly.
    let head = client.exchange("HEAD", b"HEAD /x HTTP/1.1\r\nHost: unknown.test\r\n\r\n");
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());
    assert_eq!(client.get(HOST, "/").text(), "ok");
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn unknown_host_with_a_body_is_404_and_closes() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy_with(listener(), &backend);
    let mut client = Client::connect(address);
    // The body is not read, so the connection cannot go on.
    let response = client.exchange("POST", &post("unknown.test", "/", b"unread body"));
    assert_builtin(&response, 404, true);
    client.assert_closed();
}

#[test]
fn cluster_without_backends_is_503_and_closes() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("empty"), &[]);
    let mut client = Client::connect(address);
    assert_builtin(&client.get(HOST, "/"), 503, true);
    client.assert_closed();
}

#[test]
fn all_backends_dead_is_503_and_closes() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(
        HOST,
        Cluster::new("dead"),
        &[free_address(), free_address()],
    );
    for _ in 0..3 {
        let mut client = Client::connect(address);
        assert_builtin(&client.get(HOST, "/"), 503, true);
        client.assert_closed();
    }
}

#[test]
fn malformed_responses_are_502() {
    let malformed: [&[u8]; 7] = [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    ];
    for bytes in malformed {
        let backend = HttpBackend::start(move |_| Reply::SendAndClose(bytes.to_vec()));
        let (_worker, address) = proxy_with(listener(), &backend);
        let mut client = Client::connect(address);
        let response = client.get(HOST, "/");
        assert_builtin(&response, 502, true);
        client.assert_closed();
    }
}

#[test]
fn backend_closing_before_answering_is_502() {
    let backend = HttpBackend::start(|_| Reply::Close);
    let (_worker, address) = proxy_with(listener(), &backend);
    let mut client = Client::connect(address);
    assert_builtin(&client.get(HOST, "/"), 502, true);
    client.assert_closed();
    assert_eq!(
        backend.requests().len(),
        1,
        "the request was not sent again"
    );
}

#[test]
fn backend_not_answering_in_time_is_504() {
    let backend = HttpBackend::start(|_| Reply::Hang);
    let mut config = listener();
    config.back_timeout = Duration::from_secs(1);
    let (_worker, address) = proxy_with(config, &backend);
    let mut client = Client::connect(address);
    let started = Instant::now();
    let response = client.get(HOST, "/slow");
    let elapsed = started.elapsed();
    assert_builtin(&response, 504, true);
    client.assert_closed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "504 after {elapsed:?}"
    );
}

/// Trickles a request head, a byte every 50 ms, on `client` (after `requests` complete
/// requests on it) and checks that the proxy answers 408 about a second after the first byte.
fn trickled_head_gets_408(requests: usize) {
    let backend = HttpBackend::ok("ok");
    let mut config = listener();
    config.request_timeout = Duration::from_secs(1);
    let (_worker, address) = proxy_with(config, &backend);
    let mut client = Client::connect(address);
    for _ in 0..requests {
        assert_eq!(client.get(HOST, "/").status, 200);
    }
    let mut writer = client.stream().try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        thread::spawn(move || {
            // Ten seconds of head, one byte every 50 ms: each byte arrives well within any
            // idle timeout, but the whole head never does.
            let head = format!(
                "GET / HTTP/1.1\r\nHost: example.com\r\nX-Pad: {}",
                "a".repeat(200)
            );
            for byte in head.bytes() {
                if stop.load(Ordering::SeqCst) || writer.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let response = client.response("GET");
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickle.join().expect("trickle");
    assert_builtin(&response, 408, true);
    assert!(client.is_closed_within(DEADLINE));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "408 after {elapsed:?}"
    );
    assert_eq!(backend.requests().len(), requests);
}

#[test]
fn a_head_trickled_byte_by_byte_gets_408() {
    trickled_head_gets_408(0);
}

#[test]
fn a_head_trickled_on_a_kept_connection_gets_408() {
    trickled_head_gets_408(2);
}

#[test]
fn an_idle_new_connection_gets_408_and_an_idle_kept_one_is_closed() {
    let backend = HttpBackend::ok("ok");
    let mut config = listener();
    config.front_timeout = Duration::from_secs(1);
    let (_worker, address) = proxy_with(config, &backend);

    let mut client = Client::connect(address);
    let started = Instant::now();
    let response = client.response("GET");
    let elapsed = started.elapsed();
    assert_builtin(&response, 408, true);
    client.assert_closed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "408 after {elapsed:?}"
    );

    // After a request, an idle connection just ends: no answer to a request never sent.
    let mut client = Client::connect(address);
    assert_eq!(client.get(HOST, "/").status, 200);
    assert!(client.is_closed_within(DEADLINE));
}

fn auth_proxy(required_auth: bool, redirect: RedirectPolicy) -> (Worker, SocketAddr, HttpBackend) {
    let backend = HttpBackend::ok("private");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(listener());
    let mut cluster = Cluster::new("private");
    cluster.authorized_hashes = vec![format!("user:{SECRET_HASH}")];
    cluster.www_authenticate = Some("staff".to_string());
    worker.cluster(cluster, &[backend.address]);
    let mut frontend = HttpFrontend::new(Some("private".to_string()), address, HOST);
    frontend.required_auth = required_auth;
    frontend.redirect = redirect;
    worker.ok(Order::AddHttpFrontend(frontend));
    (worker, address, backend)
}

fn with_authorization(credentials: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic {credentials}\r\n\r\n")
        .into_bytes()
}

#[test]
fn required_auth_answers_401_until_the_right_credentials() {
    let (_worker, address, backend) = auth_proxy(true, RedirectPolicy::Forward);
    let mut client = Client::connect(address);
    for request in [
        get(HOST, "/"),
        with_authorization("dXNlcjp3cm9uZw=="), // user:wrong
        with_authorization("b3RoZXI6c2VjcmV0"), // other:secret
        with_authorization("not base64!"),
    ] {
        let response = client.exchange("GET", &request);
        assert_builtin(&response, 401, false);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Basic realm=\"staff\"")
        );
    }
    assert!(backend.requests().is_empty());
    // user:secret
    let response = client.exchange("GET", &with_authorization("dXNlcjpzZWNyZXQ="));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "private");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn deny_frontend_answers_401() {
    let (_worker, address, backend) = auth_proxy(false, RedirectPolicy::Unauthorized);
    let mut client = Client::connect(address);
    assert_builtin(&client.get(HOST, "/"), 401, false);
    let response = client.exchange("GET", &with_authorization("dXNlcjpzZWNyZXQ="));
    assert_builtin(&response, 401, false);
    assert!(backend.requests().is_empty());
}

/// Issue 10, item 12: `//admin`, `/./admin`, `/%61dmin` and `/x/../admin` are `/admin` to the
/// router, so they get the answer of the `/admin` frontend (401 here) instead of reaching the
/// `/` frontend's backend; a request that passes is forwarded as the client wrote it.
#[test]
fn a_path_spelt_another_way_is_refused_like_the_path_it_names() {
    let public = HttpBackend::ok("public");
    let private = HttpBackend::ok("private");
    let mut worker = Worker::start(ServerConfig::default());
    let address =
        worker.http_proxy_with(listener(), HOST, Cluster::new("public"), &[public.address]);
    let mut cluster = Cluster::new("private");
    cluster.authorized_hashes = vec![format!("user:{SECRET_HASH}")];
    worker.cluster(cluster, &[private.address]);
    let mut admin = HttpFrontend::new(Some("private".to_string()), address, HOST);
    admin.path = PathRule {
        kind: PathRuleKind::Prefix,
        value: "/admin".to_string(),
    };
    admin.required_auth = true;
    worker.ok(Order::AddHttpFrontend(admin));
    let mut denied = HttpFrontend::new(None, address, HOST);
    denied.path = PathRule {
        kind: PathRuleKind::Equals,
        value: "/internal".to_string(),
    };
    denied.redirect = RedirectPolicy::Unauthorized;
    worker.ok(Order::AddHttpFrontend(denied));

    let mut client = Client::connect(address);
    assert_eq!(client.get(HOST, "/").text(), "public");
    for path in [
        "/admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/x/../admin",
        "/internal",
        "//internal",
        "/%69nternal",
    ] {
        assert_builtin(&client.get(HOST, path), 401, false);
    }
    assert_eq!(
        public.requests().len(),
        1,
        "only `/` reached the public backend"
    );

    let authorized = b"GET //admin/./users HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n";
    let response = client.exchange("GET", authorized);
    assert_eq!(response.text(), "private");
    let requests = private.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].target(),
        "//admin/./users",
        "forwarded as received"
    );
}

#[test]
fn redirect_frontends_answer_301_302_and_308() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(listener());
    let redirect = |hostname: &str, policy, scheme| {
        let mut frontend = HttpFrontend::new(None, address, hostname);
        frontend.redirect = policy;
        frontend.redirect_scheme = scheme;
        Order::AddHttpFrontend(frontend)
    };
    worker.ok(redirect(
        "permanent.example.com",
        RedirectPolicy::Permanent,
        RedirectScheme::UseSame,
    ));
    worker.ok(redirect(
        "found.example.com",
        RedirectPolicy::Found,
        RedirectScheme::UseHttps,
    ));
    worker.ok(redirect(
        "moved.example.com",
        RedirectPolicy::PermanentRedirect,
        RedirectScheme::UseHttp,
    ));
    let mut client = Client::connect(address);
    for (host, status, location) in [
        (
            "permanent.example.com",
            301,
            "http://permanent.example.com/a/b?q=1",
        ),
        (
            "found.example.com",
            302,
            "https://found.example.com/a/b?q=1",
        ),
        ("moved.example.com", 308, "http://moved.example.com/a/b?q=1"),
    ] {
        let response = client.get(host, "/a/b?q=1");
        assert_builtin(&response, status, false);
        assert_eq!(response.header("location"), Some(location));
    }
}

/// Issue 11: a redirect frontend with `rewrite_host`/`rewrite_port` answered
/// `Location: https://old.test:80/…`, the request's host, instead of the rewritten one.
#[test]
fn redirect_frontend_sends_to_its_rewritten_host_and_port() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(listener());
    let mut frontend = HttpFrontend::new(None, address, "old.test");
    frontend.redirect = RedirectPolicy::Permanent;
    frontend.redirect_scheme = RedirectScheme::UseHttps;
    frontend.rewrite_host = Some("www.test".to_string());
    frontend.rewrite_port = Some(443);
    worker.ok(Order::AddHttpFrontend(frontend));
    let mut client = Client::connect(address);
    let response = client.get("old.test:80", "/a/b?q=1");
    assert_builtin(&response, 301, false);
    assert_eq!(
        response.header("location"),
        Some("https://www.test:443/a/b?q=1")
    );
}

#[test]
fn https_redirect_cluster_answers_301_to_https() {
    let backend = HttpBackend::ok("never");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(listener());
    let mut secure = Cluster::new("secure");
    secure.https_redirect = true;
    worker.cluster(secure, &[backend.address]);
    worker.route(address, "secure.example.com", "secure");
    let mut ported = Cluster::new("ported");
    ported.https_redirect = true;
    ported.https_redirect_port = Some(8443);
    worker.cluster(ported, &[backend.address]);
    worker.route(address, "ported.example.com", "ported");

    let mut client = Client::connect(address);
    let response = client.get(&format!("secure.example.com:{}", address.port()), "/p?x=1");
    assert_builtin(&response, 301, false);
    assert_eq!(
        response.header("location"),
        Some("https://secure.example.com/p?x=1")
    );
    let response = client.get("ported.example.com", "/p");
    assert_builtin(&response, 301, false);
    assert_eq!(
        response.header("location"),
        Some("https://ported.example.com:8443/p")
    );
    assert!(backend.requests().is_empty());
}

#[test]
fn custom_answers_of_the_listener_and_the_cluster() {
    let mut worker = Worker::start(ServerConfig::default());
    let mut config = listener();
    config.answers = BTreeMap::from([
        (404, "<p>nothing at %HOST</p>".to_string()),
        (503, "listener says %CLUSTER_ID is down".to_string()),
    ]);
    let address = worker.http_listener(config);
    let mut custom = Cluster::new("custom");
    custom.answers = BTreeMap::from([(
        503,
        "HTTP/1.1 503 Maintenance\r\nX-Custom: yes\r\nContent-Length: 999\r\n\r\ndown: %CLUSTER_ID"
            .to_string(),
    )]);
    worker.cluster(custom, &[]);
    worker.route(address, "custom.example.com", "custom");
    worker.cluster(Cluster::new("plain"), &[]);
    worker.route(address, "plain.example.com", "plain");

    let mut client = Client::connect(address);
    let response = client.get("nowhere.example.com", "/");
    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "<p>nothing at nowhere.example.com</p>");
    assert_eq!(response.framing, Framing::Length(response.body.len()));

    let mut client = Client::connect(address);
    let response = client.get("custom.example.com", "/");
    assert_eq!(response.head.start_line, "HTTP/1.1 503 Maintenance");
    assert_eq!(response.header("x-custom"), Some("yes"));
    assert_eq!(response.text(), "down: custom");
    assert_eq!(response.head.fields_named("content-length"), ["12"]);
    assert!(response.closes());
    client.assert_closed();

    let mut client = Client::connect(address);
    let response = client.get("plain.example.com", "/");
    assert_eq!(response.status, 503);
    assert_eq!(response.text(), "listener says plain is down");
    assert!(response.closes());
    client.assert_closed();
}

#[test]
fn answer_frontends_send_their_fixed_response() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(listener());
    let mut frontend = HttpFrontend::new(None, address, "fixed.example.com");
    frontend.answer = Some(FixedAnswer {
        status: 200,
        headers: vec![
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("X-Fixed".to_string(), "1".to_string()),
            ("Content-Length".to_string(), "1".to_string()),
        ],
        body: "fixed body".to_string(),
    });
    worker.ok(Order::AddHttpFrontend(frontend));

    let mut client = Client::connect(address);
    let response = client.get("fixed.example.com", "/anything");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "fixed body");
    assert_eq!(response.header("x-fixed"), Some("1"));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.head.fields_named("content-length"), ["10"]);
    let head = client.exchange(
        "HEAD",
        b"HEAD / HTTP/1.1\r\nHost: fixed.example.com\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.body.is_empty());
    // Still in step after the HEAD.
    assert_eq!(client.get("fixed.example.com", "/").text(), "fixed body");
}

#[test]
fn too_many_connections_from_one_address_is_429_with_retry_after() {
    let backend = HttpBackend::ok("ok");
    let (mut worker, address) = proxy_with(listener(), &backend);
    worker.ok(Order::SetMaxConnectionsPerIp(ConnectionLimit {
        max_connections_per_ip: 1,
    }));
    let mut first = Client::connect(address);
    assert_eq!(first.get(HOST, "/").status, 200);

    let mut second = Client::connect(address);
    let response = second.get(HOST, "/");
    assert_builtin(&response, 429, true);
    assert_eq!(response.header("retry-after"), Some("60"));
    second.assert_closed();

    // Once the first connection ends, its place is free again.
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = Client::connect(address).get(HOST, "/");
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 429);
        assert!(
            Instant::now() < deadline,
            "the connection count was not released"
        );
    }
    assert_eq!(backend.requests().len(), 2);
}

/// A keep-alive connection counts against the cluster its requests go to, moving with them
/// (issue 10): a client cannot open its connection on an uncapped cluster and then send its
/// requests to a capped one.
#[test]
fn the_per_ip_cap_counts_a_keep_alive_connection_against_the_cluster_it_moves_to() {
    let backend = HttpBackend::ok("ok");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("open"), &[backend.address]);
    let capped = Cluster {
        max_connections_per_ip: Some(1),
        ..Cluster::new("capped")
    };
    worker.cluster(capped, &[backend.address]);
    worker.route(address, "capped.example.com", "capped");

    let mut first = Client::connect(address);
    assert_eq!(first.get(HOST, "/").status, 200);
    assert_eq!(first.get("capped.example.com", "/").status, 200);
    let mut second = Client::connect(address);
    assert_eq!(second.get(HOST, "/").status, 200);
    let refused = second.get("capped.example.com", "/");
    assert_builtin(&refused, 429, true);
    second.assert_closed();

    // Once the first connection moves back to the open cluster, its place is free.
    assert_eq!(first.get(HOST, "/").status, 200);
    let mut third = Client::connect(address);
    assert_eq!(third.get("capped.example.com", "/").status, 200);
    // And the open cluster has no cap: both connections use it at once.
    assert_eq!(third.get(HOST, "/").status, 200);
    assert_eq!(first.get(HOST, "/").status, 200);
}

#[test]
fn answers_to_keep_alive_requests_keep_the_connection_and_framing() {
    let backend =
        HttpBackend::start(|request| Reply::Send(response(200, &[], request.target().as_bytes())));
    let (mut worker, address) = proxy_with(listener(), &backend);
    let mut frontend = HttpFrontend::new(None, address, "moved.example.com");
    frontend.redirect = RedirectPolicy::Permanent;
    worker.ok(Order::AddHttpFrontend(frontend));
    // Answers and forwarded requests, pipelined, on one connection.
    let mut bytes = Vec::new();
    for (index, host) in [
        "example.com",
        "nowhere.test",
        "moved.example.com",
        "example.com",
    ]
    .iter()
    .enumerate()
    {
        bytes.extend_from_slice(&get(host, &format!("/{index}")));
    }
    let mut client = Client::connect(address);
    client.send(&bytes);
    assert_eq!(client.response("GET").text(), "/0");
    assert_builtin(&client.response("GET"), 404, false);
    assert_builtin(&client.response("GET"), 301, false);
    assert_eq!(client.response("GET").text(), "/3");
}
