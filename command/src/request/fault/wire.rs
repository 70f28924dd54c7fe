//! [`RawFault`], the flat wire form of a [`Fault`] (orders and the configuration file), and
//! the conversions both ways: reading refuses an unknown type, a parameter the type does not
//! take, a negative number or a missing target, naming it.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::*;

/// The wire form of a [`Fault`], in orders and in the configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// The fault's name, unique among the proxy's faults.
    pub name: String,
    /// Target: the cluster (with `backend_id`, one of its backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Target: a backend of `cluster_id`, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// The address of the listener of a frontend target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<SocketAddr>,
    /// Target: only requests of the frontend listener for this hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The kind of fault (`latency`, `timeout`, `http_error`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// Which way of the traffic the fault acts on (default `downstream`).
    #[serde(default)]
    pub direction: Direction,
    /// The share of connections or requests the fault applies to, from 0 to 1 (default 1).
    #[serde(default = "one")]
    pub probability: f64,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Makes random choices reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Only HTTP requests whose path starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// `name=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `address/prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<i64>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<i64>,
    /// Kilobytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<i64>,
    /// Milliseconds; microseconds for `slicer`, as Toxiproxy has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// `slicer`: the average slice size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_size: Option<i64>,
    /// `slicer`: how much a slice's size may differ from the average, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_variation: Option<i64>,
    /// `limit_data`: bytes let through before the close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// `transient`: connections or requests that fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// `http_error`: the answer's status (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `http_error`: the answer's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `http_error`: extra header fields of the answer, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<(String, String)>>,
    /// `error`: whose error to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ErrorProtocol>,
}

fn one() -> f64 {
    1.0
}

/// The status of an `http_error` fault that names none.
pub const DEFAULT_HTTP_ERROR_STATUS: u16 = 503;

impl RawFault {
    /// The parameters written, by name.
    fn given_parameters(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("rate", self.rate.is_some()),
            ("delay", self.delay.is_some()),
            ("timeout", self.timeout.is_some()),
            ("average_size", self.average_size.is_some()),
            ("size_variation", self.size_variation.is_some()),
            ("bytes", self.bytes.is_some()),
            ("count", self.count.is_some()),
            ("status", self.status.is_some()),
            ("body", self.body.is_some()),
            ("headers", self.headers.is_some()),
            ("protocol", self.protocol.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
    }

    fn target(&self) -> Result<FaultTarget, FaultError> {
        match (&self.cluster_id, &self.backend_id, self.frontend) {
            (Some(_), _, Some(_)) => Err(FaultError::TwoTargets),
            (None, Some(_), _) => Err(FaultError::Requires("backend_id", "cluster_id")),
            (Some(cluster_id), None, None) => {
                if self.hostname.is_some() {
                    return Err(FaultError::Requires("hostname", "frontend"));
                }
                Ok(FaultTarget::Cluster {
                    cluster_id: cluster_id.clone(),
                })
            }
            (Some(cluster_id), Some(backend_id), None) => {
                if self.hostname.is_some() {
                    return Err(FaultError::Requires("hostname", "frontend"));
                }
                Ok(FaultTarget::Backend {
                    cluster_id: cluster_id.clone(),
                    backend_id: backend_id.clone(),
                })
            }
            (None, None, Some(address)) => Ok(FaultTarget::Frontend {
                address,
                hostname: self.hostname.clone(),
            }),
            (None, None, None) => Err(FaultError::NoTarget),
        }
    }

    fn effect(&self, kind: FaultKind) -> Result<Effect, FaultError> {
        let accepted = kind.parameters();
        if let Some(parameter) = self.given_parameters().find(|p| !accepted.contains(p)) {
            return Err(FaultError::Parameter {
                parameter,
                kind,
                expected: if accepted.is_empty() {
                    "none".to_string()
                } else {
                    accepted.join(", ")
                },
            });
        }
        let millis = |field, value: Option<i64>| {
            natural(field, value).map(|value| Duration::from_millis(value.unwrap_or(0)))
        };
        Ok(match kind {
            FaultKind::Latency => Effect::Latency {
                latency: millis("latency", self.latency)?,
                jitter: millis("jitter", self.jitter)?,
            },
            FaultKind::Bandwidth => Effect::Bandwidth {
                rate: natural("rate", self.rate)?.unwrap_or(0),
            },
            FaultKind::SlowClose => Effect::SlowClose {
                delay: millis("delay", self.delay)?,
            },
            FaultKind::Timeout => Effect::Timeout {
                timeout: millis("timeout", self.timeout)?,
            },
            FaultKind::ResetPeer => Effect::ResetPeer {
                timeout: millis("timeout", self.timeout)?,
            },
            FaultKind::Slicer => Effect::Slicer {
                average_size: natural("average_size", self.average_size)?.unwrap_or(0),
                size_variation: natural("size_variation", self.size_variation)?.unwrap_or(0),
                delay: Duration::from_micros(natural("delay", self.delay)?.unwrap_or(0)),
            },
            FaultKind::LimitData => Effect::LimitData {
                bytes: natural("bytes", self.bytes)?.unwrap_or(0),
            },
            FaultKind::Blackout => Effect::Blackout,
            FaultKind::Down => Effect::Down,
            FaultKind::Transient => Effect::Transient {
                count: natural("count", self.count)?.unwrap_or(1),
            },
            FaultKind::HttpError => Effect::HttpError(FixedAnswer {
                status: self.status.unwrap_or(DEFAULT_HTTP_ERROR_STATUS),
                headers: self.headers.clone().unwrap_or_default(),
                body: self.body.clone().unwrap_or_default(),
            }),
            FaultKind::HttpDelay => Effect::HttpDelay {
                delay: millis("delay", self.delay)?,
            },
            FaultKind::Error => Effect::Error {
                protocol: self.protocol.ok_or(FaultError::Missing {
                    parameter: "protocol",
                    kind,
                })?,
            },
        })
    }

    /// Writes the parameters of `effect`.
    fn set_effect(&mut self, effect: &Effect) {
        let millis = |duration: &Duration| Some(whole(duration.as_millis()));
        match effect {
            Effect::Latency { latency, jitter } => {
                self.latency = millis(latency);
                self.jitter = millis(jitter);
            }
            Effect::Bandwidth { rate } => self.rate = Some(whole(*rate)),
            Effect::SlowClose { delay } | Effect::HttpDelay { delay } => {
                self.delay = millis(delay);
            }
            Effect::Timeout { timeout } | Effect::ResetPeer { timeout } => {
                self.timeout = millis(timeout);
            }
            Effect::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                self.average_size = Some(whole(*average_size));
                self.size_variation = Some(whole(*size_variation));
                self.delay = Some(whole(delay.as_micros()));
            }
            Effect::LimitData { bytes } => self.bytes = Some(whole(*bytes)),
            Effect::Blackout | Effect::Down => {}
            Effect::Transient { count } => self.count = Some(whole(*count)),
            Effect::HttpError(answer) => {
                self.status = Some(answer.status);
                self.body = Some(answer.body.clone());
                if !answer.headers.is_empty() {
                    self.headers = Some(answer.headers.clone());
                }
            }
            Effect::Error { protocol } => self.protocol = Some(*protocol),
        }
    }
}

