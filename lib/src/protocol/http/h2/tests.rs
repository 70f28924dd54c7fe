//! The codec driven as a client would: bytes written with the frame writers and an HPACK
//! encoder, fed to [`Connection::receive`], events and answers checked.

use std::time::{Duration, Instant};

use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;
use sozu_command_lib::request::H2Config;

use super::{
    connection::{Connection, Event, Progress, SendError},
    error::{Cause, ConnectionError, ErrorCode},
    frame::{self, Decoded, Frame, client},
    headers::{NeverIndexed, ParsedResponse},
};
use crate::protocol::http::parser::{self, BodyFraming, Limits, Method, Parsed, ResponseHead};

const IDLE: Duration = Duration::from_secs(30);

/// A client side: its HPACK encoder and the bytes it has written but not yet fed.
struct Client {
    encoder: Encoder<'static>,
    now: Instant,
    connection: Connection,
    /// What the server wrote.
    out: Vec<u8>,
}

impl Client {
    fn new(config: H2Config) -> Self {
        let now = Instant::now();
        let mut connection = Connection::new(config, IDLE, b"sozu-id", now);
        let mut out = Vec::new();
        connection.start(&mut out);
        let mut client = Self {
            encoder: Encoder::new(),
            now,
            connection,
            out,
        };
        let mut bytes = frame::PREFACE.to_vec();
        frame::write_settings(&mut bytes, &[]);
        assert_eq!(client.feed(&bytes), Ok(vec![]));
        client
    }

    fn block(&mut self, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        self.encoder.encode(fields.iter().copied())
    }

    /// Feeds `bytes` whole, frame by frame; the events, or the connection error.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ConnectionError> {
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let input = &bytes[at..];
            match self.connection.receive(input, self.now, &mut self.out)? {
                Progress::NeedMore => panic!("whole frames were fed"),
                Progress::Consumed { len, event } => {
                    events.extend(event);
                    at += len;
                }
            }
        }
        Ok(events)
    }

    /// The frames the server wrote since the last call.
    fn frames(&mut self) -> Vec<String> {
        let out = std::mem::take(&mut self.out);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Ok(Decoded::Frame { frame, len }) = frame::decode(&out[at..], 1 << 20) {
            frames.push(describe(&frame));
            at += len;
        }
        frames
    }

    fn request(&mut self, stream: u32, end_stream: bool) -> Vec<u8> {
        let block = self.block(&[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", b"/upload"),
        ]);
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, stream, &block, end_stream, 16_384);
        bytes
    }
}

fn describe(frame: &Frame<'_>) -> String {
    match frame {
        Frame::Settings { ack, .. } => format!("SETTINGS ack={ack}"),
        Frame::WindowUpdate { stream, increment } => format!("WINDOW_UPDATE {stream} {increment}"),
        Frame::Ping { ack, .. } => format!("PING ack={ack}"),
        Frame::RstStream { stream, code } => format!("RST_STREAM {stream} {code:?}"),
        Frame::GoAway { last_stream, code } => format!("GOAWAY {last_stream} {code:?}"),
        Frame::Headers {
            stream, end_stream, ..
        } => format!("HEADERS {stream} end_stream={end_stream}"),
        Frame::Data {
            stream,
            data,
            end_stream,
            ..
        } => format!("DATA {stream} {} end_stream={end_stream}", data.len()),
        Frame::Continuation { stream, .. } => format!("CONTINUATION {stream}"),
        Frame::Priority { stream } => format!("PRIORITY {stream}"),
        Frame::Unknown => "UNKNOWN".to_string(),
    }
}

fn error(code: ErrorCode, cause: Cause) -> Result<Vec<Event>, ConnectionError> {
    Err(ConnectionError { code, cause })
}

fn request_of(events: &[Event]) -> &super::headers::Request {
    match events {
        [Event::Request { request, .. }] => request,
        other => panic!("expected one request, got {other:?}"),
    }
}

#[test]
fn server_preface_advertises_limits_and_opens_the_connection_window() {
    let mut client = Client::new(H2Config::default());
    assert_eq!(
        client.frames(),
        [
            "SETTINGS ack=false",
            "WINDOW_UPDATE 0 983041",
            "SETTINGS ack=true"
        ]
    );
}

#[test]
fn preface_is_awaited_then_checked() {
    let now = Instant::now();
    let mut connection = Connection::new(H2Config::default(), IDLE, b"", now);
    let mut out = Vec::new();
    assert_eq!(
        connection.receive(&frame::PREFACE[..10], now, &mut out),
        Ok(Progress::NeedMore)
    );
    assert_eq!(
        connection.receive(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", now, &mut out),
        Err(ConnectionError {
            code: ErrorCode::ProtocolError,
            cause: Cause::BadPreface
        })
    );
    assert!(connection.is_finished());
}

#[test]
fn first_frame_must_be_settings() {
    let now = Instant::now();
    let mut connection = Connection::new(H2Config::default(), IDLE, b"", now);
    let mut out = Vec::new();
    let mut bytes = frame::PREFACE.to_vec();
    frame::write_ping(&mut bytes, [0; 8], false);
    assert!(matches!(
        connection.receive(&bytes, now, &mut out),
        Ok(Progress::Consumed { len: 24, .. })
    ));
    assert_eq!(
        connection.receive(&bytes[24..], now, &mut out),
        Err(ConnectionError {
            code: ErrorCode::ProtocolError,
            cause: Cause::FirstFrameNotSettings
        })
    );
}

#[test]
fn frames_round_trip_through_writer_and_reader() {
    let mut bytes = Vec::new();
    frame::write_data(&mut bytes, 3, b"hello", true);
    frame::write_ping(&mut bytes, *b"12345678", true);
    frame::write_rst_stream(&mut bytes, 5, ErrorCode::Cancel);
    frame::write_goaway(&mut bytes, 7, ErrorCode::EnhanceYourCalm);
    frame::write_window_update(&mut bytes, 0, 1000);
    frame::write_settings(&mut bytes, &[(4, 100)]);
    frame::write_headers(&mut bytes, 9, &[0x82; 40], false, 16_384);
    let mut frames = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, len }) = frame::decode(&bytes[at..], 16_384) {
        if let Frame::Data { data, .. } = &frame {
            assert_eq!(&bytes[at..][data.clone()], b"hello");
        }
        frames.push(frame);
        at += len;
    }
    assert_eq!(at, bytes.len());
    assert_eq!(
        frames[1],
        Frame::Ping {
            ack: true,
            data: *b"12345678"
        }
    );
    assert_eq!(
        frames[2],
        Frame::RstStream {
            stream: 5,
            code: ErrorCode::Cancel
        }
    );
    assert_eq!(
        frames[3],
        Frame::GoAway {
            last_stream: 7,
            code: ErrorCode::EnhanceYourCalm
        }
    );
    assert_eq!(
        frames[4],
        Frame::WindowUpdate {
            stream: 0,
            increment: 1000
        }
    );
    assert!(matches!(frames[5], Frame::Settings { ack: false, payload } if payload.len() == 6));
    assert!(matches!(
        frames[6],
        Frame::Headers { stream: 9, end_headers: true, end_stream: false, fragment, .. } if fragment.len() == 40
    ));
}

