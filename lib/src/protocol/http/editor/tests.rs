use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sozu_command_lib::request::default_hsts_max_age;

use super::*;
use crate::protocol::http::parser::{
    Limits, Method, Parsed, parse_request_head, parse_response_head,
};

fn request_edits<'a>(rules: &'a [HeaderEdit]) -> RequestEdits<'a> {
    RequestEdits {
        client: "203.0.113.5:4000".parse().unwrap(),
        listener: "127.0.0.1:8080".parse().unwrap(),
        is_tls: false,
        request_id_header: "Sozu-Id",
        request_id: "req-1",
        send_x_real_ip: false,
        elide_x_real_ip: false,
        rewrite_host: None,
        rewrite_port: None,
        rewrite_path: None,
        rules,
        sticky_cookie: None,
        upgrade: None,
    }
}

fn edit_request(raw: &str, edits: &RequestEdits<'_>) -> String {
    let mut headers = Vec::new();
    let Ok(Parsed::Complete(head)) =
        parse_request_head(raw.as_bytes(), &Limits::default(), b"sozu-id", &mut headers)
    else {
        panic!("not a request: {raw}");
    };
    let mut out = Vec::new();
    write_request_head(raw.as_bytes(), &head, &headers, edits, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn hop_by_hop_fields_are_removed_and_forwarding_fields_added() {
    let edited = edit_request(
        "GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1\r\nSozu-Id: spoofed\r\n\r\n",
        &request_edits(&[]),
    );
    assert_eq!(
        edited,
        "GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
         X-Forwarded-For: 10.0.0.1, 203.0.113.5\r\n\
         Forwarded: for=203.0.113.5;by=127.0.0.1;proto=http\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\nSozu-Id: req-1\r\n\r\n"
    );
}

#[test]
fn forwarded_quotes_ipv6_and_keeps_earlier_elements() {
    let mut edits = request_edits(&[]);
    edits.client = "[2001:db8::1]:4000".parse().unwrap();
    edits.is_tls = true;
    let edited = edit_request(
        "GET / HTTP/1.1\r\nHost: a\r\nForwarded: for=192.0.2.60;proto=http\r\n\r\n",
        &edits,
    );
    assert!(edited.contains(
        "Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8::1]\";by=127.0.0.1;proto=https\r\n"
    ), "{edited}");
    assert!(edited.contains("X-Forwarded-Proto: https\r\n"));
}

#[test]
fn absolute_form_becomes_origin_form_with_matching_host() {
    let edited = edit_request(
        "GET http://Example.com:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        &request_edits(&[]),
    );
    assert!(edited.starts_with("GET /?q=1 HTTP/1.1\r\n"), "{edited}");
    assert!(edited.contains("Host: Example.com:8080\r\n"));
    assert!(!edited.contains("Host: other"));
}

#[test]
fn rules_replace_add_and_delete() {
    let rules = [
        HeaderEdit {
            position: HeaderPosition::Request,
            key: "X-Team".to_string(),
            value: "blue".to_string(),
        },
        HeaderEdit {
            position: HeaderPosition::Both,
            key: "X-Debug".to_string(),
            value: String::new(),
        },
    ];
    let edited = edit_request(
        "GET / HTTP/1.1\r\nHost: a\r\nx-team: red\r\nX-Debug: on\r\n\r\n",
        &request_edits(&rules),
    );
    assert!(edited.contains("X-Team: blue\r\n"), "{edited}");
    assert!(!edited.contains("red"));
    assert!(!edited.to_lowercase().contains("x-debug"));
}

#[test]
fn rewrites_and_real_ip() {
    let mut edits = request_edits(&[]);
    edits.rewrite_host = Some(b"internal.svc");
    edits.rewrite_port = Some(9000);
    edits.rewrite_path = Some(b"/v2/a?x=1");
    edits.send_x_real_ip = true;
    let edited = edit_request(
        "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Real-IP: 1.1.1.1\r\n\r\n",
        &edits,
    );
    assert!(edited.starts_with("GET /v2/a?x=1 HTTP/1.1\r\n"), "{edited}");
    assert!(edited.contains("Host: internal.svc:9000\r\n"));
    assert!(edited.contains("X-Real-IP: 203.0.113.5\r\n"));
    assert!(!edited.contains("1.1.1.1"));
}

#[test]
fn sticky_cookie_is_removed_from_the_request() {
    let mut edits = request_edits(&[]);
    edits.sticky_cookie = Some("SOZUBALANCEID");
    let edited = edit_request(
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; SOZUBALANCEID=b2; c=3\r\n\r\n",
        &edits,
    );
    assert!(edited.contains("Cookie: a=1; c=3\r\n"), "{edited}");
    let edited = edit_request(
        "GET / HTTP/1.1\r\nHost: a\r\nCookie: SOZUBALANCEID=b2\r\n\r\n",
        &edits,
    );
    assert!(!edited.contains("Cookie"), "{edited}");
}

#[test]
fn upgrade_is_offered_only_when_asked_and_only_the_protocol_given() {
    let raw = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\nUpgrade: foo\r\n\r\n";
    let edited = edit_request(raw, &request_edits(&[]));
    assert!(!edited.contains("Upgrade"), "{edited}");
    let mut edits = request_edits(&[]);
    edits.upgrade = Some(b"websocket");
    let edited = edit_request(raw, &edits);
    assert!(
        edited.contains("\r\nUpgrade: websocket\r\nSozu-Id: req-1\r\nConnection: upgrade\r\n\r\n"),
        "{edited}"
    );
    assert_eq!(edited.matches("Upgrade").count(), 1, "{edited}");
}

#[test]
fn finds_cookie_values() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; SOZUBALANCEID=api-2\r\n\r\n";
    let mut headers = Vec::new();
    parse_request_head(raw, &Limits::default(), b"", &mut headers).unwrap();
    assert_eq!(
        find_cookie(raw, &headers, "SOZUBALANCEID"),
        Some(&b"api-2"[..])
    );
    assert_eq!(find_cookie(raw, &headers, "missing"), None);
}

#[test]
fn response_gets_hsts_sticky_cookie_and_close() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok";
    let mut headers = Vec::new();
    let Ok(Parsed::Complete(head)) =
        parse_response_head(raw, &Limits::default(), Method::Get, &mut headers)
    else {
        panic!("not a response");
    };
    let hsts = Hsts {
        enabled: true,
        max_age: default_hsts_max_age(),
        include_subdomains: true,
        preload: false,
        force_replace_backend: false,
    };
    let edits = ResponseEdits {
        request_id_header: "Sozu-Id",
        request_id: "req-1",
        rules: &[],
        hsts: Some(&hsts),
        set_sticky: Some(("SOZUBALANCEID", "api-2")),
        close: true,
        upgrade: false,
        client_http10: false,
    };
    let mut out = Vec::new();
    write_response_head(raw, &head, &headers, &edits, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\
         Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n\
         Set-Cookie: SOZUBALANCEID=api-2; Path=/\r\nSozu-Id: req-1\r\nConnection: close\r\n\r\n"
    );
}

