//! The Huffman code of HPACK string literals (RFC 7541 §5.2 and Appendix B): decoding.
//!
//! The code is canonical (codes of one length are consecutive, shorter codes come first), so
//! a code up to [`FAST_BITS`] long is found by one look-up in a table of every
//! [`FAST_BITS`]-bit prefix, and a longer one, rare in header fields (control bytes, bytes
//! above 127, a few punctuation signs), by comparing the next 32 bits with the first code
//! of each longer length. Both tables are built at compile time from Appendix B.

use super::HpackError;

/// The code of each symbol, right-aligned: the octets 0 to 255, then EOS (RFC 7541
/// Appendix B).
const CODES: [u32; 257] = [
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8,
    0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed,
    0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4,
    0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8,
    0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
    0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb,
    0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0,
    0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75,
    0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe,
    0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4,
    0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb,
    0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
    0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda,
    0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd,
    0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0,
    0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4,
    0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7,
    0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf,
    0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7,
    0x7ffffe2, 0xfffff2, 0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4,
    0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
    0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb,
    0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb,
    0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff,
];

/// The length in bits of each symbol's code.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The end-of-string symbol, whose code (30 ones) must never appear in a string.
const EOS: u16 = 256;

/// The longest code.
const MAX_LENGTH: usize = 30;

/// The bits looked up at once: every letter, digit and common punctuation sign of a header
/// field has a code this long or shorter.
const FAST_BITS: u32 = 10;

/// For each `FAST_BITS`-bit prefix, the symbol whose code it starts with (low 9 bits) and
/// the code's length (the bits above); 0 when the code is longer than `FAST_BITS`.
static FAST: [u16; 1 << FAST_BITS] = fast_table();

/// The canonical code's layout by length: for each length, the first code of that length,
/// the position of its symbol in `symbols`, and the 32-bit left-aligned bound below which
/// every longer-or-equal window holds a code at most that long.
struct Canonical {
    first: [u32; MAX_LENGTH + 1],
    offset: [u16; MAX_LENGTH + 1],
    bound: [u64; MAX_LENGTH + 1],
    /// Symbols ordered by code.
    symbols: [u16; 257],
}

static CANONICAL: Canonical = canonical();

const fn fast_table() -> [u16; 1 << FAST_BITS] {
    let mut table = [0; 1 << FAST_BITS];
    let mut symbol = 0;
    while symbol < CODES.len() {
        let length = LENGTHS[symbol] as u32;
        if length <= FAST_BITS {
            let shift = FAST_BITS - length;
            let first = (CODES[symbol] << shift) as usize;
            let mut prefix = 0;
            while prefix < 1 << shift {
                table[first + prefix] = symbol as u16 | (length as u16) << 9;
                prefix += 1;
            }
        }
        symbol += 1;
    }
    table
}