#[test]
fn large_header_block_is_split_into_continuation_frames() {
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &[0x82; 40_000], true, 16_384);
    let mut kinds = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, len }) = frame::decode(&bytes[at..], 16_384) {
        kinds.push(describe(&frame));
        at += len;
    }
    assert_eq!(
        kinds,
        [
            "HEADERS 1 end_stream=true",
            "CONTINUATION 1",
            "CONTINUATION 1"
        ]
    );
}

#[test]
fn partial_frame_asks_for_more() {
    let mut bytes = Vec::new();
    frame::write_data(&mut bytes, 1, b"hello", false);
    for end in 0..bytes.len() {
        assert_eq!(frame::decode(&bytes[..end], 16_384), Ok(Decoded::Partial));
    }
}

/// Each malformed frame and the connection error it gets.
#[test]
fn frame_errors_get_the_right_connection_error() {
    let cases: Vec<(Vec<u8>, ErrorCode, Cause)> = vec![
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_DATA, 0, 1, &[0; 16_385]);
            (b, ErrorCode::FrameSizeError, Cause::FrameTooLarge)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_DATA, 0, 0, b"x");
            (b, ErrorCode::ProtocolError, Cause::BadStreamId)
        },
        {
            let mut b = Vec::new();
            client::raw(
                &mut b,
                client::KIND_DATA,
                client::FLAG_PADDED,
                1,
                &[4, 1, 2],
            );
            (b, ErrorCode::ProtocolError, Cause::BadPadding)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_PING, 0, 0, &[0; 7]);
            (b, ErrorCode::FrameSizeError, Cause::BadFrameLength)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_PING, 0, 1, &[0; 8]);
            (b, ErrorCode::ProtocolError, Cause::BadStreamId)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_SETTINGS, 0, 0, &[0; 5]);
            (b, ErrorCode::FrameSizeError, Cause::BadFrameLength)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_SETTINGS, 1, 0, &[0; 6]);
            (b, ErrorCode::FrameSizeError, Cause::BadFrameLength)
        },
        {
            let mut b = Vec::new();
            frame::write_settings(&mut b, &[(2, 2)]);
            (b, ErrorCode::ProtocolError, Cause::BadSetting)
        },
        {
            let mut b = Vec::new();
            frame::write_settings(&mut b, &[(4, 1 << 31)]);
            (b, ErrorCode::FlowControlError, Cause::BadSetting)
        },
        {
            let mut b = Vec::new();
            frame::write_settings(&mut b, &[(5, 100)]);
            (b, ErrorCode::ProtocolError, Cause::BadSetting)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_PUSH_PROMISE, 4, 1, &[0, 0, 0, 2]);
            (b, ErrorCode::ProtocolError, Cause::PushPromise)
        },
        {
            let mut b = Vec::new();
            frame::write_window_update(&mut b, 0, 0);
            (b, ErrorCode::ProtocolError, Cause::ZeroWindowIncrement)
        },
        {
            let mut b = Vec::new();
            client::raw(&mut b, client::KIND_RST_STREAM, 0, 1, &[0; 3]);
            (b, ErrorCode::FrameSizeError, Cause::BadFrameLength)
        },
        {
            let mut b = Vec::new();
            client::continuation(&mut b, 1, &[0x82], true);
            (b, ErrorCode::ProtocolError, Cause::UnexpectedContinuation)
        },
        {
            let mut b = Vec::new();
            frame::write_data(&mut b, 1, b"x", false);
            (b, ErrorCode::ProtocolError, Cause::IdleStream)
        },
        {
            let mut b = Vec::new();
            frame::write_rst_stream(&mut b, 1, ErrorCode::Cancel);
            (b, ErrorCode::ProtocolError, Cause::IdleStream)
        },
        {
            let mut b = Vec::new();
            frame::write_window_update(&mut b, 0, frame::MAX_WINDOW);
            (b, ErrorCode::FlowControlError, Cause::WindowOverflow)
        },
    ];
    for (bytes, code, cause) in cases {
        let mut client = Client::new(H2Config::default());
        assert_eq!(client.feed(&bytes), error(code, cause), "{cause:?}");
        assert!(
            client
                .frames()
                .last()
                .is_some_and(|f| f.starts_with("GOAWAY 0"))
        );
        assert!(client.connection.is_finished());
    }
}

