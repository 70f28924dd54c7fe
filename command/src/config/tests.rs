use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use std::net::SocketAddr;

use super::*;
use crate::request::{
    HttpFrontend, ListenerType, LoadBalancingAlgorithm, ProxyProtocolConfig, RedirectPolicy,
    TcpListenerConfig, TlsVersion,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Parses `text` as if it were a file of the fixtures folder.
fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigErrors> {
    Config::parse(text, &fixtures())
}

/// The message of a file that must be refused.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

const HTTP_LISTENER: &str = r#"
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"
"#;

#[test]
fn defaults_of_an_empty_file_are_sozu_defaults() {
    let (config, warnings) = parse("").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(config.command_socket, fixtures().join("sozu.sock"));
    assert_eq!(config.worker_count, 2);
    assert!(config.worker_automatic_restart);
    assert_eq!(config.max_connections, 10_000);
    assert_eq!(config.buffer_size, 16_393);
    assert_eq!(config.max_buffers, 1_000);
    assert_eq!(config.command_buffer_size, 1_000_000);
    assert_eq!(config.max_command_buffer_size, 2_000_000);
    assert_eq!(config.ctl_command_timeout, Duration::from_millis(1000));
    assert_eq!(config.timeouts.front, Duration::from_secs(60));
    assert_eq!(config.timeouts.back, Duration::from_secs(30));
    assert_eq!(config.timeouts.connect, Duration::from_secs(3));
    assert_eq!(config.timeouts.request, Duration::from_secs(10));
    assert_eq!(config.worker_timeout, Duration::from_secs(10));
    assert_eq!(config.retry_after, Duration::from_secs(60));
    assert_eq!(config.log_level, "info");
    assert_eq!(config.log_target, LogTarget::Stdout);
    assert!(config.activate_listeners);
    assert!(config.orders().is_empty());
}

#[test]
fn http_bodies_splice_from_64_kib_unless_told_otherwise() {
    assert_eq!(parse("").unwrap().0.splice_min_body, 65_536);
    let (config, warnings) = parse("splice_min_body_bytes = 0\n").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(config.splice_min_body, 0);
    assert_names(
        &error("splice_min_body_bytes = -1\n"),
        &["splice_min_body_bytes", "0 to 1099511627776 bytes"],
    );
}

#[test]
fn sozu_2_1_config_loads_with_warnings_only() {
    let (config, warnings) = Config::load(&fixtures().join("sozu-2.1.toml")).unwrap();
    let warned: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
    for key in [
        "handle_process_affinity",
        "min_buffers",
        "zombie_check_interval",
        "detail",
        "groups_list",
    ] {
        assert!(warned.contains(&key), "no warning for {key}: {warned:?}");
    }
    assert!(
        !warned.iter().any(|key| key.starts_with("h2_")),
        "{warned:?}"
    );
    assert_eq!(config.listeners.len(), 3);
    assert_eq!(config.clusters.len(), 3);
    assert_eq!(config.backends.len(), 4);
    assert_eq!(config.certificates.len(), 1);
    assert_eq!(config.frontends.len(), 5);
    assert_eq!(config.saved_state, Some(fixtures().join("./state.json")));
    assert_eq!(
        config.access_logs_target,
        Some(LogTarget::File(fixtures().join("access.log")))
    );
    let metrics = config.metrics.as_ref().unwrap();
    assert_eq!(metrics.address, Some("127.0.0.1:8125".parse().unwrap()));

    let Listener::Https(https) = &config.listeners[1] else {
        panic!("not https: {:?}", config.listeners[1]);
    };
    assert_eq!(https.tls.cipher_suites.len(), 3);
    assert_eq!(https.http.h2.max_concurrent_streams, 100);
    assert_eq!(https.http.h2.initial_connection_window, 1_048_576);
    assert_eq!(https.tls.cipher_list.len(), 6);
    assert!(https.tls.cipher_suites[0].starts_with("TLS13_"));
    assert_eq!(https.tls.groups_list, ["X25519", "secp256r1", "secp384r1"]);
    assert_eq!(https.tls.alpn_protocols, ["h2", "http/1.1"]);
    let certificate = https.tls.certificate.as_ref().unwrap();
    assert!(
        certificate
            .certificate
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(certificate.certificate_chain.len(), 1);
    assert!(https.http.answers[&404].starts_with("HTTP/1.1 404"));
    assert!(https.tls.hsts.as_ref().is_some_and(|hsts| hsts.enabled));

    let tcp = &config.clusters[2];
    assert_eq!(tcp.cluster_id, "TcpTest");
    assert_eq!(tcp.load_balancing, LoadBalancingAlgorithm::Random);
    assert_eq!(tcp.proxy_protocol, Some(ProxyProtocolConfig::SendHeader));
    assert!(config.clusters[0].answers[&503].starts_with("HTTP/1.1 503"));
    assert_eq!(
        config.clusters[0]
            .health_check
            .as_ref()
            .map(|check| check.uri.as_str()),
        Some("/health")
    );
    assert_eq!(config.backends[2].backend_id, "TcpTest-0-127.0.0.1:4000");
    assert_eq!(config.backends[3].weight, 50);
}

#[test]
fn sample_config_orders_build_listeners_then_clusters_then_frontends() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bin/config.toml");
    let (config, warnings) = Config::load(&sample).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<&str> = config.orders().iter().map(Order::name).collect();
    assert_eq!(
        names,
        [
            "ADD_HTTP_LISTENER",
            "ADD_HTTPS_LISTENER",
            "ACTIVATE_LISTENER",
            "ACTIVATE_LISTENER",
            "ADD_HTTP_FRONTEND",
            "ADD_HTTPS_FRONTEND",
        ]
    );
    let Order::AddHttpsFrontend(welcome) = &config.orders()[5] else {
        panic!("not an https frontend");
    };
    assert_eq!(welcome.cluster_id, None);
    assert_eq!(welcome.hostname, "localhost");
    let answer = welcome.answer.as_ref().unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("sozu is running"));
    assert_eq!(
        answer.headers,
        [(
            "Content-Type".to_string(),
            "text/html; charset=utf-8".to_string()
        )]
    );
}

