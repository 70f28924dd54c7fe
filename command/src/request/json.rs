//! Writing an [`Order`] as JSON quickly, for the main process, which writes every order of the
//! state to its workers (110,000 at a large start).
//!
//! `serde_json::to_writer` goes through the derived `Serialize` impls: the internal tag, one
//! map entry per field, a socket address formatted through `Display`, each string scanned for
//! escapes byte by byte. [`write_order`] writes the most frequent orders of a large state —
//! frontends without options, and certificates with their key (whose PEM texts are most of
//! the bytes) — straight into the buffer, and every other order through `serde_json`. The
//! bytes are the same as `serde_json::to_writer` writes (the tests compare them), so workers,
//! state files and embedders read the same JSON.

use std::net::SocketAddr;

use super::{
    AddCertificate, CertificateAndKey, HttpFrontend, Order, PathRuleKind, RedirectPolicy,
    RedirectScheme, RulePosition,
};
use crate::certificate::CertificateFacts;

/// Appends `order`'s JSON to `out`, as `serde_json::to_writer(out, order)` does. On an error
/// (which only `serde_json` may return), `out` may hold part of the order.
pub fn write_order(order: &Order, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match order {
        Order::AddHttpFrontend(frontend)
        | Order::RemoveHttpFrontend(frontend)
        | Order::AddHttpsFrontend(frontend)
        | Order::RemoveHttpsFrontend(frontend)
            if !frontend.has_options() =>
        {
            write_frontend(order.name(), frontend, out)
        }
        Order::AddCertificate(add) if is_plain(&add.certificate) => write_add_certificate(add, out),
        _ => serde_json::to_writer(out, order),
    }
}

/// Whether a certificate has no TLS versions and no names of its own (those of a
/// configuration's certificates), the fields [`write_add_certificate`] leaves to `serde_json`.
fn is_plain(certificate: &CertificateAndKey) -> bool {
    certificate.versions.is_empty() && certificate.names.is_empty()
}

