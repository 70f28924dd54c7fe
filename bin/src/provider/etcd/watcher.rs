//! The etcd thread: one thread with its own current-thread tokio runtime, so that the main
//! process's event loop stays what it is (mio, no async).
//!
//! A session connects, takes a lease, reads the whole prefix at one revision and sends it as a
//! [`Update::Snapshot`], then watches the prefix from the next revision and sends each batch of
//! events as [`Update::Changes`]: nothing is missed between the read and the watch, and nothing
//! is replayed. Each update is followed by a wake of the main loop's [`mio::Waker`]. The main
//! process answers with [`Report`]s, written under `nodes/<node>` and `status/<node>` with the
//! session's lease; only the latest report waits while etcd is unreachable.
//!
//! A lost connection (watch or lease keep-alive failing, a request timing out) ends the session
//! with [`Update::Disconnected`]: the main process keeps routing with what it has, and a new
//! session starts after a backoff (100 ms, doubling up to 3 s), with a fresh read. A watch from
//! a compacted revision starts a new session at once. The thread ends when the main process
//! drops its [`Watcher`]; it then revokes its lease, so the node's records disappear at once.

use std::{
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use etcd_client::{
    Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse,
};
use log::{debug, info, warn};
use sozu_command_lib::config::EtcdProvider;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{
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

/// The main process's side of the etcd thread.
pub struct Watcher {
    updates: mpsc::Receiver<Update>,
    reports: Option<UnboundedSender<Report>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts the thread; each update it sends is followed by `waker.wake()`.
    pub fn start(settings: EtcdProvider, waker: Arc<mio::Waker>) -> std::io::Result<Watcher> {
        let (updates_sender, updates) = mpsc::channel();
        let (reports, reports_receiver) = unbounded_channel();
        let thread = thread::Builder::new()
            .name("etcd".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        warn!("etcd: cannot start the runtime: {error}");
                        return;
                    }
                };
                let mut link = Link {
                    settings,
                    updates: updates_sender,
                    waker,
                    reports: reports_receiver,
                    pending: None,
                    last_revision: 0,
                };
                runtime.block_on(link.run());
            })?;
        Ok(Watcher {
            updates,
            reports: Some(reports),
            thread: Some(thread),
        })
    }

    /// The updates received since the last call.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.updates.try_iter()
    }

    pub fn publish(&self, report: Report) {
        if let Some(reports) = &self.reports {
            let _ = reports.send(report);
        }
    }
}

impl Drop for Watcher {
    /// Ends the thread, which revokes its lease first (within [`REQUEST_TIMEOUT`]).
    fn drop(&mut self) {
        self.reports = None;
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
    reports: UnboundedReceiver<Report>,
    /// The latest report not written yet.
    pending: Option<Report>,
    /// The revision of the last read or event, to notice a store that went back.
    last_revision: i64,
}

impl Link {
    async fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.session().await {
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
                    if !self.wait(backoff).await {
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
    async fn wait(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                report = self.reports.recv() => match report {
                    Some(report) => self.pending = Some(report),
                    None => return false,
                },
            }
        }
    }