#[test]
fn request_becomes_the_http11_head() {
    let mut client = Client::new(H2Config::default());
    let block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com:8443"),
        (b":path", b"/a?b=c"),
        (b"cookie", b"a=1"),
        (b"accept", b"*/*"),
        (b"cookie", b"b=2"),
        (b"sozu-id", b"42"),
    ]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    let events = client.feed(&bytes).expect("valid request");
    let request = request_of(&events);
    assert_eq!(
        String::from_utf8_lossy(&request.bytes),
        "GET /a?b=c HTTP/1.1\r\nhost: example.com:8443\r\ncookie: a=1; b=2\r\naccept: */*\r\nsozu-id: 42\r\n\r\n"
    );
    assert_eq!(request.head.method, Method::Get);
    assert_eq!(request.head.body, BodyFraming::None);
    let authority = request.head.authority.expect("authority");
    assert_eq!(authority.host.slice(&request.bytes), b"example.com");
    assert_eq!(authority.port, Some(8443));
    assert_eq!(request.head.path.slice(&request.bytes), b"/a?b=c");
}

#[test]
fn request_body_without_length_is_chunked_for_http11() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, false);
    let events = client.feed(&bytes).expect("valid request");
    let request = request_of(&events);
    assert_eq!(request.head.body, BodyFraming::Chunked);
    assert!(
        request
            .bytes
            .ends_with(b"transfer-encoding: chunked\r\n\r\n")
    );
}

/// Requests that RFC 9113 §8 calls malformed: the stream is reset, the connection lives.
#[test]
fn malformed_requests_reset_their_stream() {
    let cases: &[&[(&[u8], &[u8])]] = &[
        &[(b":method", b"GET"), (b":path", b"/")],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b""),
        ],
        &[(b":method", b"GET"), (b":scheme", b"ftp"), (b":path", b"/")],
        &[
            (b":method", b"GET"),
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"Accept", b"x"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"a"),
            (b"accept", b"x"),
            (b":path", b"/"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"connection", b"close"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"transfer-encoding", b"chunked"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"te", b"gzip"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"host", b"b"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"x", b"a\r\nb"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"x", b" padded"),
        ],
        &[
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
        ],
        &[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"content-length", b"1, 2"),
        ],
        &[
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/"),
        ],
        &[(b":status", b"200")],
    ];
    for fields in cases {
        let mut client = Client::new(H2Config::default());
        client.frames();
        let block = client.block(fields);
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, 1, &block, true, 16_384);
        assert_eq!(client.feed(&bytes), Ok(vec![]), "{fields:?}");
        assert_eq!(
            client.frames(),
            ["RST_STREAM 1 ProtocolError"],
            "{fields:?}"
        );
        // The HPACK state stayed in step: the next request decodes.
        let bytes = client.request(3, true);
        assert_eq!(client.feed(&bytes).map(|e| e.len()), Ok(1), "{fields:?}");
    }
}

#[test]
fn connect_request_uses_the_authority_form() {
    let mut client = Client::new(H2Config::default());
    let block = client.block(&[
        (b":method", b"CONNECT"),
        (b":authority", b"example.com:443"),
    ]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, false, 16_384);
    let events = client.feed(&bytes).expect("valid CONNECT");
    let request = request_of(&events);
    assert!(
        request
            .bytes
            .starts_with(b"CONNECT example.com:443 HTTP/1.1\r\n")
    );
    assert_eq!(request.head.method, Method::Connect);
}

#[test]
fn self_dependent_headers_reset_the_stream_after_decoding_the_block() {
    let mut client = Client::new(H2Config::default());
    client.frames();
    let block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"a"),
        (b":path", b"/"),
        (b"x-indexed", b"1"),
    ]);
    let mut payload = vec![0, 0, 0, 1, 16];
    payload.extend_from_slice(&block);
    let mut bytes = Vec::new();
    client::raw(
        &mut bytes,
        client::KIND_HEADERS,
        client::FLAG_PRIORITY | client::FLAG_END_HEADERS | 0x1,
        1,
        &payload,
    );
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(client.frames(), ["RST_STREAM 1 ProtocolError"]);
    // `x-indexed` went into the dynamic table: the next block refers to it.
    let block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"a"),
        (b":path", b"/"),
        (b"x-indexed", b"1"),
    ]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 3, &block, true, 16_384);
    let events = client.feed(&bytes).expect("the HPACK state is in step");
    assert!(request_of(&events).bytes.ends_with(b"x-indexed: 1\r\n\r\n"));
}

#[test]
fn trailers_in_flight_on_a_reset_stream_are_dropped() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, false);
    client.feed(&bytes).expect("valid request");
    client
        .connection
        .reset(1, ErrorCode::Cancel, &mut client.out);
    client.frames();
    let block = client.block(&[(b"x-trailer", b"1")]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(client.frames(), Vec::<String>::new());
    let bytes = client.request(3, true);
    assert_eq!(client.feed(&bytes).map(|events| events.len()), Ok(1));
}

#[test]
fn closed_connection_window_without_waiting_stream_is_not_a_stall() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    let raw = b"HTTP/1.1 200 OK\r\n\r\n";
    let (head, fields) = response_head(raw);
    let now = client.now;
    client
        .connection
        .send_response(1, parsed(&head, &fields, raw), false, now, &mut client.out)
        .expect("open stream");
    assert_eq!(
        client
            .connection
            .send_data(1, &[0; 70_000], false, now, &mut client.out),
        Ok(65_535)
    );
    client
        .connection
        .reset(1, ErrorCode::Cancel, &mut client.out);
    assert_eq!(client.connection.next_deadline(), None);
    let mut expired = Vec::new();
    assert_eq!(
        client
            .connection
            .expire(now + IDLE * 2, &mut client.out, &mut expired),
        Ok(())
    );
}

#[test]
fn undecodable_header_block_ends_the_connection() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = Vec::new();
    // Index 200 is in neither table.
    frame::write_headers(&mut bytes, 1, &[0xff, 0x49], true, 16_384);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::CompressionError, Cause::Compression)
    );
}

