//! A typed, bidirectional channel over a Unix stream: one JSON message per line.
//!
//! Framing is newline-delimited JSON. `serde_json` escapes every newline inside strings, so a
//! serialised message never contains a raw `\n` and the newline alone ends it. Any language can
//! drive the proxy with a Unix socket and a JSON library; blank lines are ignored.
//!
//! A [`Channel`] owns its socket and two buffers. It works in two modes:
//!
//! - **blocking** (the CLI): [`Channel::write_message`] returns once everything is written and
//!   [`Channel::read_message`] waits for a message; [`Channel::read_message_timeout`] bounds the
//!   wait;
//! - **non-blocking** (event loops): the channel is a [`mio::event::Source`]. On a readable event
//!   call [`Channel::readable`], then [`Channel::read_message`] until it returns `Ok(None)`; on a
//!   writable event call [`Channel::writable`]. [`Channel::interest`] says whether the channel
//!   waits for writability, i.e. whether output is pending.
//!
//! Limits: one line longer than the maximum message size is refused with
//! [`ChannelError::MessageTooLarge`]; the channel then drops bytes up to the next newline and
//! carries on. The limit applies to one message, never to a batch of them, and the input buffer
//! never grows past the maximum plus one read chunk.
//!
//! What the channel leaves to its caller: answering a refused or malformed message (the error
//! carries the request id when it can be read), and closing the channel on a fatal error
//! ([`ChannelError::is_fatal`]).

use std::{
    io::{self, Read, Write},
    marker::PhantomData,
    ops::Range,
    os::{fd::AsRawFd, unix::net::UnixStream},
    time::{Duration, Instant},
};

use log::warn;
use mio::{Interest, Registry, Token, event::Source, unix::SourceFd};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use buffer::{Frame, LineBuffer, OutputBuffer};

mod buffer;

/// Longest excerpt of a malformed line kept in [`ChannelError::InvalidMessage`], in bytes.
const EXCERPT_LEN: usize = 100;

