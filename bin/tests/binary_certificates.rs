//! Certificates through the command line: a key that is not the certificate's is refused by
//! the main process with its reason, and nothing changes; a key whose private part alone is
//! corrupt fails its first handshakes only; an expired certificate is judged once, when a
//! client adds it, and never again when the state is replayed.

mod common;

use std::{fs, net::SocketAddr, process::Command};

use common::{Backend, DEADLINE, Proxy, free_address, kill, wait_until};

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

/// Issue 17, aim 4: keys that are not keys, or of another type, are refused by the main
/// process with their reason, whether a client adds them or the configuration brings them.
#[test]
fn keys_that_are_not_the_certificate_s_are_refused_with_their_reason() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    let https = https.to_string();
    let not_a_key = common::write_file(
        proxy.dir.path(),
        "not-a-key.pem",
        "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n",
    );
    for (key, reason) in [
        (
            not_a_key.display().to_string(),
            "not a well-formed PKCS#8, PKCS#1 RSA or SEC1 EC key",
        ),
        (
            format!("{FIXTURES}/secp256k1.key"),
            "the private key type is not supported",
        ),
        (format!("{FIXTURES}/key.pem"), "does not match"),
    ] {
        let error = proxy.fails(&[
            "certificate",
            "add",
            "-a",
            &https,
            "--certificate",
            &format!("{FIXTURES}/example.pem"),
            "--key",
            &key,
        ]);
        assert!(error.contains(reason), "{key}: {error}");
    }
    let listed = proxy.ok(&["certificate", "list", "--json"]);
    assert!(!listed.contains("example.com"), "{listed}");

    let config = proxy.dir.path().join("mismatched.toml");
    fs::write(
        &config,
        format!(
            "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n\n\
             [clusters.web]\nprotocol = \"http\"\n\
             frontends = [{{ address = \"{https}\", hostname = \"example.com\", \
             certificate = \"{FIXTURES}/example.pem\", key = \"{FIXTURES}/localhost.key\" }}]\n\
             backends = [{{ address = \"127.0.0.1:1\" }}]\n"
        ),
    )
    .expect("write the configuration");
    let checked = Command::new(env!("CARGO_BIN_EXE_sozu"))
        .args(["config", "check", "-c"])
        .arg(&config)
        .output()
        .expect("the binary runs");
    let said = common::text(&checked.stderr) + &common::text(&checked.stdout);
    assert!(!checked.status.success(), "{said}");
    assert!(said.contains("does not match"), "{said}");
}

/// Issue 17, aim 4: the workers start while the main process checks the configuration's
/// orders; a refused one ends the start as before: an error naming it, the workers stopped,
/// no command socket left.
#[test]
fn a_start_whose_configuration_is_refused_leaves_nothing_running() {
    let (dir, config, _) = Proxy::prepare("");
    let https = free_address();
    let mut text = fs::read_to_string(&config).expect("read the configuration");
    text.push_str(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n\n\
         [clusters.web]\nprotocol = \"http\"\n\
         frontends = [{{ address = \"{https}\", hostname = \"example.com\", \
         certificate = \"{FIXTURES}/example.pem\", key = \"{FIXTURES}/localhost.key\" }}]\n\
         backends = [{{ address = \"127.0.0.1:1\" }}]\n"
    ));
    fs::write(&config, text).expect("write the configuration");
    let started = Command::new(env!("CARGO_BIN_EXE_sozu"))
        .args(["start", "-c"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("the binary runs");
    let said = common::text(&started.stderr) + &common::text(&started.stdout);
    assert!(!started.status.success(), "{said}");
    assert!(said.contains("does not match"), "{said}");
    assert!(!dir.path().join("sozu.sock").exists(), "{said}");
    assert!(!dir.path().join("sozu.pid").exists(), "{said}");
    // The listener is free again: the workers that held it are gone.
    assert!(
        wait_until(DEADLINE, || std::net::TcpListener::bind(https).is_ok()),
        "{said}"
    );
}

/// Whether curl completes a TLS handshake with `name` at `address` and gets an answer.
fn answers_over_tls(address: SocketAddr, name: &str) -> bool {
    Command::new("curl")
        .args(["-sk", "--max-time", "5", "-o", "/dev/null", "--resolve"])
        .arg(format!("{name}:{}:127.0.0.1", address.port()))
        .arg(format!("https://{name}:{}/", address.port()))
        .status()
        .expect("curl must be installed (.ci/install-test-tools installs it)")
        .success()
}

/// The handshakes the workers failed (`tls.handshake_failures`, all workers).
fn handshake_failures(proxy: &Proxy) -> u64 {
    let json = proxy.ok(&["metrics", "get", "--json=compact"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("metrics as JSON");
    value["data"]["proxy"]["tls.handshake_failures"]["COUNT"]
        .as_u64()
        .unwrap_or(0)
}

/// Issue 17, aim 4: the main process compares a key's public part with its certificate's and
/// no more, so a key whose private part alone is corrupt starts; the workers decode it at the
/// first handshake that needs it, which fails cleanly (logged, counted), and they go on
/// serving the other names.
#[test]
fn a_key_with_a_corrupt_private_part_fails_its_handshakes_only() {
    let https = free_address();
    let backend = Backend::start("web");
    let frontend = |hostname: &str, name: &str, key: &str| {
        format!(
            "{{ address = \"{https}\", hostname = \"{hostname}\", \
             certificate = \"{FIXTURES}/{name}.pem\", key = \"{FIXTURES}/{key}\" }}"
        )
    };
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n\n\
         [clusters.web]\nprotocol = \"http\"\nfrontends = [{}, {}]\n\
         backends = [{{ address = \"{}\" }}]\n",
        frontend("example.com", "example", "example-corrupt.key"),
        frontend("localhost", "localhost", "localhost.key"),
        backend.address,
    ));
    let workers = proxy.worker_pids();
    for _ in 0..2 {
        assert!(!answers_over_tls(https, "example.com"), "no key to serve");
        assert!(
            answers_over_tls(https, "localhost"),
            "the other name is served"
        );
    }
    assert!(
        wait_until(DEADLINE, || handshake_failures(&proxy) >= 2),
        "the failed handshakes are counted"
    );
    assert!(
        proxy
            .log_text()
            .contains("the private key does not decode; handshakes that need it fail"),
        "{}",
        proxy.log_text()
    );
    assert_eq!(proxy.worker_pids(), workers, "no worker died");
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
