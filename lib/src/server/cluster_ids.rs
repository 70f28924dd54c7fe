//! Cluster ids shared by the sessions that name them. A session keeps the id of its cluster
//! and of the cluster it counts for per client address for its whole life, an idle
//! keep-alive connection too: with one `Rc<str>` per cluster, thousands of connections hold
//! a pointer each instead of two copies (two 32-byte allocations each).

use std::rc::Rc;

use rustc_hash::FxHashSet;

/// The ids handed out, each shared by the sessions holding it.
#[derive(Debug, Default)]
pub(super) struct ClusterIds {
    ids: FxHashSet<Rc<str>>,
}

impl ClusterIds {
    /// The shared id equal to `id`. Before the set grows, it forgets the ids no session holds
    /// any more (their cluster removed, or just unused): it stays as large as the clusters in
    /// use, not as all the clusters ever named.
    pub(super) fn get(&mut self, id: &str) -> Rc<str> {
        if let Some(shared) = self.ids.get(id) {
            return Rc::clone(shared);
        }
        if self.ids.len() == self.ids.capacity() {
            self.ids.retain(|shared| Rc::strong_count(shared) > 1);
        }
        let shared: Rc<str> = Rc::from(id);
        self.ids.insert(Rc::clone(&shared));
        shared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_a_cluster_share_one_id() {
        let mut ids = ClusterIds::default();
        let first = ids.get("web");
        let second = ids.get("web");
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(&*first, "web");
        assert!(!Rc::ptr_eq(&first, &ids.get("api")));
    }

    #[test]
    fn ids_no_session_holds_are_forgotten_as_the_set_grows() {
        let mut ids = ClusterIds::default();
        let held = ids.get("held");
        for index in 0..100 {
            drop(ids.get(&format!("gone-{index}")));
        }
        assert!(ids.len() <= 16, "{}", ids.len());
        assert!(Rc::ptr_eq(&held, &ids.get("held")));
    }
}
