//! Registrations with the real binary (issue 15): services register their own routes through
//! the client library, Python's standard library or raw JSON lines; a registration ends with
//! its connection (even on `kill -9`), its backend goes at once and what it created after
//! the grace period; the registration socket only takes registrations within its limits;
//! `DEREGISTER` answers once the workers dropped the backend; a hot upgrade keeps them.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::net::UnixStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use common::{Backend, DEADLINE, Proxy, free_address, wait_until};
use sozu_command_lib::registration::{Definition, listen};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

/// The Python service of doc/registration.md: registers, prints its registration id, and
/// serves its name until killed.
const PYTHON_SERVICE: &str = r#"
import json, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

sock_path, cluster, listen, hostname, prefix, name = sys.argv[1:7]

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = HTTPServer(("127.0.0.1", 0), Hello)
control = socket.socket(socket.AF_UNIX)
control.connect(sock_path)
order = {"type": "REGISTER", "cluster_id": cluster, "protocol": "http", "listen": listen,
         "hostname": hostname, "path_prefix": prefix,
         "backend": "127.0.0.1:%d" % server.server_port}
control.sendall(json.dumps({"id": "r1", "order": order}).encode() + b"\n")
for line in control.makefile():
    answer = json.loads(line)
    if answer["status"] != "PROCESSING":
        break
if answer["status"] != "OK":
    sys.exit(answer["message"])
print(answer["content"]["data"]["registration_id"], flush=True)
server.serve_forever()
"#;

/// A proxy with a registration socket (`register.sock` in its folder) and `registration` as
/// the rest of its `[registration]` section.
fn proxy_with_registration(registration: &str) -> Proxy {
    Proxy::start(&format!(
        "[registration]\nsocket = \"register.sock\"\n{registration}\n"
    ))
}

fn registration_socket(proxy: &Proxy) -> std::path::PathBuf {
    proxy.dir.path().join("register.sock")
}

