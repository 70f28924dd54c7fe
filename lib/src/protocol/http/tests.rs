//! The HTTP stage's decisions, driven without the event loop: a session over loopback
//! sockets, a listener and clusters built in memory, events given by hand, and the actions
//! the stage returns checked.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use mio::Token;
use rustc_hash::FxHashMap;
use sozu_command_lib::request::{
    AddBackend, Cluster, FixedAnswer, HttpFrontend, HttpListenerConfig, Timeouts,
};

use super::*;
use crate::{
    backends::BackendMap,
    metrics::{Metrics, Recorder},
    protocol::http::{answers::Answers, parser::Limits},
    router::{Router, content::ContentRouter},
    session::Accepted,
    session::endpoint::{Endpoint, Ready, Unread},
    timer::{Timeout, TimeoutKind, Timers},
};

const DEADLINE: Duration = Duration::from_secs(5);

/// An HTTP stage and the session's other parts, with everything the loop would lend them.
struct Harness {
    stage: Stage,
    io: SessionIo,
    client: TcpStream,
    backend: TcpListener,
    backends: BackendMap,
    timers: Timers,
    pool: Pool,
    listeners: FxHashMap<SocketAddr, HttpListener>,
    content_routers: FxHashMap<SocketAddr, ContentRouter>,
    clusters: BTreeMap<String, Cluster>,
    authorized: FxHashMap<String, auth::Authorized>,
    recorder: Recorder,
    faults: crate::faults::FaultSet,
}

/// Waits, within a bound, for the peer's bytes or end to reach `endpoint`.
fn arrived(endpoint: &Endpoint) {
    let deadline = Instant::now() + DEADLINE;
    while endpoint.unread() == Unread::Nothing {
        assert!(Instant::now() < deadline, "nothing arrived");
        std::thread::yield_now();
    }
}

/// A connected pair: the proxy's end as an endpoint, and the peer's end, blocking with a
/// read timeout.
fn pair(listener: &TcpListener, token: usize) -> (Endpoint, TcpStream) {
    let proxy_end = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer_end, _) = listener.accept().unwrap();
    peer_end.set_read_timeout(Some(DEADLINE)).unwrap();
    proxy_end.set_nonblocking(true).unwrap();
    let endpoint = Endpoint::new(mio::net::TcpStream::from_std(proxy_end), Token(token));
    (endpoint, peer_end)
}

impl Harness {
    /// `example.com` goes to cluster `api`, `other.com` to `other`, `fixed.com` answers by
    /// itself; both clusters have the test's backend.
    fn new() -> Harness {
        let front_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = front_listener.local_addr().unwrap();
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut router = Router::new();
        router
            .add(HttpFrontend::new(
                Some("api".into()),
                address,
                "example.com",
            ))
            .unwrap();
        router
            .add(HttpFrontend::new(
                Some("other".into()),
                address,
                "other.com",
            ))
            .unwrap();
        let mut fixed = HttpFrontend::new(None, address, "fixed.com");
        fixed.answer = Some(FixedAnswer {
            status: 200,
            headers: Vec::new(),
            body: "fixed".to_string(),
        });
        router.add(fixed).unwrap();
        let listener = HttpListener {
            config: HttpListenerConfig::new(address),
            router,
            answers: Answers::new(&BTreeMap::new()).unwrap(),
            tls: None,
            hsts: None,
            limits: Limits::default(),
            spares: Default::default(),
        };
        let mut backends = BackendMap::new();
        let mut clusters = BTreeMap::new();
        for cluster_id in ["api", "other"] {
            let cluster = Cluster::new(cluster_id);
            backends.set_cluster(&cluster);
            backends.add(&AddBackend {
                cluster_id: cluster_id.to_string(),
                backend_id: format!("{cluster_id}-1"),
                address: backend.local_addr().unwrap(),
                sticky_id: None,
                weight: 100,
                backup: false,
            });
            clusters.insert(cluster_id.to_string(), cluster);
        }
        let (front, client) = pair(&front_listener, 1);
        let pool = Pool::new(16_384, 2, 8);
        let timeout = Duration::from_secs(10);
        let accepted = Accepted {
            uid: 1,
            key: 0,
            listener_address: address,
            front,
            client_address: client.local_addr().unwrap(),
            local_address: address,
        };
        let timeouts = Timeouts {
            front: timeout,
            back: timeout,
            connect: timeout,
            request: timeout,
        };
        let io = SessionIo::new(accepted, timeouts.into(), Instant::now());
        let stage = Stage::Http(Box::new(Http::new(&pool)));
        Harness {
            stage,
            io,
            client,
            backend,
            backends,
            timers: Timers::new(),
            pool,
            listeners: [(address, listener)].into_iter().collect(),
            clusters,
            authorized: FxHashMap::default(),
            content_routers: FxHashMap::default(),
            recorder: Recorder {
                metrics: Metrics::new(false),
                access_log: None,
            },
            faults: crate::faults::FaultSet::new(0),
        }
    }

