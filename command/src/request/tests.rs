//! Orders read and written as JSON.

use std::{collections::BTreeMap, time::Duration};

use super::*;

fn parse(json: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn order_round_trips_through_json() {
    let order = Order::AddHttpFrontend(HttpFrontend::new(
        Some("api".to_string()),
        "127.0.0.1:8080".parse().unwrap(),
        "api.example.com",
    ));
    let request = Request::new("1", order);
    let json = serde_json::to_string(&request).unwrap();
    assert!(json.contains(r#""type":"ADD_HTTP_FRONTEND""#), "{json}");
    assert_eq!(parse(&json).unwrap(), request);
}

#[test]
fn orders_with_answers_round_trip_through_json() {
    let answers = BTreeMap::from([(404, "gone".to_string()), (503, "down".to_string())]);
    let mut cluster = Cluster::new("api");
    cluster.answers = answers.clone();
    let mut listener = HttpListenerConfig::new("127.0.0.1:8080".parse().unwrap());
    listener.answers = answers.clone();
    let patch = HttpListenerPatch {
        answers,
        ..HttpListenerPatch::default()
    };
    let update = UpdateHttpListener {
        address: listener.address,
        http: patch,
    };
    for order in [
        Order::AddCluster(cluster),
        Order::AddHttpListener(listener.clone()),
        Order::AddHttpsListener(HttpsListenerConfig {
            http: listener,
            tls: TlsListenerConfig::default(),
        }),
        Order::UpdateHttpListenerConfig(update),
    ] {
        let request = Request::new("1", order);
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(parse(&json).unwrap(), request, "{json}");
    }
    let request = parse(
        r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"c","answers":{"503":"x"}}}"#,
    )
    .unwrap();
    let Order::AddCluster(cluster) = request.order else {
        panic!("not a cluster");
    };
    assert_eq!(cluster.answers, BTreeMap::from([(503, "x".to_string())]));
    assert!(
        parse(
            r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"c","answers":{"5x3":"x"}}}"#
        )
        .is_err()
    );
}

#[test]
fn app_id_is_accepted_for_cluster_id() {
    let request = parse(r#"{"id":"a","order":{"type":"REMOVE_CLUSTER","app_id":"web"}}"#).unwrap();
    assert_eq!(
        request.order,
        Order::RemoveCluster(ClusterId {
            cluster_id: "web".to_string()
        })
    );
}

#[test]
fn backend_accepts_ip_address_and_port() {
    let request = parse(
        r#"{"id":"a","order":{"type":"ADD_BACKEND","app_id":"web","backend_id":"b1",
            "ip_address":"10.0.0.1","port":8080}}"#,
    )
    .unwrap();
    let Order::AddBackend(backend) = request.order else {
        panic!("not a backend: {request:?}");
    };
    assert_eq!(backend.address, "10.0.0.1:8080".parse().unwrap());
    assert_eq!(backend.weight, DEFAULT_BACKEND_WEIGHT);
    assert!(!backend.backup);
}

#[test]
fn backend_without_address_is_refused_with_a_reason() {
    let error = parse(
        r#"{"id":"a","order":{"type":"ADD_BACKEND","cluster_id":"web","backend_id":"b1","port":80}}"#,
    )
    .unwrap_err();
    assert!(error.to_string().contains("ip_address"), "{error}");
}

#[test]
fn unknown_field_is_named() {
    let error =
        parse(r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"x","stickky":true}}"#)
            .unwrap_err();
    assert!(error.to_string().contains("stickky"), "{error}");
}