#[test]
fn orders_follow_the_documented_sequence() {
    let (config, _) = Config::load(&fixtures().join("sozu-2.1.toml")).unwrap();
    let names: Vec<&str> = config.orders().iter().map(Order::name).collect();
    let rank = |name: &str| match name {
        "ADD_HTTP_LISTENER" | "ADD_HTTPS_LISTENER" | "ADD_TCP_LISTENER" => 0,
        "ACTIVATE_LISTENER" => 1,
        "ADD_CLUSTER" => 2,
        "ADD_BACKEND" => 3,
        "ADD_CERTIFICATE" => 4,
        "ADD_HTTP_FRONTEND" | "ADD_HTTPS_FRONTEND" | "ADD_TCP_FRONTEND" => 5,
        other => panic!("unexpected order {other}"),
    };
    let ranks: Vec<u8> = names.iter().map(|name| rank(name)).collect();
    assert!(ranks.is_sorted(), "{names:?}");
    assert_eq!(names.len(), 3 + 3 + 3 + 4 + 1 + 5);
}

#[test]
fn activate_listeners_false_leaves_listeners_inactive_and_limit_is_set() {
    let text = format!("activate_listeners = false\nmax_connections_per_ip = 5\n{HTTP_LISTENER}");
    let (config, _) = parse(&text).unwrap();
    let orders = config.orders();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        orders[1],
        Order::SetMaxConnectionsPerIp(ConnectionLimit {
            max_connections_per_ip: 5
        })
    );
}

#[test]
fn unknown_key_is_named_with_its_line_and_a_suggestion() {
    let message = error(
        r#"
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"
fron_timeout = 12
"#,
    );
    assert_names(
        &message,
        &[
            "unknown key `fron_timeout`",
            "[[listeners]]",
            "line 5",
            "did you mean `front_timeout`?",
            "expected one of",
        ],
    );
}

#[test]
fn invalid_address_is_named_with_its_line() {
    let message = error(
        r#"
[[listeners]]
protocol = "http"
address = "127.0.0.1:99999"
"#,
    );
    assert_names(
        &message,
        &["invalid address `127.0.0.1:99999`", "`address`", "line 4"],
    );
}

#[test]
fn invalid_load_balancing_lists_the_choices() {
    let message = error(
        r#"
[clusters.web]
protocol = "http"
load_balancing = "fastest"
"#,
    );
    assert_names(
        &message,
        &[
            "`load_balancing`",
            "line 4",
            "\"fastest\"",
            "ROUND_ROBIN, RANDOM, LEAST_LOADED, POWER_OF_TWO, HRW, MAGLEV",
        ],
    );
}

#[test]
fn every_load_balancing_value_parses_in_any_case() {
    for (name, algorithm) in [
        ("round_robin", LoadBalancingAlgorithm::RoundRobin),
        ("RANDOM", LoadBalancingAlgorithm::Random),
        ("least_loaded", LoadBalancingAlgorithm::LeastLoaded),
        ("Power_Of_Two", LoadBalancingAlgorithm::PowerOfTwo),
        ("hrw", LoadBalancingAlgorithm::Hrw),
        ("MAGLEV", LoadBalancingAlgorithm::Maglev),
    ] {
        let text = format!("[clusters.web]\nprotocol = \"http\"\nload_balancing = \"{name}\"\n");
        let (config, _) = parse(&text).unwrap();
        assert_eq!(config.clusters[0].load_balancing, algorithm);
    }
}

#[test]
fn cluster_holding_keys_parse_and_default_to_off() {
    let (config, _) =
        parse("[clusters.web]\nprotocol = \"http\"\nhold_timeout = 30\nmax_held = 5\n").unwrap();
    assert_eq!(
        config.clusters[0].hold_timeout,
        Some(Duration::from_secs(30))
    );
    assert_eq!(config.clusters[0].max_held, Some(5));
    let (config, _) = parse("[clusters.web]\nprotocol = \"http\"\n").unwrap();
    assert_eq!(config.clusters[0].hold_timeout, None);
    assert_eq!(config.clusters[0].max_held, None);
    let message = error("[clusters.web]\nprotocol = \"http\"\nmax_held = 2000000\n");
    assert_names(&message, &["`max_held`", "0 to 1048576"]);
}

#[test]
fn missing_key_is_named_with_the_line_of_its_table() {
    let message = error("\n\n[[listeners]]\nprotocol = \"http\"\n");
    assert_names(
        &message,
        &["missing key `address`", "[[listeners]]", "line 3"],
    );
    let message = error(&format!(
        "{HTTP_LISTENER}\n[clusters.web]\nprotocol = \"http\"\nfrontends = [\n  {{ hostname = \"a\" }},\n]\n"
    ));
    assert_names(&message, &["missing key `address`", "line 9"]);
}

#[test]
fn duplicate_cluster_names_both_lines() {
    let message = error(
        r#"
[clusters.web]
protocol = "http"

[clusters.web]
protocol = "tcp"
"#,
    );
    assert_names(
        &message,
        &[
            "duplicate table `[clusters.web]`",
            "line 5",
            "first defined at line 2",
        ],
    );
}

#[test]
fn duration_must_be_whole_seconds() {
    let message = error("front_timeout = \"60s\"\n");
    assert_names(
        &message,
        &["`front_timeout`", "line 1", "1 to 2147483 seconds"],
    );
    let message = error("back_timeout = -1\n");
    assert_names(&message, &["`back_timeout`", "line 1"]);
}

#[test]
fn udp_listener_is_refused() {
    let message = error(
        r#"
[[listeners]]
protocol = "udp"
address = "127.0.0.1:5353"
"#,
    );
    assert_names(&message, &["`protocol`", "line 3", "refused", "UDP"]);
}

#[test]
fn frontend_of_a_udp_listener_is_refused_as_such() {
    let message = error(
        r#"
[[listeners]]
protocol = "udp"
address = "127.0.0.1:5353"

[clusters.dns]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:5353" }]
"#,
    );
    assert_names(
        &message,
        &["`address` at line 8 is refused", "udp listener"],
    );
}

