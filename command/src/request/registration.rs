//! Registrations: a service declares its own route (listener, cluster, frontend, certificate
//! and its backend) with `REGISTER`, keeps it with its connection or `RENEW`, and ends it with
//! `DEREGISTER`. The main process turns a registration into ordinary orders
//! (`doc/registration.md`).

use std::{fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{ListenerType, optional_seconds, seconds};

/// `REGISTER`: route `hostname` + `path_prefix` (or every connection, in TCP) on `listen` to
/// the cluster `cluster_id`, with `backend` as one of its backends. What does not exist yet is
/// created; several registrations of one cluster are load-balanced together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The cluster the service joins; created (with default settings) when it does not exist.
    pub cluster_id: String,
    /// What the listener speaks: `http`, `https` or `tcp`.
    pub protocol: RegisteredProtocol,
    /// The listener's address.
    pub listen: SocketAddr,
    /// An exact name or `*.suffix` (HTTP and HTTPS only, where it is required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The path prefix the frontend takes; every path when absent (HTTP and HTTPS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The service's own address.
    pub backend: SocketAddr,
    /// How long requests wait while the cluster has no backend; [`DEFAULT_HOLD_TIMEOUT`] when
    /// absent. Carried for the cluster's holding setting.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub hold_timeout: Option<Duration>,
    /// Bind the registration to `RENEW` orders, each within this time of the previous one,
    /// rather than to the connection that sent it.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// The certificate (PEM) served for `hostname` (HTTPS only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Intermediate certificates (PEM), leaf first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
}

/// The hold timeout of a cluster a registration creates, when it names none (socketmaster's).
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a registration's listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisteredProtocol {
    /// Cleartext HTTP.
    Http,
    /// HTTPS: the registration brings its certificate.
    Https,
    /// TCP: every connection of the listener goes to the cluster.
    Tcp,
}

impl RegisteredProtocol {
    /// The kind of listener the registration uses or creates.
    pub fn listener_type(self) -> ListenerType {
        match self {
            RegisteredProtocol::Http => ListenerType::Http,
            RegisteredProtocol::Https => ListenerType::Https,
            RegisteredProtocol::Tcp => ListenerType::Tcp,
        }
    }
}

impl fmt::Display for RegisteredProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegisteredProtocol::Http => "http",
            RegisteredProtocol::Https => "https",
            RegisteredProtocol::Tcp => "tcp",
        })
    }
}

/// Names a live registration (`RENEW`, `DEREGISTER`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationId {
    /// The id `REGISTER` answered with.
    pub registration_id: String,
}

/// The answer to `REGISTER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationIds {
    /// The registration's id, to `RENEW` or `DEREGISTER` it.
    pub registration_id: String,
    /// The backend added to the cluster for the registered service.
    pub backend_id: String,
}

/// A live registration, as `LIST_REGISTRATIONS` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInfo {
    /// The registration's id.
    pub registration_id: String,
    /// The backend added for the service.
    pub backend_id: String,
    /// What was registered.
    pub register: Register,
    /// The process and user at the other end of the connection that registered
    /// (`SO_PEERCRED`), when the proxy could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The user id of that process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// How long ago it registered.
    #[serde(with = "seconds")]
    pub age: Duration,
    /// What the registration created because it did not exist (listener, cluster, frontend,
    /// certificate), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
}

