//! The etcd thread: one thread that blocks on its [`Client`], so that the main process's event
//! loop stays what it is (mio, no async).
//!
//! A session connects (to the first endpoint that answers, starting after the one the last
//! session lost), takes a lease, reads the whole prefix at one revision and sends it as an
//! [`Update::Snapshot`], then watches the prefix from the next revision and sends each batch
//! of events as [`Update::Changes`]: nothing is missed between the read and the watch, and
//! nothing is replayed. The watch's answers are read by a thread of their own, which hands
//! them to the etcd thread through the same channel as the main process's [`Report`]s. Each
//! update is followed by a wake of the main loop's [`mio::Waker`]. Reports are written under
//! `nodes/<node>` and `status/<node>` with the session's lease; only the latest report waits
//! while etcd is unreachable.
//!
//! A lost connection (the watch ending, the lease keep-alive failing, a request without an
//! answer within [`REQUEST_TIMEOUT`]) ends the session with [`Update::Disconnected`]: the main
//! process keeps routing with what it has, and a new session starts after a backoff (100 ms,
//! doubling up to 3 s), with a fresh read. A watch from a compacted revision starts a new
//! session at once. An ended session's connections are shut, which ends its watch thread. The
//! thread ends when the main process drops its [`Watcher`]; it then revokes its lease, so the
//! node's records disappear at once.

use std::{
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use log::{debug, info, warn};
use sozu_command_lib::config::EtcdProvider;

use super::{
    client::{self, Client, EventKind, WatchResponse},
    layout::{NODES, STATUS},
    records::{NodeRecord, StatusRecord},
};

/// How long the node's records outlive a node that stopped answering.
const LEASE_TTL: i64 = 10;
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(3);
/// Longest wait for one request before the connection counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// What the etcd thread tells the main process.
#[derive(Debug)]
pub enum Update {
    /// Every key of the prefix at `revision`: it replaces what was known. `history_lost`
    /// when the store's revision went back since the last read (etcd restarted empty).
    Snapshot {
        revision: i64,
        entries: Vec<(String, Vec<u8>)>,
        history_lost: bool,
    },
    /// Changes of the prefix up to `revision`, in order; `None` for a deleted key. Keys are
    /// relative to the prefix.
    Changes {
        revision: i64,
        changes: Vec<(String, Option<Vec<u8>>)>,
    },
    /// etcd cannot be reached; the thread tries again after a backoff.
    Disconnected { error: String },
}

/// What the main process publishes about itself.
#[derive(Debug, Clone)]
pub struct Report {
    pub node: NodeRecord,
    pub status: StatusRecord,
}

/// What the etcd thread waits for.
enum Input {
    /// The main process's latest report.
    Report(Report),
    /// An answer of the watch of session `session`, or how it ended.
    Watched {
        session: u64,
        answer: Result<WatchResponse, client::Error>,
    },
    /// The main process is gone.
    Stop,
}

/// The main process's side of the etcd thread.
pub struct Watcher {
    updates: mpsc::Receiver<Update>,
    inputs: mpsc::Sender<Input>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts the thread; each update it sends is followed by `waker.wake()`.
    pub fn start(settings: EtcdProvider, waker: Arc<mio::Waker>) -> std::io::Result<Watcher> {
        let (updates_sender, updates) = mpsc::channel();
        let (inputs, inputs_receiver) = mpsc::channel();
        let mut link = Link {
            settings,
            updates: updates_sender,
            waker,
            inputs: inputs_receiver,
            watched: inputs.clone(),
            session: 0,
            endpoint: 0,
            pending: None,
            last_revision: 0,
        };
        let thread = thread::Builder::new()
            .name("etcd".to_string())
            .spawn(move || link.run())?;
        Ok(Watcher {
            updates,
            inputs,
            thread: Some(thread),
        })
    }

    /// The updates received since the last call.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.updates.try_iter()
    }

    pub fn publish(&self, report: Report) {
        let _ = self.inputs.send(Input::Report(report));
    }
}

