//! Harness for end-to-end tests: real workers, real backends, real clients, all on 127.0.0.1
//! with ephemeral ports.
//!
//! [`Worker`] runs a `sozu-lib` event loop on a thread and drives it through its command
//! channel; the backends in [`backend`] (TCP), [`http_backend`] (HTTP) and [`scripted_backend`]
//! (bytes written by the test, for misbehaving backends) are small servers on threads,
//! [`http_client`] is a strict raw-socket HTTP client and [`tls`] makes TLS clients. Every wait is bounded by a
//! deadline ([`wait_until`]); nothing sleeps to synchronise.

pub mod backend;
pub mod descriptors;
pub mod http_backend;
pub mod http_client;
pub mod scripted_backend;
pub mod tls;
pub mod wire;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sozu_command_lib::{
    channel::Channel,
    request::{
        AddBackend, Cluster, HttpFrontend, HttpListenerConfig, ListenerAddress, ListenerType,
        Order, QueryMetrics, Request, TcpFrontend, TcpListenerConfig,
    },
    response::{Event, FilteredMetric, Response, ResponseContent, ResponseStatus},
    scm::{Listeners, ScmSocket},
};
use sozu_lib::server::{EVENT_RESPONSE_ID, Server, ServerConfig, ServerError, TcpRouters};
pub use tempfile::TempDir;

/// How long a test waits for anything before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A worker event loop on its own thread, and the client end of its command channel.
pub struct Worker {
    command: Channel<Request, Response>,
    /// Where the worker receives listener sockets, as a worker of the binary does from its
    /// main process: the sockets [`free_address`] holds.
    fd_socket: ScmSocket,
    /// The addresses of the listeners the worker was told to add, and not to remove.
    listeners: BTreeSet<SocketAddr>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
    next_id: u64,
    /// Events received while waiting for responses.
    pub events: Vec<Event>,
}

impl Worker {
    pub fn start(config: ServerConfig) -> Worker {
        Worker::spawn(config, |_| {})
    }

    /// Starts a worker and returns, with it, the handle that registers Rust routers on its TCP
    /// listeners while it runs.
    pub fn start_with_routers(config: ServerConfig) -> (Worker, TcpRouters) {
        let (routers_sender, routers) = std::sync::mpsc::channel();
        let worker = Worker::spawn(config, move |server| {
            let _ = routers_sender.send(server.tcp_routers());
        });
        let routers = routers
            .recv_timeout(DEADLINE)
            .expect("the worker starts and hands its router registration");
        (worker, routers)
    }

    /// Runs a worker on a thread; `started` sees it before it serves.
    fn spawn(config: ServerConfig, started: impl FnOnce(&Server) + Send + 'static) -> Worker {
        // Logs go to the test's output, shown when it fails (RUST_LOG=debug for details).
        let _ = env_logger::builder().is_test(true).try_init();
        let (command, worker_end) =
            Channel::<Request, Response>::pair(4096, 16 << 20).expect("create a channel pair");
        let (fd_socket, worker_fd_socket) = ScmSocket::pair().expect("create an fd socket pair");
        let thread = std::thread::spawn(move || {
            let mut server = Server::new(config, worker_end, Listeners::default())?;
            server.receive_listeners_from(worker_fd_socket);
            started(&server);
            server.run()
        });
        Worker {
            command,
            fd_socket,
            listeners: BTreeSet::new(),
            thread: Some(thread),
            next_id: 0,
            events: Vec::new(),
        }
    }

    /// Sends an order and returns its final response (PROCESSING responses are skipped).
    pub fn order(&mut self, order: Order) -> Response {
        let id = self.send(order);
        self.response_to(&id)
    }

    /// Sends an order without waiting; returns its id. An activation of a listener the
    /// worker was told to add, on an address [`free_address`] holds, sends the held socket
    /// first, listening, as the binary's main process sends the sockets it binds.
    pub fn send(&mut self, order: Order) -> String {
        match &order {
            Order::AddHttpListener(listener) => {
                self.listeners.insert(listener.address);
            }
            Order::AddHttpsListener(listener) => {
                self.listeners.insert(listener.http.address);
            }
            Order::AddTcpListener(listener) => {
                self.listeners.insert(listener.address);
            }
            Order::RemoveListener(listener) => {
                self.listeners.remove(&listener.address);
            }
            Order::ActivateListener(listener) if self.listeners.contains(&listener.address) => {
                self.hand_over(listener);
            }
            _ => {}
        }
        self.next_id += 1;
        let id = format!("test-{}", self.next_id);
        self.command
            .write_message(&Request::new(id.clone(), order))
            .expect("send an order");
        id
    }

