//! Faults: injected failures (latency, bandwidth limits, resets, hangs, truncation, slicing,
//! HTTP error answers) attached by order to a cluster, a backend or a frontend.
//!
//! A [`Fault`] is written the same way in the configuration file (`[[faults]]`) and in the
//! `fault` field of the `ADD_FAULT` and `UPDATE_FAULT` orders: flat keys, `type` naming the
//! effect and the effect's own parameters beside the common ones (`name`, the target,
//! `direction`, `probability`, the HTTP selector, `ttl`, `seed`). [`RawFault`] is that wire
//! form; turning it into a [`Fault`] refuses an unknown type, a parameter the type does not
//! take, a negative number or a missing target, naming it. Ranges are checked by
//! [`crate::rules`], as for every order.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Serialize};

mod wire;

pub use wire::{DEFAULT_HTTP_ERROR_STATUS, RawFault};

use super::{FixedAnswer, UnknownName, parse_name};

/// One fault: what it does, to which traffic, how often, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawFault", into = "RawFault")]
pub struct Fault {
    /// Unique among the faults of the proxy; shown in access logs and metrics (`fault="…"`).
    pub name: String,
    /// What the fault is attached to: a cluster, a backend, or a frontend.
    pub target: FaultTarget,
    /// What the fault does, with its parameters.
    pub effect: Effect,
    /// Which way of the traffic it acts on (default `downstream`).
    pub direction: Direction,
    /// The share of connections (TCP) or requests (HTTP) the fault applies to.
    pub probability: Probability,
    /// Which HTTP requests the fault applies to; every one when empty.
    pub selector: Selector,
    /// The lease: the fault removes itself this long after it was added or last renewed.
    pub ttl: Option<Duration>,
    /// Makes the fault's random choices (probability, jitter, slice sizes) reproducible.
    pub seed: Option<u64>,
}

/// What a fault is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FaultTarget {
    /// Every connection and request routed to the cluster.
    Cluster {
        /// The cluster.
        cluster_id: String,
    },
    /// Connections to one backend of a cluster, matched by its id.
    Backend {
        /// The cluster.
        cluster_id: String,
        /// The backend's id.
        backend_id: String,
    },
    /// Connections accepted on a listener, and for HTTP only requests for `hostname` if set.
    Frontend {
        /// The listener's address.
        address: SocketAddr,
        /// Only requests for this hostname (HTTP); `None` takes every connection of the listener.
        hostname: Option<String>,
    },
}

impl FaultTarget {
    /// The cluster the fault is attached to, or through its backend.
    pub fn cluster_id(&self) -> Option<&str> {
        match self {
            FaultTarget::Cluster { cluster_id } | FaultTarget::Backend { cluster_id, .. } => {
                Some(cluster_id)
            }
            FaultTarget::Frontend { .. } => None,
        }
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Cluster { cluster_id } => write!(f, "cluster {cluster_id}"),
            FaultTarget::Backend {
                cluster_id,
                backend_id,
            } => write!(f, "backend {cluster_id}/{backend_id}"),
            FaultTarget::Frontend {
                address,
                hostname: None,
            } => write!(f, "frontend {address}"),
            FaultTarget::Frontend {
                address,
                hostname: Some(hostname),
            } => write!(f, "frontend {address} {hostname}"),
        }
    }
}

/// Which way of the traffic a fault acts on: towards the backend (`upstream`), towards the
/// client (`downstream`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Bytes going towards the backend (requests).
    Upstream,
    /// As Toxiproxy's toxics, a fault acts on the answers unless told otherwise.
    #[default]
    Downstream,
    /// Both ways.
    Both,
}

impl Direction {
    /// Every direction, in the order the CLI lists them.
    pub const ALL: [Direction; 3] = [Direction::Upstream, Direction::Downstream, Direction::Both];

    /// The direction's name as written (`upstream`, `downstream`, `both`).
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
            Direction::Both => "both",
        }
    }

    /// Whether the fault acts on bytes going towards the backend.
    pub fn is_upstream(self) -> bool {
        matches!(self, Direction::Upstream | Direction::Both)
    }

    /// Whether the fault acts on bytes going towards the client.
    pub fn is_downstream(self) -> bool {
        matches!(self, Direction::Downstream | Direction::Both)
    }
}

impl FromStr for Direction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, Direction::name)
    }
}

/// A probability, from 0 to 1 when checked by [`crate::rules`].
///
/// Compared and hashed by its bits, so that a fault can live in the routing state, which is
/// compared for equality (two NaNs are equal here, and [`crate::rules`] refuses them anyway).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Probability(pub f64);

impl Probability {
    /// Every connection or request.
    pub const ALWAYS: Probability = Probability(1.0);
}

impl Default for Probability {
    fn default() -> Self {
        Probability::ALWAYS
    }
}

