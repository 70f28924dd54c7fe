//! The exchange's translations without sockets: request bodies framed for HTTP/1.1, credit
//! given back only once written, response bodies decoded, backend closes judged.

use std::time::{Duration, Instant};

use sozu_command_lib::request::H2Config;

use super::{Buffers, Exchange, Failure, Framing, ResponseSide};
use crate::{
    pool::Pool,
    protocol::http::{
        body::Body,
        h2::Connection,
        parser::{BodyFraming, Limits, Persistence},
    },
};

fn exchange(framing: Framing) -> Exchange {
    let mut exchange = Exchange::with_buffers(1, Buffers::default());
    exchange.framing = framing;
    exchange
}

fn codec() -> Connection {
    Connection::new(
        H2Config::default(),
        Duration::from_secs(30),
        b"sozu-id",
        Instant::now(),
    )
}

/// An exchange relaying a response body framed as `framing`, with `input` read from the
/// backend.
fn relaying(framing: BodyFraming, input: &[u8], pool: &Pool) -> Exchange {
    let mut exchange = exchange(Framing::Plain);
    exchange.response = ResponseSide::Body(Body::new(framing, &Limits::default()));
    let mut buffer = pool.checkout();
    buffer.space()[..input.len()].copy_from_slice(input);
    buffer.fill(input.len());
    exchange.back_buf = Some(buffer);
    exchange
}

#[test]
fn a_body_without_content_length_is_sent_chunked_with_its_trailers() {
    let mut exchange = exchange(Framing::Chunked);
    exchange.push_body(b"hello", false);
    exchange.push_body(b"", false);
    exchange.push_body(b" world", false);
    exchange.push_trailers(b"grpc-status: 0\r\n");
    assert_eq!(
        exchange.request_out(),
        b"5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\n"
    );
    let mut ended = self::exchange(Framing::Chunked);
    ended.push_body(b"abc", true);
    assert_eq!(ended.request_out(), b"3\r\nabc\r\n0\r\n\r\n");
    assert!(!ended.takes_body());
}

#[test]
fn a_body_with_content_length_goes_as_is_and_its_trailers_are_dropped() {
    let mut exchange = exchange(Framing::Plain);
    exchange.push_body(b"abc", false);
    exchange.push_trailers(b"x: y\r\n");
    assert_eq!(exchange.request_out(), b"abc");
    assert_eq!(exchange.stream.bytes_in, 3);
}

#[test]
fn credit_goes_back_only_once_the_bytes_are_written() {
    let mut codec = codec();
    let mut out = Vec::new();
    let mut exchange = exchange(Framing::Plain);
    exchange.push_body(&[7; 1000], true);
    exchange.request_written(600, &mut codec, Instant::now(), &mut out);
    assert_eq!(exchange.owed_credit, 1000);
    assert!(!exchange.request_done());
    assert_eq!(exchange.request_out().len(), 400);
    exchange.request_written(400, &mut codec, Instant::now(), &mut out);
    assert_eq!(exchange.owed_credit, 0);
    assert!(exchange.request_done());
    assert!(exchange.stream.used_backend);
    assert!(exchange.stream.request_sent_at.is_some());
}

#[test]
fn a_chunked_response_is_decoded_and_ends_the_stream() {
    let pool = Pool::new(16_393, 1, 2);
    let mut exchange = relaying(
        BodyFraming::Chunked,
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        &pool,
    );
    assert_eq!(exchange.decode_body(usize::MAX), Ok(true));
    assert_eq!(exchange.pending, b"abcde");
    assert!(exchange.pending_end);
    assert!(exchange.back_buf.as_ref().is_some_and(|buf| buf.is_empty()));
    // Nothing more is decoded until the pending data is sent.
    assert_eq!(exchange.decode_body(usize::MAX), Ok(false));
}

#[test]
fn a_broken_chunked_response_resets_the_stream() {
    let pool = Pool::new(16_393, 1, 2);
    let mut exchange = relaying(BodyFraming::Chunked, b"zz\r\nabc\r\n", &pool);
    assert_eq!(exchange.decode_body(usize::MAX), Err(Failure::Reset));
    assert_eq!(exchange.backend, Persistence::Close);
}

