//! A listener activated on an address the main process cannot bind (a port another program
//! holds, an address of another host): the main process binds before its state takes the
//! activation, so the change is refused with the address and the system's error, and the
//! state keeps the listener inactive (the workers used to refuse it while the main state kept
//! it active: `listener list` said `yes`, and a state saved then made the next start fail).

mod common;

use std::{fs, net::TcpListener};

use common::{Proxy, write_file};

/// A port of this host that another program holds, with its holder.
fn held_port() -> (TcpListener, String) {
    let holder = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let address = holder.local_addr().expect("its address").to_string();
    (holder, address)
}

/// Whether `listener list` shows the HTTP listener of `address` with this activity.
fn listed(listeners: &str, address: &str, active: &str) -> bool {
    listeners.lines().any(|line| {
        line.split_whitespace()
            .take(3)
            .eq([address, "HTTP", active])
    })
}

#[test]
fn an_activation_on_a_held_port_is_refused_and_changes_nothing() {
    let proxy = Proxy::start("");
    let (holder, address) = held_port();
    proxy.ok(&["listener", "http", "add", "-a", &address]);
    let error = proxy.fails(&["listener", "http", "activate", "-a", &address]);
    assert!(
        error.contains(&format!("cannot listen on {address}"))
            && error.contains("Address already in use"),
        "{error}"
    );
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(listed(&listeners, &address, "no"), "{listeners}");

    let saved = proxy.dir.path().join("saved.state");
    proxy.ok(&["state", "save", "-f", saved.to_str().expect("a UTF-8 path")]);
    let saved = fs::read_to_string(&saved).expect("the saved state");
    let activation = format!(r#"{{"type":"ACTIVATE_LISTENER","address":"{address}""#);
    assert!(!saved.contains(&activation), "{saved}");

    drop(holder);
    proxy.ok(&["listener", "http", "activate", "-a", &address]);
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(listed(&listeners, &address, "yes"), "{listeners}");
}

#[test]
fn an_activation_on_an_address_of_another_host_is_refused() {
    let proxy = Proxy::start("");
    // TEST-NET-1 (RFC 5737): never an address of this host.
    let address = "192.0.2.1:80";
    proxy.ok(&["listener", "http", "add", "-a", address]);
    let error = proxy.fails(&["listener", "http", "activate", "-a", address]);
    assert!(
        error.contains(&format!("cannot listen on {address}"))
            && error.contains("Cannot assign requested address"),
        "{error}"
    );
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(listed(&listeners, address, "no"), "{listeners}");
}

/// A reload is one change: a listener it adds on a held port refuses all of it.
#[test]
fn a_reload_activating_a_held_port_changes_nothing() {
    let proxy = Proxy::start("");
    let (_holder, address) = held_port();
    let mut config = fs::read_to_string(&proxy.config).expect("the configuration");
    config.push_str(&format!(
        "\n[[listeners]]\nprotocol = \"http\"\naddress = \"{address}\"\n\n\
         [clusters.late]\nprotocol = \"http\"\nfrontends = [{{ address = \"{}\", hostname = \"late.test\" }}]\n\
         backends = [{{ address = \"127.0.0.1:1\" }}]\n",
        proxy.http
    ));
    fs::write(&proxy.config, config).expect("write the configuration");
    let error = proxy.fails(&["reload"]);
    assert!(
        error.contains(&format!("cannot listen on {address}"))
            && error.contains("Address already in use")
            && error.contains("nothing was changed"),
        "{error}"
    );
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(!listeners.contains(&address), "{listeners}");
    assert!(!proxy.ok(&["cluster", "list"]).contains("late"));
}

/// A state load is merged order by order, as in Sōzu: the activation is its refused line,
/// and the other lines are applied.
#[test]
fn a_state_load_activating_a_held_port_refuses_that_line() {
    let proxy = Proxy::start("");
    let (_holder, address) = held_port();
    let text = format!(
        r#"{{"type":"ADD_HTTP_LISTENER","address":"{address}"}}
{{"type":"ACTIVATE_LISTENER","address":"{address}","proxy":"HTTP"}}
{{"type":"ADD_CLUSTER","cluster_id":"kept"}}
"#
    );
    let file = write_file(proxy.dir.path(), "held.state", &text);
    let error = proxy.fails(&["state", "load", "-f", file.to_str().expect("a UTF-8 path")]);
    assert!(
        error.contains("2 applied")
            && error.contains("1 refused")
            && error.contains("line 2: ACTIVATE_LISTENER")
            && error.contains(&format!("cannot listen on {address}"))
            && error.contains("Address already in use"),
        "{error}"
    );
    let listeners = proxy.ok(&["listener", "list"]);
    assert!(listed(&listeners, &address, "no"), "{listeners}");
    assert!(proxy.ok(&["cluster", "list"]).contains("kept"));
}
