//! HTTPS through a real worker: certificates chosen by SNI, the default certificate, TLS
//! versions, live certificate changes, refused certificates, strict SNI binding, HSTS, and
//! `curl` as a client.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::Arc,
};

use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::ring,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use sozu_command_lib::request::{
    AddCertificate, CertificateAndKey, Cluster, Fingerprint, Hsts, HttpFrontend,
    HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType, Order,
    RemoveCertificate, ReplaceCertificate, TlsListenerConfig, TlsVersion,
};
use sozu_e2e::{DEADLINE, Worker, backend::Backend, backend_order, free_address};
use sozu_lib::server::ServerConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("read a fixture")
}

fn certificate(name: &str) -> CertificateAndKey {
    CertificateAndKey::new(
        fixture(&format!("{name}.pem")),
        fixture(&format!("{name}.key")),
    )
}

fn fingerprint(name: &str) -> Fingerprint {
    let pem = fixture(&format!("{name}.pem"));
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate");
    Fingerprint::of_der(&der)
}

/// Accepts any certificate: these tests check which one is served, not its trust chain.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Connects with TLS; `server_name` None sends no SNI.
fn tls_connect(
    address: SocketAddr,
    server_name: Option<&str>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<TlsClient, std::io::Error> {
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[version])
        .expect("a valid client version")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    let name = match server_name {
        Some(name) => ServerName::try_from(name.to_string()).expect("a valid name"),
        None => ServerName::IpAddress(address.ip().into()),
    };
    let connection =
        ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(DEADLINE))?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn served_fingerprint(stream: &TlsClient) -> Fingerprint {
    let chain = stream.conn.peer_certificates().expect("a certificate");
    Fingerprint::of_der(&chain[0])
}

/// Sends a GET for `host` and reads the whole response (the answer closes the connection).
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

/// An HTTPS listener with the `localhost` certificate as default, routing `localhost`,
/// `www.example.com` and `p384.test` to a backend.
struct Setup {
    worker: Worker,
    address: SocketAddr,
    backend: Backend,
}

fn setup(tls: TlsListenerConfig) -> Setup {
    let backend = Backend::http_ok("from the backend");
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(address),
        tls,
    }));
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(backend_order(
        "web",
        "web-0",
        backend.address,
    )));
    for hostname in ["localhost", "www.example.com", "p384.test", "ed25519.test"] {
        worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
            Some("web".to_string()),
            address,
            hostname,
        )));
    }
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    Setup {
        worker,
        address,
        backend,
    }
}

fn with_default_certificate() -> TlsListenerConfig {
    TlsListenerConfig {
        certificate: Some(certificate("localhost")),
        ..TlsListenerConfig::default()
    }
}

fn add_certificate(worker: &mut Worker, address: SocketAddr, name: &str) {
    worker.ok(Order::AddCertificate(AddCertificate {
        address,
        certificate: certificate(name),
        allow_expired: false,
    }));
}

#[test]
fn each_hostname_gets_its_own_certificate_and_no_sni_gets_the_default() {
    let Setup {
        mut worker,
        address,
        backend,
    } = setup(with_default_certificate());
    add_certificate(&mut worker, address, "example");
    add_certificate(&mut worker, address, "p384");
    add_certificate(&mut worker, address, "ed25519");

    for (server_name, expected) in [
        (Some("www.example.com"), "example"),
        (Some("localhost"), "localhost"),
        (Some("p384.test"), "p384"),
        (Some("ed25519.test"), "ed25519"),
        (None, "localhost"),
        (Some("unknown.test"), "localhost"),
    ] {
        let mut stream =
            tls_connect(address, server_name, &rustls::version::TLS13).expect("handshake");
        assert_eq!(
            served_fingerprint(&stream),
            fingerprint(expected),
            "for {server_name:?}"
        );
        if let Some(host) = server_name.filter(|name| *name != "unknown.test") {
            let response = get(&mut stream, host);
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.ends_with("from the backend"), "{response}");
        }
    }
    let heads = backend.received();
    assert!(!heads.is_empty());
    for head in heads {
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.contains("X-Forwarded-Proto: https\r\n"), "{head}");
    }
}

#[test]
fn tls_12_and_13_work_and_a_disabled_version_is_refused() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(with_default_certificate());
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut stream = tls_connect(address, Some("localhost"), version).expect("handshake");
        assert!(get(&mut stream, "localhost").ends_with("from the backend"));
    }

    let only_13 = TlsListenerConfig {
        versions: vec![TlsVersion::Tls13],
        ..with_default_certificate()
    };
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(only_13);
    assert!(tls_connect(address, Some("localhost"), &rustls::version::TLS12).is_err());
    assert!(tls_connect(address, Some("localhost"), &rustls::version::TLS13).is_ok());
}

