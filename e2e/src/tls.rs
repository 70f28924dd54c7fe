//! TLS clients for tests: rustls connections that accept any certificate (tests check which
//! certificate is served, not its trust chain), and the certificate fixtures of `command/`.

use std::{
    net::{SocketAddr, TcpStream},
    sync::Arc,
};

use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::aws_lc_rs,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sozu_command_lib::request::CertificateAndKey;

use crate::DEADLINE;

/// The directory of the certificate fixtures.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

/// The text of a fixture file.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("read a fixture")
}

/// The certificate and key fixtures `{name}.pem` and `{name}.key`.
pub fn certificate(name: &str) -> CertificateAndKey {
    CertificateAndKey::new(
        fixture(&format!("{name}.pem")),
        fixture(&format!("{name}.key")),
    )
}

/// Accepts any certificate.
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
            &aws_lc_rs::default_provider().signature_verification_algorithms,
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
            &aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client of one TLS version that accepts any certificate.
pub fn client_config(version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[version])
        .expect("a valid client version")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_no_client_auth();
    Arc::new(config)
}

/// The ClientHello a TLS 1.3 rustls client sends for `server_name`.
pub fn client_hello(server_name: &str) -> Vec<u8> {
    let name = ServerName::try_from(server_name.to_string()).expect("a valid name");
    let mut connection =
        ClientConnection::new(client_config(&rustls::version::TLS13), name).expect("a client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("a ClientHello");
    hello
}

/// A TLS connection to the proxy.
pub type TlsClient = StreamOwned<ClientConnection, TcpStream>;

/// Connects with TLS and completes the handshake; `server_name` None sends no SNI. Every read
/// waits at most [`DEADLINE`].
pub fn tls_connect(
    address: SocketAddr,
    server_name: Option<&str>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<TlsClient, std::io::Error> {
    tls_connect_with(address, server_name, client_config(version))
}

/// Like [`tls_connect`], with a client configuration of the caller's: connections made with one
/// configuration share its session store, so a later one can resume an earlier one's session.
pub fn tls_connect_with(
    address: SocketAddr,
    server_name: Option<&str>,
    config: Arc<ClientConfig>,
) -> Result<TlsClient, std::io::Error> {
    let name = match server_name {
        Some(name) => ServerName::try_from(name.to_string()).expect("a valid name"),
        None => ServerName::IpAddress(address.ip().into()),
    };
    let connection = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(DEADLINE))?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}
