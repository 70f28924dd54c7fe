//! Content routing orders through the real binary (issue 13): the command line sends TCP
//! frontends with rules and listeners with scripts; the main process and the workers refuse
//! what cannot be evaluated, naming it, and keep their state; `sozu reload` re-reads the
//! script and a broken one leaves the old one in force.

mod common;

use std::fs;

use common::{Proxy, free_address, write_file};
use sozu_command_lib::state::ConfigState;

const GOOD: &str = "function route(data, peer)\n  return { cluster = \"a\" }\nend\n";
const BROKEN: &str = "function route(data, peer)\n  return {\nend\n";

/// The saved state of the proxy.
fn saved_state(proxy: &Proxy) -> ConfigState {
    let path = proxy.dir.path().join("state.json");
    proxy.ok(&["state", "save", "-f", path.to_str().expect("a path")]);
    let file = fs::File::open(&path).expect("the saved state");
    ConfigState::load(std::io::BufReader::new(file)).expect("a valid saved state")
}

#[test]
fn rules_and_scripts_are_checked_by_the_main_process_and_the_workers() {
    let proxy = Proxy::start("");
    let good = write_file(proxy.dir.path(), "good.lua", GOOD);
    let broken = write_file(proxy.dir.path(), "broken.lua", BROKEN);
    let address = free_address().to_string();
    let a = address.as_str();

    let error = proxy.fails(&["listener", "tcp", "add", "-a", a, "--script", path(&broken)]);
    assert!(error.contains("does not load"), "{error}");
    assert!(error.contains("broken.lua:3:"), "{error}");
    let before = saved_state(&proxy);
    assert!(before.tcp_listeners.is_empty());

    proxy.ok(&[
        "listener",
        "tcp",
        "add",
        "-a",
        a,
        "--inspect-bytes",
        "512",
        "--script",
        path(&good),
    ]);
    proxy.ok(&["cluster", "add", "-i", "a"]);
    proxy.ok(&[
        "frontend", "tcp", "add", "-i", "a", "-a", a, "--sni", "a.test",
    ]);
    proxy.ok(&[
        "frontend",
        "tcp",
        "add",
        "-i",
        "a",
        "-a",
        a,
        "--protocol",
        "ssh",
    ]);
    proxy.ok(&["frontend", "tcp", "add", "-i", "a", "-a", a]);
    let before = saved_state(&proxy);

    let error = proxy.fails(&[
        "frontend", "tcp", "add", "-i", "a", "-a", a, "--sni", "A.test",
    ]);
    assert!(
        error.contains("already has a frontend with sni = \"A.test\""),
        "{error}"
    );
    let error = proxy.fails(&[
        "frontend", "tcp", "add", "-i", "a", "-a", a, "--regex", "(x",
    ]);
    assert!(error.contains("unclosed group"), "{error}");
    let error = proxy.fails(&[
        "frontend",
        "tcp",
        "add",
        "-i",
        "a",
        "-a",
        a,
        "--protocol",
        "gopher",
    ]);
    assert!(error.contains("gopher"), "{error}");
    let error = proxy.fails(&[
        "listener",
        "tcp",
        "update",
        "-a",
        a,
        "--script",
        path(&broken),
    ]);
    assert!(error.contains("does not load"), "{error}");
    assert_eq!(
        saved_state(&proxy),
        before,
        "a refused order changed the state"
    );

    let listener = &before.tcp_listeners[&a.parse().expect("an address")].config;
    assert_eq!(listener.inspect_bytes, 512);
    assert_eq!(
        listener.script.as_ref().map(|s| s.source.as_str()),
        Some(GOOD)
    );
    let listed = proxy.ok(&["frontend", "list", "--tcp"]);
    assert!(listed.contains("sni = \"a.test\""), "{listed}");
    assert!(listed.contains("protocol = \"ssh\""), "{listed}");
    let log = proxy.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn reload_rereads_the_script_and_a_broken_one_is_refused() {
    let address = free_address();
    let listener = format!(
        "[[listeners]]\nprotocol = \"tcp\"\naddress = \"{address}\"\nscript = \"route.lua\"\n\n\
         [clusters.a]\nprotocol = \"tcp\"\nfrontends = [ {{ address = \"{address}\" }} ]\n"
    );
    let (dir, config, http) = Proxy::prepare("");
    write_file(dir.path(), "route.lua", GOOD);
    let text = fs::read_to_string(&config).expect("the configuration") + &listener;
    fs::write(&config, text).expect("write the configuration");
    let proxy = Proxy::start_with(dir, config, http);
    let script = |proxy: &Proxy| {
        saved_state(proxy).tcp_listeners[&address]
            .config
            .script
            .as_ref()
            .map(|s| s.source.clone())
    };
    assert_eq!(script(&proxy).as_deref(), Some(GOOD));

    let newer = GOOD.replace("\"a\"", "\"a\", data = \"x\"");
    write_file(proxy.dir.path(), "route.lua", &newer);
    proxy.ok(&["reload"]);
    assert_eq!(script(&proxy), Some(newer.clone()));

    write_file(proxy.dir.path(), "route.lua", BROKEN);
    let error = proxy.fails(&["reload"]);
    assert!(error.contains("route.lua"), "{error}");
    assert_eq!(script(&proxy), Some(newer), "the old script stays");
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A TCP server that writes `name` to each connection, ends its stream, and reads what the
/// client sends until it closes (closing with unread bytes would reset the connection);
/// returns its address.
fn greeter(name: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a backend");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut stream, name.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
            });
        }
    });
    address
}