#[test]
fn udp_cluster_is_refused() {
    let message = error("[clusters.dns]\nprotocol = \"udp\"\n");
    assert_names(&message, &["`protocol` at line 2 is refused"]);
    let message = error("[clusters.dns]\nprotocol = \"tcp\"\n[clusters.dns.udp]\nresponses = 1\n");
    assert_names(&message, &["`udp` at line 3 is refused"]);
}

#[test]
fn frontend_without_listener_gets_one_of_its_kind_as_in_sozu() {
    let (config, warnings) = parse(
        r#"
[clusters.web]
protocol = "http"
frontends = [
    { address = "127.0.0.1:9080", hostname = "a" },
    { address = "127.0.0.1:9443", hostname = "a", certificate = "certificate.pem", key = "key.pem" },
    { address = "127.0.0.1:9080", hostname = "b" },
]
[clusters.db]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:9432" }]
"#,
    )
    .unwrap();
    let listeners: Vec<(SocketAddr, ListenerType)> = config
        .listeners
        .iter()
        .map(|listener| (listener.address(), listener.kind()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("127.0.0.1:9080".parse().unwrap(), ListenerType::Http),
            ("127.0.0.1:9443".parse().unwrap(), ListenerType::Https),
            ("127.0.0.1:9432".parse().unwrap(), ListenerType::Tcp),
        ]
    );
    // Created with the file's default timeouts, like a `[[listeners]]` entry without them.
    let Listener::Http(http) = &config.listeners[0] else {
        panic!("an http listener");
    };
    assert_eq!(http.front_timeout, config.timeouts.front);
    assert_eq!(http.request_timeout, config.timeouts.request);
    // One info note per created listener, naming the frontend's `address` and its line.
    let notes: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(warnings.iter().all(|note| note.severity == Severity::Info));
    assert_names(
        &notes[0],
        &["`address` at line 5", "127.0.0.1:9080", "HTTP"],
    );
    assert_names(
        &notes[1],
        &["`address` at line 6", "127.0.0.1:9443", "HTTPS"],
    );
    assert_names(
        &notes[2],
        &["`address` at line 11", "127.0.0.1:9432", "TCP"],
    );
}

#[test]
fn unknown_top_level_key_is_warned_with_its_line_and_ignored() {
    let (config, warnings) =
        parse("worker_count = 3\nfeature_of_sozu_3 = true\nwroker_count = 4\n").unwrap();
    assert_eq!(config.worker_count, 3);
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_names(&warnings[0], &["`feature_of_sozu_3` at line 2", "ignored"]);
    assert_names(
        &warnings[1],
        &["`wroker_count` at line 3", "did you mean `worker_count`?"],
    );
    // Inside a table, an unknown key stays an error.
    let message = error("[metrics]\naddress = \"127.0.0.1:8125\"\nunknown = 1\n");
    assert_names(&message, &["unknown key `unknown`", "line 3"]);
}

#[test]
fn tcp_cluster_frontend_needs_a_tcp_listener() {
    let message = error(&format!(
        "{HTTP_LISTENER}\n[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:8080\" }}]\n"
    ));
    assert_names(
        &message,
        &[
            "`address` 127.0.0.1:8080 at line 8",
            "an http listener",
            "tcp cluster `db`",
        ],
    );
}

#[test]
fn key_of_http_frontends_does_not_apply_to_tcp_ones() {
    let message = error(
        r#"
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5432"

[clusters.db]
protocol = "tcp"
frontends = [{ address = "127.0.0.1:5432", hostname = "db" }]
"#,
    );
    assert_names(
        &message,
        &[
            "key `hostname` at line 8 does not apply",
            "tcp cluster `db`",
        ],
    );
}

