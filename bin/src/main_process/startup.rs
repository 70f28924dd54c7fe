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
use sozu_command_lib::{config::Config, request::Order, state::ConfigState};

use super::{
    Main,
    delivery::{Feed, ORDERS_PER_WRITE, queue_request, request_line, write_and_wait},
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
    /// The request being queued, serialised once for every worker.
    line: Vec<u8>,
    queued: usize,
    /// How long to wait for a worker whose queue is full (the worker timeout).
    patience: Duration,
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
            line: Vec::new(),
            queued: 0,
            patience,
        };
        early.send(&Order::BeginBatch);
        early
    }

    /// Queues `order` for every worker, serialised once, and writes what is queued every
    /// [`ORDERS_PER_WRITE`] orders.
    pub(super) fn send(&mut self, order: &Order) {
        let serialised = request_line(&mut self.line, FIRST_BATCH_ID, order, None);
        for worker in &mut self.workers {
            let channel = &mut worker.spawned.channel;
            if let Err(failure) = queue_request(channel, &serialised, &self.line, order) {
                worker.failures.push(failure);
            }
        }
        self.queued += 1;
        if self.queued % ORDERS_PER_WRITE == 0 {
            self.write();
        }
    }

    /// Writes to each worker what its channel takes now, then waits while a worker has more
    /// than [`super::delivery::MAX_QUEUED`] bytes queued; the rest waits for the next write.
    fn write(&mut self) {
        let mut feeds: Vec<Feed<'_>> = self
            .workers
            .iter_mut()
            .map(|worker| Feed {
                id: worker.id,
                channel: &mut worker.spawned.channel,
                stalled: &mut worker.stalled,
            })
            .collect();
        write_and_wait(&mut feeds, self.patience);
    }

    /// The workers, their batch still open.
    pub(super) fn into_workers(self) -> Vec<EarlyWorker> {
        self.workers
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
    orders::apply_orders(&mut state, listener_orders, |order| {
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
        early.send(order);
    }
    match orders::apply_orders(&mut state, others, |order| early.send(order)) {
        Ok(()) => Ok((state, listeners, early)),
        Err(error) => {
            early.abort();
            Err(refused_configuration(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{Cluster, HttpFrontend, Request};

    use super::*;

    /// Issue 17: the orders streamed at start read as the requests `queue_message` writes.
    #[test]
    fn streamed_orders_are_the_json_of_each_request() {
        let address = "127.0.0.1:8080".parse().expect("an address");
        let orders = [
            Order::BeginBatch,
            Order::AddCluster(Cluster::new("a \"quoted\" cluster")),
            Order::AddHttpFrontend(HttpFrontend::new(Some("a".to_string()), address, "é.com")),
        ];
        let mut early = EarlyWorkers {
            workers: Vec::new(),
            line: Vec::new(),
            queued: 0,
            patience: Duration::ZERO,
        };
        for order in &orders {
            early.send(order);
            let expected = serde_json::to_vec(&Request::new(FIRST_BATCH_ID, order.clone()));
            assert_eq!(Some(&early.line), expected.as_ref().ok());
            let request: Request = serde_json::from_slice(&early.line).expect("a request");
            assert_eq!(&request.order, order);
        }
        assert_eq!(early.queued, orders.len());
    }
}
