//! The TLS ClientHello, read without terminating TLS: the server name (SNI, RFC 6066 §3) and
//! the ALPN protocols (RFC 7301), from the first bytes a client sends.
//!
//! A ClientHello may span several TLS records (RFC 8446 §5.1 lets a handshake message be
//! fragmented over records) and each record may arrive in as many TCP segments, so the reader
//! takes every byte read so far and answers [`Hello::Partial`] until the whole message is
//! there. Every length is checked against what is left; nothing here indexes past a slice or
//! overflows, whatever the bytes. The message is bounded by [`MAX_HELLO`].

/// The largest ClientHello read. Real ones stay below a few kilobytes (post-quantum key
/// shares included); a longer one is taken as not a ClientHello.
pub const MAX_HELLO: usize = 16_384;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const NAME_TYPE_HOST: u8 = 0;
const RECORD_HEADER: usize = 5;

/// What a ClientHello says about where the connection should go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// The host name of the server name extension, as sent (without case folding).
    pub server_name: Option<&'a [u8]>,
    /// The ALPN protocols, in the client's order.
    pub alpn: Vec<&'a [u8]>,
}

/// The outcome of reading the first bytes as a ClientHello (`T` is what was read of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello<T> {
    /// A ClientHello so far; more bytes are needed.
    Partial,
    /// A whole ClientHello; `T` is what was read of it.
    Complete(T),
    /// Not a ClientHello (another protocol, or a malformed one).
    Invalid,
}

/// Reads `data`, the first bytes of a connection, as TLS records carrying a ClientHello.
///
/// The handshake message is gathered from the fragments of consecutive handshake records
/// into `scratch` when it spans several records (reused between calls to avoid allocation).
pub fn read<'s>(data: &[u8], scratch: &'s mut Vec<u8>) -> Hello<ClientHello<'s>> {
    scratch.clear();
    let mut rest = data;
    let mut message_length: Option<usize> = None;
    loop {
        if let Some(length) = message_length
            && scratch.len() >= length
        {
            scratch.truncate(length);
            break;
        }
        let Some(header) = rest.get(..RECORD_HEADER) else {
            return if is_record_start(rest) {
                Hello::Partial
            } else {
                Hello::Invalid
            };
        };
        if !is_record_start(header) {
            return Hello::Invalid;
        }
        let fragment_length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if fragment_length == 0 {
            return Hello::Invalid;
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + fragment_length) else {
            return Hello::Partial;
        };
        rest = rest
            .get(RECORD_HEADER + fragment_length..)
            .unwrap_or_default();
        scratch.extend_from_slice(fragment);
        if message_length.is_none() {
            match handshake_length(scratch) {
                Some(Ok(length)) => message_length = Some(length),
                Some(Err(())) => return Hello::Invalid,
                None => {}
            }
        }
        if scratch.len() > MAX_HELLO + 4 {
            return Hello::Invalid;
        }
    }
    match parse_client_hello(scratch.get(4..).unwrap_or_default()) {
        Some(hello) => Hello::Complete(hello),
        None => Hello::Invalid,
    }
}

/// Whether `bytes` can begin a TLS handshake record: type 22, version 3.x (x ≤ 4).
fn is_record_start(bytes: &[u8]) -> bool {
    match bytes {
        [] => true,
        [kind] => *kind == RECORD_HANDSHAKE,
        [kind, major, minor, ..] => *kind == RECORD_HANDSHAKE && *major == 3 && *minor <= 4,
        [kind, major] => *kind == RECORD_HANDSHAKE && *major == 3,
    }
}

/// The whole length of the handshake message (header included) once its header is there;
/// an error when it is not a ClientHello or too long.
fn handshake_length(message: &[u8]) -> Option<Result<usize, ()>> {
    let header = message.get(..4)?;
    if header[0] != HANDSHAKE_CLIENT_HELLO {
        return Some(Err(()));
    }
    let length =
        (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
    if length > MAX_HELLO {
        return Some(Err(()));
    }
    Some(Ok(length + 4))
}

/// A cursor over a byte slice that never reads past it.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let taken = self.rest.get(..count)?;
        self.rest = self.rest.get(count..)?;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// A vector with a one-byte length.
    fn vector8(&mut self) -> Option<&'a [u8]> {
        let length = self.u8()?;
        self.take(usize::from(length))
    }

    /// A vector with a two-byte length.
    fn vector16(&mut self) -> Option<Reader<'a>> {
        let length = self.u16()?;
        self.take(usize::from(length)).map(|rest| Reader { rest })
    }
}

/// The body of a ClientHello (RFC 8446 §4.1.2): version, random, session id, cipher suites,
/// compression methods, then the extensions, which older clients may leave out.
fn parse_client_hello(body: &[u8]) -> Option<ClientHello<'_>> {
    let mut reader = Reader { rest: body };
    reader.take(2 + 32)?;
    reader.vector8()?;
    reader.vector16()?;
    reader.vector8()?;
    let mut hello = ClientHello::default();
    if reader.rest.is_empty() {
        return Some(hello);
    }
    let mut extensions = reader.vector16()?;
    while !extensions.rest.is_empty() {
        let kind = extensions.u16()?;
        let mut extension = extensions.vector16()?;
        match kind {
            EXTENSION_SERVER_NAME => hello.server_name = server_name(&mut extension)?,
            EXTENSION_ALPN => hello.alpn = protocols(&mut extension)?,
            _ => {}
        }
    }
    Some(hello)
}

