//! Passing file descriptors (listener sockets) between processes over a Unix socket, with
//! `SCM_RIGHTS`.
//!
//! The main process opens the listeners and hands them to its workers, and to a new main during
//! a hot upgrade, so that no connection is refused while processes change. This module moves
//! the descriptors and a few bytes describing them; what they mean is the caller's business,
//! except for [`Listeners`], the list of listener sockets with their addresses.
//!
//! Wire format of one message on the (blocking, stream) socket:
//!
//! 1. a header: [`MAGIC`], then the number of descriptors and the number of data bytes, each a
//!    little-endian `u32`;
//! 2. the data bytes;
//! 3. the descriptors, in chunks of at most [`FDS_PER_CHUNK`], each chunk attached to one byte
//!    [`CHUNK_MARKER`] (`SCM_RIGHTS` needs at least one byte of data to ride on, and the kernel
//!    limits the descriptors of one `sendmsg`).
//!
//! After an error the framing of the socket is lost: close it.
//!
//! This is the only module of the crate with `unsafe` code: the `sendmsg`/`recvmsg` calls and
//! their control buffers.
#![allow(
    unsafe_code,
    reason = "sendmsg and recvmsg with SCM_RIGHTS control messages have no safe std API"
)]

use std::{
    io::{self, Read, Write},
    mem,
    net::SocketAddr,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    ptr,
};

use serde::{Deserialize, Serialize};

/// Starts every message, so that a peer speaking another protocol is detected at once.
pub const MAGIC: [u8; 4] = *b"SZFD";
/// The byte each chunk of descriptors is attached to.
pub const CHUNK_MARKER: u8 = 0;
/// Descriptors sent per `sendmsg`, below Linux's `SCM_MAX_FD` (253).
pub const FDS_PER_CHUNK: usize = 64;
/// Most listeners [`ScmSocket::receive_listeners`] accepts in one message.
pub const MAX_LISTENERS: usize = 4096;
/// Most bytes of listener addresses [`ScmSocket::receive_listeners`] accepts in one message.
pub const MAX_LISTENERS_DATA_LEN: usize = 1 << 20;

const HEADER_LEN: usize = MAGIC.len() + 2 * size_of::<u32>();
const FD_SIZE: usize = size_of::<RawFd>();

