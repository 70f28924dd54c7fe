//! TCP mode through a real worker: bytes, concurrency, backends coming and going, timeouts,
//! connection caps, the PROXY protocol and soft stop.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use sozu_command_lib::{
    request::{
        Cluster, ListenerAddress, ListenerType, Order, ProxyProtocolConfig, RemoveBackend,
        TcpListenerConfig, UpdateTcpListener,
    },
    response::{EventKind, ResponseContent, ResponseStatus},
};
use sozu_e2e::{
    DEADLINE, Worker,
    backend::{Backend, Pattern, Unresponsive, checksum_stream, checksum_update, pattern_checksum},
    backend_order, free_address, wait_until,
};
use sozu_lib::server::ServerConfig;

/// A TCP listener on a free port, copying bytes through user space or splicing them.
fn listener(splice: bool) -> TcpListenerConfig {
    let mut config = TcpListenerConfig::new(free_address());
    config.splice = splice;
    config
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
}

/// Sends `message`, ends the stream, and reads the whole answer.
fn exchange(address: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = connect(address);
    stream.write_all(message).expect("send");
    stream
        .shutdown(Shutdown::Write)
        .expect("shut down the write side");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    answer
}

fn a_hundred_megabytes_each_way_arrive_intact(splice: bool) {
    const LENGTH: usize = 100 << 20;
    let backend = Backend::exchanger(LENGTH);
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("bulk"), &[backend.address]);

    let stream = connect(address);
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let mut pattern = Pattern::new(0xc11e_0000);
        let mut chunk = vec![0; 64 * 1024];
        let mut left = LENGTH;
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        while left > 0 {
            let count = left.min(chunk.len());
            pattern.fill(&mut chunk[..count]);
            hash = checksum_update(hash, &chunk[..count]);
            writer
                .write_all(&chunk[..count])
                .expect("send through the proxy");
            left -= count;
        }
        writer.shutdown(Shutdown::Write).expect("shut down");
        hash
    });
    let (received, checksum) = checksum_stream(&stream);
    let sent_checksum = sender.join().expect("sender thread");

    assert_eq!(received, LENGTH as u64, "bytes from the backend");
    assert_eq!(checksum, pattern_checksum(0xbac0_0000, LENGTH));
    assert!(wait_until(DEADLINE, || !backend.received().is_empty()));
    let record = &backend.received()[0];
    assert_eq!(
        u64::from_le_bytes(record[..8].try_into().unwrap()),
        LENGTH as u64
    );
    assert_eq!(
        u64::from_le_bytes(record[8..].try_into().unwrap()),
        sent_checksum
    );
}

fn a_thousand_concurrent_connections_complete(splice: bool) {
    let backend = Backend::echo();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("echo"), &[backend.address]);

    let clients: Vec<TcpStream> = (0..1000).map(|_| connect(address)).collect();
    for (index, mut client) in clients.iter().enumerate() {
        client
            .write_all(format!("client {index}").as_bytes())
            .expect("send");
        client.shutdown(Shutdown::Write).expect("shut down");
    }
    for (index, mut client) in clients.into_iter().enumerate() {
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("read the echo");
        assert_eq!(answer, format!("client {index}"));
    }
}

fn half_close_still_delivers_the_whole_answer(splice: bool) {
    let backend = Backend::recorder(b"the whole answer after your end of stream");
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("late"), &[backend.address]);
    assert_eq!(
        exchange(address, b"question"),
        b"the whole answer after your end of stream"
    );
    assert_eq!(backend.received(), [b"question".to_vec()]);
}

/// A backend that ends its stream first (its answer, then its end, with the client's stream
/// still open): the client gets the whole answer, then the end of stream (with the answer's
/// last bytes, in one segment), and what it sends after that still reaches the backend, which
/// reads until the client ends.
fn a_backend_that_ends_first_still_hears_the_client(splice: bool) {
    let backend = Backend::greeter(b"the answer comes first, then its end");
    let mut worker = Worker::start(ServerConfig::default());
    let address =
        worker.tcp_proxy_with(listener(splice), Cluster::new("first"), &[backend.address]);

    let mut stream = connect(address);
    stream.write_all(b"hello").expect("send");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("read the answer and its end");
    assert_eq!(answer, b"the answer comes first, then its end");
    stream
        .write_all(b", and more")
        .expect("send after the backend's end");
    stream
        .shutdown(Shutdown::Write)
        .expect("shut down the write side");
    assert!(wait_until(DEADLINE, || !backend.received().is_empty()));
    assert_eq!(backend.received(), [b"hello, and more".to_vec()]);
}

