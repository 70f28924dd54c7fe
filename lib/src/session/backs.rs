//! A session's backend connections, by slot.
//!
//! A backend connection belongs to (session, [`Slot`]): its socket's token names both, its
//! back timeout is the slot's, and the loop's answers about it (connected, connect failed)
//! name the slot. A slot holds a socket, or a stream of a backend HTTP/2 connection shared
//! with other slots and sessions (`session::mux`). HTTP/1 and TCP use one slot at a time; a
//! stage that holds several connections at once (HTTP/2 streams, each with its own, a
//! connect after sniffing) uses
//! several: as many as the streams it forwards at once, which `h2_max_concurrent_streams`
//! bounds.
//!
//! Each slot also keeps its own connects: the cluster it connects to and the attempts made
//! since its last connection was established, so that the streams of one session connect,
//! retry and give up each on its own, at the same time.

use std::rc::Rc;

use crate::{session::BackConnection, timer::Timeout};

/// Names one backend connection of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u32);

impl Slot {
    /// The slot of stages that use one backend connection at a time (HTTP/1, TCP).
    pub const FIRST: Slot = Slot(0);

    /// The slot's position among a session's slots.
    pub fn index(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The slot at `index`, if a slot can name it.
    pub fn at(index: usize) -> Option<Slot> {
        u32::try_from(index).ok().map(Slot)
    }
}

/// The backend connections of a session, by slot.
#[derive(Debug, Default)]
pub struct Backs {
    slots: Vec<SlotState>,
}

/// What a slot holds: its connection, and its connects.
#[derive(Debug, Default)]
struct SlotState {
    back: Option<BackConnection>,
    /// The cluster of the slot's latest connect (none for a script's `remote`): the session's
    /// shared id, not a copy.
    cluster_id: Option<Rc<str>>,
    /// Connect attempts since the slot's last connection was established.
    attempts: u32,
}

impl SlotState {
    /// Neither a connection nor a connect attempt to remember.
    fn is_unused(&self) -> bool {
        self.back.is_none() && self.attempts == 0
    }
}

impl Backs {
    /// How many slots the session has used at once: every slot in use is below it.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, slot: Slot) -> Option<&BackConnection> {
        self.slots.get(slot.index())?.back.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut BackConnection> {
        self.slots.get_mut(slot.index())?.back.as_mut()
    }

    /// The state of `slot`, created when the session never used it.
    fn state_mut(&mut self, slot: Slot) -> Option<&mut SlotState> {
        let index = slot.index();
        if self.slots.len() <= index {
            let count = index.checked_add(1)?;
            // HTTP/1 and TCP sessions use one slot all their life: room for the slots asked
            // for, not the four a vector starts with (each slot is a few hundred bytes that
            // an idle connection would carry). Later slots (HTTP/2 streams) grow as usual.
            if self.slots.capacity() == 0 {
                self.slots.reserve_exact(count);
            }
            self.slots.resize_with(count, SlotState::default);
        }
        self.slots.get_mut(index)
    }

    /// Puts a connection in `slot`; returns the one it replaces.
    pub fn insert(&mut self, slot: Slot, connection: BackConnection) -> Option<BackConnection> {
        self.state_mut(slot)?.back.replace(connection)
    }

    /// Takes the connection out of `slot`. When no slot has a connection or a connect under
    /// way any more, the slots' room is freed: a keep-alive session whose idle backend
    /// connection went to the pool holds none (its next connect names its cluster again).
    pub fn take(&mut self, slot: Slot) -> Option<BackConnection> {
        let back = self.slots.get_mut(slot.index())?.back.take();
        if self.slots.iter().all(SlotState::is_unused) {
            self.slots = Vec::new();
        }
        back
    }

    /// The connections, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &BackConnection)> {
        self.slots.iter().enumerate().filter_map(|(index, state)| {
            let slot = Slot::at(index)?;
            Some((slot, state.back.as_ref()?))
        })
    }

