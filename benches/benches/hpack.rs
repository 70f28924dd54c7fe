//! Nanoseconds per decoded HPACK header block, the proxy's decoder beside `loona-hpack`'s
//! (which it replaced), run with `cargo bench -p sozu-benches --bench hpack`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sozu_lib::protocol::http::h2::hpack::Decoder;

/// The first request of a browser on a connection, as browsers and nghttp2 encode it:
/// `:method GET` and `:scheme https` indexed, then every field a literal with incremental
/// indexing, its value (and its name when not in the static table) Huffman-coded: 322
/// bytes for the 15 fields of [`BROWSER_FIELDS`].
const BROWSER_REQUEST: &str = "\
8287418cf1e3c2e5f23a6ba0ab90f4ff44a1607624c4a0a86040134c5761fcfa\
5a32d449e91d9d50bce9a68ff2c2cb04e7a4bf7ab5d07f66a281b0dae053fafc\
087ed4ce6aadf2a7979c89c6bed4b3bdc089e5c1fda988a4ea76040080010054\
c26b0b29fcb0113cb83f53b0497ca589d34d1f43aeba0c41a4c7a98f33a69a3f\
df9a68fa1d75d0620d263d4c79a68fbed00177febe58f9fbed00177b518b2d4b\
70ddf45abefb4005db508d9bd9abfa5242cb40d25fa523b373929d29ad171863\
c78f0b97c8e9ae82ae43d2c7609a4150831ea81c942410df2823764688ccbf6a\
2672d258241d9d7f4092b6b9ac1c8558d520a4b6c2ad617b5a54251f810f408a\
4148b4a549275a42a13f8690e4b692d49f408a4148b4a549275a93c85f86a87d\
cd30d25f408a4148b4a549275906497f8840e92ac7b0d31aaf5887a47e561cc5\
801f";

const BROWSER_FIELDS: [(&str, &str); 15] = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "www.example.com"),
    (":path", "/articles/2024/proxy-benchmarks.html?ref=home"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("referer", "https://www.example.com/"),
    ("cookie", "session=6f1c2a9e0b7d4c3f; theme=dark"),
    ("upgrade-insecure-requests", "1"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "same-origin"),
    ("cache-control", "max-age=0"),
];

/// RFC 7541 C.4.1: one literal, `:authority: www.example.com`, Huffman-coded.
const ONE_HUFFMAN_FIELD: &[u8] = &[
    0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
];

fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex digits"))
        .collect()
}

/// Decodes `block` with both decoders and checks they give `expected`.
fn check(block: &[u8], expected: &[(&str, &str)]) {
    let expected: Vec<(Vec<u8>, Vec<u8>)> = expected
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect();
    let mut ours = Vec::new();
    Decoder::default()
        .decode(block, |name, value, _| {
            ours.push((name.to_vec(), value.to_vec()))
        })
        .expect("a valid block");
    assert_eq!(ours, expected);
    let theirs = loona_hpack::Decoder::new()
        .decode(block)
        .expect("a valid block");
    assert_eq!(theirs, expected);
}

fn decode(criterion: &mut Criterion) {
    let browser = bytes(BROWSER_REQUEST);
    check(&browser, &BROWSER_FIELDS);
    check(ONE_HUFFMAN_FIELD, &[(":authority", "www.example.com")]);
    for (name, block) in [
        ("browser_request", browser.as_slice()),
        ("one_huffman_field", ONE_HUFFMAN_FIELD),
    ] {
        let mut group = criterion.benchmark_group(format!("hpack_{name}"));
        group.throughput(Throughput::Bytes(block.len() as u64));
        // One decoder for all the runs, as one connection decodes its blocks: each run adds
        // the block's literals to the dynamic table and evicts older ones.
        let mut decoder = Decoder::default();
        group.bench_function("sozu", |bencher| {
            bencher.iter(|| {
                let mut length = 0;
                decoder
                    .decode(black_box(block), |name, value, _| {
                        length += name.len() + value.len();
                    })
                    .expect("a valid block");
                length
            })
        });
        let mut decoder = loona_hpack::Decoder::new();
        group.bench_function("loona_hpack", |bencher| {
            bencher.iter(|| {
                let mut length = 0;
                decoder
                    .decode_with_cb(black_box(block), |name, value| {
                        length += name.len() + value.len();
                    })
                    .expect("a valid block");
                length
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