#[test]
fn stream_ids_must_be_odd_and_increasing() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(2, true);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::ProtocolError, Cause::BadNewStreamId)
    );
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(5, true);
    assert!(client.feed(&bytes).is_ok());
    let bytes = client.request(3, true);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::StreamClosed, Cause::ClosedStream)
    );
}

#[test]
fn data_flows_to_the_session_and_credit_returns_on_release() {
    let mut client = Client::new(H2Config {
        initial_connection_window: 65_535,
        ..H2Config::default()
    });
    let mut bytes = client.request(1, false);
    frame::write_data(&mut bytes, 1, &[7; 16_000], false);
    frame::write_data(&mut bytes, 1, &[7; 16_000], false);
    frame::write_data(&mut bytes, 1, b"end", true);
    let events = client.feed(&bytes).expect("valid body");
    assert_eq!(events.len(), 4);
    assert!(matches!(
        &events[3],
        Event::Data { stream: 1, data, end_stream: true } if data.len() == 3
    ));
    client.frames();
    client.connection.release(1, 32_003, &mut client.out);
    // Stream 1 is closed for receiving: only the connection gets credit, once half its
    // window is owed.
    assert_eq!(client.frames(), Vec::<String>::new());
    let mut bytes = client.request(3, false);
    frame::write_data(&mut bytes, 3, &[7; 1_000], false);
    client.feed(&bytes).expect("valid body");
    client.connection.release(3, 1_000, &mut client.out);
    assert_eq!(client.frames(), ["WINDOW_UPDATE 0 33003"]);
}

#[test]
fn stream_window_update_follows_release() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = client.request(1, false);
    frame::write_data(&mut bytes, 1, &[7; 16_384], false);
    frame::write_data(&mut bytes, 1, &[7; 16_384], false);
    client.feed(&bytes).expect("valid body");
    client.frames();
    client.connection.release(1, 32_768, &mut client.out);
    assert_eq!(client.frames(), ["WINDOW_UPDATE 1 32768"]);
}

#[test]
fn data_beyond_the_stream_window_resets_the_stream() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = client.request(1, false);
    for _ in 0..3 {
        frame::write_data(&mut bytes, 1, &[7; 16_384], false);
    }
    frame::write_data(&mut bytes, 1, &[7; 16_383], false);
    assert_eq!(client.feed(&bytes).map(|events| events.len()), Ok(5));
    client.frames();
    let mut bytes = Vec::new();
    frame::write_data(&mut bytes, 1, &[7; 16], false);
    assert_eq!(
        client.feed(&bytes),
        Ok(vec![Event::Aborted {
            stream: 1,
            cause: Cause::WindowExceeded
        }])
    );
    assert_eq!(client.frames(), ["RST_STREAM 1 FlowControlError"]);
}

#[test]
fn data_beyond_the_connection_window_ends_the_connection() {
    let mut client = Client::new(H2Config {
        initial_connection_window: 65_535,
        ..H2Config::default()
    });
    let mut bytes = Vec::new();
    for stream in [1, 3] {
        bytes.extend(client.request(stream, false));
        frame::write_data(&mut bytes, stream, &[7; 16_384], false);
        frame::write_data(&mut bytes, stream, &[7; 16_384], false);
    }
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::FlowControlError, Cause::WindowExceeded)
    );
}

#[test]
fn body_must_match_content_length() {
    for (body, end) in [(&b"toolong"[..], false), (&b"ab"[..], true)] {
        let mut client = Client::new(H2Config::default());
        let block = client.block(&[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"a"),
            (b":path", b"/"),
            (b"content-length", b"3"),
        ]);
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, 1, &block, false, 16_384);
        frame::write_data(&mut bytes, 1, body, end);
        let events = client.feed(&bytes).expect("a stream error");
        assert_eq!(
            events.last(),
            Some(&Event::Aborted {
                stream: 1,
                cause: Cause::ContentLengthMismatch
            })
        );
    }
}

#[test]
fn a_request_ended_by_its_headers_must_not_announce_a_body() {
    for (length, accepted) in [(&b"3"[..], false), (&b"0"[..], true)] {
        let mut client = Client::new(H2Config::default());
        client.frames();
        let block = client.block(&[
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"a"),
            (b":path", b"/"),
            (b"content-length", length),
        ]);
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, 1, &block, true, 16_384);
        let events = client.feed(&bytes).expect("at most a stream error");
        if accepted {
            assert_eq!(request_of(&events).content_length, Some(0));
        } else {
            // An HTTP/1.1 backend would wait for the 3 bytes announced.
            assert_eq!(events, []);
            assert_eq!(client.frames(), ["RST_STREAM 1 ProtocolError"]);
        }
    }
}

#[test]
fn trailers_end_the_request() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = client.request(1, false);
    frame::write_data(&mut bytes, 1, b"abc", false);
    let block = client.block(&[(b"grpc-status", b"0")]);
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    let events = client.feed(&bytes).expect("valid trailers");
    assert_eq!(
        events.last(),
        Some(&Event::Trailers {
            stream: 1,
            fields: b"grpc-status: 0\r\n".to_vec()
        })
    );
}

#[test]
fn trailers_without_end_stream_reset_the_stream() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = client.request(1, false);
    let block = client.block(&[(b"grpc-status", b"0")]);
    frame::write_headers(&mut bytes, 1, &block, false, 16_384);
    let events = client.feed(&bytes).expect("a stream error");
    assert_eq!(
        events.last(),
        Some(&Event::Aborted {
            stream: 1,
            cause: Cause::TrailersWithoutEndStream
        })
    );
}

fn parsed<'a>(
    head: &'a ResponseHead,
    fields: &'a [parser::Header],
    buf: &'a [u8],
) -> ParsedResponse<'a> {
    ParsedResponse {
        head,
        fields,
        buf,
        never_indexed: NeverIndexed::none(),
    }
}

fn response_head(raw: &[u8]) -> (ResponseHead, Vec<parser::Header>) {
    let mut fields = Vec::new();
    match parser::parse_response_head(raw, &Limits::default(), Method::Get, &mut fields) {
        Ok(Parsed::Complete(head)) => (head, fields),
        other => panic!("{other:?}"),
    }
}

