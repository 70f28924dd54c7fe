//! The idle pool and backend connection accounting, over real loopback sockets.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};

use mio::Token;
use sozu_command_lib::{
    request::{AddBackend, Cluster},
    response::{BackendStatus, EventKind},
};

use super::*;
use crate::{
    backends::{BackendKey, BackendMap},
    timer::Timeout,
};

/// A backend map with one backend, `a` of cluster `c`.
fn one_backend() -> (BackendMap, BackendKey) {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    map.add(&AddBackend {
        cluster_id: "c".to_string(),
        backend_id: "a".to_string(),
        address: "127.0.0.1:1".parse().unwrap(),
        sticky_id: None,
        weight: 100,
        backup: false,
    });
    let key = map.pick("c", None, Instant::now()).unwrap();
    (map, key)
}

/// An established connection: the proxy's end as an endpoint, and the backend's end.
fn connection(token: usize) -> (Endpoint, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_end = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (backend_end, _) = listener.accept().unwrap();
    proxy_end.set_nonblocking(true).unwrap();
    let endpoint = Endpoint::new(mio::net::TcpStream::from_std(proxy_end), Token(token));
    (endpoint, backend_end)
}

/// A session's connection to the backend `key`, counted by a lease.
fn attached(map: &BackendMap, key: BackendKey, token: usize) -> (BackConnection, TcpStream) {
    let (endpoint, backend_end) = connection(token);
    let back = BackConnection {
        endpoint,
        lease: map.lease(key),
        backend_id: "a".to_string(),
        address: "127.0.0.1:1".parse().unwrap(),
        connected: true,
        connect_started: Instant::now(),
        timeout: Timeout::default(),
    };
    (back, backend_end)
}

fn connections(map: &BackendMap, key: BackendKey) -> u64 {
    map.get(key).unwrap().connections()
}

#[test]
fn a_clean_pooled_connection_is_handed_out_again() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let (back, _backend_end) = attached(&map, key, 7);
    let now = Instant::now();
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    let idle = pool.take(key, now, |_| panic!("nothing to close")).unwrap();
    assert_eq!(idle.endpoint.token, Token(7));
    assert!(pool.is_empty());
    assert!(
        pool.take(key, now, |_| panic!("nothing to close"))
            .is_none()
    );
}

/// Issue 16: a stale readable flag went back and forth between the pool and the sessions
/// (see `BackendPool::take`), costing a peek per request or two.
#[test]
fn a_pooled_connection_is_handed_out_without_a_stale_readable_flag() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let (mut back, _backend_end) = attached(&map, key, 7);
    back.endpoint
        .readiness
        .event
        .insert(Ready::READABLE | Ready::WRITABLE);
    let now = Instant::now();
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    let idle = pool.take(key, now, |_| panic!("nothing to close")).unwrap();
    assert!(!idle.endpoint.readiness.event.contains(Ready::READABLE));
    assert!(idle.endpoint.readiness.event.contains(Ready::WRITABLE));
}

#[test]
fn a_connection_the_backend_wrote_on_or_closed_is_never_handed_out() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();
    let (wrote_on, mut wrote_end) = attached(&map, key, 1);
    let (closed, closed_end) = attached(&map, key, 2);
    wrote_end.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
    drop(closed_end);
    // Loopback delivers at once; wait for the kernel to say so, within a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    while wrote_on.endpoint.is_clean() || closed.endpoint.is_clean() {
        assert!(
            Instant::now() < deadline,
            "the backend's bytes never arrived"
        );
        std::thread::yield_now();
    }
    assert!(
        pool.keep(IdleConnection::new(wrote_on, now).unwrap())
            .is_none()
    );
    assert!(
        pool.keep(IdleConnection::new(closed, now).unwrap())
            .is_none()
    );
    let mut closed_tokens = Vec::new();
    let taken = pool.take(key, now, |stale| closed_tokens.push(stale.endpoint.token));
    assert!(taken.is_none());
    closed_tokens.sort();
    assert_eq!(closed_tokens, [Token(1), Token(2)]);
    assert!(pool.is_empty());
}

