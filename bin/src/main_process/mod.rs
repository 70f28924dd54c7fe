//! The main process: it holds the authoritative routing state, the listener sockets and the
//! command socket, starts and restarts the workers, and passes every order to them.
//!
//! One thread, one `mio` event loop, whose sources are: the command socket and its clients
//! ([`command_server`]), the workers' channels ([`workers`], kept running by [`supervision`]),
//! the signals ([`signals`]), and the waker shared by the etcd thread when `[provider.etcd]`
//! is set ([`provider`]) and the handover thread of an upgrade.
//! An order from a client is applied to the main state first, then sent to every worker; the
//! client gets its final answer once they all answered ([`tasks`]). Hot upgrades hand
//! everything to a new main process ([`upgrade`]).

mod audit;
mod command_server;
mod dashboard;
mod delivery;
mod faults;
mod listeners;
mod notify;
mod orders;
mod prometheus;
mod provider;
mod queries;
mod registration;
mod settings;
mod signals;
mod startup;
mod state_file;
mod supervision;
mod task_answers;
mod tasks;
mod toxiproxy;
mod upgrade;
mod workers;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use log::{error, info, warn};
use mio::{Events, Interest, Poll, Token, Waker, net::UnixListener};
use slab::Slab;
use sozu_command_lib::{
    config::Config,
    request::Order,
    response::{Event, EventKind, Response, ResponseContent, RunState},
    state::ConfigState,
};
use sozu_lib::server::EVENT_RESPONSE_ID;

use self::{
    command_server::Client,
    delivery::{BatchJson, Delivery, send_orders},
    listeners::ListenerSockets,
    settings::Settings,
    tasks::{ClientRef, Task},
    workers::{PendingRestart, Process, Worker},
};
pub use self::{
    orders::state_of_orders,
    upgrade::{HandoverArgs, run_handed_over},
};
use crate::logging;

const COMMAND_SOCKET: Token = Token(0);
const SIGNALS: Token = Token(1);
const PROMETHEUS: Token = Token(2);
/// Threads of the main process (the etcd watcher of `[provider.etcd]`, the handover thread of
/// an upgrade) wake the loop with this token; mio allows one waker per poll, so they share it.
const WAKER: Token = Token(3);
/// The registration socket (`[registration] socket`).
const REGISTRATION_SOCKET: Token = Token(4);
/// Tokens of clients and workers are their key in [`Main::owners`] plus this.
const FIRST_OWNER_TOKEN: usize = 5;

/// How long a worker whose channel closed may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a retiring worker keeps its sessions that have not sent a byte yet.
const RETIRE_GRACE: Duration = Duration::from_secs(1);

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Client(u64),
    Worker(u32),
    /// A connection to the Prometheus endpoint.
    Scrape(u64),
    /// The listener of the Toxiproxy-compatible API.
    ToxiproxyListener,
    /// A connection to the Toxiproxy-compatible API.
    Toxiproxy(u64),
}

/// A stop in progress: workers were told to stop; the main process exits once they are gone.
#[derive(Debug)]
struct Stop {
    hard: bool,
    /// Clients waiting for the final answer.
    clients: Vec<ClientRef>,
    /// When remaining workers are killed (hard stops only).
    kill_at: Option<Instant>,
}

/// Why the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Every worker stopped: remove the socket and pid files.
    Stopped,
    /// A new main process took over: leave its files alone.
    HandedOver,
}

