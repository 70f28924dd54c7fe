use std::{collections::BTreeMap, time::Instant};

use sozu_command_lib::request::{Fault, FixedAnswer};

use super::*;

fn fault(json: serde_json::Value) -> Fault {
    serde_json::from_value(json).unwrap()
}

fn set(faults: &[Fault]) -> FaultSet {
    let mut set = FaultSet::new(1);
    let faults: BTreeMap<String, Fault> = faults
        .iter()
        .map(|fault| (fault.name.clone(), fault.clone()))
        .collect();
    set.sync(&faults);
    set
}

/// What the faults do to a request, with the names of those that acted.
fn request(
    faults: &mut FaultSet,
    route: &Route<'_>,
    facts: &RequestFacts<'_>,
    now: Instant,
) -> (RequestPlan, Vec<Rc<str>>) {
    let (mut upstream, mut downstream, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut drawn = Drawn {
        upstream: &mut upstream,
        downstream: &mut downstream,
        labels: &mut labels,
    };
    (faults.request(route, facts, now, &mut drawn), labels)
}

fn route(cluster_id: &str) -> Route<'_> {
    Route {
        listener: "127.0.0.1:8080".parse().unwrap(),
        cluster_id: Some(cluster_id),
        backend_id: Some("api-0"),
        hostname: Some("example.com"),
        client: "10.0.0.1".parse().unwrap(),
    }
}

/// Header fields as (name, value).
impl<const N: usize> HeaderFields for [(&str, &str); N] {
    fn has(&self, name: &str, value: &str) -> bool {
        self.iter()
            .any(|(field, content)| field.eq_ignore_ascii_case(name) && *content == value)
    }
}

const NO_HEADERS: [(&str, &str); 0] = [];

const GET: RequestFacts<'static> = RequestFacts {
    path: "/v1/users",
    headers: &[("X-Chaos", "on")],
};

#[test]
fn half_the_requests_are_faulted_with_probability_one_half() {
    let mut faults = set(&[fault(serde_json::json!({
        "name": "half", "cluster_id": "api", "type": "http_error", "probability": 0.5, "seed": 7,
    }))]);
    let now = Instant::now();
    let faulted = (0..1_000)
        .filter(|_| {
            request(&mut faults, &route("api"), &GET, now)
                .0
                .answer
                .is_some()
        })
        .count();
    assert!((450..=550).contains(&faulted), "{faulted}");
    assert_eq!(
        faults.touched().collect::<Vec<_>>(),
        [("half", faulted as u64)]
    );
}

#[test]
fn the_same_seed_gives_the_same_sequence_twice() {
    let sequence = || {
        let mut faults = set(&[fault(serde_json::json!({
            "name": "coin", "cluster_id": "api", "type": "blackout", "probability": 0.3,
            "seed": 1234,
        }))]);
        let now = Instant::now();
        (0..200)
            .map(|_| faults.connection(&route("api"), now).verdict == ConnectionVerdict::Close)
            .collect::<Vec<_>>()
    };
    let first = sequence();
    assert_eq!(first, sequence());
    assert!(first.contains(&true) && first.contains(&false));
}

#[test]
fn a_fault_on_one_cluster_leaves_another_alone() {
    let mut faults = set(&[fault(serde_json::json!({
        "name": "slow", "cluster_id": "api", "type": "latency", "latency": 200,
    }))]);
    let now = Instant::now();
    let other = faults.connection(&route("web"), now);
    assert!(other.is_clean() && other.downstream.is_empty());
    let faulted = faults.connection(&route("api"), now);
    assert_eq!(faulted.downstream.len(), 1);
    assert!(faulted.upstream.is_empty(), "downstream by default");
    assert_eq!(&*faulted.labels[0], "slow");
}

#[test]
fn transient_fails_the_next_n_then_recovers() {
    let mut faults = set(&[fault(serde_json::json!({
        "name": "blip", "cluster_id": "api", "type": "transient", "count": 3,
    }))]);
    let now = Instant::now();
    let verdicts: Vec<_> = (0..5)
        .map(|_| faults.connection(&route("api"), now).verdict)
        .collect();
    assert_eq!(
        verdicts,
        [
            ConnectionVerdict::NoBackend,
            ConnectionVerdict::NoBackend,
            ConnectionVerdict::NoBackend,
            ConnectionVerdict::Proxy,
            ConnectionVerdict::Proxy,
        ]
    );
}

#[test]
fn connection_verdicts_of_each_kind() {
    let now = Instant::now();
    let cases = [
        (
            serde_json::json!({"type": "blackout"}),
            ConnectionVerdict::Close,
        ),
        (
            serde_json::json!({"type": "down"}),
            ConnectionVerdict::NoBackend,
        ),
        (
            serde_json::json!({"type": "error", "protocol": "redis"}),
            ConnectionVerdict::Answer(b"-ERR injected fault\r\n"),
        ),
        (
            serde_json::json!({"type": "http_error"}),
            ConnectionVerdict::Proxy,
        ),
    ];
    for (mut json, verdict) in cases {
        json["name"] = "f".into();
        json["cluster_id"] = "api".into();
        let mut faults = set(&[fault(json)]);
        let plan = faults.connection(&route("api"), now);
        assert_eq!(plan.verdict, verdict);
        assert_eq!(plan.is_clean(), verdict == ConnectionVerdict::Proxy);
    }
    let mut redis = set(&[fault(serde_json::json!({
        "name": "f", "cluster_id": "api", "type": "error", "protocol": "redis",
    }))]);
    let (plan, labels) = request(&mut redis, &route("api"), &GET, now);
    assert!(plan.answer.is_none() && labels.is_empty());
}

