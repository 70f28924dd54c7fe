//! HTTPS through a real worker: certificates chosen by SNI, the default certificate, TLS
//! versions, live certificate changes, refused certificates, strict SNI binding, HSTS, a client
//! that stops reading, `curl` as a client, and session resumption (rustls and `openssl s_client`).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    process::Command,
};

use rustls::{ClientConnection, HandshakeKind, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use sozu_command_lib::request::{
    AddCertificate, CertificateAndKey, Cluster, Fingerprint, Hsts, HttpFrontend,
    HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType, Order,
    RemoveCertificate, ReplaceCertificate, TlsListenerConfig, TlsVersion,
};
use sozu_command_lib::response::ResponseStatus;
use sozu_e2e::{
    DEADLINE, Worker,
    backend::Backend,
    backend_order, free_address,
    http_backend::{HttpBackend, Reply, response},
    temporary_directory,
    tls::{
        FIXTURES, TlsClient, certificate, client_config, fixture, tls_connect, tls_connect_with,
    },
    wait_until,
};
use sozu_lib::server::ServerConfig;

fn fingerprint(name: &str) -> Fingerprint {
    let pem = fixture(&format!("{name}.pem"));
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate");
    Fingerprint::of_der(&der)
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
    setup_with(tls, |_| {})
}

/// Like [`setup`], with the listener's HTTP settings changed by `configure`.
fn setup_with(tls: TlsListenerConfig, configure: impl FnOnce(&mut HttpListenerConfig)) -> Setup {
    let backend = Backend::http_ok("from the backend");
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    let mut http = HttpListenerConfig::new(address);
    configure(&mut http);
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig { http, tls }));
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

/// A client that stops reading an encrypted response is closed in a bounded time, so a soft
/// stop ends (issue 10): once the session closes, its last ciphertext gets one idle timeout to
/// leave, not one more at every expiry.
#[test]
fn a_client_that_stops_reading_is_closed_and_a_soft_stop_ends() {
    // Larger than what the kernel buffers of both sockets and the TLS buffer can hold.
    let body = vec![b'x'; 16 << 20];
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    // The TLS buffer holds up to a buffer's size of ciphertext: far more than a stalled socket
    // takes when the session closes.
    let mut worker = Worker::start(ServerConfig {
        buffer_size: 1 << 20,
        ..ServerConfig::default()
    });
    let address = free_address();
    let mut http = HttpListenerConfig::new(address);
    http.front_timeout = std::time::Duration::from_secs(1);
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http,
        tls: with_default_certificate(),
    }));
    worker.cluster(Cluster::new("web"), &[backend.address]);
    worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
        Some("web".to_string()),
        address,
        "localhost",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Https,
    }));
    let mut stream =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    assert!(wait_until(DEADLINE, || backend.requests().len() == 1));
    // The client never reads: the proxy's writes stall, the session times out and closes.
    let stop = worker.send(Order::SoftStop);
    let response = worker.response_to(&stop);
    assert_eq!(response.status, ResponseStatus::Ok);
    assert!(worker.join(DEADLINE), "the worker did not exit");
    drop(stream);
}

/// The idle timeout of a kept connection runs from the end of its last exchange: TLS records
/// that carry no request byte (here key updates) do not restart it (issue 10).
#[test]
fn tls_records_without_data_do_not_keep_an_idle_connection_open() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup_with(with_default_certificate(), |http| {
        http.front_timeout = std::time::Duration::from_secs(1);
    });
    let mut stream =
        tls_connect(address, Some("localhost"), &rustls::version::TLS13).expect("handshake");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut response = Vec::new();
    while !response.ends_with(b"from the backend") {
        let mut chunk = [0; 4096];
        let count = stream.read(&mut chunk).expect("read the response");
        assert!(count > 0, "closed before the response");
        response.extend_from_slice(&chunk[..count]);
    }
    let answered = std::time::Instant::now();
    stream
        .sock
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let closed = loop {
        // A key update every 200 ms: records, but no byte of a request.
        stream.conn.refresh_traffic_keys().expect("key update");
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut stream.sock).expect("send");
        }
        let mut byte = [0; 1];
        match stream.read(&mut byte) {
            Ok(0) => break true,
            Ok(_) => panic!("bytes on an idle connection"),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
        if answered.elapsed() > std::time::Duration::from_secs(5) {
            break false;
        }
    };
    assert!(closed, "the idle connection was still open after 5 s");
}