pub struct Main {
    poll: Poll,
    owners: Slab<Owner>,
    settings: Settings,
    /// This binary, as it was at start: an upgrade runs the file now at this path.
    exe: PathBuf,
    state: ConfigState,
    listeners: ListenerSockets,
    command_listener: UnixListener,
    clients: HashMap<u64, Client>,
    next_client: u64,
    workers: BTreeMap<u32, Worker>,
    /// Worker slots whose process keeps dying, restarted after a delay.
    pending_restarts: BTreeMap<u32, PendingRestart>,
    next_worker_id: u32,
    /// How many workers should run; SIGTTIN and SIGTTOU change it.
    desired_workers: usize,
    tasks: HashMap<u64, Task>,
    next_task: u64,
    signals: signal_hook_mio::v1_0::Signals,
    stop: Option<Stop>,
    replacement: Option<upgrade::Replacement>,
    /// An upgrade of the main process waiting for in-flight tasks to end and channels to drain.
    pending_main_upgrade: Option<upgrade::PendingUpgrade>,
    /// The new main process of an upgrade, being handed everything.
    successor: Option<upgrade::Successor>,
    /// Wakes the loop from the handover thread.
    waker: Arc<Waker>,
    /// Orders received from clients since start, by name.
    request_counts: BTreeMap<&'static str, u64>,
    /// The log filter in force, given to workers started from now on.
    log_filter: String,
    exit: Option<Exit>,
    /// The Prometheus endpoint, and the scrapes in progress.
    prometheus: Option<mio::net::TcpListener>,
    scrapes: HashMap<u64, prometheus::Scrape>,
    next_scrape: u64,
    /// What the dashboard page of the Prometheus endpoint keeps between its requests.
    dashboard: dashboard::Dashboard,
    /// When certificates are next checked for their coming expiry.
    next_expiry_check: Instant,
    /// The etcd provider, when configured.
    fleet: Option<provider::Fleet>,
    /// Services' registrations and the registration socket.
    registrations: registration::Registrations,
    fault_leases: faults::Leases,
    /// The Toxiproxy-compatible API, when `[toxiproxy]` is set.
    toxiproxy: Option<toxiproxy::ToxiproxyApi>,
    /// systemd's readiness notifications.
    notifier: notify::Notifier,
    /// `audit_logs_target` and `audit_logs_json_target`.
    audit: audit::Audit,
}