#[test]
fn http_faults_answer_or_delay_requests() {
    let now = Instant::now();
    let mut faults = set(&[
        fault(serde_json::json!({
            "name": "outage", "cluster_id": "api", "type": "http_error", "status": 503,
            "body": "injected", "path_prefix": "/v1",
        })),
        fault(serde_json::json!({
            "name": "wait", "cluster_id": "api", "type": "http_delay", "delay": 50,
            "direction": "both",
        })),
    ]);
    let plan = request(&mut faults, &route("api"), &GET, now).0;
    assert_eq!(
        plan.answer,
        Some(RequestAnswer::Fixed(FixedAnswer {
            status: 503,
            headers: Vec::new(),
            body: "injected".to_string(),
        }))
    );
    assert_eq!(plan.request_delay, Duration::from_millis(50));
    assert_eq!(plan.response_delay, Duration::from_millis(50));
    let elsewhere = RequestFacts {
        path: "/v2",
        headers: &NO_HEADERS,
    };
    let (plan, labels) = request(&mut faults, &route("api"), &elsewhere, now);
    assert_eq!(plan.answer, None, "the path selector leaves /v2 alone");
    assert_eq!(&*labels[0], "wait");
}

#[test]
fn selectors_match_headers_and_source_networks() {
    let now = Instant::now();
    let mut faults = set(&[fault(serde_json::json!({
        "name": "canary", "cluster_id": "api", "type": "down", "header": "x-chaos=on",
        "source": "10.0.0.0/8",
    }))]);
    assert!(
        request(&mut faults, &route("api"), &GET, now)
            .0
            .answer
            .is_some()
    );
    let no_header = RequestFacts {
        path: "/",
        headers: &[("x-chaos", "off")],
    };
    assert!(
        request(&mut faults, &route("api"), &no_header, now)
            .0
            .answer
            .is_none()
    );
    let mut outside = route("api");
    outside.client = "192.0.2.1".parse().unwrap();
    assert!(request(&mut faults, &outside, &GET, now).0.answer.is_none());
}

#[test]
fn backend_and_frontend_targets_match_their_route() {
    let now = Instant::now();
    let mut faults = set(&[
        fault(serde_json::json!({
            "name": "one-backend", "cluster_id": "api", "backend_id": "api-1", "type": "down",
        })),
        fault(serde_json::json!({
            "name": "edge", "frontend": "127.0.0.1:8080", "hostname": "EXAMPLE.com",
            "type": "blackout",
        })),
    ]);
    let plan = faults.connection(&route("api"), now);
    assert_eq!(plan.verdict, ConnectionVerdict::Close);
    assert_eq!(plan.labels.len(), 1, "api-0 is not api-1");
    let mut on_backend = route("api");
    on_backend.backend_id = Some("api-1");
    on_backend.hostname = Some("other.com");
    assert_eq!(
        faults.connection(&on_backend, now).verdict,
        ConnectionVerdict::NoBackend
    );
}

