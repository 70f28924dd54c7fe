//! How a task's orders reach the workers: one answer per order, or a batch answered once,
//! serialised once for all workers.

use std::{
    collections::BTreeMap,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use log::warn;
use sozu_command_lib::{
    certificate::CertificateFacts,
    channel::Channel,
    request::{Order, Request, write_certificate_facts, write_order},
    response::Response,
};

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

/// A batch whose orders are queued for the workers one by one as the main process applies
/// them (a start's, a state load's): the workers apply the first orders while the main
/// process reads and checks the next ones, instead of waiting for the whole state. Each order
/// goes as a file wrote it when there is such a text (decoded already to check it: not
/// serialised again), else serialised once for every worker. `BEGIN_BATCH` goes first, and
/// the task that ends the batch takes the stream's request id ([`Delivery::EndOfBatch`]).
///
/// The stream does not hold its workers: each call is given the [`Fleet`] they live in
/// (workers started with a start's stream, or the main process's serving workers).
pub(super) struct OrderStream {
    /// How long to wait for a worker whose queue is full (the worker timeout).
    patience: Duration,
    request_id: String,
    /// The request being queued.
    line: Vec<u8>,
    /// Whether `BEGIN_BATCH` is queued.
    has_begun: bool,
    /// How many orders were queued after `BEGIN_BATCH`.
    sent: usize,
    /// The orders a worker's channel refused, each as `cannot send ORDER: why`.
    failures: Vec<(u32, String)>,
}

/// Where the workers of an [`OrderStream`] live.
pub(super) trait Fleet {
    /// The channel of each worker that gets the stream.
    fn feeds(&mut self) -> impl Iterator<Item = Feed<'_>>;
}

/// The serving workers of the main process that get a stream.
pub(super) struct Serving<'w> {
    pub workers: &'w mut BTreeMap<u32, Worker>,
    pub targets: &'w [u32],
}

impl Fleet for Serving<'_> {
    fn feeds(&mut self) -> impl Iterator<Item = Feed<'_>> {
        self.workers
            .iter_mut()
            .filter(|(id, _)| self.targets.contains(id))
            .map(|(id, worker)| Feed {
                id: *id,
                channel: &mut worker.channel,
                stalled: &mut worker.stalled,
            })
    }
}

impl OrderStream {
    /// A stream under the id of the task that will end it, waiting at most `patience` for a
    /// worker whose queue is full.
    pub(super) fn new(request_id: String, patience: Duration) -> Self {
        OrderStream {
            patience,
            request_id,
            line: Vec::new(),
            has_begun: false,
            sent: 0,
            failures: Vec::new(),
        }
    }

    /// Queues `BEGIN_BATCH` for every worker of `fleet`, none of them stalled yet.
    pub(super) fn begin(&mut self, fleet: &mut impl Fleet) {
        let feeds = fleet.feeds().map(|feed| {
            *feed.stalled = false;
            feed
        });
        self.queue(feeds, &Order::BeginBatch, None, None);
        self.has_begun = true;
    }

    /// Queues `order` (whose JSON is `json` when a file wrote it) for every worker of
    /// `fleet`, after `BEGIN_BATCH` if it is not queued yet, and writes what is queued every
    /// [`ORDERS_PER_WRITE`] orders. `facts`: those of the certificate the order brings, as
    /// the main process's check read them, given to workers of this binary only (see
    /// [`request_line`]).
    pub(super) fn send(
        &mut self,
        fleet: &mut impl Fleet,
        order: &Order,
        json: Option<&str>,
        facts: Option<&CertificateFacts>,
    ) {
        if !self.has_begun {
            self.begin(fleet);
        }
        self.queue(fleet.feeds(), order, json, facts);
        self.sent += 1;
        if self.sent % ORDERS_PER_WRITE == 0 {
            write_and_wait(&mut fleet.feeds().collect::<Vec<_>>(), self.patience);
        }
    }

