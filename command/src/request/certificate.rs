//! Certificates of HTTPS listeners: added, replaced atomically and removed, named by their
//! fingerprint.

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::UnknownName;

/// A certificate with its key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAndKey {
    /// The certificate, in PEM.
    pub certificate: String,
    /// The intermediate certificates sent after it, in PEM, leaf side first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
    /// The certificate's private key, in PEM.
    pub key: String,
    /// TLS versions this certificate is offered with; empty means the listener's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<TlsVersion>,
    /// Names the certificate answers for; empty means the names it carries (SAN and CN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl CertificateAndKey {
    /// A certificate and its key in PEM, without chain, serving the names it carries.
    pub fn new(certificate: impl Into<String>, key: impl Into<String>) -> Self {
        CertificateAndKey {
            certificate: certificate.into(),
            certificate_chain: Vec::new(),
            key: key.into(),
            versions: Vec::new(),
            names: Vec::new(),
        }
    }
}

/// `ADD_CERTIFICATE`: adds an SNI certificate to an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCertificate {
    /// The HTTPS listener.
    pub address: SocketAddr,
    /// The certificate and its key.
    pub certificate: CertificateAndKey,
    /// Accept a certificate whose validity has ended.
    #[serde(default)]
    pub allow_expired: bool,
}

/// Swaps one certificate for another atomically: a handshake sees one or the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCertificate {
    /// The HTTPS listener.
    pub address: SocketAddr,
    /// The certificate and key that take its place.
    pub new_certificate: CertificateAndKey,
    /// The fingerprint of the certificate replaced.
    pub old_fingerprint: Fingerprint,
    /// Accept a new certificate whose validity has ended.
    #[serde(default)]
    pub allow_expired: bool,
}

/// `REMOVE_CERTIFICATE`: removes a certificate from an HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveCertificate {
    /// The HTTPS listener.
    pub address: SocketAddr,
    /// The certificate's fingerprint.
    pub fingerprint: Fingerprint,
}

/// The SHA-256 of a certificate's DER encoding, written in lowercase hexadecimal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        use sha2::Digest;
        Fingerprint(sha2::Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A fingerprint that is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hexadecimal digits (a SHA-256), got `{0}`")]
pub struct InvalidFingerprint(pub String);

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidFingerprint(s.to_string());
        let digits = s.trim().replace(':', "");
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A TLS protocol version, written `TLS_V12` or `TLS_V13` (`TLSv1.2`, `TLS_V1_2` and the like are
/// accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "TLS_V12", alias = "TLSv1.2", alias = "TLS_V1_2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLS_V13", alias = "TLSv1.3", alias = "TLS_V1_3")]
    Tls13,
}

impl TlsVersion {
    /// The version's name as in JSON and the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS_V12",
            TlsVersion::Tls13 => "TLS_V13",
        }
    }
}

impl FromStr for TlsVersion {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_uppercase()
            .replace(['.', '_', '-'], "")
            .as_str()
        {
            "TLSV12" | "TLS12" => Ok(TlsVersion::Tls12),
            "TLSV13" | "TLS13" => Ok(TlsVersion::Tls13),
            _ => Err(UnknownName {
                given: s.to_string(),
                expected: "TLS_V12, TLS_V13".to_string(),
            }),
        }
    }
}