const fn canonical() -> Canonical {
    let mut count = [0u32; MAX_LENGTH + 1];
    let mut symbol = 0;
    while symbol < CODES.len() {
        count[LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut canonical = Canonical {
        first: [0; MAX_LENGTH + 1],
        offset: [0; MAX_LENGTH + 1],
        bound: [0; MAX_LENGTH + 1],
        symbols: [0; 257],
    };
    let mut code = 0u32;
    let mut position = 0u16;
    let mut length = 1;
    while length <= MAX_LENGTH {
        canonical.first[length] = code;
        canonical.offset[length] = position;
        code += count[length];
        canonical.bound[length] = (code as u64) << (32 - length);
        // Within a length, codes follow the symbols' order.
        let mut symbol = 0;
        while symbol < CODES.len() {
            if LENGTHS[symbol] as usize == length {
                canonical.symbols[position as usize] = symbol as u16;
                position += 1;
            }
            symbol += 1;
        }
        code <<= 1;
        length += 1;
    }
    canonical
}

/// The symbol whose code starts `window` (the next 32 bits), for a code longer than
/// `FAST_BITS`, and the code's length.
fn long_code(window: u32) -> Option<(u16, u32)> {
    let canonical = &CANONICAL;
    let mut length = FAST_BITS as usize + 1;
    while length < MAX_LENGTH && u64::from(window) >= canonical.bound[length] {
        length += 1;
    }
    let code = window >> (32 - length);
    let rank = code.checked_sub(canonical.first[length])?;
    let position =
        usize::from(canonical.offset[length]).checked_add(usize::try_from(rank).ok()?)?;
    let symbol = *canonical.symbols.get(position)?;
    Some((symbol, length as u32))
}

/// Appends the decoding of the Huffman-coded `encoded` to `out`. Refused: EOS in the string,
/// or an end that is not the start of EOS (at most 7 bits, all ones).
pub(super) fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    // The shortest code has 5 bits.
    out.reserve(encoded.len().saturating_mul(8) / 5 + 1);
    let mut bytes = encoded.iter();
    // The low `bits` bits of `buffer` are the input not decoded yet; those above are stale.
    let mut buffer = 0u64;
    let mut bits = 0u32;
    loop {
        while bits <= 56 {
            let Some(&byte) = bytes.next() else {
                break;
            };
            buffer = buffer << 8 | u64::from(byte);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        // The next 32 bits, padded with ones past the end of the input.
        let window = if bits >= 32 {
            (buffer >> (bits - 32)) as u32
        } else {
            (buffer << (32 - bits)) as u32 | u32::MAX >> bits
        };
        let fast = FAST[(window >> (32 - FAST_BITS)) as usize];
        let (symbol, length) = if fast != 0 {
            (fast & 0x1ff, u32::from(fast >> 9))
        } else {
            long_code(window).ok_or(HpackError::HuffmanPadding)?
        };
        if length > bits {
            // No whole code left: the rest must be padding, the first bits of EOS.
            let mask = (1u64 << bits) - 1;
            return if bits <= 7 && buffer & mask == mask {
                Ok(())
            } else {
                Err(HpackError::HuffmanPadding)
            };
        }
        if symbol == EOS {
            return Err(HpackError::HuffmanEos);
        }
        out.push(symbol as u8);
        bits -= length;
    }
}

/// Appends the Huffman coding of `text` to `out`, padded with ones: for tests, the proxy
/// never Huffman-codes what it sends.
#[cfg(test)]
pub(super) fn encode(text: &[u8], out: &mut Vec<u8>) {
    let mut buffer = 0u64;
    let mut bits = 0u32;
    for &byte in text {
        let length = u32::from(LENGTHS[usize::from(byte)]);
        buffer = buffer << length | u64::from(CODES[usize::from(byte)]);
        bits += length;
        while bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push((buffer << (8 - bits)) as u8 | 0xff >> bits);
    }
}

#[cfg(test)]
mod tests {
    use super::{CODES, EOS, HpackError, LENGTHS, decode, encode};

    /// The bits of `codes` (code, length) one after the other, padded with ones.
    fn pack(codes: &[(u32, u8)]) -> Vec<u8> {
        let mut bits: Vec<bool> = codes
            .iter()
            .flat_map(|&(code, length)| (0..length).rev().map(move |bit| code >> bit & 1 == 1))
            .collect();
        while bits.len() % 8 != 0 {
            bits.push(true);
        }
        bits.chunks(8)
            .map(|byte| byte.iter().fold(0, |acc, &bit| acc << 1 | u8::from(bit)))
            .collect()
    }

    #[test]
    fn every_symbol_decodes_from_its_code_alone_and_between_others() {
        for byte in 0..=255u8 {
            let symbol = usize::from(byte);
            let code = (CODES[symbol], LENGTHS[symbol]);
            let mut out = Vec::new();
            assert_eq!(decode(&pack(&[code]), &mut out), Ok(()), "symbol {byte}");
            assert_eq!(out, [byte]);
            // Between a 23-bit code and a 5-bit one.
            let around = [(CODES[1], LENGTHS[1]), code, (CODES[usize::from(b'0')], 5)];
            out.clear();
            assert_eq!(decode(&pack(&around), &mut out), Ok(()), "symbol {byte}");
            assert_eq!(out, [1, byte, b'0']);
        }
    }

    #[test]
    fn rfc7541_huffman_strings_decode() {
        // RFC 7541 C.4.1 and C.6.1.
        let cases: [(&[u8], &[u8]); 3] = [
            (
                &[
                    0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
                ],
                b"www.example.com",
            ),
            (&[0x64, 0x02], b"302"),
            (&[0xae, 0xc3, 0x77, 0x1a, 0x4b], b"private"),
        ];
        for (encoded, text) in cases {
            let mut out = Vec::new();
            assert_eq!(decode(encoded, &mut out), Ok(()));
            assert_eq!(out, text);
            let mut again = Vec::new();
            encode(text, &mut again);
            assert_eq!(again, encoded);
        }
    }

    #[test]
    fn an_empty_string_decodes_to_nothing() {
        let mut out = Vec::new();
        assert_eq!(decode(&[], &mut out), Ok(()));
        assert!(out.is_empty());
    }

    #[test]
    fn padding_longer_than_seven_bits_is_refused() {
        // `a` (00011, 5 bits) then 11 bits of ones.
        let mut out = Vec::new();
        assert_eq!(
            decode(&[0b0001_1111, 0xff], &mut out),
            Err(HpackError::HuffmanPadding)
        );
        // `0` and `a` (10 bits), then 14 bits of ones.
        assert_eq!(
            decode(&[0b0000_0000, 0b1111_1111, 0xff], &mut out),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn padding_that_is_not_all_ones_is_refused() {
        // `a` (00011) then 110: not the start of EOS.
        let mut out = Vec::new();
        assert_eq!(
            decode(&[0b0001_1110], &mut out),
            Err(HpackError::HuffmanPadding)
        );
        // `0` (00000) then 000: the start of another code, cut short.
        assert_eq!(
            decode(&[0b0000_0000], &mut out),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn eos_in_a_string_is_refused() {
        let eos = (CODES[usize::from(EOS)], LENGTHS[usize::from(EOS)]);
        let mut out = Vec::new();
        assert_eq!(decode(&pack(&[eos]), &mut out), Err(HpackError::HuffmanEos));
        let text = (CODES[usize::from(b'a')], LENGTHS[usize::from(b'a')]);
        assert_eq!(
            decode(&pack(&[text, eos, text]), &mut out),
            Err(HpackError::HuffmanEos)
        );
    }
}
