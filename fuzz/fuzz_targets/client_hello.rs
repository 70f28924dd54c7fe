//! The first bytes of a TCP connection, as content routing reads them: the TLS ClientHello
//! reader and `ContentRouter::decide` with rules of every kind, the bytes given whole and
//! one at a time. No panic; bytes after a complete ClientHello change nothing; once no more
//! bytes will come (`complete`), the router decides.

#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sozu_command_lib::request::{TcpFrontend, TcpListenerConfig, TcpProtocol, TcpRule};
use sozu_lib::router::content::{ContentRouter, Hello, Verdict, read_client_hello};

fn router() -> ContentRouter {
    let address = SocketAddr::from(([127, 0, 0, 1], 5000));
    let config = TcpListenerConfig {
        inspect_bytes: 512,
        ..TcpListenerConfig::new(address)
    };
    let rule = |cluster: &str, rule: TcpRule| TcpFrontend {
        rule: Some(rule),
        ..TcpFrontend::new(cluster, address)
    };
    let mut frontends = vec![
        rule("sni", TcpRule::Sni("a.test".to_string())),
        rule("wildcard", TcpRule::Sni("*.a.test".to_string())),
        rule("alpn", TcpRule::Alpn("/h[23]/".to_string())),
        rule("host", TcpRule::HttpHost("c.test".to_string())),
        rule("prefix", TcpRule::Prefix(r"\x00\x01".to_string())),
        TcpFrontend::new("default", address),
    ];
    frontends.extend(
        TcpProtocol::ALL
            .iter()
            .map(|&protocol| rule(protocol.name(), TcpRule::Protocol(protocol))),
    );
    ContentRouter::new(&config, &frontends).expect("the rules compile")
}

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    if let Hello::Complete(hello) = read_client_hello(data, &mut scratch) {
        let mut extended = data.to_vec();
        extended.extend_from_slice(b"\x16\x03\x01trailing bytes");
        let mut other = Vec::new();
        assert_eq!(
            read_client_hello(&extended, &mut other),
            Hello::Complete(hello.clone())
        );
    }
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut router = router();
    assert_ne!(router.decide(data, peer, true), Verdict::NeedMore);
    for end in 0..=data.len() {
        let complete = end == data.len();
        let verdict = router.decide(&data[..end], peer, complete);
        if complete {
            assert_ne!(verdict, Verdict::NeedMore, "a complete decision waits");
        }
        if verdict != Verdict::NeedMore {
            break;
        }
    }
});
