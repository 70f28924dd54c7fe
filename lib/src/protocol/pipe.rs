//! Bidirectional byte copy between the two sockets of a session: TCP mode, and HTTP
//! connections after an `Upgrade` (WebSocket).
//!
//! Each direction is a lane: a pooled buffer, or (TCP listeners with `splice`) a kernel
//! pipe fed and drained by `splice(2)`, behind a head of bytes that go first (the PROXY header
//! for the backend), kept apart so that it never takes room from the stream. A spliced lane
//! starts with a buffer too, and moves to a kernel pipe the first time a read fills it: the
//! bytes of a bulk transfer then stay in the kernel, while an exchange of small messages
//! (most connections) costs no pipe (two descriptors, and system calls to make and close
//! them). Bytes are read while the lane has room and written while
//! it has data; a half-close is propagated (when one side ends its stream, the other side's
//! write half is shut once the lane is flushed), so a client that shuts its write side still
//! gets the whole answer. A side that resets ends its stream the same way (what it sent
//! before still goes through), and the direction towards it is finished at once: nothing
//! reaches it any more. The pipe is done when both directions are finished.
//!
//! When faults act on the session, each direction asks the session's write budget
//! ([`Shaper`]) before writing and tells it what it read and wrote; kernel pipes are
//! budgeted too (a splice moves at most what the budget allows), so a faulted TCP listener
//! with `splice` keeps splicing.

use std::{os::fd::AsRawFd, time::Instant};

use crate::{
    pool::Buffer,
    protocol::splice::{KernelPipe, Spliced},
    session::endpoint::{Endpoint, Ready, Transfer},
    session::shaper::{Budget, Shaper, Way},
};

pub struct Pipe {
    /// Boxed: a session's stage is as large as its largest variant, and every session of
    /// the worker (HTTP ones included) would otherwise carry room for two lanes.
    lanes: Box<Lanes>,
    /// The pipe ran once with its backend connected.
    started: bool,
}

/// The two directions of a pipe.
struct Lanes {
    /// Client to backend.
    front_to_back: Lane,
    /// Backend to client.
    back_to_front: Lane,
}

/// Where one direction's bytes wait between the two sockets.
struct Lane {
    /// Bytes that go out before any other, and never share room with the stream: the PROXY
    /// header for the backend. Empty once sent.
    head: Vec<u8>,
    store: Store,
    /// The capacity of the kernel pipe (0: the kernel's default) the lane moves to when a
    /// read fills its buffer; `None` once it moved, or when it stays in user space.
    bulk: Option<usize>,
}

/// Where a lane keeps the stream's bytes.
enum Store {
    /// A pooled buffer in user space.
    Buffer(Buffer),
    /// A kernel pipe; `prefix` holds bytes read before the pipe was set up, which go first.
    Kernel {
        prefix: Option<Buffer>,
        pipe: KernelPipe,
    },
}

impl Lane {
    fn new(store: Store) -> Lane {
        Lane {
            head: Vec::new(),
            store,
            bulk: None,
        }
    }

