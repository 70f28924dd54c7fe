//! Whether a private key belongs to a certificate, by the public part the key's encoding
//! carries, without decoding the key as the crypto library does.
//!
//! Decoding an RSA key with aws-lc validates its private part (the primes, the exponents),
//! which costs a few hundred microseconds a key: most of a start with thousands of
//! certificates. The public part sits in the key's encoding next to the private one (an RSA
//! key's modulus and exponent, an EC key's point when it carries it, an Ed25519 key's public
//! key in PKCS#8 v2), and comparing it with the certificate's SubjectPublicKeyInfo tells a key
//! of another certificate, or something that is not a key, as surely. What it cannot tell is
//! a key whose private part is corrupt while its public part is right: that key fails when it
//! is decoded, at the first handshake that needs it (see `super::LoadedCertificate`).
//!
//! Structures read (with [`super::der`]): PKCS#8 (RFC 5958), PKCS#1 `RSAPrivateKey` (RFC 8017),
//! SEC1 `ECPrivateKey` (RFC 5915), and the certificate's `SubjectPublicKeyInfo` (RFC 5280).

use rustls_pki_types::PrivateKeyDer;

use super::der::{
    self, BIT_STRING, CONTEXT_0, CONTEXT_1, CONTEXT_1_PRIMITIVE, INTEGER, OCTET_STRING, OID,
    Reader, SEQUENCE,
};

/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `id-ecPublicKey`, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `id-Ed25519`, 1.3.101.112.
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// The curves rustls signs with (P-256, P-384, P-521), by OID.
const CURVES: [&[u8]; 3] = [
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    &[0x2b, 0x81, 0x04, 0x00, 0x22],
    &[0x2b, 0x81, 0x04, 0x00, 0x23],
];

/// Why a key is not the certificate's, as far as the encodings tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The key is not a well-formed PKCS#8, PKCS#1 or SEC1 structure.
    Malformed,
    /// A well-formed key of a kind rustls does not sign with.
    Unsupported,
    /// The key's public part is not the certificate's.
    Mismatch,
    /// The certificate's public key info cannot be read.
    CertificateKey,
}

/// What comparing the public parts concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparison<'a> {
    /// The key's public part is the certificate's.
    Matches,
    /// The key's encoding does not carry its public part (an EC key without its point, an
    /// Ed25519 key in PKCS#8 v1): only decoding the key computes it, to be compared with this
    /// SubjectPublicKeyInfo (its whole DER encoding).
    NeedsDecoding(&'a [u8]),
}

/// Compares the public part `key` carries with the SubjectPublicKeyInfo of `certificate` (the
/// leaf's DER).
pub(super) fn compare<'a>(
    key: &PrivateKeyDer<'_>,
    certificate: &'a [u8],
) -> Result<Comparison<'a>, Refusal> {
    let public_part = public_part(key)?;
    let certificate = CertificateKey::read(certificate).ok_or(Refusal::CertificateKey)?;
    let matches = match public_part {
        PublicPart::Rsa { modulus, exponent } => {
            if certificate.algorithm != RSA_ENCRYPTION {
                return Err(Refusal::Mismatch);
            }
            let mut rsa = Reader::new(certificate.key)
                .expect(SEQUENCE)
                .map(Reader::new);
            let mut integer = || rsa.as_mut()?.expect(INTEGER).map(der::unsigned);
            match (integer(), integer()) {
                (Some(certificate_modulus), Some(certificate_exponent)) => {
                    certificate_modulus == modulus && certificate_exponent == exponent
                }
                _ => return Err(Refusal::CertificateKey),
            }
        }
        PublicPart::Ec { curve, point } => {
            if certificate.algorithm != EC_PUBLIC_KEY || certificate.parameters != Some(curve) {
                return Err(Refusal::Mismatch);
            }
            match point {
                Some(point) => point == certificate.key,
                None => return Ok(Comparison::NeedsDecoding(certificate.encoding)),
            }
        }
        PublicPart::Ed25519 { public_key } => {
            if certificate.algorithm != ED25519 {
                return Err(Refusal::Mismatch);
            }
            match public_key {
                Some(public_key) => public_key == certificate.key,
                None => return Ok(Comparison::NeedsDecoding(certificate.encoding)),
            }
        }
    };
    if matches {
        Ok(Comparison::Matches)
    } else {
        Err(Refusal::Mismatch)
    }
}

/// The public part of a private key, as far as its encoding carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublicPart<'a> {
    /// An RSA key's modulus and public exponent, without leading zeros.
    Rsa {
        modulus: &'a [u8],
        exponent: &'a [u8],
    },
    /// An EC key's curve (its OID's contents, one of [`CURVES`]) and its point if carried.
    Ec {
        curve: &'a [u8],
        point: Option<&'a [u8]>,
    },
    /// An Ed25519 key's public key if carried (PKCS#8 v2).
    Ed25519 { public_key: Option<&'a [u8]> },
}

