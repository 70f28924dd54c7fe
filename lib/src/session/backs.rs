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
    slots: Vec<Option<BackConnection>>,
}

impl Backs {
    /// How many slots the session has used at once: every slot in use is below it.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, slot: Slot) -> Option<&BackConnection> {
        self.slots.get(slot.index())?.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut BackConnection> {
        self.slots.get_mut(slot.index())?.as_mut()
    }

    /// Puts a connection in `slot`; returns the one it replaces.
    pub fn insert(&mut self, slot: Slot, connection: BackConnection) -> Option<BackConnection> {
        let index = slot.index();
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots.get_mut(index)?.replace(connection)
    }

    /// Takes the connection out of `slot`.
    pub fn take(&mut self, slot: Slot) -> Option<BackConnection> {
        self.slots.get_mut(slot.index())?.take()
    }

    /// The connections, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &BackConnection)> {
        self.slots.iter().enumerate().filter_map(|(index, back)| {
            let slot = Slot::at(index)?;
            Some((slot, back.as_ref()?))
        })
    }

    /// The connections, by slot.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Slot, &mut BackConnection)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, back)| {
                let slot = Slot::at(index)?;
                Some((slot, back.as_mut()?))
            })
    }

    /// The back timeout of `slot`'s connection, if it has one.
    pub fn timeout_mut(&mut self, slot: Slot) -> Option<&mut Timeout> {
        self.get_mut(slot).map(|back| &mut back.timeout)
    }
}
