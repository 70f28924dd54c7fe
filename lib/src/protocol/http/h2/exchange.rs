//! One stream of an HTTP/2 session as the proxy serves it: its request translated into an
//! HTTP/1.1 request for a backend (head through the same editor as HTTP/1.1, body framed by
//! its Content-Length or chunked), and the backend's HTTP/1.1 response translated back into
//! HEADERS and DATA frames; or the proxy's own answer, sent the same way.
//!
//! An exchange holds what is on its way in each direction, bounded by flow control: the
//! request bytes not yet written to the backend (at most the stream's receive window, whose
//! credit goes back to the client only once they are written), and the backend's read buffer
//! (the slot's own, from the pool) with the response data waiting for the client's windows.

use std::{fmt::Write as _, net::SocketAddr, time::Instant};

use super::{
    Connection, ErrorCode, StreamId,
    headers::{NeverIndexed, ParsedResponse, Request},
};
use crate::{
    pool::Buffer,
    protocol::http::{
        HttpListener,
        body::Body,
        connection::{self, Forwarded, Message, Rendered},
        editor,
        parser::{
            BodyFraming, BodyProgress, Header, Method, Parsed, Persistence, parse_response_head,
        },
        route::{Forward, Retry},
        stream::Stream,
    },
    session::{BackUse, backs::Slot, shaper::Shaper},
};

/// Response data handed to the codec per exchange and pass, so streams take turns.
const QUANTUM: usize = 16_384;

/// Where an exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Routed to a cluster, waiting for its turn to connect.
    Queued,
    /// Its backend connection is being opened (or taken from the pool).
    Connecting,
    /// Its backend connection is up: the request goes out, the response comes back.
    Forwarding,
    /// The proxy answers by itself: no backend connection.
    Answering,
}

/// How far the response went to the client.
#[derive(Debug, Clone)]
enum ResponseSide {
    AwaitingHead,
    /// The head was sent; the body (as the backend frames it) follows.
    Body(Body),
    /// END_STREAM was sent.
    Done,
}

/// How the request body is framed toward the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Copied as is (Content-Length, or no body).
    Plain,
    /// The request has a body and no Content-Length: sent chunked.
    Chunked,
}

/// Why an exchange cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The backend failed before the response head: answer with this status.
    Answer(u16, &'static str),
    /// The backend failed after the response head went out: reset the stream.
    Reset,
}

/// The buffers of an exchange, which the session keeps from one stream to the next: once
/// they have grown, a stream allocates none of them.
#[derive(Default)]
pub struct Buffers {
    /// The stream done with, its texts emptied but their allocations kept.
    stream: Stream,
    request: Vec<u8>,
    headers: Vec<Header>,
    pending: Vec<u8>,
    trailers: Vec<u8>,
    head: Vec<u8>,
}

impl Buffers {
    /// Whether the buffers are small enough to keep (a large body may have grown them).
    pub fn is_worth_keeping(&self) -> bool {
        const LARGEST: usize = 64 * 1024;
        self.request.capacity() <= LARGEST
            && self.pending.capacity() <= LARGEST
            && self.trailers.capacity() <= LARGEST
    }
}

/// One stream and its forwarding state.
pub struct Exchange {
    pub id: StreamId,
    /// The record of the request (routing, status, bytes, times).
    pub stream: Stream,
    pub state: State,
    pub slot: Option<Slot>,
    pub sticky_id: Option<String>,
    /// The sticky id of the backend its connection goes to, once connected.
    pub backend_sticky: String,
    pub back_use: BackUse,
    /// The request bytes to write to the backend, from `request_sent`.
    request: Vec<u8>,
    request_sent: usize,
    framing: Framing,
    /// Request data bytes buffered, whose flow-control credit goes back once written.
    owed_credit: u32,
    /// The client ended the request: its last bytes are in `request`.
    request_ended: bool,
    /// The slot's read buffer, acquired with the backend connection.
    pub back_buf: Option<Buffer>,
    headers: Vec<Header>,
    response: ResponseSide,
    /// Response data decoded from the backend, waiting for the client's windows.
    pending: Vec<u8>,
    /// The response ends once `pending` is sent.
    pending_end: bool,
    /// The trailer section of a chunked response (HTTP/1.1 field lines, then CRLF), sent
    /// as a trailers HEADERS frame after the data.
    trailers: Vec<u8>,
    /// The backend connection may serve another request after this one.
    pub backend: Persistence,
    /// The faults acting on the stream, when some do: its write budget.
    pub shaper: Option<Box<Shaper>>,
    /// The edited response head, on its way to HPACK.
    head: Vec<u8>,
    /// The fields the client marked never indexed in the request head.
    never_indexed: NeverIndexed,
    /// The fields the backend marked never indexed in the response head being sent.
    response_never_indexed: NeverIndexed,
}

