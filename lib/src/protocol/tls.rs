//! TLS termination with rustls: the server configuration of an HTTPS listener, its
//! certificates chosen by SNI, and the encrypted transport of a session's client socket.
//!
//! Certificates are found by the names they carry (subject alternative names and common name,
//! exact or `*.` wildcard) unless an order lists names explicitly; a client without SNI, or
//! with an unknown name, gets the listener's default certificate (or, without one, the most
//! recently added). A certificate's private key is decoded when it is loaded or, with
//! [`KeyCheck::PublicPart`] and [`KeyCheck::OnFirstUse`], at the first handshake that needs it:
//! the main process compares each key's public part with its certificate's (`key_pair`, cheap),
//! and a worker loads thousands of certificates without decoding their keys or chains (it
//! reads each leaf certificate's names and fingerprint only). A key or chain that fails then
//! fails those handshakes only (logged once), never the worker.
//! A certificate change swaps one immutable table for another under a lock,
//! so a handshake sees the old set or the new one, never a mix; connections already open keep
//! the certificate they were given.
//!
//! The transport ([`TlsStream`]) sits inside `crate::session::endpoint::Endpoint`: protocols read and
//! write plaintext as on a plain socket, and the handshake advances as bytes arrive.
//!
//! The crypto provider, the server configuration a listener's settings build, and the
//! seeding of the random number generator are in `config`.

use std::{
    collections::HashMap,
    io::{ErrorKind, IoSlice, Read, Write},
    sync::{Arc, OnceLock, RwLock},
};

use log::error;

use mio::net::TcpStream;
use rustls::{
    ServerConfig, ServerConnection,
    crypto::aws_lc_rs,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sozu_command_lib::{
    certificate::{self, CertificateError, CertificateFacts},
    request::{CertificateAndKey, Fingerprint},
};

use crate::{pool::Buffer, session::endpoint::Transfer};

mod config;
mod der;
mod key_pair;
mod key_pem;

pub use config::{
    check_server_settings, check_settings, default_cipher_suites, default_groups,
    seed_random_in_background, server_config,
};

/// Why a certificate or TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate, its chain or its key fail the command crate's checks (PEM, X.509).
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The certificate or its chain is not PEM.
    #[error("the certificate chain is not valid PEM")]
    ChainPem(#[source] rustls_pki_types::pem::Error),
    /// The private key is not PEM.
    #[error("the private key is not valid PEM")]
    KeyPem(#[source] rustls_pki_types::pem::Error),
    /// The private key is not a well-formed PKCS#8, PKCS#1 or SEC1 structure.
    #[error("the private key is not a well-formed PKCS#8, PKCS#1 RSA or SEC1 EC key")]
    KeyEncoding,
    /// The private key's type is not one rustls signs with.
    #[error("the private key type is not supported (RSA, ECDSA P-256/P-384/P-521 and Ed25519 are)")]
    KeyType,
    /// The private key is not the certificate's.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The certificate's public key cannot be read to compare the key with it.
    #[error("the certificate's public key info cannot be read")]
    CertificateKey,
    /// The private key is the certificate's by its public part, but does not decode: its
    /// private part is invalid.
    #[error("the private key does not decode")]
    KeyDecode(#[source] rustls::Error),
    /// A cipher suite name the proxy does not know; holds the name.
    #[error("unknown cipher suite `{0}`")]
    CipherSuite(String),
    /// A key exchange group name the proxy does not know; holds the name.
    #[error("unknown key exchange group `{0}`")]
    Group(String),
    /// The listener enables no TLS version.
    #[error("no TLS version enabled")]
    NoVersion,
    /// rustls refused the combination of versions, suites and groups.
    #[error("the TLS settings are inconsistent")]
    Settings(#[source] rustls::Error),
}

/// When a certificate's private key is checked against the certificate, and decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyCheck {
    /// While loading, the key is decoded: a key that does not decode or does not match is
    /// refused then.
    #[default]
    Now,
    /// While loading, the public part the key's encoding carries is compared with the
    /// certificate's (a key that carries none, an EC key without its point or an Ed25519 key
    /// in PKCS#8 v1, is decoded to compute it): a key of another certificate, of a type rustls
    /// does not sign with, or not a key at all is refused then, at a small part of the cost of
    /// decoding an RSA key. The key is decoded at the first handshake that needs it, so a key
    /// whose private part alone is corrupt fails those handshakes. The main process's check.
    PublicPart,
    /// Nothing while loading but the leaf certificate's names, validity and fingerprint
    /// ([`certificate::inspect_leaf`]): the chain and the key are decoded, and the key
    /// compared, at the first handshake that needs the certificate. For a worker whose orders
    /// come from a main process that checked each pair with [`KeyCheck::PublicPart`] before
    /// sending it.
    OnFirstUse,
}

/// A certificate ready to serve, with what identifies it.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The SHA-256 of the certificate (DER), which orders use to name it.
    pub fingerprint: Fingerprint,
    /// The names the certificate serves (exact or `*.suffix`), matched against the client's SNI.
    pub names: Vec<String>,
    /// The chain and signing key rustls serves, decoded now or on first use.
    key: Arc<ServedKey>,
}

impl LoadedCertificate {
    /// The chain and signing key to serve, decoded on the first call for a certificate loaded
    /// with [`KeyCheck::OnFirstUse`]; `None` when they do not decode or do not match (said
    /// once at `error!`): the handshakes that would serve it fail.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.key
            .decoded
            .get_or_init(|| {
                let pending = self.key.pending.as_ref()?;
                certified_key(&pending.certificate, pending.leaf.as_ref())
                    .map(Arc::new)
                    .map_err(|error| {
                        error!(
                            "certificate {}: {error}; handshakes that need it fail",
                            self.fingerprint
                        );
                    })
                    .ok()
            })
            .clone()
    }
}

/// The chain and signing key of a certificate, or what decodes them until first use.
struct ServedKey {
    /// Kept only when decoding waits for first use.
    pending: Option<Pending>,
    /// The decoded chain and key; set at load with [`KeyCheck::Now`]. `None` inside: they
    /// failed to decode.
    decoded: OnceLock<Option<Arc<CertifiedKey>>>,
}

/// What decodes a certificate's chain and key at first use.
struct Pending {
    /// The certificate, its chain and its key as ordered, in PEM: in a worker, the text its
    /// state keeps ([`load_shared_certificate_with_facts`]), not a copy (10,000 copies of the
    /// keys and chains cost 17 MB and their page faults).
    certificate: Arc<CertificateAndKey>,
    /// The leaf certificate decoded at load, when the certificate's text holds it alone
    /// ([`certificate::holds_leaf_alone`]): not decoded again at first use.
    leaf: Option<CertificateDer<'static>>,
}

impl std::fmt::Debug for ServedKey {
    /// Never the key: only whether it was decoded.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedKey")
            .field("decoded", &self.decoded.get().map(Option::is_some))
            .finish()
    }
}

