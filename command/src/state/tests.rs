use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::{
    certificate::tests::{
        CERTIFICATE, EXPIRED_CERTIFICATE, EXPIRED_KEY, KEY, OTHER_CERTIFICATE, OTHER_KEY,
        certificate_and_key,
    },
    request::{
        AddCertificate, ConnectionLimit, FixedAnswer, ListenerAddress, LoadBalancingAlgorithm,
        PathRule, PathRuleKind, RemoveCertificate, ReplaceCertificate, RulePosition, TcpProtocol,
        TcpRule, TcpScript, TlsListenerConfig, UpdateTcpListener,
    },
};

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn http_listener(port: u16) -> Order {
    Order::AddHttpListener(HttpListenerConfig::new(address(port)))
}

fn https_listener(port: u16) -> Order {
    Order::AddHttpsListener(HttpsListenerConfig {
        http: HttpListenerConfig::new(address(port)),
        tls: TlsListenerConfig::default(),
    })
}

fn cluster(id: &str) -> Order {
    Order::AddCluster(Cluster::new(id))
}

fn backend(cluster: &str, id: &str, port: u16) -> AddBackend {
    AddBackend {
        cluster_id: cluster.to_string(),
        backend_id: id.to_string(),
        address: address(port),
        sticky_id: None,
        weight: 100,
        backup: false,
    }
}

fn frontend(cluster: &str, port: u16, hostname: &str) -> HttpFrontend {
    HttpFrontend::new(Some(cluster.to_string()), address(port), hostname)
}

fn state_of(orders: &[Order]) -> ConfigState {
    let mut state = ConfigState::new();
    for order in orders {
        state.apply(order).unwrap();
    }
    state
}

/// Applies `order` expecting a refusal, and checks that nothing changed.
fn refused(state: &mut ConfigState, order: Order) -> String {
    let before = state.clone();
    let error = state.apply(&order).unwrap_err().to_string();
    assert_eq!(*state, before, "a refused {order} changed the state");
    error
}

#[test]
fn frontend_needs_its_cluster_and_listener() {
    let mut state = state_of(&[http_listener(80), cluster("api")]);
    let error = refused(
        &mut state,
        Order::AddHttpFrontend(frontend("web", 80, "example.com")),
    );
    assert_eq!(error, "no cluster `web`");
    let error = refused(
        &mut state,
        Order::AddHttpFrontend(frontend("api", 81, "example.com")),
    );
    assert_eq!(error, "no HTTP listener on 127.0.0.1:81");
    let error = refused(
        &mut state,
        Order::AddHttpsFrontend(frontend("api", 80, "example.com")),
    );
    assert_eq!(error, "no HTTPS listener on 127.0.0.1:80");
    state
        .apply(&Order::AddHttpFrontend(frontend("api", 80, "example.com")))
        .unwrap();
}

#[test]
fn duplicates_are_named() {
    let mut state = state_of(&[
        http_listener(80),
        cluster("api"),
        Order::AddBackend(backend("api", "b1", 9000)),
        Order::AddHttpFrontend(frontend("api", 80, "example.com")),
    ]);
    assert_eq!(
        refused(&mut state, Order::AddBackend(backend("api", "b1", 9001))),
        "cluster `api` already has a backend `b1`"
    );
    assert_eq!(
        refused(
            &mut state,
            Order::AddHttpFrontend(frontend("api", 80, "Example.COM"))
        ),
        "a frontend for 127.0.0.1:80 example.com already exists"
    );
    assert_eq!(
        refused(&mut state, http_listener(80)),
        "a HTTP listener already uses 127.0.0.1:80"
    );
}

#[test]
fn add_cluster_again_updates_its_settings_and_keeps_the_rest() {
    let mut state = state_of(&[
        cluster("api"),
        Order::AddBackend(backend("api", "b1", 9000)),
    ]);
    let mut changed = Cluster::new("api");
    changed.load_balancing = LoadBalancingAlgorithm::Maglev;
    state.apply(&Order::AddCluster(changed.clone())).unwrap();
    assert_eq!(state.clusters["api"], changed);
    assert_eq!(state.backends["api"].len(), 1);
}