#[test]
fn response_head_is_encoded_without_connection_fields() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    client.frames();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok";
    let (head, fields) = response_head(raw);
    client
        .connection
        .send_response(
            1,
            parsed(&head, &fields, raw),
            false,
            client.now,
            &mut client.out,
        )
        .expect("open stream");
    let out = std::mem::take(&mut client.out);
    let Ok(Decoded::Frame {
        frame: Frame::Headers { fragment, .. },
        len,
    }) = frame::decode(&out, 16_384)
    else {
        panic!("a HEADERS frame");
    };
    assert_eq!(len, out.len());
    let decoded = Decoder::new().decode(fragment).expect("valid HPACK");
    let decoded: Vec<(&[u8], &[u8])> = decoded
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    assert_eq!(
        decoded,
        [
            (&b":status"[..], &b"200"[..]),
            (b"content-type", b"text/plain"),
            (b"content-length", b"2"),
        ]
    );
    assert_eq!(
        client.connection.send_response(
            1,
            parsed(&head, &fields, raw),
            false,
            client.now,
            &mut client.out
        ),
        Err(SendError::HeadAlreadySent(1))
    );
}

#[test]
fn send_data_stays_within_the_windows() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let (head, fields) = response_head(raw);
    client
        .connection
        .send_response(
            1,
            parsed(&head, &fields, raw),
            false,
            client.now,
            &mut client.out,
        )
        .expect("open stream");
    client.frames();
    let now = client.now;
    let body = vec![1u8; 100_000];
    let sent = client
        .connection
        .send_data(1, &body, true, now, &mut client.out)
        .expect("open stream");
    assert_eq!(sent, 65_535);
    assert_eq!(
        client.frames(),
        [
            "DATA 1 16384 end_stream=false",
            "DATA 1 16384 end_stream=false",
            "DATA 1 16384 end_stream=false",
            "DATA 1 16383 end_stream=false",
        ]
    );
    assert_eq!(
        client
            .connection
            .send_data(1, &body[sent..], true, now, &mut client.out),
        Ok(0)
    );
    assert_eq!(client.connection.counters().window_stalls, 1);
    let mut bytes = Vec::new();
    frame::write_window_update(&mut bytes, 0, 40_000);
    frame::write_window_update(&mut bytes, 1, 40_000);
    client.feed(&bytes).expect("valid updates");
    assert_eq!(
        client
            .connection
            .send_data(1, &body[sent..], true, now, &mut client.out),
        Ok(34_465)
    );
    assert_eq!(
        client.frames().last().map(String::as_str),
        Some("DATA 1 1697 end_stream=true")
    );
    assert_eq!(client.connection.open_streams(), 0);
}

#[test]
fn lowered_initial_window_can_make_send_windows_negative() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    let raw = b"HTTP/1.1 200 OK\r\n\r\n";
    let (head, fields) = response_head(raw);
    let now = client.now;
    client
        .connection
        .send_response(
            1,
            parsed(&head, &fields, raw),
            false,
            client.now,
            &mut client.out,
        )
        .expect("open stream");
    assert_eq!(
        client
            .connection
            .send_data(1, &[0; 1000], false, now, &mut client.out),
        Ok(1000)
    );
    let mut bytes = Vec::new();
    frame::write_settings(&mut bytes, &[(4, 100)]);
    client.feed(&bytes).expect("valid settings");
    assert_eq!(
        client
            .connection
            .send_data(1, &[0; 10], false, now, &mut client.out),
        Ok(0)
    );
    // The window is -900: 2^31-1 then 900 bring it to 2^31-1, one more byte overflows.
    let mut bytes = Vec::new();
    frame::write_window_update(&mut bytes, 1, frame::MAX_WINDOW);
    frame::write_window_update(&mut bytes, 1, 900);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    let mut bytes = Vec::new();
    frame::write_window_update(&mut bytes, 1, 1);
    assert_eq!(
        client.feed(&bytes),
        Ok(vec![Event::Aborted {
            stream: 1,
            cause: Cause::WindowOverflow
        }])
    );
}

#[test]
fn ping_is_answered_and_client_reset_is_reported() {
    let mut client = Client::new(H2Config::default());
    client.frames();
    let mut bytes = client.request(1, false);
    frame::write_ping(&mut bytes, *b"abcdefgh", false);
    frame::write_rst_stream(&mut bytes, 1, ErrorCode::Cancel);
    let events = client.feed(&bytes).expect("valid frames");
    assert_eq!(
        events.last(),
        Some(&Event::Reset {
            stream: 1,
            code: ErrorCode::Cancel
        })
    );
    assert_eq!(client.frames(), ["PING ack=true"]);
    assert_eq!(client.connection.counters().resets_received, 1);
}

#[test]
fn graceful_shutdown_lets_open_streams_finish_and_refuses_new_ones() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    client.frames();
    let now = client.now;
    client.connection.shutdown(now, &mut client.out);
    assert_eq!(client.frames(), ["GOAWAY 1 NoError"]);
    let bytes = client.request(3, true);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(client.frames(), ["RST_STREAM 3 RefusedStream"]);
    assert!(!client.connection.is_finished());
    let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
    let (head, fields) = response_head(raw);
    client
        .connection
        .send_response(
            1,
            parsed(&head, &fields, raw),
            true,
            client.now,
            &mut client.out,
        )
        .expect("stream 1 may finish");
    assert!(client.connection.is_finished());
}

