//! The sending side of the connection: flow-control credit given back to the client,
//! response heads, data within the windows, trailers, resets, the graceful shutdown, and the
//! deadlines of idle and stalled streams.

use std::{mem, time::Instant};

use super::{Connection, Phase, REMEMBERED_RESETS, SendError};
use crate::protocol::http::h2::{
    StreamId,
    error::{Cause, ConnectionError, ErrorCode},
    frame::{self, MAX_WINDOW},
    headers::{NeverIndexed, ParsedResponse},
    settings::DEFAULT_WINDOW,
    stream::{Recv, Send, Stream},
};

impl Connection {
    /// Returns connection credit for data that no stream will release.
    pub(super) fn return_connection_credit(&mut self, amount: u32, out: &mut Vec<u8>) {
        self.unreturned = self.unreturned.saturating_add(amount);
        self.flush_connection_credit(out);
    }

    /// Sends WINDOW_UPDATE for the connection once half its window is owed.
    pub(super) fn flush_connection_credit(&mut self, out: &mut Vec<u8>) {
        let target = self
            .config
            .initial_connection_window
            .clamp(DEFAULT_WINDOW, MAX_WINDOW);
        if self.unreturned >= target / 2 {
            let increment = self.unreturned.min(target.saturating_sub(self.recv_window));
            if increment > 0 {
                frame::write_window_update(out, 0, increment);
                self.recv_window = self.recv_window.saturating_add(increment);
            }
            self.unreturned = 0;
        }
    }

    /// The session forwarded `amount` bytes of a stream's data: their flow-control credit
    /// goes back to the client, in WINDOW_UPDATE frames once half a window is owed.
    pub fn release(&mut self, id: StreamId, amount: u32, out: &mut Vec<u8>) {
        if let Some(stream) = self.stream_mut(id) {
            stream.unreturned = stream.unreturned.saturating_add(amount);
            let is_receiving = matches!(stream.recv, Recv::Body { .. });
            if is_receiving && stream.unreturned >= DEFAULT_WINDOW / 2 {
                let increment = stream
                    .unreturned
                    .min(DEFAULT_WINDOW.saturating_sub(stream.recv_window));
                if increment > 0 {
                    frame::write_window_update(out, id, increment);
                    stream.recv_window = stream.recv_window.saturating_add(increment);
                }
                stream.unreturned = 0;
            }
        }
        self.return_connection_credit(amount, out);
    }

