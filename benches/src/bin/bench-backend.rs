//! A minimal HTTP/1.1 keep-alive backend for the load benchmark's `faults` scenario
//! (benches/load/faults.sh, `FAULTS_BACKEND=light`): one thread, non-blocking sockets on epoll
//! (mio), every request answered `200` with the token as its body.
//!
//! It reads a connection's bytes, finds each complete request head (up to `\r\n\r\n`), and
//! writes the answers of all the requests of one read in ONE write, so that pipelined requests
//! cost one system call per read and per write, not one write per response. It knows only
//! `GET … HTTP/1.1` without a body: any other method or version, a `Content-Length` or
//! `Transfer-Encoding` header, or a head longer than its buffer closes the connection.
//! `Connection: close` closes it once the answers are written. It reads nothing before a
//! pending answer is written, so a client that does not read cannot grow its memory.
//!
//!     bench-backend PORT TOKEN     # listens on 127.0.0.1:PORT

use std::{
    io::{self, ErrorKind, Read, Write},
    net::SocketAddr,
    process::ExitCode,
};

use mio::{
    Events, Interest, Poll, Token,
    net::{TcpListener, TcpStream},
};
use slab::Slab;

/// Bytes of a connection's input buffer: the longest request head accepted.
const INPUT_SIZE: usize = 16 * 1024;
/// The listener's token; connections are `Token(slab key + 1)`.
const LISTENER: Token = Token(0);

/// What the start of a connection's unread input holds.
#[derive(Debug, PartialEq)]
enum Head {
    /// A whole request head of this many bytes, to be answered; `close` if it asks to close.
    Complete { length: usize, close: bool },
    /// No end of head yet: more bytes are needed.
    Partial,
}

/// Why a request is refused (its connection is then closed).
#[derive(Debug, PartialEq)]
enum Refused {
    /// Not `GET … HTTP/1.1`.
    RequestLine,
    /// A body announced by `Content-Length` or `Transfer-Encoding`.
    Body,
}

/// Reads the request head at the start of `input`.
fn parse_head(input: &[u8]) -> Result<Head, Refused> {
    let Some(end) = input.windows(4).position(|window| window == b"\r\n\r\n") else {
        return Ok(Head::Partial);
    };
    let mut lines = input[..end].split(|&byte| byte == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if !request_line.starts_with(b"GET ") || !request_line.ends_with(b" HTTP/1.1\r") {
        return Err(Refused::RequestLine);
    }
    let mut close = false;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &line[line.len()..]),
        };
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            return Err(Refused::Body);
        }
        if name.eq_ignore_ascii_case(b"connection")
            && value.trim_ascii().eq_ignore_ascii_case(b"close")
        {
            close = true;
        }
    }
    Ok(Head::Complete {
        length: end + 4,
        close,
    })
}

/// One client connection.
struct Connection {
    stream: TcpStream,
    input: Box<[u8]>,
    /// Bytes of `input` read and not yet answered.
    filled: usize,
    /// Answers not yet written, from `written` on.
    output: Vec<u8>,
    written: usize,
    /// A request asked to close: close once `output` is written.
    is_closing: bool,
}

/// What to do with a connection after its event.
#[derive(Debug, PartialEq)]
enum Next {
    /// Wait for its next event.
    Wait,
    /// Close it.
    Close,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        Connection {
            stream,
            input: vec![0; INPUT_SIZE].into_boxed_slice(),
            filled: 0,
            output: Vec::new(),
            written: 0,
            is_closing: false,
        }
    }

    /// Answers the complete requests of `input[..filled]` into `output` (one response each)
    /// and keeps the bytes of an incomplete one at the start of `input`.
    fn answer(&mut self, response: &[u8]) -> Result<(), Refused> {
        let mut start = 0;
        while !self.is_closing {
            match parse_head(&self.input[start..self.filled])? {
                Head::Partial => break,
                Head::Complete { length, close } => {
                    self.output.extend_from_slice(response);
                    start += length;
                    self.is_closing = close;
                }
            }
        }
        self.input.copy_within(start..self.filled, 0);
        self.filled -= start;
        Ok(())
    }

    /// Writes pending answers; `Ok(true)` once none is left.
    fn flush(&mut self) -> io::Result<bool> {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(written) => self.written += written,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        self.output.clear();
        self.written = 0;
        Ok(true)
    }

    /// Handles a readiness event: writes what is pending, then reads and answers until the
    /// socket is drained (edge-triggered), one write per read.
    fn ready(&mut self, response: &[u8]) -> Next {
        loop {
            match self.flush() {
                Ok(true) if self.is_closing => return Next::Close,
                Ok(true) => {}
                Ok(false) => return Next::Wait,
                Err(_) => return Next::Close,
            }
            let free = INPUT_SIZE - self.filled;
            if free == 0 {
                // A request head longer than the buffer.
                return Next::Close;
            }
            let read = match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => return Next::Close,
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Next::Wait,
                Err(_) => return Next::Close,
            };
            self.filled += read;
            if self.answer(response).is_err() {
                return Next::Close;
            }
            if read < free {
                // A short read drained the socket: a later arrival raises a new edge.
                return match self.flush() {
                    Ok(true) if self.is_closing => Next::Close,
                    Ok(_) => Next::Wait,
                    Err(_) => Next::Close,
                };
            }
        }
    }
}

