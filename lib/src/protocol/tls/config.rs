//! The rustls side of an HTTPS listener: the crypto provider (aws-lc-rs, its key exchange
//! groups), the server configuration built from a listener's TLS settings (versions, cipher
//! suites, groups, ALPN, tickets, session cache), the checks of those settings, the defaults
//! the CLI shows, and the seeding of the random number generator a worker does in the
//! background.

use std::sync::{Arc, Once, OnceLock};

use log::error;
use rustls::{
    ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{CryptoProvider, aws_lc_rs},
    server::{ProducesTickets, ServerSessionMemoryCache},
};
use sozu_command_lib::request::{TlsListenerConfig, TlsVersion};

use super::{CertificateResolver, TlsError};

/// The key exchange groups the configuration can name (`command::config::tls`), in the
/// provider's order of preference. aws-lc-rs also has `X25519MLKEM768`, which the configuration
/// does not accept yet: it is left out of the defaults too, so a listener offers what its
/// settings can name.
const CLASSICAL_GROUPS: [&dyn rustls::crypto::SupportedKxGroup; 3] = [
    aws_lc_rs::kx_group::X25519,
    aws_lc_rs::kx_group::SECP256R1,
    aws_lc_rs::kx_group::SECP384R1,
];

/// The aws-lc-rs provider (a full handshake with an RSA 2048 certificate costs a third less CPU
/// than with ring, see doc/benchmarks.md), with the groups of [`CLASSICAL_GROUPS`].
fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: CLASSICAL_GROUPS.to_vec(),
        ..aws_lc_rs::default_provider()
    }
}

/// Seeds the random number generator TLS uses, on a thread of its own, once per process: with
/// aws-lc's CPU jitter entropy source (its default, which a program embedding the library may
/// keep; the workspace's binaries are built without it, see README.md) the first seeding takes
/// the process about 45 ms of CPU, which the first handshake would otherwise pay. A worker calls it as it starts with HTTPS
/// listeners, and [`server_config`] when an HTTPS listener is added: the thread seeds while
/// the worker applies its state (the listeners' ticketers wait for their first handshake,
/// [`FirstUseTicketer`]). The generator's one-time initialisation makes any other user wait
/// until it is done.
pub fn seed_random_in_background() {
    static SEEDING: Once = Once::new();
    SEEDING.call_once(|| {
        let seeding = std::thread::Builder::new()
            .name("seed-random".to_string())
            .spawn(|| {
                let mut byte = [0u8; 1];
                if provider().secure_random.fill(&mut byte).is_err() {
                    error!("the random number generator could not be seeded");
                }
            });
        if let Err(error) = seeding {
            error!("cannot start the thread that seeds the random number generator: {error}");
        }
    });
}

/// The rustls configuration of an HTTPS listener.
pub fn server_config(
    settings: &TlsListenerConfig,
    resolver: Arc<CertificateResolver>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = settings_config(settings, resolver)?;
    if settings.send_tls13_tickets > 0 {
        seed_random_in_background();
        config.ticketer = Arc::new(FirstUseTicketer::default());
    }
    config.session_storage = ServerSessionMemoryCache::new(20_000);
    Ok(Arc::new(config))
}

/// The session ticket keys of a listener, made by its first handshake that asks rustls
/// whether tickets are enabled: making them takes random numbers, whose generator's first
/// seeding (tens of milliseconds of CPU) would otherwise stop a worker while it applies the
/// order that adds the listener, at the start of its state. By that first handshake the
/// generator was seeded in the background ([`seed_random_in_background`]).
#[derive(Debug, Default)]
struct FirstUseTicketer {
    /// rustls's ticketer; `None` inside when it could not be made (said once at `error!`):
    /// the listener's handshakes then go without tickets.
    ticketer: OnceLock<Option<Arc<dyn ProducesTickets>>>,
}

impl FirstUseTicketer {
    fn ticketer(&self) -> Option<&dyn ProducesTickets> {
        self.ticketer
            .get_or_init(|| {
                aws_lc_rs::Ticketer::new()
                    .map_err(|error| {
                        error!("cannot create a session ticket key, no tickets sent: {error}");
                    })
                    .ok()
            })
            .as_deref()
    }
}

impl ProducesTickets for FirstUseTicketer {
    fn enabled(&self) -> bool {
        self.ticketer().is_some_and(ProducesTickets::enabled)
    }

    fn lifetime(&self) -> u32 {
        self.ticketer().map_or(0, ProducesTickets::lifetime)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.ticketer()?.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.ticketer()?.decrypt(cipher)
    }
}

/// Whether a listener's TLS settings build a server configuration, as [`server_config`]
/// checks them, without what serving needs besides: the ticketer's keys, whose random
/// numbers cost a process its first seeding of the generator (about 45 ms of CPU, the
/// main process's and each worker's), and the session cache.
pub fn check_server_settings(settings: &TlsListenerConfig) -> Result<(), TlsError> {
    settings_config(settings, Arc::new(CertificateResolver::default())).map(drop)
}

