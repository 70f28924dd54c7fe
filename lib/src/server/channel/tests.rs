//! Issue 17, aim 4: a worker reads the facts its main process gives with a certificate order,
//! and serves the certificate for them without reading it before its first handshake.

use std::{net::SocketAddr, sync::Arc};

use rustls::{
    ClientConnection, ServerConnection,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use sozu_command_lib::{
    certificate::CertificateFacts,
    channel::Channel,
    request::{
        AddCertificate, CertificateAndKey, HttpListenerConfig, HttpsListenerConfig, Order, Request,
        TlsListenerConfig, write_certificate_facts, write_order,
    },
    response::{Response, ResponseStatus},
    scm::Listeners,
};

use crate::{
    protocol::tls::{KeyCheck, check_certificate},
    server::{Server, ServerConfig},
    session::endpoint::Ready,
    testing::client_trusting_anything,
};

const LOCALHOST: &str = include_str!("../../../../command/tests/fixtures/localhost.pem");
const LOCALHOST_KEY: &str = include_str!("../../../../command/tests/fixtures/localhost.key");
const LOCALHOST2: &str = include_str!("../../../../command/tests/fixtures/localhost2.pem");
const LOCALHOST2_KEY: &str = include_str!("../../../../command/tests/fixtures/localhost2.key");
const EXAMPLE: &str = include_str!("../../../../command/tests/fixtures/example.pem");
const EXAMPLE_KEY: &str = include_str!("../../../../command/tests/fixtures/example.key");

/// The HTTPS listener of the test's worker.
fn address() -> SocketAddr {
    "127.0.0.1:1443".parse().expect("an address")
}

/// The `ADD_CERTIFICATE` of `certificate` and `key`.
fn add(certificate: &str, key: &str) -> Order {
    Order::AddCertificate(AddCertificate {
        address: address(),
        certificate: CertificateAndKey::new(certificate, key),
        allow_expired: false,
    })
}

/// The line the main process writes for `order` with `facts`.
fn line_with_facts(id: &str, order: &Order, facts: &CertificateFacts) -> Vec<u8> {
    let mut line = format!(r#"{{"id":"{id}","order":"#).into_bytes();
    write_order(order, &mut line).expect("an order is written");
    line.extend_from_slice(br#","certificate_facts":"#);
    write_certificate_facts(facts, &mut line).expect("facts are written");
    line.push(b'}');
    line
}

/// The facts the main process reads while checking `certificate` and `key`, served for
/// `name` instead of the certificate's own names.
fn facts_for(certificate: &str, key: &str, name: &str) -> CertificateFacts {
    let mut facts = check_certificate(
        &CertificateAndKey::new(certificate, key),
        KeyCheck::PublicPart,
    )
    .expect("the main process accepts it");
    facts.names = vec![name.to_string()];
    facts
}

/// The certificate the worker's listener serves to a client asking for `name`, through a
/// handshake in memory; `None` when the handshake fails.
fn served(server: &Server, name: &str) -> Option<CertificateDer<'static>> {
    let settings = server
        .http_listeners
        .get(&address())
        .and_then(|listener| listener.tls.as_ref())
        .expect("an HTTPS listener");
    let mut proxy = ServerConnection::new(settings.config.clone()).expect("a server connection");
    let client_config = client_trusting_anything();
    let name = ServerName::try_from(name.to_string()).expect("a name");
    let mut client =
        ClientConnection::new(Arc::new(client_config), name).expect("a client connection");
    // A TLS 1.3 handshake is two flights each way: a few rounds at most.
    for _ in 0..8 {
        if !client.is_handshaking() && !proxy.is_handshaking() {
            break;
        }
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).expect("written to memory");
        proxy
            .read_tls(&mut bytes.as_slice())
            .expect("read from memory");
        proxy.process_new_packets().ok()?;
        bytes.clear();
        proxy.write_tls(&mut bytes).expect("written to memory");
        client
            .read_tls(&mut bytes.as_slice())
            .expect("read from memory");
        client.process_new_packets().ok()?;
    }
    client
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
}

/// Issue 17, aim 4: a worker given the facts of a certificate with its order answers SNI for
/// the names given and serves the certificate at the first handshake; a key that is not the
/// certificate's fails the handshakes that need it, as without facts; an order without facts
/// is read as before.
#[test]
fn a_worker_serves_a_certificate_for_the_facts_given_with_its_order() {
    let (mut main, channel) =
        Channel::<Request, Response>::pair(4096, 1 << 20).expect("a channel pair");
    let config = ServerConfig {
        max_connections: 16,
        key_check: KeyCheck::OnFirstUse,
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, channel, Listeners::default()).expect("a worker");
    let listener = Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(address()),
        tls: TlsListenerConfig::default(),
    });
    main.write_message(&Request::new("0", listener))
        .expect("written");
    let given = facts_for(LOCALHOST, LOCALHOST_KEY, "given.test");
    let mismatched = facts_for(LOCALHOST2, LOCALHOST2_KEY, "mismatch.test");
    for line in [
        line_with_facts("1", &add(LOCALHOST, LOCALHOST_KEY), &given),
        line_with_facts("2", &add(LOCALHOST2, EXAMPLE_KEY), &mismatched),
    ] {
        main.queue_json(&line).expect("queued");
    }
    main.write_message(&Request::new("3", add(EXAMPLE, EXAMPLE_KEY)))
        .expect("written");
    drop(main.writable());
    server.channel_ready(Ready::READABLE);
    main.blocking().expect("blocking");
    for id in ["0", "1", "2", "3"] {
        let response = main.read_message().expect("an answer").expect("not closed");
        assert_eq!(response.id, id);
        assert_eq!(response.status, ResponseStatus::Ok, "{response:?}");
    }
    let localhost = CertificateDer::pem_slice_iter(LOCALHOST.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let example = CertificateDer::pem_slice_iter(EXAMPLE.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    assert_eq!(served(&server, "given.test"), Some(localhost));
    assert_eq!(served(&server, "mismatch.test"), None, "no key to serve");
    assert_eq!(served(&server, "example.com"), Some(example.clone()));
    assert_eq!(
        served(&server, "localhost"),
        Some(example),
        "the names given are served, not the certificate's: the newest answers others"
    );
    assert_eq!(
        server.state.certificates.get(&address()).map(|c| c.len()),
        Some(3)
    );
}
