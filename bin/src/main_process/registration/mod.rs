//! Registrations of services: `REGISTER` orders bound to the connection that sent them (or to
//! a `ttl` renewed by `RENEW`), turned into ordinary orders on the main state.
//!
//! A registration creates what its route lacks ([`plan`]) and adds its own backend. When it
//! ends (its connection closes, its ttl passes, `DEREGISTER`), its backend drains as with
//! `REMOVE_BACKEND`, and each resource registrations created that no live registration uses
//! any more is removed once `[registration] grace_period` has passed, unless a new
//! registration takes it over first. Deadlines are checked by the main loop's timer
//! ([`Main::poll_timeout`](super::Main)); nothing sleeps.
//!
//! The registration socket ([`socket`]) accepts only the three registration orders, within
//! `allowed_hostnames` and `allowed_listen`; the command socket accepts them too, unchecked.

mod handover;
mod plan;
mod socket;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use log::{info, warn};
use sozu_command_lib::{
    certificate,
    config::RegistrationConfig,
    request::{Order, Register, RegistrationId, RegistrationIds, RegistrationInfo, RemoveBackend},
    response::{Response, ResponseContent},
    state::ConfigState,
};

use self::plan::{Resource, plan};
pub use self::{handover::Handed, socket::RegistrationSocket};
use super::{
    Main, ok_message,
    orders::apply_order,
    tasks::{ClientRef, Purpose},
};

/// The live registrations and what registrations created.
#[derive(Debug, Default)]
pub struct Registrations {
    live: BTreeMap<String, Registration>,
    /// Resources registrations created, with the moment each is removed when no live
    /// registration uses it (`None` while one does).
    created: BTreeMap<Resource, Option<Instant>>,
    next_id: u64,
    /// Accepts services' connections, when `[registration] socket` is set.
    pub socket: Option<RegistrationSocket>,
}

#[derive(Debug)]
struct Registration {
    ids: RegistrationIds,
    register: Register,
    /// The command or registration socket client that registered.
    client: u64,
    /// `(uid, pid)` of that client.
    peer: Option<(u32, i32)>,
    since: Instant,
    /// When a `ttl` registration ends unless renewed.
    expires_at: Option<Instant>,
    uses: Vec<Resource>,
    created: Vec<Resource>,
}

impl Registrations {
    /// The earliest moment something must be checked: a ttl or a grace period ending.
    pub fn next_deadline(&self) -> Option<Instant> {
        let expiries = self.live.values().filter_map(|r| r.expires_at);
        let graces = self.created.values().filter_map(|deadline| *deadline);
        expiries.chain(graces).min()
    }

    fn is_used(&self, resource: &Resource) -> bool {
        self.live.values().any(|r| r.uses.contains(resource))
    }
}

/// Why a client may not make a registration, given the registration socket's limits.
fn refusal(
    config: &RegistrationConfig,
    register: &Register,
    state: &ConfigState,
    registrations: &Registrations,
) -> Option<String> {
    if let Some(hostname) = &register.hostname {
        if !config.allows_hostname(hostname) {
            return Some(format!(
                "hostname {hostname} is outside allowed_hostnames of the registration socket"
            ));
        }
    }
    if !config.allows_listen(register.listen) {
        return Some(format!(
            "listen {} is outside allowed_listen of the registration socket",
            register.listen
        ));
    }
    let cluster = Resource::Cluster(register.cluster_id.clone());
    if state.clusters.contains_key(&register.cluster_id)
        && !registrations.created.contains_key(&cluster)
    {
        return Some(format!(
            "cluster {} was not created by a registration: only the command socket may add \
             backends to it",
            register.cluster_id
        ));
    }
    None
}