    /// Moves a lane whose buffer a read just filled to a kernel pipe, the buffer's bytes going
    /// first: a bulk transfer. Stays in user space if the kernel refuses a pipe.
    fn move_to_kernel(&mut self) {
        if !matches!(self.store, Store::Buffer(_)) {
            return;
        }
        let Some(capacity) = self.bulk.take() else {
            return;
        };
        let pipe = match KernelPipe::new(capacity) {
            Ok(pipe) => pipe,
            Err(error) => {
                log::warn!("cannot create a kernel pipe, copying instead: {error}");
                return;
            }
        };
        let before = std::mem::replace(&mut self.store, Store::Kernel { prefix: None, pipe });
        if let (Store::Buffer(buffer), Store::Kernel { prefix, .. }) = (before, &mut self.store) {
            *prefix = Some(buffer);
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty()
            && match &self.store {
                Store::Buffer(buffer) => buffer.is_empty(),
                Store::Kernel { prefix, pipe } => {
                    prefix.as_ref().is_none_or(Buffer::is_empty) && pipe.is_empty()
                }
            }
    }

    fn is_full(&self) -> bool {
        match &self.store {
            Store::Buffer(buffer) => buffer.is_full(),
            Store::Kernel { pipe, .. } => pipe.is_full(),
        }
    }

    /// The bytes waiting in the lane's user-space storage (a kernel pipe's are not counted:
    /// the budget caps each splice instead).
    fn pending(&self) -> usize {
        let stored = match &self.store {
            Store::Buffer(buffer) => buffer.data().len(),
            Store::Kernel { prefix, pipe } => {
                let prefix = prefix.as_ref().map_or(0, |buffer| buffer.data().len());
                if prefix == 0 && !pipe.is_empty() {
                    usize::MAX
                } else {
                    prefix
                }
            }
        };
        self.head.len().saturating_add(stored)
    }

    /// Reads from `source` into the lane.
    fn fill_from(&mut self, source: &mut Endpoint) -> Transfer {
        match &mut self.store {
            Store::Buffer(buffer) => {
                let transfer = source.read(buffer.space());
                if let Transfer::Moved(count) = transfer {
                    buffer.fill(count);
                    if buffer.is_full() {
                        self.move_to_kernel();
                    }
                }
                transfer
            }
            // Kernel pipes join TCP sockets only (TCP listeners and clusters).
            Store::Kernel { pipe, .. } => match source.tcp().map(|stream| stream.as_raw_fd()) {
                None => Transfer::Error(std::io::ErrorKind::Unsupported),
                Some(fd) => match pipe.fill_from(fd) {
                    Spliced::Moved(count) => {
                        source.bytes_read += count as u64;
                        Transfer::Moved(count)
                    }
                    Spliced::End => {
                        source.read_closed = true;
                        source.readiness.event.remove(Ready::READABLE);
                        Transfer::Closed
                    }
                    Spliced::WouldBlock => {
                        source.readiness.event.remove(Ready::READABLE);
                        Transfer::WouldBlock
                    }
                    // The socket may hold more: it stays readable, and is read again once the
                    // pipe is drained.
                    Spliced::Full => Transfer::WouldBlock,
                    Spliced::Failed(kind) => source.read_failed(kind.into()),
                },
            },
        }
    }

    /// Writes at most `limit` bytes from the lane to `sink`: the head, then bytes read before a
    /// kernel pipe existed, then the stream. `source_ended`: the source's stream ended and the
    /// sink's is ended as soon as the lane is empty, so a write that empties it is the last
    /// one before the end of stream.
    fn drain_into(&mut self, sink: &mut Endpoint, limit: usize, source_ended: bool) -> Transfer {
        let pending = self.pending();
        let last = source_ended && pending <= limit;
        if !self.head.is_empty() {
            let end = self.head.len().min(limit);
            let transfer = write_part(sink, &self.head[..end], last && end == pending);
            if let Transfer::Moved(count) = transfer {
                self.head.drain(..count.min(self.head.len()));
            }
            return transfer;
        }
        match &mut self.store {
            Store::Buffer(buffer) => write_from(buffer, sink, limit, last),
            Store::Kernel { prefix, pipe } => {
                if let Some(buffer) = prefix.as_mut().filter(|buffer| !buffer.is_empty()) {
                    let last = last && pipe.is_empty();
                    let transfer = write_from(buffer, sink, limit, last);
                    // Sent: the buffer goes back to the pool.
                    if prefix.as_ref().is_some_and(Buffer::is_empty) {
                        *prefix = None;
                    }
                    return transfer;
                }
                let Some(fd) = sink.tcp().map(|stream| stream.as_raw_fd()) else {
                    return Transfer::Error(std::io::ErrorKind::Unsupported);
                };
                match pipe.drain_into(fd, limit) {
                    Spliced::Moved(count) => {
                        sink.bytes_written += count as u64;
                        Transfer::Moved(count)
                    }
                    Spliced::WouldBlock | Spliced::Full => {
                        sink.readiness.event.remove(Ready::WRITABLE);
                        Transfer::WouldBlock
                    }
                    Spliced::End => Transfer::Closed,
                    Spliced::Failed(kind) => Transfer::Error(kind),
                }
            }
        }
    }
}

/// Writes at most `limit` of a buffer's pending bytes to `sink` and consumes what was taken;
/// `last`: they are all the lane holds and the end of stream follows them.
fn write_from(buffer: &mut Buffer, sink: &mut Endpoint, limit: usize, last: bool) -> Transfer {
    let data = buffer.data();
    let transfer = write_part(sink, &data[..data.len().min(limit)], last);
    if let Transfer::Moved(count) = transfer {
        buffer.consume(count);
    }
    transfer
}

/// Writes `data` to `sink`, as the last bytes before the end of stream when `last`.
fn write_part(sink: &mut Endpoint, data: &[u8], last: bool) -> Transfer {
    if last {
        sink.write_before_end(data)
    } else {
        sink.write(data)
    }
}

/// What a run of the pipe achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeStatus {
    /// Waiting for the sockets; `front_active`/`back_active` say whether bytes moved on each
    /// side, so idle timeouts can restart.
    Wait {
        front_active: bool,
        back_active: bool,
    },
    /// Both directions finished: every byte was delivered and both streams ended.
    Done,
    /// A socket failed or the peer reset, or a fault cut the connection; the session must
    /// close.
    Broken,
    /// A fault resets the connection: the session must close both sockets with a reset.
    Reset,
}

