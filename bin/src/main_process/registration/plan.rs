//! What a `REGISTER` needs from the routing state, as ordinary orders: the listener, cluster,
//! certificate and frontend that do not exist yet, and always its own backend.
//!
//! Planning is a pure function of the registration and the state, so that the same plan is
//! made again on top of a reloaded configuration.

use std::{fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};
use sozu_command_lib::{
    certificate::{self, CertificateError},
    request::{
        AddBackend, AddCertificate, CertificateAndKey, Cluster, ClusterId, DEFAULT_BACKEND_WEIGHT,
        DEFAULT_HOLD_TIMEOUT, Fingerprint, FrontendKey, HttpFrontend, HttpListenerConfig,
        HttpsListenerConfig, ListenerAddress, ListenerType, Order, PathRule, Register,
        RegisterError, RegisteredProtocol, RegistrationIds, RemoveCertificate, TcpFrontend,
        TcpListenerConfig, TlsListenerConfig,
    },
    state::ConfigState,
};

/// Something a registration may create. The variants are in the order they are removed:
/// frontends before the certificate, the cluster and the listener they use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resource {
    HttpFrontend(FrontendKey),
    HttpsFrontend(FrontendKey),
    TcpFrontend(SocketAddr),
    Certificate(SocketAddr, Fingerprint),
    Cluster(String),
    Listener(SocketAddr, ListenerType),
}

impl Resource {
    /// The order that removes it, or `None` when it is already gone.
    pub fn removal(&self, state: &ConfigState) -> Option<Order> {
        match self {
            Resource::HttpFrontend(key) => state
                .http_frontends
                .get(key)
                .map(|frontend| Order::RemoveHttpFrontend(HttpFrontend::clone(frontend))),
            Resource::HttpsFrontend(key) => state
                .https_frontends
                .get(key)
                .map(|frontend| Order::RemoveHttpsFrontend(HttpFrontend::clone(frontend))),
            Resource::TcpFrontend(address) => state
                .default_tcp_frontend(*address)
                .cloned()
                .map(Order::RemoveTcpFrontend),
            Resource::Certificate(address, fingerprint) => state
                .certificates
                .get(address)
                .is_some_and(|certificates| certificates.contains_key(fingerprint))
                .then(|| {
                    Order::RemoveCertificate(RemoveCertificate {
                        address: *address,
                        fingerprint: fingerprint.clone(),
                    })
                }),
            Resource::Cluster(cluster_id) => state.clusters.contains_key(cluster_id).then(|| {
                Order::RemoveCluster(ClusterId {
                    cluster_id: cluster_id.clone(),
                })
            }),
            Resource::Listener(address, kind) => listener_kind(state, *address)
                .filter(|existing| existing == kind)
                .map(|_| {
                    Order::RemoveListener(ListenerAddress {
                        address: *address,
                        proxy: *kind,
                    })
                }),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::HttpFrontend(key) => write!(f, "http frontend {key}"),
            Resource::HttpsFrontend(key) => write!(f, "https frontend {key}"),
            Resource::TcpFrontend(address) => write!(f, "tcp frontend {address}"),
            Resource::Certificate(address, fingerprint) => {
                write!(f, "certificate {fingerprint} on {address}")
            }
            Resource::Cluster(cluster_id) => write!(f, "cluster {cluster_id}"),
            Resource::Listener(address, kind) => write!(f, "{kind} listener {address}"),
        }
    }
}

/// The orders of a registration, and what they rely on.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub orders: Vec<Order>,
    /// Every resource the registration routes through, whether it exists or is created.
    pub uses: Vec<Resource>,
    /// Those created by the orders.
    pub created: Vec<Resource>,
}

/// Why a registration cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Fields(#[from] RegisterError),
    #[error("a {existing} listener already uses {address}, not an {wanted} one")]
    ListenerKind {
        address: SocketAddr,
        existing: ListenerType,
        wanted: ListenerType,
    },
    #[error("the frontend {frontend} already routes to {routed}")]
    FrontendTaken { frontend: String, routed: String },
    #[error("the certificate is refused")]
    Certificate(#[source] CertificateError),
}

