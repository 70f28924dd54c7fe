//! Linux `splice(2)` through a kernel pipe: bytes go from one socket to the other without being
//! copied into user space. Used by TCP listeners with `splice = true`.
//!
//! A [`KernelPipe`] is one direction. It counts what it holds, which tells apart the two
//! meanings of `EAGAIN` when filling it (the source socket is drained, or the pipe is full).
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
    WouldBlock,
    Failed(io::ErrorKind),
}

/// One direction's kernel pipe.
#[derive(Debug)]
pub struct KernelPipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    /// Bytes in the pipe now.
    pending: usize,
    capacity: usize,
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
        let mut pipe = KernelPipe {
            read_end,
            write_end,
            pending: 0,
            capacity: 65_536,
        };
        if capacity > 0 {
            let requested = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
            // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; failure leaves the default.
            let size =
                unsafe { libc::fcntl(pipe.write_end.as_raw_fd(), libc::F_SETPIPE_SZ, requested) };
            if let Ok(size) = usize::try_from(size) {
                pipe.capacity = size;
            }
        }
        Ok(pipe)
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    pub fn is_full(&self) -> bool {
        self.pending >= self.capacity
    }

    /// Moves bytes from the `source` socket into the pipe.
    pub fn fill_from(&mut self, source: RawFd) -> Spliced {
        let room = self.capacity.saturating_sub(self.pending);
        if room == 0 {
            return Spliced::WouldBlock;
        }
        match splice(source, self.write_end.as_raw_fd(), room) {
            Spliced::Moved(count) => {
                self.pending += count;
                Spliced::Moved(count)
            }
            other => other,
        }
    }

    /// Moves bytes from the pipe to the `sink` socket.
    pub fn drain_into(&mut self, sink: RawFd) -> Spliced {
        if self.pending == 0 {
            return Spliced::WouldBlock;
        }
        match splice(self.read_end.as_raw_fd(), sink, self.pending) {
            Spliced::Moved(count) => {
                self.pending = self.pending.saturating_sub(count);
                Spliced::Moved(count)
            }
            Spliced::End => Spliced::Failed(io::ErrorKind::WriteZero),
            other => other,
        }
    }
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
        assert_eq!(pipe.fill_from(source.as_raw_fd()), Spliced::WouldBlock);
        writer.write_all(b"through the kernel").unwrap();
        let mut moved = 0;
        while moved < 18 {
            if let Spliced::Moved(count) = pipe.fill_from(source.as_raw_fd()) {
                moved += count;
            }
        }
        assert!(!pipe.is_empty());
        assert_eq!(pipe.drain_into(sink.as_raw_fd()), Spliced::Moved(18));
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
}
