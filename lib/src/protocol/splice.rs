//! Linux `splice(2)` through a kernel pipe: bytes go from one socket to the other without being
//! copied into user space. Used by TCP listeners with `splice = true`, and for the rest of
//! large HTTP/1 bodies of known length (`protocol::http::splice`).
//!
//! A [`KernelPipe`] is one direction. Its capacity is what the kernel reports (`F_GETPIPE_SZ`),
//! not what was asked. `EAGAIN` when filling it has two meanings, the source socket is drained
//! or the pipe is full, and the byte count cannot tell them apart: a pipe is a ring of page
//! slots, and each piece of a socket's stream spliced in takes a whole slot, so a pipe can be
//! full with far fewer bytes than its capacity. As HAProxy does, an empty pipe that cannot
//! be filled means a drained socket; a pipe holding bytes waits for room (until some are
//! drained) and the socket is left marked readable, so no edge-triggered event is lost.
#![allow(
    unsafe_code,
    reason = "splice(2), pipe2(2) and fcntl(2) have no safe wrapper in std"
)]

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// What one splice call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spliced {
    Moved(usize),
    /// End of stream from the source socket.
    End,
    /// Filling: the source socket is drained. Draining: the sink socket takes no more.
    WouldBlock,
    /// Filling: the pipe has no room; the source socket may still hold bytes.
    Full,
    Failed(io::ErrorKind),
}

/// One direction's kernel pipe.
#[derive(Debug)]
pub struct KernelPipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    /// Bytes in the pipe now.
    pending: usize,
    /// The pipe's size in bytes, as the kernel reports it.
    capacity: usize,
    /// The last fill found no room though fewer than `capacity` bytes are pending (slots are
    /// taken by partial pages); cleared when bytes are drained.
    out_of_slots: bool,
}

