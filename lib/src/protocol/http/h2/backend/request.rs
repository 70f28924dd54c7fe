//! The request side of a backend HTTP/2 stream: an HTTP/1.1 request, as its owner writes
//! it, opened as a stream (HEADERS) and its body sent as DATA within the backend's
//! windows, with its trailers.

use super::{Link, MAX_HEAD, OUT_HIGH_WATER, Request, RequestBody, Response, STREAM_WINDOW};
use crate::protocol::http::h2::{
    error::ErrorCode,
    exchange::trailer_fields,
    frame::{self, MAX_WINDOW},
    headers::NeverIndexed,
};
use crate::{
    protocol::http::parser::{
        self, BodyFraming, BodyProgress, ChunkedBody, HeaderKind, Limits, Method, Parsed,
        TargetForm,
    },
    session::endpoint::Transfer,
};

impl Link {
    /// A new request of `key` may start, or the body in progress may move.
    pub(super) fn can_take_request(&self, key: usize) -> bool {
        let Some(stream) = self.streams.get(key) else {
            return false;
        };
        match stream.request {
            Request::Idle | Request::Sent => {
                matches!(stream.response, Response::Idle | Response::Done)
                    && self.going_away.is_none()
                    && self.open.len() < self.max_streams()
            }
            Request::Head(_) => true,
            Request::Body(_) => self.window(key) > 0,
        }
    }

    /// Bytes of body of `key` the backend's windows allow now.
    pub(super) fn window(&self, key: usize) -> u64 {
        let stream_window = self.streams.get(key).map_or(0, |stream| stream.send_window);
        u64::try_from(self.send_window.min(stream_window).max(0)).unwrap_or(0)
    }

    /// Takes the next bytes of the request of `key`; returns how many.
    pub(super) fn take_request(&mut self, key: usize, input: &[u8]) -> usize {
        let mut taken = 0;
        while taken < input.len() && self.ended.is_none() && self.out.len() < OUT_HIGH_WATER {
            let rest = input.get(taken..).unwrap_or_default();
            let Some(stream) = self.streams.get(key) else {
                break;
            };
            if stream.ended.is_some() {
                break;
            }
            let count = match &stream.request {
                Request::Idle | Request::Sent => {
                    if !self.can_take_request(key) {
                        break;
                    }
                    if let Some(stream) = self.streams.get_mut(key) {
                        stream.request = Request::Head(Vec::new());
                    }
                    0
                }
                Request::Head(_) => self.take_head(key, rest),
                Request::Body(_) => self.take_body(key, rest),
            };
            let in_head = self
                .streams
                .get(key)
                .is_some_and(|stream| matches!(stream.request, Request::Head(_)));
            if count == 0 && !in_head {
                break;
            }
            taken += count;
        }
        taken
    }

    /// Takes bytes of a head; once it is whole, sends its HEADERS. Returns the bytes that
    /// belong to the head.
    pub(super) fn take_head(&mut self, key: usize, input: &[u8]) -> usize {
        let Some(Request::Head(head)) = self.streams.get_mut(key).map(|s| &mut s.request) else {
            return 0;
        };
        let before = head.len();
        let room = MAX_HEAD.saturating_sub(before);
        head.extend_from_slice(input.get(..room.min(input.len())).unwrap_or(input));
        let head_bytes = std::mem::take(head);
        let limits = Limits {
            max_request_line: MAX_HEAD,
            max_header_section: MAX_HEAD,
            max_headers: usize::try_from(self.limits.max_header_fields).unwrap_or(usize::MAX),
        };
        let parsed = parser::parse_request_head(&head_bytes, &limits, b"", &mut self.fields);
        match parsed {
            Ok(Parsed::Complete(parsed)) => {
                let taken = parsed.head_len.saturating_sub(before);
                self.open_stream(key, &head_bytes, &parsed);
                taken
            }
            Ok(Parsed::Partial) if head_bytes.len() < MAX_HEAD => {
                let taken = head_bytes.len() - before;
                if let Some(stream) = self.streams.get_mut(key) {
                    stream.request = Request::Head(head_bytes);
                }
                taken
            }
            Ok(Parsed::Partial) | Err(_) => {
                // The proxy rendered this head: not one is a bug of ours, not the backend's.
                self.end_stream(key, Transfer::Error(std::io::ErrorKind::InvalidData));
                0
            }
        }
    }

