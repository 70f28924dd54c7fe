//! HTTP Basic authentication against a cluster's `authorized_hashes`.
//!
//! The entries (`user:sha256hex`) are parsed once, when the cluster's order is applied, into
//! users and 32-byte digests; a request's credentials are then hashed once and compared with
//! every entry in a time that does not depend on where the bytes differ.

use base64::Engine as _;
use sha2::Digest as _;

use crate::protocol::http::parser::{Header, HeaderKind};

/// The credentials a cluster accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorized {
    users: Vec<(Box<[u8]>, [u8; 32])>,
}

impl Authorized {
    /// Parses `user:sha256hex` entries. An entry that is not one (the order rules refuse
    /// them before) matches no request.
    pub fn parse(entries: &[String]) -> Authorized {
        let users = entries
            .iter()
            .filter_map(|entry| {
                let (user, hash) = entry.split_once(':')?;
                Some((user.as_bytes().into(), parse_digest(hash)?))
            })
            .collect();
        Authorized { users }
    }

    /// Whether no credential is accepted.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether the request's `Authorization` carries Basic credentials of a listed user.
    pub fn admits(&self, buf: &[u8], headers: &[Header]) -> bool {
        let Some(credentials) = headers
            .iter()
            .find(|header| header.kind == HeaderKind::Authorization)
            .map(|header| header.value.slice(buf))
            .and_then(|value| {
                value
                    .strip_prefix(b"Basic ")
                    .or_else(|| value.strip_prefix(b"basic "))
            })
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim_ascii())
                    .ok()
            })
        else {
            return false;
        };
        let Some(colon) = credentials.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = credentials.split_at(colon);
        let password = password.get(1..).unwrap_or_default();
        let digest: [u8; 32] = sha2::Sha256::digest(password).into();
        let mut found = false;
        for (entry_user, entry_digest) in &self.users {
            let same_user = constant_time_eq(entry_user, user);
            let same_digest = constant_time_eq(entry_digest, &digest);
            found |= same_user & same_digest;
        }
        found
    }
}

/// 64 hexadecimal digits, either case, as 32 bytes.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(*pair.first()?).to_digit(16)?;
        let low = char::from(*pair.get(1)?).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(digest)
}

/// Compares two byte strings in a time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parser::{Limits, Parsed, parse_request_head};

    /// `sha256("secret")`.
    const SECRET: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

    fn admits(authorized: &Authorized, request: &str) -> bool {
        let mut headers = Vec::new();
        let parsed =
            parse_request_head(request.as_bytes(), &Limits::default(), b"", &mut headers).unwrap();
        assert!(matches!(parsed, Parsed::Complete(_)));
        authorized.admits(request.as_bytes(), &headers)
    }

    fn request(credentials: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic {encoded}\r\n\r\n")
    }

    #[test]
    fn listed_user_with_the_right_password_is_admitted() {
        let authorized = Authorized::parse(&[format!("admin:{SECRET}")]);
        assert!(admits(&authorized, &request("admin:secret")));
    }

    #[test]
    fn uppercase_digests_match_too() {
        let authorized = Authorized::parse(&[format!("admin:{}", SECRET.to_ascii_uppercase())]);
        assert!(admits(&authorized, &request("admin:secret")));
    }

    #[test]
    fn wrong_password_unknown_user_or_no_credentials_are_refused() {
        let authorized = Authorized::parse(&[format!("admin:{SECRET}")]);
        assert!(!admits(&authorized, &request("admin:guess")));
        assert!(!admits(&authorized, &request("root:secret")));
        assert!(!admits(&authorized, &request("adminsecret")));
        assert!(!admits(&authorized, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn malformed_entries_match_nothing() {
        let authorized = Authorized::parse(&["admin".to_string(), "admin:12zz".to_string()]);
        assert_eq!(authorized, Authorized::default());
        assert!(!admits(&authorized, &request("admin:secret")));
    }
}