/// A fault on a backend is no part of a request's draw at routing, when no backend is
/// chosen yet: its selector picks the request as a candidate, and it is drawn (and counted)
/// only for requests whose chosen backend is its own.
#[test]
fn a_backend_fault_is_drawn_once_its_backend_is_chosen() {
    let now = Instant::now();
    let mut faults = set(&[
        fault(serde_json::json!({
            "name": "one-backend", "cluster_id": "api", "backend_id": "api-1",
            "type": "transient", "count": 2, "path_prefix": "/v1",
        })),
        fault(serde_json::json!({
            "name": "other-cluster", "cluster_id": "web", "backend_id": "api-1", "type": "down",
        })),
    ]);
    let mut routed = route("api");
    routed.backend_id = None;
    let (plan, labels) = request(&mut faults, &routed, &GET, now);
    assert!(plan.answer.is_none() && labels.is_empty());
    let mut candidates = Vec::new();
    faults.backend_candidates(&routed, &GET, &mut candidates);
    assert_eq!(
        candidates.len(),
        1,
        "only the fault on the request's cluster"
    );
    let elsewhere = RequestFacts {
        path: "/v2",
        headers: &NO_HEADERS,
    };
    let mut none = Vec::new();
    faults.backend_candidates(&routed, &elsewhere, &mut none);
    assert!(none.is_empty(), "the selector leaves other paths alone");

    let mut backend_request = |backend_id| {
        let mut chosen = route("api");
        chosen.backend_id = Some(backend_id);
        let (mut upstream, mut downstream, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        let mut drawn = Drawn {
            upstream: &mut upstream,
            downstream: &mut downstream,
            labels: &mut labels,
        };
        faults
            .backend_request(&chosen, &candidates, now, &mut drawn)
            .answer
    };
    assert_eq!(backend_request("api-0"), None, "another backend");
    assert_eq!(backend_request("api-1"), Some(RequestAnswer::NoBackend));
    assert_eq!(backend_request("api-0"), None);
    assert_eq!(backend_request("api-1"), Some(RequestAnswer::NoBackend));
    assert_eq!(backend_request("api-1"), None, "recovered after two");
    assert_eq!(faults.get("one-backend").map(ActiveFault::touched), Some(2));
}

#[test]
fn sync_keeps_the_state_of_unchanged_faults_and_restarts_changed_ones() {
    let blip = fault(serde_json::json!({
        "name": "blip", "cluster_id": "api", "type": "transient", "count": 1,
    }));
    let mut faults = set(std::slice::from_ref(&blip));
    let now = Instant::now();
    assert_eq!(
        faults.connection(&route("api"), now).verdict,
        ConnectionVerdict::NoBackend
    );
    let mut state = BTreeMap::from([("blip".to_string(), blip.clone())]);
    faults.sync(&state);
    assert_eq!(
        faults.connection(&route("api"), now).verdict,
        ConnectionVerdict::Proxy
    );
    let mut changed = blip;
    changed.effect = Effect::Transient { count: 2 };
    state.insert("blip".to_string(), changed);
    faults.sync(&state);
    assert_eq!(
        faults.connection(&route("api"), now).verdict,
        ConnectionVerdict::NoBackend
    );
    faults.sync(&BTreeMap::new());
    assert!(faults.is_empty());
}

#[test]
fn the_strictest_allowance_wins() {
    let now = Instant::now();
    let soon = now + Duration::from_millis(1);
    let late = now + Duration::from_millis(2);
    use Allowance::*;
    assert_eq!(All.and(Bytes(5)), Bytes(5));
    assert_eq!(Bytes(9).and(Bytes(5)), Bytes(5));
    assert_eq!(Bytes(9).and(Later(late)), Later(late));
    assert_eq!(Later(late).and(Later(soon)), Later(soon));
    assert_eq!(Later(late).and(Held), Held);
    assert_eq!(Held.and(Cut), Cut);
    assert_eq!(Cut.and(Reset), Reset);
    let mut plan = set(&[
        fault(serde_json::json!({"name": "a", "cluster_id": "api", "type": "limit_data", "bytes": 10})),
        fault(serde_json::json!({"name": "b", "cluster_id": "api", "type": "bandwidth", "rate": 1})),
    ])
    .connection(&route("api"), now);
    assert_eq!(allowance(&mut plan.downstream, now, 100), Bytes(10));
}

/// A `latency` of 0 ± 0 acts (it labels what it touched and counts it) but shapes nothing:
/// no lane for a request nor a connection, so their copy paths run as without fault. Any
/// jitter, or a latency, gives lanes again.
#[test]
fn a_zero_latency_labels_without_lanes() {
    let now = Instant::now();
    let mut faults = set(&[fault(serde_json::json!({
        "name": "zero", "cluster_id": "api", "type": "latency", "latency": 0, "direction": "both",
    }))]);
    let (mut upstream, mut downstream, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut drawn = Drawn {
        upstream: &mut upstream,
        downstream: &mut downstream,
        labels: &mut labels,
    };
    faults.request(&route("api"), &GET, now, &mut drawn);
    assert_eq!(labels, [Rc::from("zero")]);
    assert!(upstream.is_empty() && downstream.is_empty());
    let plan = faults.connection(&route("api"), now);
    assert!(!plan.is_clean());
    assert!(plan.upstream.is_empty() && plan.downstream.is_empty());
    assert_eq!(faults.touched().collect::<Vec<_>>(), [("zero", 2)]);

    let mut jittery = set(&[fault(serde_json::json!({
        "name": "jitter", "cluster_id": "api", "type": "latency", "latency": 0, "jitter": 5,
    }))]);
    let plan = jittery.connection(&route("api"), now);
    assert_eq!(plan.downstream.len(), 1);
}

/// A request may be acted on by a fault on its route, or on a backend of its cluster (drawn
/// once the backend is chosen); a route of another cluster or listener is left alone.
#[test]
fn reach_finds_faults_on_the_route_or_its_backends() {
    let faults = set(&[
        fault(serde_json::json!({
            "name": "api", "cluster_id": "api", "type": "latency", "latency": 10,
        })),
        fault(serde_json::json!({
            "name": "backend", "cluster_id": "web", "backend_id": "web-1", "type": "latency",
            "latency": 10,
        })),
    ]);
    let routed = |cluster_id| Route {
        backend_id: None,
        ..route(cluster_id)
    };
    let reach = |route| faults.reach(&route);
    assert_eq!(
        reach(routed("api")),
        Reach {
            route: true,
            backends: false
        }
    );
    assert_eq!(
        reach(routed("web")),
        Reach {
            route: false,
            backends: true
        }
    );
    assert!(reach(routed("other")).is_none());
}
