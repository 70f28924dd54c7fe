//! Large HTTP/1 bodies of known length through kernel pipes (issue 17, aim 2): the rest of
//! a body moves with `splice(2)` once its head went out, exactly as many bytes as its
//! `Content-Length` owes, and the connection goes on with the next request. The worker's
//! `http.spliced_bytes` shows that the bytes were spliced.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::mpsc,
    thread,
};

use sozu_command_lib::request::{AddFault, Cluster, Fault, Order};
use sozu_e2e::{
    DEADLINE, Worker,
    backend::{digest, pattern},
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, get, post},
    wire::WireError,
};
use sozu_lib::server::ServerConfig;

const LENGTH: usize = 4 << 20;
const HOST: &str = "bulk.example.com";

fn proxy_with(config: ServerConfig, backends: &[SocketAddr]) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(config);
    let address = worker.http_proxy(HOST, Cluster::new("bulk"), backends);
    (worker, address)
}

fn proxy(backend: &HttpBackend) -> (Worker, SocketAddr) {
    proxy_with(ServerConfig::default(), &[backend.address])
}

/// A figure of the proxy as a whole (0 when the worker has not counted any).
/// The last 3 MiB at least of a 4 MiB body were spliced: only what came with the head (a
/// buffer's worth at most) went through user space.
fn assert_mostly_spliced(worker: &mut Worker, bodies: u64) {
    let spliced = worker.proxy_count("http.spliced_bytes");
    let least = bodies * (LENGTH as u64 - (1 << 20));
    assert!(
        (least..=bodies * LENGTH as u64).contains(&spliced),
        "{spliced} bytes spliced"
    );
}

#[test]
fn a_four_mebibyte_response_is_spliced_byte_for_byte_and_the_connection_goes_on() {
    let body = pattern(1, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |request| {
        if request.target() == "/small" {
            Reply::Send(response(200, &[], b"small"))
        } else {
            Reply::Send(response(200, &[], &body))
        }
    });
    let (mut worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let first = client.get(HOST, "/download");
    assert_eq!(first.status, 200);
    assert_eq!(digest(&first.body), expected);
    assert_mostly_spliced(&mut worker, 1);
    // The request's record (its figures, and its access log line) counts the spliced bytes.
    assert!(worker.proxy_count("bytes_out") >= LENGTH as u64);
    assert_eq!(client.get(HOST, "/small").text(), "small");
    assert_eq!(digest(&client.get(HOST, "/download").body), expected);
    assert_mostly_spliced(&mut worker, 2);
    assert_eq!(
        backend.connections(),
        1,
        "the backend connection is kept too"
    );
}

/// A backend that sends a second response after the body, unasked (a desync attempt): the
/// splice takes the body's bytes only, and the extra response never reaches the client.
#[test]
fn bytes_after_a_spliced_body_are_never_relayed() {
    let body = pattern(2, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |request| {
        if request.target() == "/next" {
            return Reply::Send(response(200, &[], b"genuine"));
        }
        let mut wire = response(200, &[], &body);
        wire.extend_from_slice(&response(200, &[], b"forged"));
        Reply::Send(wire)
    });
    let (mut worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    assert_eq!(digest(&client.get(HOST, "/download").body), expected);
    assert_mostly_spliced(&mut worker, 1);
    assert_eq!(client.get(HOST, "/next").text(), "genuine");
    assert_eq!(
        backend.connections(),
        2,
        "a backend connection with bytes after a response is not reused"
    );
}

/// A body smaller than its pipe (sized to the body, rounded up by the kernel): the room left
/// in the pipe never takes the bytes after the body.
#[test]
fn bytes_after_a_body_smaller_than_its_pipe_are_never_relayed() {
    const SHORT: usize = 200_000;
    let body = pattern(8, SHORT);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |request| {
        if request.target() == "/next" {
            return Reply::Send(response(200, &[], b"genuine"));
        }
        let mut wire = response(200, &[], &body);
        wire.extend_from_slice(&response(200, &[], b"forged"));
        Reply::Send(wire)
    });
    let (mut worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    assert_eq!(digest(&client.get(HOST, "/download").body), expected);
    let spliced = worker.proxy_count("http.spliced_bytes");
    assert!((1..=SHORT as u64).contains(&spliced), "{spliced}");
    assert_eq!(client.get(HOST, "/next").text(), "genuine");
}

/// Reads one request head from `stream`, byte by byte (the test's backends get one request
/// at a time).
fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a request head");
        head.push(byte[0]);
    }
}

