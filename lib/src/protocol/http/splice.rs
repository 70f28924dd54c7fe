//! HTTP/1 bodies through a kernel pipe: once a message's head went out and every body byte
//! read with it was sent, the rest of a large body of known length moves from one socket
//! to the other with `splice(2)` ([`crate::protocol::splice`]), never copied into user
//! space.
//!
//! Only the counted remainder is spliced: each splice from the source takes at most the
//! bytes the `Content-Length` still owes, so bytes after the body (a pipelined message, or
//! a backend's extra bytes) stay in the socket, where the buffered path finds them. Chunked
//! bodies, bodies that end with the connection, TLS and HTTP/2 backend streams stay on the
//! buffered path, and so does a message whose session faults shape (the caller's check):
//! their bytes must be seen, decoded or budgeted.

use std::{
    os::fd::{AsRawFd, RawFd},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{
    protocol::{
        http::body::Body,
        splice::{KernelPipe, Spliced, set_notsent_lowat},
    },
    session::endpoint::{Endpoint, Ready},
};

/// When HTTP/1 bodies are spliced: the worker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodySplice {
    /// The least body left, after the bytes read with the head, that is spliced; 0 splices
    /// none.
    pub min_body: u64,
    /// The capacity asked of each kernel pipe; 0 asks for the body's size, at most
    /// [`BODY_PIPE_CAPACITY`].
    pub pipe_capacity: usize,
}

/// The most a body's pipe asks for when no capacity is set: 1 MiB, the largest size an
/// unprivileged process may ask by default (`/proc/sys/fs/pipe-max-size`). A pipe that holds
/// the whole body (or a mebibyte of it) moves it with one splice in and one out when the
/// backend is ahead; through the kernel's default 64 KiB, a 1 MiB body took 16 of each, and
/// each of the small reads woke the backend's sender again (issue 17, aim 2: the `1mib`
/// scenario served twice the responses per second with these pipes).
pub const BODY_PIPE_CAPACITY: u64 = 1 << 20;

/// The kernel's default pipe size, which needs no lease from [`LARGE_PIPES`].
const DEFAULT_PIPE_CAPACITY: usize = 1 << 16;

/// The kernel counts the pages of every pipe of a user against `fs.pipe-user-pages-soft`
/// (16,384 pages, 64 MiB, by default) and, past it, refuses to grow an unprivileged user's
/// pipes and gives its new ones 2 pages: 64 bodies of a mebibyte at once would shrink every
/// pipe the user opens next, the TCP listeners' included. Body pipes above the default size
/// take at most half of that limit together; a body beyond it gets a pipe of the default
/// size, as before pipes were sized to bodies.
static LARGE_PIPES: PipeLedger = PipeLedger::new();

/// The bytes body pipes above the default size may take together: half of
/// `fs.pipe-user-pages-soft` (4 KiB pages), no bound when that limit is off (0), 32 MiB when
/// it cannot be read.
fn large_pipe_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .map_or(32 << 20, |pages| match pages {
                0 => usize::MAX,
                pages => pages.saturating_mul(4096) / 2,
            })
    })
}

/// The bytes of large pipes held now, against a budget.
#[derive(Debug)]
struct PipeLedger {
    held: AtomicUsize,
}

impl PipeLedger {
    const fn new() -> PipeLedger {
        PipeLedger {
            held: AtomicUsize::new(0),
        }
    }

    /// `bytes` more, if they fit in `budget` with what is held.
    fn lease(&'static self, bytes: usize, budget: usize) -> Option<PipeLease> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&total| total <= budget)
            })
            .ok()
            .map(|_| PipeLease {
                ledger: self,
                bytes,
            })
    }
}

/// Bytes of a [`PipeLedger`] held until dropped, with the pipe they were asked for.
#[derive(Debug)]
struct PipeLease {
    ledger: &'static PipeLedger,
    bytes: usize,
}