/// Start lines go on as they came only when they are what the proxy writes: another
/// version, a missing SP before an empty reason, a rewritten path or an absolute-form
/// target are written anew; empty lines before a request line are left out.
#[test]
fn start_lines_are_kept_only_when_written_the_same() {
    let edits = request_edits(&[]);
    for (raw, line) in [
        (
            "GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\n",
        ),
        (
            "GET /a HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET /a HTTP/1.0\r\nHost: a\r\n",
        ),
        (
            "GET /a HTTP/1.2\r\nHost: a\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\n",
        ),
        (
            "\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a\r\n",
        ),
    ] {
        let edited = edit_request(raw, &edits);
        assert!(edited.starts_with(line), "{raw:?} gave {edited:?}");
    }
    let mut rewritten = request_edits(&[]);
    rewritten.rewrite_path = Some(b"/b");
    let edited = edit_request("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", &rewritten);
    assert!(
        edited.starts_with("GET /b HTTP/1.1\r\nHost: a\r\n"),
        "{edited:?}"
    );

    let edits = ResponseEdits {
        request_id_header: "",
        request_id: "",
        rules: &[],
        hsts: None,
        set_sticky: None,
        close: false,
        upgrade: false,
        client_http10: false,
    };
    for (raw, expected) in [
        (
            "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
        ),
        (
            "HTTP/1.0 200 OK\r\nA: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
        ),
        (
            "HTTP/1.1 204\r\nA: 1\r\n\r\n",
            "HTTP/1.1 204 \r\nA: 1\r\n\r\n",
        ),
        (
            "HTTP/1.1 404 \r\nA: 1\r\n\r\n",
            "HTTP/1.1 404 \r\nA: 1\r\n\r\n",
        ),
        (
            "HTTP/1.3 200 OK\r\nA: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n",
        ),
    ] {
        let mut headers = Vec::new();
        let Ok(Parsed::Complete(head)) = parse_response_head(
            raw.as_bytes(),
            &Limits::default(),
            Method::Get,
            &mut headers,
        ) else {
            panic!("not a response: {raw:?}");
        };
        let mut out = Vec::new();
        write_response_head(raw.as_bytes(), &head, &headers, &edits, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{raw:?}");
    }
}

/// Kept field lines that follow each other go in one copy, in their order around the
/// removed and rewritten ones.
#[test]
fn kept_lines_keep_their_order_around_removed_ones() {
    let mut edits = request_edits(&[]);
    edits.sticky_cookie = Some("SOZUBALANCEID");
    let edited = edit_request(
        "GET / HTTP/1.1\r\nA: 1\r\nConnection: close\r\nB: 2\r\nC: 3\r\nCookie: x=1; SOZUBALANCEID=b\r\nD: 4\r\nHost: h\r\n\r\n",
        &edits,
    );
    assert!(
        edited.starts_with(
            "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nCookie: x=1\r\nD: 4\r\nHost: h\r\nX-Forwarded-For: "
        ),
        "{edited:?}"
    );
}

#[test]
fn every_port_is_written_as_display_writes_it() {
    let mut out = Vec::new();
    for port in 0..=u16::MAX {
        out.clear();
        push_decimal(&mut out, port);
        assert_eq!(out, port.to_string().as_bytes());
    }
}

#[test]
fn every_octet_in_every_position_is_written_as_display_writes_it() {
    let mut out = Vec::new();
    for octet in 0..=u8::MAX {
        for position in 0..4 {
            let mut octets = [255, 0, 9, 10];
            octets[position] = octet;
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            out.clear();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }
}

proptest! {
    #[test]
    fn an_address_is_written_as_display_writes_it(bits: u32, wide: u128) {
        for ip in [IpAddr::V4(Ipv4Addr::from(bits)), IpAddr::V6(Ipv6Addr::from(wide))] {
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            prop_assert_eq!(out, ip.to_string().into_bytes());
        }
    }
}
