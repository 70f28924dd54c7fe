use super::*;

fn record<'a>(
    status: Option<u16>,
    cluster: Option<&'a str>,
    backend: Option<&'a str>,
) -> RequestRecord<'a> {
    RequestRecord {
        listener: "127.0.0.1:80".parse().unwrap(),
        client: "127.0.0.1:5000".parse().unwrap(),
        protocol: "HTTP",
        cluster_id: cluster,
        backend_id: backend,
        backend_address: None,
        method: "GET",
        host: "example.com",
        path: "/",
        status,
        answered_by_proxy: false,
        bytes_in: 100,
        bytes_out: 1000,
        connect_time: None,
        first_byte_time: Some(Duration::from_millis(2)),
        total_time: Duration::from_millis(3),
        user_agent: "",
        request_id: "id",
        faults: &[],
        decided_by: None,
        backend_protocol: None,
    }
}

fn count(figures: &BTreeMap<String, FilteredMetric>, name: &str) -> u64 {
    match figures.get(name) {
        Some(FilteredMetric::Count(count)) => *count,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn requests_are_counted_at_every_level() {
    let mut metrics = Metrics::new(false);
    metrics.request_done(&record(Some(200), Some("api"), Some("api-1")));
    metrics.request_done(&record(Some(404), Some("api"), Some("api-1")));
    metrics.request_done(&record(Some(503), None, None));
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 1, &[]);
    assert_eq!(count(&snapshot.proxy, "requests"), 3);
    assert_eq!(count(&snapshot.proxy, "status.5xx"), 1);
    assert_eq!(count(&snapshot.proxy, "bytes_out"), 3000);
    let api = &snapshot.clusters["api"];
    assert_eq!(count(&api.cluster, "requests"), 2);
    assert_eq!(count(&api.cluster, "status.404"), 1);
    assert_eq!(count(&api.backends["api-1"], "status.2xx"), 1);
    let Some(FilteredMetric::Histogram(histogram)) = api.cluster.get("response_time") else {
        panic!("no response time");
    };
    assert_eq!(histogram.values.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert_eq!(histogram.sum, 6000);
}

#[test]
fn queries_filter_clusters_backends_and_names() {
    let mut metrics = Metrics::new(false);
    metrics.request_done(&record(Some(200), Some("api"), Some("api-1")));
    metrics.request_done(&record(Some(200), Some("web"), Some("web-1")));
    let query = QueryMetrics {
        cluster_ids: vec!["web".to_string()],
        metric_names: vec!["requests".to_string()],
        ..QueryMetrics::default()
    };
    let snapshot = metrics.snapshot(&query, 0, &[]);
    assert_eq!(snapshot.clusters.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(snapshot.proxy.keys().collect::<Vec<_>>(), ["requests"]);
    let snapshot = metrics.snapshot(
        &QueryMetrics {
            no_clusters: true,
            ..QueryMetrics::default()
        },
        0,
        &[],
    );
    assert!(snapshot.clusters.is_empty());
}

#[test]
fn disabled_metrics_count_nothing_and_clear_forgets() {
    let mut metrics = Metrics::new(false);
    metrics.set_enabled(false);
    metrics.request_done(&record(Some(200), Some("api"), None));
    metrics.set_enabled(true);
    metrics.request_done(&record(Some(200), Some("api"), None));
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 0, &[]);
    assert_eq!(count(&snapshot.proxy, "requests"), 1);
    metrics.clear();
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 0, &[]);
    assert_eq!(count(&snapshot.proxy, "requests"), 0);
    assert!(metrics.is_enabled());
}

#[test]
fn backend_gauges_count_states() {
    let metrics = Metrics::new(false);
    let backends = [
        BackendGauge {
            cluster_id: "api",
            backend_id: "a",
            status: BackendStatus::Normal,
            connections: 2,
        },
        BackendGauge {
            cluster_id: "api",
            backend_id: "b",
            status: BackendStatus::Down,
            connections: 0,
        },
    ];
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 0, &backends);
    let api = &snapshot.clusters["api"];
    assert_eq!(api.cluster["backends.up"], FilteredMetric::Gauge(1));
    assert_eq!(api.cluster["backends.down"], FilteredMetric::Gauge(1));
    assert_eq!(
        api.backends["a"]["active_connections"],
        FilteredMetric::Gauge(2)
    );
    assert_eq!(api.backends["b"]["up"], FilteredMetric::Gauge(0));
}