#[test]
fn a_content_length_body_stops_at_its_length() {
    let pool = Pool::new(16_393, 1, 2);
    let mut exchange = relaying(BodyFraming::ContentLength(3), b"abcEXTRA", &pool);
    assert_eq!(exchange.decode_body(usize::MAX), Ok(true));
    assert_eq!(exchange.pending, b"abc");
    assert!(exchange.pending_end);
    // Bytes past the response stay: the connection cannot be reused.
    exchange.response = ResponseSide::Done;
    exchange.request_ended = true;
    assert!(!exchange.leaves_backend_clean());
}

#[test]
fn a_backend_close_is_judged_by_where_the_response_is() {
    let pool = Pool::new(16_393, 1, 2);
    let mut waiting = exchange(Framing::Plain);
    assert!(matches!(
        waiting.backend_closed(),
        Err(Failure::Answer(502, _))
    ));

    let mut until_close = relaying(BodyFraming::UntilClose, b"", &pool);
    assert_eq!(until_close.backend_closed(), Ok(()));
    assert!(until_close.pending_end);

    let mut cut = relaying(BodyFraming::ContentLength(10), b"", &pool);
    assert_eq!(cut.backend_closed(), Err(Failure::Reset));

    // The body's last bytes are still in the buffer: they go out first.
    let mut unread = relaying(BodyFraming::ContentLength(3), b"abc", &pool);
    assert_eq!(unread.backend_closed(), Ok(()));
    assert_eq!(unread.decode_body(usize::MAX), Ok(true));
    assert!(unread.pending_end);
}

/// A body that ends with the connection keeps what the buffer holds when the backend
/// closes (bytes the client's windows or the stream's faults held back): they go out, then
/// the body ends.
#[test]
fn a_close_delimited_body_keeps_its_buffered_end() {
    let pool = Pool::new(16_393, 1, 2);
    let mut exchange = relaying(BodyFraming::UntilClose, b"abc", &pool);
    exchange.pending.extend_from_slice(b"held");
    assert_eq!(exchange.backend_closed(), Ok(()));
    assert!(!exchange.pending_end);
    exchange.pending.clear();
    assert_eq!(exchange.decode_body(usize::MAX), Ok(true));
    assert_eq!(exchange.pending, b"abc");
    exchange.pending.clear();
    assert_eq!(exchange.backend_closed(), Ok(()));
    assert!(exchange.pending_end);
}

#[test]
fn only_a_complete_exchange_leaves_its_backend_connection_reusable() {
    let pool = Pool::new(16_393, 1, 2);
    let mut exchange = relaying(BodyFraming::ContentLength(3), b"", &pool);
    exchange.push_body(b"", true);
    assert!(!exchange.leaves_backend_clean(), "the response is not done");
    exchange.response = ResponseSide::Done;
    assert!(exchange.leaves_backend_clean());
    exchange.backend = Persistence::Close;
    assert!(!exchange.leaves_backend_clean());
}

#[test]
fn trailer_fields_are_trimmed_and_connection_specific_ones_dropped() {
    let section = b"Grpc-Status: 0\r\nConnection: close\r\nX-A:\t a b \r\nTE: trailers\r\n\r\n";
    let fields: Vec<(&[u8], &[u8])> = super::trailer_fields(section).collect();
    assert_eq!(
        fields,
        [(&b"Grpc-Status"[..], &b"0"[..]), (&b"X-A"[..], &b"a b"[..])]
    );
    assert_eq!(super::trailer_fields(b"\r\n").next(), None);
}

#[test]
fn the_buffers_of_an_exchange_done_with_serve_the_next_one_emptied() {
    let mut done = exchange(Framing::Plain);
    done.push_body(&[b'x'; 1000], true);
    let buffers = done.into_buffers();
    assert!(buffers.is_worth_keeping());
    let next = Exchange::with_buffers(3, buffers);
    assert!(next.request_out().is_empty());
    assert!(next.request.capacity() >= 1000, "the capacity stays");
    let mut large = exchange(Framing::Plain);
    large.push_body(&vec![0; 100_000], true);
    assert!(!large.into_buffers().is_worth_keeping());
}
