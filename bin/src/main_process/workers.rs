//! Worker processes as the main process sees them: starting one (re-executing this binary
//! with the hidden `worker` subcommand), its command channel, and knowing when it is gone.
//!
//! A worker gets two inherited sockets: on one (the fd socket) the main process sends the
//! listener sockets (SCM_RIGHTS), at start and whenever a listener is activated later, the
//! other is the command channel. Workers run in their own process group, so
//! that a Ctrl-C in the terminal reaches the main process only, which stops them in order.

use std::{
    io,
    os::{
        fd::AsRawFd,
        unix::{net::UnixStream, process::CommandExt},
    },
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use mio::Token;
use sozu_command_lib::{
    channel::Channel,
    request::Request,
    response::{Response, RunState, WorkerInfo},
    scm::ScmSocket,
};

use super::listeners::ListenerSockets;
use crate::{sys, worker::WorkerSettings};

/// How the main process knows a worker's process.
#[derive(Debug)]
pub enum Process {
    /// Started by this main process: it can wait for it.
    Child(Child),
    /// Started by a previous main process and handed over during an upgrade: only its pid
    /// and channel are known, and its end shows as the channel closing.
    Adopted,
}

/// One worker process and its command channel.
#[derive(Debug)]
pub struct Worker {
    pub id: u32,
    pub pid: i32,
    pub process: Process,
    pub channel: Channel<Request, Response>,
    /// Where the sockets of listeners activated later are sent; `None` once it failed, or
    /// for a worker adopted from a main process that did not hand it over.
    pub fd_socket: Option<ScmSocket>,
    pub token: Token,
    pub run_state: RunState,
    /// How many times this worker slot was restarted after its process died.
    pub restarts: u32,
    /// The worker was told to stop on purpose (shutdown, upgrade, one less worker): it is not
    /// restarted when it exits.
    pub retiring: bool,
    /// When a retiring worker is told to stop (it stopped accepting already).
    pub soft_stop_at: Option<Instant>,
    /// The worker answered every order of its initial state.
    pub ready: bool,
    /// When its channel closed, if it did: the process is expected to exit soon.
    pub channel_closed_at: Option<Instant>,
    /// When this process started (or was adopted).
    pub started_at: Instant,
    /// How many of this slot's previous processes in a row died soon after they started.
    pub quick_deaths: u32,
    /// The worker took nothing of the stream of orders being queued for it (a state load's,
    /// [`super::delivery::OrderStream`]) for a whole worker timeout: the rest of the stream
    /// is queued without waiting for it (see [`super::delivery::Feed::stalled`]).
    pub stalled: bool,
}

/// A worker that dies within this time of its start counts as a crash loop.
pub const QUICK_DEATH: Duration = Duration::from_secs(30);
/// The longest wait before restarting a worker that keeps dying.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// How long to wait before restarting a worker slot whose processes died `quick_deaths`
/// times in a row soon after starting: the first restart is immediate, then the wait doubles
/// from one second up to a minute, so a worker that cannot run does not spin the machine.
pub fn restart_delay(quick_deaths: u32) -> Duration {
    match quick_deaths {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(6)).min(MAX_RESTART_DELAY),
    }
}

/// A worker slot whose process died and that restarts later, after a crash loop.
#[derive(Debug, Clone, Copy)]
pub struct PendingRestart {
    pub at: Instant,
    pub restarts: u32,
    pub quick_deaths: u32,
}

impl PendingRestart {
    /// The slot as `sozu status` shows it: stopped, no process.
    pub fn info(&self, id: u32) -> WorkerInfo {
        WorkerInfo {
            id,
            pid: 0,
            run_state: RunState::Stopped,
            restarts: self.restarts,
        }
    }
}

impl Worker {
    pub fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            pid: self.pid,
            run_state: self.run_state,
            restarts: self.restarts,
        }
    }

    /// The run state `status` shows, given the worker's own answer: a worker the main process
    /// told to stop (replaced by an upgrade, or the proxy stopping) says RUNNING until it
    /// gets SOFT_STOP after its grace, while it accepts nothing new already: STOPPING.
    pub fn shown_run_state(&self, answered: RunState) -> RunState {
        match (self.run_state, answered) {
            (RunState::Stopping, RunState::Running) => RunState::Stopping,
            (_, answered) => answered,
        }
    }

    /// The exit status, if the process has exited (it is then reaped). Always `None` for an
    /// adopted worker, which is not our child.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match &mut self.process {
            Process::Child(child) => child.try_wait(),
            Process::Adopted => Ok(None),
        }
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) -> io::Result<()> {
        match &mut self.process {
            Process::Child(child) => child.kill(),
            Process::Adopted => sys::send_signal(self.pid, libc::SIGKILL),
        }
    }
}

