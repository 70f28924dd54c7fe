//! The backend connections of an HTTP/2 session, by slot: which slots streams, releases and
//! idle connections hold, the connections given back to the loop, those kept between
//! streams, and the connects of queued streams, each in its own slot, all at once.
//!
//! A stream that leaves its backend connection clean keeps it in the session, idle, rather
//! than giving it back to the loop: the next stream routed to the same cluster (and backend,
//! for a sticky request) takes it over at once, as an HTTP/1.1 session keeps its connection
//! between requests, with no trip through the loop's pool and no system call. An idle
//! connection the backend wrote to or closed meanwhile (its socket's events say so) is given
//! back for the loop to check; one idle past the back timeout, and those left when the
//! session ends, go back to the loop's pool.

use std::{
    mem,
    rc::Rc,
    time::{Duration, Instant},
};

use super::{Exchange, Mux, State};
use crate::{
    session::{
        Action, BackConnection, BackUse,
        backs::{Backs, Slot},
        endpoint::Ready,
    },
    timer::{TimeoutKind, TimerKey, Timers},
};

/// A backend connection slot being given back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Released {
    pub(super) slot: Slot,
    /// Clean, between requests: it may go to the idle pool.
    pub(super) reusable: bool,
}

/// A clean backend connection kept between streams. The cluster it was opened for is its
/// slot's ([`Backs::cluster_id`]): the stream that leaves it keeps its own text, whose
/// allocation passes to the next stream.
#[derive(Debug)]
pub(super) struct Idle {
    slot: Slot,
    /// Its backend's sticky id.
    backend_sticky: String,
}

impl Idle {
    /// Whether `exchange` may send its request over this connection.
    fn fits(&self, exchange: &Exchange, backs: &Backs) -> bool {
        backs.cluster_id(self.slot) == Some(exchange.stream.cluster_id.as_str())
            && exchange
                .sticky_id
                .as_deref()
                .is_none_or(|sticky| sticky == self.backend_sticky)
    }
}

/// Whether a backend connection between requests got no event since its last read: no byte
/// and no end of stream came, so it can carry a request.
fn is_quiet(back: &BackConnection) -> bool {
    let event = back.endpoint.readiness.event;
    back.connected
        && !back.endpoint.read_closed
        && !back.endpoint.write_shut
        && !event.contains(Ready::READABLE)
        && !event.contains(Ready::HUP)
        && !event.contains(Ready::ERROR)
}

impl Mux {
    /// Settles the slots before a pass: forgets the releases the loop carried out, gives
    /// back the idle connections that are no longer quiet and those no stream holds (a
    /// stream that ended while its connection was being opened). Returns the first slot to
    /// give back.
    pub(super) fn settle_slots(&mut self, backs: &Backs) -> Option<Slot> {
        let Mux { idle, released, .. } = self;
        released.retain(|released| backs.get(released.slot).is_some());
        idle.retain(|idle| match backs.get(idle.slot) {
            Some(back) if is_quiet(back) => true,
            Some(_) => {
                // The loop looks at it again before pooling it.
                released.push(Released {
                    slot: idle.slot,
                    reusable: true,
                });
                false
            }
            None => false,
        });
        self.mark_held(backs.slot_count());
        for (slot, _) in backs.iter() {
            if !self.held.get(slot.index()).copied().unwrap_or(false) {
                self.released.push(Released {
                    slot,
                    reusable: false,
                });
            }
        }
        self.released.first().map(|released| released.slot)
    }

    /// Marks in `held`, for the slots below `span`, those a stream, a release or an idle
    /// connection holds.
    fn mark_held(&mut self, span: usize) {
        self.held.clear();
        self.held.resize(span, false);
        let streams = self.exchanges.iter().filter_map(|exchange| exchange.slot);
        let releases = self.released.iter().map(|released| released.slot);
        let idle = self.idle.iter().map(|idle| idle.slot);
        for slot in streams.chain(releases).chain(idle) {
            if let Some(mark) = self.held.get_mut(slot.index()) {
                *mark = true;
            }
        }
    }

