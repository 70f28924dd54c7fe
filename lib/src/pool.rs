//! Fixed-size buffers reused across sessions, so memory per connection is bounded and known.
//!
//! A [`Buffer`] is checked out of a [`Pool`] and goes back to it when dropped. The pool keeps
//! at most `max_idle` free buffers; beyond that, returned buffers are freed. The number of
//! buffers in use is bounded by the sessions (`max_connections`), not by the pool.
//!
//! Every session holds buffers, idle or not, so a [`Buffer`] itself is kept small: its
//! offsets are 32 bits (a buffer is at most [`MAX_BUFFER_SIZE`] bytes; the configuration
//! allows 1 MiB).

use std::{
    cell::RefCell,
    io::{self, Read, Write},
    rc::Rc,
};

/// The largest buffer a pool makes: offsets in a buffer are 32 bits.
pub const MAX_BUFFER_SIZE: usize = u32::MAX as usize;

/// Free buffers shared by the sessions of one worker.
#[derive(Clone)]
pub struct Pool {
    inner: Rc<RefCell<PoolInner>>,
}

struct PoolInner {
    free: Vec<Box<[u8]>>,
    buffer_size: usize,
    max_idle: usize,
    in_use: usize,
}

impl Pool {
    /// A pool of `buffer_size`-byte buffers (at most [`MAX_BUFFER_SIZE`]), with `min_idle`
    /// allocated up front and at most `max_idle` kept when unused.
    pub fn new(buffer_size: usize, min_idle: usize, max_idle: usize) -> Self {
        let buffer_size = buffer_size.min(MAX_BUFFER_SIZE);
        let free = (0..min_idle.min(max_idle))
            .map(|_| vec![0; buffer_size].into_boxed_slice())
            .collect();
        Pool {
            inner: Rc::new(RefCell::new(PoolInner {
                free,
                buffer_size,
                max_idle,
                in_use: 0,
            })),
        }
    }

    /// An empty buffer.
    pub fn checkout(&self) -> Buffer {
        let mut inner = self.inner.borrow_mut();
        inner.in_use += 1;
        let data = match inner.free.pop() {
            Some(data) => data,
            None => vec![0; inner.buffer_size].into_boxed_slice(),
        };
        Buffer {
            size: offset(data.len()),
            data,
            start: 0,
            end: 0,
            is_held: true,
            pool: Rc::downgrade(&self.inner),
        }
    }

    pub fn buffer_size(&self) -> usize {
        self.inner.borrow().buffer_size
    }

    /// Buffers checked out now.
    pub fn in_use(&self) -> usize {
        self.inner.borrow().in_use
    }
}

/// Bytes read from one socket and not yet written to the other.
///
/// Invariant: `start <= end <= data.len()`. `data[start..end]` is pending data;
/// `data[end..]` is free room for the next read. While a connection idles, an empty buffer
/// may give its memory back to the pool ([`Buffer::release`]): `data` is then empty and
/// `is_held` false, and the next [`Buffer::space`] takes memory from the pool again.
pub struct Buffer {
    data: Box<[u8]>,
    pool: std::rc::Weak<RefCell<PoolInner>>,
    /// The capacity, held or not.
    size: u32,
    start: u32,
    end: u32,
    /// Whether `data` is the buffer's memory (counted in the pool's `in_use`).
    is_held: bool,
}

/// A position in a buffer, which is at most [`MAX_BUFFER_SIZE`] bytes long (so it fits).
fn offset(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}

impl Buffer {
    /// Pending bytes.
    pub fn data(&self) -> &[u8] {
        self.data
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.size as usize
    }

    /// Room left after the pending bytes, counting what compaction would free.
    pub fn available(&self) -> usize {
        self.capacity() - self.len()
    }

    pub fn is_full(&self) -> bool {
        self.available() == 0
    }

