//! Backends: the servers of a cluster, added and removed (drained) by orders.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::optional_seconds;

/// A backend server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(try_from = "RawBackend")]
pub struct AddBackend {
    /// The cluster the backend serves (`app_id` is accepted too).
    pub cluster_id: String,
    /// The backend's id, unique within its cluster; sticky sessions and hashing follow it.
    pub backend_id: String,
    /// The backend's address (`ip_address` and `port` are accepted too).
    pub address: SocketAddr,
    /// The value of the sticky cookie that designates this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_id: Option<String>,
    /// Relative share of traffic for the weighted algorithms; 0 sends nothing.
    pub weight: u32,
    /// Used only when no normal backend of the cluster is up.
    pub backup: bool,
}

/// The weight of a backend added without one.
pub const DEFAULT_BACKEND_WEIGHT: u32 = 100;

/// Removes a backend. The backend drains: no new connection goes to it, and it is forgotten
/// once its last connection ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBackend")]
pub struct RemoveBackend {
    /// The cluster (`app_id` is accepted too).
    pub cluster_id: String,
    /// The backend's id.
    pub backend_id: String,
    /// The backend's address, which must be the one it was added with.
    pub address: SocketAddr,
    /// The sessions still using the backend this long after the order are closed; without
    /// it, they finish at their own pace.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_timeout: Option<Duration>,
}

/// The longest `drain_timeout`, in seconds (as every timeout: just under 2^31 milliseconds).
const MAX_DRAIN_TIMEOUT: u64 = 2_147_483;

/// The wire form of a backend, accepting Sōzu's older field names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    #[serde(alias = "app_id")]
    cluster_id: String,
    backend_id: String,
    #[serde(default)]
    address: Option<SocketAddr>,
    #[serde(default)]
    ip_address: Option<std::net::IpAddr>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    sticky_id: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    load_balancing_parameters: Option<LoadBalancingParameters>,
    #[serde(default)]
    backup: Option<bool>,
    #[serde(default, with = "optional_seconds")]
    drain_timeout: Option<Duration>,
}

/// Sōzu's nested form of a backend's weight.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBalancingParameters {
    weight: u32,
}

/// A backend message that names no usable address.
#[derive(Debug, thiserror::Error)]
pub enum BackendAddressError {
    /// Neither `address` nor both `ip_address` and `port`.
    #[error("a backend needs `address`, or `ip_address` and `port`")]
    Missing,
    /// `address` and `ip_address`/`port` name different addresses.
    #[error("`address` {address} and `ip_address`/`port` disagree")]
    Conflicting {
        /// The `address` given.
        address: SocketAddr,
    },
    /// `drain_timeout` on an `ADD_BACKEND`.
    #[error("`drain_timeout` belongs to REMOVE_BACKEND only")]
    DrainTimeoutOnAdd,
    /// `drain_timeout` of 0 or above the longest timeout.
    #[error("`drain_timeout` must be 1 to {MAX_DRAIN_TIMEOUT} seconds")]
    DrainTimeoutOutOfRange,
}

impl RawBackend {
    fn address(&self) -> Result<SocketAddr, BackendAddressError> {
        let legacy = match (self.ip_address, self.port) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            (None, None) => None,
            _ => return Err(BackendAddressError::Missing),
        };
        match (self.address, legacy) {
            (Some(address), Some(legacy)) if address != legacy => {
                Err(BackendAddressError::Conflicting { address })
            }
            (Some(address), _) | (None, Some(address)) => Ok(address),
            (None, None) => Err(BackendAddressError::Missing),
        }
    }
}

impl TryFrom<RawBackend> for AddBackend {
    type Error = BackendAddressError;

    fn try_from(raw: RawBackend) -> Result<Self, Self::Error> {
        let address = raw.address()?;
        if raw.drain_timeout.is_some() {
            return Err(BackendAddressError::DrainTimeoutOnAdd);
        }
        let weight = raw
            .weight
            .or(raw.load_balancing_parameters.map(|p| p.weight))
            .unwrap_or(DEFAULT_BACKEND_WEIGHT);
        Ok(AddBackend {
            cluster_id: raw.cluster_id,
            backend_id: raw.backend_id,
            address,
            sticky_id: raw.sticky_id,
            weight,
            backup: raw.backup.unwrap_or(false),
        })
    }
}

impl TryFrom<RawBackend> for RemoveBackend {
    type Error = BackendAddressError;

    fn try_from(raw: RawBackend) -> Result<Self, Self::Error> {
        let address = raw.address()?;
        let in_range = |timeout: &Duration| (1..=MAX_DRAIN_TIMEOUT).contains(&timeout.as_secs());
        if raw.drain_timeout.is_some_and(|timeout| !in_range(&timeout)) {
            return Err(BackendAddressError::DrainTimeoutOutOfRange);
        }
        Ok(RemoveBackend {
            cluster_id: raw.cluster_id,
            backend_id: raw.backend_id,
            address,
            drain_timeout: raw.drain_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Order;

    #[test]
    fn drain_timeout_belongs_to_remove_backend_and_has_a_range() {
        let remove = r#"{"type":"REMOVE_BACKEND","cluster_id":"api","backend_id":"a","address":"127.0.0.1:3000","drain_timeout":30}"#;
        let Order::RemoveBackend(removal) = serde_json::from_str(remove).unwrap() else {
            panic!("not a REMOVE_BACKEND");
        };
        assert_eq!(removal.drain_timeout, Some(Duration::from_secs(30)));
        let again: Order = serde_json::from_str(
            &serde_json::to_string(&Order::RemoveBackend(removal.clone())).unwrap(),
        )
        .unwrap();
        assert_eq!(again, Order::RemoveBackend(removal));

        let add = remove.replace("REMOVE_BACKEND", "ADD_BACKEND");
        let error = serde_json::from_str::<Order>(&add).unwrap_err();
        assert!(error.to_string().contains("REMOVE_BACKEND only"), "{error}");
        let zero = remove.replace(":30}", ":0}");
        let error = serde_json::from_str::<Order>(&zero).unwrap_err();
        assert!(error.to_string().contains("1 to 2147483"), "{error}");
    }
}
