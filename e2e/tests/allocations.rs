//! Allocations of a warm worker per keep-alive request (issue 17: none on the hot path once
//! warm), counted by this test binary's global allocator on every thread but the test's own
//! (the client and the backend): what is left is the worker's event loop. One test in this
//! file, so that no other worker runs while it counts.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicU64, Ordering},
};

use sozu_command_lib::request::{
    Cluster, HttpFrontend, HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType,
    Order, TlsListenerConfig,
};
use sozu_e2e::{
    DEADLINE, Worker, bind_listener, free_address,
    tls::{certificate, tls_connect},
};
use sozu_lib::server::ServerConfig;

/// Counts allocations (not frees) made on threads that did not opt out.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the test's own threads, whose allocations are not the worker's.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // A thread being torn down has no flag any more: not counted.
    if !UNCOUNTED.try_with(Cell::get).unwrap_or(true) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only counts, then hands every \
              call to the system allocator unchanged"
)]
// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches no allocated memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn uncounted() {
    UNCOUNTED.with(|flag| flag.set(true));
}

const BODY: &[u8] = b"ok";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The end of the head in `bytes`, just after its empty line.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

/// A keep-alive backend answering every request head with [`RESPONSE`], from fixed buffers,
/// each connection on its own thread.
fn backend(listener: TcpListener) {
    std::thread::spawn(move || {
        uncounted();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                uncounted();
                answer(stream);
            });
        }
    });
}

fn answer(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    let mut filled = 0;
    loop {
        if let Some(end) = head_end(&buffer[..filled]) {
            buffer.copy_within(end..filled, 0);
            filled -= end;
            if stream.write_all(RESPONSE).is_err() {
                return;
            }
            continue;
        }
        match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(count) => filled += count,
        }
    }
}

/// Sends `requests` GETs on `stream` one after the other, each answered before the next, from
/// fixed buffers; checks every answer.
fn exchange(stream: &mut (impl Read + Write), requests: usize) {
    let mut buffer = [0u8; 4096];
    for _ in 0..requests {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send a request");
        let mut filled = 0;
        loop {
            let count = stream.read(&mut buffer[filled..]).expect("read an answer");
            assert!(count > 0, "the proxy closed the connection");
            filled += count;
            let answer = &buffer[..filled];
            if let Some(end) = head_end(answer) {
                assert!(
                    answer.starts_with(b"HTTP/1.1 200 "),
                    "an answer: {answer:?}"
                );
                if filled >= end + BODY.len() {
                    assert_eq!(&answer[end..], BODY, "the backend's body, alone");
                    break;
                }
            }
        }
    }
}

/// Allocations counted while `requests` are exchanged after as many to warm up.
fn allocations_of(stream: &mut (impl Read + Write), requests: usize) -> u64 {
    exchange(stream, requests);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    exchange(stream, requests);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn a_warm_keep_alive_request_allocates_nothing_but_the_tls_records_rustls_allocates() {
    uncounted();
    let backend_listener = bind_listener();
    let backend_address = backend_listener.local_addr().expect("an address");
    backend(backend_listener);

    let mut worker = Worker::start(ServerConfig::default());
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(sozu_e2e::backend_order(
        "web",
        "web-0",
        backend_address,
    )));
    let http = worker.http_listener(HttpListenerConfig::new(free_address()));
    worker.route(http, "localhost", "web");
    let https: SocketAddr = free_address();
    worker.ok(Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(https),
        tls: TlsListenerConfig {
            certificate: Some(certificate("localhost")),
            ..TlsListenerConfig::default()
        },
    }));
    worker.ok(Order::AddHttpsFrontend(HttpFrontend::new(
        Some("web".to_string()),
        https,
        "localhost",
    )));
    worker.ok(Order::ActivateListener(ListenerAddress {
        address: https,
        proxy: ListenerType::Https,
    }));

    const REQUESTS: usize = 200;
    let mut plain = TcpStream::connect(http).expect("connect");
    plain
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    assert_eq!(
        allocations_of(&mut plain, REQUESTS),
        0,
        "a warm HTTP keep-alive request allocates nothing"
    );

    let mut tls =
        tls_connect(https, Some("localhost"), &rustls::version::TLS13).expect("a TLS session");
    let allocations = allocations_of(&mut tls, REQUESTS);
    // rustls 0.23 allocates each record it decrypts (the plaintext chunk) and each it
    // encrypts, whichever of its APIs is used: one request and one answer are two records.
    assert!(
        allocations <= 2 * REQUESTS as u64,
        "a warm HTTPS keep-alive request allocates only rustls's two records: {allocations} for {REQUESTS}"
    );
}
