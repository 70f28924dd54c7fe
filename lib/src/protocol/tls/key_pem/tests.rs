use proptest::prelude::*;
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};

use super::{decode, decode_written_form};

/// The keys of `command/tests/fixtures` (PKCS#8 RSA, EC and Ed25519 keys, a PKCS#1 RSA key, a
/// SEC1 EC key).
const KEYS: [&str; 9] = [
    "example.key",
    "example-pkcs1.key",
    "example-corrupt.key",
    "localhost.key",
    "localhost-sec1.key",
    "localhost2.key",
    "p384.key",
    "ed25519.key",
    "secp256k1.key",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../command/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// What `rustls_pki_types` makes of a text: the key's encoding and DER, or the error's text.
fn reference(
    pem: &[u8],
) -> Result<(std::mem::Discriminant<PrivateKeyDer<'static>>, Vec<u8>), String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map(|key| (std::mem::discriminant(&key), key.secret_der().to_vec()))
        .map_err(|error| error.to_string())
}

fn ours(pem: &[u8]) -> Result<(std::mem::Discriminant<PrivateKeyDer<'static>>, Vec<u8>), String> {
    decode(pem)
        .map(|key| (std::mem::discriminant(&key), key.secret_der().to_vec()))
        .map_err(|error| error.to_string())
}

/// Issue 17, aim 4: the fixtures' keys take the fast path and decode as `rustls_pki_types`
/// decodes them.
#[test]
fn written_keys_decode_as_rustls_pki_types_decodes_them() {
    for name in KEYS {
        let pem = fixture(name);
        let key = decode_written_form(&pem).unwrap_or_else(|| panic!("{name}: not read"));
        let expected = PrivateKeyDer::from_pem_slice(&pem).expect("a key");
        assert_eq!(key.secret_der(), expected.secret_der(), "{name}");
        assert_eq!(
            std::mem::discriminant(&key),
            std::mem::discriminant(&expected),
            "{name}"
        );
        let crlf = String::from_utf8(pem.clone())
            .expect("text")
            .replace('\n', "\r\n");
        assert_eq!(ours(crlf.as_bytes()), reference(&pem), "{name} with CRLF");
    }
}

/// Texts outside the written form go to `rustls_pki_types`, which accepts or refuses them with
/// its own errors.
#[test]
fn other_texts_are_left_to_rustls_pki_types() {
    let pem = String::from_utf8(fixture("example.key")).expect("text");
    let body_start = pem.find('\n').expect("a header") + 1;
    let odd = [
        format!("a comment\n{pem}"),
        pem.replacen(
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY----- ",
            1,
        ),
        pem.replacen(
            "-----END PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            1,
        ),
        pem.replacen("-----END PRIVATE KEY-----\n", "", 1),
        format!("{} {}", &pem[..body_start], &pem[body_start..]),
        format!("{}*{}", &pem[..body_start], &pem[body_start + 1..]),
        pem.replacen(
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN CERTIFICATE-----",
            1,
        ),
        String::new(),
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n".to_string(),
        "-----BEGIN PRIVATE KEY-----\nAAA=A===\n-----END PRIVATE KEY-----\n".to_string(),
        "-----BEGIN PRIVATE KEY-----\nAAAAAA\n-----END PRIVATE KEY-----\n".to_string(),
    ];
    for text in odd {
        assert!(decode_written_form(text.as_bytes()).is_none(), "{text:?}");
        assert_eq!(
            ours(text.as_bytes()),
            reference(text.as_bytes()),
            "{text:?}"
        );
    }
}

#[test]
fn padding_ends_the_last_quantum() {
    for (body, der) in [
        ("AAEC", vec![0, 1, 2]),
        ("AAECAw==", vec![0, 1, 2, 3]),
        ("AAECAwQ=", vec![0, 1, 2, 3, 4]),
    ] {
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let key = decode_written_form(pem.as_bytes()).expect("read");
        assert_eq!(key.secret_der(), der.as_slice());
        assert_eq!(ours(pem.as_bytes()), reference(pem.as_bytes()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever a key's text becomes, `decode` gives what `rustls_pki_types` gives: the same
    /// key, or the same error.
    #[test]
    fn any_text_decodes_as_rustls_pki_types_decodes_it(
        key in 0..KEYS.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut pem = fixture(KEYS[key]);
        for (at, byte) in edits {
            let at = at.index(pem.len());
            // Mostly characters a key's text holds, sometimes any byte.
            pem[at] = match byte % 4 {
                0 => byte,
                1 => b"\n\r= -"[usize::from(byte) % 5],
                _ => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [usize::from(byte) % 64],
            };
        }
        if truncate {
            pem.truncate(cut.index(pem.len() + 1));
        }
        prop_assert_eq!(ours(&pem), reference(&pem));
    }
}
