//! TLS names of the configuration file: protocol versions, cipher suites, key exchange groups
//! and ALPN protocols, checked against what the TLS library of this build (rustls with the
//! aws-lc-rs provider) supports.
//!
//! Suites and groups are accepted under their OpenSSL, IANA and rustls spellings and written
//! in orders under one canonical spelling: the name of rustls's `CipherSuite` or `NamedGroup`
//! variant (what their `as_str()` returns), so the TLS code can match them directly. These are
//! the IANA names, except that TLS 1.3 suites carry rustls's `TLS13_` prefix.

use std::{path::PathBuf, rc::Rc};

use super::{
    Loader,
    document::{Field, Table},
    error::{ConfigError, ConfigWarning},
    files::pem_blocks,
};
use crate::{
    request::{CertificateAndKey, Hsts, TlsVersion, default_hsts_max_age},
    rules,
};

const HSTS_KEYS: &[&str] = &[
    "enabled",
    "max_age",
    "include_subdomains",
    "preload",
    "force_replace_backend",
];

/// A cipher suite this build supports.
pub struct CipherSuite {
    /// The canonical spelling (rustls's).
    pub name: &'static str,
    /// The TLS version the suite belongs to.
    pub version: TlsVersion,
    /// Other accepted spellings.
    aliases: &'static [&'static str],
}

/// The cipher suites this build supports, with the spellings each is accepted under.
pub const CIPHER_SUITES: [CipherSuite; 9] = [
    CipherSuite {
        name: "TLS13_AES_128_GCM_SHA256",
        version: TlsVersion::Tls13,
        aliases: &["TLS_AES_128_GCM_SHA256"],
    },
    CipherSuite {
        name: "TLS13_AES_256_GCM_SHA384",
        version: TlsVersion::Tls13,
        aliases: &["TLS_AES_256_GCM_SHA384"],
    },
    CipherSuite {
        name: "TLS13_CHACHA20_POLY1305_SHA256",
        version: TlsVersion::Tls13,
        aliases: &["TLS_CHACHA20_POLY1305_SHA256"],
    },
    CipherSuite {
        name: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "TLS12_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ],
    },
    CipherSuite {
        name: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "TLS12_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ],
    },
    CipherSuite {
        name: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "TLS12_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ],
    },
    CipherSuite {
        name: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-RSA-AES128-GCM-SHA256",
            "TLS12_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ],
    },
    CipherSuite {
        name: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-RSA-AES256-GCM-SHA384",
            "TLS12_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ],
    },
    CipherSuite {
        name: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        version: TlsVersion::Tls12,
        aliases: &[
            "ECDHE-RSA-CHACHA20-POLY1305",
            "TLS12_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ],
    },
];

/// The supported cipher suite that `name` spells, in any accepted spelling and any case.
pub fn cipher_suite(name: &str) -> Option<&'static CipherSuite> {
    let name = name.trim();
    CIPHER_SUITES.iter().find(|suite| {
        suite.name.eq_ignore_ascii_case(name)
            || suite
                .aliases
                .iter()
                .any(|alias| alias.eq_ignore_ascii_case(name))
    })
}

/// Key exchange groups this build supports: canonical name, then other spellings.
const GROUPS: [(&str, &[&str]); 3] = [
    ("X25519", &[]),
    ("secp256r1", &["P-256", "prime256v1"]),
    ("secp384r1", &["P-384"]),
];

/// A group Sōzu offers by default that this build does not offer yet (the provider has it, but
/// the listener's TLS settings do not take it yet).
const UNAVAILABLE_GROUP: &str = "X25519MLKEM768";

/// The canonical name of the supported key exchange group that `name` spells.
pub fn group(name: &str) -> Option<&'static str> {
    let name = name.trim();
    GROUPS
        .iter()
        .find(|(canonical, aliases)| {
            canonical.eq_ignore_ascii_case(name)
                || aliases.iter().any(|alias| alias.eq_ignore_ascii_case(name))
        })
        .map(|(canonical, _)| *canonical)
}

/// Names written as an array of strings, or as one string separated by `:` (OpenSSL style).
fn names(field: Field<'_, '_>) -> Result<Vec<String>, ConfigError> {
    match field.string() {
        Ok(text) => Ok(text
            .split(':')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect()),
        Err(_) => field.strings(),
    }
}

/// `tls_versions`: TLS 1.2 and 1.3. Older versions are dropped with a warning, as rustls has
/// none of them.
pub(super) fn versions(
    field: Field<'_, '_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<TlsVersion>, ConfigError> {
    let mut versions = Vec::new();
    for name in field.strings()? {
        let compact = name.to_ascii_uppercase().replace(['.', '_', '-'], "");
        if matches!(
            compact.as_str(),
            "SSLV2" | "SSLV3" | "TLSV1" | "TLSV10" | "TLSV11" | "TLS10" | "TLS11"
        ) {
            warnings.push(field.warning(format!(
                "{name} is not supported (TLS 1.2 is the oldest version offered) and is left out"
            )));
            continue;
        }
        let version: TlsVersion = name
            .parse()
            .map_err(|_| field.invalid("TLS versions among TLS_V12, TLS_V13"))?;
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        return Err(field.invalid("at least one of TLS_V12, TLS_V13"));
    }
    Ok(versions)
}

/// Cipher suites of `cipher_list` or `cipher_suites`, by canonical name and version.
pub(super) fn cipher_suites(
    field: Field<'_, '_>,
) -> Result<Vec<&'static CipherSuite>, ConfigError> {
    names(field)?
        .iter()
        .map(|name| {
            cipher_suite(name).ok_or_else(|| {
                let supported: Vec<&str> = CIPHER_SUITES.iter().map(|suite| suite.name).collect();
                field.invalid(format!(
                    "cipher suites this build supports: {} (OpenSSL names such as \
                     ECDHE-RSA-AES128-GCM-SHA256 are accepted too); `{name}` is not one",
                    supported.join(", ")
                ))
            })
        })
        .collect()
}