    fn queue<'c>(
        &mut self,
        feeds: impl Iterator<Item = Feed<'c>>,
        order: &Order,
        json: Option<&str>,
        facts: Option<&CertificateFacts>,
    ) {
        let serialised = request_line(&mut self.line, &self.request_id, order, json, facts);
        for feed in feeds {
            if let Err(failure) = queue_request(feed.channel, &serialised, &self.line, order) {
                self.failures.push((feed.id, failure));
            }
        }
    }

    /// The failures of the task that ends the batch.
    pub(super) fn into_failures(self) -> Vec<(u32, String)> {
        self.failures
    }
}

/// How many orders of a stream are queued between two writes to the workers: often enough
/// that they start applying early, seldom enough that the writes cost nothing.
pub(super) const ORDERS_PER_WRITE: usize = 256;

/// Above this much output queued for a worker, the main process waits for the worker to take
/// some before it checks the next orders of a stream (a start's, a state load's): a worker
/// applies orders more slowly than the main process checks them, and the whole state queued
/// for each worker (50 MB at 100,000 frontends and 10,000 certificates) cost the main process
/// a tenth of its start in page faults and copies, while the workers had no core to run on.
pub(super) const MAX_QUEUED: usize = 4 << 20;

/// A worker's channel fed a stream of orders.
pub(super) struct Feed<'c> {
    pub id: u32,
    pub channel: &'c mut Channel<Request, Response>,
    /// Whether the worker took nothing for a whole worker timeout: its orders are queued from
    /// then on without waiting for it, and the task of the stream times out as for any worker
    /// that does not answer.
    pub stalled: &'c mut bool,
}