impl Drop for Watcher {
    /// Ends the thread, which revokes its lease first. A request in progress ends first (within
    /// [`REQUEST_TIMEOUT`], or the connect timeout of each endpoint).
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How a session ended.
enum Ended {
    /// The main process is gone.
    Stop,
    /// The watched revision was compacted: read everything again now.
    Resync,
    /// etcd could not be reached or stopped answering; `synced` if the session got as far
    /// as its first read.
    Lost { error: String, synced: bool },
}

/// The thread's state across sessions.
struct Link {
    settings: EtcdProvider,
    updates: mpsc::Sender<Update>,
    waker: Arc<mio::Waker>,
    inputs: mpsc::Receiver<Input>,
    /// Given to each session's watch thread.
    watched: mpsc::Sender<Input>,
    /// The number of the current session: answers of older watches are dropped.
    session: u64,
    /// The endpoint the next session tries first.
    endpoint: usize,
    /// The latest report not written yet.
    pending: Option<Report>,
    /// The revision of the last read or event, to notice a store that went back.
    last_revision: i64,
}

impl Link {
    fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.session = self.session.wrapping_add(1);
            let client = Client::connect(&self.settings, self.endpoint, REQUEST_TIMEOUT);
            let ended = match client {
                Ok(mut client) => {
                    let ended = self.session(&mut client);
                    client.shutdown();
                    if let Ended::Lost { .. } = ended {
                        self.endpoint = client.index().wrapping_add(1);
                    }
                    ended
                }
                Err(error) => Ended::Lost {
                    error: format!("cannot connect: {error}"),
                    synced: false,
                },
            };
            match ended {
                Ended::Stop => return,
                Ended::Resync => {
                    info!("etcd: the watched revision was compacted: reading the prefix again");
                }
                Ended::Lost { error, synced } => {
                    debug!("etcd: {error}; trying again in {backoff:?}");
                    if !self.send(Update::Disconnected { error }) {
                        return;
                    }
                    if synced {
                        backoff = FIRST_BACKOFF;
                    }
                    if !self.wait(backoff) {
                        return;
                    }
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends an update and wakes the main loop. `false` once the main process is gone.
    fn send(&self, update: Update) -> bool {
        if self.updates.send(update).is_err() {
            return false;
        }
        if let Err(error) = self.waker.wake() {
            warn!("etcd: cannot wake the main loop: {error}");
        }
        true
    }

    /// Waits for `delay`, keeping the latest report. `false` if the main process is gone.
    fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(Input::Report(report)) => self.pending = Some(report),
                Ok(Input::Watched { .. }) => {}
                Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => return true,
            }
        }
    }

