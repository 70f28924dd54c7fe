//! Hot upgrades: a new main process from the binary now on disk takes over, then the workers
//! are replaced one by one; the listener sockets stay open the whole time, so no connection
//! is refused.
//!
//! Handover, from the old main process to the new one (the hidden `sozu main` subcommand,
//! given one inherited socket):
//!
//! 1. the old process waits until no task is in flight and every channel it hands over is
//!    drained (a worker or client that does not read within `worker_timeout` fails the
//!    upgrade: nothing is ever written to a channel in blocking mode);
//! 2. it stops reading those channels and starts the new process and a thread that sends it,
//!    over the socket (SCM_RIGHTS), the command socket's listener, the listener sockets, the
//!    workers' channels, the connection of the client that asked, and the registrations'
//!    (the registration socket, the connections registrations live with: see
//!    `registration::handover`), with a JSON description (settings, which descriptor is what),
//!    then the state, one order per line;
//! 3. the new process sets itself up, writes its pid file and answers `ready`: the old process
//!    exits, leaving the socket and pid files to its successor. If the new process fails or is
//!    not ready in time, the old one kills it and goes on as before.
//!
//! Meanwhile the old process's event loop goes on, whatever the new process does (it may hang
//! or be stopped): clients get their answers, those that need the workers or would change the
//! state being refused until the handover ends (the new process gets the state as it was).
//!
//! The new process adopts the old workers ([`take_over`]) and replaces each with a worker of
//! its own binary ([`replacement`]): the new worker gets the state, and once it answered all
//! of it, the old one is told to finish its sessions and exit. `UPGRADE_WORKER` replaces one
//! worker the same way.

mod replacement;
mod take_over;

pub use replacement::Replacement;
pub use take_over::run_handed_over;

use std::{
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use log::{error, info, warn};
use mio::Interest;
use serde::{Deserialize, Serialize};
use sozu_command_lib::{request::ListenerType, response::Response, scm::ScmSocket};

use super::{Exit, Main, settings::Settings, tasks::ClientRef};
use crate::sys;

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
    /// The registrations, whose descriptors come last.
    #[serde(default)]
    registrations: Option<super::registration::Handed>,
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
    /// Its fd socket follows its channel (absent from a previous version's handover).
    #[serde(default)]
    fd_socket: bool,
}

/// An upgrade of the main process that was asked for and waits for the workers: for the tasks
/// in flight to end, then for their channels to drain.
#[derive(Debug)]
pub struct PendingUpgrade {
    client: Option<ClientRef>,
    /// Set once no task is in flight: when the upgrade gives up on channels that do not drain
    /// (a hung worker, a client that does not read).
    flush_deadline: Option<Instant>,
}

impl PendingUpgrade {
    pub fn is_for(&self, id: u64) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.client == id)
    }

    pub fn flush_deadline(&self) -> Option<Instant> {
        self.flush_deadline
    }
}

/// A new main process being handed everything. A thread of its own writes to it and waits for
/// its `ready`, so that the event loop goes on answering clients whatever the new process does
/// (fails, hangs, is stopped): it reports through `outcome` and wakes the loop.
#[derive(Debug)]
pub struct Successor {
    child: Child,
    /// The workers whose channels were handed, paused meanwhile.
    handed: Vec<u32>,
    client: Option<ClientRef>,
    /// The clients whose channels were handed (the one that asked, those registrations live
    /// with), paused meanwhile.
    clients: Vec<u64>,
    outcome: mpsc::Receiver<anyhow::Result<()>>,
}

impl Successor {
    pub fn is_for(&self, id: u64) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.client == id)
    }
}

