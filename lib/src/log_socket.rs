//! Sockets that take log lines, for `log_target` and `access_logs_target` as Sōzu has them:
//! `udp://IP:PORT` and `unix://PATH` (a Unix datagram socket) get one datagram per line,
//! `tcp://IP:PORT` a stream of lines.
//!
//! Sockets are non-blocking: a sink that cannot take more loses lines rather than stall the
//! process that logs, which is serving traffic.

use std::{
    io::{self, Write},
    net::{TcpStream, UdpSocket},
    os::unix::net::UnixDatagram,
    time::Duration,
};

use sozu_command_lib::config::LogTarget;

/// How long connecting to a TCP log target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connected socket that takes log lines.
#[derive(Debug)]
pub enum LogSocket {
    /// A UDP socket connected to the target: one datagram per write.
    Udp(UdpSocket),
    /// A TCP connection to the target: lines are a byte stream.
    Tcp(TcpStream),
    /// A Unix datagram socket connected to the target's path: one datagram per write.
    Unix(UnixDatagram),
}

impl LogSocket {
    /// Connects to `target`, or `None` when it is not a socket (stdout, a file).
    pub fn connect(target: &LogTarget) -> io::Result<Option<LogSocket>> {
        let socket = match target {
            LogTarget::Stdout | LogTarget::File(_) => return Ok(None),
            LogTarget::Udp(address) => {
                let socket = UdpSocket::bind(if address.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                })?;
                socket.connect(address)?;
                LogSocket::Udp(socket)
            }
            LogTarget::Tcp(address) => {
                LogSocket::Tcp(TcpStream::connect_timeout(address, CONNECT_TIMEOUT)?)
            }
            LogTarget::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(path)?;
                LogSocket::Unix(socket)
            }
        };
        match &socket {
            LogSocket::Udp(socket) => socket.set_nonblocking(true)?,
            LogSocket::Tcp(stream) => stream.set_nonblocking(true)?,
            LogSocket::Unix(socket) => socket.set_nonblocking(true)?,
        }
        Ok(Some(socket))
    }

    /// Sends `lines`, each ending with a newline: as they are on a stream, one datagram per
    /// line (without its newline) on a datagram socket.
    pub fn send_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            LogSocket::Tcp(stream) => stream.write_all(lines),
            LogSocket::Udp(socket) => each_line(lines, |line| socket.send(line)),
            LogSocket::Unix(socket) => each_line(lines, |line| socket.send(line)),
        }
    }
}

/// Sends each non-empty line of `lines` with `send`; the first error stops.
fn each_line(lines: &[u8], mut send: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
    for line in lines
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        send(line)?;
    }
    Ok(())
}

/// A logger writes each record in one call: the record is sent as its own line or datagram.
impl Write for LogSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_lines(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read, net::TcpListener};

    use super::*;

    #[test]
    fn datagram_targets_get_a_datagram_per_line() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = LogTarget::Udp(receiver.local_addr().unwrap());
        let mut socket = LogSocket::connect(&target).unwrap().unwrap();
        socket.send_lines(b"first\nsecond\n").unwrap();
        let mut buf = [0; 64];
        let count = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..count], b"first");
        let count = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..count], b"second");

        let path =
            std::env::temp_dir().join(format!("sozu-log-socket-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let mut socket = LogSocket::connect(&LogTarget::Unix(path.clone()))
            .unwrap()
            .unwrap();
        socket.write_all(b"a line\n").unwrap();
        let count = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..count], b"a line");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_tcp_target_gets_the_lines_as_a_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = LogTarget::Tcp(listener.local_addr().unwrap());
        let mut socket = LogSocket::connect(&target).unwrap().unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        socket.send_lines(b"one\ntwo\n").unwrap();
        drop(socket);
        let mut text = String::new();
        accepted.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one\ntwo\n");
    }

    #[test]
    fn stdout_and_files_are_no_socket_and_an_unreachable_target_is_an_error() {
        assert!(LogSocket::connect(&LogTarget::Stdout).unwrap().is_none());
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        assert!(LogSocket::connect(&LogTarget::Tcp(address)).is_err());
    }
}
