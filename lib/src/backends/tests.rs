//! The backend map: balancing, health from connects, draining, sticky picks, backups, and
//! the counts leases keep.

use super::*;

/// A key that names no backend, for tests of code that only carries keys.
pub(crate) fn key_for_tests() -> BackendKey {
    BackendKey { index: 0, uid: 0 }
}

fn add(map: &mut BackendMap, cluster: &str, id: &str, port: u16, backup: bool) {
    add_weighted(map, cluster, id, port, backup, 100);
}

fn add_weighted(
    map: &mut BackendMap,
    cluster: &str,
    id: &str,
    port: u16,
    backup: bool,
    weight: u32,
) {
    map.add(&AddBackend {
        cluster_id: cluster.to_string(),
        backend_id: id.to_string(),
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        sticky_id: None,
        weight,
        backup,
    });
}

fn picked_id(map: &mut BackendMap, now: Instant) -> Option<String> {
    let key = map.pick("c", None, now).ok()?;
    map.get(key).map(|b| b.id.clone())
}

#[test]
fn round_robin_alternates_between_normal_backends() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    add(&mut map, "c", "b", 2, false);
    add(&mut map, "c", "spare", 3, true);
    let now = Instant::now();
    let picks: Vec<_> = (0..4).map(|_| picked_id(&mut map, now).unwrap()).collect();
    assert_eq!(picks.iter().filter(|id| *id == "a").count(), 2);
    assert_eq!(picks.iter().filter(|id| *id == "b").count(), 2);
}

#[test]
fn failing_backend_goes_down_then_is_probed_after_backoff() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    add(&mut map, "c", "spare", 3, true);
    let now = Instant::now();
    let key = map.pick("c", None, now).unwrap();
    for _ in 0..FAILURES_BEFORE_DOWN {
        map.connect_failed(key, now);
    }
    assert_eq!(map.get(key).unwrap().status, BackendStatus::Down);
    assert_eq!(
        picked_id(&mut map, now).as_deref(),
        Some("spare"),
        "backup takes over"
    );
    let later = now + INITIAL_BACKOFF;
    assert_eq!(
        picked_id(&mut map, later).as_deref(),
        Some("a"),
        "probe after backoff"
    );
    map.connect_succeeded(key, Duration::from_millis(1));
    assert_eq!(map.get(key).unwrap().status, BackendStatus::Normal);
    let kinds: Vec<_> = map.take_events().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::BackendDown, EventKind::BackendUp]);
}

#[test]
fn no_backend_is_reported_once() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    let now = Instant::now();
    assert_eq!(
        map.pick("c", None, now),
        Err(PickError::NoBackend("c".to_string()))
    );
    assert_eq!(
        map.pick("c", None, now),
        Err(PickError::NoBackend("c".to_string()))
    );
    assert_eq!(map.take_events().len(), 1);
    assert_eq!(
        map.pick("x", None, now),
        Err(PickError::NoCluster("x".to_string()))
    );
}

#[test]
fn removed_backend_drains_until_its_last_connection_ends() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    add(&mut map, "c", "b", 2, false);
    let now = Instant::now();
    let key = loop {
        let key = map.pick("c", None, now).unwrap();
        if map.get(key).unwrap().id == "a" {
            break key;
        }
    };
    let lease = map.lease(key).unwrap();
    map.remove("c", "a");
    assert_eq!(map.get(key).unwrap().status, BackendStatus::Draining);
    for _ in 0..10 {
        assert_eq!(picked_id(&mut map, now).as_deref(), Some("b"));
    }
    drop(lease);
    map.release_drained();
    assert!(map.get(key).is_none());
    assert_eq!(map.cluster_backends("c").count(), 1);
    let kinds: Vec<_> = map.take_events().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::RemovedBackendHasNoConnections]);
}

