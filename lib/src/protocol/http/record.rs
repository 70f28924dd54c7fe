//! What a stream leaves behind: its request id, and its record (metrics and access log).

use std::{fmt::Write as _, time::Instant};

use crate::{
    metrics::RequestRecord,
    protocol::http::{SLOT, stream::Stream},
    session::{Context, Session, Stage},
};

/// Gives the stream a request id: unique per worker process, session and request.
pub fn new_request_id(stream: &mut Stream, session_uid: u64, served: u64) {
    stream.request_id.clear();
    let _ = write!(
        stream.request_id,
        "{:08x}{:08x}{:08x}",
        worker_seed(),
        session_uid,
        served
    );
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
pub fn record_stream(session: &mut Session, context: &mut Context<'_>) {
    let Stage::Http(http) = &mut session.stage else {
        return;
    };
    let reused = http.is_back_reused();
    let stream = &mut http.stream;
    let Some(routed_at) = stream.routed_at else {
        return;
    };
    if stream.recorded {
        return;
    }
    stream.recorded = true;
    let back = session.backs.get(SLOT).filter(|_| stream.used_backend);
    let record = RequestRecord {
        listener: session.listener_address,
        client: session.client_address,
        protocol: if session.front.tls.is_some() {
            "HTTPS"
        } else {
            "HTTP"
        },
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
        connect_time: if stream.used_backend && !reused {
            session.connect_time
        } else {
            None
        },
        first_byte_time: stream.first_byte_time,
        total_time: Instant::now().saturating_duration_since(routed_at),
        user_agent: &stream.user_agent,
        request_id: &stream.request_id,
        decided_by: None,
    };
    context.recorder.request_done(&record);
}
