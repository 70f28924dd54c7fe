//! Registrations across a hot upgrade: the old main process hands the new one its live
//! registrations (leases and ages included), what they created (with the grace periods
//! running), the registration socket's listener and the connections registrations live with.
//! Services stay registered without noticing, and go on renewing or deregistering on the
//! connection they have.
//!
//! The descriptors travel with the rest of the handover (see `upgrade`), after the others:
//! the registration socket's first when [`Handed`] says it comes, then one connection per
//! handed client, in its order.

use std::{
    collections::BTreeSet,
    os::fd::{AsFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Context;
use log::info;
use mio::{Interest, net::UnixListener};
use serde::{Deserialize, Serialize};
use sozu_command_lib::request::{Register, RegistrationIds};

use super::{Registration, RegistrationSocket, plan::Resource};
use crate::main_process::{Main, REGISTRATION_SOCKET};

/// What the new main process is told of the registrations.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handed {
    next_id: u64,
    live: Vec<HandedRegistration>,
    /// What registrations created, with the milliseconds left of its grace period when one
    /// runs.
    created: Vec<(Resource, Option<u64>)>,
    /// Whether the registration socket's listener comes among the descriptors.
    socket: bool,
    /// The clients whose connection comes among the descriptors, in that order: their id in
    /// the old process, and whether they came through the registration socket.
    clients: Vec<(u64, bool)>,
    /// The old process's id of the client that asked for the upgrade (handed apart).
    asking: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedRegistration {
    ids: RegistrationIds,
    register: Register,
    /// The old process's id of the client that registered.
    client: u64,
    peer: Option<(u32, i32)>,
    age_ms: u64,
    /// Milliseconds left of a `ttl` registration's lease.
    expires_in_ms: Option<u64>,
    uses: Vec<Resource>,
    created: Vec<Resource>,
}

impl Handed {
    /// How many descriptors come with it.
    pub fn descriptors(&self) -> usize {
        usize::from(self.socket) + self.clients.len()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Main {
    /// The clients whose connection a registration lives with, other than `asking` (the
    /// client that asked for the upgrade, handed apart): their channels are handed over.
    pub(in crate::main_process) fn registration_clients(&self, asking: Option<u64>) -> Vec<u64> {
        let clients: BTreeSet<u64> = self
            .registrations
            .live
            .values()
            .map(|registration| registration.client)
            .filter(|client| Some(*client) != asking && self.clients.contains_key(client))
            .collect();
        clients.into_iter().collect()
    }

    /// The registrations to hand over with `clients` (see [`Main::registration_clients`]),
    /// and copies of the descriptors that go with them.
    pub(in crate::main_process) fn handed_registrations(
        &self,
        clients: &[u64],
        asking: Option<u64>,
    ) -> anyhow::Result<(Handed, Vec<OwnedFd>)> {
        let copy = |fd: std::os::fd::BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .context("cannot copy a registration's descriptor to hand over")
        };
        let mut fds = Vec::new();
        if let Some(socket) = &self.registrations.socket {
            fds.push(copy(socket.listener.as_fd())?);
        }
        let mut handed_clients = Vec::new();
        for id in clients {
            if let Some(client) = self.clients.get(id) {
                fds.push(copy(client.channel.as_fd())?);
                handed_clients.push((*id, client.restricted));
            }
        }
        let now = Instant::now();
        let left = |at: Instant| millis(at.saturating_duration_since(now));
        let live = self
            .registrations
            .live
            .values()
            .map(|registration| HandedRegistration {
                ids: registration.ids.clone(),
                register: registration.register.clone(),
                client: registration.client,
                peer: registration.peer,
                age_ms: millis(now.saturating_duration_since(registration.since)),
                expires_in_ms: registration.expires_at.map(left),
                uses: registration.uses.clone(),
                created: registration.created.clone(),
            })
            .collect();
        let handed = Handed {
            next_id: self.registrations.next_id,
            live,
            created: self
                .registrations
                .created
                .iter()
                .map(|(resource, deadline)| (resource.clone(), deadline.map(left)))
                .collect(),
            socket: self.registrations.socket.is_some(),
            clients: handed_clients,
            asking,
        };
        Ok((handed, fds))
    }

    /// Takes over the registrations of the previous main process, with their descriptors
    /// (`fds`, in [`Handed`]'s order); `asking` is the id here of the client that asked for
    /// the upgrade.
    pub(in crate::main_process) fn adopt_registrations(
        &mut self,
        handed: Handed,
        fds: Vec<OwnedFd>,
        asking: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut fds = fds.into_iter();
        if handed.socket {
            let fd = fds.next().context("the registration socket is missing")?;
            self.adopt_registration_socket(fd)?;
        } else {
            self.open_registration_socket();
        }
        let mut ids = Vec::new();
        for (old, restricted) in &handed.clients {
            let fd = fds
                .next()
                .context("a registration's connection is missing")?;
            let stream = std::os::unix::net::UnixStream::from(fd);
            stream.set_nonblocking(true)?;
            let id = self.add_client(mio::net::UnixStream::from_std(stream));
            if let Some(client) = self.clients.get_mut(&id) {
                client.restricted = *restricted;
            }
            ids.push((*old, id));
        }
        ids.extend(handed.asking.zip(asking));
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        for registration in handed.live {
            // A client gone before the upgrade has no connection here: id 0 is nobody's.
            let client = ids
                .iter()
                .find(|(old, _)| *old == registration.client)
                .map_or(0, |(_, id)| *id);
            let since = now
                .checked_sub(Duration::from_millis(registration.age_ms))
                .unwrap_or(now);
            self.registrations.live.insert(
                registration.ids.registration_id.clone(),
                Registration {
                    ids: registration.ids,
                    register: registration.register,
                    client,
                    peer: registration.peer,
                    since,
                    expires_at: registration.expires_in_ms.map(at),
                    uses: registration.uses,
                    created: registration.created,
                },
            );
        }
        self.registrations.created = handed
            .created
            .into_iter()
            .map(|(resource, left)| (resource, left.map(at)))
            .collect();
        self.registrations.next_id = handed.next_id;
        info!(
            "took over {} registration(s) and {} connection(s) they live with",
            self.registrations.live.len(),
            handed.clients.len()
        );
        Ok(())
    }

    fn adopt_registration_socket(&mut self, fd: OwnedFd) -> anyhow::Result<()> {
        let path = self
            .settings
            .registration
            .socket
            .clone()
            .context("a registration socket came without [registration] socket")?;
        let listener = std::os::unix::net::UnixListener::from(fd);
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, REGISTRATION_SOCKET, Interest::READABLE)
            .context("cannot watch the registration socket")?;
        self.registrations.socket = Some(RegistrationSocket { listener, path });
        Ok(())
    }
}
