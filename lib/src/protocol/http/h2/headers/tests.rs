use loona_hpack::Decoder;

use super::{HeaderEncoder, ListLimits, NeverIndexed, ParsedResponse, Scratch};
use crate::protocol::http::{
    h2::hpack,
    parser::{self, Limits, Method, Parsed},
};

/// Encodes the response head `raw` as the connection would.
fn encode(encoder: &mut HeaderEncoder, raw: &[u8]) -> Vec<u8> {
    encode_marked(encoder, raw, NeverIndexed::none())
}

/// Encodes the response head `raw`, the fields named in `never_indexed` never indexed.
fn encode_marked(encoder: &mut HeaderEncoder, raw: &[u8], never_indexed: &NeverIndexed) -> Vec<u8> {
    let mut fields = Vec::new();
    let head = match parser::parse_response_head(raw, &Limits::default(), Method::Get, &mut fields)
    {
        Ok(Parsed::Complete(head)) => head,
        other => panic!("{other:?}"),
    };
    let mut block = Vec::new();
    let response = ParsedResponse {
        head: &head,
        fields: &fields,
        buf: raw,
        never_indexed,
    };
    encoder.response(response, &mut block);
    block
}

fn decode(decoder: &mut Decoder<'_>, block: &[u8]) -> Vec<(String, String)> {
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("text");
    decoder
        .decode(block)
        .expect("a valid block")
        .into_iter()
        .map(|(name, value)| (text(name), text(value)))
        .collect()
}

#[test]
fn a_response_head_uses_the_static_table_and_literals_only() {
    let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Custom: 1\r\nSet-Cookie: a=b\r\n\r\n";
    let block = encode(&mut HeaderEncoder::default(), raw);
    let mut expected = vec![0x88]; // :status 200, static entry 8.
    expected.extend_from_slice(b"\x0f\x27\x05nginx"); // server (54), literal value.
    expected.extend_from_slice(b"\x00\x08x-custom\x011"); // literal name and value.
    expected.extend_from_slice(b"\x1f\x28\x03a=b"); // set-cookie (55), never indexed.
    assert_eq!(block, expected);
}

#[test]
fn fields_their_sender_marked_never_indexed_are_encoded_never_indexed() {
    let raw = b"HTTP/1.1 200 OK\r\nX-Token: t\r\nX-Custom: 1\r\nServer: s\r\n\r\n";
    let mut never_indexed = NeverIndexed::default();
    never_indexed.insert(b"x-token");
    never_indexed.insert(b"server");
    let block = encode_marked(&mut HeaderEncoder::default(), raw, &never_indexed);
    let mut expected = vec![0x88];
    expected.extend_from_slice(b"\x10\x07x-token\x01t"); // never indexed, literal name.
    expected.extend_from_slice(b"\x00\x08x-custom\x011"); // without indexing.
    expected.extend_from_slice(b"\x1f\x27\x01s"); // server (54), never indexed.
    assert_eq!(block, expected);
}

#[test]
fn the_fields_a_client_marked_never_indexed_are_named_beside_its_request() {
    let limits = ListLimits {
        max_size: 16_384,
        max_fields: 64,
    };
    let mut decoder = hpack::Decoder::default();
    let mut scratch = Scratch::default();
    let mut decode = |block: &[u8]| {
        super::decode_request(
            &mut decoder,
            block,
            &limits,
            b"",
            true,
            &mut scratch,
            (Vec::new(), Vec::new()),
        )
        .expect("a valid request")
    };
    // GET http /, `:authority: h` never indexed (index 1), `x-secret: s` never indexed
    // and `x-tag: a` without indexing, both with literal names.
    let mut block = b"\x82\x86\x84\x11\x01h".to_vec();
    block.extend_from_slice(b"\x10\x08x-secret\x01s\x00\x05x-tag\x01a");
    let request = decode(&block);
    assert!(request.never_indexed.contains(b":authority"));
    assert!(request.never_indexed.contains(b"x-secret"));
    assert!(!request.never_indexed.contains(b"x-tag"));
    assert!(request.bytes.ends_with(b"x-secret: s\r\nx-tag: a\r\n\r\n"));
    // A `host` field marked so names `:authority`, the pseudo-header it goes on as.
    let request = decode(b"\x82\x86\x84\x10\x04host\x01h");
    assert!(request.never_indexed.contains(b":authority"));
    assert!(!request.never_indexed.contains(b"x-secret"));
    // The next block's marks are its own.
    let request = decode(b"\x82\x86\x84\x01\x01h");
    assert_eq!(request.never_indexed, NeverIndexed::default());
}

#[test]
fn blocks_decode_to_the_fields_and_leave_the_peer_table_empty() {
    let mut encoder = HeaderEncoder::default();
    let mut decoder = Decoder::new();
    let raw = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nDate: Sun, 06 Dec 2026 16:00:00 GMT\r\nX-Trace: abc\r\n\r\n";
    let expected = [
        (":status", "404"),
        ("content-type", "text/html"),
        ("date", "Sun, 06 Dec 2026 16:00:00 GMT"),
        ("x-trace", "abc"),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()));
    for _ in 0..2 {
        let block = encode(&mut encoder, raw);
        assert_eq!(decode(&mut decoder, &block), expected);
    }
    // Nothing was added to the decoder's dynamic table: a table of size 0 decodes the
    // same blocks.
    let mut small = Decoder::new();
    small.set_max_table_size(0);
    let block = encode(&mut encoder, raw);
    assert_eq!(decode(&mut small, &block), expected);
    let status = encode(&mut encoder, b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    assert_eq!(status, b"\x08\x03503");
}