    /// Makes the socket [`free_address`] holds for `listener`'s address listen, and sends it
    /// to the worker, which takes it instead of binding the address itself.
    fn hand_over(&self, listener: &ListenerAddress) {
        let Some(socket) = take_reserved(listener.address) else {
            return;
        };
        socket.listen(4096).expect("listen on a reserved port");
        let kind_listeners = vec![(listener.address, socket)];
        let listeners = match listener.proxy {
            ListenerType::Http => Listeners {
                http: kind_listeners,
                ..Listeners::default()
            },
            ListenerType::Https => Listeners {
                https: kind_listeners,
                ..Listeners::default()
            },
            ListenerType::Tcp => Listeners {
                tcp: kind_listeners,
                ..Listeners::default()
            },
        };
        self.fd_socket
            .send_listeners(&listeners)
            .expect("send a listener socket to the worker");
    }

    /// Waits for the final response to request `id`.
    pub fn response_to(&mut self, id: &str) -> Response {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let response = self.next_response_before(deadline);
            if response.id == id && response.is_final() {
                return response;
            }
        }
    }

    /// The next response that is not an event, whatever request it answers.
    pub fn next_response(&mut self) -> Response {
        self.next_response_before(Instant::now() + DEADLINE)
    }

    fn next_response_before(&mut self, deadline: Instant) -> Response {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no response in time");
            let response = self
                .command
                .read_message_timeout(left)
                .expect("read a response")
                .expect("the worker closed its channel");
            match as_event(&response) {
                Some(event) => self.events.push(event),
                None => return response,
            }
        }
    }

    /// Sends an order and checks that it succeeded.
    pub fn ok(&mut self, order: Order) {
        let name = order.name();
        let response = self.order(order);
        assert_eq!(
            response.status,
            ResponseStatus::Ok,
            "{name} failed: {}",
            response.message
        );
    }

    /// Waits until an event matching `wanted` arrives.
    pub fn wait_event(&mut self, wanted: impl Fn(&Event) -> bool) -> Event {
        if let Some(index) = self.events.iter().position(&wanted) {
            return self.events.remove(index);
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the awaited event did not come");
            let Ok(Some(response)) = self.command.read_message_timeout(left) else {
                panic!("the worker channel closed while waiting for an event");
            };
            if let Some(event) = as_event(&response) {
                if wanted(&event) {
                    return event;
                }
                self.events.push(event);
            }
        }
    }

    /// Adds and activates a TCP listener on a free port routed to a new cluster with the
    /// given backends; returns the listener's address.
    pub fn tcp_proxy(&mut self, cluster: Cluster, backends: &[SocketAddr]) -> SocketAddr {
        self.tcp_proxy_with(TcpListenerConfig::new(free_address()), cluster, backends)
    }

    /// Like [`Worker::tcp_proxy`] with a listener configured by the caller.
    pub fn tcp_proxy_with(
        &mut self,
        listener: TcpListenerConfig,
        cluster: Cluster,
        backends: &[SocketAddr],
    ) -> SocketAddr {
        let address = listener.address;
        let cluster_id = cluster.cluster_id.clone();
        self.ok(Order::AddTcpListener(listener));
        self.cluster(cluster, backends);
        self.ok(Order::AddTcpFrontend(TcpFrontend::new(cluster_id, address)));
        self.ok(Order::ActivateListener(ListenerAddress {
            address,
            proxy: ListenerType::Tcp,
        }));
        address
    }

    /// Adds a cluster and its backends, named `{cluster_id}-{index}`.
    pub fn cluster(&mut self, cluster: Cluster, backends: &[SocketAddr]) {
        let cluster_id = cluster.cluster_id.clone();
        self.ok(Order::AddCluster(cluster));
        for (index, backend) in backends.iter().enumerate() {
            self.ok(Order::AddBackend(backend_order(
                &cluster_id,
                &format!("{cluster_id}-{index}"),
                *backend,
            )));
        }
    }

    /// Adds and activates an HTTP listener; returns its address.
    pub fn http_listener(&mut self, listener: HttpListenerConfig) -> SocketAddr {
        let address = listener.address;
        self.ok(Order::AddHttpListener(listener));
        self.ok(Order::ActivateListener(ListenerAddress {
            address,
            proxy: ListenerType::Http,
        }));
        address
    }

    /// Routes every path of `hostname` on the listener at `address` to `cluster_id`.
    pub fn route(&mut self, address: SocketAddr, hostname: &str, cluster_id: &str) {
        self.ok(Order::AddHttpFrontend(HttpFrontend::new(
            Some(cluster_id.to_string()),
            address,
            hostname,
        )));
    }

    /// An HTTP listener on a free port that routes `hostname` to a new cluster with the given
    /// backends; returns the listener's address.
    pub fn http_proxy(
        &mut self,
        hostname: &str,
        cluster: Cluster,
        backends: &[SocketAddr],
    ) -> SocketAddr {
        self.http_proxy_with(
            HttpListenerConfig::new(free_address()),
            hostname,
            cluster,
            backends,
        )
    }

    /// Like [`Worker::http_proxy`] with a listener configured by the caller.
    pub fn http_proxy_with(
        &mut self,
        listener: HttpListenerConfig,
        hostname: &str,
        cluster: Cluster,
        backends: &[SocketAddr],
    ) -> SocketAddr {
        let cluster_id = cluster.cluster_id.clone();
        let address = self.http_listener(listener);
        self.cluster(cluster, backends);
        self.route(address, hostname, &cluster_id);
        address
    }

    /// A figure of the worker's proxy-wide metrics; 0 when absent.
    pub fn proxy_count(&mut self, name: &str) -> u64 {
        let response = self.order(Order::QueryMetrics(QueryMetrics::default()));
        let Some(ResponseContent::Metrics(metrics)) = response.content else {
            panic!("no metrics: {response:?}");
        };
        match metrics.proxy.get(name) {
            Some(FilteredMetric::Count(count)) => *count,
            _ => 0,
        }
    }

    /// Waits for the worker thread to end; true if it ended before the deadline.
    pub fn join(mut self, timeout: Duration) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            // Bounded polling of a thread's end: std has no timed join.
            std::thread::sleep(Duration::from_millis(5));
        }
        matches!(thread.join(), Ok(Ok(())))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self
                .command
                .write_message(&Request::new("drop", Order::HardStop));
        }
    }
}