    async fn session(&mut self) -> Ended {
        let lost = |error: String| Ended::Lost {
            error,
            synced: false,
        };
        let settings = self.settings.clone();
        let connecting = timed(super::connect(&settings));
        tokio::pin!(connecting);
        let connect = loop {
            tokio::select! {
                connected = &mut connecting => break connected,
                report = self.reports.recv() => match report {
                    Some(report) => self.pending = Some(report),
                    None => return Ended::Stop,
                },
            }
        };
        let mut client = match connect {
            Ok(client) => client,
            Err(error) => return lost(format!("cannot connect: {error}")),
        };
        let lease = match timed(client.lease_grant(LEASE_TTL, None)).await {
            Ok(lease) => lease.id(),
            Err(error) => return lost(format!("cannot take a lease: {error}")),
        };
        let (mut keeper, mut keep_alive) = match timed(client.lease_keep_alive(lease)).await {
            Ok(pair) => pair,
            Err(error) => return lost(format!("cannot keep the lease alive: {error}")),
        };
        let prefix = self.settings.prefix.clone();
        let read = timed(client.get(prefix.as_str(), Some(GetOptions::new().with_prefix()))).await;
        let read = match read {
            Ok(read) => read,
            Err(error) => return lost(format!("cannot read {prefix}: {error}")),
        };
        let revision = read.header().map_or(0, |header| header.revision());
        let history_lost = revision < self.last_revision;
        self.last_revision = revision;
        let entries = read
            .kvs()
            .iter()
            .map(|kv| (relative(&prefix, kv.key()), kv.value().to_vec()))
            .collect();
        debug!("etcd: read {prefix} at revision {revision}");
        if !self.send(Update::Snapshot {
            revision,
            entries,
            history_lost,
        }) {
            return Ended::Stop;
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision.saturating_add(1));
        let mut watch = match timed(client.watch(prefix.as_str(), Some(options))).await {
            Ok(watch) => watch,
            Err(error) => {
                return Ended::Lost {
                    error: format!("cannot watch {prefix}: {error}"),
                    synced: true,
                };
            }
        };
        let lost = |error: String| Ended::Lost {
            error,
            synced: true,
        };
        if let Some(report) = self.pending.take() {
            if let Err(error) = self.write(&mut client, lease, &report).await {
                self.pending = Some(report);
                return lost(error);
            }
        }
        let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
        loop {
            tokio::select! {
                message = watch.message() => match message {
                    Ok(Some(response)) => {
                        if let Some(ended) = self.watched(&prefix, response) {
                            return ended;
                        }
                    }
                    Ok(None) => return lost("the watch ended".to_string()),
                    Err(error) => return lost(format!("the watch failed: {error}")),
                },
                _ = tick.tick() => {
                    if let Err(error) = timed(keeper.keep_alive()).await {
                        return lost(format!("cannot keep the lease alive: {error}"));
                    }
                }
                answer = keep_alive.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => {}
                    Ok(_) => return lost("the lease expired".to_string()),
                    Err(error) => return lost(format!("the lease keep-alive failed: {error}")),
                },
                report = self.reports.recv() => match report {
                    Some(report) => {
                        if let Err(error) = self.write(&mut client, lease, &report).await {
                            self.pending = Some(report);
                            return lost(error);
                        }
                    }
                    None => {
                        if let Err(error) = timed(client.lease_revoke(lease)).await {
                            debug!("etcd: cannot revoke the lease: {error}");
                        }
                        return Ended::Stop;
                    }
                },
            }
        }
    }

    /// One answer of the watch: changes go to the main process. Returns how the session ends,
    /// if it does.
    fn watched(&mut self, prefix: &str, response: WatchResponse) -> Option<Ended> {
        if response.compact_revision() > 0 {
            return Some(Ended::Resync);
        }
        if response.canceled() {
            return Some(Ended::Lost {
                error: format!("the watch was cancelled: {}", response.cancel_reason()),
                synced: true,
            });
        }
        let mut revision = self.last_revision;
        let changes: Vec<(String, Option<Vec<u8>>)> = response
            .events()
            .iter()
            .filter_map(|event| {
                let kv = event.kv()?;
                revision = revision.max(kv.mod_revision());
                let key = relative(prefix, kv.key());
                Some(match event.event_type() {
                    EventType::Put => (key, Some(kv.value().to_vec())),
                    EventType::Delete => (key, None),
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
    async fn write(&self, client: &mut Client, lease: i64, report: &Report) -> Result<(), String> {
        let node = serde_json::to_vec(&report.node).map_err(|error| error.to_string())?;
        let status = serde_json::to_vec(&report.status).map_err(|error| error.to_string())?;
        let prefix = &self.settings.prefix;
        let name = &self.settings.node;
        let options = || Some(PutOptions::new().with_lease(lease));
        let txn = Txn::new().and_then(vec![
            TxnOp::put(format!("{prefix}{NODES}{name}"), node, options()),
            TxnOp::put(format!("{prefix}{STATUS}{name}"), status, options()),
        ]);
        timed(client.txn(txn))
            .await
            .map(|_| ())
            .map_err(|error| format!("cannot publish this node: {error}"))
    }
}

/// A key relative to the prefix; a key that is not UTF-8 is kept as its lossy text, and is
/// reported as invalid since no folder matches it.
fn relative(prefix: &str, key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    key.strip_prefix(prefix).unwrap_or(&key).to_string()
}

/// A request that fails after [`REQUEST_TIMEOUT`].
async fn timed<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}