#[test]
fn remove_backend_checks_the_address() {
    let mut state = state_of(&[
        cluster("api"),
        Order::AddBackend(backend("api", "b1", 9000)),
    ]);
    let error = refused(
        &mut state,
        Order::RemoveBackend(RemoveBackend {
            cluster_id: "api".to_string(),
            backend_id: "b1".to_string(),
            address: address(9999),
            drain_timeout: None,
        }),
    );
    assert!(error.contains("127.0.0.1:9000"), "{error}");
    state
        .apply(&Order::RemoveBackend(RemoveBackend {
            cluster_id: "api".to_string(),
            backend_id: "b1".to_string(),
            address: address(9000),
            drain_timeout: None,
        }))
        .unwrap();
    assert!(state.backends.is_empty());
}

#[test]
fn remove_cluster_takes_its_frontends_and_backends() {
    let mut state = state_of(&[
        http_listener(80),
        cluster("api"),
        cluster("web"),
        Order::AddBackend(backend("api", "b1", 9000)),
        Order::AddHttpFrontend(frontend("api", 80, "api.example.com")),
        Order::AddHttpFrontend(frontend("web", 80, "www.example.com")),
    ]);
    state
        .apply(&Order::RemoveCluster(ClusterId {
            cluster_id: "api".to_string(),
        }))
        .unwrap();
    assert!(state.backends.is_empty());
    assert_eq!(state.http_frontends.len(), 1);
}

#[test]
fn invalid_frontends_are_refused_with_the_reason() {
    let mut state = state_of(&[http_listener(80), cluster("api")]);
    let error = refused(
        &mut state,
        Order::AddHttpFrontend(frontend("api", 80, "a b.com")),
    );
    assert!(error.contains("a b.com"), "{error}");
    let mut regex = frontend("api", 80, "example.com");
    regex.path = PathRule {
        kind: PathRuleKind::Regex,
        value: "(".to_string(),
    };
    let error = refused(&mut state, Order::AddHttpFrontend(regex));
    assert!(error.contains("a regular expression"), "{error}");
    let mut method = frontend("api", 80, "example.com");
    method.method = Some("GE T".to_string());
    refused(&mut state, Order::AddHttpFrontend(method));
    let nowhere = HttpFrontend::new(None, address(80), "example.com");
    let error = refused(&mut state, Order::AddHttpFrontend(nowhere.clone()));
    assert!(error.contains("a cluster, or else an `answer`"), "{error}");
    let mut answer = nowhere;
    answer.answer = Some(FixedAnswer {
        status: 200,
        headers: Vec::new(),
        body: "hello".to_string(),
    });
    state.apply(&Order::AddHttpFrontend(answer)).unwrap();
}

#[test]
fn certificates_need_an_https_listener_and_valid_pem() {
    let mut state = state_of(&[http_listener(80), https_listener(443)]);
    let add = |port, certificate: &str, key: &str| {
        Order::AddCertificate(AddCertificate {
            address: address(port),
            certificate: certificate_and_key(certificate, key),
            allow_expired: false,
        })
    };
    assert_eq!(
        refused(&mut state, add(80, CERTIFICATE, KEY)),
        "no HTTPS listener on 127.0.0.1:80"
    );
    let error = refused(&mut state, add(443, "garbage", KEY));
    assert_eq!(error, "invalid certificate for 127.0.0.1:443");
    state.apply(&add(443, CERTIFICATE, KEY)).unwrap();
    let error = refused(&mut state, add(443, CERTIFICATE, KEY));
    assert!(error.contains("already loaded"), "{error}");

    let fingerprint = state.certificates[&address(443)]
        .keys()
        .next()
        .unwrap()
        .clone();
    state
        .apply(&Order::ReplaceCertificate(ReplaceCertificate {
            address: address(443),
            new_certificate: certificate_and_key(OTHER_CERTIFICATE, OTHER_KEY),
            old_fingerprint: fingerprint.clone(),
            allow_expired: false,
        }))
        .unwrap();
    let loaded = &state.certificates[&address(443)];
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded.values().next().unwrap().names,
        ["example.com", "*.example.com"]
    );
    let error = refused(
        &mut state,
        Order::RemoveCertificate(RemoveCertificate {
            address: address(443),
            fingerprint,
        }),
    );
    assert!(error.starts_with("no certificate"), "{error}");
}