/// What can go wrong on a channel. [`ChannelError::is_fatal`] tells which errors leave the
/// channel usable.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer sent a line longer than the maximum. The channel drops the rest of that line and
    /// goes on with the next one.
    #[error("message of at least {size_so_far} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The bytes of the line seen so far.
        size_so_far: usize,
        /// The maximum message size, in bytes.
        max: usize,
    },
    /// A line is not a valid message. The channel goes on with the next line.
    #[error("invalid message {line_excerpt:?}")]
    InvalidMessage {
        /// The start of the line, at most 100 bytes, lossily decoded as UTF-8.
        line_excerpt: String,
        /// The line's `"id"` field, when the line is a JSON object with a string `id`, so that
        /// the answer can name the request it refuses.
        id: Option<String>,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A message given to [`Channel::write_message`] serialises to more than the maximum. Nothing
    /// was queued.
    #[error("outgoing message of {size} bytes exceeds the maximum of {max} bytes")]
    OutgoingMessageTooLarge {
        /// The serialised message's size, in bytes.
        size: usize,
        /// The maximum message size, in bytes.
        max: usize,
    },
    /// A message given to [`Channel::write_message`] cannot be serialised. Nothing was queued.
    #[error("cannot serialise message")]
    Serialize(#[source] serde_json::Error),
    /// [`Channel::read_message_timeout`] saw no complete message in time.
    #[error("no message received within {timeout:?}")]
    Timeout {
        /// The wait that expired.
        timeout: Duration,
    },
    /// The socket could not be created or switched between blocking and non-blocking.
    #[error("cannot configure the channel socket")]
    Socket(#[source] io::Error),
    /// Reading the socket failed.
    #[error("cannot read from the channel")]
    Read(#[source] io::Error),
    /// Writing the socket failed.
    #[error("cannot write to the channel")]
    Write(#[source] io::Error),
}

impl ChannelError {
    /// Whether the channel is unusable after this error and should be closed. Refused or
    /// malformed messages and timeouts leave it usable.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::MessageTooLarge { .. }
            | Self::InvalidMessage { .. }
            | Self::OutgoingMessageTooLarge { .. }
            | Self::Serialize(_)
            | Self::Timeout { .. } => false,
            Self::Socket(_) | Self::Read(_) | Self::Write(_) => true,
        }
    }
}

/// How the socket behaves when it has nothing to give or cannot take more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reads wait for data and writes wait until the kernel took everything.
    Blocking,
    /// Reads and writes return `WouldBlock` at once; an event loop says when to retry.
    NonBlocking,
}

/// A typed, bidirectional channel: sends `Tx` and receives `Rx`, one JSON message per line.
///
/// The peer closing the socket is not an error: [`Channel::read_message`] returns the messages
/// still buffered, then `Ok(None)` forever, and [`Channel::is_closed`] turns true.
#[derive(Debug)]
pub struct Channel<Tx, Rx> {
    stream: UnixStream,
    mode: Mode,
    /// Whether the kernel may have more to read: set by [`Channel::readable`], cleared when a
    /// read returns `WouldBlock`. Only meaningful in non-blocking mode.
    is_readable: bool,
    closed: bool,
    input: LineBuffer,
    output: OutputBuffer,
    /// A `fn` pointer type keeps the channel `Send` and `Sync` whatever `Tx` and `Rx` are: it
    /// holds bytes, never values of those types.
    types: PhantomData<fn(Tx) -> Rx>,
}

impl<Tx, Rx> Channel<Tx, Rx> {
    /// Wraps a mio stream, which is non-blocking: the channel starts in non-blocking mode.
    ///
    /// `buffer_size` is the size of one read (and the initial input buffer); `max_message_size`
    /// the longest line accepted, newline excluded. Both are at least 1.
    pub fn new(stream: mio::net::UnixStream, buffer_size: usize, max_message_size: usize) -> Self {
        Self::with_mode(
            UnixStream::from(stream),
            Mode::NonBlocking,
            buffer_size,
            max_message_size,
        )
    }

    /// Wraps a std stream and puts it in blocking mode, as a CLI uses it. See [`Channel::new`]
    /// for the sizes.
    pub fn from_std(
        stream: UnixStream,
        buffer_size: usize,
        max_message_size: usize,
    ) -> Result<Self, ChannelError> {
        stream
            .set_nonblocking(false)
            .map_err(ChannelError::Socket)?;
        Ok(Self::with_mode(
            stream,
            Mode::Blocking,
            buffer_size,
            max_message_size,
        ))
    }

    /// A connected pair, for tests and for embedding a worker in a thread: the first end is
    /// blocking (the side that sends orders and waits for answers), the second non-blocking
    /// (the side an event loop drives).
    #[expect(
        clippy::type_complexity,
        reason = "the pair's type says which end sends what"
    )]
    pub fn pair(
        buffer_size: usize,
        max_message_size: usize,
    ) -> Result<(Channel<Tx, Rx>, Channel<Rx, Tx>), ChannelError> {
        let (first, second) = UnixStream::pair().map_err(ChannelError::Socket)?;
        let first = Channel::from_std(first, buffer_size, max_message_size)?;
        let mut second = Channel::from_std(second, buffer_size, max_message_size)?;
        second.nonblocking()?;
        Ok((first, second))
    }

    fn with_mode(
        stream: UnixStream,
        mode: Mode,
        buffer_size: usize,
        max_message_size: usize,
    ) -> Self {
        Self {
            stream,
            mode,
            is_readable: true,
            closed: false,
            input: LineBuffer::new(buffer_size.max(1), max_message_size.max(1)),
            output: OutputBuffer::default(),
            types: PhantomData,
        }
    }

    /// Switches to blocking mode: writes return once everything is written, reads wait.
    pub fn blocking(&mut self) -> Result<(), ChannelError> {
        self.stream
            .set_nonblocking(false)
            .map_err(ChannelError::Socket)?;
        self.mode = Mode::Blocking;
        Ok(())
    }

    /// Switches to non-blocking mode, for an event loop.
    pub fn nonblocking(&mut self) -> Result<(), ChannelError> {
        self.stream
            .set_nonblocking(true)
            .map_err(ChannelError::Socket)?;
        self.mode = Mode::NonBlocking;
        // Readiness is unknown after a switch: let the next read find out.
        self.is_readable = true;
        Ok(())
    }

    /// Whether reads and writes wait (the CLI's mode) rather than return `WouldBlock`.
    pub fn is_blocking(&self) -> bool {
        self.mode == Mode::Blocking
    }

    /// Whether the peer closed the socket (end of stream, reset, or broken pipe on write).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The largest message accepted or sent, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.input.max_line()
    }

    /// Whether queued output still waits for the socket to take it.
    pub fn has_pending_output(&self) -> bool {
        !self.output.pending().is_empty()
    }

    /// How many bytes of queued output wait for the socket to take them, so that an event loop
    /// can drop a peer that does not read what it is sent.
    pub fn pending_output_len(&self) -> usize {
        self.output.pending().len()
    }

    /// What an event loop should wait for: readability always, writability while output is
    /// pending.
    pub fn interest(&self) -> Interest {
        if self.has_pending_output() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Reads what the kernel has into the input buffer, until `WouldBlock`, the end of stream, or
    /// a full buffer holding complete lines (those are read by [`Channel::read_message`], which
    /// reads the rest). Returns the number of bytes read.
    ///
    /// Call it on every readable event, then [`Channel::read_message`] until it returns
    /// `Ok(None)`. In blocking mode it reads at most once, as the next read would wait.
    pub fn readable(&mut self) -> Result<usize, ChannelError> {
        self.is_readable = true;
        let mut total = 0;
        loop {
            match self.fill()? {
                Fill::Bytes(read) if self.mode == Mode::NonBlocking => total += read,
                Fill::Bytes(read) => return Ok(total + read),
                Fill::WouldBlock | Fill::Closed | Fill::Full => return Ok(total),
            }
        }
    }

    /// Writes queued output until the socket takes no more (non-blocking mode) or until all is
    /// written (blocking mode). Returns the number of bytes written.
    ///
    /// Call it on every writable event. A broken pipe or a reset marks the channel closed.
    pub fn writable(&mut self) -> Result<usize, ChannelError> {
        let mut total = 0;
        while !self.output.pending().is_empty() {
            match self.stream.write(self.output.pending()) {
                Ok(0) => return Err(ChannelError::Write(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    self.output.consume(written);
                    total += written;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    if is_peer_gone(&error) {
                        self.closed = true;
                    }
                    return Err(ChannelError::Write(error));
                }
            }
        }
        Ok(total)
    }

    /// Reads once into the input buffer.
    fn fill(&mut self) -> Result<Fill, ChannelError> {
        if self.closed {
            return Ok(Fill::Closed);
        }
        let room = self.input.spare();
        if room.is_empty() {
            return Ok(Fill::Full);
        }
        let read = match self.stream.read(room) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.is_readable = false;
                return Ok(Fill::WouldBlock);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(Fill::Bytes(0)),
            Err(error) if is_peer_gone(&error) => 0,
            Err(error) => return Err(ChannelError::Read(error)),
        };
        if read == 0 {
            self.closed = true;
            if self.input.has_unfinished_line() {
                warn!("channel closed by the peer in the middle of a message");
            }
            return Ok(Fill::Closed);
        }
        self.input.filled(read);
        Ok(Fill::Bytes(read))
    }
}