fn public_part<'a>(key: &'a PrivateKeyDer<'_>) -> Result<PublicPart<'a>, Refusal> {
    match key {
        PrivateKeyDer::Pkcs1(key) => rsa_private_key(key.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(key) => ec_private_key(key.secret_sec1_der(), None),
        PrivateKeyDer::Pkcs8(key) => pkcs8(key.secret_pkcs8_der()),
        _ => Err(Refusal::Unsupported),
    }
}

/// `OneAsymmetricKey` (PKCS#8, v1 or v2).
fn pkcs8(der: &[u8]) -> Result<PublicPart<'_>, Refusal> {
    let mut key = Reader::new(der)
        .expect(SEQUENCE)
        .map(Reader::new)
        .ok_or(Refusal::Malformed)?;
    key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    let mut algorithm = key
        .expect(SEQUENCE)
        .map(Reader::new)
        .ok_or(Refusal::Malformed)?;
    let private_key = key.expect(OCTET_STRING).ok_or(Refusal::Malformed)?;
    key.optional(CONTEXT_0);
    let public_key = key.optional(CONTEXT_1_PRIMITIVE);
    match algorithm.expect(OID).ok_or(Refusal::Malformed)? {
        RSA_ENCRYPTION => rsa_private_key(private_key),
        EC_PUBLIC_KEY => {
            let curve = algorithm.expect(OID).ok_or(Refusal::Malformed)?;
            ec_private_key(private_key, Some(curve))
        }
        ED25519 => {
            // `CurvePrivateKey ::= OCTET STRING`, the 32-byte seed (RFC 8410).
            match Reader::new(private_key).expect(OCTET_STRING) {
                Some(seed) if seed.len() == 32 => {}
                _ => return Err(Refusal::Malformed),
            }
            let public_key = match public_key {
                Some(bits) => Some(der::whole_bytes(bits).ok_or(Refusal::Malformed)?),
                None => None,
            };
            Ok(PublicPart::Ed25519 { public_key })
        }
        _ => Err(Refusal::Unsupported),
    }
}

/// PKCS#1 `RSAPrivateKey`: the version, the modulus and the public exponent, then the six
/// integers of the private part, which must be there but are not judged.
fn rsa_private_key(der: &[u8]) -> Result<PublicPart<'_>, Refusal> {
    let mut key = Reader::new(der)
        .expect(SEQUENCE)
        .map(Reader::new)
        .ok_or(Refusal::Malformed)?;
    key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    let modulus = key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    let exponent = key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    for _ in 0..6 {
        key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    }
    Ok(PublicPart::Rsa {
        modulus: der::unsigned(modulus),
        exponent: der::unsigned(exponent),
    })
}

/// SEC1 `ECPrivateKey`; its curve is the PKCS#8 algorithm's parameter when wrapped, else its
/// own `[0]` parameter.
fn ec_private_key<'a>(
    der: &'a [u8],
    wrapped_curve: Option<&'a [u8]>,
) -> Result<PublicPart<'a>, Refusal> {
    let mut key = Reader::new(der)
        .expect(SEQUENCE)
        .map(Reader::new)
        .ok_or(Refusal::Malformed)?;
    key.expect(INTEGER).ok_or(Refusal::Malformed)?;
    if key.expect(OCTET_STRING).is_none_or(<[u8]>::is_empty) {
        return Err(Refusal::Malformed);
    }
    let own_curve = match key.optional(CONTEXT_0) {
        Some(parameters) => Some(
            Reader::new(parameters)
                .expect(OID)
                .ok_or(Refusal::Malformed)?,
        ),
        None => None,
    };
    let point = match key.optional(CONTEXT_1) {
        Some(public_key) => Some(
            Reader::new(public_key)
                .expect(BIT_STRING)
                .and_then(der::whole_bytes)
                .ok_or(Refusal::Malformed)?,
        ),
        None => None,
    };
    let curve = wrapped_curve.or(own_curve).ok_or(Refusal::Malformed)?;
    if !CURVES.contains(&curve) {
        return Err(Refusal::Unsupported);
    }
    Ok(PublicPart::Ec { curve, point })
}

/// A certificate's `SubjectPublicKeyInfo`, read from the certificate's DER.
struct CertificateKey<'a> {
    /// The algorithm's OID (contents).
    algorithm: &'a [u8],
    /// The algorithm's parameter when it is an OID (an EC key's curve).
    parameters: Option<&'a [u8]>,
    /// The public key's bytes (the `BIT STRING`'s).
    key: &'a [u8],
    /// The whole `SubjectPublicKeyInfo`, as rustls gives a decoded key's.
    encoding: &'a [u8],
}

impl<'a> CertificateKey<'a> {
    /// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    /// serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, … } … }`.
    fn read(certificate: &'a [u8]) -> Option<Self> {
        let certificate = Reader::new(certificate).expect(SEQUENCE)?;
        let mut to_be_signed = Reader::new(Reader::new(certificate).expect(SEQUENCE)?);
        to_be_signed.optional(CONTEXT_0);
        to_be_signed.expect(INTEGER)?;
        for _ in 0..4 {
            to_be_signed.expect(SEQUENCE)?;
        }
        let info = to_be_signed.next().filter(|info| info.tag == SEQUENCE)?;
        let mut fields = Reader::new(info.contents);
        let mut algorithm = Reader::new(fields.expect(SEQUENCE)?);
        Some(CertificateKey {
            algorithm: algorithm.expect(OID)?,
            parameters: algorithm.optional(OID),
            key: der::whole_bytes(fields.expect(BIT_STRING)?)?,
            encoding: info.encoding,
        })
    }
}

#[cfg(test)]
mod tests;
