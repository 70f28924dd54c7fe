//! systemd's readiness protocol with the real binary: a Unix datagram socket stands in for
//! systemd's `NOTIFY_SOCKET` and receives READY=1 once the workers route the sample
//! configuration's requests, RELOADING=1 then READY=1 around a reload, STOPPING=1 on stop.
//! Issue 11, item 4.

mod common;

use std::{
    fs,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use common::{DEADLINE, SOZU, free_address, get, text, wait_until};

/// The main process, killed with its workers if the test fails before stopping it.
struct Started {
    main: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = Command::new(SOZU)
            .args(["shutdown", "--hard", "--socket"])
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output();
        let _ = self.main.kill();
        let _ = self.main.wait();
    }
}

impl Started {
    fn sozu(&self, args: &[&str]) -> String {
        let output = Command::new(SOZU)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run the command line");
        assert!(
            output.status.success(),
            "sozu {args:?} failed: {}{}\nlog:\n{}",
            text(&output.stdout),
            text(&output.stderr),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        text(&output.stdout)
    }

    /// Whether the main process ended within [`DEADLINE`].
    fn main_exits(&mut self) -> bool {
        wait_until(DEADLINE, || {
            self.main.try_wait().is_ok_and(|status| status.is_some())
        })
    }

    fn worker_pids(&self) -> Vec<i64> {
        let output = self.sozu(&["status", "--json=compact"]);
        let value: serde_json::Value = serde_json::from_str(&output).expect("status as JSON");
        value["data"]
            .as_array()
            .expect("a worker list")
            .iter()
            .filter_map(|worker| worker["pid"].as_i64())
            .collect()
    }
}

/// The proxy's own sample configuration (`bin/config.toml`) with its two listen addresses on
/// ephemeral ports, its command socket and asset paths in `dir`'s reach. Returns the path of
/// the written file, the HTTP address and the command socket.
fn sample_config(dir: &Path) -> (PathBuf, std::net::SocketAddr, PathBuf) {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let sample = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml"))
        .expect("read bin/config.toml");
    let http = free_address();
    let https = free_address();
    let socket = dir.join("sozu.sock");
    let text = sample
        .replace(
            "command_socket = \"sozu.sock\"",
            &format!("command_socket = \"{}\"", socket.display()),
        )
        .replace("\"127.0.0.1:8080\"", &format!("\"{http}\""))
        .replace("\"127.0.0.1:8443\"", &format!("\"{https}\""))
        .replace("\"assets/", &format!("\"{}/", assets.display()));
    let config = dir.join("config.toml");
    fs::write(&config, text).expect("write the configuration");
    (config, http, socket)
}

/// Starts `sozu start -c CONFIG` with `NOTIFY_SOCKET` set to `notify_socket`.
fn start(dir: &Path, config: &Path, socket: PathBuf, notify_socket: &str) -> Started {
    let log = dir.join("sozu.log");
    let output = fs::File::create(&log).expect("create the log file");
    let errors = output.try_clone().expect("clone the log file");
    let main = Command::new(SOZU)
        .args(["start", "-c"])
        .arg(config)
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .spawn()
        .expect("start sozu");
    Started { main, socket, log }
}

/// Starts sozu on the sample configuration in `dir`, with a notify socket file there: returns
/// that socket, the processes, the configuration's path and the HTTP listener's address.
fn start_with_notify_file(dir: &Path) -> (UnixDatagram, Started, PathBuf, std::net::SocketAddr) {
    let notify_path = dir.join("notify.sock");
    let listener = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let (config, http, socket) = sample_config(dir);
    let started = start(dir, &config, socket, &notify_path.display().to_string());
    (listener, started, config, http)
}

/// The next datagram, waiting at most [`DEADLINE`].
fn next_message(listener: &UnixDatagram, started: &Started) -> String {
    listener
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    let mut buffer = [0; 4096];
    match listener.recv(&mut buffer) {
        Ok(length) => text(buffer.get(..length).unwrap_or_default()),
        Err(error) => panic!(
            "no notification: {error}\nlog:\n{}",
            fs::read_to_string(&started.log).unwrap_or_default()
        ),
    }
}

#[test]
fn ready_once_routing_then_reloading_ready_around_a_reload_then_stopping() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (listener, mut started, config, http) = start_with_notify_file(dir.path());

