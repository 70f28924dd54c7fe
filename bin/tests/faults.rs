//! Faults through the real binary: orders from the command line and the configuration file,
//! refusals that change nothing, leases that end by themselves with an event, `fault list`
//! with the connections each fault touched, a lease measured on live traffic.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{DEADLINE, EventStream, Proxy, SOZU, events_of, wait_until};
use serde_json::Value;

const CONFIG: &str = r#"
[clusters.api]
protocol = "http"

[[faults]]
name = "from-file"
cluster_id = "api"
type = "http_error"
status = 503
body = "injected"
"#;

fn listed(proxy: &Proxy) -> Vec<Value> {
    let output = proxy.ok(&["fault", "list", "--json"]);
    let value: Value = serde_json::from_str(&output).expect("JSON");
    value["data"].as_array().cloned().unwrap_or_default()
}

fn names(proxy: &Proxy) -> Vec<String> {
    listed(proxy)
        .iter()
        .filter_map(|fault| fault["fault"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn faults_are_added_refused_listed_and_reset() {
    let proxy = Proxy::start(CONFIG);
    assert_eq!(names(&proxy), ["from-file"]);
    proxy.ok(&[
        "fault",
        "add",
        "-n",
        "slow",
        "-i",
        "api",
        "--type",
        "latency",
        "--latency",
        "200",
        "--probability",
        "0.5",
        "--seed",
        "3",
    ]);
    let table = proxy.ok(&["fault", "list"]);
    assert!(
        table.contains("NAME") && table.contains("TOUCHED"),
        "{table}"
    );
    assert!(
        table.contains("slow") && table.contains("latency"),
        "{table}"
    );
    let slow = &listed(&proxy)[1];
    assert_eq!(slow["fault"]["latency"], 200);
    assert_eq!(slow["touched"], 0);
    assert_eq!(slow["remaining_ms"], Value::Null);

    let refusals: [(&[&str], &str); 5] = [
        (&["-i", "api", "--type", "lag"], "unknown fault type"),
        (
            &["-i", "api", "--type", "latency", "--probability", "1.5"],
            "probability",
        ),
        (
            &["-i", "api", "--type", "latency", "--latency", "-200"],
            "`latency` is -200",
        ),
        (
            &["-i", "api", "--type", "latency", "--ttl", "999999999"],
            "ttl",
        ),
        (&["-i", "nope", "--type", "down"], "no cluster `nope`"),
    ];
    for (flags, expected) in refusals {
        let mut args = vec!["fault", "add", "-n", "bad"];
        args.extend_from_slice(flags);
        let error = proxy.fails(&args);
        assert!(error.contains(expected), "{flags:?}: {error}");
        assert_eq!(
            names(&proxy),
            ["from-file", "slow"],
            "{flags:?} changed the faults"
        );
    }
    let error = proxy.fails(&["fault", "add", "-n", "slow", "-i", "api", "--type", "down"]);
    assert!(error.contains("already exists"), "{error}");

    proxy.ok(&["fault", "update", "-n", "slow", "--latency", "50"]);
    assert_eq!(listed(&proxy)[1]["fault"]["latency"], 50);
    proxy.ok(&["fault", "remove", "-n", "slow"]);
    assert_eq!(names(&proxy), ["from-file"]);
    proxy.ok(&["fault", "reset"]);
    assert!(names(&proxy).is_empty());
}

#[test]
fn a_lease_ends_by_itself_and_events_say_so() {
    let proxy = Proxy::start(CONFIG);
    proxy.ok(&["fault", "reset"]);
    let mut events = EventStream::subscribe(&proxy);
    let added = Instant::now();
    proxy.ok(&[
        "fault", "add", "-n", "leased", "-i", "api", "--type", "down", "--ttl", "1",
    ]);
    let lease = listed(&proxy)[0]["remaining_ms"].as_u64().expect("a lease");
    assert!(lease <= 1_000, "{lease}");
    assert!(
        events.wait_for(|seen| events_of(seen, "FAULT_STARTED").any(|event| {
            event["cluster_id"] == "api"
                && event["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("fault `leased`"))
        })),
        "{:?}",
        events.seen
    );
    assert!(
        events.wait_for(|seen| events_of(seen, "FAULT_EXPIRED").next().is_some()),
        "{:?}",
        events.seen
    );
    assert!(added.elapsed() >= Duration::from_secs(1), "expired early");
    assert!(names(&proxy).is_empty());
}

#[test]
fn sozu_chaos_proxies_with_its_behaviours_as_faults() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let backend = std::net::TcpListener::bind("127.0.0.1:0").expect("a backend");
    let backend_address = backend.local_addr().expect("its address");
    thread::spawn(move || {
        for stream in backend.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = std::io::Write::write_all(&mut stream, b"hello");
        }
    });
    let proxy_address = common::free_address();
    let socket = dir.path().join("chaos.sock");
    let mut chaos = Command::new(SOZU)
        .args(["chaos", "--proxy", &proxy_address.to_string()])
        .args(["--backend", &backend_address.to_string()])
        .args([
            "--behavior",
            "20:delay,10:error,5:dummy",
            "--protocol",
            "redis",
        ])
        .arg("--command-socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sozu chaos");
    let faults = || {
        Command::new(SOZU)
            .args(["fault", "list", "--json", "--socket"])
            .arg(&socket)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| common::text(&output.stdout))
    };
    let mut listed = None;
    assert!(wait_until(DEADLINE, || {
        listed = faults();
        listed.is_some()
    }));
    let listed: Value = serde_json::from_str(&listed.unwrap_or_default()).expect("JSON");
    let names: Vec<&str> = listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|fault| fault["fault"]["name"].as_str())
        .collect();
    assert_eq!(names, ["chaos-delay", "chaos-error"]);
    assert!(dir.path().join("chaos.toml").exists());
    let mut greeting = Vec::new();
    assert!(wait_until(DEADLINE, || {
        greeting.clear();
        std::net::TcpStream::connect(proxy_address)
            .and_then(|mut stream| std::io::Read::read_to_end(&mut stream, &mut greeting))
            .is_ok()
            && greeting == b"hello"
    }));
    let _ = chaos.kill();
    let _ = chaos.wait();
}

