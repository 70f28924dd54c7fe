//! A raw-socket HTTP/1.1 client for tests: it writes exactly the bytes a test gives and reads
//! responses with strict framing ([`crate::wire`]), so a mis-framed answer of the proxy fails
//! the test instead of being papered over by a lenient client library.

use std::{
    io::{ErrorKind, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    DEADLINE,
    wire::{Framing, Head, Reader, WireError},
};

/// A response read by [`Client`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    /// The content, chunk framing removed.
    pub body: Vec<u8>,
    /// How the body was framed.
    pub framing: Framing,
}

impl Response {
    /// The value of the first field named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.field(name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the response announces the end of the connection.
    pub fn closes(&self) -> bool {
        self.head.connection_has("close")
    }
}

/// One client connection.
pub struct Client {
    reader: Reader,
    /// Every byte received, in order.
    transcript: Arc<Mutex<Vec<u8>>>,
}

impl Client {
    /// Connects to `address`; every read waits at most [`DEADLINE`].
    pub fn connect(address: SocketAddr) -> Client {
        Client::over(TcpStream::connect(address).expect("connect to the proxy"))
    }

    /// A client over a connected `stream`; every read waits at most [`DEADLINE`].
    pub fn over(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("set a read timeout");
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let tap = transcript.clone();
        Client {
            reader: Reader::with_tap(stream, move |bytes| {
                tap.lock().expect("transcript").extend_from_slice(bytes);
            }),
            transcript,
        }
    }

    /// Every byte received from the proxy so far, in order.
    pub fn transcript(&self) -> Vec<u8> {
        self.transcript.lock().expect("transcript").clone()
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.stream()
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        let mut stream = self.reader.stream();
        stream.write_all(bytes).expect("send to the proxy");
    }

    /// Sends a request and reads its response (`method` decides whether it has a body).
    pub fn exchange(&mut self, method: &str, request: &[u8]) -> Response {
        self.send(request);
        self.response(method)
    }

    /// Sends `GET path` for `host` and reads the response.
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.exchange("GET", &get(host, path))
    }

    /// Reads the response to a request made with `method`, skipping nothing: a 1xx is
    /// returned as is.
    pub fn response(&mut self, method: &str) -> Response {
        match self.try_response(method) {
            Ok(response) => response,
            Err(error) => panic!(
                "no valid response from the proxy: {error} (unread: {:?})",
                String::from_utf8_lossy(self.reader.pending())
            ),
        }
    }

    /// Reads the response to a request made with `method`.
    pub fn try_response(&mut self, method: &str) -> Result<Response, WireError> {
        let head = self.reader.read_head()?.ok_or(WireError::Truncated)?;
        let status = head.status()?;
        let framing = head.response_framing(method)?;
        let body = self.reader.read_body(framing)?;
        Ok(Response {
            status,
            head,
            body: body.data,
            framing,
        })
    }

    /// Checks that the proxy ends the connection with no byte after what was read: the
    /// stream ends (or is reset) before the deadline.
    pub fn assert_closed(&mut self) {
        assert!(
            self.reader.pending().is_empty(),
            "bytes after the last response: {:?}",
            String::from_utf8_lossy(self.reader.pending())
        );
        match self.reader.fill() {
            Ok(0) => {}
            Ok(_) => panic!(
                "bytes after the last response: {:?}",
                String::from_utf8_lossy(self.reader.pending())
            ),
            Err(WireError::Io(error)) if error.kind() == ErrorKind::ConnectionReset => {}
            Err(error) => panic!("the proxy did not close the connection: {error}"),
        }
    }

    /// Whether the proxy closed the connection within `timeout`, having sent nothing more.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        self.reader
            .stream()
            .set_read_timeout(Some(timeout))
            .expect("set a read timeout");
        let closed = match self.reader.fill() {
            Ok(0) => true,
            Err(WireError::Io(error)) => error.kind() == ErrorKind::ConnectionReset,
            _ => false,
        };
        self.reader
            .stream()
            .set_read_timeout(Some(DEADLINE))
            .expect("set a read timeout");
        closed && self.reader.pending().is_empty()
    }

    /// Ends the client's stream (the proxy sees end of stream).
    pub fn shutdown_write(&self) {
        self.reader
            .stream()
            .shutdown(Shutdown::Write)
            .expect("shut down the write side");
    }

    /// Reads exactly `length` raw bytes (after an upgrade); more is a failure.
    pub fn read_raw(&mut self, length: usize) -> Vec<u8> {
        let deadline = Instant::now() + DEADLINE;
        while self.reader.pending().len() < length {
            assert!(Instant::now() < deadline, "raw bytes did not come in time");
            match self.reader.fill() {
                Ok(0) => panic!("the stream ended before {length} raw bytes"),
                Ok(_) => {}
                Err(error) => panic!("reading raw bytes: {error}"),
            }
        }
        let bytes = self.reader.take_pending();
        assert_eq!(
            bytes.len(),
            length,
            "more raw bytes than expected: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }
}

/// `GET path HTTP/1.1` with only a Host field.
pub fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// `POST path HTTP/1.1` with a Content-Length body.
pub fn post(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}