/// What one direction did.
#[derive(Default)]
struct Progress {
    source_active: bool,
    sink_active: bool,
    broken: bool,
    reset: bool,
    /// The source ended its stream and everything it sent was delivered (and the faults let
    /// the sink's stream end): the sink's stream is to be ended.
    ended: bool,
}

impl Pipe {
    pub fn new(front_to_back: Buffer, back_to_front: Buffer) -> Self {
        Pipe {
            lanes: Box::new(Lanes {
                front_to_back: Lane::new(Store::Buffer(front_to_back)),
                back_to_front: Lane::new(Store::Buffer(back_to_front)),
            }),
            started: false,
        }
    }

    /// True the first time it is asked: the backend connection is there, bytes are about
    /// to move.
    pub fn first_run(&mut self) -> bool {
        !std::mem::replace(&mut self.started, true)
    }

    /// Each direction moves to a kernel pipe of `capacity` bytes (0: the kernel's default)
    /// once a read fills its buffer, when the kernel allows it.
    pub fn splicing_bulk(mut self, capacity: usize) -> Self {
        self.lanes.front_to_back.bulk = Some(capacity);
        self.lanes.back_to_front.bulk = Some(capacity);
        self
    }

    /// Whether each direction (to the backend, to the client) moved to a kernel pipe.
    #[cfg(test)]
    fn lanes_in_kernel(&self) -> [bool; 2] {
        [&self.lanes.front_to_back, &self.lanes.back_to_front]
            .map(|lane| matches!(lane.store, Store::Kernel { .. }))
    }

    /// The backend gets `header` before any byte of the client's stream. The header has its
    /// own storage: however full the stream's buffer is, no byte of either is dropped.
    pub fn with_backend_header(mut self, header: Vec<u8>) -> Self {
        self.lanes.front_to_back.head = header;
        self
    }

    /// The client gets `reply` before any byte of the backend's stream (a script's `reply`).
    pub fn with_client_header(mut self, reply: Vec<u8>) -> Self {
        self.lanes.back_to_front.head = reply;
        self
    }