impl Exchange {
    /// A new exchange whose buffers are `buffers`, those of an exchange done with.
    pub fn with_buffers(id: StreamId, buffers: Buffers) -> Exchange {
        let Buffers {
            stream,
            request,
            headers,
            pending,
            trailers,
            head,
        } = buffers;
        Exchange {
            id,
            stream,
            state: State::Answering,
            slot: None,
            sticky_id: None,
            backend_sticky: String::new(),
            back_use: BackUse::New,
            request,
            request_sent: 0,
            framing: Framing::Plain,
            owed_credit: 0,
            request_ended: false,
            back_buf: None,
            headers,
            response: ResponseSide::AwaitingHead,
            pending,
            pending_end: false,
            trailers,
            backend: Persistence::KeepAlive,
            shaper: None,
            head,
            never_indexed: NeverIndexed::default(),
            response_never_indexed: NeverIndexed::default(),
        }
    }

    /// Ends the exchange; its buffers, emptied, for another one.
    pub fn into_buffers(self) -> Buffers {
        let Exchange {
            mut stream,
            mut request,
            mut headers,
            mut pending,
            mut trailers,
            mut head,
            ..
        } = self;
        stream.next();
        request.clear();
        headers.clear();
        pending.clear();
        trailers.clear();
        head.clear();
        Buffers {
            stream,
            request,
            headers,
            pending,
            trailers,
            head,
        }
    }

    /// Prepares the HTTP/1.1 request for the backend, as HTTP/1.1 requests are edited.
    pub fn forward(
        &mut self,
        request: &Request,
        forward: Forward<'_>,
        listener: &HttpListener,
        client: SocketAddr,
        end_stream: bool,
    ) {
        let message = Message {
            buf: &request.bytes,
            head: &request.head,
            fields: &request.fields,
        };
        let forwarded = Forwarded {
            cluster: forward.cluster,
            frontend: forward.frontend,
            rewrite: forward.rewrite.as_ref(),
            sticky_cookie: forward.sticky_cookie,
            sticky_id: forward.sticky_id.as_deref(),
            hsts: forward.hsts,
        };
        let stream = &mut self.stream;
        connection::prepare_forward(
            stream,
            listener,
            client,
            message,
            forwarded,
            None,
            &mut self.request,
        );
        self.sticky_id = forward.sticky_id;
        self.stream.retry = forward.retry;
        self.framing = match request.head.body {
            BodyFraming::Chunked => Framing::Chunked,
            _ => Framing::Plain,
        };
        self.request_ended = end_stream;
        self.never_indexed.clone_from(&request.never_indexed);
        self.state = State::Queued;
    }

    /// The backend connection is up (`New`) or was taken from the pool (`Reused`).
    pub fn connected(&mut self, backend_sticky_id: &str, back_use: BackUse) {
        self.state = State::Forwarding;
        self.back_use = back_use;
        let stream = &mut self.stream;
        if let Some(name) = &stream.sticky_name {
            if stream.requested_sticky.as_deref() != Some(backend_sticky_id) {
                stream.sticky_cookie = Some((name.clone(), backend_sticky_id.to_string()));
            }
        }
    }

