//! The link driven over an in-memory socket, with the proxy's own HTTP/2 server codec (or
//! hand-written frames) playing the backend.

use std::{
    io::{self, IoSlice, Read, Write},
    time::{Duration, Instant},
};

use loona_hpack::Encoder;
use mio::Token;
use sozu_command_lib::request::H2Config;

use super::Link;
use crate::{
    protocol::http::{
        h2::{
            Connection, ErrorCode, Event, Progress,
            frame::{self, Decoded, Frame},
            headers::NeverIndexed,
            settings,
        },
        parser::{self, BodyFraming, Limits, Method, Parsed},
    },
    session::{
        endpoint::{Ready, Transfer},
        mux::Wakes,
    },
};

/// A socket in memory: reads take `incoming` (would block when empty), writes append to
/// `written` (or would block, while `full`).
#[derive(Default)]
struct Socket {
    incoming: Vec<u8>,
    written: Vec<u8>,
    full: bool,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let count = buf.len().min(self.incoming.len());
        buf[..count].copy_from_slice(&self.incoming[..count]);
        self.incoming.drain(..count);
        Ok(count)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.full {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The link, its socket, and the backend's side: the proxy's server codec.
struct Harness {
    link: Link,
    /// Where the link queues its owners' news.
    wakes: Wakes,
    /// The one stream handle the tests use, but where they open more.
    key: usize,
    socket: Socket,
    backend: Connection,
    /// What the backend's codec wrote that was not handed to the link yet.
    backend_out: Vec<u8>,
    encoder: Encoder<'static>,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        let mut backend = Connection::new(H2Config::default(), Duration::from_secs(30), b"", now);
        let mut backend_out = Vec::new();
        backend.start(&mut backend_out);
        let wakes = Wakes::default();
        let mut link = Link::new(H2Config::default(), now, wakes.clone());
        let key = link.attach(Token(1));
        Self {
            link,
            wakes,
            key,
            socket: Socket::default(),
            backend,
            backend_out,
            encoder: Encoder::new(),
        }
    }

    /// The news the link queued for its owners since the last call.
    fn take_wakes(&self) -> Vec<(Token, Ready)> {
        let mut wakes = Vec::new();
        self.wakes.take_into(&mut wakes);
        wakes
    }

    /// Writes request bytes through the link; how many it took.
    fn write(&mut self, bytes: &[u8]) -> Transfer {
        self.write_on(self.key, bytes)
    }

    /// Writes request bytes of the handle `key`; how many it took.
    fn write_on(&mut self, key: usize, bytes: &[u8]) -> Transfer {
        let mut writable = true;
        self.link
            .write(key, &mut self.socket, &[IoSlice::new(bytes)], &mut writable)
    }

    /// Hands what the link sent to the backend's codec; its events.
    fn backend_events(&mut self) -> Vec<(Event, Vec<u8>)> {
        let bytes = std::mem::take(&mut self.socket.written);
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let input = &bytes[at..];
            match self
                .backend
                .receive(input, Instant::now(), &mut self.backend_out)
                .expect("the link speaks HTTP/2 right")
            {
                Progress::NeedMore => panic!("the link writes whole frames"),
                Progress::Consumed { len, event } => {
                    if let Some(event) = event {
                        let data = match &event {
                            Event::Data { data, .. } => input[data.clone()].to_vec(),
                            _ => Vec::new(),
                        };
                        events.push((event, data));
                    }
                    at += len;
                }
            }
        }
        events
    }

    /// Sends the backend's pending frames and `frames` to the link; reads all it gives the
    /// test's handle, and says whether its owner was told it may write.
    fn read(&mut self, frames: &[u8]) -> (Vec<u8>, Transfer, bool) {
        self.receive(frames);
        let writable = self
            .take_wakes()
            .iter()
            .any(|(owner, ready)| *owner == Token(1) && ready.contains(Ready::WRITABLE));
        let (response, end) = self.read_on(self.key);
        (response, end, writable)
    }

