//! Values many sessions hold for their whole life, shared. A session keeps the id of its
//! cluster, of the cluster it counts for per client address, and its listener's timeouts, an
//! idle keep-alive connection too: with one `Rc` per distinct value, thousands of connections
//! hold a pointer each instead of copies (two 32-byte allocations and 64 bytes in the session,
//! per connection).

use std::{hash::Hash, rc::Rc};

use rustc_hash::FxHashSet;

/// The values handed out, each shared by the sessions holding it.
#[derive(Debug)]
pub(super) struct Shared<T: ?Sized> {
    values: FxHashSet<Rc<T>>,
}

impl<T: ?Sized> Default for Shared<T> {
    fn default() -> Self {
        Shared {
            values: FxHashSet::default(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Shared<T> {
    /// The shared value equal to `value`, made by `make` when none is. Before the set grows, it
    /// forgets the values no session holds any more (a removed cluster's id, a listener's
    /// former timeouts): it stays as large as the values in use, not as all those ever seen.
    pub(super) fn get(&mut self, value: &T, make: impl FnOnce(&T) -> Rc<T>) -> Rc<T> {
        if let Some(shared) = self.values.get(value) {
            return Rc::clone(shared);
        }
        if self.values.len() == self.values.capacity() {
            self.values.retain(|shared| Rc::strong_count(shared) > 1);
        }
        let shared = make(value);
        self.values.insert(Rc::clone(&shared));
        shared
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_naming_a_value_share_it() {
        let mut ids = Shared::<str>::default();
        let first = ids.get("web", |id| Rc::from(id));
        let second = ids.get("web", |id| Rc::from(id));
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(&*first, "web");
        assert!(!Rc::ptr_eq(&first, &ids.get("api", |id| Rc::from(id))));
    }

    #[test]
    fn values_no_session_holds_are_forgotten_as_the_set_grows() {
        let mut ids = Shared::<str>::default();
        let held = ids.get("held", |id| Rc::from(id));
        for index in 0..100 {
            drop(ids.get(&format!("gone-{index}"), |id| Rc::from(id)));
        }
        assert!(ids.len() <= 16, "{}", ids.len());
        assert!(Rc::ptr_eq(&held, &ids.get("held", |id| Rc::from(id))));
    }
}
