//! Requests the main process sent to its workers and waits on: which workers still owe how
//! many answers, what they said, and who to tell when all answered.
//!
//! Every order of one task goes out with the task's number as request id, so that an answer
//! names its task whatever order it answers, and a batch of 100,000 orders costs one counter
//! per worker rather than one entry per order. A task whose workers stop making progress for
//! `worker_timeout` ends with those workers reported NOT_ANSWERING.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use sozu_command_lib::{request::ClustersOfWorkers, response::ResponseContent};

/// Who asked, and under which request id, so that the final answer reaches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRef {
    pub client: u64,
    pub request_id: String,
}

/// What the main process does once every worker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Orders already applied to the main state: OK, or FAILURE naming the workers that
    /// refused. `what` names the change in messages.
    Change { what: String },
    /// `STATUS`: each worker's run state.
    Status,
    /// `QUERY_CLUSTER_BY_ID`: the main state's view of the cluster, with the backends' run
    /// time figures of the workers.
    ClusterById { cluster_id: String },
    /// A query the workers answer and the main process passes on, after `note` (what the main
    /// process did itself) when there is one.
    Forward { note: Option<String> },
    /// `QUERY_CLUSTERS_OF_WORKERS`: the workers' answers to `query`, beside the main state's.
    ClustersOfWorkers { query: ClustersOfWorkers },
    /// The initial state of a worker just started.
    Setup { worker: u32 },
    /// `QUERY_METRICS`: the workers' figures, merged (or side by side when `workers`), with
    /// distributions as percentiles unless `histograms`.
    Metrics {
        list: bool,
        workers: bool,
        histograms: bool,
    },
    /// `LIST_FAULTS`: the faults of the main state, with the workers' touched counters.
    Faults,
    /// A request of the Toxiproxy API: `answer` once every worker applied its change.
    Toxiproxy {
        connection: u64,
        answer: super::toxiproxy::api::Answer,
    },
    /// A Prometheus scrape.
    Scrape { scrape: u64 },
    /// The figures of the dashboard's page.
    Dashboard,
    /// A `REGISTER`: the registration's ids once the workers applied it.
    Register { registration_id: String },
}

#[derive(Debug)]
pub struct Task {
    pub client: Option<ClientRef>,
    pub purpose: Purpose,
    /// Answers still owed, by worker id.
    pub waiting: BTreeMap<u32, usize>,
    /// Refusals and failures, each naming its worker.
    pub failures: Vec<String>,
    /// The first content each worker answered with.
    pub contents: BTreeMap<u32, ResponseContent>,
    /// Workers that did not answer in time.
    pub not_answering: Vec<u32>,
    pub started: Instant,
    /// When the task gives up on workers that still owe answers; pushed back on every answer.
    pub deadline: Instant,
}

/// Most refusals kept per task: a batch refused by every worker would otherwise fill the
/// answer.
const MAX_FAILURES: usize = 20;

impl Task {
    pub fn new(purpose: Purpose, client: Option<ClientRef>, timeout: Duration) -> Self {
        let now = Instant::now();
        Task {
            client,
            purpose,
            waiting: BTreeMap::new(),
            failures: Vec::new(),
            contents: BTreeMap::new(),
            not_answering: Vec::new(),
            started: now,
            deadline: now + timeout,
        }
    }

    pub fn expect(&mut self, worker: u32, answers: usize) {
        *self.waiting.entry(worker).or_insert(0) += answers;
    }

    pub fn fail(&mut self, worker: u32, message: impl AsRef<str>) {
        if self.failures.len() < MAX_FAILURES {
            self.failures
                .push(format!("worker {worker}: {}", message.as_ref()));
        } else if self.failures.len() == MAX_FAILURES {
            self.failures.push("(more refusals left out)".to_string());
        }
    }

    /// Records one final answer of `worker`. Returns whether the task is complete.
    pub fn answered(
        &mut self,
        worker: u32,
        failure: Option<String>,
        content: Option<ResponseContent>,
        timeout: Duration,
    ) -> bool {
        if let Some(left) = self.waiting.get_mut(&worker) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.waiting.remove(&worker);
            }
        }
        if let Some(message) = failure {
            self.fail(worker, message);
        }
        if let Some(content) = content {
            self.contents.entry(worker).or_insert(content);
        }
        self.deadline = Instant::now() + timeout;
        self.is_complete()
    }

    /// A worker is gone: it will not answer. Returns whether the task is complete.
    pub fn worker_gone(&mut self, worker: u32, why: &str) -> bool {
        if self.waiting.remove(&worker).is_some() {
            self.fail(worker, format!("exited before answering ({why})"));
        }
        self.is_complete()
    }

    /// Gives up on the workers that still owe answers.
    pub fn time_out(&mut self, timeout: Duration) {
        let late: Vec<u32> = self.waiting.keys().copied().collect();
        for worker in late {
            self.fail(
                worker,
                format!(
                    "NOT_ANSWERING (no answer within {}s)",
                    timeout.as_secs_f32()
                ),
            );
            self.not_answering.push(worker);
        }
        self.waiting.clear();
    }

    pub fn is_complete(&self) -> bool {
        self.waiting.is_empty()
    }
}
