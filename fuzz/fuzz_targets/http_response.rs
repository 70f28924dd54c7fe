//! Response heads, for each request method that changes the framing: no panic,
//! positions inside the head, and every prefix of a complete head partial.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_lib::protocol::http::parser::{Limits, Method, Parsed, parse_response_head};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut headers = Vec::new();
    for method in [Method::Get, Method::Head, Method::Connect] {
        let Ok(Parsed::Complete(head)) = parse_response_head(data, &limits, method, &mut headers)
        else {
            continue;
        };
        assert!((100..=599).contains(&head.status));
        assert!(head.reason.end < head.head_len && head.head_len <= data.len());
        for header in &headers {
            assert!(header.value.end < header.line_end && header.line_end <= head.head_len);
        }
        let mut prefix_headers = Vec::new();
        for end in 0..head.head_len {
            let prefix = data.get(..end).unwrap_or_default();
            let parsed = parse_response_head(prefix, &limits, method, &mut prefix_headers);
            assert_eq!(parsed, Ok(Parsed::Partial), "prefix of {end} bytes");
        }
    }
});