impl Main {
    /// `UPGRADE_MAIN` or SIGUSR2: starts once no task waits on the workers and their channels
    /// are drained.
    pub(super) fn request_main_upgrade(&mut self, to: Option<ClientRef>) {
        let refusal = if self.stop.is_some() {
            Some("sozu is stopping")
        } else if self.replacement.is_some()
            || self.pending_main_upgrade.is_some()
            || self.successor.is_some()
        {
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
        self.pending_main_upgrade = Some(PendingUpgrade {
            client: to,
            flush_deadline: None,
        });
    }

    /// Starts the upgrade asked for once nothing is in flight; gives up on channels that do
    /// not drain within `worker_timeout`.
    pub(super) fn start_pending_main_upgrade(&mut self) {
        let timeout = self.settings.worker_timeout;
        let Some(pending) = &mut self.pending_main_upgrade else {
            return;
        };
        if !self.tasks.is_empty() {
            return;
        }
        let now = Instant::now();
        let deadline = *pending.flush_deadline.get_or_insert(now + timeout);
        let client = pending.client.clone();
        let unflushed = self.unflushed_channels(client.as_ref());
        if !unflushed.is_empty() && now < deadline {
            return;
        }
        self.pending_main_upgrade = None;
        if unflushed.is_empty() {
            self.begin_handover(client);
            return;
        }
        let message = format!(
            "upgrade failed, nothing changed: {} did not read its channel within {timeout:?}",
            unflushed.join(", ")
        );
        error!("{message}");
        if let Some(to) = &client {
            self.reply(to, Response::failure(to.request_id.clone(), message));
        }
    }

    /// The handed channels that still have output queued: a process that does not read.
    fn unflushed_channels(&self, client: Option<&ClientRef>) -> Vec<String> {
        let workers = self
            .workers
            .values()
            .filter(|w| w.channel_closed_at.is_none() && w.channel.has_pending_output())
            .map(|w| format!("worker {}", w.id));
        let asking = client.map(|to| to.client);
        let clients = asking
            .into_iter()
            .chain(self.registration_clients(asking))
            .filter_map(|id| self.clients.get(&id))
            .filter(|client| client.channel.has_pending_output())
            .map(|client| format!("the command client {}", client.id));
        workers.chain(clients).collect()
    }

    /// Starts the new main process and a thread that hands it everything. The handed channels
    /// are paused meanwhile; the rest of the main process goes on.
    fn begin_handover(&mut self, to: Option<ClientRef>) {
        let handed: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.channel_closed_at.is_none())
            .map(|w| w.id)
            .collect();
        let asking = to.as_ref().map(|to| to.client);
        let registration_clients = self.registration_clients(asking);
        match self.spawn_successor(&handed, to.as_ref(), &registration_clients) {
            Ok((child, outcome)) => {
                info!("upgrade: new main process started (pid {})", child.id());
                let clients: Vec<u64> = asking.into_iter().chain(registration_clients).collect();
                self.pause_channels(&handed, &clients);
                self.successor = Some(Successor {
                    child,
                    handed,
                    client: to,
                    clients,
                    outcome,
                });
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

    /// The handover thread has spoken: the new process took over (this one exits), or it did
    /// not (it is killed and everything goes on as before).
    pub(super) fn check_successor(&mut self) {
        let Some(successor) = &self.successor else {
            return;
        };
        let outcome = match successor.outcome.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => {
                Err(anyhow::anyhow!("the handover thread ended without a word"))
            }
        };
        let Some(successor) = self.successor.take() else {
            return;
        };
        match outcome {
            Ok(()) => {
                info!(
                    "upgrade: the new main process (pid {}) took over; exiting",
                    successor.child.id()
                );
                self.notifier.handed_over(successor.child.id());
                if let Some(to) = &successor.client {
                    // The successor answers this client; our copy of its socket just closes.
                    if let Some(mut client) = self.clients.remove(&to.client) {
                        let _ = self.poll.registry().deregister(&mut client.channel);
                    }
                }
                self.exit = Some(Exit::HandedOver);
            }
            Err(error) => self.abandon_successor(successor, &format!("{error:#}")),
        }
    }

    /// Kills the new process and goes on as before.
    fn abandon_successor(&mut self, mut successor: Successor, why: &str) {
        let _ = successor.child.kill();
        let _ = successor.child.wait();
        self.resume_channels(&successor.handed, &successor.clients);
        error!("upgrade failed, going on as before: {why}");
        if let Some(to) = &successor.client {
            let message = format!("upgrade failed, nothing changed: {why}");
            self.reply(to, Response::failure(to.request_id.clone(), message));
        }
        // Workers that exited meanwhile were left for now.
        self.reap_workers();
    }

    /// Gives up a handover in progress, for a stop.
    pub(super) fn abort_handover(&mut self, why: &str) {
        if let Some(successor) = self.successor.take() {
            self.abandon_successor(successor, why);
        }
    }

    /// Whether a handover is in progress: orders that change the state or act on workers are
    /// refused meanwhile, since the new process is handed the state as it was.
    pub(super) fn is_handing_over(&self) -> bool {
        self.successor.is_some()
    }

    /// Stops reading the handed channels, which the new process reads from now on if it takes
    /// over.
    fn pause_channels(&mut self, workers: &[u32], clients: &[u64]) {
        for id in workers {
            if let Some(worker) = self.workers.get_mut(id) {
                let _ = self.poll.registry().deregister(&mut worker.channel);
            }
        }
        for id in clients {
            if let Some(client) = self.clients.get_mut(id) {
                let _ = self.poll.registry().deregister(&mut client.channel);
            }
        }
    }

    fn resume_channels(&mut self, workers: &[u32], clients: &[u64]) {
        let interest = Interest::READABLE | Interest::WRITABLE;
        for id in workers {
            if let Some(worker) = self.workers.get_mut(id) {
                if let Err(error) =
                    self.poll
                        .registry()
                        .register(&mut worker.channel, worker.token, interest)
                {
                    error!("cannot watch worker {id}'s channel again: {error}");
                }
            }
        }
        for id in clients {
            if let Some(client) = self.clients.get_mut(id) {
                if let Err(error) =
                    self.poll
                        .registry()
                        .register(&mut client.channel, client.token, interest)
                {
                    error!("cannot watch client {id}'s channel again: {error}");
                }
            }
        }
    }

    /// Starts the new main process and the thread that hands it the descriptors and the
    /// state. Returns the process and where the thread tells how it went.
    fn spawn_successor(
        &mut self,
        handed: &[u32],
        to: Option<&ClientRef>,
        registration_clients: &[u64],
    ) -> anyhow::Result<(Child, mpsc::Receiver<anyhow::Result<()>>)> {
        let (ours, theirs) = UnixStream::pair().context("cannot create the handover socket")?;
        let (fds, description) = self.handover_contents(handed, to, registration_clients)?;
        let mut state = Vec::new();
        self.state
            .save(&mut state)
            .context("cannot write the state")?;
        sys::inherit_on_exec(&theirs).context("cannot hand the socket to the new process")?;
        let mut child = Command::new(&self.exe)
            .arg("main")
            .arg(format!("--handover-fd={}", theirs.as_raw_fd()))
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        drop(theirs);
        let (sender, outcome) = mpsc::channel();
        let waker = self.waker.clone();
        let timeout = HANDOVER_TIMEOUT + self.settings.worker_timeout;
        let thread = std::thread::Builder::new()
            .name("handover".to_string())
            .spawn(move || {
                let result = send_handover(&ours, &fds, &description, &state, timeout);
                let _ = sender.send(result);
                if let Err(error) = waker.wake() {
                    error!("cannot wake the main loop after the handover: {error}");
                }
            });
        if let Err(error) = thread {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error).context("cannot start the handover thread");
        }
        Ok((child, outcome))
    }

    /// The descriptors to hand over (copies: ours stay open until the new process is ready)
    /// and their description.
    fn handover_contents(
        &self,
        handed: &[u32],
        to: Option<&ClientRef>,
        registration_clients: &[u64],
    ) -> anyhow::Result<(Vec<OwnedFd>, Vec<u8>)> {
        let copy = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .context("cannot copy a descriptor to hand over")
        };
        let mut fds = vec![copy(self.command_listener.as_fd())?];
        for (_, _, fd) in self.listeners.iter() {
            fds.push(copy(fd)?);
        }
        let mut workers = Vec::new();
        for id in handed {
            if let Some(worker) = self.workers.get(id) {
                fds.push(copy(worker.channel.as_fd())?);
                if let Some(fd_socket) = &worker.fd_socket {
                    fds.push(copy(fd_socket.as_fd())?);
                }
                workers.push(HandedWorker {
                    id: worker.id,
                    pid: worker.pid,
                    restarts: worker.restarts,
                    fd_socket: worker.fd_socket.is_some(),
                });
            }
        }
        let mut client_request_id = None;
        if let Some(to) = to {
            if let Some(client) = self.clients.get(&to.client) {
                fds.push(copy(client.channel.as_fd())?);
                client_request_id = Some(to.request_id.clone());
            }
        }
        let (registrations, registration_fds) =
            self.handed_registrations(registration_clients, to.map(|to| to.client))?;
        fds.extend(registration_fds);
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
            registrations: Some(registrations),
        };
        Ok((fds, serde_json::to_vec(&handover)?))
    }
}

/// The handover itself, on its own thread: the descriptors with their description, then the
/// state, then the new process's `ready`, each step bounded by `timeout`.
fn send_handover(
    stream: &UnixStream,
    fds: &[OwnedFd],
    description: &[u8],
    state: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    ScmSocket::new(stream.try_clone()?)?
        .send_fds(&borrowed, description)
        .context("cannot send the sockets")?;
    (&*stream)
        .write_all(state)
        .context("cannot send the state")?;
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
