//! A new user's tour of the product as its docs show it (doc/cli.md, doc/faults.md), against
//! the real binary: each test is a defect the tour found.

mod common;

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
};

use common::{DEADLINE, Proxy, SOZU, free_address, text, wait_until};
use sozu_e2e::http_client::Client;

/// `sozu metrics get -r 1 | head -2`: once the reader goes, the next refresh ends the command
/// quietly, as `sozu events | head -1` does, instead of a panic (exit 101) with a backtrace.
#[test]
fn metrics_refresh_ends_quietly_when_its_reader_goes() {
    let proxy = Proxy::start("");
    let mut child = Command::new(SOZU)
        .args(["metrics", "get", "-r", "1", "--socket"])
        .arg(&proxy.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the command line");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the first figures");
    drop(stdout);
    assert!(
        wait_until(DEADLINE, || matches!(child.try_wait(), Ok(Some(_)))),
        "`metrics get -r 1` went on after its reader went away"
    );
    let output = child.wait_with_output().expect("the command's end");
    let errors = text(&output.stderr);
    assert!(!errors.contains("panicked"), "{errors}");
    assert!(output.status.success(), "{:?}: {errors}", output.status);
}

/// One request to the Toxiproxy API, read with strict framing: its status and body.
fn toxiproxy(api: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = Client::connect(api).exchange(method, request.as_bytes());
    (response.status, response.text())
}

/// `POST /proxies` with a `listen` address this host cannot bind answers 500, as Toxiproxy
/// does, and keeps nothing: the same name is free for the next attempt, and no listener is left
/// in the state (it was kept, shown active, and every retry got 409 `proxy already exists`).
#[test]
fn a_toxiproxy_proxy_that_cannot_listen_is_not_kept() {
    let api = free_address();
    let proxy = Proxy::start(&format!("[toxiproxy]\naddress = \"{api}\"\n"));
    let unbindable =
        r#"{"name": "redis", "upstream": "127.0.0.1:6379", "listen": "192.0.2.1:26379"}"#;
    let (status, body) = toxiproxy(api, "POST", "/proxies", unbindable);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("listen tcp 192.0.2.1:26379"), "{body}");
    assert_eq!(
        toxiproxy(api, "GET", "/proxies", ""),
        (200, "{}".to_string())
    );
    assert!(!proxy.ok(&["listener", "list"]).contains("192.0.2.1"));

    let listen = free_address();
    let good =
        format!(r#"{{"name": "redis", "upstream": "127.0.0.1:6379", "listen": "{listen}"}}"#);
    let (status, body) = toxiproxy(api, "POST", "/proxies", &good);
    assert_eq!(status, 201, "{body}");
    let moved = r#"{"listen": "192.0.2.1:26379"}"#;
    let (status, body) = toxiproxy(api, "POST", "/proxies/redis", moved);
    assert_eq!(status, 500, "{body}");
    let (_, shown) = toxiproxy(api, "GET", "/proxies/redis", "");
    assert!(shown.contains(&listen.to_string()), "{shown}");
}