/// One request for `path` of `host`, on a new connection: the status and the body.
fn get_path(address: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Starts the Python service; returns it once it printed its registration id.
fn python_service(socket: &Path, front: SocketAddr, name: &str) -> (Child, String) {
    common::start_registered(
        Command::new("python3")
            .arg("-c")
            .arg(PYTHON_SERVICE)
            .arg(socket)
            .args([name, &front.to_string(), "api.test", "/", name])
            .stdin(Stdio::null())
            // http.server logs every request there.
            .stderr(Stdio::null()),
    )
}

fn kill_hard(child: &mut Child) {
    common::kill(i64::from(child.id()), "KILL");
    let _ = child.wait();
}

fn frontend_listed(proxy: &Proxy, hostname: &str) -> bool {
    proxy.ok(&["frontend", "list"]).contains(hostname)
}

/// One JSON line on `socket`; the final answer's line.
fn order_line(socket: &Path, line: &str) -> String {
    answer_lines(socket, line).pop().expect("a final answer")
}

/// A registration of `hostname` with a 30 s `ttl`, on a listener and to a backend of ports
/// nobody uses; the final answer's line.
fn register_for_30s(socket: &Path, cluster_id: &str, hostname: &str) -> String {
    order_line(
        socket,
        &format!(
            r#"{{"id":"r","order":{{"type":"REGISTER","cluster_id":"{cluster_id}","protocol":"http","listen":"{}","hostname":"{hostname}","backend":"{}","ttl":30}}}}"#,
            free_address(),
            free_address()
        ),
    )
}

/// One JSON line on `socket`; the answer's lines, `PROCESSING` ones first.
fn answer_lines(socket: &Path, line: &str) -> Vec<String> {
    let mut stream = UnixStream::connect(socket).expect("connect to the socket");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut lines = Vec::new();
    for answer in BufReader::new(stream).lines() {
        let answer = answer.expect("an answer");
        let is_final = !answer.contains("\"PROCESSING\"");
        lines.push(answer);
        if is_final {
            return lines;
        }
    }
    panic!("no final answer to {line}");
}

#[test]
fn services_share_a_port_by_path_prefix_and_a_wildcard_hostname() {
    let proxy = proxy_with_registration("");
    let socket = registration_socket(&proxy);
    let front = free_address();
    let mut a_definition = Definition::http("a", front, "localhost").path_prefix("/a");
    // a's cluster does not hold (registrations hold 30 s by default): its end shows at once.
    a_definition.register.hold_timeout = Some(Duration::ZERO);
    let a = listen(&socket, a_definition).expect("a registers");
    let b = listen(
        &socket,
        Definition::http("b", front, "localhost").path_prefix("/b"),
    )
    .expect("b registers");
    let wild =
        listen(&socket, Definition::http("wild", front, "*.example.com")).expect("registers");
    let _a = Backend::serve("A", a.try_clone().unwrap());
    let _b = Backend::serve("B", b.try_clone().unwrap());
    let _wild = Backend::serve("W", wild.try_clone().unwrap());

    assert_eq!(
        get_path(front, "localhost", "/a").unwrap(),
        (200, "A".into())
    );
    assert_eq!(
        get_path(front, "localhost", "/b/x").unwrap(),
        (200, "B".into())
    );
    assert_eq!(
        get_path(front, "shop.example.com", "/").unwrap(),
        (200, "W".into())
    );
    assert_eq!(get_path(front, "localhost", "/c").unwrap().0, 404);

    let listed = proxy.ok(&["registration", "list"]);
    for expected in [a.registration_id(), b.registration_id(), wild.backend_id()] {
        assert!(
            listed.contains(&expected),
            "{expected} missing from:\n{listed}"
        );
    }
    assert!(listed.contains(&std::process::id().to_string()), "{listed}");

    // Dropping a registration deregisters it: its backend is gone at once, b still serves.
    drop(a);
    assert!(
        wait_until(DEADLINE, || get_path(front, "localhost", "/a")
            .is_ok_and(|(status, _)| status == 503)),
        "a's backend is still used"
    );
    assert_eq!(
        get_path(front, "localhost", "/b").unwrap(),
        (200, "B".into())
    );
}

#[test]
fn several_registrations_of_one_cluster_share_its_traffic() {
    let proxy = proxy_with_registration("");
    let socket = registration_socket(&proxy);
    let front = free_address();
    let one = listen(&socket, Definition::http("api", front, "api.test")).unwrap();
    let two = listen(&socket, Definition::http("api", front, "api.test")).unwrap();
    let _one = Backend::serve("1", one.try_clone().unwrap());
    let _two = Backend::serve("2", two.try_clone().unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(get_path(front, "api.test", "/").unwrap().1);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn an_https_service_is_served_with_the_certificate_it_sent() {
    let proxy = proxy_with_registration("");
    let front = free_address();
    let certificate = std::fs::read_to_string(format!("{FIXTURES}/example.pem")).unwrap();
    let key = std::fs::read_to_string(format!("{FIXTURES}/example.key")).unwrap();
    let secure = listen(
        registration_socket(&proxy),
        Definition::https("secure", front, "api.example.com", &certificate, &key),
    )
    .expect("registers over https");
    let _secure = Backend::serve("S", secure.try_clone().unwrap());
    let output = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(format!("{FIXTURES}/example.pem"))
        .arg("--resolve")
        .arg(format!("api.example.com:{}:127.0.0.1", front.port()))
        .arg(format!("https://api.example.com:{}/", front.port()))
        .output()
        .expect("run curl");
    assert!(output.status.success(), "curl failed: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "S");
}

#[test]
fn a_tcp_service_gets_its_listener() {
    let proxy = proxy_with_registration("");
    let front = free_address();
    let echo = listen(registration_socket(&proxy), Definition::tcp("echo", front)).unwrap();
    let server = echo.try_clone().unwrap();
    thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 64];
            if let Ok(read) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..read]);
            }
        }
    });
    let mut client = TcpStream::connect(front).expect("the proxy listens");
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.write_all(b"ping").unwrap();
    let mut answer = [0u8; 4];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"ping");
}