/// Issue 10, item 5: a state holding a certificate that expired since it was added (or added
/// with `allow_expired`) is replayed whole: the state never judges time, and the certificate
/// keeps its own `allow_expired` through save and load.
#[test]
fn a_state_holding_an_expired_certificate_is_replayed_whole() {
    let add = |certificate: &str, key: &str, allow_expired| {
        Order::AddCertificate(AddCertificate {
            address: address(443),
            certificate: certificate_and_key(certificate, key),
            allow_expired,
        })
    };
    let state = state_of(&[
        https_listener(443),
        add(EXPIRED_CERTIFICATE, EXPIRED_KEY, false),
        add(CERTIFICATE, KEY, true),
    ]);
    let mut saved = Vec::new();
    state.save(&mut saved).unwrap();
    let text = String::from_utf8(saved.clone()).unwrap();
    assert_eq!(
        text.matches(r#""allow_expired":false"#).count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches(r#""allow_expired":true"#).count(), 1, "{text}");
    let loaded = ConfigState::load(saved.as_slice()).unwrap();
    assert_eq!(loaded, state);
    assert_eq!(build(&state.orders()), state);
}

#[test]
fn queries_are_not_state_changes() {
    let mut state = ConfigState::new();
    assert_eq!(
        refused(&mut state, Order::Status),
        "STATUS does not change the routing state"
    );
}

fn tcp_frontend(cluster: &str, rule: Option<TcpRule>) -> TcpFrontend {
    TcpFrontend {
        rule,
        ..TcpFrontend::new(cluster, address(5000))
    }
}

fn sni(name: &str) -> Option<TcpRule> {
    Some(TcpRule::Sni(name.to_string()))
}

#[test]
fn a_tcp_listener_holds_several_frontends_in_the_order_they_were_added() {
    let mut state = state_of(&[
        Order::AddTcpListener(TcpListenerConfig::new(address(5000))),
        cluster("a"),
        cluster("b"),
        cluster("fallback"),
        Order::AddTcpFrontend(tcp_frontend("fallback", None)),
        Order::AddTcpFrontend(tcp_frontend("a", sni("a.test"))),
        Order::AddTcpFrontend(tcp_frontend("b", Some(TcpRule::Protocol(TcpProtocol::Ssh)))),
    ]);
    let clusters: Vec<&str> = state.tcp_frontends[&address(5000)]
        .iter()
        .map(|f| f.cluster_id.as_str())
        .collect();
    assert_eq!(clusters, ["fallback", "a", "b"]);
    assert_eq!(
        state
            .default_tcp_frontend(address(5000))
            .map(|f| f.cluster_id.as_str()),
        Some("fallback")
    );
    assert_eq!(
        refused(
            &mut state,
            Order::AddTcpFrontend(tcp_frontend("b", sni("A.test")))
        ),
        "the TCP listener 127.0.0.1:5000 already has a frontend with sni = \"A.test\" (cluster `a`)"
    );
    assert_eq!(
        refused(&mut state, Order::AddTcpFrontend(tcp_frontend("a", None))),
        "the TCP listener 127.0.0.1:5000 already has a frontend without a rule (cluster `fallback`)"
    );
    assert_eq!(
        refused(
            &mut state,
            Order::RemoveTcpFrontend(tcp_frontend("b", sni("a.test")))
        ),
        "no TCP frontend with sni = \"a.test\" on 127.0.0.1:5000 for cluster `b`"
    );
    state
        .apply(&Order::RemoveTcpFrontend(tcp_frontend("a", sni("a.test"))))
        .unwrap();
    state
        .apply(&Order::RemoveCluster(ClusterId {
            cluster_id: "fallback".to_string(),
        }))
        .unwrap();
    assert_eq!(state.tcp_frontends[&address(5000)].len(), 1);
    assert_eq!(state.default_tcp_frontend(address(5000)), None);
}

#[test]
fn tcp_rules_that_cannot_be_evaluated_are_refused() {
    let mut state = state_of(&[
        Order::AddTcpListener(TcpListenerConfig::new(address(5000))),
        cluster("a"),
    ]);
    let error = refused(
        &mut state,
        Order::AddTcpFrontend(tcp_frontend(
            "a",
            Some(TcpRule::Regex("(unclosed".to_string())),
        )),
    );
    assert_eq!(
        error,
        "invalid `regex` \"(unclosed\" (9 bytes): expected a regular expression that compiles \
         (unclosed group)"
    );
    let error = refused(
        &mut state,
        Order::AddTcpFrontend(tcp_frontend("a", sni("/[z-a]/"))),
    );
    assert!(error.starts_with("invalid `sni` \"/[z-a]/\""), "{error}");
    let error = refused(
        &mut state,
        Order::AddTcpFrontend(tcp_frontend(
            "a",
            Some(TcpRule::Prefix(r"\xG0".to_string())),
        )),
    );
    assert!(error.starts_with("invalid `prefix`"), "{error}");
}

#[test]
fn saved_tcp_frontends_keep_their_order() {
    let listener = TcpListenerConfig {
        inspect_bytes: 512,
        inspect_timeout: std::time::Duration::from_secs(5),
        script: Some(TcpScript {
            name: "route.lua".to_string(),
            source: "function route(data, peer) return nil end".to_string(),
        }),
        ..TcpListenerConfig::new(address(5000))
    };
    let state = state_of(&[
        Order::AddTcpListener(listener),
        cluster("a"),
        cluster("b"),
        Order::AddTcpFrontend(tcp_frontend("b", sni("*.a.test"))),
        Order::AddTcpFrontend(tcp_frontend(
            "a",
            Some(TcpRule::Prefix(r"\x16\x03".to_string())),
        )),
        Order::AddTcpFrontend(tcp_frontend("a", None)),
    ]);
    let mut saved = Vec::new();
    state.save(&mut saved).unwrap();
    let loaded = ConfigState::load(saved.as_slice()).unwrap();
    assert_eq!(loaded, state);
    // Removing the first frontend and adding it back puts it last.
    let mut target = state.clone();
    let first = target
        .tcp_frontends
        .get_mut(&address(5000))
        .unwrap()
        .remove(0);
    target
        .tcp_frontends
        .get_mut(&address(5000))
        .unwrap()
        .push(first);
    let mut changed = state.clone();
    apply_all(&mut changed, &state.diff(&target));
    assert_eq!(changed, target);
}

#[test]
fn listener_update_patches_in_place() {
    let mut state = state_of(&[Order::AddTcpListener(TcpListenerConfig::new(address(5000)))]);
    state
        .apply(&Order::UpdateTcpListenerConfig(UpdateTcpListener {
            address: address(5000),
            public_address: Some(Some(address(6000))),
            expect_proxy: Some(true),
            front_timeout: None,
            back_timeout: None,
            connect_timeout: None,
            splice: None,
            inspect_bytes: None,
            inspect_timeout: None,
            script: None,
        }))
        .unwrap();
    let config = &state.tcp_listeners[&address(5000)].config;
    assert!(config.expect_proxy);
    assert_eq!(config.public_address, Some(address(6000)));
}

#[test]
fn load_names_the_bad_line() {
    let text = format!(
        "# a saved state\n{}\n\n{}\n",
        serde_json::to_string(&cluster("api")).unwrap(),
        serde_json::to_string(&Order::AddBackend(backend("web", "b1", 9000))).unwrap()
    );
    let error = ConfigState::load(text.as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "line 4: ADD_BACKEND refused");
    let error = ConfigState::load("{\"type\":\"ADD_CLUSTER\"}".as_bytes()).unwrap_err();
    assert_eq!(error.to_string(), "line 1 is not a valid order");
}

// Random order sequences over small pools of names, so that orders collide often.

const PORTS: [u16; 3] = [8080, 8443, 5000];
const CLUSTERS: [&str; 3] = ["api", "web", "db"];

fn arb_port() -> impl Strategy<Value = u16> {
    prop::sample::select(&PORTS[..])
}

fn arb_cluster() -> impl Strategy<Value = String> {
    prop::sample::select(&CLUSTERS[..]).prop_map(str::to_string)
}

fn arb_listener() -> impl Strategy<Value = Order> {
    (arb_port(), 0..3u8, any::<bool>()).prop_map(|(port, kind, expect_proxy)| match kind {
        0 => {
            let mut config = HttpListenerConfig::new(address(port));
            config.expect_proxy = expect_proxy;
            Order::AddHttpListener(config)
        }
        1 => https_listener(port),
        _ => {
            let mut config = TcpListenerConfig::new(address(port));
            config.expect_proxy = expect_proxy;
            Order::AddTcpListener(config)
        }
    })
}

fn arb_listener_address() -> impl Strategy<Value = ListenerAddress> {
    (arb_port(), 0..3u8).prop_map(|(port, kind)| ListenerAddress {
        address: address(port),
        proxy: [ListenerType::Http, ListenerType::Https, ListenerType::Tcp][usize::from(kind)],
    })
}

fn arb_cluster_order() -> impl Strategy<Value = Order> {
    (arb_cluster(), 0..6usize, any::<bool>()).prop_map(|(id, algorithm, sticky)| {
        let mut cluster = Cluster::new(id);
        cluster.load_balancing = LoadBalancingAlgorithm::ALL[algorithm];
        cluster.sticky_session = sticky;
        Order::AddCluster(cluster)
    })
}

fn arb_backend() -> impl Strategy<Value = AddBackend> {
    (arb_cluster(), 0..3u8, 9000..9003u16, 0..3u32).prop_map(|(cluster, id, port, weight)| {
        let mut backend = backend(&cluster, &format!("b{id}"), port);
        backend.weight = weight * 50;
        backend
    })
}

/// Mostly `port`, sometimes any port of the pool (which may hold another kind of listener).
fn mostly(port: u16) -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(port), 1 => arb_port()]
}

