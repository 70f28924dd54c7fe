//! Backend connections outlive client sessions: a kept-alive backend connection serves the
//! next session's request to the same backend, without a new connect.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
};

use sozu_command_lib::request::{
    Cluster, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType, Order,
};
use sozu_e2e::{DEADLINE, Worker, backend::Backend, backend_order, free_address};
use sozu_lib::server::ServerConfig;

fn setup(backend: &Backend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    worker.ok(Order::AddHttpListener(HttpListenerConfig::new(address)));
    worker.ok(Order::AddCluster(Cluster::new("pooled")));
    worker.ok(Order::AddBackend(backend_order(
        "pooled",
        "pooled-0",
        backend.address,
    )));
    worker.ok(Order::AddHttpFrontend(HttpFrontend::new(
        Some("pooled".to_string()),
        address,
        "pool.test",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Http,
    }));
    (worker, address)
}

fn request_on_new_connection(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: pool.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn sessions_one_after_the_other_share_one_backend_connection() {
    let backend = Backend::http_ok("pooled answer");
    let (_worker, address) = setup(&backend);
    for _ in 0..5 {
        assert!(request_on_new_connection(address).ends_with("pooled answer"));
    }
    assert_eq!(backend.received().len(), 5);
    assert_eq!(backend.accepted(), 1, "the backend connection was reused");
}

#[test]
fn concurrent_sessions_use_their_own_backend_connections() {
    let backend = Backend::http_ok("pooled answer");
    let (_worker, address) = setup(&backend);
    let mut first = TcpStream::connect(address).expect("connect");
    let mut second = TcpStream::connect(address).expect("connect");
    for stream in [&mut first, &mut second] {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: pool.test\r\n\r\n")
            .expect("send");
    }
    for stream in [&mut first, &mut second] {
        let mut answer = [0u8; 512];
        let count = stream.read(&mut answer).expect("answer");
        assert!(String::from_utf8_lossy(&answer[..count]).ends_with("pooled answer"));
    }
    assert_eq!(backend.accepted(), 2);
    drop((first, second));
    // Both connections went back to the pool: the next sessions connect to nobody new.
    for _ in 0..4 {
        assert!(request_on_new_connection(address).ends_with("pooled answer"));
    }
    assert_eq!(backend.accepted(), 2);
}