#[test]
fn unknown_order_is_named() {
    let error = parse(r#"{"id":"a","order":{"type":"LAUNCH_ROCKET"}}"#).unwrap_err();
    assert!(error.to_string().contains("LAUNCH_ROCKET"), "{error}");
}

#[test]
fn unit_orders_need_only_their_type() {
    assert_eq!(
        parse(r#"{"id":"s","order":{"type":"STATUS"}}"#)
            .unwrap()
            .order,
        Order::Status
    );
}

#[test]
fn every_load_balancing_name_parses_case_insensitively() {
    for algorithm in LoadBalancingAlgorithm::ALL {
        assert_eq!(algorithm.name().to_lowercase().parse(), Ok(algorithm));
        let json = serde_json::to_string(&algorithm).unwrap();
        assert_eq!(json, format!("\"{}\"", algorithm.name()));
    }
    assert!("round-robin".parse::<LoadBalancingAlgorithm>().is_ok());
    assert!("fastest".parse::<LoadBalancingAlgorithm>().is_err());
}

#[test]
fn order_names_match_their_json_tags() {
    let orders = [
        Order::Status,
        Order::SoftStop,
        Order::QueryClustersHashes,
        Order::QueryClustersOfWorkers(ClustersOfWorkers::default()),
        Order::QueryClustersOfWorkers(ClustersOfWorkers {
            cluster_id: None,
            domain: Some(DomainFilter {
                hostname: "app.test".to_string(),
                path: None,
            }),
        }),
        Order::RemoveCluster(ClusterId {
            cluster_id: "c".to_string(),
        }),
        Order::SetMaxConnectionsPerIp(ConnectionLimit {
            max_connections_per_ip: 3,
        }),
        Order::UpdateTcpListenerConfig(UpdateTcpListener {
            address: "127.0.0.1:1".parse().unwrap(),
            public_address: None,
            expect_proxy: None,
            front_timeout: None,
            back_timeout: None,
            connect_timeout: None,
            splice: None,
            inspect_bytes: None,
            inspect_timeout: None,
            script: None,
        }),
    ];
    for order in orders {
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["type"], order.name());
    }
}

#[test]
fn clusters_of_workers_names_the_query_each_process_answers() {
    let request = parse(
        r#"{"id":"a","order":{"type":"QUERY_CLUSTERS_OF_WORKERS","domain":{"hostname":"app.test"}}}"#,
    )
    .unwrap();
    let Order::QueryClustersOfWorkers(query) = &request.order else {
        panic!("{request:?}");
    };
    assert_eq!(
        query.query(),
        Order::QueryClustersByDomain(DomainFilter {
            hostname: "app.test".to_string(),
            path: None,
        })
    );
    assert_eq!(
        ClustersOfWorkers::default().query(),
        Order::QueryClustersHashes
    );
    let by_id = ClustersOfWorkers {
        cluster_id: Some("app".to_string()),
        domain: None,
    };
    assert_eq!(
        by_id.query(),
        Order::QueryClusterById(ClusterId {
            cluster_id: "app".to_string()
        })
    );
}

#[test]
fn answers_by_status_round_trip_inside_an_order() {
    let mut cluster = Cluster::new("api");
    cluster.answers.insert(503, "busy".to_string());
    let request = Request::new("1", Order::AddCluster(cluster));
    let json = serde_json::to_string(&request).unwrap();
    assert_eq!(parse(&json).unwrap(), request);
    let error =
        parse(r#"{"id":"a","order":{"type":"ADD_CLUSTER","cluster_id":"x","answers":{"x":"y"}}}"#)
            .unwrap_err();
    assert!(
        error.to_string().contains("invalid status code `x`"),
        "{error}"
    );
}

#[test]
fn fingerprint_round_trips_as_hex() {
    let fingerprint = Fingerprint::of_der(b"certificate");
    let text = fingerprint.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text.parse(), Ok(fingerprint));
    assert!("abc".parse::<Fingerprint>().is_err());
    assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
}

#[test]
fn listener_timeouts_default_to_sozu_values() {
    let request = parse(
        r#"{"id":"l","order":{"type":"ADD_HTTP_LISTENER","address":"127.0.0.1:80","front_timeout":5}}"#,
    )
    .unwrap();
    let Order::AddHttpListener(listener) = request.order else {
        panic!("not a listener: {request:?}");
    };
    assert_eq!(listener.front_timeout, Duration::from_secs(5));
    assert_eq!(listener.back_timeout, Duration::from_secs(30));
    assert_eq!(listener.sticky_name, "SOZUBALANCEID");
}

/// Every field of a frontend, in the order the JSON form writes them (Sōzu's order).
const FULL_FRONTEND: &str = concat!(
    r#"{"cluster_id":"api","address":"127.0.0.1:8080","hostname":"Api.example.com","#,
    r#""path":{"kind":"PREFIX","value":"/v1"},"method":"GET","position":"PRE","#,
    r#""tags":{"team":"a"},"redirect":"FOUND","redirect_scheme":"USE_HTTPS","#,
    r#""redirect_template":"moved","rewrite_host":"$HOST[0]","rewrite_path":"/x$PATH[1]","#,
    r#""rewrite_port":8443,"required_auth":true,"#,
    r#""headers":[{"position":"REQUEST","key":"x-a","value":"1"}],"#,
    r#""hsts":{"enabled":true,"max_age":60,"include_subdomains":false,"preload":false,"force_replace_backend":false},"#,
    r#""answer":{"status":200,"body":"ok"}}"#,
);

#[test]
fn a_frontend_with_every_field_writes_them_in_order() {
    let frontend: HttpFrontend = serde_json::from_str(FULL_FRONTEND).unwrap();
    assert_eq!(frontend.tags["team"], "a");
    assert_eq!(frontend.rewrite_port, Some(8443));
    assert_eq!(frontend.answer.as_ref().map(|a| a.status), Some(200));
    assert_eq!(serde_json::to_string(&frontend).unwrap(), FULL_FRONTEND);
}

#[test]
fn a_plain_frontend_writes_only_its_fields() {
    let json = r#"{"address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","required_auth":false}"#;
    let frontend: HttpFrontend = serde_json::from_str(json).unwrap();
    assert_eq!(
        frontend,
        HttpFrontend::new(None, "127.0.0.1:80".parse().unwrap(), "a")
    );
    assert_eq!(serde_json::to_string(&frontend).unwrap(), json);
    let error = serde_json::from_str::<HttpFrontend>(
        r#"{"address":"127.0.0.1:80","hostname":"a","hedaers":[]}"#,
    )
    .unwrap_err();
    assert!(error.to_string().contains("hedaers"), "{error}");
}

#[test]
fn options_set_then_emptied_leave_an_equal_frontend() {
    let plain = HttpFrontend::new(None, "127.0.0.1:80".parse().unwrap(), "a");
    let mut edited = plain.clone();
    edited.tags.insert("k".into(), "v".into());
    assert_ne!(edited, plain);
    edited.tags.clear();
    assert_eq!(edited, plain);
    let hash = |frontend: &HttpFrontend| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        frontend.hash(&mut hasher);
        hasher.finish()
    };
    assert_eq!(hash(&edited), hash(&plain));
}

