//! Issue 10, item 4: whatever the main process accepts, a worker accepts too. Random orders,
//! valid and hostile (huge numbers, control characters, unknown captures, bad TLS names and
//! certificates), go to the main process's check ([`validate`] then [`ConfigState::apply`], as
//! `sozu::main_process::orders::apply_order` does) and, when accepted there, to a real
//! [`Server`]'s order path. `ACTIVATE_LISTENER` is left out: binding a socket can fail for
//! reasons of the machine, which no check of the order can foresee.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use proptest::prelude::*;
use sozu_command_lib::{
    channel::Channel,
    request::{
        AddBackend, AddCertificate, CertificateAndKey, Cluster, ClusterId, FixedAnswer, HeaderEdit,
        HeaderPosition, HealthCheckConfig, Hsts, HttpFrontend, HttpListenerConfig,
        HttpListenerPatch, HttpsListenerConfig, ListenerAddress, ListenerType, Order, PathRule,
        PathRuleKind, RedirectPolicy, Request, SetHealthCheck, TcpFrontend, TcpListenerConfig,
        TlsListenerConfig, TlsListenerPatch, TlsVersion, UpdateHttpListener, UpdateHttpsListener,
        UpdateTcpListener,
    },
    response::Response,
    scm::Listeners,
    state::ConfigState,
};

use super::{KeyCheck, check, validate, validate_checked_given};
use crate::server::{Server, ServerConfig};

const LOCALHOST: &str = include_str!("../../../../command/tests/fixtures/localhost.pem");
const LOCALHOST_KEY: &str = include_str!("../../../../command/tests/fixtures/localhost.key");
const EXAMPLE: &str = include_str!("../../../../command/tests/fixtures/example.pem");
const EXAMPLE_KEY: &str = include_str!("../../../../command/tests/fixtures/example.key");
const EXPIRED: &str = include_str!("../../../../command/tests/fixtures/expired.pem");
const EXPIRED_KEY: &str = include_str!("../../../../command/tests/fixtures/expired.key");

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Listeners of each kind have ports of their own, so that most orders find their listener;
/// sometimes an order names the port of another kind.
fn arb_address(kind: ListenerType) -> impl Strategy<Value = SocketAddr> {
    let ports = match kind {
        ListenerType::Http => 1u16..=2,
        ListenerType::Https => 3..=4,
        ListenerType::Tcp => 5..=5,
    };
    mostly(ports, 1u16..=5).prop_map(address)
}

/// Mostly `usual`, sometimes `hostile`: an order with one odd field among sane ones is what
/// tells a check that looks at every field from one that does not.
fn mostly<T: std::fmt::Debug + 'static>(
    usual: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![12 => usual, 1 => hostile].boxed()
}

/// `None` three times in four.
fn rarely<T: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![3 => Just(None), 1 => value.prop_map(Some)].boxed()
}

fn arb_cluster_id() -> impl Strategy<Value = String> {
    mostly(
        prop_oneof![Just("a".to_string()), Just("b".to_string())],
        prop_oneof![
            Just(String::new()),
            Just("x\n".to_string()),
            Just("y".repeat(300))
        ],
    )
}

/// What a head cannot carry, or should not.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a\r\nX-Forged: 1".to_string()),
        Just("a\rb".to_string()),
        Just("a\0b".to_string()),
        Just("é ü".to_string()),
        Just("x".repeat(1 << 20)),
        "\\PC{0,8}",
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    mostly("[a-z][a-z0-9-]{0,8}", hostile_text())
}

fn arb_seconds() -> impl Strategy<Value = Duration> {
    mostly(
        (1u64..100).prop_map(Duration::from_secs),
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_secs(2_147_483)),
            Just(Duration::from_secs(2_147_484)),
            Just(Duration::from_secs(u64::MAX)),
        ],
    )
}

fn arb_template() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => Just(None),
        2 => prop_oneof![
            Just("$HOST[0]".to_string()),
            Just("$HOST[1]".to_string()),
            Just("$HOST[3]".to_string()),
            Just("$PATH[1]".to_string()),
            Just("$PATH[2]".to_string()),
            Just("%HOST%PATH".to_string()),
            Just("$HOST".to_string()),
            Just("/new$PATH[1]".to_string()),
        ]
        .prop_map(Some),
        1 => arb_text().prop_map(Some),
    ]
}

