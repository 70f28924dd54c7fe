//! An exchange's bytes over its backend connection: the request out, the response in and on
//! to the client, each way within the write budget of the stream's faults.

use std::time::Instant;

use super::budget;
use crate::{
    protocol::http::{
        HttpListener,
        h2::{
            Connection,
            exchange::{Exchange, Failure},
        },
    },
    session::{
        BackConnection,
        endpoint::{Ready, Transfer},
        shaper::Way,
    },
};

/// Moves an exchange's bytes over its backend connection: the request out, the response in
/// and on to the client. Returns whether the backend connection moved.
pub(super) fn forward(
    exchange: &mut Exchange,
    back: &mut BackConnection,
    codec: &mut Connection,
    listener: &HttpListener,
    now: Instant,
    out: &mut Vec<u8>,
    progress: &mut bool,
) -> Result<bool, Failure> {
    let endpoint = &mut back.endpoint;
    let mut moved = false;
    let waiting = exchange.request_out().len();
    if waiting > 0 && endpoint.readiness.event.contains(Ready::WRITABLE) {
        let shaper = exchange.shaper.as_deref_mut();
        let limit = budget::stream_budget(shaper, endpoint, Way::ToBackend, now, waiting)?;
        let pending = exchange.request_out();
        let allowed = pending.get(..limit.min(waiting)).unwrap_or_default();
        if let Some(never_indexed) = exchange.head_never_indexed() {
            endpoint.mark_never_indexed(never_indexed);
        }
        if !allowed.is_empty() {
            match endpoint.write(allowed) {
                Transfer::Moved(count) => {
                    if let Some(shaper) = exchange.shaper.as_deref_mut() {
                        shaper.sent(Way::ToBackend, now, count);
                    }
                    exchange.request_written(count, codec, now, out);
                    moved = true;
                }
                Transfer::WouldBlock => {}
                Transfer::Closed | Transfer::Error(_) => {
                    return Err(Failure::Answer(
                        502,
                        "the backend closed the connection before answering",
                    ));
                }
            }
        }
    }
    if exchange.wants_backend_input() && endpoint.readiness.event.contains(Ready::READABLE) {
        if let Some(buf) = exchange.back_buf.as_mut() {
            match endpoint.read(buf.space()) {
                Transfer::Moved(count) => {
                    buf.fill(count);
                    if let Some(shaper) = exchange.shaper.as_deref_mut() {
                        shaper.received(Way::ToClient, now, count);
                    }
                    moved = true;
                }
                Transfer::WouldBlock => {}
                Transfer::Closed | Transfer::Error(_) => exchange.backend_closed()?,
            }
        }
    } else if endpoint.read_closed && exchange.wants_backend_input() {
        exchange.backend_closed()?;
    }
    // The response's bytes leave the backend's buffer as the stream's budget allows.
    let unread = |exchange: &Exchange| exchange.back_buf.as_ref().map_or(0, |b| b.data().len());
    let before = unread(exchange);
    let shaper = exchange.shaper.as_deref_mut();
    let limit = budget::stream_budget(shaper, endpoint, Way::ToClient, now, before)?;
    if exchange.awaits_response() {
        let never_indexed = endpoint.response_never_indexed();
        while exchange.awaits_response()
            && exchange.read_head(codec, listener, limit, &never_indexed, now, out)?
        {
            *progress = true;
        }
    }
    let taken = before.saturating_sub(unread(exchange));
    if exchange.decode_body(limit.saturating_sub(taken))? {
        *progress = true;
    }
    let taken = before.saturating_sub(unread(exchange));
    if let Some(shaper) = exchange.shaper.as_deref_mut() {
        shaper.sent(Way::ToClient, now, taken);
    }
    if exchange.send_body(codec, now, out)? {
        *progress = true;
    }
    *progress |= moved;
    Ok(moved)
}
