//! The proxy engine: one single-threaded event loop per worker that accepts connections,
//! routes them and moves bytes between frontends and backends.

pub mod router;
