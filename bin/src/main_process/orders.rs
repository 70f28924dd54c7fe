//! What the main process does with each request of a client: answer it from its own state,
//! change its state and pass the change to the workers, ask the workers, or act on
//! processes (stop, upgrade, one more worker).
//!
//! A change is applied to the main state first: if the state refuses it, the client gets
//! FAILURE and nothing reaches the workers. A reload is checked in full on a copy of the state,
//! so that one bad order changes nothing; a state load is merged order by order, as in Sōzu
//! (see [`super::state_file`]).

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Instant,
};

use log::{debug, error, info, warn};
use sozu_command_lib::{
    certificate,
    config::Config,
    request::{Order, Request, StateFormat, WorkerId},
    response::{EventKind, Response, ResponseContent, RunState, WorkerInfo},
    state::{Checked, ConfigState},
};
use sozu_lib::{protocol::tls::KeyCheck, server::check};

use super::{
    BatchJson, Delivery, Main, Stop, audit,
    delivery::{OrderStream, Serving},
    listeners::{self, ListenerSockets},
    ok_message, queries, state_file,
    tasks::{ClientRef, Purpose, Task},
};
use crate::cli::with_causes;

impl Main {
    pub(super) fn handle_request(&mut self, client: u64, request: Request) {
        let Request { id, order } = request;
        *self.request_counts.entry(order.name()).or_insert(0) += 1;
        debug!("client {client}: {order} ({id})");
        if let Some(sender) = self.clients.get(&client) {
            let socket = match (sender.restricted, &self.settings.registration.socket) {
                (true, Some(path)) => path.as_path(),
                _ => self.settings.command_socket.as_path(),
            };
            self.audit
                .record(&audit::Actor::of(sender, socket), &id, &order);
        }
        let to = ClientRef {
            client,
            request_id: id.clone(),
        };
        let answer = |content| Response::ok(id.clone(), Some(content));
        if !order.is_registration() && self.clients.get(&client).is_some_and(|c| c.restricted) {
            let message = format!(
                "{order} is refused: the registration socket takes REGISTER, RENEW and DEREGISTER only"
            );
            self.reply(&to, Response::failure(id, message));
            return;
        }
        match order {
            Order::Status => self.status(to),
            Order::ListWorkers => {
                let workers = self.worker_list();
                self.reply(&to, answer(ResponseContent::Workers(workers)));
            }
            Order::ListListeners => {
                let listeners = queries::listeners(&self.state);
                self.reply(&to, answer(ResponseContent::Listeners(listeners)));
            }
            Order::ListFrontends(filters) => {
                let frontends = queries::frontends(&self.state, &filters);
                self.reply(&to, answer(ResponseContent::Frontends(frontends)));
            }
            Order::QueryClustersByDomain(filter) => {
                let clusters = queries::clusters_by_domain(&self.state, &filter);
                self.reply(&to, answer(ResponseContent::Clusters(clusters)));
            }
            Order::QueryClusterById(query) => {
                if self.state.clusters.contains_key(&query.cluster_id) {
                    let purpose = Purpose::ClusterById {
                        cluster_id: query.cluster_id.clone(),
                    };
                    self.ask_workers(to, purpose, Order::QueryClusterById(query));
                } else {
                    let message = format!("no cluster `{}`", query.cluster_id);
                    self.reply(&to, Response::failure(id, message));
                }
            }
            Order::QueryClustersHashes => {
                let hashes = queries::cluster_hashes(&self.state);
                self.reply(&to, answer(ResponseContent::ClusterHashes(hashes)));
            }
            Order::QueryClustersOfWorkers(query) => {
                let order = query.query();
                self.ask_workers(to, Purpose::ClustersOfWorkers { query }, order);
            }
            Order::QueryCertificatesFromTheState(filters) => {
                let certificates = self.state.certificate_summaries(&filters);
                self.reply(&to, answer(ResponseContent::Certificates(certificates)));
            }
            Order::QueryMaxConnectionsPerIp => {
                let limit = self.state.max_connections_per_ip;
                self.reply(&to, answer(ResponseContent::MaxConnectionsPerIp(limit)));
            }
            Order::ListFaults => self.list_faults(to),
            Order::QueryHealthChecks(filter) => {
                let checks = queries::health_checks(&self.state, filter.cluster_id.as_deref());
                self.reply(&to, answer(ResponseContent::HealthChecks(checks)));
            }
            Order::CountRequests => {
                let mut counts = queries::state_counts(&self.state);
                counts.extend(
                    self.request_counts
                        .iter()
                        .map(|(name, count)| (format!("orders.{name}"), *count)),
                );
                counts.extend(self.fleet_counts());
                self.reply(&to, answer(ResponseContent::RequestCounts(counts)));
            }
            Order::QueryMetrics(query) => {
                let purpose = Purpose::Metrics {
                    list: query.list,
                    workers: query.workers,
                    histograms: query.histograms,
                };
                self.ask_workers(to, purpose, Order::QueryMetrics(query));
            }
            order @ (Order::QueryCertificatesFromWorkers(_) | Order::ConfigureMetrics(_)) => {
                self.ask_workers(to, Purpose::Forward { note: None }, order);
            }
            Order::Logging(filter) => self.set_log_filter(to, filter.filter),
            Order::SubscribeEvents => {
                if let Some(client) = self.clients.get_mut(&client) {
                    client.subscribed = true;
                }
                let message =
                    "subscribed: events follow, one JSON response per line, with id EVENT";
                self.reply(&to, ok_message(&id, message));
                // A new subscriber learns at once of certificates about to expire.
                for event in self.expiring_certificates() {
                    let response = Response::ok(
                        sozu_lib::server::EVENT_RESPONSE_ID,
                        Some(ResponseContent::Event(event)),
                    );
                    self.send_to_client(client, &response);
                }
            }
            Order::SaveState(path) => self.save_state_to(to, Path::new(&path.path), path.format),
            Order::LoadState(path) => self.load_state_from(Some(to), Path::new(&path.path)),
            Order::ReloadConfiguration(reload) => {
                self.reload(Some(to), reload.path.map(PathBuf::from));
            }
            Order::UpgradeMain => self.request_main_upgrade(Some(to)),
            Order::UpgradeWorker(WorkerId { worker_id }) => self.upgrade_worker(to, worker_id),
            Order::LaunchWorker => self.one_more_worker(Some(to)),
            Order::Register(register) => self.register(to, register),
            Order::Renew(registration) => self.renew(to, registration),
            Order::Deregister(registration) => self.deregister(to, registration),
            Order::ListRegistrations => self.list_registrations(to),
            Order::BeginBatch | Order::EndBatch => {
                let message = format!("{order} is sent by the main process to its workers only");
                self.reply(&to, Response::failure(id, message));
            }
            Order::SoftStop => self.begin_stop(false, Some(to)),
            Order::HardStop => self.begin_stop(true, Some(to)),
            order => self.change(Some(to), order),
        }
    }