    /// Sends the backend's pending frames and `frames` to the link.
    fn receive(&mut self, frames: &[u8]) {
        self.socket.incoming.append(&mut self.backend_out);
        self.socket.incoming.extend_from_slice(frames);
        let mut readable = true;
        self.link.service(&mut self.socket, &mut readable);
    }

    /// Reads all the link gives the handle `key`.
    fn read_on(&mut self, key: usize) -> (Vec<u8>, Transfer) {
        let mut response = Vec::new();
        let mut writable = false;
        loop {
            let mut readable = true;
            let mut space = [0u8; 4096];
            match self.link.read(
                key,
                &mut self.socket,
                &mut space,
                &mut readable,
                &mut writable,
            ) {
                Transfer::Moved(count) => response.extend_from_slice(&space[..count]),
                end => return (response, end),
            }
        }
    }

    fn block(&mut self, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        self.encoder.encode(fields.iter().copied())
    }
}

/// The HTTP/1.1 request heads and data the backend's codec decoded.
fn request_of(events: &[(Event, Vec<u8>)]) -> (Vec<u8>, Vec<u8>, Vec<u8>, bool) {
    let mut head = Vec::new();
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let mut ended = false;
    for (event, data) in events {
        match event {
            Event::Request {
                request,
                end_stream,
                ..
            } => {
                head = request.bytes.clone();
                ended |= *end_stream;
            }
            Event::Data { end_stream, .. } => {
                body.extend_from_slice(data);
                ended |= *end_stream;
            }
            Event::Trailers { fields, .. } => {
                trailers = fields.clone();
                ended = true;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    (head, body, trailers, ended)
}

#[test]
fn a_request_with_a_length_goes_as_headers_and_data() {
    let mut harness = Harness::new();
    let request = b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 5\r\nX-Tag: a\r\n\r\nhello";
    assert_eq!(harness.write(request), Transfer::Moved(request.len()));
    let (head, body, _, ended) = request_of(&harness.backend_events());
    assert_eq!(
        head,
        b"POST /upload?x=1 HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\nx-tag: a\r\nte: trailers\r\n\r\n"
    );
    assert_eq!(body, b"hello");
    assert!(ended);
}

#[test]
fn a_chunked_request_with_trailers_ends_with_a_trailers_block() {
    let mut harness = Harness::new();
    let request = b"POST /rpc HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTE: gzip\r\nX-Tag: a\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nGrpc-Timeout: 1S\r\n\r\n";
    // Split anywhere: the head and the chunks may come in pieces.
    for piece in request.chunks(7) {
        assert_eq!(harness.write(piece), Transfer::Moved(piece.len()));
    }
    let (head, body, trailers, ended) = request_of(&harness.backend_events());
    assert_eq!(
        head,
        b"POST /rpc HTTP/1.1\r\nhost: h\r\nx-tag: a\r\nte: trailers\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(body, b"abcde");
    assert_eq!(trailers, b"grpc-timeout: 1S\r\n");
    assert!(ended);
}

#[test]
fn a_response_with_trailers_reads_as_a_chunked_http11_response() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"200"), (b"content-type", b"text/plain")]);
    frame::write_headers(&mut frames, 1, &head, false, 16_384);
    frame::write_data(&mut frames, 1, b"hello", false);
    let trailers = harness.block(&[(b"grpc-status", b"0")]);
    frame::write_headers(&mut frames, 1, &trailers, true, 16_384);
    let (response, end, _) = harness.read(&frames);
    assert_eq!(end, Transfer::WouldBlock);
    assert_eq!(
        response,
        b"HTTP/1.1 200 \r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"
    );
    // The proxy's HTTP/1.1 parser takes it as any backend's response.
    let mut fields = Vec::new();
    let parsed =
        parser::parse_response_head(&response, &Limits::default(), Method::Get, &mut fields);
    assert!(
        matches!(parsed, Ok(Parsed::Complete(head)) if head.status == 200 && head.body == BodyFraming::Chunked)
    );
    assert!(
        harness.link.is_idle(harness.key),
        "the stream ended: the connection may carry another"
    );
}