/// The orders that give the registration `ids` its route in `state`.
pub fn plan(
    register: &Register,
    ids: &RegistrationIds,
    state: &ConfigState,
) -> Result<Plan, PlanError> {
    register.check()?;
    let mut plan = Plan {
        orders: Vec::new(),
        uses: Vec::new(),
        created: Vec::new(),
    };
    let listen = register.listen;
    let kind = register.protocol.listener_type();
    match listener_kind(state, listen) {
        Some(existing) if existing != kind => {
            return Err(PlanError::ListenerKind {
                address: listen,
                existing,
                wanted: kind,
            });
        }
        Some(_) => plan.uses.push(Resource::Listener(listen, kind)),
        None => {
            plan.create(Resource::Listener(listen, kind), listener_order(register));
            plan.orders.push(Order::ActivateListener(ListenerAddress {
                address: listen,
                proxy: kind,
            }));
        }
    }

    let cluster = Resource::Cluster(register.cluster_id.clone());
    if state.clusters.contains_key(&register.cluster_id) {
        plan.uses.push(cluster);
    } else {
        let mut added = Cluster::new(register.cluster_id.clone());
        added.hold_timeout = Some(register.hold_timeout.unwrap_or(DEFAULT_HOLD_TIMEOUT));
        plan.create(cluster, Order::AddCluster(added));
    }
    plan.orders.push(Order::AddBackend(AddBackend {
        cluster_id: register.cluster_id.clone(),
        backend_id: ids.backend_id.clone(),
        address: register.backend,
        sticky_id: None,
        weight: DEFAULT_BACKEND_WEIGHT,
        backup: false,
    }));

    if let (Some(certificate), Some(key)) = (&register.certificate, &register.key) {
        plan_certificate(&mut plan, register, certificate, key, state)?;
    }
    match register.protocol {
        RegisteredProtocol::Tcp => plan_tcp_frontend(&mut plan, register, state)?,
        RegisteredProtocol::Http | RegisteredProtocol::Https => {
            plan_http_frontend(&mut plan, register, state)?;
        }
    }
    Ok(plan)
}

impl Plan {
    fn create(&mut self, resource: Resource, order: Order) {
        self.orders.push(order);
        self.uses.push(resource.clone());
        self.created.push(resource);
    }
}

fn listener_kind(state: &ConfigState, address: SocketAddr) -> Option<ListenerType> {
    if state.http_listeners.contains_key(&address) {
        Some(ListenerType::Http)
    } else if state.https_listeners.contains_key(&address) {
        Some(ListenerType::Https)
    } else if state.tcp_listeners.contains_key(&address) {
        Some(ListenerType::Tcp)
    } else {
        None
    }
}

fn listener_order(register: &Register) -> Order {
    let address = register.listen;
    match register.protocol {
        RegisteredProtocol::Http => Order::AddHttpListener(HttpListenerConfig::new(address)),
        RegisteredProtocol::Https => Order::AddHttpsListener(HttpsListenerConfig {
            http: HttpListenerConfig::new(address),
            tls: TlsListenerConfig::default(),
        }),
        RegisteredProtocol::Tcp => Order::AddTcpListener(TcpListenerConfig::new(address)),
    }
}

fn plan_certificate(
    plan: &mut Plan,
    register: &Register,
    certificate: &str,
    key: &str,
    state: &ConfigState,
) -> Result<(), PlanError> {
    let mut pair = CertificateAndKey::new(certificate, key);
    pair.certificate_chain = register.certificate_chain.clone();
    let facts = certificate::inspect(&pair).map_err(PlanError::Certificate)?;
    let resource = Resource::Certificate(register.listen, facts.fingerprint.clone());
    let known = state
        .certificates
        .get(&register.listen)
        .is_some_and(|certificates| certificates.contains_key(&facts.fingerprint));
    if known {
        plan.uses.push(resource);
    } else {
        plan.create(
            resource,
            Order::AddCertificate(AddCertificate {
                address: register.listen,
                certificate: pair,
                allow_expired: false,
            }),
        );
    }
    Ok(())
}

fn plan_http_frontend(
    plan: &mut Plan,
    register: &Register,
    state: &ConfigState,
) -> Result<(), PlanError> {
    let mut frontend = HttpFrontend::new(
        Some(register.cluster_id.clone()),
        register.listen,
        register.hostname.clone().unwrap_or_default(),
    );
    frontend.path = PathRule::prefix(register.path_prefix.clone().unwrap_or_default());
    let key = frontend.key();
    let (existing, resource, order) = if register.protocol == RegisteredProtocol::Https {
        (
            state.https_frontends.get(&key),
            Resource::HttpsFrontend(key.clone()),
            Order::AddHttpsFrontend(frontend),
        )
    } else {
        (
            state.http_frontends.get(&key),
            Resource::HttpFrontend(key.clone()),
            Order::AddHttpFrontend(frontend),
        )
    };
    match existing {
        Some(existing) if existing.cluster_id.as_ref() == Some(&register.cluster_id) => {
            plan.uses.push(resource);
        }
        Some(existing) => {
            return Err(PlanError::FrontendTaken {
                frontend: key.to_string(),
                routed: existing
                    .cluster_id
                    .as_ref()
                    .map_or_else(|| "no cluster".to_string(), |id| format!("cluster {id}")),
            });
        }
        None => plan.create(resource, order),
    }
    Ok(())
}

