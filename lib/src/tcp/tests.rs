//! The TCP stages driven without the event loop: a stage and the session's other parts over
//! loopback sockets, a content router and a cluster built in memory, events given by hand.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use mio::Token;
use rustc_hash::FxHashMap;
use sozu_command_lib::request::{Cluster, TcpFrontend, TcpListenerConfig, Timeouts};

use super::*;
use crate::{
    faults::FaultSet,
    metrics::{Metrics, Recorder},
    router::content::ContentRouter,
    session::{
        Accepted, BackConnection,
        endpoint::{Endpoint, Unread},
    },
    timer::{Timeout, Timers},
};

const DEADLINE: Duration = Duration::from_secs(5);

/// A connected pair: the proxy's end as an endpoint, and the peer's end, blocking with a
/// read timeout.
fn pair(listener: &TcpListener, token: usize) -> (Endpoint, TcpStream) {
    let proxy_end = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer_end, _) = listener.accept().unwrap();
    peer_end.set_read_timeout(Some(DEADLINE)).unwrap();
    proxy_end.set_nonblocking(true).unwrap();
    let endpoint = Endpoint::new(mio::net::TcpStream::from_std(proxy_end), Token(token));
    (endpoint, peer_end)
}

/// Waits, within a bound, for the peer's bytes to reach `endpoint`.
fn arrived(endpoint: &Endpoint) {
    let deadline = Instant::now() + DEADLINE;
    while endpoint.unread() == Unread::Nothing {
        assert!(Instant::now() < deadline, "nothing arrived");
        std::thread::yield_now();
    }
}

/// What the loop lends a stage, for a TCP listener whose only frontend is `tcp`'s default.
struct Loop {
    timers: Timers,
    pool: Pool,
    listeners: FxHashMap<SocketAddr, crate::protocol::http::HttpListener>,
    content_routers: FxHashMap<SocketAddr, ContentRouter>,
    clusters: BTreeMap<String, Cluster>,
    authorized: FxHashMap<String, crate::protocol::http::auth::Authorized>,
    recorder: Recorder,
    faults: FaultSet,
}

impl Loop {
    fn new(address: SocketAddr) -> Loop {
        let config = TcpListenerConfig::new(address);
        let router = ContentRouter::new(&config, &[TcpFrontend::new("tcp", address)]).unwrap();
        Loop {
            timers: Timers::new(),
            pool: Pool::new(16_384, 2, 8),
            listeners: FxHashMap::default(),
            content_routers: [(address, router)].into_iter().collect(),
            clusters: [("tcp".to_string(), Cluster::new("tcp"))]
                .into_iter()
                .collect(),
            authorized: FxHashMap::default(),
            recorder: Recorder {
                metrics: Metrics::new(false),
                access_log: None,
            },
            faults: FaultSet::new(0),
        }
    }

    fn ready(&mut self, stage: &mut Stage, io: &mut SessionIo) -> Action {
        let mut context = Context {
            now: Instant::now(),
            timers: &mut self.timers,
            pool: &self.pool,
            listeners: &self.listeners,
            content_routers: &mut self.content_routers,
            clusters: &self.clusters,
            authorized: &self.authorized,
            recorder: &mut self.recorder,
            faults: &mut self.faults,
            body_splice: crate::protocol::http::splice::BodySplice::default(),
        };
        stage.ready(io, &mut context)
    }
}

#[test]
fn a_proxy_header_then_a_default_frontend_turn_the_stage_into_a_pipe_that_replays_the_bytes() {
    let front_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = front_listener.local_addr().unwrap();
    let (front, mut client) = pair(&front_listener, 1);
    let timeout = Duration::from_secs(10);
    let accepted = Accepted {
        uid: 1,
        key: 0,
        listener_address: address,
        front,
        client_address: client.local_addr().unwrap(),
        local_address: address,
    };
    let timeouts = Timeouts {
        front: timeout,
        back: timeout,
        connect: timeout,
        request: timeout,
    };
    let mut io = SessionIo::new(accepted, timeouts.into(), Instant::now());
    let mut event_loop = Loop::new(address);
    let then = AfterProxy::Pipe {
        splice: None,
        inspect_timeout: Duration::from_secs(2),
    };
    let mut stage = first_stage(&mut io, &event_loop.pool, true, then);
    assert!(matches!(stage, Stage::ExpectProxy(_)));

    client
        .write_all(b"PROXY TCP4 10.0.0.1 10.0.0.2 1111 2222\r\nhello")
        .unwrap();
    arrived(&io.front);
    io.add_front_event(Ready::READABLE | Ready::WRITABLE);
    // The header read, the sniffing stage routes at once to the default frontend's cluster;
    // the pipe asks for a backend connection.
    assert_eq!(
        event_loop.ready(&mut stage, &mut io),
        Action::Connect {
            slot: Slot::FIRST,
            cluster_id: Rc::from("tcp"),
            sticky_id: None,
        }
    );
    assert!(matches!(stage, Stage::Pipe(_)));
    assert_eq!(io.client_address, "10.0.0.1:1111".parse().unwrap());
    assert_eq!(io.cluster_id.as_deref(), Some("tcp"));

    // The loop gives it an established connection: the bytes after the header, read with
    // it, go to the backend.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let (endpoint, mut backend_end) = pair(&backend, 2);
    io.backs.insert(
        Slot::FIRST,
        BackConnection {
            endpoint,
            lease: None,
            backend_id: "tcp-1".to_string(),
            address: backend.local_addr().unwrap(),
            connected: true,
            connect_started: Instant::now(),
            timeout: Timeout::default(),
        },
    );
    io.add_back_event(Slot::FIRST, Ready::WRITABLE);
    assert_eq!(event_loop.ready(&mut stage, &mut io), Action::Wait);
    let mut received = [0; 5];
    backend_end.read_exact(&mut received).unwrap();
    assert_eq!(&received, b"hello");
}
