//! HPACK (RFC 7541), the header compression of HTTP/2: decoding header blocks, and the
//! integer encoding [`headers::HeaderEncoder`](super::headers::HeaderEncoder) writes with.
//!
//! A [`Decoder`] reads a whole header block (HEADERS and CONTINUATION fragments put
//! together) and hands each field to a callback as two byte slices, borrowed from the
//! block, from a table, or from a buffer it keeps for Huffman-decoded strings: once its
//! buffers have grown, decoding allocates nothing. What the fields mean, and how many of
//! them a block may have, is for the caller ([`headers`](super::headers)); the decoder only
//! keeps its dynamic table in step with the peer's encoder, and refuses a block that breaks
//! RFC 7541, after which the connection must end with COMPRESSION_ERROR.
//!
//! - `table`: the static table and the dynamic one;
//! - `huffman`: the Huffman code of string literals.

mod huffman;
mod table;

#[cfg(test)]
mod tests;

use table::Dynamic;

use super::settings::DEFAULT_HEADER_TABLE_SIZE;

/// Why a header block breaks RFC 7541.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("the block ends inside a field representation")]
    Truncated,
    /// An integer has more than four continuation octets (RFC 7541 §5.1 lets a decoder
    /// refuse "excessively large" integers; four octets reach 2^28, past any valid one).
    #[error("an integer is longer than five octets")]
    IntegerTooLong,
    /// An index is 0 or past the end of both tables (RFC 7541 §2.3.3).
    #[error("index {0} is in neither table")]
    Index(usize),
    /// A Huffman-coded string holds the EOS symbol (RFC 7541 §5.2).
    #[error("a Huffman-coded string holds EOS")]
    HuffmanEos,
    /// A Huffman-coded string ends with more than 7 bits, or bits that are not all ones.
    #[error("a Huffman-coded string has bad padding")]
    HuffmanPadding,
    /// A dynamic table size update above the size the proxy's SETTINGS allow (RFC 7541
    /// §6.3).
    #[error("dynamic table size {size} is above the {max_size} bytes allowed")]
    TableSizeTooLarge {
        /// The size the update asked for.
        size: usize,
        /// The largest size allowed.
        max_size: usize,
    },
    /// A dynamic table size update after a field (RFC 7541 §4.2: only at a block's start).
    #[error("a dynamic table size update follows a field")]
    TableSizeUpdateNotAtStart,
    /// The allowed size went below the table's and the block did not start with the size
    /// update RFC 7541 §4.2 then requires.
    #[error("the block does not start with the required dynamic table size update")]
    TableSizeUpdateMissing,
}

/// Whether the hops after the decoder may store a field in an HPACK table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// An indexed field, or a literal with or without indexing (RFC 7541 §6.1, §6.2.1,
    /// §6.2.2).
    Allowed,
    /// A literal never indexed (§6.2.3): its sender protects it (a credential, a token), and
    /// an intermediary must encode it with the same representation.
    Never,
}

/// Decodes the header blocks of one HTTP/2 connection, in order.
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
    /// The largest table size the proxy's SETTINGS allow the peer.
    max_size: usize,
    /// The allowed size went down below the table's: the next block must start with a size
    /// update to at most this.
    required_update: Option<usize>,
    /// Huffman-decoded names.
    names: Vec<u8>,
    /// Huffman-decoded values.
    values: Vec<u8>,
}

