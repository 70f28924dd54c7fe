//! Backends for tests: small TCP servers on threads, each connection served by its own thread.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

/// A running backend. It serves until the test process ends.
pub struct Backend {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Backend {
    /// Serves each accepted connection with `serve`, which gets the stream and a place to
    /// record what it received.
    fn spawn(serve: impl Fn(TcpStream, &Mutex<Vec<Vec<u8>>>) + Send + Sync + 'static) -> Backend {
        let listener = crate::bind_listener();
        let address = listener.local_addr().expect("backend address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let serve = Arc::new(serve);
        {
            let accepted = accepted.clone();
            let received = received.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let serve = serve.clone();
                    let received = received.clone();
                    thread::spawn(move || serve(stream, &received));
                }
            });
        }
        Backend {
            address,
            accepted,
            received,
        }
    }

    /// Sends back every byte it receives; shuts its write side when the client does.
    pub fn echo() -> Backend {
        Backend::spawn(|mut stream, _| {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(count) => {
                        if stream.write_all(&buffer[..count]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.shutdown(Shutdown::Write);
        })
    }

    /// Writes `message`, ends its stream, and reads what the client sends until it closes.
    pub fn greeter(message: &'static [u8]) -> Backend {
        Backend::spawn(move |mut stream, received| {
            let _ = stream.write_all(message);
            let _ = stream.shutdown(Shutdown::Write);
            let mut data = Vec::new();
            let _ = stream.read_to_end(&mut data);
            received.lock().expect("record").push(data);
        })
    }

    /// Reads until the client ends its stream, records it, then answers `reply` and closes.
    pub fn recorder(reply: &'static [u8]) -> Backend {
        Backend::spawn(move |mut stream, received| {
            let mut data = Vec::new();
            let _ = stream.read_to_end(&mut data);
            received.lock().expect("record").push(data);
            let _ = stream.write_all(reply);
        })
    }

    /// Reads `length` bytes, then sends `length` bytes of its own (a deterministic pattern),
    /// recording a checksum of what it read. For large two-way transfers.
    pub fn exchanger(length: usize) -> Backend {
        Backend::spawn(move |stream, received| {
            let reader = stream.try_clone().expect("clone a stream");
            let sender = thread::spawn(move || {
                let mut writer = stream;
                let mut pattern = Pattern::new(0xbac0_0000);
                let mut chunk = vec![0; 64 * 1024];
                let mut left = length;
                while left > 0 {
                    let count = left.min(chunk.len());
                    pattern.fill(&mut chunk[..count]);
                    if writer.write_all(&chunk[..count]).is_err() {
                        return;
                    }
                    left -= count;
                }
                let _ = writer.shutdown(Shutdown::Write);
            });
            let (count, checksum) = checksum_stream(reader);
            let _ = sender.join();
            let mut record = count.to_le_bytes().to_vec();
            record.extend_from_slice(&checksum.to_le_bytes());
            received.lock().expect("record").push(record);
        })
    }

    /// An HTTP/1.1 server answering every request with 200 and `body`, keeping connections
    /// alive. It records each request head. Requests must not have a body.
    pub fn http_ok(body: &'static str) -> Backend {
        Backend::spawn(move |mut stream, received| {
            let mut buffer = vec![0; 64 * 1024];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(count) => pending.extend_from_slice(&buffer[..count]),
                    }
                    continue;
                };
                let head: Vec<u8> = pending.drain(..end + 4).collect();
                received.lock().expect("record").push(head);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What each finished connection received, in the order they finished.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("read records").clone()
    }
}

/// A listener that never accepts, with its backlog already full: new connections to it get no
/// answer (their SYN is dropped), so connecting to it times out.
pub struct Unresponsive {
    pub address: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Unresponsive {
    pub fn start() -> Unresponsive {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("create a socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind");
        socket.listen(0).expect("listen");
        let address = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("listener address");
        // Fill the accept queue; the kernel then drops new SYNs.
        let mut fillers = Vec::new();
        for _ in 0..4 {
            let filler = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("create a socket");
            filler.set_nonblocking(true).expect("non-blocking");
            let _ = filler.connect(&address.into());
            fillers.push(TcpStream::from(filler));
        }
        Unresponsive {
            address,
            _listener: socket,
            _fillers: fillers,
        }
    }
}

/// A deterministic stream of bytes that is cheap to produce and check.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed | 1)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            // xorshift64
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// `length` bytes of [`Pattern`] from `seed`.
pub fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut bytes = vec![0; length];
    Pattern::new(seed).fill(&mut bytes);
    bytes
}

/// Length and checksum, to compare large byte strings with a readable failure.
pub fn digest(bytes: &[u8]) -> (usize, u64) {
    (bytes.len(), checksum_update(0xcbf2_9ce4_8422_2325, bytes))
}

/// Reads a stream to its end; returns the byte count and an FNV-1a checksum.
pub fn checksum_stream(mut stream: impl Read) -> (u64, u64) {
    let mut buffer = vec![0; 64 * 1024];
    let mut count = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return (count, hash),
            Ok(read) => {
                count += read as u64;
                hash = checksum_update(hash, &buffer[..read]);
            }
        }
    }
}

/// FNV-1a over `data`, continuing from `hash`.
pub fn checksum_update(mut hash: u64, data: &[u8]) -> u64 {
    for &byte in data {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The checksum of `length` bytes of [`Pattern`] from `seed`.
pub fn pattern_checksum(seed: u64, length: usize) -> u64 {
    let mut pattern = Pattern::new(seed);
    let mut chunk = vec![0; 64 * 1024];
    let mut left = length;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    while left > 0 {
        let count = left.min(chunk.len());
        pattern.fill(&mut chunk[..count]);
        hash = checksum_update(hash, &chunk[..count]);
        left -= count;
    }
    hash
}
