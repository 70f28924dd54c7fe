//! What the state needs to know of a certificate: its fingerprint, the names it answers for and
//! its validity. The PEM text is decoded and the leaf certificate read as X.509; whether the key
//! matches the certificate is checked by the TLS code of `sozu-lib`, which owns the crypto.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use x509_parser::{
    certificate::X509CertificateParser,
    extensions::{GeneralName, SubjectAlternativeName},
    nom::Parser as _,
    oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME,
    prelude::FromDer,
};

use crate::request::{CertificateAndKey, Fingerprint, Order};

/// The facts read from a certificate and its key.
///
/// In JSON (`{"fingerprint":…,"names":[…],"not_before":…,"not_after":…}`), the main process
/// gives them to its workers with the certificate orders it checked
/// ([`crate::request::WorkerRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFacts {
    /// The SHA-256 of the certificate's DER encoding.
    pub fingerprint: Fingerprint,
    /// DNS names of the subject alternative names, then the common name if not among them,
    /// lowercased; or the names the order lists explicitly.
    pub names: Vec<String>,
    /// Validity bounds, in seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertificateFacts {
    /// Whether the certificate's validity has ended at `now` (seconds since the Unix epoch).
    pub fn is_expired_at(&self, now: i64) -> bool {
        now > self.not_after
    }
}

/// Why a certificate and its key cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The certificate text holds no PEM `CERTIFICATE` block.
    #[error("the certificate is not PEM with a CERTIFICATE block")]
    NoCertificate,
    /// The certificate's PEM does not decode.
    #[error("the certificate PEM is invalid")]
    InvalidCertificatePem(#[source] rustls_pki_types::pem::Error),
    /// A certificate of the chain does not decode.
    #[error("the certificate chain PEM is invalid")]
    InvalidChainPem(#[source] rustls_pki_types::pem::Error),
    /// The key is not a PEM private key of a known kind.
    #[error("the key is not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    InvalidKeyPem,
    /// The certificate's DER is not valid X.509.
    #[error("the certificate is not valid X.509")]
    InvalidX509(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The certificate names no DNS name and the order lists none.
    #[error("the certificate names no DNS name (no subject alternative name nor common name)")]
    NoNames,
    /// The certificate's validity has ended and the order did not allow it.
    #[error(
        "the certificate expired at {not_after} (seconds since the epoch); allow expired certificates to load it"
    )]
    Expired {
        /// End of validity, in seconds since the Unix epoch.
        not_after: i64,
    },
}

/// Decodes a certificate and its key, and reads the facts the state keeps.
pub fn inspect(certificate: &CertificateAndKey) -> Result<CertificateFacts, CertificateError> {
    inspect_with_leaf(certificate).map(|(facts, _)| facts)
}

/// [`inspect`], with the DER of the leaf certificate it decoded, for a caller that checks the
/// key against it without decoding the PEM text again.
pub fn inspect_with_leaf(
    certificate: &CertificateAndKey,
) -> Result<(CertificateFacts, CertificateDer<'static>), CertificateError> {
    let leaf = leaf_der(&certificate.certificate)?;
    for chain in &certificate.certificate_chain {
        for der in CertificateDer::pem_slice_iter(chain.as_bytes()) {
            der.map_err(CertificateError::InvalidChainPem)?;
        }
    }
    if !is_private_key_pem(&certificate.key) {
        return Err(CertificateError::InvalidKeyPem);
    }
    facts_of_leaf(certificate, leaf)
}

/// The facts of the leaf certificate alone, with its DER: the chain and the key are not
/// looked at. For a worker, whose orders come from a main process that checked them whole
/// ([`inspect_with_leaf`]); the TLS code decodes the chain and the key at first use.
pub fn inspect_leaf(
    certificate: &CertificateAndKey,
) -> Result<(CertificateFacts, CertificateDer<'static>), CertificateError> {
    let leaf = leaf_der(&certificate.certificate)?;
    facts_of_leaf(certificate, leaf)
}

