//! A fleet of proxies fed from etcd v3 (`doc/fleet.md`).
//!
//! The keys of the prefix and their values are described by [`layout`]; the records each node
//! publishes by [`records`]. The main process runs a [`watcher::Watcher`] (an etcd thread with
//! its own runtime) and applies what the prefix holds through its ordinary order path
//! (`main_process::provider`); the command line reads and writes the prefix directly
//! (`sozu fleet`).

pub mod layout;
pub mod records;
pub mod watcher;

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use sozu_command_lib::config::EtcdProvider;

/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings that notice a connection that died silently. etcd refuses pings more frequent
/// than every 5 s by default.
const PING_INTERVAL: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of the endpoints of `settings`, with their TLS and credentials.
pub async fn connect(settings: &EtcdProvider) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(PING_INTERVAL, PING_TIMEOUT)
        .with_keep_alive_while_idle(true);
    if settings.uses_tls() {
        let mut tls = TlsOptions::new();
        if let Some(authority) = &settings.ca_certificate {
            tls = tls.ca_certificate(Certificate::from_pem(authority));
        }
        if let Some((certificate, key)) = &settings.client_identity {
            tls = tls.identity(Identity::from_pem(certificate, key));
        }
        options = options.with_tls(tls);
    }
    if let Some((user, password)) = &settings.credentials {
        options = options.with_user(user, password);
    }
    Client::connect(&settings.endpoints, Some(options)).await
}