#[test]
fn a_killed_service_loses_its_backend_at_once_and_its_frontend_after_the_grace_period() {
    let proxy = proxy_with_registration("grace_period = 1");
    let front = free_address();
    let (mut service, registration_id) = python_service(&registration_socket(&proxy), front, "api");
    assert_eq!(
        get_path(front, "api.test", "/").unwrap(),
        (200, "api".into())
    );
    let listed = proxy.ok(&["registration", "list"]);
    assert!(listed.contains(&registration_id), "{listed}");
    assert!(listed.contains(&service.id().to_string()), "{listed}");

    kill_hard(&mut service);
    assert!(
        wait_until(DEADLINE, || !proxy
            .ok(&["cluster", "list", "-i", "api", "--json=compact"])
            .contains("api-reg-")),
        "the killed service's backend is still there"
    );
    assert!(
        !proxy
            .ok(&["registration", "list"])
            .contains(&registration_id)
    );
    assert!(
        wait_until(DEADLINE, || !frontend_listed(&proxy, "api.test")),
        "the frontend outlived the grace period"
    );
    assert!(!proxy.ok(&["listener", "list"]).contains(&front.to_string()));
}

#[test]
fn a_new_registration_within_the_grace_period_takes_over_and_serves() {
    let proxy = proxy_with_registration("grace_period = 3");
    let socket = registration_socket(&proxy);
    let front = free_address();
    let (mut first, _) = python_service(&socket, front, "api");
    kill_hard(&mut first);
    let (mut second, second_id) = python_service(&socket, front, "api");
    assert!(
        proxy
            .log_text()
            .contains(&format!("{second_id} takes over")),
        "{}",
        proxy.log_text()
    );
    assert_eq!(
        get_path(front, "api.test", "/").unwrap(),
        (200, "api".into())
    );
    assert!(frontend_listed(&proxy, "api.test"));
    // The taken-over frontend is the second registration's now: it goes when that one ends.
    kill_hard(&mut second);
    assert!(wait_until(DEADLINE, || !frontend_listed(
        &proxy, "api.test"
    )));
}

#[test]
fn the_registration_socket_takes_registrations_within_its_limits_only() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = backend.local_addr().unwrap();
    let front = free_address();
    let proxy = proxy_with_registration(&format!(
        "allowed_hostnames = [\"*.example.com\"]\nallowed_listen = [\"{front}\"]"
    ));
    let socket = registration_socket(&proxy);

    let answer = order_line(
        &socket,
        r#"{"id":"1","order":{"type":"ADD_CLUSTER","cluster_id":"x"}}"#,
    );
    assert!(
        answer.contains("FAILURE") && answer.contains("registration socket"),
        "{answer}"
    );
    let register = |hostname: &str, front: SocketAddr| {
        format!(
            r#"{{"id":"r","order":{{"type":"REGISTER","cluster_id":"c","protocol":"http","listen":"{front}","hostname":"{hostname}","backend":"{backend}"}}}}"#
        )
    };
    let answer = order_line(&socket, &register("evil.test", front));
    assert!(
        answer.contains("FAILURE") && answer.contains("allowed_hostnames"),
        "{answer}"
    );
    let answer = order_line(&socket, &register("a.example.com", free_address()));
    assert!(
        answer.contains("FAILURE") && answer.contains("allowed_listen"),
        "{answer}"
    );
    assert!(!proxy.ok(&["cluster", "list"]).contains("\"x\""));

    // The command socket takes every order, registrations included.
    let answer = order_line(&proxy.socket, &register("evil.test", free_address()));
    assert!(answer.contains("REGISTERED"), "{answer}");
    // A registration ends with its connection: `order_line` closed it.
    assert!(wait_until(DEADLINE, || !proxy
        .ok(&["registration", "list"])
        .contains("evil.test")));
}