/// Appends the JSON of `facts` to `out`, as `serde_json::to_writer(out, facts)` does: the
/// main process writes them after each certificate order of a start for its workers
/// ([`super::WorkerRequest`]). The pattern names every field: a field added to
/// `CertificateFacts` fails to compile here until it is written.
pub fn write_certificate_facts(
    facts: &CertificateFacts,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let CertificateFacts {
        fingerprint,
        names,
        not_before,
        not_after,
    } = facts;
    out.extend_from_slice(br#"{"fingerprint":""#);
    let mut hex = [0u8; 64];
    for (digits, byte) in hex.chunks_exact_mut(2).zip(fingerprint.0) {
        digits.copy_from_slice(&[hex_digit(byte >> 4), hex_digit(byte & 0x0f)]);
    }
    out.extend_from_slice(&hex);
    out.extend_from_slice(br#"","names":["#);
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(name, out)?;
    }
    out.extend_from_slice(br#"],"not_before":"#);
    write_integer(*not_before, out);
    out.extend_from_slice(br#","not_after":"#);
    write_integer(*not_after, out);
    out.push(b'}');
    Ok(())
}

/// An `ADD_CERTIFICATE` of a certificate without versions or names, its fields in the order of
/// `AddCertificate` and `CertificateAndKey`.
/// The patterns name every field: a field added to either struct fails to compile here until it
/// is written.
fn write_add_certificate(add: &AddCertificate, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let AddCertificate {
        address,
        certificate,
        allow_expired,
    } = add;
    let CertificateAndKey {
        certificate,
        certificate_chain,
        key,
        versions: _,
        names: _,
    } = certificate;
    out.extend_from_slice(br#"{"type":"ADD_CERTIFICATE","address":"#);
    write_address(*address, out)?;
    out.extend_from_slice(br#","certificate":{"certificate":"#);
    write_str(certificate, out)?;
    if !certificate_chain.is_empty() {
        out.extend_from_slice(br#","certificate_chain":["#);
        for (index, pem) in certificate_chain.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_str(pem, out)?;
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","key":"#);
    write_str(key, out)?;
    out.extend_from_slice(if *allow_expired {
        br#"},"allow_expired":true}"#
    } else {
        br#"},"allow_expired":false}"#
    });
    Ok(())
}

/// A frontend without options, its fields in the order of `HttpFrontendFields`, those left
/// out when `serde` skips them left out. The pattern names every field: a field added to
/// `HttpFrontend` fails to compile here until it is written.
fn write_frontend(tag: &str, frontend: &HttpFrontend, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let HttpFrontend {
        cluster_id,
        address,
        hostname,
        path,
        method,
        position: rule_position,
        redirect: policy,
        redirect_scheme: scheme,
        rewrite_port,
        required_auth,
        options: _,
    } = frontend;
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(tag.as_bytes());
    out.push(b'"');
    if let Some(cluster_id) = cluster_id {
        out.extend_from_slice(br#","cluster_id":"#);
        write_str(cluster_id, out)?;
    }
    out.extend_from_slice(br#","address":"#);
    write_address(*address, out)?;
    out.extend_from_slice(br#","hostname":"#);
    write_str(hostname, out)?;
    if !path.is_any() {
        out.extend_from_slice(br#","path":{"kind":""#);
        out.extend_from_slice(path_kind(path.kind).as_bytes());
        out.extend_from_slice(br#"","value":"#);
        write_str(&path.value, out)?;
        out.push(b'}');
    }
    if let Some(method) = method {
        out.extend_from_slice(br#","method":"#);
        write_str(method, out)?;
    }
    out.extend_from_slice(br#","position":""#);
    out.extend_from_slice(position(*rule_position).as_bytes());
    out.extend_from_slice(br#"","redirect":""#);
    out.extend_from_slice(redirect(*policy).as_bytes());
    out.extend_from_slice(br#"","redirect_scheme":""#);
    out.extend_from_slice(redirect_scheme(*scheme).as_bytes());
    out.push(b'"');
    if let Some(port) = rewrite_port {
        out.extend_from_slice(br#","rewrite_port":"#);
        serde_json::to_writer(&mut *out, &port)?;
    }
    out.extend_from_slice(if *required_auth {
        br#","required_auth":true}"#
    } else {
        br#","required_auth":false}"#
    });
    Ok(())
}

/// A string in quotes. When its only character to escape is the line feed (hostnames, cluster
/// ids, PEM texts), it is copied a run at a time with `\n` between runs; else it is written by
/// `serde_json`, which knows every escape.
fn write_str(text: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let start = out.len();
    if write_plain_str(text.as_bytes(), out) {
        Ok(())
    } else {
        out.truncate(start);
        serde_json::to_writer(out, text)
    }
}

/// Appends `bytes` in quotes with their line feeds escaped, the runs between them copied
/// whole (see [`next_to_escape`]). Returns false, having written part of the string, when a
/// byte needs another escape.
fn write_plain_str(bytes: &[u8], out: &mut Vec<u8>) -> bool {
    out.reserve(bytes.len().saturating_add(2));
    out.push(b'"');
    // Where the run not copied yet starts.
    let mut run = 0;
    while let Some(at) = next_to_escape(bytes, run) {
        if bytes.get(at) != Some(&b'\n') {
            return false;
        }
        out.extend_from_slice(bytes.get(run..at).unwrap_or_default());
        out.extend_from_slice(b"\\n");
        run = at.saturating_add(1);
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
    true
}

/// Where the first byte from `from` on that a JSON string cannot hold as it is (below 0x20,
/// `"` or `\`) is, looked for eight bytes at a time: a word without a byte below 0x20, nor a
/// zero byte once XORed with `"` or `\`, is skipped whole. In a flagged word, the lowest flag
/// is always a byte to escape (a false flag only follows a true one). `None` when there is no
/// such byte, or `from` is past the end.
pub(super) fn next_to_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    let rest = bytes.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for chunk in &mut words {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let flagged = (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
            | zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if flagged != 0 {
            // Each flag is the high bit of its byte: bytes in order, the first lowest.
            return Some(at.saturating_add((flagged.trailing_zeros() / 8) as usize));
        }
        at = at.saturating_add(8);
    }
    let tail = words.remainder();
    tail.iter()
        .position(|byte| *byte < 0x20 || *byte == b'"' || *byte == b'\\')
        .map(|offset| at.saturating_add(offset))
}

/// An IPv4 address and port in quotes, in the digits of `Display`; an IPv6 one by `serde_json`.
/// The IPv4 text is put together on the stack from its end and copied at once: pushed byte by
/// byte into `out`, each address cost 600 instructions (120,000 orders at a large start).
fn write_address(address: SocketAddr, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let SocketAddr::V4(address) = address else {
        return serde_json::to_writer(out, &address);
    };
    // `"255.255.255.255:65535"` is the longest: 23 bytes.
    let mut text = Backwards::<23>::new();
    text.put(b'"');
    put_decimal(u64::from(address.port()), &mut |digit| text.put(digit));
    text.put(b':');
    for (index, octet) in address.ip().octets().into_iter().rev().enumerate() {
        if index > 0 {
            text.put(b'.');
        }
        put_decimal(u64::from(octet), &mut |digit| text.put(digit));
    }
    text.put(b'"');
    out.extend_from_slice(text.bytes());
    Ok(())
}

/// The lowercase hexadecimal digit of `nibble` (below 16), as the fingerprint's `Display`
/// writes it.
fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'a' + (nibble & 0x0f).saturating_sub(10),
    }
}

/// The decimal digits of `value`, after a minus sign when it is negative.
fn write_integer(value: i64, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    // `u64::MAX` has 20 digits.
    let mut digits = Backwards::<20>::new();
    put_decimal(value.unsigned_abs(), &mut |digit| digits.put(digit));
    out.extend_from_slice(digits.bytes());
}

/// At most `N` bytes on the stack, put from the last one to the first; bytes put past the
/// first place are dropped.
struct Backwards<const N: usize> {
    bytes: [u8; N],
    /// Where the bytes put start: `start <= N`.
    start: usize,
}

impl<const N: usize> Backwards<N> {
    fn new() -> Self {
        Backwards {
            bytes: [0; N],
            start: N,
        }
    }

    /// Puts `byte` before those put already.
    fn put(&mut self, byte: u8) {
        self.start = self.start.saturating_sub(1);
        if let Some(slot) = self.bytes.get_mut(self.start) {
            *slot = byte;
        }
    }

    /// The bytes put, the last one put first.
    fn bytes(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }
}

/// Puts the decimal digits of `value`, without leading zeros, the last one first.
fn put_decimal(value: u64, put: &mut impl FnMut(u8)) {
    let mut rest = value;
    loop {
        // `rest % 10` is below 10.
        put(b'0' + (rest % 10) as u8);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
}

fn path_kind(kind: PathRuleKind) -> &'static str {
    match kind {
        PathRuleKind::Prefix => "PREFIX",
        PathRuleKind::Regex => "REGEX",
        PathRuleKind::Equals => "EQUALS",
    }
}

fn position(position: RulePosition) -> &'static str {
    match position {
        RulePosition::Pre => "PRE",
        RulePosition::Tree => "TREE",
        RulePosition::Post => "POST",
    }
}

fn redirect(redirect: RedirectPolicy) -> &'static str {
    match redirect {
        RedirectPolicy::Forward => "FORWARD",
        RedirectPolicy::Permanent => "PERMANENT",
        RedirectPolicy::Found => "FOUND",
        RedirectPolicy::PermanentRedirect => "PERMANENT_REDIRECT",
        RedirectPolicy::Unauthorized => "UNAUTHORIZED",
    }
}

fn redirect_scheme(scheme: RedirectScheme) -> &'static str {
    match scheme {
        RedirectScheme::UseSame => "USE_SAME",
        RedirectScheme::UseHttp => "USE_HTTP",
        RedirectScheme::UseHttps => "USE_HTTPS",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::request::{FrontendOptions, PathRule, decode::tests::sample_orders};

    fn assert_same_json(order: &Order) {
        let mut fast = Vec::new();
        write_order(order, &mut fast).expect("an order is written");
        let expected = serde_json::to_vec(order).expect("an order serialises");
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&expected)
        );
    }

    /// An IPv4 address is written as `serde_json` writes it, whatever the digits of each
    /// octet and of the port, after what `out` holds already.
    #[test]
    fn addresses_are_written_as_serde_json_writes_them() {
        let octets = [0u8, 1, 9, 10, 99, 100, 199, 255];
        let ports = [0u16, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535];
        for a in octets {
            for b in octets {
                for port in ports {
                    let address = SocketAddr::from(([a, b, 255 - a, 255 - b], port));
                    let mut out = b"x".to_vec();
                    write_address(address, &mut out).expect("an address writes");
                    let mut expected = b"x".to_vec();
                    serde_json::to_writer(&mut expected, &address).expect("an address serialises");
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        String::from_utf8_lossy(&expected)
                    );
                }
            }
        }
    }

    /// Issue 17: frontends of every shape are written byte for byte as `serde_json` writes them.
    #[test]
    fn frontends_are_written_as_serde_json_writes_them() {
        let addresses = [
            "0.0.0.0:0",
            "10.0.0.1:80",
            "127.0.0.1:8080",
            "255.255.255.255:65535",
            "[::1]:443",
            "[2001:db8::7]:8443",
        ];
        let texts = [
            "example.com",
            "",
            "a \"quoted\" name",
            "back\\slash",
            "line\nbreak\tand\u{1}control\u{7f}",
            "é.exämple.com",
            "/api[0-9]+/.example.com",
        ];
        let kinds = [
            PathRuleKind::Prefix,
            PathRuleKind::Regex,
            PathRuleKind::Equals,
        ];
        let positions = [RulePosition::Pre, RulePosition::Tree, RulePosition::Post];
        let redirects = [
            RedirectPolicy::Forward,
            RedirectPolicy::Permanent,
            RedirectPolicy::Found,
            RedirectPolicy::PermanentRedirect,
            RedirectPolicy::Unauthorized,
        ];
        let schemes = [
            RedirectScheme::UseSame,
            RedirectScheme::UseHttp,
            RedirectScheme::UseHttps,
        ];
        let mut count = 0;
        for (index, address) in addresses.iter().enumerate() {
            for (text_index, text) in texts.iter().enumerate() {
                let address = address.parse().expect("an address");
                let cluster = (text_index % 2 == 0).then(|| text.to_string());
                let mut frontend = HttpFrontend::new(cluster, address, *text);
                let pick = index + text_index;
                frontend.path = if pick % 4 == 0 {
                    PathRule::default()
                } else {
                    PathRule {
                        kind: kinds[pick % kinds.len()],
                        value: text.to_string(),
                    }
                };
                frontend.method = (pick % 3 == 0).then(|| text.to_string());
                frontend.position = positions[pick % positions.len()];
                frontend.redirect = redirects[pick % redirects.len()];
                frontend.redirect_scheme = schemes[pick % schemes.len()];
                frontend.rewrite_port = [None, Some(0), Some(443), Some(65535)][pick % 4];
                frontend.required_auth = pick % 2 == 1;
                for order in [
                    Order::AddHttpFrontend(frontend.clone()),
                    Order::RemoveHttpFrontend(frontend.clone()),
                    Order::AddHttpsFrontend(frontend.clone()),
                    Order::RemoveHttpsFrontend(frontend.clone()),
                ] {
                    assert_same_json(&order);
                    count += 1;
                }
                frontend.set_options(FrontendOptions {
                    tags: BTreeMap::from([(text.to_string(), "v".to_string())]),
                    rewrite_host: Some(text.to_string()),
                    ..FrontendOptions::default()
                });
                assert!(frontend.has_options());
                assert_same_json(&Order::AddHttpFrontend(frontend));
            }
        }
        assert_eq!(count, 168);
    }

    /// Issue 17: strings are escaped as `serde_json` escapes them, whatever the position of
    /// the character to escape in the words the scan reads.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut texts = vec![
            String::new(),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string(),
            "\n\n".to_string(),
            "é\n😀 \u{7f}".to_string(),
            "ab\ncd\"ef\ngh".to_string(),
            "abcdefgh\nijklmno\\pqrstuvwxyz\n".to_string(),
            "line\r\nbreaks\r\n".to_string(),
            "x".repeat(64) + "\n" + &"y".repeat(64) + "\n",
        ];
        for special in (0u8..0x80).map(char::from).chain(['é', '\u{2028}']) {
            for length in 0..20 {
                for at in 0..length {
                    let mut text = "a".repeat(at);
                    text.push(special);
                    text.push_str(&"b".repeat(length - at - 1));
                    texts.push(text);
                }
            }
        }
        for text in texts {
            let mut fast = Vec::new();
            write_str(&text, &mut fast).expect("a string is written");
            let expected = serde_json::to_vec(&text).expect("a string serialises");
            assert_eq!(fast, expected, "{text:?}");
        }
    }

    /// Issue 17: certificates, with or without chain, versions and names, are written as
    /// `serde_json` writes them.
    #[test]
    fn certificates_are_written_as_serde_json_writes_them() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\r\nMIGHAgEA\r\n-----END PRIVATE KEY-----";
        for (index, address) in ["127.0.0.1:443", "[::1]:8443"].into_iter().enumerate() {
            let mut certificate = CertificateAndKey::new(pem, key);
            for chain in [
                vec![],
                vec![pem.to_string()],
                vec![pem.to_string(), "\"".to_string()],
            ] {
                certificate.certificate_chain = chain;
                let add = AddCertificate {
                    address: address.parse().expect("an address"),
                    certificate: certificate.clone(),
                    allow_expired: index == 1,
                };
                assert_same_json(&Order::AddCertificate(add));
            }
            certificate.names = vec!["example.com".to_string()];
            assert_same_json(&Order::AddCertificate(AddCertificate {
                address: address.parse().expect("an address"),
                certificate,
                allow_expired: false,
            }));
        }
    }

    /// Issue 17: every other order is written by `serde_json`.
    #[test]
    fn every_order_is_written_as_serde_json_writes_it() {
        for order in sample_orders() {
            assert_same_json(&order);
        }
    }
}
