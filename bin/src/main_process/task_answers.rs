//! The answer to a finished task: a worker set up, or the client told the outcome of its
//! change, query or forwarded order, with the workers' answers merged (figures summed,
//! backends of every worker's view, refusals listed).

use log::{error, info};
use sozu_command_lib::response::{ClusterInformation, Response, ResponseContent, RunState};
use sozu_lib::metrics;

use super::{
    Main, ok_message, queries,
    tasks::{Purpose, Task},
};

impl Main {
    /// A task is complete: answer whoever waits for it.
    pub(super) fn finish_task(&mut self, id: u64) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        if self.notifier.is_waiting_for(id) {
            self.notifier.ready(&reload_status(&task));
        }
        let response = match &task.purpose {
            Purpose::Setup { worker } => {
                self.worker_set_up(*worker, &task);
                return;
            }
            Purpose::Change { what } => change_response(&task, what),
            Purpose::Status => self.status_response(&task),
            Purpose::Faults => self.faults_response(&task),
            Purpose::ClusterById { cluster_id } => self.cluster_response(&task, cluster_id),
            Purpose::Forward { note } => forward_response(&task, note.as_deref()),
            Purpose::ClustersOfWorkers { query } => {
                let main = queries::clusters_answer(&self.state, &query.query());
                clusters_of_workers_response(&task, main)
            }
            Purpose::Metrics {
                list,
                workers,
                histograms,
            } => metrics_response(&task, *list, *workers, *histograms),
            Purpose::Toxiproxy { connection, answer } => {
                self.finish_toxiproxy(*connection, answer, &task);
                return;
            }
            Purpose::Scrape { scrape } => {
                self.answer_scrape(*scrape, &task);
                return;
            }
            Purpose::Dashboard => {
                self.answer_dashboard(&task);
                return;
            }
            Purpose::Register { registration_id } => {
                self.registered(registration_id, &task.failures)
            }
        };
        if let Some(to) = &task.client {
            let mut response = response;
            response.id = to.request_id.clone();
            self.reply(to, response);
        }
    }

    fn worker_set_up(&mut self, id: u32, task: &Task) {
        if !task.failures.is_empty() {
            error!(
                "worker {id} refused part of the initial state: {}",
                task.failures.join("; ")
            );
        }
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.ready = true;
            info!(
                "worker {id} (pid {}) has the current state ({:?})",
                worker.pid,
                task.started.elapsed()
            );
        }
        if self.workers.values().all(|worker| worker.ready) {
            // Each worker's channel held every order of its state until the worker read it
            // (at a start, the orders are queued as fast as they are checked, faster than the
            // workers apply them): that memory is free now, in holes of the heap.
            crate::sys::release_free_memory();
            if self.notifier.is_starting() {
                let status = format!("serving with {} worker(s)", self.workers.len());
                self.notifier.ready(&status);
            }
        }
        self.advance_replacement();
    }

    fn status_response(&self, task: &Task) -> Response {
        let workers = self
            .workers
            .values()
            .map(|worker| {
                let mut info = worker.info();
                if task.not_answering.contains(&worker.id) {
                    info.run_state = RunState::NotAnswering;
                } else if let Some(ResponseContent::WorkerStatus(status)) =
                    task.contents.get(&worker.id)
                {
                    info.run_state = worker.shown_run_state(status.run_state);
                }
                info
            })
            .chain(self.pending_restarts.iter().map(|(id, p)| p.info(*id)))
            .collect();
        let mut response = Response::ok("", Some(ResponseContent::Workers(workers)));
        response.message = task.failures.join("; ");
        response
    }

    /// The main state's view of the cluster, with the workers' backend figures added up.
    fn cluster_response(&self, task: &Task, cluster_id: &str) -> Response {
        let Some(mut information) = queries::cluster_information(&self.state, cluster_id) else {
            return Response::failure("", format!("no cluster `{cluster_id}`"));
        };
        for content in task.contents.values() {
            let ResponseContent::Clusters(clusters) = content else {
                continue;
            };
            merge_runtime(&mut information, clusters);
        }
        let mut response = Response::ok("", Some(ResponseContent::Clusters(vec![information])));
        response.message = task.failures.join("; ");
        response
    }
}