    /// Takes the slot of an exchange that ended: kept idle when its connection is clean
    /// and quiet (its back timeout, `idle_after`, then bounds how long), else given back.
    /// `key` names the session's timeouts.
    pub(super) fn leave_slot(
        &mut self,
        exchange: &mut Exchange,
        backs: &mut Backs,
        key: TimerKey,
        (now, timers): (Instant, &mut Timers),
        idle_after: Duration,
    ) {
        let Some(slot) = exchange.slot.take() else {
            return;
        };
        let reusable = exchange.leaves_backend_clean();
        match backs.get_mut(slot) {
            Some(back) if reusable && is_quiet(back) => {
                let key = TimerKey {
                    kind: TimeoutKind::Back(slot),
                    ..key
                };
                back.timeout.set_after(now, idle_after, key, timers);
                self.idle.push(Idle {
                    slot,
                    backend_sticky: mem::take(&mut exchange.backend_sticky),
                });
            }
            _ => self.released.push(Released { slot, reusable }),
        }
    }

    /// Whether `slot` holds an idle connection.
    pub(super) fn is_idle_slot(&self, slot: Slot) -> bool {
        self.idle.iter().any(|idle| idle.slot == slot)
    }

    /// Gives an idle connection back to the loop's pool (its back timeout fired). Returns
    /// whether `slot` was idle.
    pub(super) fn expire_idle(&mut self, slot: Slot) -> bool {
        let Some(position) = self.idle.iter().position(|idle| idle.slot == slot) else {
            return false;
        };
        self.idle.swap_remove(position);
        self.released.push(Released {
            slot,
            reusable: true,
        });
        true
    }

    /// Gives queued streams the idle connections that fit them, then starts the next
    /// connect: a free slot for the oldest stream still queued, whatever other streams are
    /// connecting meanwhile (the loop asks again at once while [`Mux::wants_connects`]).
    pub(super) fn next_connect(&mut self, backs: &Backs) -> Option<Action> {
        self.take_over_idle(backs);
        let id = *self.queue.front()?;
        // Fewer slots are held than this: one below it is free.
        let held = self.exchanges.len() + self.released.len() + self.idle.len();
        let span = backs.slot_count() + held + 1;
        self.mark_held(span);
        let slot = (0..span).filter_map(Slot::at).find(|&slot| {
            backs.get(slot).is_none() && !self.held.get(slot.index()).copied().unwrap_or(true)
        })?;
        self.queue.pop_front();
        let exchange = self.exchange_mut(id)?;
        exchange.slot = Some(slot);
        exchange.state = State::Connecting;
        let cluster_id = Rc::from(exchange.stream.cluster_id.as_str());
        let sticky_id = exchange.sticky_id.clone();
        Some(Action::Connect {
            slot,
            cluster_id,
            sticky_id,
        })
    }

    /// Whether streams wait for a connect of their own.
    pub(super) fn wants_connects(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queued streams take over the idle connections that fit them.
    fn take_over_idle(&mut self, backs: &Backs) {
        if self.idle.is_empty() {
            return;
        }
        let Mux {
            queue,
            idle,
            exchanges,
            ..
        } = self;
        queue.retain(|&id| {
            let Some(exchange) = exchanges.iter_mut().find(|exchange| exchange.id == id) else {
                return true;
            };
            let Some(position) = idle.iter().position(|idle| idle.fits(exchange, backs)) else {
                return true;
            };
            let idle = idle.swap_remove(position);
            exchange.slot = Some(idle.slot);
            exchange.connected(&idle.backend_sticky, BackUse::Reused);
            exchange.backend_sticky = idle.backend_sticky;
            false
        });
    }
}

#[cfg(test)]
mod tests;
