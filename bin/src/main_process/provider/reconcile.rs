//! The routing state a node should have once it applies what the prefix holds.
//!
//! Starting from the current state, [`reconcile`] removes the objects of keys that were deleted
//! (or whose object moved to another identity: a frontend's hostname changed), then makes sure
//! every key's object is in place, in dependency order (listeners, clusters, backends,
//! certificates, frontends), each through [`apply_order`], so that a value is judged exactly as
//! an order from the command socket. A key whose value is refused keeps its last good object,
//! if it had one, and is reported. The main process then sends `state.diff(&target)`: only
//! what changed.

use std::collections::BTreeMap;

use sozu_command_lib::{
    request::{
        ClusterId, HttpFrontend, ListenerAddress, ListenerType, Order, RemoveBackend,
        RemoveCertificate,
    },
    state::{ConfigState, HttpFrontends},
};

use super::super::orders::apply_order;
use crate::provider::etcd::layout::Kind;

/// What reconciling gives.
#[derive(Debug)]
pub struct Reconciled {
    pub target: ConfigState,
    /// The order of each key whose object is in `target`.
    pub applied: BTreeMap<String, Order>,
    /// The keys refused, with why.
    pub errors: Vec<(String, String)>,
}

/// `view` holds each routing key (relative to the prefix) with its order, or why its value is
/// not one; `applied` what the last reconciliation put in place.
pub fn reconcile(
    state: &ConfigState,
    applied: &BTreeMap<String, Order>,
    view: &BTreeMap<String, Result<Order, String>>,
) -> Reconciled {
    let mut target = state.clone();
    let mut errors = Vec::new();
    let mut desired: Vec<(&String, &Order)> = Vec::new();
    for (key, value) in view {
        match value {
            Ok(order) => desired.push((key, order)),
            Err(error) => {
                errors.push((key.clone(), error.clone()));
                if let Some(old) = applied.get(key) {
                    desired.push((key, old));
                }
            }
        }
    }
    let wanted: BTreeMap<&String, &Order> = desired.iter().copied().collect();
    let mut removed: Vec<&Order> = applied
        .iter()
        .filter(|(key, old)| {
            wanted
                .get(key)
                .is_none_or(|new| Identity::of(new) != Identity::of(old))
        })
        .map(|(_, old)| old)
        .collect();
    removed.sort_by_key(|order| std::cmp::Reverse(kind_of(order)));
    for old in removed {
        if let Some(removal) = removal(&target, old) {
            // Already gone (removed by hand, or with its cluster or listener): nothing to do.
            let _ = apply_order(&mut target, &removal);
        }
    }
    desired.sort_by_key(|(key, order)| (kind_of(order), *key));
    let mut now_applied = BTreeMap::new();
    for (key, order) in desired {
        match ensure(&mut target, order) {
            Ok(()) => {
                now_applied.insert(key.clone(), order.clone());
            }
            Err(error) => {
                errors.push((key.clone(), error));
                if let Some(old) = applied.get(key).filter(|old| *old != order) {
                    if ensure(&mut target, old).is_ok() {
                        now_applied.insert(key.clone(), old.clone());
                    }
                }
            }
        }
    }
    errors.sort();
    Reconciled {
        target,
        applied: now_applied,
        errors,
    }
}