impl PartialEq for Probability {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Probability {}

impl std::hash::Hash for Probability {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// Which HTTP requests a fault applies to: all of the conditions set must hold. TCP traffic
/// is selected by `source` only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The request path starts with this.
    pub path_prefix: Option<String>,
    /// The request has this header with this value (the name compared without case).
    pub header: Option<HeaderMatch>,
    /// The client address is in this network.
    pub source: Option<Network>,
}

impl Selector {
    /// Whether the selector takes every request.
    pub fn is_empty(&self) -> bool {
        self.path_prefix.is_none() && self.header.is_none() && self.source.is_none()
    }
}

/// A header field a request must carry, written `name=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    /// The header's name, compared without case.
    pub name: String,
    /// The value the header must have.
    pub value: String,
}

impl FromStr for HeaderMatch {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => Ok(HeaderMatch {
                name: name.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(FaultError::Header(s.to_string())),
        }
    }
}

impl fmt::Display for HeaderMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// An IP network written `address/prefix` (`10.0.0.0/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    /// The network's address.
    pub address: IpAddr,
    /// The prefix length in bits (32 for one IPv4 address, 128 for one IPv6 address).
    pub prefix: u8,
}

impl Network {
    /// Whether `address` is in the network. An IPv4 address mapped into IPv6 is compared as
    /// IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(self.prefix.into()))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(self.prefix.into()))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || FaultError::Network(s.to_string());
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let longest = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse().map_err(|_| invalid())?,
            None => longest,
        };
        if prefix > longest {
            return Err(invalid());
        }
        Ok(Network { address, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Delays the data by `latency`, plus or minus up to `jitter`.
    Latency {
        /// The delay added.
        latency: Duration,
        /// The most the delay varies, either way.
        jitter: Duration,
    },
    /// Moves at most `rate` kilobytes (1,000 bytes) per second.
    Bandwidth {
        /// Kilobytes (1,000 bytes) per second.
        rate: u64,
    },
    /// Delays the close by `delay`.
    SlowClose {
        /// The delay before closing.
        delay: Duration,
    },
    /// Stops all data, and closes after `timeout`; zero holds until the fault is removed.
    Timeout {
        /// When to close; zero never closes.
        timeout: Duration,
    },
    /// Resets the connection (RST) after `timeout`.
    ResetPeer {
        /// When to reset.
        timeout: Duration,
    },
    /// Cuts the data into slices of about `average_size` bytes (± `size_variation`), with
    /// `delay` between them.
    Slicer {
        /// The average slice size, in bytes.
        average_size: u64,
        /// How much a slice's size may differ from the average, in bytes.
        size_variation: u64,
        /// The pause between two slices.
        delay: Duration,
    },
    /// Closes the connection once `bytes` bytes went through.
    LimitData {
        /// Bytes let through before the close.
        bytes: u64,
    },
    /// Accepts, then closes at once.
    Blackout,
    /// Refuses: the listener side answers as if no backend were up.
    Down,
    /// The next `count` connections or requests fail, then the fault lets everything through.
    Transient {
        /// Connections or requests that fail.
        count: u64,
    },
    /// HTTP: answers this without contacting the backend.
    HttpError(FixedAnswer),
    /// HTTP: waits `delay` before forwarding the request (upstream) or relaying the response
    /// (downstream).
    HttpDelay {
        /// The wait.
        delay: Duration,
    },
    /// TCP: answers a well-formed error of `protocol`, then closes.
    Error {
        /// Whose error to answer with.
        protocol: ErrorProtocol,
    },
}

/// The name of each kind of effect, as `type` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `latency`.
    Latency,
    /// `bandwidth`.
    Bandwidth,
    /// `slow_close`.
    SlowClose,
    /// `timeout`.
    Timeout,
    /// `reset_peer`.
    ResetPeer,
    /// `slicer`.
    Slicer,
    /// `limit_data`.
    LimitData,
    /// `blackout`.
    Blackout,
    /// `down`.
    Down,
    /// `transient`.
    Transient,
    /// `http_error`.
    HttpError,
    /// `http_delay`.
    HttpDelay,
    /// `error`.
    Error,
}

impl FaultKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::SlowClose,
        FaultKind::Timeout,
        FaultKind::ResetPeer,
        FaultKind::Slicer,
        FaultKind::LimitData,
        FaultKind::Blackout,
        FaultKind::Down,
        FaultKind::Transient,
        FaultKind::HttpError,
        FaultKind::HttpDelay,
        FaultKind::Error,
    ];

    /// The kind's name, as the fault's `type` writes it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::SlowClose => "slow_close",
            FaultKind::Timeout => "timeout",
            FaultKind::ResetPeer => "reset_peer",
            FaultKind::Slicer => "slicer",
            FaultKind::LimitData => "limit_data",
            FaultKind::Blackout => "blackout",
            FaultKind::Down => "down",
            FaultKind::Transient => "transient",
            FaultKind::HttpError => "http_error",
            FaultKind::HttpDelay => "http_delay",
            FaultKind::Error => "error",
        }
    }

    /// The parameters an effect of this kind takes.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            FaultKind::Latency => &["latency", "jitter"],
            FaultKind::Bandwidth => &["rate"],
            FaultKind::SlowClose | FaultKind::HttpDelay => &["delay"],
            FaultKind::Timeout | FaultKind::ResetPeer => &["timeout"],
            FaultKind::Slicer => &["average_size", "size_variation", "delay"],
            FaultKind::LimitData => &["bytes"],
            FaultKind::Blackout | FaultKind::Down => &[],
            FaultKind::Transient => &["count"],
            FaultKind::HttpError => &["status", "body", "headers"],
            FaultKind::Error => &["protocol"],
        }
    }
}

