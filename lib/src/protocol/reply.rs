//! The stage of a TCP session that a script (or an embedding program's router) answers by
//! itself: bytes for the client (`{ close = "bytes" }`, or a file action's `reply`), then a
//! file's bytes sent with `sendfile(2)` (`{ file = "/path", offset = N, nbytes = N }`), then
//! the end of the connection. No backend is opened.
//!
//! Once everything is sent the stage shuts its write side and reads (and drops) what the
//! client still sends until the client closes, within the front timeout: closing a socket
//! with unread bytes makes the kernel reset the connection, and a reset can destroy the
//! answer in the client's receive buffer before the client read it.
#![allow(
    unsafe_code,
    reason = "sendfile(2) has no safe wrapper in std; one call, in `send_file`"
)]

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use crate::session::endpoint::{Endpoint, Ready, Transfer};

/// How many file bytes one `sendfile` call offers at most, so one session does not hold the
/// event loop for a large file.
const SENDFILE_CHUNK: usize = 1 << 20;

/// A part of a file to send.
#[derive(Debug)]
pub struct FileRegion {
    file: File,
    /// Where the next byte is read.
    offset: i64,
    /// Bytes still to send.
    remaining: u64,
}

impl FileRegion {
    /// The bytes of the file at `path` from `offset` to its end, at most `nbytes` of them.
    /// Fails when the file cannot be opened or `offset` is past what a file offset can hold.
    pub fn open(path: &Path, offset: u64, nbytes: Option<u64>) -> io::Result<FileRegion> {
        let start = i64::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let file = File::open(path)?;
        let available = file.metadata()?.len().saturating_sub(offset);
        Ok(FileRegion {
            file,
            offset: start,
            remaining: nbytes.map_or(available, |nbytes| nbytes.min(available)),
        })
    }
}

/// Where the stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sending,
    /// Everything is sent and the write side shut: waiting for the client to close.
    Lingering,
}

/// Answering the client by the proxy, then closing.
#[derive(Debug)]
pub struct Reply {
    /// Bytes to send before the file.
    bytes: Vec<u8>,
    /// How many of `bytes` were sent.
    sent: usize,
    file: Option<FileRegion>,
    phase: Phase,
}

/// What the stage asks after running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Waiting for the socket.
    Wait,
    /// Over (or the client is gone): close the session.
    Done,
}

impl Reply {
    /// Sends `bytes`, then the file region, if any.
    pub fn new(bytes: Vec<u8>, file: Option<FileRegion>) -> Reply {
        Reply {
            bytes,
            sent: 0,
            file,
            phase: Phase::Sending,
        }
    }

    /// Sends what the socket takes, then lingers until the client closes.
    pub fn run(&mut self, front: &mut Endpoint) -> ReplyStatus {
        if self.phase == Phase::Sending {
            match self.send(front) {
                Ok(true) => {
                    front.shutdown_write();
                    self.phase = Phase::Lingering;
                }
                Ok(false) => return ReplyStatus::Wait,
                Err(()) => return ReplyStatus::Done,
            }
        }
        linger(front)
    }

    /// Sends the bytes, then the file; `Ok(true)` once all is sent, `Err` when the client is
    /// gone or the file cannot be read.
    fn send(&mut self, front: &mut Endpoint) -> Result<bool, ()> {
        while let Some(rest) = self.bytes.get(self.sent..).filter(|rest| !rest.is_empty()) {
            if !front.readiness.event.contains(Ready::WRITABLE) {
                return Ok(false);
            }
            match front.write(rest) {
                Transfer::Moved(count) => self.sent = self.sent.saturating_add(count),
                Transfer::WouldBlock => return Ok(false),
                Transfer::Closed | Transfer::Error(_) => return Err(()),
            }
        }
        let Some(region) = &mut self.file else {
            return Ok(true);
        };
        loop {
            let wanted = usize::try_from(region.remaining)
                .map_or(SENDFILE_CHUNK, |remaining| remaining.min(SENDFILE_CHUNK));
            if wanted == 0 {
                return Ok(true);
            }
            if !front.readiness.event.contains(Ready::WRITABLE) {
                return Ok(false);
            }
            let Some(stream) = front.tcp() else {
                return Ok(true);
            };
            match send_file(stream.as_raw_fd(), region, wanted) {
                // The file got shorter since it was opened.
                Ok(0) => return Ok(true),
                // A short count may mean a full socket or a shorter file: the next call tells.
                Ok(count) => {
                    front.bytes_written = front.bytes_written.saturating_add(count as u64);
                    region.remaining = region.remaining.saturating_sub(count as u64);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    front.readiness.event.remove(Ready::WRITABLE);
                    return Ok(false);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("sending a file to the client failed: {error}");
                    return Err(());
                }
            }
        }
    }
}

