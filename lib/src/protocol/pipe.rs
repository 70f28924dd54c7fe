//! Bidirectional byte copy between the two sockets of a session: TCP mode, and HTTP
//! connections after an `Upgrade` (WebSocket).
//!
//! Each direction has one pooled buffer. Bytes are read while the buffer has room and written
//! while it has data; a half-close is propagated (when one side ends its stream, the other side's
//! write half is shut once the buffer is flushed), so a client that shuts its write side still
//! gets the whole answer. The pipe is done when both directions are finished.

use crate::{
    pool::Buffer,
    socket::{Endpoint, Ready, Transfer},
};

pub struct Pipe {
    /// Client to backend.
    pub front_to_back: Buffer,
    /// Backend to client.
    pub back_to_front: Buffer,
}

/// What a run of the pipe achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeStatus {
    /// Waiting for the sockets; `front_active`/`back_active` say whether bytes moved on each
    /// side, so idle timeouts can restart.
    Wait {
        front_active: bool,
        back_active: bool,
    },
    /// Both directions finished: every byte was delivered and both streams ended.
    Done,
    /// A socket failed or the peer reset; the session must close.
    Broken,
}

/// What one direction did.
#[derive(Default)]
struct Progress {
    source_active: bool,
    sink_active: bool,
    broken: bool,
}

impl Pipe {
    pub fn new(front_to_back: Buffer, back_to_front: Buffer) -> Self {
        Pipe {
            front_to_back,
            back_to_front,
        }
    }

    /// Moves bytes both ways as far as the sockets allow.
    pub fn run(&mut self, front: &mut Endpoint, back: &mut Endpoint) -> PipeStatus {
        let upstream = copy(front, &mut self.front_to_back, back);
        let downstream = copy(back, &mut self.back_to_front, front);
        if upstream.broken || downstream.broken {
            return PipeStatus::Broken;
        }
        if is_finished(front, &self.front_to_back, back)
            && is_finished(back, &self.back_to_front, front)
        {
            return PipeStatus::Done;
        }
        front.readiness.interest = interest(front, &self.front_to_back, &self.back_to_front);
        back.readiness.interest = interest(back, &self.back_to_front, &self.front_to_back);
        PipeStatus::Wait {
            front_active: upstream.source_active || downstream.sink_active,
            back_active: upstream.sink_active || downstream.source_active,
        }
    }
}

/// One direction: `source` → `buffer` → `sink`, until neither side can move.
fn copy(source: &mut Endpoint, buffer: &mut Buffer, sink: &mut Endpoint) -> Progress {
    let mut progress = Progress::default();
    loop {
        let mut moved = false;
        if !source.read_closed
            && source.readiness.event.contains(Ready::READABLE)
            && !buffer.is_full()
        {
            match source.read(buffer.space()) {
                Transfer::Moved(count) => {
                    buffer.fill(count);
                    progress.source_active = true;
                    moved = true;
                }
                Transfer::WouldBlock | Transfer::Closed => {}
                Transfer::Error(_) => {
                    progress.broken = true;
                    return progress;
                }
            }
        }
        if !buffer.is_empty() && sink.readiness.event.contains(Ready::WRITABLE) {
            match sink.write(buffer.data()) {
                Transfer::Moved(count) => {
                    buffer.consume(count);
                    progress.sink_active = true;
                    moved = true;
                }
                Transfer::WouldBlock => {}
                Transfer::Closed | Transfer::Error(_) => {
                    progress.broken = true;
                    return progress;
                }
            }
        }
        if !moved {
            break;
        }
    }
    if source.read_closed && buffer.is_empty() {
        sink.shutdown_write();
    }
    progress
}

/// The direction `source` → `sink` has delivered everything and ended.
fn is_finished(source: &Endpoint, buffer: &Buffer, sink: &Endpoint) -> bool {
    source.read_closed && buffer.is_empty() && sink.write_shut
}

/// Read while there is room to read into; write while there is something to send.
fn interest(endpoint: &Endpoint, inbound: &Buffer, outbound: &Buffer) -> Ready {
    let mut interest = Ready::EMPTY;
    if !endpoint.read_closed && !inbound.is_full() {
        interest.insert(Ready::READABLE);
    }
    if !outbound.is_empty() {
        interest.insert(Ready::WRITABLE);
    }
    interest
}
