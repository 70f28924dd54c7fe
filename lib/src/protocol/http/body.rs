//! Message bodies on their way: where a body ends ([`Body`], over the parser's framing
//! trackers), and sending a message's head and body bytes on in one write.

use std::io::IoSlice;

use crate::{
    pool::Buffer,
    protocol::http::parser::{BodyFraming, BodyProgress, ChunkedBody, ContentLengthBody, Limits},
    session::endpoint::{Endpoint, Ready, Transfer},
};

/// Where a message body stands.
#[derive(Debug, Clone)]
pub enum Body {
    /// Complete (or there is none).
    Done,
    Length(ContentLengthBody),
    Chunked(ChunkedBody),
    /// Ends when the backend closes.
    UntilClose,
}

impl Body {
    pub fn new(framing: BodyFraming, limits: &Limits) -> Body {
        match framing {
            BodyFraming::None | BodyFraming::ContentLength(0) => Body::Done,
            BodyFraming::ContentLength(length) => Body::Length(ContentLengthBody::new(length)),
            BodyFraming::Chunked => Body::Chunked(ChunkedBody::new(limits)),
            BodyFraming::UntilClose => Body::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many of `input`'s bytes belong to the body; `Err` when the chunked framing is
    /// broken. Moves to `Done` when the body ends within `input`.
    pub fn take(&mut self, input: &[u8]) -> Result<usize, ()> {
        let progress = match self {
            Body::Done => return Ok(0),
            Body::UntilClose => return Ok(input.len()),
            Body::Length(body) => body.feed(input),
            Body::Chunked(body) => body.feed(input).map_err(|_| ())?,
        };
        Ok(match progress {
            BodyProgress::Partial => input.len(),
            BodyProgress::Complete { len } => {
                *self = Body::Done;
                len
            }
        })
    }
}

/// What [`send_message`] achieved.
pub enum Sent {
    /// Nothing to send, or the socket takes nothing now.
    Nothing,
    /// Bytes of the head and of the body went out.
    Moved { head: usize, body: usize },
    /// The chunked body in the buffer breaks its framing.
    InvalidBody,
    /// The socket failed or its peer is gone.
    Failed,
}

/// Sends a message on: what is left of its edited head (`out` from `out_sent`), then the body
/// bytes in `buffer` that its framing allows, in one write ([`write_head_and_body`]), at most
/// `limit` bytes in all (the session's write budget). Bytes after the body (a pipelined
/// request) stay in the buffer.
pub fn send_message(
    sink: &mut Endpoint,
    out: &[u8],
    out_sent: &mut usize,
    body: &mut Body,
    buffer: &mut Buffer,
    limit: usize,
) -> Sent {
    let head = out.get(*out_sent..).unwrap_or_default();
    let head = head.get(..limit.min(head.len())).unwrap_or_default();
    let available = match body.clone().take(buffer.data()) {
        Ok(count) => count,
        Err(()) => return Sent::InvalidBody,
    };
    let available = available.min(limit.saturating_sub(head.len()));
    if (head.is_empty() && available == 0) || !sink.readiness.event.contains(Ready::WRITABLE) {
        return Sent::Nothing;
    }
    let body_bytes = buffer.data().get(..available).unwrap_or_default();
    match write_head_and_body(sink, head, body_bytes) {
        Transfer::Moved(count) => {
            let from_head = count.min(head.len());
            *out_sent += from_head;
            let from_body = count - from_head;
            let mut taken = 0;
            if from_body > 0 {
                taken = body
                    .take(buffer.data().get(..from_body).unwrap_or_default())
                    .unwrap_or(from_body);
                buffer.consume(taken);
            }
            Sent::Moved {
                head: from_head,
                body: taken,
            }
        }
        Transfer::WouldBlock => Sent::Nothing,
        Transfer::Closed | Transfer::Error(_) => Sent::Failed,
    }
}

/// Head and body bytes up to this many in all go out from a copy joined on the stack.
const JOINED_MAX: usize = 2048;

/// Writes `head` then `body` in one system call. One empty, the other goes by `send`; both
/// small (a head and a short body read together), they are copied end to end and go by `send`
/// too: the kernel's `sendmsg` of two slices (the message header and the vector copied in and
/// checked) costs about 500 cycles more than a `send` of the same bytes, far more than the
/// copy. Larger, they go as two slices by `sendmsg`.
fn write_head_and_body(sink: &mut Endpoint, head: &[u8], body: &[u8]) -> Transfer {
    if body.is_empty() {
        return sink.write(head);
    }
    if head.is_empty() {
        return sink.write(body);
    }
    let total = head.len().saturating_add(body.len());
    if total <= JOINED_MAX {
        let mut joined = [0; JOINED_MAX];
        if let Some(both) = joined.get_mut(..total)
            && let Some((first, second)) = both.split_at_mut_checked(head.len())
        {
            first.copy_from_slice(head);
            second.copy_from_slice(body);
            return sink.write(both);
        }
    }
    sink.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
}

/// Sends a chunked body without its chunked coding (to an HTTP/1.0 client): once `out` (the
/// head, then the data of earlier chunks) is sent, the chunks in `buffer` are taken and their
/// data put in `out`. So `out` never holds more than a buffer's worth of data.
pub fn send_dechunked(
    sink: &mut Endpoint,
    out: &mut Vec<u8>,
    out_sent: &mut usize,
    body: &mut Body,
    buffer: &mut Buffer,
) -> Sent {
    let mut framing_taken = false;
    if *out_sent == out.len() && !buffer.is_empty() {
        let Body::Chunked(chunked) = body else {
            return Sent::Nothing;
        };
        out.clear();
        *out_sent = 0;
        let input = buffer.data();
        let taken = match chunked.feed_with(input, |data| out.extend_from_slice(data)) {
            Ok(BodyProgress::Partial) => input.len(),
            Ok(BodyProgress::Complete { len }) => {
                *body = Body::Done;
                len
            }
            Err(_) => return Sent::InvalidBody,
        };
        buffer.consume(taken);
        framing_taken = taken > 0;
    }
    // Taking chunk framing alone moves the body on too.
    let unsent = if framing_taken {
        Sent::Moved { head: 0, body: 0 }
    } else {
        Sent::Nothing
    };
    let pending = out.get(*out_sent..).unwrap_or_default();
    if pending.is_empty() || !sink.readiness.event.contains(Ready::WRITABLE) {
        return unsent;
    }
    match sink.write(pending) {
        Transfer::Moved(count) => {
            *out_sent += count;
            Sent::Moved {
                head: count,
                body: 0,
            }
        }
        Transfer::WouldBlock => unsent,
        Transfer::Closed | Transfer::Error(_) => Sent::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::protocol::http::splice::tests::connection;

    #[test]
    fn head_and_body_arrive_whole_and_in_order_whichever_way_they_go() {
        let (mut peer, mut proxy) = connection();
        let long: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let cases: [(&[u8], &[u8]); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", b""),
            (b"", b"body only"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"hello"),
            // Exactly the joined copy's size, then one byte over it.
            (&long[..2000], &long[2000..2048]),
            (&long[..2000], &long[2000..2049]),
            (&long[..2500], &long[2500..]),
        ];
        for (head, body) in cases {
            let total = head.len() + body.len();
            assert_eq!(
                write_head_and_body(&mut proxy, head, body),
                Transfer::Moved(total)
            );
            let mut received = vec![0; total];
            peer.read_exact(&mut received).unwrap();
            assert_eq!(
                received,
                [head, body].concat(),
                "{} + {}",
                head.len(),
                body.len()
            );
        }
    }
}
