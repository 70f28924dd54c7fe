//! Header edits through a real HTTP worker: forwarding fields, request ids, X-Real-IP,
//! hop-by-hop fields, frontend header rules, host/path/port rewrites, and sticky sessions.

use std::net::SocketAddr;

use sozu_command_lib::request::{
    Cluster, HeaderEdit, HeaderPosition, HttpFrontend, HttpListenerConfig, Order, PathRule,
    PathRuleKind, RemoveBackend,
};
use sozu_e2e::{
    Worker, backend_order, free_address,
    http_backend::{HttpBackend, Reply, response},
    http_client::Client,
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
fn forwarding_fields_are_appended_and_spoofed_ones_replaced() {
    let backend = HttpBackend::start(|_| {
        Reply::Send(response(200, &[("Sozu-Id", "from-the-backend")], b"ok"))
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let request = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nForwarded: for=203.0.113.9;proto=https\r\nSozu-Id: spoofed\r\n\r\n";
    let first = client.exchange("GET", request);
    let second = client.exchange("GET", request);

    let requests = backend.requests();
    for (received, response) in requests.iter().zip([&first, &second]) {
        let head = &received.head;
        assert_eq!(
            head.fields_named("x-forwarded-for"),
            ["203.0.113.9, 127.0.0.1"]
        );
        assert_eq!(head.fields_named("x-forwarded-proto"), ["http"]);
        assert_eq!(
            head.fields_named("x-forwarded-port"),
            [address.port().to_string()]
        );
        assert_eq!(
            head.fields_named("forwarded"),
            ["for=203.0.113.9;proto=https, for=127.0.0.1;by=127.0.0.1;proto=http"]
        );
        // The request id: one, not the client's, the same on the response; the backend's
        // own id field does not reach the client.
        let ids = head.fields_named("sozu-id");
        assert_eq!(ids.len(), 1);
        assert_ne!(ids[0], "spoofed");
        assert!(!ids[0].is_empty());
        assert_eq!(response.head.fields_named("sozu-id"), ids);
    }
    assert_ne!(
        requests[0].header("sozu-id"),
        requests[1].header("sozu-id"),
        "each request has its own id"
    );
}

#[test]
fn request_id_header_name_comes_from_the_listener() {
    let backend = HttpBackend::ok("ok");
    let mut listener = HttpListenerConfig::new(free_address());
    listener.sozu_id_header = "X-Request-Id".to_string();
    let (_worker, address) = proxy_with(listener, &backend);
    let response = Client::connect(address).get(HOST, "/");
    let sent = backend.requests()[0]
        .header("x-request-id")
        .map(str::to_string);
    assert!(sent.is_some());
    assert_eq!(response.header("x-request-id").map(str::to_string), sent);
    assert!(!response.head.has("sozu-id"));
}

#[test]
fn x_real_ip_is_sent_elided_or_kept_as_the_listener_says() {
    let request = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Real-IP: 198.51.100.1\r\n\r\n";
    for (send, elide, expected) in [
        (true, false, vec!["127.0.0.1"]),
        (true, true, vec!["127.0.0.1"]),
        (false, true, vec![]),
        (false, false, vec!["198.51.100.1"]),
    ] {
        let backend = HttpBackend::ok("ok");
        let mut listener = HttpListenerConfig::new(free_address());
        listener.send_x_real_ip = send;
        listener.elide_x_real_ip = elide;
        let (_worker, address) = proxy_with(listener, &backend);
        assert_eq!(
            Client::connect(address).exchange("GET", request).status,
            200
        );
        assert_eq!(
            backend.requests()[0].head.fields_named("x-real-ip"),
            expected,
            "send_x_real_ip = {send}, elide_x_real_ip = {elide}"
        );
    }
}

#[test]
fn hop_by_hop_fields_are_removed_both_ways() {
    let backend = HttpBackend::start(|_| {
        Reply::Send(response(
            200,
            &[
                ("Connection", "keep-alive, X-Internal"),
                ("X-Internal", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Kept", "yes"),
            ],
            b"ok",
        ))
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
    );
    let received = &backend.requests()[0];
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !received.head.has(name),
            "{name} reached the backend: {:?}",
            received.head.fields
        );
    }
    assert_eq!(received.header("accept"), Some("*/*"));
    for name in ["connection", "x-internal", "keep-alive", "proxy-connection"] {
        assert!(
            !response.head.has(name),
            "{name} reached the client: {:?}",
            response.head.fields
        );
    }
    assert_eq!(response.header("x-kept"), Some("yes"));
    // The connection stays open after all.
    assert_eq!(client.get(HOST, "/again").status, 200);
}

fn edit(position: HeaderPosition, key: &str, value: &str) -> HeaderEdit {
    HeaderEdit {
        position,
        key: key.to_string(),
        value: value.to_string(),
    }
}

#[test]
fn frontend_header_rules_edit_requests_and_responses() {
    let backend = HttpBackend::start(|_| {
        Reply::Send(response(
            200,
            &[("Server", "backend/1.0"), ("X-Both", "backend")],
            b"ok",
        ))
    });
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(HttpListenerConfig::new(free_address()));
    worker.cluster(Cluster::new("app"), &[backend.address]);
    let mut frontend = HttpFrontend::new(Some("app".to_string()), address, HOST);
    frontend.headers = vec![
        edit(HeaderPosition::Request, "X-Added", "request"),
        edit(HeaderPosition::Request, "X-Remove", ""),
        edit(HeaderPosition::Response, "X-Response", "response"),
        edit(HeaderPosition::Response, "Server", ""),
        edit(HeaderPosition::Both, "X-Both", "both"),
    ];
    worker.ok(Order::AddHttpFrontend(frontend));

    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Remove: 1\r\nX-Both: client\r\nX-Added: client\r\n\r\n",
    );
    let received = &backend.requests()[0].head;
    assert_eq!(received.fields_named("x-added"), ["request"]);
    assert!(!received.has("x-remove"));
    assert_eq!(received.fields_named("x-both"), ["both"]);
    assert!(!received.has("x-response"));
    let head = &response.head;
    assert_eq!(head.fields_named("x-response"), ["response"]);
    assert!(!head.has("server"));
    assert_eq!(head.fields_named("x-both"), ["both"]);
    assert!(!head.has("x-added"));
}

#[test]
fn rewrites_use_host_and_path_captures() {
    let backend = HttpBackend::ok("ok");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(HttpListenerConfig::new(free_address()));
    worker.cluster(Cluster::new("app"), &[backend.address]);
    let mut prefix = HttpFrontend::new(
        Some("app".to_string()),
        address,
        "/api([0-9]+)/.example.com",
    );
    prefix.path = PathRule::prefix("/v1/");
    prefix.rewrite_host = Some("backend-$HOST[1].internal".to_string());
    prefix.rewrite_path = Some("/version1/$PATH[1]".to_string());
    prefix.rewrite_port = Some(8081);
    worker.ok(Order::AddHttpFrontend(prefix));
    let mut regex = HttpFrontend::new(Some("app".to_string()), address, "*.shop.example.com");
    regex.path = PathRule {
        kind: PathRuleKind::Regex,
        value: "^/items/([0-9]+)$".to_string(),
    };
    regex.rewrite_host = Some("$HOST[1]-store.internal".to_string());
    regex.rewrite_path = Some("/item?id=$PATH[1]".to_string());
    worker.ok(Order::AddHttpFrontend(regex));

    let mut client = Client::connect(address);
    let first = client.exchange(
        "GET",
        b"GET /v1/users/42?x=1 HTTP/1.1\r\nHost: api7.example.com:9000\r\n\r\n",
    );
    assert_eq!(first.status, 200);
    let second = client.exchange(
        "GET",
        b"GET /items/5?q=2 HTTP/1.1\r\nHost: paris.shop.example.com\r\n\r\n",
    );
    assert_eq!(second.status, 200);
    let requests = backend.requests();
    assert_eq!(requests[0].target(), "/version1/users/42?x=1");
    assert_eq!(
        requests[0].head.fields_named("host"),
        ["backend-7.internal:8081"]
    );
    assert_eq!(requests[1].target(), "/item?id=5&q=2");
    assert_eq!(
        requests[1].head.fields_named("host"),
        ["paris-store.internal"]
    );
}

#[test]
fn absolute_form_target_is_sent_in_origin_form() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy(&backend);
    let response = Client::connect(address).exchange(
        "GET",
        b"GET http://example.com/path?q=1 HTTP/1.1\r\nHost: ignored.example.org\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = &backend.requests()[0];
    assert_eq!(received.target(), "/path?q=1");
    assert_eq!(received.head.fields_named("host"), ["example.com"]);
}

#[test]
fn sticky_sessions_keep_a_client_on_its_backend() {
    let alpha = HttpBackend::ok("alpha");
    let beta = HttpBackend::ok("beta");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(HttpListenerConfig::new(free_address()));
    let mut cluster = Cluster::new("sticky");
    cluster.sticky_session = true;
    worker.ok(Order::AddCluster(cluster));
    for (id, backend) in [("alpha", &alpha), ("beta", &beta)] {
        let mut order = backend_order("sticky", id, backend.address);
        order.sticky_id = Some(id.to_string());
        worker.ok(Order::AddBackend(order));
    }
    worker.route(address, HOST, "sticky");

    // Without a cookie: some backend, and the cookie naming it.
    let response = Client::connect(address).get(HOST, "/");
    let chosen = response.text();
    assert_eq!(
        response.header("set-cookie"),
        Some(format!("SOZUBALANCEID={chosen}; Path=/").as_str())
    );

    // With a cookie: always that backend, each request on a new connection; the cookie does
    // not reach the backend, the other cookies do.
    for id in ["alpha", "beta", "alpha", "beta", "beta", "alpha"] {
        let mut client = Client::connect(address);
        let request = format!(
            "GET /{id} HTTP/1.1\r\nHost: example.com\r\nCookie: theme=dark; SOZUBALANCEID={id}; lang=fr\r\n\r\n"
        );
        let response = client.exchange("GET", request.as_bytes());
        assert_eq!(response.text(), id);
        assert!(!response.head.has("set-cookie"), "{:?}", response.head);
    }
    // On one keep-alive connection, the cookie still decides.
    let mut client = Client::connect(address);
    for id in ["beta", "alpha", "alpha", "beta"] {
        let request = format!(
            "GET /{id} HTTP/1.1\r\nHost: example.com\r\nCookie: SOZUBALANCEID={id}\r\n\r\n"
        );
        assert_eq!(client.exchange("GET", request.as_bytes()).text(), id);
    }
    for backend in [&alpha, &beta] {
        for request in backend.requests() {
            let cookies = request.head.fields_named("cookie");
            assert!(
                cookies.iter().all(|c| !c.contains("SOZUBALANCEID")),
                "{cookies:?}"
            );
            if request.target() != "/" && cookies.len() == 1 {
                assert_eq!(cookies, ["theme=dark; lang=fr"]);
            }
        }
    }
    // A cookie naming no backend gets a backend and the cookie that names it.
    let mut client = Client::connect(address);
    let response = client.exchange(
        "GET",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nCookie: SOZUBALANCEID=gone\r\n\r\n",
    );
    let chosen = response.text();
    assert_eq!(
        response.header("set-cookie"),
        Some(format!("SOZUBALANCEID={chosen}; Path=/").as_str())
    );
}

/// A cookie naming a backend of weight 0, or a backup while a normal backend is up, is not
/// honoured: the request goes where it would without a cookie, and the answer carries the
/// cookie naming that backend (issue 10, item 14). Once no normal backend is left, the backup's
/// cookie is honoured.
#[test]
fn a_sticky_cookie_naming_a_backend_that_takes_no_traffic_is_ignored() {
    let normal = HttpBackend::ok("normal");
    let idle = HttpBackend::ok("idle");
    let spare = HttpBackend::ok("spare");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(HttpListenerConfig::new(free_address()));
    let mut cluster = Cluster::new("sticky");
    cluster.sticky_session = true;
    worker.ok(Order::AddCluster(cluster));
    for (id, backend, weight, backup) in [
        ("normal", &normal, 100, false),
        ("idle", &idle, 0, false),
        ("spare", &spare, 100, true),
    ] {
        let mut order = backend_order("sticky", id, backend.address);
        order.sticky_id = Some(id.to_string());
        order.weight = weight;
        order.backup = backup;
        worker.ok(Order::AddBackend(order));
    }
    worker.route(address, HOST, "sticky");
    let with_cookie = |id: &str| {
        let request =
            format!("GET / HTTP/1.1\r\nHost: example.com\r\nCookie: SOZUBALANCEID={id}\r\n\r\n");
        Client::connect(address).exchange("GET", request.as_bytes())
    };

    for id in ["idle", "spare"] {
        let response = with_cookie(id);
        assert_eq!(response.text(), "normal", "cookie {id}");
        assert_eq!(
            response.header("set-cookie"),
            Some("SOZUBALANCEID=normal; Path=/")
        );
    }
    assert!(idle.requests().is_empty() && spare.requests().is_empty());

    worker.ok(Order::RemoveBackend(RemoveBackend {
        cluster_id: "sticky".to_string(),
        backend_id: "normal".to_string(),
        address: normal.address,
        drain_timeout: None,
    }));
    let response = with_cookie("spare");
    assert_eq!(response.text(), "spare");
    assert!(!response.head.has("set-cookie"), "{:?}", response.head);
    let response = with_cookie("idle");
    assert_eq!(response.text(), "spare");
    assert_eq!(
        response.header("set-cookie"),
        Some("SOZUBALANCEID=spare; Path=/")
    );
}
