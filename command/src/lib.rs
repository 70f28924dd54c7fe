//! The language every part of the proxy speaks: the configuration file, the orders that change
//! the routing state, the state itself, and the channel that carries orders and responses.
//!
//! This crate has no event loop and no TLS: it parses, validates and serialises. `sozu-lib`
//! applies orders to live sockets, and the `sozu` binary moves them between processes.
//!
//! Only [`scm`] (file descriptor passing) uses `unsafe`; every other module is safe code. Every
//! public item is documented (`missing_docs` is denied): a new one says what it means for a user,
//! with its unit and default, or what an order does and when it fails.
#![deny(missing_docs)]

pub mod answer;
pub mod certificate;
pub mod channel;
pub mod config;
pub mod hostname;
pub mod registration;
pub mod request;
pub mod response;
pub mod rules;
pub mod scm;
pub mod state;
