//! `--json` prints Sōzu 2.1's shapes (issue 11): the output of every command whose `--json`
//! output Sōzu 2.1 printed for `shared/sozu/config.toml` (`shared/sozu/*.json`, listed in
//! `exit-status.txt`) is compared with it, field by field, for the same state. Only values
//! that depend on the run are compared by type: pids, ports, hashes and counts, metric values,
//! and the keys made of them (listener addresses). Everything else must be equal, with the
//! differences this proxy documents (doc/coming-from-sozu.md) listed in [`differs_by_design`].

mod common;

use std::{collections::BTreeSet, fs};

use common::{Backend, Proxy, free_address, sozu_reference};
use serde_json::Value;

/// A proxy with the state of `shared/sozu/config.toml`, on ephemeral ports: an HTTP, an HTTPS
/// and a TCP listener, cluster `app` (an HTTP and an HTTPS frontend for `app.test`, backends
/// app-1 and app-2 of weight 50) and cluster `db` (TCP), two workers. The backends of `app`
/// run, so that requests make figures.
fn proxy(backends: &[Backend; 2]) -> Proxy {
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
         backends = [\n  {{ address = \"{one}\", backend_id = \"app-1\" }},\n  \
         {{ address = \"{two}\", backend_id = \"app-2\", weight = 50 }},\n]\n\n\
         [clusters.db]\nprotocol = \"tcp\"\nfrontends = [ {{ address = \"{tcp}\" }} ]\n\
         backends = [ {{ address = \"127.0.0.1:23002\" }} ]\n",
        cert = assets.join("certificate.pem").display(),
        key = assets.join("key.pem").display(),
        one = backends[0].address,
        two = backends[1].address,
    );
    fs::write(&config, text).expect("write the configuration");
    Proxy::start_with(dir, config, http)
}

fn backends() -> [Backend; 2] {
    [Backend::start("app-1"), Backend::start("app-2")]
}

/// A fixture's JSON; Sōzu wrote a terminal escape (`ESC [s`) before some of them.
fn fixture(name: &str) -> Value {
    let path = sozu_reference().join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display()));
    let start = text.find('{').unwrap_or_default();
    serde_json::from_str(&text[start..]).unwrap_or_else(|_| panic!("{} as JSON", path.display()))
}

/// Objects keyed by values of the run (listener addresses, fingerprints): their entries are
/// compared with the fixture's first entry, not by key, and must be as many.
fn is_keyed_by_value(path: &str) -> bool {
    ["_listeners", ".certs"]
        .iter()
        .any(|suffix| path.ends_with(suffix))
}

/// Values of the run: compared by type only.
fn depends_on_the_run(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or_default();
    matches!(last, "pid" | "port")
        // Sōzu lists its workers in the order of a hash map.
        || path.starts_with(".WORKERS.vec")
        || path.contains("CLUSTER_HASHES.map.")
        || path.contains("REQUEST_COUNTS.map.")
        || path.contains(".certs.")
}

/// Differences this proxy documents (doc/coming-from-sozu.md, doc/cli.md "JSON output"): its
/// config-loaded frontends are tree rules (`position` 2, Sōzu's are 0); the TLS library of this
/// build has its own groups (no `X25519MLKEM768`) and picks signature schemes among those the
/// client offers (`signature_algorithms` is `[]`).
fn differs_by_design(path: &str) -> bool {
    path.ends_with(".position")
        || path.ends_with(".groups_list")
        || path.ends_with(".signature_algorithms")
}

