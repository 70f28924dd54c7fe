//! Sōzu 2.1's own sample configurations, read from `shared/sozu/samples/` as its repository
//! ships them, pass `config check` unchanged and start: requests to their frontends reach
//! backends started by the test. Only listen addresses (and the sample's command socket, a
//! path on its author's machine) are rewritten, to ephemeral ports on 127.0.0.1 and the test's
//! folder.

mod common;

use std::{
    collections::HashMap,
    fs,
    net::SocketAddr,
    path::Path,
    process::{Command, Output},
};

use common::{Backend, Proxy, SOZU, free_address, get_path, get_through_tcp, sozu_reference, text};

/// `sozu config check -c CONFIG`, run from `current_folder`.
fn check(config: &Path, current_folder: &Path) -> Output {
    Command::new(SOZU)
        .args(["config", "check", "-c"])
        .arg(config)
        .current_dir(current_folder)
        .output()
        .expect("run sozu config check")
}

#[test]
fn sozu_bin_sample_passes_config_check_unchanged() {
    let samples = sozu_reference().join("samples");
    let output = check(&samples.join("bin/config.toml"), &samples.join("bin"));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "info: `address` at line 545: no listener at 0.0.0.0:8081, so one is created (TCP"
        ),
        "{stderr}"
    );
    assert!(text(&output.stdout).contains("ADD_TCP_LISTENER 0.0.0.0:8081"));
}

#[test]
fn sozu_command_sample_passes_config_check_from_its_folder() {
    let samples = sozu_reference().join("samples");
    // Sōzu's tests run it from `command/`: its `./assets/…` paths are relative to there.
    let output = check(
        &samples.join("command/assets/config.toml"),
        &samples.join("command"),
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for created in [
        "0.0.0.0:81, so one is created (HTTP",
        "0.0.0.0:8080, so one is created (TCP",
    ] {
        assert!(stderr.contains(created), "{stderr}");
    }
}

/// The sample's text with each address of `addresses` replaced by its new value, and the
/// command socket by `sozu.sock` (in the configuration's folder).
fn rewrite(text: &str, addresses: &HashMap<&str, SocketAddr>) -> String {
    let mut text = text
        .lines()
        .map(|line| {
            if line.starts_with("command_socket") {
                "command_socket = \"sozu.sock\"".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (old, new) in addresses {
        text = text.replace(&format!("\"{old}\""), &format!("\"{new}\""));
    }
    text
}

/// Starts the sample `relative` (under `samples/`) from `current_folder` (under `samples/`),
/// with its addresses rewritten.
fn start_sample(
    relative: &str,
    current_folder: &str,
    addresses: &HashMap<&str, SocketAddr>,
    http: &str,
    workers: usize,
) -> Proxy {
    let samples = sozu_reference().join("samples");
    let original = fs::read_to_string(samples.join(relative)).expect("read the sample");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = dir.path().join("config.toml");
    fs::write(&config, rewrite(&original, addresses)).expect("write the configuration");
    Proxy::launch(
        Path::new(SOZU),
        dir,
        config,
        addresses[http],
        &samples.join(current_folder),
        workers,
    )
}

#[test]
fn sozu_bin_sample_starts_and_routes() {
    let app = Backend::start("my-app");
    let tcp = [Backend::start("tcp-4000"), Backend::start("tcp-4001")];
    let addresses = HashMap::from([
        ("0.0.0.0:8080", free_address()),
        ("0.0.0.0:8443", free_address()),
        ("0.0.0.0:8081", free_address()),
        ("127.0.0.1:1026", app.address),
        ("127.0.0.1:4000", tcp[0].address),
        ("127.0.0.1:4001", tcp[1].address),
    ]);
    let proxy = start_sample("bin/config.toml", "bin", &addresses, "0.0.0.0:8080", 2);
    assert_eq!(
        get_path(proxy.http, "lolcatho.st", "/api/cats").unwrap(),
        (200, "my-app".to_string())
    );
    // The TCP listener was created for the frontend; it reaches one of the two backends.
    let names = ["tcp-4000", "tcp-4001"];
    let response = get_through_tcp(addresses["0.0.0.0:8081"], &names);
    assert!(
        names.iter().any(|name| response.ends_with(name)),
        "{response}"
    );
}

#[test]
fn sozu_command_sample_starts_and_routes() {
    let sticky = [Backend::start("b-1026"), Backend::start("b-1027")];
    let example = Backend::start("example");
    let tcp = [Backend::start("tcp-1029"), Backend::start("tcp-1030")];
    let addresses = HashMap::from([
        ("0.0.0.0:80", free_address()),
        ("0.0.0.0:443", free_address()),
        ("0.0.0.0:1234", free_address()),
        ("0.0.0.0:81", free_address()),
        ("0.0.0.0:8080", free_address()),
        ("0.0.0.0:8081", free_address()),
        ("127.0.0.1:1026", sticky[0].address),
        ("127.0.0.1:1027", sticky[1].address),
        ("127.0.0.1:1028", example.address),
        ("127.0.0.1:1029", tcp[0].address),
        ("127.0.0.1:1030", tcp[1].address),
    ]);
    let proxy = start_sample(
        "command/assets/config.toml",
        "command",
        &addresses,
        "0.0.0.0:80",
        1,
    );
    let (status, body) = get_path(proxy.http, "lolcatho.st", "/").unwrap();
    assert_eq!(status, 200);
    assert!(body == "b-1026" || body == "b-1027", "{body}");
    // The listeners created for frontends: HTTP on :81 and TCP on :8080.
    assert_eq!(
        get_path(addresses["0.0.0.0:81"], "example.com", "/").unwrap(),
        (200, "example".to_string())
    );
    let names = ["tcp-1029", "tcp-1030"];
    let response = get_through_tcp(addresses["0.0.0.0:8080"], &names);
    assert!(
        names.iter().any(|name| response.ends_with(name)),
        "{response}"
    );
}