/// Reads a certificate's fingerprint and names, and checks its key as `check` says
/// ([`check_key`]).
pub fn load_certificate(
    certificate: &CertificateAndKey,
    check: KeyCheck,
) -> Result<LoadedCertificate, TlsError> {
    load_certificate_with_facts(certificate, check).map(|(loaded, _)| loaded)
}

/// [`load_certificate`], with the facts of the certificate it read, for a caller whose state
/// keeps them ([`sozu_command_lib::state::Checked::with_certificate`]).
pub fn load_certificate_with_facts(
    certificate: &CertificateAndKey,
    check: KeyCheck,
) -> Result<(LoadedCertificate, CertificateFacts), TlsError> {
    load_with_facts(certificate, || Arc::new(certificate.clone()), check)
}

/// [`load_certificate_with_facts`] of a certificate the caller keeps too (a worker's state,
/// [`sozu_command_lib::state::Checked::with_shared_certificate`]): a certificate whose
/// decoding waits for its first use holds `certificate` itself, not a copy of its text.
pub fn load_shared_certificate_with_facts(
    certificate: &Arc<CertificateAndKey>,
    check: KeyCheck,
) -> Result<(LoadedCertificate, CertificateFacts), TlsError> {
    load_with_facts(certificate, || Arc::clone(certificate), check)
}

