//! Connections per (cluster, client address), for `max_connections_per_ip`.
//!
//! Every new backend connection counts here, limit or not (a limit set later finds the
//! connections already open counted), so the count costs little: keys hash with Fx, and a
//! lookup or a count of a key already present takes the cluster id borrowed, without the
//! copy an owned key would need; a key is copied once, when its first connection comes.

use std::{
    hash::{Hash, Hasher},
    net::IpAddr,
};

use hashbrown::{Equivalent, HashMap};
use rustc_hash::FxBuildHasher;

/// A key of [`PerIp`] with the cluster id borrowed. It hashes as the owned key `(String,
/// IpAddr)` does (a tuple hashes its fields in order, and a `String` as its `str`).
#[derive(Clone, Copy)]
struct KeyRef<'a>(&'a str, IpAddr);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(String, IpAddr)> for KeyRef<'_> {
    fn equivalent(&self, key: &(String, IpAddr)) -> bool {
        self.1 == key.1 && self.0 == key.0
    }
}

/// How many connections each client address has to each cluster.
#[derive(Debug, Default)]
pub(super) struct PerIp {
    counts: HashMap<(String, IpAddr), u64, FxBuildHasher>,
}

impl PerIp {
    /// Connections of `client_ip` to `cluster_id` now.
    pub(super) fn count(&self, cluster_id: &str, client_ip: IpAddr) -> u64 {
        self.counts
            .get(&KeyRef(cluster_id, client_ip))
            .copied()
            .unwrap_or(0)
    }

    /// One connection more of `client_ip` to `cluster_id`.
    pub(super) fn add(&mut self, cluster_id: &str, client_ip: IpAddr) {
        let key = KeyRef(cluster_id, client_ip);
        match self.counts.get_mut(&key) {
            Some(count) => *count = count.saturating_add(1),
            None => {
                self.counts.insert((cluster_id.to_string(), client_ip), 1);
            }
        }
    }

    /// One connection less of `client_ip` to `cluster_id`; the key goes when none is left.
    pub(super) fn remove(&mut self, cluster_id: &str, client_ip: IpAddr) {
        let key = KeyRef(cluster_id, client_ip);
        let Some(count) = self.counts.get_mut(&key) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.counts.remove(&key);
        }
    }

    /// How many (cluster, client address) keys are counted.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        hash::BuildHasher,
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
    };

    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[test]
    fn a_borrowed_key_hashes_as_the_owned_one() {
        let hasher = FxBuildHasher;
        for (cluster, ip) in [("web", V4), ("", V6), ("a-longer-cluster-id", V6)] {
            assert_eq!(
                hasher.hash_one(KeyRef(cluster, ip)),
                hasher.hash_one((cluster.to_string(), ip)),
                "{cluster} {ip}"
            );
        }
    }

    #[test]
    fn counts_per_cluster_and_address() {
        let mut per_ip = PerIp::default();
        per_ip.add("web", V4);
        per_ip.add("web", V4);
        per_ip.add("web", V6);
        per_ip.add("api", V4);
        assert_eq!(per_ip.count("web", V4), 2);
        assert_eq!(per_ip.count("web", V6), 1);
        assert_eq!(per_ip.count("api", V4), 1);
        assert_eq!(per_ip.count("api", V6), 0);
        assert_eq!(per_ip.count("we", V4), 0);
        assert_eq!(per_ip.len(), 3);
    }

    #[test]
    fn a_key_goes_with_its_last_connection() {
        let mut per_ip = PerIp::default();
        per_ip.add("web", V4);
        per_ip.add("web", V4);
        per_ip.remove("web", V4);
        assert_eq!(per_ip.count("web", V4), 1);
        assert_eq!(per_ip.len(), 1);
        per_ip.remove("web", V4);
        assert_eq!(per_ip.count("web", V4), 0);
        assert_eq!(per_ip.len(), 0);
        // A connection that was never counted takes nothing away.
        per_ip.remove("web", V4);
        per_ip.add("api", V4);
        per_ip.remove("web", V4);
        assert_eq!(per_ip.count("api", V4), 1);
    }
}