#[test]
fn regex_path_must_compile() {
    let message = error(&format!(
        "{HTTP_LISTENER}\n[clusters.web]\nprotocol = \"http\"\nfrontends = [\n  {{ address = \"127.0.0.1:8080\", hostname = \"a\", path_type = \"REGEX\", path = \"/(api\" }},\n]\n"
    ));
    assert_names(
        &message,
        &[
            "`path` at line 9",
            "a regular expression (",
            "unclosed group",
        ],
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn every_error_of_a_file_is_reported() {
    let message = error(
        r#"
worker_count = 0
log_level = "verbose"

[[listeners]]
protocol = "http"
address = "nowhere"
"#,
    );
    assert_names(
        &message,
        &[
            "`worker_count` at line 2",
            "`log_level` at line 3",
            "line 7",
        ],
    );
    assert_eq!(message.lines().count(), 3, "{message}");
}

#[test]
fn syntax_error_names_the_key_and_line() {
    let message = error("worker_count = 2\nlog_level = \"info\nfront_timeout = 3\n");
    assert_names(&message, &["invalid TOML in `log_level` at line 2"]);
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let folder = tempfile::tempdir().unwrap();
    let certs = folder.path().join("certs");
    fs::create_dir(&certs).unwrap();
    fs::write(certs.join("cert.pem"), "CERTIFICATE").unwrap();
    fs::write(certs.join("key.pem"), "KEY").unwrap();
    fs::write(folder.path().join("404.html"), "not here").unwrap();
    let path = folder.path().join("config.toml");
    fs::write(
        &path,
        r#"
command_socket = "run/sozu.sock"
saved_state = "state.json"
pid_file_path = "/run/sozu.pid"
log_target = "file://logs/sozu.log"

[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"
certificate = "certs/cert.pem"
key = "certs/key.pem"
answers = { 404 = "file://404.html", 503 = "<h1>later</h1>" }
"#,
    )
    .unwrap();
    // Loaded from another working directory, through a relative path would work the same: the
    // folder is made absolute first.
    let (config, _) = Config::load(&path).unwrap();
    assert_eq!(config.command_socket, folder.path().join("run/sozu.sock"));
    assert_eq!(config.saved_state, Some(folder.path().join("state.json")));
    assert_eq!(config.pid_file_path, Some(PathBuf::from("/run/sozu.pid")));
    assert_eq!(
        config.log_target,
        LogTarget::File(folder.path().join("logs/sozu.log"))
    );
    let Listener::Https(https) = &config.listeners[0] else {
        panic!("not https");
    };
    let certificate = https.tls.certificate.as_ref().unwrap();
    assert_eq!(certificate.certificate, "CERTIFICATE");
    assert_eq!(certificate.key, "KEY");
    assert_eq!(https.http.answers[&404], "not here");
    assert_eq!(https.http.answers[&503], "<h1>later</h1>");
}

#[test]
fn missing_certificate_file_names_the_file_key_and_line() {
    let message = error(
        r#"
[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"
certificate = "nowhere/cert.pem"
key = "key.pem"
"#,
    );
    assert_names(
        &message,
        &["cannot read", "nowhere/cert.pem", "`certificate` at line 5"],
    );
}

#[test]
fn certificate_needs_its_key() {
    let message = error(
        r#"
[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"
certificate = "certificate.pem"
"#,
    );
    assert_names(&message, &["`certificate` at line 5 requires `key`"]);
}

#[test]
fn frontend_certificates_are_added_once_per_listener_and_file() {
    let (config, _) = parse(
        r#"
[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"

[clusters.web]
protocol = "http"
frontends = [
  { address = "127.0.0.1:8443", hostname = "a.lolcatho.st", certificate = "certificate.pem", key = "key.pem" },
  { address = "127.0.0.1:8443", hostname = "b.lolcatho.st", certificate = "certificate.pem", key = "key.pem" },
  { address = "127.0.0.1:8443", hostname = "c.lolcatho.st", certificate = "certificate.pem", key = "key.pem", tls_versions = ["TLS_V13"] },
]
"#,
    )
    .unwrap();
    assert_eq!(config.certificates.len(), 2);
    assert_eq!(
        config.certificates[1].certificate.versions,
        [TlsVersion::Tls13]
    );
    assert!(
        config
            .frontends
            .iter()
            .all(|f| matches!(f, Frontend::Https(_)))
    );
}

#[test]
fn duplicate_backend_id_and_frontend_are_refused() {
    let message = error(&format!(
        r#"{HTTP_LISTENER}
[clusters.web]
protocol = "http"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "Example.com" }},
  {{ address = "127.0.0.1:8080", hostname = "example.com" }},
]
backends = [
  {{ address = "127.0.0.1:1026", backend_id = "one" }},
  {{ address = "127.0.0.1:1027", backend_id = "one" }},
]
"#
    ));
    assert_names(
        &message,
        &[
            "duplicate frontend `127.0.0.1:8080 example.com` (`frontends`) at line 10, first defined at line 9",
            "duplicate backend `one` (`backend_id`) at line 14, first defined at line 13",
        ],
    );
}

/// Issue 17: frontends are the same when their listener, hostname (whatever its case), path
/// rule and method are; each duplicate names the first frontend's line, across clusters, and
/// is the only error, in line order.
#[test]
fn frontends_are_duplicates_by_listener_hostname_path_and_method() {
    let message = error(&format!(
        r#"{HTTP_LISTENER}
[[listeners]]
protocol = "http"
address = "127.0.0.1:8081"

[clusters.web]
protocol = "http"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "a.test" }},
  {{ address = "127.0.0.1:8081", hostname = "a.test" }},
  {{ address = "127.0.0.1:8080", hostname = "a.test", path = "/x" }},
  {{ address = "127.0.0.1:8080", hostname = "a.test", path = "/x", path_type = "EQUALS" }},
  {{ address = "127.0.0.1:8080", hostname = "a.test", path = "/x", method = "GET" }},
  {{ address = "127.0.0.1:8080", hostname = "b.test" }},
]

[clusters.api]
protocol = "http"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "A.TEST", path = "/x" }},
  {{ address = "127.0.0.1:8080", hostname = "a.test", path = "/x", method = "GET" }},
  {{ address = "127.0.0.1:8080", hostname = "a.Test" }},
]
"#
    ));
    assert_eq!(
        message,
        "duplicate frontend `127.0.0.1:8080 a.test/x` (`frontends`) at line 24, first defined at line 15\n\
         duplicate frontend `127.0.0.1:8080 a.test/x GET` (`frontends`) at line 25, first defined at line 17\n\
         duplicate frontend `127.0.0.1:8080 a.test` (`frontends`) at line 26, first defined at line 13"
    );
}

/// A duplicate's line and its first's are counted only for the message, from where each
/// frontend starts: the line of its `{`, however many lines it spans, in a cluster, at the top
/// level and among TCP frontends.
#[test]
fn duplicates_name_the_line_where_each_frontend_starts() {
    let message = error(&format!(
        r#"frontends = [
  {{ address = "127.0.0.1:8080", hostname = "c.test", answer = {{ status = 404 }} }},
  {{ address = "127.0.0.1:8080",
     hostname = "c.test", answer = {{ status = 404 }} }},
]
{HTTP_LISTENER}
[clusters.web]
protocol = "http"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "a.test" }},
  {{ address = "127.0.0.1:8080",
     hostname = "b.test" }},
  {{
    address = "127.0.0.1:8080",
    hostname = "B.test",
  }},
  {{ address = "127.0.0.1:8080", hostname = "a.test" }},
]

[clusters.db]
protocol = "tcp"
frontends = [
  {{ address = "127.0.0.1:5432" }},

  {{ address = "127.0.0.1:5432" }},
]
"#
    ));
    assert_eq!(
        message,
        "duplicate frontend `127.0.0.1:8080 c.test` (`frontends`) at line 3, first defined at line 2\n\
         duplicate frontend `127.0.0.1:8080 b.test` (`frontends`) at line 17, first defined at line 15\n\
         duplicate frontend `127.0.0.1:8080 a.test` (`frontends`) at line 21, first defined at line 14\n\
         duplicate tcp frontend `127.0.0.1:5432 without a rule` (`address`) at line 29, first defined at line 27"
    );
}

#[test]
fn duplicate_listener_is_refused() {
    let message = error(&format!("{HTTP_LISTENER}{HTTP_LISTENER}"));
    assert_names(
        &message,
        &["duplicate listener `127.0.0.1:8080` (`address`) at line 8, first defined at line 4"],
    );
}

