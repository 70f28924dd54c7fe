//! The keys of a fleet's prefix and what their values hold.
//!
//! | key | value |
//! |---|---|
//! | `<prefix>listeners/<address>` | an `ADD_HTTP_LISTENER`, `ADD_HTTPS_LISTENER` or `ADD_TCP_LISTENER` order |
//! | `<prefix>clusters/<id>` | an `ADD_CLUSTER` order |
//! | `<prefix>backends/<cluster>/<backend_id>` | an `ADD_BACKEND` order |
//! | `<prefix>certificates/<fingerprint>` | an `ADD_CERTIFICATE` order |
//! | `<prefix>frontends/<id>` | an `ADD_HTTP_FRONTEND`, `ADD_HTTPS_FRONTEND` or `ADD_TCP_FRONTEND` order |
//! | `<prefix>nodes/<node>` | written by each node: [`super::records::NodeRecord`] |
//! | `<prefix>status/<node>` | written by each node: [`super::records::StatusRecord`] |
//!
//! A value is one order as the command channel takes it, in JSON: one line of
//! `sozu config check --json`. The key must agree with the order (same cluster id, backend id,
//! address or certificate fingerprint). Every other key under the prefix is a routing key in
//! no known folder, and is reported as invalid.

use std::{fmt, net::SocketAddr};

use sha2::{Digest, Sha256};
use sozu_command_lib::{
    certificate,
    request::{Fingerprint, FrontendKey, HttpFrontend, Order, TcpFrontend},
};

/// The folders of routing keys, in the order their objects depend on each other: a
/// frontend needs its listener and cluster, a backend its cluster, a certificate its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Listener,
    Cluster,
    Backend,
    Certificate,
    Frontend,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Listener,
        Kind::Cluster,
        Kind::Backend,
        Kind::Certificate,
        Kind::Frontend,
    ];

    /// The folder under the prefix, with its final `/`.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Listener => "listeners/",
            Kind::Cluster => "clusters/",
            Kind::Backend => "backends/",
            Kind::Certificate => "certificates/",
            Kind::Frontend => "frontends/",
        }
    }

    /// The orders a value of this folder may hold.
    fn orders(self) -> &'static str {
        match self {
            Kind::Listener => "ADD_HTTP_LISTENER, ADD_HTTPS_LISTENER or ADD_TCP_LISTENER",
            Kind::Cluster => "ADD_CLUSTER",
            Kind::Backend => "ADD_BACKEND",
            Kind::Certificate => "ADD_CERTIFICATE",
            Kind::Frontend => "ADD_HTTP_FRONTEND, ADD_HTTPS_FRONTEND or ADD_TCP_FRONTEND",
        }
    }
}

/// The folder each node writes its own record in.
pub const NODES: &str = "nodes/";
/// The folder each node writes the values it refused in.
pub const STATUS: &str = "status/";

/// What a key under the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass<'k> {
    /// A routing key: its folder and the rest of the key (the id).
    Routing(Kind, &'k str),
    /// A record the nodes write (`nodes/`, `status/`): not routing.
    Record,
    /// Under the prefix, in no known folder.
    Unknown,
}

/// The class of `key`, relative to the prefix.
pub fn classify(relative: &str) -> KeyClass<'_> {
    if relative.starts_with(NODES) || relative.starts_with(STATUS) {
        return KeyClass::Record;
    }
    Kind::ALL
        .iter()
        .find_map(|kind| {
            relative
                .strip_prefix(kind.folder())
                .map(|id| KeyClass::Routing(*kind, id))
        })
        .unwrap_or(KeyClass::Unknown)
}

