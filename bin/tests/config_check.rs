//! `sozu config check` run as a program: its output and exit status.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(program: &str, config: &Path, extra: &[&str]) -> Output {
    Command::new(program)
        .args(["config", "check", "-c"])
        .arg(config)
        .args(extra)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sample_config_is_valid_and_shows_its_orders() {
    let output = check(
        env!("CARGO_BIN_EXE_sozu"),
        &root().join("bin/config.toml"),
        &[],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("ADD_HTTP_LISTENER 127.0.0.1:8080\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ADD_HTTPS_FRONTEND 127.0.0.1:8443 localhost -> answer 200"),
        "{stdout}"
    );
    assert!(
        stderr.contains("valid, 6 order(s), 0 warning(s)"),
        "{stderr}"
    );
}

#[test]
fn sozu_2_1_config_is_valid_with_warnings() {
    let fixture = root().join("command/tests/fixtures/sozu-2.1.toml");
    let output = check(env!("CARGO_BIN_EXE_sozuctl"), &fixture, &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: `handle_process_affinity` at line"),
        "{stderr}"
    );
    assert!(
        stdout.contains("ADD_TCP_FRONTEND 127.0.0.1:8081 -> cluster TcpTest"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ADD_HTTP_FRONTEND 127.0.0.1:8080 www.lolcatho.st -> redirect 301"),
        "{stdout}"
    );
}

#[test]
fn json_prints_one_order_per_line() {
    let output = check(
        env!("CARGO_BIN_EXE_sozu"),
        &root().join("bin/config.toml"),
        &["--json"],
    );
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let types: Vec<String> = stdout
        .lines()
        .map(|line| {
            let order: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            order["type"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(types.len(), 6);
    assert_eq!(types[0], "ADD_HTTP_LISTENER");
    assert_eq!(types[5], "ADD_HTTPS_FRONTEND");
}

#[test]
fn invalid_config_fails_with_the_key_and_line() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("config.toml");
    std::fs::write(
        &config,
        "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:8080\"\nfron_timeout = 3\n",
    )
    .unwrap();
    let output = check(env!("CARGO_BIN_EXE_sozu"), &config, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: unknown key `fron_timeout` in [[listeners]] at line 4"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn missing_config_file_fails() {
    let output = check(
        env!("CARGO_BIN_EXE_sozu"),
        Path::new("/nonexistent/sozu.toml"),
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read the configuration file /nonexistent/sozu.toml"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_sozu"))
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("pass -c/--config FILE"));
}

/// Issue 10, item 4: what the workers would refuse (here a template naming a capture the
/// frontend cannot have) passed the check, then failed in the workers.
#[test]
fn orders_the_workers_would_refuse_fail_the_check() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("config.toml");
    std::fs::write(
        &config,
        "[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:8080\"\n\
         [clusters.c]\nprotocol = \"http\"\n\
         frontends = [{ address = \"127.0.0.1:8080\", hostname = \"a.test\", rewrite_host = \"$HOST[3]\" }]\n",
    )
    .unwrap();
    let output = check(env!("CARGO_BIN_EXE_sozu"), &config, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`$HOST[3]` does not exist"), "{stderr}");
}
