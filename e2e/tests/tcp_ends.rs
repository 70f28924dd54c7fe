//! TCP sessions end when their connections end, however they end: a client that resets its
//! connection after the answer (as a TLS client does when it closes with the server's
//! close_notify unread, which is what `wrk -c50` with `Connection: close` does through an SNI
//! router), and a backend that resets after answering (it closed with the client's bytes
//! unread). The worker's `active_connections` gauge must come back to zero, and the client
//! must get the whole answer and the end of the stream, long before any idle timeout.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use sozu_command_lib::{
    request::{
        Cluster, ListenerAddress, ListenerType, Order, QueryMetrics, TcpFrontend,
        TcpListenerConfig, TcpRule, TcpScript,
    },
    response::{FilteredMetric, ResponseContent},
};
use sozu_e2e::{DEADLINE, Worker, bind_listener, free_address, tls::client_hello, wait_until};
use sozu_lib::server::ServerConfig;

/// What the backend answers, then what it sends last (a TLS server's close_notify).
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const LAST_WORDS: &[u8] = b"\x15\x03\x03\x00\x02\x01\x00";

/// Idle timeouts far longer than any wait of the tests: a session they close was not ended
/// by its connections.
const IDLE: Duration = Duration::from_secs(600);

/// A backend that reads `expected` bytes, answers [`ANSWER`] then [`LAST_WORDS`], and closes
/// (an end of stream: it read everything it was sent).
fn answering_backend(expected: usize) -> SocketAddr {
    let listener = bind_listener();
    let address = listener.local_addr().expect("backend address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut request = vec![0; expected];
                if stream.read_exact(&mut request).is_ok() {
                    let _ = stream.write_all(ANSWER);
                    let _ = stream.write_all(LAST_WORDS);
                }
            });
        }
    });
    address
}

/// The worker's count of open sessions.
fn active_connections(worker: &mut Worker) -> i64 {
    let response = worker.order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    match metrics.proxy.get("active_connections") {
        Some(FilteredMetric::Gauge(count)) => *count,
        other => panic!("active_connections: {other:?}"),
    }
}

/// A TCP listener with long idle timeouts, configured by `configure`, with a cluster
/// `{tag}-{name}` per `(name, rule)` whose backend is `backend`; returns its address.
fn listener(
    worker: &mut Worker,
    tag: &str,
    configure: impl FnOnce(&mut TcpListenerConfig),
    rules: &[(&str, Option<TcpRule>)],
    backend: SocketAddr,
) -> SocketAddr {
    let mut config = TcpListenerConfig::new(free_address());
    config.front_timeout = IDLE;
    config.back_timeout = IDLE;
    configure(&mut config);
    let address = config.address;
    worker.ok(Order::AddTcpListener(config));
    for (name, rule) in rules {
        let cluster_id = format!("{tag}-{name}");
        worker.cluster(Cluster::new(&cluster_id), &[backend]);
        let mut frontend = TcpFrontend::new(cluster_id, address);
        frontend.rule = rule.clone();
        worker.ok(Order::AddTcpFrontend(frontend));
    }
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Tcp,
    }));
    address
}

/// One connection as a TLS client with `Connection: close` ends it: sends `hello`, reads the
/// answer, and closes once the server's last words arrived, unread: the kernel resets the
/// connection.
fn reset_after_answer(address: SocketAddr, hello: &[u8]) {
    let mut stream = TcpStream::connect(address).expect("connect to the proxy");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.write_all(hello).expect("send the ClientHello");
    let mut answer = vec![0; ANSWER.len()];
    stream.read_exact(&mut answer).expect("read the answer");
    assert_eq!(answer, ANSWER);
    let mut byte = [0; 1];
    assert_eq!(stream.peek(&mut byte).expect("the last words arrive"), 1);
}

/// `clients` clients at once, each resetting `rounds` connections in a row after their answer.
fn load(address: SocketAddr, hello: &[u8], clients: usize, rounds: usize) {
    thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                for _ in 0..rounds {
                    reset_after_answer(address, hello);
                }
            });
        }
    });
}

#[test]
fn sessions_end_when_concurrent_clients_reset_after_their_answer() {
    let hello = client_hello("a.test");
    let backend = answering_backend(hello.len());
    let mut worker = Worker::start(ServerConfig::default());
    let script = r#"
function route(data, peer)
  if #data < 5 then
    return nil
  end
  return { cluster = "scripted-a" }
end
"#;
    let by_sni = listener(
        &mut worker,
        "sni",
        |_| {},
        &[("a", Some(TcpRule::Sni("a.test".to_string()))), ("b", None)],
        backend,
    );
    let scripted = listener(
        &mut worker,
        "scripted",
        |config| {
            config.script = Some(TcpScript {
                name: "route.lua".to_string(),
                source: script.to_string(),
            });
        },
        &[("a", None)],
        backend,
    );
    let plain = listener(&mut worker, "plain", |_| {}, &[("a", None)], backend);
    let spliced = listener(
        &mut worker,
        "spliced",
        |config| config.splice = true,
        &[("a", Some(TcpRule::Sni("a.test".to_string()))), ("b", None)],
        backend,
    );

    for address in [by_sni, scripted, plain, spliced] {
        load(address, &hello, 50, 4);
        assert!(
            wait_until(DEADLINE, || active_connections(&mut worker) == 0),
            "sessions of {address} are left open: {}",
            active_connections(&mut worker)
        );
    }
}

#[test]
fn a_backend_reset_after_its_answer_ends_the_client_connection() {
    // The backend answers without reading the request, and closes: with the request unread,
    // its kernel resets the connection.
    let request = b"a request the backend never reads";
    let backend = bind_listener();
    let backend_address = backend.local_addr().expect("backend address");
    thread::spawn(move || {
        for stream in backend.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut byte = [0; 1];
            if stream.peek(&mut byte).is_ok() {
                let _ = stream.write_all(ANSWER);
            }
        }
    });
    let mut worker = Worker::start(ServerConfig::default());
    let prefix = [("a", Some(TcpRule::Prefix("a ".to_string()))), ("b", None)];
    for (tag, splice, rules) in [
        ("prefix", false, &prefix[..]),
        ("plain", false, &[("a", None)][..]),
        ("spliced", true, &prefix[..]),
    ] {
        let address = listener(
            &mut worker,
            tag,
            |config| config.splice = splice,
            rules,
            backend_address,
        );
        let mut client = TcpStream::connect(address).expect("connect to the proxy");
        client.set_read_timeout(Some(DEADLINE)).expect("timeout");
        client.write_all(request).expect("send the request");
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .expect("the answer, then the end of the stream");
        assert_eq!(answer, ANSWER);
        // Nothing the client could send would reach the backend: the session ends without
        // waiting for the client to close.
        assert!(
            wait_until(DEADLINE, || active_connections(&mut worker) == 0),
            "the session of {address} is left open"
        );
        drop(client);
    }
}
