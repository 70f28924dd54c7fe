//! A stream: one request and its response, from the first byte of the request head to the
//! end of the response, as typed phases.
//!
//! A stream owns no socket and no buffer: the connection that carries it (the HTTP/1 codec
//! in [`super::connection`]) owns the front side and reads and writes for it. HTTP/1 carries
//! one stream at a time; the state here is all a request needs, so a connection carrying
//! many can hold many.

use std::{
    ops::{Deref, DerefMut},
    time::{Duration, Instant},
};

use sozu_command_lib::request::{HeaderEdit, Hsts};

use crate::protocol::http::{
    body::Body,
    editor::ResponseEdits,
    parser::{Header, Method, Persistence, RequestHead, Version},
    route::{Close, Retry},
};

/// Where a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Reading a request head.
    #[default]
    Head,
    /// Waiting for the connection to a backend.
    Connecting,
    /// Sending the request and relaying the response.
    Forwarding,
    /// Writing a response of the proxy; then close, or the next request.
    Answering(Close),
}

/// How far the request went to the backend.
#[derive(Debug, Clone, Default)]
pub enum RequestSide {
    /// The head and then the body bytes the framing allows are being sent.
    Sending(Body),
    /// All of it was sent (or nothing is to be sent yet).
    #[default]
    Sent,
}

/// How far the response came from the backend.
#[derive(Debug, Clone, Default)]
pub enum ResponseSide {
    /// Nothing read for this request yet.
    #[default]
    AwaitingHead,
    /// Bytes of a head (or of interim heads) arrived; the final head is not complete.
    ReadingHead,
    /// The final head was parsed; its edited head and then its body go to the client.
    Relaying { body: Body, relay: Relay },
}

/// How a response body reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// As the backend sent it.
    AsIs,
    /// Without its chunked coding, to an HTTP/1.0 client: the body ends with the connection.
    Dechunked,
    /// The backend accepted a WebSocket upgrade (101): after the head, the connection becomes
    /// a pipe.
    SwitchToPipe,
}

/// Per-request state, reset for each request.
pub struct Stream {
    pub phase: Phase,
    /// When the first byte of the request head arrived.
    pub head_started: Option<Instant>,
    pub method: Option<Method>,
    /// The cluster the request was routed to; empty when none.
    pub cluster_id: String,
    pub host: String,
    pub path: String,
    pub request_id: String,
    pub request: RequestSide,
    /// Bytes of this request sent to the backend.
    pub request_sent: u64,
    pub response: ResponseSide,
    /// Whether the client connection stays open after this stream.
    pub client: Persistence,
    /// Whether the backend connection may carry another request after this stream.
    pub backend: Persistence,
    /// The request's HTTP version.
    pub version: Version,
    /// The request offers the backend a WebSocket upgrade.
    pub offers_upgrade: bool,
    /// The sticky cookie's name, when the cluster is sticky.
    pub sticky_name: Option<String>,
    /// The backend the request's sticky cookie names.
    pub requested_sticky: Option<String>,
    /// Sticky cookie to set on the response: (name, backend sticky id).
    pub sticky_cookie: Option<(String, String)>,
    /// Header rules of the frontend that apply to the response.
    pub response_rules: Vec<HeaderEdit>,
    pub hsts: Option<Hsts>,
    pub retry: Retry,
    /// When the request was routed, its head fully sent to the backend, and its response head
    /// read.
    pub routed_at: Option<Instant>,
    pub request_sent_at: Option<Instant>,
    pub first_byte_time: Option<Duration>,
    pub method_text: String,
    pub user_agent: String,
    /// The status sent to the client, and whether the proxy wrote the answer itself.
    pub status: Option<u16>,
    pub answered_by_proxy: bool,
    /// Request bytes read from the client, response bytes written to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// A backend connection served this request.
    pub used_backend: bool,
    /// How long the connect of the backend connection this request waited for took (none
    /// when it went on a connection already established: a kept, pooled or shared one).
    pub connect_time: Option<Duration>,
    /// The stream was recorded (metrics and access log).
    pub recorded: bool,
}