/// The host name of a server_name extension; other name types are skipped.
fn server_name<'a>(extension: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    let mut names = extension.vector16()?;
    while !names.rest.is_empty() {
        let kind = names.u8()?;
        let length = names.u16()?;
        let name = names.take(usize::from(length))?;
        if kind == NAME_TYPE_HOST {
            return Some(Some(name));
        }
    }
    Some(None)
}

fn protocols<'a>(extension: &mut Reader<'a>) -> Option<Vec<&'a [u8]>> {
    let mut list = extension.vector16()?;
    let mut protocols = Vec::new();
    while !list.rest.is_empty() {
        protocols.push(list.vector8()?);
    }
    Some(protocols)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, pki_types::ServerName};

    use super::*;

    /// The first flight of a rustls client for `name` offering `alpn`.
    pub(crate) fn rustls_client_hello(name: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let server = ServerName::try_from(name.to_string()).expect("a valid test name");
        let mut client =
            ClientConnection::new(Arc::new(config), server).expect("a client for the test");
        let mut hello = Vec::new();
        client.write_tls(&mut hello).expect("writing to a Vec");
        hello
    }

    fn complete(data: &[u8]) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        let mut scratch = Vec::new();
        match read(data, &mut scratch) {
            Hello::Complete(hello) => (
                hello.server_name.map(<[u8]>::to_vec),
                hello.alpn.iter().map(|p| p.to_vec()).collect(),
            ),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn rustls_client_hello_gives_its_name_and_protocols() {
        let hello = rustls_client_hello("a.test", &[b"h2", b"http/1.1"]);
        let (name, alpn) = complete(&hello);
        assert_eq!(name.as_deref(), Some(&b"a.test"[..]));
        assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn openssl_client_hello_gives_its_name_and_protocols() {
        // Captured from `openssl s_client -connect 127.0.0.1:4433 -servername b.test
        // -alpn h2,http/1.1` (OpenSSL 3): see data/README.md.
        let hello = include_bytes!("data/openssl-b.test-h2.bin");
        let (name, alpn) = complete(hello);
        assert_eq!(name.as_deref(), Some(&b"b.test"[..]));
        assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn curl_client_hello_gives_its_name() {
        // Captured from `curl -k https://c.test:4433/ --resolve c.test:4433:127.0.0.1`.
        let hello = include_bytes!("data/curl-c.test.bin");
        let (name, alpn) = complete(hello);
        assert_eq!(name.as_deref(), Some(&b"c.test"[..]));
        assert!(alpn.contains(&b"http/1.1".to_vec()), "{alpn:?}");
    }

    #[test]
    fn every_prefix_of_a_hello_is_partial() {
        let hello = rustls_client_hello("a.test", &[b"h2"]);
        let mut scratch = Vec::new();
        for end in 0..hello.len() {
            assert_eq!(read(&hello[..end], &mut scratch), Hello::Partial, "{end}");
        }
    }

    /// Splits the handshake message of `hello` (one record) into records of `size` bytes.
    fn fragmented(hello: &[u8], size: usize) -> Vec<u8> {
        let message = &hello[RECORD_HEADER..];
        let mut records = Vec::new();
        for chunk in message.chunks(size) {
            records.extend_from_slice(&[RECORD_HANDSHAKE, 3, 1]);
            records.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            records.extend_from_slice(chunk);
        }
        records
    }

    #[test]
    fn a_hello_fragmented_over_many_records_is_read_whole() {
        let hello = rustls_client_hello("fragmented.a.test", &[b"h2"]);
        for size in [1, 7, 100] {
            let records = fragmented(&hello, size);
            let (name, _) = complete(&records);
            assert_eq!(name.as_deref(), Some(&b"fragmented.a.test"[..]));
            let mut scratch = Vec::new();
            assert_eq!(
                read(&records[..records.len() - 1], &mut scratch),
                Hello::Partial
            );
        }
    }

    #[test]
    fn other_protocols_are_invalid_at_once() {
        let mut scratch = Vec::new();
        for data in [
            &b"G"[..],
            b"GET / HTTP/1.1\r\n",
            b"SSH-2.0-",
            b"\x16\x02",
            b"\x16\x03\x09",
        ] {
            assert_eq!(read(data, &mut scratch), Hello::Invalid, "{data:?}");
        }
        // A ServerHello (handshake type 2) is not a ClientHello.
        assert_eq!(
            read(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", &mut scratch),
            Hello::Invalid
        );
        // A hello longer than the bound.
        assert_eq!(
            read(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff", &mut scratch),
            Hello::Invalid
        );
    }

    #[test]
    fn a_hello_without_extensions_has_no_name() {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0, 0, body.len() as u8];
        message.extend_from_slice(&body);
        let mut record = vec![RECORD_HANDSHAKE, 3, 1, 0, message.len() as u8];
        record.extend_from_slice(&message);
        assert_eq!(complete(&record), (None, vec![]));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            let mut scratch = Vec::new();
            let _ = read(&data, &mut scratch);
            let mut record = vec![RECORD_HANDSHAKE, 3, 1];
            record.extend_from_slice(&(data.len() as u16).to_be_bytes());
            record.extend_from_slice(&data);
            let _ = read(&record, &mut scratch);
        }

        #[test]
        fn a_corrupted_hello_never_panics(index in 0usize..400, byte in any::<u8>()) {
            let mut hello = rustls_client_hello("a.test", &[b"h2"]);
            let len = hello.len();
            hello[index % len] = byte;
            let mut scratch = Vec::new();
            let _ = read(&hello, &mut scratch);
        }
    }
}
