//! A session driven without the event loop, over real loopback sockets.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use mio::Token;
use rustc_hash::FxHashMap;
use sozu_command_lib::request::{AddBackend, Cluster};

use super::*;
use crate::{backends::BackendMap, metrics::Metrics};

/// A session on an accepted client connection, in no stage, with no backend connection.
fn session(front: mio::net::TcpStream, address: SocketAddr) -> Session {
    let timeout = Duration::from_secs(10);
    let accepted = Accepted {
        uid: 1,
        key: 0,
        listener_address: address,
        front: Endpoint::new(front, Token(1)),
        client_address: address,
        local_address: address,
    };
    let timeouts = Timeouts {
        front: timeout,
        back: timeout,
        connect: timeout,
        request: timeout,
    };
    let mut session = Session::new(accepted, timeouts.into(), Instant::now());
    session.io.cluster_id = Some("c".into());
    session
}

/// A connect in progress to `backend`, counted for the only backend of `map`.
fn connecting(map: &mut BackendMap, backend: SocketAddr, token: usize) -> BackConnection {
    let key = map.pick("c", None, Instant::now()).unwrap();
    BackConnection {
        endpoint: Endpoint::new(mio::net::TcpStream::connect(backend).unwrap(), Token(token)),
        lease: map.lease(key),
        backend_id: "b".to_string(),
        address: backend,
        connected: false,
        connect_started: Instant::now(),
        timeout: Timeout::default(),
    }
}

#[test]
fn a_session_holds_two_backend_connections_at_once() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_address = backend.local_addr().unwrap();
    map.add(&AddBackend {
        cluster_id: "c".to_string(),
        backend_id: "b".to_string(),
        address: backend_address,
        sticky_id: None,
        weight: 100,
        backup: false,
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (front, client_address) = listener.accept().unwrap();
    front.set_nonblocking(true).unwrap();
    let mut session = session(mio::net::TcpStream::from_std(front), client_address);

    let (first, second) = (Slot(0), Slot(1));
    session
        .io
        .backs
        .insert(first, connecting(&mut map, backend_address, 2));
    session
        .io
        .backs
        .insert(second, connecting(&mut map, backend_address, 3));
    let _accepted = [backend.accept().unwrap(), backend.accept().unwrap()];
    let key = map.pick("c", None, Instant::now()).unwrap();
    assert_eq!(map.get(key).unwrap().connections(), 2);

    let mut timers = Timers::new();
    let pool = Pool::new(1024, 1, 4);
    let listeners = FxHashMap::default();
    let mut content_routers = FxHashMap::default();
    let clusters = BTreeMap::new();
    let authorized = FxHashMap::default();
    let mut recorder = Recorder {
        metrics: Metrics::new(false),
        access_log: None,
    };
    let mut faults = crate::faults::FaultSet::new(0);
    let mut context = Context {
        now: Instant::now(),
        timers: &mut timers,
        pool: &pool,
        listeners: &listeners,
        content_routers: &mut content_routers,
        clusters: &clusters,
        authorized: &authorized,
        recorder: &mut recorder,
        faults: &mut faults,
        body_splice: crate::protocol::http::splice::BodySplice::default(),
    };

    // Each slot has its own back timeout.
    let now = context.now;
    session
        .io
        .touch_back(first, Duration::from_secs(1), now, context.timers);
    session
        .io
        .touch_back(second, Duration::from_secs(2), now, context.timers);
    assert_eq!(
        session.io.backs.get(first).unwrap().timeout.deadline(),
        Some(now + Duration::from_secs(1))
    );
    assert_eq!(
        session.io.backs.get(second).unwrap().timeout.deadline(),
        Some(now + Duration::from_secs(2))
    );

    // No news of either connect: the session waits.
    assert_eq!(session.ready(&mut context), Action::Wait);
    // The second connect is reported established first, on its own slot.
    session.io.add_back_event(second, Ready::WRITABLE);
    assert_eq!(session.ready(&mut context), Action::Connected(second));
    assert!(session.io.backs.get(second).unwrap().connected);
    assert!(!session.io.backs.get(first).unwrap().connected);
    // The first one's connect timeout names its slot.
    assert_eq!(
        session.timed_out(TimeoutKind::Back(first), &mut context),
        Action::ConnectFailed(first)
    );
    session.io.add_back_event(first, Ready::WRITABLE);
    assert_eq!(session.ready(&mut context), Action::Connected(first));

    // One connection leaves its slot; the other stays, and only it counts.
    drop(session.io.backs.take(first));
    assert!(session.io.backs.get(first).is_none());
    assert_eq!(
        session.io.backs.get(second).unwrap().endpoint.token,
        Token(3)
    );
    assert_eq!(map.get(key).unwrap().connections(), 1);
}

/// Every session of the worker carries its stage inline: a pipe's lanes and the TCP stages
/// (PROXY header, sniffing, the proxy's reply) are boxed, so sessions in other stages (an
/// idle HTTP connection) do not carry room for them.
#[test]
fn tcp_stages_take_no_room_in_the_sessions_of_other_stages() {
    use std::mem::size_of;
    assert!(size_of::<Pipe>() <= 2 * size_of::<usize>());
    assert!(size_of::<Stage>() <= 2 * size_of::<usize>());
}

/// What an idle keep-alive HTTP connection holds for its whole idle life: its session in the
/// loop's slab and its HTTP stage (boxed); its backend connection until a back timeout
/// passes without a request. Thousands of idle connections multiply each byte: a field added
/// to these types must earn its place (or go behind a box, as the pipe's lanes and the
/// stream's per-request state did).
#[test]
fn the_types_an_idle_connection_holds_stay_within_their_sizes() {
    use std::mem::size_of;
    // 544 while the TCP stages, the PROXY header, a script's `remote`, the decider and the
    // four timeouts were inline, and the cluster ids were `String`s.
    assert!(size_of::<Session>() <= 344, "{}", size_of::<Session>());
    // 784 while the stream's per-request state (528 bytes) was inline; a waiting connection
    // lends it with its scratch space (`protocol::http::spares`).
    assert!(size_of::<Http>() <= 248, "{}", size_of::<Http>());
    assert!(
        size_of::<BackConnection>() <= 208,
        "{}",
        size_of::<BackConnection>()
    );
}

/// A TCP connection the default frontend took names `default` in its access log line
/// without making the session's rare parts (an allocation per connection); the other
/// deciders are kept there.
#[test]
fn the_default_decider_is_kept_without_the_rare_parts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (front, client_address) = listener.accept().unwrap();
    front.set_nonblocking(true).unwrap();
    let mut session = session(mio::net::TcpStream::from_std(front), client_address);
    assert_eq!(session.io.decided_by(), None);

    session.io.set_decided_by(&Decider::Default);
    assert_eq!(session.io.decided_by(), Some(&Decider::Default));
    assert!(session.io.rare.is_none());

    session.io.set_decided_by(&Decider::Script);
    assert_eq!(session.io.decided_by(), Some(&Decider::Script));
    assert!(session.io.rare.is_some());
}