fn plan_tcp_frontend(
    plan: &mut Plan,
    register: &Register,
    state: &ConfigState,
) -> Result<(), PlanError> {
    let resource = Resource::TcpFrontend(register.listen);
    match state.default_tcp_frontend(register.listen) {
        Some(existing) if existing.cluster_id == register.cluster_id => plan.uses.push(resource),
        Some(existing) => {
            return Err(PlanError::FrontendTaken {
                frontend: format!("tcp {}", register.listen),
                routed: format!("cluster {}", existing.cluster_id),
            });
        }
        None => plan.create(
            resource,
            Order::AddTcpFrontend(TcpFrontend {
                cluster_id: register.cluster_id.clone(),
                address: register.listen,
                rule: None,
                tags: Default::default(),
            }),
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn register(protocol: RegisteredProtocol) -> Register {
        Register {
            cluster_id: "api".to_string(),
            protocol,
            listen: "127.0.0.1:8000".parse().unwrap(),
            hostname: (protocol != RegisteredProtocol::Tcp).then(|| "api.test".to_string()),
            path_prefix: None,
            backend: "127.0.0.1:9000".parse().unwrap(),
            hold_timeout: None,
            ttl: None,
            certificate: None,
            key: None,
            certificate_chain: Vec::new(),
        }
    }

    fn ids(n: u32) -> RegistrationIds {
        RegistrationIds {
            registration_id: format!("reg-{n}"),
            backend_id: format!("reg-{n}"),
        }
    }

    fn apply(state: &mut ConfigState, plan: &Plan) {
        for order in &plan.orders {
            state.apply(order).unwrap();
        }
    }

    #[test]
    fn a_first_registration_creates_everything_a_second_only_its_backend() {
        let mut state = ConfigState::new();
        let first = plan(&register(RegisteredProtocol::Http), &ids(1), &state).unwrap();
        assert_eq!(first.created.len(), 3, "{:?}", first.created);
        apply(&mut state, &first);
        let second = plan(&register(RegisteredProtocol::Http), &ids(2), &state).unwrap();
        assert!(second.created.is_empty());
        assert_eq!(second.uses, first.uses);
        assert!(matches!(second.orders.as_slice(), [Order::AddBackend(_)]));
        apply(&mut state, &second);
        assert_eq!(state.backends["api"].len(), 2);
    }

    #[test]
    fn a_registered_cluster_holds_for_the_registration_or_30_seconds() {
        let hold_timeout = |register: &Register| {
            let planned = plan(register, &ids(1), &ConfigState::new()).unwrap();
            planned.orders.iter().find_map(|order| match order {
                Order::AddCluster(cluster) => Some(cluster.hold_timeout),
                _ => None,
            })
        };
        let mut register = register(RegisteredProtocol::Http);
        assert_eq!(hold_timeout(&register), Some(Some(Duration::from_secs(30))));
        register.hold_timeout = Some(Duration::from_secs(5));
        assert_eq!(hold_timeout(&register), Some(Some(Duration::from_secs(5))));
    }

    #[test]
    fn another_path_on_the_same_listener_adds_only_a_frontend() {
        let mut state = ConfigState::new();
        let mut a = register(RegisteredProtocol::Http);
        a.path_prefix = Some("/a".to_string());
        let first = plan(&a, &ids(1), &state).unwrap();
        apply(&mut state, &first);
        let mut b = register(RegisteredProtocol::Http);
        b.cluster_id = "b".to_string();
        b.path_prefix = Some("/b".to_string());
        let second = plan(&b, &ids(2), &state).unwrap();
        assert_eq!(
            second.created,
            vec![
                Resource::Cluster("b".to_string()),
                Resource::HttpFrontend(FrontendKey {
                    address: b.listen,
                    hostname: "api.test".to_string(),
                    path: PathRule::prefix("/b"),
                    method: None,
                }),
            ]
        );
    }

    #[test]
    fn a_listener_of_another_kind_or_a_frontend_of_another_cluster_is_refused() {
        let mut state = ConfigState::new();
        let tcp = plan(&register(RegisteredProtocol::Tcp), &ids(1), &state).unwrap();
        apply(&mut state, &tcp);
        let error = plan(&register(RegisteredProtocol::Http), &ids(2), &state).unwrap_err();
        assert!(matches!(error, PlanError::ListenerKind { .. }), "{error}");
        let mut other = register(RegisteredProtocol::Tcp);
        other.cluster_id = "other".to_string();
        let error = plan(&other, &ids(3), &state).unwrap_err();
        assert!(matches!(error, PlanError::FrontendTaken { .. }), "{error}");
    }

    #[test]
    fn removals_undo_the_creations_in_dependency_order() {
        let mut state = ConfigState::new();
        let created = plan(&register(RegisteredProtocol::Http), &ids(1), &state).unwrap();
        apply(&mut state, &created);
        let mut resources = created.created.clone();
        resources.sort();
        for resource in &resources {
            let order = resource.removal(&state).unwrap();
            state.apply(&order).unwrap();
        }
        assert_eq!(state, ConfigState::new());
        assert!(resources.iter().all(|r| r.removal(&state).is_none()));
    }
}
