//! Writing an [`Order`] as JSON quickly, for the main process, which writes every order of the
//! state to its workers (110,000 at a large start).
//!
//! `serde_json::to_writer` goes through the derived `Serialize` impls: the internal tag, one
//! map entry per field, a socket address formatted through `Display`, each string scanned for
//! escapes byte by byte. [`write_order`] writes the most frequent orders — frontends without
//! options, nine in ten orders of a large configuration — straight into the buffer, and every
//! other order through `serde_json`. The bytes are the same as `serde_json::to_writer` writes
//! (the tests compare them), so workers, state files and embedders read the same JSON.

use std::net::SocketAddr;

use super::{HttpFrontend, Order, PathRuleKind, RedirectPolicy, RedirectScheme, RulePosition};

/// Appends `order`'s JSON to `out`, as `serde_json::to_writer(out, order)` does. On an error
/// (which only `serde_json` may return), `out` may hold part of the order.
pub fn write_order(order: &Order, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match order {
        Order::AddHttpFrontend(frontend)
        | Order::RemoveHttpFrontend(frontend)
        | Order::AddHttpsFrontend(frontend)
        | Order::RemoveHttpsFrontend(frontend)
            if !frontend.has_options() =>
        {
            write_frontend(order.name(), frontend, out)
        }
        _ => serde_json::to_writer(out, order),
    }
}

/// A frontend without options, its fields in the order of `HttpFrontendFields`, those left
/// out when `serde` skips them left out.
fn write_frontend(
    tag: &str,
    frontend: &HttpFrontend,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(tag.as_bytes());
    out.push(b'"');
    if let Some(cluster_id) = &frontend.cluster_id {
        out.extend_from_slice(br#","cluster_id":"#);
        write_str(cluster_id, out)?;
    }
    out.extend_from_slice(br#","address":"#);
    write_address(frontend.address, out)?;
    out.extend_from_slice(br#","hostname":"#);
    write_str(&frontend.hostname, out)?;
    if !frontend.path.is_any() {
        out.extend_from_slice(br#","path":{"kind":""#);
        out.extend_from_slice(path_kind(frontend.path.kind).as_bytes());
        out.extend_from_slice(br#"","value":"#);
        write_str(&frontend.path.value, out)?;
        out.push(b'}');
    }
    if let Some(method) = &frontend.method {
        out.extend_from_slice(br#","method":"#);
        write_str(method, out)?;
    }
    out.extend_from_slice(br#","position":""#);
    out.extend_from_slice(position(frontend.position).as_bytes());
    out.extend_from_slice(br#"","redirect":""#);
    out.extend_from_slice(redirect(frontend.redirect).as_bytes());
    out.extend_from_slice(br#"","redirect_scheme":""#);
    out.extend_from_slice(redirect_scheme(frontend.redirect_scheme).as_bytes());
    out.push(b'"');
    if let Some(port) = frontend.rewrite_port {
        out.extend_from_slice(br#","rewrite_port":"#);
        serde_json::to_writer(&mut *out, &port)?;
    }
    out.extend_from_slice(if frontend.required_auth {
        br#","required_auth":true}"#
    } else {
        br#","required_auth":false}"#
    });
    Ok(())
}

/// A string in quotes: copied when nothing in it needs an escape (hostnames, cluster ids),
/// else written by `serde_json`, which knows its escapes.
fn write_str(text: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let plain = text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, text)
    }
}

/// An IPv4 address and port in quotes, in the digits of `Display`; an IPv6 one by `serde_json`.
fn write_address(address: SocketAddr, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let SocketAddr::V4(address) = address else {
        return serde_json::to_writer(out, &address);
    };
    out.push(b'"');
    for (index, octet) in address.ip().octets().into_iter().enumerate() {
        if index > 0 {
            out.push(b'.');
        }
        write_decimal(u32::from(octet), out);
    }
    out.push(b':');
    write_decimal(u32::from(address.port()), out);
    out.push(b'"');
    Ok(())
}

/// The decimal digits of `value`, without leading zeros.
fn write_decimal(value: u32, out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            // `rest % 10` is below 10.
            *digit = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
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

    /// Issue 17: every other order is written by `serde_json`.
    #[test]
    fn every_order_is_written_as_serde_json_writes_it() {
        for order in sample_orders() {
            assert_same_json(&order);
        }
    }
}
