//! The HTTP/1 codec, response side: reading the backend's response head (interim heads, a
//! WebSocket switch, the final head), and relaying the response body to the client until the
//! stream ends.

use crate::{
    protocol::http::{
        Http, HttpListener, SLOT,
        body::{Body, Sent, send_dechunked, send_message},
        connection::{
            AnswerExtra, Next, Rendered, Step, answer, backend_failed, finish_stream,
            render_answer, write_response_out,
        },
        diagnostics::Diagnostic,
        editor::{self, ResponseEdits},
        faults,
        parser::{
            BodyFraming, Header, HeaderKind, Method, Parsed, Persistence, parse_response_head,
        },
        record::record_stream,
        route::Close,
        splice::{Relayed, SplicedBody, limit_unsent},
        stream::{Phase, Relay, RequestSide, ResponseSide},
        upgrade,
    },
    session::endpoint::{Ready, Transfer},
    session::shaper::Way,
    session::{Action, Context, SessionIo},
    timer::TimeoutKind,
};

/// Whether the transfer codings of a message are `chunked` alone.
fn is_chunked_alone(buf: &[u8], headers: &[Header]) -> bool {
    let mut codings = headers
        .iter()
        .filter(|header| header.kind == HeaderKind::TransferEncoding)
        .flat_map(|header| header.value.slice(buf).split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    codings
        .next()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Reads and parses the backend's response head; forwards 1xx heads (not to HTTP/1.0
/// clients), switches to a pipe on a 101 that accepts the WebSocket upgrade offered, and
/// prepares the edited head of the final response.
pub(super) fn read_response_head(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    listener: &HttpListener,
) -> Step {
    let Some(back_connection) = io.backs.get_mut(SLOT) else {
        return Step::Do(Action::Close);
    };
    let back = &mut back_connection.endpoint;
    // A 1xx head being written to the client blocks reading the next head.
    if http.response_out_sent < http.response_out.len() {
        return write_response_out(http, io, context);
    }
    let method = http.stream.method.unwrap_or(Method::Get);
    if !http.back_buf.is_empty() {
        match parse_response_head(
            http.back_buf.data(),
            &listener.limits,
            method,
            &mut http.headers,
        ) {
            Ok(Parsed::Complete(head)) => {
                let buf = http.back_buf.data();
                let client_http10 = http.stream.is_http10();
                if (100..200).contains(&head.status) && head.status != 101 {
                    // Interim response: relay it as is and read the final one. HTTP/1.0 has no
                    // 1xx: its clients never see one (RFC 9110 §15.2).
                    if !client_http10 {
                        http.response_out.clear();
                        http.response_out
                            .extend_from_slice(buf.get(..head.head_len).unwrap_or_default());
                        http.response_out_sent = 0;
                    }
                    http.back_buf.consume(head.head_len);
                    return Step::Progress;
                }
                let upgrade = head.status == 101
                    && http.stream.offers_upgrade
                    && head
                        .upgrade
                        .is_some_and(|value| upgrade::switches_to_websocket(value.slice(buf)));
                if head.status == 101 && !upgrade {
                    http.stream.backend = Persistence::Close;
                    let details = if http.stream.offers_upgrade {
                        "101 to a protocol the client did not ask for"
                    } else {
                        "101 without an upgrade request"
                    };
                    return answer(
                        http,
                        io,
                        context,
                        listener,
                        502,
                        details,
                        Close::AfterAnswer,
                    );
                }
                // An HTTP/1.0 client knows no transfer coding: the proxy removes `chunked`
                // (RFC 9112 §7.1.3), and cannot remove any other.
                let dechunk = client_http10 && head.body == BodyFraming::Chunked;
                let has_transfer_coding = http
                    .headers
                    .iter()
                    .any(|header| header.kind == HeaderKind::TransferEncoding);
                if client_http10
                    && head.body != BodyFraming::None
                    && has_transfer_coding
                    && !(dechunk && is_chunked_alone(buf, &http.headers))
                {
                    http.stream.backend = Persistence::Close;
                    return answer(
                        http,
                        io,
                        context,
                        listener,
                        502,
                        "a transfer coding an HTTP/1.0 client cannot decode",
                        Close::AfterAnswer,
                    );
                }
                // A backend that closes after this response costs its own connection only,
                // unless the body ends with that close: then the client learns the end the
                // same way. A body without its chunks ends with the connection too.
                let close = http.stream.client == Persistence::Close
                    || head.body == BodyFraming::UntilClose
                    || dechunk
                    || matches!(http.stream.request, RequestSide::Sending(_));
                if head.persistence == Persistence::Close {
                    http.stream.backend = Persistence::Close;
                }
                // A refused upgrade (any other status) leaves an HTTP connection.
                http.stream.client = if close && !upgrade {
                    Persistence::Close
                } else {
                    Persistence::KeepAlive
                };
                let stream = &http.stream;
                let edits = ResponseEdits {
                    close: stream.client == Persistence::Close,
                    upgrade,
                    client_http10,
                    ..stream.response_edits(&listener.config.sozu_id_header)
                };
                editor::write_response_head(
                    buf,
                    &head,
                    &http.headers,
                    &edits,
                    &mut http.response_out,
                );
                http.response_out_sent = 0;
                http.back_buf.consume(head.head_len);
                let stream = &mut http.stream;
                stream.status = Some(head.status);
                stream.first_byte_time = stream
                    .request_sent_at
                    .map(|sent| context.now.saturating_duration_since(sent));
                stream.response = if upgrade {
                    ResponseSide::Relaying {
                        body: Body::Done,
                        relay: Relay::SwitchToPipe,
                    }
                } else {
                    ResponseSide::Relaying {
                        body: Body::new(head.body, &listener.limits),
                        relay: if dechunk {
                            Relay::Dechunked
                        } else {
                            Relay::AsIs
                        },
                    }
                };
                if upgrade {
                    io.cancel_back_timeout(SLOT);
                } else {
                    // The body is awaited from the backend too: one that stalls after the head
                    // must not hold the client until the front timeout.
                    let after = io.timeouts.back;
                    io.touch_back(SLOT, after, context.now, context.timers);
                }
                return Step::Progress;
            }
            Ok(Parsed::Partial) => {}
            Err(error) => {
                log::warn!("session {}: {error}: {}", io.uid, error.violation());
                http.stream.backend = Persistence::Close;
                let headers = &mut http.headers;
                let diagnostic = Diagnostic::locate(http.back_buf.data(), |prefix| {
                    parse_response_head(prefix, &listener.limits, method, headers).is_err()
                });
                let extra = AnswerExtra {
                    capacity: Some(http.back_buf.capacity()),
                    diagnostic: Some(&diagnostic),
                    ..AnswerExtra::default()
                };
                return render_answer(
                    http,
                    io,
                    context,
                    listener,
                    Rendered::Page(502, &error.violation().to_string(), extra),
                    Close::AfterAnswer,
                );
            }
        }
        if http.back_buf.is_full() {
            let extra = AnswerExtra {
                capacity: Some(http.back_buf.capacity()),
                ..AnswerExtra::default()
            };
            return render_answer(
                http,
                io,
                context,
                listener,
                Rendered::Page(502, "response head too large", extra),
                Close::AfterAnswer,
            );
        }
    }
    if back.read_closed {
        return backend_failed(http, io, context, listener);
    }
    if !back.readiness.event.contains(Ready::READABLE) {
        return Step::Wait;
    }
    match back.read(http.back_buf.space()) {
        Transfer::Moved(count) => {
            http.back_buf.fill(count);
            if let Some(shaper) = io.shaper.as_deref_mut() {
                shaper.received(Way::ToClient, context.now, count);
            }
            http.stream.response = ResponseSide::ReadingHead;
            let after = io.timeouts.back;
            io.touch_back(SLOT, after, context.now, context.timers);
            Step::Progress
        }
        Transfer::WouldBlock => Step::Wait,
        Transfer::Closed | Transfer::Error(_) => backend_failed(http, io, context, listener),
    }
}

/// Relays the response head and body to the client, and ends the stream when the body is
/// complete.
pub(super) fn relay_response_body(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
) -> Step {
    if http.response_splice.is_some() {
        return relay_spliced_body(http, io, context);
    }
    let shaped = faults::shapes(io);
    let front_key = io.timer_key(TimeoutKind::Front);
    let back_key = io.timer_key(TimeoutKind::Back(SLOT));
    let timeouts = *io.timeouts;
    let Some(back_connection) = io.backs.get_mut(SLOT) else {
        return Step::Do(Action::Close);
    };
    let back = &mut back_connection.endpoint;
    let front = &mut io.front;
    let ResponseSide::Relaying { body, relay } = &mut http.stream.response else {
        return Step::Do(Action::Close);
    };
    let relay = *relay;
    let mut progress = false;

    let limit = match faults::budget(
        io.shaper.as_deref_mut(),
        front,
        Way::ToClient,
        context.now,
        || {
            http.response_out
                .len()
                .saturating_sub(http.response_out_sent)
                + http.back_buf.data().len()
        },
    ) {
        Ok(limit) => limit,
        Err(action) => return Step::Do(action),
    };
    let sent = if limit == 0 {
        Sent::Nothing
    } else if relay == Relay::Dechunked {
        // An HTTP/1.0 client's dechunked body is deferred by the budget, not sliced by it.
        send_dechunked(
            front,
            &mut http.response_out,
            &mut http.response_out_sent,
            body,
            &mut http.back_buf,
        )
    } else {
        send_message(
            front,
            &http.response_out,
            &mut http.response_out_sent,
            body,
            &mut http.back_buf,
            limit,
        )
    };
    match sent {
        Sent::Nothing => {}
        Sent::Moved { head, body } => {
            if let Some(shaper) = io.shaper.as_deref_mut() {
                shaper.sent(Way::ToClient, context.now, head + body);
            }
            http.stream.bytes_out += (head + body) as u64;
            progress = true;
            io.front_timeout
                .set_after(context.now, timeouts.front, front_key, context.timers);
            // The exchange moves: a slow reader does not make the backend look silent.
            back_connection
                .timeout
                .set_after(context.now, timeouts.back, back_key, context.timers);
        }
        Sent::InvalidBody => {
            log::warn!("session {}: invalid chunked response body", io.uid);
            return Step::Do(Action::Close);
        }
        Sent::Failed => return Step::Do(Action::Close),
    }
    let head_sent = http.response_out_sent == http.response_out.len();
    let body_done =
        matches!(&http.stream.response, ResponseSide::Relaying { body, .. } if body.is_done());
    if head_sent && body_done {
        record_stream(http, io, context);
        return end_response(http, io, context, relay);
    }
    let ResponseSide::Relaying { body, .. } = &mut http.stream.response else {
        return Step::Do(Action::Close);
    };
    if relay == Relay::AsIs && head_sent && http.back_buf.is_empty() && !shaped {
        // Every body byte read so far went out: the rest may go socket to socket.
        http.response_splice = SplicedBody::start(context.body_splice, body, back, front);
        if http.response_splice.is_some() {
            limit_unsent(front);
            return Step::Progress;
        }
    }
    if !http.back_buf.is_full()
        && !back.read_closed
        && back.readiness.event.contains(Ready::READABLE)
    {
        match back.read(http.back_buf.space()) {
            Transfer::Moved(count) => {
                http.back_buf.fill(count);
                if let Some(shaper) = io.shaper.as_deref_mut() {
                    shaper.received(Way::ToClient, context.now, count);
                }
                progress = true;
                back_connection.timeout.set_after(
                    context.now,
                    timeouts.back,
                    back_key,
                    context.timers,
                );
            }
            Transfer::WouldBlock => {}
            Transfer::Closed => {
                if matches!(body, Body::UntilClose) {
                    // Bytes still buffered (held by a fault or a slow client) are the end of
                    // the body: it ends once they are sent (`read_closed`, below).
                    if http.back_buf.is_empty() {
                        *body = Body::Done;
                        http.stream.client = Persistence::Close;
                        http.stream.backend = Persistence::Close;
                        progress = true;
                    }
                } else if http.back_buf.is_empty() {
                    // The backend ended its stream before the end of the body: the client
                    // gets a cut response and the connection closes.
                    log::warn!(
                        "session {}: backend closed in the middle of a response",
                        io.uid
                    );
                    return Step::Do(Action::Close);
                }
            }
            Transfer::Error(_) => return Step::Do(Action::Close),
        }
    } else if back.read_closed && http.back_buf.is_empty() && !body.is_done() {
        if matches!(body, Body::UntilClose) {
            *body = Body::Done;
            http.stream.client = Persistence::Close;
            http.stream.backend = Persistence::Close;
            progress = true;
        } else {
            return Step::Do(Action::Close);
        }
    }
    if progress { Step::Progress } else { Step::Wait }
}

/// Relays the rest of a response body through its kernel pipe, and ends the stream when the
/// body is complete. A backend that ends its stream before the end of the body cuts the
/// response: the client connection closes.
fn relay_spliced_body(http: &mut Http, io: &mut SessionIo, context: &mut Context<'_>) -> Step {
    let (Some(spliced), Some(back_connection)) =
        (http.response_splice.as_mut(), io.backs.get_mut(SLOT))
    else {
        return Step::Do(Action::Close);
    };
    match spliced.relay(&mut back_connection.endpoint, &mut io.front) {
        Relayed::Moved { filled, drained } => {
            let timeouts = *io.timeouts;
            // Either side moving shows the exchange alive: a slow reader does not make the
            // backend look silent.
            io.touch_back(SLOT, timeouts.back, context.now, context.timers);
            if drained > 0 {
                http.stream.bytes_out += drained as u64;
                context.recorder.metrics.spliced(drained);
                io.touch_front(timeouts.front, context.now, context.timers);
            }
            log::trace!("session {}: spliced {filled} in, {drained} out", io.uid);
        }
        Relayed::Nothing => return Step::Wait,
        Relayed::Cut => {
            log::warn!(
                "session {}: backend closed in the middle of a response",
                io.uid
            );
            return Step::Do(Action::Close);
        }
        Relayed::SourceFailed | Relayed::SinkFailed => return Step::Do(Action::Close),
    }
    if !spliced.is_done() {
        return Step::Progress;
    }
    http.response_splice = None;
    if let ResponseSide::Relaying { body, .. } = &mut http.stream.response {
        *body = Body::Done;
    }
    record_stream(http, io, context);
    end_response(http, io, context, Relay::AsIs)
}

/// The response went out whole: switch to a pipe, close, or go on with the next request.
fn end_response(
    http: &mut Http,
    io: &mut SessionIo,
    context: &mut Context<'_>,
    relay: Relay,
) -> Step {
    if let Some(back) = io.backs.get_mut(SLOT) {
        back.request_ended();
    }
    if relay == Relay::SwitchToPipe {
        return upgrade_to_pipe(io, context);
    }
    let stream = &mut http.stream;
    if !http.back_buf.is_empty() {
        // Bytes after a complete response answer no request (a body on a HEAD response,
        // a 204 or a 304, bytes past the Content-Length): read as the next response, they
        // would reach the wrong request. The connection can carry no other request.
        log::warn!(
            "session {}: the backend sent {} bytes past the end of its response",
            io.uid,
            http.back_buf.data().len()
        );
        stream.backend = Persistence::Close;
    }
    if matches!(stream.request, RequestSide::Sending(_)) {
        // The backend answered before the whole request was sent: the connection
        // cannot carry another request.
        stream.client = Persistence::Close;
        stream.backend = Persistence::Close;
    }
    if stream.client == Persistence::Close {
        if stream.backend == Persistence::KeepAlive {
            // The client leaves, but the backend connection is clean: back to waiting
            // for a request, so the loop can pool it for another session.
            stream.phase = Phase::Head;
        }
        io.front.shutdown_write();
        return Step::Do(Action::Close);
    }
    finish_stream(http, io, context)
}

/// After a 101: the rest of the connection is a pipe of bytes both ways, over the stage's
/// buffers.
fn upgrade_to_pipe(io: &mut SessionIo, context: &mut Context<'_>) -> Step {
    let after = io.timeouts.front;
    io.touch_front(after, context.now, context.timers);
    Step::Become(Next::Pipe)
}
