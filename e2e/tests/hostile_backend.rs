//! Backends and peers that push the proxy's edges; each case checks byte for byte what arrives.

#[path = "hostile_backend/proxy_protocol.rs"]
mod proxy_protocol;