/// [`load_certificate_with_facts`], `shared` giving the text a certificate whose decoding
/// waits for its first use holds.
fn load_with_facts(
    certificate: &CertificateAndKey,
    shared: impl FnOnce() -> Arc<CertificateAndKey>,
    check: KeyCheck,
) -> Result<(LoadedCertificate, CertificateFacts), TlsError> {
    let (facts, leaf) = match check {
        KeyCheck::OnFirstUse => certificate::inspect_leaf(certificate)?,
        KeyCheck::Now | KeyCheck::PublicPart => certificate::inspect_with_leaf(certificate)?,
    };
    let key = match check_key(certificate, &leaf, check)? {
        Some(decoded) => ServedKey {
            pending: None,
            decoded: OnceLock::from(Some(Arc::new(decoded))),
        },
        None => ServedKey {
            pending: Some(Pending {
                leaf: certificate::holds_leaf_alone(&certificate.certificate).then_some(leaf),
                certificate: shared(),
            }),
            decoded: OnceLock::new(),
        },
    };
    let loaded = LoadedCertificate {
        fingerprint: facts.fingerprint.clone(),
        names: facts.names.clone(),
        key: Arc::new(key),
    };
    Ok((loaded, facts))
}

/// [`load_certificate_with_facts`] of a certificate whose facts the caller was given by a
/// process it trusts: a worker's main process, which read them while checking the
/// certificate and its key ([`KeyCheck::PublicPart`]). With [`KeyCheck::OnFirstUse`], nothing
/// of the certificate is read now, not even its leaf (no PEM decoding, no X.509 parsing, no
/// hash): it is served for the names of `facts` under their fingerprint, and the whole chain
/// and the key are decoded, and compared, at the first handshake that needs them. With
/// another check, which decodes the certificate anyway, `facts` are not used: the certificate
/// is loaded as [`load_shared_certificate_with_facts`] loads it. The certificate served
/// holds `certificate` itself, not a copy of its text.
pub fn load_certificate_given_facts(
    certificate: &Arc<CertificateAndKey>,
    facts: CertificateFacts,
    check: KeyCheck,
) -> Result<(LoadedCertificate, CertificateFacts), TlsError> {
    if check != KeyCheck::OnFirstUse {
        return load_shared_certificate_with_facts(certificate, check);
    }
    let loaded = LoadedCertificate {
        fingerprint: facts.fingerprint.clone(),
        names: facts.names.clone(),
        key: Arc::new(ServedKey {
            pending: Some(Pending {
                certificate: Arc::clone(certificate),
                leaf: None,
            }),
            decoded: OnceLock::new(),
        }),
    };
    Ok((loaded, facts))
}

/// What [`load_certificate`] checks, for a caller that keeps nothing it loads (the main
/// process), with the facts of the certificate it read.
pub fn check_certificate(
    certificate: &CertificateAndKey,
    check: KeyCheck,
) -> Result<CertificateFacts, TlsError> {
    let (facts, leaf) = certificate::inspect_with_leaf(certificate)?;
    check_key(certificate, &leaf, check).map(|_| facts)
}

/// The checks of a certificate's key while loading: with [`KeyCheck::Now`], the decoded chain
/// and key; with [`KeyCheck::PublicPart`], the comparison of their public parts (`leaf`: the
/// leaf certificate's DER, decoded by [`certificate::inspect_with_leaf`]).
fn check_key(
    certificate: &CertificateAndKey,
    leaf: &[u8],
    check: KeyCheck,
) -> Result<Option<CertifiedKey>, TlsError> {
    match check {
        KeyCheck::Now => certified_key(certificate, None).map(Some),
        KeyCheck::PublicPart => compare_keys(&private_key(certificate)?, leaf).map(|()| None),
        KeyCheck::OnFirstUse => Ok(None),
    }
}

/// Decodes a certificate, its chain and its key, and checks that the key matches; `leaf`: the
/// certificate decoded already, all its text holds.
fn certified_key(
    certificate: &CertificateAndKey,
    leaf: Option<&CertificateDer<'static>>,
) -> Result<CertifiedKey, TlsError> {
    let mut chain: Vec<CertificateDer<'static>> = match leaf {
        Some(leaf) => vec![leaf.clone()],
        None => CertificateDer::pem_slice_iter(certificate.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(TlsError::ChainPem)?,
    };
    for pem in &certificate.certificate_chain {
        for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            chain.push(der.map_err(TlsError::ChainPem)?);
        }
    }
    let key = private_key(certificate)?;
    compare_keys(&key, chain.first().ok_or(CertificateError::NoCertificate)?)?;
    let signing_key = aws_lc_rs::sign::any_supported_type(&key).map_err(TlsError::KeyDecode)?;
    Ok(CertifiedKey::new(chain, signing_key))
}