/// A certificate whose validity ends within this time is reported, once a day.
const EXPIRY_NOTICE: Duration = Duration::from_secs(30 * 24 * 3600);
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `sozu start`: loads the configuration, opens the sockets, starts the workers and serves
/// until stopped.
pub fn start(config_path: &Path) -> ExitCode {
    // Until the state is built: the blocks the configuration's reading frees are reused for
    // the document and the state instead of being unmapped and faulted in again.
    let heap_only = crate::sys::HeapOnly::begin();
    let (config, warnings) = match Config::load(config_path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors.errors() {
                eprintln!("error: {}", crate::cli::with_causes(error));
            }
            eprintln!(
                "{}: invalid, {} error(s): sozu did not start",
                config_path.display(),
                errors.errors().len()
            );
            return ExitCode::FAILURE;
        }
    };
    for warning in &warnings {
        eprintln!("{}: {warning}", warning.severity);
    }
    let config_path = std::path::absolute(config_path).unwrap_or(config_path.to_path_buf());
    let settings = Settings::new(config_path, &config);
    logging::init(
        "main",
        &settings.log_filter,
        settings.log_output.clone(),
        settings.log_colored,
    );
    // The state takes the parsed file's frontends: keeping the file while serving doubled the
    // main process's memory per frontend, and copying them was a tenth of a start.
    let booted = boot(settings, config);
    drop(heap_only);
    crate::sys::release_free_memory();
    match booted {
        Ok(main) => main.run(),
        Err(error) => {
            error!("cannot start: {error:#}");
            eprintln!("error: cannot start: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the state, opens the sockets, writes the pid file and starts the workers.
///
/// The workers start once the listeners are bound and get each order of the configuration
/// once it passed its check, so that they apply the state while the main process builds it
/// ([`startup`]). With a saved state to merge, they start once the whole state is built.
fn boot(settings: Settings, config: Config) -> anyhow::Result<Main> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let command_listener = command_server::bind(
        &settings.command_socket,
        settings.command_allowed_uids.is_some(),
    )?;
    let socket = settings.command_socket.clone();
    let (mut main, early) = match startup::build(settings, exe, config, command_listener) {
        Ok(built) => built,
        Err(error) => {
            let _ = fs::remove_file(&socket);
            return Err(error);
        }
    };
    main.serve_prometheus();
    main.open_registration_socket();
    main.serve_toxiproxy();
    main.write_pid_file();
    match early {
        Some(early) => {
            main.next_worker_id = u32::from(main.settings.worker_count);
            main.adopt_early_workers(early);
        }
        None => {
            // Every worker starts at once; the state's orders are built once for all.
            let ids: Vec<u32> = (0..main.desired_workers)
                .filter_map(|_| {
                    let id = main.next_worker_id;
                    main.next_worker_id += 1;
                    main.spawn_worker(id, 0).map(|_| id)
                })
                .collect();
            main.send_state(&ids);
        }
    }
    info!(
        "started in {:?}: {} worker(s), {} listener socket(s), command socket {}",
        started.elapsed(),
        main.workers.len(),
        main.listeners.len(),
        main.settings.command_socket.display()
    );
    Ok(main)
}

/// Merges the saved state file into the configuration's state, as `state load` does: orders
/// that recreate what the configuration holds change nothing, conflicting ones are logged with
/// their line (an activation whose address cannot be bound among them), the rest is applied.
/// `listeners` hold the sockets of the configuration's active listeners, and follow the
/// merge.
fn load_saved_state(state: &mut ConfigState, listeners: &mut ListenerSockets, path: &Path) {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            info!("no saved state at {} yet", path.display());
            return;
        }
        Err(error) => {
            warn!("cannot read the saved state {}: {error}", path.display());
            return;
        }
    };
    match state_file::read(std::io::BufReader::new(file)) {
        Ok(orders) => {
            let merged = state_file::merge(state, listeners, orders, |sockets, order, _| {
                listeners::follow(sockets, &mut BTreeMap::new(), order);
            });
            listeners.settle();
            info!("saved state {}: {}", path.display(), merged.summary());
            for conflict in &merged.conflicts {
                warn!("saved state {}: {conflict}", path.display());
            }
        }
        Err(error) => warn!("the saved state {} is not loaded: {error}", path.display()),
    }
}