#[test]
fn a_lease_counts_its_request_once_and_never_beyond_its_life() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    let key = map.pick("c", None, Instant::now()).unwrap();
    let requests = |map: &BackendMap| map.get(key).unwrap().requests();
    let mut first = map.lease(key).unwrap();
    let mut second = map.lease(key).unwrap();
    first.request_started();
    first.request_started();
    assert_eq!(requests(&map), 1, "one request per connection");
    second.request_started();
    assert_eq!(requests(&map), 2);
    first.request_ended();
    first.request_ended();
    assert_eq!(requests(&map), 1, "ended once");
    drop(first);
    assert_eq!(
        requests(&map),
        1,
        "a lease without a request changes nothing"
    );
    drop(second);
    assert_eq!(requests(&map), 0, "the lease's end ends its request");
    assert_eq!(map.get(key).unwrap().connections(), 0);
}

/// The `requests` metric reads what the leases count: LEAST_LOADED picks the backend
/// with no request in flight.
#[test]
fn least_loaded_by_requests_picks_the_backend_without_a_request() {
    let mut cluster = Cluster::new("c");
    cluster.load_balancing = LoadBalancingAlgorithm::LeastLoaded;
    cluster.load_metric = Some(LoadMetric::Requests);
    let mut map = BackendMap::new();
    map.set_cluster(&cluster);
    add(&mut map, "c", "a", 1, false);
    add(&mut map, "c", "b", 2, false);
    let now = Instant::now();
    let busy = map.pick("c", None, now).unwrap();
    let mut lease = map.lease(busy).unwrap();
    lease.request_started();
    let busy_id = map.get(busy).unwrap().id.clone();
    for _ in 0..4 {
        assert_ne!(picked_id(&mut map, now), Some(busy_id.clone()));
    }
}

#[test]
fn sticky_pick_finds_the_named_backend_while_it_is_up() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    add(&mut map, "c", "b", 2, false);
    let now = Instant::now();
    let key = map.pick_sticky("c", "b", now).unwrap();
    assert_eq!(map.get(key).unwrap().id, "b");
    for _ in 0..FAILURES_BEFORE_DOWN {
        map.connect_failed(key, now);
    }
    assert!(map.pick_sticky("c", "b", now).is_none());
}

/// Issue 10, item 14: a cookie must not send traffic where the balancer would not.
#[test]
fn sticky_pick_ignores_a_backend_of_weight_0_and_a_backup_while_a_normal_one_is_up() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "normal", 1, false);
    add_weighted(&mut map, "c", "idle", 2, false, 0);
    add(&mut map, "c", "spare", 3, true);
    let now = Instant::now();
    assert!(map.pick_sticky("c", "normal", now).is_some());
    assert_eq!(map.pick_sticky("c", "idle", now), None, "weight 0");
    assert_eq!(map.pick_sticky("c", "spare", now), None, "backup");

    // Once no normal backend takes traffic, the backup does, by cookie too.
    map.remove("c", "normal");
    let key = map.pick_sticky("c", "spare", now).unwrap();
    assert_eq!(map.get(key).unwrap().id, "spare");
    assert_eq!(map.pick_sticky("c", "idle", now), None, "still weight 0");
}

/// A normal backend of weight 0 takes no traffic, so backups take over when it is the
/// only one left (as HAProxy, where a server of weight 0 is not usable).
#[test]
fn backups_take_over_when_normal_backends_all_have_weight_0() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add_weighted(&mut map, "c", "idle", 1, false, 0);
    add(&mut map, "c", "spare", 2, true);
    let now = Instant::now();
    assert_eq!(picked_id(&mut map, now).as_deref(), Some("spare"));
}

#[test]
fn a_stream_lease_counts_its_request_and_no_connection() {
    let mut map = BackendMap::new();
    map.set_cluster(&Cluster::new("c"));
    add(&mut map, "c", "a", 1, false);
    let key = map.pick("c", None, Instant::now()).unwrap();
    let connection = map.lease(key).unwrap();
    let mut streams = [connection.for_stream(), connection.for_stream()];
    for stream in &mut streams {
        stream.request_started();
    }
    let backend = |map: &BackendMap| {
        let backend = map.get(key).unwrap();
        (backend.connections(), backend.requests())
    };
    assert_eq!(backend(&map), (1, 2), "one connection carries two requests");
    let [first, second] = streams;
    drop(first);
    assert_eq!(backend(&map), (1, 1));
    drop(connection);
    assert_eq!(
        backend(&map),
        (0, 1),
        "a stream outliving its connection's lease"
    );
    drop(second);
    assert_eq!(backend(&map), (0, 0));
}
