//! The workers of a start, started as soon as the listeners are bound and fed the
//! configuration's orders as the main process checks them: a worker applies the first orders
//! while the main process still checks the next ones, instead of waiting for the whole state
//! to be built, then serialised (issue 17: at 100,000 frontends the workers' start-up and
//! application ran after the main process's, one after the other).
//!
//! The orders go as one batch, `BEGIN_BATCH` now and `END_BATCH` once the state is complete,
//! under the id of the worker's setup task ([`super::Main::end_first_batch`]): the worker
//! answers once, naming each order it refused, as for any state it is sent.

use std::path::Path;

use log::{error, warn};
use sozu_command_lib::request::Order;

use super::{
    listeners::ListenerSockets,
    workers::{self, Spawned},
};
use crate::worker::WorkerSettings;

/// The request id of the first batch's orders: only its `END_BATCH` is answered, under the id
/// of the setup task.
const FIRST_BATCH_ID: &str = "start";

/// How many orders are queued between two writes to the workers: often enough that they
/// start applying early, seldom enough that the writes cost nothing.
const ORDERS_PER_WRITE: usize = 256;

/// A worker started before the state was complete.
pub(super) struct EarlyWorker {
    pub id: u32,
    pub spawned: Spawned,
    /// The orders that could not be sent to it, each as `cannot send ORDER: why`: failures of
    /// its setup task.
    pub failures: Vec<String>,
}

/// The workers of a start, fed the orders of the state as it is built.
pub(super) struct EarlyWorkers {
    workers: Vec<EarlyWorker>,
    /// The request being queued, serialised once for every worker.
    line: Vec<u8>,
    queued: usize,
}

impl EarlyWorkers {
    /// Starts the workers `0..count` with `listeners`, and opens the batch of their state. A
    /// worker that cannot start is logged and left out, as at any start.
    pub(super) fn spawn(
        exe: &Path,
        count: u32,
        settings: &WorkerSettings,
        listeners: &ListenerSockets,
    ) -> Self {
        let workers = (0..count)
            .filter_map(|id| match workers::spawn(exe, id, settings, listeners) {
                Ok(spawned) => Some(EarlyWorker {
                    id,
                    spawned,
                    failures: Vec::new(),
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
        };
        early.send(&Order::BeginBatch);
        early
    }

    /// Queues `order` for every worker, serialised once, and writes what is queued every
    /// [`ORDERS_PER_WRITE`] orders.
    pub(super) fn send(&mut self, order: &Order) {
        self.line.clear();
        self.line.extend_from_slice(br#"{"id":"#);
        let serialised = serde_json::to_writer(&mut self.line, FIRST_BATCH_ID)
            .and_then(|()| {
                self.line.extend_from_slice(br#","order":"#);
                serde_json::to_writer(&mut self.line, order)
            })
            .map(|()| self.line.push(b'}'));
        for worker in &mut self.workers {
            let queued = match &serialised {
                Ok(()) => worker
                    .spawned
                    .channel
                    .queue_json(&self.line)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = queued {
                worker
                    .failures
                    .push(format!("cannot send {order}: {error}"));
            }
        }
        self.queued += 1;
        if self.queued % ORDERS_PER_WRITE == 0 {
            self.write();
        }
    }

    /// Writes to each worker what its channel takes now; the rest waits for the next write.
    fn write(&mut self) {
        for worker in &mut self.workers {
            if let Err(error) = worker.spawned.channel.writable() {
                warn!("cannot write to worker {}: {error}", worker.id);
            }
        }
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