impl Stream {
    /// The state before a request: no byte of it read yet.
    pub const FRESH: Stream = Stream {
        phase: Phase::Head,
        head_started: None,
        method: None,
        cluster_id: String::new(),
        host: String::new(),
        path: String::new(),
        request_id: String::new(),
        request: RequestSide::Sent,
        request_sent: 0,
        response: ResponseSide::AwaitingHead,
        client: Persistence::KeepAlive,
        backend: Persistence::KeepAlive,
        version: Version::Http11,
        offers_upgrade: false,
        sticky_name: None,
        requested_sticky: None,
        sticky_cookie: None,
        response_rules: Vec::new(),
        hsts: None,
        retry: Retry::Never,
        routed_at: None,
        request_sent_at: None,
        first_byte_time: None,
        method_text: String::new(),
        user_agent: String::new(),
        status: None,
        answered_by_proxy: false,
        bytes_in: 0,
        bytes_out: 0,
        used_backend: false,
        connect_time: None,
        recorded: false,
    };
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::FRESH
    }
}

/// What a lent [`StreamBox`] reads as.
static FRESH: Stream = Stream::FRESH;

/// The stream of an HTTP/1 connection, in a box that the connection lends to its listener's
/// spares while it waits for its next request (see [`super::spares`]): a waiting connection
/// then holds a null pointer instead of the whole per-request state.
///
/// A lent stream reads as [`Stream::FRESH`], which is what the stream of a waiting connection
/// is ([`StreamBox::lend`] takes only such a stream). Writing to a lent stream gives it a new
/// box: the spares give one back before a request is read, so only paths that start no
/// request (a timeout's answer) can do so, at the cost of an allocation.
#[derive(Default)]
pub struct StreamBox(Option<Box<Stream>>);

impl StreamBox {
    /// Takes the stream out if it is held and waits for a request: nothing of one read,
    /// nothing routed, so it is as [`Stream::next`] (or a new connection) left it, fresh but
    /// for its texts' allocations. Else `None`, and the stream stays.
    pub fn lend(&mut self) -> Option<Box<Stream>> {
        let stream = self.0.as_deref()?;
        let is_waiting = stream.phase == Phase::Head
            && stream.head_started.is_none()
            && stream.routed_at.is_none();
        if !is_waiting {
            return None;
        }
        self.0.take()
    }

    /// Gives a lent stream `stream` as its box; a stream held (a new box written to while
    /// lent) stays, and `stream` is dropped.
    pub fn put(&mut self, stream: Box<Stream>) {
        if self.0.is_none() {
            self.0 = Some(stream);
        }
    }

    /// The stream, unless it is lent.
    pub fn held_mut(&mut self) -> Option<&mut Stream> {
        self.0.as_deref_mut()
    }

    /// Whether the stream is lent.
    #[cfg(test)]
    pub fn is_lent(&self) -> bool {
        self.0.is_none()
    }
}

impl Deref for StreamBox {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        self.0.as_deref().unwrap_or(&FRESH)
    }
}

impl DerefMut for StreamBox {
    fn deref_mut(&mut self) -> &mut Stream {
        self.0.get_or_insert_with(Box::default)
    }
}

/// The texts of a stream, whose allocations pass from one stream to the next.
struct Texts([String; 6]);

impl Texts {
    /// Empties every text, keeping its allocation.
    fn clear(&mut self) {
        for text in &mut self.0 {
            text.clear();
        }
    }
}

impl Stream {
    /// The next stream on the same connection, keeping the allocations of this one's texts.
    pub fn next(&mut self) {
        let mut texts = self.take_texts();
        texts.clear();
        *self = Stream::default();
        self.put_texts(texts);
    }

    /// Takes the stream's texts out, leaving empty ones (which hold no memory).
    fn take_texts(&mut self) -> Texts {
        Texts([
            std::mem::take(&mut self.cluster_id),
            std::mem::take(&mut self.host),
            std::mem::take(&mut self.path),
            std::mem::take(&mut self.request_id),
            std::mem::take(&mut self.method_text),
            std::mem::take(&mut self.user_agent),
        ])
    }