/// Writes to each channel what it takes now, then waits while one that is not stalled has
/// more than [`MAX_QUEUED`] bytes queued, writing to each as it takes more. One still full
/// after `patience` is stalled.
pub(super) fn write_and_wait(feeds: &mut [Feed<'_>], patience: Duration) {
    for feed in feeds.iter_mut() {
        if let Err(error) = feed.channel.writable() {
            warn!("cannot write to worker {}: {error}", feed.id);
        }
    }
    let deadline = Instant::now() + patience;
    while let Some(wait) = queues_full(feeds, deadline, patience) {
        let fds: Vec<_> = feeds
            .iter()
            .map(|feed| {
                // A channel with nothing queued would end the wait at once: not waited for.
                let waits = !*feed.stalled
                    && !feed.channel.is_closed()
                    && feed.channel.pending_output_len() > 0;
                waits.then(|| feed.channel.as_fd())
            })
            .collect();
        let ready = match crate::sys::wait_writable(&fds, wait) {
            Ok(ready) => ready,
            Err(error) => {
                warn!("cannot wait for the workers to take their orders: {error}");
                return;
            }
        };
        for (feed, ready) in feeds.iter_mut().zip(ready) {
            if ready {
                if let Err(error) = feed.channel.writable() {
                    warn!("cannot write to worker {}: {error}", feed.id);
                }
            }
        }
    }
}

/// How long to wait at most for a channel with more than [`MAX_QUEUED`] bytes queued; `None`
/// when none has. One still full at `deadline` is stalled: no longer waited for.
fn queues_full(feeds: &mut [Feed<'_>], deadline: Instant, patience: Duration) -> Option<Duration> {
    let now = Instant::now();
    let mut full = false;
    for feed in feeds.iter_mut() {
        if *feed.stalled
            || feed.channel.is_closed()
            || feed.channel.pending_output_len() <= MAX_QUEUED
        {
            continue;
        }
        if now >= deadline {
            warn!(
                "worker {} took no order for {patience:?}: its orders are queued without waiting",
                feed.id
            );
            *feed.stalled = true;
        } else {
            full = true;
        }
    }
    full.then(|| deadline.saturating_duration_since(now))
}

/// Queues on `channel` the request `line` holds (`serialised`: whether [`request_line`] wrote
/// it), or says why `order` could not be sent: `cannot send ORDER: why`.
pub(super) fn queue_request(
    channel: &mut Channel<Request, Response>,
    serialised: &Result<(), String>,
    line: &[u8],
    order: &Order,
) -> Result<(), String> {
    serialised
        .clone()
        .and_then(|()| channel.queue_json(line).map_err(|error| error.to_string()))
        .map_err(|error| format!("cannot send {order}: {error}"))
}

/// Writes into `line` the request `{"id":…,"order":…}` of `order` under `request_id`, as
/// [`Channel::queue_message`] writes it, the order being `json` when a file wrote it; with
/// `facts`, those of the certificate the order brings after it (`,"certificate_facts":{…}`,
/// a [`WorkerRequest`]): the worker then does not read the certificate again.
///
/// Only workers of this binary are given facts (a start's): one adopted from an older main
/// process during an upgrade would refuse the field.
///
/// [`Channel::queue_message`]: sozu_command_lib::channel::Channel::queue_message
/// [`WorkerRequest`]: sozu_command_lib::request::WorkerRequest
pub(super) fn request_line(
    line: &mut Vec<u8>,
    request_id: &str,
    order: &Order,
    json: Option<&str>,
    facts: Option<&CertificateFacts>,
) -> Result<(), String> {
    line.clear();
    line.extend_from_slice(br#"{"id":"#);
    serde_json::to_writer(&mut *line, request_id).map_err(|error| error.to_string())?;
    line.extend_from_slice(br#","order":"#);
    match json {
        Some(json) => line.extend_from_slice(json.as_bytes()),
        None => write_order(order, line).map_err(|error| error.to_string())?,
    }
    if let Some(facts) = facts {
        line.extend_from_slice(br#","certificate_facts":"#);
        write_certificate_facts(facts, line).map_err(|error| error.to_string())?;
    }
    line.push(b'}');
    Ok(())
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

    /// One worker's channel, as a stream's fleet.
    struct OneWorker(Channel<Request, Response>, bool);

    impl Fleet for OneWorker {
        fn feeds(&mut self) -> impl Iterator<Item = Feed<'_>> {
            std::iter::once(Feed {
                id: 0,
                channel: &mut self.0,
                stalled: &mut self.1,
            })
        }
    }

    /// Issue 17: a stream (a start's, a state load's) sends `BEGIN_BATCH`, then each order as
    /// the request `queue_message` writes, or with the JSON a file wrote for it.
    #[test]
    fn a_stream_sends_begin_batch_then_each_order_as_its_request() {
        let (main, mut worker) = Channel::<Request, Response>::pair(1 << 16, 1 << 20).unwrap();
        let mut fleet = OneWorker(main, true);
        let address = "127.0.0.1:8080".parse().expect("an address");
        let cluster = Order::AddCluster(Cluster::new("a \"quoted\" cluster"));
        let frontend =
            Order::AddHttpFrontend(HttpFrontend::new(Some("a".to_string()), address, "é.com"));
        let written = r#"{"cluster_id":"b", "type":"ADD_CLUSTER"}"#;
        let mut stream = OrderStream::new("7\"".to_string(), Duration::from_secs(5));
        stream.send(&mut fleet, &cluster, None, None);
        assert!(!fleet.1, "a stream's worker is not stalled at its start");
        stream.send(&mut fleet, &frontend, None, None);
        stream.send(
            &mut fleet,
            &Order::AddCluster(Cluster::new("b")),
            Some(written),
            None,
        );
        fleet.0.blocking().unwrap();
        fleet.0.writable().unwrap();
        assert!(stream.into_failures().is_empty());
        let mut lines = Vec::new();
        for _ in 0..4 {
            lines.push(worker.read_message().unwrap().expect("a request"));
        }
        let expected = [
            Order::BeginBatch,
            cluster,
            frontend,
            Order::AddCluster(Cluster::new("b")),
        ];
        let expected: Vec<Request> = expected
            .into_iter()
            .map(|order| Request::new("7\"", order))
            .collect();
        assert_eq!(lines, expected);
    }

    /// Issue 17, aim 4: a stream gives the facts the main process's check read of a
    /// certificate with its order, which the worker reads back with it; an order sent without
    /// facts is read without.
    #[test]
    fn a_stream_sends_the_facts_of_a_certificate_with_its_order() {
        let (main, mut worker) = Channel::<Request, Response>::pair(1 << 16, 1 << 20).unwrap();
        let mut fleet = OneWorker(main, false);
        let certificate = sozu_command_lib::request::CertificateAndKey::new(
            include_str!("../../../command/tests/fixtures/localhost.pem"),
            include_str!("../../../command/tests/fixtures/localhost.key"),
        );
        let facts = sozu_command_lib::certificate::inspect(&certificate).expect("facts");
        let add = Order::AddCertificate(sozu_command_lib::request::AddCertificate {
            address: "127.0.0.1:8443".parse().expect("an address"),
            certificate,
            allow_expired: false,
        });
        let mut stream = OrderStream::new("start".to_string(), Duration::from_secs(5));
        stream.send(&mut fleet, &add, None, Some(&facts));
        stream.send(&mut fleet, &add, None, None);
        fleet.0.blocking().unwrap();
        fleet.0.writable().unwrap();
        assert!(stream.into_failures().is_empty());
        let read = |worker: &mut Channel<Response, Request>| {
            worker
                .read_message_as(sozu_command_lib::request::read_worker_request)
                .unwrap()
                .expect("a request")
        };
        assert_eq!(read(&mut worker).order, Order::BeginBatch);
        let given = read(&mut worker);
        assert_eq!((given.id.as_str(), &given.order), ("start", &add));
        assert_eq!(given.certificate_facts, Some(facts));
        let without = read(&mut worker);
        assert_eq!(without.order, add);
        assert_eq!(without.certificate_facts, None);
    }

    /// The queues of a worker's channel, a stream of 10 MiB of orders: 4 MiB queued at most.
    fn a_stream_of_10_mib() -> (
        Channel<Request, Response>,
        Channel<Response, Request>,
        usize,
    ) {
        let (mut main, worker) = Channel::<Request, Response>::pair(1 << 16, 1 << 20).unwrap();
        main.nonblocking().unwrap();
        let order = Order::AddCluster(Cluster::new("c".repeat(1000)));
        let mut line = Vec::new();
        request_line(&mut line, "1", &order, None, None).unwrap();
        let count = (10 << 20) / line.len();
        for _ in 0..count {
            main.queue_json(&line).unwrap();
        }
        (main, worker, count)
    }

    /// Issue 17: a stream waits while a worker's queue is over [`MAX_QUEUED`] (the whole state
    /// queued for each worker was a tenth of a start in page faults), and goes on as the
    /// worker reads.
    #[test]
    fn a_full_queue_waits_for_the_worker_to_read() {
        let (mut main, mut worker, count) = a_stream_of_10_mib();
        let reader = std::thread::spawn(move || {
            worker.blocking().unwrap();
            for _ in 0..count {
                assert!(worker.read_message().unwrap().is_some());
            }
        });
        let mut stalled = false;
        let mut feeds = [Feed {
            id: 0,
            channel: &mut main,
            stalled: &mut stalled,
        }];
        write_and_wait(&mut feeds, Duration::from_secs(60));
        assert!(main.pending_output_len() <= MAX_QUEUED);
        assert!(!stalled);
        main.blocking().unwrap();
        main.writable().unwrap();
        reader.join().unwrap();
    }

    /// A worker that reads nothing for the worker timeout is no longer waited for.
    #[test]
    fn a_worker_that_reads_nothing_stalls_after_the_timeout() {
        let (mut main, _worker, _) = a_stream_of_10_mib();
        let mut stalled = false;
        let started = Instant::now();
        let mut feeds = [Feed {
            id: 0,
            channel: &mut main,
            stalled: &mut stalled,
        }];
        write_and_wait(&mut feeds, Duration::from_millis(100));
        assert!(stalled);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(main.pending_output_len() > MAX_QUEUED);
        let mut feeds = [Feed {
            id: 0,
            channel: &mut main,
            stalled: &mut stalled,
        }];
        let again = Instant::now();
        write_and_wait(&mut feeds, Duration::from_secs(60));
        assert!(
            again.elapsed() < Duration::from_secs(1),
            "a stalled worker is not waited for"
        );
    }
}