fn as_event(response: &Response) -> Option<Event> {
    match (&response.content, response.id.as_str()) {
        (Some(sozu_command_lib::response::ResponseContent::Event(event)), EVENT_RESPONSE_ID) => {
            Some(event.clone())
        }
        _ => None,
    }
}

/// An AddBackend order with default settings.
pub fn backend_order(cluster_id: &str, backend_id: &str, address: SocketAddr) -> AddBackend {
    AddBackend {
        cluster_id: cluster_id.to_string(),
        backend_id: backend_id.to_string(),
        address,
        sticky_id: None,
        weight: 100,
        backup: false,
    }
}

/// A listener on an ephemeral port of 127.0.0.1 with a deep accept queue: std's default of 128
/// overflows when a test opens hundreds of connections at once, and a connection whose
/// handshake the kernel dropped then waits for a retransmission, seconds later.
pub fn bind_listener() -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("create a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind an ephemeral port");
    socket.listen(4096).expect("listen");
    socket.into()
}

/// Sockets bound by [`free_address`], by address, until a [`Worker`] takes one for its
/// listener.
static RESERVED: Mutex<BTreeMap<SocketAddr, socket2::Socket>> = Mutex::new(BTreeMap::new());

/// An address on 127.0.0.1 kept for a listener of a [`Worker`] of this process, and refusing
/// connections until then.
///
/// The port stays bound, by a socket without `SO_REUSEADDR` that does not listen: nothing
/// else can bind it, so no other test or process takes it before the worker's listener, and a
/// connection to it is refused (the address of a backend that is down). When a [`Worker`]
/// activates a listener on it, that socket listens and is handed to the worker, as the
/// binary's main process hands the sockets it binds; the port is never free in between. For
/// an address that another process must bind, see [`address_for_another_process`].
///
/// The port is taken outside the kernel's ephemeral range, where no connection takes its
/// source port. Calls in one process take the ports of that span one after the other, from an
/// offset drawn from the process id, skipping the ports something holds.
pub fn free_address() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (first, count) = ports_outside_ephemeral_range();
    let offset = std::process::id().wrapping_mul(7919);
    for _ in 0..count {
        let index = offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % count;
        let Ok(port) = u16::try_from(first + index) else {
            continue;
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("create a socket");
        if socket.bind(&address.into()).is_ok() {
            reserved().insert(address, socket);
            return address;
        }
    }
    panic!("no free port on 127.0.0.1 outside the ephemeral range");
}