    /// The workers as the main process knows them, and the slots waiting for a restart.
    pub(super) fn worker_list(&self) -> Vec<WorkerInfo> {
        let workers = self.workers.values().map(|w| w.info());
        let waiting = self.pending_restarts.iter().map(|(id, p)| p.info(*id));
        workers.chain(waiting).collect()
    }

    /// `STATUS`: asks every worker for its status; those that do not answer in time are
    /// NOT_ANSWERING.
    fn status(&mut self, to: ClientRef) {
        let targets: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.channel_closed_at.is_none())
            .map(|w| w.id)
            .collect();
        let task = Task::new(Purpose::Status, Some(to), self.settings.worker_timeout);
        self.start_task(task, &targets, &[Order::Status]);
    }

    /// Sends a query to every serving worker; the answers are merged when all are in.
    fn ask_workers(&mut self, to: ClientRef, purpose: Purpose, order: Order) {
        let targets = self.serving_workers();
        let task = Task::new(purpose, Some(to), self.settings.worker_timeout);
        self.start_task(task, &targets, &[order]);
    }

    /// Refuses a change while the proxy stops, or while the state is handed to a new main
    /// process (which gets it as it was). Returns whether it refused.
    pub(super) fn refuse_while_stopping(&mut self, to: &Option<ClientRef>) -> bool {
        let Some(refusal) = self.change_refusal() else {
            return false;
        };
        match to {
            Some(to) => self.reply(to, Response::failure(to.request_id.clone(), refusal)),
            None => warn!("refused: {refusal}"),
        }
        true
    }

    /// Why no change is taken now, if so.
    fn change_refusal(&self) -> Option<&'static str> {
        if self.stop.is_some() {
            Some("sozu is stopping")
        } else if self.is_handing_over() {
            Some("an upgrade of the main process is in progress: try again when it ends")
        } else {
            None
        }
    }

    /// Orders that change the state, all or none, for a caller that follows the workers
    /// itself (the Toxiproxy API): returns the workers to send them to, or why they are
    /// refused.
    pub(super) fn apply_changes(
        &mut self,
        orders: Vec<Order>,
    ) -> Result<(Vec<u32>, Vec<Order>), Refused> {
        if let Some(refusal) = self.change_refusal() {
            return Err(Refused::ByState(refusal.to_string()));
        }
        let mut next = self.state.clone();
        for order in &orders {
            apply_order(&mut next, order)
                .map_err(|error| Refused::ByState(format!("{order} is refused: {error}")))?;
        }
        self.replace_state(next, &orders)
            .map_err(Refused::CannotListen)?;
        self.follow_listeners(&orders);
        self.committed(&orders);
        Ok((self.serving_workers(), orders))
    }

    /// One order of a client that changes the state. A certificate it brings is judged
    /// against the clock here, once: replaying the state later never judges it again.
    pub(super) fn change(&mut self, to: Option<ClientRef>, order: Order) {
        if self.refuse_while_stopping(&to) {
            return;
        }
        let checked = certificate::check_not_expired(&order, certificate::unix_now())
            .map_err(|error| with_causes(&error))
            .and_then(|()| take_order(&mut self.state, &mut self.listeners, &order));
        if let Err(message) = checked {
            if let Some(to) = &to {
                self.reply(to, Response::failure(to.request_id.clone(), message));
            }
            return;
        }
        let what = order.name().to_string();
        self.commit(to, vec![order], what);
    }

    /// Orders that change the state, all or none: the first one the state refuses is named
    /// (`describe` says where it comes from, by its index) and nothing changes.
    pub(super) fn change_batch(
        &mut self,
        to: Option<ClientRef>,
        orders: Vec<Order>,
        what: String,
        describe: impl Fn(usize) -> String,
    ) -> bool {
        if self.refuse_while_stopping(&to) {
            return false;
        }
        let mut next = self.state.clone();
        for (index, order) in orders.iter().enumerate() {
            if let Err(error) = apply_order(&mut next, order) {
                let message = format!(
                    "{what}: {} ({order}) is refused: {error}; nothing was changed",
                    describe(index),
                );
                warn!("{message}");
                if let Some(to) = &to {
                    self.reply(to, Response::failure(to.request_id.clone(), message));
                }
                return false;
            }
        }
        if let Err(error) = self.replace_state(next, &orders) {
            let message = format!("{what}: {}; nothing was changed", with_causes(&error));
            warn!("{message}");
            if let Some(to) = &to {
                self.reply(to, Response::failure(to.request_id.clone(), message));
            }
            return false;
        }
        self.commit(to, orders, what);
        true
    }

    /// Orders the main state accepted: what follows every change ([`Main::committed`]), then
    /// the orders go to every serving worker.
    fn commit(&mut self, to: Option<ClientRef>, orders: Vec<Order>, what: String) {
        let purpose = Purpose::Change { what: what.clone() };
        self.commit_as(to, orders, what, purpose);
    }

    /// [`Main::commit`] of orders whose final answer `purpose` makes.
    pub(super) fn commit_as(
        &mut self,
        to: Option<ClientRef>,
        orders: Vec<Order>,
        what: String,
        purpose: Purpose,
    ) {
        self.follow_listeners(&orders);
        let Some((targets, task)) = self.committed_task(to, &orders, what, purpose) else {
            return;
        };
        // Many orders (a reload) are answered once by each worker, not once per order:
        // 120,000 answers to read cost the main process more than the orders.
        if orders.len() > 1 {
            let batch = BatchJson::new(&orders);
            self.start_task_as(task, &targets, Delivery::Batch(&batch));
        } else {
            self.start_task_as(task, &targets, Delivery::OneAnswerEach(&orders));
        }
    }

    /// [`Main::commit_as`] of orders already queued for the workers as the state took them
    /// (a state load's, see [`OrderStream`]), their listener sockets followed as they went:
    /// the task ends their batch.
    fn commit_streamed(
        &mut self,
        to: Option<ClientRef>,
        orders: &[Order],
        stream: OrderStream,
        what: String,
        purpose: Purpose,
    ) {
        let Some((targets, mut task)) = self.committed_task(to, orders, what, purpose) else {
            return;
        };
        for (worker, failure) in stream.into_failures() {
            task.fail(worker, failure);
        }
        self.start_task_as(task, &targets, Delivery::EndOfBatch);
    }

    /// What follows the orders the main state took ([`Main::committed`]), then the workers
    /// that must get them and the task that waits for their answers, once the client was told
    /// where they go; `None` when no worker runs (the client was told so).
    fn committed_task(
        &mut self,
        to: Option<ClientRef>,
        orders: &[Order],
        what: String,
        purpose: Purpose,
    ) -> Option<(Vec<u32>, Task)> {
        self.committed(orders);
        let targets = self.serving_workers();
        if targets.is_empty() && matches!(purpose, Purpose::Change { .. }) {
            if let Some(to) = &to {
                let message = format!("{what}: applied; no worker is running");
                self.reply(to, ok_message(&to.request_id, message));
            }
            return None;
        }
        if let Some(to) = &to {
            let message = format!("{what}: sent to {} worker(s)", targets.len());
            self.reply(to, Response::processing(to.request_id.clone(), message));
        }
        let task = Task::new(purpose, to, self.settings.worker_timeout);
        Some((targets, task))
    }

    /// What follows orders the state took once they are on their way to the workers, their
    /// listener sockets followed already ([`Main::follow_listeners`]): the faults' leases and
    /// events, the automatic save. Only the orders of [`acts_when_committed`] matter to it.
    fn committed(&mut self, orders: &[Order]) {
        self.faults_committed(orders);
        self.save_automatically();
    }

    fn save_automatically(&mut self) {
        if !self.settings.automatic_state_save {
            return;
        }
        if let Some(path) = self.settings.saved_state.clone() {
            match state_file::save(&self.state, &path, StateFormat::Orders) {
                Ok(count) => debug!("state saved to {} ({count} orders)", path.display()),
                Err(error) => error!("cannot save the state to {}: {error}", path.display()),
            }
        }
    }

    fn save_state_to(&mut self, to: ClientRef, path: &Path, format: StateFormat) {
        let response = match state_file::save(&self.state, path, format) {
            Ok(count) => {
                let message = format!("state saved to {} ({count} orders)", path.display());
                info!("{message}");
                self.event(EventKind::StateSaved, message.clone());
                ok_message(&to.request_id, message)
            }
            Err(error) => Response::failure(
                to.request_id.clone(),
                format!("cannot save the state to {}: {error}", path.display()),
            ),
        };
        self.reply(&to, response);
    }

    /// `LOAD_STATE`: the orders of a saved state file, merged into the current state as Sōzu
    /// loads a state ([`state_file::merge`]). The client gets FAILURE naming each refused
    /// line, once the rest is applied.
    fn load_state_from(&mut self, to: Option<ClientRef>, path: &Path) {
        if self.refuse_while_stopping(&to) {
            return;
        }
        let orders = fs::File::open(path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))
            .and_then(|file| state_file::read(io::BufReader::new(file)));
        let orders = match orders {
            Ok(orders) => orders,
            Err(error) => {
                if let Some(to) = &to {
                    let message = format!("state not loaded: {error}");
                    self.reply(to, Response::failure(to.request_id.clone(), message));
                }
                return;
            }
        };
        // The orders go to the workers as the state takes them, in a batch ended by the task
        // started below, which takes the id reserved here.
        let mut stream = OrderStream::new(
            (self.next_task + 1).to_string(),
            self.settings.worker_timeout,
        );
        let targets = if self.is_handing_over() {
            Vec::new()
        } else {
            self.serving_workers()
        };
        let workers = &mut self.workers;
        let merged = state_file::merge(
            &mut self.state,
            &mut self.listeners,
            orders,
            |sockets, order, json| {
                listeners::follow(sockets, workers, order);
                let mut serving = Serving {
                    workers,
                    targets: &targets,
                };
                stream.send(&mut serving, order, json, None);
            },
        );
        self.listeners.settle();
        let what = format!("state load from {} ({})", path.display(), merged.summary());
        info!("{what}");
        for conflict in &merged.conflicts {
            warn!("state load from {}: {conflict}", path.display());
        }
        self.event(EventKind::StateLoaded, what.clone());
        let (waiting, refused) = if merged.conflicts.is_empty() {
            (to, None)
        } else {
            let message = format!(
                "{what}; the other orders were applied: {}",
                merged.conflicts.join("; ")
            );
            (None, to.map(|to| (to, message)))
        };
        if merged.applied == 0 {
            if let Some(to) = &waiting {
                self.reply(to, ok_message(&to.request_id, format!("{what}: done")));
            }
        } else {
            let purpose = Purpose::Change { what: what.clone() };
            self.commit_streamed(waiting, &merged.to_commit, stream, what, purpose);
        }
        if let Some((to, message)) = refused {
            self.reply(&to, Response::failure(to.request_id.clone(), message));
        }
    }

    /// Applies the difference between the running state and a configuration file (the one
    /// the proxy started with when `path` is `None`), between RELOADING=1 and READY=1 for
    /// systemd: READY=1 waits until the workers answered the changes.
    pub(super) fn reload(&mut self, to: Option<ClientRef>, path: Option<PathBuf>) {
        self.notifier.reloading();
        let last_task = self.next_task;
        let status = self.apply_reload(to, path);
        let task = self.next_task;
        if task != last_task && self.tasks.contains_key(&task) {
            self.notifier.reload_waits_for(task);
        } else {
            self.notifier.ready(&status);
        }
    }

    /// [`Main::reload`]'s work; returns a line on its outcome for systemd's status.
    fn apply_reload(&mut self, to: Option<ClientRef>, path: Option<PathBuf>) -> String {
        let path = path.unwrap_or_else(|| self.settings.config_path.clone());
        let target = match config_state(&path) {
            Ok(target) => target,
            Err(message) => {
                error!("reload refused: {message}");
                let status = format!("reload refused: {message}");
                if let Some(to) = &to {
                    let response = Response::failure(to.request_id.clone(), message);
                    self.reply(to, response);
                }
                return status;
            }
        };
        let target = self.with_registrations(self.with_fleet(target));
        let orders = self.state.diff(&target);
        if orders.is_empty() {
            info!("reload of {}: no change", path.display());
            if let Some(to) = &to {
                let message = format!("reload of {}: no change", path.display());
                self.reply(to, ok_message(&to.request_id, message));
            }
            return "reload: no change".to_string();
        }
        let count = orders.len();
        let what = format!("reload of {} ({count} changes)", path.display());
        info!("{what}");
        let names: Vec<&'static str> = orders.iter().map(Order::name).collect();
        if self.change_batch(to, orders, what, |index| {
            format!("change {} ({})", index + 1, names.get(index).unwrap_or(&""))
        }) {
            let message = format!("configuration {} reloaded: {count} changes", path.display());
            self.event(EventKind::ConfigurationReloaded, message.clone());
            message
        } else {
            format!("reload of {} refused", path.display())
        }
    }

    fn set_log_filter(&mut self, to: ClientRef, filter: String) {
        if let Err(message) = crate::logging::check_filter(&filter) {
            self.reply(&to, Response::failure(to.request_id.clone(), message));
            return;
        }
        crate::logging::set_filter(&filter);
        info!("log filter set to `{filter}`");
        self.log_filter = filter.clone();
        let note = format!("main process: log filter set to `{filter}`");
        self.ask_workers(
            to,
            Purpose::Forward { note: Some(note) },
            Order::Logging(sozu_command_lib::request::LoggingFilter { filter }),
        );
    }

    /// One more worker (`LAUNCH_WORKER`, SIGTTIN).
    pub(super) fn one_more_worker(&mut self, to: Option<ClientRef>) {
        if self.refuse_while_stopping(&to) {
            return;
        }
        self.desired_workers += 1;
        let response = match self.launch_new_worker() {
            Some(id) => Ok(format!("worker {id} launched")),
            None => Err("cannot launch a worker: see the main process's log".to_string()),
        };
        if let Some(to) = &to {
            let response = match response {
                Ok(message) => ok_message(&to.request_id, message),
                Err(message) => Response::failure(to.request_id.clone(), message),
            };
            self.reply(to, response);
        }
    }

    /// One less worker (SIGTTOU): the newest serving worker finishes its sessions and exits.
    pub(super) fn one_less_worker(&mut self) {
        if self.refuse_while_stopping(&None) {
            return;
        }
        let serving = self.serving_workers();
        if serving.len() <= 1 {
            warn!(
                "one less worker: refused, {} worker(s) serving",
                serving.len()
            );
            return;
        }
        if let Some(&id) = serving.last() {
            self.desired_workers = self.desired_workers.saturating_sub(1);
            info!("one less worker: stopping worker {id}");
            self.retire_worker(id);
        }
    }

    /// Stops every worker, softly (they finish their sessions) or hard; the main process exits
    /// once they are gone.
    pub(super) fn begin_stop(&mut self, hard: bool, to: Option<ClientRef>) {
        let kind = if hard { "hard" } else { "soft" };
        self.abort_handover(&format!("a {kind} stop was asked"));
        if let Some(to) = &to {
            let message = format!("{kind} stop of {} worker(s)", self.workers.len());
            self.reply(to, Response::processing(to.request_id.clone(), message));
        }
        let kill_at = hard.then(|| Instant::now() + self.settings.worker_timeout);
        match &mut self.stop {
            Some(stop) => {
                stop.clients.extend(to);
                if hard && !stop.hard {
                    stop.hard = true;
                    stop.kill_at = kill_at;
                } else {
                    return;
                }
            }
            None => {
                self.stop = Some(Stop {
                    hard,
                    clients: to.into_iter().collect(),
                    kill_at,
                });
            }
        }
        info!("{kind} stop requested");
        self.notifier.stopping(&format!("{kind} stop"));
        let order = if hard {
            Order::HardStop
        } else {
            Order::SoftStop
        };
        for worker in self.workers.values_mut() {
            worker.run_state = RunState::Stopping;
            if let Err(error) = worker
                .channel
                .write_message(&Request::new("stop", order.clone()))
            {
                warn!("cannot tell worker {} to stop: {error}", worker.id);
                let _ = worker.kill();
            }
        }
    }
}

