//! Changing the routing of a running proxy through the command line, checked with real
//! requests; and the error paths of the command line.

mod common;

use std::{thread, time::Duration};

use common::{Backend, DEADLINE, Proxy, wait_until};

#[test]
fn clusters_backends_and_frontends_change_the_routing() {
    let proxy = Proxy::start("");
    let http = proxy.http.to_string();
    assert_eq!(proxy.get("app.test").unwrap().0, 404);

    let first = Backend::start("first");
    proxy.route("app", "app.test", &first);
    assert_eq!(proxy.get("app.test").unwrap(), (200, "first".to_string()));

    // A second backend, then the first removed: traffic moves to the second.
    let second = Backend::start("second");
    let second_address = second.address.to_string();
    proxy.ok(&[
        "backend",
        "add",
        "-i",
        "app",
        "--backend-id",
        "app-second",
        "-a",
        &second_address,
    ]);
    let first_address = first.address.to_string();
    proxy.ok(&[
        "backend",
        "remove",
        "-i",
        "app",
        "--backend-id",
        "app-first",
        "-a",
        &first_address,
    ]);
    let before = first.requests();
    for _ in 0..6 {
        assert_eq!(proxy.get("app.test").unwrap(), (200, "second".to_string()));
    }
    assert_eq!(first.requests(), before);

    // Another hostname on a path, and the cluster list.
    proxy.ok(&[
        "frontend",
        "http",
        "add",
        "-a",
        &http,
        "--hostname",
        "other.test",
        "-p",
        "/",
        "id",
        "app",
    ]);
    assert_eq!(
        proxy.get("other.test").unwrap(),
        (200, "second".to_string())
    );
    let listed = proxy.ok(&["cluster", "list", "-i", "app"]);
    assert!(listed.contains("app-second"), "{listed}");
    let frontends = proxy.ok(&["frontend", "list", "--http"]);
    assert!(frontends.contains("other.test"), "{frontends}");

    // A deny frontend answers 401; removing the frontend gives 404 again.
    proxy.ok(&[
        "frontend",
        "http",
        "add",
        "-a",
        &http,
        "--hostname",
        "deny.test",
        "deny",
    ]);
    assert_eq!(proxy.get("deny.test").unwrap().0, 401);
    proxy.ok(&[
        "frontend",
        "http",
        "remove",
        "-a",
        &http,
        "--hostname",
        "app.test",
        "id",
        "app",
    ]);
    assert_eq!(proxy.get("app.test").unwrap().0, 404);

    // Removing the cluster takes its frontends along.
    proxy.ok(&["cluster", "remove", "-i", "app"]);
    assert_eq!(proxy.get("other.test").unwrap().0, 404);
}

#[test]
fn a_removed_backend_finishes_its_requests() {
    let proxy = Proxy::start("");
    let (slow, gate, arrived) = Backend::gated("slow");
    proxy.route("app", "app.test", &slow);
    let http = proxy.http;
    let in_flight = thread::spawn(move || common::get(http, "app.test"));
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request reaches the slow backend");

    let fast = Backend::start("fast");
    let fast_address = fast.address.to_string();
    let slow_address = slow.address.to_string();
    proxy.ok(&[
        "backend",
        "add",
        "-i",
        "app",
        "--backend-id",
        "app-fast",
        "-a",
        &fast_address,
    ]);
    proxy.ok(&[
        "backend",
        "remove",
        "-i",
        "app",
        "--backend-id",
        "app-slow",
        "-a",
        &slow_address,
    ]);
    // New requests go to the remaining backend while the removed one drains.
    assert_eq!(proxy.get("app.test").unwrap(), (200, "fast".to_string()));
    gate.release();
    let (status, body) = in_flight.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));
}

#[test]
fn refused_orders_say_why_and_change_nothing() {
    let proxy = Proxy::start("");
    let backend = Backend::start("one");
    proxy.route("app", "app.test", &backend);
    let address = backend.address.to_string();
    let before = proxy.ok(&["cluster", "list", "-i", "app", "--json=compact"]);

    let error = proxy.fails(&[
        "backend",
        "add",
        "-i",
        "nope",
        "--backend-id",
        "x",
        "-a",
        &address,
    ]);
    assert!(error.contains("no cluster `nope`"), "{error}");

    let error = proxy.fails(&[
        "backend",
        "add",
        "-i",
        "app",
        "--backend-id",
        "app-one",
        "-a",
        &address,
    ]);
    assert!(error.contains("already has a backend `app-one`"), "{error}");

    let error = proxy.fails(&[
        "backend",
        "add",
        "-i",
        "app",
        "--backend-id",
        "y",
        "-a",
        "not-an-address",
    ]);
    assert!(error.contains("not-an-address"), "{error}");

    let error = proxy.fails(&[
        "frontend",
        "http",
        "add",
        "-a",
        "127.0.0.1:1",
        "--hostname",
        "x.test",
        "id",
        "app",
    ]);
    assert!(error.contains("no HTTP listener on 127.0.0.1:1"), "{error}");

    assert_eq!(
        proxy.ok(&["cluster", "list", "-i", "app", "--json=compact"]),
        before
    );
    assert_eq!(proxy.get("app.test").unwrap(), (200, "one".to_string()));
}

#[test]
fn an_unreachable_socket_is_named_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let output = std::process::Command::new(common::SOZU)
        .args(["status", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = common::text(&output.stderr);
    assert!(error.contains(&socket.display().to_string()), "{error}");
    assert!(error.contains("is sozu running?"), "{error}");

    let config = common::write_file(dir.path(), "config.toml", "command_socket = \"x.sock\"\n");
    let output = std::process::Command::new(common::SOZU)
        .args(["status", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let error = common::text(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("x.sock"), "{error}");
    assert!(error.contains("is command_socket in"), "{error}");
}

#[test]
fn the_command_line_reads_only_the_part_of_the_configuration_before_its_first_table() {
    let proxy = Proxy::start("");
    // A mistake after the first table: the proxy would refuse this file now, but the command
    // socket and timeout come before it.
    let mut config = std::fs::read_to_string(&proxy.config).unwrap();
    config.push_str("[clusters.broken\n");
    std::fs::write(&proxy.config, config).unwrap();
    let output = std::process::Command::new(common::SOZU)
        .args(["status", "-c"])
        .arg(&proxy.config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::text(&output.stderr));
}

#[test]
fn a_second_proxy_on_the_same_socket_is_refused() {
    let proxy = Proxy::start("");
    let output = std::process::Command::new(common::SOZU)
        .args(["start", "-c"])
        .arg(&proxy.config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = common::text(&output.stderr);
    assert!(
        error.contains("another sozu is running on socket"),
        "{error}"
    );
    // The first one still serves.
    assert!(wait_until(Duration::from_secs(5), || proxy
        .sozu(&["status"])
        .status
        .success()));
}
