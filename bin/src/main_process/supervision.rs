//! Keeping the workers running: a worker that exits is forgotten and, unless it was told to
//! stop, started again in its slot (at once, or after a delay that grows when it keeps dying
//! right after starting); new workers are spawned and sent the state; retiring workers stop
//! accepting, then are told to stop after a grace.

use std::time::Instant;

use log::{error, info, warn};
use mio::Interest;
use sozu_command_lib::{
    request::{Order, Request},
    response::{EventKind, RunState},
};

use super::{
    BatchJson, Delivery, Main, Owner, RETIRE_GRACE, queries,
    startup::EarlyWorkers,
    tasks::{Purpose, Task},
    workers::{self, PendingRestart, Process, QUICK_DEATH, Spawned, Worker},
};

impl Main {
    /// A worker process ended (reaped, or its adopted channel closed): forget it, and start a
    /// new one in its slot unless it was told to stop.
    pub(super) fn worker_exited(&mut self, id: u32, why: &str) {
        let Some(mut worker) = self.workers.remove(&id) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut worker.channel);
        self.release_token(worker.token);
        let complete: Vec<u64> = self
            .tasks
            .iter_mut()
            .filter(|(_, task)| task.waiting.contains_key(&id))
            .filter_map(|(task_id, task)| task.worker_gone(id, why).then_some(*task_id))
            .collect();
        for task_id in complete {
            self.finish_task(task_id);
        }
        if worker.retiring || self.stop.is_some() {
            info!("worker {id} (pid {}) {why}", worker.pid);
            self.advance_replacement();
            return;
        }
        error!("worker {id} (pid {}) died: {why}", worker.pid);
        self.event(
            EventKind::WorkerKilled,
            format!("worker {id} (pid {}) {why}", worker.pid),
        );
        if self.settings.worker_automatic_restart {
            let quick_deaths = if worker.started_at.elapsed() < QUICK_DEATH {
                worker.quick_deaths + 1
            } else {
                0
            };
            let delay = workers::restart_delay(quick_deaths);
            let pending = PendingRestart {
                at: Instant::now() + delay,
                restarts: worker.restarts + 1,
                quick_deaths,
            };
            if delay.is_zero() {
                self.restart_worker(id, pending);
            } else {
                warn!(
                    "worker {id} died {quick_deaths} times in a row within {QUICK_DEATH:?} of \
                     starting: restarting it in {delay:?}"
                );
                self.pending_restarts.insert(id, pending);
            }
        }
        self.advance_replacement();
    }

    /// Restarts the worker slots whose delay ended, unless the proxy is stopping.
    pub(super) fn restart_pending_workers(&mut self, now: Instant) {
        if self.stop.is_some() {
            self.pending_restarts.clear();
            return;
        }
        let due: Vec<u32> = self
            .pending_restarts
            .iter()
            .filter(|(_, pending)| pending.at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(pending) = self.pending_restarts.remove(&id) {
                self.restart_worker(id, pending);
            }
        }
    }

    pub(super) fn restart_worker(&mut self, id: u32, pending: PendingRestart) {
        if let Some(pid) = self.launch_worker(id, pending.restarts) {
            info!(
                "worker {id} restarted as pid {pid} (restart {})",
                pending.restarts
            );
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.quick_deaths = pending.quick_deaths;
            }
            self.event(
                EventKind::WorkerRelaunched,
                format!("worker {id} relaunched as pid {pid}"),
            );
        }
    }

    /// Starts a worker under a new id. Returns its id.
    pub(super) fn launch_new_worker(&mut self) -> Option<u32> {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        self.launch_worker(id, 0).map(|_| id)
    }

    /// Starts a worker process in slot `id` and sends it the current state. Returns its pid.
    pub(super) fn launch_worker(&mut self, id: u32, restarts: u32) -> Option<i32> {
        let pid = self.spawn_worker(id, restarts)?;
        self.send_state(&[id]);
        Some(pid)
    }

    /// Sends the current state to workers just started, as one batch each, serialised once
    /// for all of them; each is ready once it answered the batch.
    pub(super) fn send_state(&mut self, ids: &[u32]) {
        let orders = self.state.orders();
        let batch = BatchJson::new(&orders);
        for id in ids {
            let task = Task::new(
                Purpose::Setup { worker: *id },
                None,
                self.settings.worker_timeout,
            );
            self.start_task_as(task, &[*id], Delivery::Batch(&batch));
        }
    }

    /// Starts a worker process in slot `id`, without state yet. Returns its pid.
    pub(super) fn spawn_worker(&mut self, id: u32, restarts: u32) -> Option<i32> {
        let mut settings = self.settings.worker.clone();
        settings.log_filter = self.log_filter.clone();
        match workers::spawn(&self.exe, id, &settings, &self.listeners) {
            Ok(spawned) => self.add_worker(id, spawned, restarts),
            Err(error) => {
                error!("cannot start worker {id}: {error:#}");
                None
            }
        }
    }

    /// The workers started while the state was built ([`EarlyWorkers`]): each is registered
    /// and its batch ended, answered once it applied the whole state.
    pub(super) fn adopt_early_workers(&mut self, early: EarlyWorkers) {
        for worker in early.into_workers() {
            let id = worker.id;
            if self.add_worker(id, worker.spawned, 0).is_none() {
                continue;
            }
            let mut task = Task::new(
                Purpose::Setup { worker: id },
                None,
                self.settings.worker_timeout,
            );
            for failure in worker.failures {
                task.fail(id, failure);
            }
            self.start_task_as(task, &[id], Delivery::EndOfBatch);
        }
    }

    /// Registers the worker process just started in slot `id`. Returns its pid.
    fn add_worker(&mut self, id: u32, spawned: Spawned, restarts: u32) -> Option<i32> {
        let pid = i32::try_from(spawned.child.id()).unwrap_or(-1);
        let mut channel = spawned.channel;
        let token = self.register_owner(Owner::Worker(id));
        if let Err(error) = self.poll.registry().register(
            &mut channel,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            error!("cannot register worker {id}'s channel: {error}");
            self.release_token(token);
            let mut child = spawned.child;
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        self.workers.insert(
            id,
            Worker {
                id,
                pid,
                process: Process::Child(spawned.child),
                channel,
                fd_socket: Some(spawned.fd_socket),
                token,
                run_state: RunState::Running,
                restarts,
                retiring: false,
                soft_stop_at: None,
                ready: false,
                channel_closed_at: None,
                started_at: Instant::now(),
                quick_deaths: 0,
                stalled: false,
            },
        );
        info!("worker {id} started (pid {pid})");
        Some(pid)
    }

    /// Tells a worker to finish its sessions and exit, without restarting it.
    ///
    /// The worker first stops accepting, and is told to stop only [`RETIRE_GRACE`] later: a
    /// worker that stops closes the connections that have not sent a byte yet, and a
    /// connection it accepted a moment ago usually has its request on the way. Other workers
    /// accept on the same sockets meanwhile.
    pub(super) fn retire_worker(&mut self, id: u32) {
        let active = queries::active_listeners(&self.state);
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.retiring = true;
            worker.run_state = RunState::Stopping;
            worker.soft_stop_at = Some(Instant::now() + RETIRE_GRACE);
            for listener in active {
                let request = Request::new("retire", Order::DeactivateListener(listener));
                if let Err(error) = worker.channel.write_message(&request) {
                    warn!("cannot tell worker {id} to stop accepting: {error}");
                }
            }
        }
    }

    /// Sends SOFT_STOP to the retiring workers whose grace ended.
    pub(super) fn stop_retired_workers(&mut self, now: Instant) {
        for worker in self.workers.values_mut() {
            if worker.soft_stop_at.is_some_and(|at| at <= now) {
                worker.soft_stop_at = None;
                let request = Request::new("stop", Order::SoftStop);
                if let Err(error) = worker.channel.write_message(&request) {
                    warn!("cannot tell worker {} to stop: {error}", worker.id);
                    let _ = worker.kill();
                }
            }
        }
    }
}