/// Fields of a `REGISTER` that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A field that TCP registrations do not take (the field).
    #[error("a tcp registration takes no `{0}`")]
    NotForTcp(&'static str),
    /// An HTTP or HTTPS registration without `hostname` (its protocol).
    #[error("an {0} registration needs a `hostname`")]
    NoHostname(RegisteredProtocol),
    /// An HTTPS registration without `certificate` or `key`.
    #[error("an https registration needs `certificate` and `key`")]
    NoCertificate,
    /// A field only HTTPS registrations take (the field).
    #[error("only an https registration takes `{0}`")]
    OnlyForHttps(&'static str),
    /// A `path_prefix` that does not start with `/`.
    #[error("`path_prefix` must start with `/`")]
    RelativePath,
    /// A `ttl` of zero.
    #[error("`ttl` must be at least one second")]
    ZeroTtl,
}

impl Register {
    /// Checks that the fields fit the protocol. The state checks the rest when the orders the
    /// registration turns into are applied.
    pub fn check(&self) -> Result<(), RegisterError> {
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(RegisterError::ZeroTtl);
        }
        if self.protocol != RegisteredProtocol::Https {
            if self.certificate.is_some() {
                return Err(RegisterError::OnlyForHttps("certificate"));
            }
            if self.key.is_some() {
                return Err(RegisterError::OnlyForHttps("key"));
            }
            if !self.certificate_chain.is_empty() {
                return Err(RegisterError::OnlyForHttps("certificate_chain"));
            }
        }
        match self.protocol {
            RegisteredProtocol::Tcp if self.hostname.is_some() => {
                Err(RegisterError::NotForTcp("hostname"))
            }
            RegisteredProtocol::Tcp if self.path_prefix.is_some() => {
                Err(RegisterError::NotForTcp("path_prefix"))
            }
            RegisteredProtocol::Tcp => Ok(()),
            protocol if self.hostname.is_none() => Err(RegisterError::NoHostname(protocol)),
            _ if self
                .path_prefix
                .as_deref()
                .is_some_and(|path| !path.starts_with('/')) =>
            {
                Err(RegisterError::RelativePath)
            }
            RegisteredProtocol::Https if self.certificate.is_none() || self.key.is_none() => {
                Err(RegisterError::NoCertificate)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Order, Request};

    #[test]
    fn the_issue_s_register_line_parses() {
        let line = r#"{"id":"r1","order":{"type":"REGISTER","cluster_id":"api","protocol":"http","listen":"127.0.0.1:8000","hostname":"api.test","path_prefix":"/a","backend":"127.0.0.1:34567","hold_timeout":30}}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        let Order::Register(register) = &request.order else {
            panic!("not a REGISTER: {:?}", request.order);
        };
        assert_eq!(register.cluster_id, "api");
        assert_eq!(register.protocol, RegisteredProtocol::Http);
        assert_eq!(register.hostname.as_deref(), Some("api.test"));
        assert_eq!(register.path_prefix.as_deref(), Some("/a"));
        assert_eq!(register.hold_timeout, Some(Duration::from_secs(30)));
        assert_eq!(register.ttl, None);
        register.check().unwrap();
        let again: Request =
            serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn renew_and_deregister_name_the_registration() {
        let renew: Order =
            serde_json::from_str(r#"{"type":"RENEW","registration_id":"reg-1"}"#).unwrap();
        assert_eq!(
            renew,
            Order::Renew(RegistrationId {
                registration_id: "reg-1".to_string()
            })
        );
        let deregister: Order =
            serde_json::from_str(r#"{"type":"DEREGISTER","registration_id":"reg-1"}"#).unwrap();
        assert_eq!(deregister.name(), "DEREGISTER");
    }

    fn register(protocol: RegisteredProtocol) -> Register {
        Register {
            cluster_id: "c".to_string(),
            protocol,
            listen: "127.0.0.1:80".parse().unwrap(),
            hostname: None,
            path_prefix: None,
            backend: "127.0.0.1:81".parse().unwrap(),
            hold_timeout: None,
            ttl: None,
            certificate: None,
            key: None,
            certificate_chain: Vec::new(),
        }
    }

    #[test]
    fn fields_that_do_not_fit_the_protocol_are_refused() {
        let mut tcp = register(RegisteredProtocol::Tcp);
        tcp.check().unwrap();
        tcp.hostname = Some("a.test".to_string());
        assert_eq!(tcp.check(), Err(RegisterError::NotForTcp("hostname")));

        let mut http = register(RegisteredProtocol::Http);
        assert!(matches!(http.check(), Err(RegisterError::NoHostname(_))));
        http.hostname = Some("a.test".to_string());
        http.path_prefix = Some("a".to_string());
        assert_eq!(http.check(), Err(RegisterError::RelativePath));
        http.path_prefix = Some("/a".to_string());
        http.key = Some("k".to_string());
        assert_eq!(http.check(), Err(RegisterError::OnlyForHttps("key")));

        let mut https = register(RegisteredProtocol::Https);
        https.hostname = Some("a.test".to_string());
        assert_eq!(https.check(), Err(RegisterError::NoCertificate));
        https.certificate = Some("c".to_string());
        https.key = Some("k".to_string());
        https.check().unwrap();
        https.ttl = Some(Duration::ZERO);
        assert_eq!(https.check(), Err(RegisterError::ZeroTtl));
    }
}
