//! A session's backend connections, by slot.
//!
//! A backend connection belongs to (session, [`Slot`]): its socket's token names both, its
//! back timeout is the slot's, and the loop's answers about it (connected, connect failed)
//! name the slot. HTTP/1 and TCP use one slot at a time; a stage that holds several
//! connections at once (HTTP/2 streams to different clusters, a connect after sniffing) uses
//! several.

use crate::{session::BackConnection, timer::Timeout};

/// Names one backend connection of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(pub u8);

impl Slot {
    /// The slot of stages that use one backend connection at a time (HTTP/1, TCP).
    pub const FIRST: Slot = Slot(0);

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The backend connections of a session. Small: a few slots at most.
#[derive(Debug, Default)]
pub struct Backs {
    slots: Vec<Option<BackConnection>>,
}

impl Backs {
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
            let slot = Slot(u8::try_from(index).ok()?);
            Some((slot, back.as_ref()?))
        })
    }

    /// The connections, by slot.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Slot, &mut BackConnection)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, back)| {
                let slot = Slot(u8::try_from(index).ok()?);
                Some((slot, back.as_mut()?))
            })
    }

    /// The back timeout of `slot`'s connection, if it has one.
    pub fn timeout_mut(&mut self, slot: Slot) -> Option<&mut Timeout> {
        self.get_mut(slot).map(|back| &mut back.timeout)
    }
}
