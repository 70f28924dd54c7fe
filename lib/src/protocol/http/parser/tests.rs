use super::*;

const REQUEST_ID: &[u8] = b"Sozu-Id";

fn request_with(raw: &[u8], limits: &Limits) -> Result<Parsed<RequestHead>, ParseError> {
    let mut headers = Vec::new();
    parse_request_head(raw, limits, REQUEST_ID, &mut headers)
}

fn request(raw: &[u8]) -> Result<Parsed<RequestHead>, ParseError> {
    request_with(raw, &Limits::default())
}

fn complete_request(raw: &[u8]) -> (RequestHead, Vec<Header>) {
    let mut headers = Vec::new();
    match parse_request_head(raw, &Limits::default(), REQUEST_ID, &mut headers) {
        Ok(Parsed::Complete(head)) => (head, headers),
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn request_violation(raw: &[u8]) -> Violation {
    match request(raw) {
        Err(ParseError::Request(violation)) => violation,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

fn response(raw: &[u8], method: Method) -> Result<Parsed<ResponseHead>, ParseError> {
    let mut headers = Vec::new();
    parse_response_head(raw, &Limits::default(), method, &mut headers)
}

fn complete_response(raw: &[u8], method: Method) -> ResponseHead {
    match response(raw, method) {
        Ok(Parsed::Complete(head)) => head,
        other => panic!("expected a complete response, got {other:?}"),
    }
}

fn response_violation(raw: &[u8]) -> Violation {
    match response(raw, Method::Get) {
        Err(ParseError::Response(violation)) => violation,
        other => panic!("expected an invalid response, got {other:?}"),
    }
}

/// A GET with the given field lines (each with its CRLF) after a valid Host.
fn get_with(fields: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

/// A POST with the given field lines (each with its CRLF) after a valid Host.
fn post_with(fields: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

fn text(buf: &[u8], span: Span) -> &str {
    std::str::from_utf8(span.slice(buf)).unwrap_or("<not utf-8>")
}

#[test]
fn typical_request_records_positions() {
    let raw = b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent:  curl/8.0 \r\nAccept: */*\r\n\r\n";
    let (head, headers) = complete_request(raw);
    assert_eq!(head.method, Method::Get);
    assert_eq!(text(raw, head.method_span), "GET");
    assert_eq!(text(raw, head.target), "/index.html?q=1");
    assert_eq!(head.target_form, TargetForm::Origin);
    assert_eq!(text(raw, head.path), "/index.html?q=1");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.head_len, raw.len());
    assert_eq!(head.body, BodyFraming::None);
    assert_eq!(head.persistence, Persistence::KeepAlive);
    let authority = head.authority.expect("the Host field gives the authority");
    assert_eq!(text(raw, authority.span), "www.example.com:8080");
    assert_eq!(text(raw, authority.host), "www.example.com");
    assert_eq!(authority.port, Some(8080));
    assert_eq!(headers.len(), 3);
    assert_eq!(text(raw, headers[1].name), "User-Agent");
    assert_eq!(text(raw, headers[1].value), "curl/8.0");
    assert_eq!(text(raw, headers[1].line()), "User-Agent:  curl/8.0 \r\n");
    assert_eq!(headers[0].kind, HeaderKind::Host);
    assert_eq!(headers[2].kind, HeaderKind::Other);
}

#[test]
fn body_starts_at_head_len() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let (head, _) = complete_request(raw);
    assert_eq!(head.body, BodyFraming::ContentLength(5));
    assert_eq!(raw.get(head.head_len..), Some(&b"hello"[..]));
}

#[test]
fn header_names_are_classified_case_insensitively() {
    let raw = get_with(
        "cookie: a=b\r\nX-FORWARDED-FOR: 1.2.3.4\r\nforwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\
         sozu-id: 42\r\nAuthorization: Basic x\r\nTE: trailers\r\nKeep-Alive: 5\r\n\
         Proxy-Connection: close\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n\
         X-Forwarded-Host: a\r\nX-Custom: 1\r\n",
    );
    let (_, headers) = complete_request(&raw);
    let kinds: Vec<HeaderKind> = headers.iter().map(|header| header.kind).collect();
    assert_eq!(
        kinds,
        [
            HeaderKind::Host,
            HeaderKind::Cookie,
            HeaderKind::XForwardedFor,
            HeaderKind::Forwarded,
            HeaderKind::XRealIp,
            HeaderKind::RequestId,
            HeaderKind::Authorization,
            HeaderKind::Te,
            HeaderKind::KeepAlive,
            HeaderKind::ProxyConnection,
            HeaderKind::XForwardedProto,
            HeaderKind::XForwardedPort,
            HeaderKind::XForwardedHost,
            HeaderKind::Other,
        ]
    );
}

#[test]
fn methods_are_case_sensitive_tokens() {
    let (head, _) = complete_request(b"get / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.method, Method::Other);
    let (head, _) = complete_request(b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.method, Method::Other);
    let (head, _) = complete_request(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.method, Method::Head);
    assert_eq!(
        request_violation(b"G(ET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidMethod
    );
}

#[test]
fn every_prefix_of_a_request_is_partial() {
    let raw = get_with("Content-Length: 0\r\nX-A:  b \r\n");
    for end in 0..raw.len() {
        assert_eq!(
            request(&raw[..end]),
            Ok(Parsed::Partial),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn absolute_form_authority_is_used_for_routing() {
    let raw = b"GET http://backend.example:81/a?b HTTP/1.1\r\nHost: other.example\r\n\r\n";
    let (head, _) = complete_request(raw);
    assert_eq!(head.target_form, TargetForm::Absolute);
    assert_eq!(text(raw, head.path), "/a?b");
    let authority = head.authority.expect("the target gives the authority");
    assert_eq!(text(raw, authority.host), "backend.example");
    assert_eq!(authority.port, Some(81));
}

#[test]
fn absolute_form_may_have_an_empty_path() {
    let raw = b"GET HTTPS://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let (head, _) = complete_request(raw);
    assert_eq!(head.target_form, TargetForm::Absolute);
    assert!(head.path.is_empty());
}

#[test]
fn absolute_form_is_refused_with_userinfo_other_schemes_or_no_host() {
    for target in [
        "http://user@a.example/",
        "ftp://a.example/",
        "http:///a",
        "http:/a",
        "example.com/",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            request_violation(raw.as_bytes()),
            Violation::InvalidTarget,
            "{target}"
        );
    }
}

#[test]
fn connect_takes_an_authority_with_a_port() {
    let raw = b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
    let (head, _) = complete_request(raw);
    assert_eq!(head.target_form, TargetForm::Authority);
    assert_eq!(
        head.authority.and_then(|authority| authority.port),
        Some(443)
    );
    assert_eq!(
        request_violation(b"CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidTarget
    );
    assert_eq!(
        request_violation(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidTarget
    );
    assert_eq!(
        request_violation(b"GET a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidTarget
    );
}

#[test]
fn asterisk_form_only_with_options() {
    let (head, _) = complete_request(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.target_form, TargetForm::Asterisk);
    assert_eq!(
        request_violation(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidTarget
    );
}

#[test]
fn target_refuses_fragments_controls_and_non_ascii() {
    for target in [&b"/a#b"[..], b"/a\x01b", b"/a\x7fb", b"/caf\xc3\xa9"] {
        let mut raw = b"GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            request_violation(&raw),
            Violation::InvalidTarget,
            "{target:?}"
        );
    }
}

#[test]
fn request_line_needs_single_spaces() {
    assert_eq!(
        request_violation(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidTarget
    );
    assert_eq!(
        request_violation(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidVersion
    );
    assert_eq!(
        request_violation(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidMethod
    );
    assert_eq!(
        request_violation(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::InvalidMethod
    );
    assert_eq!(
        request_violation(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
        Violation::InvalidVersion
    );
    assert_eq!(
        request_violation(b"GET /\r\n\r\n"),
        Violation::InvalidTarget
    );
}

#[test]
fn only_http1_is_supported_and_a_higher_minor_version_is_http11() {
    let (head, _) = complete_request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(head.version, Version::Http10);
    // RFC 9110 §2.5: handled as the highest minor version the proxy speaks.
    for version in ["HTTP/1.2", "HTTP/1.9"] {
        let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
        let (head, _) = complete_request(raw.as_bytes());
        assert_eq!(head.version, Version::Http11, "{version}");
        assert_eq!(head.persistence, Persistence::KeepAlive, "{version}");
        let raw = format!("{version} 200 OK\r\nContent-Length: 0\r\n\r\n");
        let head = complete_response(raw.as_bytes(), Method::Get);
        assert_eq!(head.version, Version::Http11, "{version}");
    }
    for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1"] {
        let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
        let error = request(raw.as_bytes()).expect_err("unsupported version");
        assert_eq!(error.violation(), Violation::UnsupportedVersion);
        assert_eq!(error.status(), 505);
    }
    for version in ["HTTP/1.x", "http/1.1", "HTTP/11", "HTTP/1.1.1"] {
        let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
        assert_eq!(
            request_violation(raw.as_bytes()),
            Violation::InvalidVersion,
            "{version}"
        );
    }
}

#[test]
fn leading_empty_lines_are_skipped_up_to_a_bound() {
    let raw = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let (head, _) = complete_request(raw);
    assert_eq!(head.start, 4);
    assert_eq!(text(raw, head.method_span), "GET");
    assert_eq!(head.head_len, raw.len());
    let too_many = format!(
        "{}GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1)
    );
    assert_eq!(
        request_violation(too_many.as_bytes()),
        Violation::TooManyEmptyLines
    );
    assert_eq!(
        request_violation(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Violation::BareLf
    );
}

#[test]
fn bare_lf_is_refused_everywhere() {
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
        Violation::BareLf
    );
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        Violation::BareLf
    );
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
        Violation::BareLf
    );
    assert_eq!(
        response_violation(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
        Violation::BareLf
    );
}

#[test]
fn bare_cr_is_refused_everywhere() {
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
        Violation::BareCr
    );
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
        Violation::BareCr
    );
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\nHost: a\r\n\rX: b\r\n\r\n"),
        Violation::BareCr
    );
}

#[test]
fn obs_fold_is_refused() {
    assert_eq!(
        request_violation(&get_with("X-A: b\r\n c\r\n")),
        Violation::ObsFold
    );
    assert_eq!(
        request_violation(&get_with("X-A: b\r\n\tc\r\n")),
        Violation::ObsFold
    );
    // Whitespace between the start line and the first field line (RFC 9112 §2.2).
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        Violation::ObsFold
    );
}

#[test]
fn whitespace_before_colon_is_refused() {
    assert_eq!(
        request_violation(&get_with("X-A : b\r\n")),
        Violation::WhitespaceBeforeColon
    );
    assert_eq!(
        request_violation(&get_with("Content-Length\t: 0\r\n")),
        Violation::WhitespaceBeforeColon
    );
}

#[test]
fn field_names_must_be_tokens() {
    for line in [
        "X[A]: b\r\n",
        ": b\r\n",
        "X\0A: b\r\n",
        "X\u{7f}: b\r\n",
        "Caf\u{e9}: b\r\n",
        "NoColon\r\n",
    ] {
        assert_eq!(
            request_violation(&get_with(line)),
            Violation::InvalidFieldName,
            "{line:?}"
        );
    }
}

#[test]
fn field_values_refuse_control_characters_but_htab() {
    for line in [
        &b"X-A: a\0b\r\n"[..],
        b"X-A: \x01\r\n",
        b"X-A: a\x7f\r\n",
        b"X-A: 0123456789abcdef\x1b\r\n",
    ] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
        assert_eq!(
            request_violation(&raw),
            Violation::InvalidFieldValue,
            "{line:?}"
        );
    }
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \tb\tc\xff\t \r\n\r\n";
    let (_, headers) = complete_request(raw);
    assert_eq!(headers[1].value.slice(raw), b"b\tc\xff");
}

#[test]
fn long_values_are_scanned_and_checked() {
    let value = "v".repeat(1000);
    let raw = get_with(&format!("Cookie: {value}\r\n"));
    let (_, headers) = complete_request(&raw);
    assert_eq!(text(&raw, headers[1].value), value);
    let raw = get_with(&format!("Cookie: {value}\u{1}{value}\r\n"));
    assert_eq!(request_violation(&raw), Violation::InvalidFieldValue);
}

#[test]
fn empty_field_value_is_allowed() {
    let raw = get_with("X-Empty:\r\nX-Blank:   \r\n");
    let (_, headers) = complete_request(&raw);
    assert!(headers[1].value.is_empty());
    assert!(headers[2].value.is_empty());
}

#[test]
fn host_is_required_in_http11_only() {
    assert_eq!(
        request_violation(b"GET / HTTP/1.1\r\nX: a\r\n\r\n"),
        Violation::MissingHost
    );
    let (head, _) = complete_request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(head.authority, None);
}

#[test]
fn repeated_host_is_refused() {
    assert_eq!(
        request_violation(&get_with("Host: example.com\r\n")),
        Violation::DuplicateHost
    );
    assert_eq!(
        request_violation(&get_with("host: other.example\r\n")),
        Violation::DuplicateHost
    );
}

#[test]
fn host_must_be_a_valid_authority() {
    for host in [
        "",
        "a b",
        "a@b",
        "a/b",
        "a:",
        "a:99999",
        "a:1x",
        "a:80:80",
        "[::1",
        "[zz::1]",
        "[1.2.3.4]",
        "a%zz",
        ":80",
        "a\"b",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(
            request_violation(raw.as_bytes()),
            Violation::InvalidHost,
            "{host:?}"
        );
    }
    for host in [
        "a",
        "a.example:1",
        "127.0.0.1:65535",
        "[::1]:80",
        "[2001:db8::1]",
        "xn--caf-dma.example",
        "a%2Db",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (head, _) = complete_request(raw.as_bytes());
        let authority = head.authority.expect("a valid Host");
        assert_eq!(text(raw.as_bytes(), authority.span), host);
    }
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let raw = post_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(
        request_violation(&raw),
        Violation::ContentLengthWithTransferEncoding
    );
    assert_eq!(request(&raw).map_err(ParseError::status), Err(400));
    let raw = post_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n");
    assert_eq!(
        request_violation(&raw),
        Violation::ContentLengthWithTransferEncoding
    );
}

#[test]
fn differing_content_lengths_are_refused() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 5,5,6\r\n",
    ] {
        assert_eq!(
            request_violation(&post_with(fields)),
            Violation::ConflictingContentLength,
            "{fields:?}"
        );
    }
}

#[test]
fn identical_content_lengths_collapse() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5,05\r\n",
    ] {
        let (head, _) = complete_request(&post_with(fields));
        assert_eq!(head.body, BodyFraming::ContentLength(5), "{fields:?}");
    }
}

#[test]
fn content_length_must_be_plain_digits() {
    for value in [
        "+5",
        "-1",
        "0x10",
        "5 5",
        "",
        "5,",
        ",5",
        "5;",
        "18446744073709551616",
        "1e3",
        "５",
    ] {
        let raw = post_with(&format!("Content-Length: {value}\r\n"));
        assert_eq!(
            request_violation(&raw),
            Violation::InvalidContentLength,
            "{value:?}"
        );
    }
    let (head, _) = complete_request(&post_with("Content-Length:  5 \r\n"));
    assert_eq!(head.body, BodyFraming::ContentLength(5));
    let (head, _) = complete_request(&post_with("Content-Length: 18446744073709551615\r\n"));
    assert_eq!(head.body, BodyFraming::ContentLength(u64::MAX));
}

#[test]
fn transfer_encoding_must_end_with_chunked() {
    for value in ["gzip", "chunked, gzip", "identity"] {
        let raw = post_with(&format!("Transfer-Encoding: {value}\r\n"));
        let error = request(&raw).expect_err("not chunked last");
        assert_eq!(
            error.violation(),
            Violation::TransferEncodingNotChunked,
            "{value:?}"
        );
        assert_eq!(error.status(), 400);
    }
    let raw = post_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n");
    assert_eq!(
        request_violation(&raw),
        Violation::TransferEncodingNotChunked
    );
    for value in ["chunked", "Chunked", "gzip, chunked", "gzip,chunked"] {
        let (head, _) = complete_request(&post_with(&format!("Transfer-Encoding: {value}\r\n")));
        assert_eq!(head.body, BodyFraming::Chunked, "{value:?}");
    }
    let (head, _) = complete_request(&post_with(
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ));
    assert_eq!(head.body, BodyFraming::Chunked);
}

#[test]
fn chunked_twice_is_refused() {
    assert_eq!(
        request_violation(&post_with("Transfer-Encoding: chunked, chunked\r\n")),
        Violation::ChunkedTwice
    );
    let raw = post_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(request_violation(&raw), Violation::ChunkedTwice);
}

#[test]
fn transfer_encoding_refuses_parameters_and_empty_elements() {
    for value in ["chunked;q=1", "chunked,", ", chunked", "", "gzip chunked"] {
        let raw = post_with(&format!("Transfer-Encoding: {value}\r\n"));
        assert_eq!(
            request_violation(&raw),
            Violation::InvalidTransferEncoding,
            "{value:?}"
        );
    }
}

#[test]
fn transfer_encoding_in_http10_is_refused() {
    let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(request_violation(raw), Violation::TransferEncodingInHttp10);
}

#[test]
fn persistence_follows_version_and_connection() {
    let cases: [(&[u8], Persistence); 5] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Persistence::KeepAlive),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
            Persistence::Close,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", Persistence::Close),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Persistence::KeepAlive,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            Persistence::Close,
        ),
    ];
    for (raw, persistence) in cases {
        assert_eq!(
            complete_request(raw).0.persistence,
            persistence,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn connection_options_mark_hop_by_hop_fields() {
    let raw = get_with(
        "X-Secret: 1\r\nConnection: x-secret, ,host, Content-Length\r\nContent-Length: 0\r\n",
    );
    let (head, headers) = complete_request(&raw);
    assert!(head.has_connection_options);
    let marked: Vec<&str> = headers
        .iter()
        .filter(|header| header.is_connection_option)
        .map(|header| text(&raw, header.name))
        .collect();
    assert_eq!(marked, ["X-Secret"]);
    assert_eq!(
        request_violation(&get_with("Connection: a b\r\n")),
        Violation::InvalidConnection
    );
}

#[test]
fn upgrade_is_recorded_in_http11() {
    let raw = get_with("Connection: Upgrade\r\nUpgrade: websocket\r\n");
    let (head, _) = complete_request(&raw);
    assert!(head.is_connection_upgrade);
    assert!(!head.has_connection_options);
    assert_eq!(head.upgrade.map(|span| text(&raw, span)), Some("websocket"));
    let (head, _) = complete_request(b"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(head.upgrade, None);
}

#[test]
fn expect_continue_is_recorded_in_http11() {
    let (head, _) = complete_request(&post_with("Expect: 100-Continue\r\nContent-Length: 3\r\n"));
    assert!(head.expects_continue);
    let (head, _) = complete_request(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert!(!head.expects_continue);
}

#[test]
fn long_request_line_gets_414() {
    let limits = Limits {
        max_request_line: 32,
        ..Limits::default()
    };
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40));
    let error = request_with(long.as_bytes(), &limits).expect_err("too long");
    assert_eq!(error.status(), 414);
    // Refused before the line ends.
    let error =
        request_with(long.as_bytes().get(..36).unwrap_or_default(), &limits).expect_err("too long");
    assert_eq!(error.violation(), Violation::RequestLineTooLong);
    let fits = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(18));
    assert!(matches!(
        request_with(fits.as_bytes(), &limits),
        Ok(Parsed::Complete(_))
    ));
}

#[test]
fn large_header_section_gets_431() {
    let limits = Limits {
        max_header_section: 64,
        ..Limits::default()
    };
    let raw = get_with(&format!("X-A: {}\r\n", "b".repeat(40)));
    let error = request_with(&raw, &limits).expect_err("too large");
    assert_eq!(error.violation(), Violation::HeaderSectionTooLarge);
    assert_eq!(error.status(), 431);
    // Refused before the head ends, once the buffer is past the limit.
    let error = request_with(raw.get(..65).unwrap_or_default(), &limits).expect_err("too large");
    assert_eq!(error.status(), 431);
    assert_eq!(
        request_with(raw.get(..64).unwrap_or_default(), &limits),
        Ok(Parsed::Partial)
    );
    // The final CRLF counts.
    let exact = get_with("X-A: b\r\n");
    let limits = Limits {
        max_header_section: exact.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        request_with(&exact, &limits).map_err(ParseError::violation),
        Err(Violation::HeaderSectionTooLarge)
    );
}

#[test]
fn too_many_headers_get_431() {
    let limits = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    let raw = get_with("A: 1\r\nB: 2\r\n");
    assert!(matches!(
        request_with(&raw, &limits),
        Ok(Parsed::Complete(_))
    ));
    let raw = get_with("A: 1\r\nB: 2\r\nC: 3\r\n");
    let error = request_with(&raw, &limits).expect_err("too many");
    assert_eq!(error.violation(), Violation::TooManyHeaders);
    assert_eq!(error.status(), 431);
}

#[test]
fn headers_vector_is_reused() {
    let mut headers = Vec::with_capacity(8);
    let first = get_with("A: 1\r\nB: 2\r\n");
    let second = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    assert!(matches!(
        parse_request_head(&first, &Limits::default(), b"", &mut headers),
        Ok(Parsed::Complete(_))
    ));
    assert_eq!(headers.len(), 3);
    assert!(matches!(
        parse_request_head(second, &Limits::default(), b"", &mut headers),
        Ok(Parsed::Complete(_))
    ));
    assert_eq!(headers.len(), 1);
    assert_eq!(headers.capacity(), 8);
}

#[test]
fn typical_response_records_positions() {
    let raw =
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world!";
    let head = complete_response(raw, Method::Get);
    assert_eq!(head.status, 200);
    assert_eq!(text(raw, head.reason), "OK");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.body, BodyFraming::ContentLength(12));
    assert_eq!(head.persistence, Persistence::KeepAlive);
    assert_eq!(raw.get(head.head_len..), Some(&b"hello world!"[..]));
}

#[test]
fn every_prefix_of_a_response_is_partial() {
    let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    for end in 0..raw.len() {
        assert_eq!(
            response(&raw[..end], Method::Get),
            Ok(Parsed::Partial),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn response_framing_follows_rfc9112() {
    let cases: [(&[u8], Method, BodyFraming); 11] = [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
            BodyFraming::Chunked,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Method::Get,
            BodyFraming::UntilClose,
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            Method::Get,
            BodyFraming::UntilClose,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
            Method::Head,
            BodyFraming::None,
        ),
        (
            b"HTTP/1.1 204 No Content\r\n\r\n",
            Method::Get,
            BodyFraming::None,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\n",
            Method::Get,
            BodyFraming::None,
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\n",
            Method::Post,
            BodyFraming::None,
        ),
        (
            b"HTTP/1.1 200 Connection established\r\n\r\n",
            Method::Connect,
            BodyFraming::None,
        ),
        (
            b"HTTP/1.1 407 Auth\r\nContent-Length: 1\r\n\r\n",
            Method::Connect,
            BodyFraming::ContentLength(1),
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Method::Get,
            BodyFraming::ContentLength(1),
        ),
        (
            b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
            BodyFraming::ContentLength(0),
        ),
    ];
    for (raw, method, framing) in cases {
        assert_eq!(
            complete_response(raw, method).body,
            framing,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn close_delimited_responses_close() {
    let head = complete_response(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get);
    assert_eq!(head.persistence, Persistence::Close);
    let head = complete_response(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!(head.persistence, Persistence::KeepAlive);
}

#[test]
fn switching_protocols_records_upgrade() {
    let raw =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let head = complete_response(raw, Method::Get);
    assert_eq!(head.status, 101);
    assert_eq!(head.body, BodyFraming::None);
    assert!(head.is_connection_upgrade);
    assert_eq!(head.upgrade.map(|span| text(raw, span)), Some("websocket"));
}

#[test]
fn response_status_must_be_three_digits_from_100_to_599() {
    for line in [
        "HTTP/1.1 99 X",
        "HTTP/1.1 600 X",
        "HTTP/1.1 2000 X",
        "HTTP/1.1 20a X",
        "HTTP/1.1  200 X",
        "HTTP/1.1 099 X",
    ] {
        let raw = format!("{line}\r\n\r\n");
        assert_eq!(
            response_violation(raw.as_bytes()),
            Violation::InvalidStatusLine,
            "{line:?}"
        );
    }
    let head = complete_response(b"HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert_eq!(head.status, 599);
    assert!(head.reason.is_empty());
    let head = complete_response(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert!(head.reason.is_empty());
    assert_eq!(
        response_violation(b"HTTP/1.1 200 O\x01K\r\n\r\n"),
        Violation::InvalidStatusLine
    );
    assert_eq!(
        response_violation(b"HTTP/2 200 OK\r\n\r\n"),
        Violation::InvalidVersion
    );
}

#[test]
fn response_errors_blame_the_backend() {
    let mut headers = Vec::new();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded\r\n\r\n";
    let error = parse_response_head(raw, &Limits::default(), Method::Get, &mut headers)
        .expect_err("obs-fold");
    assert_eq!(error, ParseError::Response(Violation::ObsFold));
    assert_eq!(error.blame(), Blame::Backend);
    assert_eq!(error.status(), 502);
    assert_eq!(
        request(b"GET / HTTP/1.1\r\n\r\n").map_err(ParseError::blame),
        Err(Blame::Frontend)
    );
}

#[test]
fn response_framing_is_strict() {
    assert_eq!(
        response_violation(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Violation::ConflictingContentLength
    );
    assert_eq!(
        response_violation(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        Violation::ContentLengthWithTransferEncoding
    );
    assert_eq!(
        response_violation(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Violation::TransferEncodingInHttp10
    );
    assert_eq!(
        response_violation(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        Violation::ChunkedTwice
    );
    assert_eq!(
        response_violation(b"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n"),
        Violation::WhitespaceBeforeColon
    );
    // Host means nothing in a response.
    let head = complete_response(
        b"HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert_eq!(head.body, BodyFraming::ContentLength(0));
}

fn chunked(body: &[u8]) -> Result<BodyProgress, ChunkedError> {
    ChunkedBody::new(&Limits::default()).feed(body)
}

/// Feeds `body` one byte at a time; returns the length of the message, if it ends.
fn chunked_bytewise(body: &[u8]) -> Result<Option<usize>, ChunkedError> {
    let mut tracker = ChunkedBody::new(&Limits::default());
    for (index, byte) in body.iter().enumerate() {
        match tracker.feed(std::slice::from_ref(byte))? {
            BodyProgress::Partial => {}
            BodyProgress::Complete { len: 1 } => return Ok(Some(index + 1)),
            BodyProgress::Complete { len } => panic!("one byte fed, {len} consumed"),
        }
    }
    Ok(None)
}

#[test]
fn chunked_body_ends_after_the_last_chunk() {
    let body = b"5\r\nhello\r\nA;name=value;quoted=\"a \\\"b\\\" c\"\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1";
    let end = body.len() - b"GET / HTTP/1.1".len();
    assert_eq!(chunked(body), Ok(BodyProgress::Complete { len: end }));
    assert_eq!(chunked_bytewise(body), Ok(Some(end)));
    assert_eq!(chunked(&body[..end - 1]), Ok(BodyProgress::Partial));
}

#[test]
fn chunk_data_is_shown_without_its_framing_whatever_the_split() {
    let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\nnext";
    for split in 0..=body.len() {
        let (first, second) = body.split_at(split);
        let mut tracker = ChunkedBody::new(&Limits::default());
        let mut data = Vec::new();
        let mut progress = tracker.feed_with(first, |run| data.extend_from_slice(run));
        if progress == Ok(BodyProgress::Partial) {
            progress = tracker.feed_with(second, |run| data.extend_from_slice(run));
        }
        assert!(
            matches!(progress, Ok(BodyProgress::Complete { .. })),
            "split at {split}"
        );
        assert_eq!(data, b"hello world", "split at {split}");
    }
}

#[test]
fn chunked_body_accepts_every_split() {
    let body = b"3;a\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: 1\r\n\r\n";
    for split in 0..=body.len() {
        let (first, second) = body.split_at(split);
        let mut tracker = ChunkedBody::new(&Limits::default());
        let progress = match tracker.feed(first) {
            Ok(BodyProgress::Partial) => tracker.feed(second),
            other => other,
        };
        let expected = if split == body.len() {
            first.len()
        } else {
            second.len()
        };
        assert_eq!(
            progress,
            Ok(BodyProgress::Complete { len: expected }),
            "split at {split}"
        );
        assert!(tracker.is_complete());
    }
}

#[test]
fn chunked_extensions_follow_the_grammar() {
    for line in [
        "1;a",
        "1 ;a",
        "1\t; a = b",
        "1;a=\"\"",
        "1;a;b=c",
        "1;a=\"\\\\\"",
        "1;a=b ;c",
    ] {
        let body = format!("{line}\r\nx\r\n0\r\n\r\n");
        assert!(
            matches!(chunked(body.as_bytes()), Ok(BodyProgress::Complete { .. })),
            "{line:?}"
        );
    }
    for line in [
        "1;",
        "1;=b",
        "1;a=",
        "1;a=\"b",
        "1;a=b c",
        "1;a=\"\x01\"",
        "1;a b",
        "1 ",
        "1;a ",
    ] {
        let body = format!("{line}\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            chunked(body.as_bytes()),
            Err(ChunkedError::InvalidExtension),
            "{line:?}"
        );
    }
}

#[test]
fn invalid_chunk_sizes_are_refused() {
    for body in [
        &b"\r\n"[..],
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b" 1\r\n",
        b"0x1\r\n",
        b";a\r\n",
    ] {
        assert_eq!(
            chunked(body),
            Err(ChunkedError::InvalidChunkSize),
            "{body:?}"
        );
    }
    assert_eq!(
        chunked(b"10000000000000000\r\n"),
        Err(ChunkedError::ChunkSizeTooLong)
    );
    assert_eq!(
        chunked(b"00000000000000000\r\n"),
        Err(ChunkedError::ChunkSizeTooLong)
    );
    assert_eq!(
        chunked(b"ffffffffffffffff\r\nabc"),
        Ok(BodyProgress::Partial)
    );
    assert_eq!(
        chunked(b"5\nhello\r\n"),
        Err(ChunkedError::InvalidChunkSize)
    );
    assert_eq!(
        chunked(b"5\r\rhello\r\n"),
        Err(ChunkedError::InvalidLineEnd)
    );
}

#[test]
fn chunk_data_needs_its_crlf() {
    assert_eq!(
        chunked(b"5\r\nhelloX\r\n"),
        Err(ChunkedError::InvalidLineEnd)
    );
    assert_eq!(
        chunked(b"5\r\nhello\n0\r\n\r\n"),
        Err(ChunkedError::InvalidLineEnd)
    );
    assert_eq!(
        chunked(b"5\r\nhello\r0\r\n\r\n"),
        Err(ChunkedError::InvalidLineEnd)
    );
    assert_eq!(chunked(b"0\r\n\r\r"), Err(ChunkedError::InvalidLineEnd));
}

#[test]
fn chunk_size_lines_are_bounded() {
    let long = format!("1;a={}\r\nx\r\n0\r\n\r\n", "b".repeat(MAX_CHUNK_LINE));
    assert_eq!(
        chunked(long.as_bytes()),
        Err(ChunkedError::ChunkLineTooLong)
    );
    let fits = format!("1;a={}\r\nx\r\n0\r\n\r\n", "b".repeat(MAX_CHUNK_LINE - 7));
    assert!(matches!(
        chunked(fits.as_bytes()),
        Ok(BodyProgress::Complete { .. })
    ));
}

#[test]
fn trailers_are_validated_like_field_lines() {
    let body = b"0\r\nA: 1\r\nB-c:\t2 \r\n\r\n";
    assert_eq!(
        chunked(body),
        Ok(BodyProgress::Complete { len: body.len() })
    );
    for trailers in [
        &b" folded\r\n"[..],
        b"A : 1\r\n",
        b": 1\r\n",
        b"A: \x01\r\n",
        b"A\r\n",
        b"\n",
    ] {
        let mut body = b"0\r\n".to_vec();
        body.extend_from_slice(trailers);
        body.extend_from_slice(b"\r\n");
        assert_eq!(
            chunked(&body),
            Err(ChunkedError::InvalidTrailer),
            "{trailers:?}"
        );
    }
    assert_eq!(chunked(b"0\r\nA: 1\rX"), Err(ChunkedError::InvalidLineEnd));
}

#[test]
fn trailer_bytes_are_shown_apart_from_the_data() {
    let body = b"3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-B: 2\r\n\r\n";
    let mut tracker = ChunkedBody::new(&Limits::default());
    let mut data = Vec::new();
    let mut trailers = Vec::new();
    // Fed in two pieces, split inside a trailer line.
    let (first, second) = body.split_at(20);
    for piece in [first, second] {
        let progress = tracker.feed_with_trailers(
            piece,
            |bytes| data.extend_from_slice(bytes),
            |byte| trailers.push(byte),
        );
        assert!(progress.is_ok(), "{progress:?}");
    }
    assert!(tracker.is_complete());
    assert_eq!(data, b"abc");
    assert_eq!(trailers, b"Grpc-Status: 0\r\nX-B: 2\r\n\r\n");
}

#[test]
fn trailers_are_bounded() {
    let limits = Limits {
        max_headers: 2,
        max_header_section: 32,
        ..Limits::default()
    };
    let mut tracker = ChunkedBody::new(&limits);
    assert_eq!(
        tracker.feed(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
        Err(ChunkedError::TooManyTrailers)
    );
    let mut tracker = ChunkedBody::new(&limits);
    let body = format!("0\r\nA: {}\r\n\r\n", "b".repeat(40));
    assert_eq!(
        tracker.feed(body.as_bytes()),
        Err(ChunkedError::TrailerSectionTooLarge)
    );
}

#[test]
fn content_length_body_ends_at_its_length() {
    let mut tracker = ContentLengthBody::new(10);
    assert_eq!(tracker.feed(b"0123"), BodyProgress::Partial);
    assert_eq!(tracker.remaining(), 6);
    assert_eq!(
        tracker.feed(b"456789GET"),
        BodyProgress::Complete { len: 6 }
    );
    assert_eq!(tracker.feed(b"more"), BodyProgress::Complete { len: 0 });
    assert_eq!(
        ContentLengthBody::new(0).feed(b""),
        BodyProgress::Complete { len: 0 }
    );
}
