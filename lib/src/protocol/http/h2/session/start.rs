//! How a client connection becomes HTTP/2: detected before its first request (ALPN `h2` on
//! TLS, the connection preface on a cleartext `h2c` listener), then its HTTP/1 stage
//! replaced by the HTTP/2 stage, the bytes read so far kept as the start of the connection.

use super::{H2, Mux};
use crate::{
    protocol::http::{
        Http, HttpListener,
        connection::{Next, Step},
        h2::{Connection, frame::PREFACE},
    },
    session::{Context, SessionIo},
};

/// Which protocol a new connection speaks, from what is known before its first request.
pub(in crate::protocol::http) enum Detect {
    Http1,
    /// The bytes so far may be the start of the HTTP/2 preface: read more.
    NeedMore,
    H2,
}

/// Whether the client connection speaks HTTP/2: ALPN `h2` on TLS (or no ALPN on a listener
/// with `disable_http11`), the preface on a cleartext listener with `h2c`.
pub(in crate::protocol::http) fn detect(
    http: &Http,
    io: &SessionIo,
    listener: &HttpListener,
) -> Detect {
    let input = http.front_buf.data();
    if let Some(tls) = io.front.tls.as_ref() {
        if tls.is_handshaking() {
            return Detect::Http1;
        }
        let is_h2 = match tls.alpn_protocol() {
            Some(protocol) => protocol == b"h2",
            None => listener.tls.as_ref().is_some_and(|tls| tls.disable_http11),
        };
        return if is_h2 { Detect::H2 } else { Detect::Http1 };
    }
    if !listener.config.h2c || input.is_empty() {
        Detect::Http1
    } else if input.starts_with(PREFACE) {
        Detect::H2
    } else if PREFACE.starts_with(input) {
        Detect::NeedMore
    } else {
        Detect::Http1
    }
}

/// The HTTP/2 stage that replaces the HTTP/1 stage of a connection that speaks HTTP/2; the
/// bytes it read so far (taken from `http`) are the start of the HTTP/2 connection.
pub(in crate::protocol::http) fn start(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let config = listener.config.h2;
    let idle = config
        .stream_idle_timeout
        .unwrap_or_else(|| io.timeouts.back.max(std::time::Duration::from_secs(30)));
    let mut codec = Connection::new(
        config,
        idle,
        listener.config.sozu_id_header.as_bytes(),
        context.now,
    );
    let mut out = Vec::with_capacity(1024);
    codec.start(&mut out);
    let server_name = io
        .front
        .tls
        .as_ref()
        .and_then(|tls| tls.server_name())
        .map(str::to_string);
    io.front_timeout.cancel();
    Step::Become(Next::H2(Box::new(H2 {
        input: http.front_buf.take(),
        mux: Mux::new(codec, out, server_name, context.now),
    })))
}
