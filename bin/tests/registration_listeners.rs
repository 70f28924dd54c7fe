//! A registration's listener with the real binary: the main process binds it once and hands
//! the socket to every worker, those it starts later included, so that all workers accept on
//! one queue and a worker that dies loses no connection waiting in it.

mod common;

use std::{
    fs,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
};

use common::{Backend, DEADLINE, Proxy, free_address, kill, wait_until};
use sozu_command_lib::registration::{Definition, Registered, listen};

/// A proxy with a registration socket and a service registered for `api.test` on a new
/// listener: the proxy, the service (which must live as long as the test) and the listener.
fn registered_service() -> (Proxy, Registered, Backend, SocketAddr) {
    let proxy = Proxy::start("[registration]\nsocket = \"register.sock\"\n");
    let front = free_address();
    let service = listen(
        proxy.dir.path().join("register.sock"),
        Definition::http("api", front, "api.test"),
    )
    .expect("registers");
    let backend = Backend::serve("api", service.try_clone().expect("a copy of the listener"));
    (proxy, service, backend, front)
}

/// The inodes of the sockets listening on `address`, from /proc/net/tcp.
fn listening_inodes(address: SocketAddr) -> Vec<String> {
    let IpAddr::V4(ip) = address.ip() else {
        panic!("an IPv4 address is expected: {address}");
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        address.port()
    );
    let table = fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() > 9 && fields[1] == local && fields[3] == "0A")
        .map(|fields| fields[9].to_string())
        .collect()
}

/// Whether process `pid` holds the socket `inode`.
fn holds_socket(pid: i64, inode: &str) -> bool {
    let wanted = format!("socket:[{inode}]");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the process's descriptors")
        .filter_map(Result::ok)
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .any(|target| target.to_string_lossy() == wanted)
}

/// A connection to `front` that sent a request for `api.test` and waits for the answer.
fn send_request(front: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(front).expect("the listener takes the connection");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    stream
}

/// The answer read on a connection of [`send_request`].
fn answer(mut stream: TcpStream) -> String {
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the answer, without reset");
    response
}

/// Whether `front` answers while every worker but `serving` is stopped (SIGSTOP): the
/// workers are resumed before returning.
fn served_by_alone(proxy: &Proxy, serving: i64, front: SocketAddr) -> bool {
    let others: Vec<i64> = proxy
        .worker_pids()
        .into_iter()
        .filter(|pid| *pid != serving)
        .collect();
    for pid in &others {
        kill(*pid, "STOP");
    }
    let response = answer(send_request(front));
    for pid in &others {
        kill(*pid, "CONT");
    }
    response.starts_with("HTTP/1.1 200") && response.ends_with("api")
}

#[test]
fn a_registered_listener_is_bound_once_and_every_worker_serves_it() {
    let (proxy, _service, _backend, front) = registered_service();
    let inodes = listening_inodes(front);
    assert_eq!(inodes.len(), 1, "one socket listens on {front}: {inodes:?}");
    let main = proxy.main_pid().expect("the main process's pid");
    let workers = proxy.worker_pids();
    assert_eq!(workers.len(), 2, "{workers:?}");
    for pid in std::iter::once(main).chain(workers.iter().copied()) {
        assert!(holds_socket(pid, &inodes[0]), "{pid} holds {inodes:?}");
    }
    for worker in workers {
        assert!(served_by_alone(&proxy, worker, front), "worker {worker}");
    }
}

/// Connections arrive while a worker is stopped, then that worker is killed: none of them
/// waited in a queue of its own (the other worker serves them all), and the worker started
/// in its place serves the registered listener.
#[test]
fn a_killed_worker_loses_no_connection_of_a_registered_listener() {
    let (proxy, _service, _backend, front) = registered_service();
    let workers = proxy.worker_pids();
    let [first, second] = workers[..] else {
        panic!("two workers expected: {workers:?}");
    };
    kill(first, "STOP");
    let waiting: Vec<TcpStream> = (0..8).map(|_| send_request(front)).collect();
    kill(first, "KILL");
    for stream in waiting {
        let response = answer(stream);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let mut replacement = None;
    assert!(
        wait_until(DEADLINE, || {
            replacement = proxy
                .worker_pids()
                .into_iter()
                .find(|pid| ![first, second].contains(pid));
            replacement.is_some() && proxy.log_text().matches("has the current state").count() >= 3
        }),
        "no worker replaced {first}:\n{}",
        proxy.log_text()
    );
    let replacement = replacement.expect("a new worker");
    assert!(holds_socket(replacement, &listening_inodes(front)[0]));
    assert!(served_by_alone(&proxy, replacement, front));
}

/// After a hot upgrade, the new main process and its workers hold the socket the old one
/// bound for the registration.
#[test]
fn an_upgrade_keeps_the_registered_listener_socket() {
    let (proxy, _service, _backend, front) = registered_service();
    let before = listening_inodes(front);
    let old_workers = proxy.worker_pids();
    let output = proxy.ok(&["upgrade", "-t", "20000"]);
    assert!(output.contains("worker(s) replaced"), "{output}");
    assert_eq!(listening_inodes(front), before);
    let main = proxy.main_pid().expect("the main process's pid");
    let new_workers = proxy
        .worker_pids()
        .into_iter()
        .filter(|pid| !old_workers.contains(pid));
    for pid in std::iter::once(main).chain(new_workers) {
        assert!(holds_socket(pid, &before[0]), "{pid} holds {before:?}");
    }
    let later = free_address();
    let _other = listen(
        proxy.dir.path().join("register.sock"),
        Definition::http("other", later, "other.test"),
    )
    .expect("registers after the upgrade");
    assert_eq!(listening_inodes(later).len(), 1);
}
