//! HTTPS through a worker that decodes certificate keys on first use
//! (`ServerConfig::key_check = KeyCheck::OnFirstUse`, as the `sozu` binary's workers do): the
//! first handshake for a name decodes its key and succeeds; a certificate whose key does not
//! match (which the main process would have refused) fails the handshakes for its names only,
//! and the worker keeps serving the others (issue 17, aim 4).

use std::{io::Read, io::Write, net::SocketAddr};

use sozu_command_lib::{
    request::{
        AddCertificate, CertificateAndKey, Cluster, HttpFrontend, HttpListenerConfig,
        HttpsListenerConfig, ListenerAddress, ListenerType, Order, QueryMetrics, TlsListenerConfig,
    },
    response::{FilteredMetric, ResponseContent},
};
use sozu_e2e::{
    DEADLINE, Worker,
    backend::Backend,
    backend_order, free_address,
    tls::{TlsClient, certificate, fixture, tls_connect},
    wait_until,
};
use sozu_lib::{protocol::tls::KeyCheck, server::ServerConfig};

/// A lazy worker with an HTTPS listener without a default certificate, routing `hostnames`
/// to a backend.
fn lazy_worker(hostnames: &[&str]) -> (Worker, SocketAddr, Backend) {
    let backend = Backend::http_ok("from the backend");
    let mut worker = Worker::start(ServerConfig {
        key_check: KeyCheck::OnFirstUse,
        ..ServerConfig::default()
    });
    let address = free_address();
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(address),
        tls: TlsListenerConfig::default(),
    }));
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(backend_order(
        "web",
        "web-0",
        backend.address,
    )));
    for hostname in hostnames {
        worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
            Some("web".to_string()),
            address,
            *hostname,
        )));
    }
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    (worker, address, backend)
}

fn add(worker: &mut Worker, address: SocketAddr, certificate: CertificateAndKey) {
    worker.ok(Order::AddCertificate(AddCertificate {
        address,
        certificate,
        allow_expired: false,
    }));
}

/// The worker's `tls.handshake_failures`.
fn handshake_failures(worker: &mut Worker) -> u64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    match response.content {
        Some(ResponseContent::Metrics(metrics)) => {
            match metrics.proxy.get("tls.handshake_failures") {
                Some(FilteredMetric::Count(count)) => *count,
                _ => 0,
            }
        }
        other => panic!("no metrics: {other:?}"),
    }
}

fn get(stream: &mut TlsClient, host: &str) -> String {
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_key_decoded_on_first_use_serves_its_handshakes() {
    let (mut worker, address, _backend) = lazy_worker(&["www.example.com", "p384.test"]);
    add(&mut worker, address, certificate("example"));
    add(&mut worker, address, certificate("p384"));
    for (name, version) in [
        ("www.example.com", &rustls::version::TLS13),
        ("www.example.com", &rustls::version::TLS12),
        ("p384.test", &rustls::version::TLS13),
    ] {
        let mut stream = tls_connect(address, Some(name), version).expect("handshake");
        let response = get(&mut stream, name);
        assert!(response.ends_with("from the backend"), "{name}: {response}");
    }
}

#[test]
fn a_key_that_does_not_match_fails_its_handshakes_only() {
    let (mut worker, address, _backend) = lazy_worker(&["www.example.com", "localhost"]);
    // Accepted: this worker leaves the key to the first handshake (a main process would have
    // refused the order).
    add(
        &mut worker,
        address,
        CertificateAndKey {
            key: fixture("example.key"),
            ..certificate("localhost")
        },
    );
    add(&mut worker, address, certificate("example"));
    for _ in 0..2 {
        assert!(
            tls_connect(address, Some("localhost"), &rustls::version::TLS13).is_err(),
            "no key to serve localhost"
        );
        let mut stream = tls_connect(address, Some("www.example.com"), &rustls::version::TLS13)
            .expect("the other certificate still serves");
        let response = get(&mut stream, "www.example.com");
        assert!(response.ends_with("from the backend"), "{response}");
    }
    assert!(
        wait_until(DEADLINE, || handshake_failures(&mut worker) == 2),
        "both failed handshakes counted"
    );
}