impl<Tx: Serialize, Rx> Channel<Tx, Rx> {
    /// Queues one message and writes as much as the socket takes: everything in blocking mode,
    /// until `WouldBlock` in non-blocking mode (the rest goes on writable events, see
    /// [`Channel::writable`]).
    ///
    /// A message that cannot be serialised or exceeds the maximum message size is refused and
    /// nothing is queued.
    pub fn write_message(&mut self, message: &Tx) -> Result<(), ChannelError> {
        self.queue_message(message)?;
        self.writable().map(drop)
    }

    /// Queues one message without writing it: the next [`Channel::writable`] (or
    /// [`Channel::write_message`]) writes it with whatever else is queued, so that many messages
    /// cost a few large writes rather than one write each. Refuses what
    /// [`Channel::write_message`] refuses, and then queues nothing.
    pub fn queue_message(&mut self, message: &Tx) -> Result<(), ChannelError> {
        self.output.push_line(message, self.input.max_line())
    }

    /// Queues one message the caller serialised already, as [`Channel::queue_message`] would
    /// have written it: `json` is one message of type `Tx` in compact JSON (without newline,
    /// as `serde_json::to_writer` writes it). The same orders sent to many workers are
    /// serialised once this way. Refuses a message over the maximum size.
    pub fn queue_json(&mut self, json: &[u8]) -> Result<(), ChannelError> {
        self.output.push_json(json, self.input.max_line())
    }
}