/// A worker process just started, with the listener sockets already sent.
pub struct Spawned {
    pub child: Child,
    pub channel: Channel<Request, Response>,
    /// Kept open: the sockets of listeners activated later go the same way.
    pub fd_socket: ScmSocket,
}

/// Starts a worker process from `exe` and hands it the listener sockets.
pub fn spawn(
    exe: &Path,
    id: u32,
    settings: &WorkerSettings,
    listeners: &ListenerSockets,
) -> anyhow::Result<Spawned> {
    let (main_channel, worker_channel) =
        UnixStream::pair().context("cannot create the worker's command channel")?;
    let (main_scm, worker_scm) =
        UnixStream::pair().context("cannot create the worker's listener socket channel")?;
    sys::inherit_on_exec(&worker_channel).context("cannot hand the channel to the worker")?;
    sys::inherit_on_exec(&worker_scm).context("cannot hand the channel to the worker")?;
    let child = Command::new(exe)
        .arg("worker")
        .arg(format!("--id={id}"))
        .arg(format!("--channel-fd={}", worker_channel.as_raw_fd()))
        .arg(format!("--scm-fd={}", worker_scm.as_raw_fd()))
        .args(settings.to_args())
        .env_remove(super::notify::VARIABLE)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start a worker from {}", exe.display()))?;
    // The child has its copies; ours would keep the channel open if the child died.
    drop(worker_channel);
    drop(worker_scm);
    let scm = ScmSocket::new(main_scm)?;
    scm.send_listeners(&listeners.as_scm())
        .context("cannot send the listener sockets to the worker")?;
    let mut channel = Channel::from_std(
        main_channel,
        settings.command_buffer_size,
        settings.max_command_buffer_size,
    )?;
    channel.nonblocking()?;
    Ok(Spawned {
        child,
        channel,
        fd_socket: scm,
    })
}

/// Words for how a process ended.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

impl super::Main {
    /// Reads what a worker sent, or writes what waits for it.
    pub(super) fn worker_ready(&mut self, id: u32, writable: bool) {
        if writable {
            if let Some(worker) = self.workers.get_mut(&id) {
                if let Err(error) = worker.channel.writable() {
                    log::warn!("cannot write to worker {id}: {error}");
                }
            }
        }
        if self.drain_worker(id) {
            self.worker_channel_closed(id);
        }
    }

    /// Handles every message a worker sent so far. Returns whether its channel is closed.
    fn drain_worker(&mut self, id: u32) -> bool {
        let mut responses = Vec::new();
        let mut closed = false;
        if let Some(worker) = self.workers.get_mut(&id) {
            if let Err(error) = worker.channel.readable() {
                log::warn!("cannot read from worker {id}: {error}");
            }
            loop {
                match worker.channel.read_message() {
                    Ok(Some(response)) => responses.push(response),
                    Ok(None) => break,
                    Err(error) if error.is_fatal() => {
                        log::warn!("worker {id}'s channel failed: {error}");
                        closed = true;
                        break;
                    }
                    Err(error) => log::warn!("worker {id} sent an invalid message: {error}"),
                }
            }
            closed |= worker.channel.is_closed();
        }
        for response in responses {
            self.worker_response(id, response);
        }
        closed
    }

    /// A worker's channel closed: it exits (or crashed). Reap it now if it is gone, else give
    /// it [`super::EXIT_GRACE`] to exit before killing it.
    fn worker_channel_closed(&mut self, id: u32) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if worker.channel_closed_at.is_some() {
            return;
        }
        let _ = self.poll.registry().deregister(&mut worker.channel);
        worker.channel_closed_at = Some(Instant::now());
        match worker.process {
            Process::Adopted => self.worker_exited(id, "closed its channel"),
            Process::Child(_) => self.reap_workers(),
        }
    }

    /// Collects the workers that exited (on SIGCHLD, or when a channel closes), after reading
    /// what they sent last. Not during a handover: the new process is handed the workers as
    /// they were, and those that exited meanwhile are collected once it failed.
    pub(super) fn reap_workers(&mut self) {
        if self.is_handing_over() {
            return;
        }
        let mut exited = Vec::new();
        for worker in self.workers.values_mut() {
            match worker.try_wait() {
                Ok(Some(status)) => exited.push((worker.id, describe_exit(status))),
                Ok(None) => {}
                Err(error) => exited.push((worker.id, format!("cannot be waited for: {error}"))),
            }
        }
        for (id, why) in exited {
            self.drain_worker(id);
            self.worker_exited(id, &why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_after_the_first_quick_death() {
        let delays: Vec<u64> = (0..10).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(restart_delay(u32::MAX), MAX_RESTART_DELAY);
    }
}