#[test]
fn a_replaced_certificate_serves_new_connections_while_open_ones_keep_working() {
    let Setup {
        mut worker,
        address,
        ..
    } = setup(TlsListenerConfig::default());
    add_certificate(&mut worker, address, "localhost");
    let mut open =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    assert_eq!(served_fingerprint(&open), fingerprint("localhost"));

    worker.ok(Order::ReplaceCertificate(ReplaceCertificate {
        address,
        new_certificate: certificate("localhost2"),
        old_fingerprint: fingerprint("localhost"),
        allow_expired: false,
    }));
    let fresh =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    assert_eq!(served_fingerprint(&fresh), fingerprint("localhost2"));
    assert!(
        get(&mut open, "localhost").ends_with("from the backend"),
        "the open connection still works"
    );

    worker.ok(Order::RemoveCertificate(RemoveCertificate {
        address,
        fingerprint: fingerprint("localhost2"),
    }));
    assert!(
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).is_err(),
        "no certificate left"
    );
}

#[test]
fn bad_certificates_are_refused_with_their_reason() {
    let Setup {
        mut worker,
        address,
        ..
    } = setup(with_default_certificate());
    let cases = [
        (
            CertificateAndKey {
                certificate:
                    "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                        .to_string(),
                ..certificate("example")
            },
            "certificate",
        ),
        (
            CertificateAndKey {
                key: fixture("localhost.key"),
                ..certificate("example")
            },
            "does not match",
        ),
    ];
    for (bad, reason) in cases {
        let response = worker.order(Order::AddCertificate(AddCertificate {
            address,
            certificate: bad,
            allow_expired: false,
        }));
        assert_eq!(
            response.status,
            sozu_command_lib::response::ResponseStatus::Failure
        );
        assert!(
            response.message.contains(reason),
            "{reason}: {}",
            response.message
        );
    }
    // A worker never judges a certificate against the clock: the main process does, once,
    // for its clients' orders, so that a replayed state loads whole (issue 10, item 5).
    worker.ok(Order::AddCertificate(AddCertificate {
        address,
        certificate: certificate("expired"),
        allow_expired: false,
    }));
}

#[test]
fn strict_sni_binding_answers_421_to_another_host() {
    let Setup {
        address,
        backend,
        worker: _worker,
    } = setup(with_default_certificate());
    let mut stream =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    let response = get(&mut stream, "www.example.com");
    assert!(response.starts_with("HTTP/1.1 421 "), "{response}");
    assert!(backend.received().is_empty());

    let lenient = TlsListenerConfig {
        strict_sni_binding: false,
        ..with_default_certificate()
    };
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(lenient);
    let mut stream =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    assert!(get(&mut stream, "www.example.com").starts_with("HTTP/1.1 200 "));
}

#[test]
fn hsts_is_added_to_https_answers() {
    let tls = TlsListenerConfig {
        hsts: Some(Hsts {
            enabled: true,
            max_age: std::time::Duration::from_secs(600),
            include_subdomains: true,
            preload: false,
            force_replace_backend: false,
        }),
        ..with_default_certificate()
    };
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(tls);
    let mut stream =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    let response = get(&mut stream, "localhost");
    assert!(
        response.contains("Strict-Transport-Security: max-age=600; includeSubDomains\r\n"),
        "{response}"
    );
}

#[test]
fn curl_fetches_through_https() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(with_default_certificate());
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--cacert",
            &format!("{FIXTURES}/localhost.pem"),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", address.port()),
            &format!("https://localhost:{}/", address.port()),
        ])
        .output()
        .expect("curl must be installed (.ci/install-test-tools installs it)");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from the backend");
}

#[test]
fn a_stalled_handshake_is_closed_at_the_timeout() {
    let backend = Backend::http_ok("unused");
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    let mut http = HttpListenerConfig::new(address);
    // The request timeout bounds the handshake of a new connection (the idle timeout is 60 s).
    http.request_timeout = std::time::Duration::from_secs(1);
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http,
        tls: with_default_certificate(),
    }));
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(backend_order(
        "web",
        "web-0",
        backend.address,
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    let started = std::time::Instant::now();
    let mut socket = TcpStream::connect(address).expect("connect");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    // Half a ClientHello, then nothing.
    socket
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("send");
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
}
