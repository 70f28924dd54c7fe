//! The worker's faults ([`crate::faults`]), kept in step with the state: after every applied
//! order the [`FaultSet`](crate::faults::FaultSet) takes the state's faults, and when a fault
//! went or changed, the sessions carrying its lanes drop them and are driven again (what a
//! `timeout` of 0 held moves on).

use std::hash::{BuildHasher, Hasher};

use super::Server;

impl Server {
    /// Gives the worker's fault set the state's faults, and frees what stale faults hold.
    pub(super) fn sync_faults(&mut self) {
        if !self.faults.sync(&self.state.faults) {
            return;
        }
        let faults = &self.faults;
        let freed: Vec<usize> = self
            .sessions
            .iter_mut()
            .filter_map(|(key, session)| {
                let shaper = session.shaper.as_mut()?;
                shaper
                    .drop_stale(|name| faults.is_current(name))
                    .then_some(key)
            })
            .collect();
        for key in freed {
            self.drive(key);
        }
    }
}

/// A seed for the faults that have none, different in each worker and each run: the
/// operating system's random keys of the standard hasher, drawn once.
pub(super) fn entropy() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}