fn arb_http_frontend(port: u16) -> impl Strategy<Value = HttpFrontend> {
    (
        arb_cluster(),
        mostly(port),
        prop::sample::select(&["example.com", "*.example.com", "/api[0-9]/.test"][..]),
        prop::sample::select(&["", "/api", "/static"][..]),
        any::<bool>(),
    )
        .prop_map(|(cluster, port, hostname, path, post)| {
            let mut frontend = frontend(&cluster, port, hostname);
            frontend.path = PathRule::prefix(path);
            if post {
                frontend.position = RulePosition::Post;
            }
            frontend
        })
}

fn arb_certificate() -> impl Strategy<Value = AddCertificate> {
    (mostly(PORTS[1]), any::<bool>()).prop_map(|(port, first)| {
        let (certificate, key) = if first {
            (CERTIFICATE, KEY)
        } else {
            (OTHER_CERTIFICATE, OTHER_KEY)
        };
        AddCertificate {
            address: address(port),
            certificate: certificate_and_key(certificate, key),
            allow_expired: false,
        }
    })
}

/// TCP frontends of a few clusters with a few rules, so that listeners get several frontends,
/// duplicates and removals.
fn arb_tcp_frontend() -> impl Strategy<Value = TcpFrontend> {
    let rule = prop_oneof![
        Just(None),
        Just(Some(TcpRule::Sni("a.test".to_string()))),
        Just(Some(TcpRule::Sni("*.a.test".to_string()))),
        Just(Some(TcpRule::Protocol(TcpProtocol::Ssh))),
        Just(Some(TcpRule::Prefix(r"\x16".to_string()))),
    ];
    (arb_cluster(), mostly(PORTS[2]), rule).prop_map(|(cluster_id, port, rule)| TcpFrontend {
        rule,
        ..TcpFrontend::new(cluster_id, address(port))
    })
}