#[test]
fn graceful_shutdown_deadline_closes_the_connection() {
    let mut client = Client::new(H2Config::default());
    let bytes = client.request(1, true);
    client.feed(&bytes).expect("valid request");
    let now = client.now;
    client.connection.shutdown(now, &mut client.out);
    let deadline = now + Duration::from_secs(5);
    assert_eq!(client.connection.next_deadline(), Some(deadline));
    let mut expired = Vec::new();
    assert_eq!(
        client
            .connection
            .expire(deadline, &mut client.out, &mut expired),
        Err(ConnectionError {
            code: ErrorCode::NoError,
            cause: Cause::ShutdownDeadline
        })
    );
    assert!(client.connection.is_finished());
}

#[test]
fn idle_and_zero_window_streams_are_reset_after_the_timeout() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = client.request(1, true);
    bytes.extend(client.request(3, true));
    client.feed(&bytes).expect("valid requests");
    let raw = b"HTTP/1.1 200 OK\r\n\r\n";
    let (head, fields) = response_head(raw);
    let now = client.now;
    client
        .connection
        .send_response(
            3,
            parsed(&head, &fields, raw),
            false,
            client.now,
            &mut client.out,
        )
        .expect("open stream");
    let later = now + Duration::from_secs(20);
    let body = vec![0; 70_000];
    assert_eq!(
        client
            .connection
            .send_data(3, &body, false, later, &mut client.out),
        Ok(65_535)
    );
    client.frames();
    let mut expired = Vec::new();
    let idle_deadline = now + IDLE;
    client
        .connection
        .expire(idle_deadline, &mut client.out, &mut expired)
        .expect("the connection lives");
    assert_eq!(expired, [1]);
    assert_eq!(client.frames(), ["RST_STREAM 1 Cancel"]);
    // Stream 3 stalled at `later`; the connection window is closed too, so the connection
    // goes first.
    assert_eq!(
        client
            .connection
            .expire(later + IDLE, &mut client.out, &mut expired),
        Err(ConnectionError {
            code: ErrorCode::EnhanceYourCalm,
            cause: Cause::ZeroWindowStall
        })
    );
}

// Flood defences: each trips one past its limit with GOAWAY ENHANCE_YOUR_CALM.

fn trips(
    config: H2Config,
    frames: impl Fn(&mut Client, usize) -> Vec<u8>,
    limit: usize,
    cause: Cause,
) {
    let mut client = Client::new(config);
    for index in 0..limit {
        let bytes = frames(&mut client, index);
        assert!(
            client.feed(&bytes).is_ok(),
            "{cause:?} tripped early at {index}"
        );
    }
    client.frames();
    let bytes = frames(&mut client, limit);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::EnhanceYourCalm, cause)
    );
    assert!(
        client
            .frames()
            .last()
            .is_some_and(|frame| frame.starts_with("GOAWAY") && frame.ends_with("EnhanceYourCalm"))
    );
}

fn stream_id(index: usize) -> u32 {
    u32::try_from(index).expect("small index") * 2 + 1
}

#[test]
fn rapid_reset_trips_the_per_window_limit() {
    let config = H2Config {
        max_rst_stream_per_window: 10,
        max_rst_stream_abusive_lifetime: 1_000,
        ..H2Config::default()
    };
    trips(
        config,
        |client, index| {
            let mut bytes = client.request(stream_id(index), false);
            frame::write_rst_stream(&mut bytes, stream_id(index), ErrorCode::Cancel);
            bytes
        },
        10,
        Cause::RstStreamFlood,
    );
}

#[test]
fn resets_before_any_response_trip_the_abusive_limit() {
    let config = H2Config {
        max_rst_stream_abusive_lifetime: 5,
        ..H2Config::default()
    };
    trips(
        config,
        |client, index| {
            let mut bytes = client.request(stream_id(index), false);
            frame::write_rst_stream(&mut bytes, stream_id(index), ErrorCode::Cancel);
            bytes
        },
        5,
        Cause::AbusiveRstStream,
    );
}

#[test]
fn resets_trip_the_lifetime_limit() {
    let config = H2Config {
        max_rst_stream_lifetime: 6,
        ..H2Config::default()
    };
    trips(
        config,
        |client, index| {
            let mut bytes = client.request(stream_id(index), false);
            frame::write_rst_stream(&mut bytes, stream_id(index), ErrorCode::Cancel);
            client.now += Duration::from_secs(2);
            bytes
        },
        6,
        Cause::RstStreamLifetime,
    );
}

#[test]
fn streams_reset_for_client_errors_trip_the_emitted_limit() {
    // MadeYouReset: valid frames that make the server reset (here WINDOW_UPDATE
    // overflowing a stream window).
    let config = H2Config {
        max_rst_stream_emitted_lifetime: 4,
        ..H2Config::default()
    };
    trips(
        config,
        |client, index| {
            let mut bytes = client.request(stream_id(index), true);
            frame::write_window_update(&mut bytes, stream_id(index), frame::MAX_WINDOW);
            bytes
        },
        4,
        Cause::EmittedRstStream,
    );
}

#[test]
fn ping_flood_trips_its_limit() {
    let config = H2Config {
        max_ping_per_window: 8,
        ..H2Config::default()
    };
    trips(
        config,
        |_, _| {
            let mut bytes = Vec::new();
            frame::write_ping(&mut bytes, [0; 8], false);
            bytes
        },
        8,
        Cause::PingFlood,
    );
}

#[test]
fn settings_flood_trips_its_limit() {
    // The client's first SETTINGS counts too.
    let config = H2Config {
        max_settings_per_window: 5,
        ..H2Config::default()
    };
    trips(
        config,
        |_, _| {
            let mut bytes = Vec::new();
            frame::write_settings(&mut bytes, &[]);
            bytes
        },
        4,
        Cause::SettingsFlood,
    );
}

#[test]
fn empty_data_flood_trips_its_limit() {
    let config = H2Config {
        max_empty_data_per_window: 6,
        ..H2Config::default()
    };
    trips(
        config,
        |client, index| {
            let mut bytes = if index == 0 {
                client.request(1, false)
            } else {
                Vec::new()
            };
            frame::write_data(&mut bytes, 1, b"", false);
            bytes
        },
        6,
        Cause::EmptyDataFlood,
    );
}

