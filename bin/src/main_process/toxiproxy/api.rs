//! Toxiproxy's HTTP API mapped onto the routing state: what each route answers, and the
//! orders it needs applied before it answers.
//!
//! A proxy is a TCP listener whose frontend routes to a cluster of the proxy's name, with one
//! backend (`<name>-upstream`) at the proxy's upstream; `enabled` is the listener's
//! activation. A toxic is a fault on that cluster named `<proxy>:<toxic>` (a fault added
//! otherwise on the cluster shows under its own name), with `stream` as its direction,
//! `toxicity` as its probability and `attributes` as its parameters. Status codes and error
//! bodies are Toxiproxy's (`{"error": "...", "status": N}`).

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener, ToSocketAddrs},
};

use serde_json::{Map, Value, json};
use sozu_command_lib::{
    request::{
        AddBackend, AddFault, Cluster, ClusterId, DEFAULT_BACKEND_WEIGHT, Direction, Fault,
        FaultKind, FaultName, FaultTarget, ListenerAddress, ListenerType, Order, RawFault,
        RemoveBackend, TcpFrontend, TcpListenerConfig,
    },
    state::ConfigState,
};

/// One request of a client of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub user_agent: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What the API does with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Answer now.
    Now(Answer),
    /// Apply these orders, then answer once every worker has applied them.
    AfterChange { orders: Vec<Order>, answer: Answer },
}

const JSON: &str = "application/json";

fn json_answer(status: u16, value: &Value) -> Answer {
    Answer {
        status,
        content_type: JSON,
        body: value.to_string().into_bytes(),
    }
}

/// Toxiproxy's error shape; Go's `http.Error` sends it as text with a final newline.
pub fn error(status: u16, message: &str) -> Answer {
    let mut body = json!({ "error": message, "status": status }).to_string();
    body.push('\n');
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into_bytes(),
    }
}

fn no_content() -> Answer {
    Answer {
        status: 204,
        content_type: JSON,
        body: Vec::new(),
    }
}

const PROXY_NOT_FOUND: &str = "proxy not found";
const TOXIC_NOT_FOUND: &str = "toxic not found";

/// The answer to `request` given `state`.
pub fn handle(state: &ConfigState, request: &ApiRequest) -> Reply {
    if request
        .user_agent
        .as_deref()
        .is_some_and(|agent| agent.starts_with("Mozilla/"))
    {
        return Reply::Now(Answer {
            status: 403,
            content_type: "text/plain; charset=utf-8",
            body: b"User agent not allowed\n".to_vec(),
        });
    }
    let path = request.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method.as_str();
    let result = match (method, segments.as_slice()) {
        ("GET", ["version"]) => Ok(Reply::Now(Answer {
            status: 200,
            content_type: "application/json;charset=utf-8",
            body: format!("{{\"version\": \"{}\"}}\n", env!("CARGO_PKG_VERSION")).into_bytes(),
        })),
        ("POST", ["reset"]) => Ok(reset(state)),
        ("GET", ["proxies"]) => {
            let proxies: Map<String, Value> = proxies(state)
                .into_iter()
                .map(|proxy| (proxy.name.clone(), proxy.to_json(state)))
                .collect();
            Ok(Reply::Now(json_answer(200, &Value::Object(proxies))))
        }
        ("POST", ["proxies"]) => create_proxy(state, &request.body),
        ("POST", ["populate"]) => populate(state, &request.body),
        ("GET", ["proxies", name]) => {
            find_proxy(state, name).map(|proxy| Reply::Now(json_answer(200, &proxy.to_json(state))))
        }
        ("POST" | "PATCH", ["proxies", name]) => update_proxy(state, name, &request.body),
        ("DELETE", ["proxies", name]) => find_proxy(state, name).map(|proxy| Reply::AfterChange {
            orders: proxy.removal(),
            answer: no_content(),
        }),
        ("GET", ["proxies", name, "toxics"]) => find_proxy(state, name).map(|proxy| {
            let toxics: Vec<Value> = toxics(state, &proxy.name)
                .map(|(toxic, fault)| toxic_json(toxic, fault))
                .collect();
            Reply::Now(json_answer(200, &Value::Array(toxics)))
        }),
        ("POST", ["proxies", name, "toxics"]) => {
            find_proxy(state, name).and_then(|proxy| create_toxic(state, &proxy, &request.body))
        }
        ("GET", ["proxies", name, "toxics", toxic]) => find_proxy(state, name)
            .and_then(|proxy| find_toxic(state, &proxy.name, toxic))
            .map(|(toxic, fault)| Reply::Now(json_answer(200, &toxic_json(toxic, fault)))),
        ("POST" | "PATCH", ["proxies", name, "toxics", toxic]) => find_proxy(state, name)
            .and_then(|proxy| update_toxic(state, &proxy.name, toxic, &request.body)),
        ("DELETE", ["proxies", name, "toxics", toxic]) => find_proxy(state, name)
            .and_then(|proxy| find_toxic(state, &proxy.name, toxic))
            .map(|(_, fault)| Reply::AfterChange {
                orders: vec![Order::RemoveFault(FaultName {
                    name: fault.name.clone(),
                })],
                answer: no_content(),
            }),
        (_, ["version" | "reset" | "proxies" | "populate"])
        | (_, ["proxies", _])
        | (_, ["proxies", _, "toxics"])
        | (_, ["proxies", _, "toxics", _]) => Ok(Reply::Now(Answer {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        })),
        _ => Ok(Reply::Now(Answer {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: b"404 page not found\n".to_vec(),
        })),
    };
    result.unwrap_or_else(Reply::Now)
}