/// A backend that speaks first greets a client that has not spoken at once: the proxy's
/// connection holds the handshake's last acknowledgement back for the client's first bytes,
/// and sends it alone when there are none, rather than leave the backend waiting for it
/// (until the kernel's delayed-acknowledgement timeout, 200 ms, before it can accept).
fn a_backend_that_speaks_first_greets_a_silent_client_at_once(splice: bool) {
    let backend = Backend::greeter(b"220 ready");
    let mut worker = Worker::start(ServerConfig::default());
    let address =
        worker.tcp_proxy_with(listener(splice), Cluster::new("speaks"), &[backend.address]);

    // The quickest of a few connections, so that a slow turn of a loaded machine does not
    // count: without the proxy's acknowledgement, every one takes 200 ms or more.
    let quickest = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut stream = connect(address);
            let mut greeting = [0; 9];
            stream.read_exact(&mut greeting).expect("read the greeting");
            assert_eq!(&greeting, b"220 ready");
            started.elapsed()
        })
        .min()
        .expect("five connections");
    assert!(
        quickest < Duration::from_millis(150),
        "greeted after {quickest:?}"
    );
}

fn removed_backend_drains_while_new_connections_go_elsewhere(splice: bool) {
    let first = Backend::echo();
    let second = Backend::echo();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("pair"), &[first.address]);

    // A long transfer in flight on the first backend.
    let mut long = connect(address);
    long.write_all(b"part one;").expect("send");
    let mut echoed = [0; 9];
    long.read_exact(&mut echoed).expect("echo of part one");

    worker.ok(Order::AddBackend(backend_order(
        "pair",
        "pair-second",
        second.address,
    )));
    worker.ok(Order::RemoveBackend(RemoveBackend {
        cluster_id: "pair".to_string(),
        backend_id: "pair-0".to_string(),
        address: first.address,
        drain_timeout: None,
    }));

    // The removed backend is draining, still known while its connection lives.
    let response = worker.order(Order::QueryClusterById(
        sozu_command_lib::request::ClusterId {
            cluster_id: "pair".to_string(),
        },
    ));
    let Some(ResponseContent::Clusters(clusters)) = response.content else {
        panic!("no cluster information: {response:?}");
    };
    let statuses: Vec<_> = clusters[0]
        .backends
        .iter()
        .map(|b| {
            (
                b.backend.backend_id.clone(),
                b.runtime.as_ref().unwrap().status,
            )
        })
        .collect();
    assert!(statuses.contains(&(
        "pair-0".to_string(),
        sozu_command_lib::response::BackendStatus::Draining
    )));

    for _ in 0..5 {
        assert_eq!(exchange(address, b"new"), b"new");
    }
    assert_eq!(
        first.accepted(),
        1,
        "no new connection to the removed backend"
    );
    assert_eq!(second.accepted(), 5);

    long.write_all(b"part two")
        .expect("send on the draining connection");
    long.shutdown(Shutdown::Write).expect("shut down");
    let mut rest = Vec::new();
    long.read_to_end(&mut rest).expect("read the rest");
    assert_eq!(rest, b"part two");

    let event = worker.wait_event(|e| e.kind == EventKind::RemovedBackendHasNoConnections);
    assert_eq!(event.backend_id.as_deref(), Some("pair-0"));
}

fn a_dead_backend_is_skipped_for_a_live_one(splice: bool) {
    let live = Backend::greeter(b"alive");
    let dead = free_address();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(
        listener(splice),
        Cluster::new("mixed"),
        &[dead, live.address],
    );
    for _ in 0..6 {
        assert_eq!(exchange(address, b""), b"alive");
    }
}

fn without_a_live_backend_the_client_is_closed_promptly(splice: bool) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(
        listener(splice),
        Cluster::new("none"),
        &[free_address(), free_address()],
    );
    let started = Instant::now();
    let mut stream = connect(address);
    let mut answer = Vec::new();
    let result = stream.read_to_end(&mut answer);
    assert!(
        result.is_ok()
            || result
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset)
    );
    assert!(answer.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

fn connect_timeout_fires_on_a_backend_that_never_answers(splice: bool) {
    let unresponsive = Unresponsive::start();
    let mut worker = Worker::start(ServerConfig {
        connect_attempts: 1,
        ..ServerConfig::default()
    });
    let mut listener = listener(splice);
    listener.connect_timeout = Duration::from_secs(1);
    let address = worker.tcp_proxy_with(listener, Cluster::new("slow"), &[unresponsive.address]);
    let started = Instant::now();
    let answer = closed_by_a_one_second_timeout(connect(address), started);
    assert!(answer.is_empty());
}

/// Reads `stream`, opened at `started`, to its end, which a timeout of one second must
/// bring: not before it, and well within five seconds. Returns what was read.
fn closed_by_a_one_second_timeout(mut stream: TcpStream, started: Instant) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}, before the timeout"
    );
    assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
    answer
}