fn arb_order() -> impl Strategy<Value = Order> {
    prop_oneof![
        3 => arb_listener(),
        1 => arb_listener_address().prop_map(Order::RemoveListener),
        2 => arb_listener_address().prop_map(Order::ActivateListener),
        1 => arb_listener_address().prop_map(Order::DeactivateListener),
        3 => arb_cluster_order(),
        1 => arb_cluster().prop_map(|cluster_id| Order::RemoveCluster(ClusterId { cluster_id })),
        4 => arb_backend().prop_map(Order::AddBackend),
        1 => arb_backend().prop_map(|b| Order::RemoveBackend(RemoveBackend {
            cluster_id: b.cluster_id,
            backend_id: b.backend_id,
            address: b.address,
            drain_timeout: None,
        })),
        4 => arb_http_frontend(PORTS[0]).prop_map(Order::AddHttpFrontend),
        3 => arb_http_frontend(PORTS[1]).prop_map(Order::AddHttpsFrontend),
        1 => arb_http_frontend(PORTS[0]).prop_map(Order::RemoveHttpFrontend),
        4 => arb_tcp_frontend().prop_map(Order::AddTcpFrontend),
        1 => arb_tcp_frontend().prop_map(Order::RemoveTcpFrontend),
        2 => arb_certificate().prop_map(Order::AddCertificate),
        1 => (0..4u64).prop_map(|limit| Order::SetMaxConnectionsPerIp(ConnectionLimit {
            max_connections_per_ip: limit,
        })),
    ]
}