/// A Toxiproxy proxy as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proxy {
    name: String,
    listen: SocketAddr,
    upstream: Option<AddBackend>,
    enabled: bool,
}

impl Proxy {
    fn to_json(&self, state: &ConfigState) -> Value {
        let toxics: Vec<Value> = toxics(state, &self.name)
            .map(|(toxic, fault)| toxic_json(toxic, fault))
            .collect();
        json!({
            "name": self.name,
            "listen": self.listen.to_string(),
            "upstream": self.upstream.as_ref().map(|b| b.address.to_string()).unwrap_or_default(),
            "enabled": self.enabled,
            "toxics": toxics,
        })
    }

    /// The orders that take the proxy away: its frontend, its listener, its cluster (with the
    /// backend and the toxics).
    fn removal(&self) -> Vec<Order> {
        vec![
            Order::RemoveTcpFrontend(TcpFrontend {
                rule: None,
                cluster_id: self.name.clone(),
                address: self.listen,
                tags: BTreeMap::new(),
            }),
            Order::RemoveListener(ListenerAddress {
                address: self.listen,
                proxy: ListenerType::Tcp,
            }),
            Order::RemoveCluster(ClusterId {
                cluster_id: self.name.clone(),
            }),
        ]
    }
}

/// Every TCP frontend, seen as a proxy named after its cluster.
fn proxies(state: &ConfigState) -> Vec<Proxy> {
    state
        .tcp_frontends
        .values()
        .filter_map(|frontends| frontends.iter().find(|frontend| frontend.rule.is_none()))
        .map(|frontend| Proxy {
            name: frontend.cluster_id.clone(),
            listen: frontend.address,
            upstream: state
                .backends
                .get(&frontend.cluster_id)
                .and_then(|backends| backends.values().next())
                .cloned(),
            enabled: state
                .tcp_listeners
                .get(&frontend.address)
                .is_some_and(|listener| listener.active),
        })
        .collect()
}

fn find_proxy(state: &ConfigState, name: &str) -> Result<Proxy, Answer> {
    proxies(state)
        .into_iter()
        .find(|proxy| proxy.name == name)
        .ok_or_else(|| error(404, PROXY_NOT_FOUND))
}

/// The toxics of a proxy: the faults on its cluster, with their toxic names.
fn toxics<'s>(state: &'s ConfigState, proxy: &str) -> impl Iterator<Item = (&'s str, &'s Fault)> {
    state
        .faults
        .values()
        .filter_map(move |fault| match &fault.target {
            FaultTarget::Cluster { cluster_id } if cluster_id == proxy => {
                let toxic = fault
                    .name
                    .strip_prefix(proxy)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .unwrap_or(&fault.name);
                Some((toxic, fault))
            }
            _ => None,
        })
}

fn find_toxic<'s>(
    state: &'s ConfigState,
    proxy: &str,
    toxic: &str,
) -> Result<(&'s str, &'s Fault), Answer> {
    toxics(state, proxy)
        .find(|(name, _)| *name == toxic)
        .ok_or_else(|| error(404, TOXIC_NOT_FOUND))
}

fn stream_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Upstream => "upstream",
        Direction::Downstream | Direction::Both => "downstream",
    }
}

/// A toxic as Toxiproxy shows it: its parameters are its attributes.
fn toxic_json(toxic: &str, fault: &Fault) -> Value {
    let kind = fault.effect.kind();
    let raw = serde_json::to_value(RawFault::from(fault.clone())).unwrap_or_default();
    let attributes: Map<String, Value> = kind
        .parameters()
        .iter()
        .filter_map(|&name| raw.get(name).map(|value| (name.to_string(), value.clone())))
        .collect();
    json!({
        "name": toxic,
        "type": kind.name(),
        "stream": stream_name(fault.direction),
        "toxicity": fault.probability.0,
        "attributes": attributes,
    })
}