#[test]
fn a_connection_kept_too_long_is_closed_not_handed_out() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();
    let (back, _backend_end) = attached(&map, key, 3);
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    let later = now + Duration::from_secs(31);
    let mut closed = 0;
    assert!(pool.take(key, later, |_| closed += 1).is_none());
    assert_eq!(closed, 1);
}

#[test]
fn sweep_takes_out_old_connections_and_those_of_gone_backends() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();
    let (back, _backend_end) = attached(&map, key, 4);
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    assert!(pool.sweep(now, |_| false).is_empty());
    assert_eq!(pool.sweep(now, |_| true).len(), 1);
    assert!(pool.is_empty());

    let (back, _backend_end) = attached(&map, key, 5);
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    assert_eq!(
        pool.sweep(now + Duration::from_secs(31), |_| false).len(),
        1
    );
    assert!(pool.is_empty());
}

#[test]
fn an_event_on_a_pooled_connection_takes_it_out() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();
    let (back, _backend_end) = attached(&map, key, 6);
    assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    assert!(pool.remove(key, Token(99)).is_none());
    assert_eq!(pool.remove(key, Token(6)).unwrap().endpoint.token, Token(6));
    assert!(pool.is_empty());
}

#[test]
fn the_pool_of_a_backend_is_bounded() {
    let (map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();
    let mut backend_ends = Vec::new();
    for token in 0..MAX_IDLE_PER_BACKEND {
        let (back, backend_end) = attached(&map, key, token);
        backend_ends.push(backend_end);
        assert!(pool.keep(IdleConnection::new(back, now).unwrap()).is_none());
    }
    let (back, _backend_end) = attached(&map, key, MAX_IDLE_PER_BACKEND);
    let refused = pool.keep(IdleConnection::new(back, now).unwrap()).unwrap();
    assert_eq!(refused.endpoint.token, Token(MAX_IDLE_PER_BACKEND));
}

/// A connection counts for its backend exactly while a session holds it: connect, reuse from
/// the pool, pooling, a failed connect, the session's end and the backend's removal.
#[test]
fn lease_counts_stay_right_through_connect_reuse_pool_failure_close_and_removal() {
    let (mut map, key) = one_backend();
    let mut pool = BackendPool::default();
    let now = Instant::now();

    // Two sessions connect.
    let (first, _first_end) = attached(&map, key, 1);
    let (second, _second_end) = attached(&map, key, 2);
    assert_eq!(connections(&map, key), 2);

    // The first session is done with its connection: pooled, it counts no more.
    assert!(
        pool.keep(IdleConnection::new(first, now).unwrap())
            .is_none()
    );
    assert_eq!(connections(&map, key), 1);

    // A third session reuses it.
    let idle = pool.take(key, now, |_| panic!("clean")).unwrap();
    let reused = BackConnection {
        endpoint: idle.endpoint,
        lease: map.lease(idle.backend),
        backend_id: idle.backend_id,
        address: idle.address,
        connected: true,
        connect_started: now,
        timeout: Timeout::default(),
    };
    assert_eq!(connections(&map, key), 2);

    // The second session's connect failed: its connection is closed.
    map.connect_failed(second.lease.as_ref().unwrap().key(), now);
    drop(second);
    assert_eq!(connections(&map, key), 1);

    // The backend is removed while the third session still uses it: it drains.
    map.remove("c", "a");
    assert_eq!(map.get(key).unwrap().status, BackendStatus::Draining);
    map.release_drained();
    assert_eq!(connections(&map, key), 1);
    assert!(map.take_events().is_empty());

    // The session ends: the backend had no other connection and is forgotten.
    drop(reused);
    let kinds: Vec<EventKind> = map.take_events().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::RemovedBackendHasNoConnections]);
    assert!(map.get(key).is_none());
    assert!(map.lease(key).is_none());
}