/// Issue 15, item 6 (drain with a deadline, which registrations' ends use too): a transfer
/// still running at `drain_timeout` is cut, and events count the sessions and seconds left.
#[test]
fn a_drain_deadline_cuts_a_long_transfer_and_events_count_down() {
    let proxy = Proxy::start("");
    // A backend that answers with a long body, a byte at a time, for as long as it is read.
    let slow = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = slow.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut stream, _)) = slow.accept() else {
            return;
        };
        let mut head = [0u8; 1024];
        let _ = stream.read(&mut head);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nstart");
        // Pacing the transfer, bounded to a minute.
        for _ in 0..600 {
            thread::sleep(std::time::Duration::from_millis(100));
            if stream.write_all(b".").is_err() {
                return;
            }
        }
    });
    let http = proxy.http.to_string();
    proxy.ok(&["cluster", "add", "-i", "slow"]);
    let address = backend.to_string();
    proxy.ok(&[
        "backend",
        "add",
        "-i",
        "slow",
        "--backend-id",
        "slow-1",
        "-a",
        &address,
    ]);
    proxy.ok(&[
        "frontend",
        "http",
        "add",
        "-a",
        &http,
        "--hostname",
        "slow.test",
        "id",
        "slow",
    ]);

    let mut client = TcpStream::connect(proxy.http).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: slow.test\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    let read = client.read(&mut first).unwrap();
    assert!(text_of(&first[..read]).starts_with("HTTP/1.1 200"));

    // The drain's first event follows the order at once: subscribe first.
    let mut events = common::EventStream::subscribe(&proxy);
    proxy.ok(&[
        "backend",
        "remove",
        "-i",
        "slow",
        "--backend-id",
        "slow-1",
        "-a",
        &address,
        "--drain-timeout",
        "2",
    ]);
    let mut rest = Vec::new();
    let cut = client.read_to_end(&mut rest);
    assert!(
        cut.is_err() || rest.len() < 100_000,
        "the transfer was not cut: {} bytes",
        rest.len()
    );

    // The worker without sessions on the backend forgets it at once; the one with the
    // transfer reports it, cuts it at the deadline, then forgets the backend.
    let position =
        |seen: &[String], needle: &str| seen.iter().position(|line| line.contains(needle));
    let finished = events.wait_for(|seen| {
        position(seen, "deadline reached").is_some_and(|cut| {
            seen.iter()
                .skip(cut)
                .any(|line| line.contains("REMOVED_BACKEND_HAS_NO_CONNECTIONS"))
        })
    });
    let seen = &events.seen;
    assert!(finished, "no end of drain among {seen:#?}");
    let left = position(seen, "1 session(s) left, closed in 2s").expect("a progress event");
    let cut = position(seen, "deadline reached: closing 1 session(s)").expect("the cut");
    assert!(left < cut, "{seen:#?}");
    assert!(seen[left].contains("BACKEND_DRAINING"), "{seen:#?}");
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_ttl_registration_outlives_its_connection_until_it_is_not_renewed() {
    let proxy = proxy_with_registration("grace_period = 0");
    let socket = registration_socket(&proxy);
    let backend = free_address();
    let front = free_address();
    let answer = order_line(
        &socket,
        &format!(
            r#"{{"id":"r","order":{{"type":"REGISTER","cluster_id":"cron","protocol":"http","listen":"{front}","hostname":"cron.test","backend":"{backend}","ttl":2}}}}"#
        ),
    );
    assert!(answer.contains("REGISTERED"), "{answer}");
    // The connection that registered is closed, the registration lives on.
    assert!(proxy.ok(&["registration", "list"]).contains("cron.test"));
    let renewed = order_line(
        &socket,
        r#"{"id":"n","order":{"type":"RENEW","registration_id":"reg-1"}}"#,
    );
    assert!(renewed.contains("renewed for 2s"), "{renewed}");
    assert!(wait_until(DEADLINE, || !proxy
        .ok(&["registration", "list"])
        .contains("cron.test")));
    assert!(wait_until(DEADLINE, || !frontend_listed(
        &proxy,
        "cron.test"
    )));
    let unknown = order_line(
        &socket,
        r#"{"id":"n","order":{"type":"RENEW","registration_id":"reg-1"}}"#,
    );
    assert!(unknown.contains("no registration `reg-1`"), "{unknown}");
}

