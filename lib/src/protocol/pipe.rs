//! Bidirectional byte copy between the two sockets of a session: TCP mode, and HTTP
//! connections after an `Upgrade` (WebSocket).
//!
//! Each direction is a lane: a pooled buffer, or (TCP listeners with `splice`) a kernel
//! pipe fed and drained by `splice(2)`, behind a head of bytes that go first (the PROXY header
//! for the backend), kept apart so that it never takes room from the stream. Bytes are read while the lane has room and written while
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
    /// Client to backend.
    front_to_back: Lane,
    /// Backend to client.
    back_to_front: Lane,
    /// The pipe ran once with its backend connected.
    started: bool,
}

/// Where one direction's bytes wait between the two sockets.
struct Lane {
    /// Bytes that go out before any other, and never share room with the stream: the PROXY
    /// header for the backend. Empty once sent.
    head: Vec<u8>,
    store: Store,
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
    /// kernel pipe existed, then the stream.
    fn drain_into(&mut self, sink: &mut Endpoint, limit: usize) -> Transfer {
        if !self.head.is_empty() {
            let end = self.head.len().min(limit);
            let transfer = sink.write(&self.head[..end]);
            if let Transfer::Moved(count) = transfer {
                self.head.drain(..count.min(self.head.len()));
            }
            return transfer;
        }
        match &mut self.store {
            Store::Buffer(buffer) => write_from(buffer, sink, limit),
            Store::Kernel { prefix, pipe } => {
                if let Some(buffer) = prefix.as_mut().filter(|buffer| !buffer.is_empty()) {
                    return write_from(buffer, sink, limit);
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

/// Writes at most `limit` of a buffer's pending bytes to `sink` and consumes what was taken.
fn write_from(buffer: &mut Buffer, sink: &mut Endpoint, limit: usize) -> Transfer {
    let data = buffer.data();
    let transfer = sink.write(&data[..data.len().min(limit)]);
    if let Transfer::Moved(count) = transfer {
        buffer.consume(count);
    }
    transfer
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
}

impl Pipe {
    pub fn new(front_to_back: Buffer, back_to_front: Buffer) -> Self {
        Pipe {
            front_to_back: Lane::new(Store::Buffer(front_to_back)),
            back_to_front: Lane::new(Store::Buffer(back_to_front)),
            started: false,
        }
    }

    /// True the first time it is asked: the backend connection is there, bytes are about
    /// to move.
    pub fn first_run(&mut self) -> bool {
        !std::mem::replace(&mut self.started, true)
    }

    /// A pipe whose bytes go through kernel pipes of `capacity` bytes (0: the kernel's
    /// default); `prefix` (client bytes read already) goes to the backend first. If the kernel refuses pipes, `prefix`
    /// comes back with the error.
    pub fn spliced(prefix: Buffer, capacity: usize) -> Result<Self, (Buffer, std::io::Error)> {
        let pipes = KernelPipe::new(capacity).and_then(|up| Ok((up, KernelPipe::new(capacity)?)));
        match pipes {
            Ok((up, down)) => Ok(Pipe {
                front_to_back: Lane::new(Store::Kernel {
                    prefix: Some(prefix),
                    pipe: up,
                }),
                back_to_front: Lane::new(Store::Kernel {
                    prefix: None,
                    pipe: down,
                }),
                started: false,
            }),
            Err(error) => Err((prefix, error)),
        }
    }

    /// The backend gets `header` before any byte of the client's stream. The header has its
    /// own storage: however full the stream's buffer is, no byte of either is dropped.
    pub fn with_backend_header(mut self, header: Vec<u8>) -> Self {
        self.front_to_back.head = header;
        self
    }

    /// The client gets `reply` before any byte of the backend's stream (a script's `reply`).
    pub fn with_client_header(mut self, reply: Vec<u8>) -> Self {
        self.back_to_front.head = reply;
        self
    }

    /// The client's bytes read before the pipe existed, to count as received now by the
    /// faults' lanes towards the backend (with the PROXY header that goes first).
    pub fn waiting_for_backend(&self) -> usize {
        self.front_to_back.pending()
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
            &mut self.front_to_back,
            back,
            shaping
                .as_mut()
                .map(|(s, now)| (&mut **s, Way::ToBackend, *now)),
        );
        let downstream = copy(
            back,
            &mut self.back_to_front,
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
        if is_finished(front, &self.front_to_back, back)
            && is_finished(back, &self.back_to_front, front)
        {
            return PipeStatus::Done;
        }
        front.readiness.interest = interest(front, &self.front_to_back, &self.back_to_front);
        back.readiness.interest = interest(back, &self.back_to_front, &self.front_to_back);
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
            match (limit > 0).then(|| lane.drain_into(sink, limit)) {
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
    if source.read_closed
        && lane.is_empty()
        && !sink.write_shut
        && shaping
            .as_mut()
            .is_none_or(|(shaper, way, now)| shaper.may_close(*way, *now))
    {
        sink.shutdown_write();
    }
    progress
}

/// The direction `source` → `sink` has delivered everything and ended, or can deliver
/// nothing more: `sink` reset the connection.
fn is_finished(source: &Endpoint, lane: &Lane, sink: &Endpoint) -> bool {
    sink.reset || (source.read_closed && lane.is_empty() && sink.write_shut)
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
mod tests {
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
    /// however small it is: the pipe is full with 5 bytes in it. The socket still holds the
    /// second piece and must stay readable (edge-triggered: no new event will come for it).
    #[test]
    fn a_pipe_out_of_slots_leaves_the_socket_readable() {
        let (mut client, mut front, front_waiter) = connection(0);
        let (backend_side, mut back, _) = connection(1);
        let mut backend = backend_side;
        let pool = Pool::new(16, 0, 1);
        let Ok(mut pipe) = Pipe::spliced(pool.checkout(), 4096) else {
            panic!("kernel pipes are available");
        };
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
    }
}