impl KernelPipe {
    /// A non-blocking pipe; `capacity` asks the kernel for that size (0: its default).
    pub fn new(capacity: usize) -> io::Result<KernelPipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        if capacity > 0 {
            let requested = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
            // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; failure (above the system's
            // limit) leaves the size the pipe had.
            let _refused_or_size =
                unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, requested) };
        }
        // SAFETY: F_GETPIPE_SZ on a pipe descriptor we own reads its size.
        let size = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or_else(io::Error::last_os_error)?;
        Ok(KernelPipe {
            read_end,
            write_end,
            pending: 0,
            capacity,
            out_of_slots: false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// The pipe's size in bytes, as the kernel reports it.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// No room for more until some bytes are drained.
    pub fn is_full(&self) -> bool {
        self.out_of_slots || self.pending >= self.capacity
    }

    /// Moves bytes from the `source` socket into the pipe. `WouldBlock` means the socket is
    /// drained; `Full` that the pipe must be drained before the socket can be read further.
    pub fn fill_from(&mut self, source: RawFd) -> Spliced {
        self.fill_from_at_most(source, usize::MAX)
    }

    /// [`KernelPipe::fill_from`], taking at most `limit` bytes from the socket: the bytes
    /// after them (say, the next message) stay in the socket. A `limit` of 0 reads nothing
    /// (`Full`): a splice of 0 bytes would read as the end of the stream.
    pub fn fill_from_at_most(&mut self, source: RawFd, limit: usize) -> Spliced {
        if self.is_full() || limit == 0 {
            return Spliced::Full;
        }
        let room = self.capacity.saturating_sub(self.pending).min(limit);
        match splice(source, self.write_end.as_raw_fd(), room) {
            Spliced::Moved(count) => {
                self.pending = self.pending.saturating_add(count);
                Spliced::Moved(count)
            }
            // Only an empty pipe proves the socket drained; one holding bytes may be out of
            // slots.
            Spliced::WouldBlock if self.pending > 0 => {
                self.out_of_slots = true;
                Spliced::Full
            }
            other => other,
        }
    }

    /// Moves at most `limit` bytes from the pipe to the `sink` socket.
    pub fn drain_into(&mut self, sink: RawFd, limit: usize) -> Spliced {
        if self.pending == 0 {
            return Spliced::WouldBlock;
        }
        match splice(self.read_end.as_raw_fd(), sink, self.pending.min(limit)) {
            Spliced::Moved(count) => {
                self.pending = self.pending.saturating_sub(count);
                self.out_of_slots = false;
                Spliced::Moved(count)
            }
            Spliced::End => Spliced::Failed(io::ErrorKind::WriteZero),
            other => other,
        }
    }
}

/// Sets `TCP_NOTSENT_LOWAT` on a TCP socket: a write takes bytes only while fewer than `bytes`
/// of what was written wait for TCP to send them, and the socket reports itself writable once
/// fewer than half that wait. What is written then leaves from the writer's own call, not
/// later from the peer's acknowledgements.
pub fn set_notsent_lowat(socket: RawFd, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor the caller keeps open, reading one c_int from a
    // valid reference of that size.
    let result = unsafe {
        libc::setsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_ref(&value).cast(),
            INT_LENGTH,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The size of a `c_int` socket option.
const INT_LENGTH: libc::socklen_t = std::mem::size_of::<libc::c_int>() as libc::socklen_t;

/// The `TCP_NOTSENT_LOWAT` of a TCP socket.
#[cfg(test)]
pub fn notsent_lowat(socket: RawFd) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    let mut length = INT_LENGTH;
    // SAFETY: getsockopt on an open descriptor, writing at most `length` bytes into `value`.
    let result = unsafe {
        libc::getsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel keeps it unsigned: no limit reads as `u32::MAX`.
    Ok(u32::from_ne_bytes(value.to_ne_bytes()))
}

fn splice(from: RawFd, to: RawFd, length: usize) -> Spliced {
    loop {
        // SAFETY: both descriptors are open for the duration of the call (owned by the caller's
        // sockets and pipe); null offsets are required for sockets and pipes.
        let result = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                length,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        return match usize::try_from(result) {
            Ok(0) => Spliced::End,
            Ok(count) => Spliced::Moved(count),
            Err(_) => {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => Spliced::WouldBlock,
                    kind => Spliced::Failed(kind),
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    #[test]
    fn bytes_cross_from_socket_to_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (source, _) = listener.accept().unwrap();
        let sink_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink = TcpStream::connect(sink_listener.local_addr().unwrap()).unwrap();
        let (mut reader, _) = sink_listener.accept().unwrap();
        source.set_nonblocking(true).unwrap();
        sink.set_nonblocking(true).unwrap();

        let mut pipe = KernelPipe::new(0).unwrap();
        assert_eq!(
            pipe.fill_from(source.as_raw_fd()),
            Spliced::WouldBlock,
            "drained"
        );
        writer.write_all(b"through the kernel").unwrap();
        let mut moved = 0;
        while moved < 18 {
            if let Spliced::Moved(count) = pipe.fill_from(source.as_raw_fd()) {
                moved += count;
            }
        }
        assert!(!pipe.is_empty());
        assert_eq!(
            pipe.drain_into(sink.as_raw_fd(), usize::MAX),
            Spliced::Moved(18)
        );
        assert!(pipe.is_empty());
        let mut received = [0u8; 18];
        reader.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"through the kernel");
        drop(writer);
        loop {
            match pipe.fill_from(source.as_raw_fd()) {
                Spliced::End => break,
                Spliced::WouldBlock => continue,
                other => panic!("{other:?}"),
            }
        }
    }

    /// What the kernel says the pipe's size is.
    fn kernel_size(pipe: &KernelPipe) -> usize {
        // SAFETY: F_GETPIPE_SZ on a descriptor the pipe owns.
        let size = unsafe { libc::fcntl(pipe.write_end.as_raw_fd(), libc::F_GETPIPE_SZ) };
        usize::try_from(size).unwrap()
    }

    #[test]
    fn capacity_is_what_the_kernel_reports() {
        // A page is the least a pipe holds, sizes round up to a power of two pages, and a size
        // above the system's limit may be refused: the pipe keeps what it had.
        for requested in [0, 1, 4096, 5000, 1 << 20, usize::MAX] {
            let pipe = KernelPipe::new(requested).unwrap();
            assert_eq!(pipe.capacity, kernel_size(&pipe), "asked for {requested}");
            assert!(pipe.capacity >= requested.min(4096));
        }
    }
}
