//! An HTTP/1.1 backend for tests: a real server on 127.0.0.1, one thread per connection,
//! keep-alive, that records every request it receives and answers with a handler.
//!
//! Requests are read strictly ([`crate::wire`]): if the proxy ever sends something that is
//! not one well-framed request, the backend stops reading that connection and the request is
//! not recorded, so a test sees it in [`HttpBackend::raw`] but not in
//! [`HttpBackend::requests`]. The handler gets each parsed request and says what to do as a
//! [`Reply`]: raw bytes (any response, well-formed or not), close, hang, or switch to echo.

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

use crate::wire::{Body, Head, Reader};

/// A request as the backend received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which connection of the backend it came on, counting from 0 in accept order.
    pub connection: usize,
    /// Its place among the requests of its connection, counting from 0.
    pub index: usize,
    pub head: Head,
    pub body: Body,
}

impl Request {
    /// The method of the request line.
    pub fn method(&self) -> &str {
        self.head.start_line.split(' ').next().unwrap_or_default()
    }

    /// The target of the request line.
    pub fn target(&self) -> &str {
        self.head.start_line.split(' ').nth(1).unwrap_or_default()
    }

    /// The value of the first field named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.field(name)
    }
}

/// What the backend does after a request.
pub enum Reply {
    /// Write these bytes and wait for the next request on the connection.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Close the connection without writing anything.
    Close,
    /// Write nothing; keep the connection until the peer closes it.
    Hang,
    /// Write these bytes (a 101 head), then send back every byte received.
    Echo(Vec<u8>),
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

#[derive(Default)]
struct Records {
    requests: Vec<Request>,
    /// Every byte received, per connection.
    raw: Vec<Vec<u8>>,
}

/// A running HTTP backend. It serves until the test process ends.
pub struct HttpBackend {
    pub address: SocketAddr,
    records: Arc<Mutex<Records>>,
    open: Arc<AtomicUsize>,
}

impl HttpBackend {
    /// Serves every request with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> HttpBackend {
        HttpBackend::start_on(crate::bind_listener(), |_| {}, handler)
    }

    /// Serves every request with `handler` on `listener`, once `before` returned: it runs on
    /// the backend's thread before the first accept (to hold the accept queue back).
    pub fn start_on(
        listener: TcpListener,
        before: impl FnOnce(&TcpListener) + Send + 'static,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> HttpBackend {
        let address = listener.local_addr().expect("backend address");
        let records = Arc::new(Mutex::new(Records::default()));
        let open = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let records = records.clone();
            let open = open.clone();
            thread::spawn(move || {
                before(&listener);
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let connection = {
                        let mut records = records.lock().expect("records");
                        records.raw.push(Vec::new());
                        records.raw.len() - 1
                    };
                    open.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    let records = records.clone();
                    let open = open.clone();
                    thread::spawn(move || {
                        serve(stream, connection, &records, handler.as_ref());
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        HttpBackend {
            address,
            records,
            open,
        }
    }

    /// Answers every request `200 OK` with `body`.
    pub fn ok(body: &'static str) -> HttpBackend {
        HttpBackend::start(move |_| Reply::Send(response(200, &[], body.as_bytes())))
    }

    /// Answers every request `200 OK` with its body's length and checksum
    /// ([`crate::backend::digest`]), as `LENGTH CHECKSUM`.
    pub fn digesting() -> HttpBackend {
        HttpBackend::start(|request| {
            let (length, checksum) = crate::backend::digest(&request.body.data);
            Reply::Send(response(
                200,
                &[],
                format!("{length} {checksum}").as_bytes(),
            ))
        })
    }

    /// The requests received so far, in the order they were read.
    pub fn requests(&self) -> Vec<Request> {
        self.records.lock().expect("records").requests.clone()
    }

    /// Every byte received so far, per connection in accept order.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.records.lock().expect("records").raw.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.records.lock().expect("records").raw.len()
    }

    /// Connections not closed yet.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Serves one connection until it ends or a reply ends it.
fn serve(stream: TcpStream, connection: usize, records: &Arc<Mutex<Records>>, handler: &Handler) {
    let mut writer = stream.try_clone().expect("clone a stream");
    let tap_records = records.clone();
    let mut reader = Reader::with_tap(stream, move |bytes| {
        if let Some(raw) = tap_records.lock().expect("records").raw.get_mut(connection) {
            raw.extend_from_slice(bytes);
        }
    });
    for index in 0.. {
        let Ok(Some(head)) = reader.read_head() else {
            break;
        };
        let Ok(framing) = head.request_framing() else {
            break;
        };
        let Ok(body) = reader.read_body(framing) else {
            break;
        };
        let request = Request {
            connection,
            index,
            head,
            body,
        };
        records
            .lock()
            .expect("records")
            .requests
            .push(request.clone());
        match handler(&request) {
            Reply::Send(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    break;
                }
            }
            Reply::SendAndClose(bytes) => {
                let _ = writer.write_all(&bytes);
                break;
            }
            Reply::Close => break,
            Reply::Hang => {
                while matches!(reader.fill(), Ok(count) if count > 0) {}
                break;
            }
            Reply::Echo(head) => {
                if writer.write_all(&head).is_ok() {
                    echo(&mut reader, &mut writer);
                }
                break;
            }
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Sends back every byte read, those already buffered first, until the peer ends its stream.
fn echo(reader: &mut Reader, writer: &mut TcpStream) {
    let early = reader.take_pending();
    if writer.write_all(&early).is_err() {
        return;
    }
    while let Ok(count) = reader.fill() {
        if count == 0 {
            break;
        }
        let bytes = reader.take_pending();
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
    let _ = writer.shutdown(Shutdown::Write);
}

/// A response with a Content-Length body and the given extra fields.
pub fn response(status: u16, fields: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in fields {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `200 OK` with a chunked body made of `chunks`.
pub fn chunked_response(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A reason phrase; clients must not depend on it (RFC 9112 §4), so any will do.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        _ => "Status",
    }
}