#[test]
fn automatic_state_save_requires_saved_state() {
    let message = error("automatic_state_save = true\n");
    assert_names(
        &message,
        &["`automatic_state_save` at line 1 requires `saved_state`"],
    );
    assert!(parse("automatic_state_save = true\nsaved_state = \"state.json\"\n").is_ok());
}

#[test]
fn answer_frontend_needs_no_cluster_and_reads_its_file() {
    let (config, _) = parse(&format!(
        r#"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "localhost", answer = {{ status = 503, file = "503.html" }} }},
  {{ address = "127.0.0.1:8080", hostname = "old.localhost", redirect = "permanent", redirect_template = "HTTP/1.1 301 Moved Permanently\r\nLocation: %REDIRECT_LOCATION\r\n\r\n" }},
]
{HTTP_LISTENER}"#
    ))
    .unwrap();
    let Frontend::Http(answer) = &config.frontends[0] else {
        panic!("not http");
    };
    assert_eq!(answer.cluster_id, None);
    assert!(
        answer
            .answer
            .as_ref()
            .unwrap()
            .body
            .starts_with("HTTP/1.1 503")
    );
    let Frontend::Http(redirect) = &config.frontends[1] else {
        panic!("not http");
    };
    assert_eq!(redirect.redirect, RedirectPolicy::Permanent);
    assert!(
        redirect
            .redirect_template
            .as_deref()
            .is_some_and(|template| template.contains("Location: %REDIRECT_LOCATION"))
    );
}

/// Issue 11: `redirect_template` is Sōzu's whole redirection answer; its status line must be
/// the frontend's redirect status.
#[test]
fn a_redirect_template_with_another_status_is_refused() {
    let message = error(&format!(
        "frontends = [{{ address = \"127.0.0.1:8080\", hostname = \"a\", redirect = \"found\", \
         redirect_template = \"HTTP/1.1 301 Moved\\r\\n\\r\\n\" }}]\n{HTTP_LISTENER}"
    ));
    assert_names(
        &message,
        &[
            "`redirect_template`",
            "at line 1",
            "its frontend redirects with 302",
        ],
    );
}

#[test]
fn frontend_outside_clusters_must_answer_or_redirect() {
    let message = error(&format!(
        "frontends = [{{ address = \"127.0.0.1:8080\", hostname = \"a\" }}]\n{HTTP_LISTENER}"
    ));
    assert_names(&message, &["`frontends` at line 1 requires `answer`"]);
}

#[test]
fn answer_body_and_file_exclude_each_other() {
    let message = error(&format!(
        "frontends = [{{ address = \"127.0.0.1:8080\", hostname = \"a\", answer = {{ status = 200, body = \"x\", file = \"404.html\" }} }}]\n{HTTP_LISTENER}"
    ));
    assert_names(
        &message,
        &["`body` and `file` at line 1 exclude each other"],
    );
}

#[test]
fn frontend_in_a_cluster_keeps_its_cluster_when_it_answers() {
    let (config, _) = parse(&format!(
        r#"{HTTP_LISTENER}
[clusters.web]
protocol = "http"
frontends = [{{ address = "127.0.0.1:8080", hostname = "a", answer = {{ status = 200, body = "ok" }} }}]
"#
    ))
    .unwrap();
    let mut expected = HttpFrontend::new(
        Some("web".to_string()),
        "127.0.0.1:8080".parse().unwrap(),
        "a",
    );
    expected.answer = Some(crate::request::FixedAnswer {
        status: 200,
        headers: Vec::new(),
        body: "ok".to_string(),
    });
    assert_eq!(config.frontends, [Frontend::Http(expected)]);
}

/// Issue 17: a frontend without options (most of 100,000) read from the file takes no memory
/// for them; one with an option has them.
#[test]
fn a_frontend_without_options_allocates_none() {
    let (config, _) = parse(&format!(
        r#"{HTTP_LISTENER}
[clusters.web]
protocol = "http"
frontends = [
  {{ address = "127.0.0.1:8080", hostname = "a" }},
  {{ address = "127.0.0.1:8080", hostname = "b", tags = {{ team = "x" }} }},
]
"#
    ))
    .unwrap();
    let [Frontend::Http(plain), Frontend::Http(tagged)] = config.frontends.as_slice() else {
        panic!("two http frontends: {:?}", config.frontends);
    };
    assert!(!plain.has_options());
    assert!(tagged.has_options());
    assert_eq!(tagged.tags.get("team").map(String::as_str), Some("x"));
}