    fn session(&mut self, client: &mut Client) -> Ended {
        let lost = |error: String| Ended::Lost {
            error,
            synced: false,
        };
        let lease = match client.lease_grant(LEASE_TTL) {
            Ok(lease) => lease,
            Err(error) => return lost(format!("cannot take a lease: {error}")),
        };
        let prefix = self.settings.prefix.clone();
        let (revision, kvs) = match client.range_prefix(&prefix) {
            Ok(read) => read,
            Err(error) => return lost(format!("cannot read {prefix}: {error}")),
        };
        let history_lost = revision < self.last_revision;
        self.last_revision = revision;
        let entries = kvs
            .into_iter()
            .map(|kv| (relative(&prefix, &kv.key), kv.value))
            .collect();
        debug!("etcd: read {prefix} at revision {revision}");
        if !self.send(Update::Snapshot {
            revision,
            entries,
            history_lost,
        }) {
            return Ended::Stop;
        }
        let lost = |error: String| Ended::Lost {
            error,
            synced: true,
        };
        if let Err(error) = self.start_watch(client, revision.saturating_add(1)) {
            return lost(format!("cannot watch {prefix}: {error}"));
        }
        if let Some(report) = self.pending.take() {
            if let Err(error) = self.write(client, lease, &report) {
                self.pending = Some(report);
                return lost(error);
            }
        }
        let mut keep_alive_at = Instant::now() + KEEP_ALIVE_EVERY;
        loop {
            let left = keep_alive_at.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(Input::Watched { session, answer }) if session == self.session => {
                    let ended = match answer {
                        Ok(response) => self.watched(&prefix, response),
                        Err(error) => Some(lost(format!("the watch failed: {error}"))),
                    };
                    if let Some(ended) = ended {
                        return ended;
                    }
                }
                Ok(Input::Watched { .. }) => {}
                Ok(Input::Report(report)) => {
                    if let Err(error) = self.write(client, lease, &report) {
                        self.pending = Some(report);
                        return lost(error);
                    }
                }
                Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if let Err(error) = client.lease_revoke(lease) {
                        debug!("etcd: cannot revoke the lease: {error}");
                    }
                    return Ended::Stop;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    match client.lease_keep_alive(lease) {
                        Ok(ttl) if ttl > 0 => {}
                        Ok(_) => return lost("the lease expired".to_string()),
                        Err(error) => {
                            return lost(format!("cannot keep the lease alive: {error}"));
                        }
                    }
                    keep_alive_at = Instant::now() + KEEP_ALIVE_EVERY;
                }
            }
        }
    }

    /// Starts the thread that reads the session's watch from `revision` and hands each answer
    /// to the etcd thread; it ends with the watch, or when the session's connections are shut.
    fn start_watch(&self, client: &Client, revision: i64) -> std::io::Result<()> {
        let client = client.clone();
        let prefix = self.settings.prefix.clone();
        let session = self.session;
        let inputs = self.watched.clone();
        thread::Builder::new()
            .name("etcd-watch".to_string())
            .spawn(move || {
                let answers = match client.watch(&prefix, revision) {
                    Ok(answers) => answers,
                    Err(answer) => {
                        let _ = inputs.send(Input::Watched {
                            session,
                            answer: Err(answer),
                        });
                        return;
                    }
                };
                for answer in answers {
                    let failed = answer.is_err();
                    if inputs.send(Input::Watched { session, answer }).is_err() || failed {
                        return;
                    }
                }
                let _ = inputs.send(Input::Watched {
                    session,
                    answer: Err(client::Error::Unreachable("the watch ended".to_string())),
                });
            })
            .map(drop)
    }

    /// One answer of the watch: changes go to the main process. Returns how the session ends,
    /// if it does.
    fn watched(&mut self, prefix: &str, response: WatchResponse) -> Option<Ended> {
        if response.compact_revision > 0 {
            return Some(Ended::Resync);
        }
        if response.canceled {
            return Some(Ended::Lost {
                error: format!("the watch was cancelled: {}", response.cancel_reason),
                synced: true,
            });
        }
        let mut revision = self.last_revision;
        let changes: Vec<(String, Option<Vec<u8>>)> = response
            .events
            .into_iter()
            .filter_map(|event| {
                let kv = event.kv?;
                revision = revision.max(kv.mod_revision);
                let key = relative(prefix, &kv.key);
                Some(match event.kind {
                    EventKind::Put => (key, Some(kv.value)),
                    EventKind::Delete => (key, None),
                })
            })
            .collect();
        if changes.is_empty() {
            return None;
        }
        self.last_revision = revision;
        (!self.send(Update::Changes { revision, changes })).then_some(Ended::Stop)
    }

    /// Writes the node's records with the session's lease, in one transaction.
    fn write(&self, client: &mut Client, lease: i64, report: &Report) -> Result<(), String> {
        let node = serde_json::to_vec(&report.node).map_err(|error| error.to_string())?;
        let status = serde_json::to_vec(&report.status).map_err(|error| error.to_string())?;
        let prefix = &self.settings.prefix;
        let name = &self.settings.node;
        let puts = [
            (format!("{prefix}{NODES}{name}"), node),
            (format!("{prefix}{STATUS}{name}"), status),
        ];
        client
            .put_all(&puts, Some(lease))
            .map_err(|error| format!("cannot publish this node: {error}"))
    }
}

/// A key relative to the prefix; a key that is not UTF-8 is kept as its lossy text, and is
/// reported as invalid since no folder matches it.
pub fn relative(prefix: &str, key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    key.strip_prefix(prefix).unwrap_or(&key).to_string()
}
