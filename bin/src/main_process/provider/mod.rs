//! The main process's side of `[provider.etcd]`: it learns what the prefix holds from the etcd
//! thread ([`Watcher`], woken through the [`WAKER`](super::WAKER) token of the event loop),
//! turns it into the orders that change its state ([`reconcile`]), and applies them through
//! the path of a command-socket client: a batch checked in full on a copy of the state, then
//! sent to every worker, answered once they all answered. The fleet is that client: answers
//! addressed to [`CLIENT`] come back here, and the node's record is published with the
//! revision the workers applied.

mod reconcile;

use std::{collections::BTreeMap, io, sync::Arc};

use log::{debug, info, warn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sozu_command_lib::{
    config::EtcdProvider,
    request::Order,
    response::{AggregatedMetrics, EventKind, FilteredMetric, Response, ResponseStatus},
    state::ConfigState,
};

use super::{Main, tasks::ClientRef};
use crate::{
    cli::with_causes,
    provider::etcd::{
        layout::{self, KeyClass, ViewDigest},
        records::{KeyError, NodeRecord, StatusRecord, unix_now_ms},
        watcher::{Report, Update, Watcher},
    },
};

/// The id the fleet has among the command clients; real clients count up from 1.
pub const CLIENT: u64 = u64::MAX;

/// What a new main process takes over from the previous one during a hot upgrade.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handed {
    applied: BTreeMap<String, Order>,
    keeping_state: bool,
}

/// What the updates of the etcd thread came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// Only records of nodes, or a disconnection.
    Nothing,
    /// The routing keys changed: apply them.
    Changed,
    /// A read of an empty prefix in a store that lost its history: the state is kept.
    Kept,
}

/// One routing key as read.
struct ViewEntry {
    order: Result<Order, String>,
    digest: ViewDigest,
}

/// What the node knows of the prefix and what it applied.
pub struct Fleet {
    settings: EtcdProvider,
    watcher: Watcher,
    /// Routing keys, relative to the prefix.
    view: BTreeMap<String, ViewEntry>,
    digest: ViewDigest,
    /// The revision of `view`.
    revision: i64,
    /// What the last reconciliation put in place, by key.
    applied: BTreeMap<String, Order>,
    /// The keys refused at the last reconciliation.
    refused: Vec<KeyError>,
    /// Why the workers refused the last change, if they did.
    change_error: Option<String>,
    /// The store restarted empty: the node keeps its state until the prefix is written again.
    keeping_state: bool,
    /// Changes sent to the workers and not answered yet: revision and view digest, by request.
    in_flight: BTreeMap<i64, ViewDigest>,
    /// The last revision every worker applied, and when.
    applied_revision: i64,
    applied_digest: ViewDigest,
    applied_at_ms: u64,
    /// Keys refused since start (counted once per value).
    refused_values: u64,
    /// Disconnections from etcd since start.
    disconnections: u64,
    /// False from a lost connection to the next read: an outage is reported once.
    connected: bool,
}

impl Fleet {
    /// Starts the etcd thread when the settings name a provider.
    pub fn start(
        settings: Option<&EtcdProvider>,
        waker: Arc<mio::Waker>,
    ) -> io::Result<Option<Fleet>> {
        let Some(settings) = settings else {
            return Ok(None);
        };
        let watcher = Watcher::start(settings.clone(), waker)?;
        info!(
            "fleet: node `{}` watching {} on {}",
            settings.node,
            settings.prefix,
            settings.endpoints.join(", ")
        );
        Ok(Some(Fleet {
            settings: settings.clone(),
            watcher,
            view: BTreeMap::new(),
            digest: ViewDigest::default(),
            revision: 0,
            applied: BTreeMap::new(),
            refused: Vec::new(),
            change_error: None,
            keeping_state: false,
            in_flight: BTreeMap::new(),
            applied_revision: 0,
            applied_digest: ViewDigest::default(),
            applied_at_ms: 0,
            refused_values: 0,
            disconnections: 0,
            connected: true,
        }))
    }

    pub fn handed(&self) -> Handed {
        Handed {
            applied: self.applied.clone(),
            keeping_state: self.keeping_state,
        }
    }

    /// Continues from what the previous main process put in place.
    pub fn adopt(&mut self, handed: Handed) {
        self.applied = handed.applied;
        self.keeping_state = handed.keeping_state;
    }