/// The server configuration `settings` describe, without tickets nor session cache.
fn settings_config(
    settings: &TlsListenerConfig,
    resolver: Arc<CertificateResolver>,
) -> Result<ServerConfig, TlsError> {
    let mut provider = provider();
    let wanted: Vec<&String> = settings
        .cipher_list
        .iter()
        .chain(&settings.cipher_suites)
        .collect();
    if !wanted.is_empty() {
        provider.cipher_suites = wanted
            .iter()
            .map(|name| cipher_suite(name).ok_or_else(|| TlsError::CipherSuite((*name).clone())))
            .collect::<Result<_, _>>()?;
        // A version left without suites would fail every handshake: keep its defaults.
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            if !provider
                .cipher_suites
                .iter()
                .any(|s| s.version() == version)
            {
                provider.cipher_suites.extend(
                    aws_lc_rs::DEFAULT_CIPHER_SUITES
                        .iter()
                        .filter(|s| s.version() == version)
                        .copied(),
                );
            }
        }
    }
    if !settings.groups_list.is_empty() {
        provider.kx_groups = settings
            .groups_list
            .iter()
            .map(|name| {
                CLASSICAL_GROUPS
                    .iter()
                    .find(|group| format!("{:?}", group.name()).eq_ignore_ascii_case(name))
                    .copied()
                    .ok_or_else(|| TlsError::Group(name.clone()))
            })
            .collect::<Result<_, _>>()?;
    }
    let versions: Vec<&'static SupportedProtocolVersion> = settings
        .versions
        .iter()
        .map(|version| match version {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    if versions.is_empty() {
        return Err(TlsError::NoVersion);
    }
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(TlsError::Settings)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The protocols the proxy serves, in the listener's order; `disable_http11` keeps h2 alone.
    config.alpn_protocols = settings
        .alpn_protocols
        .iter()
        .filter(|protocol| match protocol.as_str() {
            "h2" => true,
            "http/1.1" => !settings.disable_http11,
            _ => false,
        })
        .map(|protocol| protocol.as_bytes().to_vec())
        .collect();
    if settings.disable_http11 && config.alpn_protocols.is_empty() {
        config.alpn_protocols.push(b"h2".to_vec());
    }
    config.send_tls13_tickets = settings.send_tls13_tickets as usize;
    config.ignore_client_order = true;
    Ok(config)
}

/// A cipher suite of the aws-lc-rs provider by its rustls name.
pub(super) fn cipher_suite(name: &str) -> Option<SupportedCipherSuite> {
    aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .find(|suite| {
            suite
                .suite()
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .copied()
}

/// The cipher suites in force when a listener names none (the provider's defaults), by
/// rustls name, in order of preference.
pub fn default_cipher_suites() -> Vec<&'static str> {
    aws_lc_rs::DEFAULT_CIPHER_SUITES
        .iter()
        .filter_map(|suite| suite.suite().as_str())
        .collect()
}

/// The key exchange groups in force when a listener names none (the provider's defaults), by
/// the names `groups_list` takes, in order of preference.
pub fn default_groups() -> Vec<String> {
    provider()
        .kx_groups
        .iter()
        .map(|group| format!("{:?}", group.name()))
        .collect()
}

/// Whether the provider knows every name, for validating settings without building them.
pub fn check_settings(settings: &TlsListenerConfig) -> Result<(), TlsError> {
    server_config(settings, Arc::new(CertificateResolver::default())).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_tickets(send_tls13_tickets: u32) -> Arc<ServerConfig> {
        let settings = TlsListenerConfig {
            send_tls13_tickets,
            ..TlsListenerConfig::default()
        };
        match server_config(&settings, Arc::new(CertificateResolver::default())) {
            Ok(config) => config,
            Err(error) => panic!("default settings refused: {error}"),
        }
    }

    #[test]
    fn ticket_keys_are_made_at_the_first_call() {
        let ticketer = FirstUseTicketer::default();
        assert!(ticketer.ticketer.get().is_none());
        assert!(ticketer.enabled());
        assert!(matches!(ticketer.ticketer.get(), Some(Some(_))));
    }

    #[test]
    fn a_listener_with_tickets_encrypts_and_decrypts_them() {
        let config = config_with_tickets(4);
        assert!(config.ticketer.enabled());
        assert!(config.ticketer.lifetime() > 0);
        let ticket = config.ticketer.encrypt(b"session");
        assert_eq!(
            ticket.and_then(|ticket| config.ticketer.decrypt(&ticket)),
            Some(b"session".to_vec())
        );
    }

    #[test]
    fn a_listener_without_tickets_has_no_ticketer() {
        assert!(!config_with_tickets(0).ticketer.enabled());
    }
}