fn arb_answers() -> impl Strategy<Value = BTreeMap<u16, String>> {
    let text = prop_oneof![
        3 => arb_text(),
        2 => Just("HTTP/1.1 503 Busy\r\nX-A: b\r\n\r\nbody".to_string()),
        1 => Just("HTTP/1.1 abc\r\n\r\n".to_string()),
        1 => Just("HTTP/1.1 503 X\r\nA: b\rc\r\n\r\n".to_string()),
        1 => Just("HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()),
    ];
    let status = mostly(
        prop_oneof![Just(503u16), Just(404)],
        prop_oneof![Just(200u16), Just(999)],
    );
    prop_oneof![
        4 => Just(BTreeMap::new()),
        1 => prop::collection::btree_map(status, text, 1..2),
    ]
}

fn arb_health_check() -> impl Strategy<Value = HealthCheckConfig> {
    (
        mostly(Just("/health".to_string()), hostile_text()),
        arb_seconds(),
        arb_seconds(),
        mostly(Just(3u32), prop_oneof![Just(0), Just(u32::MAX)]),
        mostly(
            prop_oneof![Just(0u16), Just(204)],
            prop_oneof![Just(42), Just(u16::MAX)],
        ),
    )
        .prop_map(
            |(uri, interval, timeout, threshold, expected_status)| HealthCheckConfig {
                uri,
                interval,
                timeout,
                healthy_threshold: threshold,
                unhealthy_threshold: threshold,
                expected_status,
            },
        )
}

fn arb_cluster() -> impl Strategy<Value = Cluster> {
    (
        arb_cluster_id(),
        arb_answers(),
        rarely(arb_text()),
        rarely(mostly(Just(5u64), Just(u64::MAX))),
        rarely(arb_seconds()),
        rarely(arb_health_check()),
        rarely(mostly(Just(8443u16), Just(0))),
    )
        .prop_map(
            |(id, answers, realm, limit, retry_after, health_check, redirect_port)| {
                let mut cluster = Cluster::new(id);
                cluster.answers = answers;
                cluster.www_authenticate = realm;
                cluster.max_connections_per_ip = limit;
                cluster.retry_after = retry_after;
                cluster.health_check = health_check;
                cluster.https_redirect_port = redirect_port;
                cluster
            },
        )
}

fn arb_backend() -> impl Strategy<Value = AddBackend> {
    (
        arb_cluster_id(),
        mostly(
            prop_oneof![Just("b1".to_string()), Just("b2".to_string())],
            hostile_text(),
        ),
        rarely(arb_text()),
        mostly(prop_oneof![Just(100u32), Just(0)], Just(u32::MAX)),
    )
        .prop_map(|(cluster_id, backend_id, sticky_id, weight)| AddBackend {
            cluster_id,
            backend_id,
            address: address(9),
            sticky_id,
            weight,
            backup: false,
        })
}

fn arb_header_edit() -> impl Strategy<Value = HeaderEdit> {
    (
        mostly(
            Just("X-Edit".to_string()),
            prop_oneof![Just("Content-Length".to_string()), hostile_text()],
        ),
        arb_text(),
    )
        .prop_map(|(key, value)| HeaderEdit {
            position: HeaderPosition::Both,
            key,
            value,
        })
}

fn arb_fixed_answer() -> impl Strategy<Value = FixedAnswer> {
    (
        mostly(Just(200u16), prop_oneof![Just(100), Just(999)]),
        prop::collection::vec((arb_text(), arb_text()), 0..2),
        arb_text(),
    )
        .prop_map(|(status, headers, body)| FixedAnswer {
            status,
            headers,
            body,
        })
}

fn arb_http_frontend(kind: ListenerType) -> impl Strategy<Value = HttpFrontend> {
    (
        (
            mostly(arb_cluster_id().prop_map(Some), Just(None)),
            arb_address(kind),
            mostly(
                prop_oneof![
                    Just("example.com".to_string()),
                    Just("*.example.com".to_string()),
                    Just("/api([0-9]+)/.example.com".to_string()),
                    "[a-z]{1,6}\\.test",
                ],
                hostile_text(),
            ),
            mostly(
                prop_oneof![
                    Just(PathRule::default()),
                    Just(PathRule::prefix("/api")),
                    Just(PathRule {
                        kind: PathRuleKind::Regex,
                        value: "^/v([0-9]+)/".to_string()
                    }),
                ],
                prop_oneof![
                    Just(PathRule {
                        kind: PathRuleKind::Regex,
                        value: "(".to_string()
                    }),
                    hostile_text().prop_map(PathRule::prefix),
                ],
            ),
            rarely(mostly(Just("GET".to_string()), hostile_text())),
        ),
        (
            arb_template(),
            arb_template(),
            arb_template(),
            prop::collection::vec(arb_header_edit(), 0..2),
            rarely(arb_fixed_answer()),
            rarely(mostly(Just(8080u16), Just(0))),
            rarely(arb_seconds()),
            prop_oneof![
                Just(RedirectPolicy::Forward),
                Just(RedirectPolicy::Permanent)
            ],
        ),
    )
        .prop_map(
            |(
                (cluster_id, address, hostname, path, method),
                (
                    rewrite_host,
                    rewrite_path,
                    redirect_template,
                    headers,
                    answer,
                    port,
                    hsts,
                    redirect,
                ),
            )| {
                let mut frontend = HttpFrontend::new(cluster_id, address, hostname);
                frontend.path = path;
                frontend.method = method;
                frontend.rewrite_host = rewrite_host;
                frontend.rewrite_path = rewrite_path;
                frontend.redirect_template = redirect_template;
                frontend.headers = headers;
                frontend.answer = answer;
                frontend.rewrite_port = port;
                frontend.redirect = redirect;
                frontend.hsts = hsts.map(|max_age| Hsts {
                    enabled: true,
                    max_age,
                    include_subdomains: false,
                    preload: false,
                    force_replace_backend: false,
                });
                frontend
            },
        )
}

fn arb_certificate() -> impl Strategy<Value = CertificateAndKey> {
    mostly(
        prop_oneof![
            Just(CertificateAndKey::new(LOCALHOST, LOCALHOST_KEY)),
            Just(CertificateAndKey::new(EXAMPLE, EXAMPLE_KEY)),
            Just(CertificateAndKey::new(EXPIRED, EXPIRED_KEY)),
        ],
        prop_oneof![
            Just(CertificateAndKey::new(LOCALHOST, EXAMPLE_KEY)),
            Just(CertificateAndKey::new("garbage", LOCALHOST_KEY)),
            hostile_text().prop_map(|name| {
                let mut certificate = CertificateAndKey::new(EXAMPLE, EXAMPLE_KEY);
                certificate.names = vec![name];
                certificate
            }),
        ],
    )
}

fn arb_http_listener(kind: ListenerType) -> impl Strategy<Value = HttpListenerConfig> {
    (
        arb_address(kind),
        mostly(Just("SOZUBALANCEID".to_string()), hostile_text()),
        mostly(
            Just("Sozu-Id".to_string()),
            prop_oneof![Just("Content-Length".to_string()), hostile_text()],
        ),
        arb_seconds(),
        arb_seconds(),
        arb_answers(),
    )
        .prop_map(
            |(address, sticky_name, id_header, front, request, answers)| {
                let mut config = HttpListenerConfig::new(address);
                config.sticky_name = sticky_name;
                config.sozu_id_header = id_header;
                config.front_timeout = front;
                config.request_timeout = request;
                config.answers = answers;
                config
            },
        )
}

fn arb_tls() -> impl Strategy<Value = TlsListenerConfig> {
    (
        mostly(
            prop_oneof![
                Just(vec![TlsVersion::Tls12, TlsVersion::Tls13]),
                Just(vec![TlsVersion::Tls13]),
            ],
            Just(Vec::new()),
        ),
        mostly(
            prop_oneof![
                Just(Vec::new()),
                Just(vec!["TLS13_AES_128_GCM_SHA256".to_string()]),
            ],
            Just(vec!["RC4-MD5".to_string()]),
        ),
        mostly(
            prop_oneof![Just(Vec::new()), Just(vec!["X25519".to_string()])],
            Just(vec!["no-such-group".to_string()]),
        ),
        prop::option::of(arb_certificate()),
        mostly(prop_oneof![Just(4u32), Just(0)], Just(u32::MAX)),
        mostly(
            Just(vec!["http/1.1".to_string()]),
            Just(vec!["spdy/1".to_string()]),
        ),
    )
        .prop_map(
            |(versions, cipher_list, groups_list, certificate, tickets, alpn)| TlsListenerConfig {
                versions,
                cipher_suites: cipher_list,
                groups_list,
                certificate,
                send_tls13_tickets: tickets,
                alpn_protocols: alpn,
                ..TlsListenerConfig::default()
            },
        )
}

fn arb_http_patch() -> impl Strategy<Value = HttpListenerPatch> {
    (
        rarely(arb_text()),
        rarely(arb_seconds()),
        rarely(arb_seconds()),
        arb_answers(),
    )
        .prop_map(|(id_header, back, connect, answers)| HttpListenerPatch {
            sozu_id_header: id_header,
            back_timeout: back,
            connect_timeout: connect,
            answers,
            ..HttpListenerPatch::default()
        })
}

fn arb_tls_patch() -> impl Strategy<Value = TlsListenerPatch> {
    arb_tls().prop_flat_map(|tls| {
        (
            rarely(Just(tls.versions)),
            rarely(Just(tls.cipher_suites)),
            rarely(Just(tls.groups_list)),
            rarely(Just(tls.certificate)),
            rarely(Just(tls.send_tls13_tickets)),
        )
            .prop_map(
                |(versions, cipher_suites, groups_list, certificate, tickets)| TlsListenerPatch {
                    versions,
                    cipher_suites,
                    groups_list,
                    certificate,
                    send_tls13_tickets: tickets,
                    ..TlsListenerPatch::default()
                },
            )
    })
}

fn arb_listener_kind() -> impl Strategy<Value = ListenerType> {
    prop_oneof![
        Just(ListenerType::Http),
        Just(ListenerType::Https),
        Just(ListenerType::Tcp)
    ]
}

fn arb_order() -> impl Strategy<Value = Order> {
    prop_oneof![
        3 => arb_http_listener(ListenerType::Http).prop_map(Order::AddHttpListener),
        3 => (arb_http_listener(ListenerType::Https), arb_tls()).prop_map(|(http, tls)| {
            Order::AddHttpsListener(HttpsListenerConfig { http, tls })
        }),
        1 => (arb_address(ListenerType::Tcp), arb_seconds()).prop_map(|(address, timeout)| {
            let mut config = TcpListenerConfig::new(address);
            config.connect_timeout = timeout;
            Order::AddTcpListener(config)
        }),
        4 => arb_cluster().prop_map(Order::AddCluster),
        2 => arb_backend().prop_map(Order::AddBackend),
        6 => arb_http_frontend(ListenerType::Http).prop_map(Order::AddHttpFrontend),
        6 => arb_http_frontend(ListenerType::Https).prop_map(Order::AddHttpsFrontend),
        1 => (arb_cluster_id(), arb_address(ListenerType::Tcp)).prop_map(|(cluster_id, address)| {
            Order::AddTcpFrontend(TcpFrontend {
                cluster_id,
                address,
                tags: BTreeMap::new(),
                rule: None,
            })
        }),
        3 => (arb_address(ListenerType::Https), arb_certificate(), any::<bool>()).prop_map(
            |(address, certificate, allow_expired)| {
                Order::AddCertificate(AddCertificate {
                    address,
                    certificate,
                    allow_expired,
                })
            }
        ),
        2 => (arb_address(ListenerType::Http), arb_http_patch()).prop_map(|(address, http)| {
            Order::UpdateHttpListenerConfig(UpdateHttpListener { address, http })
        }),
        3 => (arb_address(ListenerType::Https), arb_http_patch(), arb_tls_patch()).prop_map(
            |(address, http, tls)| {
                Order::UpdateHttpsListenerConfig(UpdateHttpsListener { address, http, tls })
            }
        ),
        1 => (arb_address(ListenerType::Tcp), prop::option::of(arb_seconds())).prop_map(
            |(address, front_timeout)| {
                Order::UpdateTcpListenerConfig(UpdateTcpListener {
                    address,
                    public_address: None,
                    expect_proxy: None,
                    front_timeout,
                    back_timeout: None,
                    connect_timeout: None,
                    splice: None,
                    inspect_bytes: None,
                    inspect_timeout: None,
                    script: None,
                })
            }
        ),
        2 => (arb_cluster_id(), arb_health_check()).prop_map(|(cluster_id, health_check)| {
            Order::SetHealthCheck(SetHealthCheck {
                cluster_id,
                health_check,
            })
        }),
        1 => arb_cluster_id().prop_map(|cluster_id| Order::RemoveCluster(ClusterId { cluster_id })),
        1 => arb_listener_kind()
            .prop_flat_map(|proxy| (arb_address(proxy), Just(proxy)))
            .prop_map(|(address, proxy)| Order::RemoveListener(ListenerAddress { address, proxy })),
        1 => arb_listener_kind()
            .prop_flat_map(|proxy| (arb_address(proxy), Just(proxy)))
            .prop_map(|(address, proxy)| {
                Order::DeactivateListener(ListenerAddress { address, proxy })
            }),
    ]
}

/// A worker on this thread, whose order path the test drives directly, with the other end
/// of its channel.
fn worker() -> (Server, Channel<Request, Response>) {
    let (main, worker) = Channel::<Request, Response>::pair(4096, 1 << 20).expect("a channel pair");
    let config = ServerConfig {
        max_connections: 16,
        ..ServerConfig::default()
    };
    let server = Server::new(config, worker, Listeners::default()).expect("a worker");
    (server, main)
}

/// Issue 17, aim 4: a worker holds each certificate's text once, given its facts or not: its
/// state keeps the very text its TLS table decodes at the certificate's first handshake.
#[test]
fn the_state_and_the_tls_table_share_a_certificate_text() {
    let mut state = ConfigState::new();
    for order in setup() {
        state.apply(&order).expect("the setup applies");
    }
    let order = Order::AddCertificate(AddCertificate {
        address: address(3),
        certificate: CertificateAndKey::new(LOCALHOST, LOCALHOST_KEY),
        allow_expired: false,
    });
    let facts = check(&state, &order, KeyCheck::PublicPart)
        .expect("the main process accepts it")
        .certificate()
        .cloned();
    assert!(facts.is_some());
    for given in [None, facts] {
        let mut state = state.clone();
        let (validated, checked) =
            validate_checked_given(&state, &order, KeyCheck::OnFirstUse, given)
                .expect("a worker accepts it");
        state.apply_checked(&order, checked).expect("applied");
        let held = state
            .certificates
            .get(&address(3))
            .and_then(|certificates| certificates.values().next())
            .map(|certificate| std::sync::Arc::clone(&certificate.certificate))
            .expect("held");
        assert_eq!(
            std::sync::Arc::strong_count(&held),
            3,
            "the state, the table, here"
        );
        drop(validated);
        assert_eq!(std::sync::Arc::strong_count(&held), 2, "the state, here");
    }
}

/// Listeners of each kind and two clusters, so that most random orders find what they name.
fn setup() -> Vec<Order> {
    vec![
        Order::AddHttpListener(HttpListenerConfig::new(address(1))),
        Order::AddHttpsListener(HttpsListenerConfig {
            http: HttpListenerConfig::new(address(3)),
            tls: TlsListenerConfig::default(),
        }),
        Order::AddTcpListener(TcpListenerConfig::new(address(5))),
        Order::AddCluster(Cluster::new("a")),
        Order::AddCluster(Cluster::new("b")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_worker_accepts_whatever_the_main_process_accepts(
        orders in prop::collection::vec(arb_order(), 1..32)
    ) {
        let mut main = ConfigState::new();
        let (mut server, _main) = worker();
        for order in setup().iter().chain(&orders) {
            let accepted = validate(&main, order, KeyCheck::Now)
                .map_err(|error| error.to_string())
                .and_then(|_| main.apply(order).map_err(|error| error.to_string()));
            if accepted.is_ok() {
                let applied = server.apply_order(order.clone());
                prop_assert!(applied.is_ok(), "{order:?}: the main accepted it, the worker said {applied:?}");
            }
        }
        prop_assert_eq!(&server.state, &main);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Issue 17: the main process's check, which builds no route when it need not, gives the
    /// verdict and the error [`validate`] gives.
    #[test]
    fn checking_an_order_is_validating_it(
        orders in prop::collection::vec(arb_order(), 1..32)
    ) {
        let mut main = ConfigState::new();
        for order in setup().iter().chain(&orders) {
            let validated = validate(&main, order, KeyCheck::Now).map(drop).map_err(|e| format!("{e:?}"));
            let checked = check(&main, order, KeyCheck::Now).map(drop).map_err(|e| format!("{e:?}"));
            prop_assert_eq!(&checked, &validated, "{:?}", order);
            if checked.is_ok() {
                let _ = main.apply(order);
            }
        }
    }
}

/// A change of the routing state as the frontend proptest below draws it.
#[derive(Debug, Clone)]
enum FrontendChange {
    Add(Box<HttpFrontend>),
    /// Removes the frontend added by the n-th `Add` so far (modulo their number).
    Remove(prop::sample::Index),
    /// Removes a cluster with its frontends, then adds it back without them.
    RemoveCluster(String),
}

fn arb_frontend_change() -> impl Strategy<Value = FrontendChange> {
    prop_oneof![
        5 => arb_http_frontend(ListenerType::Http).prop_map(|f| FrontendChange::Add(Box::new(f))),
        5 => arb_http_frontend(ListenerType::Https).prop_map(|f| FrontendChange::Add(Box::new(f))),
        3 => any::<prop::sample::Index>().prop_map(FrontendChange::Remove),
        1 => arb_cluster_id().prop_map(FrontendChange::RemoveCluster),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever frontends are added and removed, each listener's router holds as many as the
    /// worker's state has on it, and each one once between them: the state's copy.
    #[test]
    fn the_router_holds_what_the_state_holds(
        changes in prop::collection::vec(arb_frontend_change(), 1..48)
    ) {
        let (mut server, _main) = worker();
        for order in setup() {
            prop_assert!(server.apply_order(order).is_ok());
        }
        let mut added: Vec<Order> = Vec::new();
        for change in changes {
            let orders = match change {
                FrontendChange::Add(frontend) => {
                    let order = if frontend.address.port() >= 3 {
                        Order::AddHttpsFrontend(*frontend)
                    } else {
                        Order::AddHttpFrontend(*frontend)
                    };
                    added.push(order.clone());
                    vec![order]
                }
                FrontendChange::Remove(index) if !added.is_empty() => {
                    match &added[index.index(added.len())] {
                        Order::AddHttpsFrontend(f) => vec![Order::RemoveHttpsFrontend(f.clone())],
                        Order::AddHttpFrontend(f) => vec![Order::RemoveHttpFrontend(f.clone())],
                        _ => Vec::new(),
                    }
                }
                FrontendChange::Remove(_) => Vec::new(),
                FrontendChange::RemoveCluster(cluster_id) => vec![
                    Order::RemoveCluster(ClusterId { cluster_id: cluster_id.clone() }),
                    Order::AddCluster(Cluster::new(&cluster_id)),
                ],
            };
            for order in &orders {
                // Refusals (duplicates, unknown names) are fine: they must change nothing.
                let _ = server.apply_order(order.clone());
            }
            for (address, listener) in &server.http_listeners {
                let kind = if listener.tls.is_some() { ListenerType::Https } else { ListenerType::Http };
                let in_state = server.state.http_frontends_of(kind);
                let on_listener = in_state.values().filter(|f| f.address == *address).count();
                prop_assert_eq!(listener.router.len(), on_listener, "{}", address);
            }
            for frontend in server.state.http_frontends.values().chain(server.state.https_frontends.values()) {
                prop_assert_eq!(std::sync::Arc::strong_count(frontend), 2, "{:?}", frontend);
            }
        }
    }
}
