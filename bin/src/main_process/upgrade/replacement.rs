//! Replacing workers one by one, after a main process upgrade or for `UPGRADE_WORKER`: a new
//! worker is started and given the state; once it answered all of it, the old one is told to
//! finish its sessions and exit, and the next one is replaced.

use std::{collections::VecDeque, time::Instant};

use log::info;
use sozu_command_lib::response::Response;

use crate::main_process::{Main, ok_message, tasks::ClientRef};

/// Workers being replaced one by one.
#[derive(Debug)]
pub struct Replacement {
    client: Option<ClientRef>,
    /// Old workers still to replace.
    queue: VecDeque<u32>,
    /// The old worker being replaced, and its replacement, which is getting the state.
    current: Option<(u32, u32)>,
    replaced: usize,
    failures: Vec<String>,
    started: Instant,
}

impl Replacement {
    /// Whether client `id` waits for this replacement's answer.
    pub fn is_for(&self, id: u64) -> bool {
        self.client
            .as_ref()
            .is_some_and(|client| client.client == id)
    }
}

impl Main {
    /// `UPGRADE_WORKER`: replaces one worker by a new one from the binary now on disk.
    pub(in crate::main_process) fn upgrade_worker(&mut self, to: ClientRef, worker_id: u32) {
        let refusal = if self.stop.is_some() {
            Some("sozu is stopping".to_string())
        } else if self.replacement.is_some()
            || self.pending_main_upgrade.is_some()
            || self.successor.is_some()
        {
            Some("an upgrade is already in progress".to_string())
        } else if !self.serving_workers().contains(&worker_id) {
            Some(format!("no serving worker {worker_id}"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.reply(&to, Response::failure(to.request_id.clone(), refusal));
            return;
        }
        let message = format!("replacing worker {worker_id}");
        self.reply(&to, Response::processing(to.request_id.clone(), message));
        self.start_replacement(Some(to), vec![worker_id]);
    }

    pub(super) fn start_replacement(&mut self, client: Option<ClientRef>, old: Vec<u32>) {
        info!("replacing {} worker(s) one by one", old.len());
        self.replacement = Some(Replacement {
            client,
            queue: old.into(),
            current: None,
            replaced: 0,
            failures: Vec::new(),
            started: Instant::now(),
        });
        self.advance_replacement();
    }

    /// Moves the replacement on: once the new worker has the state, the old one stops and the
    /// next one is replaced; once all are, the client is told.
    pub(in crate::main_process) fn advance_replacement(&mut self) {
        let Some(mut replacement) = self.replacement.take() else {
            return;
        };
        loop {
            if let Some((old, new)) = replacement.current {
                match self.workers.get(&new) {
                    Some(worker) if !worker.ready => {
                        self.replacement = Some(replacement);
                        return;
                    }
                    Some(_) => {
                        info!("worker {new} replaces worker {old}, which finishes its sessions");
                        self.retire_worker(old);
                        replacement.replaced += 1;
                    }
                    None => replacement
                        .failures
                        .push(format!("the replacement of worker {old} did not start")),
                }
                replacement.current = None;
            }
            let Some(old) = replacement.queue.pop_front() else {
                break;
            };
            if !self.serving_workers().contains(&old) {
                continue;
            }
            match self.launch_new_worker() {
                Some(new) => replacement.current = Some((old, new)),
                None => replacement
                    .failures
                    .push(format!("cannot start a replacement for worker {old}")),
            }
        }
        let message = format!(
            "upgrade done in {:?}: main process pid {}, {} worker(s) replaced",
            replacement.started.elapsed(),
            std::process::id(),
            replacement.replaced
        );
        info!("{message}");
        if let Some(to) = &replacement.client {
            let response = if replacement.failures.is_empty() {
                ok_message(&to.request_id, message)
            } else {
                Response::failure(
                    to.request_id.clone(),
                    format!("{message}; {}", replacement.failures.join("; ")),
                )
            };
            self.reply(to, response);
        }
    }
}
