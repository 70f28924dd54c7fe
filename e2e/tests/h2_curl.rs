//! HTTP/2 clients through a real worker, with curl (installed by `.ci/install-test-tools`):
//! over TLS when ALPN chooses `h2`, in cleartext with prior knowledge on an `h2c` listener.
//! Each stream is forwarded to an HTTP/1.1 backend, or answered by the proxy.

use std::{net::SocketAddr, process::Command};

use sozu_command_lib::request::{
    Cluster, HttpFrontend, HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType,
    Order, TlsListenerConfig,
};
use sozu_e2e::{
    Worker, free_address,
    http_backend::{HttpBackend, Reply, response},
    tls::{FIXTURES, certificate},
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "localhost";

/// Runs curl with `arguments` against the proxy at `address` (resolving [`HOST`] to it);
/// returns what it printed. Fails the test if curl fails.
fn curl(address: SocketAddr, arguments: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", address.port())])
        .args(["--cacert", &format!("{FIXTURES}/localhost.pem")])
        .args(arguments)
        .output()
        .expect("curl must be installed (.ci/install-test-tools installs it)");
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A backend answering with the method, target, scheme and body it received.
fn echo_backend() -> HttpBackend {
    HttpBackend::start(|request| {
        let body = format!(
            "{} {} {} {}",
            request.method(),
            request.target(),
            request.header("X-Forwarded-Proto").unwrap_or("-"),
            String::from_utf8_lossy(&request.body.data)
        );
        Reply::Send(response(
            200,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        ))
    })
}

/// An HTTPS listener (default settings: ALPN `h2` then `http/1.1`) routing [`HOST`] to
/// `backend`.
fn https_proxy(worker: &mut Worker, backend: SocketAddr, tls: TlsListenerConfig) -> SocketAddr {
    let address = free_address();
    let http = HttpListenerConfig::new(address);
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig { http, tls }));
    worker.cluster(Cluster::new("web"), &[backend]);
    worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
        Some("web".to_string()),
        address,
        HOST,
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    address
}

fn with_certificate() -> TlsListenerConfig {
    TlsListenerConfig {
        certificate: Some(certificate("localhost")),
        ..TlsListenerConfig::default()
    }
}

/// A cleartext listener with `h2c` routing [`HOST`] to `backend`.
fn h2c_proxy(worker: &mut Worker, backend: SocketAddr) -> SocketAddr {
    let mut listener = HttpListenerConfig::new(free_address());
    listener.h2c = true;
    worker.http_proxy_with(listener, HOST, Cluster::new("web"), &[backend])
}

const VERSION: &str = "\n%{http_version} %{response_code}";

#[test]
fn curl_gets_http2_over_tls_when_alpn_chooses_h2() {
    let backend = echo_backend();
    let mut worker = Worker::start(ServerConfig::default());
    let address = https_proxy(&mut worker, backend.address, with_certificate());
    let url = format!("https://{HOST}:{}/hello?x=1", address.port());
    let output = curl(address, &["--http2", "--write-out", VERSION, &url]);
    assert_eq!(output, "GET /hello?x=1 https \n2 200");
    let requests = backend.requests();
    let request = requests.first().expect("the backend got the request");
    assert_eq!(
        request.header("Host"),
        Some(format!("{HOST}:{}", address.port()).as_str())
    );
    // An HTTP/1.1 client of the same listener is still served in HTTP/1.1.
    let output = curl(address, &["--http1.1", "--write-out", VERSION, &url]);
    assert_eq!(output, "GET /hello?x=1 https \n1.1 200");
}

#[test]
fn a_listener_without_http11_serves_h2_alone() {
    let backend = echo_backend();
    let mut worker = Worker::start(ServerConfig::default());
    let tls = TlsListenerConfig {
        disable_http11: true,
        ..with_certificate()
    };
    let address = https_proxy(&mut worker, backend.address, tls);
    let url = format!("https://{HOST}:{}/", address.port());
    let output = curl(address, &["--http2", "--write-out", VERSION, &url]);
    assert_eq!(output, "GET / https \n2 200");
    let refused = Command::new("curl")
        .args(["--silent", "--http1.1", "--max-time", "10"])
        .args(["--resolve", &format!("{HOST}:{}:127.0.0.1", address.port())])
        .args(["--cacert", &format!("{FIXTURES}/localhost.pem"), &url])
        .output()
        .expect("curl runs");
    assert!(!refused.status.success(), "HTTP/1.1 must not be served");
}

