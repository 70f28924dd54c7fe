//! The faults of the routing state: added, replaced and removed by orders, checked against
//! the clusters, backends and listeners they name.
//!
//! A fault depends on its cluster (a cluster or backend target) or its listener (a frontend
//! target) and goes with it. A backend target names the backend by id, and a frontend
//! target's hostname is matched against requests: neither has to exist, so that replacing a
//! backend or a frontend never loses a fault.

use std::collections::btree_map::Entry;

use super::{ConfigState, StateError};
use crate::request::{Fault, FaultTarget, Order};

impl ConfigState {
    fn require_fault_target(&self, fault: &Fault) -> Result<(), StateError> {
        match &fault.target {
            FaultTarget::Cluster { cluster_id } | FaultTarget::Backend { cluster_id, .. } => {
                self.require_cluster(cluster_id)
            }
            FaultTarget::Frontend { address, .. } => {
                if self.listener_kind(*address).is_some() {
                    Ok(())
                } else {
                    Err(StateError::NoFaultListener(*address))
                }
            }
        }
    }

    pub(super) fn add_fault(&mut self, fault: &Fault) -> Result<(), StateError> {
        self.require_fault_target(fault)?;
        match self.faults.entry(fault.name.clone()) {
            Entry::Occupied(entry) => Err(StateError::FaultExists(entry.key().clone())),
            Entry::Vacant(entry) => {
                entry.insert(fault.clone());
                Ok(())
            }
        }
    }

    pub(super) fn update_fault(&mut self, fault: &Fault) -> Result<(), StateError> {
        self.require_fault_target(fault)?;
        let existing = self
            .faults
            .get_mut(&fault.name)
            .ok_or_else(|| StateError::NoFault(fault.name.clone()))?;
        *existing = fault.clone();
        Ok(())
    }

    pub(super) fn remove_fault(&mut self, name: &str) -> Result<(), StateError> {
        self.faults
            .remove(name)
            .map(drop)
            .ok_or_else(|| StateError::NoFault(name.to_string()))
    }

    /// Forgets the faults of a cluster that is removed.
    pub(super) fn remove_cluster_faults(&mut self, cluster_id: &str) {
        self.faults
            .retain(|_, fault| fault.target.cluster_id() != Some(cluster_id));
    }

    /// Forgets the faults of a listener that is removed.
    pub(super) fn remove_listener_faults(&mut self, address: std::net::SocketAddr) {
        self.faults.retain(|_, fault| {
            !matches!(fault.target, FaultTarget::Frontend { address: a, .. } if a == address)
        });
    }

    /// Whether `fault` stays as it is when `self` becomes `target`: the same in both, and its
    /// listener (for a frontend target) not replaced on the way.
    fn fault_stays(&self, target: &ConfigState, fault: &Fault) -> bool {
        let listener_stays = match fault.target {
            FaultTarget::Frontend { address, .. } => {
                self.listener_kind(address) == target.listener_kind(address)
            }
            _ => true,
        };
        listener_stays && target.faults.get(&fault.name) == Some(fault)
    }

    /// Removes the faults `target` lacks or has otherwise; they go first, before what they
    /// depend on.
    pub(super) fn diff_removed_faults(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        for fault in self.faults.values() {
            if !self.fault_stays(target, fault) {
                orders.push(Order::RemoveFault(crate::request::FaultName {
                    name: fault.name.clone(),
                }));
            }
        }
    }

