use sozu_command_lib::request::TlsListenerConfig;

use super::{config::cipher_suite, *};

fn pair(certificate: &str, key: &str) -> CertificateAndKey {
    CertificateAndKey::new(certificate, key)
}

const LOCALHOST: &str = include_str!("../../../../command/tests/fixtures/localhost.pem");
const LOCALHOST_KEY: &str = include_str!("../../../../command/tests/fixtures/localhost.key");
const EXAMPLE: &str = include_str!("../../../../command/tests/fixtures/example.pem");
const EXAMPLE_KEY: &str = include_str!("../../../../command/tests/fixtures/example.key");

#[test]
fn defaults_are_names_the_settings_take() {
    let suites = default_cipher_suites();
    assert_eq!(suites.first(), Some(&"TLS13_AES_256_GCM_SHA384"));
    assert!(suites.iter().all(|name| cipher_suite(name).is_some()));
    let settings = TlsListenerConfig {
        groups_list: default_groups(),
        ..TlsListenerConfig::default()
    };
    assert_eq!(settings.groups_list, ["X25519", "secp256r1", "secp384r1"]);
    assert!(check_settings(&settings).is_ok());
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    assert!(load_certificate(&pair(LOCALHOST, LOCALHOST_KEY), KeyCheck::Now).is_ok());
    assert!(matches!(
        load_certificate(&pair(LOCALHOST, EXAMPLE_KEY), KeyCheck::Now),
        Err(TlsError::KeyMismatch)
    ));
}

/// Issue 17, aim 4: the main process compares public parts instead of decoding each key,
/// and refuses what decoding refused, with the same messages.
#[test]
fn the_public_part_check_refuses_what_decoding_refuses() {
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../command/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("a fixture")
    };
    let ed25519 = fixture("ed25519.pem");
    for (certificate, key) in [
        (LOCALHOST, LOCALHOST_KEY.to_string()),
        (EXAMPLE, EXAMPLE_KEY.to_string()),
        (EXAMPLE, fixture("example-pkcs1.key")),
        (LOCALHOST, fixture("localhost-sec1.key")),
        (&ed25519, fixture("ed25519.key")),
    ] {
        for check in [KeyCheck::Now, KeyCheck::PublicPart] {
            assert!(
                check_certificate(&pair(certificate, &key), check).is_ok(),
                "{check:?} {key}"
            );
        }
    }
    let refused = |certificate: &str, key: &str| {
        let now = check_certificate(&pair(certificate, key), KeyCheck::Now)
            .map_err(|error| error.to_string());
        let public_part = check_certificate(&pair(certificate, key), KeyCheck::PublicPart)
            .map_err(|error| error.to_string());
        assert_eq!(now, public_part, "{key}");
        now.expect_err("refused")
    };
    let mismatch = "the private key does not match the certificate";
    assert_eq!(refused(LOCALHOST, EXAMPLE_KEY), mismatch);
    assert_eq!(refused(EXAMPLE, &fixture("key.pem")), mismatch);
    assert_eq!(refused(&ed25519, &fixture("ed25519-other.key")), mismatch);
    assert_eq!(refused(LOCALHOST, &fixture("localhost2.key")), mismatch);
    assert!(refused(LOCALHOST, &fixture("secp256k1.key")).contains("not supported"));
    let not_a_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
    assert!(refused(LOCALHOST, not_a_key).contains("not a well-formed"));
    assert!(refused(LOCALHOST, "no key").contains("not a PEM private key"));
}

/// The cheap check's blind spot: a key whose private part alone is corrupt passes it and
/// fails when decoded, at its first handshake.
#[test]
fn a_corrupt_private_part_fails_when_decoded_only() {
    let corrupt = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../command/tests/fixtures/example-corrupt.key"
    ))
    .expect("a fixture");
    let certificate = pair(EXAMPLE, &corrupt);
    assert!(matches!(
        check_certificate(&certificate, KeyCheck::Now),
        Err(TlsError::KeyDecode(_))
    ));
    let loaded = load_certificate(&certificate, KeyCheck::PublicPart)
        .expect("its public part is the certificate's");
    assert!(loaded.certified_key().is_none(), "no key to serve");
}

#[test]
fn names_find_their_certificate_and_others_get_the_default() {
    let mut table = CertificateTable::default();
    let localhost = load_certificate(&pair(LOCALHOST, LOCALHOST_KEY), KeyCheck::Now).unwrap();
    let example = load_certificate(&pair(EXAMPLE, EXAMPLE_KEY), KeyCheck::Now).unwrap();
    table.add(localhost.clone());
    table.add(example.clone());
    let is = |found: Option<Arc<CertifiedKey>>, expected: &LoadedCertificate| {
        found.is_some_and(|key| {
            expected
                .certified_key()
                .is_some_and(|served| Arc::ptr_eq(&key, &served))
        })
    };
    assert!(is(table.find(Some("localhost")), &localhost));
    assert!(is(table.find(Some("EXAMPLE.com")), &example));
    assert!(is(table.find(Some("www.example.com")), &example));
    assert!(
        is(table.find(Some("a.b.example.com")), &example),
        "no default: newest"
    );
    table.default = Some(localhost.clone());
    assert!(is(table.find(Some("unknown.test")), &localhost));
    assert!(is(table.find(None), &localhost));
    assert!(table.remove(&example.fingerprint));
    assert!(is(table.find(Some("example.com")), &localhost));
}