/// Whether [`Main::committed`] does anything with `order` (a fault's lease or event): a
/// state load keeps those orders only.
pub(super) fn acts_when_committed(order: &Order) -> bool {
    matches!(
        order,
        Order::AddFault(_) | Order::UpdateFault(_) | Order::RemoveFault(_) | Order::ResetFaults
    )
}

/// Applies an order to a state after the check every worker makes (the verdict of
/// [`sozu_lib::server::validate`]): an order the main state takes is never refused by a
/// worker, so the main state never holds what the workers do not. A certificate's key is
/// compared with the certificate by their public parts ([`KeyCheck::PublicPart`]); the
/// workers decode it at its first handshake.
pub fn apply_order(state: &mut ConfigState, order: &Order) -> Result<(), String> {
    let checked = check(state, order, KeyCheck::PublicPart).map_err(|error| with_causes(&error))?;
    state
        .apply_checked(order, checked)
        .map_err(|error| with_causes(&error))
}

/// [`apply_order`] to the main state, whose listener sockets follow it: the address of an
/// activation is bound once the order passed its check and before the state takes it
/// ([`ListenerSockets::bind_activations`]), so that an address the main process cannot bind
/// refuses the order (naming the address and the system's error) and changes nothing.
pub fn take_order(
    state: &mut ConfigState,
    sockets: &mut ListenerSockets,
    order: &Order,
) -> Result<(), String> {
    let checked = check(state, order, KeyCheck::PublicPart).map_err(|error| with_causes(&error))?;
    sockets
        .bind_activations([order])
        .map_err(|error| with_causes(&error))?;
    state.apply_checked(order, checked).map_err(|error| {
        sockets.release();
        with_causes(&error)
    })
}

