//! Strict HTTP/1.1 parsing through a real worker (RFC 9112): every ambiguous or malformed
//! request gets its 4xx/5xx and the connection closes, and the backend never receives the bad
//! request nor anything after it. Requests before the bad one on the same connection are
//! served, in order. Message boundaries are the client's: a body is never taken for a request.

use std::net::SocketAddr;

use sozu_command_lib::request::Cluster;
use sozu_e2e::{
    Worker,
    http_backend::{HttpBackend, Reply, response},
    http_client::{Client, get},
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";

/// A worker routing `example.com` to a backend that answers each request with its target.
fn proxy() -> (Worker, SocketAddr, HttpBackend) {
    let backend =
        HttpBackend::start(|request| Reply::Send(response(200, &[], request.target().as_bytes())));
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("app"), &[backend.address]);
    (worker, address, backend)
}

/// Sends, in one write, `good` valid requests followed by `bad`; checks that each good one is
/// answered 200 in order, that `bad` gets `status` with `Connection: close` and a closed
/// connection, and that the backend received only the good ones.
fn refused_after(good: usize, bad: &[u8], status: u16) {
    let (_worker, address, backend) = proxy();
    let mut client = Client::connect(address);
    let mut bytes = Vec::new();
    for index in 0..good {
        bytes.extend_from_slice(&get(HOST, &format!("/good-{index}")));
    }
    bytes.extend_from_slice(bad);
    client.send(&bytes);
    for index in 0..good {
        let response = client.response("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("/good-{index}"));
    }
    let response = client.response("POST");
    assert_eq!(
        response.status,
        status,
        "for {:?}: {}",
        String::from_utf8_lossy(bad),
        response.text()
    );
    assert!(response.closes(), "{:?}", response.head);
    client.assert_closed();

    // A request on a new connection still works, and is the only other one the backend got.
    let mut sentinel = Client::connect(address);
    assert_eq!(sentinel.get(HOST, "/sentinel").status, 200);
    let targets: Vec<String> = backend
        .requests()
        .iter()
        .map(|request| request.target().to_string())
        .collect();
    let mut expected: Vec<String> = (0..good).map(|index| format!("/good-{index}")).collect();
    expected.push("/sentinel".to_string());
    assert_eq!(targets, expected, "for {:?}", String::from_utf8_lossy(bad));
    for raw in backend.raw() {
        assert!(
            !String::from_utf8_lossy(&raw).contains("smuggled"),
            "the backend received part of the bad request: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

fn refused(bad: &[u8], status: u16) {
    refused_after(0, bad, status);
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    refused(
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n",
        400,
    );
    refused_after(
        1,
        b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n",
        400,
    );
}

#[test]
fn differing_content_lengths_are_refused() {
    refused(
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloxGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    );
    refused(
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5, 6\r\n\r\nhelloxGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    );
}

#[test]
fn content_length_must_be_plain_digits() {
    for value in [
        "+5",
        "0x5",
        "5 5",
        "-5",
        "5.0",
        "",
        "five",
        "18446744073709551616",
        "99999999999999999999999999",
    ] {
        let bad = format!(
            "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: {value}\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n"
        );
        refused(bad.as_bytes(), 400);
    }
}

#[test]
fn transfer_encoding_must_end_with_chunked() {
    for value in [
        "gzip",
        "chunked, gzip",
        "chunked, chunked",
        "chunked;x=1",
        "xchunked",
    ] {
        let bad = format!(
            "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: {value}\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
        );
        refused(bad.as_bytes(), 400);
    }
}

#[test]
fn transfer_encoding_in_http_1_0_is_refused() {
    refused(
        b"POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_chunk_size_is_refused_and_nothing_after_it_is_forwarded() {
    for size in ["zz", "-5", "5 5", "0x5", "fffffffffffffffffff"] {
        let bad = format!(
            "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        refused(bad.as_bytes(), 400);
    }
    // Chunk data longer than its size says.
    refused(
        b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_chunk_extensions_and_trailers_are_refused() {
    for body in [
        "5;a=b\rc\r\nhello\r\n0\r\n\r\n",
        "5;a=b\nc\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Trailer no colon\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Trailer: a\r\n folded\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Trailer: a\nb\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
    ] {
        let bad = format!(
            "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
        );
        refused(bad.as_bytes(), 400);
    }
}

#[test]
fn obs_fold_is_refused() {
    refused(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Folded: a\r\n smuggled\r\n\r\n",
        400,
    );
    refused(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Folded: a\r\n\tsmuggled\r\n\r\n",
        400,
    );
}

#[test]
fn whitespace_between_field_name_and_colon_is_refused() {
    refused(
        b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length : 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    );
    refused(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A\t: smuggled\r\n\r\n",
        400,
    );
}

#[test]
fn control_characters_and_bare_cr_in_a_field_are_refused() {
    for value in [
        &b"a\x01smuggled"[..],
        b"a\x00smuggled",
        b"a\x7fsmuggled",
        b"a\rsmuggled",
        b"a\nsmuggled: 1",
    ] {
        let mut bad = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-A: ".to_vec();
        bad.extend_from_slice(value);
        bad.extend_from_slice(b"\r\n\r\n");
        refused(&bad, 400);
    }
}

#[test]
fn invalid_field_names_are_refused() {
    for name in ["X(A)", "X@A", "X A", "\"X\"", "X\u{e9}"] {
        let bad = format!("GET /smuggled HTTP/1.1\r\nHost: example.com\r\n{name}: 1\r\n\r\n");
        refused(bad.as_bytes(), 400);
    }
}

#[test]
fn http_1_1_without_host_is_refused() {
    refused(b"GET /smuggled HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
}

#[test]
fn repeated_host_is_refused() {
    refused(
        b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\nHost: other.com\r\n\r\n",
        400,
    );
    refused_after(
        1,
        b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\nHost: example.com\r\n\r\n",
        400,
    );
}

#[test]
fn bare_lf_line_ends_are_refused() {
    refused(b"GET /smuggled HTTP/1.1\nHost: example.com\n\n", 400);
    refused(
        b"GET /smuggled HTTP/1.1\r\nHost: example.com\nX-A: 1\r\n\r\n",
        400,
    );
}

#[test]
fn request_line_too_long_is_414() {
    let bad = format!(
        "GET /smuggled{} HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    refused(bad.as_bytes(), 414);
}

#[test]
fn header_section_too_large_is_431() {
    let mut bad = "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n".to_string();
    for index in 0..20 {
        bad.push_str(&format!("X-Big-{index}: {}\r\n", "b".repeat(1000)));
    }
    bad.push_str("\r\n");
    refused(bad.as_bytes(), 431);
}

#[test]
fn too_many_header_fields_is_431() {
    let mut bad = "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n".to_string();
    for index in 0..200 {
        bad.push_str(&format!("X-{index}: 1\r\n"));
    }
    bad.push_str("\r\n");
    refused(bad.as_bytes(), 431);
}

#[test]
fn unsupported_http_version_is_505() {
    refused(b"GET /smuggled HTTP/2.0\r\nHost: example.com\r\n\r\n", 505);
    refused(b"GET /smuggled HTTP/3.0\r\nHost: example.com\r\n\r\n", 505);
    refused(b"GET /smuggled HTTP/0.9\r\nHost: example.com\r\n\r\n", 505);
}

#[test]
fn a_request_after_a_content_length_body_is_forwarded_on_its_own() {
    let (_worker, address, backend) = proxy();
    let mut client = Client::connect(address);
    // The body looks like a request; the request after it is a real one.
    let body = b"GET /in-body HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let mut bytes = format!(
        "POST /first HTTP/1.1\r\nHost: example.com\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&get(HOST, "/second"));
    bytes.extend_from_slice(
        b"POST /third HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    bytes.extend_from_slice(&get(HOST, "/fourth"));
    client.send(&bytes);
    for target in ["/first", "/second", "/third", "/fourth"] {
        let response = client.response("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), target);
    }
    let requests = backend.requests();
    let targets: Vec<&str> = requests.iter().map(|request| request.target()).collect();
    assert_eq!(targets, ["/first", "/second", "/third", "/fourth"]);
    assert_eq!(requests[0].body.data, body);
    assert_eq!(requests[1].body.data, b"");
    assert_eq!(requests[2].body.data, b"hello");
    assert_eq!(
        requests[2].body.raw,
        b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
    );
    assert_eq!(requests[3].body.data, b"");
    assert!(requests.iter().all(|request| request.connection == 0));
}