/// What can go wrong passing descriptors. After any of them the socket's framing is lost: close it.
#[derive(Debug, thiserror::Error)]
pub enum ScmError {
    /// The socket could not be switched to blocking mode.
    #[error("cannot set the fd socket to blocking mode")]
    Socket(#[source] io::Error),
    /// `sendmsg` failed.
    #[error("cannot send on the fd socket")]
    Send(#[source] io::Error),
    /// `recvmsg` failed.
    #[error("cannot receive on the fd socket")]
    Receive(#[source] io::Error),
    /// The peer closed the socket before a whole message arrived.
    #[error("the peer closed the fd socket")]
    Closed,
    /// The message does not start with [`MAGIC`]: the peer does not speak this format.
    #[error("message starts with {found:?} instead of the fd-passing magic")]
    BadMagic {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The header announces more data bytes than the receiver accepts.
    #[error("message carries {size} data bytes, more than the maximum of {max}")]
    DataTooLarge {
        /// The data bytes announced.
        size: usize,
        /// The most the receiver accepts.
        max: usize,
    },
    /// The header announces more descriptors than the receiver accepts.
    #[error("message carries {count} file descriptors, more than the maximum of {max}")]
    TooManyFds {
        /// The descriptors announced.
        count: usize,
        /// The most the receiver accepts.
        max: usize,
    },
    /// A descriptor chunk did not start with [`CHUNK_MARKER`].
    #[error("expected a descriptor chunk marker, got byte {found}")]
    BadChunkMarker {
        /// The byte received instead.
        found: u8,
    },
    /// A descriptor chunk arrived without any descriptor.
    #[error("a descriptor chunk carried no file descriptor")]
    EmptyChunk,
    /// The chunks carried another number of descriptors than the header announced.
    #[error("message announced {announced} file descriptors but {received} arrived")]
    FdCountMismatch {
        /// The descriptors announced.
        announced: usize,
        /// The descriptors that arrived.
        received: usize,
    },
    /// The kernel cut the control data: a chunk carried more descriptors than the receiver's buffer
    /// holds.
    #[error("control data was truncated: a chunk carried too many file descriptors")]
    ControlTruncated,
    /// The listener addresses could not be written as JSON.
    #[error("cannot serialise the listener addresses")]
    SerializeListeners(#[source] serde_json::Error),
    /// The data bytes are not the JSON list of listener addresses.
    #[error("invalid listener addresses")]
    InvalidListeners(#[source] serde_json::Error),
    /// The addresses and the descriptors received do not pair up.
    #[error("message lists {addresses} listener addresses but carries {fds} file descriptors")]
    ListenerCountMismatch {
        /// The addresses listed.
        addresses: usize,
        /// The descriptors received.
        fds: usize,
    },
}

/// A blocking Unix stream socket that carries file descriptors along with bytes.
#[derive(Debug)]
pub struct ScmSocket {
    stream: UnixStream,
}

impl AsFd for ScmSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl ScmSocket {
    /// Wraps `stream` and puts it in blocking mode.
    pub fn new(stream: UnixStream) -> Result<Self, ScmError> {
        stream.set_nonblocking(false).map_err(ScmError::Socket)?;
        Ok(Self { stream })
    }

    /// A connected pair, one end for each process (or thread).
    pub fn pair() -> Result<(Self, Self), ScmError> {
        let (first, second) = UnixStream::pair().map_err(ScmError::Socket)?;
        Ok((Self::new(first)?, Self::new(second)?))
    }

    /// Whether a message (or the peer's close) waits to be received, without waiting: a
    /// process that must not block checks this before [`ScmSocket::receive_fds`], when the
    /// peer sends each message whole before telling it to look.
    pub fn has_pending(&self) -> Result<bool, ScmError> {
        let mut pollfd = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, its count is 1, and a zero timeout never blocks.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        if ready < 0 {
            return Err(ScmError::Receive(io::Error::last_os_error()));
        }
        Ok(ready > 0 && pollfd.revents != 0)
    }

    /// Sends `data` and duplicates of `fds` in one message. The caller keeps its descriptors.
    pub fn send_fds(&self, fds: &[BorrowedFd<'_>], data: &[u8]) -> Result<(), ScmError> {
        let too_many = || ScmError::TooManyFds {
            count: fds.len(),
            max: u32::MAX as usize,
        };
        let fd_count = u32::try_from(fds.len()).map_err(|_| too_many())?;
        let data_len = u32::try_from(data.len()).map_err(|_| ScmError::DataTooLarge {
            size: data.len(),
            max: u32::MAX as usize,
        })?;
        let mut message = Vec::with_capacity(HEADER_LEN + data.len());
        message.extend_from_slice(&MAGIC);
        message.extend_from_slice(&fd_count.to_le_bytes());
        message.extend_from_slice(&data_len.to_le_bytes());
        message.extend_from_slice(data);
        (&self.stream).write_all(&message).map_err(ScmError::Send)?;
        fds.chunks(FDS_PER_CHUNK)
            .try_for_each(|chunk| self.send_chunk(chunk))
    }

    /// Receives one message: its descriptors (close-on-exec) and its data. A message with more
    /// than `max_fds` descriptors or `max_data_len` data bytes is refused before anything is
    /// allocated for it.
    pub fn receive_fds(
        &self,
        max_fds: usize,
        max_data_len: usize,
    ) -> Result<(Vec<OwnedFd>, Vec<u8>), ScmError> {
        let mut header = [0; HEADER_LEN];
        self.read_exact(&mut header)?;
        let (magic, counts) = header.split_at(MAGIC.len());
        let (fd_count, data_len) = counts.split_at(size_of::<u32>());
        if magic != MAGIC {
            let mut found = [0; 4];
            found.copy_from_slice(magic);
            return Err(ScmError::BadMagic { found });
        }
        let fd_count = decode_len(fd_count);
        let data_len = decode_len(data_len);
        if fd_count > max_fds {
            return Err(ScmError::TooManyFds {
                count: fd_count,
                max: max_fds,
            });
        }
        if data_len > max_data_len {
            return Err(ScmError::DataTooLarge {
                size: data_len,
                max: max_data_len,
            });
        }
        let mut data = vec![0; data_len];
        self.read_exact(&mut data)?;
        let mut fds = Vec::with_capacity(fd_count);
        while fds.len() < fd_count {
            self.receive_chunk(&mut fds)?;
        }
        if fds.len() != fd_count {
            return Err(ScmError::FdCountMismatch {
                announced: fd_count,
                received: fds.len(),
            });
        }
        Ok((fds, data))
    }

    /// Sends listener sockets with their addresses: the addresses as JSON in the data, the
    /// descriptors in the order http, https, tcp.
    pub fn send_listeners<Fd: AsFd>(&self, listeners: &Listeners<Fd>) -> Result<(), ScmError> {
        let addresses = ListenerAddresses {
            http: listeners.http.iter().map(|(addr, _)| *addr).collect(),
            https: listeners.https.iter().map(|(addr, _)| *addr).collect(),
            tcp: listeners.tcp.iter().map(|(addr, _)| *addr).collect(),
        };
        let data = serde_json::to_vec(&addresses).map_err(ScmError::SerializeListeners)?;
        let fds: Vec<BorrowedFd<'_>> = [&listeners.http, &listeners.https, &listeners.tcp]
            .into_iter()
            .flatten()
            .map(|(_, fd)| fd.as_fd())
            .collect();
        self.send_fds(&fds, &data)
    }

    /// Receives what [`ScmSocket::send_listeners`] sent, at most [`MAX_LISTENERS`] listeners.
    pub fn receive_listeners(&self) -> Result<Listeners<OwnedFd>, ScmError> {
        let (fds, data) = self.receive_fds(MAX_LISTENERS, MAX_LISTENERS_DATA_LEN)?;
        let addresses: ListenerAddresses =
            serde_json::from_slice(&data).map_err(ScmError::InvalidListeners)?;
        let count = addresses.http.len() + addresses.https.len() + addresses.tcp.len();
        if count != fds.len() {
            return Err(ScmError::ListenerCountMismatch {
                addresses: count,
                fds: fds.len(),
            });
        }
        let mut fds = fds.into_iter();
        let mut take = |addrs: Vec<SocketAddr>| -> Vec<(SocketAddr, OwnedFd)> {
            addrs.into_iter().zip(fds.by_ref()).collect()
        };
        Ok(Listeners {
            http: take(addresses.http),
            https: take(addresses.https),
            tcp: take(addresses.tcp),
        })
    }

    /// Reads exactly `buf.len()` bytes; the end of stream is [`ScmError::Closed`]. Descriptors a
    /// peer attached to these bytes are closed by the kernel.
    fn read_exact(&self, buf: &mut [u8]) -> Result<(), ScmError> {
        (&self.stream).read_exact(buf).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                ScmError::Closed
            } else {
                ScmError::Receive(error)
            }
        })
    }

    /// Sends one [`CHUNK_MARKER`] byte carrying `fds` (at most [`FDS_PER_CHUNK`]).
    fn send_chunk(&self, fds: &[BorrowedFd<'_>]) -> Result<(), ScmError> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let fds_len = raw.len() * FD_SIZE;
        let marker = [CHUNK_MARKER];
        let mut iov = libc::iovec {
            iov_base: marker.as_ptr().cast_mut().cast(),
            iov_len: marker.len(),
        };
        let mut control = ControlBuffer::for_fds(raw.len());
        // SAFETY: `msghdr` is a plain C struct for which all zeroes is a valid value (no
        // buffers, no flags).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr();
        msg.msg_controllen = control.len() as _;
        // SAFETY: `msg_control` points at `control`, aligned for `cmsghdr` and
        // `CMSG_SPACE(fds_len)` bytes long, so the first header is non-null and it and its
        // `fds_len` data bytes are in bounds. The copy reads `fds_len` bytes from `raw`, which
        // holds exactly that many, into that data area, which does not overlap it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len as u32) as _;
            ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), fds_len);
        }
        loop {
            // SAFETY: `msg` points at `iov`, `marker` and `control`, all alive and unmoved
            // for the duration of the call; the kernel only reads them.
            let sent = unsafe { libc::sendmsg(self.stream.as_raw_fd(), &msg, 0) };
            match sent {
                1 => return Ok(()),
                -1 => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(ScmError::Send(error));
                    }
                }
                _ => return Err(ScmError::Send(io::ErrorKind::WriteZero.into())),
            }
        }
    }

