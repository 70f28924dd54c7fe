//! Fault leases and `LIST_FAULTS`.
//!
//! A fault with a `ttl` holds a lease that the main process keeps: the lease starts when the
//! fault is added, starts again when an `UPDATE_FAULT` replaces it, and when it runs out the
//! main process removes the fault with an ordinary `REMOVE_FAULT` (so workers, the saved
//! state and subscribers learn it as any change). Events announce a fault's start, expiry and
//! removal, so that an injected failure is never taken for a real one.
//!
//! `LIST_FAULTS` answers from the main state, with each lease's remaining time and the
//! connections and requests each fault touched, summed over the workers' metrics.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use log::info;
use sozu_command_lib::{
    request::{AddFault, Fault, FaultName, Order, QueryMetrics},
    response::{
        AggregatedMetrics, Event, EventKind, FaultInformation, FilteredMetric, Response,
        ResponseContent,
    },
    state::ConfigState,
};
use sozu_lib::{faults::touched_metric, metrics::merge};

use super::{
    Main,
    tasks::{ClientRef, Purpose, Task},
};

/// The leases of the faults that have a `ttl`.
#[derive(Debug, Default)]
pub struct Leases {
    ends: BTreeMap<String, Instant>,
    /// Faults being removed because their lease ended (their removal is an expiry).
    expiring: BTreeSet<String>,
}

impl Leases {
    /// The leases of the faults of a state that arrives whole: each starts at `now`.
    pub fn starting(state: &ConfigState, now: Instant) -> Self {
        Leases {
            ends: state
                .faults
                .values()
                .filter_map(|fault| Some((fault.name.clone(), now.checked_add(fault.ttl?)?)))
                .collect(),
            expiring: BTreeSet::new(),
        }
    }

    /// When the next lease ends.
    pub fn next_end(&self) -> Option<Instant> {
        self.ends.values().min().copied()
    }

    fn remaining(&self, name: &str, now: Instant) -> Option<Duration> {
        self.ends
            .get(name)
            .map(|end| end.saturating_duration_since(now))
    }
}

impl Main {
    /// After the state took `orders`: leases start, restart or end, and events say so.
    pub(super) fn faults_committed(&mut self, orders: &[Order]) {
        let now = Instant::now();
        for order in orders {
            match order {
                Order::AddFault(AddFault { fault }) | Order::UpdateFault(AddFault { fault }) => {
                    match fault.ttl {
                        Some(ttl) => {
                            let end = now.checked_add(ttl).unwrap_or(now);
                            self.fault_leases.ends.insert(fault.name.clone(), end);
                        }
                        None => {
                            self.fault_leases.ends.remove(&fault.name);
                        }
                    }
                    let lease = fault
                        .ttl
                        .map(|ttl| format!(" for {}s", ttl.as_secs()))
                        .unwrap_or_default();
                    let message = format!(
                        "fault `{}` ({}) on {} started{lease}",
                        fault.name,
                        fault.effect.kind(),
                        fault.target
                    );
                    self.fault_event(EventKind::FaultStarted, fault, message);
                }
                Order::RemoveFault(FaultName { name }) => {
                    self.fault_leases.ends.remove(name);
                    let (kind, message) = if self.fault_leases.expiring.remove(name) {
                        (EventKind::FaultExpired, format!("fault `{name}` expired"))
                    } else {
                        (EventKind::FaultRemoved, format!("fault `{name}` removed"))
                    };
                    info!("{message}");
                    self.event(kind, message);
                }
                Order::ResetFaults => {
                    self.event(EventKind::FaultRemoved, "every fault removed".to_string());
                }
                _ => {}
            }
        }
        // Faults that went with their cluster or listener, or with a reset.
        let state = &self.state;
        self.fault_leases
            .ends
            .retain(|name, _| state.faults.contains_key(name));
    }

