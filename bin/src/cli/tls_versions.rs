//! `--tls-versions` as Sōzu's command line takes it: TLS 1.2 and 1.3 in any of their
//! spellings (`TLS_V12`, `TLSv1.3`), and the older versions Sōzu names (`SSL_V3`, `TLSv1`,
//! `TLS_V11`…), which are accepted and left out with a warning, since the TLS library here
//! speaks neither.

use std::str::FromStr;

use sozu_command_lib::request::TlsVersion;

/// One value of `--tls-versions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVersionArg {
    Supported(TlsVersion),
    /// A version before TLS 1.2, as written.
    TooOld(String),
}

/// Versions before TLS 1.2, written without case, `.`, `_` nor `-`.
const TOO_OLD: [&str; 8] = [
    "SSLV2", "SSLV3", "TLSV1", "TLSV10", "TLSV11", "TLS1", "TLS10", "TLS11",
];

impl FromStr for TlsVersionArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(version) = TlsVersion::from_str(text) {
            return Ok(TlsVersionArg::Supported(version));
        }
        let name = text
            .trim()
            .to_ascii_uppercase()
            .replace(['.', '_', '-'], "");
        if TOO_OLD.contains(&name.as_str()) {
            return Ok(TlsVersionArg::TooOld(text.to_string()));
        }
        Err(format!(
            "`{text}` is not a TLS version: expected TLS_V12 or TLS_V13"
        ))
    }
}

/// The supported versions among `arguments`; each older one is named in a warning on stderr.
pub fn supported(arguments: &[TlsVersionArg]) -> Vec<TlsVersion> {
    arguments
        .iter()
        .filter_map(|argument| match argument {
            TlsVersionArg::Supported(version) => Some(*version),
            TlsVersionArg::TooOld(name) => {
                eprintln!(
                    "warning: --tls-versions {name}: only TLS 1.2 and 1.3 are spoken here, left out"
                );
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: Sōzu's older versions are accepted, then left out.
    #[test]
    fn older_versions_are_accepted_and_left_out() {
        let arguments: Vec<TlsVersionArg> = ["TLSv1", "TLS_V11", "TLS_V12", "TLSv1.3", "SSL_V3"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(arguments[0], TlsVersionArg::TooOld("TLSv1".to_string()));
        assert_eq!(
            supported(&arguments),
            [TlsVersion::Tls12, TlsVersion::Tls13]
        );
        assert!("TLS_V14".parse::<TlsVersionArg>().is_err());
    }
}