fn private_key(certificate: &CertificateAndKey) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_pem::decode(certificate.key.as_bytes()).map_err(TlsError::KeyPem)
}

/// Whether `key` is the key of `leaf` (a certificate's DER), by their public parts
/// ([`key_pair::compare`]); a key whose encoding does not carry its public part is decoded to
/// compute it.
fn compare_keys(key: &PrivateKeyDer<'_>, leaf: &[u8]) -> Result<(), TlsError> {
    let certificate_key = match key_pair::compare(key, leaf) {
        Ok(key_pair::Comparison::Matches) => return Ok(()),
        Ok(key_pair::Comparison::NeedsDecoding(certificate_key)) => certificate_key,
        Err(key_pair::Refusal::Malformed) => return Err(TlsError::KeyEncoding),
        Err(key_pair::Refusal::Unsupported) => return Err(TlsError::KeyType),
        Err(key_pair::Refusal::Mismatch) => return Err(TlsError::KeyMismatch),
        Err(key_pair::Refusal::CertificateKey) => return Err(TlsError::CertificateKey),
    };
    let signing_key = aws_lc_rs::sign::any_supported_type(key).map_err(TlsError::KeyDecode)?;
    match signing_key.public_key() {
        Some(public_key) if public_key.as_ref() == certificate_key => Ok(()),
        _ => Err(TlsError::KeyMismatch),
    }
}

/// The certificates of one listener, as an immutable table swapped whole on change.
#[derive(Debug, Default)]
struct CertificateTable {
    by_fingerprint: HashMap<Fingerprint, LoadedCertificate>,
    /// Exact names, lowercase, to fingerprints in the order they were added.
    exact: HashMap<String, Vec<Fingerprint>>,
    /// `*.suffix` names by suffix.
    wildcard: HashMap<String, Vec<Fingerprint>>,
    /// The listener's own certificate.
    default: Option<LoadedCertificate>,
    /// Fingerprints in the order they were added.
    order: Vec<Fingerprint>,
}

impl CertificateTable {
    fn add(&mut self, certificate: LoadedCertificate) {
        let fingerprint = certificate.fingerprint.clone();
        for name in &certificate.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_string()).or_default(),
                None => self.exact.entry(name).or_default(),
            }
            .push(fingerprint.clone());
        }
        self.order.push(fingerprint.clone());
        self.by_fingerprint.insert(fingerprint, certificate);
    }

    fn remove(&mut self, fingerprint: &Fingerprint) -> bool {
        if self.by_fingerprint.remove(fingerprint).is_none() {
            return false;
        }
        for list in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            list.retain(|f| f != fingerprint);
        }
        self.exact.retain(|_, list| !list.is_empty());
        self.wildcard.retain(|_, list| !list.is_empty());
        self.order.retain(|f| f != fingerprint);
        true
    }

    /// The certificate for an SNI name: exact, then wildcard, then the default.
    fn find(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = server_name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let newest =
                |list: &Vec<Fingerprint>| list.last().and_then(|f| self.by_fingerprint.get(f));
            self.exact.get(&name).and_then(newest).or_else(|| {
                let (_, suffix) = name.split_once('.')?;
                self.wildcard.get(suffix).and_then(newest)
            })
        });
        by_name
            .or(self.default.as_ref())
            .or_else(|| self.order.last().and_then(|f| self.by_fingerprint.get(f)))
            .and_then(LoadedCertificate::certified_key)
    }
}

/// Chooses the certificate of a handshake by SNI.
///
/// Changes happen under the write lock, a replacement as one change, so a handshake (which
/// reads under the read lock) sees the certificates before or after a change, never between.
#[derive(Debug, Default)]
pub struct CertificateResolver {
    table: RwLock<CertificateTable>,
}

