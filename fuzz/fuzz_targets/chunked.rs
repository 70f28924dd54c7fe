//! Chunked bodies: no panic, and the same outcome whether the body comes whole, in two
//! pieces split where the first byte says, or byte by byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_lib::protocol::http::parser::{BodyProgress, ChunkedBody, ChunkedError, Limits};

/// The length of the body if it ends in `data` fed in `pieces`, `None` if it goes on.
fn body_len<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Result<Option<usize>, ChunkedError> {
    let mut body = ChunkedBody::new(&Limits::default());
    let mut fed = 0;
    for piece in pieces {
        match body.feed(piece)? {
            BodyProgress::Partial => fed += piece.len(),
            BodyProgress::Complete { len } => return Ok(Some(fed + len)),
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = body_len(std::iter::once(data));
    let at = usize::from(split).min(data.len());
    let (first, second) = data.split_at(at);
    assert_eq!(body_len([first, second].into_iter()), whole);
    assert_eq!(body_len(data.chunks(1)), whole);
    if let Ok(Some(len)) = whole {
        assert!(len <= data.len());
    }
});