#[test]
fn curl_with_prior_knowledge_gets_http2_on_an_h2c_listener() {
    let backend = echo_backend();
    let mut worker = Worker::start(ServerConfig::default());
    let address = h2c_proxy(&mut worker, backend.address);
    let url = format!("http://{HOST}:{}/upload", address.port());
    let output = curl(
        address,
        &[
            "--http2-prior-knowledge",
            "--data-binary",
            "some body",
            "--write-out",
            VERSION,
            &url,
        ],
    );
    assert_eq!(output, "POST /upload http some body\n2 200");
    // Without the preface, the same listener speaks HTTP/1.1.
    let output = curl(address, &["--http1.1", "--write-out", VERSION, &url]);
    assert_eq!(output, "GET /upload http \n1.1 200");
}

#[test]
fn concurrent_streams_share_one_connection_and_proxy_answers_are_streams() {
    let backend = echo_backend();
    let mut worker = Worker::start(ServerConfig::default());
    let address = h2c_proxy(&mut worker, backend.address);
    let port = address.port();
    // nghttp (from nghttp2-client) sends its requests at once, as streams of one connection.
    let urls: Vec<String> = ["/a", "/b", "/c"]
        .iter()
        .map(|path| format!("http://{HOST}:{port}{path}"))
        .collect();
    let output = Command::new("nghttp")
        .args(["--null-out", "--verbose"])
        .args(&urls)
        .output()
        .expect("nghttp must be installed (.ci/install-test-tools installs nghttp2-client)");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "nghttp failed: {log}");
    assert_eq!(log.matches("] Connected").count(), 1, "{log}");
    assert_eq!(log.matches(":status: 200").count(), 3, "{log}");
    let mut targets: Vec<String> = backend
        .requests()
        .iter()
        .map(|request| request.target().to_string())
        .collect();
    targets.sort();
    assert_eq!(targets, ["/a", "/b", "/c"]);
    // A host no frontend routes gets the proxy's 404, as a stream.
    let unknown = format!("http://127.0.0.1:{port}/");
    let output = curl(
        address,
        &["--http2-prior-knowledge", "--write-out", VERSION, &unknown],
    );
    assert!(output.ends_with("\n2 404"), "{output}");
    assert_eq!(backend.requests().len(), 3);
}

#[test]
fn h2load_requests_all_succeed_over_tls_and_h2c() {
    let backend = echo_backend();
    let mut worker = Worker::start(ServerConfig::default());
    let h2c = h2c_proxy(&mut worker, backend.address);
    worker.route(h2c, "127.0.0.1", "web");
    let tls = free_address();
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(tls),
        // h2load sends no SNI to an address.
        tls: TlsListenerConfig {
            strict_sni_binding: false,
            ..with_certificate()
        },
    }));
    worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
        Some("web".to_string()),
        tls,
        "127.0.0.1",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address: tls,
        proxy: ListenerType::Https,
    }));
    for url in [
        format!("http://127.0.0.1:{}/", h2c.port()),
        format!("https://127.0.0.1:{}/", tls.port()),
    ] {
        // 4 connections, up to 10 streams at once on each.
        let output = Command::new("h2load")
            .args([
                "--requests",
                "400",
                "--clients",
                "4",
                "--max-concurrent-streams",
                "10",
            ])
            .arg(&url)
            .output()
            .expect("h2load must be installed (.ci/install-test-tools installs nghttp2-client)");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "h2load failed: {report}");
        assert!(
            report.contains("400 succeeded, 0 failed, 0 errored"),
            "{url}: {report}"
        );
        assert!(report.contains("400 2xx"), "{url}: {report}");
    }
    assert_eq!(backend.requests().len(), 800);
}