    /// Takes the updates of the etcd thread.
    fn take_updates(&mut self) -> Taken {
        let mut taken = Taken::Nothing;
        let updates: Vec<Update> = self.watcher.updates().collect();
        for update in updates {
            match update {
                Update::Snapshot {
                    revision,
                    entries,
                    history_lost,
                } => {
                    info!(
                        "fleet: read {} at revision {revision}",
                        self.settings.prefix
                    );
                    self.connected = true;
                    let routing: Vec<(String, Vec<u8>)> = entries
                        .into_iter()
                        .filter(|(key, _)| layout::classify(key) != KeyClass::Record)
                        .collect();
                    self.revision = revision;
                    if (history_lost || self.keeping_state) && routing.is_empty() {
                        if !self.keeping_state {
                            warn!(
                                "fleet: etcd lost its history (revision {revision}) and {} is \
                                 empty: keeping the current state until it is written again",
                                self.settings.prefix
                            );
                        }
                        self.keeping_state = true;
                        self.view.clear();
                        self.digest = ViewDigest::default();
                        if taken == Taken::Nothing {
                            taken = Taken::Kept;
                        }
                        continue;
                    }
                    self.keeping_state = false;
                    self.view.clear();
                    self.digest = ViewDigest::default();
                    for (key, value) in routing {
                        self.put(key, &value);
                    }
                    taken = Taken::Changed;
                }
                Update::Changes { revision, changes } => {
                    self.revision = revision;
                    for (key, value) in changes {
                        if layout::classify(&key) == KeyClass::Record {
                            continue;
                        }
                        taken = Taken::Changed;
                        self.keeping_state = false;
                        match value {
                            Some(value) => self.put(key, &value),
                            None => {
                                if let Some(old) = self.view.remove(&key) {
                                    self.digest.toggle(old.digest);
                                }
                            }
                        }
                    }
                }
                Update::Disconnected { error } => {
                    if self.connected {
                        self.connected = false;
                        self.disconnections += 1;
                        warn!(
                            "fleet: etcd unreachable ({error}): routing goes on with the current \
                             state"
                        );
                    } else {
                        debug!("fleet: etcd still unreachable: {error}");
                    }
                }
            }
        }
        taken
    }

    fn put(&mut self, key: String, value: &[u8]) {
        let digest = ViewDigest::of_entry(&key, value);
        let order = match layout::classify(&key) {
            KeyClass::Routing(kind, id) => layout::parse(kind, id, value),
            _ => Err(layout::ValueError::UnknownFolder),
        }
        .map_err(|error| with_causes(&error));
        self.digest.toggle(digest);
        if let Some(old) = self.view.insert(key, ViewEntry { order, digest }) {
            self.digest.toggle(old.digest);
        }
    }

    fn report(&self, state: &ConfigState) -> Report {
        let mut errors = self.refused.clone();
        if let Some(error) = &self.change_error {
            errors.push(KeyError {
                key: self.settings.prefix.clone(),
                error: error.clone(),
            });
        }
        Report {
            node: NodeRecord {
                node: self.settings.node.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
                revision: self.applied_revision,
                view: self.applied_digest.to_string(),
                state_hash: state_hash(state),
                applied_at_ms: self.applied_at_ms,
                refused: errors.len(),
                keeping_state: self.keeping_state,
            },
            status: StatusRecord {
                revision: self.applied_revision,
                errors,
            },
        }
    }
}

impl Main {
    /// The provider's figures for `COUNT_REQUESTS` (`sozu state stats`), when there is one.
    pub(super) fn fleet_counts(&self) -> Vec<(String, u64)> {
        let Some(fleet) = &self.fleet else {
            return Vec::new();
        };
        let gauge = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        vec![
            ("fleet.refused_values".to_string(), fleet.refused_values),
            ("fleet.refused_now".to_string(), gauge(fleet.refused.len())),
            ("fleet.disconnections".to_string(), fleet.disconnections),
            (
                "fleet.applied_revision".to_string(),
                u64::try_from(fleet.applied_revision).unwrap_or(0),
            ),
        ]
    }

    /// The provider's figures among the main process's, for the Prometheus endpoint.
    pub(super) fn add_fleet_metrics(&self, metrics: &mut AggregatedMetrics) {
        for (name, value) in self.fleet_counts() {
            let value = match name.as_str() {
                "fleet.refused_values" | "fleet.disconnections" => FilteredMetric::Count(value),
                _ => FilteredMetric::Gauge(i64::try_from(value).unwrap_or(i64::MAX)),
            };
            metrics.main.insert(name, value);
        }
    }