/// The timing histogram `name` of `figures`.
fn histogram<'a>(figures: &'a BTreeMap<String, FilteredMetric>, name: &str) -> &'a HistogramData {
    match figures.get(name) {
        Some(FilteredMetric::Histogram(histogram)) => histogram,
        other => panic!("{name}: {other:?}"),
    }
}

/// What recording `micros` into one timing gives.
fn recorded(micros: &[u64]) -> HistogramData {
    let mut timing = None;
    for &micros in micros {
        sample(&mut timing, Duration::from_micros(micros));
    }
    timing.expect("samples were recorded").data()
}

#[test]
fn request_figures_add_up_exactly_at_every_level() {
    let mut metrics = Metrics::new(false);
    let other_listener: SocketAddr = "127.0.0.1:81".parse().unwrap();
    let mut first = record(Some(200), Some("api"), Some("api-1"));
    first.total_time = Duration::from_micros(3_000);
    let mut second = record(Some(404), Some("api"), Some("api-2"));
    second.total_time = Duration::from_micros(5_100);
    second.listener = other_listener;
    // Answered by the proxy: the cluster's, but no backend's.
    let mut third = record(Some(503), Some("api"), None);
    third.total_time = Duration::from_micros(70_000);
    third.answered_by_proxy = true;
    let mut fourth = record(Some(200), Some("api"), Some("api-1"));
    fourth.total_time = Duration::from_micros(1_234_567);
    fourth.listener = other_listener;
    for request in [&first, &second, &third, &fourth] {
        metrics.request_done(request);
    }
    metrics.connected("api", "api-1", Duration::from_micros(250));
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 0, &[]);

    assert_eq!(count(&snapshot.proxy, "requests"), 4);
    assert_eq!(count(&snapshot.proxy, "status.2xx"), 2);
    assert_eq!(count(&snapshot.proxy, "status.404"), 1);
    assert_eq!(count(&snapshot.proxy, "proxy_answers.503"), 1);
    assert_eq!(count(&snapshot.proxy, "bytes_in"), 400);
    assert_eq!(
        histogram(&snapshot.proxy, "response_time"),
        &recorded(&[3_000, 5_100, 70_000, 1_234_567])
    );
    let first_listener = &snapshot.listeners["127.0.0.1:80"];
    assert_eq!(count(first_listener, "requests"), 2);
    assert_eq!(
        histogram(first_listener, "response_time"),
        &recorded(&[3_000, 70_000])
    );
    let second_listener = &snapshot.listeners["127.0.0.1:81"];
    assert_eq!(count(second_listener, "status.404"), 1);
    assert_eq!(
        histogram(second_listener, "response_time"),
        &recorded(&[5_100, 1_234_567])
    );

    let api = &snapshot.clusters["api"];
    assert_eq!(count(&api.cluster, "requests"), 4);
    assert_eq!(count(&api.cluster, "connections"), 1);
    assert_eq!(count(&api.cluster, "proxy_answers.503"), 1);
    assert_eq!(
        histogram(&api.cluster, "response_time"),
        &recorded(&[3_000, 5_100, 70_000, 1_234_567])
    );
    assert_eq!(histogram(&api.cluster, "connect_time"), &recorded(&[250]));
    let api_1 = &api.backends["api-1"];
    assert_eq!(count(api_1, "requests"), 2);
    assert_eq!(count(api_1, "connections"), 1);
    assert_eq!(
        histogram(api_1, "response_time"),
        &recorded(&[3_000, 1_234_567])
    );
    assert_eq!(
        histogram(api_1, "first_byte_time"),
        &recorded(&[2_000, 2_000])
    );
    assert_eq!(count(&api.backends["api-2"], "status.4xx"), 1);
    assert_eq!(api.backends.len(), 2);

    // Read twice, the figures are the same: reading adds nothing to them.
    assert_eq!(metrics.snapshot(&QueryMetrics::default(), 0, &[]), snapshot);
}

#[test]
fn without_cluster_figures_requests_count_for_the_proxy_and_listeners_only() {
    let mut metrics = Metrics::new(true);
    metrics.request_done(&record(Some(200), Some("api"), Some("api-1")));
    metrics.request_done(&record(Some(200), Some("web"), Some("web-1")));
    let snapshot = metrics.snapshot(&QueryMetrics::default(), 0, &[]);
    assert_eq!(count(&snapshot.proxy, "requests"), 2);
    assert_eq!(count(&snapshot.listeners["127.0.0.1:80"], "requests"), 2);
    assert!(snapshot.clusters.is_empty());
}
