//! Time per pick of each load balancing algorithm with 10 and 100 backends, and the cost of
//! `set_candidates` for 1,000 backends (what a change of a large cluster costs a worker).
//! Weights go from 1 to 4, so HRW and MAGLEV take their weighted paths.

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sozu_command_lib::request::{LoadBalancingAlgorithm, LoadMetric};
use sozu_lib::load_balancing::{Candidate, Load, LoadBalancer};

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("backend-{i}")).collect()
}

/// Weights 1 to 4 and uneven loads, so that no algorithm takes a uniform shortcut.
fn candidates(ids: &[String]) -> Vec<Candidate<'_>> {
    ids.iter()
        .zip(0_u64..)
        .map(|(id, i)| Candidate {
            id,
            weight: (i % 4 + 1) as u32,
            load: Load {
                connections: i * 7 % 13,
                requests: i * 5 % 11,
                average_connect_time: Duration::from_micros(100 + i * 37 % 400),
            },
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for count in [10, 100] {
        let ids = ids(count);
        let list = candidates(&ids);
        for algorithm in LoadBalancingAlgorithm::ALL {
            let mut balancer = LoadBalancer::with_seed(algorithm, LoadMetric::Connections, 7);
            balancer.set_candidates(&list);
            let mut key = 0_u64;
            group.bench_function(BenchmarkId::new(algorithm.name(), count), |b| {
                b.iter(|| {
                    key = key.wrapping_add(1);
                    balancer.pick(black_box(&list), Some(black_box(key)))
                })
            });
        }
    }
    group.finish();
}

fn set_candidates(c: &mut Criterion) {
    let mut group = c.benchmark_group("set_candidates");
    group.sample_size(20);
    let ids = ids(1_000);
    let list = candidates(&ids);
    for algorithm in LoadBalancingAlgorithm::ALL {
        let mut balancer = LoadBalancer::with_seed(algorithm, LoadMetric::Connections, 7);
        group.bench_function(BenchmarkId::new(algorithm.name(), 1_000), |b| {
            b.iter(|| balancer.set_candidates(black_box(&list)))
        });
    }
    // Equal weights let MAGLEV fill its table in plain rounds.
    let equal: Vec<Candidate<'_>> = list.iter().map(|c| Candidate { weight: 1, ..*c }).collect();
    let mut balancer =
        LoadBalancer::with_seed(LoadBalancingAlgorithm::Maglev, LoadMetric::Connections, 7);
    group.bench_function(BenchmarkId::new("MAGLEV_EQUAL_WEIGHTS", 1_000), |b| {
        b.iter(|| balancer.set_candidates(black_box(&equal)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = pick, set_candidates
}
criterion_main!(benches);