/// Reads the names (or takes the order's) and the validity of `leaf`, the DER of the
/// certificate's leaf, and computes its fingerprint.
fn facts_of_leaf(
    certificate: &CertificateAndKey,
    leaf: CertificateDer<'static>,
) -> Result<(CertificateFacts, CertificateDer<'static>), CertificateError> {
    // The extensions are not parsed one by one (a failure there never refused a certificate):
    // only the subject alternative names are, by `names_of`.
    let (_, x509) = X509CertificateParser::new()
        .with_deep_parse_extensions(false)
        .parse(&leaf)
        .map_err(CertificateError::InvalidX509)?;
    let names = if certificate.names.is_empty() {
        names_of(&x509)
    } else {
        certificate
            .names
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect()
    };
    if names.is_empty() {
        return Err(CertificateError::NoNames);
    }
    let facts = CertificateFacts {
        fingerprint: Fingerprint::of_der(&leaf),
        names,
        not_before: x509.validity().not_before.timestamp(),
        not_after: x509.validity().not_after.timestamp(),
    };
    Ok((facts, leaf))
}

/// The labels of the private key PEM blocks [`is_private_key_pem`] accepts.
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Whether `pem` holds a private key block: for one of [`KEY_LABELS`], both its
/// `-----BEGIN label-----` and `-----END label-----` lines, anywhere. Decoding the key (in
/// constant time, as secrets are) and checking it against the certificate is the TLS code's
/// job (`sozu_lib::protocol::tls::load_certificate`); here it would cost as much again for
/// every certificate of a large state. One pass over the text for each marker (`memmem`).
fn is_private_key_pem(pem: &str) -> bool {
    let pem = pem.as_bytes();
    let labels_after = |marker: &[u8]| -> u8 {
        memchr::memmem::find_iter(pem, marker).fold(0u8, |found, start| {
            let after = pem
                .get(start.saturating_add(marker.len())..)
                .unwrap_or_default();
            KEY_LABELS
                .iter()
                .enumerate()
                .filter(|(_, label)| {
                    after
                        .strip_prefix(label.as_bytes())
                        .is_some_and(|rest| rest.starts_with(b"-----"))
                })
                .fold(found, |found, (index, _)| found | 1 << index)
        })
    };
    labels_after(b"-----BEGIN ") & labels_after(b"-----END ") != 0
}