/// The body as a JSON object, or Toxiproxy's "bad request body" error.
fn object(body: &[u8]) -> Result<Map<String, Value>, Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(error(400, "bad request body: expected a JSON object")),
        Err(problem) => Err(error(400, &format!("bad request body: {problem}"))),
    }
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// An address as Toxiproxy takes it (`host:port`, a name resolved once); port 0 gets a free
/// port now.
fn address(text: &str, what: &str) -> Result<SocketAddr, Answer> {
    let invalid = || {
        error(
            400,
            &format!("bad request body: invalid {what} address `{text}`"),
        )
    };
    let address = match text.parse::<SocketAddr>() {
        Ok(address) => address,
        Err(_) => text
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.find(SocketAddr::is_ipv4))
            .ok_or_else(invalid)?,
    };
    if address.port() != 0 || what != "listen" {
        return Ok(address);
    }
    TcpListener::bind(address)
        .and_then(|listener| listener.local_addr())
        .map_err(|problem| cannot_listen(address, &problem))
}

/// Toxiproxy's answer to a proxy that cannot listen: 500 and its listen error. The
/// main process binds a listener before its state takes the activation
/// ([`super::super::listeners::ListenerSockets::bind_activations`]), so such a proxy changes
/// nothing.
pub fn cannot_listen(address: SocketAddr, problem: &std::io::Error) -> Answer {
    error(500, &format!("listen tcp {address}: {problem}"))
}

/// The orders that make a proxy.
fn creation(proxy: &Proxy) -> Vec<Order> {
    let mut orders = vec![
        Order::AddTcpListener(TcpListenerConfig::new(proxy.listen)),
        Order::AddCluster(Cluster::new(proxy.name.clone())),
    ];
    orders.extend(proxy.upstream.clone().map(Order::AddBackend));
    orders.push(Order::AddTcpFrontend(TcpFrontend {
        rule: None,
        cluster_id: proxy.name.clone(),
        address: proxy.listen,
        tags: BTreeMap::new(),
    }));
    if proxy.enabled {
        orders.push(Order::ActivateListener(ListenerAddress {
            address: proxy.listen,
            proxy: ListenerType::Tcp,
        }));
    }
    orders
}

fn upstream_backend(name: &str, address: SocketAddr) -> AddBackend {
    AddBackend {
        cluster_id: name.to_string(),
        backend_id: format!("{name}-upstream"),
        address,
        sticky_id: None,
        weight: DEFAULT_BACKEND_WEIGHT,
        backup: false,
    }
}

