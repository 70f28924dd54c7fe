//! Acting on a parsed HTTP/1 request head: its record started, the routing decision and the
//! faults drawn on it ([`outcome`]), then the request forwarded or answered.

use super::{Step, forward_request, render_answer};
use crate::{
    protocol::http::{
        Http, HttpListener, SLOT,
        faults::{self, Routed},
        outcome::{Outcome, outcome},
        parser::RequestHead,
        record::new_request_id,
        route::{self, Request},
    },
    session::{Action, Context, Session, Stage},
};

/// Decides what to do with a parsed request ([`route::decide`]) and does it: answer it, or
/// forward it to a cluster. An answered request's head leaves the buffer, so the next request
/// is read after it.
pub(super) fn route(
    session: &mut Session,
    context: &mut Context<'_>,
    listener: &HttpListener,
    head: RequestHead,
) -> Step {
    let Stage::Http(http) = &mut session.stage else {
        return Step::Do(Action::Close);
    };
    let http: &mut Http = http;
    let buf = http.front_buf.data();
    let stream = &mut http.stream;
    new_request_id(stream, session.uid, http.served);
    stream.describe(buf, &head, &http.headers);
    stream.routed_at = Some(context.now);
    stream.bytes_in = head.head_len as u64;
    stream.client = head.persistence;
    stream.version = head.version;
    session.front_timeout.cancel();

    let request = Request {
        buf,
        head: &head,
        headers: &http.headers,
        server_name: session.front.tls.as_ref().and_then(|tls| tls.server_name()),
    };
    let decision = route::decide(listener, context.clusters, context.authorized, request);
    let draw = faults::Draw {
        faults: context.faults,
        shaper: &mut session.shaper,
        addresses: (session.listener_address, session.client_address),
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
            let back = session.backs.get(SLOT);
            return forward_request(http, back, session.client_address, listener, &head, forward);
        }
        Outcome::Answer(answer) => answer,
    };
    if let Some(cluster) = answer.cluster {
        http.stream.cluster_id.clear();
        http.stream.cluster_id.push_str(cluster);
    }
    let step = render_answer(session, context, listener, answer.rendered(), answer.close);
    consume_head(session, step, head.head_len)
}

/// Takes an answered request's head out of the front buffer.
fn consume_head(session: &mut Session, step: Step, head_len: usize) -> Step {
    if let Stage::Http(http) = &mut session.stage {
        http.front_buf.consume(head_len);
    }
    step
}