impl FromStr for FaultKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, FaultKind::name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Effect {
    /// The kind of this effect.
    pub fn kind(&self) -> FaultKind {
        match self {
            Effect::Latency { .. } => FaultKind::Latency,
            Effect::Bandwidth { .. } => FaultKind::Bandwidth,
            Effect::SlowClose { .. } => FaultKind::SlowClose,
            Effect::Timeout { .. } => FaultKind::Timeout,
            Effect::ResetPeer { .. } => FaultKind::ResetPeer,
            Effect::Slicer { .. } => FaultKind::Slicer,
            Effect::LimitData { .. } => FaultKind::LimitData,
            Effect::Blackout => FaultKind::Blackout,
            Effect::Down => FaultKind::Down,
            Effect::Transient { .. } => FaultKind::Transient,
            Effect::HttpError(_) => FaultKind::HttpError,
            Effect::HttpDelay { .. } => FaultKind::HttpDelay,
            Effect::Error { .. } => FaultKind::Error,
        }
    }
}

/// The protocols whose errors the `error` fault answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorProtocol {
    /// An HTTP/1.1 error response.
    Http,
    /// A Redis error reply (`-ERR …`).
    Redis,
    /// A memcached `SERVER_ERROR` line.
    Memcache,
    /// A MySQL error packet.
    Mysql,
    /// An SMTP 4xx reply.
    Smtp,
}

impl ErrorProtocol {
    /// Every protocol, in the order the CLI lists them.
    pub const ALL: [ErrorProtocol; 5] = [
        ErrorProtocol::Http,
        ErrorProtocol::Redis,
        ErrorProtocol::Memcache,
        ErrorProtocol::Mysql,
        ErrorProtocol::Smtp,
    ];

    /// The protocol's name, as the `protocol` parameter writes it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorProtocol::Http => "http",
            ErrorProtocol::Redis => "redis",
            ErrorProtocol::Memcache => "memcache",
            ErrorProtocol::Mysql => "mysql",
            ErrorProtocol::Smtp => "smtp",
        }
    }
}

impl FromStr for ErrorProtocol {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, ErrorProtocol::name)
    }
}

/// Why a fault as written is not a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The `type` names no kind of fault.
    #[error("unknown fault type: {0}")]
    UnknownType(#[source] UnknownName),
    /// A parameter the fault's kind does not take.
    #[error("`{parameter}` is not a parameter of a {kind} fault (it takes: {expected})")]
    Parameter {
        /// The parameter given.
        parameter: &'static str,
        /// The fault's kind.
        kind: FaultKind,
        /// The parameters the kind takes.
        expected: String,
    },
    /// A negative number where only zero or more make sense.
    #[error("`{field}` is {value}: it must not be negative")]
    Negative {
        /// The field.
        field: &'static str,
        /// The value given.
        value: i64,
    },
    /// A parameter the fault's kind needs is absent.
    #[error("a {kind} fault needs `{parameter}`")]
    Missing {
        /// The parameter needed.
        parameter: &'static str,
        /// The fault's kind.
        kind: FaultKind,
    },
    /// Neither `cluster_id` nor `frontend`.
    #[error("a fault needs a target: `cluster_id` (and `backend_id`), or `frontend`")]
    NoTarget,
    /// Both `cluster_id` and `frontend`.
    #[error("a fault has one target: `cluster_id` (and `backend_id`), or `frontend`")]
    TwoTargets,
    /// A field given without the one it needs (`backend_id` without `cluster_id`…): the field, then
    /// the one it needs.
    #[error("`{0}` needs `{1}`")]
    Requires(&'static str, &'static str),
    /// A header selector not written `name=value` (as given).
    #[error("invalid header selector `{0}`: expected name=value")]
    Header(String),
    /// A source not written `address` or `address/prefix` (as given).
    #[error("invalid network `{0}`: expected an address, or address/prefix")]
    Network(String),
}

/// `ADD_FAULT` (a new name) and `UPDATE_FAULT` (an existing name: the fault is replaced and
/// its lease starts again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFault {
    /// The fault.
    pub fault: Fault,
}

/// Names one fault: `REMOVE_FAULT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultName {
    /// The fault's name.
    pub name: String,
}

#[cfg(test)]
mod tests;
