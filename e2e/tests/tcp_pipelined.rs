//! TCP mode with pipelined exchanges through a real worker: batches of small requests, each
//! answered by the backend with a write of its own (as nginx answers pipelined HTTP requests),
//! must all be relayed as they come. Once the last answer is written, nothing else happens on
//! either connection (no close, no more bytes, no timeout within the test's deadline): an
//! answer whose readiness the proxy lost would never arrive.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
};

use sozu_command_lib::request::{Cluster, TcpListenerConfig};
use sozu_e2e::{DEADLINE, Worker, bind_listener, free_address};
use sozu_lib::server::ServerConfig;

/// Requests in a batch, as `benches/load/pipeline.lua` sends them.
const DEPTH: usize = 16;
/// Batches of one connection.
const BATCHES: usize = 64;
/// The length of each request.
const REQUEST: usize = 16;

/// Request `index` of a connection: `REQUEST` bytes.
fn request(index: usize) -> Vec<u8> {
    format!("request {index:07}\n").into_bytes()
}

/// The answer to request `index`, naming it; all answers have the same length.
fn answer(index: usize) -> Vec<u8> {
    format!("answer to request {index:07}, one write apiece\n").into_bytes()
}

/// A backend that answers each request of one connection as soon as it has it whole, with one
/// write per answer (no delay: each goes out as its own segment), then keeps the connection
/// open until the client closes it.
fn backend() -> (SocketAddr, thread::JoinHandle<usize>) {
    let listener = bind_listener();
    let address = listener.local_addr().expect("backend address");
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept the proxy's connection");
        stream.set_nodelay(true).expect("no delay");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("set a read timeout");
        let mut pending = Vec::new();
        let mut answered = 0;
        let mut chunk = [0; 4096];
        loop {
            let count = stream.read(&mut chunk).expect("read requests");
            if count == 0 {
                return answered;
            }
            pending.extend_from_slice(&chunk[..count]);
            while pending.len() >= REQUEST {
                assert_eq!(pending[..REQUEST], request(answered), "requests in order");
                pending.drain(..REQUEST);
                stream.write_all(&answer(answered)).expect("answer");
                answered += 1;
            }
        }
    });
    (address, handle)
}

fn listener(splice: bool) -> TcpListenerConfig {
    let mut config = TcpListenerConfig::new(free_address());
    config.splice = splice;
    config
}

/// `BATCHES` batches of `DEPTH` requests; each batch is sent in one write, or one write per
/// request when `one_write_each`, and all its answers are awaited before the next batch. The
/// worker's buffers hold `buffer_size` bytes: below a batch's size, reads fill them and the
/// bytes left in the socket must still be read once the buffer is drained.
fn pipelined_batches_are_answered_whole(splice: bool, one_write_each: bool, buffer_size: usize) {
    let (backend, answered) = backend();
    let mut worker = Worker::start(ServerConfig {
        buffer_size,
        ..ServerConfig::default()
    });
    let address = worker.tcp_proxy_with(listener(splice), Cluster::new("pipelined"), &[backend]);
    let mut client = TcpStream::connect(address).expect("connect to the proxy");
    client.set_nodelay(true).expect("no delay");
    client
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");

    for batch in 0..BATCHES {
        let indexes = batch * DEPTH..(batch + 1) * DEPTH;
        if one_write_each {
            for index in indexes.clone() {
                client.write_all(&request(index)).expect("send a request");
            }
        } else {
            let requests: Vec<u8> = indexes.clone().flat_map(request).collect();
            client.write_all(&requests).expect("send a batch");
        }
        let mut received = vec![0; DEPTH * answer(0).len()];
        client
            .read_exact(&mut received)
            .unwrap_or_else(|error| panic!("batch {batch}: answers missing: {error}"));
        let expected: Vec<u8> = indexes.flat_map(answer).collect();
        assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(&expected),
            "batch {batch}"
        );
    }
    drop(client);
    assert_eq!(
        answered.join().expect("the backend ran"),
        BATCHES * DEPTH,
        "every request reached the backend once"
    );
}

macro_rules! both_ways {
    ($($name:ident: $one_write_each:expr, $buffer_size:expr;)*) => {
        mod copied {
            $(
                #[test]
                fn $name() {
                    super::pipelined_batches_are_answered_whole(false, $one_write_each, $buffer_size);
                }
            )*
        }
        mod spliced {
            $(
                #[test]
                fn $name() {
                    super::pipelined_batches_are_answered_whole(true, $one_write_each, $buffer_size);
                }
            )*
        }
    };
}

/// Smaller than a batch of requests (256 bytes) and than its answers (704).
const SMALL_BUFFER: usize = 100;

both_ways! {
    batches_in_one_write_answered_one_write_per_request: false, 16_393;
    requests_and_answers_in_one_write_each: true, 16_393;
    batches_larger_than_the_buffers: false, super::SMALL_BUFFER;
}
