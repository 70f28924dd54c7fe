//! Acting on a parsed HTTP/1 request head: its record started, the routing decision and the
//! faults drawn on it ([`outcome`]), then the request forwarded or answered.

use super::{Step, forward_request, render_answer};
use crate::{
    protocol::http::{
        Http, HttpListener, SLOT,
        faults::{self, Routed},
        outcome::{Outcome, outcome},
        parser::RequestHead,
        record::{new_request_id, writes_access_lines},
        route::{self, Request},
    },
    session::{Context, SessionIo},
};

/// Decides what to do with a parsed request ([`route::decide`]) and does it: answer it, or
/// forward it to a cluster. An answered request's head leaves the buffer, so the next request
/// is read after it.
pub(super) fn route(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
    head: RequestHead,
) -> Step {
    let http: &mut Http = http;
    let buf = http.front_buf.data();
    let stream = &mut http.stream;
    new_request_id(stream, io.uid, http.served);
    stream.describe(buf, &head, &http.headers, writes_access_lines(context));
    stream.routed_at = Some(context.now);
    stream.bytes_in = head.head_len as u64;
    stream.client = head.persistence;
    stream.version = head.version;
    io.front_timeout.cancel();

    let request = Request {
        buf,
        head: &head,
        headers: &http.headers,
        server_name: io.front.tls.as_ref().and_then(|tls| tls.server_name()),
    };
    let decision = route::decide(listener, context.clusters, context.authorized, request);
    let draw = faults::Draw {
        faults: context.faults,
        shaper: &mut io.shaper,
        addresses: (io.listener_address, io.client_address),
        request: Routed {
            host: &http.stream.host,
            path: &http.stream.path,
            headers: &http.headers,
            buf,
            head: &head,
        },
        now: context.now,
    };
    let answer = match outcome(decision, draw) {
        Outcome::Forward(forward) => {
            let back = io
                .backs
                .get(SLOT)
                .map(|back| (back, io.backs.cluster_id(SLOT)));
            return forward_request(http, back, io.client_address, listener, &head, forward);
        }
        Outcome::Answer(answer) => answer,
    };
    if let Some(cluster) = answer.cluster {
        http.stream.cluster_id.clear();
        http.stream.cluster_id.push_str(cluster);
    }
    let step = render_answer(http, io, context, listener, answer.rendered(), answer.close);
    consume_head(http, step, head.head_len)
}

/// Takes an answered request's head out of the front buffer.
fn consume_head(http: &mut Http, step: Step, head_len: usize) -> Step {
    http.front_buf.consume(head_len);
    step
}