    /// The client's bytes read before the pipe existed, to count as received now by the
    /// faults' lanes towards the backend (with the PROXY header that goes first).
    pub fn waiting_for_backend(&self) -> usize {
        self.lanes.front_to_back.pending()
    }

    /// Moves bytes both ways as far as the sockets allow, and as the session's faults allow
    /// at `now` when `shaping` is given.
    pub fn run(
        &mut self,
        front: &mut Endpoint,
        back: &mut Endpoint,
        mut shaping: Option<(&mut Shaper, Instant)>,
    ) -> PipeStatus {
        if let Some(status) = due(shaping.as_mut()) {
            return status;
        }
        let upstream = copy(
            front,
            &mut self.lanes.front_to_back,
            back,
            shaping
                .as_mut()
                .map(|(s, now)| (&mut **s, Way::ToBackend, *now)),
        );
        let downstream = copy(
            back,
            &mut self.lanes.back_to_front,
            front,
            shaping
                .as_mut()
                .map(|(s, now)| (&mut **s, Way::ToClient, *now)),
        );
        if upstream.reset || downstream.reset {
            return PipeStatus::Reset;
        }
        if upstream.broken || downstream.broken {
            return PipeStatus::Broken;
        }
        // What was just written may have spent a `limit_data`: it closes now, not at the
        // next event.
        if let Some(status) = due(shaping.as_mut()) {
            return status;
        }
        // When both directions are over, the session closes both sockets; closing a socket
        // ends our stream as a `shutdown` would when nothing is left to read on it, so the
        // direction that ends last needs no call of its own.
        let is_done = (back.reset || upstream.ended) && (front.reset || downstream.ended);
        for (ended, sink) in [
            (upstream.ended, &mut *back),
            (downstream.ended, &mut *front),
        ] {
            if ended && !(is_done && sink.closes_like_shutdown()) {
                sink.shutdown_write();
            }
        }
        if is_done {
            return PipeStatus::Done;
        }
        front.readiness.interest =
            interest(front, &self.lanes.front_to_back, &self.lanes.back_to_front);
        back.readiness.interest =
            interest(back, &self.lanes.back_to_front, &self.lanes.front_to_back);
        PipeStatus::Wait {
            front_active: upstream.source_active || downstream.sink_active,
            back_active: upstream.sink_active || downstream.source_active,
        }
    }
}

/// The end of the connection that the session's faults call for now, if any.
fn due(shaping: Option<&mut (&mut Shaper, Instant)>) -> Option<PipeStatus> {
    let (shaper, now) = shaping?;
    match shaper.due(*now)? {
        Budget::Reset => Some(PipeStatus::Reset),
        Budget::Cut | Budget::UpTo(_) | Budget::Wait => Some(PipeStatus::Broken),
    }
}

