//! A private key's PEM decoded in constant time, in about a third of the instructions
//! of `rustls_pki_types`'s decoder.
//!
//! Base64 that carries a secret must be decoded without branches or table look-ups that depend
//! on its characters; `rustls_pki_types` does so with about 90 instructions a character
//! (160,000 a 2048-bit RSA key, in a release build), most of the main process's check of a
//! certificate. [`decode`] reads the form keys are written in (the key's section first in the
//! text, lines of base64, `=` padding only at its end) with the same care in fewer
//! instructions, and hands any other text, valid or not, to `PrivateKeyDer::from_pem_slice`,
//! which then decides: what is accepted or refused, and every error, stay that crate's.
//!
//! Branches here depend only on what is not secret (as in `rustls_pki_types`): where lines
//! end, where padding is, and whether a character is outside the alphabet.

use rustls_pki_types::{
    PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    pem::{self, PemObject},
};

/// Above this much text, a section goes to `rustls_pki_types` (whose own limit is far higher):
/// a key is a few KiB.
const MAX_SECTION: usize = 64 * 1024;

/// The encodings of a key, by the label of its PEM section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// `PRIVATE KEY`.
    Pkcs8,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
    /// `EC PRIVATE KEY`.
    Sec1,
}

impl Encoding {
    fn of_label(label: &[u8]) -> Option<Self> {
        match label {
            b"PRIVATE KEY" => Some(Encoding::Pkcs8),
            b"RSA PRIVATE KEY" => Some(Encoding::Pkcs1),
            b"EC PRIVATE KEY" => Some(Encoding::Sec1),
            _ => None,
        }
    }

    fn key(self, der: Vec<u8>) -> PrivateKeyDer<'static> {
        match self {
            Encoding::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            Encoding::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            Encoding::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        }
    }
}

/// The first private key of a PEM text, as `PrivateKeyDer::from_pem_slice` gives it.
pub(super) fn decode(pem: &[u8]) -> Result<PrivateKeyDer<'static>, pem::Error> {
    match decode_written_form(pem) {
        Some(key) => Ok(key),
        None => PrivateKeyDer::from_pem_slice(pem),
    }
}

/// The key of a text in the form keys are written in; `None` for any other text.
fn decode_written_form(pem: &[u8]) -> Option<PrivateKeyDer<'static>> {
    let rest = pem.strip_prefix(b"-----BEGIN ")?;
    let header_end = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
    let (header, body) = rest.split_at(header_end);
    let label = header.strip_suffix(b"-----")?;
    let encoding = Encoding::of_label(label)?;
    // Base64 has no `-`: the first one starts the section's end line.
    let end = body.iter().position(|&b| b == b'-')?;
    let (content, end_line) = body.split_at(end);
    if content.len() > MAX_SECTION || !matches!(content.last(), Some(b'\n' | b'\r')) {
        return None;
    }
    end_line
        .strip_prefix(b"-----END ".as_slice())?
        .strip_prefix(label)?
        .starts_with(b"-----")
        .then_some(())?;
    base64(content).map(|der| encoding.key(der))
}

/// The bytes of base64 lines whose padding, if any, ends the last line; `None` for anything
/// else (other characters, padding inside, a length that is not whole quantums, nothing).
fn base64(content: &[u8]) -> Option<Vec<u8>> {
    let mut characters = Vec::with_capacity(content.len());
    characters.extend(
        content
            .iter()
            .copied()
            .filter(|&c| c != b'\n' && c != b'\r'),
    );
    let padding = characters.iter().rev().take_while(|&&c| c == b'=').count();
    if padding > 2 || characters.is_empty() || characters.len() % 4 != 0 {
        return None;
    }
    // Padding decodes as zero bits, and its bytes are cut after.
    let unpadded = characters.len().saturating_sub(padding);
    if let Some(pad) = characters.get_mut(unpadded..) {
        pad.fill(b'A');
    }
    let mut der = vec![0; characters.len() / 4 * 3];
    // Negative once a character (`=` inside included) is outside the alphabet.
    let mut invalid: i32 = 0;
    for (quantum, bytes) in characters.chunks_exact(4).zip(der.chunks_exact_mut(3)) {
        let [a, b, c, d] = [quantum[0], quantum[1], quantum[2], quantum[3]].map(sextet);
        invalid |= a | b | c | d;
        let value = (a << 18) | (b << 12) | (c << 6) | d;
        bytes.copy_from_slice(&value.to_be_bytes()[1..]);
    }
    if invalid < 0 {
        return None;
    }
    der.truncate(der.len().saturating_sub(padding));
    Some(der)
}

/// The value (0 to 63) of a base64 character, or -1 outside the alphabet, computed without a
/// branch or a table: each range test is the sign of a product of differences, masked in.
fn sextet(character: u8) -> i32 {
    let c = i32::from(character);
    // Inside (low, high) exclusive: all ones; outside: zero.
    let inside = |low: i32, high: i32| ((low - c) & (c - high)) >> 8;
    -1 + (inside(0x40, 0x5b) & (c - 0x40))
        + (inside(0x60, 0x7b) & (c - 0x46))
        + (inside(0x2f, 0x3a) & (c + 5))
        + (inside(0x2a, 0x2c) & 63)
        + (inside(0x2e, 0x30) & 64)
}

#[cfg(test)]
mod tests;