#[test]
fn the_next_request_opens_the_next_stream() {
    let mut harness = Harness::new();
    for (stream, path) in [(1u32, "/a"), (3, "/b")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            harness.write(request.as_bytes()),
            Transfer::Moved(request.len())
        );
        let events = harness.backend_events();
        assert!(matches!(events[0].0, Event::Request { stream: s, .. } if s == stream));
        let mut frames = Vec::new();
        let head = harness.block(&[(b":status", b"204")]);
        frame::write_headers(&mut frames, stream, &head, true, 16_384);
        let (response, _, _) = harness.read(&frames);
        assert_eq!(response, b"HTTP/1.1 204 \r\n\r\n");
    }
    assert_eq!(harness.link.counters().streams, 2);
}

#[test]
fn a_request_body_waits_for_the_backend_window() {
    let mut harness = Harness::new();
    let body = vec![b'x'; 100_000];
    let head = format!(
        "PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.clone().into_bytes();
    request.extend_from_slice(&body);
    // The backend's window is the default 65535 bytes until it says otherwise.
    assert_eq!(
        harness.write(&request),
        Transfer::Moved(head.len() + 65_535)
    );
    assert_eq!(
        harness.write(&request[head.len() + 65_535..]),
        Transfer::WouldBlock
    );
    let (_, received, _, ended) = request_of(&harness.backend_events());
    assert_eq!(received.len(), 65_535);
    assert!(!ended);
    // The backend gives credit back: the link says the rest may go.
    harness.backend.release(1, 65_535, &mut harness.backend_out);
    let (_, _, writable) = harness.read(&[]);
    assert!(writable);
    let rest = &request[head.len() + 65_535..];
    assert_eq!(harness.write(rest), Transfer::Moved(rest.len()));
    let (_, received, _, ended) = request_of(&harness.backend_events());
    assert_eq!(received.len(), rest.len());
    assert!(ended);
}

#[test]
fn a_reset_before_the_response_reads_as_a_closed_connection() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_rst_stream(&mut frames, 1, ErrorCode::InternalError);
    let (response, end, _) = harness.read(&frames);
    assert!(response.is_empty());
    assert_eq!(end, Transfer::Closed);
    assert_eq!(harness.link.counters().resets_received, 1);
    assert!(!harness.link.is_idle(harness.key));
}

#[test]
fn a_goaway_naming_the_stream_lets_it_finish_without_reuse() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_goaway(&mut frames, 1, ErrorCode::NoError);
    let head = harness.block(&[(b":status", b"200"), (b"content-length", b"2")]);
    frame::write_headers(&mut frames, 1, &head, false, 16_384);
    frame::write_data(&mut frames, 1, b"ok", true);
    let (response, _, _) = harness.read(&frames);
    assert_eq!(
        response,
        b"HTTP/1.1 200 \r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    assert_eq!(harness.link.counters().goaways_received, 1);
    assert!(!harness.link.is_idle(harness.key));
}

#[test]
fn a_goaway_below_the_stream_fails_it() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_goaway(&mut frames, 0, ErrorCode::NoError);
    let (response, end, _) = harness.read(&frames);
    assert!(response.is_empty());
    assert_eq!(end, Transfer::Closed);
}

/// The last frame the link sent that `pick` picks, if any.
fn last_sent<T>(bytes: &[u8], mut pick: impl FnMut(Frame<'_>) -> Option<T>) -> Option<T> {
    let mut at = 0;
    let mut found = None;
    while at < bytes.len() {
        if bytes[at..].starts_with(frame::PREFACE) {
            at += frame::PREFACE.len();
            continue;
        }
        match frame::decode(&bytes[at..], frame::MAX_MAX_FRAME_SIZE) {
            Ok(Decoded::Frame { frame, len }) => {
                found = pick(frame).or(found);
                at += len;
            }
            _ => break,
        }
    }
    found
}

/// The GOAWAY the link sent, if any.
fn goaway_sent(bytes: &[u8]) -> Option<ErrorCode> {
    last_sent(bytes, |frame| match frame {
        Frame::GoAway { code, .. } => Some(code),
        _ => None,
    })
}

/// The last RST_STREAM the link sent, if any.
fn reset_sent(bytes: &[u8]) -> Option<(u32, ErrorCode)> {
    last_sent(bytes, |frame| match frame {
        Frame::RstStream { stream, code } => Some((stream, code)),
        _ => None,
    })
}

#[test]
fn a_ping_flood_ends_the_connection() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    for _ in 0..=H2Config::default().max_ping_per_window {
        frame::write_ping(&mut frames, [0; 8], false);
    }
    let (response, end, _) = harness.read(&frames);
    assert!(response.is_empty());
    assert_eq!(end, Transfer::Error(io::ErrorKind::InvalidData));
    assert_eq!(
        goaway_sent(&harness.socket.written),
        Some(ErrorCode::EnhanceYourCalm)
    );
}