    /// Sends the HEADERS of a request head of `key`: pseudo-header fields from the request
    /// line and Host, the other fields but the connection-specific ones (RFC 9113 §8.2.2),
    /// and `te: trailers`.
    pub(super) fn open_stream(&mut self, key: usize, bytes: &[u8], head: &parser::RequestHead) {
        let next = if self.last_stream == 0 {
            1
        } else {
            self.last_stream.saturating_add(2)
        };
        if next > MAX_WINDOW || head.method == Method::Connect || self.going_away.is_some() {
            // Stream ids ran out, the backend goes away, or a tunnel was asked for: none
            // goes over this connection (RFC 9113 §8.5 CONNECT is not proxied to HTTP/2
            // backends).
            self.end_stream(key, Transfer::Closed);
            return;
        }
        self.last_stream = next;
        self.counters.streams = self.counters.streams.saturating_add(1);
        let authority = head.authority.map(|authority| authority.span.slice(bytes));
        let path: &[u8] = match head.target_form {
            TargetForm::Absolute if head.path.is_empty() => b"/",
            TargetForm::Absolute if head.path.slice(bytes).starts_with(b"?") => {
                self.scratch.clear();
                self.scratch.push(b'/');
                self.scratch.extend_from_slice(head.path.slice(bytes));
                &self.scratch
            }
            _ => head.path.slice(bytes),
        };
        let path = path.to_vec();
        let mut pseudo: Vec<(&[u8], &[u8])> = vec![
            (b":method", head.method_span.slice(bytes)),
            (b":scheme", b"http"),
            (b":path", &path),
        ];
        if let Some(authority) = authority {
            pseudo.push((b":authority", authority));
        }
        let regular = self.fields.iter().filter_map(|field| {
            let is_connection_specific = field.is_connection_option
                || matches!(
                    field.kind,
                    HeaderKind::Host
                        | HeaderKind::Connection
                        | HeaderKind::KeepAlive
                        | HeaderKind::ProxyConnection
                        | HeaderKind::TransferEncoding
                        | HeaderKind::Upgrade
                );
            (!is_connection_specific && field.kind != HeaderKind::Te)
                .then(|| (field.name.slice(bytes), field.value.slice(bytes)))
        });
        // The proxy relays trailers (to HTTP/2 clients, and in chunked bodies to HTTP/1.1
        // ones), and gRPC services refuse requests without `te: trailers`, which the
        // HTTP/1.1 editing removed as hop-by-hop: it is always sent (RFC 9113 §8.2.2).
        let regular = regular.chain(std::iter::once((&b"te"[..], &b"trailers"[..])));
        let mut block = Vec::with_capacity(bytes.len());
        let never_indexed = self
            .streams
            .get(key)
            .map_or(NeverIndexed::none(), |stream| &stream.request_never_indexed);
        self.encoder
            .fields(pseudo.into_iter().chain(regular), never_indexed, &mut block);
        let (body, end_stream) = match head.body {
            BodyFraming::ContentLength(0) | BodyFraming::None | BodyFraming::UntilClose => {
                (None, true)
            }
            BodyFraming::ContentLength(remaining) => {
                (Some(RequestBody::Length { remaining }), false)
            }
            BodyFraming::Chunked => (
                Some(RequestBody::Chunked {
                    chunked: ChunkedBody::new(&Limits::default()),
                    trailers: Vec::new(),
                }),
                false,
            ),
        };
        frame::write_headers(
            &mut self.out,
            next,
            &block,
            end_stream,
            self.peer.max_frame_size,
        );
        if !self.open.is_empty() {
            self.counters.streams_shared = self.counters.streams_shared.saturating_add(1);
        }
        self.open.insert(next, key);
        let initial_window = i64::from(self.peer.initial_window_size);
        if let Some(stream) = self.streams.get_mut(key) {
            stream.id = next;
            stream.send_window = initial_window;
            stream.recv_window = STREAM_WINDOW;
            stream.unreturned = 0;
            stream.request_never_indexed.clear();
            stream.response_never_indexed.clear();
            stream.response = Response::AwaitingHead {
                method: head.method,
            };
            stream.request = match body {
                Some(body) => Request::Body(body),
                None => Request::Sent,
            };
        }
    }