#[test]
fn connection_window_update_flood_trips_its_limit() {
    let config = H2Config {
        max_window_update_stream0_per_window: 7,
        ..H2Config::default()
    };
    trips(
        config,
        |_, _| {
            let mut bytes = Vec::new();
            frame::write_window_update(&mut bytes, 0, 1);
            bytes
        },
        7,
        Cause::WindowUpdateFlood,
    );
}

#[test]
fn continuation_flood_trips_the_frame_limit() {
    let mut client = Client::new(H2Config {
        max_continuation_frames: 3,
        ..H2Config::default()
    });
    let mut bytes = Vec::new();
    client::headers_only(&mut bytes, 1, &[], true);
    for _ in 0..3 {
        client::continuation(&mut bytes, 1, &[], false);
    }
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    let mut bytes = Vec::new();
    client::continuation(&mut bytes, 1, &[], false);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::EnhanceYourCalm, Cause::ContinuationFlood)
    );
}

#[test]
fn continuation_flood_trips_the_block_size_limit() {
    let mut client = Client::new(H2Config {
        max_header_list_size: 20_000,
        ..H2Config::default()
    });
    let mut bytes = Vec::new();
    client::headers_only(&mut bytes, 1, &[0; 16_000], true);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    let mut bytes = Vec::new();
    client::continuation(&mut bytes, 1, &[0; 4_001], false);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::EnhanceYourCalm, Cause::HeaderBlockTooLarge)
    );
}

#[test]
fn frame_inside_a_header_block_ends_the_connection() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = Vec::new();
    client::headers_only(&mut bytes, 1, &[0x82], false);
    frame::write_ping(&mut bytes, [0; 8], false);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::ProtocolError, Cause::ExpectedContinuation)
    );
}

#[test]
fn header_block_split_over_continuations_decodes() {
    let mut client = Client::new(H2Config::default());
    let block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/split"),
    ]);
    let (first, rest) = block.split_at(3);
    let mut bytes = Vec::new();
    client::headers_only(&mut bytes, 1, first, true);
    for (index, piece) in rest.chunks(2).enumerate() {
        client::continuation(&mut bytes, 1, piece, index == rest.len().div_ceil(2) - 1);
    }
    let events = client.feed(&bytes).expect("valid block");
    assert!(
        request_of(&events)
            .bytes
            .starts_with(b"GET /split HTTP/1.1\r\n")
    );
}

#[test]
fn hpack_bomb_is_refused_by_the_decoded_size() {
    // One large entry in the dynamic table, then many one-byte references to it: a small
    // block that decodes into a huge list.
    let mut client = Client::new(H2Config {
        max_header_list_size: 16_384,
        ..H2Config::default()
    });
    let value = vec![b'a'; 3_000];
    let mut block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"a"),
        (b":path", b"/"),
        (b"x-big", &value),
    ]);
    block.extend(std::iter::repeat_n(0x80 | 62, 100));
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(
        client.frames().last().map(String::as_str),
        Some("RST_STREAM 1 ProtocolError")
    );
}

#[test]
fn too_many_header_fields_reset_the_stream() {
    let mut client = Client::new(H2Config {
        max_header_fields: 5,
        ..H2Config::default()
    });
    client.frames();
    let block = client.block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"a"),
        (b":path", b"/"),
        (b"a", b"1"),
        (b"b", b"2"),
    ]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(client.frames(), ["RST_STREAM 1 ProtocolError"]);
}

#[test]
fn dynamic_table_size_update_above_the_limit_is_a_compression_error() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = Vec::new();
    // A size update to 8192 before the client acknowledged our SETTINGS (4096 applies).
    let mut block = vec![0x3f, 0xe1, 0x3f];
    block.push(0x82);
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::CompressionError, Cause::Compression)
    );
}

#[test]
fn a_smaller_table_size_once_acknowledged_needs_a_size_update_in_the_next_block() {
    // `:method GET`, `:scheme https`, `:path /`, `:authority a`: nothing indexed.
    let fields = [0x82, 0x87, 0x84, 0x01, 0x01, b'a'];
    let config = H2Config {
        max_header_table_size: 0,
        ..H2Config::default()
    };
    let mut client = Client::new(config);
    let mut bytes = Vec::new();
    frame::write_settings_ack(&mut bytes);
    frame::write_headers(&mut bytes, 1, &fields, true, 16_384);
    assert_eq!(
        client.feed(&bytes),
        error(ErrorCode::CompressionError, Cause::Compression)
    );
    // The same block after a size update to 0 is a request.
    let mut client = Client::new(config);
    let mut bytes = Vec::new();
    frame::write_settings_ack(&mut bytes);
    let mut block = vec![0x20];
    block.extend_from_slice(&fields);
    frame::write_headers(&mut bytes, 1, &block, true, 16_384);
    let events = client.feed(&bytes).expect("a request");
    assert!(
        request_of(&events)
            .bytes
            .starts_with(b"GET / HTTP/1.1\r\nhost: a\r\n")
    );
}

#[test]
fn streams_over_the_concurrency_limit_are_refused() {
    let mut client = Client::new(H2Config {
        max_concurrent_streams: 2,
        ..H2Config::default()
    });
    client.frames();
    let mut bytes = Vec::new();
    for stream in [1, 3, 5] {
        bytes.extend(client.request(stream, false));
    }
    assert_eq!(client.feed(&bytes).map(|events| events.len()), Ok(2));
    assert_eq!(client.frames(), ["RST_STREAM 5 RefusedStream"]);
    assert_eq!(client.connection.counters().streams_refused, 1);
    assert_eq!(client.connection.counters().resets_sent, 1);
    // The client's trailers for the refused stream, sent before it saw the reset, are
    // dropped.
    let block = client.block(&[(b"x-trailer", b"1")]);
    let mut bytes = Vec::new();
    frame::write_headers(&mut bytes, 5, &block, true, 16_384);
    assert_eq!(client.feed(&bytes), Ok(vec![]));
}