/// An address on 127.0.0.1 that nothing is bound to at the time of the call, for a server
/// that another process binds (a client's own daemon): [`free_address`]'s port, released.
/// Something else may take it before that process binds it; within this harness nothing does.
pub fn address_for_another_process() -> SocketAddr {
    let address = free_address();
    take_reserved(address);
    address
}

/// The socket [`free_address`] holds for `address`, if it still does.
fn take_reserved(address: SocketAddr) -> Option<socket2::Socket> {
    reserved().remove(&address)
}

fn reserved() -> MutexGuard<'static, BTreeMap<SocketAddr, socket2::Socket>> {
    RESERVED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first port and the number of ports of the larger span of unprivileged ports outside
/// `net.ipv4.ip_local_port_range` (32768–60999 unless configured otherwise).
fn ports_outside_ephemeral_range() -> (u32, u32) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u32>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        .unwrap_or((32768, 60999));
    let (low, high) = (range.0.clamp(1024, 65536), range.1.clamp(1023, 65535));
    let below = low - 1024;
    let above = 65535 - high;
    assert!(
        below.max(above) >= 1000,
        "the ephemeral port range {range:?} leaves too few ports for the tests' listeners"
    );
    if below >= above {
        (1024, below)
    } else {
        (high + 1, above)
    }
}

/// A directory of the test's own for its files (access logs, a script's files, a client's
/// keys), named after `name`, removed with everything in it when dropped.
pub fn temporary_directory(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sozu-e2e-{name}-"))
        .tempdir()
        .expect("create a temporary directory")
}

/// Waits until `condition` holds, checking every few milliseconds, at most `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A server in a Python process of its own (a backend the tests cannot write in Rust, or one
/// whose descriptors must not count in the test's process), stopped when dropped.
pub struct PythonServer {
    child: Child,
    /// Where it listens, on 127.0.0.1.
    pub address: SocketAddr,
}

impl PythonServer {
    /// Runs `python3` with `arguments` (a script and its arguments, or `-c` and a program),
    /// which prints the port it listens on as its first line.
    pub fn start(arguments: &[&str]) -> PythonServer {
        let mut child = Command::new("python3")
            .args(arguments)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (.ci/install-test-tools)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its port");
        let port: u16 = line.trim().parse().expect("a port number");
        PythonServer {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl PythonServer {
    /// Stops the server (its connections end with it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the Python program `script` with `arguments` to its end and returns its output lines;
/// panics, with its standard error, when it fails.
pub fn run_python(script: &str, arguments: &[&str]) -> Vec<String> {
    let output = Command::new("python3")
        .arg(script)
        .args(arguments)
        .output()
        .expect("python3 must be installed (.ci/install-test-tools)");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    /// Binds `address` as a proxy does (`SO_REUSEADDR`, then listening).
    fn bind_as_a_proxy(address: SocketAddr) -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(16)?;
        Ok(socket.into())
    }

    #[test]
    fn a_free_address_stays_taken_and_refusing_until_a_worker_listens_on_it() {
        let address = free_address();
        assert!(
            bind_as_a_proxy(address).is_err(),
            "another bind took the port"
        );
        assert!(TcpStream::connect(address).is_err(), "something accepts");

        let mut worker = Worker::start(ServerConfig::default());
        let listening = worker.http_listener(HttpListenerConfig::new(address));
        assert_eq!(listening, address);
        assert!(
            TcpStream::connect(address).is_ok(),
            "the worker does not accept"
        );
    }

    #[test]
    fn an_address_for_another_process_is_free_to_bind() {
        let address = address_for_another_process();
        assert!(bind_as_a_proxy(address).is_ok());
    }
}