impl Main {
    /// `REGISTER`: plans the route, applies it to the main state and sends it to the workers;
    /// the answer (`REGISTERED`) leaves once they all applied it.
    pub(super) fn register(&mut self, to: ClientRef, register: Register) {
        let restricted = self.is_restricted(to.client);
        if restricted {
            let config = &self.settings.registration;
            if let Some(message) = refusal(config, &register, &self.state, &self.registrations) {
                warn!("client {}: REGISTER refused: {message}", to.client);
                self.reply(&to, Response::failure(to.request_id.clone(), message));
                return;
            }
        }
        self.registrations.next_id += 1;
        let id = format!("reg-{}", self.registrations.next_id);
        let ids = RegistrationIds {
            registration_id: id.clone(),
            backend_id: format!("{}-{id}", register.cluster_id),
        };
        let planned = match plan(&register, &ids, &self.state) {
            Ok(planned) => planned,
            Err(error) => {
                let message = format!("REGISTER refused: {}", crate::cli::with_causes(&error));
                self.reply(&to, Response::failure(to.request_id.clone(), message));
                return;
            }
        };
        let what = format!(
            "REGISTER of {} ({} {} to {})",
            id, register.protocol, register.listen, register.backend
        );
        let checked = planned.orders.iter().try_for_each(|order| {
            certificate::check_not_expired(order, certificate::unix_now())
                .map_err(|error| crate::cli::with_causes(&error))
        });
        if let Err(message) = checked {
            self.reply(&to, Response::failure(to.request_id.clone(), message));
            return;
        }
        let mut next = self.state.clone();
        for order in &planned.orders {
            if let Err(error) = apply_order(&mut next, order) {
                let message = format!("REGISTER refused: {order}: {error}");
                self.reply(&to, Response::failure(to.request_id.clone(), message));
                return;
            }
        }
        if self.refuse_while_stopping(&Some(to.clone())) {
            return;
        }
        if let Err(error) = self.replace_state(next, &planned.orders) {
            let message = format!("REGISTER refused: {}", crate::cli::with_causes(&error));
            self.reply(&to, Response::failure(to.request_id.clone(), message));
            return;
        }
        for resource in &planned.created {
            self.registrations.created.insert(resource.clone(), None);
        }
        for resource in &planned.uses {
            if let Some(deadline) = self.registrations.created.get_mut(resource) {
                if deadline.take().is_some() {
                    info!("{id} takes over {resource} before its grace period ended");
                }
            }
        }
        let now = Instant::now();
        let peer = self.clients.get(&to.client).and_then(|client| client.peer);
        info!(
            "{what}: registered by {}",
            peer.map_or_else(
                || "an unknown process".to_string(),
                |(uid, pid)| format!("pid {pid} (uid {uid})")
            )
        );
        self.registrations.live.insert(
            id.clone(),
            Registration {
                ids,
                expires_at: register.ttl.map(|ttl| now + ttl),
                register,
                client: to.client,
                peer,
                since: now,
                uses: planned.uses,
                created: planned.created,
            },
        );
        let purpose = Purpose::Register {
            registration_id: id,
        };
        self.commit_as(Some(to), planned.orders, what, purpose);
    }

    /// The final answer to a `REGISTER` once the workers applied it: `REGISTERED`, or FAILURE
    /// after undoing what the registration did, when a worker refused part of it (a listener
    /// address it cannot bind, typically).
    pub(super) fn registered(&mut self, registration_id: &str, failures: &[String]) -> Response {
        let Some(registration) = self.registrations.live.get(registration_id) else {
            return Response::failure(
                "",
                format!("{registration_id} ended before the workers applied it"),
            );
        };
        if failures.is_empty() {
            let ids = registration.ids.clone();
            return Response::ok("", Some(ResponseContent::Registered(ids)));
        }
        let created = registration.created.clone();
        self.end_registration(None, registration_id, "refused by a worker");
        for resource in created {
            if let Some(deadline) = self.registrations.created.get_mut(&resource) {
                if deadline.is_some() {
                    *deadline = Some(Instant::now());
                }
            }
        }
        Response::failure(
            "",
            format!("REGISTER is undone: refused by {}", failures.join("; ")),
        )
    }

    /// `RENEW`: a ttl registration lives for another ttl; a connection's registration is
    /// only confirmed.
    pub(super) fn renew(&mut self, to: ClientRef, id: RegistrationId) {
        let response = match self.own_registration(&to, &id) {
            Err(refusal) => Response::failure(to.request_id.clone(), refusal),
            Ok(()) => {
                let now = Instant::now();
                let registration = self.registrations.live.get_mut(&id.registration_id);
                let ttl = registration.and_then(|registration| {
                    let ttl = registration.register.ttl?;
                    registration.expires_at = Some(now + ttl);
                    Some(ttl)
                });
                let message = match ttl {
                    Some(ttl) => format!("{} renewed for {}s", id.registration_id, ttl.as_secs()),
                    None => format!("{} lives with its connection", id.registration_id),
                };
                ok_message(&to.request_id, message)
            }
        };
        self.reply(&to, response);
    }

    /// `DEREGISTER`: ends the registration now. The answer leaves once the workers stopped
    /// sending new connections to its backend, so that a service can finish what it was
    /// sent and exit without losing a request.
    pub(super) fn deregister(&mut self, to: ClientRef, id: RegistrationId) {
        match self.own_registration(&to, &id) {
            Err(refusal) => self.reply(&to, Response::failure(to.request_id.clone(), refusal)),
            Ok(()) => self.end_registration(Some(to), &id.registration_id, "deregistered"),
        }
    }

    /// `LIST_REGISTRATIONS`.
    pub(super) fn list_registrations(&mut self, to: ClientRef) {
        let now = Instant::now();
        let list = self
            .registrations
            .live
            .values()
            .map(|registration| RegistrationInfo {
                registration_id: registration.ids.registration_id.clone(),
                backend_id: registration.ids.backend_id.clone(),
                register: without_secrets(&registration.register),
                pid: registration.peer.map(|(_, pid)| pid),
                uid: registration.peer.map(|(uid, _)| uid),
                age: Duration::from_secs(now.duration_since(registration.since).as_secs()),
                created: registration
                    .created
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            })
            .collect();
        let response = Response::ok(
            to.request_id.clone(),
            Some(ResponseContent::Registrations(list)),
        );
        self.reply(&to, response);
    }

