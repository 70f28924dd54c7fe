//! A private key's PEM decoded in constant time, with about a third of the instructions of
//! `rustls_pki_types`'s decoder.
//!
//! Base64 that carries a secret must be decoded without branches or table look-ups that depend
//! on its characters; `rustls_pki_types` does so with about 90 instructions a character
//! (160,000 a 2048-bit RSA key, in a release build), most of the main process's check of a
//! certificate. [`decode`] reads the form keys are written in (the key's section first in the
//! text, lines of base64, `=` padding only at its end) and decodes its base64 with `base64ct`,
//! constant-time as well, and hands any other text, valid or not, to
//! `PrivateKeyDer::from_pem_slice`, which then decides: what is accepted or refused, and every
//! error, stay that crate's.
//!
//! Branches here depend only on what is not secret (as in `rustls_pki_types`): where lines
//! end and where the section ends.

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
    // Base64 has no `-`: the first one starts the section's end line. `memchr` compares 32
    // bytes at a time (a key's 1.7 KB byte by byte was a tenth of decoding it).
    let end = memchr::memchr(b'-', body)?;
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

/// The bytes of base64 lines, padded as standard base64 is; `None` for anything else (other
/// characters, padding inside, a length that is not whole quantums, nothing).
fn base64(content: &[u8]) -> Option<Vec<u8>> {
    use base64ct::Encoding as _;
    let characters = sozu_command_lib::certificate::pem_lines_joined(content);
    if characters.is_empty() {
        return None;
    }
    let mut der = vec![0; characters.len() / 4 * 3];
    let length = base64ct::Base64::decode(&characters, &mut der).ok()?.len();
    der.truncate(length);
    Some(der)
}

#[cfg(test)]
mod tests;