    let ready = next_message(&listener, &started);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready}");
    let main_pid = started.main.id();
    assert!(
        ready
            .lines()
            .any(|line| line == format!("MAINPID={main_pid}")),
        "{ready}"
    );
    assert!(
        ready
            .lines()
            .any(|line| line == "STATUS=serving with 2 worker(s)"),
        "{ready}"
    );
    // No wait between READY=1 and the request: the workers must already have the state.
    let (status, body) = get(http, "localhost").expect("a request through the proxy");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sozu is running"), "{body}");

    let workers = started.worker_pids();
    assert_eq!(workers.len(), 2);
    for pid in workers {
        let environment = fs::read(format!("/proc/{pid}/environ")).expect("a worker's env");
        assert!(
            !text(&environment).contains("NOTIFY_SOCKET="),
            "worker {pid} was given NOTIFY_SOCKET"
        );
    }

    let edited = fs::read_to_string(&config)
        .expect("read the configuration")
        .replacen(
            "hostname = \"localhost\"",
            "hostname = \"reloaded.localhost\"",
            1,
        );
    fs::write(&config, edited).expect("edit the configuration");
    started.sozu(&["reload"]);
    let reloading = next_message(&listener, &started);
    assert!(
        reloading.lines().any(|line| line == "RELOADING=1"),
        "{reloading}"
    );
    assert!(
        reloading
            .lines()
            .any(|line| line.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    let ready = next_message(&listener, &started);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready}");
    let (status, body) = get(http, "reloaded.localhost").expect("a request after the reload");
    assert_eq!(status, 200, "{body}");

    started.sozu(&["shutdown", "--hard"]);
    let stopping = next_message(&listener, &started);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping}"
    );
    assert!(started.main_exits());
}

#[test]
fn abstract_notify_socket_gets_ready_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let name = format!("sozu-notify-test-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
    let listener = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
    let (config, http, socket) = sample_config(dir.path());
    let mut started = start(dir.path(), &config, socket, &format!("@{name}"));

    let ready = next_message(&listener, &started);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready}");
    let (status, _) = get(http, "localhost").expect("a request through the proxy");
    assert_eq!(status, 200);

    common::kill(i64::from(started.main.id()), "TERM");
    let stopping = next_message(&listener, &started);
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping}"
    );
    assert!(started.main_exits());
}

/// Issue 11: a hot upgrade under systemd hands the service over. The old main process names
/// its successor with `MAINPID=`, and the successor says READY=1 with its own pid once its
/// workers have the state, so that systemd follows the new process instead of taking the old
/// one's exit for the service's.
#[test]
fn a_hot_upgrade_names_the_new_main_process() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (listener, mut started, _, http) = start_with_notify_file(dir.path());
    let ready = next_message(&listener, &started);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready}");
    let old = started.main.id();

    started.sozu(&["upgrade"]);
    // The two messages come from two processes: their order is not fixed.
    let messages = [
        next_message(&listener, &started),
        next_message(&listener, &started),
    ];
    let main_pid = |message: &String| {
        message
            .lines()
            .find_map(|line| line.strip_prefix("MAINPID="))
            .and_then(|pid| pid.parse::<u32>().ok())
    };
    let Some(handed) = messages
        .iter()
        .find(|message| message.contains("STATUS=handed over"))
    else {
        panic!("no hand-over message: {messages:?}");
    };
    let Some(successor) = main_pid(handed) else {
        panic!("no MAINPID in {handed}");
    };
    assert_ne!(successor, old, "{handed}");
    assert!(
        messages
            .iter()
            .any(|message| message.lines().any(|line| line == "READY=1")
                && main_pid(message) == Some(successor)),
        "no READY=1 from the successor {successor}: {messages:?}"
    );
    assert!(started.main_exits());
    let (status, body) = get(http, "localhost").expect("a request after the upgrade");
    assert_eq!(status, 200, "{body}");
}