/// One direction: `source` → `lane` → `sink`, until neither side can move, within the
/// write budget of `shaping` (the session's faults, the way and the instant) when given.
fn copy(
    source: &mut Endpoint,
    lane: &mut Lane,
    sink: &mut Endpoint,
    mut shaping: Option<(&mut Shaper, Way, Instant)>,
) -> Progress {
    let mut progress = Progress::default();
    loop {
        let mut moved = false;
        if !source.read_closed
            && source.readiness.event.contains(Ready::READABLE)
            && !lane.is_full()
        {
            match lane.fill_from(source) {
                Transfer::Moved(count) => {
                    if let Some((shaper, way, now)) = shaping.as_mut() {
                        shaper.received(*way, *now, count);
                    }
                    progress.source_active = true;
                    moved = true;
                }
                Transfer::WouldBlock | Transfer::Closed => {}
                Transfer::Error(_) => {
                    progress.broken = true;
                    return progress;
                }
            }
        }
        if !lane.is_empty() && sink.readiness.event.contains(Ready::WRITABLE) {
            let limit = match shaping.as_mut() {
                None => Budget::UpTo(usize::MAX),
                Some((shaper, way, now)) => shaper.budget(*way, *now, lane.pending()),
            };
            let limit = match limit {
                Budget::UpTo(limit) => limit,
                // The sink stays writable: it refused nothing.
                Budget::Wait => 0,
                Budget::Cut => {
                    progress.broken = true;
                    return progress;
                }
                Budget::Reset => {
                    progress.reset = true;
                    return progress;
                }
            };
            // Without faults, the sink's stream ends in this run once the ended source's
            // bytes are all sent (faults may hold the end back: no bytes wait for it then).
            let source_ended = source.read_to_the_end() && shaping.is_none();
            match (limit > 0).then(|| lane.drain_into(sink, limit, source_ended)) {
                None => {}
                Some(Transfer::Moved(count)) => {
                    if let Some((shaper, way, now)) = shaping.as_mut() {
                        shaper.sent(*way, *now, count);
                    }
                    progress.sink_active = true;
                    moved = true;
                }
                Some(Transfer::WouldBlock) => {}
                Some(Transfer::Closed | Transfer::Error(_)) => {
                    progress.broken = true;
                    return progress;
                }
            }
        }
        if !moved {
            break;
        }
    }
    progress.ended = source.read_closed
        && lane.is_empty()
        && (sink.write_shut
            || shaping
                .as_mut()
                .is_none_or(|(shaper, way, now)| shaper.may_close(*way, *now)));
    progress
}