    /// The bytes the stream's texts hold.
    #[cfg(test)]
    pub fn texts_capacity(&self) -> usize {
        [
            &self.cluster_id,
            &self.host,
            &self.path,
            &self.request_id,
            &self.method_text,
            &self.user_agent,
        ]
        .iter()
        .map(|text| text.capacity())
        .sum()
    }

    /// Gives the stream `texts` as its texts.
    fn put_texts(&mut self, texts: Texts) {
        let Texts([cluster_id, host, path, request_id, method_text, user_agent]) = texts;
        self.cluster_id = cluster_id;
        self.host = host;
        self.path = path;
        self.request_id = request_id;
        self.method_text = method_text;
        self.user_agent = user_agent;
    }

    /// Takes the texts of the request `head` (parsed from `buf`, with its `fields`) into the
    /// stream's kept allocations: host and path (routing, faults, answers), and the method and
    /// user agent, which only the access log shows, when a line will be written
    /// (`for_access_log`).
    pub fn describe(
        &mut self,
        buf: &[u8],
        head: &RequestHead,
        fields: &[Header],
        for_access_log: bool,
    ) {
        let host = head
            .authority
            .map(|a| a.span.slice(buf))
            .unwrap_or_default();
        set_text(&mut self.host, host);
        set_text(&mut self.path, head.path.slice(buf));
        self.method = Some(head.method);
        if !for_access_log {
            return;
        }
        set_text(&mut self.method_text, head.method_span.slice(buf));
        let agent = fields
            .iter()
            .find(|field| field.name.slice(buf).eq_ignore_ascii_case(b"user-agent"))
            .map(|agent| agent.value.slice(buf));
        set_text(&mut self.user_agent, agent.unwrap_or_default());
    }

    /// The cluster the request was routed to.
    pub fn cluster_id(&self) -> Option<&str> {
        (!self.cluster_id.is_empty()).then_some(self.cluster_id.as_str())
    }

    /// Whether the request came in HTTP/1.0 (no interim responses, no transfer codings).
    pub fn is_http10(&self) -> bool {
        self.version == Version::Http10
    }

    /// Whether the final response head was parsed.
    pub fn has_response_head(&self) -> bool {
        matches!(self.response, ResponseSide::Relaying { .. })
    }

    /// The edits of the response to this stream (its request id, the frontend's rules, HSTS,
    /// the sticky cookie), for a client connection that stays, in HTTP/1.1 or HTTP/2.
    pub fn response_edits<'a>(&'a self, request_id_header: &'a str) -> ResponseEdits<'a> {
        ResponseEdits {
            request_id_header,
            request_id: &self.request_id,
            rules: &self.response_rules,
            hsts: self.hsts.as_ref(),
            set_sticky: self
                .sticky_cookie
                .as_ref()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            close: false,
            upgrade: false,
            client_http10: false,
        }
    }

    /// Whether the stream waits for the backend's response head (a back timeout is then a
    /// 504).
    pub fn awaits_response(&self) -> bool {
        self.phase == Phase::Forwarding && !self.has_response_head()
    }
}