/// A load balancer in front sends its PROXY header and the client's ClientHello in one segment:
/// the handshake completes at once (not at the request timeout), and the request is forwarded
/// with the address the header names.
#[test]
fn a_proxy_header_and_the_client_hello_in_one_write_complete_the_handshake() {
    let headers: [&[u8]; 2] = [
        b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n",
        &[
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
            0x00, 0x0c, 203, 0, 113, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb,
        ],
    ];
    for (header, version) in headers.into_iter().flat_map(|header| {
        [
            (header, &rustls::version::TLS13),
            (header, &rustls::version::TLS12),
        ]
    }) {
        let Setup {
            worker: _worker,
            address,
            backend,
        } = setup_with(with_default_certificate(), |http| {
            http.expect_proxy = true;
            // Long enough that a handshake stalled until this timeout fails the read below.
            http.request_timeout = std::time::Duration::from_secs(30);
        });

        let name = ServerName::try_from("localhost").expect("a valid name");
        let mut connection = ClientConnection::new(client_config(version), name).expect("a client");
        let mut first_write = header.to_vec();
        connection
            .write_tls(&mut first_write)
            .expect("the ClientHello");
        let mut socket = TcpStream::connect(address).expect("connect");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("set a read timeout");
        socket.write_all(&first_write).expect("send both at once");
        let mut stream = StreamOwned::new(connection, socket);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("the handshake completes without waiting for a timeout");
        }
        let response = get(&mut stream, "localhost");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("from the backend"), "{response}");
        let heads = backend.received();
        let head = String::from_utf8_lossy(heads.last().expect("a request reached the backend"));
        assert!(
            head.contains("X-Forwarded-For: 203.0.113.7"),
            "the PROXY header's client is forwarded: {head}"
        );
    }
}

/// Connects twice with one client configuration (one session store), fetching a page each time
/// (which reads the tickets a TLS 1.3 server sends after its handshake); whether the second
/// handshake resumed the first one's session.
fn second_connection_resumes(
    address: SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> bool {
    let config = client_config(version);
    let mut first =
        tls_connect_with(address, Some("localhost"), config.clone()).expect("a first handshake");
    assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    assert!(get(&mut first, "localhost").ends_with("from the backend"));
    let mut second =
        tls_connect_with(address, Some("localhost"), config).expect("a second handshake");
    let kind = second.conn.handshake_kind();
    assert!(get(&mut second, "localhost").ends_with("from the backend"));
    kind == Some(HandshakeKind::Resumed)
}

#[test]
fn a_client_resumes_its_session_with_tls_12_and_13() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(with_default_certificate());
    assert!(second_connection_resumes(address, &rustls::version::TLS12));
    assert!(second_connection_resumes(address, &rustls::version::TLS13));
}

#[test]
fn without_tls13_tickets_only_tls_12_resumes_by_session_id() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(TlsListenerConfig {
        send_tls13_tickets: 0,
        ..with_default_certificate()
    });
    assert!(second_connection_resumes(address, &rustls::version::TLS12));
    assert!(!second_connection_resumes(address, &rustls::version::TLS13));
}

/// `openssl s_client` to `address` with `arguments`, sending a request for `localhost` and
/// reading the answer (and so the tickets sent after a TLS 1.3 handshake) until the proxy
/// closes; its output. `timeout` bounds a server that never closes.
fn openssl_client(address: SocketAddr, arguments: &[&str]) -> String {
    let mut child = Command::new("timeout")
        .args([
            "10",
            "openssl",
            "s_client",
            "-ign_eof",
            "-servername",
            "localhost",
        ])
        .args(["-connect", &address.to_string()])
        .args(arguments)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl must be installed (.ci/install-test-tools installs it)");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let output = child.wait_with_output().expect("openssl ends");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn openssl_resumes_its_session_with_tls_12_and_13() {
    let Setup {
        address,
        worker: _worker,
        ..
    } = setup(with_default_certificate());
    let count =
        |output: &str, prefix: &str| output.lines().filter(|l| l.starts_with(prefix)).count();
    // TLS 1.2: `-reconnect` connects 5 more times with the first connection's session.
    let output = openssl_client(address, &["-tls1_2", "-reconnect"]);
    assert_eq!(
        (count(&output, "New, "), count(&output, "Reused, ")),
        (1, 5),
        "one full handshake, then 5 resumed: {output}"
    );
    // TLS 1.3: `-reconnect` does not wait for the tickets, which come after the handshake; the
    // session of a first connection that read its answer is saved, then offered by a second.
    let directory = temporary_directory("session");
    let session = directory.path().join("session.pem");
    let session = session.to_str().expect("a UTF-8 temporary path");
    let first = openssl_client(address, &["-tls1_3", "-sess_out", session]);
    assert!(
        first.contains("from the backend") && count(&first, "New, ") > 0,
        "{first}"
    );
    let second = openssl_client(address, &["-tls1_3", "-sess_in", session]);
    assert!(second.contains("from the backend"), "{second}");
    assert_eq!(
        (count(&second, "New, "), count(&second, "Reused, ") > 0),
        (0, true),
        "the second connection resumed: {second}"
    );
}