impl<Tx, Rx: DeserializeOwned> Channel<Tx, Rx> {
    /// The next message.
    ///
    /// In blocking mode it waits for one. In non-blocking mode it returns `Ok(None)` when no
    /// complete line is buffered and the socket has nothing more to read now; it reads from the
    /// socket itself while [`Channel::readable`] left data there.
    ///
    /// Returns `Ok(None)` forever once the peer closed the socket and every buffered message was
    /// returned. [`ChannelError::MessageTooLarge`] and [`ChannelError::InvalidMessage`] concern
    /// one line: the next call returns the next message.
    pub fn read_message(&mut self) -> Result<Option<Rx>, ChannelError> {
        self.receive(None, None)
    }

    /// Like [`Channel::read_message`], but each line of valid UTF-8 is first given to `fast`,
    /// a decoder of the lines it knows best (a worker reads the main process's orders with
    /// [`read_written_request`]); a line it gives `None` for is decoded by `serde_json` as
    /// [`Channel::read_message`] decodes it. `fast` must give what `serde_json` gives for the
    /// lines it reads.
    ///
    /// [`read_written_request`]: crate::request::read_written_request
    pub fn read_message_with(
        &mut self,
        fast: fn(&str) -> Option<Rx>,
    ) -> Result<Option<Rx>, ChannelError> {
        self.receive(None, Some(fast))
    }