/// Why a routing key's value is not taken.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error(
        "the key is in no known folder: expected {folders}, or nodes/ and status/",
        folders = Kind::ALL.map(Kind::folder).join(", ")
    )]
    UnknownFolder,
    #[error("the value is not an order in JSON")]
    Json(#[source] serde_json::Error),
    #[error("{given} does not belong in {folder}: expected {expected}")]
    WrongOrder {
        given: &'static str,
        folder: &'static str,
        expected: &'static str,
    },
    #[error("the key names {in_key} but the order names {in_order}")]
    KeyMismatch { in_key: String, in_order: String },
    #[error("the key's id is empty")]
    EmptyId,
    #[error("the key names no {what}: `{id}`")]
    InvalidId { what: &'static str, id: String },
    #[error("the certificate cannot be read")]
    Certificate(#[source] certificate::CertificateError),
}

/// The order a routing key holds, checked against its key.
pub fn parse(kind: Kind, id: &str, value: &[u8]) -> Result<Order, ValueError> {
    if id.is_empty() {
        return Err(ValueError::EmptyId);
    }
    let order: Order = serde_json::from_slice(value).map_err(ValueError::Json)?;
    let mismatch = |in_order: String| {
        if in_order == id {
            Ok(())
        } else {
            Err(ValueError::KeyMismatch {
                in_key: id.to_string(),
                in_order,
            })
        }
    };
    match (kind, &order) {
        (Kind::Listener, Order::AddHttpListener(listener)) => same_address(id, listener.address)?,
        (Kind::Listener, Order::AddTcpListener(listener)) => same_address(id, listener.address)?,
        (Kind::Listener, Order::AddHttpsListener(listener)) => {
            same_address(id, listener.http.address)?
        }
        (Kind::Cluster, Order::AddCluster(cluster)) => mismatch(cluster.cluster_id.clone())?,
        (Kind::Backend, Order::AddBackend(backend)) => {
            mismatch(format!("{}/{}", backend.cluster_id, backend.backend_id))?
        }
        (Kind::Certificate, Order::AddCertificate(add)) => {
            let facts = certificate::inspect(&add.certificate).map_err(ValueError::Certificate)?;
            let named: Fingerprint = id.parse().map_err(|_| ValueError::InvalidId {
                what: "fingerprint (64 hexadecimal digits)",
                id: id.to_string(),
            })?;
            if named != facts.fingerprint {
                return Err(ValueError::KeyMismatch {
                    in_key: id.to_string(),
                    in_order: facts.fingerprint.to_string(),
                });
            }
        }
        (
            Kind::Frontend,
            Order::AddHttpFrontend(_) | Order::AddHttpsFrontend(_) | Order::AddTcpFrontend(_),
        ) => {}
        (kind, order) => {
            return Err(ValueError::WrongOrder {
                given: order.name(),
                folder: kind.folder(),
                expected: kind.orders(),
            });
        }
    }
    Ok(order)
}

/// The listener address a key names must be the listener's.
fn same_address(id: &str, address: SocketAddr) -> Result<(), ValueError> {
    let named: SocketAddr = id.parse().map_err(|_| ValueError::InvalidId {
        what: "listener address (IP:PORT)",
        id: id.to_string(),
    })?;
    if named == address {
        Ok(())
    } else {
        Err(ValueError::KeyMismatch {
            in_key: id.to_string(),
            in_order: address.to_string(),
        })
    }
}

/// The key (relative to the prefix) under which an order of a configuration is written, or
/// `None` for orders that have no key (listener activation, the connection limit).
pub fn key_of(order: &Order) -> Result<Option<String>, ValueError> {
    let key = match order {
        Order::AddHttpListener(listener) => {
            format!("{}{}", Kind::Listener.folder(), listener.address)
        }
        Order::AddTcpListener(listener) => {
            format!("{}{}", Kind::Listener.folder(), listener.address)
        }
        Order::AddHttpsListener(listener) => {
            format!("{}{}", Kind::Listener.folder(), listener.http.address)
        }
        Order::AddCluster(cluster) => format!("{}{}", Kind::Cluster.folder(), cluster.cluster_id),
        Order::AddBackend(backend) => format!(
            "{}{}/{}",
            Kind::Backend.folder(),
            backend.cluster_id,
            backend.backend_id
        ),
        Order::AddCertificate(add) => {
            let facts = certificate::inspect(&add.certificate).map_err(ValueError::Certificate)?;
            format!("{}{}", Kind::Certificate.folder(), facts.fingerprint)
        }
        Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
            format!("{}{}", Kind::Frontend.folder(), http_frontend_id(frontend))
        }
        Order::AddTcpFrontend(frontend) => {
            format!("{}{}", Kind::Frontend.folder(), tcp_frontend_id(frontend))
        }
        _ => return Ok(None),
    };
    Ok(Some(key))
}

/// A frontend's id: what it leads to, and a digest of what identifies it, so that the same
/// frontend gets the same key at every import whatever the file's order.
fn http_frontend_id(frontend: &HttpFrontend) -> String {
    let target = match &frontend.cluster_id {
        Some(cluster) => cluster.as_str(),
        None if frontend.answer.is_some() => "answer",
        None => "redirect",
    };
    format!("{target}-{}", short_digest(&identity(&frontend.key())))
}

/// A default frontend (no rule) keeps the key it had before TCP frontends carried rules.
fn tcp_frontend_id(frontend: &TcpFrontend) -> String {
    let identity = match &frontend.rule {
        Some(rule) => format!("{} {rule}", frontend.address),
        None => frontend.address.to_string(),
    };
    format!("{}-tcp-{}", frontend.cluster_id, short_digest(&identity))
}

fn identity(key: &FrontendKey) -> String {
    key.to_string()
}

/// The first 8 hexadecimal digits of the SHA-256 of `text`.
fn short_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A digest of a set of keys and values that changes with any of them, kept up to date one
/// key at a time: the XOR of the SHA-256 of each key and its value. Two nodes that hold the
/// same routing keys have the same view digest, whatever order the keys came in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewDigest([u8; 32]);

impl ViewDigest {
    /// The digest of one key and its value.
    pub fn of_entry(key: &str, value: &[u8]) -> ViewDigest {
        let mut hasher = Sha256::new();
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value);
        ViewDigest(hasher.finalize().into())
    }

    /// Adds an entry to the set, or takes it away (the same operation).
    pub fn toggle(&mut self, entry: ViewDigest) {
        for (byte, other) in self.0.iter_mut().zip(entry.0) {
            *byte ^= other;
        }
    }
}