#[test]
fn alpn_protocols_and_disable_http11_are_read() {
    let https = "[[listeners]]\nprotocol = \"https\"\naddress = \"127.0.0.1:8443\"\n";
    let listener = |text: &str| {
        let (config, warnings) = parse(&format!("{https}{text}")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let Some(Listener::Https(https)) = config.listeners.into_iter().next() else {
            panic!("no https listener");
        };
        https.tls
    };
    assert_eq!(listener("").alpn_protocols, ["h2", "http/1.1"]);
    assert_eq!(
        listener("alpn_protocols = [\"h2\"]\n").alpn_protocols,
        ["h2"]
    );
    let tls = listener("alpn_protocols = [\"http/1.1\", \"h2\", \"h2\"]\n");
    assert_eq!(tls.alpn_protocols, ["http/1.1", "h2"]);
    assert!(!tls.disable_http11);
    assert!(listener("disable_http11 = true\n").disable_http11);
    let message = error(&format!("{https}alpn_protocols = [\"h3\"]\n"));
    assert_names(&message, &["`alpn_protocols`"]);
}

#[test]
fn h2_keys_are_read_on_http_and_https_listeners() {
    let (config, warnings) = parse(
        "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:8080\"\nh2c = true\n\
         h2_max_ping_per_window = 7\nh2_max_header_fields = 64\n\
         h2_stream_idle_timeout_seconds = 12\nh2_graceful_shutdown_deadline_seconds = 0\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let Listener::Http(listener) = &config.listeners[0] else {
        panic!("not http");
    };
    assert!(listener.h2c);
    assert_eq!(listener.h2.max_ping_per_window, 7);
    assert_eq!(listener.h2.max_header_fields, 64);
    assert_eq!(listener.h2.max_rst_stream_per_window, 100);
    assert_eq!(
        listener.h2.stream_idle_timeout,
        Some(Duration::from_secs(12))
    );
    assert_eq!(listener.h2.graceful_shutdown_deadline, Duration::ZERO);
}

#[test]
fn h2_values_out_of_range_are_refused_with_the_key_and_line() {
    let https = "[[listeners]]\nprotocol = \"https\"\naddress = \"127.0.0.1:8443\"\n";
    let message = error(&format!("{https}h2_max_concurrent_streams = 0\n"));
    assert_names(
        &message,
        &["`h2_max_concurrent_streams` at line 4", "1 to 100000"],
    );
    let message = error(&format!("{https}h2_initial_connection_window = 1000\n"));
    assert_names(&message, &["`h2_initial_connection_window` at line 4"]);
    let message = error(&format!("{https}h2_stream_idle_timeout_seconds = 0\n"));
    assert_names(&message, &["`h2_stream_idle_timeout_seconds` at line 4"]);
}

#[test]
fn h2c_on_https_and_h2_keys_on_tcp_are_ignored_with_a_warning() {
    let (_, warnings) = parse(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"127.0.0.1:8443\"\nh2c = true\n\
         [[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:9000\"\nh2_max_ping_per_window = 3\n",
    )
    .unwrap();
    let warned: Vec<(&str, usize)> = warnings
        .iter()
        .map(|warning| (warning.key.as_str(), warning.line))
        .collect();
    assert_eq!(warned, [("h2c", 4), ("h2_max_ping_per_window", 8)]);
}

#[test]
fn cipher_and_group_names_are_checked_and_made_canonical() {
    let https = "[[listeners]]\nprotocol = \"https\"\naddress = \"127.0.0.1:8443\"\n";
    let (config, warnings) = parse(&format!(
        "{https}cipher_list = \"ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_128_GCM_SHA256\"\n\
         groups_list = [\"P-384\", \"X25519MLKEM768\"]\n"
    ))
    .unwrap();
    let Listener::Https(listener) = &config.listeners[0] else {
        panic!("not https");
    };
    assert_eq!(
        listener.tls.cipher_list,
        ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
    );
    assert_eq!(listener.tls.cipher_suites, ["TLS13_AES_128_GCM_SHA256"]);
    assert_eq!(listener.tls.groups_list, ["secp384r1"]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].message.contains("X25519MLKEM768"));

    let message = error(&format!("{https}cipher_suites = [\"RC4-MD5\"]\n"));
    assert_names(
        &message,
        &["`cipher_suites` at line 4", "`RC4-MD5` is not one"],
    );
    let message = error(&format!("{https}groups_list = [\"P-521\"]\n"));
    assert_names(&message, &["`groups_list` at line 4", "`P-521` is not one"]);
}

#[test]
fn ignored_keys_warn_with_their_line() {
    let (config, warnings) = parse("worker_count = 3\nmin_buffers = 1\n").unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, "min_buffers");
    assert_eq!(warnings[0].line, 2);
    assert!(
        warnings[0]
            .to_string()
            .starts_with("`min_buffers` at line 2: accepted and ignored")
    );
    assert!(!config.log_colored);
    let (config, warnings) = parse("log_colored = true\n").unwrap();
    assert!(config.log_colored && warnings.is_empty(), "{warnings:?}");
}

#[test]
fn access_logs_colored_follows_log_colored_unless_set() {
    let colored = |text: &str| {
        let (config, warnings) = parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        config.access_logs_colored
    };
    assert!(!colored(""));
    assert!(colored("log_colored = true\n"));
    assert!(!colored(
        "log_colored = true\naccess_logs_colored = false\n"
    ));
    assert!(colored("access_logs_colored = true\n"));
}

#[test]
fn tcp_cluster_relays_proxy_header_when_its_listener_expects_one() {
    let (config, _) = parse(
        r#"
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5432"
expect_proxy = true

[clusters.db]
protocol = "tcp"
send_proxy = true
frontends = [{ address = "127.0.0.1:5432" }]
"#,
    )
    .unwrap();
    assert_eq!(
        config.clusters[0].proxy_protocol,
        Some(ProxyProtocolConfig::RelayHeader)
    );
    assert_eq!(config.listeners[0].kind(), ListenerType::Tcp);
}

#[test]
fn example_of_the_documentation_is_valid() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../doc/configure.md"))
        .unwrap();
    let example = doc
        .split("## A complete example")
        .nth(1)
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    for sub in ["certs", "pages"] {
        fs::create_dir(folder.path().join(sub)).unwrap();
    }
    for (from, to) in [
        ("certificate.pem", "certs/default.pem"),
        ("key.pem", "certs/default.key"),
        ("certificate.pem", "certs/example.pem"),
        ("key.pem", "certs/example.key"),
        ("certificate_chain.pem", "certs/chain.pem"),
        ("503.html", "pages/503.html"),
    ] {
        fs::copy(fixtures().join(from), folder.path().join(to)).unwrap();
    }
    let (config, warnings) = Config::parse(example, folder.path()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.frontends.len(), 6);
    assert_eq!(
        config.clusters[2].proxy_protocol,
        Some(ProxyProtocolConfig::RelayHeader)
    );
}

#[test]
fn http2_example_of_the_documentation_is_valid() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../doc/http2.md")).unwrap();
    let example = doc
        .split("## Example")
        .nth(1)
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .unwrap();
    let folder = tempfile::tempdir().unwrap();
    fs::copy(
        fixtures().join("certificate.pem"),
        folder.path().join("cert.pem"),
    )
    .unwrap();
    fs::copy(fixtures().join("key.pem"), folder.path().join("key.pem")).unwrap();
    let (config, warnings) = Config::parse(example, folder.path()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let [Listener::Https(https), Listener::Http(http)] = config.listeners.as_slice() else {
        panic!("{:?}", config.listeners);
    };
    assert_eq!(https.tls.alpn_protocols, ["h2", "http/1.1"]);
    assert_eq!(https.http.h2.max_concurrent_streams, 200);
    assert!(http.h2c);
    // `http2 = true`: the cluster's backends are spoken to in HTTP/2 (no warning above).
    assert!(config.clusters[0].http2);
}

