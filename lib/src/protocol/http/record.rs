//! What a stream leaves behind: its request id, and its record (metrics and access log).

use std::{net::SocketAddr, rc::Rc};

use crate::{
    access_log::{AccessLog, push_hex},
    metrics::RequestRecord,
    protocol::http::{Http, SLOT, stream::Stream},
    session::{BackConnection, Context, SessionIo},
};

/// Gives the stream a request id: unique per worker process, session and request.
/// The three numbers go to the stream's text as bytes, checked as UTF-8 once (the text keeps
/// its memory: neither conversion copies).
pub fn new_request_id(stream: &mut Stream, session_uid: u64, served: u64) {
    let mut id = std::mem::take(&mut stream.request_id).into_bytes();
    id.clear();
    push_hex(&mut id, u64::from(worker_seed()), 8);
    push_hex(&mut id, session_uid, 8);
    push_hex(&mut id, served, 8);
    // Hexadecimal digits are ASCII: the conversion never fails.
    stream.request_id = String::from_utf8(id).unwrap_or_default();
}

/// Whether the access log writes a line for each request: the stream then keeps the texts only
/// the line shows ([`Stream::describe`]).
pub fn writes_access_lines(context: &Context<'_>) -> bool {
    context
        .recorder
        .access_log
        .as_ref()
        .is_some_and(AccessLog::writes_lines)
}

/// A per-process random value, so request ids of two workers differ.
fn worker_seed() -> u32 {
    use std::{
        hash::{BuildHasher, RandomState},
        sync::OnceLock,
    };
    static SEED: OnceLock<u32> = OnceLock::new();
    *SEED.get_or_init(|| RandomState::new().hash_one(std::process::id()) as u32)
}

/// Records the current stream (metrics and access log), once; a stream never routed is not
/// recorded.
pub fn record_stream(http: &mut Http, io: &mut SessionIo, context: &mut Context<'_>) {
    // A lent stream was never routed: nothing to record.
    let Some(stream) = http.stream.held_mut() else {
        return;
    };
    let origin = Origin::of(io);
    let back = io.backs.get(SLOT);
    let faults = io.shaper.as_ref().map_or(&[][..], |shaper| shaper.labels());
    record(stream, &origin, back, faults, context);
}

/// Where a stream's client connection comes from, for its record.
pub struct Origin {
    pub listener: SocketAddr,
    pub client: SocketAddr,
    pub is_tls: bool,
    /// Whether the client speaks HTTP/2: its streams are logged as `HTTP/2` (`HTTPS/2`
    /// over TLS).
    pub is_h2: bool,
}

impl Origin {
    pub fn of(io: &SessionIo) -> Origin {
        Origin {
            listener: io.listener_address,
            client: io.client_address,
            is_tls: io.front.tls.is_some(),
            is_h2: false,
        }
    }

    /// The origin of a session whose client speaks HTTP/2.
    pub fn of_h2(io: &SessionIo) -> Origin {
        Origin {
            is_h2: true,
            ..Origin::of(io)
        }
    }

    /// The protocol field of the access log.
    fn protocol(&self) -> &'static str {
        match (self.is_tls, self.is_h2) {
            (false, false) => "HTTP",
            (true, false) => "HTTPS",
            (false, true) => "HTTP/2",
            (true, true) => "HTTPS/2",
        }
    }
}

/// Records `stream` (metrics and access log), once; a stream never routed is not recorded.
/// `back` is the backend connection that served it; `faults` names the faults that acted on
/// it.
pub fn record(
    stream: &mut Stream,
    origin: &Origin,
    back: Option<&BackConnection>,
    faults: &[Rc<str>],
    context: &mut Context<'_>,
) {
    let Some(routed_at) = stream.routed_at else {
        return;
    };
    if stream.recorded {
        return;
    }
    stream.recorded = true;
    let back = back.filter(|_| stream.used_backend);
    let record = RequestRecord {
        listener: origin.listener,
        client: origin.client,
        protocol: origin.protocol(),
        cluster_id: stream.cluster_id(),
        backend_id: back.map(|b| b.backend_id.as_str()),
        backend_address: back.map(|b| b.address),
        method: &stream.method_text,
        host: &stream.host,
        path: &stream.path,
        status: stream.status,
        answered_by_proxy: stream.answered_by_proxy,
        bytes_in: stream.bytes_in,
        bytes_out: stream.bytes_out,
        connect_time: stream.connect_time.filter(|_| stream.used_backend),
        first_byte_time: stream.first_byte_time,
        // The time of the event that ended the stream: the clock is read once per event.
        total_time: context.now.saturating_duration_since(routed_at),
        user_agent: &stream.user_agent,
        request_id: &stream.request_id,
        faults,
        decided_by: None,
        backend_protocol: back
            .filter(|back| back.endpoint.speaks_h2())
            .map(|_| "HTTP/2"),
    };
    context.recorder.request_done(&record);
}