    /// Like [`Channel::read_message_with`], but each line is a message of type `T`, which
    /// holds more than `Rx` ([`Channel::read_message`] refuses what it does not know): a worker
    /// reads its main process's orders as [`WorkerRequest`]s with [`read_worker_request`],
    /// the facts its main process found with them.
    ///
    /// [`WorkerRequest`]: crate::request::WorkerRequest
    /// [`read_worker_request`]: crate::request::read_worker_request
    pub fn read_message_as<T: DeserializeOwned>(
        &mut self,
        fast: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ChannelError> {
        self.receive(None, Some(fast))
    }

    /// Like [`Channel::read_message`] in blocking mode, but waits at most `timeout`, whatever the
    /// channel's mode (which is restored before returning). Returns
    /// [`ChannelError::Timeout`] when no complete message arrived in time; a message arriving
    /// later is returned by the next read.
    pub fn read_message_timeout(&mut self, timeout: Duration) -> Result<Option<Rx>, ChannelError> {
        let mode = self.mode;
        if mode == Mode::NonBlocking {
            self.blocking()?;
        }
        let received = self.receive(Some(timeout), None);
        let restored = self
            .stream
            .set_read_timeout(None)
            .map_err(ChannelError::Socket)
            .and_then(|()| match mode {
                Mode::NonBlocking => self.nonblocking(),
                Mode::Blocking => Ok(()),
            });
        let message = received?;
        restored?;
        Ok(message)
    }

    /// Reads until a complete frame is buffered. With a timeout (blocking mode only), each read
    /// waits at most until the deadline; a timeout too large for `Instant` waits without limit.
    fn receive<T: DeserializeOwned>(
        &mut self,
        timeout: Option<Duration>,
        fast: Option<fn(&str) -> Option<T>>,
    ) -> Result<Option<T>, ChannelError> {
        let deadline =
            timeout.and_then(|timeout| Some((Instant::now().checked_add(timeout)?, timeout)));
        loop {
            match self.input.next_frame() {
                Frame::Line(line) => return self.parse(line, fast).map(Some),
                Frame::TooLarge { size_so_far } => {
                    return Err(ChannelError::MessageTooLarge {
                        size_so_far,
                        max: self.input.max_line(),
                    });
                }
                Frame::Incomplete => {}
            }
            if self.closed {
                return Ok(None);
            }
            if self.mode == Mode::NonBlocking && !self.is_readable {
                return Ok(None);
            }
            if let Some((deadline, timeout)) = deadline {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(ChannelError::Timeout { timeout });
                }
                self.stream
                    .set_read_timeout(Some(remaining))
                    .map_err(ChannelError::Socket)?;
            }
            // `WouldBlock` ends the next turn in non-blocking mode (it clears `is_readable`) and
            // means that the read timed out in blocking mode (the next turn checks the deadline).
            // The next turn also reports an end of stream. `Full` cannot follow an incomplete
            // frame (see `LineBuffer::spare`).
            self.fill()?;
        }
    }

    /// Decodes one line. A line of valid UTF-8 (every line a sozu process or a serde client
    /// writes) is checked once as a whole and decoded as text, which spares `serde_json` the
    /// check of each string it reads on its own (an eighth of a worker's decoding of the
    /// orders at start); any other line is decoded from its bytes, refused as before. A text
    /// line goes to `fast` first, when given.
    fn parse<T: DeserializeOwned>(
        &self,
        line: Range<usize>,
        fast: Option<fn(&str) -> Option<T>>,
    ) -> Result<T, ChannelError> {
        let bytes = self.input.line(line);
        let decoded = match std::str::from_utf8(bytes) {
            Ok(text) => match fast.and_then(|fast| fast(text)) {
                Some(message) => return Ok(message),
                None => serde_json::from_str(text),
            },
            Err(_) => serde_json::from_slice(bytes),
        };
        decoded.map_err(|source| ChannelError::InvalidMessage {
            line_excerpt: excerpt(bytes),
            id: peek_id(bytes),
            source,
        })
    }
}

/// The channel's socket, to hand it to another process (a hot upgrade passes the workers'
/// channels to the new main process). Bytes already buffered by this side stay here.
impl<Tx, Rx> std::os::fd::AsFd for Channel<Tx, Rx> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.stream)
    }
}

impl<Tx, Rx> Source for Channel<Tx, Rx> {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.stream.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.stream.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.stream.as_raw_fd()).deregister(registry)
    }
}

/// Whether an I/O error means the peer is gone, which closes the channel.
fn is_peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// The start of a line for an error message, at most [`EXCERPT_LEN`] bytes, marked with `…`
/// when cut.
fn excerpt(line: &[u8]) -> String {
    match line.get(..EXCERPT_LEN) {
        Some(head) if head.len() < line.len() => format!("{}…", String::from_utf8_lossy(head)),
        _ => String::from_utf8_lossy(line).into_owned(),
    }
}

/// The string `"id"` field of a line that failed to parse as a message, if it has one.
fn peek_id(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Identified {
        id: String,
    }
    serde_json::from_slice::<Identified>(line)
        .ok()
        .map(|identified| identified.id)
}

/// What one read into the input buffer gave.
#[derive(Debug, PartialEq, Eq)]
enum Fill {
    Bytes(usize),
    WouldBlock,
    Closed,
    /// The buffer holds complete lines and has no room left at its current size.
    Full,
}

#[cfg(test)]
mod tests;
