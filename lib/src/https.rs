//! HTTPS listeners: the TLS side of an HTTP listener. Sessions of an HTTPS listener are HTTP
//! sessions whose client socket is encrypted ([`crate::protocol::tls::TlsStream`]); this module
//! keeps each listener's rustls configuration and certificates, and applies certificate orders.

use std::sync::Arc;

use rustls::ServerConfig;
use sozu_command_lib::request::{CertificateAndKey, Fingerprint, TlsListenerConfig};

use crate::protocol::tls::{self, CertificateResolver, KeyCheck, LoadedCertificate, TlsError};

/// The TLS settings of an HTTPS listener, ready for handshakes.
pub struct HttpsSettings {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<CertificateResolver>,
    /// Answer 421 to a request whose Host is not the name sent in SNI.
    pub strict_sni_binding: bool,
    /// Only HTTP/2 is served: a client that negotiates no protocol by ALPN speaks HTTP/2.
    pub disable_http11: bool,
}

impl HttpsSettings {
    pub fn new(settings: &TlsListenerConfig) -> Result<HttpsSettings, TlsError> {
        let resolver = Arc::new(CertificateResolver::default());
        let default = default_certificate(settings.certificate.as_ref())?;
        let config = tls::server_config(settings, resolver.clone())?;
        resolver.set_default(default);
        Ok(HttpsSettings {
            config,
            resolver,
            strict_sni_binding: settings.strict_sni_binding,
            disable_http11: settings.disable_http11,
        })
    }

    /// What [`HttpsSettings::new`] checks, for a caller that keeps nothing it builds (the
    /// main process, a worker checking an update): the same verdict and error, without the
    /// ticketer's keys nor the session cache that serving needs.
    pub fn check(settings: &TlsListenerConfig) -> Result<(), TlsError> {
        default_certificate(settings.certificate.as_ref())?;
        tls::check_server_settings(settings)
    }

    /// New settings for the same listener: the certificates added by orders stay.
    pub fn updated(&self, settings: &TlsListenerConfig) -> Result<HttpsSettings, TlsError> {
        let default = default_certificate(settings.certificate.as_ref())?;
        let config = tls::server_config(settings, self.resolver.clone())?;
        self.resolver.set_default(default);
        Ok(HttpsSettings {
            config,
            resolver: self.resolver.clone(),
            strict_sni_binding: settings.strict_sni_binding,
            disable_http11: settings.disable_http11,
        })
    }

    pub fn add_certificate(&self, certificate: LoadedCertificate) {
        self.resolver.add(certificate);
    }

    pub fn replace_certificate(&self, old: &Fingerprint, new: LoadedCertificate) {
        self.resolver.replace(old, new);
    }

    pub fn remove_certificate(&self, fingerprint: &Fingerprint) {
        self.resolver.remove(fingerprint);
    }
}

fn default_certificate(
    certificate: Option<&CertificateAndKey>,
) -> Result<Option<LoadedCertificate>, TlsError> {
    certificate
        .map(|certificate| tls::load_certificate(certificate, KeyCheck::Now))
        .transpose()
}
