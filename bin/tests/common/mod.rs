//! Harness for the tests that run the real `sozu` binary: a proxy started from a configuration
//! in a temporary folder, the command line pointed at its socket, HTTP backends on threads and
//! a raw HTTP client. Everything listens on 127.0.0.1 with ephemeral ports; every wait is
//! bounded by a deadline, and the proxy's processes are killed when a [`Proxy`] drops.

#![allow(
    dead_code,
    reason = "each test file uses the part of the harness it needs"
)]

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// How long a test waits for anything before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const SOZU: &str = env!("CARGO_BIN_EXE_sozu");

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// An address on 127.0.0.1 for a listener of the binary, another process: free when returned
/// (see [`sozu_e2e::address_for_another_process`]).
pub fn free_address() -> SocketAddr {
    sozu_e2e::address_for_another_process()
}

/// A proxy run by the real binary, in its own temporary folder.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    /// The HTTP listener.
    pub http: SocketAddr,
    pub main: Child,
    /// How many workers must have the state before the proxy counts as started.
    workers: usize,
}

impl Proxy {
    /// Starts a proxy with an HTTP listener and `extra` appended to its configuration, and
    /// waits until its workers answer.
    pub fn start(extra: &str) -> Proxy {
        let (dir, config, http) = Proxy::prepare(extra);
        Proxy::start_with(dir, config, http)
    }