    /// Receives one chunk of descriptors and appends them to `fds`, so that they are owned (and
    /// closed on drop) whatever goes wrong next.
    fn receive_chunk(&self, fds: &mut Vec<OwnedFd>) -> Result<(), ScmError> {
        let mut marker = [0xff_u8];
        let mut iov = libc::iovec {
            iov_base: marker.as_mut_ptr().cast(),
            iov_len: marker.len(),
        };
        let mut control = ControlBuffer::for_fds(FDS_PER_CHUNK);
        // SAFETY: `msghdr` is a plain C struct for which all zeroes is a valid value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr();
        msg.msg_controllen = control.len() as _;
        let received = loop {
            // SAFETY: `msg` points at `iov`, `marker` and `control`, all alive, unmoved and
            // writable for the duration of the call; the kernel writes at most `iov_len` and
            // `msg_controllen` bytes into them.
            let received =
                unsafe { libc::recvmsg(self.stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
            if received >= 0 {
                break received;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(ScmError::Receive(error));
            }
        };
        let before = fds.len();
        // SAFETY: after `recvmsg`, `msg_control`/`msg_controllen` describe the control messages
        // the kernel wrote into `control`; `CMSG_FIRSTHDR`/`CMSG_NXTHDR` stay within them and
        // return null at the end. An `SCM_RIGHTS` message's data holds `cmsg_len - CMSG_LEN(0)`
        // bytes of descriptors, read unaligned. Each is a new descriptor the kernel installed
        // for this process and nothing else owns, so `OwnedFd` may take it.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let data_len =
                        ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    for index in 0..data_len / FD_SIZE {
                        let fd = ptr::read_unaligned(data.add(index));
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if received == 0 {
            return Err(ScmError::Closed);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(ScmError::ControlTruncated);
        }
        if marker[0] != CHUNK_MARKER {
            return Err(ScmError::BadChunkMarker { found: marker[0] });
        }
        if fds.len() == before {
            return Err(ScmError::EmptyChunk);
        }
        Ok(())
    }
}

/// Listener sockets of each kind, each with the address it is bound to.
///
/// `Fd` is what holds the socket: anything [`AsFd`] to send (`BorrowedFd`, `TcpListener`,
/// `OwnedFd`), and [`OwnedFd`] once received.
#[derive(Debug)]
pub struct Listeners<Fd> {
    /// HTTP listeners.
    pub http: Vec<(SocketAddr, Fd)>,
    /// HTTPS listeners.
    pub https: Vec<(SocketAddr, Fd)>,
    /// TCP listeners.
    pub tcp: Vec<(SocketAddr, Fd)>,
}

impl<Fd> Default for Listeners<Fd> {
    fn default() -> Self {
        Self {
            http: Vec::new(),
            https: Vec::new(),
            tcp: Vec::new(),
        }
    }
}

/// The data part of a listeners message.
#[derive(Serialize, Deserialize)]
struct ListenerAddresses {
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

/// A control message buffer for `count` descriptors, aligned for `cmsghdr`.
struct ControlBuffer {
    /// `u64` words give the alignment of `cmsghdr` (that of `size_t`).
    words: Vec<u64>,
    len: usize,
}

impl ControlBuffer {
    fn for_fds(count: usize) -> Self {
        // SAFETY: `CMSG_SPACE` only computes a size from its argument.
        let len = unsafe { libc::CMSG_SPACE((count * FD_SIZE) as u32) } as usize;
        Self {
            words: vec![0; len.div_ceil(size_of::<u64>())],
            len,
        }
    }

    fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.words.as_mut_ptr().cast()
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Decodes a little-endian `u32` length from the header.
fn decode_len(bytes: &[u8]) -> usize {
    let mut word = [0; size_of::<u32>()];
    word.copy_from_slice(bytes);
    usize::try_from(u32::from_le_bytes(word)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        net::{TcpListener, TcpStream},
        os::fd::AsFd,
    };

    use super::*;

    fn listener() -> (SocketAddr, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        (listener.local_addr().unwrap(), listener)
    }

    /// A receiving `ScmSocket` and the raw stream its peer writes on.
    fn receiver_and_raw() -> (ScmSocket, UnixStream) {
        let (raw, other) = UnixStream::pair().unwrap();
        (ScmSocket::new(other).unwrap(), raw)
    }

    fn header(fd_count: u32, data_len: u32) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&fd_count.to_le_bytes());
        header.extend_from_slice(&data_len.to_le_bytes());
        header
    }

    #[test]
    fn received_listener_accepts_connections_made_to_the_original_address() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        let (addr, original) = listener();
        sender.send_fds(&[original.as_fd()], b"hello").unwrap();
        drop(original);

        let (fds, data) = receiver.receive_fds(4, 64).unwrap();
        assert_eq!(data, b"hello");
        let [fd] = <[OwnedFd; 1]>::try_from(fds).unwrap();
        let received = TcpListener::from(fd);
        assert_eq!(received.local_addr().unwrap(), addr);
        let client = TcpStream::connect(addr).unwrap();
        let (_, peer) = received.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    #[test]
    fn pending_shows_a_sent_message_and_the_peer_closing() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        assert!(!receiver.has_pending().unwrap());
        let (_, original) = listener();
        sender.send_fds(&[original.as_fd()], b"x").unwrap();
        assert!(receiver.has_pending().unwrap());
        receiver.receive_fds(1, 1).unwrap();
        assert!(!receiver.has_pending().unwrap());
        drop(sender);
        assert!(receiver.has_pending().unwrap());
    }

    #[test]
    fn received_fds_are_close_on_exec() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        let (_, original) = listener();
        sender.send_fds(&[original.as_fd()], b"").unwrap();
        let (fds, _) = receiver.receive_fds(1, 0).unwrap();
        // SAFETY: F_GETFD only reads the flags of a descriptor `fds[0]` owns.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn many_fds_are_chunked_and_all_arrive_in_order() {
        for count in [FDS_PER_CHUNK, 3 * FDS_PER_CHUNK + 5] {
            let (sender, receiver) = ScmSocket::pair().unwrap();
            let listeners: Vec<_> = (0..count).map(|_| listener()).collect();
            let fds: Vec<_> = listeners.iter().map(|(_, l)| l.as_fd()).collect();
            sender.send_fds(&fds, b"many").unwrap();

            let (received, data) = receiver.receive_fds(1024, 64).unwrap();
            assert_eq!(data, b"many");
            assert_eq!(received.len(), count);
            for ((addr, _), fd) in listeners.iter().zip(received) {
                assert_eq!(TcpListener::from(fd).local_addr().unwrap(), *addr);
            }
        }
    }

    #[test]
    fn listeners_round_trip_with_their_addresses() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        let http = listener();
        let https = listener();
        let tcp = [listener(), listener()];
        let listeners = Listeners {
            http: vec![(http.0, http.1.as_fd())],
            https: vec![(https.0, https.1.as_fd())],
            tcp: tcp.iter().map(|(addr, l)| (*addr, l.as_fd())).collect(),
        };
        sender.send_listeners(&listeners).unwrap();

        let received = receiver.receive_listeners().unwrap();
        let addresses = |list: &[(SocketAddr, OwnedFd)]| -> Vec<SocketAddr> {
            list.iter().map(|(addr, _)| *addr).collect()
        };
        assert_eq!(addresses(&received.http), vec![http.0]);
        assert_eq!(addresses(&received.https), vec![https.0]);
        assert_eq!(addresses(&received.tcp), vec![tcp[0].0, tcp[1].0]);
        for (addr, fd) in received.tcp {
            let listener = TcpListener::from(fd);
            assert_eq!(listener.local_addr().unwrap(), addr);
            let _client = TcpStream::connect(addr).unwrap();
            listener.accept().unwrap();
        }
    }