/// Read while there is room to read into; write while there is something to send.
fn interest(endpoint: &Endpoint, inbound: &Lane, outbound: &Lane) -> Ready {
    let mut interest = Ready::EMPTY;
    if !endpoint.read_closed && !inbound.is_full() {
        interest.insert(Ready::READABLE);
    }
    if !outbound.is_empty() {
        interest.insert(Ready::WRITABLE);
    }
    interest
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        time::Duration,
    };

    use mio::Token;

    use super::*;
    use crate::pool::Pool;

    /// Two ends of a loopback connection: a blocking one for the test, and the other as a
    /// session's endpoint, with a blocking handle on the same socket to wait on it.
    fn connection(token: usize) -> (TcpStream, Endpoint, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_nodelay(true).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let waiter = ours.try_clone().unwrap();
        ours.set_nonblocking(true).unwrap();
        let endpoint = Endpoint::new(mio::net::TcpStream::from_std(ours), Token(token));
        (peer, endpoint, waiter)
    }

    /// Blocks until the socket has bytes to read (its status flags are shared by both
    /// handles, so it is made blocking for the wait only).
    fn wait_readable(waiter: &TcpStream) {
        waiter.set_nonblocking(false).unwrap();
        waiter
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(waiter.peek(&mut [0]).unwrap() > 0);
        waiter.set_nonblocking(true).unwrap();
    }

    /// A client that resets ends the pipe at once: nothing reaches it any more, and the
    /// backend's stream is ended after what the client sent. Edge-triggered, no other event
    /// would come for the reset socket.
    #[test]
    fn a_client_reset_ends_the_pipe() {
        let (client, mut front, _) = connection(0);
        let (mut backend, mut back, _) = connection(1);
        let pool = Pool::new(16, 0, 2);
        let mut pipe = Pipe::new(pool.checkout(), pool.checkout());
        // The client closes with bytes of ours unread: its kernel resets the connection.
        front.tcp_mut().unwrap().write_all(b"unread").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(client.peek(&mut [0]).unwrap() > 0);
        drop(client);
        // Waits for the reset without taking the socket's error (a read or peek would): the
        // client sends nothing, so the first readable event is the reset.
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(front.tcp_mut().unwrap(), Token(0), mio::Interest::READABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(
            events.iter().any(mio::event::Event::is_error),
            "the client reset"
        );

        front.readiness.event = Ready::READABLE | Ready::WRITABLE;
        back.readiness.event = Ready::WRITABLE;
        assert_eq!(pipe.run(&mut front, &mut back, None), PipeStatus::Done);
        backend
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        backend.read_to_end(&mut received).unwrap();
        assert!(received.is_empty());
    }

    /// A pipe of one page has one slot, which the first piece of the stream spliced in takes
    /// however small it is: the pipe is full with 1 byte in it. The socket still holds the
    /// second piece and must stay readable (edge-triggered: no new event will come for it).
    /// The lane's 4-byte buffer fills with the first 4 bytes, so the lane moves to the kernel
    /// pipe at once; those 4 bytes still go first.
    #[test]
    fn a_pipe_out_of_slots_leaves_the_socket_readable() {
        let (mut client, mut front, front_waiter) = connection(0);
        let (backend_side, mut back, _) = connection(1);
        let mut backend = backend_side;
        let pool = Pool::new(4, 0, 2);
        let mut pipe = Pipe::new(pool.checkout(), pool.checkout()).splicing_bulk(4096);
        front.readiness.event = Ready::READABLE | Ready::WRITABLE;

        client.write_all(b"first").unwrap();
        wait_readable(&front_waiter);
        // The backend's socket is not writable yet: the first piece stays in the pipe.
        assert!(matches!(
            pipe.run(&mut front, &mut back, None),
            PipeStatus::Wait { .. }
        ));
        client.write_all(b"second").unwrap();
        wait_readable(&front_waiter);
        assert!(matches!(
            pipe.run(&mut front, &mut back, None),
            PipeStatus::Wait { .. }
        ));
        assert!(
            front.readiness.event.contains(Ready::READABLE),
            "a full pipe is not a drained socket"
        );

        // The backend's socket becomes writable: both pieces go through, in order.
        back.readiness.event.insert(Ready::WRITABLE);
        pipe.run(&mut front, &mut back, None);
        backend
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = [0; 11];
        backend.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"firstsecond");
        assert_eq!(pipe.lanes_in_kernel(), [true, false]);
        assert_eq!(
            pool.in_use(),
            1,
            "the sent buffer of the lane went back to the pool"
        );
    }

    /// The direction that ends first is ended with a `shutdown`; when the other one ends, the
    /// pipe is done and the session closes both sockets, which ends that last stream: no
    /// `shutdown` call for it, and the peer still gets every byte, then the end of stream.
    #[test]
    fn the_direction_that_ends_last_is_ended_by_the_close() {
        let (mut client, mut front, front_waiter) = connection(0);
        let (mut backend, mut back, back_waiter) = connection(1);
        backend
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let pool = Pool::new(16, 0, 2);
        let mut pipe = Pipe::new(pool.checkout(), pool.checkout());
        front.readiness.event = Ready::WRITABLE;
        back.readiness.event = Ready::WRITABLE;

        client.write_all(b"hi").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&front_waiter);
        front.readiness.event.insert(Ready::READABLE | Ready::HUP);
        assert!(matches!(
            pipe.run(&mut front, &mut back, None),
            PipeStatus::Wait { .. }
        ));
        assert!(back.write_shut, "the first direction to end is shut down");
        let mut received = Vec::new();
        backend.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"hi");

        backend.write_all(b"yo").unwrap();
        backend.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&back_waiter);
        back.readiness.event.insert(Ready::READABLE | Ready::HUP);
        assert_eq!(pipe.run(&mut front, &mut back, None), PipeStatus::Done);
        assert!(!front.write_shut, "the close ends the last direction");
        // The socket closes with its last descriptor (the test holds a second one).
        drop(front);
        drop(front_waiter);
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"yo");
    }

    /// The segments the kernel sent so far on `socket` (`TCP_INFO`).
    #[allow(unsafe_code)]
    pub(crate) fn segments_sent(socket: &impl std::os::fd::AsRawFd) -> u32 {
        // SAFETY: `tcp_info` is plain integers, for which zero is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut length = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).unwrap();
        // SAFETY: `info` and `length` are valid for writes and `length` is `info`'s size.
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                std::ptr::from_mut(&mut info).cast(),
                &mut length,
            )
        };
        assert_eq!(result, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_segs_out
    }

    /// A backend's last bytes and its end of stream reach the client in one segment: the
    /// write that empties the lane of an ended source holds its tail in the kernel
    /// (`MSG_MORE`), and the `shutdown` that follows sends it with the FIN, not alone after
    /// it (one segment, and one acknowledgement, fewer per connection). The client still gets
    /// every byte, then the end of stream, and the backend still gets what the client sends
    /// after that.
    #[test]
    fn the_last_bytes_and_the_end_of_stream_leave_in_one_segment() {
        let (mut client, mut front, front_waiter) = connection(0);
        let (mut backend, mut back, back_waiter) = connection(1);
        front.tcp().unwrap().set_nodelay(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        backend
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let pool = Pool::new(64, 0, 2);
        let mut pipe = Pipe::new(pool.checkout(), pool.checkout());
        front.readiness.event = Ready::WRITABLE;
        back.readiness.event = Ready::WRITABLE;

        backend.write_all(b"the answer, then the end").unwrap();
        backend.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&back_waiter);
        back.readiness.event.insert(Ready::READABLE | Ready::HUP);
        let before = segments_sent(front.tcp().unwrap());
        assert!(matches!(
            pipe.run(&mut front, &mut back, None),
            PipeStatus::Wait { .. }
        ));
        assert!(front.write_shut, "the backend's end is passed on");
        assert_eq!(
            segments_sent(front.tcp().unwrap()) - before,
            1,
            "the bytes and the FIN"
        );
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"the answer, then the end");

        client.write_all(b"after").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&front_waiter);
        front.readiness.event.insert(Ready::READABLE | Ready::HUP);
        assert_eq!(pipe.run(&mut front, &mut back, None), PipeStatus::Done);
        // The session closes the sockets (the test holds a second descriptor of each).
        drop(back);
        drop(back_waiter);
        let mut received = Vec::new();
        backend.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"after");
    }

    /// A spliced pipe moves a direction to a kernel pipe only when a read fills its buffer:
    /// small messages both ways stay in user space (no pipe made), a bulk transfer moves, and
    /// every byte arrives in order.
    #[test]
    fn a_spliced_pipe_moves_a_direction_to_the_kernel_when_its_bytes_come_in_bulk() {
        let (mut client, mut front, front_waiter) = connection(0);
        let (mut backend, mut back, back_waiter) = connection(1);
        backend
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let pool = Pool::new(16, 0, 2);
        let mut pipe = Pipe::new(pool.checkout(), pool.checkout()).splicing_bulk(0);
        front.readiness.event = Ready::WRITABLE;
        back.readiness.event = Ready::WRITABLE;

        client.write_all(b"question").unwrap();
        wait_readable(&front_waiter);
        front.readiness.event.insert(Ready::READABLE);
        pipe.run(&mut front, &mut back, None);
        let mut received = [0; 8];
        backend.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"question");
        backend.write_all(b"answer").unwrap();
        wait_readable(&back_waiter);
        back.readiness.event.insert(Ready::READABLE);
        pipe.run(&mut front, &mut back, None);
        let mut received = [0; 6];
        client.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"answer");
        assert_eq!(pipe.lanes_in_kernel(), [false, false], "small messages");

        // One write on loopback arrives whole: one run moves it all.
        let bulk: Vec<u8> = (0..200u8).collect();
        backend.write_all(&bulk).unwrap();
        wait_readable(&back_waiter);
        back.readiness.event.insert(Ready::READABLE);
        pipe.run(&mut front, &mut back, None);
        let mut received = vec![0; bulk.len()];
        client.read_exact(&mut received).unwrap();
        assert_eq!(received, bulk);
        assert_eq!(pipe.lanes_in_kernel(), [false, true], "a bulk transfer");
    }
}