    /// A temporary folder with the configuration [`Proxy::start`] uses; returns it with the
    /// configuration's path and HTTP listener.
    pub fn prepare(extra: &str) -> (tempfile::TempDir, PathBuf, SocketAddr) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let http = free_address();
        let config = dir.path().join("config.toml");
        let text = format!(
            "command_socket = \"sozu.sock\"\n\
             pid_file_path = \"sozu.pid\"\n\
             worker_count = 2\n\
             worker_timeout = 5\n\
             log_level = \"info\"\n\
             {extra}\n\
             [[listeners]]\n\
             protocol = \"http\"\n\
             address = \"{http}\"\n"
        );
        fs::write(&config, text).expect("write the configuration");
        (dir, config, http)
    }

    /// Starts the proxy of a configuration already written in `dir`.
    pub fn start_with(dir: tempfile::TempDir, config: PathBuf, http: SocketAddr) -> Proxy {
        Proxy::start_program(Path::new(SOZU), dir, config, http)
    }

    /// Starts the proxy from `program`, a copy of the binary (what an upgrade runs is the
    /// file at that path then).
    pub fn start_program(
        program: &Path,
        dir: tempfile::TempDir,
        config: PathBuf,
        http: SocketAddr,
    ) -> Proxy {
        let current_folder = dir.path().to_path_buf();
        Proxy::launch(program, dir, config, http, &current_folder, 2)
    }

    /// Starts the binary on a configuration whose command socket is `sozu.sock` in `dir`, run
    /// from `current_folder`, and waits until its `workers` workers have the state.
    pub fn launch(
        program: &Path,
        dir: tempfile::TempDir,
        config: PathBuf,
        http: SocketAddr,
        current_folder: &Path,
        workers: usize,
    ) -> Proxy {
        let log = dir.path().join("sozu.log");
        let output = fs::File::create(&log).expect("create the log file");
        let errors = output.try_clone().expect("clone the log file");
        let main = Command::new(program)
            .args(["start", "-c"])
            .arg(&config)
            .current_dir(current_folder)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .expect("start sozu");
        let proxy = Proxy {
            socket: dir.path().join("sozu.sock"),
            pid_file: dir.path().join("sozu.pid"),
            log,
            config,
            dir,
            http,
            main,
            workers,
        };
        assert!(
            wait_until(DEADLINE, || proxy.workers_ready()),
            "the proxy did not start:\n{}",
            proxy.log_text()
        );
        proxy
    }

    /// Whether every worker runs (`status` succeeds) and the main process logged that each
    /// got the state.
    fn workers_ready(&self) -> bool {
        self.socket.exists()
            && self.sozu(&["status"]).status.success()
            && self.log_text().matches("has the current state").count() >= self.workers
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `sozu ARGS --socket SOCKET`.
    pub fn sozu(&self, args: &[&str]) -> Output {
        Command::new(SOZU)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run the command line")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.sozu(args);
        assert!(
            output.status.success(),
            "sozu {args:?} failed: {}{}\nlog:\n{}",
            text(&output.stdout),
            text(&output.stderr),
            self.log_text()
        );
        text(&output.stdout)
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.sozu(args);
        assert!(
            !output.status.success(),
            "sozu {args:?} succeeded: {}",
            text(&output.stdout)
        );
        text(&output.stderr)
    }

    /// A cluster with one backend, and an HTTP frontend for `hostname`.
    pub fn route(&self, cluster: &str, hostname: &str, backend: &Backend) {
        let backend_id = format!("{cluster}-{}", backend.name);
        self.route_to(cluster, hostname, &backend_id, backend.address);
    }

    /// A cluster with one backend, `backend_id` at `address`, and an HTTP frontend for
    /// `hostname`.
    pub fn route_to(&self, cluster: &str, hostname: &str, backend_id: &str, address: SocketAddr) {
        let http = self.http.to_string();
        self.ok(&["cluster", "add", "-i", cluster]);
        self.add_backend_at(cluster, backend_id, address);
        self.ok(&[
            "frontend",
            "http",
            "add",
            "-a",
            &http,
            "--hostname",
            hostname,
            "id",
            cluster,
        ]);
    }

    /// Adds `backend` to `cluster`, as backend `CLUSTER-NAME`.
    pub fn add_backend(&self, cluster: &str, backend: &Backend) {
        let backend_id = format!("{cluster}-{}", backend.name);
        self.add_backend_at(cluster, &backend_id, backend.address);
    }

    /// Adds the backend `backend_id` at `address` to `cluster`.
    pub fn add_backend_at(&self, cluster: &str, backend_id: &str, address: SocketAddr) {
        self.ok(&[
            "backend",
            "add",
            "-i",
            cluster,
            "--backend-id",
            backend_id,
            "-a",
            &address.to_string(),
        ]);
    }

    /// The workers' pids, from `status --json`.
    pub fn worker_pids(&self) -> Vec<i64> {
        let output = self.ok(&["status", "--json=compact"]);
        let value: serde_json::Value = serde_json::from_str(&output).expect("status as JSON");
        value["data"]
            .as_array()
            .expect("a worker list")
            .iter()
            .filter_map(|worker| worker["pid"].as_i64())
            .collect()
    }

    /// The pid of the main process now (it changes with upgrades).
    pub fn main_pid(&self) -> Option<i64> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// Stops the proxy (hard) and keeps its folder, to start another proxy from it.
    pub fn stop_keeping_files(mut self) -> (tempfile::TempDir, PathBuf, SocketAddr) {
        self.ok(&["shutdown", "--hard"]);
        assert!(wait_until(DEADLINE, || self
            .main
            .try_wait()
            .is_ok_and(|status| status.is_some())));
        let replacement = tempfile::tempdir().expect("a temporary folder");
        let dir = std::mem::replace(&mut self.dir, replacement);
        (dir, self.config.clone(), self.http)
    }

    pub fn get(&self, host: &str) -> std::io::Result<(u16, String)> {
        get(self.http, host)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("proxy log:\n{}", self.log_text());
        }
        // The main process may have been replaced by an upgrade; its workers exit when its
        // channel closes.
        if let Some(pid) = self.main_pid() {
            kill(pid, "KILL");
        }
        let _ = self.main.kill();
        let _ = self.main.wait();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends a signal with kill(1).
pub fn kill(pid: i64, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` exists (and is not a zombie).
pub fn is_alive(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// One HTTP/1.1 request for `/` on a new connection; returns the status and the body.
pub fn get(address: SocketAddr, host: &str) -> std::io::Result<(u16, String)> {
    get_path(address, host, "/")
}

/// One HTTP/1.1 request for `path` on a new connection; returns the status and the body.
pub fn get_path(address: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
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
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A request through a TCP frontend: our HTTP backends answer it through the pipe (and keep
/// the connection open), so the answer is read until its body is one of `names`.
pub fn get_through_tcp(address: SocketAddr, names: &[&str]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the tcp listener");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: tcp\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0; 1024];
    while !names.iter().any(|name| response.ends_with(name.as_bytes())) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
        }
    }
    text(&response)
}

/// An HTTP backend that answers every request with its name.
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    requests: Arc<AtomicUsize>,
    /// When set, each request waits for a release before it is answered (see [`Gate`]).
    gate: Option<Gate>,
    /// Set by [`Backend::stop`].
    stopped: Arc<AtomicBool>,
}

/// Holds a slow backend's answers: `arrived` receives a message when a request arrives, and
/// the answer leaves once `release` is called.
#[derive(Clone)]
pub struct Gate {
    arrived: Arc<Mutex<mpsc::Sender<()>>>,
    released: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn release(&self) {
        let (released, condvar) = &*self.released;
        *released.lock().expect("gate lock") = true;
        condvar.notify_all();
    }

    fn wait(&self) {
        let _ = self.arrived.lock().expect("gate lock").send(());
        let (released, condvar) = &*self.released;
        let guard = released.lock().expect("gate lock");
        let _unused = condvar
            .wait_timeout_while(guard, DEADLINE, |released| !*released)
            .expect("gate wait");
    }
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Backend::spawn(name, None, "127.0.0.1:0")
    }

    /// A backend whose answers wait for the gate; the receiver tells when a request arrived.
    pub fn gated(name: &str) -> (Backend, Gate, mpsc::Receiver<()>) {
        let (sender, receiver) = mpsc::channel();
        let gate = Gate {
            arrived: Arc::new(Mutex::new(sender)),
            released: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
        };
        (
            Backend::spawn(name, Some(gate.clone()), "127.0.0.1:0"),
            gate,
            receiver,
        )
    }

    /// A backend answering on a socket bound elsewhere (a registered service's).
    pub fn serve(name: &str, listener: TcpListener) -> Backend {
        Backend::on_listener(name, None, listener)
    }

    fn spawn(name: &str, gate: Option<Gate>, bind: impl std::net::ToSocketAddrs) -> Backend {
        let listener = TcpListener::bind(bind).expect("bind a backend");
        Backend::on_listener(name, gate, listener)
    }

    fn on_listener(name: &str, gate: Option<Gate>, listener: TcpListener) -> Backend {
        let address = listener.local_addr().expect("backend address");
        let requests = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let backend = Backend {
            name: name.to_string(),
            address,
            requests: requests.clone(),
            gate: gate.clone(),
            stopped: stopped.clone(),
        };
        let name = name.to_string();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (name, requests, gate) = (name.clone(), requests.clone(), gate.clone());
                let stopped = stopped.clone();
                thread::spawn(move || serve(stream, &name, &requests, gate.as_ref(), &stopped));
            }
        });
        backend
    }

    /// Stops the backend as if its process died: its address refuses connections, and each
    /// open connection is closed when its next request arrives, without an answer.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then drops the listener.
        let _ = TcpStream::connect(self.address);
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answers each request of a connection (keep-alive) with `name`, until the backend stops.
fn serve(
    stream: TcpStream,
    name: &str,
    requests: &AtomicUsize,
    gate: Option<&Gate>,
    stopped: &AtomicBool,
) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let mut head_lines = 0;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head_lines += 1;
        }
        if head_lines == 0 {
            continue;
        }
        if stopped.load(Ordering::SeqCst) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = gate {
            gate.wait();
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{name}",
            name.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes a file in the proxy's folder and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).expect("write a file");
    path
}

/// Requests sent in a loop by a thread, for figures that move: one to each host in turn,
/// every few milliseconds, until dropped. Bounded: it stops by itself after a minute or
/// 20,000 requests.
pub struct Load {
    stopped: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(address: SocketAddr, hosts: &[&str]) -> Load {
        let stopped = Arc::new(AtomicBool::new(false));
        let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
        let stop = stopped.clone();
        let thread = thread::spawn(move || {
            let started = Instant::now();
            for host in hosts.iter().cycle().take(20_000) {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(60) {
                    return;
                }
                let _ = get(address, host);
                // Pacing, not waiting for anything: about a hundred requests a second.
                thread::sleep(Duration::from_millis(5));
            }
        });
        Load {
            stopped,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `shared/sozu/`: what the real Sōzu 2.1 printed and wrote, and its sample configurations.
/// Found in a parent folder of the crate (the project's checkout sits beside `shared/`), or of
/// the local repository a clean clone was made from; read from there, never copied into the
/// project.
pub fn sozu_reference() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let origin = Command::new("git")
        .arg("-C")
        .arg(manifest)
        .args(["config", "--get", "remote.origin.url"])
        .output()
        .ok()
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(|origin| origin.is_dir());
    std::iter::once(manifest.to_path_buf())
        .chain(origin)
        .find_map(|start| {
            start
                .ancestors()
                .map(|folder| folder.join("shared/sozu"))
                .find(|folder| folder.is_dir())
        })
        .expect("shared/sozu/ (Sōzu 2.1's outputs and samples) in a parent folder of the project")
}

/// Starts `service`, a program that registers on the proxy and prints its registration id on
/// its first line; returns it with that id once it printed it.
pub fn start_registered(service: &mut Command) -> (Child, String) {
    let mut child = service
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the service");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(DEADLINE)
        .expect("the service registers");
    assert!(line.starts_with("reg-"), "the service said {line:?}");
    (child, line.trim().to_string())
}

/// `sozu events --json` on a proxy: the events as they come, one JSON line each.
pub struct EventStream {
    child: Child,
    received: mpsc::Receiver<String>,
    /// The lines received so far, oldest first.
    pub seen: Vec<String>,
}

impl EventStream {
    /// Subscribes, and waits until the main process counted the subscription: events that
    /// follow are seen.
    pub fn subscribe(proxy: &Proxy) -> EventStream {
        let mut child = Command::new(SOZU)
            .args(["events", "--json", "--socket"])
            .arg(&proxy.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sozu events");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, received) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        assert!(
            wait_until(DEADLINE, || proxy
                .ok(&["state", "stats", "--json=compact"])
                .contains("orders.SUBSCRIBE_EVENTS")),
            "the subscription is not counted"
        );
        EventStream {
            child,
            received,
            seen: Vec::new(),
        }
    }

    /// Waits until `condition` holds for the lines received; whether it did.
    pub fn wait_for(&mut self, mut condition: impl FnMut(&[String]) -> bool) -> bool {
        wait_until(DEADLINE, || {
            while let Ok(line) = self.received.try_recv() {
                self.seen.push(line);
            }
            condition(&self.seen)
        })
    }
}

/// The events among `lines` (as `sozu events --json` writes them, one JSON object a line) of
/// kind `kind`.
pub fn events_of<'a>(
    lines: &'a [String],
    kind: &'a str,
) -> impl Iterator<Item = serde_json::Value> + 'a {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(move |event| event["kind"] == kind)
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
