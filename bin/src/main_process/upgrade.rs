//! Hot upgrades: a new main process from the binary now on disk takes over, then the workers
//! are replaced one by one; the listener sockets stay open the whole time, so no connection
//! is refused.
//!
//! Handover, from the old main process to the new one (the hidden `sozu main` subcommand,
//! given one inherited socket):
//!
//! 1. the old process stops reading its workers' channels, flushes them, and sends over the
//!    socket (SCM_RIGHTS) the command socket's listener, the listener sockets, the workers'
//!    channels and the connection of the client that asked, with a JSON description (settings,
//!    which descriptor is what);
//! 2. it then writes the state, one order per line, and closes its writing side;
//! 3. the new process sets itself up, writes its pid file and answers `ready`: the old process
//!    exits, leaving the socket and pid files to its successor. If the new process fails or is
//!    not ready in time, the old one kills it and goes on as before.
//!
//! The new process adopts the old workers and replaces each with a worker of its own binary:
//! the new worker gets the state, and once it answered all of it, the old one is told to
//! finish its sessions and exit. `UPGRADE_WORKER` replaces one worker the same way.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use log::{error, info, warn};
use mio::Interest;
use serde::{Deserialize, Serialize};
use sozu_command_lib::{
    channel::Channel,
    request::ListenerType,
    response::{Response, RunState},
    scm::ScmSocket,
    state::ConfigState,
};

use super::{
    Exit, Main, Owner,
    listeners::ListenerSockets,
    ok_message,
    settings::Settings,
    tasks::ClientRef,
    workers::{MAX_RESTART_DELAY, PendingRestart, Process, Worker},
};
use crate::{logging, sys};

/// Most descriptors a handover carries: the command socket, listeners, workers, one client.
const MAX_HANDOVER_FDS: usize = 16_384;
/// Most bytes of the handover's description.
const MAX_HANDOVER_DATA: usize = 16 << 20;
/// How long the old main process waits for the new one, on top of `worker_timeout`.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// `sozu main`: what a new main process is told on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct HandoverArgs {
    /// The inherited socket on which the previous main process hands everything over.
    #[arg(long)]
    pub handover_fd: i32,
}

/// The description sent with the handed-over descriptors, which come in this order: the
/// command socket, `listeners`, `workers`, then the client if `client_request_id` is set.
#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    settings: Settings,
    listeners: Vec<(SocketAddr, ListenerType)>,
    workers: Vec<HandedWorker>,
    client_request_id: Option<String>,
    next_worker_id: u32,
    desired_workers: usize,
    log_filter: String,
    /// Worker slots waiting for a delayed restart.
    #[serde(default)]
    pending_restarts: Vec<HandedRestart>,
    /// What the etcd provider put in place, so that the new process removes it when its keys go.
    #[serde(default)]
    fleet: Option<super::provider::Handed>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedRestart {
    id: u32,
    restarts: u32,
    quick_deaths: u32,
    /// Milliseconds left before the restart.
    in_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedWorker {
    id: u32,
    pid: i32,
    restarts: u32,
}

/// Workers being replaced one by one.
#[derive(Debug)]
pub struct Replacement {
    client: Option<ClientRef>,
    /// Old workers still to replace.
    queue: VecDeque<u32>,
    /// The old worker being replaced, and its replacement, which is getting the state.
    current: Option<(u32, u32)>,
    replaced: usize,
    failures: Vec<String>,
    started: Instant,
}

impl Replacement {
    /// Whether client `id` waits for this replacement's answer.
    pub fn is_for(&self, id: u64) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.client == id)
    }
}

impl Main {
    /// `UPGRADE_MAIN` or SIGUSR2: starts as soon as no task waits on the workers.
    pub(super) fn request_main_upgrade(&mut self, to: Option<ClientRef>) {
        let refusal = if self.stop.is_some() {
            Some("sozu is stopping")
        } else if self.replacement.is_some() || self.pending_main_upgrade.is_some() {
            Some("an upgrade is already in progress")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            warn!("upgrade refused: {refusal}");
            if let Some(to) = &to {
                self.reply(to, Response::failure(to.request_id.clone(), refusal));
            }
            return;
        }
        if let Some(to) = &to {
            let message = format!("starting a new main process from {}", self.exe.display());
            self.reply(to, Response::processing(to.request_id.clone(), message));
        }
        self.pending_main_upgrade = Some(to);
    }