/// What an object is known by in the state: two orders with the same identity put their
/// object at the same place.
#[derive(Debug, PartialEq, Eq)]
enum Identity<'o> {
    Listener(std::net::SocketAddr, ListenerType),
    Cluster(&'o str),
    Backend(&'o str, &'o str),
    Certificate(std::net::SocketAddr, &'o str),
    Frontend(ListenerType, sozu_command_lib::request::FrontendKey),
    TcpFrontend(
        std::net::SocketAddr,
        Option<&'o sozu_command_lib::request::TcpRule>,
    ),
    Other,
}

impl<'o> Identity<'o> {
    fn of(order: &'o Order) -> Identity<'o> {
        match order {
            Order::AddHttpListener(listener) => {
                Identity::Listener(listener.address, ListenerType::Http)
            }
            Order::AddHttpsListener(listener) => {
                Identity::Listener(listener.http.address, ListenerType::Https)
            }
            Order::AddTcpListener(listener) => {
                Identity::Listener(listener.address, ListenerType::Tcp)
            }
            Order::AddCluster(cluster) => Identity::Cluster(&cluster.cluster_id),
            Order::AddBackend(backend) => {
                Identity::Backend(&backend.cluster_id, &backend.backend_id)
            }
            Order::AddCertificate(add) => {
                Identity::Certificate(add.address, &add.certificate.certificate)
            }
            Order::AddHttpFrontend(frontend) => {
                Identity::Frontend(ListenerType::Http, frontend.key())
            }
            Order::AddHttpsFrontend(frontend) => {
                Identity::Frontend(ListenerType::Https, frontend.key())
            }
            Order::AddTcpFrontend(frontend) => {
                Identity::TcpFrontend(frontend.address, frontend.rule.as_ref())
            }
            _ => Identity::Other,
        }
    }
}

fn kind_of(order: &Order) -> Kind {
    match order {
        Order::AddHttpListener(_) | Order::AddHttpsListener(_) | Order::AddTcpListener(_) => {
            Kind::Listener
        }
        Order::AddCluster(_) => Kind::Cluster,
        Order::AddBackend(_) => Kind::Backend,
        Order::AddCertificate(_) => Kind::Certificate,
        _ => Kind::Frontend,
    }
}

/// The order that removes what is at `order`'s identity in `state`, if anything is.
fn removal(state: &ConfigState, order: &Order) -> Option<Order> {
    let listener = |address, proxy| Order::RemoveListener(ListenerAddress { address, proxy });
    Some(match order {
        Order::AddHttpListener(config) => listener(config.address, ListenerType::Http),
        Order::AddHttpsListener(config) => listener(config.http.address, ListenerType::Https),
        Order::AddTcpListener(config) => listener(config.address, ListenerType::Tcp),
        Order::AddCluster(cluster) => Order::RemoveCluster(ClusterId {
            cluster_id: cluster.cluster_id.clone(),
        }),
        Order::AddBackend(backend) => {
            let existing = state
                .backends
                .get(&backend.cluster_id)?
                .get(&backend.backend_id)?;
            Order::RemoveBackend(RemoveBackend {
                cluster_id: existing.cluster_id.clone(),
                backend_id: existing.backend_id.clone(),
                address: existing.address,
                drain_timeout: None,
            })
        }
        Order::AddCertificate(add) => {
            let (fingerprint, _) =
                state
                    .certificates
                    .get(&add.address)?
                    .iter()
                    .find(|(_, loaded)| {
                        loaded.certificate.certificate == add.certificate.certificate
                    })?;
            Order::RemoveCertificate(RemoveCertificate {
                address: add.address,
                fingerprint: fingerprint.clone(),
            })
        }
        Order::AddHttpFrontend(frontend) => Order::RemoveHttpFrontend(HttpFrontend::clone(
            state.http_frontends.get(&frontend.key())?,
        )),
        Order::AddHttpsFrontend(frontend) => Order::RemoveHttpsFrontend(HttpFrontend::clone(
            state.https_frontends.get(&frontend.key())?,
        )),
        Order::AddTcpFrontend(frontend) => {
            Order::RemoveTcpFrontend(state.tcp_frontend_with_rule_of(frontend)?.clone())
        }
        _ => return None,
    })
}

/// Puts `order`'s object in `state`, replacing what has its identity; on error `state` is as
/// it was.
fn ensure(state: &mut ConfigState, order: &Order) -> Result<(), String> {
    let refused = |error: String| format!("{order} refused: {error}");
    match order {
        Order::AddHttpListener(_) | Order::AddHttpsListener(_) | Order::AddTcpListener(_) => {
            ensure_listener(state, order).map_err(refused)
        }
        Order::AddCluster(cluster) => {
            if state.clusters.get(&cluster.cluster_id) == Some(cluster) {
                return Ok(());
            }
            apply_order(state, order).map_err(refused)
        }
        _ if is_in_place(state, order) => Ok(()),
        _ => {
            let existing = removal(state, order);
            let restore = existing
                .as_ref()
                .and_then(|removal| restoring(state, removal));
            if let Some(removal) = &existing {
                apply_order(state, removal).map_err(refused)?;
            }
            apply_order(state, order).map_err(|error| {
                if let Some(restore) = &restore {
                    // It was in the state a moment ago: it goes back as it was.
                    let _ = apply_order(state, restore);
                }
                refused(error)
            })
        }
    }
}

/// Whether exactly `order`'s object is in `state`.
fn is_in_place(state: &ConfigState, order: &Order) -> bool {
    let same_http = |frontends: &HttpFrontends, frontend: &HttpFrontend| {
        frontends
            .get_same_key(frontend)
            .is_some_and(|kept| **kept == *frontend)
    };
    match order {
        Order::AddBackend(backend) => {
            state
                .backends
                .get(&backend.cluster_id)
                .and_then(|backends| backends.get(&backend.backend_id))
                == Some(backend)
        }
        Order::AddCertificate(add) => state.certificates.get(&add.address).is_some_and(|loaded| {
            loaded.values().any(|loaded| {
                *loaded.certificate == add.certificate && loaded.allow_expired == add.allow_expired
            })
        }),
        Order::AddHttpFrontend(frontend) => same_http(&state.http_frontends, frontend),
        Order::AddHttpsFrontend(frontend) => same_http(&state.https_frontends, frontend),
        Order::AddTcpFrontend(frontend) => {
            state.tcp_frontend_with_rule_of(frontend) == Some(frontend)
        }
        _ => false,
    }
}

/// The order that puts back what `removal` takes away.
fn restoring(state: &ConfigState, removal: &Order) -> Option<Order> {
    Some(match removal {
        Order::RemoveBackend(backend) => Order::AddBackend(
            state
                .backends
                .get(&backend.cluster_id)?
                .get(&backend.backend_id)?
                .clone(),
        ),
        Order::RemoveCertificate(remove) => {
            let loaded = state
                .certificates
                .get(&remove.address)?
                .get(&remove.fingerprint)?;
            Order::AddCertificate(sozu_command_lib::request::AddCertificate {
                address: remove.address,
                certificate: sozu_command_lib::request::CertificateAndKey::clone(
                    &loaded.certificate,
                ),
                allow_expired: loaded.allow_expired,
            })
        }
        Order::RemoveHttpFrontend(frontend) => Order::AddHttpFrontend(frontend.clone()),
        Order::RemoveHttpsFrontend(frontend) => Order::AddHttpsFrontend(frontend.clone()),
        Order::RemoveTcpFrontend(frontend) => Order::AddTcpFrontend(frontend.clone()),
        _ => return None,
    })
}

/// A listener of the prefix: added and activated when missing; its settings replaced when it
/// has other ones (its frontends and certificates stay); replaced with its frontends and
/// certificates when it is of another kind. The new settings are checked alone first, so that
/// a refused listener leaves the state as it was.
fn ensure_listener(state: &mut ConfigState, order: &Order) -> Result<(), String> {
    let (address, kind) = match Identity::of(order) {
        Identity::Listener(address, kind) => (address, kind),
        _ => return Err("not a listener".to_string()),
    };
    let same = match order {
        Order::AddHttpListener(config) => state
            .http_listeners
            .get(&address)
            .map(|current| &current.config == config),
        Order::AddHttpsListener(config) => state
            .https_listeners
            .get(&address)
            .map(|current| &current.config == config),
        Order::AddTcpListener(config) => state
            .tcp_listeners
            .get(&address)
            .map(|current| &current.config == config),
        _ => None,
    };
    if same == Some(true) {
        return Ok(());
    }
    apply_order(&mut ConfigState::new(), order)?;
    if same == Some(false) {
        match order {
            Order::AddHttpListener(config) => {
                if let Some(current) = state.http_listeners.get_mut(&address) {
                    current.config = config.clone();
                }
            }
            Order::AddHttpsListener(config) => {
                if let Some(current) = state.https_listeners.get_mut(&address) {
                    current.config = config.clone();
                }
            }
            Order::AddTcpListener(config) => {
                if let Some(current) = state.tcp_listeners.get_mut(&address) {
                    current.config = config.clone();
                }
            }
            _ => {}
        }
        return Ok(());
    }
    if let Some(other) = state.listener_kind(address) {
        apply_order(
            state,
            &Order::RemoveListener(ListenerAddress {
                address,
                proxy: other,
            }),
        )?;
    }
    apply_order(state, order)?;
    apply_order(
        state,
        &Order::ActivateListener(ListenerAddress {
            address,
            proxy: kind,
        }),
    )
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{AddBackend, Cluster, HttpListenerConfig};

    use super::*;

    fn listener() -> Order {
        Order::AddHttpListener(HttpListenerConfig::new("127.0.0.1:8080".parse().unwrap()))
    }

    fn cluster(id: &str) -> Order {
        Order::AddCluster(Cluster::new(id))
    }

    fn backend(cluster: &str, id: &str, port: u16) -> Order {
        Order::AddBackend(AddBackend {
            cluster_id: cluster.to_string(),
            backend_id: id.to_string(),
            address: ([127, 0, 0, 1], port).into(),
            sticky_id: None,
            weight: 100,
            backup: false,
        })
    }

    fn frontend(cluster: &str, hostname: &str) -> Order {
        Order::AddHttpFrontend(HttpFrontend::new(
            Some(cluster.to_string()),
            "127.0.0.1:8080".parse().unwrap(),
            hostname,
        ))
    }

    fn view(entries: &[(&str, Result<Order, &str>)]) -> BTreeMap<String, Result<Order, String>> {
        entries
            .iter()
            .map(|(key, value)| {
                let value = value.clone().map_err(str::to_string);
                (key.to_string(), value)
            })
            .collect()
    }

    /// Applies a view to `state` as the main process does: the difference, order by order.
    fn apply(
        state: &mut ConfigState,
        applied: &BTreeMap<String, Order>,
        view: &BTreeMap<String, Result<Order, String>>,
    ) -> (Vec<Order>, Reconciled) {
        let reconciled = reconcile(state, applied, view);
        let orders = state.diff(&reconciled.target);
        for order in &orders {
            apply_order(state, order).unwrap();
        }
        assert_eq!(state, &reconciled.target);
        (orders, reconciled)
    }

    #[test]
    fn objects_come_in_dependency_order_whatever_the_key_order() {
        let mut state = ConfigState::new();
        let view = view(&[
            ("a/frontend", Ok(frontend("web", "a.example"))),
            ("b/backend", Ok(backend("web", "one", 9000))),
            ("c/cluster", Ok(cluster("web"))),
            ("d/listener", Ok(listener())),
        ]);
        let (_, reconciled) = apply(&mut state, &BTreeMap::new(), &view);
        assert!(reconciled.errors.is_empty(), "{:?}", reconciled.errors);
        assert_eq!(reconciled.applied.len(), 4);
        assert!(
            state
                .http_listeners
                .values()
                .all(|listener| listener.active)
        );
    }

    #[test]
    fn a_refused_value_is_reported_and_the_rest_applied() {
        let mut state = ConfigState::new();
        let view = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("frontends/bad", Ok(frontend("missing", "bad.example"))),
            ("frontends/good", Ok(frontend("web", "good.example"))),
            ("frontends/json", Err("the value is not an order in JSON")),
        ]);
        let (_, reconciled) = apply(&mut state, &BTreeMap::new(), &view);
        let keys: Vec<&str> = reconciled
            .errors
            .iter()
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(keys, ["frontends/bad", "frontends/json"]);
        assert!(reconciled.errors[0].1.contains("no cluster `missing`"));
        assert_eq!(state.http_frontends.len(), 1);
    }

    #[test]
    fn a_value_turned_invalid_keeps_its_last_good_object() {
        let mut state = ConfigState::new();
        let first = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("backends/web/one", Ok(backend("web", "one", 9000))),
        ]);
        let (_, first) = apply(&mut state, &BTreeMap::new(), &first);
        let second = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("backends/web/one", Err("the value is not an order in JSON")),
        ]);
        let (orders, second) = apply(&mut state, &first.applied, &second);
        assert!(orders.is_empty(), "{orders:?}");
        assert_eq!(second.errors.len(), 1);
        assert_eq!(second.applied.len(), 3);
    }

    #[test]
    fn a_deleted_key_removes_its_object_and_a_changed_one_is_the_minimal_diff() {
        let mut state = ConfigState::new();
        let first = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("backends/web/one", Ok(backend("web", "one", 9000))),
            ("frontends/a", Ok(frontend("web", "a.example"))),
        ]);
        let (_, first) = apply(&mut state, &BTreeMap::new(), &first);
        let second = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("backends/web/two", Ok(backend("web", "two", 9001))),
            ("frontends/a", Ok(frontend("web", "b.example"))),
        ]);
        let (orders, _) = apply(&mut state, &first.applied, &second);
        let names: Vec<&str> = orders.iter().map(Order::name).collect();
        assert_eq!(
            names,
            [
                "REMOVE_HTTP_FRONTEND",
                "REMOVE_BACKEND",
                "ADD_BACKEND",
                "ADD_HTTP_FRONTEND"
            ]
        );
    }

    #[test]
    fn objects_of_the_configuration_file_stay_and_a_dangling_key_applies_once_it_holds() {
        let mut state = ConfigState::new();
        for order in [
            listener(),
            cluster("local"),
            frontend("local", "local.example"),
        ] {
            apply_order(&mut state, &order).unwrap();
        }
        let first = view(&[("frontends/a", Ok(frontend("web", "a.example")))]);
        let (_, first) = apply(&mut state, &BTreeMap::new(), &first);
        assert_eq!(first.errors.len(), 1);
        let second = view(&[
            ("frontends/a", Ok(frontend("web", "a.example"))),
            ("clusters/web", Ok(cluster("web"))),
        ]);
        let (_, second) = apply(&mut state, &first.applied, &second);
        assert!(second.errors.is_empty());
        assert_eq!(state.http_frontends.len(), 2);
        let (_, _) = apply(&mut state, &second.applied, &BTreeMap::new());
        assert_eq!(state.http_frontends.len(), 1);
        assert!(state.clusters.contains_key("local"));
    }

    #[test]
    fn a_listener_changed_in_place_keeps_its_frontends() {
        let mut state = ConfigState::new();
        let first = view(&[
            ("listeners/l", Ok(listener())),
            ("clusters/web", Ok(cluster("web"))),
            ("frontends/a", Ok(frontend("web", "a.example"))),
        ]);
        let (_, first) = apply(&mut state, &BTreeMap::new(), &first);
        let mut config = HttpListenerConfig::new("127.0.0.1:8080".parse().unwrap());
        config.sticky_name = "OTHER".to_string();
        let second = view(&[
            ("listeners/l", Ok(Order::AddHttpListener(config))),
            ("clusters/web", Ok(cluster("web"))),
            ("frontends/a", Ok(frontend("web", "a.example"))),
        ]);
        let (orders, _) = apply(&mut state, &first.applied, &second);
        let names: Vec<&str> = orders.iter().map(Order::name).collect();
        assert_eq!(names, ["UPDATE_HTTP_LISTENER_CONFIG"]);
        assert_eq!(state.http_frontends.len(), 1);
    }
}
