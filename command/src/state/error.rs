//! Why the state refuses an order ([`StateError`]) or a saved state ([`LoadError`]).

use std::{io, net::SocketAddr};

use crate::{
    certificate::CertificateError,
    request::{Fingerprint, FrontendKey, ListenerType, TcpRule},
    rules::InvalidField,
};

/// Why an order was refused. The message names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The order is a query or acts on processes: the state has nothing to apply.
    #[error("{order} does not change the routing state")]
    NotAStateChange {
        /// The order's name.
        order: &'static str,
    },
    /// `ADD_*_LISTENER` on an address another listener has.
    #[error("a {existing} listener already uses {address}")]
    ListenerExists {
        /// The address asked for.
        address: SocketAddr,
        /// The kind of the listener that has it.
        existing: ListenerType,
    },
    /// The order names a listener that does not exist, or is of another kind.
    #[error("no {kind} listener on {address}")]
    NoListener {
        /// The address named.
        address: SocketAddr,
        /// The kind of listener the order needs.
        kind: ListenerType,
    },
    /// The order names a cluster that does not exist.
    #[error("no cluster `{0}`")]
    NoCluster(String),
    /// A field breaks its rule (range or bytes).
    #[error(transparent)]
    InvalidField(#[from] InvalidField),
    /// `ADD_BACKEND` with the id of a backend the cluster has already.
    #[error("cluster `{cluster}` already has a backend `{backend}`")]
    BackendExists {
        /// The cluster named.
        cluster: String,
        /// The backend id given.
        backend: String,
    },
    /// `REMOVE_BACKEND` of a backend the cluster does not have.
    #[error("cluster `{cluster}` has no backend `{backend}`")]
    NoBackend {
        /// The cluster named.
        cluster: String,
        /// The backend id given.
        backend: String,
    },
    /// `REMOVE_BACKEND` names a backend by id with another address than its own.
    #[error("backend `{backend}` of cluster `{cluster}` has address {actual}, not {given}")]
    BackendAddressMismatch {
        /// The cluster named.
        cluster: String,
        /// The backend named.
        backend: String,
        /// The backend's address.
        actual: SocketAddr,
        /// The address the order gave.
        given: SocketAddr,
    },
    /// `ADD_HTTP(S)_FRONTEND` with the hostname, path and method of a frontend there already.
    #[error("a frontend for {0} already exists")]
    FrontendExists(FrontendKey),
    /// `REMOVE_HTTP(S)_FRONTEND` of a frontend that does not exist.
    #[error("no frontend for {0}")]
    NoFrontend(FrontendKey),
    /// `ADD_TCP_FRONTEND` with the rule of a frontend the listener has already.
    #[error("the TCP listener {address} already has a frontend {rule} (cluster `{cluster}`)")]
    TcpFrontendExists {
        /// The TCP listener.
        address: SocketAddr,
        /// The rule of both frontends.
        rule: TcpRuleName,
        /// The cluster of the frontend there already.
        cluster: String,
    },
    /// `REMOVE_TCP_FRONTEND` of a frontend that does not exist (listener, rule and cluster).
    #[error("no TCP frontend {rule} on {address} for cluster `{cluster}`")]
    NoTcpFrontend {
        /// The TCP listener.
        address: SocketAddr,
        /// The rule given.
        rule: TcpRuleName,
        /// The cluster given.
        cluster: String,
    },
    /// A certificate that does not parse, does not match its key, or was refused for its dates.
    #[error("invalid certificate for {address}")]
    Certificate {
        /// The HTTPS listener.
        address: SocketAddr,
        /// What is wrong with it.
        source: CertificateError,
    },
    /// A certificate the listener has already.
    #[error("certificate {fingerprint} is already loaded on {address}")]
    CertificateExists {
        /// The HTTPS listener.
        address: SocketAddr,
        /// The certificate's fingerprint.
        fingerprint: Fingerprint,
    },
    /// `ADD_FAULT` with the name of a fault that exists.
    #[error("a fault `{0}` already exists")]
    FaultExists(String),
    /// `UPDATE_FAULT` or `REMOVE_FAULT` of a fault that does not exist.
    #[error("no fault `{0}`")]
    NoFault(String),
    /// A fault aimed at a frontend of a listener that does not exist.
    #[error("no listener on {0} for the fault's frontend")]
    NoFaultListener(SocketAddr),
    /// `REMOVE_CERTIFICATE` or `REPLACE_CERTIFICATE` of a certificate the listener does not have.
    #[error("no certificate {fingerprint} on {address}")]
    NoCertificate {
        /// The HTTPS listener.
        address: SocketAddr,
        /// The fingerprint given.
        fingerprint: Fingerprint,
    },
}

/// A TCP frontend's rule in messages: `sni = "a.test"`, or `without a rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRuleName(pub Option<TcpRule>);

impl std::fmt::Display for TcpRuleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(rule) => write!(f, "with {rule}"),
            None => f.write_str("without a rule"),
        }
    }
}

/// Why a saved state could not be loaded; names the line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read line {line}")]
    Read {
        /// The number of the line being read, from 1.
        line: usize,
        /// Why the read failed.
        source: io::Error,
    },
    /// A line is not a valid order.
    #[error("line {line} is not a valid order")]
    Parse {
        /// The line's number, from 1.
        line: usize,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// An order of the file was refused by the state.
    #[error("line {line}: {order} refused")]
    Apply {
        /// The line's number, from 1.
        line: usize,
        /// The order's name.
        order: &'static str,
        /// Why the state refused it.
        source: Box<StateError>,
    },
}
