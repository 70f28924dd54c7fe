//! Connections to a script's `remote` (`host:port`, no cluster): the name is resolved by the
//! worker's [`Resolver`] thread, started at the first `remote`, while the session waits; the
//! thread's answers wake the loop through its waker, and the sessions waiting for a name ask
//! again. Each resolved address is tried in turn within the connect attempts; when none
//! answers, or the name does not resolve, the listener's script hears of it
//! (`proxy_error(peer, message)`) and the connection closes.

use std::{collections::HashMap, time::Instant};

use log::{debug, warn};

use super::{Server, connect::OpenError};
use crate::{
    router::content::resolver::{Lookup, Resolver},
    session::{Action, backs::Slot},
    tcp,
};

/// A session waiting for a name's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Awaiting {
    key: usize,
    uid: u64,
    slot: Slot,
}

/// Names being resolved, and the sessions waiting for each.
pub(super) type AwaitingNames = HashMap<String, Vec<Awaiting>>;

impl Server {
    /// Opens a connection in the session's `slot` to the next address of `remote`, once it is
    /// resolved.
    pub(super) fn connect_remote(&mut self, key: usize, slot: Slot, remote: &str) -> Action {
        let now = Instant::now();
        let Some(session) = self.sessions.get(key) else {
            return Action::Wait;
        };
        let uid = session.io.uid;
        let attempt = usize::try_from(session.io.backs.attempts(slot)).unwrap_or(usize::MAX);
        let lookup = match self.resolver() {
            Some(resolver) => resolver.lookup(remote, now),
            None => Lookup::Failed("no resolver thread".to_string()),
        };
        let addresses = match lookup {
            Lookup::Resolved(addresses) => addresses,
            Lookup::Pending => {
                debug!("session {uid}: waiting for the addresses of {remote}");
                self.awaiting_names
                    .entry(remote.to_string())
                    .or_default()
                    .push(Awaiting { key, uid, slot });
                return Action::Wait;
            }
            Lookup::Failed(message) => {
                return self
                    .remote_unreachable(key, &format!("cannot resolve {remote}: {message}"));
            }
        };
        // Each attempt takes the next address.
        let Some(&address) = addresses.get(attempt) else {
            return self.remote_unreachable(key, &format!("cannot connect to {remote}"));
        };
        match self.open_back(key, slot, address, remote.to_string(), None, now) {
            Ok(()) => Action::Wait,
            Err(OpenError::Connect) => self.retry_or_give_up(key, slot),
            Err(OpenError::Register) => Action::Close,
            Err(OpenError::NoDescriptor) => self.refuse_without_descriptor(key, slot),
        }
    }

    /// The worker's resolver, started on first use; `None` when its thread cannot start.
    fn resolver(&mut self) -> Option<&mut Resolver> {
        if self.resolver.is_none() {
            let waker = self.waker.clone();
            match Resolver::spawn(move || {
                if let Err(error) = waker.wake() {
                    warn!("the resolver cannot wake the event loop: {error}");
                }
            }) {
                Ok(resolver) => self.resolver = Some(resolver),
                Err(error) => warn!("cannot start the resolver thread: {error}"),
            }
        }
        self.resolver.as_mut()
    }

    /// Takes the resolver's answers and lets the sessions waiting for them go on.
    pub(super) fn receive_resolved(&mut self) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        for name in resolver.receive(Instant::now()) {
            for awaiting in self.awaiting_names.remove(&name).unwrap_or_default() {
                let is_same_session = self
                    .sessions
                    .get(awaiting.key)
                    .is_some_and(|session| session.io.uid == awaiting.uid);
                if is_same_session {
                    let action = self.connect_remote(awaiting.key, awaiting.slot, &name);
                    self.handle_action(awaiting.key, action);
                }
            }
        }
    }

    /// Tells the listener's script that the session's `remote` cannot be reached, and closes.
    fn remote_unreachable(&mut self, key: usize, message: &str) -> Action {
        self.with_session(key, |session, context| {
            tcp::tell_unreachable(&session.io, context, message)
        })
        .unwrap_or(Action::Wait)
    }
}