#[test]
fn a_reload_keeps_the_routes_of_live_registrations() {
    let proxy = proxy_with_registration("");
    let front = free_address();
    let service = listen(
        registration_socket(&proxy),
        Definition::http("api", front, "api.test"),
    )
    .unwrap();
    let _service = Backend::serve("api", service.try_clone().unwrap());
    assert_eq!(
        get_path(front, "api.test", "/").unwrap(),
        (200, "api".into())
    );
    proxy.ok(&["reload"]);
    assert_eq!(
        get_path(front, "api.test", "/").unwrap(),
        (200, "api".into())
    );
    assert!(frontend_listed(&proxy, "api.test"));
}

/// A hot upgrade keeps the registrations: the new main process has them (a ttl one with its
/// lease), serves their routes, watches the connections they live with, and takes new ones
/// on the same registration socket.
#[test]
fn registrations_survive_an_upgrade() {
    let proxy = proxy_with_registration("grace_period = 1");
    let socket = registration_socket(&proxy);
    let front = free_address();
    let (mut service, registration_id) = python_service(&socket, front, "api");
    let leased = register_for_30s(&socket, "cron", "cron.test");
    assert!(leased.contains("reg-2"), "{leased}");
    let old_main = proxy.main_pid();

    let output = proxy.ok(&["upgrade", "-t", "20000"]);
    assert!(output.contains("worker(s) replaced"), "{output}");
    assert_ne!(proxy.main_pid(), old_main);
    let listed = proxy.ok(&["registration", "list"]);
    for expected in [&registration_id, &service.id().to_string(), "cron.test"] {
        assert!(
            listed.contains(expected),
            "{expected} missing from:\n{listed}"
        );
    }
    assert_eq!(
        get_path(front, "api.test", "/").unwrap(),
        (200, "api".into())
    );
    let renewed = order_line(
        &socket,
        r#"{"id":"n","order":{"type":"RENEW","registration_id":"reg-2"}}"#,
    );
    assert!(renewed.contains("renewed for 30s"), "{renewed}");
    let other = listen(
        &socket,
        Definition::http("other", free_address(), "other.test"),
    )
    .expect("the registration socket takes registrations");
    assert_eq!(other.registration_id(), "reg-3");

    // The new process holds the service's connection: its end ends the registration.
    kill_hard(&mut service);
    assert!(wait_until(DEADLINE, || !proxy
        .ok(&["registration", "list"])
        .contains(&registration_id)));
    assert!(wait_until(DEADLINE, || !frontend_listed(
        &proxy, "api.test"
    )));
}

/// `DEREGISTER` answers once the workers stopped sending new connections to the backend, so
/// that a service reading the answer may finish what it was sent and exit (see redeploy.rs).
#[test]
fn deregister_answers_once_the_workers_removed_the_backend() {
    let proxy = proxy_with_registration("");
    let socket = registration_socket(&proxy);
    let registered = register_for_30s(&socket, "api", "api.test");
    assert!(registered.contains("reg-1"), "{registered}");
    let lines = answer_lines(
        &socket,
        r#"{"id":"d","order":{"type":"DEREGISTER","registration_id":"reg-1"}}"#,
    );
    let [processing, done] = lines.as_slice() else {
        panic!("not a PROCESSING line then the answer: {lines:#?}");
    };
    assert!(processing.contains("sent to 2 worker(s)"), "{processing}");
    assert!(
        done.contains("\"OK\"") && done.contains("reg-1 deregistered"),
        "{done}"
    );
    assert!(!proxy.ok(&["registration", "list"]).contains("reg-1"));
}