/// Why the main process refuses a change ([`Main::apply_changes`]).
#[derive(Debug)]
pub(super) enum Refused {
    /// The state refuses one of its orders, or no change is taken now.
    ByState(String),
    /// The main process cannot listen on an address the change activates.
    CannotListen(listeners::BindError),
}

/// The routing state a configuration file describes.
fn config_state(path: &Path) -> Result<ConfigState, String> {
    let (config, _) = Config::load(path).map_err(|errors| {
        format!(
            "{} is invalid: {}",
            path.display(),
            errors
                .errors()
                .iter()
                .map(|error| with_causes(error))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    state_of_config(config).map_err(|error| format!("{}: {error}", path.display()))
}

/// The routing state a loaded configuration describes, each order checked as the workers
/// check it: what `sozu config check` accepts, `sozu start` and a reload accept too.
pub fn state_of_config(config: Config) -> Result<ConfigState, String> {
    state_of_orders(config.into_order_iter())
}

/// The routing state `orders` build from empty, each checked as the workers check it; the
/// state takes each order's content instead of a copy.
pub fn state_of_orders(orders: impl IntoIterator<Item = Order>) -> Result<ConfigState, String> {
    let mut state = ConfigState::new();
    apply_orders(&mut state, orders, |_, _| {})?;
    Ok(state)
}

/// Applies `orders` to `state` in turn, each checked as the workers check it, the state taking
/// each order's content; `checked` sees each order once its check passed, with what the check
/// found (the facts of a certificate), before the state takes it (the start sends it to the
/// workers then). Stops at the first order refused.
pub fn apply_orders(
    state: &mut ConfigState,
    orders: impl IntoIterator<Item = Order>,
    mut checked: impl FnMut(&Order, &Checked),
) -> Result<(), String> {
    for order in orders {
        let applied = match check(state, &order, KeyCheck::PublicPart) {
            Ok(proof) => {
                checked(&order, &proof);
                state.apply_owned(order, proof).map_err(|refused| {
                    let (error, order) = *refused;
                    (with_causes(&error), order)
                })
            }
            Err(error) => Err((with_causes(&error), order)),
        };
        if let Err((error, order)) = applied {
            return Err(format!("the {order} order is refused: {error}"));
        }
    }
    Ok(())
}
