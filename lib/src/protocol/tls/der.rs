//! A reader of DER (X.690) elements, enough to walk the structures of private keys (PKCS#8,
//! PKCS#1, SEC1) and the public key of a certificate ([`super::key_pair`]).
//!
//! It reads one tag-length-value element at a time and never decodes contents by itself: the
//! caller says which tag it expects. Every length is checked against the bytes left, so any
//! input gives `None` at worst.

/// `SEQUENCE` (constructed).
pub(super) const SEQUENCE: u8 = 0x30;
/// `INTEGER`.
pub(super) const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub(super) const BIT_STRING: u8 = 0x03;
/// `OCTET STRING`.
pub(super) const OCTET_STRING: u8 = 0x04;
/// `OBJECT IDENTIFIER`.
pub(super) const OID: u8 = 0x06;
/// `[0]`, constructed (an explicit tag, or an implicit `SET`).
pub(super) const CONTEXT_0: u8 = 0xa0;
/// `[1]`, constructed (an explicit tag).
pub(super) const CONTEXT_1: u8 = 0xa1;
/// `[1]`, primitive (an implicit `BIT STRING`).
pub(super) const CONTEXT_1_PRIMITIVE: u8 = 0x81;

/// One element: its tag, its contents, and the whole encoding (tag and length included).
#[derive(Debug, Clone, Copy)]
pub(super) struct Element<'a> {
    pub(super) tag: u8,
    pub(super) contents: &'a [u8],
    pub(super) encoding: &'a [u8],
}

/// The elements of a DER text, read in order.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads the elements of `bytes` (for a constructed element, of its contents).
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// The next element; `None` at the end or when its tag or length is malformed or runs
    /// past the bytes left (multi-byte tags, which these structures do not use, included).
    pub(super) fn next(&mut self) -> Option<Element<'a>> {
        let (&tag, after_tag) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, after_length) = after_tag.split_first()?;
        let (length, after_length) = if first < 0x80 {
            (usize::from(first), after_length)
        } else {
            // The long form: the low bits count the length's bytes (0 is BER's indefinite
            // length, which DER forbids; more than 4 is more than any key).
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let bytes = after_length.get(..count)?;
            let length = bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, after_length.get(count..)?)
        };
        let contents = after_length.get(..length)?;
        // `after_length` is a tail of `rest`: the difference is the tag and length's size.
        let header = self.rest.len().checked_sub(after_length.len())?;
        let encoding = self.rest.get(..header.checked_add(length)?)?;
        self.rest = after_length.get(length..)?;
        Some(Element {
            tag,
            contents,
            encoding,
        })
    }

    /// The contents of the next element, which must have this tag.
    pub(super) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.next()
            .filter(|element| element.tag == tag)
            .map(|element| element.contents)
    }

    /// The contents of the next element if it has this tag; otherwise nothing is read.
    pub(super) fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.rest.first() != Some(&tag) {
            return None;
        }
        self.expect(tag)
    }
}

/// The bits of a `BIT STRING`'s contents, which must be whole bytes (no unused bit).
pub(super) fn whole_bytes(bit_string: &[u8]) -> Option<&[u8]> {
    match bit_string.split_first() {
        Some((0, bytes)) => Some(bytes),
        _ => None,
    }
}

/// An `INTEGER`'s contents without the zero bytes that lead a positive number.
pub(super) fn unsigned(integer: &[u8]) -> &[u8] {
    let zeros = integer.iter().take_while(|byte| **byte == 0).count();
    integer.get(zeros..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_are_read() {
        let mut long = vec![OCTET_STRING, 0x82, 0x01, 0x00];
        long.extend([7u8; 256]);
        long.extend([INTEGER, 0x01, 0x05]);
        let mut reader = Reader::new(&long);
        let element = reader.next().expect("a long element");
        assert_eq!(element.contents.len(), 256);
        assert_eq!(element.encoding.len(), 260);
        assert_eq!(reader.expect(INTEGER), Some(&[5u8][..]));
        assert!(reader.next().is_none());
    }

    #[test]
    fn lengths_past_the_end_and_indefinite_lengths_are_refused() {
        assert!(Reader::new(&[SEQUENCE, 0x05, 1, 2]).next().is_none());
        assert!(Reader::new(&[SEQUENCE, 0x80, 0, 0]).next().is_none());
        assert!(
            Reader::new(&[SEQUENCE, 0x85, 1, 1, 1, 1, 1])
                .next()
                .is_none()
        );
        assert!(
            Reader::new(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff])
                .next()
                .is_none()
        );
        assert!(Reader::new(&[0x1f, 0x01, 0x00]).next().is_none());
        assert!(Reader::new(&[SEQUENCE]).next().is_none());
    }

    #[test]
    fn optional_reads_only_its_tag() {
        let bytes = [INTEGER, 0x01, 0x00, OID, 0x01, 0x2a];
        let mut reader = Reader::new(&bytes);
        assert!(reader.optional(OID).is_none());
        assert_eq!(reader.optional(INTEGER), Some(&[0u8][..]));
        assert_eq!(reader.optional(OID), Some(&[0x2au8][..]));
    }

    #[test]
    fn integers_lose_their_leading_zeros() {
        assert_eq!(unsigned(&[0, 0x80, 1]), [0x80, 1]);
        assert_eq!(unsigned(&[0]), [0u8; 0]);
        assert_eq!(whole_bytes(&[0, 4, 1]), Some(&[4u8, 1][..]));
        assert_eq!(whole_bytes(&[3, 4]), None);
    }
}