impl Drop for PipeLease {
    fn drop(&mut self) {
        self.ledger.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The capacity to ask for a body owing `unread` bytes, and the lease it takes: the size set
/// (`pipe_capacity`), else the body's size up to [`BODY_PIPE_CAPACITY`] while `ledger` has
/// room for it within `budget`, else the kernel's default (0).
fn pipe_size(
    pipe_capacity: usize,
    unread: u64,
    ledger: &'static PipeLedger,
    budget: usize,
) -> (usize, Option<PipeLease>) {
    if pipe_capacity > 0 {
        return (pipe_capacity, None);
    }
    let wanted = usize::try_from(unread.min(BODY_PIPE_CAPACITY)).unwrap_or(usize::MAX);
    if wanted <= DEFAULT_PIPE_CAPACITY {
        return (wanted, None);
    }
    match ledger.lease(wanted, budget) {
        Some(lease) => (wanted, Some(lease)),
        None => (0, None),
    }
}

/// The rest of a body of known length on its way through a kernel pipe.
///
/// Invariant: the pipe holds body bytes only, and `unread` plus the bytes in the pipe are
/// what the body still owes its sink.
#[derive(Debug)]
pub struct SplicedBody {
    pipe: KernelPipe,
    /// Bytes of the body still in the source socket.
    unread: u64,
    /// The share of [`LARGE_PIPES`] the pipe was asked with, if it is larger than the
    /// default.
    _lease: Option<PipeLease>,
}

/// What one round of [`SplicedBody::relay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// `filled` bytes came from the source into the pipe, `drained` went to the sink.
    Moved { filled: usize, drained: usize },
    /// Neither socket is ready.
    Nothing,
    /// The source ended before the body did, and the pipe is empty: the message is cut.
    Cut,
    /// The source socket failed.
    SourceFailed,
    /// The sink socket failed, or its peer is gone.
    SinkFailed,
}

impl SplicedBody {
    /// A spliced body for the rest of `body`, when it is worth it and allowed: a
    /// `Content-Length` body owing at least `settings.min_body` bytes, between two plain TCP
    /// sockets. The caller makes sure every body byte it read was sent already. `None` keeps
    /// the body on the buffered path (also when the kernel gives no pipe).
    pub fn start(
        settings: BodySplice,
        body: &Body,
        source: &Endpoint,
        sink: &Endpoint,
    ) -> Option<Box<SplicedBody>> {
        let Body::Length(length) = body else {
            return None;
        };
        let unread = length.remaining();
        if settings.min_body == 0
            || unread < settings.min_body
            || plain_fd(source).is_none()
            || plain_fd(sink).is_none()
        {
            return None;
        }
        let (capacity, lease) = pipe_size(
            settings.pipe_capacity,
            unread,
            &LARGE_PIPES,
            large_pipe_budget(),
        );
        match KernelPipe::new(capacity) {
            Ok(pipe) => Some(Box::new(SplicedBody {
                pipe,
                unread,
                _lease: lease,
            })),
            Err(error) => {
                log::warn!("no kernel pipe for a body, it is copied instead: {error}");
                None
            }
        }
    }

    /// Whether the whole body reached the sink's socket.
    pub fn is_done(&self) -> bool {
        self.unread == 0 && self.pipe.is_empty()
    }

