//! The HPACK tables (RFC 7541 §2.3): the static table, and the dynamic table a decoder keeps
//! in step with its peer's encoder.

use std::collections::VecDeque;

/// The static table (RFC 7541 Appendix A): indexes 1 to 61.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The bytes an entry counts for beyond its name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The static entry at `index` (1-based), if `index` is one.
pub(super) fn static_entry(index: usize) -> Option<(&'static [u8], &'static [u8])> {
    STATIC.get(index.checked_sub(1)?).copied()
}

/// The index of the first dynamic entry (RFC 7541 §2.3.3).
pub(super) const FIRST_DYNAMIC: usize = STATIC.len() + 1;

/// Where an entry's name and value lie in [`Dynamic::bytes`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    name_length: usize,
    value_length: usize,
}

impl Entry {
    fn end(self) -> usize {
        self.start + self.name_length + self.value_length
    }
}

/// The dynamic table: entries of name and value, newest first, within a maximum size
/// counted as RFC 7541 §4.1 does (name, value and 32 bytes per entry).
///
/// Invariants: the entries' bytes lie one after the other in `bytes`, oldest first, the
/// newest ending at `bytes.len()`; bytes before the oldest entry are evicted ones, dropped
/// when an insertion would take `bytes` past twice the maximum size (so each byte is
/// moved at most once on average, and `bytes` stays under twice the maximum size);
/// `size <= max_size`.
#[derive(Debug, Default)]
pub(super) struct Dynamic {
    bytes: Vec<u8>,
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl Dynamic {
    /// An empty table of `max_size` bytes.
    pub(super) fn new(max_size: usize) -> Self {
        Self {
            max_size,
            ..Self::default()
        }
    }

    /// The size the last size update set.
    pub(super) fn max_size(&self) -> usize {
        self.max_size
    }

    /// The entry at `index` of the dynamic table (0 the newest): its name and value.
    pub(super) fn entry(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let entry = self.entries.get(index)?;
        let bytes = self.bytes.get(entry.start..entry.end())?;
        Some(bytes.split_at(entry.name_length))
    }

    /// A dynamic table size update (RFC 7541 §4.3): entries past `max_size` are evicted.
    pub(super) fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
        if self.bytes.len() > max_size.saturating_mul(2) {
            self.compact();
        }
    }

    /// Adds an entry (RFC 7541 §4.4), evicting the oldest ones to make room; an entry
    /// larger than the table empties it and is not added.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name
            .len()
            .checked_add(value.len())
            .and_then(|length| length.checked_add(ENTRY_OVERHEAD));
        let Some(size) = size.filter(|&size| size <= self.max_size) else {
            self.evict_to(0);
            return;
        };
        self.evict_to(self.max_size - size);
        let length = size - ENTRY_OVERHEAD;
        if self.bytes.len().saturating_add(length) > self.max_size.saturating_mul(2) {
            self.compact();
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_front(Entry {
            start,
            name_length: name.len(),
            value_length: value.len(),
        });
        self.size += size;
    }

    /// Evicts the oldest entries until the table's size is at most `size`.
    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.name_length + oldest.value_length + ENTRY_OVERHEAD;
        }
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }

    /// Drops the bytes of evicted entries from the front of `bytes`.
    fn compact(&mut self) {
        let start = self
            .entries
            .back()
            .map_or(self.bytes.len(), |oldest| oldest.start);
        self.bytes.drain(..start);
        for entry in &mut self.entries {
            entry.start -= start;
        }
    }

    /// The table's size (RFC 7541 §4.1).
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The entries, newest first.
    #[cfg(test)]
    pub(super) fn entries(&self) -> Vec<(&[u8], &[u8])> {
        (0..self.entries.len())
            .filter_map(|index| self.entry(index))
            .collect()
    }

    /// The bytes kept for the entries, evicted ones included.
    #[cfg(test)]
    pub(super) fn kept_bytes(&self) -> usize {
        self.bytes.len()
    }
}