#[test]
fn an_oversized_header_list_fails_the_exchange() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let big = vec![b'v'; 70_000];
    let head = harness.block(&[(b":status", b"200"), (b"x-big", &big)]);
    let mut frames = Vec::new();
    // Split in frames of the default size, as a backend must.
    let mut chunks = head.chunks(16_384);
    let first = chunks.next().unwrap_or_default();
    frame::client::headers_only(&mut frames, 1, first, true);
    let rest: Vec<&[u8]> = chunks.collect();
    for (index, fragment) in rest.iter().enumerate() {
        frame::client::continuation(&mut frames, 1, fragment, index + 1 == rest.len());
    }
    let (response, end, _) = harness.read(&frames);
    assert!(response.is_empty());
    assert_eq!(end, Transfer::Error(io::ErrorKind::InvalidData));
    assert_eq!(
        goaway_sent(&harness.socket.written),
        Some(ErrorCode::EnhanceYourCalm)
    );
}

#[test]
fn data_beyond_the_declared_length_fails_the_exchange() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"200"), (b"content-length", b"2")]);
    frame::write_headers(&mut frames, 1, &head, false, 16_384);
    frame::write_data(&mut frames, 1, b"too long", true);
    let (_, end, _) = harness.read(&frames);
    assert_eq!(end, Transfer::Error(io::ErrorKind::InvalidData));
    // The stream's error: the connection goes on for the others.
    assert_eq!(goaway_sent(&harness.socket.written), None);
    assert_eq!(
        reset_sent(&harness.socket.written),
        Some((1, ErrorCode::ProtocolError))
    );
    assert!(harness.link.accepts_streams());
}

#[test]
fn a_response_with_a_connection_field_is_refused() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"200"), (b"transfer-encoding", b"chunked")]);
    frame::write_headers(&mut frames, 1, &head, true, 16_384);
    let (response, end, _) = harness.read(&frames);
    assert!(response.is_empty());
    assert_eq!(end, Transfer::Error(io::ErrorKind::InvalidData));
}

#[test]
fn a_head_ending_the_stream_reads_as_an_empty_body() {
    let mut harness = Harness::new();
    harness.write(b"POST /rpc HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"200"), (b"grpc-status", b"5")]);
    frame::write_headers(&mut frames, 1, &head, true, 16_384);
    let (response, _, _) = harness.read(&frames);
    assert_eq!(
        response,
        b"HTTP/1.1 200 \r\ngrpc-status: 5\r\ncontent-length: 0\r\n\r\n"
    );
}

/// A 204 response head ending stream `stream`.
fn no_content(harness: &mut Harness, stream: u32) -> Vec<u8> {
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"204")]);
    frame::write_headers(&mut frames, stream, &head, true, 16_384);
    frames
}