    fn context(&mut self) -> (&mut Stage, &mut SessionIo, Context<'_>) {
        let context = Context {
            now: Instant::now(),
            timers: &mut self.timers,
            pool: &self.pool,
            listeners: &self.listeners,
            content_routers: &mut self.content_routers,
            clusters: &self.clusters,
            authorized: &self.authorized,
            recorder: &mut self.recorder,
            faults: &mut self.faults,
            body_splice: crate::protocol::http::splice::BodySplice::default(),
        };
        (&mut self.stage, &mut self.io, context)
    }

    /// Runs the stage as the loop would after an event.
    fn ready(&mut self) -> Action {
        let (stage, io, mut context) = self.context();
        stage.ready(io, &mut context)
    }

    fn timed_out(&mut self, kind: TimeoutKind) -> Action {
        let (stage, io, mut context) = self.context();
        match stage.timed_out(io, kind, &mut context) {
            Some(action) => action,
            None => self.ready(),
        }
    }

    /// The client sends `request`; the stage hears of it.
    fn request(&mut self, request: &str) {
        self.client.write_all(request.as_bytes()).unwrap();
        arrived(&self.io.front);
        self.io.add_front_event(Ready::READABLE | Ready::WRITABLE);
    }

    /// Gives the session an established connection to the backend of `cluster_id`, as the
    /// loop does after a connect (`New`) or from the pool (`Reused`); returns the backend's
    /// end.
    fn attach(&mut self, cluster_id: &str, back_use: BackUse) -> TcpStream {
        let (endpoint, backend_end) = pair(&self.backend, 2);
        let key = self
            .backends
            .pick(cluster_id, None, Instant::now())
            .unwrap();
        let back = BackConnection {
            endpoint,
            lease: self.backends.lease(key),
            backend_id: format!("{cluster_id}-1"),
            address: self.backend.local_addr().unwrap(),
            connected: true,
            connect_started: Instant::now(),
            timeout: Timeout::default(),
        };
        // As the loop's connect does: the slot remembers the cluster it connects to.
        self.io
            .backs
            .connect_to(SLOT, Some(std::rc::Rc::from(cluster_id)));
        self.io.backs.insert(SLOT, back);
        self.io.add_back_event(SLOT, Ready::WRITABLE);
        let connect_time = (back_use == BackUse::New).then_some(Duration::from_micros(250));
        self.stage
            .backend_connected(SLOT, &format!("{cluster_id}-1"), back_use, connect_time);
        backend_end
    }

    /// Scratch spaces the listener keeps for its connections.
    fn spares(&self) -> usize {
        self.listeners.values().map(|l| l.spares.len()).sum()
    }

    /// The backend sends `response` on `backend_end`; the stage hears of it.
    fn respond(&mut self, backend_end: &mut TcpStream, response: &str) {
        backend_end.write_all(response.as_bytes()).unwrap();
        arrived(&self.io.backs.get(SLOT).unwrap().endpoint);
        self.io
            .add_back_event(SLOT, Ready::READABLE | Ready::WRITABLE);
    }