    #[test]
    fn empty_listeners_round_trip() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        sender
            .send_listeners(&Listeners::<OwnedFd>::default())
            .unwrap();
        let received = receiver.receive_listeners().unwrap();
        assert!(received.http.is_empty() && received.https.is_empty() && received.tcp.is_empty());
    }

    #[test]
    fn garbage_is_refused_with_bad_magic() {
        let (receiver, mut raw) = receiver_and_raw();
        raw.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let error = receiver.receive_fds(4, 64).unwrap_err();
        assert!(
            matches!(error, ScmError::BadMagic { found } if &found == b"GET "),
            "{error:?}"
        );
    }

    #[test]
    fn oversized_announcements_are_refused() {
        let (receiver, mut raw) = receiver_and_raw();
        raw.write_all(&header(0, u32::MAX)).unwrap();
        let error = receiver.receive_fds(4, 64).unwrap_err();
        assert!(
            matches!(error, ScmError::DataTooLarge { max: 64, .. }),
            "{error:?}"
        );

        let (receiver, mut raw) = receiver_and_raw();
        raw.write_all(&header(5, 0)).unwrap();
        let error = receiver.receive_fds(4, 64).unwrap_err();
        assert!(
            matches!(error, ScmError::TooManyFds { count: 5, max: 4 }),
            "{error:?}"
        );
    }

    #[test]
    fn chunk_without_fds_is_refused() {
        let (receiver, mut raw) = receiver_and_raw();
        raw.write_all(&header(1, 0)).unwrap();
        raw.write_all(&[CHUNK_MARKER]).unwrap();
        let error = receiver.receive_fds(4, 64).unwrap_err();
        assert!(matches!(error, ScmError::EmptyChunk), "{error:?}");
    }

    #[test]
    fn chunk_with_more_fds_than_the_receiver_takes_is_refused() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        let listeners: Vec<_> = (0..FDS_PER_CHUNK + 1).map(|_| listener()).collect();
        let fds: Vec<_> = listeners.iter().map(|(_, l)| l.as_fd()).collect();
        (&sender.stream)
            .write_all(&header(fds.len() as u32, 0))
            .unwrap();
        sender.send_chunk(&fds).unwrap();
        let error = receiver.receive_fds(1024, 64).unwrap_err();
        assert!(matches!(error, ScmError::ControlTruncated), "{error:?}");
    }

    #[test]
    fn peer_close_is_reported() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        drop(sender);
        assert!(matches!(receiver.receive_fds(4, 64), Err(ScmError::Closed)));

        let (receiver, mut raw) = receiver_and_raw();
        raw.write_all(&header(2, 0)).unwrap();
        drop(raw);
        assert!(matches!(receiver.receive_fds(4, 64), Err(ScmError::Closed)));
    }

    #[test]
    fn listener_list_that_does_not_match_the_fds_is_refused() {
        let (sender, receiver) = ScmSocket::pair().unwrap();
        let (addr, listener) = listener();
        let data = format!(r#"{{"http":["{addr}","{addr}"],"https":[],"tcp":[]}}"#);
        sender
            .send_fds(&[listener.as_fd()], data.as_bytes())
            .unwrap();
        let error = receiver.receive_listeners().unwrap_err();
        assert!(
            matches!(
                error,
                ScmError::ListenerCountMismatch {
                    addresses: 2,
                    fds: 1
                }
            ),
            "{error:?}"
        );

        sender.send_fds(&[], b"{not json").unwrap();
        let error = receiver.receive_listeners().unwrap_err();
        assert!(matches!(error, ScmError::InvalidListeners(_)), "{error:?}");
    }
}
