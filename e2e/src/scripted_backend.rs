//! A backend whose every connection runs a script: for backends that misbehave on purpose
//! (a body where none may be, bytes past a response, a 101 nobody asked for, a connection cut
//! inside a head). A script reads requests strictly ([`crate::wire`]) and writes exactly the
//! bytes its case needs, in one write each, so what the proxy receives is what the test wrote.

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    thread,
};

use crate::wire::{Head, Reader};

/// What the backend saw, for the test to check.
#[derive(Default)]
struct Log {
    /// Request heads in the order they were read, with the index of their connection.
    requests: Vec<(usize, Head)>,
    /// Connections accepted so far.
    connections: usize,
    /// Connections whose stream the proxy ended, by index.
    ended: Vec<usize>,
}

/// A running scripted backend. It serves until the test process ends.
pub struct ScriptedBackend {
    pub address: SocketAddr,
    log: Arc<Mutex<Log>>,
}

/// One connection of a [`ScriptedBackend`], as its script sees it.
pub struct Connection {
    /// The connection's place in accept order, counting from 0.
    pub index: usize,
    reader: Reader,
    writer: TcpStream,
    log: Arc<Mutex<Log>>,
}

impl Connection {
    /// The next request head, its body read and dropped; `None` once the proxy ended the
    /// stream or sent something that is not a request (both recorded as the end of the
    /// connection).
    pub fn request(&mut self) -> Option<Head> {
        let head = self.reader.read_head().ok().flatten().and_then(|head| {
            let framing = head.request_framing().ok()?;
            self.reader.read_body(framing).ok()?;
            Some(head)
        });
        let mut log = self.log.lock().expect("log");
        match &head {
            Some(head) => log.requests.push((self.index, head.clone())),
            None => log.ended.push(self.index),
        }
        head
    }

    /// Writes `bytes` as they are, in one write.
    pub fn send(&mut self, bytes: &[u8]) {
        // The proxy may have closed the connection already; the test checks what it did.
        let _ = self.writer.write_all(bytes);
    }
}

impl ScriptedBackend {
    /// Runs `script` on every accepted connection, each on its own thread. The connection is
    /// closed when the script returns.
    pub fn start(script: impl Fn(&mut Connection) + Send + Sync + 'static) -> ScriptedBackend {
        let listener = crate::bind_listener();
        let address = listener.local_addr().expect("backend address");
        let log = Arc::new(Mutex::new(Log::default()));
        let script = Arc::new(script);
        {
            let log = log.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let index = {
                        let mut log = log.lock().expect("log");
                        log.connections += 1;
                        log.connections - 1
                    };
                    let writer = stream.try_clone().expect("clone a stream");
                    let mut connection = Connection {
                        index,
                        reader: Reader::new(stream),
                        writer,
                        log: log.clone(),
                    };
                    let script = script.clone();
                    thread::spawn(move || {
                        script(&mut connection);
                        let _ = connection.writer.shutdown(Shutdown::Both);
                    });
                }
            });
        }
        ScriptedBackend { address, log }
    }

    /// The request heads received so far, with the index of their connection.
    pub fn requests(&self) -> Vec<(usize, Head)> {
        self.log.lock().expect("log").requests.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.lock().expect("log").connections
    }

    /// Whether the proxy ended connection `index` (seen by a script's [`Connection::request`]).
    pub fn has_ended(&self, index: usize) -> bool {
        self.log.lock().expect("log").ended.contains(&index)
    }
}
