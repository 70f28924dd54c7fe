//! The HTTP/2 probe's request, and its reading of canned replies, well-formed and hostile.

use super::*;

/// A frame as the backend sends it: header, then payload.
fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![length[1], length[2], length[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// `:status: 200` from the HPACK static table (index 8).
const STATUS_200: &[u8] = &[0x88];
/// `:status: 404` (index 13).
const STATUS_404: &[u8] = &[0x8d];
/// `:status: 100`: a literal without indexing, name `:status` by index 8, value "100".
const STATUS_100: &[u8] = &[0x08, 0x03, b'1', b'0', b'0'];

/// Feeds `bytes` to a fresh reply in one read.
fn receive(bytes: &[u8]) -> (Result<Option<u16>, String>, Vec<u8>) {
    let mut out = Vec::new();
    let result = Reply::new().receive(bytes, &mut out);
    (result, out)
}

#[test]
fn the_request_opens_one_stream_with_a_get_of_the_uri() {
    let mut out = Vec::new();
    request("/health?full=1", "127.0.0.1:8080", &mut out);
    let rest = out.strip_prefix(&PREFACE[..]).expect("the preface first");
    let Ok(Decoded::Frame {
        frame: Frame::Settings { ack: false, .. },
        len,
    }) = frame::decode(rest, DEFAULT_MAX_FRAME_SIZE)
    else {
        panic!("SETTINGS after the preface");
    };
    let rest = &rest[len..];
    let Ok(Decoded::Frame {
        frame:
            Frame::Headers {
                stream: 1,
                fragment,
                end_stream: true,
                end_headers: true,
                ..
            },
        len,
    }) = frame::decode(rest, DEFAULT_MAX_FRAME_SIZE)
    else {
        panic!("HEADERS ending stream 1");
    };
    assert_eq!(len, rest.len(), "nothing after the HEADERS");
    let fields = loona_hpack::Decoder::new()
        .decode(fragment)
        .expect("a valid block");
    let fields: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(name, value)| (name.as_slice(), value.as_slice()))
        .collect();
    assert_eq!(
        fields,
        [
            (&b":method"[..], &b"GET"[..]),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1:8080"),
            (b":path", b"/health?full=1"),
            (b"user-agent", b"sozu-health-check"),
        ]
    );
}

#[test]
fn the_status_of_the_response_headers_is_read_and_the_settings_acknowledged() {
    let mut bytes = frame_bytes(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    bytes.extend(frame_bytes(SETTINGS, 1, 0, &[]));
    bytes.extend(frame_bytes(HEADERS, END_HEADERS, 1, STATUS_404));
    let (result, out) = receive(&bytes);
    assert_eq!(result, Ok(Some(404)));
    assert_eq!(out, frame_bytes(SETTINGS, 1, 0, &[]), "one SETTINGS ACK");
}

#[test]
fn a_reply_read_one_byte_at_a_time_gives_the_same_status() {
    let mut bytes = frame_bytes(SETTINGS, 0, 0, &[]);
    bytes.extend(frame_bytes(PING, 0, 0, b"12345678"));
    bytes.extend(frame_bytes(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        STATUS_200,
    ));
    let mut reply = Reply::new();
    let mut out = Vec::new();
    let (last, head) = bytes.split_last().unwrap();
    for byte in head {
        assert_eq!(reply.receive(&[*byte], &mut out), Ok(None));
    }
    assert_eq!(reply.receive(&[*last], &mut out), Ok(Some(200)));
    let mut expected = frame_bytes(SETTINGS, 1, 0, &[]);
    expected.extend(frame_bytes(PING, 1, 0, b"12345678"));
    assert_eq!(out, expected, "SETTINGS and PING acknowledged");
}

#[test]
fn an_interim_response_is_skipped_for_the_final_one() {
    let mut bytes = frame_bytes(HEADERS, END_HEADERS, 1, STATUS_100);
    bytes.extend(frame_bytes(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        STATUS_200,
    ));
    assert_eq!(receive(&bytes).0, Ok(Some(200)));
}

#[test]
fn a_header_block_in_continuation_frames_is_gathered() {
    let mut bytes = frame_bytes(HEADERS, END_STREAM, 1, &[]);
    bytes.extend(frame_bytes(CONTINUATION, 0, 1, &[]));
    bytes.extend(frame_bytes(CONTINUATION, END_HEADERS, 1, STATUS_200));
    assert_eq!(receive(&bytes).0, Ok(Some(200)));
}

#[test]
fn a_partial_reply_waits_and_data_or_a_graceful_goaway_naming_the_stream_changes_nothing() {
    let mut bytes = frame_bytes(SETTINGS, 0, 0, &[]);
    bytes.extend(frame_bytes(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    bytes.extend(&frame_bytes(HEADERS, END_HEADERS, 1, STATUS_200)[..5]);
    assert_eq!(receive(&bytes).0, Ok(None));
}

/// Each of these replies fails the check, with a reason and without a panic.
#[test]
fn malformed_and_hostile_replies_fail_the_check() {
    let mut too_large = vec![0x00, 0x40, 0x01, HEADERS, END_HEADERS, 0, 0, 0, 1];
    too_large.resize(9 + 16_385, 0);
    let mut interleaved = frame_bytes(HEADERS, 0, 1, &[]);
    interleaved.extend(frame_bytes(PING, 0, 0, b"12345678"));
    let mut endless = frame_bytes(HEADERS, 0, 1, &[]);
    for _ in 0..=MAX_CONTINUATIONS {
        endless.extend(frame_bytes(CONTINUATION, 0, 1, &[]));
    }
    let mut huge_block = frame_bytes(HEADERS, 0, 1, &[0x40; 16_000]);
    huge_block.extend(frame_bytes(CONTINUATION, 0, 1, &[0x40; 16_000]));
    let mut ping_flood = Vec::new();
    for _ in 0..=MAX_FRAMES {
        ping_flood.extend(frame_bytes(PING, 0, 0, b"12345678"));
    }
    let cases: [(&str, Vec<u8>); 15] = [
        (
            "an HTTP/1.1 answer",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        ),
        ("a frame over the maximum size", too_large),
        (
            "SETTINGS of a length not a multiple of 6",
            frame_bytes(SETTINGS, 0, 0, &[0; 5]),
        ),
        (
            "an undecodable header block",
            frame_bytes(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff]),
        ),
        (
            "a header block without :status",
            frame_bytes(HEADERS, END_HEADERS, 1, &[0x00, 1, b'x', 1, b'y']),
        ),
        (
            "a non-numeric :status",
            frame_bytes(HEADERS, END_HEADERS, 1, &[0x08, 3, b'a', b'b', b'c']),
        ),
        (
            "a request pseudo-header in a response",
            frame_bytes(HEADERS, END_HEADERS, 1, &[0x88, 0x82]),
        ),
        (
            "HEADERS on another stream",
            frame_bytes(HEADERS, END_HEADERS, 3, STATUS_200),
        ),
        (
            "CONTINUATION outside a block",
            frame_bytes(CONTINUATION, END_HEADERS, 1, STATUS_200),
        ),
        ("a frame inside a header block", interleaved),
        ("endless CONTINUATION frames", endless),
        ("a header block over the bound", huge_block),
        (
            "the stream reset",
            frame_bytes(RST_STREAM, 0, 1, &[0, 0, 0, 2]),
        ),
        (
            "a GOAWAY before the stream",
            frame_bytes(GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]),
        ),
        ("a PING flood", ping_flood),
    ];
    for (case, bytes) in cases {
        let (result, _) = receive(&bytes);
        assert!(
            matches!(&result, Err(reason) if !reason.is_empty()),
            "{case}: {result:?}"
        );
    }
    let push = frame_bytes(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x88]);
    assert!(receive(&push).0.is_err(), "server push");
}

/// Random bytes after a valid SETTINGS frame, fed in random pieces: never a panic, and the
/// bytes kept stay within one frame and one read.
#[test]
fn random_replies_never_panic_and_stay_bounded() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2_000 {
        let mut bytes = frame_bytes(SETTINGS, 0, 0, &[]);
        let length = usize::try_from(next() % 200).unwrap();
        bytes.extend((0..length).map(|_| next().to_le_bytes()[0]));
        let mut reply = Reply::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(usize::try_from(next() % 17 + 1).unwrap()) {
            if reply.receive(piece, &mut out) != Ok(None) {
                break;
            }
            assert!(reply.input.len() <= 9 + usize::try_from(DEFAULT_MAX_FRAME_SIZE).unwrap());
        }
    }
}