/// A proxy from a creation body, checked against what exists.
fn new_proxy(state: &ConfigState, object: &Map<String, Value>) -> Result<Proxy, Answer> {
    let name = text(object, "name").ok_or_else(|| error(400, "missing required field: name"))?;
    let upstream =
        text(object, "upstream").ok_or_else(|| error(400, "missing required field: upstream"))?;
    if state.clusters.contains_key(name) {
        return Err(error(409, "proxy already exists"));
    }
    let listen = address(text(object, "listen").unwrap_or("127.0.0.1:0"), "listen")?;
    if state.listener_kind(listen).is_some() {
        return Err(error(
            500,
            &format!("listen tcp {listen}: bind: address already in use"),
        ));
    }
    let upstream = address(upstream, "upstream")?;
    Ok(Proxy {
        name: name.to_string(),
        listen,
        upstream: Some(upstream_backend(name, upstream)),
        enabled: object
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

fn created_json(proxy: &Proxy) -> Value {
    json!({
        "name": proxy.name,
        "listen": proxy.listen.to_string(),
        "upstream": proxy.upstream.as_ref().map(|b| b.address.to_string()).unwrap_or_default(),
        "enabled": proxy.enabled,
        "toxics": [],
    })
}

fn create_proxy(state: &ConfigState, body: &[u8]) -> Result<Reply, Answer> {
    let proxy = new_proxy(state, &object(body)?)?;
    Ok(Reply::AfterChange {
        orders: creation(&proxy),
        answer: json_answer(201, &created_json(&proxy)),
    })
}

/// `POST /populate`: creates the proxies of the list, replacing those whose listen or
/// upstream differ, and keeping the others.
fn populate(state: &ConfigState, body: &[u8]) -> Result<Reply, Answer> {
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(error(400, "bad request body: expected a JSON array")),
        Err(problem) => return Err(error(400, &format!("bad request body: {problem}"))),
    };
    let mut orders = Vec::new();
    let mut shown = Vec::new();
    let mut after = state.clone();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(object) = item else {
            return Err(error(400, "bad request body: expected a JSON object"));
        };
        let missing = |field: &str| {
            error(
                400,
                &format!("missing required field: {field} at proxy {}", index + 1),
            )
        };
        let name = text(object, "name").ok_or_else(|| missing("name"))?;
        text(object, "upstream").ok_or_else(|| missing("upstream"))?;
        let mut replaced = Vec::new();
        let existing = find_proxy(&after, name).ok();
        if let Some(existing) = &existing {
            let same_listen = text(object, "listen")
                .is_none_or(|listen| address(listen, "listen").ok() == Some(existing.listen));
            let same_upstream = text(object, "upstream").and_then(|u| address(u, "upstream").ok())
                == existing.upstream.as_ref().map(|b| b.address);
            if same_listen && same_upstream {
                shown.push(existing.to_json(&after));
                continue;
            }
            replaced = existing.removal();
        }
        apply(&mut after, &replaced)?;
        let proxy = new_proxy(&after, object)?;
        let created = creation(&proxy);
        apply(&mut after, &created)?;
        let change = replaced.into_iter().chain(created).collect();
        orders.extend(match &existing {
            Some(existing) => keeping_listener(existing, &proxy, change),
            None => change,
        });
        shown.push(created_json(&proxy));
    }
    Ok(Reply::AfterChange {
        orders,
        answer: json_answer(201, &json!({ "proxies": shown })),
    })
}

/// The orders that replace `existing` with `proxy`, keeping the listener when both listen on
/// the same address: removing and adding it in one change would have the workers listen again
/// on an address they still hold (500 `address already in use`). Its activation follows
/// `enabled`.
fn keeping_listener(existing: &Proxy, proxy: &Proxy, change: Vec<Order>) -> Vec<Order> {
    if existing.listen != proxy.listen {
        return change;
    }
    let mut orders: Vec<Order> = change
        .into_iter()
        .filter(|order| {
            !matches!(
                order,
                Order::RemoveListener(_) | Order::AddTcpListener(_) | Order::ActivateListener(_)
            )
        })
        .collect();
    let listener = ListenerAddress {
        address: proxy.listen,
        proxy: ListenerType::Tcp,
    };
    match (existing.enabled, proxy.enabled) {
        (false, true) => orders.push(Order::ActivateListener(listener)),
        (true, false) => orders.push(Order::DeactivateListener(listener)),
        _ => {}
    }
    orders
}

/// Applies `orders` to a copy of the state being built, refusing like the main state would.
fn apply(state: &mut ConfigState, orders: &[Order]) -> Result<(), Answer> {
    for order in orders {
        state
            .apply(order)
            .map_err(|problem| error(400, &format!("bad request body: {problem}")))?;
    }
    Ok(())
}

/// `POST /proxies/{name}`: `enabled`, `listen` and `upstream`, each kept unless given.
fn update_proxy(state: &ConfigState, name: &str, body: &[u8]) -> Result<Reply, Answer> {
    let proxy = find_proxy(state, name)?;
    let object = object(body)?;
    let mut updated = proxy.clone();
    if let Some(listen) = text(&object, "listen") {
        updated.listen = address(listen, "listen")?;
    }
    if let Some(upstream) = text(&object, "upstream") {
        updated.upstream = Some(upstream_backend(name, address(upstream, "upstream")?));
    }
    if let Some(enabled) = object.get("enabled").and_then(Value::as_bool) {
        updated.enabled = enabled;
    }
    let mut orders = Vec::new();
    if updated.listen != proxy.listen {
        orders.push(Order::RemoveTcpFrontend(TcpFrontend {
            rule: None,
            cluster_id: name.to_string(),
            address: proxy.listen,
            tags: BTreeMap::new(),
        }));
        orders.push(Order::RemoveListener(ListenerAddress {
            address: proxy.listen,
            proxy: ListenerType::Tcp,
        }));
        orders.push(Order::AddTcpListener(TcpListenerConfig::new(
            updated.listen,
        )));
        orders.push(Order::AddTcpFrontend(TcpFrontend {
            rule: None,
            cluster_id: name.to_string(),
            address: updated.listen,
            tags: BTreeMap::new(),
        }));
    }
    if updated.upstream != proxy.upstream {
        if let Some(old) = &proxy.upstream {
            orders.push(Order::RemoveBackend(RemoveBackend {
                drain_timeout: None,
                cluster_id: old.cluster_id.clone(),
                backend_id: old.backend_id.clone(),
                address: old.address,
            }));
        }
        orders.extend(updated.upstream.clone().map(Order::AddBackend));
    }
    let was_active = proxy.enabled && updated.listen == proxy.listen;
    let listener = ListenerAddress {
        address: updated.listen,
        proxy: ListenerType::Tcp,
    };
    match (was_active, updated.enabled) {
        (false, true) => orders.push(Order::ActivateListener(listener)),
        (true, false) => orders.push(Order::DeactivateListener(listener)),
        _ => {}
    }
    let mut after = state.clone();
    apply(&mut after, &orders)?;
    Ok(Reply::AfterChange {
        orders,
        answer: json_answer(200, &updated.to_json(&after)),
    })
}

/// `POST /reset`: every proxy enabled, every toxic removed.
fn reset(state: &ConfigState) -> Reply {
    let mut orders = Vec::new();
    for proxy in proxies(state) {
        orders.extend(toxics(state, &proxy.name).map(|(_, fault)| {
            Order::RemoveFault(FaultName {
                name: fault.name.clone(),
            })
        }));
        if !proxy.enabled {
            orders.push(Order::ActivateListener(ListenerAddress {
                address: proxy.listen,
                proxy: ListenerType::Tcp,
            }));
        }
    }
    Reply::AfterChange {
        orders,
        answer: no_content(),
    }
}

/// The fault of a toxic body: Toxiproxy's defaults (downstream, toxicity 1, name
/// `<type>_<stream>`) and its attributes as the fault's parameters (others are ignored, as
/// Toxiproxy does).
fn toxic_fault(
    proxy: &str,
    object: &Map<String, Value>,
    base: Option<&Fault>,
) -> Result<(String, Fault), Answer> {
    let mut raw = match base {
        Some(fault) => serde_json::to_value(RawFault::from(fault.clone())).unwrap_or_default(),
        None => {
            let kind = text(object, "type").unwrap_or_default();
            let stream = text(object, "stream").unwrap_or("downstream");
            if !matches!(stream, "upstream" | "downstream") {
                return Err(error(
                    400,
                    "stream was invalid, can be either upstream or downstream",
                ));
            }
            json!({ "type": kind, "direction": stream, "cluster_id": proxy })
        }
    };
    let kind: FaultKind = raw
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .parse()
        .map_err(|_| error(400, "invalid toxic type"))?;
    if let Some(toxicity) = object.get("toxicity").and_then(Value::as_f64) {
        raw["probability"] = toxicity.into();
    }
    if let Some(Value::Object(attributes)) = object.get("attributes") {
        for (name, value) in attributes {
            if kind.parameters().contains(&name.as_str()) {
                raw[name.as_str()] = value.clone();
            }
        }
    }
    let toxic = match base {
        Some(_) => String::new(),
        None => text(object, "name").map(str::to_string).unwrap_or_else(|| {
            let stream = raw["direction"].as_str().unwrap_or("downstream");
            format!("{}_{stream}", kind.name())
        }),
    };
    if base.is_none() {
        raw["name"] = format!("{proxy}:{toxic}").into();
    }
    let fault: Fault = serde_json::from_value(raw)
        .map_err(|problem| error(400, &format!("bad request body: {problem}")))?;
    let order = Order::AddFault(AddFault {
        fault: fault.clone(),
    });
    sozu_command_lib::rules::check_order(&order)
        .map_err(|problem| error(400, &format!("bad request body: {problem}")))?;
    Ok((toxic, fault))
}

fn create_toxic(state: &ConfigState, proxy: &Proxy, body: &[u8]) -> Result<Reply, Answer> {
    let object = object(body)?;
    let (toxic, fault) = toxic_fault(&proxy.name, &object, None)?;
    if find_toxic(state, &proxy.name, &toxic).is_ok() || state.faults.contains_key(&fault.name) {
        return Err(error(409, "toxic already exists"));
    }
    Ok(Reply::AfterChange {
        answer: json_answer(200, &toxic_json(&toxic, &fault)),
        orders: vec![Order::AddFault(AddFault { fault })],
    })
}

fn update_toxic(
    state: &ConfigState,
    proxy: &str,
    toxic: &str,
    body: &[u8],
) -> Result<Reply, Answer> {
    let (toxic, current) = find_toxic(state, proxy, toxic)?;
    let object = object(body)?;
    let (_, fault) = toxic_fault(proxy, &object, Some(current))?;
    Ok(Reply::AfterChange {
        answer: json_answer(200, &toxic_json(toxic, &fault)),
        orders: vec![Order::UpdateFault(AddFault { fault })],
    })
}

#[cfg(test)]
mod tests;
