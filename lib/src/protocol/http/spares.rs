//! The working memory of HTTP/1 exchanges, lent by connections that idle between requests.
//!
//! An exchange works with scratch space: the parsed header fields of a head, the edited
//! request head for the backend, the response head (or the proxy's answer) for the client,
//! and its stream (the per-request state, with its texts: host, path, request id…). A
//! keep-alive connection waiting for
//! its next request needs none of it, and thousands of such connections would each keep
//! theirs. So a connection that starts waiting with nothing buffered lends its scratch to its
//! listener's [`Spares`] (as it lends its buffers to the pool), and takes one back (its own
//! or another's) when its next bytes are read: a pop from a free list, no allocation once
//! warm. The list keeps at most [`MAX_SPARES`]; past that, lent scratch space is freed.

use std::cell::RefCell;

use crate::protocol::http::{Http, parser::Header, stream::Stream};

/// Scratch spaces a listener keeps for its connections: enough for as many connections
/// going idle and busy again at once as a loaded worker serves, a bounded memory cost
/// (about 2.5 KiB each) whatever the number of idle connections.
pub const MAX_SPARES: usize = 256;

/// Room for common heads; larger ones grow it once, and it keeps that room.
const HEADERS: usize = 16;
const HEAD_OUT: usize = 512;

/// What an exchange works with and an idle connection does not need.
pub(crate) struct Scratch {
    headers: Vec<Header>,
    request_out: Vec<u8>,
    response_out: Vec<u8>,
    stream: Box<Stream>,
}

impl Scratch {
    /// Scratch space sized for common heads.
    fn new() -> Scratch {
        Scratch {
            headers: Vec::with_capacity(HEADERS),
            request_out: Vec::with_capacity(HEAD_OUT),
            response_out: Vec::with_capacity(HEAD_OUT),
            stream: Box::default(),
        }
    }
}

/// A listener's free scratch spaces (see the module's documentation).
#[derive(Default)]
pub struct Spares {
    free: RefCell<Vec<Scratch>>,
}

impl Spares {
    /// Gives `http`'s scratch space to the spares, if it holds one and it is not in use: no
    /// head parsed or waiting to be sent, no request started. The stage keeps empty vectors
    /// and a lent stream (no memory); [`Spares::attach`] gives it scratch space again.
    pub(crate) fn lend(&self, http: &mut Http) {
        if !http.holds_scratch || !http.request_out.is_empty() || !http.response_out.is_empty() {
            return;
        }
        let Some(stream) = http.stream.lend() else {
            return;
        };
        http.holds_scratch = false;
        let mut scratch = Scratch {
            headers: std::mem::take(&mut http.headers),
            request_out: std::mem::take(&mut http.request_out),
            response_out: std::mem::take(&mut http.response_out),
            stream,
        };
        let Ok(mut free) = self.free.try_borrow_mut() else {
            return;
        };
        if free.len() < MAX_SPARES {
            scratch.headers.clear();
            free.push(scratch);
        }
    }

    /// Gives `http` scratch space if it has none: a spare one, or a new one when none is
    /// left.
    pub(crate) fn attach(&self, http: &mut Http) {
        if http.holds_scratch {
            return;
        }
        let spare = self
            .free
            .try_borrow_mut()
            .ok()
            .and_then(|mut free| free.pop());
        let scratch = spare.unwrap_or_else(Scratch::new);
        http.headers = scratch.headers;
        http.request_out = scratch.request_out;
        http.response_out = scratch.response_out;
        http.stream.put(scratch.stream);
        http.holds_scratch = true;
    }

    /// Scratch spaces kept for the next connections.
    pub fn len(&self) -> usize {
        self.free.try_borrow().map_or(0, |free| free.len())
    }

    /// Whether no scratch space is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