    /// Whether request body bytes are still expected for the backend.
    pub fn takes_body(&self) -> bool {
        !self.request_ended
            && matches!(
                self.state,
                State::Queued | State::Connecting | State::Forwarding
            )
    }

    /// Request body bytes from DATA frames; `end` when the client ended the stream.
    pub fn push_body(&mut self, data: &[u8], end: bool) {
        self.owed_credit = self
            .owed_credit
            .saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
        self.stream.bytes_in = self.stream.bytes_in.saturating_add(data.len() as u64);
        match self.framing {
            Framing::Plain => self.request.extend_from_slice(data),
            Framing::Chunked => {
                push_chunk(&mut self.request, data);
                if end {
                    self.request.extend_from_slice(b"0\r\n\r\n");
                }
            }
        }
        self.request_ended |= end;
    }

    /// The request's trailers (HTTP/1.1 field lines), which end it. Only a chunked body can
    /// carry them to an HTTP/1.1 backend; with a Content-Length they are dropped.
    pub fn push_trailers(&mut self, fields: &[u8]) {
        if self.framing == Framing::Chunked {
            self.request.extend_from_slice(b"0\r\n");
            self.request.extend_from_slice(fields);
            self.request.extend_from_slice(b"\r\n");
        }
        self.request_ended = true;
    }

    /// The request bytes waiting for the backend.
    pub fn request_out(&self) -> &[u8] {
        self.request.get(self.request_sent..).unwrap_or_default()
    }

    /// The fields the client marked never indexed, when the request head is still to be
    /// written (from its start): an HTTP/2 backend gets them never indexed too.
    pub fn head_never_indexed(&self) -> Option<&NeverIndexed> {
        (self.request_sent == 0 && !self.request.is_empty()).then_some(&self.never_indexed)
    }

    /// `count` request bytes were written to the backend. Once all are, their flow-control
    /// credit goes back to the client.
    pub fn request_written(
        &mut self,
        count: usize,
        codec: &mut Connection,
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        self.request_sent = self.request_sent.saturating_add(count);
        self.stream.used_backend = true;
        if self.request_sent < self.request.len() {
            return;
        }
        // A request that may go again (see `Exchange::retry`) is kept until its response.
        if self.stream.retry == Retry::Never {
            self.request.clear();
            self.request_sent = 0;
        }
        if self.owed_credit > 0 {
            codec.release(self.id, self.owed_credit, out);
            self.owed_credit = 0;
        }
        if self.request_ended && self.stream.request_sent_at.is_none() {
            self.stream.request_sent_at = Some(now);
        }
    }

    /// Whether the whole request reached the backend.
    pub fn request_done(&self) -> bool {
        self.request_ended && self.request_out().is_empty()
    }

    /// After its backend connection failed: a request that failed on a reused connection
    /// before any byte of response, and may be sent again (idempotent, without a body), is
    /// queued for a new connection, once (RFC 9112 §9.3.1), as HTTP/1.1 requests are.
    /// Returns whether it was.
    pub fn retry(&mut self) -> bool {
        let may_retry = self.back_use == BackUse::Reused
            && self.stream.retry == Retry::Once
            && self.awaits_response()
            && self.back_buf.as_ref().is_none_or(Buffer::is_empty);
        if !may_retry {
            return false;
        }
        self.stream.retry = Retry::Never;
        self.back_use = BackUse::New;
        self.request_sent = 0;
        self.backend = Persistence::KeepAlive;
        self.state = State::Queued;
        true
    }

    /// Gives back the credit of request bytes that will never be written (the exchange
    /// ends before its request did).
    pub fn release_credit(&mut self, codec: &mut Connection, out: &mut Vec<u8>) {
        if self.owed_credit > 0 {
            codec.release(self.id, self.owed_credit, out);
            self.owed_credit = 0;
        }
    }

    /// Whether the response head is still awaited from the backend (a back timeout is then
    /// a 504).
    pub fn awaits_response(&self) -> bool {
        matches!(self.response, ResponseSide::AwaitingHead)
    }

