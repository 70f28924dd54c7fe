//! `--json` prints Sōzu 2.1's shapes (issue 11): each output of the real binary is compared,
//! field by field, with what Sōzu 2.1 printed for the same state (`shared/sozu/*.json`, from
//! `shared/sozu/config.toml`). Values that depend on the run (pids, hashes, counts, addresses)
//! are compared by type; a field Sōzu printed as `null` (unset) may hold a value here.

mod common;

use std::fs;

use common::{Proxy, free_address, sozu_reference};
use serde_json::Value;

/// A proxy with the state of `shared/sozu/config.toml`, on ephemeral ports: an HTTP, an HTTPS
/// and a TCP listener, cluster `app` (an HTTP and an HTTPS frontend for `app.test`, two
/// backends) and cluster `db` (TCP).
fn proxy() -> Proxy {
    let assets = sozu_reference().join("samples/lib/assets");
    let https = free_address();
    let tcp = free_address();
    let (dir, config, http) = Proxy::prepare("");
    let text = fs::read_to_string(&config).expect("the configuration");
    let text = format!(
        "{text}\n[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n\n\
         [[listeners]]\nprotocol = \"tcp\"\naddress = \"{tcp}\"\n\n\
         [clusters.app]\nprotocol = \"http\"\nload_balancing = \"ROUND_ROBIN\"\n\
         frontends = [\n  {{ address = \"{http}\", hostname = \"app.test\" }},\n  \
         {{ address = \"{https}\", hostname = \"app.test\", certificate = \"{cert}\", key = \"{key}\" }},\n]\n\
         backends = [\n  {{ address = \"127.0.0.1:23001\", backend_id = \"app-1\" }},\n  \
         {{ address = \"127.0.0.1:23002\", backend_id = \"app-2\", weight = 50 }},\n]\n\n\
         [clusters.db]\nprotocol = \"tcp\"\nfrontends = [ {{ address = \"{tcp}\" }} ]\n\
         backends = [ {{ address = \"127.0.0.1:23002\" }} ]\n",
        cert = assets.join("certificate.pem").display(),
        key = assets.join("key.pem").display(),
    );
    fs::write(&config, text).expect("write the configuration");
    Proxy::start_with(dir, config, http)
}

fn fixture(name: &str) -> Value {
    let path = sozu_reference().join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{} as JSON", path.display()))
}

/// Objects keyed by run-dependent names (worker ids, listener addresses, tag keys): their
/// entries are compared with the fixture's first entry, not by key.
fn is_keyed_by_value(path: &str) -> bool {
    ["http_listeners", "https_listeners", "tcp_listeners", "map"]
        .iter()
        .any(|key| path.ends_with(&format!(".{key}")))
        && !path.ends_with("REQUEST_COUNTS.map")
}