    pub(super) fn open_for_send(&mut self, id: StreamId) -> Result<&mut Stream, SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::ConnectionClosed);
        }
        self.stream_mut(id).ok_or(SendError::UnknownStream(id))
    }

    /// Sends the response head of a stream, translated from an HTTP/1.1 response. A 1xx
    /// head is interim: more heads may follow.
    pub fn send_response(
        &mut self,
        id: StreamId,
        response: ParsedResponse<'_>,
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let stream = self.open_for_send(id)?;
        if stream.send != Send::AwaitingHead {
            return Err(SendError::HeadAlreadySent(id));
        }
        let is_interim = response.head.status < 200;
        if !is_interim {
            stream.send = if end_stream { Send::Closed } else { Send::Body };
        }
        stream.last_activity = now;
        let mut block = mem::take(&mut self.scratch);
        self.encoder.response(response, &mut block);
        frame::write_headers(
            out,
            id,
            &block,
            end_stream && !is_interim,
            self.peer.max_frame_size,
        );
        self.scratch = block;
        self.remove_if_closed(id);
        Ok(())
    }

    /// Sends trailers, which end the stream.
    pub fn send_trailers<'f>(
        &mut self,
        id: StreamId,
        fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let stream = self.open_for_send(id)?;
        match stream.send {
            Send::AwaitingHead => return Err(SendError::NoHead(id)),
            Send::Closed => return Err(SendError::SendClosed(id)),
            Send::Body => stream.send = Send::Closed,
        }
        let mut block = mem::take(&mut self.scratch);
        self.encoder
            .fields(fields, NeverIndexed::none(), &mut block);
        frame::write_headers(out, id, &block, true, self.peer.max_frame_size);
        self.scratch = block;
        self.remove_if_closed(id);
        Ok(())
    }

    /// Sends as much of `data` as both flow-control windows allow, in frames no larger
    /// than the client accepts; returns how many bytes were taken. `end_stream` ends the
    /// stream once all of `data` is sent. Zero with data left means the window is closed:
    /// call again after the client sends WINDOW_UPDATE (a window kept closed past the
    /// stream idle timeout resets the stream, see [`Connection::expire`]).
    pub fn send_data(
        &mut self,
        id: StreamId,
        data: &[u8],
        end_stream: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<usize, SendError> {
        let connection_window = self.send_window;
        let max_frame = usize::try_from(self.peer.max_frame_size).unwrap_or(usize::MAX);
        let stream = self.open_for_send(id)?;
        match stream.send {
            Send::AwaitingHead => return Err(SendError::NoHead(id)),
            Send::Closed => return Err(SendError::SendClosed(id)),
            Send::Body => {}
        }
        let window = stream.send_window.min(connection_window).max(0);
        let allowed = usize::try_from(window).unwrap_or(0).min(data.len());
        let sent = data.get(..allowed).unwrap_or_default();
        let is_last = allowed == data.len() && end_stream;
        let mut chunks = sent.chunks(max_frame.max(1)).peekable();
        if sent.is_empty() && is_last {
            frame::write_data(out, id, &[], true);
        }
        while let Some(chunk) = chunks.next() {
            frame::write_data(out, id, chunk, is_last && chunks.peek().is_none());
        }
        let sent_len = i64::try_from(allowed).unwrap_or(i64::MAX);
        stream.send_window = stream.send_window.saturating_sub(sent_len);
        stream.last_activity = now;
        let newly_stalled = allowed < data.len() && stream.stalled_since.is_none();
        if newly_stalled {
            stream.stalled_since = Some(now);
        } else if allowed == data.len() {
            stream.stalled_since = None;
        }
        if is_last {
            stream.send = Send::Closed;
        }
        if newly_stalled {
            self.counters.window_stalls = self.counters.window_stalls.saturating_add(1);
        }
        self.send_window = self.send_window.saturating_sub(sent_len);
        if allowed < data.len() && self.send_window <= 0 {
            self.stalled_since.get_or_insert(now);
        }
        self.remove_if_closed(id);
        Ok(allowed)
    }

    /// Resets a stream for the session (a backend failure, a cancelled request). Not
    /// counted against the client.
    pub fn reset(&mut self, id: StreamId, code: ErrorCode, out: &mut Vec<u8>) {
        if self.remove_stream(id).is_some() {
            self.write_reset(id, code, out);
        }
    }

    /// Writes RST_STREAM and remembers the stream.
    pub(super) fn write_reset(&mut self, id: StreamId, code: ErrorCode, out: &mut Vec<u8>) {
        frame::write_rst_stream(out, id, code);
        self.counters.resets_sent = self.counters.resets_sent.saturating_add(1);
        if self.recently_reset.len() >= REMEMBERED_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// Starts a graceful shutdown: GOAWAY with NO_ERROR and the last stream the client
    /// opened, which may all finish; later streams are refused. With a non-zero
    /// `h2_graceful_shutdown_deadline_seconds`, [`Connection::expire`] ends the connection
    /// at that deadline.
    pub fn shutdown(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.phase == Phase::Closed || self.shutdown.is_some() {
            return;
        }
        frame::write_goaway(out, self.last_client_stream, ErrorCode::NoError);
        self.counters.goaways_sent = self.counters.goaways_sent.saturating_add(1);
        let deadline = self.config.graceful_shutdown_deadline;
        self.shutdown = Some((!deadline.is_zero()).then(|| now + deadline));
    }

    /// Applies the deadlines at `now`: streams idle or stalled on a closed window past the
    /// stream idle timeout are reset (their ids pushed to `expired`), and a connection
    /// whose own window stays closed that long, or whose graceful shutdown deadline
    /// passed, ends.
    pub fn expire(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        expired: &mut Vec<StreamId>,
    ) -> Result<(), ConnectionError> {
        if let Some(Some(deadline)) = self.shutdown {
            if now >= deadline && !self.streams.is_empty() {
                return Err(self.close(ErrorCode::NoError, Cause::ShutdownDeadline, out));
            }
        }
        let timeout = self.stream_idle_timeout;
        let is_past = |since: Instant| now.saturating_duration_since(since) >= timeout;
        let is_stream_waiting = self.streams.iter().any(|s| s.stalled_since.is_some());
        if is_stream_waiting && self.stalled_since.is_some_and(is_past) {
            return Err(self.close(ErrorCode::EnhanceYourCalm, Cause::ZeroWindowStall, out));
        }
        let mut index = 0;
        while let Some(stream) = self.streams.get(index) {
            let stalled = stream.stalled_since.is_some_and(is_past);
            if stalled || is_past(stream.last_activity) {
                let id = stream.id;
                let code = if stalled {
                    ErrorCode::FlowControlError
                } else {
                    ErrorCode::Cancel
                };
                self.streams.swap_remove(index);
                self.write_reset(id, code, out);
                expired.push(id);
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// The next instant [`Connection::expire`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.stream_idle_timeout;
        let streams = self.streams.iter().map(|stream| {
            stream.stalled_since.map_or(stream.last_activity, |since| {
                since.min(stream.last_activity)
            })
        });
        let shutdown = self.shutdown.flatten();
        let is_stream_waiting = self.streams.iter().any(|s| s.stalled_since.is_some());
        self.stalled_since
            .filter(|_| is_stream_waiting)
            .into_iter()
            .chain(streams)
            .map(|since| since + timeout)
            .chain(shutdown)
            .min()
    }
}