/// Reads and drops what the client sends, until it closes.
fn linger(front: &mut Endpoint) -> ReplyStatus {
    let mut sink = [0u8; 4096];
    loop {
        if !front.readiness.event.contains(Ready::READABLE) {
            return ReplyStatus::Wait;
        }
        match front.read(&mut sink) {
            Transfer::Moved(_) => {}
            Transfer::WouldBlock => return ReplyStatus::Wait,
            Transfer::Closed | Transfer::Error(_) => return ReplyStatus::Done,
        }
    }
}

/// One `sendfile(2)` of at most `count` bytes of `region` to the socket `out`; advances the
/// region's offset by what was sent.
fn send_file(out: RawFd, region: &mut FileRegion, count: usize) -> io::Result<usize> {
    let mut offset: libc::off_t = region.offset;
    // SAFETY: both descriptors are open for the duration of the call (`region.file` and the
    // session's socket are borrowed), and `offset` is a valid `off_t` the kernel updates.
    let sent = unsafe { libc::sendfile(out, region.file.as_raw_fd(), &mut offset, count) };
    let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
    region.offset = offset;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{Shutdown, TcpListener},
    };

    use mio::{Token, net::TcpStream};

    use super::*;

    /// A connected pair: the proxy's end as an endpoint, and the client's blocking end.
    fn pair() -> (Endpoint, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut front = Endpoint::new(TcpStream::from_std(accepted), Token(1));
        front.readiness.event.insert(Ready::WRITABLE);
        (front, client)
    }

    /// A file of the system's temporary directory holding `content`, named for the test.
    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("sozu-reply-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn bytes_then_a_file_region_are_sent_then_the_write_side_shut() {
        let path = temp_file("motd", b"0123456789");
        let (mut front, mut client) = pair();
        let region = FileRegion::open(&path, 2, Some(5)).unwrap();
        let mut reply = Reply::new(b"hello ".to_vec(), Some(region));
        assert_eq!(reply.run(&mut front), ReplyStatus::Wait);
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"hello 23456");
        assert_eq!(front.bytes_written, 11);
        client.shutdown(Shutdown::Write).unwrap();
        front.readiness.event.insert(Ready::READABLE);
        assert_eq!(reply.run(&mut front), ReplyStatus::Done);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_without_nbytes_is_sent_to_its_end() {
        let content: Vec<u8> = (0..3 * SENDFILE_CHUNK).map(|i| (i % 251) as u8).collect();
        let path = temp_file("big", &content);
        let (mut front, mut client) = pair();
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            client.read_to_end(&mut received).unwrap();
            received
        });
        let mut reply = Reply::new(Vec::new(), Some(FileRegion::open(&path, 0, None).unwrap()));
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(front.tcp_mut().unwrap(), Token(1), mio::Interest::WRITABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        while reply.phase == Phase::Sending {
            reply.run(&mut front);
            poll.poll(&mut events, Some(std::time::Duration::from_secs(20)))
                .unwrap();
            front.readiness.event.insert(Ready::WRITABLE);
        }
        assert!(reader.join().unwrap() == content, "the file, byte for byte");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_file_does_not_open() {
        let error = FileRegion::open(Path::new("/nonexistent/file"), 0, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let path = temp_file("small", b"x");
        let error = FileRegion::open(&path, u64::MAX, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        std::fs::remove_file(path).unwrap();
    }
}