/// A layout guard: a proxy holds one record per frontend (100,000 and more), in the main
/// process and in each worker. The record was 352 bytes with its options inline.
#[test]
fn a_frontend_record_stays_small() {
    assert!(
        std::mem::size_of::<HttpFrontend>() <= 160,
        "HttpFrontend is {} bytes",
        std::mem::size_of::<HttpFrontend>()
    );
}

/// Options are empty exactly when they equal those of a frontend without any, whichever one
/// field is set, and a frontend keeps them allocated exactly then.
#[test]
fn options_are_empty_only_without_any_field_set() {
    let set_one: Vec<fn(&mut FrontendOptions)> = vec![
        |options| {
            options.tags.insert("a".to_string(), "b".to_string());
        },
        |options| options.redirect_template = Some(String::new()),
        |options| options.rewrite_host = Some(String::new()),
        |options| options.rewrite_path = Some(String::new()),
        |options| {
            options.headers.push(HeaderEdit {
                position: HeaderPosition::Request,
                key: "x".to_string(),
                value: String::new(),
            });
        },
        |options| {
            options.hsts = Some(Hsts {
                enabled: false,
                max_age: Duration::ZERO,
                include_subdomains: false,
                preload: false,
                force_replace_backend: false,
            });
        },
        |options| {
            options.answer = Some(FixedAnswer {
                status: 200,
                headers: Vec::new(),
                body: String::new(),
            });
        },
    ];
    assert!(FrontendOptions::default().is_empty());
    for (index, set) in set_one.iter().enumerate() {
        let mut options = FrontendOptions::default();
        set(&mut options);
        assert!(!options.is_empty(), "field {index}");
        assert_ne!(options, FrontendOptions::default(), "field {index}");
        let mut frontend = HttpFrontend::new(None, "127.0.0.1:80".parse().unwrap(), "a.test");
        frontend.set_options(options);
        assert!(frontend.has_options(), "field {index}");
    }
    let mut frontend = HttpFrontend::new(None, "127.0.0.1:80".parse().unwrap(), "a.test");
    frontend.set_options(FrontendOptions::default());
    assert!(!frontend.has_options());
}