/// 10,000 clusters with 10 HTTP frontends each, one in ten of them on the HTTPS listener with its
/// own certificate file: 100,000 frontends and 10,000 certificates.
#[test]
fn hundred_thousand_frontends_load_in_reasonable_time() {
    const CLUSTERS: usize = 10_000;
    let folder = tempfile::tempdir().unwrap();
    let certs = folder.path().join("certs");
    fs::create_dir(&certs).unwrap();
    fs::write(folder.path().join("key.pem"), "KEY").unwrap();
    let mut text = String::from(
        "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:8080\"\n\n\
         [[listeners]]\nprotocol = \"https\"\naddress = \"127.0.0.1:8443\"\n\n",
    );
    for cluster in 0..CLUSTERS {
        fs::write(
            certs.join(format!("{cluster}.pem")),
            format!("CERTIFICATE {cluster}"),
        )
        .unwrap();
        let _ = write!(
            text,
            "[clusters.c{cluster}]\nprotocol = \"http\"\nfrontends = [\n  \
             {{ address = \"127.0.0.1:8443\", hostname = \"c{cluster}.example.com\", \
             certificate = \"certs/{cluster}.pem\", key = \"key.pem\" }},\n"
        );
        for path in 1..10 {
            let _ = writeln!(
                text,
                "  {{ address = \"127.0.0.1:8080\", hostname = \"c{cluster}.example.com\", path = \"/p{path}\" }},"
            );
        }
        let _ = writeln!(
            text,
            "]\nbackends = [{{ address = \"127.0.0.1:{}\" }}]\n",
            1024 + cluster
        );
    }
    let path = folder.path().join("config.toml");
    fs::write(&path, text).unwrap();

    let start = Instant::now();
    let (config, warnings) = Config::load(&path).unwrap();
    let loaded = start.elapsed();
    let orders = config.orders();
    let elapsed = start.elapsed();
    eprintln!("load {loaded:?}");
    eprintln!("100,000 frontends and 10,000 certificates: loaded with orders in {elapsed:?}");

    assert!(warnings.is_empty());
    assert_eq!(config.frontends.len(), 100_000);
    assert_eq!(config.certificates.len(), 10_000);
    assert_eq!(orders.len(), 2 + 2 + CLUSTERS + CLUSTERS + 10_000 + 100_000);
    assert_eq!(
        config.certificates[9_999].certificate.certificate,
        "CERTIFICATE 9999"
    );
}

/// Issue 10, item 3: every duration and count has a range, refused with the key and the line.
#[test]
fn numbers_out_of_their_range_are_refused_with_the_key_and_the_line() {
    let huge = i64::MAX;
    let cases = [
        (
            format!("worker_timeout = {huge}\n"),
            "worker_timeout",
            "1 to 2147483 seconds",
        ),
        (
            format!("{HTTP_LISTENER}front_timeout = {huge}\n"),
            "front_timeout",
            "seconds",
        ),
        (
            format!("{HTTP_LISTENER}request_timeout = 0\n"),
            "request_timeout",
            "1 to",
        ),
        (
            "buffer_size = 10\n".to_string(),
            "buffer_size",
            "1024 to 1048576 bytes",
        ),
        (
            "worker_count = 100000\n".to_string(),
            "worker_count",
            "1 to 1024",
        ),
        (
            format!("retry_after = {huge}\n"),
            "retry_after",
            "0 to 2147483647 seconds",
        ),
        (
            format!(
                "{HTTP_LISTENER}[clusters.c]\nprotocol = \"http\"\n\
                 health_check = {{ uri = \"/\", interval = {huge} }}\n"
            ),
            "interval",
            "1 to 2147483 seconds",
        ),
        (
            "[clusters.c]\nprotocol = \"http\"\n\
             health_check = { uri = \"/\", timeout = 9223372036854775807 }\n"
                .to_string(),
            "timeout",
            "1 to 2147483 seconds",
        ),
        (
            "[clusters.c]\nprotocol = \"http\"\n\
             backends = [{ address = \"127.0.0.1:1\", weight = 2000000 }]\n"
                .to_string(),
            "weight",
            "0 to 1000000",
        ),
    ];
    for (text, key, range) in cases {
        let message = error(&text);
        assert_names(&message, &[&format!("`{key}`"), "at line", range]);
    }
}