    pub(super) fn start_pending_main_upgrade(&mut self) {
        if self.pending_main_upgrade.is_none() || !self.tasks.is_empty() {
            return;
        }
        let to = self.pending_main_upgrade.take().flatten();
        match self.hand_over(to.as_ref()) {
            Ok(pid) => {
                info!("upgrade: the new main process (pid {pid}) took over; exiting");
                self.exit = Some(Exit::HandedOver);
            }
            Err(error) => {
                error!("upgrade failed, going on as before: {error:#}");
                if let Some(to) = &to {
                    let message = format!("upgrade failed, nothing changed: {error:#}");
                    self.reply(to, Response::failure(to.request_id.clone(), message));
                }
            }
        }
    }

    /// Starts the new main process and hands it everything. On error, everything is as it
    /// was. Returns the new process's pid.
    fn hand_over(&mut self, to: Option<&ClientRef>) -> anyhow::Result<u32> {
        let handed: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.channel_closed_at.is_none())
            .map(|w| w.id)
            .collect();
        self.pause_workers(&handed)?;
        let result = self.spawn_successor(&handed, to);
        match &result {
            Ok(_) => {
                if let Some(to) = to {
                    // The successor answers this client; our copy of its socket just closes.
                    if let Some(mut client) = self.clients.remove(&to.client) {
                        let _ = self.poll.registry().deregister(&mut client.channel);
                    }
                }
            }
            Err(_) => self.resume_workers(&handed),
        }
        result
    }

    /// Stops reading the workers' channels and writes out what is queued for them.
    fn pause_workers(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        for id in ids {
            if let Some(worker) = self.workers.get_mut(id) {
                let _ = self.poll.registry().deregister(&mut worker.channel);
                worker.channel.blocking()?;
                worker
                    .channel
                    .writable()
                    .with_context(|| format!("cannot flush worker {id}'s channel"))?;
            }
        }
        Ok(())
    }

    fn resume_workers(&mut self, ids: &[u32]) {
        for id in ids {
            if let Some(worker) = self.workers.get_mut(id) {
                let _ = worker.channel.nonblocking();
                if let Err(error) = self.poll.registry().register(
                    &mut worker.channel,
                    worker.token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    error!("cannot watch worker {id}'s channel again: {error}");
                }
            }
        }
    }

    fn spawn_successor(&mut self, handed: &[u32], to: Option<&ClientRef>) -> anyhow::Result<u32> {
        let (ours, theirs) = UnixStream::pair().context("cannot create the handover socket")?;
        sys::inherit_on_exec(&theirs).context("cannot hand the socket to the new process")?;
        let mut child = Command::new(&self.exe)
            .arg("main")
            .arg(format!("--handover-fd={}", theirs.as_raw_fd()))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        drop(theirs);
        let pid = child.id();
        info!("upgrade: new main process started (pid {pid})");
        match self.send_handover(&ours, handed, to) {
            Ok(()) => Ok(pid),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    fn send_handover(
        &mut self,
        stream: &UnixStream,
        handed: &[u32],
        to: Option<&ClientRef>,
    ) -> anyhow::Result<()> {
        let timeout = HANDOVER_TIMEOUT + self.settings.worker_timeout;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        let client = match to {
            Some(to) => match self.clients.get_mut(&to.client) {
                Some(client) => {
                    let _ = client.channel.blocking();
                    let _ = client.channel.writable();
                    Some((to.request_id.clone(), client.channel.as_fd()))
                }
                None => None,
            },
            None => None,
        };
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.command_listener.as_fd()];
        fds.extend(self.listeners.iter().map(|(_, _, fd)| fd));
        let mut workers = Vec::new();
        for id in handed {
            if let Some(worker) = self.workers.get(id) {
                fds.push(worker.channel.as_fd());
                workers.push(HandedWorker {
                    id: worker.id,
                    pid: worker.pid,
                    restarts: worker.restarts,
                });
            }
        }
        let client_request_id = client.map(|(request_id, fd)| {
            fds.push(fd);
            request_id
        });
        let handover = Handover {
            settings: self.settings.clone(),
            listeners: self
                .listeners
                .iter()
                .map(|(address, kind, _)| (address, kind))
                .collect(),
            workers,
            client_request_id,
            next_worker_id: self.next_worker_id,
            desired_workers: self.desired_workers,
            log_filter: self.log_filter.clone(),
            pending_restarts: self
                .pending_restarts
                .iter()
                .map(|(id, pending)| HandedRestart {
                    id: *id,
                    restarts: pending.restarts,
                    quick_deaths: pending.quick_deaths,
                    in_ms: u64::try_from(
                        pending
                            .at
                            .saturating_duration_since(Instant::now())
                            .as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                })
                .collect(),
            fleet: self.fleet.as_ref().map(super::provider::Fleet::handed),
        };
        let data = serde_json::to_vec(&handover)?;
        ScmSocket::new(stream.try_clone()?)?
            .send_fds(&fds, &data)
            .context("cannot send the sockets")?;
        let mut writer = std::io::BufWriter::new(stream);
        self.state
            .save(&mut writer)
            .context("cannot send the state")?;
        drop(writer);
        stream.shutdown(Shutdown::Write)?;
        let mut ready = String::new();
        BufReader::new(stream)
            .read_line(&mut ready)
            .context("the new main process did not confirm")?;
        if ready.trim() != "ready" {
            bail!("the new main process failed before taking over (see its log)");
        }
        Ok(())
    }

    /// `UPGRADE_WORKER`: replaces one worker by a new one from the binary now on disk.
    pub(super) fn upgrade_worker(&mut self, to: ClientRef, worker_id: u32) {
        let refusal = if self.stop.is_some() {
            Some("sozu is stopping".to_string())
        } else if self.replacement.is_some() || self.pending_main_upgrade.is_some() {
            Some("an upgrade is already in progress".to_string())
        } else if !self.serving_workers().contains(&worker_id) {
            Some(format!("no serving worker {worker_id}"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.reply(&to, Response::failure(to.request_id.clone(), refusal));
            return;
        }
        let message = format!("replacing worker {worker_id}");
        self.reply(&to, Response::processing(to.request_id.clone(), message));
        self.start_replacement(Some(to), vec![worker_id]);
    }

    fn start_replacement(&mut self, client: Option<ClientRef>, old: Vec<u32>) {
        info!("replacing {} worker(s) one by one", old.len());
        self.replacement = Some(Replacement {
            client,
            queue: old.into(),
            current: None,
            replaced: 0,
            failures: Vec::new(),
            started: Instant::now(),
        });
        self.advance_replacement();
    }

    /// Moves the replacement on: once the new worker has the state, the old one stops and the
    /// next one is replaced; once all are, the client is told.
    pub(super) fn advance_replacement(&mut self) {
        let Some(mut replacement) = self.replacement.take() else {
            return;
        };
        loop {
            if let Some((old, new)) = replacement.current {
                match self.workers.get(&new) {
                    Some(worker) if !worker.ready => {
                        self.replacement = Some(replacement);
                        return;
                    }
                    Some(_) => {
                        info!("worker {new} replaces worker {old}, which finishes its sessions");
                        self.retire_worker(old);
                        replacement.replaced += 1;
                    }
                    None => replacement
                        .failures
                        .push(format!("the replacement of worker {old} did not start")),
                }
                replacement.current = None;
            }
            let Some(old) = replacement.queue.pop_front() else {
                break;
            };
            if !self.serving_workers().contains(&old) {
                continue;
            }
            match self.launch_new_worker() {
                Some(new) => replacement.current = Some((old, new)),
                None => replacement
                    .failures
                    .push(format!("cannot start a replacement for worker {old}")),
            }
        }
        let message = format!(
            "upgrade done in {:?}: main process pid {}, {} worker(s) replaced",
            replacement.started.elapsed(),
            std::process::id(),
            replacement.replaced
        );
        info!("{message}");
        if let Some(to) = &replacement.client {
            let response = if replacement.failures.is_empty() {
                ok_message(&to.request_id, message)
            } else {
                Response::failure(
                    to.request_id.clone(),
                    format!("{message}; {}", replacement.failures.join("; ")),
                )
            };
            self.reply(to, response);
        }
    }
}

/// `sozu main`: takes over from the previous main process, then serves.
pub fn run_handed_over(args: &HandoverArgs) -> ExitCode {
    match take_over(args.handover_fd) {
        Ok(main) => main.run(),
        Err(error) => {
            error!("cannot take over from the previous main process: {error:#}");
            eprintln!("error: cannot take over from the previous main process: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn take_over(handover_fd: i32) -> anyhow::Result<Main> {
    let stream = UnixStream::from(sys::take_inherited_fd(handover_fd)?);
    let (fds, data) = ScmSocket::new(stream.try_clone()?)?
        .receive_fds(MAX_HANDOVER_FDS, MAX_HANDOVER_DATA)
        .context("cannot receive the sockets")?;
    let handover: Handover =
        serde_json::from_slice(&data).context("invalid handover description")?;
    logging::init(
        "main",
        &handover.log_filter,
        handover.settings.log_output.clone(),
    );
    let expected = 1
        + handover.listeners.len()
        + handover.workers.len()
        + usize::from(handover.client_request_id.is_some());
    if fds.len() != expected {
        bail!("received {} descriptors, expected {expected}", fds.len());
    }
    let mut fds = fds.into_iter();
    let mut next_fd =
        || -> anyhow::Result<OwnedFd> { fds.next().context("a handed-over descriptor is missing") };
    let command_listener = std::os::unix::net::UnixListener::from(next_fd()?);
    command_listener.set_nonblocking(true)?;
    let command_listener = mio::net::UnixListener::from_std(command_listener);
    let mut listener_sockets = Vec::new();
    for (address, kind) in &handover.listeners {
        listener_sockets.push((*address, *kind, next_fd()?));
    }
    let listeners = ListenerSockets::adopt(listener_sockets);
    let mut worker_fds = Vec::new();
    for _ in &handover.workers {
        worker_fds.push(next_fd()?);
    }
    let client_fd = match handover.client_request_id {
        Some(_) => Some(next_fd()?),
        None => None,
    };
    let started = Instant::now();
    let state = ConfigState::load(BufReader::new(&stream)).context("cannot read the state")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut main = Main::new(handover.settings, exe, state, listeners, command_listener)?;
    main.serve_prometheus();
    main.next_worker_id = handover.next_worker_id;
    main.desired_workers = handover.desired_workers;
    main.log_filter = handover.log_filter;
    if let (Some(fleet), Some(handed)) = (&mut main.fleet, handover.fleet) {
        fleet.adopt(handed);
    }
    for pending in handover.pending_restarts {
        let delay = Duration::from_millis(pending.in_ms).min(MAX_RESTART_DELAY);
        main.pending_restarts.insert(
            pending.id,
            PendingRestart {
                at: Instant::now() + delay,
                restarts: pending.restarts,
                quick_deaths: pending.quick_deaths,
            },
        );
    }
    let mut adopted = Vec::new();
    for (worker, fd) in handover.workers.into_iter().zip(worker_fds) {
        adopted.push(worker.id);
        main.adopt_worker(worker, fd)?;
    }
    let client = match (client_fd, handover.client_request_id) {
        (Some(fd), Some(request_id)) => {
            let stream = UnixStream::from(fd);
            stream.set_nonblocking(true)?;
            let client = main.add_client(mio::net::UnixStream::from_std(stream));
            Some(ClientRef { client, request_id })
        }
        _ => None,
    };
    main.write_pid_file();
    (&stream)
        .write_all(b"ready\n")
        .context("cannot confirm to the previous main process")?;
    info!(
        "took over from the previous main process in {:?}: {} worker(s), {} listener socket(s)",
        started.elapsed(),
        adopted.len(),
        main.listeners.len()
    );
    if let Some(to) = &client {
        let message = format!(
            "new main process (pid {}) took over; replacing {} worker(s)",
            std::process::id(),
            adopted.len()
        );
        main.reply(to, Response::processing(to.request_id.clone(), message));
    }
    main.start_replacement(client, adopted);
    Ok(main)
}

impl Main {
    /// Watches a worker started by the previous main process.
    fn adopt_worker(&mut self, worker: HandedWorker, fd: OwnedFd) -> anyhow::Result<()> {
        let mut channel = Channel::from_std(
            UnixStream::from(fd),
            self.settings.command_buffer_size,
            self.settings.max_command_buffer_size,
        )?;
        channel.nonblocking()?;
        let token = self.register_owner(Owner::Worker(worker.id));
        self.poll
            .registry()
            .register(&mut channel, token, Interest::READABLE | Interest::WRITABLE)
            .with_context(|| format!("cannot watch worker {}", worker.id))?;
        self.workers.insert(
            worker.id,
            Worker {
                id: worker.id,
                pid: worker.pid,
                process: Process::Adopted,
                channel,
                token,
                run_state: RunState::Running,
                restarts: worker.restarts,
                retiring: false,
                soft_stop_at: None,
                ready: true,
                channel_closed_at: None,
                started_at: Instant::now(),
                quick_deaths: 0,
            },
        );
        Ok(())
    }
}