/// The response to every request: `200`, the token as a `text/plain` body.
fn response(token: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{token}",
        token.len()
    )
    .into_bytes()
}

/// Accepts every pending connection.
fn accept(listener: &TcpListener, poll: &Poll, connections: &mut Slab<Connection>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(error) => {
                eprintln!("bench-backend: accept: {error}");
                return;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("bench-backend: TCP_NODELAY: {error}");
            continue;
        }
        let entry = connections.vacant_entry();
        let mut connection = Connection::new(stream);
        let token = Token(entry.key() + 1);
        match poll.registry().register(
            &mut connection.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            Ok(()) => {
                entry.insert(connection);
            }
            Err(error) => eprintln!("bench-backend: register: {error}"),
        }
    }
}

/// Serves `listener` until an error of the poll.
fn serve(mut listener: TcpListener, token: &str) -> io::Result<()> {
    let response = response(token);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut connections = Slab::new();
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in &events {
            if event.token() == LISTENER {
                accept(&listener, &poll, &mut connections);
                continue;
            }
            let key = event.token().0.wrapping_sub(1);
            let Some(connection) = connections.get_mut(key) else {
                continue;
            };
            if connection.ready(&response) == Next::Close {
                let mut connection = connections.remove(key);
                // Closing the socket removes it from epoll; deregistering first is tidier.
                let _ = poll.registry().deregister(&mut connection.stream);
            }
        }
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [port, token] = arguments.as_slice() else {
        eprintln!("usage: bench-backend PORT TOKEN");
        return ExitCode::FAILURE;
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bench-backend: PORT is not a port number: {port}");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bench-backend: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match serve(listener, token) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-backend: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{Shutdown, TcpStream},
        thread,
    };

    use sozu_e2e::DEADLINE;

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

    /// A backend serving `token` on an ephemeral port, on a thread of its own.
    fn backend(token: &'static str) -> SocketAddr {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let address = listener.local_addr().expect("local address");
        thread::spawn(move || serve(listener, token));
        address
    }

    fn client(address: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        stream
    }

    /// Reads until the backend closes: `true` if it did (end of stream or reset) in time.
    fn is_closed_by_backend(stream: &mut TcpStream) -> bool {
        let mut buffer = [0; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) => return error.kind() == ErrorKind::ConnectionReset,
            }
        }
    }

    #[test]
    fn parse_head_tells_partial_complete_and_refused() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(Head::Partial)
        );
        assert_eq!(
            parse_head(GET),
            Ok(Head::Complete {
                length: GET.len(),
                close: false
            })
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nconnection:  Close \r\n\r\nGET"),
            Ok(Head::Complete {
                length: 39,
                close: true
            })
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\n\r\n"),
            Err(Refused::RequestLine)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.0\r\n\r\n"),
            Err(Refused::RequestLine)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Err(Refused::Body)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n"),
            Err(Refused::Body)
        );
    }

    #[test]
    fn answers_two_pipelined_requests_in_one_write() {
        let address = backend("token-two");
        let mut stream = client(address);
        let mut requests = GET.to_vec();
        requests.extend_from_slice(GET);
        stream.write_all(&requests).expect("write");
        let expected = [response("token-two"), response("token-two")].concat();
        // On loopback one write arrives whole: a single read gets both answers only if the
        // backend wrote them together.
        let mut buffer = [0; 4096];
        let read = stream.read(&mut buffer).expect("read");
        assert_eq!(
            String::from_utf8_lossy(&buffer[..read]),
            String::from_utf8_lossy(&expected)
        );
        // The connection stays open for the next request, split over two writes.
        stream.write_all(&GET[..10]).expect("write");
        stream.write_all(&GET[10..]).expect("write");
        let mut answer = vec![0; response("token-two").len()];
        stream.read_exact(&mut answer).expect("read");
        assert_eq!(answer, response("token-two"));
    }

    #[test]
    fn closes_on_a_refused_request() {
        let address = backend("token-refused");
        let mut stream = client(address);
        stream
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            .expect("write");
        assert!(is_closed_by_backend(&mut stream));
    }

    #[test]
    fn closes_on_an_oversized_head() {
        let address = backend("token-oversized");
        let mut stream = client(address);
        let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        head.resize(INPUT_SIZE + 1, b'a');
        // The backend may close before it has read everything: the write may then fail.
        let _ = stream.write_all(&head);
        let _ = stream.shutdown(Shutdown::Write);
        assert!(is_closed_by_backend(&mut stream));
    }

    #[test]
    fn answers_then_closes_on_connection_close() {
        let address = backend("token-close");
        let mut stream = client(address);
        stream
            .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        assert_eq!(answer, response("token-close"));
    }
}
