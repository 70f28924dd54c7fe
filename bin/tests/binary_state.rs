//! Saving and loading the routing state.

mod common;

use std::fs;

use common::{Backend, Proxy};

#[test]
fn a_saved_state_loaded_in_a_fresh_proxy_routes_the_same() {
    let backend = Backend::start("saved");
    let kept = tempfile::tempdir().unwrap();
    let state_file = kept.path().join("state.json");
    let state_path = state_file.to_str().unwrap();
    let proxy = Proxy::start("");
    proxy.route("app", "app.test", &backend);
    let http = proxy.http.to_string();
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
    let output = proxy.ok(&["state", "save", "-f", state_path]);
    assert!(output.contains("state saved"), "{output}");
    let saved = fs::read_to_string(&state_file).unwrap();
    assert!(saved.contains("ADD_BACKEND"), "{saved}");
    let (dir, config, listener) = proxy.stop_keeping_files();

    // A fresh proxy from the same configuration: the listener exists, nothing routes.
    let proxy = Proxy::start_with(dir, config, listener);
    assert_eq!(proxy.get("app.test").unwrap().0, 404);
    // The saved listener is the configuration's own: recreating it changes nothing, and the
    // rest of the file is applied, as Sōzu loads a state.
    let output = proxy.ok(&["state", "load", "-f", state_path]);
    assert!(output.contains("0 refused"), "{output}");
    assert!(!output.contains(" 0 already in force"), "{output}");
    assert_eq!(proxy.get("app.test").unwrap(), (200, "saved".to_string()));
    assert_eq!(proxy.get("deny.test").unwrap().0, 401);
    // Loading it again changes nothing at all.
    let output = proxy.ok(&["state", "load", "-f", state_path]);
    assert!(output.contains("0 applied"), "{output}");
    assert!(output.contains("0 refused"), "{output}");
    let stats = proxy.ok(&["state", "stats"]);
    assert!(stats.contains("clusters"), "{stats}");
}

#[test]
fn the_saved_state_is_loaded_at_start_and_saved_after_changes() {
    let backend = Backend::start("auto");
    let proxy = Proxy::start("saved_state = \"state.json\"\nautomatic_state_save = true");
    proxy.route("app", "app.test", &backend);
    let saved = fs::read_to_string(proxy.dir.path().join("state.json")).unwrap();
    assert!(saved.contains("app.test"), "{saved}");

    // Started again from the same folder, the proxy has the routing of its saved state.
    let (dir, config, http) = proxy.stop_keeping_files();
    let proxy = Proxy::start_with(dir, config, http);
    assert_eq!(proxy.get("app.test").unwrap(), (200, "auto".to_string()));
    // The configuration's listener, saved too, was recognised rather than refused.
    let log = proxy.log_text();
    assert!(log.contains("already in force, 0 refused"), "{log}");
}

#[test]
fn a_conflicting_line_of_a_state_file_is_named_and_the_rest_is_applied() {
    let backend = Backend::start("rest");
    let proxy = Proxy::start("");
    let address = backend.address;
    let http = proxy.http;
    let lines = [
        r#"{"type":"ADD_CLUSTER","cluster_id":"app"}"#.to_string(),
        // A frontend of a cluster that does not exist: refused.
        format!(
            r#"{{"type":"ADD_HTTP_FRONTEND","cluster_id":"nowhere","address":"{http}","hostname":"no.test"}}"#
        ),
        format!(
            r#"{{"type":"ADD_BACKEND","cluster_id":"app","backend_id":"app-1","address":"{address}"}}"#
        ),
        format!(
            r#"{{"type":"ADD_HTTP_FRONTEND","cluster_id":"app","address":"{http}","hostname":"app.test"}}"#
        ),
    ];
    let state_file = proxy.dir.path().join("state.json");
    fs::write(&state_file, lines.join("\n")).unwrap();
    let error = proxy.fails(&["state", "load", "-f", state_file.to_str().unwrap()]);
    assert!(error.contains("line 2: ADD_HTTP_FRONTEND"), "{error}");
    assert!(error.contains("3 applied"), "{error}");
    assert!(common::wait_until(common::DEADLINE, || proxy
        .get("app.test")
        .is_ok_and(|answer| answer == (200, "rest".to_string()))));
}