impl Main {
    fn new(
        settings: Settings,
        exe: PathBuf,
        state: ConfigState,
        listeners: ListenerSockets,
        mut command_listener: UnixListener,
    ) -> anyhow::Result<Main> {
        let poll = Poll::new().context("cannot create the event loop")?;
        poll.registry()
            .register(&mut command_listener, COMMAND_SOCKET, Interest::READABLE)
            .context("cannot register the command socket")?;
        let mut signals = signals::register().context("cannot handle signals")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("cannot register the signals")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("cannot create a waker")?);
        let fleet = provider::Fleet::start(settings.etcd.as_ref(), waker.clone())
            .context("cannot start the etcd provider")?;
        // A state that arrives whole (configuration, saved state, upgrade) starts its leases now.
        let fault_leases = faults::Leases::starting(&state, Instant::now());
        let audit = audit::Audit::open(
            settings.audit_logs_target.as_deref(),
            settings.audit_logs_json_target.as_deref(),
        );
        Ok(Main {
            poll,
            owners: Slab::new(),
            desired_workers: usize::from(settings.worker_count),
            log_filter: settings.log_filter.clone(),
            settings,
            exe,
            state,
            listeners,
            command_listener,
            clients: HashMap::new(),
            next_client: 0,
            workers: BTreeMap::new(),
            pending_restarts: BTreeMap::new(),
            next_worker_id: 0,
            tasks: HashMap::new(),
            next_task: 0,
            signals,
            stop: None,
            replacement: None,
            pending_main_upgrade: None,
            successor: None,
            waker,
            request_counts: BTreeMap::new(),
            exit: None,
            prometheus: None,
            scrapes: HashMap::new(),
            next_scrape: 0,
            dashboard: dashboard::Dashboard::default(),
            next_expiry_check: Instant::now(),
            fleet,
            registrations: registration::Registrations::default(),
            fault_leases,
            toxiproxy: None,
            notifier: notify::Notifier::from_env(),
            audit,
        })
    }

    fn run(mut self) -> ExitCode {
        let mut events = Events::with_capacity(1024);
        let exit = loop {
            if let Some(exit) = self.exit {
                break exit;
            }
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                error!("the event loop failed: {error}");
                self.hard_kill_all();
                break Exit::Stopped;
            }
            for event in events.iter() {
                match event.token() {
                    COMMAND_SOCKET => self.accept_clients(),
                    SIGNALS => self.handle_signals(),
                    PROMETHEUS => self.accept_scrapes(),
                    REGISTRATION_SOCKET => self.accept_registration_clients(),
                    WAKER => {
                        self.fleet_ready();
                        self.check_successor();
                    }
                    token => match self.owners.get(token.0 - FIRST_OWNER_TOKEN).copied() {
                        Some(Owner::Client(id)) => {
                            self.client_ready(id, event.is_readable(), event.is_writable())
                        }
                        Some(Owner::Worker(id)) => self.worker_ready(id, event.is_writable()),
                        Some(Owner::Scrape(id)) => self.scrape_ready(id),
                        Some(Owner::ToxiproxyListener) => self.accept_toxiproxy(),
                        Some(Owner::Toxiproxy(id)) => self.toxiproxy_ready(id),
                        None => {}
                    },
                }
            }
            self.check_deadlines();
            self.start_pending_main_upgrade();
            self.check_stopped();
        };
        self.flush_clients();
        if exit == Exit::Stopped {
            self.remove_files();
            info!("stopped");
        }
        ExitCode::SUCCESS
    }

    /// Until the next deadline: a task's, a stop's, a closing worker's, a delayed restart, or a
    /// scrape's.
    fn poll_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let tasks = self.tasks.values().map(|task| task.deadline);
        let kill = self.stop.as_ref().and_then(|stop| stop.kill_at);
        let closing = self
            .workers
            .values()
            .filter_map(|worker| worker.channel_closed_at.map(|at| at + EXIT_GRACE));
        let retiring = self
            .workers
            .values()
            .filter_map(|worker| worker.soft_stop_at);
        let restarts = self.pending_restarts.values().map(|pending| pending.at);
        let upgrade = self
            .pending_main_upgrade
            .as_ref()
            .and_then(upgrade::PendingUpgrade::flush_deadline);
        tasks
            .chain(upgrade)
            .chain(kill)
            .chain(closing)
            .chain(retiring)
            .chain(restarts)
            .chain(self.next_scrape_deadline())
            .chain(std::iter::once(self.next_expiry_check))
            .chain(self.registrations.next_deadline())
            .chain(self.fault_leases.next_end())
            .chain(self.next_toxiproxy_deadline())
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn register_owner(&mut self, owner: Owner) -> Token {
        Token(self.owners.insert(owner) + FIRST_OWNER_TOKEN)
    }

    fn release_token(&mut self, token: Token) {
        self.owners.try_remove(token.0 - FIRST_OWNER_TOKEN);
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        self.close_late_scrapes(now);
        self.close_late_toxiproxy(now);
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + EXPIRY_CHECK_INTERVAL;
            for event in self.expiring_certificates() {
                warn!("{}", event.message);
                self.broadcast(event);
            }
        }
        if self.is_handing_over() {
            // The workers are the new process's business until the handover ends.
            return;
        }
        self.stop_retired_workers(now);
        self.restart_pending_workers(now);
        self.check_registrations(now);
        self.expire_faults(now);
        let expired: Vec<u64> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let timeout = self.settings.worker_timeout;
            if let Some(task) = self.tasks.get_mut(&id) {
                task.time_out(timeout);
                for worker in task.not_answering.clone() {
                    warn!("worker {worker} did not answer within {timeout:?}");
                    if let Some(worker) = self.workers.get_mut(&worker) {
                        worker.run_state = RunState::NotAnswering;
                    }
                }
            }
            self.finish_task(id);
        }
        let late: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.channel_closed_at.is_some_and(|at| at + EXIT_GRACE <= now))
            .map(|w| w.id)
            .collect();
        for id in late {
            if let Some(worker) = self.workers.get_mut(&id) {
                warn!(
                    "worker {id} (pid {}) closed its channel but did not exit: killing it",
                    worker.pid
                );
                let _ = worker.kill();
                let why = match worker.process {
                    Process::Child(ref mut child) => match child.wait() {
                        Ok(status) => workers::describe_exit(status),
                        Err(error) => format!("cannot wait for it: {error}"),
                    },
                    Process::Adopted => "killed".to_string(),
                };
                self.worker_exited(id, &why);
            }
        }
        if let Some(stop) = &mut self.stop {
            if stop.kill_at.is_some_and(|at| at <= now) {
                stop.kill_at = None;
                self.hard_kill_all();
            }
        }
    }

    /// Kills every worker and waits for those that are our children.
    fn hard_kill_all(&mut self) {
        let ids: Vec<u32> = self.workers.keys().copied().collect();
        for id in ids {
            if let Some(worker) = self.workers.get_mut(&id) {
                warn!("killing worker {id} (pid {})", worker.pid);
                let _ = worker.kill();
                if let Process::Child(child) = &mut worker.process {
                    let _ = child.wait();
                }
                self.worker_exited(id, "killed");
            }
        }
    }

    /// Every worker is gone during a stop: answer the clients that asked and leave the loop.
    fn check_stopped(&mut self) {
        let Some(stop) = &self.stop else {
            return;
        };
        if !self.workers.is_empty() {
            return;
        }
        let hard = stop.hard;
        let clients = self
            .stop
            .as_mut()
            .map(|stop| std::mem::take(&mut stop.clients))
            .unwrap_or_default();
        for client in clients {
            let message = if hard {
                "hard stop done: every worker stopped"
            } else {
                "soft stop done: every worker finished its sessions"
            };
            self.reply(&client, ok_message(&client.request_id, message));
        }
        self.exit = Some(Exit::Stopped);
    }

    fn write_pid_file(&self) {
        if let Some(path) = &self.settings.pid_file_path {
            if let Err(error) = fs::write(path, format!("{}\n", std::process::id())) {
                error!("cannot write the pid file {}: {error}", path.display());
            }
        }
    }

    fn remove_files(&self) {
        self.remove_registration_socket();
        if let Some(path) = &self.settings.pid_file_path {
            if let Err(error) = fs::remove_file(path) {
                warn!("cannot remove the pid file {}: {error}", path.display());
            }
        }
        if let Err(error) = fs::remove_file(&self.settings.command_socket) {
            warn!(
                "cannot remove the command socket {}: {error}",
                self.settings.command_socket.display()
            );
        }
    }

    /// Events for the certificates whose validity ends within [`EXPIRY_NOTICE`].
    fn expiring_certificates(&self) -> Vec<Event> {
        let now = sozu_command_lib::certificate::unix_now();
        let notice = i64::try_from(EXPIRY_NOTICE.as_secs()).unwrap_or(i64::MAX);
        let mut events = Vec::new();
        for (address, certificates) in &self.state.certificates {
            for (fingerprint, certificate) in certificates {
                let left = certificate.not_after - now;
                if left > notice {
                    continue;
                }
                let when = if left <= 0 {
                    format!("expired {} day(s) ago", -left / 86_400)
                } else {
                    format!("expires in {} day(s)", left / 86_400)
                };
                events.push(Event {
                    kind: EventKind::CertificateExpiresSoon,
                    cluster_id: None,
                    backend_id: None,
                    address: Some(*address),
                    message: format!(
                        "certificate {fingerprint} for {} on {address} {when}",
                        certificate.names.join(", ")
                    ),
                });
            }
        }
        events
    }

    /// Tells every subscribed client, and keeps the event for the dashboard.
    fn broadcast(&mut self, event: Event) {
        self.dashboard.record(&event);
        let response = Response::ok(EVENT_RESPONSE_ID, Some(ResponseContent::Event(event)));
        let subscribers: Vec<u64> = self
            .clients
            .values()
            .filter(|client| client.subscribed)
            .map(|client| client.id)
            .collect();
        for client in subscribers {
            self.send_to_client(client, &response);
        }
    }

    fn event(&mut self, kind: EventKind, message: String) {
        self.broadcast(Event {
            kind,
            cluster_id: None,
            backend_id: None,
            address: None,
            message,
        });
    }

    /// Workers that take orders: neither stopping nor gone.
    fn serving_workers(&self) -> Vec<u32> {
        self.workers
            .values()
            .filter(|worker| !worker.retiring && worker.channel_closed_at.is_none())
            .map(|worker| worker.id)
            .collect()
    }

    /// Starts a task: sends `orders` to each of `targets` under the task's id, each order
    /// answered on its own. During a handover the workers' channels belong to the new process:
    /// the task fails at once.
    fn start_task(&mut self, task: Task, targets: &[u32], orders: &[Order]) -> u64 {
        self.start_task_as(task, targets, Delivery::OneAnswerEach(orders))
    }

    /// [`Main::start_task`], the orders delivered as `delivery` says.
    fn start_task_as(&mut self, mut task: Task, targets: &[u32], delivery: Delivery<'_>) -> u64 {
        self.next_task += 1;
        let id = self.next_task;
        let request_id = id.to_string();
        let handing_over = self.is_handing_over();
        for worker_id in targets {
            if handing_over {
                let why = "not asked: the main process is handing over to a new one";
                task.fail(*worker_id, why);
                continue;
            }
            let Some(worker) = self.workers.get_mut(worker_id) else {
                continue;
            };
            let answers = match delivery {
                Delivery::OneAnswerEach(orders) => {
                    send_orders(worker, &request_id, orders, &mut task)
                }
                Delivery::EndOfBatch => {
                    send_orders(worker, &request_id, &[Order::EndBatch], &mut task)
                }
                Delivery::Batch(batch) => {
                    let begin = send_orders(worker, &request_id, &[Order::BeginBatch], &mut task);
                    if begin == 1 {
                        batch.send(worker, &request_id, &mut task);
                        send_orders(worker, &request_id, &[Order::EndBatch], &mut task)
                    } else {
                        0
                    }
                }
            };
            if let Err(error) = worker.channel.writable() {
                task.fail(*worker_id, format!("cannot send orders: {error}"));
            }
            if answers > 0 {
                task.expect(*worker_id, answers);
            }
        }
        self.tasks.insert(id, task);
        if self.tasks.get(&id).is_some_and(Task::is_complete) {
            self.finish_task(id);
        }
        id
    }

    /// A response from a worker: an event, or an answer to a task.
    fn worker_response(&mut self, worker_id: u32, response: Response) {
        if response.id == EVENT_RESPONSE_ID {
            if let Some(ResponseContent::Event(event)) = response.content {
                self.broadcast(event);
            }
            return;
        }
        if !response.is_final() {
            return;
        }
        if let Some(worker) = self.workers.get_mut(&worker_id) {
            if worker.run_state == RunState::NotAnswering {
                worker.run_state = RunState::Running;
            }
        }
        let Ok(task_id) = response.id.parse::<u64>() else {
            return;
        };
        let timeout = self.settings.worker_timeout;
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let failure = (response.status == sozu_command_lib::response::ResponseStatus::Failure)
            .then_some(response.message);
        if task.answered(worker_id, failure, response.content, timeout) {
            self.finish_task(task_id);
        }
    }
}

/// An OK answer with a note and no content.
fn ok_message(id: &str, message: impl Into<String>) -> Response {
    let mut response = Response::ok(id, None);
    response.message = message.into();
    response
}
