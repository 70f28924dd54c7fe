//! A change that removes (or deactivates) a listener and activates one on the same address:
//! the workers still hold the old socket when the main process takes the change, so the new
//! listener must take that socket instead of binding the address again.

mod common;

use common::{Backend, Proxy, get_through_tcp, write_file};

/// The HTTP listener of the proxy becomes a TCP listener routed to `backend`, in one state
/// file, as an operator writes it.
fn http_to_tcp(proxy: &Proxy, backend: &Backend) -> String {
    let address = proxy.http;
    format!(
        r#"{{"type":"REMOVE_LISTENER","address":"{address}","proxy":"HTTP"}}
{{"type":"ADD_TCP_LISTENER","address":"{address}","expect_proxy":false,"front_timeout":60,"back_timeout":30,"connect_timeout":3}}
{{"type":"ADD_CLUSTER","cluster_id":"tcp","sticky_session":false,"https_redirect":false,"load_balancing":"ROUND_ROBIN"}}
{{"type":"ADD_BACKEND","cluster_id":"tcp","backend_id":"tcp-1","address":"{}"}}
{{"type":"ADD_TCP_FRONTEND","cluster_id":"tcp","address":"{address}"}}
{{"type":"ACTIVATE_LISTENER","address":"{address}","proxy":"TCP"}}
"#,
        backend.address
    )
}

/// Defect 1 of the twelfth wave: the load failed with `Address already in use`.
#[test]
fn a_state_file_replacing_a_listener_on_its_address_loads() {
    let proxy = Proxy::start("");
    let backend = Backend::start("tcp-backend");
    let file = write_file(
        proxy.dir.path(),
        "replace.state",
        &http_to_tcp(&proxy, &backend),
    );
    let output = proxy.ok(&["state", "load", "-f", file.to_str().unwrap()]);
    assert!(output.contains("0 refused"), "{output}");
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(
        listeners.contains(&format!("{}  TCP       yes", proxy.http)),
        "{listeners}"
    );
    for _ in 0..4 {
        assert!(get_through_tcp(proxy.http, &["tcp-backend"]).ends_with("tcp-backend"));
    }
    assert!(!proxy.log_text().contains("Address already in use"));
}

/// The same listener removed and added again with another setting, then activated: the
/// activation is not "already in force" (the removal took it away), and the address is
/// listened on again.
#[test]
fn a_state_file_re_adding_the_same_listener_activates_it() {
    let proxy = Proxy::start("");
    let address = proxy.http;
    let text = format!(
        r#"{{"type":"REMOVE_LISTENER","address":"{address}","proxy":"HTTP"}}
{{"type":"ADD_HTTP_LISTENER","address":"{address}","front_timeout":61}}
{{"type":"ACTIVATE_LISTENER","address":"{address}","proxy":"HTTP"}}
"#
    );
    let file = write_file(proxy.dir.path(), "again.state", &text);
    let output = proxy.ok(&["state", "load", "-f", file.to_str().unwrap()]);
    assert!(output.contains("0 refused"), "{output}");
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(
        listeners.contains(&format!("{address}  HTTP      yes")),
        "{listeners}"
    );
    let (status, _) = proxy
        .get("nobody.example")
        .expect("an answer on the listener");
    assert_eq!(status, 404);
}

/// A reload whose file has a TCP listener where the running one has an HTTP listener: the
/// same removal and activation on one address, in one change.
#[test]
fn a_reload_turning_an_http_listener_into_a_tcp_one_applies() {
    let proxy = Proxy::start("");
    let text = std::fs::read_to_string(&proxy.config).expect("the configuration");
    let tcp = text.replace("protocol = \"http\"", "protocol = \"tcp\"");
    assert_ne!(text, tcp);
    std::fs::write(&proxy.config, tcp).expect("write the configuration");
    let output = proxy.ok(&["reload"]);
    assert!(output.contains("done"), "{output}");
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(
        listeners.contains(&format!("{}  TCP       yes", proxy.http)),
        "{listeners}"
    );
    assert!(!proxy.log_text().contains("Address already in use"));
}