/// Adds a worker's view of the backends to the main state's.
fn merge_runtime(information: &mut ClusterInformation, clusters: &[ClusterInformation]) {
    let Some(worker_view) = clusters
        .iter()
        .find(|c| c.cluster.cluster_id == information.cluster.cluster_id)
    else {
        return;
    };
    for seen in &worker_view.backends {
        let Some(runtime) = &seen.runtime else {
            continue;
        };
        let known = information
            .backends
            .iter_mut()
            .find(|b| b.backend.backend_id == seen.backend.backend_id);
        match known {
            Some(backend) => match &mut backend.runtime {
                Some(merged) => {
                    merged.active_connections += runtime.active_connections;
                    merged.failures = merged.failures.max(runtime.failures);
                    merged.healthy &= runtime.healthy;
                }
                None => backend.runtime = Some(runtime.clone()),
            },
            // Removed from the state, still draining in the worker.
            None => information.backends.push(seen.clone()),
        }
    }
}

fn change_response(task: &Task, what: &str) -> Response {
    if task.failures.is_empty() {
        return ok_message("", format!("{what}: done"));
    }
    error!(
        "{what} is in the main state but worker(s) refused it: {}",
        task.failures.join("; ")
    );
    Response::failure(
        "",
        format!(
            "{what} is in the main state, but refused by {}",
            task.failures.join("; ")
        ),
    )
}

/// The workers' figures: their metric names together, or their figures merged (counts added,
/// distributions merged sample by sample) with percentiles computed on the merge.
fn metrics_response(task: &Task, list: bool, per_worker: bool, histograms: bool) -> Response {
    if task.contents.is_empty() && !task.failures.is_empty() {
        return Response::failure("", task.failures.join("; "));
    }
    let content = if list {
        let names: std::collections::BTreeSet<String> = task
            .contents
            .values()
            .filter_map(|content| match content {
                ResponseContent::MetricNames(names) => Some(names.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        ResponseContent::MetricNames(names.into_iter().collect())
    } else {
        let snapshots = task
            .contents
            .iter()
            .filter_map(|(worker, content)| match content {
                ResponseContent::Metrics(metrics) => Some((*worker, metrics.clone())),
                _ => None,
            });
        let mut merged = if per_worker {
            sozu_command_lib::response::AggregatedMetrics {
                workers: snapshots
                    .map(|(worker, metrics)| (worker.to_string(), metrics))
                    .collect(),
                ..Default::default()
            }
        } else {
            metrics::merge::merge(snapshots.map(|(_, metrics)| metrics))
        };
        if !histograms {
            metrics::merge::into_percentiles(&mut merged);
        }
        ResponseContent::Metrics(merged)
    };
    let mut response = Response::ok("", Some(content));
    response.message = task.failures.join("; ");
    response
}

/// Each worker's answer by worker id and the main state's (`main`) under `main`, as Sōzu
/// answers its cluster queries.
fn clusters_of_workers_response(task: &Task, main: ResponseContent) -> Response {
    let mut answers: std::collections::BTreeMap<String, ResponseContent> = task
        .contents
        .iter()
        .map(|(worker, content)| (worker.to_string(), content.clone()))
        .collect();
    answers.insert("main".to_string(), main);
    let mut response = Response::ok("", Some(ResponseContent::WorkerResponses(answers)));
    response.message = task.failures.join("; ");
    response
}

/// Passes the workers' answers on: the content itself when there is one, by worker when there
/// are several; FAILURE when no worker answered with success.
fn forward_response(task: &Task, note: Option<&str>) -> Response {
    let mut parts: Vec<String> = note.into_iter().map(str::to_string).collect();
    parts.extend(task.failures.iter().cloned());
    let message = parts.join("; ");
    // Without a note, the workers' answers are the outcome; with one, the main process did
    // its part and the workers' refusals are only reported.
    if note.is_none() && task.contents.is_empty() && !task.failures.is_empty() {
        return Response::failure("", message);
    }
    let content = match task.contents.len() {
        0 => None,
        1 => task.contents.values().next().cloned(),
        _ => Some(ResponseContent::WorkerResponses(
            task.contents
                .iter()
                .map(|(id, content)| (id.to_string(), content.clone()))
                .collect(),
        )),
    };
    let mut response = Response::ok("", content);
    response.message = message;
    response
}

/// systemd's status line once the workers answered a reload.
fn reload_status(task: &Task) -> String {
    if task.failures.is_empty() {
        "configuration reloaded".to_string()
    } else {
        format!(
            "configuration reloaded; refused by workers: {}",
            task.failures.join("; ")
        )
    }
}