/// Replaces `text` with `bytes` (invalid UTF-8 replaced), in its allocation. Request texts
/// are almost always UTF-8: they are then copied as they are.
fn set_text(text: &mut String, bytes: &[u8]) {
    text.clear();
    match std::str::from_utf8(bytes) {
        Ok(valid) => text.push_str(valid),
        Err(_) => text.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parser::{Limits, Parsed, parse_request_head};

    /// The stream of `raw`'s head, described with or without an access log line to come.
    fn described(raw: &[u8], for_access_log: bool) -> Stream {
        let mut fields = Vec::new();
        let Ok(Parsed::Complete(head)) =
            parse_request_head(raw, &Limits::default(), b"", &mut fields)
        else {
            panic!("not a complete head: {raw:?}");
        };
        let mut stream = Stream::default();
        stream.describe(raw, &head, &fields, for_access_log);
        stream
    }

    #[test]
    fn method_and_user_agent_are_kept_only_for_the_access_log() {
        let raw = b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\n";
        let logged = described(raw, true);
        assert_eq!(
            (logged.host.as_str(), logged.path.as_str()),
            ("example.com", "/a?b")
        );
        assert_eq!(
            (logged.method_text.as_str(), logged.user_agent.as_str()),
            ("GET", "curl/8.0")
        );
        let unlogged = described(raw, false);
        assert_eq!(
            (unlogged.host.as_str(), unlogged.path.as_str()),
            ("example.com", "/a?b")
        );
        assert_eq!(
            (unlogged.method_text.as_str(), unlogged.user_agent.as_str()),
            ("", "")
        );
    }

    #[test]
    fn texts_that_are_not_utf8_are_decoded_lossily() {
        let raw = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\xc3\r\n\r\n";
        let stream = described(raw, true);
        assert_eq!(stream.user_agent, "x\u{fffd}");
    }

    /// Every field of `stream`, as text: the pattern names them all.
    fn shown(stream: &Stream) -> String {
        let Stream {
            phase,
            head_started,
            method,
            cluster_id,
            host,
            path,
            request_id,
            request,
            request_sent,
            response,
            client,
            backend,
            version,
            offers_upgrade,
            sticky_name,
            requested_sticky,
            sticky_cookie,
            response_rules,
            hsts,
            retry,
            routed_at,
            request_sent_at,
            first_byte_time,
            method_text,
            user_agent,
            status,
            answered_by_proxy,
            bytes_in,
            bytes_out,
            used_backend,
            connect_time,
            recorded,
        } = stream;
        format!(
            "{phase:?} {head_started:?} {method:?} {cluster_id:?} {host:?} {path:?} \
             {request_id:?} {request:?} {request_sent:?} {response:?} {client:?} {backend:?} \
             {version:?} {offers_upgrade:?} {sticky_name:?} {requested_sticky:?} \
             {sticky_cookie:?} {response_rules:?} {hsts:?} {retry:?} {routed_at:?} \
             {request_sent_at:?} {first_byte_time:?} {method_text:?} {user_agent:?} {status:?} \
             {answered_by_proxy:?} {bytes_in:?} {bytes_out:?} {used_backend:?} {connect_time:?} \
             {recorded:?}"
        )
    }

    #[test]
    fn the_next_stream_is_fresh_but_keeps_its_texts_allocations() {
        let raw = b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\n";
        let mut stream = described(raw, true);
        let now = Instant::now();
        stream.phase = Phase::Forwarding;
        stream.head_started = Some(now);
        stream.cluster_id.push_str("cluster");
        stream.request_id.push_str("id");
        stream.request_sent = 1;
        stream.response = ResponseSide::ReadingHead;
        stream.client = Persistence::Close;
        stream.backend = Persistence::Close;
        stream.version = Version::Http10;
        stream.offers_upgrade = true;
        stream.sticky_name = Some("sticky".to_owned());
        stream.requested_sticky = Some("b".to_owned());
        stream.sticky_cookie = Some(("sticky".to_owned(), "b".to_owned()));
        stream.hsts = Some(Hsts {
            enabled: true,
            max_age: Duration::from_secs(1),
            include_subdomains: false,
            preload: false,
            force_replace_backend: false,
        });
        stream.retry = Retry::Once;
        stream.routed_at = Some(now);
        stream.request_sent_at = Some(now);
        stream.first_byte_time = Some(Duration::from_millis(1));
        stream.status = Some(200);
        stream.answered_by_proxy = true;
        stream.bytes_in = 1;
        stream.bytes_out = 1;
        stream.used_backend = true;
        stream.connect_time = Some(Duration::from_millis(1));
        stream.recorded = true;
        let capacity = stream.texts_capacity();
        assert!(capacity > 0);
        stream.next();
        assert_eq!(shown(&stream), shown(&Stream::FRESH));
        assert_eq!(stream.texts_capacity(), capacity);
    }
}