    fn fault_event(&mut self, kind: EventKind, fault: &Fault, message: String) {
        info!("{message}");
        let backend_id = match &fault.target {
            sozu_command_lib::request::FaultTarget::Backend { backend_id, .. } => {
                Some(backend_id.clone())
            }
            _ => None,
        };
        let address = match fault.target {
            sozu_command_lib::request::FaultTarget::Frontend { address, .. } => Some(address),
            _ => None,
        };
        self.broadcast(Event {
            kind,
            cluster_id: fault.target.cluster_id().map(str::to_string),
            backend_id,
            address,
            message,
        });
    }

    /// Removes the faults whose lease ended by `now`.
    pub(super) fn expire_faults(&mut self, now: Instant) {
        let ended: Vec<String> = self
            .fault_leases
            .ends
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            self.fault_leases.ends.remove(&name);
            self.fault_leases.expiring.insert(name.clone());
            self.change(None, Order::RemoveFault(FaultName { name: name.clone() }));
            // Refused (the proxy stops, or hands over): the expiry is not announced.
            self.fault_leases.expiring.remove(&name);
        }
    }

    /// `LIST_FAULTS`: the workers' touched counters are asked for, then the answer is built.
    pub(super) fn list_faults(&mut self, to: ClientRef) {
        let targets = self.serving_workers();
        let task = Task::new(Purpose::Faults, Some(to), self.settings.worker_timeout);
        self.start_task(
            task,
            &targets,
            &[Order::QueryMetrics(QueryMetrics::default())],
        );
    }

    pub(super) fn faults_response(&self, task: &Task) -> Response {
        let merged = merge::merge(task.contents.values().filter_map(|content| match content {
            ResponseContent::Metrics(metrics) => Some(metrics.clone()),
            _ => None,
        }));
        let faults = fault_information(&self.state.faults, &self.fault_leases, &merged);
        Response::ok("", Some(ResponseContent::Faults(faults)))
    }
}

/// Each fault with its lease's remaining time and its touched counter.
fn fault_information(
    faults: &BTreeMap<String, Fault>,
    leases: &Leases,
    metrics: &AggregatedMetrics,
) -> Vec<FaultInformation> {
    let now = Instant::now();
    faults
        .values()
        .map(|fault| FaultInformation {
            fault: fault.clone(),
            remaining_ms: leases
                .remaining(&fault.name, now)
                .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            touched: match metrics.proxy.get(&touched_metric(&fault.name)) {
                Some(FilteredMetric::Count(count)) => *count,
                _ => 0,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_faults_carry_their_lease_and_touched_counter() {
        let fault = |name: &str, ttl: Option<u64>| -> Fault {
            let mut json = serde_json::json!({"name": name, "cluster_id": "api", "type": "down"});
            if let Some(ttl) = ttl {
                json["ttl"] = ttl.into();
            }
            serde_json::from_value(json).unwrap()
        };
        let faults = BTreeMap::from([
            ("leased".to_string(), fault("leased", Some(60))),
            ("open".to_string(), fault("open", None)),
        ]);
        let mut leases = Leases::default();
        leases.ends.insert(
            "leased".to_string(),
            Instant::now() + Duration::from_secs(60),
        );
        let mut metrics = AggregatedMetrics::default();
        metrics
            .proxy
            .insert(touched_metric("leased"), FilteredMetric::Count(12));
        let listed = fault_information(&faults, &leases, &metrics);
        let state = ConfigState {
            faults: faults.clone(),
            ..ConfigState::default()
        };
        let now = Instant::now();
        let started = Leases::starting(&state, now);
        assert_eq!(started.next_end(), Some(now + Duration::from_secs(60)));
        assert_eq!(listed[0].fault.name, "leased");
        assert!(
            listed[0]
                .remaining_ms
                .is_some_and(|ms| ms > 59_000 && ms <= 60_000)
        );
        assert_eq!(listed[0].touched, 12);
        assert_eq!(listed[1].remaining_ms, None);
        assert_eq!(listed[1].touched, 0);
    }
}