    /// `target` with the objects of the etcd prefix on top, as they are applied now: a reload
    /// of the configuration file keeps them.
    pub(super) fn with_fleet(&self, target: ConfigState) -> ConfigState {
        let Some(fleet) = &self.fleet else {
            return target;
        };
        let view: BTreeMap<String, Result<Order, String>> = fleet
            .applied
            .iter()
            .map(|(key, order)| (key.clone(), Ok(order.clone())))
            .collect();
        reconcile::reconcile(&target, &fleet.applied, &view).target
    }

    /// The etcd thread has news.
    pub(super) fn fleet_ready(&mut self) {
        let Some(fleet) = &mut self.fleet else {
            return;
        };
        match fleet.take_updates() {
            Taken::Changed => self.fleet_apply(),
            // Published once per read (a new session has a new lease), never in answer to
            // other nodes' records, which would have every node answer every other forever.
            Taken::Kept if fleet.in_flight.is_empty() => {
                fleet.applied_revision = fleet.revision;
                fleet.applied_digest = fleet.digest;
                let report = fleet.report(&self.state);
                fleet.watcher.publish(report);
            }
            Taken::Kept | Taken::Nothing => {}
        }
    }

    /// Brings the state to what the prefix holds, through the order path.
    fn fleet_apply(&mut self) {
        let Some(fleet) = &mut self.fleet else {
            return;
        };
        let view: BTreeMap<String, Result<Order, String>> = fleet
            .view
            .iter()
            .map(|(key, entry)| (key.clone(), entry.order.clone()))
            .collect();
        let reconciled = reconcile::reconcile(&self.state, &fleet.applied, &view);
        let prefix = fleet.settings.prefix.clone();
        let refused: Vec<KeyError> = reconciled
            .errors
            .into_iter()
            .map(|(key, error)| KeyError {
                key: format!("{prefix}{key}"),
                error,
            })
            .collect();
        let new_refusals: Vec<KeyError> = refused
            .iter()
            .filter(|refusal| !fleet.refused.contains(refusal))
            .cloned()
            .collect();
        fleet.refused = refused;
        fleet.applied = reconciled.applied;
        let revision = fleet.revision;
        fleet.in_flight.insert(revision, fleet.digest);
        fleet.refused_values += u64::try_from(new_refusals.len()).unwrap_or(u64::MAX);
        for refusal in new_refusals {
            let message = format!("fleet: {} refused: {}", refusal.key, refusal.error);
            warn!("{message}");
            self.event(EventKind::FleetValueRefused, message);
        }
        let orders = self.state.diff(&reconciled.target);
        let to = ClientRef {
            client: CLIENT,
            request_id: revision.to_string(),
        };
        if orders.is_empty() {
            self.fleet_answer(&super::ok_message(&to.request_id, "no change"));
            return;
        }
        info!(
            "fleet: revision {revision}: {} change(s) to apply",
            orders.len()
        );
        let names: Vec<&'static str> = orders.iter().map(Order::name).collect();
        let what = format!("fleet revision {revision} ({} changes)", orders.len());
        self.change_batch(Some(to), orders, what, |index| {
            format!("change {} ({})", index + 1, names.get(index).unwrap_or(&""))
        });
    }

    /// An answer of the order path to the fleet: once final, the revision is applied (or
    /// refused) and the node's record is published.
    pub(super) fn fleet_answer(&mut self, response: &Response) {
        if !response.is_final() {
            return;
        }
        let Some(fleet) = &mut self.fleet else {
            return;
        };
        let Ok(revision) = response.id.parse::<i64>() else {
            return;
        };
        let Some(digest) = fleet.in_flight.remove(&revision) else {
            return;
        };
        if response.status == ResponseStatus::Failure {
            warn!("fleet: revision {revision}: {}", response.message);
            fleet.change_error = Some(response.message.clone());
        } else {
            fleet.change_error = None;
        }
        if revision >= fleet.applied_revision {
            fleet.applied_revision = revision;
            fleet.applied_digest = digest;
            fleet.applied_at_ms = unix_now_ms();
        }
        let report = fleet.report(&self.state);
        fleet.watcher.publish(report);
    }
}

/// A digest of the whole routing state: the SHA-256 of its orders, first 16 hexadecimal
/// digits.
fn state_hash(state: &ConfigState) -> String {
    let mut hasher = Sha256::new();
    for order in state.orders() {
        if let Ok(json) = serde_json::to_vec(&order) {
            hasher.update(json);
            hasher.update(b"\n");
        }
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