    /// The connections, by slot.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Slot, &mut BackConnection)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, state)| {
                let slot = Slot::at(index)?;
                Some((slot, state.back.as_mut()?))
            })
    }

    /// `slot` connects to `cluster_id` (none: to a script's `remote`).
    pub fn connect_to(&mut self, slot: Slot, cluster_id: Option<Rc<str>>) {
        if let Some(state) = self.state_mut(slot) {
            state.cluster_id = cluster_id;
        }
    }

    /// The cluster `slot` connects to, if any.
    pub fn cluster_id(&self, slot: Slot) -> Option<&str> {
        self.shared_cluster_id(slot).map(|id| &**id)
    }

    /// The cluster `slot` connects to, as the id the worker's sessions share.
    pub fn shared_cluster_id(&self, slot: Slot) -> Option<&Rc<str>> {
        self.slots.get(slot.index())?.cluster_id.as_ref()
    }

    /// Counts a connect attempt of `slot`.
    pub fn count_attempt(&mut self, slot: Slot) {
        if let Some(state) = self.state_mut(slot) {
            state.attempts = state.attempts.saturating_add(1);
        }
    }

    /// The connect attempts of `slot` since its last connection was established (or since
    /// it gave up).
    pub fn attempts(&self, slot: Slot) -> u32 {
        self.slots
            .get(slot.index())
            .map_or(0, |state| state.attempts)
    }

    /// `slot`'s connect ended (established, or given up): the next one starts afresh.
    pub fn reset_attempts(&mut self, slot: Slot) {
        if let Some(state) = self.slots.get_mut(slot.index()) {
            state.attempts = 0;
        }
    }

    /// The back timeout of `slot`'s connection, if it has one.
    pub fn timeout_mut(&mut self, slot: Slot) -> Option<&mut Timeout> {
        self.get_mut(slot).map(|back| &mut back.timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::{Backs, Slot};

    #[test]
    fn each_slot_counts_its_own_connect_attempts() {
        let mut backs = Backs::default();
        let (first, second) = (Slot::FIRST, Slot(3));
        backs.count_attempt(first);
        backs.count_attempt(first);
        backs.count_attempt(second);
        assert_eq!((backs.attempts(first), backs.attempts(second)), (2, 1));
        // One slot's connection established leaves the other's attempts counting.
        backs.reset_attempts(first);
        backs.count_attempt(second);
        assert_eq!((backs.attempts(first), backs.attempts(second)), (0, 2));
        assert_eq!(backs.attempts(Slot(7)), 0);
        // Counting creates no connection.
        assert_eq!(backs.iter().count(), 0);
    }

    #[test]
    fn each_slot_remembers_the_cluster_it_connects_to() {
        let mut backs = Backs::default();
        backs.connect_to(Slot::FIRST, Some(Rc::from("a")));
        backs.connect_to(Slot(1), Some(Rc::from("b")));
        assert_eq!(backs.cluster_id(Slot::FIRST), Some("a"));
        assert_eq!(backs.cluster_id(Slot(1)), Some("b"));
        backs.connect_to(Slot(1), None);
        assert_eq!(backs.cluster_id(Slot(1)), None);
        assert_eq!(backs.cluster_id(Slot(2)), None);
    }

    /// A session whose last connection left, with no connect under way, keeps no room for
    /// slots; one still connecting keeps its slot's cluster and attempts for the retry.
    #[test]
    fn slots_without_connection_or_attempt_take_no_room() {
        let mut backs = Backs::default();
        backs.connect_to(Slot::FIRST, Some(Rc::from("a")));
        backs.count_attempt(Slot::FIRST);
        assert!(backs.take(Slot::FIRST).is_none());
        assert_eq!(backs.cluster_id(Slot::FIRST), Some("a"));
        assert_eq!(backs.attempts(Slot::FIRST), 1);
        backs.reset_attempts(Slot::FIRST);
        assert!(backs.take(Slot::FIRST).is_none());
        assert_eq!(backs.slots.capacity(), 0);
        assert_eq!(backs.cluster_id(Slot::FIRST), None);
    }

    /// An idle HTTP/1 or TCP session carries its one slot, not room for four.
    #[test]
    fn a_session_with_one_slot_holds_room_for_one() {
        let mut backs = Backs::default();
        backs.connect_to(Slot::FIRST, Some(Rc::from("a")));
        assert_eq!(backs.slots.capacity(), 1);
        backs.connect_to(Slot(1), Some(Rc::from("b")));
        backs.connect_to(Slot(2), Some(Rc::from("c")));
        assert!(backs.slots.capacity() >= 3);
    }
}
