//! How a task's orders reach the workers: one answer per order, or a batch answered once,
//! serialised once for all workers.

use sozu_command_lib::request::{Order, Request, write_order};

use super::{tasks::Task, workers::Worker};

/// The orders of a task and how they reach a worker, and so how many answers it owes.
#[derive(Clone, Copy)]
pub(super) enum Delivery<'d> {
    /// Each order on its own, answered on its own.
    OneAnswerEach(&'d [Order]),
    /// Between `BEGIN_BATCH` and `END_BATCH`, answered once ([`sozu_lib::server`]'s batches):
    /// the worker still checks each order and names each it refused. Serialised before, once
    /// for every worker that gets it.
    Batch(&'d BatchJson<'d>),
    /// The `END_BATCH` of a batch whose orders were queued already (a start's, as its state was
    /// built: [`super::startup`]), answered once.
    EndOfBatch,
}

/// Queues `orders` for `worker` under `request_id`; the caller then writes the channel. Returns
/// how many were queued; each refused one is a failure of `task`.
pub(super) fn send_orders(
    worker: &mut Worker,
    request_id: &str,
    orders: &[Order],
    task: &mut Task,
) -> usize {
    let mut queued = 0;
    for order in orders {
        let request = Request::new(request_id, order.clone());
        match worker.channel.queue_message(&request) {
            Ok(()) => queued += 1,
            Err(error) => task.fail(worker.id, format!("cannot send {order}: {error}")),
        }
    }
    queued
}

/// The orders of a batch in JSON, each serialised once whatever the number of workers that
/// get them: serialising 100,000 orders (and cloning each into a [`Request`]) for every
/// worker was a tenth of the main process's start.
pub(super) struct BatchJson<'o> {
    orders: &'o [Order],
    /// The orders' JSON, one after the other.
    json: Vec<u8>,
    /// Where each order's JSON ends in `json`, or why it could not be serialised.
    ends: Vec<Result<usize, String>>,
}

impl<'o> BatchJson<'o> {
    /// The batch of `orders` as their JSON `written` (a state file's lines) when it holds one
    /// text per order, else serialised.
    pub(super) fn written(orders: &'o [Order], written: Option<WrittenJson>) -> Self {
        match written {
            Some(written) if written.ends.len() == orders.len() => BatchJson {
                orders,
                json: written.json,
                ends: written.ends.into_iter().map(Ok).collect(),
            },
            _ => BatchJson::new(orders),
        }
    }

    pub(super) fn new(orders: &'o [Order]) -> Self {
        let mut json = Vec::new();
        let ends = orders
            .iter()
            .map(|order| {
                let start = json.len();
                write_order(order, &mut json)
                    .map(|()| json.len())
                    .map_err(|error| {
                        json.truncate(start);
                        error.to_string()
                    })
            })
            .collect();
        BatchJson { orders, json, ends }
    }

    /// Queues every order for `worker` as a request with the id `request_id`; each one refused
    /// is a failure of `task`.
    pub(super) fn send(&self, worker: &mut Worker, request_id: &str, task: &mut Task) {
        let channel = &mut worker.channel;
        let mut failures = Vec::new();
        self.for_each_request(request_id, |order, json| {
            let queued = json.and_then(|json| channel.queue_json(json).map_err(|e| e.to_string()));
            if let Err(error) = queued {
                failures.push(format!("cannot send {order}: {error}"));
            }
        });
        for failure in failures {
            task.fail(worker.id, failure);
        }
    }