    /// What the client received, `expected_len` bytes.
    fn client_reads(&mut self, expected_len: usize) -> String {
        let mut received = vec![0; expected_len];
        self.client.read_exact(&mut received).unwrap();
        String::from_utf8(received).unwrap()
    }

    /// What the client received, up to and with `suffix`.
    fn client_reads_until(&mut self, suffix: &str) -> String {
        let mut received = Vec::new();
        let mut byte = [0; 1];
        while !received.ends_with(suffix.as_bytes()) {
            self.client.read_exact(&mut byte).unwrap();
            received.push(byte[0]);
        }
        String::from_utf8(received).unwrap()
    }

    fn client_has_nothing(&mut self) {
        self.client.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let read = self.client.read(&mut byte);
        assert!(
            read.as_ref()
                .is_err_and(|error| error.kind() == std::io::ErrorKind::WouldBlock),
            "{read:?}"
        );
        self.client.set_nonblocking(false).unwrap();
    }
}

/// Reads one request head from the backend's end.
fn backend_reads_head(backend_end: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        backend_end.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

const GET: &str = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn connect(cluster_id: &str) -> Action {
    Action::Connect {
        slot: SLOT,
        cluster_id: cluster_id.into(),
        sticky_id: None,
    }
}

#[test]
fn a_request_on_a_reused_connection_the_backend_closed_is_retried_once() {
    let mut harness = Harness::new();
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    // A pooled connection the backend closed meanwhile.
    let backend_end = harness.attach("api", BackUse::Reused);
    harness.backend_closes(backend_end);
    assert_eq!(
        harness.ready(),
        Action::Reconnect {
            slot: SLOT,
            cluster_id: "api".into()
        }
    );
    // The loop drops the failed connection, and the request it counted, before connecting.
    harness.release_back();
    assert_eq!(harness.api_requests(), 0);
    // The new connection fails too: no second retry, a 502.
    let backend_end = harness.attach("api", BackUse::New);
    harness.backend_closes(backend_end);
    assert_eq!(harness.ready(), Action::Close);
    assert!(harness.client_reads(12).starts_with("HTTP/1.1 502"));
    assert_eq!(harness.api_requests(), 0);
}

#[test]
fn a_front_timeout_is_408_while_a_head_is_awaited_and_a_plain_close_between_requests() {
    let mut harness = Harness::new();
    harness.io.add_front_event(Ready::WRITABLE);
    assert_eq!(harness.timed_out(TimeoutKind::Front), Action::Close);
    assert!(harness.client_reads(12).starts_with("HTTP/1.1 408"));

    let mut harness = Harness::new();
    let fixed = "GET / HTTP/1.1\r\nHost: fixed.com\r\n\r\n";
    harness.request(fixed);
    assert_eq!(harness.ready(), Action::Wait);
    let response = harness.client_reads_until("fixed");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    // Between requests, an idle connection just closes.
    assert_eq!(harness.timed_out(TimeoutKind::Front), Action::Close);
    harness.client_has_nothing();
}

#[test]
fn a_kept_connection_serves_the_same_cluster_and_another_cluster_gets_a_new_one() {
    let mut harness = Harness::new();
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    let mut backend_end = harness.attach("api", BackUse::New);
    assert_eq!(harness.ready(), Action::Wait);
    assert!(backend_reads_head(&mut backend_end).starts_with("GET / HTTP/1.1\r\n"));
    harness.respond(&mut backend_end, OK);
    assert_eq!(harness.ready(), Action::ExchangeDone);
    assert!(
        harness
            .client_reads_until("\r\n\r\nok")
            .starts_with("HTTP/1.1 200 OK")
    );

    // The same cluster: the kept connection, no connect.
    harness.request(GET);
    assert_eq!(harness.ready(), Action::Wait);
    assert!(backend_reads_head(&mut backend_end).starts_with("GET / HTTP/1.1\r\n"));
    harness.respond(&mut backend_end, OK);
    assert_eq!(harness.ready(), Action::ExchangeDone);
    assert!(harness.stage.is_back_reusable(&harness.io, SLOT));

    // Another cluster: a new connection.
    harness.request("GET / HTTP/1.1\r\nHost: other.com\r\n\r\n");
    assert_eq!(harness.ready(), connect("other"));
}

#[test]
fn an_idle_kept_connection_lends_its_buffers_and_takes_them_again_for_the_next_request() {
    let mut harness = Harness::new();
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    let mut backend_end = harness.attach("api", BackUse::New);
    assert_eq!(harness.ready(), Action::Wait);
    backend_reads_head(&mut backend_end);
    assert_eq!(harness.pool.in_use(), 2);
    harness.respond(&mut backend_end, OK);
    assert_eq!(harness.ready(), Action::ExchangeDone);
    harness.client_reads_until("\r\n\r\nok");
    // The loop drives the session again after the exchange: it waits for a head, idle.
    assert_eq!(harness.ready(), Action::Wait);
    assert_eq!(
        harness.pool.in_use(),
        0,
        "an idle connection holds no buffer"
    );

    for _ in 0..2 {
        harness.request(GET);
        assert_eq!(harness.ready(), Action::Wait);
        assert!(backend_reads_head(&mut backend_end).starts_with("GET / HTTP/1.1\r\n"));
        harness.respond(&mut backend_end, OK);
        assert_eq!(harness.ready(), Action::ExchangeDone);
        let response = harness.client_reads_until("\r\n\r\nok");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert_eq!(harness.ready(), Action::Wait);
        assert_eq!(harness.pool.in_use(), 0);
    }
}

#[test]
fn an_idle_kept_connection_lends_its_scratch_space_to_the_listener_and_takes_one_back() {
    let mut harness = Harness::new();
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    let mut backend_end = harness.attach("api", BackUse::New);
    for _ in 0..2 {
        assert_eq!(harness.ready(), Action::Wait);
        assert_eq!(
            harness.spares(),
            0,
            "a busy connection holds its scratch space"
        );
        assert!(backend_reads_head(&mut backend_end).starts_with("GET / HTTP/1.1\r\n"));
        harness.respond(&mut backend_end, OK);
        assert_eq!(harness.ready(), Action::ExchangeDone);
        let response = harness.client_reads_until("\r\n\r\nok");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert_eq!(harness.ready(), Action::Wait);
        assert_eq!(
            harness.spares(),
            1,
            "an idle connection lends its scratch space"
        );
        let Stage::Http(http) = &harness.stage else {
            panic!("the session left HTTP");
        };
        assert_eq!(
            http.scratch_capacity(),
            0,
            "an idle connection holds no scratch memory"
        );
        assert!(
            http.stream.is_lent(),
            "an idle connection holds no per-request state"
        );
        // The next request takes the spare back: no new scratch space.
        harness.request(GET);
    }
}

/// Issue 17 (aim 5): a kept backend connection that idles for a back timeout leaves the
/// session (the loop pools it), so an idle client holds none; the next request asks for a
/// connection again and is answered.
#[test]
fn a_kept_connection_idle_for_a_back_timeout_leaves_and_the_next_request_connects_again() {
    let mut harness = Harness::new();
    let mut backend_end = harness.forward_to_api(GET);
    harness.respond(&mut backend_end, OK);
    assert_eq!(harness.ready(), Action::ExchangeDone);
    harness.client_reads_until("\r\n\r\nok");
    assert_eq!(harness.ready(), Action::Wait);
    let kept = harness.io.backs.get(SLOT).expect("the connection is kept");
    assert!(
        kept.timeout.deadline().is_some(),
        "the end of the exchange armed the back timeout"
    );
    assert_eq!(
        harness.timed_out(TimeoutKind::Back(SLOT)),
        Action::DropBack(SLOT)
    );
    harness.release_back();

    let mut backend_end = harness.forward_to_api(GET);
    harness.respond(&mut backend_end, OK);
    assert_eq!(harness.ready(), Action::ExchangeDone);
    let response = harness.client_reads_until("\r\n\r\nok");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

#[test]
fn a_websocket_101_turns_the_session_into_a_pipe() {
    let mut harness = Harness::new();
    harness.request(
        "GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(harness.ready(), connect("api"));
    let mut backend_end = harness.attach("api", BackUse::New);
    assert_eq!(harness.ready(), Action::Wait);
    let head = backend_reads_head(&mut backend_end);
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    harness.respond(
        &mut backend_end,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert_eq!(harness.ready(), Action::Upgraded);
    assert!(matches!(harness.stage, Stage::Pipe(_)));
}

#[test]
fn an_unsolicited_101_is_a_502_and_the_backend_connection_is_not_kept() {
    let mut harness = Harness::new();
    let mut backend_end = harness.forward_to_api(GET);
    harness.respond(
        &mut backend_end,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert_eq!(harness.ready(), Action::Close);
    assert!(harness.client_reads(12).starts_with("HTTP/1.1 502"));
    assert!(!harness.stage.is_back_reusable(&harness.io, SLOT));
}

#[test]
fn bytes_after_a_complete_response_close_the_backend_connection() {
    let mut harness = Harness::new();
    let mut backend_end = harness.forward_to_api(GET);
    harness.respond(
        &mut backend_end,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
    );
    assert_eq!(harness.ready(), Action::DropBack(SLOT));
    assert!(
        harness
            .client_reads_until("\r\n\r\nok")
            .starts_with("HTTP/1.1 200 OK")
    );
    harness.client_has_nothing();
}

/// A `latency 0` fault on a keep-alive connection (the benchmark's): each request and
/// response goes through in the run that reads it, no resume timer is asked for, and the
/// session keeps its write budget, with its room, from one request to the next instead of
/// dropping it and allocating another.
#[test]
fn a_zero_latency_fault_passes_exchanges_at_once_and_keeps_its_budget() {
    let mut harness = Harness::new();
    let fault: sozu_command_lib::request::Fault = serde_json::from_value(serde_json::json!({
        "name": "zero", "cluster_id": "api", "type": "latency", "latency": 0, "probability": 1,
    }))
    .unwrap();
    harness
        .faults
        .sync(&[("zero".to_string(), fault)].into_iter().collect());
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    let mut backend_end = harness.attach("api", BackUse::New);
    let mut budget = None;
    for _ in 0..2 {
        assert_eq!(harness.ready(), Action::Wait);
        assert!(backend_reads_head(&mut backend_end).starts_with("GET / HTTP/1.1\r\n"));
        let shaper = harness.io.shaper.as_deref_mut().unwrap();
        assert_eq!(shaper.labels().len(), 1);
        assert_eq!(shaper.resume_timeout().deadline(), None);
        harness.respond(&mut backend_end, OK);
        assert_eq!(harness.ready(), Action::ExchangeDone);
        assert!(
            harness
                .client_reads_until("\r\n\r\nok")
                .starts_with("HTTP/1.1 200 OK")
        );
        let kept: *const crate::session::shaper::Shaper = harness
            .io
            .shaper
            .as_deref()
            .expect("the budget stays between requests");
        assert_eq!(*budget.get_or_insert(kept), kept, "the same budget");
        harness.request(GET);
    }
}

impl Harness {
    /// Requests the backend of `api` counts as forwarded and not yet answered.
    fn api_requests(&self) -> u64 {
        self.backends
            .cluster_backends("api")
            .map(|backend| backend.requests())
            .sum()
    }

    /// The loop takes the backend connection away (session closed, retry, pooled).
    fn release_back(&mut self) {
        drop(self.io.backs.take(SLOT));
    }

    /// The backend closes its end; the stage hears of it.
    fn backend_closes(&mut self, backend_end: TcpStream) {
        drop(backend_end);
        arrived(&self.io.backs.get(SLOT).unwrap().endpoint);
        self.io
            .add_back_event(SLOT, Ready::READABLE | Ready::WRITABLE);
    }

    /// The client sends `request` for `api`; the stage asks for a connection, gets a new one,
    /// and sends the request on it: returns the backend's end, the head read.
    fn forward_to_api(&mut self, request: &str) -> TcpStream {
        self.request(request);
        assert_eq!(self.ready(), connect("api"));
        let mut backend_end = self.attach("api", BackUse::New);
        assert_eq!(self.ready(), Action::Wait);
        backend_reads_head(&mut backend_end);
        backend_end
    }
}

#[test]
fn a_forwarded_request_counts_for_its_backend_until_its_response_ends() {
    let mut harness = Harness::new();
    harness.request(GET);
    assert_eq!(harness.ready(), connect("api"));
    assert_eq!(harness.api_requests(), 0, "not forwarded while connecting");
    let mut backend_end = harness.attach("api", BackUse::New);
    for _ in 0..2 {
        assert_eq!(harness.ready(), Action::Wait);
        backend_reads_head(&mut backend_end);
        assert_eq!(harness.api_requests(), 1);
        harness.respond(&mut backend_end, OK);
        assert_eq!(harness.ready(), Action::ExchangeDone);
        assert_eq!(harness.api_requests(), 0);
        harness.client_reads_until("\r\n\r\nok");
        // The next request goes on the kept connection.
        harness.request(GET);
    }
}

#[test]
fn a_request_the_client_abandons_stops_counting_when_its_connection_goes() {
    let mut harness = Harness::new();
    harness.request("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nab");
    assert_eq!(harness.ready(), connect("api"));
    let _backend_end = harness.attach("api", BackUse::New);
    assert_eq!(harness.ready(), Action::Wait);
    assert_eq!(harness.api_requests(), 1);
    harness.client.shutdown(std::net::Shutdown::Write).unwrap();
    arrived(&harness.io.front);
    harness.io.add_front_event(Ready::READABLE);
    assert_eq!(harness.ready(), Action::Close);
    harness.release_back();
    assert_eq!(harness.api_requests(), 0);
}

#[test]
fn a_request_the_backend_fails_stops_counting_when_the_proxy_answers() {
    let mut harness = Harness::new();
    let backend_end = harness.forward_to_api(GET);
    assert_eq!(harness.api_requests(), 1);
    harness.backend_closes(backend_end);
    assert_eq!(harness.ready(), Action::Close);
    assert!(harness.client_reads(12).starts_with("HTTP/1.1 502"));
    assert!(harness.io.backs.get(SLOT).is_some());
    assert_eq!(harness.api_requests(), 0);
}

#[test]
fn a_client_preface_on_an_h2c_listener_turns_the_stage_into_http2_with_the_bytes_read() {
    let mut harness = Harness::new();
    for listener in harness.listeners.values_mut() {
        listener.config.h2c = true;
    }
    harness.request(std::str::from_utf8(h2::frame::PREFACE).unwrap());
    assert_eq!(harness.ready(), Action::Upgraded);
    assert!(matches!(harness.stage, Stage::H2(_)));
    // The HTTP/2 stage took the preface the HTTP/1 stage read: it answers with its SETTINGS
    // frame (type 4 on stream 0) instead of waiting for the preface again. Having read, it
    // yields, and writes when driven again (as the loop does at the end of its turn).
    assert_eq!(harness.ready(), Action::Yield);
    assert_eq!(harness.ready(), Action::Wait);
    let frame_head = harness.client_reads(9);
    assert_eq!(frame_head.as_bytes()[3], 4, "{frame_head:?}");
    assert_eq!(&frame_head.as_bytes()[5..9], &[0, 0, 0, 0]);
}