#[test]
fn two_handles_carry_concurrent_streams_on_one_connection() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    harness.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.write_on(other, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    let events = harness.backend_events();
    let opened: Vec<u32> = events
        .iter()
        .filter_map(|(event, _)| match event {
            Event::Request { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(opened, [1, 3], "both in flight at once");
    // The later stream is answered first; each handle reads its own response.
    let mut frames = Vec::new();
    let head = harness.block(&[(b":status", b"200"), (b"content-length", b"1")]);
    frame::write_headers(&mut frames, 3, &head, false, 16_384);
    frame::write_data(&mut frames, 3, b"b", true);
    harness.receive(&frames);
    let wakes = harness.take_wakes();
    assert!(
        wakes.iter().all(|(owner, _)| *owner == Token(2)),
        "{wakes:?}"
    );
    assert_eq!(
        harness.read_on(harness.key),
        (Vec::new(), Transfer::WouldBlock)
    );
    let (response, _) = harness.read_on(other);
    assert_eq!(response, b"HTTP/1.1 200 \r\ncontent-length: 1\r\n\r\nb");
    let frames = no_content(&mut harness, 1);
    let (response, _, _) = harness.read(&frames);
    assert_eq!(response, b"HTTP/1.1 204 \r\n\r\n");
    assert!(harness.link.is_idle(harness.key) && harness.link.is_idle(other));
    assert_eq!(harness.link.counters().streams_shared, 1);
}

#[test]
fn a_stream_whose_owner_does_not_read_holds_only_its_own_window() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    harness.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.write_on(other, b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    for stream in [1, 3] {
        let head = harness.block(&[(b":status", b"200")]);
        frame::write_headers(&mut frames, stream, &head, false, 16_384);
        frame::write_data(&mut frames, stream, &[b'x'; 16_384], false);
    }
    harness.receive(&frames);
    let updates = |bytes: &[u8]| {
        let mut found = Vec::new();
        last_sent(bytes, |frame| {
            if let Frame::WindowUpdate { stream, .. } = frame {
                found.push(stream);
            }
            None::<()>
        });
        found
    };
    // The connection's credit came back at once; no stream's yet.
    assert_eq!(updates(&harness.socket.written), [0]);
    harness.socket.written.clear();
    let (response, _) = harness.read_on(other);
    assert!(response.len() > 16_384, "the head and a chunk of data");
    assert_eq!(
        updates(&harness.socket.written),
        [3],
        "the stream read gets its credit back, the one not read does not"
    );
}

#[test]
fn a_request_beyond_the_backends_concurrency_waits_for_a_stream_to_close() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    let mut frames = Vec::new();
    frame::write_settings(&mut frames, &[(settings::MAX_CONCURRENT_STREAMS, 1)]);
    harness.socket.incoming.extend_from_slice(&frames);
    let mut readable = true;
    harness.link.service(&mut harness.socket, &mut readable);
    assert_eq!(harness.link.max_streams(), 1);
    let first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(harness.write(first), Transfer::Moved(first.len()));
    assert_eq!(
        harness.write_on(other, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        Transfer::WouldBlock
    );
    harness.backend_events();
    harness.take_wakes();
    let frames = no_content(&mut harness, 1);
    harness.receive(&frames);
    assert!(
        harness.take_wakes().contains(&(Token(2), Ready::WRITABLE)),
        "the waiting request is told it may go"
    );
    let second = b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(
        harness.write_on(other, second),
        Transfer::Moved(second.len())
    );
}

#[test]
fn a_goaway_fails_only_the_streams_after_its_last_stream() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    harness.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.write_on(other, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_goaway(&mut frames, 1, ErrorCode::NoError);
    harness.receive(&frames);
    assert_eq!(harness.read_on(other), (Vec::new(), Transfer::Closed));
    assert_eq!(harness.link.counters().streams_refused, 1);
    assert!(!harness.link.accepts_streams());
    let frames = no_content(&mut harness, 1);
    let (response, _, _) = harness.read(&frames);
    assert_eq!(response, b"HTTP/1.1 204 \r\nconnection: close\r\n\r\n");
    assert!(harness.link.is_over(), "gone away with no stream left");
}

#[test]
fn a_reset_ends_only_its_stream() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    harness.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.write_on(other, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_rst_stream(&mut frames, 3, ErrorCode::InternalError);
    harness.receive(&frames);
    assert_eq!(harness.read_on(other), (Vec::new(), Transfer::Closed));
    let frames = no_content(&mut harness, 1);
    let (response, _, _) = harness.read(&frames);
    assert_eq!(response, b"HTTP/1.1 204 \r\n\r\n");
    assert!(harness.link.accepts_streams());
}

#[test]
fn losing_the_connection_fails_every_stream() {
    let mut harness = Harness::new();
    let other = harness.link.attach(Token(2));
    harness.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.write_on(other, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    harness.receive(&[]);
    harness.link.abort(Transfer::Closed);
    let woken: Vec<Token> = harness.take_wakes().into_iter().map(|(t, _)| t).collect();
    assert!(woken.contains(&Token(1)) && woken.contains(&Token(2)));
    for key in [harness.key, other] {
        assert_eq!(harness.read_on(key), (Vec::new(), Transfer::Closed));
    }
    assert!(harness.link.is_over());
}

#[test]
fn a_handle_leaving_in_flight_cancels_its_stream() {
    let mut harness = Harness::new();
    harness.write(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    harness.link.detach(harness.key);
    harness.link.flush(&mut harness.socket);
    assert_eq!(
        reset_sent(&harness.socket.written),
        Some((1, ErrorCode::Cancel))
    );
    assert_eq!(harness.link.handles(), 0);
    // What the backend still sends for it is dropped.
    let frames = no_content(&mut harness, 1);
    harness.receive(&frames);
    assert!(harness.link.accepts_streams());
}

#[test]
fn a_request_taken_while_the_socket_is_full_tells_its_owner_once_sent() {
    let mut harness = Harness::new();
    harness.socket.full = true;
    let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut writable = true;
    let taken = harness.link.write(
        harness.key,
        &mut harness.socket,
        &[IoSlice::new(request)],
        &mut writable,
    );
    assert_eq!(taken, Transfer::Moved(request.len()), "queued");
    assert!(!writable, "the frames wait for the socket");
    harness.socket.full = false;
    harness.receive(&[]);
    assert!(harness.take_wakes().contains(&(Token(1), Ready::WRITABLE)));
    assert!(matches!(
        harness.backend_events().first(),
        Some((Event::Request { stream: 1, .. }, _))
    ));
}

#[test]
fn a_goaway_tells_the_handles_between_requests() {
    let mut harness = Harness::new();
    let idle = harness.link.attach(Token(2));
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    let mut frames = Vec::new();
    frame::write_goaway(&mut frames, 1, ErrorCode::NoError);
    harness.receive(&frames);
    assert!(
        harness.take_wakes().contains(&(Token(2), Ready::READABLE)),
        "its next request must go elsewhere"
    );
    assert!(!harness.link.is_idle(idle));
}

#[test]
fn fields_marked_never_indexed_go_to_the_backend_never_indexed_for_one_request() {
    let mut harness = Harness::new();
    let mut marked = NeverIndexed::default();
    marked.insert(b"x-secret");
    harness.link.mark_never_indexed(harness.key, &marked);
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\nX-Tag: a\r\n\r\n");
    let never_indexed = |events: &[(Event, Vec<u8>)]| {
        events.iter().find_map(|(event, _)| match event {
            Event::Request { request, .. } => Some(request.never_indexed.clone()),
            _ => None,
        })
    };
    // The backend (the proxy's own server codec) decoded `x-secret` as never indexed.
    let first = never_indexed(&harness.backend_events()).expect("a request");
    assert!(first.contains(b"x-secret"));
    assert!(!first.contains(b"x-tag"));
    let frames = no_content(&mut harness, 1);
    harness.read(&frames);
    // The marks were for that request only.
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\n\r\n");
    let second = never_indexed(&harness.backend_events()).expect("a request");
    assert_eq!(second, NeverIndexed::default());
}

#[test]
fn fields_the_backend_marked_never_indexed_are_named_beside_its_response() {
    let mut harness = Harness::new();
    harness.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    harness.backend_events();
    // :status 200, `x-token: t` never indexed, `x-tag: a` without indexing.
    let head = b"\x88\x10\x07x-token\x01t\x00\x05x-tag\x01a";
    let mut frames = Vec::new();
    frame::write_headers(&mut frames, 1, head, true, 16_384);
    let (response, _, _) = harness.read(&frames);
    assert!(response.starts_with(b"HTTP/1.1 200 \r\nx-token: t\r\nx-tag: a\r\n"));
    let marked = harness
        .link
        .response_never_indexed(harness.key)
        .expect("the handle");
    assert!(marked.contains(b"x-token"));
    assert!(!marked.contains(b"x-tag"));
}