/// Reads from `stream` until `wire` holds at least `length` bytes.
fn read_at_least(stream: &mut TcpStream, wire: &mut Vec<u8>, length: usize) {
    let mut chunk = vec![0; 64 << 10];
    while wire.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the response ended after {} bytes", wire.len()),
            Ok(count) => wire.extend_from_slice(&chunk[..count]),
            Err(error) => panic!("reading the response: {error}"),
        }
    }
}

/// A backend that stops in the middle of a body until the client got what was sent: the
/// proxy relays what came, waits for the rest (the pipe empty, the backend's socket
/// drained), and splices it when it comes; the connection then takes the next request.
#[test]
fn a_backend_that_stalls_inside_a_spliced_body_is_waited_for() {
    const HALF: usize = LENGTH / 2;
    let body = pattern(9, LENGTH);
    let expected = digest(&body);
    let listener = sozu_e2e::bind_listener();
    let backend_address = listener.local_addr().expect("backend address");
    let (go_on, resume) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the proxy connects");
        read_head(&mut stream);
        let mut wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {LENGTH}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&body[..HALF]);
        stream.write_all(&wire).expect("the first half");
        resume
            .recv_timeout(DEADLINE)
            .expect("the client got the first half");
        stream.write_all(&body[HALF..]).expect("the second half");
        read_head(&mut stream);
        stream
            .write_all(&response(200, &[], b"next"))
            .expect("the next response");
        let mut rest = Vec::new();
        let _closed = stream.read_to_end(&mut rest);
    });
    let (mut worker, address) = proxy_with(ServerConfig::default(), &[backend_address]);
    let mut stream = TcpStream::connect(address).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream.write_all(&get(HOST, "/stalls")).expect("send");
    let mut wire = Vec::new();
    read_at_least(&mut stream, &mut wire, 1);
    let head_end = loop {
        if let Some(at) = wire.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let more = wire.len() + 1;
        read_at_least(&mut stream, &mut wire, more);
    };
    read_at_least(&mut stream, &mut wire, head_end + HALF);
    assert_eq!(
        wire.len(),
        head_end + HALF,
        "no byte of the second half yet"
    );
    go_on.send(()).expect("the backend waits");
    read_at_least(&mut stream, &mut wire, head_end + LENGTH);
    assert_eq!(digest(&wire[head_end..head_end + LENGTH]), expected);
    let spliced = worker.proxy_count("http.spliced_bytes");
    assert!(spliced >= (LENGTH - HALF) as u64, "{spliced}");
    stream
        .write_all(&get(HOST, "/next"))
        .expect("send the next");
    let mut next = wire.split_off(head_end + LENGTH);
    while !next.ends_with(b"next") {
        let more = next.len() + 1;
        read_at_least(&mut stream, &mut next, more);
    }
    assert!(next.starts_with(b"HTTP/1.1 200"), "{next:?}");
}