/// A worker proxying a listener to a backend that reads and never answers, so that only a
/// timeout ends a connection: the front timeout is the one asked, the back one a minute.
struct SilentBackend {
    /// Listens as long as the test runs.
    _backend: Backend,
    worker: Worker,
    listener: TcpListenerConfig,
    address: SocketAddr,
}

impl SilentBackend {
    fn start(splice: bool, front_timeout: Duration, cluster: &str) -> SilentBackend {
        let backend = Backend::recorder(b"");
        let mut worker = Worker::start(ServerConfig::default());
        let mut listener = listener(splice);
        listener.front_timeout = front_timeout;
        listener.back_timeout = Duration::from_secs(60);
        let address =
            worker.tcp_proxy_with(listener.clone(), Cluster::new(cluster), &[backend.address]);
        SilentBackend {
            _backend: backend,
            worker,
            listener,
            address,
        }
    }
}

fn front_idle_timeout_closes_a_silent_client(splice: bool) {
    let proxy = SilentBackend::start(splice, Duration::from_secs(1), "idle");
    let started = Instant::now();
    closed_by_a_one_second_timeout(connect(proxy.address), started);
}

/// A listener's new timeouts hold for the connections it accepts after the order.
fn updated_front_timeout_holds_for_new_connections(splice: bool) {
    let mut proxy = SilentBackend::start(splice, Duration::from_secs(60), "updated");
    let shorter = TcpListenerConfig {
        front_timeout: Duration::from_secs(1),
        ..proxy.listener.clone()
    };
    let update = UpdateTcpListener::between(&proxy.listener, &shorter);
    proxy.worker.ok(Order::UpdateTcpListenerConfig(update));
    let started = Instant::now();
    closed_by_a_one_second_timeout(connect(proxy.address), started);
}

fn back_idle_timeout_closes_when_the_backend_goes_silent(splice: bool) {
    // The backend reads forever and never answers; the client keeps sending, so only the
    // backend side is idle.
    let backend = Backend::recorder(b"");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = listener(splice);
    listener.front_timeout = Duration::from_secs(60);
    listener.back_timeout = Duration::from_secs(1);
    let address = worker.tcp_proxy_with(listener, Cluster::new("mute"), &[backend.address]);
    let started = Instant::now();
    let mut stream = connect(address);
    stream.write_all(b"hello").expect("send");
    closed_by_a_one_second_timeout(stream, started);
}

fn max_connections_makes_extra_clients_wait_in_the_backlog(splice: bool) {
    let backend = Backend::echo();
    let mut worker = Worker::start(ServerConfig {
        max_connections: 10,
        ..ServerConfig::default()
    });
    let address =
        worker.tcp_proxy_with(listener(splice), Cluster::new("capped"), &[backend.address]);

    let mut first: Vec<TcpStream> = (0..10).map(|_| connect(address)).collect();
    for client in &mut first {
        client.write_all(b"x").expect("send");
        let mut echo = [0; 1];
        client.read_exact(&mut echo).expect("served");
    }
    let mut waiting: Vec<TcpStream> = (0..10).map(|_| connect(address)).collect();
    for client in &mut waiting {
        client.write_all(b"y").expect("send");
    }
    // While the first ten are open, the others are not served.
    waiting[0]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut echo = [0; 1];
    assert!(
        waiting[0].read_exact(&mut echo).is_err(),
        "served beyond the cap"
    );
    assert_eq!(backend.accepted(), 10);

    drop(first);
    for client in &mut waiting {
        client.set_read_timeout(Some(DEADLINE)).expect("timeout");
        client
            .read_exact(&mut echo)
            .expect("served once slots freed");
        assert_eq!(&echo, b"y");
    }
}

fn proxy_v1_received_is_relayed_byte_for_byte(splice: bool) {
    let backend = Backend::recorder(b"ok");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = listener(splice);
    listener.expect_proxy = true;
    let mut cluster = Cluster::new("relay");
    cluster.proxy_protocol = Some(ProxyProtocolConfig::RelayHeader);
    let address = worker.tcp_proxy_with(listener, cluster, &[backend.address]);
    let header = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n";
    let mut message = header.to_vec();
    message.extend_from_slice(b"payload");
    assert_eq!(exchange(address, &message), b"ok");
    assert_eq!(backend.received(), [message]);
}

fn proxy_v2_received_is_read_and_a_v2_header_is_sent(splice: bool) {
    let backend = Backend::recorder(b"ok");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = listener(splice);
    listener.expect_proxy = true;
    let mut cluster = Cluster::new("send");
    cluster.proxy_protocol = Some(ProxyProtocolConfig::SendHeader);
    let address = worker.tcp_proxy_with(listener, cluster, &[backend.address]);

    let client: SocketAddr = "198.51.100.9:5555".parse().unwrap();
    let mut message = Vec::new();
    sozu_lib::protocol::proxy_protocol::write_v2(client, address, &mut message);
    message.extend_from_slice(b"payload");
    assert_eq!(exchange(address, &message), b"ok");
    // The backend receives a v2 header naming the real client, then the payload.
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    expected.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1]);
    expected.extend_from_slice(&5555u16.to_be_bytes());
    expected.extend_from_slice(&address.port().to_be_bytes());
    expected.extend_from_slice(b"payload");
    assert_eq!(backend.received(), [expected]);
}