/// `groups_list`, canonical names in order of preference. `X25519MLKEM768` is dropped with a
/// warning: this build does not offer ML-KEM yet.
pub(super) fn groups(
    field: Field<'_, '_>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<String>, ConfigError> {
    let mut groups = Vec::new();
    for name in names(field)? {
        if name.eq_ignore_ascii_case(UNAVAILABLE_GROUP) {
            warnings.push(field.warning(format!(
                "{UNAVAILABLE_GROUP} is not available in this build (no ML-KEM key exchange \
                 yet) and is left out"
            )));
            continue;
        }
        let group = group(&name).ok_or_else(|| {
            field.invalid(format!(
                "key exchange groups this build supports: X25519, secp256r1 (P-256), \
                 secp384r1 (P-384); `{name}` is not one"
            ))
        })?;
        if !groups.iter().any(|known| known == group) {
            groups.push(group.to_string());
        }
    }
    if groups.is_empty() {
        warnings.push(field.warning("no supported group is left: the default groups are used"));
    }
    Ok(groups)
}

/// `alpn_protocols`: `h2` and `http/1.1`, in the order of preference given, each once.
pub(super) fn alpn_protocols(field: Field<'_, '_>) -> Result<Vec<String>, ConfigError> {
    let mut protocols: Vec<String> = Vec::new();
    for item in field.items()? {
        let protocol = item.checked(rules::check_alpn_protocol)?;
        if !protocols.iter().any(|known| known == protocol) {
            protocols.push(protocol.to_string());
        }
    }
    Ok(protocols)
}

/// The files of a certificate, read: `certificate`, `key` and `certificate_chain`.
pub(super) struct CertificateFiles {
    pub certificate: (PathBuf, Rc<str>),
    pub key: (PathBuf, Rc<str>),
    pub chain: Option<(PathBuf, Rc<str>)>,
}

impl CertificateFiles {
    /// Reads the certificate keys of `table`, if it has any: `certificate` and `key` go
    /// together, and `certificate_chain` needs them.
    pub fn read(
        loader: &mut Loader,
        table: &mut Table<'_, '_>,
    ) -> Result<Option<Self>, ConfigError> {
        let chain = table.field("certificate_chain");
        let (certificate, key) = match (table.field("certificate"), table.field("key")) {
            (Some(certificate), Some(key)) => (certificate, key),
            (Some(certificate), None) => {
                return Err(certificate.requires("`key`, the certificate's private key"));
            }
            (None, Some(key)) => return Err(key.requires("`certificate`")),
            (None, None) => {
                return match chain {
                    Some(chain) => Err(chain.requires("`certificate` and `key`")),
                    None => Ok(None),
                };
            }
        };
        Ok(Some(CertificateFiles {
            certificate: loader.files.read(certificate)?,
            key: loader.files.read(key)?,
            chain: chain.map(|chain| loader.files.read(chain)).transpose()?,
        }))
    }

    /// The certificate in PEM, offered with `versions` (empty: the listener's).
    pub fn contents(&self, versions: Vec<TlsVersion>) -> CertificateAndKey {
        CertificateAndKey {
            certificate: self.certificate.1.to_string(),
            certificate_chain: self
                .chain
                .as_ref()
                .map(|(_, chain)| pem_blocks(chain))
                .unwrap_or_default(),
            key: self.key.1.to_string(),
            versions,
            names: Vec::new(),
        }
    }
}

/// An `hsts` table: `enabled` is required.
pub(super) fn hsts(loader: &mut Loader, field: Field<'_, '_>) -> Result<Hsts, ConfigError> {
    let mut table = field.table("`hsts`")?;
    loader.check_keys(&mut table, &[HSTS_KEYS]);
    let enabled = table.required("enabled")?.bool()?;
    let hsts = Hsts {
        enabled,
        max_age: table
            .seconds("max_age", &rules::HEADER_SECONDS)?
            .unwrap_or_else(default_hsts_max_age),
        include_subdomains: table.bool("include_subdomains")?.unwrap_or(false),
        preload: table.bool("preload")?.unwrap_or(false),
        force_replace_backend: table.bool("force_replace_backend")?.unwrap_or(false),
    };
    table.unused()?;
    Ok(hsts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_iana_and_rustls_spellings_name_the_same_suite() {
        for name in [
            "ECDHE-RSA-AES256-GCM-SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "tls12_ecdhe_rsa_with_aes_256_gcm_sha384",
        ] {
            assert_eq!(
                cipher_suite(name).map(|suite| suite.name),
                Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
                "{name}"
            );
        }
        assert_eq!(
            cipher_suite("TLS_AES_128_GCM_SHA256").map(|suite| suite.name),
            Some("TLS13_AES_128_GCM_SHA256")
        );
        assert!(cipher_suite("AES128-SHA").is_none());
    }

    #[test]
    fn group_aliases_are_canonical() {
        assert_eq!(group("P-256"), Some("secp256r1"));
        assert_eq!(group("x25519"), Some("X25519"));
        assert_eq!(group("P-521"), None);
    }
}
