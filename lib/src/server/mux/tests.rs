//! Choosing a connection for a new stream: packed up to the backend's limit, a new one when
//! all are full, and no more than the bound; which connections a worker out of descriptors
//! may close.

use std::{cell::RefCell, net::TcpListener, rc::Rc, time::Instant};

use mio::{Token, net::TcpStream};
use sozu_command_lib::request::{AddBackend, Cluster, H2Config};

use super::*;
use crate::{backends::BackendMap, protocol::http::h2::backend::MAX_STREAMS, session::mux::Wakes};

/// A backend map with one backend, its key, and a listener standing for the backend.
fn backend() -> (BackendMap, BackendKey, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    map.add(&AddBackend {
        cluster_id: "c".to_string(),
        backend_id: "b".to_string(),
        address: listener.local_addr().unwrap(),
        sticky_id: None,
        weight: 100,
        backup: false,
    });
    let key = map.pick("c", None, Instant::now()).unwrap();
    (map, key, listener)
}

/// A connection to the backend with `handles` stream handles.
fn mux(map: &BackendMap, key: BackendKey, listener: &TcpListener, handles: usize) -> SharedMux {
    let address = listener.local_addr().unwrap();
    let socket = TcpStream::connect(address).unwrap();
    let mut link = Link::new(H2Config::default(), Instant::now(), Wakes::default());
    for owner in 0..handles {
        link.attach(Token(owner));
    }
    Rc::new(RefCell::new(Mux {
        socket,
        token: Token(1000 + handles),
        readiness: Readiness::default(),
        state: MuxState::Open,
        link,
        lease: map.lease(key).unwrap(),
        backend_id: "b".to_string(),
        address,
        since: Instant::now(),
    }))
}

fn is_existing(choice: &Choice, mux: &SharedMux) -> bool {
    matches!(choice, Choice::Existing(chosen) if Rc::ptr_eq(chosen, mux))
}

#[test]
fn streams_pack_on_a_connection_until_it_is_full_then_open_another() {
    let (map, key, listener) = backend();
    let mut muxes = Muxes::default();
    assert!(matches!(muxes.choose(key), Choice::Open));
    let full = mux(&map, key, &listener, MAX_STREAMS as usize);
    muxes.insert(key, Rc::clone(&full));
    assert!(
        matches!(muxes.choose(key), Choice::Open),
        "the one there is full"
    );
    let room = mux(&map, key, &listener, 3);
    muxes.insert(key, Rc::clone(&room));
    assert!(is_existing(&muxes.choose(key), &room));
    assert_eq!(map.get(key).unwrap().connections(), 2);
}

#[test]
fn past_the_bound_a_stream_waits_on_the_least_loaded_connection() {
    let (map, key, listener) = backend();
    let mut muxes = Muxes::default();
    let mut least = None;
    for index in 0..MAX_CONNECTIONS_PER_BACKEND {
        // All full; all but one fuller than the limit.
        let extra = usize::from(index != 3);
        let connection = mux(&map, key, &listener, MAX_STREAMS as usize + extra);
        if index == 3 {
            least = Some(Rc::clone(&connection));
        }
        muxes.insert(key, connection);
    }
    let least = least.unwrap();
    assert!(is_existing(&muxes.choose(key), &least));
}

#[test]
fn a_new_connection_is_assumed_to_carry_what_the_backend_said_last() {
    let (map, key, listener) = backend();
    let mut muxes = Muxes::default();
    muxes.known_limits.insert(key, 2);
    muxes.insert(key, mux(&map, key, &listener, 2));
    assert!(
        matches!(muxes.choose(key), Choice::Open),
        "two handles fill a connection of a backend that allows two streams"
    );
}

#[test]
fn only_connections_without_a_handle_are_unused() {
    let (map, key, listener) = backend();
    let mut muxes = Muxes::default();
    let unused = mux(&map, key, &listener, 0);
    muxes.insert(key, Rc::clone(&unused));
    muxes.insert(key, mux(&map, key, &listener, 1));
    muxes.insert(key, mux(&map, key, &listener, 5));
    let found: Vec<(BackendKey, Token)> = muxes
        .unused()
        .map(|(_, backend, token)| (backend, token))
        .collect();
    assert_eq!(found, [(key, unused.borrow().token)]);
}