    /// Whether the registration exists and the client may act on it: on the registration
    /// socket, only the user that registered may.
    fn own_registration(&self, to: &ClientRef, id: &RegistrationId) -> Result<(), String> {
        let Some(registration) = self.registrations.live.get(&id.registration_id) else {
            return Err(format!("no registration `{}`", id.registration_id));
        };
        if self.is_restricted(to.client) {
            let uid = self
                .clients
                .get(&to.client)
                .and_then(|client| client.peer)
                .map(|(uid, _)| uid);
            if uid.is_none() || uid != registration.peer.map(|(uid, _)| uid) {
                return Err(format!("{} belongs to another user", id.registration_id));
            }
        }
        Ok(())
    }

    fn is_restricted(&self, client: u64) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|client| client.restricted)
    }

    /// A client left: the registrations bound to its connection end.
    pub(super) fn registrations_client_gone(&mut self, client: u64) {
        let ended: Vec<String> = self
            .registrations
            .live
            .values()
            .filter(|r| r.client == client && r.register.ttl.is_none())
            .map(|r| r.ids.registration_id.clone())
            .collect();
        for id in ended {
            self.end_registration(None, &id, "its connection closed");
        }
    }

    /// Ends a registration: its backend drains, and what it used that no other registration
    /// uses starts its grace period. `to` gets the answer once the workers applied it.
    fn end_registration(&mut self, to: Option<ClientRef>, id: &str, why: &str) {
        let Some(registration) = self.registrations.live.remove(id) else {
            return;
        };
        let grace = self.settings.registration.grace_period;
        info!(
            "{id} ended ({why}): backend {} drains; what it alone used goes in {grace:?}",
            registration.ids.backend_id
        );
        let cluster_id = &registration.register.cluster_id;
        let has_backend = self
            .state
            .backends
            .get(cluster_id)
            .is_some_and(|backends| backends.contains_key(&registration.ids.backend_id));
        if has_backend {
            let order = Order::RemoveBackend(RemoveBackend {
                cluster_id: cluster_id.clone(),
                backend_id: registration.ids.backend_id.clone(),
                address: registration.register.backend,
                drain_timeout: None,
            });
            let what = format!("{id} deregistered ({why}): its backend drains");
            self.change_batch(to, vec![order], what, |_| {
                "the backend's removal".to_string()
            });
        } else if let Some(to) = to {
            let message = format!("{id} deregistered: it had no backend left");
            self.reply(&to, ok_message(&to.request_id, message));
        }
        let deadline = Instant::now() + grace;
        for resource in registration.uses {
            if self.registrations.is_used(&resource) {
                continue;
            }
            if let Some(slot) = self.registrations.created.get_mut(&resource) {
                *slot = Some(deadline);
            }
        }
    }

    /// Ends the ttl registrations not renewed in time, and removes what registrations created
    /// whose grace period ended.
    pub(super) fn check_registrations(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .registrations
            .live
            .values()
            .filter(|r| r.expires_at.is_some_and(|at| at <= now))
            .map(|r| r.ids.registration_id.clone())
            .collect();
        for id in expired {
            self.end_registration(None, &id, "not renewed within its ttl");
        }
        let due: Vec<Resource> = self
            .registrations
            .created
            .iter()
            .filter(|(_, deadline)| deadline.is_some_and(|at| at <= now))
            .map(|(resource, _)| resource.clone())
            .collect();
        // In the map's order: frontends first, listeners last.
        for resource in due {
            self.registrations.created.remove(&resource);
            if let Some(order) = resource.removal(&self.state) {
                info!("removing {resource}: its grace period ended with no registration");
                self.change(None, order);
            }
        }
    }

    /// `target` (a reloaded configuration's state) with the routes of the live registrations,
    /// so that a reload does not take them away.
    pub(super) fn with_registrations(&self, mut target: ConfigState) -> ConfigState {
        for registration in self.registrations.live.values() {
            let Ok(planned) = plan(&registration.register, &registration.ids, &target) else {
                warn!(
                    "reload: {} no longer fits the configuration; it is dropped",
                    registration.ids.registration_id
                );
                continue;
            };
            let mut next = target.clone();
            if planned
                .orders
                .iter()
                .all(|order| apply_order(&mut next, order).is_ok())
            {
                target = next;
            }
        }
        target
    }
}

/// A registration as listed: its private key left out.
fn without_secrets(register: &Register) -> Register {
    let mut register = register.clone();
    if register.key.is_some() {
        register.key = Some("(hidden)".to_string());
    }
    register
}