    /// Takes body bytes of `key` within the windows; returns how many.
    pub(super) fn take_body(&mut self, key: usize, input: &[u8]) -> usize {
        let window = usize::try_from(self.window(key)).unwrap_or(usize::MAX);
        let input = input.get(..window.min(input.len())).unwrap_or_default();
        if input.is_empty() {
            return 0;
        }
        let Some(stream) = self.streams.get_mut(key) else {
            return 0;
        };
        let Request::Body(body) = &mut stream.request else {
            return 0;
        };
        self.scratch.clear();
        let scratch = &mut self.scratch;
        let (taken, trailers) = match body {
            RequestBody::Length { remaining } => {
                let count = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                scratch.extend_from_slice(input.get(..count).unwrap_or_default());
                *remaining = remaining.saturating_sub(count as u64);
                let end = (*remaining == 0).then(Vec::new);
                (count, end)
            }
            RequestBody::Chunked { chunked, trailers } => {
                match chunked.feed_with_trailers(
                    input,
                    |data| scratch.extend_from_slice(data),
                    |byte| trailers.push(byte),
                ) {
                    Ok(BodyProgress::Partial) => (input.len(), None),
                    Ok(BodyProgress::Complete { len }) => (len, Some(std::mem::take(trailers))),
                    Err(_) => {
                        self.end_stream(key, Transfer::Error(std::io::ErrorKind::InvalidData));
                        self.reset(key);
                        return 0;
                    }
                }
            }
        };
        let id = stream.id;
        let data = std::mem::take(&mut self.scratch);
        self.send_data(
            key,
            &data,
            trailers
                .as_ref()
                .is_some_and(|t| trailer_fields(t).next().is_none()),
        );
        self.scratch = data;
        if let Some(section) = trailers {
            if trailer_fields(&section).next().is_some() {
                let mut block = Vec::new();
                let never_indexed = NeverIndexed::none();
                self.encoder
                    .fields(trailer_fields(&section), never_indexed, &mut block);
                frame::write_headers(&mut self.out, id, &block, true, self.peer.max_frame_size);
            }
            if let Some(stream) = self.streams.get_mut(key) {
                stream.request = Request::Sent;
            }
            self.close_if_done(key);
        }
        taken
    }

    /// Cancels the stream of `key` toward the backend (RST_STREAM).
    fn reset(&mut self, key: usize) {
        if let Some(stream) = self.streams.get(key) {
            frame::write_rst_stream(&mut self.out, stream.id, ErrorCode::Cancel);
        }
    }

    /// Queues `data` of `key` as DATA frames (the windows were checked), the last one ending
    /// the stream when `end_stream`.
    pub(super) fn send_data(&mut self, key: usize, data: &[u8], end_stream: bool) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        self.send_window = self.send_window.saturating_sub(len);
        stream.send_window = stream.send_window.saturating_sub(len);
        let id = stream.id;
        let size = usize::try_from(self.peer.max_frame_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut chunks = data.chunks(size).peekable();
        if chunks.peek().is_none() && end_stream {
            frame::write_data(&mut self.out, id, &[], true);
        }
        while let Some(chunk) = chunks.next() {
            let is_last = chunks.peek().is_none();
            frame::write_data(&mut self.out, id, chunk, is_last && end_stream);
        }
    }
}
