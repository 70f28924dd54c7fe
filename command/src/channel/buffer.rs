//! The channel's two buffers: the bytes read from the socket, cut into lines (one message
//! each), and the serialised messages waiting for the socket to take them.

use std::ops::Range;

use serde::Serialize;

use super::ChannelError;

/// What the input buffer holds next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// A complete line, newline excluded, as a range of `LineBuffer::data`, valid until the
    /// buffer changes.
    Line(Range<usize>),
    /// A line longer than the maximum; its bytes are dropped.
    TooLarge { size_so_far: usize },
    /// No complete line yet.
    Incomplete,
}

/// Bytes read from the socket, cut into lines.
///
/// Invariants: `start <= scanned <= end <= data.len() <= max_line + chunk`. `data[start..end]`
/// is input not handed out yet and `data[start..scanned]` holds no newline, so each byte is
/// searched once. `data[end..]` is room for the next read. After `next_frame` returns
/// `Incomplete`, `end - start <= max_line`.
#[derive(Debug)]
pub(super) struct LineBuffer {
    data: Vec<u8>,
    start: usize,
    scanned: usize,
    end: usize,
    /// While dropping an oversized line: the number of its bytes dropped so far.
    discarded: Option<usize>,
    /// The size of one read, and the size the buffer shrinks back to when empty.
    chunk: usize,
    max_line: usize,
}

impl LineBuffer {
    pub(super) fn new(chunk: usize, max_line: usize) -> Self {
        Self {
            data: vec![0; chunk],
            start: 0,
            scanned: 0,
            end: 0,
            discarded: None,
            chunk,
            max_line,
        }
    }

    /// The buffer's size now, in bytes: tests check that it stays bounded.
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.data.len()
    }

    /// The longest line accepted, in bytes.
    pub(super) fn max_line(&self) -> usize {
        self.max_line
    }

    /// Counts `read` bytes written by the last read into [`LineBuffer::spare`] as input.
    pub(super) fn filled(&mut self, read: usize) {
        self.end += read;
    }

    /// The bytes of a line returned by [`LineBuffer::next_frame`].
    pub(super) fn line(&self, line: Range<usize>) -> &[u8] {
        self.data.get(line).unwrap_or_default()
    }

    /// Cuts the next frame out of the buffered input. Blank lines are skipped.
    pub(super) fn next_frame(&mut self) -> Frame {
        loop {
            let Some(newline) = self.find_newline() else {
                return self.incomplete_frame();
            };
            let line = self.start..newline;
            self.start = newline + 1;
            self.scanned = self.start;
            if self.discarded.take().is_some() {
                // The end of an oversized line: the channel is in sync again.
                continue;
            }
            if line.len() > self.max_line {
                return Frame::TooLarge {
                    size_so_far: line.len(),
                };
            }
            if !self.data[line.clone()].iter().all(u8::is_ascii_whitespace) {
                return Frame::Line(line);
            }
        }
    }

    /// Searches the bytes not searched yet for a newline and returns its index; `scanned` stops
    /// on it, so searching again costs nothing until it is consumed.
    fn find_newline(&mut self) -> Option<usize> {
        match memchr::memchr(b'\n', &self.data[self.scanned..self.end]) {
            Some(offset) => {
                self.scanned += offset;
                Some(self.scanned)
            }
            None => {
                self.scanned = self.end;
                None
            }
        }
    }

    /// No newline is buffered: drops the pending bytes if they belong to an oversized line.
    fn incomplete_frame(&mut self) -> Frame {
        let pending = self.end - self.start;
        if let Some(discarded) = &mut self.discarded {
            *discarded += pending;
            self.clear();
            return Frame::Incomplete;
        }
        if pending > self.max_line {
            self.discarded = Some(pending);
            self.clear();
            return Frame::TooLarge {
                size_so_far: pending,
            };
        }
        Frame::Incomplete
    }

    /// Whether the peer left part of a message behind.
    /// Whether bytes after the last complete line are pending: complete lines not read yet
    /// do not count.
    pub(super) fn has_unfinished_line(&self) -> bool {
        let pending = &self.data[self.start..self.end];
        let tail = match memchr::memrchr(b'\n', pending) {
            Some(newline) => pending.get(newline + 1..).unwrap_or_default(),
            None => pending,
        };
        self.discarded.is_some() || tail.iter().any(|b| !b.is_ascii_whitespace())
    }

    fn clear(&mut self) {
        self.start = 0;
        self.scanned = 0;
        self.end = 0;
    }

    /// Room for the next read, at least one chunk unless the buffer holds a complete line.
    ///
    /// Empties are reset for free and shrink back to one chunk; the pending bytes move to the
    /// front only when the room left is smaller than a chunk. The buffer grows (geometrically, up
    /// to `max_line + chunk`) only when no newline is buffered, i.e. when an unfinished line
    /// needs the room. As `next_frame` keeps an unfinished line within `max_line`, a read after
    /// an `Incomplete` frame always finds at least a chunk of room.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.clear();
            if self.data.len() > self.chunk {
                self.data.truncate(self.chunk);
                self.data.shrink_to_fit();
            }
        }
        if self.data.len() - self.end < self.chunk {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.scanned -= self.start;
                self.end -= self.start;
                self.start = 0;
            }
            let has_newline = self.find_newline().is_some();
            let limit = self.max_line.saturating_add(self.chunk);
            if self.data.len() - self.end < self.chunk && !has_newline && self.data.len() < limit {
                let size = (self.data.len().saturating_mul(2))
                    .max(self.end + self.chunk)
                    .min(limit);
                self.data.resize(size, 0);
            }
        }
        &mut self.data[self.end..]
    }
}

/// Serialised messages waiting for the socket to take them.
///
/// Invariant: `start <= data.len()`; `data[start..]` is pending, each message ending with a
/// newline.
#[derive(Debug, Default)]
pub(super) struct OutputBuffer {
    data: Vec<u8>,
    start: usize,
}

impl OutputBuffer {
    pub(super) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Appends `message` and a newline, or nothing when it fails or is longer than `max`.
    pub(super) fn push_line<T: Serialize>(
        &mut self,
        message: &T,
        max: usize,
    ) -> Result<(), ChannelError> {
        let before = self.data.len();
        if let Err(error) = serde_json::to_writer(&mut self.data, message) {
            self.data.truncate(before);
            return Err(ChannelError::Serialize(error));
        }
        let size = self.data.len() - before;
        if size > max {
            self.data.truncate(before);
            return Err(ChannelError::OutgoingMessageTooLarge { size, max });
        }
        self.data.push(b'\n');
        Ok(())
    }

    /// Appends `json`, one message serialised already, and a newline; nothing when it is
    /// longer than `max`.
    pub(super) fn push_json(&mut self, json: &[u8], max: usize) -> Result<(), ChannelError> {
        if json.len() > max {
            return Err(ChannelError::OutgoingMessageTooLarge {
                size: json.len(),
                max,
            });
        }
        self.data.extend_from_slice(json);
        self.data.push(b'\n');
        Ok(())
    }

    /// Drops `written` bytes from the front of the pending output. Memory moves only once the
    /// written part is at least half of the buffer, so moving costs O(1) per byte written.
    pub(super) fn consume(&mut self, written: usize) {
        self.start = (self.start + written).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            // A worker's initial state fills it with every order: keep 64 KiB, not all that.
            self.data.shrink_to(64 << 10);
            self.start = 0;
        } else if self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }
}