/// A client that reads slowly, through a small receive buffer, a few KiB at a time: the pipe
/// fills, the proxy stops reading from the backend until the client takes bytes, and the
/// body arrives whole.
#[test]
fn a_client_that_reads_slowly_gets_the_whole_spliced_body() {
    let body = pattern(10, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    let (mut worker, address) = proxy(&backend);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("create a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .connect(&address.into())
        .expect("connect to the proxy");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream.write_all(&get(HOST, "/download")).expect("send");
    let mut wire = Vec::new();
    let mut chunk = [0; 2048];
    let head_end = loop {
        let count = stream.read(&mut chunk).expect("the response");
        assert!(count > 0, "the response ended early");
        wire.extend_from_slice(&chunk[..count]);
        if let Some(at) = wire.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
    };
    while wire.len() < head_end + LENGTH {
        let count = stream.read(&mut chunk).expect("the body");
        assert!(
            count > 0,
            "the body ended after {} bytes",
            wire.len() - head_end
        );
        wire.extend_from_slice(&chunk[..count]);
    }
    assert_eq!(wire.len(), head_end + LENGTH, "not one byte more");
    assert_eq!(digest(&wire[head_end..]), expected);
    assert_mostly_spliced(&mut worker, 1);
}

/// A backend that closes before the end of its `Content-Length`: the client gets the bytes
/// that came, then the end of the connection, not a wait for bytes that never come.
#[test]
fn a_backend_that_closes_inside_a_spliced_body_cuts_the_response() {
    let sent = 1 << 20;
    let body = pattern(3, sent);
    let backend = HttpBackend::start(move |_| {
        let mut wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {LENGTH}\r\n\r\n").into_bytes();
        wire.extend_from_slice(&body);
        Reply::SendAndClose(wire)
    });
    let (mut worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    client.send(&get(HOST, "/cut"));
    match client.try_response("GET") {
        Err(WireError::Truncated) => {}
        Err(WireError::Io(error)) if error.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("not a cut response: {:?}", other.map(|r| r.status)),
    }
    let spliced = worker.proxy_count("http.spliced_bytes");
    assert!(spliced > 0 && spliced <= sent as u64, "{spliced}");
}

/// An upload of known length is spliced from the client to the backend, and the
/// connection takes the next request.
#[test]
fn a_four_mebibyte_upload_is_spliced_byte_for_byte() {
    let backend = HttpBackend::digesting();
    let (mut worker, address) = proxy(&backend);
    let body = pattern(4, LENGTH);
    let (length, checksum) = digest(&body);
    let mut client = Client::connect(address);
    let answer = client.exchange("POST", &post(HOST, "/upload", &body));
    assert_eq!(answer.text(), format!("{length} {checksum}"));
    assert_mostly_spliced(&mut worker, 1);
    assert!(worker.proxy_count("bytes_in") >= LENGTH as u64);
    let answer = client.exchange("POST", &post(HOST, "/upload", b"tiny"));
    assert_eq!(answer.text(), format!("4 {}", digest(b"tiny").1));
}

/// With `http_splice_min_body` at 0, every body is copied through the session's buffers.
#[test]
fn no_body_is_spliced_when_splicing_is_off() {
    let body = pattern(5, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    let config = ServerConfig {
        http_splice_min_body: 0,
        ..ServerConfig::default()
    };
    let (mut worker, address) = proxy_with(config, &[backend.address]);
    let mut client = Client::connect(address);
    assert_eq!(digest(&client.get(HOST, "/download").body), expected);
    assert_eq!(worker.proxy_count("http.spliced_bytes"), 0);
}

/// A fault that acts on the response's bytes keeps the body on the buffered path, where it
/// acts: `limit_data` cuts the response after exactly its bytes.
#[test]
fn a_fault_on_the_bytes_keeps_the_body_out_of_the_kernel_pipe() {
    let body = pattern(6, LENGTH);
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    let (mut worker, address) = proxy(&backend);
    let fault: Fault = serde_json::from_value(serde_json::json!({
        "name": "cap", "cluster_id": "bulk", "type": "limit_data", "bytes": 300_000
    }))
    .expect("a valid fault");
    worker.ok(Order::AddFault(AddFault { fault }));
    let mut stream = TcpStream::connect(address).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream.write_all(&get(HOST, "/download")).expect("send");
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the proxy did not close the connection: {error}"),
    }
    assert_eq!(received.len(), 300_000);
    assert_eq!(worker.proxy_count("http.spliced_bytes"), 0);
}
