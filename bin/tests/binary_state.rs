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
    // The saved listener is the configuration's: loading refuses that line, changes nothing.
    let error = proxy.fails(&["state", "load", "-f", state_path]);
    assert!(error.contains("line 1"), "{error}");
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(proxy.get("app.test").unwrap().0, 404);

    // Without its listener lines, the file loads on top of the running state.
    let routing: Vec<&str> = saved
        .lines()
        .filter(|line| !line.contains("LISTENER"))
        .collect();
    fs::write(&state_file, routing.join("\n")).unwrap();
    let output = proxy.ok(&["state", "load", "-f", state_path]);
    assert!(output.contains("done"), "{output}");
    assert_eq!(proxy.get("app.test").unwrap(), (200, "saved".to_string()));
    assert_eq!(proxy.get("deny.test").unwrap().0, 401);
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
}