#[test]
fn a_key_checked_on_first_use_is_decoded_once_then() {
    let lazy = load_certificate(&pair(LOCALHOST, LOCALHOST_KEY), KeyCheck::OnFirstUse)
        .expect("the certificate itself is read now");
    assert_eq!(lazy.names, ["localhost", "127.0.0.1"]);
    assert!(
        lazy.key.decoded.get().is_none(),
        "not decoded while loading"
    );
    let first = lazy.certified_key().expect("a matching key decodes");
    let again = lazy.certified_key().expect("still there");
    assert!(Arc::ptr_eq(&first, &again), "decoded once");
}

#[test]
fn a_key_of_another_certificate_checked_on_first_use_fails_its_handshakes_only() {
    let lazy = load_certificate(&pair(LOCALHOST, EXAMPLE_KEY), KeyCheck::OnFirstUse)
        .expect("the key is not looked at while loading");
    assert!(lazy.certified_key().is_none());
    let mut table = CertificateTable::default();
    let example =
        load_certificate(&pair(EXAMPLE, EXAMPLE_KEY), KeyCheck::OnFirstUse).expect("a good pair");
    table.add(lazy);
    table.add(example);
    assert!(table.find(Some("localhost")).is_none(), "no key to serve");
    assert!(table.find(Some("example.com")).is_some());
}

/// Issue 17, aim 4: a certificate decoded at first use serves the chain that decoding it while
/// loading serves (every certificate of its text, then its chain's), and decodes its text
/// again only when the leaf, decoded while loading, is not all the text holds.
#[test]
fn a_certificate_decoded_on_first_use_serves_the_chain_decoded_now() {
    const CHAIN: &str = include_str!("../../../../command/tests/fixtures/certificate_chain.pem");
    let alone = pair(LOCALHOST, LOCALHOST_KEY);
    let with = |change: &dyn Fn(&mut CertificateAndKey)| {
        let mut certificate = alone.clone();
        change(&mut certificate);
        certificate
    };
    let cases = [
        (alone.clone(), false),
        (
            with(&|c| c.certificate_chain = vec![CHAIN.to_string()]),
            false,
        ),
        (
            with(&|c| c.certificate = LOCALHOST.replace('\n', "\r\n")),
            false,
        ),
        (
            with(&|c| c.certificate = LOCALHOST.trim_end().to_string()),
            false,
        ),
        (
            with(&|c| c.certificate = format!("{LOCALHOST}{CHAIN}")),
            true,
        ),
        (
            with(&|c| c.certificate = format!("{LOCALHOST}# a comment\n")),
            true,
        ),
        (
            with(&|c| c.certificate = format!("# a comment\n{LOCALHOST}")),
            true,
        ),
    ];
    for (certificate, keeps_text) in cases {
        let now = load_certificate(&certificate, KeyCheck::Now)
            .expect("a good pair")
            .certified_key()
            .expect("decoded");
        let lazy = load_certificate(&certificate, KeyCheck::OnFirstUse).expect("a good pair");
        let pending = lazy.key.pending.as_ref().expect("decoded at first use");
        assert_eq!(
            pending.leaf.is_none(),
            keeps_text,
            "{:?}",
            certificate.certificate
        );
        let served = lazy.certified_key().expect("decodes");
        assert_eq!(served.cert, now.cert, "{:?}", certificate.certificate);
    }
}

