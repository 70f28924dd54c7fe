//! TCP listeners with `expect_proxy` in front of clusters that send or relay a PROXY header:
//! whatever the sizes of the received and the sent header, and however the client's bytes
//! are cut into reads, the backend receives its header and then the client's stream, every
//! byte, in order.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
};

use sozu_command_lib::request::{Cluster, ProxyProtocolConfig, TcpListenerConfig};
use sozu_e2e::{DEADLINE, Worker, backend::Backend, backend::Pattern, free_address};
use sozu_lib::{protocol::proxy_protocol::write_v2, server::ServerConfig};

/// More than a pooled buffer, so the proxy's first read after the header fills its buffer.
const STREAM_LENGTH: usize = 100_000;

/// A header the client sends, and what the backend must receive in its place.
#[derive(Clone)]
struct Case {
    name: &'static str,
    received: Vec<u8>,
    to_backend: ProxyProtocolConfig,
    /// The header the backend must see, given the client's socket address and the listener's.
    expected: fn(received: &[u8], client: SocketAddr, listener: SocketAddr) -> Vec<u8>,
}

fn v2_of_socket(_: &[u8], client: SocketAddr, listener: SocketAddr) -> Vec<u8> {
    let mut header = Vec::new();
    write_v2(client, listener, &mut header);
    header
}

fn v2_of_ipv6(_: &[u8], _: SocketAddr, _: SocketAddr) -> Vec<u8> {
    let mut header = Vec::new();
    write_v2(
        "[2001:db8::7]:40000".parse().expect("address"),
        "[2001:db8::1]:443".parse().expect("address"),
        &mut header,
    );
    header
}

fn relayed(received: &[u8], _: SocketAddr, _: SocketAddr) -> Vec<u8> {
    received.to_vec()
}

/// A v2 LOCAL header (16 bytes, the shortest there is).
fn v2_local() -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "v1 UNKNOWN (15 bytes) becomes a 28-byte v2 header",
            received: b"PROXY UNKNOWN\r\n".to_vec(),
            to_backend: ProxyProtocolConfig::SendHeader,
            expected: v2_of_socket,
        },
        Case {
            name: "v2 LOCAL (16 bytes) becomes a 28-byte v2 header",
            received: v2_local(),
            to_backend: ProxyProtocolConfig::SendHeader,
            expected: v2_of_socket,
        },
        Case {
            name: "v1 TCP6 (44 bytes) becomes a 52-byte v2 header",
            received: b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n".to_vec(),
            to_backend: ProxyProtocolConfig::SendHeader,
            expected: v2_of_ipv6,
        },
        Case {
            name: "v1 UNKNOWN relayed as is",
            received: b"PROXY UNKNOWN\r\n".to_vec(),
            to_backend: ProxyProtocolConfig::RelayHeader,
            expected: relayed,
        },
    ]
}

/// How the client cuts its bytes into writes.
#[derive(Debug, Clone, Copy)]
enum Writes {
    /// The header and the whole stream at once: the proxy's first read fills its buffer.
    OneWrite,
    /// The header a byte at a time, then the stream.
    HeaderByteByByte,
}

/// Sends `header` and the stream, ends it, and waits for the backend's answer. Returns the
/// client's address.
fn send(address: SocketAddr, header: &[u8], stream: &[u8], writes: Writes) -> SocketAddr {
    let mut client = TcpStream::connect(address).expect("connect to the proxy");
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    client.set_nodelay(true).expect("set TCP_NODELAY");
    let local = client.local_addr().expect("client address");
    match writes {
        Writes::OneWrite => client.write_all(&[header, stream].concat()),
        Writes::HeaderByteByByte => header
            .chunks(1)
            .chain([stream])
            .try_for_each(|piece| client.write_all(piece)),
    }
    .expect("send");
    client.shutdown(Shutdown::Write).expect("shut down");
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).expect("read the answer");
    assert_eq!(answer, b"ok");
    local
}

fn every_byte_follows_the_header(splice: bool) {
    let mut stream = vec![0; STREAM_LENGTH];
    Pattern::new(9).fill(&mut stream);
    for (case, writes) in cases()
        .into_iter()
        .flat_map(|case| [Writes::OneWrite, Writes::HeaderByteByByte].map(|w| (case.clone(), w)))
    {
        let backend = Backend::recorder(b"ok");
        let mut worker = Worker::start(ServerConfig::default());
        let mut listener = TcpListenerConfig::new(free_address());
        listener.expect_proxy = true;
        listener.splice = splice;
        let mut cluster = Cluster::new("recorded");
        cluster.proxy_protocol = Some(case.to_backend);
        let address = worker.tcp_proxy_with(listener, cluster, &[backend.address]);

        let client = send(address, &case.received, &stream, writes);
        let mut expected = (case.expected)(&case.received, client, address);
        expected.extend_from_slice(&stream);
        let received = backend.received();
        assert_eq!(received.len(), 1, "{} ({writes:?})", case.name);
        let first_difference = received[0]
            .iter()
            .zip(&expected)
            .position(|(got, wanted)| got != wanted);
        assert!(
            received[0].len() == expected.len() && first_difference.is_none(),
            "{} ({writes:?}): received {} bytes, expected {}, first difference at \
             {first_difference:?}",
            case.name,
            received[0].len(),
            expected.len(),
        );
    }
}

#[test]
fn every_byte_follows_the_header_when_copying() {
    every_byte_follows_the_header(false);
}

#[test]
fn every_byte_follows_the_header_when_splicing() {
    every_byte_follows_the_header(true);
}
