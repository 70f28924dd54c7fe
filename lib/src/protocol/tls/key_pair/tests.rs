use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{Comparison, Refusal, compare};

/// A fixture of `command/tests/fixtures`. Pairs: `example` (RSA 2048, PKCS#8; also as PKCS#1
/// in `example-pkcs1.key`), `localhost` (P-256, PKCS#8; also as SEC1 in `localhost-sec1.key`),
/// `p384`, `ed25519` (PKCS#8 v1, without its public key). Odd keys: `localhost2.key` (another
/// P-256 key), `ed25519-other.key`, `secp256k1.key` (a curve rustls does not sign with),
/// `example-corrupt.key` (`example.key` with one bit of its private exponent flipped).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../command/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(&fixture(&format!("{name}.pem"))).expect("a certificate")
}

fn key(name: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(&fixture(name)).expect("a PEM private key")
}

fn verdict(certificate: &str, key_file: &str) -> Result<bool, Refusal> {
    let leaf = leaf(certificate);
    compare(&key(key_file), &leaf).map(|comparison| comparison == Comparison::Matches)
}

#[test]
fn keys_that_carry_their_public_part_match_their_certificate() {
    for (certificate, key) in [
        ("example", "example.key"),
        ("example", "example-pkcs1.key"),
        ("localhost", "localhost.key"),
        ("localhost", "localhost-sec1.key"),
        ("p384", "p384.key"),
    ] {
        assert_eq!(verdict(certificate, key), Ok(true), "{certificate} {key}");
    }
}

#[test]
fn a_key_without_its_public_part_needs_decoding_against_the_certificate_key() {
    let leaf = leaf("ed25519");
    match compare(&key("ed25519.key"), &leaf) {
        Ok(Comparison::NeedsDecoding(info)) => {
            assert!(leaf.windows(info.len()).any(|window| window == info));
            assert_eq!(info.len(), 44, "an Ed25519 SubjectPublicKeyInfo");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        compare(&key("ed25519-other.key"), &leaf),
        Ok(Comparison::NeedsDecoding(_))
    ));
}

#[test]
fn keys_of_other_certificates_are_refused() {
    for (certificate, key) in [
        ("example", "key.pem"),
        ("example", "localhost.key"),
        ("localhost", "localhost2.key"),
        ("localhost", "p384.key"),
        ("localhost", "example-pkcs1.key"),
        ("p384", "localhost-sec1.key"),
        ("ed25519", "localhost.key"),
        ("localhost", "ed25519.key"),
    ] {
        assert_eq!(
            verdict(certificate, key),
            Err(Refusal::Mismatch),
            "{certificate} {key}"
        );
    }
}

#[test]
fn a_key_of_a_curve_rustls_does_not_sign_with_is_unsupported() {
    assert_eq!(
        verdict("localhost", "secp256k1.key"),
        Err(Refusal::Unsupported)
    );
}

#[test]
fn a_corrupt_private_part_is_not_seen_here() {
    // The public part is right: only decoding the key tells (see `tls::tests`).
    assert_eq!(verdict("example", "example-corrupt.key"), Ok(true));
}

#[test]
fn what_is_not_a_key_is_malformed() {
    let leaf = leaf("example");
    let good = key("example.key");
    let der = good.secret_der();
    for broken in [
        PrivateKeyDer::Pkcs8(b"not a key".to_vec().into()),
        PrivateKeyDer::Pkcs8(der.get(..der.len() / 2).unwrap_or_default().to_vec().into()),
        PrivateKeyDer::Pkcs1(der.to_vec().into()),
        PrivateKeyDer::Sec1(der.to_vec().into()),
        PrivateKeyDer::Pkcs8(Vec::new().into()),
    ] {
        assert_eq!(
            compare(&broken, &leaf).map(|_| ()),
            Err(Refusal::Malformed),
            "{broken:?}"
        );
    }
}

#[test]
fn a_certificate_that_is_not_der_cannot_be_compared() {
    assert_eq!(
        compare(&key("example.key"), b"garbage").map(|_| ()),
        Err(Refusal::CertificateKey)
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes, as any kind of key or as the certificate, give a verdict, never a panic.
        #[test]
        fn any_bytes_give_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let leaf = leaf("example");
            let _ = compare(&PrivateKeyDer::Pkcs8(bytes.clone().into()), &leaf);
            let _ = compare(&PrivateKeyDer::Pkcs1(bytes.clone().into()), &leaf);
            let _ = compare(&PrivateKeyDer::Sec1(bytes.clone().into()), &leaf);
            let _ = compare(&key("localhost.key"), &bytes);
        }

        /// A key with one byte changed is refused or still matches; it never matches another
        /// certificate.
        #[test]
        fn a_changed_byte_never_matches_another_certificate(index in 0usize..1218, change in 1u8..) {
            let mut der = key("example.key").secret_der().to_vec();
            if let Some(byte) = der.get_mut(index) {
                *byte ^= change;
            }
            let changed = PrivateKeyDer::Pkcs8(der.into());
            prop_assert!(compare(&changed, &leaf("localhost")).is_err());
        }
    }
}