/// Issue 10, item 4: no byte that would end a header line early reaches an order.
#[test]
fn bytes_that_would_forge_a_header_line_are_refused() {
    let frontend = |extra: &str| {
        format!(
            "{HTTP_LISTENER}[clusters.c]\nprotocol = \"http\"\n\
             frontends = [{{ address = \"127.0.0.1:8080\", hostname = \"a.test\", {extra} }}]\n"
        )
    };
    let cases = [
        (
            frontend(
                r#"headers = [{ position = "response", key = "X", value = "a\r\nSet-Cookie: b" }]"#,
            ),
            "value",
        ),
        (
            frontend(
                r#"headers = [{ position = "request", key = "Transfer-Encoding", value = "chunked" }]"#,
            ),
            "key",
        ),
        (frontend(r#"rewrite_host = "a\r\nX: 1""#), "rewrite_host"),
        (frontend(r#"rewrite_path = "/a b""#), "rewrite_path"),
        (
            frontend(r#"redirect_template = "HTTP/1.1 301 Moved\r\nLocation: a\rX: 1\r\n\r\n""#),
            "redirect_template",
        ),
        (
            "[clusters.c]\nprotocol = \"http\"\nhealth_check = { uri = \"/h\\r\\nX: 1\" }\n"
                .to_string(),
            "uri",
        ),
        (
            format!("{HTTP_LISTENER}sozu_id_header = \"Id\\r\\nX\"\n"),
            "sozu_id_header",
        ),
        (
            "[clusters.c]\nprotocol = \"http\"\n\
             answers = { 503 = \"HTTP/1.1 503 X\\r\\nA: b\\rc\\r\\n\\r\\n\" }\n"
                .to_string(),
            "503",
        ),
        (
            "[clusters.c]\nprotocol = \"http\"\n\
             backends = [{ address = \"127.0.0.1:1\", sticky_id = \"a;b\" }]\n"
                .to_string(),
            "sticky_id",
        ),
    ];
    for (text, key) in cases {
        let message = error(&text);
        assert_names(&message, &[&format!("`{key}`"), "at line"]);
    }
}

/// The content routing example of issue 13 (doc/content-routing.md), with a script.
const CONTENT_ROUTING: &str = r#"
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5000"
inspect_bytes = 1024
inspect_timeout = 3
script = "route.lua"

[clusters.tenant-a]
protocol = "tcp"
frontends = [ { address = "127.0.0.1:5000", sni = "a.test" } ]
backends = [ { address = "127.0.0.1:6001" } ]

[clusters.web]
protocol = "tcp"
frontends = [ { address = "127.0.0.1:5000", http_host = "c.test" } ]

[clusters.ssh]
protocol = "tcp"
frontends = [ { address = "127.0.0.1:5000", protocol = "ssh" } ]

[clusters.fallback]
protocol = "tcp"
frontends = [ { address = "127.0.0.1:5000" } ]
"#;

#[test]
fn tcp_frontends_share_a_listener_with_rules_and_a_script() {
    use crate::request::{TcpProtocol, TcpRule};
    let (config, warnings) = parse(CONTENT_ROUTING).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let Listener::Tcp(listener) = &config.listeners[0] else {
        panic!("not a TCP listener");
    };
    assert_eq!(listener.inspect_bytes, 1024);
    assert_eq!(listener.inspect_timeout, Duration::from_secs(3));
    let script = listener.script.as_ref().unwrap();
    assert_eq!(script.name, "route.lua");
    assert!(script.source.contains("function route(data, peer)"));
    let rules: Vec<(String, Option<TcpRule>)> = config
        .frontends
        .iter()
        .map(|frontend| match frontend {
            Frontend::Tcp(f) => (f.cluster_id.clone(), f.rule.clone()),
            other => panic!("not a TCP frontend: {other:?}"),
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                "tenant-a".to_string(),
                Some(TcpRule::Sni("a.test".to_string()))
            ),
            (
                "web".to_string(),
                Some(TcpRule::HttpHost("c.test".to_string()))
            ),
            ("ssh".to_string(), Some(TcpRule::Protocol(TcpProtocol::Ssh))),
            ("fallback".to_string(), None),
        ]
    );
    let mut state = crate::state::ConfigState::new();
    for order in config.orders() {
        state.apply(&order).unwrap();
    }
    assert_eq!(state.tcp_frontends.values().flatten().count(), 4);
}

#[test]
fn bad_tcp_rules_are_named_with_their_line() {
    let tcp = "[[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:5000\"\n\
               [clusters.a]\nprotocol = \"tcp\"\n";
    let message = error(&format!(
        "{tcp}frontends = [ {{ address = \"127.0.0.1:5000\", regex = \"(x\" }} ]\n"
    ));
    assert_names(&message, &["`regex`", "line 6", "unclosed group"]);
    let message = error(&format!(
        "{tcp}frontends = [ {{ address = \"127.0.0.1:5000\", protocol = \"gopher\" }} ]\n"
    ));
    assert_names(&message, &["`protocol`", "line 6", "ssh", "xmpp"]);
    let message = error(&format!(
        "{tcp}frontends = [ {{ address = \"127.0.0.1:5000\", sni = \"a\", alpn = \"h2\" }} ]\n"
    ));
    assert_names(&message, &["`alpn`", "`sni` is set"]);
    let message = error(&format!(
        "{tcp}frontends = [ {{ address = \"127.0.0.1:5000\", sni = \"a\" }},\n\
         {{ address = \"127.0.0.1:5000\", sni = \"A\" }} ]\n"
    ));
    assert_names(&message, &["duplicate", "sni = \"A\""]);
    let message = error(&format!(
        "{HTTP_LISTENER}[clusters.a]\nprotocol = \"http\"\nfrontends = [ {{ address = \"127.0.0.1:8080\", \
         hostname = \"a\", sni = \"a\" }} ]\n"
    ));
    assert_names(&message, &["`sni`"]);
    let message = error(
        "[[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:5000\"\n\
         script = \"missing.lua\"\n",
    );
    assert_names(&message, &["`script`", "line 4", "missing.lua"]);
}

/// The blocks of `doc/content-routing.md` written in `language`.
fn doc_blocks(language: &str) -> Vec<String> {
    let doc = include_str!("../../../doc/content-routing.md");
    let fence = format!("```{language}\n");
    doc.split(&fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_content_routing_doc_example_loads_and_applies() {
    let blocks = doc_blocks("toml");
    assert_eq!(blocks.len(), 1);
    let (config, warnings) = parse(&blocks[0]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut state = crate::state::ConfigState::new();
    for order in config.orders() {
        state.apply(&order).unwrap();
    }
    let address = "127.0.0.1:5000".parse().unwrap();
    assert_eq!(state.tcp_frontends[&address].len(), 5);
    assert_eq!(
        state
            .default_tcp_frontend(address)
            .map(|f| f.cluster_id.as_str()),
        Some("fallback")
    );
}

#[test]
fn the_content_routing_doc_orders_parse() {
    let blocks = doc_blocks("json");
    let lines: Vec<&str> = blocks.iter().flat_map(|block| block.lines()).collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        let order: crate::request::Order = serde_json::from_str(line).unwrap();
        assert_eq!(order.name(), "ADD_TCP_FRONTEND");
    }
}

#[test]
fn tcp_listeners_splice_unless_told_not_to() {
    let (config, _) = parse(
        r#"
[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5432"

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5433"
splice = false
"#,
    )
    .unwrap();
    let splice: Vec<bool> = config
        .listeners
        .iter()
        .map(|listener| match listener {
            Listener::Tcp(tcp) => tcp.splice,
            other => panic!("not tcp: {other:?}"),
        })
        .collect();
    assert_eq!(splice, [true, false]);
    let order: TcpListenerConfig =
        serde_json::from_str(r#"{ "address": "127.0.0.1:5434" }"#).unwrap();
    assert!(order.splice, "an order without `splice` splices");
}
