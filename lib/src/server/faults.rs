//! The worker's faults ([`crate::faults`]), kept in step with the state: after every applied
//! order the [`FaultSet`](crate::faults::FaultSet) takes the state's faults, and when a fault
//! went or changed, the sessions carrying its lanes (in their own budget, or in their HTTP/2
//! streams' budgets) drop them and are driven again (what a `timeout` of 0 held moves on).

use std::{
    hash::{BuildHasher, Hasher},
    rc::Rc,
};

use super::Server;
use crate::session::Stage;

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
                let is_current = |name: &Rc<str>| faults.is_current(name);
                let mut freed = session
                    .io
                    .shaper
                    .as_mut()
                    .is_some_and(|shaper| shaper.drop_stale(is_current));
                // An HTTP/2 session's streams have budgets of their own.
                if let Stage::H2(h2) = &mut session.stage {
                    freed |= h2.drop_stale_faults(is_current);
                }
                freed.then_some(key)
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