fn proxy_v1_received_without_send_proxy_is_stripped(splice: bool) {
    let backend = Backend::recorder(b"ok");
    let mut worker = Worker::start(ServerConfig::default());
    let mut listener = listener(splice);
    listener.expect_proxy = true;
    let address = worker.tcp_proxy_with(listener, Cluster::new("strip"), &[backend.address]);
    let message = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\npayload";
    assert_eq!(exchange(address, message), b"ok");
    assert_eq!(backend.received(), [b"payload".to_vec()]);
}

fn send_proxy_without_expect_proxy_names_the_socket_peer(splice: bool) {
    let backend = Backend::recorder(b"ok");
    let mut worker = Worker::start(ServerConfig::default());
    let mut cluster = Cluster::new("direct");
    cluster.proxy_protocol = Some(ProxyProtocolConfig::SendHeader);
    let address = worker.tcp_proxy_with(listener(splice), cluster, &[backend.address]);
    let mut stream = connect(address);
    let local = stream.local_addr().expect("client address");
    stream.write_all(b"data").expect("send");
    stream.shutdown(Shutdown::Write).expect("shut down");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read");
    let mut expected = Vec::new();
    sozu_lib::protocol::proxy_protocol::write_v2(local, address, &mut expected);
    expected.extend_from_slice(b"data");
    assert_eq!(backend.received(), [expected]);
}

fn soft_stop_lets_a_transfer_finish_then_the_worker_exits(splice: bool) {
    let backend = Backend::echo();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("stop"), &[backend.address]);
    let mut stream = connect(address);
    stream.write_all(b"before").expect("send");
    let mut echo = [0; 6];
    stream.read_exact(&mut echo).expect("echo");

    let stop = worker.send(Order::SoftStop);
    // New connections are refused once the listener is closed.
    assert!(wait_until(DEADLINE, || TcpStream::connect(address).is_err()));
    stream.write_all(b"after").expect("send during the stop");
    stream.shutdown(Shutdown::Write).expect("shut down");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read");
    assert_eq!(rest, b"after");
    drop(stream);

    let response = worker.response_to(&stop);
    assert_eq!(response.status, ResponseStatus::Ok);
    assert!(worker.join(DEADLINE), "the worker did not exit");
}

#[test]
fn orders_that_fail_change_nothing() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    let response = worker.order(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Tcp,
    }));
    assert_eq!(response.status, ResponseStatus::Failure);
    assert!(
        response.message.contains(&address.to_string()),
        "{}",
        response.message
    );
    assert!(TcpStream::connect(address).is_err(), "nothing listens");

    let response = worker.order(Order::AddBackend(backend_order(
        "ghost",
        "b",
        free_address(),
    )));
    assert_eq!(response.status, ResponseStatus::Failure);
    assert_eq!(response.message, "no cluster `ghost`");
}

/// Runs each scenario twice: bytes copied through pooled buffers, and spliced through kernel
/// pipes (`splice = true` on the listener).
macro_rules! both_ways {
    ($($name:ident,)*) => {
        mod copying {
            $(#[test]
            fn $name() {
                super::$name(false)
            })*
        }
        mod splicing {
            $(#[test]
            fn $name() {
                super::$name(true)
            })*
        }
    };
}

both_ways! {
    a_hundred_megabytes_each_way_arrive_intact,
    a_thousand_concurrent_connections_complete,
    half_close_still_delivers_the_whole_answer,
    a_backend_that_ends_first_still_hears_the_client,
    a_backend_that_speaks_first_greets_a_silent_client_at_once,
    removed_backend_drains_while_new_connections_go_elsewhere,
    a_dead_backend_is_skipped_for_a_live_one,
    without_a_live_backend_the_client_is_closed_promptly,
    connect_timeout_fires_on_a_backend_that_never_answers,
    front_idle_timeout_closes_a_silent_client,
    updated_front_timeout_holds_for_new_connections,
    back_idle_timeout_closes_when_the_backend_goes_silent,
    max_connections_makes_extra_clients_wait_in_the_backlog,
    proxy_v1_received_is_relayed_byte_for_byte,
    proxy_v2_received_is_read_and_a_v2_header_is_sent,
    proxy_v1_received_without_send_proxy_is_stripped,
    send_proxy_without_expect_proxy_names_the_socket_peer,
    soft_stop_lets_a_transfer_finish_then_the_worker_exits,
}
