//! Micro benchmarks of the proxy engine, run with `cargo bench -p sozu-benches`.