    /// Marks `count` pending bytes as used.
    pub fn consume(&mut self, count: usize) {
        self.start = offset((self.start as usize).saturating_add(count)).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Gives the memory of an empty buffer back to the pool, for a connection that idles
    /// between requests; the next [`Buffer::space`] takes memory from the pool again. Does
    /// nothing to a buffer with pending bytes, or whose pool is gone.
    pub fn release(&mut self) {
        if !self.is_held || !self.is_empty() {
            return;
        }
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut pool = pool.borrow_mut();
        pool.in_use = pool.in_use.saturating_sub(1);
        let data = std::mem::take(&mut self.data);
        if pool.free.len() < pool.max_idle && data.len() == pool.buffer_size {
            pool.free.push(data);
        }
        self.is_held = false;
        self.clear();
    }

    /// Moves the buffer out (its memory and pending bytes, no copy), leaving this one empty
    /// and holding no memory, as if [`Buffer::release`]d: for a stage that hands its buffers
    /// to the stage that follows it.
    pub fn take(&mut self) -> Buffer {
        let taken = Buffer {
            data: std::mem::take(&mut self.data),
            size: self.size,
            start: self.start,
            end: self.end,
            is_held: self.is_held,
            pool: self.pool.clone(),
        };
        self.is_held = false;
        self.clear();
        taken
    }

    /// Whether the buffer holds its memory (it does unless [`Buffer::release`]d).
    pub fn is_held(&self) -> bool {
        self.is_held
    }

    /// Takes memory from the pool again after [`Buffer::release`].
    fn reacquire(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut pool = pool.borrow_mut();
        pool.in_use += 1;
        self.data = match pool.free.pop() {
            Some(data) if data.len() == self.capacity() => data,
            _ => vec![0; self.capacity()].into_boxed_slice(),
        };
        self.is_held = true;
    }

    /// Free room at the end, after moving pending bytes to the front if that makes room.
    pub fn space(&mut self) -> &mut [u8] {
        if !self.is_held {
            self.reacquire();
        }
        if self.end as usize == self.data.len() && self.start > 0 {
            self.data
                .copy_within(self.start as usize..self.end as usize, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.data.get_mut(self.end as usize..).unwrap_or_default()
    }

    /// Marks `count` bytes written into [`Buffer::space`] as pending.
    pub fn fill(&mut self, count: usize) {
        self.end = offset(
            (self.end as usize)
                .saturating_add(count)
                .min(self.data.len()),
        );
    }

    /// Reads once from `reader` into the free room.
    pub fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        let count = reader.read(self.space())?;
        self.fill(count);
        Ok(count)
    }

    /// Writes pending bytes once to `writer` and consumes what was written.
    pub fn write_to(&mut self, writer: &mut impl Write) -> io::Result<usize> {
        let count = writer.write(self.data())?;
        self.consume(count);
        Ok(count)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if !self.is_held {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            let mut pool = pool.borrow_mut();
            pool.in_use = pool.in_use.saturating_sub(1);
            if pool.free.len() < pool.max_idle && self.data.len() == pool.buffer_size {
                pool.free.push(std::mem::take(&mut self.data));
            }
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("pending", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session holds two buffers (an HTTP stage) or one (the TCP stages before their
    /// pipe), idle or not.
    #[test]
    fn a_buffer_is_small() {
        assert!(std::mem::size_of::<Buffer>() <= 40);
    }

    #[test]
    fn buffers_return_to_the_pool() {
        let pool = Pool::new(16, 1, 2);
        let a = pool.checkout();
        let b = pool.checkout();
        let c = pool.checkout();
        assert_eq!(pool.in_use(), 3);
        drop((a, b, c));
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.inner.borrow().free.len(), 2, "keeps at most max_idle");
    }

    #[test]
    fn a_released_buffer_lends_its_memory_and_takes_it_back_on_use() {
        let pool = Pool::new(8, 0, 2);
        let mut buffer = pool.checkout();
        assert_eq!(buffer.read_from(&mut &b"abc"[..]).unwrap(), 3);
        buffer.release();
        assert!(buffer.is_held(), "pending bytes keep the memory");
        assert_eq!(pool.in_use(), 1);

        buffer.consume(3);
        buffer.release();
        assert!(!buffer.is_held());
        assert_eq!(pool.in_use(), 0);
        assert_eq!(
            pool.inner.borrow().free.len(),
            1,
            "the memory went back to the pool"
        );
        assert_eq!(buffer.capacity(), 8);
        assert!(buffer.is_empty() && !buffer.is_full());
        assert_eq!(buffer.available(), 8);
        assert_eq!(buffer.data(), b"");
        buffer.release();
        assert_eq!(pool.in_use(), 0, "releasing twice counts once");

        assert_eq!(buffer.read_from(&mut &b"defghijkl"[..]).unwrap(), 8);
        assert!(buffer.is_held() && buffer.is_full());
        assert_eq!(buffer.data(), b"defghijk");
        assert_eq!(pool.in_use(), 1);
        assert!(
            pool.inner.borrow().free.is_empty(),
            "the pool's buffer was taken again"
        );
        buffer.consume(8);
        buffer.release();
        drop(buffer);
        assert_eq!(pool.in_use(), 0, "a released buffer's drop counts nothing");
    }

    #[test]
    fn fill_consume_and_compact() {
        let pool = Pool::new(8, 0, 1);
        let mut buffer = pool.checkout();
        assert_eq!(buffer.read_from(&mut &b"abcdefghij"[..]).unwrap(), 8);
        assert!(buffer.is_full());
        buffer.consume(5);
        assert_eq!(buffer.data(), b"fgh");
        assert_eq!(buffer.available(), 5);
        assert_eq!(buffer.read_from(&mut &b"ijk"[..]).unwrap(), 3);
        assert_eq!(buffer.data(), b"fghijk");
        buffer.consume(6);
        assert!(buffer.is_empty());
        assert_eq!(buffer.space().len(), 8);
    }

    #[test]
    fn read_and_write_move_bytes() {
        let pool = Pool::new(4, 0, 1);
        let mut buffer = pool.checkout();
        let mut source: &[u8] = b"hello";
        assert_eq!(buffer.read_from(&mut source).unwrap(), 4);
        let mut sink = Vec::new();
        assert_eq!(buffer.write_to(&mut sink).unwrap(), 4);
        assert_eq!(sink, b"hell");
        assert!(buffer.is_empty());
    }
}
