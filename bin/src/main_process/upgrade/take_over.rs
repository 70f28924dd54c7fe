//! The new main process's side of a handover (`sozu main`): it receives the descriptors and
//! their description, reads the state, adopts the old workers, answers `ready`, then replaces
//! the workers with its own.

use std::{
    io::{BufReader, Write},
    os::{fd::OwnedFd, unix::net::UnixStream},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use log::{error, info};
use mio::Interest;
use sozu_command_lib::{
    channel::Channel,
    response::{Response, RunState},
    scm::ScmSocket,
    state::ConfigState,
};

use super::{HandedWorker, Handover, HandoverArgs, MAX_HANDOVER_DATA, MAX_HANDOVER_FDS};
use crate::{
    logging,
    main_process::{
        Main, Owner,
        listeners::ListenerSockets,
        tasks::ClientRef,
        workers::{MAX_RESTART_DELAY, PendingRestart, Process, Worker},
    },
    sys,
};

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
        handover.settings.log_colored,
    );
    let expected = 1
        + handover.listeners.len()
        + handover.workers.len()
        + handover.workers.iter().filter(|w| w.fd_socket).count()
        + usize::from(handover.client_request_id.is_some())
        + handover
            .registrations
            .as_ref()
            .map_or(0, crate::main_process::registration::Handed::descriptors);
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
    for worker in &handover.workers {
        let channel = next_fd()?;
        let fd_socket = if worker.fd_socket {
            Some(next_fd()?)
        } else {
            None
        };
        worker_fds.push((channel, fd_socket));
    }
    let client_fd = match handover.client_request_id {
        Some(_) => Some(next_fd()?),
        None => None,
    };
    let registration_fds = fds.collect::<Vec<_>>();
    let started = Instant::now();
    let state = ConfigState::load(BufReader::new(&stream)).context("cannot read the state")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut main = Main::new(handover.settings, exe, state, listeners, command_listener)?;
    main.serve_prometheus();
    main.serve_toxiproxy();
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
    match handover.registrations {
        Some(handed) => {
            main.adopt_registrations(
                handed,
                registration_fds,
                client.as_ref().map(|to| to.client),
            )?;
        }
        None => main.open_registration_socket(),
    }
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
    fn adopt_worker(
        &mut self,
        worker: HandedWorker,
        (fd, fd_socket): (OwnedFd, Option<OwnedFd>),
    ) -> anyhow::Result<()> {
        let fd_socket = fd_socket
            .map(|fd| ScmSocket::new(UnixStream::from(fd)))
            .transpose()?;
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
                fd_socket,
                token,
                run_state: RunState::Running,
                restarts: worker.restarts,
                retiring: false,
                soft_stop_at: None,
                ready: true,
                channel_closed_at: None,
                started_at: Instant::now(),
                quick_deaths: 0,
                stalled: false,
            },
        );
        Ok(())
    }
}