impl fmt::Display for ViewDigest {
    /// The first 16 hexadecimal digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sozu_command_lib::config::Config;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

    /// A configuration with every kind of object a key holds.
    fn config() -> Config {
        let text = r#"
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"
[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5432"
[clusters.web]
protocol = "http"
load_balancing = "POWER_OF_TWO"
frontends = [
  { address = "127.0.0.1:8080", hostname = "www.example.com", path = "/api" },
  { address = "127.0.0.1:8443", hostname = "www.example.com", certificate = "example.pem", key = "example.key" },
]
backends = [{ address = "127.0.0.1:9000", weight = 10 }, { address = "127.0.0.1:9001", backup = true }]
[clusters.db]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:5432" }]
backends = [{ address = "127.0.0.1:5433" }]
"#;
        Config::parse(text, Path::new(FIXTURES)).unwrap().0
    }

    #[test]
    fn every_line_of_config_check_json_is_a_value_of_its_key() {
        let config = config();
        let mut keys = 0;
        for order in config.orders() {
            let Some(key) = key_of(&order).unwrap() else {
                assert!(matches!(
                    order,
                    Order::ActivateListener(_) | Order::SetMaxConnectionsPerIp(_)
                ));
                continue;
            };
            // What `sozu config check --json` prints for the order.
            let line = serde_json::to_string(&order).unwrap();
            let KeyClass::Routing(kind, id) = classify(&key) else {
                panic!("{key} is not a routing key");
            };
            assert_eq!(parse(kind, id, line.as_bytes()).unwrap(), order, "{key}");
            keys += 1;
        }
        assert_eq!(keys, 3 + 2 + 3 + 1 + 3);
    }

    #[test]
    fn frontend_ids_are_stable_and_distinct() {
        let keys: Vec<String> = config()
            .orders()
            .iter()
            .filter_map(|order| key_of(order).unwrap())
            .filter(|key| key.starts_with(Kind::Frontend.folder()))
            .collect();
        let again: Vec<String> = config()
            .orders()
            .iter()
            .filter_map(|order| key_of(order).unwrap())
            .filter(|key| key.starts_with(Kind::Frontend.folder()))
            .collect();
        assert_eq!(keys, again);
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), 3);
        assert!(
            keys.iter().all(
                |key| key.starts_with("frontends/web-") || key.starts_with("frontends/db-tcp-")
            )
        );
    }

    #[test]
    fn a_value_that_disagrees_with_its_key_is_refused_with_why() {
        let cases: [(&str, &str, &str); 6] = [
            (
                "clusters/api",
                r#"{"type":"ADD_CLUSTER","cluster_id":"web"}"#,
                "names api",
            ),
            (
                "backends/web/one",
                r#"{"type":"ADD_BACKEND","cluster_id":"web","backend_id":"two","address":"127.0.0.1:1"}"#,
                "names web/one",
            ),
            (
                "listeners/127.0.0.1:1",
                r#"{"type":"ADD_TCP_LISTENER","address":"127.0.0.1:2"}"#,
                "127.0.0.1:2",
            ),
            ("clusters/web", r#"{"type":"ADD_BACKEND"}"#, "not an order"),
            (
                "clusters/web",
                r#"{"type":"REMOVE_CLUSTER","cluster_id":"web"}"#,
                "REMOVE_CLUSTER does not belong in clusters/",
            ),
            (
                "clusters/",
                r#"{"type":"ADD_CLUSTER","cluster_id":""}"#,
                "empty",
            ),
        ];
        for (key, value, expected) in cases {
            let KeyClass::Routing(kind, id) = classify(key) else {
                panic!("{key}");
            };
            let error = parse(kind, id, value.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{key}: {error}");
        }
        let certificate = std::fs::read_to_string(format!("{FIXTURES}/example.pem")).unwrap();
        let key = std::fs::read_to_string(format!("{FIXTURES}/example.key")).unwrap();
        let value = serde_json::json!({
            "type": "ADD_CERTIFICATE",
            "address": "127.0.0.1:8443",
            "certificate": {"certificate": certificate, "key": key},
        })
        .to_string();
        let error = parse(Kind::Certificate, &"ab".repeat(32), value.as_bytes()).unwrap_err();
        assert!(matches!(error, ValueError::KeyMismatch { .. }), "{error}");
    }

    #[test]
    fn records_and_unknown_folders_are_told_apart() {
        assert_eq!(classify("nodes/edge-1"), KeyClass::Record);
        assert_eq!(classify("status/edge-1"), KeyClass::Record);
        assert_eq!(classify("cluster/web"), KeyClass::Unknown);
        assert_eq!(
            classify("clusters/web"),
            KeyClass::Routing(Kind::Cluster, "web")
        );
    }

    #[test]
    fn view_digest_ignores_order_and_sees_every_change() {
        let a = ViewDigest::of_entry("clusters/a", b"1");
        let b = ViewDigest::of_entry("clusters/b", b"2");
        let (mut one, mut two) = (ViewDigest::default(), ViewDigest::default());
        one.toggle(a);
        one.toggle(b);
        two.toggle(b);
        two.toggle(a);
        assert_eq!(one, two);
        two.toggle(b);
        two.toggle(ViewDigest::of_entry("clusters/b", b"3"));
        assert_ne!(one, two);
    }
}