/// `POST /populate` with a proxy whose upstream changed but not its `listen` replaces it, as
/// Toxiproxy does; it answered 500 `address already in use` (the listener was removed and added
/// again in one change, while the workers still held the address).
#[test]
fn toxiproxy_populate_replaces_a_proxy_on_the_same_listen_address() {
    let api = free_address();
    let proxy = Proxy::start(&format!("[toxiproxy]\naddress = \"{api}\"\n"));
    let listen = free_address();
    let item = |upstream: &str| {
        format!(r#"[{{"name": "db", "upstream": "{upstream}", "listen": "{listen}"}}]"#)
    };
    let (status, body) = toxiproxy(api, "POST", "/populate", &item("127.0.0.1:5432"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = toxiproxy(api, "POST", "/populate", &item("127.0.0.1:5433"));
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("127.0.0.1:5433"), "{body}");
    let (_, shown) = toxiproxy(api, "GET", "/proxies/db", "");
    assert!(
        shown.contains("127.0.0.1:5433") && shown.contains(r#""enabled":true"#),
        "{shown}"
    );
    assert!(
        TcpStream::connect(listen).is_ok(),
        "nothing listens on {listen}"
    );
    assert!(
        proxy
            .ok(&["listener", "list"])
            .contains(&listen.to_string())
    );
}

/// `sozu cluster list -d DOMAIN` that no cluster routes says so (exit 0, as Sōzu's empty
/// answer), instead of printing nothing; a domain that a cluster routes lists it.
#[test]
fn a_cluster_list_by_a_domain_nobody_routes_says_so() {
    let proxy = Proxy::start("");
    proxy.route_to("app", "app.test", "app-1", free_address());
    let output = proxy.ok(&["cluster", "list", "-d", "nobody.test"]);
    assert_eq!(output, "no cluster has a frontend for `nobody.test`\n");
    let output = proxy.ok(&["cluster", "list", "-d", "app.test"]);
    assert!(output.starts_with("cluster app: "), "{output}");
}

/// `sozu status` right after `sozu upgrade`: the old workers, replaced and told to stop, show
/// STOPPING until they exit, not RUNNING beside the new ones (they said RUNNING themselves
/// for the grace before their SOFT_STOP).
#[test]
fn status_after_an_upgrade_shows_the_old_workers_stopping() {
    let proxy = Proxy::start("");
    let old = proxy.worker_pids();
    let output = proxy.ok(&["upgrade", "-t", "20000"]);
    assert!(output.contains("2 worker(s) replaced"), "{output}");
    let status = proxy.ok(&["status", "--json=compact"]);
    let value: serde_json::Value = serde_json::from_str(&status).expect("status as JSON");
    let workers = value["data"].as_array().expect("a worker list");
    let running: Vec<i64> = workers
        .iter()
        .filter(|worker| worker["run_state"] == "RUNNING")
        .filter_map(|worker| worker["pid"].as_i64())
        .collect();
    assert_eq!(running.len(), 2, "{status}");
    assert!(running.iter().all(|pid| !old.contains(pid)), "{status}");
}

/// Runs `sozu ARGS` against a socket that does not exist: it must exit with 1 and say
/// `reason` on stderr before trying to reach a proxy.
fn refused_before_connecting(args: &[&str], reason: &str) {
    let output = Command::new(SOZU)
        .args(args)
        .args(["--socket", "/nonexistent/sozu.sock"])
        .stdin(Stdio::null())
        .output()
        .expect("run the command line");
    let errors = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {errors}");
    assert!(errors.contains(reason), "{args:?}: {errors}");
}

/// Sōzu's `listener udp …` and `frontend udp …` are recognised and refused with a reason, as
/// the configuration refuses UDP, instead of clap's `unrecognized subcommand 'udp'`.
#[test]
fn udp_subcommands_are_refused_as_not_built() {
    let reason = "UDP listeners and frontends are not built yet";
    let listener = [
        "listener",
        "udp",
        "add",
        "-a",
        "127.0.0.1:5353",
        "--max-flows",
        "10",
    ];
    refused_before_connecting(&listener, reason);
    let frontend = [
        "frontend",
        "udp",
        "add",
        "-i",
        "dns",
        "-a",
        "127.0.0.1:5353",
    ];
    refused_before_connecting(&frontend, reason);
}

/// Sōzu's `top --tick-once` (and its other flags this view has not) is recognised and refused
/// with a reason before any terminal or socket is touched, instead of clap's `unexpected
/// argument`.
#[test]
fn sozu_top_flags_are_refused_as_not_built() {
    let reason = "is Sōzu's and not built here";
    refused_before_connecting(&["top", "--tick-once"], reason);
    refused_before_connecting(&["top", "--snapshot", "3", "--detail", "cluster"], reason);
    refused_before_connecting(&["top", "--no-mouse"], reason);
}