    /// Whether response data waits for the client's flow-control windows.
    pub fn waits_for_client(&self) -> bool {
        let is_full = self.back_buf.as_ref().is_some_and(Buffer::is_full);
        matches!(self.response, ResponseSide::Body(_)) && (!self.pending.is_empty() || is_full)
    }

    /// Whether END_STREAM was sent.
    pub fn is_done(&self) -> bool {
        matches!(self.response, ResponseSide::Done)
    }

    /// Nothing more goes out for this exchange (it was reset).
    pub fn mark_done(&mut self) {
        self.pending.clear();
        self.response = ResponseSide::Done;
    }

    /// Whether nothing of the response was sent yet: a failure can still be answered.
    pub fn can_answer(&self) -> bool {
        self.awaits_response()
    }

    /// Whether the backend connection can carry another request: the whole request went,
    /// the whole response came, and nothing more.
    pub fn leaves_backend_clean(&self) -> bool {
        self.is_done()
            && self.request_done()
            && self.backend == Persistence::KeepAlive
            && self.back_buf.as_ref().is_none_or(Buffer::is_empty)
    }

    /// Parses the response head in the first `limit` bytes of the back buffer (those the
    /// stream's faults let go) and sends it, edited as HTTP/1.1 responses are. Returns whether
    /// a head was taken.
    /// `never_indexed`: the fields the backend marked never indexed, which go on so.
    pub fn read_head(
        &mut self,
        codec: &mut Connection,
        listener: &HttpListener,
        limit: usize,
        never_indexed: &NeverIndexed,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<bool, Failure> {
        let method = self.stream.method.unwrap_or(Method::Get);
        let Some(back_buf) = self.back_buf.as_mut() else {
            return Ok(false);
        };
        if back_buf.is_empty() || limit == 0 {
            return Ok(false);
        }
        let all = back_buf.data();
        let buf = all.get(..limit).unwrap_or(all);
        let head = match parse_response_head(buf, &listener.limits, method, &mut self.headers) {
            Ok(Parsed::Complete(head)) => head,
            Ok(Parsed::Partial) if back_buf.is_full() && buf.len() == all.len() => {
                return Err(Failure::Answer(502, "response head too large"));
            }
            Ok(Parsed::Partial) => return Ok(false),
            Err(error) => {
                log::warn!("stream {}: {error}: {}", self.id, error.violation());
                self.backend = Persistence::Close;
                return Err(Failure::Answer(502, "invalid response head"));
            }
        };
        if head.status == 101 {
            // No upgrade is offered over HTTP/2: a switch would be to nothing.
            self.backend = Persistence::Close;
            return Err(Failure::Answer(502, "101 without an upgrade request"));
        }
        if head.status < 200 {
            // An interim head (100 Continue, 103 Early Hints) goes on as is, before the final
            // one: the request can no longer be sent again.
            self.stream.retry = Retry::Never;
            let interim = ParsedResponse {
                head: &head,
                fields: &self.headers,
                buf,
                never_indexed,
            };
            codec
                .send_response(self.id, interim, false, now, out)
                .map_err(|_| Failure::Reset)?;
            back_buf.consume(head.head_len);
            return Ok(true);
        }
        if head.persistence == Persistence::Close {
            self.backend = Persistence::Close;
        }
        let edits = self.stream.response_edits(&listener.config.sozu_id_header);
        let mut edited = std::mem::take(&mut self.head);
        editor::write_response_head(buf, &head, &self.headers, &edits, &mut edited);
        let body = Body::new(head.body, &listener.limits);
        back_buf.consume(head.head_len);
        self.stream.first_byte_time = self
            .stream
            .request_sent_at
            .map(|sent| now.saturating_duration_since(sent));
        self.response_never_indexed.clone_from(never_indexed);
        let sent = self.send_head(codec, listener, &edited, body, now, out);
        self.head = edited;
        sent.map(|()| true)
    }

    /// Sends an HTTP/1.1 head (the backend's, edited, or the proxy's answer) as HEADERS,
    /// the fields named in `response_never_indexed` never indexed.
    fn send_head(
        &mut self,
        codec: &mut Connection,
        listener: &HttpListener,
        head_bytes: &[u8],
        body: Body,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let method = self.stream.method.unwrap_or(Method::Get);
        let Ok(Parsed::Complete(head)) =
            parse_response_head(head_bytes, &listener.limits, method, &mut self.headers)
        else {
            return Err(Failure::Answer(502, "invalid response head"));
        };
        let end_stream = body.is_done() && self.pending.is_empty();
        let response = ParsedResponse {
            head: &head,
            fields: &self.headers,
            buf: head_bytes,
            never_indexed: &self.response_never_indexed,
        };
        if codec
            .send_response(self.id, response, end_stream, now, out)
            .is_err()
        {
            return Err(Failure::Reset);
        }
        self.stream.status = Some(head.status);
        self.stream.bytes_out = self.stream.bytes_out.saturating_add(head.head_len as u64);
        self.response = if end_stream {
            ResponseSide::Done
        } else {
            ResponseSide::Body(body)
        };
        Ok(())
    }

    /// Renders the proxy's answer (an error page, a fixed response, a redirection) and sends
    /// it as the stream's response.
    pub fn answer(
        &mut self,
        codec: &mut Connection,
        listener: &HttpListener,
        answer: Rendered<'_>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let mut rendered = Vec::with_capacity(512);
        connection::render(&mut self.stream, listener, answer, false, &mut rendered);
        let head_len =
            memchr::memmem::find(&rendered, b"\r\n\r\n").map_or(rendered.len(), |end| end + 4);
        self.pending.clear();
        if self.stream.method != Some(Method::Head) {
            self.pending
                .extend_from_slice(rendered.get(head_len..).unwrap_or_default());
        }
        self.pending_end = true;
        let head = rendered.get(..head_len).unwrap_or_default();
        self.response_never_indexed.clear();
        self.send_head(codec, listener, head, Body::Done, now, out)
    }

    /// Moves response body bytes, of the first `limit` bytes of the back buffer (those the
    /// stream's faults let go), into `pending`, without their chunked coding. Returns whether
    /// anything moved.
    pub fn decode_body(&mut self, limit: usize) -> Result<bool, Failure> {
        if !self.pending.is_empty() || self.pending_end {
            return Ok(false);
        }
        let ResponseSide::Body(body) = &mut self.response else {
            return Ok(false);
        };
        let Some(back_buf) = self.back_buf.as_mut() else {
            return Ok(false);
        };
        let all = back_buf.data();
        let input = all.get(..limit).unwrap_or(all);
        let pending = &mut self.pending;
        let trailers = &mut self.trailers;
        let taken = match body {
            Body::Chunked(chunked) => {
                let progress = chunked.feed_with_trailers(
                    input,
                    |data| pending.extend_from_slice(data),
                    |byte| trailers.push(byte),
                );
                match progress {
                    Ok(BodyProgress::Partial) => input.len(),
                    Ok(BodyProgress::Complete { len }) => {
                        *body = Body::Done;
                        len
                    }
                    Err(_) => {
                        self.backend = Persistence::Close;
                        return Err(Failure::Reset);
                    }
                }
            }
            _ => {
                let count = body.take(input).map_err(|()| Failure::Reset)?;
                pending.extend_from_slice(input.get(..count).unwrap_or_default());
                count
            }
        };
        back_buf.consume(taken);
        self.pending_end = body.is_done();
        Ok(taken > 0)
    }

    /// The backend closed its connection: a body that ends with it is complete, any other
    /// is cut.
    pub fn backend_closed(&mut self) -> Result<(), Failure> {
        self.backend = Persistence::Close;
        match &mut self.response {
            ResponseSide::AwaitingHead => Err(Failure::Answer(
                502,
                "the backend closed the connection before answering",
            )),
            ResponseSide::Body(Body::UntilClose)
                if self.back_buf.as_ref().is_some_and(|buf| !buf.is_empty()) =>
            {
                // Bytes still in the buffer (held by the client's windows or the stream's
                // faults) are the end of the body: it ends at the next close seen once they
                // are taken.
                Ok(())
            }
            ResponseSide::Body(body @ Body::UntilClose) => {
                *body = Body::Done;
                if self.pending.is_empty() {
                    self.pending_end = true;
                }
                Ok(())
            }
            ResponseSide::Body(Body::Done) | ResponseSide::Done => Ok(()),
            ResponseSide::Body(_) => {
                let unread = self.back_buf.as_ref().is_some_and(|buf| !buf.is_empty());
                if unread { Ok(()) } else { Err(Failure::Reset) }
            }
        }
    }

    /// Sends what the windows allow of the pending response data, at most a quantum.
    /// Returns whether anything was sent.
    pub fn send_body(
        &mut self,
        codec: &mut Connection,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<bool, Failure> {
        if !matches!(self.response, ResponseSide::Body(_)) {
            return Ok(false);
        }
        if self.pending.is_empty() && !self.pending_end {
            return Ok(false);
        }
        let take = self.pending.len().min(QUANTUM);
        let is_last = self.pending_end && take == self.pending.len();
        let has_trailers = trailer_fields(&self.trailers).next().is_some();
        let chunk = self.pending.get(..take).unwrap_or_default();
        // With trailers, the data does not end the stream: their HEADERS frame does. An
        // empty last chunk is then no frame at all.
        let sent = if has_trailers && chunk.is_empty() {
            0
        } else {
            codec
                .send_data(self.id, chunk, is_last && !has_trailers, now, out)
                .map_err(|_| Failure::Reset)?
        };
        self.pending.drain(..sent);
        self.stream.bytes_out = self.stream.bytes_out.saturating_add(sent as u64);
        if is_last && sent == take {
            if has_trailers {
                codec
                    .send_trailers(self.id, trailer_fields(&self.trailers), out)
                    .map_err(|_| Failure::Reset)?;
            }
            self.response = ResponseSide::Done;
            return Ok(true);
        }
        Ok(sent > 0)
    }

    /// Whether the backend may be read for this exchange: a response is awaited and the
    /// back buffer has room.
    pub fn wants_backend_input(&self) -> bool {
        let has_room = self.back_buf.as_ref().is_some_and(|buf| !buf.is_full());
        let awaited = match &self.response {
            ResponseSide::AwaitingHead => true,
            ResponseSide::Body(body) => !body.is_done(),
            ResponseSide::Done => false,
        };
        has_room && awaited
    }

    /// Ends the exchange early for the proxy: the stream is reset when it was not done.
    pub fn reset(&mut self, codec: &mut Connection, code: ErrorCode, out: &mut Vec<u8>) {
        self.release_credit(codec, out);
        if !self.is_done() {
            codec.reset(self.id, code, out);
        }
        self.backend = Persistence::Close;
    }
}

/// The fields of a trailer section already checked by the chunked parser (`name:value`
/// lines ended by CRLF), value whitespace trimmed, but the connection-specific ones, which
/// HTTP/2 forbids (RFC 9113 §8.2.2).
pub(super) fn trailer_fields(section: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    const CONNECTION_SPECIFIC: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    ];
    section.split(|&byte| byte == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&byte| byte == b':')?;
        let (name, value) = (line.get(..colon)?, line.get(colon + 1..)?);
        let value = value.trim_ascii();
        let is_connection_specific = CONNECTION_SPECIFIC
            .iter()
            .any(|forbidden| name.eq_ignore_ascii_case(forbidden));
        (!is_connection_specific).then_some((name, value))
    })
}

/// Appends `data` to `out` as one chunk of an HTTP/1.1 chunked body (size line, data, CRLF),
/// without allocating; nothing for empty data, which would read as the last chunk.
pub(super) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(Hex(out), "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes formatted text (a chunk size) into a byte vector, without allocating.
struct Hex<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Hex<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
