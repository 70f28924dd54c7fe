//! An HTTP or HTTPS listener as its sessions see it.

use std::net::SocketAddr;

use sozu_command_lib::request::{Hsts, HttpListenerConfig};

use crate::{
    https::HttpsSettings,
    protocol::http::{answers::Answers, parser::Limits, spares::Spares},
    router::Router,
};

/// An HTTP or HTTPS listener as sessions see it: settings, routes and answers.
pub struct HttpListener {
    /// The listener's configuration, as the last order set it.
    pub config: HttpListenerConfig,
    /// The listener's frontends: which cluster a request goes to.
    pub router: Router,
    /// The listener's answer templates (with its clusters' overrides).
    pub answers: Answers,
    /// TLS settings and certificates, for an HTTPS listener.
    pub tls: Option<HttpsSettings>,
    /// HSTS policy of an HTTPS listener, for frontends without their own.
    pub hsts: Option<Hsts>,
    /// The bounds on request heads, from the listener's configuration.
    pub limits: Limits,
    /// Scratch space its idle connections lent.
    pub spares: Spares,
}

impl HttpListener {
    /// The address clients know the listener by.
    pub fn public_address(&self) -> SocketAddr {
        self.config.public_address.unwrap_or(self.config.address)
    }
}