/// A sequence that starts with one listener of each kind and every cluster, so that later
/// orders find what they refer to more often than not, followed by random orders.
fn arb_orders() -> impl Strategy<Value = Vec<Order>> {
    prop::collection::vec(arb_order(), 0..60).prop_map(|random| {
        let mut orders = vec![
            http_listener(PORTS[0]),
            https_listener(PORTS[1]),
            Order::AddTcpListener(TcpListenerConfig::new(address(PORTS[2]))),
        ];
        orders.extend(CLUSTERS.iter().map(|id| cluster(id)));
        orders.extend(random);
        orders
    })
}

/// The state built by applying `orders`, skipping those refused. Checks on the way that a
/// refused order changes nothing.
fn build(orders: &[Order]) -> ConfigState {
    let mut state = ConfigState::new();
    for order in orders {
        let before = state.clone();
        if state.apply(order).is_err() {
            assert_eq!(state, before, "refused {order} changed the state");
        }
    }
    state
}

fn apply_all(state: &mut ConfigState, orders: &[Order]) {
    for order in orders {
        if let Err(error) = state.apply(order) {
            panic!("diff order {order} refused: {error}\n{order:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn orders_of_a_state_rebuild_it(orders in arb_orders()) {
        let state = build(&orders);
        let mut rebuilt = ConfigState::new();
        apply_all(&mut rebuilt, &state.orders());
        prop_assert_eq!(rebuilt, state);
    }

    #[test]
    fn diff_turns_one_state_into_another(
        from in arb_orders(),
        to in arb_orders(),
    ) {
        let mut state = build(&from);
        let target = build(&to);
        let orders = state.diff(&target);
        apply_all(&mut state, &orders);
        prop_assert_eq!(&state, &target);
        prop_assert!(state.diff(&target).is_empty());
    }

    #[test]
    fn save_then_load_gives_the_same_state(orders in arb_orders()) {
        let state = build(&orders);
        let mut saved = Vec::new();
        state.save(&mut saved).unwrap();
        let loaded = ConfigState::load(saved.as_slice()).unwrap();
        prop_assert_eq!(loaded, state);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Issue 17: an order given away does to the state what the same order lent does, and a
    /// refused one comes back whole with the same error; so does an order applied with what
    /// its check found (the frontend it adds, shared, and its certificate's facts).
    #[test]
    fn an_order_given_away_applies_as_one_lent(orders in arb_orders()) {
        let mut lent = ConfigState::new();
        let mut given = ConfigState::new();
        let mut checked = ConfigState::new();
        for order in orders {
            let expected = lent.apply(&order).map_err(|error| error.to_string());
            let fields = rules::check_order(&order);
            let applied = match fields.clone() {
                Err(error) => Err(StateError::from(error).to_string()),
                Ok(fields) => given.apply_owned(order.clone(), Checked::new(fields)).map_err(|refused| {
                    let (error, back) = *refused;
                    assert_eq!(back, order);
                    error.to_string()
                }),
            };
            prop_assert_eq!(&applied, &expected);
            prop_assert_eq!(&given, &lent);
            if let Ok(fields) = fields {
                let found = match &order {
                    Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
                        Checked::new(fields).with_frontend(Arc::new(frontend.clone()))
                    }
                    Order::AddCertificate(AddCertificate { certificate, .. })
                    | Order::ReplaceCertificate(ReplaceCertificate {
                        new_certificate: certificate,
                        ..
                    }) => match crate::certificate::inspect(certificate) {
                        Ok(facts) => Checked::new(fields).with_certificate(facts),
                        Err(_) => Checked::new(fields),
                    },
                    _ => Checked::new(fields),
                };
                let applied = checked.apply_checked(&order, found).map_err(|error| error.to_string());
                prop_assert_eq!(applied, expected);
                prop_assert_eq!(&checked, &lent);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Issue 17 (qa13): a state answers whether an order is one of the orders that build it,
    /// as the serialised orders it replaces in a state load told it (their JSON compared).
    #[test]
    fn an_order_is_in_force_when_it_is_one_of_the_orders_of_the_state(
        built in arb_orders(),
        probes in arb_orders(),
    ) {
        let state = build(&built);
        let orders: std::collections::HashSet<String> = state
            .orders()
            .iter()
            .map(|order| serde_json::to_string(order).unwrap())
            .collect();
        for order in built.iter().chain(&probes) {
            let expected = orders.contains(&serde_json::to_string(order).unwrap());
            prop_assert_eq!(state.is_in_force(order), expected, "{}", order);
        }
    }
}