/// A number written in a fault, which must not be negative.
fn natural(field: &'static str, value: Option<i64>) -> Result<Option<u64>, FaultError> {
    value
        .map(|value| u64::try_from(value).map_err(|_| FaultError::Negative { field, value }))
        .transpose()
}

/// A count as the wire writes it; the rules keep every count far below `i64::MAX`.
fn whole(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl TryFrom<RawFault> for Fault {
    type Error = FaultError;

    fn try_from(raw: RawFault) -> Result<Self, Self::Error> {
        let kind: FaultKind = raw.kind.parse().map_err(FaultError::UnknownType)?;
        let effect = raw.effect(kind)?;
        let target = raw.target()?;
        let ttl = natural("ttl", raw.ttl)?.map(Duration::from_secs);
        let selector = Selector {
            path_prefix: raw.path_prefix,
            header: raw.header.as_deref().map(str::parse).transpose()?,
            source: raw.source.as_deref().map(str::parse).transpose()?,
        };
        Ok(Fault {
            name: raw.name,
            target,
            effect,
            direction: raw.direction,
            probability: Probability(raw.probability),
            selector,
            ttl,
            seed: raw.seed,
        })
    }
}

impl From<Fault> for RawFault {
    fn from(fault: Fault) -> Self {
        let mut raw = RawFault {
            name: fault.name,
            kind: fault.effect.kind().name().to_string(),
            direction: fault.direction,
            probability: fault.probability.0,
            ttl: fault.ttl.map(|ttl| whole(ttl.as_secs())),
            seed: fault.seed,
            path_prefix: fault.selector.path_prefix,
            header: fault.selector.header.map(|header| header.to_string()),
            source: fault.selector.source.map(|network| network.to_string()),
            ..RawFault::default()
        };
        match fault.target {
            FaultTarget::Cluster { cluster_id } => raw.cluster_id = Some(cluster_id),
            FaultTarget::Backend {
                cluster_id,
                backend_id,
            } => {
                raw.cluster_id = Some(cluster_id);
                raw.backend_id = Some(backend_id);
            }
            FaultTarget::Frontend { address, hostname } => {
                raw.frontend = Some(address);
                raw.hostname = hostname;
            }
        }
        raw.set_effect(&fault.effect);
        raw
    }
}