    /// Adds the faults of `target` that `self` lacks or has otherwise; they go last, after what
    /// they depend on.
    pub(super) fn diff_added_faults(&self, target: &ConfigState, orders: &mut Vec<Order>) {
        for fault in target.faults.values() {
            if self
                .faults
                .get(&fault.name)
                .is_none_or(|f| !self.fault_stays(target, f))
            {
                orders.push(Order::AddFault(crate::request::AddFault {
                    fault: fault.clone(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use proptest::prelude::*;

    use super::*;
    use crate::request::{
        AddFault, Cluster, ClusterId, Effect, FaultName, ListenerAddress, ListenerType,
        Probability, TcpListenerConfig,
    };

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn fault(name: &str, cluster_id: &str) -> Fault {
        serde_json::from_value(serde_json::json!({
            "name": name, "cluster_id": cluster_id, "type": "latency", "latency": 100,
        }))
        .unwrap()
    }

    fn add(fault: Fault) -> Order {
        Order::AddFault(AddFault { fault })
    }

    fn base() -> ConfigState {
        let mut state = ConfigState::new();
        for order in [
            Order::AddCluster(Cluster::new("api")),
            Order::AddCluster(Cluster::new("db")),
            Order::AddTcpListener(TcpListenerConfig::new(address(7000))),
        ] {
            state.apply(&order).unwrap();
        }
        state
    }

    /// Applies `order` expecting a refusal, and checks that nothing changed.
    fn refused(state: &mut ConfigState, order: Order) -> String {
        let before = state.clone();
        let error = state.apply(&order).unwrap_err().to_string();
        assert_eq!(*state, before, "{order} changed the state");
        error
    }

    #[test]
    fn bad_faults_are_refused_and_change_nothing() {
        let mut state = base();
        state.apply(&add(fault("slow", "api"))).unwrap();
        assert!(refused(&mut state, add(fault("other", "nope"))).contains("no cluster `nope`"));
        assert!(refused(&mut state, add(fault("slow", "db"))).contains("already exists"));
        let mut unsure = fault("unsure", "api");
        unsure.probability = Probability(1.5);
        let error = refused(&mut state, add(unsure));
        assert!(error.contains("fault.probability"), "{error}");
        let mut forever = fault("forever", "api");
        forever.ttl = Some(Duration::from_secs(604_801));
        let error = refused(&mut state, add(forever));
        assert!(
            error.contains("fault.ttl") && error.contains("604800"),
            "{error}"
        );
        let mut long = fault("long", "api");
        long.effect = Effect::Latency {
            latency: Duration::from_secs(u64::MAX),
            jitter: Duration::ZERO,
        };
        assert!(refused(&mut state, add(long)).contains("fault.latency"));
        let mut nowhere = fault("nowhere", "api");
        nowhere.target = FaultTarget::Frontend {
            address: address(1),
            hostname: None,
        };
        assert!(refused(&mut state, add(nowhere)).contains("no listener on 127.0.0.1:1"));
        let update = Order::UpdateFault(AddFault {
            fault: fault("ghost", "api"),
        });
        assert!(refused(&mut state, update).contains("no fault `ghost`"));
        let remove = Order::RemoveFault(FaultName {
            name: "ghost".to_string(),
        });
        assert!(refused(&mut state, remove).contains("no fault `ghost`"));
    }

    #[test]
    fn faults_go_with_their_cluster_and_listener() {
        let mut state = base();
        let mut on_listener = fault("edge", "api");
        on_listener.target = FaultTarget::Frontend {
            address: address(7000),
            hostname: None,
        };
        for order in [
            add(fault("slow", "api")),
            add(fault("slow-db", "db")),
            add(on_listener),
        ] {
            state.apply(&order).unwrap();
        }
        state
            .apply(&Order::RemoveCluster(ClusterId {
                cluster_id: "api".to_string(),
            }))
            .unwrap();
        assert_eq!(state.faults.keys().collect::<Vec<_>>(), ["edge", "slow-db"]);
        state
            .apply(&Order::RemoveListener(ListenerAddress {
                address: address(7000),
                proxy: ListenerType::Tcp,
            }))
            .unwrap();
        assert_eq!(state.faults.keys().collect::<Vec<_>>(), ["slow-db"]);
        state.apply(&Order::ResetFaults).unwrap();
        assert!(state.faults.is_empty());
    }

    #[test]
    fn a_state_with_faults_saves_and_loads_the_same() {
        let mut state = base();
        let mut leased = fault("leased", "db");
        leased.ttl = Some(Duration::from_secs(30));
        leased.seed = Some(42);
        state.apply(&add(fault("slow", "api"))).unwrap();
        state.apply(&add(leased)).unwrap();
        let mut saved = Vec::new();
        state.save(&mut saved).unwrap();
        let loaded = ConfigState::load(saved.as_slice()).unwrap();
        assert_eq!(loaded, state);
    }

    #[test]
    fn a_fault_of_a_replaced_listener_is_added_again() {
        let mut on_listener = fault("edge", "api");
        on_listener.target = FaultTarget::Frontend {
            address: address(7000),
            hostname: None,
        };
        let mut from = base();
        from.apply(&add(on_listener.clone())).unwrap();
        let mut to = ConfigState::new();
        for order in [
            Order::AddCluster(Cluster::new("api")),
            Order::AddCluster(Cluster::new("db")),
            Order::AddHttpListener(crate::request::HttpListenerConfig::new(address(7000))),
            add(on_listener),
        ] {
            to.apply(&order).unwrap();
        }
        let mut state = from.clone();
        for order in from.diff(&to) {
            state.apply(&order).unwrap();
        }
        assert_eq!(state, to);
    }

    fn arb_fault() -> impl Strategy<Value = Order> {
        (0..4u8, prop_oneof![Just("api"), Just("db")], 0..3u64).prop_map(|(n, cluster, ms)| {
            let mut fault = fault(&format!("f{n}"), cluster);
            fault.effect = Effect::Latency {
                latency: Duration::from_millis(ms),
                jitter: Duration::ZERO,
            };
            add(fault)
        })
    }

    fn arb_state() -> impl Strategy<Value = ConfigState> {
        proptest::collection::vec(
            prop_oneof![
                arb_fault(),
                Just(Order::RemoveCluster(ClusterId {
                    cluster_id: "db".to_string()
                })),
                Just(Order::AddCluster(Cluster::new("db"))),
            ],
            0..8,
        )
        .prop_map(|orders| {
            let mut state = base();
            for order in orders {
                let _refused = state.apply(&order);
            }
            state
        })
    }

    proptest! {
        #[test]
        fn diff_turns_one_fault_set_into_another(from in arb_state(), to in arb_state()) {
            let mut state = from.clone();
            for order in from.diff(&to) {
                state.apply(&order).unwrap();
            }
            prop_assert_eq!(state, to);
        }
    }
}