    /// Gives `each` every order with the JSON of its [`Request`] under the id `request_id`
    /// (`{"id":…,"order":…}`, as [`Channel::queue_message`] writes it), or why there is none.
    ///
    /// [`Channel::queue_message`]: sozu_command_lib::channel::Channel::queue_message
    pub(super) fn for_each_request(
        &self,
        request_id: &str,
        mut each: impl FnMut(&Order, Result<&[u8], String>),
    ) {
        let mut prefix = br#"{"id":"#.to_vec();
        if let Err(error) = serde_json::to_writer(&mut prefix, request_id) {
            for order in self.orders {
                each(order, Err(error.to_string()));
            }
            return;
        }
        prefix.extend_from_slice(br#","order":"#);
        let mut line = Vec::new();
        let mut start = 0;
        for (order, end) in self.orders.iter().zip(&self.ends) {
            match end {
                Ok(end) => {
                    line.clear();
                    line.extend_from_slice(&prefix);
                    line.extend_from_slice(self.json.get(start..*end).unwrap_or_default());
                    line.push(b'}');
                    start = *end;
                    each(order, Ok(&line));
                }
                Err(error) => each(order, Err(error.clone())),
            }
        }
    }
}

/// Orders' JSON as a file wrote it, one after the other: a state file's lines, which the
/// main process decoded to check and apply them, reach the workers as they are instead of
/// being serialised again (a tenth of a state load's work in the main process).
#[derive(Debug, Default)]
pub(super) struct WrittenJson {
    json: Vec<u8>,
    /// Where each order's JSON ends in `json`.
    ends: Vec<usize>,
}

impl WrittenJson {
    /// Adds the JSON of the next order, as it was decoded into that order.
    pub(super) fn push(&mut self, json: &str) {
        self.json.extend_from_slice(json.as_bytes());
        self.ends.push(self.json.len());
    }
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{Cluster, ClusterId, HttpFrontend};

    use super::*;

    /// Issue 17: a batch serialised once must read as the requests `queue_message` writes.
    #[test]
    fn a_batch_serialised_once_is_the_json_of_each_request() {
        let address = "127.0.0.1:8080".parse().expect("an address");
        let orders = vec![
            Order::AddCluster(Cluster::new("a \"quoted\" cluster")),
            Order::AddHttpFrontend(HttpFrontend::new(
                Some("a".to_string()),
                address,
                "example.com",
            )),
            Order::RemoveCluster(ClusterId {
                cluster_id: "é\n".to_string(),
            }),
        ];
        let batch = BatchJson::new(&orders);
        let mut seen = Vec::new();
        batch.for_each_request("7\"", |order, json| {
            let expected = serde_json::to_vec(&Request::new("7\"", order.clone()));
            assert_eq!(json.ok(), expected.as_deref().ok());
            seen.push(order.clone());
        });
        assert_eq!(seen, orders);
    }

    /// Issue 17: orders sent as a file wrote them read as the orders themselves; a text per
    /// order is needed, or they are serialised.
    #[test]
    fn a_batch_of_written_orders_is_sent_as_written() {
        let orders = vec![
            Order::AddCluster(Cluster::new("a")),
            Order::RemoveCluster(ClusterId {
                cluster_id: "b".to_string(),
            }),
        ];
        let mut written = WrittenJson::default();
        written.push(r#"{ "type": "ADD_CLUSTER", "cluster_id": "a" }"#);
        written.push(r#"{"cluster_id":"b","type":"REMOVE_CLUSTER"}"#);
        let batch = BatchJson::written(&orders, Some(written));
        let mut sent = Vec::new();
        batch.for_each_request("7", |order, json| {
            let json = json.expect("a request");
            let request: Request = serde_json::from_slice(json).expect("a request");
            assert_eq!(&request.order, order);
            sent.push(String::from_utf8_lossy(json).into_owned());
        });
        assert_eq!(
            sent.first().map(String::as_str),
            Some(r#"{"id":"7","order":{ "type": "ADD_CLUSTER", "cluster_id": "a" }}"#)
        );
        assert_eq!(sent.len(), 2);

        let mut short = WrittenJson::default();
        short.push(r#"{"type":"ADD_CLUSTER","cluster_id":"a"}"#);
        let batch = BatchJson::written(&orders, Some(short));
        let mut count = 0;
        batch.for_each_request("7", |order, json| {
            let expected = serde_json::to_vec(&Request::new("7", order.clone()));
            assert_eq!(json.ok(), expected.as_deref().ok());
            count += 1;
        });
        assert_eq!(count, 2);
    }
}