/// The differences between `ours` and Sōzu's `sozu`, one line each, at `path`.
fn differences(path: &str, ours: &Value, sozu: &Value, out: &mut Vec<String>) {
    if differs_by_design(path) {
        return;
    }
    match (ours, sozu) {
        (Value::Object(ours), Value::Object(sozu)) if is_keyed_by_value(path) => {
            if sozu.len() != ours.len() {
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
            if ours.len() != sozu.len() {
                out.push(format!("{path}: {} items, Sōzu {}", ours.len(), sozu.len()));
            }
            for (index, (value, expected)) in ours.iter().zip(sozu).enumerate() {
                differences(&format!("{path}[{index}]"), value, expected, out);
            }
        }
        (ours, sozu) if depends_on_the_run(path) => {
            if kind(ours) != kind(sozu) {
                out.push(format!(
                    "{path}: {} here, {} in Sōzu's",
                    kind(ours),
                    kind(sozu)
                ));
            }
        }
        (ours, sozu) => {
            if ours != sozu {
                out.push(format!("{path}: {ours} here, {sozu} in Sōzu's"));
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `sozu --json ARGS` as JSON.
#[track_caller]
fn json(proxy: &Proxy, args: &[&str]) -> Value {
    let mut command = vec!["--json"];
    command.extend_from_slice(args);
    let output = proxy.ok(&command);
    serde_json::from_str(&output)
        .unwrap_or_else(|_| panic!("`{}` printed no JSON: {output}", args.join(" ")))
}

#[track_caller]
fn assert_same(proxy: &Proxy, args: &[&str], name: &str) {
    let mut out = Vec::new();
    differences("", &json(proxy, args), &fixture(name), &mut out);
    assert!(
        out.is_empty(),
        "`sozu --json {}` differs from {name}:\n{}",
        args.join(" "),
        out.join("\n")
    );
}

#[test]
fn queries_print_sozus_shapes_and_values() {
    let backends = backends();
    let proxy = proxy(&backends);
    assert_same(&proxy, &["status"], "status.json");
    assert_same(&proxy, &["state", "stats"], "state-stats.json");
    assert_same(&proxy, &["frontend", "list"], "frontend-list.json");
    assert_same(&proxy, &["listener", "list"], "listener-list.json");
    // Each worker answers the cluster queries, beside the main process (`main`).
    assert_same(&proxy, &["cluster", "list"], "cluster-list.json");
    let hashes = json(&proxy, &["cluster", "list"]);
    let answers = hashes["WORKER_RESPONSES"]["map"]
        .as_object()
        .expect("a map");
    assert!(
        answers.values().all(|answer| *answer == answers["main"]),
        "{hashes:#}"
    );
    assert_same(
        &proxy,
        &["cluster", "list", "-i", "app"],
        "cluster-list-id.json",
    );
    assert_same(
        &proxy,
        &["cluster", "list", "-d", "app.test"],
        "cluster-list-domain.json",
    );
}

#[test]
fn certificate_list_prints_the_main_states_certificates_whole() {
    let backends = backends();
    let proxy = proxy(&backends);
    assert_same(&proxy, &["certificate", "list"], "certificate-list.json");
    let listed = json(&proxy, &["certificate", "list"]);
    let certs = listed["CERTIFICATES_WITH_FINGERPRINTS"]["certs"]
        .as_object()
        .expect("certificates by fingerprint");
    let assets = sozu_reference().join("samples/lib/assets");
    let read = |name: &str| fs::read_to_string(assets.join(name)).expect("the sample's PEM");
    let certificate = certs.values().next().expect("one certificate");
    let pem = |field: &str| {
        certificate[field]
            .as_str()
            .map(str::trim_end)
            .map(str::to_string)
    };
    assert_eq!(
        pem("certificate"),
        Some(read("certificate.pem").trim_end().to_string())
    );
    assert_eq!(pem("key"), Some(read("key.pem").trim_end().to_string()));
    assert_eq!(certificate["names"], serde_json::json!(["lolcatho.st"]));
    // `-w`: each worker's certificates by listener, as Sōzu's workers answer.
    let workers = json(&proxy, &["certificate", "list", "-w"]);
    let answers = workers["WORKER_RESPONSES"]["map"]
        .as_object()
        .expect("a map");
    assert_eq!(answers.len(), 2, "{workers:#}");
    for answer in answers.values() {
        let by_address = &answer["content_type"]["CERTIFICATES_BY_ADDRESS"]["certificates"][0];
        assert_eq!(
            by_address["certificate_summaries"][0]["fingerprint"],
            Value::String(certs.keys().next().expect("a fingerprint").clone()),
            "{workers:#}"
        );
    }
}

/// The metric names a proxy that served HTTP requests has in common with Sōzu's output.
const SHARED_METRICS: &[(&str, &[&str])] = &[
    (
        "proxying",
        &[
            "http.requests",
            "client.connections",
            "bytes_in",
            "bytes_out",
            "request_time",
            "request_time_histogram",
        ],
    ),
    (
        "cluster",
        &[
            "requests",
            "bytes_in",
            "http.status.2xx",
            "cluster.available_backends",
            "request_time",
            "request_time_histogram",
            "backend_response_time",
            "backend_connection_time_histogram",
        ],
    ),
];

/// `metrics get --json`: Sōzu's `METRICS` (`main`, `workers`, `clusters`, `proxying`), each
/// figure `{"inner": {KIND: value}}` under Sōzu's name and of Sōzu's kind, distributions as
/// `PERCENTILES` and `NAME_histogram` in milliseconds. Figures of Sōzu's own internals
/// (`epoll_time`, `slab.*`, …) are not here, nor ours in Sōzu's output: names are compared
/// where both have them.
#[test]
fn metrics_get_prints_sozus_shape_and_names() {
    let backends = backends();
    let proxy = proxy(&backends);
    for _ in 0..20 {
        assert_eq!(proxy.get("app.test").expect("a response").0, 200);
    }
    let ours = json(&proxy, &["metrics", "get"]);
    let sozu = fixture("metrics-get.json");
    let keys = |value: &Value| -> BTreeSet<String> {
        value["METRICS"]
            .as_object()
            .map(|metrics| metrics.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&ours), keys(&sozu), "{ours:#}");
    let figures = |value: &Value, level: &str| -> Value {
        match level {
            "cluster" => value["METRICS"]["clusters"]["app"]["cluster"].clone(),
            _ => value["METRICS"][level].clone(),
        }
    };
    let mut out = Vec::new();
    for (level, shared) in SHARED_METRICS {
        let (ours, sozu) = (figures(&ours, level), figures(&sozu, level));
        for name in *shared {
            if ours.get(name).is_none() {
                out.push(format!("{level}.{name}: missing"));
            }
        }
        let names = ours
            .as_object()
            .into_iter()
            .flat_map(|figures| figures.keys());
        for name in names.filter(|name| sozu.get(name.as_str()).is_some()) {
            // Same kind, same fields; values are the run's.
            let (mine, theirs) = (&ours[name]["inner"], &sozu[name]["inner"]);
            let fields = |inner: &Value| -> BTreeSet<String> {
                let Some((kind, value)) = inner.as_object().and_then(|o| o.iter().next()) else {
                    return BTreeSet::new();
                };
                let mut fields = BTreeSet::from([kind.clone()]);
                fields.extend(
                    value
                        .as_object()
                        .into_iter()
                        .flat_map(|o| o.keys().cloned()),
                );
                fields
            };
            if fields(mine) != fields(theirs) {
                out.push(format!("{level}.{name}: {mine} here, {theirs} in Sōzu's"));
            }
        }
    }
    assert!(out.is_empty(), "{}", out.join("\n"));
    // Twenty requests of the cluster, as percentiles and as cumulative buckets.
    let cluster = figures(&ours, "cluster");
    assert_eq!(cluster["requests"]["inner"]["COUNT"], 20, "{cluster:#}");
    let histogram = &cluster["request_time_histogram"]["inner"]["HISTOGRAM"];
    assert_eq!(histogram["count"], 20, "{histogram:#}");
    let buckets = histogram["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.last().map(|b| &b["count"]), Some(&Value::from(20)));
    assert_eq!(
        cluster["request_time"]["inner"]["PERCENTILES"]["samples"],
        20
    );
}

#[test]
fn changes_print_sozus_empty_object_and_compact_keeps_ours() {
    let backends = backends();
    let proxy = proxy(&backends);
    for (args, name) in [
        (
            &[
                "cluster",
                "add",
                "--id",
                "added",
                "--load-balancing-policy",
                "round_robin",
            ][..],
            "mutation-cluster-add.json",
        ),
        (
            &[
                "backend",
                "add",
                "--id",
                "added",
                "--backend-id",
                "added-1",
                "--address",
                "127.0.0.1:23003",
            ][..],
            "mutation-backend-add.json",
        ),
        // `cluster add` on an existing id is an update, as in Sōzu.
        (
            &[
                "cluster",
                "add",
                "--id",
                "app",
                "--load-balancing-policy",
                "random",
            ][..],
            "mutation-upsert.json",
        ),
    ] {
        assert_eq!(json(&proxy, args), fixture(name), "{args:?}");
    }
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
    let backends = backends();
    let proxy = proxy(&backends);
    let remove_backend = [
        "backend",
        "remove",
        "--id",
        "no-such-cluster",
        "--backend-id",
        "nope",
        "--address",
        "127.0.0.1:1",
    ];
    let remove_listener = ["listener", "http", "remove", "--address", "127.0.0.1:29999"];
    for (command, fixture) in [
        (&remove_backend[..], "mutation-failure"),
        (&remove_listener[..], "mutation-failure-listener"),
    ] {
        for json in [true, false] {
            let args: Vec<&str> = json
                .then_some("--json")
                .into_iter()
                .chain(command.iter().copied())
                .collect();
            let output = proxy.sozu(&args);
            assert_eq!(output.status.code(), Some(1), "{output:?}");
            assert_eq!(common::text(&output.stdout), "", "{output:?}");
            let ours = common::text(&output.stderr);
            // Sōzu's text, with its message (its own wording) replaced by ours; the file also
            // has Sōzu's start-up lines about logs, which this proxy does not print.
            let name = format!("{fixture}.{}", if json { "json" } else { "txt" });
            let sozu = fs::read_to_string(sozu_reference().join(&name)).expect("the fixture");
            let start = sozu.find("\nRequest failed: ").expect("Sōzu's failure");
            let expected = sozu[start..].replace(failure_message(&sozu), failure_message(&ours));
            assert_eq!(ours, expected, "{name}");
        }
    }
}
