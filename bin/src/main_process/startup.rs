//! The workers of a start, started as soon as the listeners are bound and fed the
//! configuration's orders as the main process checks them: a worker applies the first orders
//! while the main process still checks the next ones, instead of waiting for the whole state
//! to be built, then serialised (issue 17: at 100,000 frontends the workers' start-up and
//! application ran after the main process's, one after the other).
//!
//! The orders go as one batch, `BEGIN_BATCH` now and `END_BATCH` once the state is complete,
//! under the id of the worker's setup task ([`super::Main::end_first_batch`]): the worker
//! answers once, naming each order it refused, as for any state it is sent.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use log::error;
use mio::net::UnixListener;
use sozu_command_lib::{
    certificate::CertificateFacts, config::Config, request::Order, state::ConfigState,
};

use super::{
    Main,
    delivery::{Feed, Fleet, OrderStream},
    listeners::ListenerSockets,
    load_saved_state, orders,
    settings::Settings,
    workers::{self, Spawned},
};
use crate::worker::WorkerSettings;

/// The request id of the first batch's orders: only its `END_BATCH` is answered, under the id
/// of the setup task.
const FIRST_BATCH_ID: &str = "start";

/// A worker started before the state was complete.
pub(super) struct EarlyWorker {
    pub id: u32,
    pub spawned: Spawned,
    /// The orders that could not be sent to it, each as `cannot send ORDER: why`: failures of
    /// its setup task.
    pub failures: Vec<String>,
    /// Whether it took nothing for a whole worker timeout: its output is queued from then on
    /// without waiting for it, and its setup task times out as for any worker that does not
    /// answer.
    stalled: bool,
}

/// The workers of a start, fed the orders of the state as it is built.
pub(super) struct EarlyWorkers {
    workers: Vec<EarlyWorker>,
    stream: OrderStream,
}

impl Fleet for Vec<EarlyWorker> {
    fn feeds(&mut self) -> impl Iterator<Item = Feed<'_>> {
        self.iter_mut().map(|worker| Feed {
            id: worker.id,
            channel: &mut worker.spawned.channel,
            stalled: &mut worker.stalled,
        })
    }
}

impl EarlyWorkers {
    /// Starts the workers `0..count` with `listeners`, and opens the batch of their state. A
    /// worker that cannot start is logged and left out, as at any start.
    pub(super) fn spawn(
        exe: &Path,
        count: u32,
        settings: &WorkerSettings,
        listeners: &ListenerSockets,
        patience: Duration,
    ) -> Self {
        let workers = (0..count)
            .filter_map(|id| match workers::spawn(exe, id, settings, listeners) {
                Ok(spawned) => Some(EarlyWorker {
                    id,
                    spawned,
                    failures: Vec::new(),
                    stalled: false,
                }),
                Err(error) => {
                    error!("cannot start worker {id}: {error:#}");
                    None
                }
            })
            .collect();
        let mut early = EarlyWorkers {
            workers,
            stream: OrderStream::new(FIRST_BATCH_ID.to_string(), patience),
        };
        early.stream.begin(&mut early.workers);
        early
    }

    /// Queues `order` for every worker ([`OrderStream::send`]), with the facts of the
    /// certificate it brings (`facts`, as the main process's check read them): the workers of
    /// a start are this binary's.
    pub(super) fn send(&mut self, order: &Order, facts: Option<&CertificateFacts>) {
        self.stream.send(&mut self.workers, order, None, facts);
    }

    /// The workers, their batch still open, each with the orders that could not be sent to
    /// it.
    pub(super) fn into_workers(self) -> Vec<EarlyWorker> {
        let mut workers = self.workers;
        for (id, failure) in self.stream.into_failures() {
            if let Some(worker) = workers.iter_mut().find(|worker| worker.id == id) {
                worker.failures.push(failure);
            }
        }
        workers
    }

    /// Kills the workers: the start failed.
    pub(super) fn abort(self) {
        for worker in self.workers {
            let mut child = worker.spawned.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The main process of [`super::boot`] with its state, and the workers started while it was built
/// (none with a saved state to merge: they start once it is merged).
pub(super) fn build(
    settings: Settings,
    exe: PathBuf,
    config: Config,
    command_listener: UnixListener,
) -> anyhow::Result<(Main, Option<EarlyWorkers>)> {
    let (state, listeners, early) = match &settings.saved_state {
        Some(path) => {
            let mut state = orders::state_of_config(config).map_err(refused_configuration)?;
            let mut listeners = ListenerSockets::bind_active(&state)?;
            load_saved_state(&mut state, &mut listeners, path);
            (state, listeners, None)
        }
        None => {
            let (state, listeners, early) = state_with_early_workers(&settings, &exe, config)?;
            (state, listeners, Some(early))
        }
    };
    match Main::new(settings, exe, state, listeners, command_listener) {
        Ok(main) => Ok((main, early)),
        Err(error) => {
            if let Some(early) = early {
                early.abort();
            }
            Err(error)
        }
    }
}

fn refused_configuration(error: String) -> anyhow::Error {
    anyhow::anyhow!("the configuration is refused: {error}")
}

/// The configuration's state, with its listeners bound and the workers started as soon as they
/// are: each order goes to the workers once it passed its check, while the next ones are
/// checked. If an order is refused the workers are stopped.
fn state_with_early_workers(
    settings: &Settings,
    exe: &Path,
    config: Config,
) -> anyhow::Result<(ConfigState, ListenerSockets, EarlyWorkers)> {
    // The listeners come first (`Config::into_order_iter`): their sockets go to the workers as
    // they start. The other orders are applied as the iterator makes them, never all held.
    let mut others = config.into_order_iter().peekable();
    let listener_orders: Vec<Order> = std::iter::from_fn(|| {
        others.next_if(|order| {
            matches!(
                order,
                Order::AddHttpListener(_)
                    | Order::AddHttpsListener(_)
                    | Order::AddTcpListener(_)
                    | Order::ActivateListener(_)
            )
        })
    })
    .collect();
    let mut state = ConfigState::new();
    let mut first = Vec::new();
    orders::apply_orders(&mut state, listener_orders, |order, _| {
        first.push(order.clone())
    })
    .map_err(refused_configuration)?;
    let listeners = ListenerSockets::bind_active(&state)?;
    let mut worker_settings = settings.worker.clone();
    worker_settings.log_filter = settings.log_filter.clone();
    let mut early = EarlyWorkers::spawn(
        exe,
        u32::from(settings.worker_count),
        &worker_settings,
        &listeners,
        settings.worker_timeout,
    );
    for order in &first {
        early.send(order, None);
    }
    match orders::apply_orders(&mut state, others, |order, checked| {
        early.send(order, checked.certificate())
    }) {
        Ok(()) => Ok((state, listeners, early)),
        Err(error) => {
            early.abort();
            Err(refused_configuration(error))
        }
    }
}