/// Sōzu 2.1's own state file (`shared/sozu/state-saved.sozu`, saved from
/// `shared/sozu/config.toml`) loads, detected by its content, and routes like that
/// configuration. Only its listen and backend ports are rewritten, to the test's.
#[test]
fn a_state_file_written_by_sozu_loads_and_routes() {
    let app = [Backend::start("app-1"), Backend::start("app-2")];
    let added = Backend::start("added-1");
    let proxy = Proxy::start("");
    let (https, tcp) = (common::free_address(), common::free_address());
    let original = fs::read_to_string(common::sozu_reference().join("state-saved.sozu")).unwrap();
    let ports = [
        (28080, proxy.http.port()),
        (28443, https.port()),
        (28081, tcp.port()),
        (23001, app[0].address.port()),
        (23002, app[1].address.port()),
        (23003, added.address.port()),
    ];
    let mut rewritten = original.clone();
    for (old, new) in ports {
        rewritten = rewritten.replace(&format!("\"port\":{old}}}"), &format!("\"port\":{new}}}"));
    }
    assert_ne!(rewritten, original);
    let state_file = proxy.dir.path().join("state-saved.sozu");
    fs::write(&state_file, rewritten).unwrap();

    let output = proxy.ok(&["state", "load", "-f", state_file.to_str().unwrap()]);
    assert!(output.contains("0 refused"), "{output}");
    let (status, body) = proxy.get("app.test").unwrap();
    assert_eq!(status, 200);
    assert!(body == "app-1" || body == "app-2", "{body}");
    // The TCP listener and cluster `db` came from the file too.
    assert!(common::get_through_tcp(tcp, &["app-2"]).ends_with("app-2"));
    let clusters = proxy.ok(&["cluster", "list"]);
    for cluster in ["app", "db", "added"] {
        assert!(clusters.contains(cluster), "{clusters}");
    }

    // Saved again in Sōzu's format: the same kinds of records, in the same order, and loading
    // it changes nothing.
    let saved = proxy.dir.path().join("saved-again.sozu");
    let saved_path = saved.to_str().unwrap();
    proxy.ok(&["state", "save", "-f", saved_path, "--format", "sozu"]);
    let kinds = |text: &str| -> Vec<String> {
        text.split('\0')
            .filter(|record| !record.trim().is_empty())
            .map(|record| {
                let value: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
                let request = value["content"]["request_type"].as_object().unwrap();
                request.keys().next().unwrap().clone()
            })
            .collect()
    };
    let written = fs::read_to_string(&saved).unwrap();
    let mut ours = kinds(&written);
    let mut sozu = kinds(&original);
    ours.sort();
    sozu.sort();
    assert_eq!(ours, sozu);
    // Each record has every field of Sōzu's record of its kind: Sōzu's reader refuses a record
    // without one of its lists or maps.
    let fields = |text: &str| -> std::collections::BTreeMap<String, Vec<String>> {
        let mut fields = std::collections::BTreeMap::new();
        for record in text.split('\0').filter(|record| !record.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
            let request = value["content"]["request_type"].as_object().unwrap();
            let (kind, record) = request.iter().next().unwrap();
            let mut keys: Vec<String> = record.as_object().unwrap().keys().cloned().collect();
            if let Some(certificate) = record["certificate"].as_object() {
                keys.extend(certificate.keys().map(|key| format!("certificate.{key}")));
            }
            keys.sort();
            fields.insert(kind.clone(), keys);
        }
        fields
    };
    let (ours, sozu) = (fields(&written), fields(&original));
    for (kind, keys) in &sozu {
        let missing: Vec<&String> = keys
            .iter()
            .filter(|key| !ours[kind].contains(key))
            .collect();
        assert!(missing.is_empty(), "{kind} lacks {missing:?}");
    }
    let output = proxy.ok(&["state", "load", "-f", saved_path]);
    assert!(output.contains("(0 applied,"), "{output}");
    assert!(output.contains("0 refused"), "{output}");
}