impl CertificateResolver {
    /// Applies `change` to the table.
    fn update<T>(&self, change: impl FnOnce(&mut CertificateTable) -> T) -> T {
        match self.table.write() {
            Ok(mut table) => change(&mut table),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }

    /// Serves `certificate` for its names from the next handshake on.
    pub fn add(&self, certificate: LoadedCertificate) {
        self.update(|table| table.add(certificate));
    }

    /// Swaps `old` for `new` in one step.
    pub fn replace(&self, old: &Fingerprint, new: LoadedCertificate) {
        self.update(|table| {
            table.remove(old);
            table.add(new);
        });
    }

    /// Stops serving the certificate with this fingerprint; `false` if the listener had none.
    pub fn remove(&self, fingerprint: &Fingerprint) -> bool {
        self.update(|table| table.remove(fingerprint))
    }

    /// Sets the certificate served when no name matches (the listener's own), or removes it.
    pub fn set_default(&self, certificate: Option<LoadedCertificate>) {
        self.update(|table| table.default = certificate);
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match self.table.read() {
            Ok(table) => table.find(client_hello.server_name()),
            Err(poisoned) => poisoned.into_inner().find(client_hello.server_name()),
        }
    }
}

/// The encrypted side of a client socket.
pub struct TlsStream {
    connection: ServerConnection,
    /// Ciphertext read from the socket before TLS started (what followed a PROXY header in
    /// the same read), taken before the socket's next bytes. `None` once taken, never empty.
    early_input: Option<Buffer>,
    /// rustls may have plaintext, or an end, to give: false once its reader said it had
    /// nothing or gave less than the room offered, until more TLS input is taken. A read then
    /// goes to the socket without asking rustls first.
    may_have_plaintext: bool,
    /// The client's close_notify was received: rustls's reader is asked every time, and says
    /// so once the plaintext before it was read.
    peer_closed: bool,
}

/// Several slices of at most this many bytes in all are written as one ([`TlsStream::write`]).
const JOIN_LIMIT: usize = 2048;

thread_local! {
    /// Where [`TlsStream::write`] joins small slices: one per worker thread, so that a write
    /// neither zeroes a fresh array on the stack nor makes a connection any larger.
    static JOINED: std::cell::RefCell<[u8; JOIN_LIMIT]> =
        const { std::cell::RefCell::new([0; JOIN_LIMIT]) };
}

/// The socket as rustls reads it, noting whether a read gave less than the room offered.
struct ShortReads<'a> {
    socket: &'a mut TcpStream,
    was_short: bool,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let count = self.socket.read(buf)?;
        self.was_short = count < buf.len();
        Ok(count)
    }
}

impl TlsStream {
    /// A server connection whose first input is `already_read`, then the socket.
    pub fn new(
        config: Arc<ServerConfig>,
        buffer_limit: usize,
        already_read: Buffer,
    ) -> Result<TlsStream, rustls::Error> {
        let mut connection = ServerConnection::new(config)?;
        connection.set_buffer_limit(Some(buffer_limit));
        Ok(TlsStream {
            connection,
            early_input: (!already_read.is_empty()).then_some(already_read),
            may_have_plaintext: true,
            peer_closed: false,
        })
    }

    /// The name the client asked for by SNI, once the ClientHello was read.
    pub fn server_name(&self) -> Option<&str> {
        self.connection.server_name()
    }