/// A script that sends every connection to `remote`.
fn to_remote(remote: std::net::SocketAddr) -> String {
    format!("function route(data, peer)\n  return {{ remote = \"{remote}\" }}\nend\n")
}

/// What the backend a new connection to `proxy` reaches says.
fn greeting(proxy: std::net::SocketAddr) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(proxy).ok()?;
    stream.set_read_timeout(Some(common::DEADLINE)).ok()?;
    let mut greeting = String::new();
    std::io::Read::read_to_string(&mut stream, &mut greeting).ok()?;
    Some(greeting)
}

#[test]
fn sozu_route_runs_one_listener_decided_by_its_script_and_its_script_reloads_live() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (one, two) = (greeter("one"), greeter("two"));
    let script = write_file(dir.path(), "route.lua", &to_remote(one));
    let proxy = free_address();
    let socket = dir.path().join("route.sock");
    let log = fs::File::create(dir.path().join("route.log")).expect("a log file");
    let mut route = std::process::Command::new(common::SOZU)
        .args([
            "route",
            path(&script),
            "--bind",
            &proxy.to_string(),
            "-w",
            "2",
        ])
        .arg("--command-socket")
        .arg(&socket)
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .expect("sozu route");
    let sozu = |args: &[&str]| {
        std::process::Command::new(common::SOZU)
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .expect("run the command line")
    };
    assert!(
        common::wait_until(common::DEADLINE, || greeting(proxy).as_deref()
            == Some("one")),
        "sozu route serves: {}",
        fs::read_to_string(dir.path().join("route.log")).unwrap_or_default()
    );
    assert!(dir.path().join("route.toml").exists());

    // Live reload through the proxy's own command socket: every worker took the new script
    // once the order succeeded.
    write_file(dir.path(), "route.lua", &to_remote(two));
    let update = [
        "listener",
        "tcp",
        "update",
        "-a",
        &proxy.to_string(),
        "--script",
    ];
    let output = sozu(&[&update[..], &[path(&script)]].concat());
    assert!(output.status.success(), "{}", common::text(&output.stderr));
    for _ in 0..4 {
        assert_eq!(greeting(proxy).as_deref(), Some("two"));
    }

    write_file(dir.path(), "route.lua", BROKEN);
    let output = sozu(&[&update[..], &[path(&script)]].concat());
    assert!(!output.status.success());
    let error = common::text(&output.stderr);
    assert!(error.contains("route.lua:3:"), "{error}");
    for _ in 0..4 {
        assert_eq!(
            greeting(proxy).as_deref(),
            Some("two"),
            "the old script stays"
        );
    }
    let _ = route.kill();
    let _ = route.wait();
}

#[test]
fn frontend_list_shows_each_rule_with_its_hit_count() {
    let proxy = Proxy::start("");
    let address = free_address();
    let a = address.to_string();
    let backend = greeter("hello");
    proxy.ok(&["listener", "tcp", "add", "-a", &a]);
    proxy.ok(&["cluster", "add", "-i", "greeted"]);
    proxy.ok(&[
        "backend",
        "add",
        "-i",
        "greeted",
        "--backend-id",
        "greeted-0",
        "-a",
        &backend.to_string(),
    ]);
    proxy.ok(&[
        "frontend", "tcp", "add", "-i", "greeted", "-a", &a, "--prefix", "hi",
    ]);
    proxy.ok(&["listener", "tcp", "activate", "-a", &a]);
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(address).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        std::io::Write::write_all(&mut stream, b"hi there").expect("send");
        let mut greeting = String::new();
        std::io::Read::read_to_string(&mut stream, &mut greeting).expect("read");
        assert_eq!(greeting, "hello");
    }
    let listed = proxy.ok(&["frontend", "list"]);
    let row = listed
        .lines()
        .find(|line| line.contains("prefix"))
        .unwrap_or_else(|| panic!("no TCP rule in {listed}"));
    assert!(row.contains("cluster greeted (3 hits)"), "{listed}");
}
