use std::io::Write;

use super::*;

#[test]
fn ready_set_operations() {
    let mut ready = Ready::READABLE;
    ready |= Ready::WRITABLE;
    assert!(ready.contains(Ready::READABLE | Ready::WRITABLE));
    ready.remove(Ready::READABLE);
    assert_eq!(ready, Ready::WRITABLE);
    assert!(!ready.contains(Ready::EMPTY));
    assert_eq!(
        !Ready::WRITABLE & Ready::ALL,
        Ready::READABLE | Ready::HUP | Ready::ERROR
    );
}

mod tls_reads {
    use std::{
        io::{Read as _, Write as _},
        net::{Shutdown, TcpListener},
        sync::Arc,
        time::{Duration, Instant},
    };

    use rustls::{ClientConnection, StreamOwned, pki_types::ServerName};
    use sozu_command_lib::request::{CertificateAndKey, TlsListenerConfig};

    use super::super::*;
    use crate::{
        pool::Pool,
        protocol::tls::{CertificateResolver, KeyCheck, load_certificate, server_config},
        testing::client_trusting_anything,
    };

    const DEADLINE: Duration = Duration::from_secs(5);
    const CERTIFICATE: &str = include_str!("../../../../command/tests/fixtures/localhost.pem");
    const KEY: &str = include_str!("../../../../command/tests/fixtures/localhost.key");

    /// The proxy's TLS end of a loopback connection, and the client's end, connected.
    fn tls_pair() -> (Endpoint, StreamOwned<ClientConnection, std::net::TcpStream>) {
        let resolver = Arc::new(CertificateResolver::default());
        let certificate = CertificateAndKey::new(CERTIFICATE, KEY);
        resolver.add(load_certificate(&certificate, KeyCheck::Now).unwrap());
        let config = server_config(&TlsListenerConfig::default(), resolver).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client_socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client_socket.set_read_timeout(Some(DEADLINE)).unwrap();
        let (proxy_socket, _) = listener.accept().unwrap();
        proxy_socket.set_nonblocking(true).unwrap();
        let mut proxy = Endpoint::new(TcpStream::from_std(proxy_socket), Token(1));
        let pool = Pool::new(1024, 0, 1);
        proxy.start_tls(config, 16_384, pool.checkout()).unwrap();
        let client_config = client_trusting_anything();
        let name = ServerName::try_from("localhost").unwrap();
        let client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        (proxy, StreamOwned::new(client, client_socket))
    }

    /// Reads on the proxy's end, as events would allow, until plaintext or the end comes.
    fn read_until_moved(proxy: &mut Endpoint, space: &mut [u8], events: Ready) -> Transfer {
        let deadline = Instant::now() + DEADLINE;
        loop {
            proxy.readiness.event.insert(events);
            match proxy.read(space) {
                Transfer::WouldBlock => {
                    assert!(Instant::now() < deadline, "nothing came");
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn a_short_tls_read_clears_readable_unless_the_end_is_still_to_read() {
        let (mut proxy, mut client) = tls_pair();
        let client = std::thread::spawn(move || {
            client.write_all(b"hello").unwrap();
            // Wait for the proxy's word before the last bytes and the end.
            let mut go = [0; 2];
            client.read_exact(&mut go).unwrap();
            assert_eq!(&go, b"go", "two slices arrive joined, in order");
            client.write_all(b"bye").unwrap();
            client.conn.send_close_notify();
            client.flush().unwrap();
            client.sock.shutdown(Shutdown::Write).unwrap();
        });
        let mut space = [0; 64];
        let both = Ready::READABLE | Ready::WRITABLE;
        assert_eq!(
            read_until_moved(&mut proxy, &mut space, both),
            Transfer::Moved(5)
        );
        assert!(
            !proxy.readiness.event.contains(Ready::READABLE),
            "the short read drained the socket: no call to see EAGAIN"
        );

        // Two slices, as a head and a body go: joined into one record.
        let slices = [IoSlice::new(b"g"), IoSlice::new(b"o")];
        while let Transfer::WouldBlock = proxy.write_vectored(&slices) {
            proxy.readiness.event.insert(Ready::WRITABLE);
            std::thread::yield_now();
        }
        proxy.flush();
        client.join().unwrap();
        // The last record and the end arrived together; the event says hangup.
        let hangup = both | Ready::HUP;
        assert_eq!(
            read_until_moved(&mut proxy, &mut space, hangup),
            Transfer::Moved(3)
        );
        assert!(
            proxy.readiness.event.contains(Ready::READABLE),
            "after a hangup the end is still to read"
        );
        assert_eq!(proxy.read(&mut space), Transfer::Closed);
    }

    #[test]
    fn a_close_notify_read_with_the_last_plaintext_ends_the_stream_without_an_event() {
        let (mut proxy, mut client) = tls_pair();
        let client = std::thread::spawn(move || {
            while client.conn.is_handshaking() {
                client.conn.complete_io(&mut client.sock).unwrap();
            }
            // The record and the alert in one write; the TCP connection stays open: no
            // hangup tells the proxy.
            client.conn.writer().write_all(b"last").unwrap();
            client.conn.send_close_notify();
            client.flush().unwrap();
            client
        });
        let mut space = [0; 64];
        let both = Ready::READABLE | Ready::WRITABLE;
        assert_eq!(
            read_until_moved(&mut proxy, &mut space, both),
            Transfer::Moved(4)
        );
        let _client = client.join().unwrap();
        proxy.readiness.event.remove(Ready::READABLE);
        assert_eq!(
            proxy.read(&mut space),
            Transfer::Closed,
            "the alert came with the plaintext: the end is known with no event to come"
        );
    }
}

#[test]
fn a_kept_connection_is_judged_by_its_flags_and_peeked_only_when_readable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_end = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut backend_end, _) = listener.accept().unwrap();
    proxy_end.set_nonblocking(true).unwrap();
    let mut endpoint = Endpoint::new(TcpStream::from_std(proxy_end), Token(1));
    endpoint.readiness.event = Ready::WRITABLE;
    assert!(endpoint.is_clean_as_reported() && endpoint.is_clean());

    // Stray bytes in the kernel, not reported yet: the loop notes every backend event of a
    // batch before sessions run, so the flags stand for what came before this batch.
    backend_end.write_all(b"stray").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while endpoint.unread() == Unread::Nothing {
        assert!(std::time::Instant::now() < deadline, "nothing arrived");
        std::thread::yield_now();
    }
    assert!(endpoint.is_clean_as_reported(), "no flag: no system call");
    assert!(!endpoint.is_clean());
    endpoint.readiness.event.insert(Ready::READABLE);
    assert!(
        !endpoint.is_clean_as_reported(),
        "a readable flag: the kernel is asked"
    );

    let mut space = [0; 16];
    assert_eq!(endpoint.read(&mut space), Transfer::Moved(5));
    endpoint.readiness.event.insert(Ready::READABLE);
    assert!(
        endpoint.is_clean_as_reported(),
        "a stale readable flag over nothing"
    );
    endpoint.readiness.event.insert(Ready::HUP);
    assert!(!endpoint.is_clean_as_reported());
}

#[test]
fn readiness_filters_by_interest() {
    let readiness = Readiness {
        event: Ready::READABLE | Ready::WRITABLE,
        interest: Ready::WRITABLE,
    };
    assert!(readiness.can_write());
    assert!(!readiness.can_read());
}