    /// Fills the pipe from `source` with at most what the body owes, then drains it into
    /// `sink`, as far as the sockets' readiness allows. A socket that would block loses its
    /// flag (edge-triggered: its next event sets it again).
    pub fn relay(&mut self, source: &mut Endpoint, sink: &mut Endpoint) -> Relayed {
        let Some(source_fd) = plain_fd(source) else {
            return Relayed::SourceFailed;
        };
        let Some(sink_fd) = plain_fd(sink) else {
            return Relayed::SinkFailed;
        };
        let mut filled = 0;
        if self.unread > 0
            && !source.read_closed
            && source.readiness.event.contains(Ready::READABLE)
        {
            let limit = usize::try_from(self.unread).unwrap_or(usize::MAX);
            match self.pipe.fill_from_at_most(source_fd, limit) {
                Spliced::Moved(count) => {
                    filled = count;
                    self.unread = self.unread.saturating_sub(count as u64);
                    source.bytes_read += count as u64;
                }
                Spliced::End => {
                    source.read_closed = true;
                    source.readiness.event.remove(Ready::READABLE);
                }
                Spliced::WouldBlock => source.readiness.event.remove(Ready::READABLE),
                // The socket may hold more: it stays readable until the pipe is drained.
                Spliced::Full => {}
                Spliced::Failed(kind) => {
                    source.read_failed(kind.into());
                    return Relayed::SourceFailed;
                }
            }
        }
        let mut drained = 0;
        if !self.pipe.is_empty() && sink.readiness.event.contains(Ready::WRITABLE) {
            match self.pipe.drain_into(sink_fd, usize::MAX) {
                Spliced::Moved(count) => {
                    drained = count;
                    sink.bytes_written += count as u64;
                }
                Spliced::WouldBlock | Spliced::Full => {
                    sink.readiness.event.remove(Ready::WRITABLE);
                }
                Spliced::End | Spliced::Failed(_) => return Relayed::SinkFailed,
            }
        }
        if filled > 0 || drained > 0 {
            Relayed::Moved { filled, drained }
        } else if self.unread > 0 && source.read_closed && self.pipe.is_empty() {
            Relayed::Cut
        } else {
            Relayed::Nothing
        }
    }
}

/// What a client socket that a response body is spliced to may hold of it beyond what TCP
/// can send now (`TCP_NOTSENT_LOWAT`): 16 KiB. Without it, the worker spliced a mebibyte
/// into the socket at once and most of it waited there for the client's window, then left
/// from the client's acknowledgements, on the client's core: in the `1mib` scenario that is
/// the core of wrk and the backend, the bound of the rate. With it, the worker sends what
/// the window takes when the socket says it is writable, on its own core (issue 17, aim 2:
/// 0.82× to 0.93× of `direct`, median of 6 rounds, doc/benchmarks.md). The socket keeps it
/// for the rest of the connection: a buffered write past it waits for the socket to be
/// writable, as any write that does not fit.
pub const CLIENT_NOTSENT_LOWAT: u32 = 16 << 10;

/// Limits the unsent bytes of the client's socket once a response body is spliced to it
/// ([`CLIENT_NOTSENT_LOWAT`]); a socket that refuses keeps its default, the body goes on.
pub fn limit_unsent(client: &Endpoint) {
    let Some(socket) = plain_fd(client) else {
        return;
    };
    if let Err(error) = set_notsent_lowat(socket, CLIENT_NOTSENT_LOWAT) {
        log::debug!("TCP_NOTSENT_LOWAT refused on a client socket: {error}");
    }
}

/// The descriptor of a plain TCP socket: not encrypted, not a stream of a shared HTTP/2
/// connection.
fn plain_fd(endpoint: &Endpoint) -> Option<RawFd> {
    if endpoint.tls.is_some() {
        return None;
    }
    endpoint.tcp().map(AsRawFd::as_raw_fd)
}

#[cfg(test)]
pub(super) mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        thread,
        time::{Duration, Instant},
    };

    use mio::Token;

    use super::*;
    use crate::protocol::http::parser::{BodyFraming, Limits};

    /// A loopback connection: the test's blocking end, and the proxy's as an endpoint.
    pub(in crate::protocol::http) fn connection() -> (TcpStream, Endpoint) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let endpoint = Endpoint::new(mio::net::TcpStream::from_std(ours), Token(1));
        (peer, endpoint)
    }

    fn settings() -> BodySplice {
        BodySplice {
            min_body: 1,
            pipe_capacity: 0,
        }
    }

    #[test]
    fn only_the_bytes_the_length_owes_are_spliced() {
        const LENGTH: usize = 300_000;
        let (mut backend, mut source) = connection();
        let (mut client, mut sink) = connection();
        let body: Vec<u8> = (0..LENGTH).map(|i| (i % 251) as u8).collect();
        let mut wire = body.clone();
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let writer = thread::spawn(move || backend.write_all(&wire).map(|()| backend));
        let reader = thread::spawn(move || {
            let mut received = vec![0; LENGTH];
            client.read_exact(&mut received).map(|()| received)
        });
        let framing = Body::new(
            BodyFraming::ContentLength(LENGTH as u64),
            &Limits::default(),
        );
        let mut spliced = SplicedBody::start(settings(), &framing, &source, &sink).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !spliced.is_done() {
            assert!(Instant::now() < deadline, "the body did not go through");
            // As the loop would after events on both sockets.
            source.readiness.event.insert(Ready::READABLE);
            sink.readiness.event.insert(Ready::WRITABLE);
            let relayed = spliced.relay(&mut source, &mut sink);
            assert!(
                matches!(relayed, Relayed::Moved { .. } | Relayed::Nothing),
                "{relayed:?}"
            );
        }
        assert_eq!(reader.join().unwrap().unwrap(), body);
        let _backend = writer.join().unwrap().unwrap();
        let mut rest = [0; 17];
        let tcp = source.tcp_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut taken = 0;
        while taken < rest.len() {
            assert!(
                Instant::now() < deadline,
                "the bytes after the body are gone"
            );
            match tcp.read(&mut rest[taken..]) {
                Ok(count) => taken += count,
                Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock),
            }
        }
        assert_eq!(&rest, b"HTTP/1.1 200 OK\r\n", "they stay in the socket");
    }

    #[test]
    fn the_client_socket_holds_little_unsent() {
        let (_client, sink) = connection();
        let socket = sink.tcp().unwrap().as_raw_fd();
        let before = crate::protocol::splice::notsent_lowat(socket).unwrap();
        assert_ne!(before, CLIENT_NOTSENT_LOWAT, "the default is no limit");
        limit_unsent(&sink);
        assert_eq!(
            crate::protocol::splice::notsent_lowat(socket).unwrap(),
            CLIENT_NOTSENT_LOWAT
        );
    }

    #[test]
    fn small_chunked_or_close_delimited_bodies_are_not_spliced() {
        let (_backend, source) = connection();
        let (_client, sink) = connection();
        let limits = Limits::default();
        let length = |bytes| Body::new(BodyFraming::ContentLength(bytes), &limits);
        let large = BodySplice {
            min_body: 1000,
            pipe_capacity: 0,
        };
        assert!(SplicedBody::start(large, &length(1000), &source, &sink).is_some());
        assert!(SplicedBody::start(large, &length(999), &source, &sink).is_none());
        let chunked = Body::new(BodyFraming::Chunked, &limits);
        assert!(SplicedBody::start(large, &chunked, &source, &sink).is_none());
        let until_close = Body::new(BodyFraming::UntilClose, &limits);
        assert!(SplicedBody::start(large, &until_close, &source, &sink).is_none());
        let off = BodySplice {
            min_body: 0,
            ..large
        };
        assert!(SplicedBody::start(off, &length(1 << 30), &source, &sink).is_none());
    }

    #[test]
    fn a_body_pipe_holds_the_body_up_to_a_mebibyte_unless_a_size_is_set() {
        let (_backend, source) = connection();
        let (_client, sink) = connection();
        let limits = Limits::default();
        let capacity = |settings, bytes| {
            let framing = Body::new(BodyFraming::ContentLength(bytes), &limits);
            let spliced = SplicedBody::start(settings, &framing, &source, &sink).unwrap();
            spliced.pipe.capacity()
        };
        let sized = settings();
        assert!(capacity(sized, 300_000) >= 300_000);
        assert_eq!(capacity(sized, 1 << 20), 1 << 20);
        assert_eq!(capacity(sized, 64 << 20), 1 << 20, "at most a mebibyte");
        let set = BodySplice {
            pipe_capacity: 1 << 16,
            ..sized
        };
        assert_eq!(capacity(set, 64 << 20), 1 << 16, "the size set");
    }

    #[test]
    fn large_body_pipes_fall_back_to_the_default_size_past_their_budget() {
        static LEDGER: PipeLedger = PipeLedger::new();
        let budget = 2 << 20;
        let (first, first_lease) = pipe_size(0, 5 << 20, &LEDGER, budget);
        let (second, second_lease) = pipe_size(0, 1 << 20, &LEDGER, budget);
        assert_eq!((first, second), (1 << 20, 1 << 20));
        assert_eq!(LEDGER.held.load(Ordering::Relaxed), 2 << 20);
        let (third, third_lease) = pipe_size(0, 300_000, &LEDGER, budget);
        assert_eq!(third, 0, "past the budget: the kernel's default");
        assert!(third_lease.is_none());
        let (small, small_lease) = pipe_size(0, 10_000, &LEDGER, budget);
        assert_eq!(small, 10_000, "a default-sized pipe needs no lease");
        assert!(small_lease.is_none());
        let (set, set_lease) = pipe_size(4 << 20, 5 << 20, &LEDGER, budget);
        assert_eq!(set, 4 << 20, "a size set by the operator is asked as is");
        assert!(set_lease.is_none());
        drop(first_lease);
        assert_eq!(LEDGER.held.load(Ordering::Relaxed), 1 << 20);
        let (again, again_lease) = pipe_size(0, 300_000, &LEDGER, budget);
        assert_eq!(again, 300_000, "room again once a body is done");
        drop((second_lease, again_lease));
        assert_eq!(LEDGER.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_source_that_ends_early_cuts_the_body() {
        let (mut backend, mut source) = connection();
        let (mut client, mut sink) = connection();
        backend.write_all(b"only this").unwrap();
        drop(backend);
        let framing = Body::new(BodyFraming::ContentLength(100), &Limits::default());
        let mut spliced = SplicedBody::start(settings(), &framing, &source, &sink).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "the end of the source was not seen"
            );
            source.readiness.event.insert(Ready::READABLE);
            sink.readiness.event.insert(Ready::WRITABLE);
            match spliced.relay(&mut source, &mut sink) {
                Relayed::Cut => break,
                Relayed::Moved { .. } | Relayed::Nothing => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(!spliced.is_done());
        let mut received = [0; 9];
        client.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"only this");
    }
}
