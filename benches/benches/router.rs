//! Nanoseconds per [`Router::lookup`] with 1,000, 10,000 and 100,000 hostnames under one
//! domain (`host{i}.example.com`, plus `*.example.com`): an existing name, a miss (another
//! domain) and a wildcard fallback (an unknown name under the domain).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sozu_command_lib::request::HttpFrontend;
use sozu_lib::router::Router;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn router(hostnames: usize) -> Router {
    let address = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut router = Router::new();
    let frontends = (0..hostnames)
        .map(|i| (format!("cluster{i}"), format!("host{i}.example.com")))
        .chain([("wildcard".to_string(), "*.example.com".to_string())]);
    for (cluster, hostname) in frontends {
        router
            .add(HttpFrontend::new(Some(cluster), address, hostname))
            .expect("the bench frontends are valid and distinct");
    }
    router
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_lookup");
    for size in SIZES {
        let router = router(size);
        // Spread over the table so that lookups do not all hit one warm bucket.
        let existing: Vec<String> = (0..64)
            .map(|i| format!("host{}.example.com:8080", i * size / 64))
            .collect();
        group.bench_with_input(BenchmarkId::new("existing", size), &router, |b, router| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % existing.len();
                let host = existing.get(i).map_or(&b""[..], |h| h.as_bytes());
                black_box(router.lookup(black_box(host), b"/index.html", b"GET"))
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", size), &router, |b, router| {
            b.iter(|| {
                black_box(router.lookup(black_box(b"host1.example.org"), b"/index.html", b"GET"))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("wildcard_fallback", size),
            &router,
            |b, router| {
                b.iter(|| {
                    black_box(router.lookup(
                        black_box(b"unknown.example.com"),
                        b"/index.html",
                        b"GET",
                    ))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
