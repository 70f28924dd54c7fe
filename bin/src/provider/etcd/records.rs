//! What each node writes about itself under the prefix, with its lease: `nodes/<node>` (what it
//! routes by) and `status/<node>` (the values it refused). Both disappear when the node stops
//! or loses etcd for longer than the lease.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `<prefix>nodes/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// The `sozu` version the node runs.
    pub version: String,
    pub pid: u32,
    /// The etcd revision of the routing keys the node applied last.
    pub revision: i64,
    /// [`super::layout::ViewDigest`] of those routing keys: equal to the digest of what etcd
    /// holds now once the node has caught up.
    pub view: String,
    /// A digest of the node's whole routing state (its configuration file's part included):
    /// equal on nodes that route the same way.
    pub state_hash: String,
    /// When that revision was applied by every worker, in milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
    /// How many routing keys the node refused (listed in `status/<node>`).
    pub refused: usize,
    /// The store lost its history (restarted empty): the node keeps its state until the
    /// prefix is written again.
    pub keeping_state: bool,
}

/// `<prefix>status/<node>`: the routing keys the node did not apply, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub revision: i64,
    pub errors: Vec<KeyError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyError {
    /// The key, whole (prefix included); the prefix alone for an error about no one key.
    pub key: String,
    pub error: String,
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