    /// The protocol the client chose by ALPN, once the handshake got that far.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.connection.alpn_protocol()
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.connection.is_handshaking()
    }

    /// Ciphertext is waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.connection.wants_write()
    }

    /// Reads plaintext into `space`, pulling TLS records from the early input, then from
    /// `socket`, as needed; handshake messages the records call for are sent at once. `readable`
    /// says whether the socket may have bytes; it is cleared when the socket is drained (a
    /// short read, or `EAGAIN`).
    pub fn read(
        &mut self,
        socket: &mut TcpStream,
        space: &mut [u8],
        readable: &mut bool,
    ) -> Transfer {
        loop {
            if self.may_have_plaintext {
                match self.connection.reader().read(space) {
                    Ok(0) => return Transfer::Closed,
                    Ok(count) => {
                        self.may_have_plaintext = count == space.len() || self.peer_closed;
                        return Transfer::Moved(count);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        self.may_have_plaintext = false;
                    }
                    Err(_) => return Transfer::Closed,
                }
            }
            let received = match self.early_input.as_mut() {
                Some(early) => {
                    let received = self.connection.read_tls(&mut early.data());
                    if let Ok(count) = received {
                        early.consume(count);
                    }
                    if early.is_empty() {
                        self.early_input = None;
                    }
                    received
                }
                None if !*readable => return Transfer::WouldBlock,
                None => {
                    let mut reads = ShortReads {
                        socket,
                        was_short: false,
                    };
                    let received = self.connection.read_tls(&mut reads);
                    if reads.was_short {
                        // The kernel gave less than asked: the socket is drained, and the next
                        // bytes come with an event. No call just to see `EAGAIN`.
                        *readable = false;
                    }
                    received
                }
            };
            self.may_have_plaintext = true;
            match received {
                Ok(0) => {
                    // End of stream without close_notify: whatever was decrypted was read.
                    *readable = false;
                    return Transfer::Closed;
                }
                Ok(_) => {
                    match self.connection.process_new_packets() {
                        Ok(state) => self.peer_closed = state.peer_has_closed(),
                        Err(error) => {
                            log::debug!("TLS error: {error}");
                            // Send the alert rustls prepared, best effort.
                            let _ = self.flush(socket);
                            return Transfer::Error(ErrorKind::InvalidData);
                        }
                    }
                    // Handshake messages and tickets go out as soon as they exist.
                    if let Err(transfer) = self.flush(socket) {
                        return transfer;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    *readable = false;
                    return Transfer::WouldBlock;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Transfer::from_error(&error),
            }
        }
    }

    /// Encrypts plaintext and sends what the socket takes. Returns how much plaintext was
    /// accepted; the ciphertext may still be pending ([`TlsStream::wants_write`]).
    pub fn write(
        &mut self,
        socket: &mut TcpStream,
        slices: &[IoSlice<'_>],
        writable: &mut bool,
    ) -> Transfer {
        if let Err(transfer) = self.flush_if(socket, writable) {
            return transfer;
        }
        let offered: usize = slices.iter().map(|slice| slice.len()).sum();
        let written = match self.write_joined(slices, offered) {
            Some(written) => written,
            None => self.connection.writer().write_vectored(slices),
        };
        let accepted = match written {
            Ok(0) => return Transfer::WouldBlock,
            Ok(count) => count,
            Err(error) => return Transfer::from_error(&error),
        };
        if let Err(transfer) = self.flush_if(socket, writable) {
            return transfer;
        }
        Transfer::Moved(accepted)
    }

    /// Encrypts several slices of `offered` bytes in all from one, when they fit
    /// `JOINED`: rustls allocates to gather slices, and a small message (a head and a short
    /// body) is the common case. `None`: not joined.
    fn write_joined(
        &mut self,
        slices: &[IoSlice<'_>],
        offered: usize,
    ) -> Option<std::io::Result<usize>> {
        if slices.len() < 2 || offered > JOIN_LIMIT {
            return None;
        }
        JOINED
            .try_with(|joined| {
                let mut joined = joined.try_borrow_mut().ok()?;
                let mut end = 0;
                for slice in slices {
                    let start = end;
                    end += slice.len();
                    joined.get_mut(start..end)?.copy_from_slice(slice);
                }
                let message = joined.get(..end)?;
                Some(self.connection.writer().write(message))
            })
            .ok()
            .flatten()
    }

    fn flush_if(&mut self, socket: &mut TcpStream, writable: &mut bool) -> Result<(), Transfer> {
        if !*writable {
            return Ok(());
        }
        match self.flush(socket) {
            Err(Transfer::WouldBlock) => {
                *writable = false;
                Ok(())
            }
            other => other,
        }
    }

    /// Writes pending ciphertext until the socket would block (`Err(WouldBlock)`) or nothing
    /// is left (`Ok`).
    pub fn flush(&mut self, socket: &mut TcpStream) -> Result<(), Transfer> {
        while self.connection.wants_write() {
            match self.connection.write_tls(socket) {
                Ok(0) => return Err(Transfer::Closed),
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return Err(Transfer::WouldBlock);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(Transfer::from_error(&error)),
            }
        }
        Ok(())
    }

    /// Queues a close_notify alert.
    pub fn close(&mut self) {
        self.connection.send_close_notify();
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.connection.is_handshaking())
            .field("server_name", &self.connection.server_name())
            .finish()
    }
}

#[cfg(test)]
mod tests;