#[test]
fn glitches_trip_their_limit() {
    // PRIORITY frames for streams that are not open are glitches.
    let config = H2Config {
        max_glitch_count: 9,
        ..H2Config::default()
    };
    trips(
        config,
        |_, index| {
            let mut bytes = Vec::new();
            client::priority(&mut bytes, stream_id(index + 100), 0);
            bytes
        },
        9,
        Cause::Glitches,
    );
}

#[test]
fn data_on_a_reset_stream_is_dropped_and_its_credit_returned() {
    let mut client = Client::new(H2Config {
        initial_connection_window: 65_535,
        ..H2Config::default()
    });
    let bytes = client.request(1, false);
    client.feed(&bytes).expect("valid request");
    client
        .connection
        .reset(1, ErrorCode::Cancel, &mut client.out);
    client.frames();
    let mut bytes = Vec::new();
    for _ in 0..3 {
        frame::write_data(&mut bytes, 1, &[0; 16_000], false);
    }
    assert_eq!(client.feed(&bytes), Ok(vec![]));
    assert_eq!(client.frames(), ["WINDOW_UPDATE 0 48000"]);
}

#[test]
fn server_table_size_follows_a_smaller_client_setting() {
    let mut client = Client::new(H2Config::default());
    let mut bytes = Vec::new();
    frame::write_settings(&mut bytes, &[(1, 0)]);
    bytes.extend(client.request(1, true));
    client.feed(&bytes).expect("valid frames");
    client.frames();
    let raw = b"HTTP/1.1 200 OK\r\nX-Custom: 1\r\n\r\n";
    let (head, fields) = response_head(raw);
    client
        .connection
        .send_response(
            1,
            parsed(&head, &fields, raw),
            true,
            client.now,
            &mut client.out,
        )
        .expect("open stream");
    let out = std::mem::take(&mut client.out);
    let Ok(Decoded::Frame {
        frame: Frame::Headers { fragment, .. },
        ..
    }) = frame::decode(&out, 16_384)
    else {
        panic!("a HEADERS frame");
    };
    // The block starts with a size update to 0.
    assert_eq!(fragment.first(), Some(&0x20));
    let mut decoder = Decoder::new();
    assert!(decoder.decode(fragment).is_ok());
}

/// RFC 7541 Appendix C.3: requests without Huffman coding, through the codec.
#[test]
fn rfc7541_request_examples_decode_through_the_codec() {
    let blocks: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', b'.', b'c', b'o', b'm',
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x08, b'n', b'o', b'-', b'c', b'a', b'c', b'h', b'e',
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x0a, b'c', b'u', b's', b't', b'o', b'm', b'-', b'k',
            b'e', b'y', 0x0c, b'c', b'u', b's', b't', b'o', b'm', b'-', b'v', b'a', b'l', b'u',
            b'e',
        ],
    ];
    let expected = [
        "GET / HTTP/1.1\r\nhost: www.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: www.example.com\r\ncache-control: no-cache\r\n\r\n",
        "GET /index.html HTTP/1.1\r\nhost: www.example.com\r\ncustom-key: custom-value\r\n\r\n",
    ];
    let mut client = Client::new(H2Config::default());
    for (index, (block, expected)) in blocks.iter().zip(expected).enumerate() {
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, stream_id(index), block, true, 16_384);
        let events = client.feed(&bytes).expect("RFC example");
        assert_eq!(
            String::from_utf8_lossy(&request_of(&events).bytes),
            expected
        );
    }
}

/// RFC 7541 Appendix C.4: the same requests with Huffman coding.
#[test]
fn rfc7541_huffman_examples_decode_through_the_codec() {
    let blocks: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    let mut client = Client::new(H2Config::default());
    let mut last = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, stream_id(index), block, true, 16_384);
        let events = client.feed(&bytes).expect("RFC example");
        last = request_of(&events).bytes.clone();
    }
    assert_eq!(
        String::from_utf8_lossy(&last),
        "GET /index.html HTTP/1.1\r\nhost: www.example.com\r\ncustom-key: custom-value\r\n\r\n"
    );
}

proptest! {
    /// Any bytes after the preface and SETTINGS: no panic, every step consumes what it
    /// says, and an error leaves a finished connection.
    #[test]
    fn arbitrary_frames_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut client = Client::new(H2Config::default());
        let mut at = 0;
        while let Some(rest) = input.get(at..) {
            match client.connection.receive(rest, client.now, &mut client.out) {
                Ok(Progress::NeedMore) => break,
                Ok(Progress::Consumed { len, .. }) => {
                    prop_assert!(len > 0 && len <= rest.len());
                    at += len;
                }
                Err(_) => {
                    prop_assert!(client.connection.is_finished());
                    break;
                }
            }
        }
    }

    /// Headers written by the encoder come back as the same HTTP/1.1 lines.
    #[test]
    fn encoded_fields_decode_to_the_same_lines(
        fields in proptest::collection::vec(("[a-z][a-z0-9-]{0,15}", "[!-~]([ -~]{0,30}[!-~])?"), 0..20)
    ) {
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .filter(|(name, _)| !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding"
                    | "upgrade" | "te" | "host" | "cookie" | "content-length" | "sozu-id"
            ))
            .collect();
        let mut client = Client::new(H2Config::default());
        let mut list: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", b"/"),
        ];
        list.extend(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        let block = client.block(&list);
        let mut bytes = Vec::new();
        frame::write_headers(&mut bytes, 1, &block, true, 16_384);
        let events = client.feed(&bytes).expect("valid request");
        let mut expected = b"GET / HTTP/1.1\r\nhost: example.com\r\n".to_vec();
        for (name, value) in &fields {
            expected.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        expected.extend_from_slice(b"\r\n");
        prop_assert_eq!(&request_of(&events).bytes, &expected);
    }
}