impl Default for Decoder {
    /// A decoder under the protocol's default table size, 4,096 bytes, until the peer
    /// acknowledges other SETTINGS.
    fn default() -> Self {
        let size = DEFAULT_HEADER_TABLE_SIZE as usize;
        Self {
            table: Dynamic::new(size),
            max_size: size,
            required_update: None,
            names: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl Decoder {
    /// The table size the proxy's SETTINGS_HEADER_TABLE_SIZE allows, once the peer has
    /// acknowledged them. The peer's encoder moves its table to any size up to this with
    /// size updates; a size below the table's current one shrinks it at once, and the peer
    /// must confirm with a size update at the start of its next block (as nghttp2 does:
    /// RFC 7541 §4.2).
    pub fn set_max_table_size(&mut self, size: u32) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        self.max_size = size;
        if size < self.table.max_size() {
            self.table.set_max_size(size);
            self.required_update = Some(self.required_update.map_or(size, |old| old.min(size)));
        }
    }

    /// Decodes `block`, a whole header block, calling `on_field` with the name, value and
    /// indexing of each field in order. On error the table is out of step with the peer's:
    /// the connection must end.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut on_field: impl FnMut(&[u8], &[u8], Indexing),
    ) -> Result<(), HpackError> {
        let mut input = block;
        while input.first().is_some_and(|&byte| byte & 0xe0 == 0x20) {
            self.size_update(&mut input)?;
        }
        if self.required_update.is_some() {
            return Err(HpackError::TableSizeUpdateMissing);
        }
        while let Some(&byte) = input.first() {
            match byte {
                // Indexed field (§6.1): `1` and a 7-bit index.
                0x80.. => {
                    let index = integer(&mut input, 7)?;
                    let (name, value) = self.entry(index)?;
                    on_field(name, value, Indexing::Allowed);
                }
                // Literal with incremental indexing (§6.2.1): `01` and a 6-bit name index.
                0x40..=0x7f => self.indexed_literal(&mut input, &mut on_field)?,
                // Dynamic table size update (§6.3): `001`.
                0x20..=0x3f => return Err(HpackError::TableSizeUpdateNotAtStart),
                // Literal without indexing (`0000`, §6.2.2) or never indexed (`0001`,
                // §6.2.3): a 4-bit name index. Both read the same; the caller is told which.
                _ => {
                    let indexing = if byte & 0x10 == 0 {
                        Indexing::Allowed
                    } else {
                        Indexing::Never
                    };
                    self.literal(&mut input, indexing, &mut on_field)?;
                }
            }
        }
        Ok(())
    }

    /// Reads a dynamic table size update (§6.3) at the start of `input`.
    fn size_update(&mut self, input: &mut &[u8]) -> Result<(), HpackError> {
        let size = integer(input, 5)?;
        if size > self.max_size {
            return Err(HpackError::TableSizeTooLarge {
                size,
                max_size: self.max_size,
            });
        }
        if self
            .required_update
            .is_some_and(|required| size <= required)
        {
            self.required_update = None;
        }
        self.table.set_max_size(size);
        Ok(())
    }

    /// The entry at `index` of both tables (§2.3.3).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index.checked_sub(table::FIRST_DYNAMIC) {
            None => table::static_entry(index),
            Some(dynamic) => self.table.entry(dynamic),
        }
        .ok_or(HpackError::Index(index))
    }

    /// Reads a literal field that is not indexed (§6.2.2, §6.2.3).
    fn literal(
        &mut self,
        input: &mut &[u8],
        indexing: Indexing,
        on_field: &mut impl FnMut(&[u8], &[u8], Indexing),
    ) -> Result<(), HpackError> {
        let index = integer(input, 4)?;
        let name = if index == 0 {
            string(input, &mut self.names)?
        } else {
            match index.checked_sub(table::FIRST_DYNAMIC) {
                None => table::static_entry(index).map(|(name, _)| name),
                Some(dynamic) => self.table.entry(dynamic).map(|(name, _)| name),
            }
            .ok_or(HpackError::Index(index))?
        };
        let value = string(input, &mut self.values)?;
        on_field(name, value, indexing);
        Ok(())
    }

    /// Reads a literal field and adds it to the dynamic table (§6.2.1).
    fn indexed_literal(
        &mut self,
        input: &mut &[u8],
        on_field: &mut impl FnMut(&[u8], &[u8], Indexing),
    ) -> Result<(), HpackError> {
        let index = integer(input, 6)?;
        let name = if index == 0 {
            string(input, &mut self.names)?
        } else if let Some((name, _)) = table::static_entry(index) {
            name
        } else {
            // Copied: inserting the new entry may evict the one the name comes from.
            let dynamic = index.saturating_sub(table::FIRST_DYNAMIC);
            let (name, _) = self.table.entry(dynamic).ok_or(HpackError::Index(index))?;
            self.names.clear();
            self.names.extend_from_slice(name);
            &self.names
        };
        let value = string(input, &mut self.values)?;
        on_field(name, value, Indexing::Allowed);
        self.table.insert(name, value);
        Ok(())
    }
}

/// Reads an integer with a `prefix`-bit prefix (RFC 7541 §5.1, `prefix` from 1 to 8) from
/// the start of `input`, which moves past it.
fn integer(input: &mut &[u8], prefix: u32) -> Result<usize, HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let max_prefix = u8::MAX >> (8 - prefix);
    let mut value = usize::from(first & max_prefix);
    if value < usize::from(max_prefix) {
        *input = rest;
        return Ok(value);
    }
    for shift in [0, 7, 14, 21] {
        let (&byte, after) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = after;
        // At most 127 << 21: no shift overflows, even in a 32-bit usize.
        let part = usize::from(byte & 0x7f) << shift;
        value = value.checked_add(part).ok_or(HpackError::IntegerTooLong)?;
        if byte & 0x80 == 0 {
            *input = rest;
            return Ok(value);
        }
    }
    Err(HpackError::IntegerTooLong)
}

/// Reads a string literal (RFC 7541 §5.2) from the start of `input`, which moves past it:
/// its bytes in the block, or their Huffman decoding in `decoded`.
fn string<'block: 'out, 'out>(
    input: &mut &'block [u8],
    decoded: &'out mut Vec<u8>,
) -> Result<&'out [u8], HpackError> {
    let is_huffman = input.first().is_some_and(|&byte| byte & 0x80 != 0);
    let length = integer(input, 7)?;
    let (raw, rest) = input
        .split_at_checked(length)
        .ok_or(HpackError::Truncated)?;
    *input = rest;
    if !is_huffman {
        return Ok(raw);
    }
    decoded.clear();
    huffman::decode(raw, decoded)?;
    Ok(decoded)
}

/// Appends `value` as an integer with a `prefix`-bit prefix (RFC 7541 §5.1, `prefix` from 1
/// to 8) whose first octet's other bits are `leading`.
pub fn encode_integer(value: usize, prefix: u32, leading: u8, out: &mut Vec<u8>) {
    let max_prefix = u8::MAX >> (8 - prefix);
    match u8::try_from(value) {
        Ok(small) if small < max_prefix => out.push(leading | small),
        _ => {
            out.push(leading | max_prefix);
            let mut rest = value - usize::from(max_prefix);
            while rest >= 0x80 {
                out.push(0x80 | (rest & 0x7f) as u8);
                rest >>= 7;
            }
            out.push(rest as u8);
        }
    }
}
