//! Nanoseconds per parse of HTTP/1.1 heads and per scan of a chunked body, run with
//! `cargo bench -p sozu-benches --bench http_parser`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sozu_lib::protocol::http::parser::{
    ChunkedBody, Limits, Method, Parsed, parse_request_head, parse_response_head,
};

/// What a browser sends for a page: about 400 bytes, 10 field lines.
const BROWSER_REQUEST: &[u8] = b"GET /articles/2024/proxy-benchmarks.html?ref=home HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=6f1c2a9e0b7d4c3f; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Cache-Control: max-age=0\r\n\
\r\n";

const SMALL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Tue, 14 Apr 2026 10:00:00 GMT\r\n\
Content-Type: text/html\r\n\
Content-Length: 612\r\n\
Connection: keep-alive\r\n\
\r\n";

/// A chunked body of `chunks` chunks of `size` bytes each, then the last chunk.
fn chunked_body(chunks: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..chunks {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.resize(body.len() + size, b'x');
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn heads(criterion: &mut Criterion) {
    let limits = Limits::default();
    let mut headers = Vec::with_capacity(limits.max_headers);
    let mut group = criterion.benchmark_group("http_head");
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    group.bench_function("browser_request", |bencher| {
        bencher.iter(|| {
            let parsed = parse_request_head(
                black_box(BROWSER_REQUEST),
                &limits,
                b"Sozu-Id",
                &mut headers,
            );
            assert!(matches!(parsed, Ok(Parsed::Complete(_))));
            parsed
        })
    });
    group.throughput(Throughput::Bytes(SMALL_RESPONSE.len() as u64));
    group.bench_function("small_response", |bencher| {
        bencher.iter(|| {
            let parsed = parse_response_head(
                black_box(SMALL_RESPONSE),
                &limits,
                Method::Get,
                &mut headers,
            );
            assert!(matches!(parsed, Ok(Parsed::Complete(_))));
            parsed
        })
    });
    group.finish();
}

fn chunked(criterion: &mut Criterion) {
    let limits = Limits::default();
    let mut group = criterion.benchmark_group("chunked_body");
    for (name, body) in [
        ("4x4KiB", chunked_body(4, 4096)),
        ("100x16B", chunked_body(100, 16)),
    ] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |bencher| {
            bencher.iter(|| ChunkedBody::new(&limits).feed(black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