/// Issue 17, aim 4: a worker reads the leaf certificate alone; the chain and the key, which
/// the main process checked, are decoded at first use.
#[test]
fn a_chain_checked_on_first_use_fails_its_handshakes_only() {
    let mut broken = pair(LOCALHOST, LOCALHOST_KEY);
    broken.certificate_chain =
        vec!["-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_string()];
    assert!(matches!(
        load_certificate(&broken, KeyCheck::PublicPart),
        Err(TlsError::Certificate(CertificateError::InvalidChainPem(_)))
    ));
    let lazy = load_certificate(&broken, KeyCheck::OnFirstUse)
        .expect("the chain is not looked at while loading");
    assert_eq!(lazy.names, ["localhost", "127.0.0.1"]);
    assert!(lazy.certified_key().is_none());

    let mut not_a_key = pair(LOCALHOST, "no key here");
    assert!(matches!(
        load_certificate(&not_a_key, KeyCheck::PublicPart),
        Err(TlsError::Certificate(CertificateError::InvalidKeyPem))
    ));
    not_a_key.names = vec!["Other.Test".to_string()];
    let lazy = load_certificate(&not_a_key, KeyCheck::OnFirstUse)
        .expect("the key is not looked at while loading");
    assert_eq!(lazy.names, ["other.test"]);
    assert!(lazy.certified_key().is_none());
}

#[test]
fn unknown_cipher_names_are_refused() {
    let mut settings = TlsListenerConfig::default();
    assert!(check_settings(&settings).is_ok());
    settings.cipher_suites = vec!["TLS13_AES_256_GCM_SHA384".to_string()];
    assert!(check_settings(&settings).is_ok());
    settings.cipher_suites = vec!["TLS13_ROT13".to_string()];
    assert!(matches!(
        check_settings(&settings),
        Err(TlsError::CipherSuite(_))
    ));
    settings.cipher_suites.clear();
    settings.versions.clear();
    assert!(matches!(
        check_settings(&settings),
        Err(TlsError::NoVersion)
    ));
}

/// The facts the main process reads of `certificate` while checking it, as a worker is given
/// them with its order.
fn facts_of(certificate: &CertificateAndKey) -> CertificateFacts {
    check_certificate(certificate, KeyCheck::PublicPart).expect("the main process accepts it")
}

/// Issue 17, aim 4: a worker given the facts of a certificate reads nothing of it while
/// loading (a text that is no certificate at all loads), serves it for the names given, and
/// decodes the whole chain and the key at its first handshake, serving what decoding it
/// while loading serves.
#[test]
fn a_certificate_given_its_facts_is_read_at_its_first_handshake_only() {
    let certificate = Arc::new(pair(LOCALHOST, LOCALHOST_KEY));
    let mut facts = facts_of(&certificate);
    facts.names = vec!["given.test".to_string()];
    let (lazy, kept) =
        load_certificate_given_facts(&certificate, facts.clone(), KeyCheck::OnFirstUse)
            .expect("loads");
    assert_eq!(kept, facts);
    assert_eq!(
        lazy.names,
        ["given.test"],
        "the names given, not the certificate's"
    );
    assert_eq!(lazy.fingerprint, facts.fingerprint);
    assert!(
        lazy.key.decoded.get().is_none(),
        "not decoded while loading"
    );
    assert_eq!(
        Arc::strong_count(&certificate),
        2,
        "its text is held, not copied"
    );
    let not_read = Arc::new(pair("not a certificate", "nor a key"));
    let unread = load_certificate_given_facts(&not_read, facts.clone(), KeyCheck::OnFirstUse)
        .expect("nothing is read while loading")
        .0;
    assert!(unread.certified_key().is_none(), "fails at its first use");

    let mut table = CertificateTable::default();
    table.add(lazy.clone());
    table.add(load_certificate(&pair(EXAMPLE, EXAMPLE_KEY), KeyCheck::OnFirstUse).unwrap());
    let served = table
        .find(Some("given.test"))
        .expect("served by the names given");
    let now = load_certificate(&certificate, KeyCheck::Now).unwrap();
    let decoded = now.certified_key().expect("decoded");
    assert_eq!(served.cert, decoded.cert);
    assert!(
        table
            .find(Some("localhost"))
            .is_some_and(|key| key.cert != decoded.cert),
        "the certificate's own names are not the names given: the newest is served"
    );
}

/// Issue 17, aim 4: given facts, a key that is not the certificate's fails the handshakes
/// that need it, as it does without them with [`KeyCheck::OnFirstUse`]; with a check that
/// decodes the key while loading, the facts change nothing: it is refused then.
#[test]
fn a_key_of_another_certificate_given_facts_fails_its_handshakes_only() {
    let facts = facts_of(&pair(LOCALHOST, LOCALHOST_KEY));
    let mismatched = Arc::new(pair(LOCALHOST, EXAMPLE_KEY));
    let (lazy, _) = load_certificate_given_facts(&mismatched, facts.clone(), KeyCheck::OnFirstUse)
        .expect("the key is not looked at while loading");
    let mut table = CertificateTable::default();
    table.add(load_certificate(&pair(EXAMPLE, EXAMPLE_KEY), KeyCheck::OnFirstUse).unwrap());
    table.add(lazy);
    assert!(table.find(Some("localhost")).is_none(), "no key to serve");
    assert!(table.find(Some("example.com")).is_some());
    for check in [KeyCheck::Now, KeyCheck::PublicPart] {
        assert!(matches!(
            load_certificate_given_facts(&mismatched, facts.clone(), check),
            Err(TlsError::KeyMismatch)
        ));
    }
}
