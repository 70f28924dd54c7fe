//! Certificates through the command line: a key that is not the certificate's is refused by
//! the main process with its reason, and nothing changes; an expired certificate is judged
//! once, when a client adds it, and never again when the state is replayed.

mod common;

use std::fs;

use common::{DEADLINE, Proxy, free_address, kill, wait_until};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

#[test]
fn a_certificate_with_another_key_is_refused_and_changes_nothing() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    let https = https.to_string();
    let certificate = format!("{FIXTURES}/example.pem");
    let error = proxy.fails(&[
        "certificate",
        "add",
        "-a",
        &https,
        "--certificate",
        &certificate,
        "--key",
        &format!("{FIXTURES}/localhost.key"),
    ]);
    assert!(error.contains("does not match"), "{error}");
    let listed = proxy.ok(&["certificate", "list", "--json"]);
    assert!(!listed.contains("example.com"), "{listed}");

    proxy.ok(&[
        "certificate",
        "add",
        "-a",
        &https,
        "--certificate",
        &certificate,
        "--key",
        &format!("{FIXTURES}/example.key"),
    ]);
    let listed = proxy.ok(&["certificate", "list", "--json"]);
    assert!(listed.contains("example.com"), "{listed}");
}

/// How many workers report the certificate for `expired.test`.
fn workers_with_expired_certificate(proxy: &Proxy) -> usize {
    proxy
        .ok(&["certificate", "list", "--workers", "--json"])
        .matches("expired.test")
        .count()
}

/// Issue 10, item 5: a certificate that expired blocked hot upgrades (the new main process
/// refused its own state) and vanished from restarted workers (their replay refused it).
#[test]
fn an_expired_certificate_of_the_state_survives_restarts_and_upgrades() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    let certificate = fs::read_to_string(format!("{FIXTURES}/expired.pem")).unwrap();
    let key = fs::read_to_string(format!("{FIXTURES}/expired.key")).unwrap();

    // A client's order is judged against the clock.
    let error = proxy.fails(&[
        "certificate",
        "add",
        "-a",
        &https.to_string(),
        "--certificate",
        &format!("{FIXTURES}/expired.pem"),
        "--key",
        &format!("{FIXTURES}/expired.key"),
    ]);
    assert!(error.contains("expired"), "{error}");

    // A state holding it, as one saved while the certificate was still valid.
    let line = serde_json::json!({
        "type": "ADD_CERTIFICATE",
        "address": https.to_string(),
        "certificate": { "certificate": certificate, "key": key },
        "allow_expired": false,
    });
    let state = proxy.dir.path().join("old-state.json");
    fs::write(&state, format!("{line}\n")).unwrap();
    proxy.ok(&["state", "load", "-f", state.to_str().unwrap()]);
    assert!(proxy.ok(&["certificate", "list"]).contains("expired.test"));
    assert_eq!(workers_with_expired_certificate(&proxy), 2);

    // A worker that dies is restarted with the whole state.
    let pids = proxy.worker_pids();
    kill(pids[0], "KILL");
    assert!(wait_until(DEADLINE, || {
        let now = proxy.worker_pids();
        now.len() == 2 && !now.contains(&pids[0])
    }));
    assert!(wait_until(DEADLINE, || workers_with_expired_certificate(
        &proxy
    ) == 2));

    // A new main process takes the state it is handed, and so do its workers.
    let output = proxy.ok(&["upgrade", "-t", "20000"]);
    assert!(output.contains("2 worker(s) replaced"), "{output}");
    assert!(proxy.ok(&["certificate", "list"]).contains("expired.test"));
    assert_eq!(workers_with_expired_certificate(&proxy), 2);
}

/// Issue 11: `certificate list -w` is answered by each worker, and printed per worker.
#[test]
fn each_worker_lists_its_certificates() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    proxy.ok(&[
        "certificate",
        "add",
        "-a",
        &https.to_string(),
        "--certificate",
        &format!("{FIXTURES}/example.pem"),
        "--key",
        &format!("{FIXTURES}/example.key"),
    ]);
    let listed = proxy.ok(&["certificate", "list", "-w"]);
    let mut lines = listed.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("WORKER"), "{listed}");
    let mut workers: Vec<&str> = lines
        .filter(|line| line.contains("example.com"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, ["0", "1"], "{listed}");
}