#[test]
fn the_lease_of_a_fault_of_the_configuration_file_starts_with_the_proxy() {
    let proxy = Proxy::start(&format!("{CONFIG}ttl = 1\n"));
    assert_eq!(names(&proxy), ["from-file"]);
    assert!(wait_until(DEADLINE, || names(&proxy).is_empty()));
}

/// A TCP backend that greets every connection with `hello`, then closes it.
fn greeter() -> std::net::SocketAddr {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").expect("a backend");
    let address = backend.local_addr().expect("its address");
    thread::spawn(move || {
        for stream in backend.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = std::io::Write::write_all(&mut stream, b"hello");
        }
    });
    address
}

/// Whether a connection to `address` is proxied to the greeter (not blacked out).
fn greeted(address: std::net::SocketAddr) -> bool {
    let mut greeting = Vec::new();
    std::net::TcpStream::connect(address)
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(DEADLINE))?;
            std::io::Read::read_to_end(&mut stream, &mut greeting)
        })
        .is_ok()
        && greeting == b"hello"
}

#[test]
fn a_two_second_lease_ends_the_fault_on_traffic_between_2_and_2_5_seconds() {
    let listener = common::free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"tcp\"\naddress = \"{listener}\"\n\n\
         [clusters.greet]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"{listener}\" }}]\n\
         backends = [{{ address = \"{}\" }}]\n",
        greeter()
    ));
    assert!(wait_until(DEADLINE, || greeted(listener)));
    let added = Instant::now();
    proxy.ok(&[
        "fault", "add", "-n", "dark", "-i", "greet", "--type", "blackout", "--ttl", "2",
    ]);
    assert!(!greeted(listener), "the fault acts");
    let mut touched = 0;
    assert!(wait_until(DEADLINE, || {
        touched = listed(&proxy)
            .first()
            .and_then(|fault| fault["touched"].as_u64())
            .unwrap_or(0);
        touched >= 1
    }));
    assert!(wait_until(DEADLINE, || greeted(listener)));
    let ended = added.elapsed();
    assert!(
        ended >= Duration::from_secs(2) && ended <= Duration::from_millis(2_500),
        "{ended:?}"
    );
}