/// Refuses the certificate a client's order brings (`ADD_CERTIFICATE`, `REPLACE_CERTIFICATE`)
/// when its validity ended before `now` (seconds since the epoch), unless the order allows it.
///
/// Only the main process calls this, once, when a client gives the order: the state and the
/// workers never judge time, so a state that holds a certificate which expired since is
/// replayed whole (by a restarted worker, a new main process, a state file).
pub fn check_not_expired(order: &Order, now: i64) -> Result<(), CertificateError> {
    let (certificate, allow_expired) = match order {
        Order::AddCertificate(add) => (&add.certificate, add.allow_expired),
        Order::ReplaceCertificate(replace) => (&replace.new_certificate, replace.allow_expired),
        _ => return Ok(()),
    };
    if allow_expired {
        return Ok(());
    }
    let facts = inspect(certificate)?;
    if facts.is_expired_at(now) {
        return Err(CertificateError::Expired {
            not_after: facts.not_after,
        });
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The fingerprint of the first certificate of a PEM text, without reading the certificate.
pub fn fingerprint(pem: &str) -> Result<Fingerprint, CertificateError> {
    leaf_der(pem).map(|leaf| Fingerprint::of_der(&leaf))
}

/// The DER of the first certificate of a PEM text.
fn leaf_der(pem: &str) -> Result<CertificateDer<'static>, CertificateError> {
    if let Some(der) = written_leaf(pem.as_bytes()) {
        return Ok(CertificateDer::from(der));
    }
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or(CertificateError::NoCertificate)?
        .map_err(CertificateError::InvalidCertificatePem)
}

/// Whether a certificate's text holds one PEM section, its first line and its last (but for a
/// line end): the leaf [`inspect_leaf`] decodes is then all `rustls_pki_types`'s reader finds
/// in it, and the TLS code keeps that DER rather than the text for a certificate it decodes at
/// first use.
pub fn holds_leaf_alone(pem: &str) -> bool {
    let pem = pem.as_bytes();
    let pem = pem
        .strip_suffix(b"\n")
        .map_or(pem, |pem| pem.strip_suffix(b"\r").unwrap_or(pem));
    pem.starts_with(BEGIN_CERTIFICATE)
        && pem.ends_with(END_CERTIFICATE)
        && memchr::memmem::find_iter(pem, b"-----BEGIN ")
            .nth(1)
            .is_none()
}

const BEGIN_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END_CERTIFICATE: &[u8] = b"-----END CERTIFICATE-----";
/// Above this much base64, a certificate goes to `rustls_pki_types` (whose own limit is far
/// higher): a certificate is a few KiB.
const MAX_BASE64: usize = 64 * 1024;

/// The DER of a certificate's PEM in the form certificates are written in: the text starts
/// with its `BEGIN CERTIFICATE` line, then lines of canonical base64 and the
/// `END CERTIFICATE` line, each ended by `\n` or `\r\n` (the last one may end the text).
/// `None` for any other text, valid or not, which `rustls_pki_types`'s PEM reader then decides
/// on; what this accepts, that reader decodes to the same bytes. A certificate is public, so
/// its base64 is decoded with the `base64` crate's tables, several times faster than that
/// reader's character by character loop.
fn written_leaf(pem: &[u8]) -> Option<Vec<u8>> {
    let body = pem.strip_prefix(BEGIN_CERTIFICATE)?;
    let body = body
        .strip_prefix(b"\r")
        .unwrap_or(body)
        .strip_prefix(b"\n")?;
    let end = memchr::memmem::find(body, END_CERTIFICATE)?;
    let after = body.get(end.checked_add(END_CERTIFICATE.len())?..)?;
    if !(after.is_empty() || after.starts_with(b"\n") || after.starts_with(b"\r\n")) {
        return None;
    }
    let lines = body.get(..end)?;
    if lines.len() > MAX_BASE64 || lines.last().is_some_and(|last| *last != b'\n') {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(pem_lines_joined(lines))
        .ok()
}

/// The characters of a PEM section's lines, joined: each line without its `\n` or `\r\n`
/// end. Certificates ([`leaf_der`]) and keys (the TLS code's constant-time key reader) are
/// joined so before their base64 is decoded.
pub fn pem_lines_joined(lines: &[u8]) -> Vec<u8> {
    let mut characters = Vec::with_capacity(lines.len());
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', lines).chain(std::iter::once(lines.len())) {
        let line = lines.get(start..end).unwrap_or_default();
        characters.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        start = end.saturating_add(1);
    }
    characters
}

fn names_of(x509: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    // As `X509Certificate::subject_alternative_name` would read them once parsed: none when
    // the extension is twice there or does not parse.
    let san = x509
        .get_extension_unique(&OID_X509_EXT_SUBJECT_ALT_NAME)
        .ok()
        .flatten()
        .and_then(|extension| SubjectAlternativeName::from_der(extension.value).ok());
    if let Some((_, san)) = san {
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    for common_name in x509.subject().iter_common_name() {
        if let Ok(cn) = common_name.as_str() {
            let cn = cn.to_ascii_lowercase();
            if !names.contains(&cn) {
                names.push(cn);
            }
        }
    }
    names
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and `127.0.0.1`, valid 2024–2124.
    pub(crate) const CERTIFICATE: &str = include_str!("../tests/fixtures/localhost.pem");
    pub(crate) const KEY: &str = include_str!("../tests/fixtures/localhost.key");
    /// Another self-signed certificate, for `example.com` and `*.example.com`.
    pub(crate) const OTHER_CERTIFICATE: &str = include_str!("../tests/fixtures/example.pem");
    pub(crate) const OTHER_KEY: &str = include_str!("../tests/fixtures/example.key");
    /// A certificate whose validity ended in 2021.
    pub(crate) const EXPIRED_CERTIFICATE: &str = include_str!("../tests/fixtures/expired.pem");
    pub(crate) const EXPIRED_KEY: &str = include_str!("../tests/fixtures/expired.key");

    pub(crate) fn certificate_and_key(certificate: &str, key: &str) -> CertificateAndKey {
        CertificateAndKey::new(certificate, key)
    }

    #[test]
    fn names_come_from_san_and_cn() {
        let facts = inspect(&certificate_and_key(CERTIFICATE, KEY)).unwrap();
        assert_eq!(facts.names, ["localhost", "127.0.0.1"]);
        let facts = inspect(&certificate_and_key(OTHER_CERTIFICATE, OTHER_KEY)).unwrap();
        assert_eq!(facts.names, ["example.com", "*.example.com"]);
    }

    #[test]
    fn explicit_names_override() {
        let mut certificate = certificate_and_key(CERTIFICATE, KEY);
        certificate.names = vec!["Other.Test".to_string()];
        assert_eq!(inspect(&certificate).unwrap().names, ["other.test"]);
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let facts = inspect(&certificate_and_key(CERTIFICATE, KEY)).unwrap();
        let der = leaf_der(CERTIFICATE).unwrap();
        assert_eq!(facts.fingerprint, Fingerprint::of_der(&der));
    }

    /// What the PEM reader of `rustls_pki_types` gives for the first certificate of `pem`.
    fn read_by_pki_types(pem: &str) -> Option<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .map(|der| der.to_vec())
    }

    #[test]
    fn the_written_form_decodes_as_the_pem_reader_does() {
        for pem in [CERTIFICATE, OTHER_CERTIFICATE, EXPIRED_CERTIFICATE] {
            let expected = read_by_pki_types(pem);
            assert!(expected.is_some());
            for form in [
                pem.to_string(),
                pem.replace('\n', "\r\n"),
                pem.trim_end().to_string(),
            ] {
                assert_eq!(written_leaf(form.as_bytes()), expected, "{form:?}");
            }
        }
    }

    #[test]
    fn other_forms_are_left_to_the_pem_reader() {
        let (head, rest) = CERTIFICATE.split_at(40);
        let others = [
            format!("a comment\n{CERTIFICATE}"),
            format!("{head} {rest}"),
            CERTIFICATE.replace("-----END CERTIFICATE-----", "-----END CERTIFICATE----- x"),
            CERTIFICATE.replace("MII", "MI-"),
            CERTIFICATE.replace('\n', "\r"),
            "-----BEGIN CERTIFICATE-----\nAB==\n-----END CERTIFICATE-----\n".to_string(),
        ];
        for pem in others {
            assert!(written_leaf(pem.as_bytes()).is_none(), "{pem:?}");
            assert_eq!(
                leaf_der(&pem).ok().map(|der| der.to_vec()),
                read_by_pki_types(&pem),
                "{pem:?}"
            );
        }
    }

    #[test]
    fn a_key_needs_both_lines_of_one_label() {
        assert!(is_private_key_pem(KEY));
        assert!(is_private_key_pem(OTHER_KEY));
        for (begin, end) in [
            ("PRIVATE KEY", "PRIVATE KEY"),
            ("RSA PRIVATE KEY", "RSA PRIVATE KEY"),
            ("EC PRIVATE KEY", "EC PRIVATE KEY"),
        ] {
            let pem = format!("-----BEGIN {begin}-----\nAAAA\n-----END {end}-----\n");
            assert!(is_private_key_pem(&pem), "{pem}");
        }
        for pem in [
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(!is_private_key_pem(pem), "{pem}");
        }
        assert!(is_private_key_pem(
            "------BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----"
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            inspect(&certificate_and_key("hello", KEY)),
            Err(CertificateError::NoCertificate)
        ));
        assert!(matches!(
            inspect(&certificate_and_key(CERTIFICATE, "no key here")),
            Err(CertificateError::InvalidKeyPem)
        ));
        let broken = CERTIFICATE.replace("MII", "MIX");
        assert!(inspect(&certificate_and_key(&broken, KEY)).is_err());
    }

    #[test]
    fn expired_is_refused_unless_allowed() {
        let order = |certificate: &str, key: &str, allow_expired| {
            Order::AddCertificate(crate::request::AddCertificate {
                address: "127.0.0.1:443".parse().unwrap(),
                certificate: certificate_and_key(certificate, key),
                allow_expired,
            })
        };
        let now = unix_now();
        assert!(matches!(
            check_not_expired(&order(EXPIRED_CERTIFICATE, EXPIRED_KEY, false), now),
            Err(CertificateError::Expired { .. })
        ));
        assert!(check_not_expired(&order(EXPIRED_CERTIFICATE, EXPIRED_KEY, true), now).is_ok());
        assert!(check_not_expired(&order(CERTIFICATE, KEY, false), now).is_ok());
    }
}
