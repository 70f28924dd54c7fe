//! Request heads: no panic, positions inside the head, every prefix of a complete head
//! partial, and the body that follows delimited without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_lib::protocol::http::parser::{
    BodyFraming, ChunkedBody, ContentLengthBody, Limits, Parsed, parse_request_head,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut headers = Vec::new();
    let Ok(Parsed::Complete(head)) = parse_request_head(data, &limits, b"Sozu-Id", &mut headers)
    else {
        return;
    };
    assert!(head.start < head.head_len && head.head_len <= data.len());
    assert!(head.target.end <= head.head_len && head.path.end <= head.target.end);
    for header in &headers {
        assert!(header.name.end < header.value.start);
        assert!(header.value.end < header.line_end && header.line_end <= head.head_len);
    }
    let mut prefix_headers = Vec::new();
    for end in 0..head.head_len {
        let prefix = data.get(..end).unwrap_or_default();
        let parsed = parse_request_head(prefix, &limits, b"Sozu-Id", &mut prefix_headers);
        assert_eq!(parsed, Ok(Parsed::Partial), "prefix of {end} bytes");
    }
    let body = data.get(head.head_len..).unwrap_or_default();
    match head.body {
        BodyFraming::Chunked => {
            let _ = ChunkedBody::new(&limits).feed(body);
        }
        BodyFraming::ContentLength(length) => {
            let _ = ContentLengthBody::new(length).feed(body);
        }
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
});