/// The differences between the shapes of `ours` and `sozu`, one line each, at `path`.
fn differences(path: &str, ours: &Value, sozu: &Value, out: &mut Vec<String>) {
    match (ours, sozu) {
        (_, Value::Null) => {}
        (Value::Object(ours), Value::Object(sozu)) if is_keyed_by_value(path) => {
            if sozu.is_empty() != ours.is_empty() {
                out.push(format!(
                    "{path}: {} entries, Sōzu {}",
                    ours.len(),
                    sozu.len()
                ));
            }
            if let Some(sozu_entry) = sozu.values().next() {
                for value in ours.values() {
                    differences(&format!("{path}.*"), value, sozu_entry, out);
                }
            }
        }
        (Value::Object(ours), Value::Object(sozu)) => {
            for key in sozu.keys().filter(|key| !ours.contains_key(*key)) {
                out.push(format!("{path}.{key}: missing"));
            }
            for key in ours.keys().filter(|key| !sozu.contains_key(*key)) {
                out.push(format!("{path}.{key}: not in Sōzu's output"));
            }
            for (key, value) in ours {
                if let Some(expected) = sozu.get(key) {
                    differences(&format!("{path}.{key}"), value, expected, out);
                }
            }
        }
        (Value::Array(ours), Value::Array(sozu)) => {
            if let Some(expected) = sozu.first() {
                for value in ours {
                    differences(&format!("{path}[]"), value, expected, out);
                }
            }
        }
        (ours, sozu) => {
            let kind = |value: &Value| match value {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            if kind(ours) != kind(sozu) {
                out.push(format!(
                    "{path}: {} here, {} in Sōzu's",
                    kind(ours),
                    kind(sozu)
                ));
            }
        }
    }
}

#[track_caller]
fn assert_same_shape(proxy: &Proxy, args: &[&str], name: &str) {
    let mut command = vec!["--json"];
    command.extend_from_slice(args);
    let output = proxy.ok(&command);
    let ours: Value = serde_json::from_str(&output)
        .unwrap_or_else(|_| panic!("`{}` printed no JSON: {output}", args.join(" ")));
    let mut out = Vec::new();
    differences("", &ours, &fixture(name), &mut out);
    assert!(
        out.is_empty(),
        "`sozu --json {}` differs from {name}:\n{}",
        args.join(" "),
        out.join("\n")
    );
}

#[test]
fn queries_print_sozus_shapes() {
    let proxy = proxy();
    assert_same_shape(&proxy, &["status"], "status.json");
    assert_same_shape(&proxy, &["state", "stats"], "state-stats.json");
    assert_same_shape(&proxy, &["frontend", "list"], "frontend-list.json");
    assert_same_shape(&proxy, &["listener", "list"], "listener-list.json");
    assert_same_shape(&proxy, &["cluster", "list"], "cluster-list.json");
    assert_same_shape(
        &proxy,
        &["cluster", "list", "-i", "app"],
        "cluster-list-id.json",
    );
    assert_same_shape(
        &proxy,
        &["cluster", "list", "-d", "app.test"],
        "cluster-list-domain.json",
    );
}

#[test]
fn changes_print_sozus_empty_object_and_compact_keeps_ours() {
    let proxy = proxy();
    let added = proxy.ok(&[
        "--json",
        "cluster",
        "add",
        "--id",
        "added",
        "--load-balancing-policy",
        "round_robin",
    ]);
    let added: Value = serde_json::from_str(&added).expect("JSON");
    assert_eq!(added, fixture("mutation-cluster-add.json"));
    let compact = proxy.ok(&["status", "--json=compact"]);
    assert_eq!(compact.lines().count(), 1, "{compact}");
    let compact: Value = serde_json::from_str(&compact).expect("JSON");
    assert_eq!(compact["type"], "WORKERS", "{compact}");
    assert!(compact["data"].is_array(), "{compact}");
}

/// The message after `Request failed: ` in a failure's text.
fn failure_message(text: &str) -> &str {
    text.lines()
        .find_map(|line| line.strip_prefix("Request failed: "))
        .unwrap_or_else(|| panic!("no `Request failed:` line in {text:?}"))
}

#[test]
fn a_refused_order_is_told_as_sozu_tells_it() {
    let proxy = proxy();
    let remove = [
        "backend",
        "remove",
        "--id",
        "no-such-cluster",
        "--backend-id",
        "nope",
        "--address",
        "127.0.0.1:1",
    ];
    for (json, fixture) in [
        (true, "mutation-failure.json"),
        (false, "mutation-failure.txt"),
    ] {
        let args: Vec<&str> = json.then_some("--json").into_iter().chain(remove).collect();
        let output = proxy.sozu(&args);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert_eq!(common::text(&output.stdout), "", "{output:?}");
        let ours = common::text(&output.stderr);
        // Sōzu's text, with its message (its own wording) replaced by ours; the text file also
        // has Sōzu's start-up lines about logs, which this proxy does not print.
        let sozu = fs::read_to_string(sozu_reference().join(fixture)).expect("the fixture");
        let start = sozu.find("\nRequest failed: ").expect("Sōzu's failure");
        let expected = sozu[start..].replace(failure_message(&sozu), failure_message(&ours));
        assert_eq!(ours, expected);
    }
}
