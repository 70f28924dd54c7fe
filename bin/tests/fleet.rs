//! A fleet of three `sozu` nodes fed from a real etcd (`[provider.etcd]`, doc/fleet.md).
//!
//! The nodes of a fleet listen on the same address on different hosts, and a frontend names
//! its listener's address; so each node runs in its own network namespace (a test host made
//! with `ip netns`, with its own loopback interface) and listens on `0.0.0.0:8080` (HTTP) and
//! `0.0.0.0:8443` (HTTPS). etcd and the backends listen on 127.0.0.1 in the test's namespace;
//! a bridge in each node's namespace relays 127.0.0.1 at their ports to them, and cutting a
//! node's bridges partitions it. Only 127.0.0.1 is used. Needs root and iproute2;
//! `.ci/install-test-tools` installs etcd. The TLS test runs one node and etcd on 127.0.0.1,
//! with an authority and certificates made by `openssl` for the test.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{Backend, DEADLINE, SOZU, free_address, text, wait_until};
use sozu::provider::etcd::client::{Client, EventKind, KeyValue};
use sozu_command_lib::config::EtcdProvider;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");
const PREFIX: &str = "/sozu/";

/// Runs a command that must succeed.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        text(&output.stderr)
    );
}

/// A test host: a network namespace with its own loopback interface and nothing else.
#[derive(Clone)]
struct Namespace {
    name: String,
    /// `/run/netns/<name>`, to make sockets inside it.
    handle: Arc<fs::File>,
}

impl Namespace {
    /// Runs `work` on a thread that entered the namespace: the sockets it makes belong there.
    #[allow(
        unsafe_code,
        reason = "setns(2) has no safe wrapper in std; only this test harness moves a thread \
                  into a network namespace"
    )]
    fn within<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) with an open namespace file moves only the calling
                    // thread, a scoped thread that ends with `work`.
                    let entered =
                        unsafe { libc::setns(self.handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
                    work()
                })
                .join()
                .expect("a thread within the namespace")
        })
    }
}

/// The connections a [`Bridge`] relays.
#[derive(Default)]
struct Relays {
    /// Cut off: connections are accepted and never answered, as by a host whose link is down.
    cut: bool,
    stopped: bool,
    /// Both sockets of each relayed connection, by number.
    open: BTreeMap<u64, [TcpStream; 2]>,
    next: u64,
    /// Connections accepted while cut off.
    held: Vec<TcpStream>,
}

/// Relays the connections made to 127.0.0.1:`port` inside a namespace to 127.0.0.1:`port`
/// outside it: what a node reaches at that address is the test's service.
struct Bridge {
    listener: TcpListener,
    relays: Arc<Mutex<Relays>>,
    accepting: Option<thread::JoinHandle<()>>,
}

impl Bridge {
    fn new(namespace: &Namespace, port: u16) -> Bridge {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = namespace
            .within(|| TcpListener::bind(address))
            .expect("a bridge's listener");
        let relays = Arc::new(Mutex::new(Relays::default()));
        let accepting = {
            let listener = listener.try_clone().expect("the bridge's listener");
            let relays = relays.clone();
            thread::spawn(move || Bridge::accept(&listener, &relays, address))
        };
        Bridge {
            listener,
            relays,
            accepting: Some(accepting),
        }
    }

    fn accept(listener: &TcpListener, relays: &Arc<Mutex<Relays>>, target: SocketAddr) {
        for incoming in listener.incoming() {
            let mut state = relays.lock().expect("relays");
            if state.stopped {
                return;
            }
            let Ok(inside) = incoming else { continue };
            if state.cut {
                state.held.push(inside);
                continue;
            }
            drop(state);
            let Ok(outside) = TcpStream::connect(target) else {
                continue;
            };
            let (Ok(inside_copy), Ok(outside_copy)) = (inside.try_clone(), outside.try_clone())
            else {
                continue;
            };
            let number = {
                let mut state = relays.lock().expect("relays");
                state.next += 1;
                let number = state.next;
                state.open.insert(number, [inside_copy, outside_copy]);
                number
            };
            let finished = Arc::new(AtomicUsize::new(0));
            for (mut from, mut to) in [
                (inside.try_clone(), outside.try_clone()),
                (outside.try_clone(), inside.try_clone()),
            ]
            .into_iter()
            .filter_map(|pair| match pair {
                (Ok(from), Ok(to)) => Some((from, to)),
                _ => None,
            }) {
                let relays = relays.clone();
                let finished = finished.clone();
                thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                    if finished.fetch_add(1, Ordering::SeqCst) == 1 {
                        relays.lock().expect("relays").open.remove(&number);
                    }
                });
            }
        }
    }

    /// Cuts the bridge off: its connections are closed, as a host that lost its link for
    /// longer than its keep-alive would find them, and new ones get no answer.
    fn cut(&self) {
        let mut relays = self.relays.lock().expect("relays");
        relays.cut = true;
        for sockets in relays.open.values() {
            for socket in sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        relays.open.clear();
    }

    /// Relays again; the connections held while cut off are closed.
    fn restore(&self) {
        let mut relays = self.relays.lock().expect("relays");
        relays.cut = false;
        for held in relays.held.drain(..) {
            let _ = held.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.cut();
        self.relays.lock().expect("relays").stopped = true;
        // Wakes the accepting thread: accept(2) fails on a listener shut down.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        self.restore();
    }
}

/// The test network: one namespace per node, each with its own loopback interface, and
/// bridges that make the test's services (etcd, backends) reachable from every namespace at
/// their address on this namespace's loopback, 127.0.0.1. Only 127.0.0.1 is used, and the
/// nodes listen on the same addresses. Everything is deleted on drop.
struct Network {
    /// The bridges of each namespace.
    bridges: Vec<Vec<Bridge>>,
    namespaces: Vec<Namespace>,
}

impl Network {
    fn new(hosts: usize) -> Network {
        let tag = format!("sozu-fleet-{}", std::process::id());
        let namespaces = (0..hosts)
            .map(|host| {
                let name = format!("{tag}-{host}");
                run("ip", &["netns", "add", &name]);
                run(
                    "ip",
                    &["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
                );
                let handle = fs::File::open(format!("/run/netns/{name}")).expect("a namespace");
                Namespace {
                    name,
                    handle: Arc::new(handle),
                }
            })
            .collect();
        Network {
            bridges: (0..hosts).map(|_| Vec::new()).collect(),
            namespaces,
        }
    }

    /// Makes the service on 127.0.0.1:`port` reachable from every namespace.
    fn expose(&mut self, port: u16) {
        for (namespace, bridges) in self.namespaces.iter().zip(&mut self.bridges) {
            bridges.push(Bridge::new(namespace, port));
        }
    }

    /// Cuts a host off every service, or restores its link.
    fn link(&self, host: usize, up: bool) {
        for bridge in &self.bridges[host] {
            if up { bridge.restore() } else { bridge.cut() }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.bridges.clear();
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", &namespace.name])
                .status();
        }
    }
}

/// A real etcd, with a data folder of its own.
struct Etcd {
    dir: tempfile::TempDir,
    client: SocketAddr,
    peer: SocketAddr,
    child: Option<Child>,
    /// Client URL scheme and TLS: (ca, certificate, key) files for the server and etcdctl.
    tls: Option<Tls>,
    /// etcd's authentication is on: etcdctl is `root`.
    auth: bool,
}

/// The files of a test certificate authority and the certificates it signed.
struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    /// An authority, a server certificate for 127.0.0.1 and a client certificate of
    /// `organisation`, without a common name: etcd refuses a gateway request whose certificate
    /// has one (it would stand for a user).
    fn new(organisation: &str) -> Tls {
        let tls = Tls {
            dir: tempfile::tempdir().expect("a temporary folder"),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let file = |name: &str| tls.path(name);
        let openssl = |args: &[&str]| run("openssl", args);
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    &file("ca.key"),
                    "-out",
                    &file("ca.pem"),
                    "-days",
                    "1",
                    "-subj",
                    "/CN=fleet test authority",
                ],
            ]
            .concat(),
        );
        fs::write(
            tls.dir.path().join("server.ext"),
            "subjectAltName=IP:127.0.0.1\n",
        )
        .expect("write");
        fs::write(
            tls.dir.path().join("client.ext"),
            "extendedKeyUsage=clientAuth\n",
        )
        .expect("write");
        for (name, subject) in [
            ("server", "/CN=etcd".to_string()),
            ("client", format!("/O={organisation}")),
        ] {
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &file(&format!("{name}.key")),
                        "-out",
                        &file(&format!("{name}.csr")),
                        "-subj",
                        &subject,
                    ],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &file(&format!("{name}.csr")),
                "-CA",
                &file("ca.pem"),
                "-CAkey",
                &file("ca.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &file(&format!("{name}.pem")),
                "-extfile",
                &file(&format!("{name}.ext")),
            ]);
        }
        tls
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Etcd {
    fn start() -> Etcd {
        Etcd::start_with(None)
    }

    fn start_with(tls: Option<Tls>) -> Etcd {
        let mut etcd = Etcd {
            dir: tempfile::tempdir().expect("a temporary folder"),
            client: free_address(),
            peer: free_address(),
            child: None,
            tls,
            auth: false,
        };
        etcd.launch();
        etcd
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    fn launch(&mut self) {
        let url = self.url();
        let peer = format!("http://{}", self.peer);
        let log = fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "fleet", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("fleet={peer}")])
            .args(["--max-txn-ops", "10000"])
            .args(self.tls.as_ref().map_or_else(Vec::new, |tls| {
                vec![
                    "--cert-file".to_string(),
                    tls.path("server.pem"),
                    "--key-file".to_string(),
                    tls.path("server.key"),
                    "--trusted-ca-file".to_string(),
                    tls.path("ca.pem"),
                    "--client-cert-auth".to_string(),
                ]
            }))
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian package etcd-server)");
        self.child = Some(child);
        assert!(
            wait_until(DEADLINE, || self
                .ctl(&["endpoint", "health"])
                .status
                .success()),
            "etcd did not start"
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops etcd, forgets everything it held, and starts it again on the same ports.
    fn restart_empty(&mut self) {
        self.stop();
        fs::remove_dir_all(self.dir.path().join("data")).expect("remove etcd's data");
        self.launch();
    }

    fn ctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url()]);
        if let Some(tls) = &self.tls {
            command.args(["--cacert", &tls.path("ca.pem")]);
            command.args([
                "--cert",
                &tls.path("client.pem"),
                "--key",
                &tls.path("client.key"),
            ]);
        }
        if self.auth {
            command.args(["--user", "root:root-password"]);
        }
        command
            .args(args)
            .output()
            .expect("run etcdctl (Debian package etcd-client)")
    }

    /// Turns etcd's authentication on, with `root` and `sozu`, who may read and write the
    /// prefix.
    fn enable_auth(&mut self) {
        self.auth = true;
        for args in [
            &["user", "add", "root:root-password"][..],
            &["user", "add", "sozu:sozu-password"],
            &["role", "add", "fleet"],
            &[
                "role",
                "grant-permission",
                "fleet",
                "--prefix=true",
                "readwrite",
                PREFIX,
            ],
            &["user", "grant-role", "sozu", "fleet"],
            &["auth", "enable"],
        ] {
            let output = self.ctl(args);
            assert!(
                output.status.success(),
                "{args:?}: {}",
                text(&output.stderr)
            );
        }
    }

    fn put(&self, key: &str, value: &str) {
        let output = self.ctl(&["put", &format!("{PREFIX}{key}"), value]);
        assert!(
            output.status.success(),
            "put {key}: {}",
            text(&output.stderr)
        );
    }

    fn delete(&self, key: &str) {
        let output = self.ctl(&["del", &format!("{PREFIX}{key}")]);
        assert!(
            output.status.success(),
            "del {key}: {}",
            text(&output.stderr)
        );
    }

    fn get(&self, key: &str) -> String {
        text(
            &self
                .ctl(&["get", "--print-value-only", &format!("{PREFIX}{key}")])
                .stdout,
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node: `sozu start` in its host's namespace, listening there on 0.0.0.0:8080 (HTTP) and
/// 0.0.0.0:8443 (HTTPS).
struct Node {
    name: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    namespace: Namespace,
    child: Child,
}

impl Node {
    fn start(network: &Network, host: usize, etcd: &Etcd) -> Node {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let name = format!("node-{host}");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "command_socket = \"sozu.sock\"\n\
                 worker_count = 1\n\
                 worker_timeout = 5\n\
                 [[listeners]]\nprotocol = \"http\"\naddress = \"0.0.0.0:8080\"\n\
                 [[listeners]]\nprotocol = \"https\"\naddress = \"0.0.0.0:8443\"\n\
                 [provider.etcd]\n\
                 endpoints = [\"http://{}\"]\n\
                 prefix = \"{PREFIX}\"\n\
                 node = \"{name}\"\n",
                etcd.client
            ),
        )
        .expect("write the configuration");
        let log = fs::File::create(dir.path().join("sozu.log")).expect("log file");
        let namespace = network.namespaces[host].clone();
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace.name, SOZU, "start", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start sozu");
        let node = Node {
            name,
            dir,
            config,
            namespace,
            child,
        };
        assert!(
            wait_until(DEADLINE, || etcd
                .get(&format!("nodes/{}", node.name))
                .contains("pid")),
            "{} did not publish itself:\n{}",
            node.name,
            node.log()
        );
        node
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sozu.log")).unwrap_or_default()
    }

    /// The status and body of `GET /` for `host` on the node's HTTP listener.
    fn get(&self, host: &str) -> Option<(u16, String)> {
        let listener = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
        self.namespace.within(|| common::get(listener, host)).ok()
    }

    fn routes_to(&self, host: &str, backend: &str) -> bool {
        self.get(host)
            .is_some_and(|(status, body)| status == 200 && body == backend)
    }

    /// Whether curl gets an answer from `backend` over HTTPS, checking the certificate with
    /// `authority`.
    fn serves_tls(&self, host: &str, authority: &str, backend: &str) -> bool {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespace.name, "curl"])
            .args(["-s", "--max-time", "5", "--cacert", authority, "--resolve"])
            .arg(format!("{host}:8443:127.0.0.1"))
            .arg(format!("https://{host}:8443/"))
            .output();
        output.is_ok_and(|output| output.status.success() && text(&output.stdout) == backend)
    }

    fn sozu(&self, args: &[&str]) -> Output {
        Command::new(SOZU)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run sozu")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.sozu(&["shutdown", "--hard"]);
        if !wait_until(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until every node satisfies `condition`; returns how long it took.
fn on_every_node(nodes: &[Node], what: &str, condition: impl Fn(&Node) -> bool) -> Duration {
    let started = Instant::now();
    for node in nodes {
        assert!(
            wait_until(DEADLINE, || condition(node)),
            "{what}: not on {}:\n{}",
            node.name,
            node.log()
        );
    }
    let took = started.elapsed();
    println!("{what}: on every node in {took:?}");
    took
}

fn cluster(id: &str) -> String {
    format!(r#"{{"type":"ADD_CLUSTER","cluster_id":"{id}"}}"#)
}

fn backend(cluster: &str, id: &str, address: SocketAddr) -> String {
    format!(
        r#"{{"type":"ADD_BACKEND","cluster_id":"{cluster}","backend_id":"{id}","address":"{address}"}}"#
    )
}

fn http_frontend(cluster: &str, hostname: &str) -> String {
    format!(
        r#"{{"type":"ADD_HTTP_FRONTEND","cluster_id":"{cluster}","address":"0.0.0.0:8080","hostname":"{hostname}"}}"#
    )
}

#[test]
fn three_nodes_route_what_etcd_holds_and_ride_out_its_faults() {
    let mut network = Network::new(3);
    let mut etcd = Etcd::start();
    let first = Backend::start("first");
    let second = Backend::start("second");
    for port in [
        etcd.client.port(),
        first.address.port(),
        second.address.port(),
    ] {
        network.expose(port);
    }
    let nodes: Vec<Node> = (0..3)
        .map(|host| Node::start(&network, host, &etcd))
        .collect();

    // A cluster, a backend and a frontend put into etcd route on all three nodes.
    etcd.put("clusters/web", &cluster("web"));
    etcd.put(
        "backends/web/first",
        &backend("web", "first", first.address),
    );
    etcd.put("frontends/web", &http_frontend("web", "web.example"));
    on_every_node(&nodes, "a new cluster routes", |node| {
        node.routes_to("web.example", "first")
    });

    // A backend removed drains: its replacement takes every request on all three.
    etcd.put(
        "backends/web/second",
        &backend("web", "second", second.address),
    );
    etcd.delete("backends/web/first");
    on_every_node(&nodes, "a removed backend drains", |node| {
        (0..4).all(|_| node.routes_to("web.example", "second"))
    });

    // A certificate added serves on all three, checked with its authority.
    let certificate = fs::read_to_string(format!("{FIXTURES}/example.pem")).expect("fixture");
    let key = fs::read_to_string(format!("{FIXTURES}/example.key")).expect("fixture");
    let add = serde_json::json!({
        "type": "ADD_CERTIFICATE",
        "address": "0.0.0.0:8443",
        "certificate": {"certificate": certificate, "key": key},
    });
    let fingerprint = certificate_fingerprint(&certificate);
    etcd.put(&format!("certificates/{fingerprint}"), &add.to_string());
    etcd.put(
        "frontends/web-tls",
        r#"{"type":"ADD_HTTPS_FRONTEND","cluster_id":"web","address":"0.0.0.0:8443","hostname":"www.example.com"}"#,
    );
    let authority = format!("{FIXTURES}/example.pem");
    on_every_node(&nodes, "a certificate serves", |node| {
        node.serves_tls("www.example.com", &authority, "second")
    });

    // A bad value is reported under status/<node>; the rest of the change is applied.
    etcd.put("frontends/bad", &http_frontend("missing", "bad.example"));
    etcd.put("frontends/good", &http_frontend("web", "good.example"));
    on_every_node(
        &nodes,
        "a bad value is reported, the rest applied",
        |node| {
            etcd.get(&format!("status/{}", node.name))
                .contains("no cluster `missing`")
                && node.routes_to("good.example", "second")
        },
    );
    let counts = nodes[0].sozu(&["state", "stats", "--json=compact"]);
    assert!(
        text(&counts.stdout).contains("\"fleet.refused_values\":1"),
        "{}",
        text(&counts.stdout)
    );
    etcd.delete("frontends/bad");

    // `sozu fleet status` tells the fleet converged.
    on_every_node(&nodes, "fleet status converged", |node| {
        node.sozu(&["fleet", "status"]).status.success()
    });
    let status = nodes[0].sozu(&["fleet", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    assert_eq!(status["converged"], true, "{status}");
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    // A change made while a node is cut off reaches it once its link is back.
    network.link(2, false);
    assert!(
        wait_until(DEADLINE, || nodes[2].log().contains("etcd unreachable")),
        "the cut node did not notice:\n{}",
        nodes[2].log()
    );
    etcd.put("frontends/late", &http_frontend("web", "late.example"));
    on_every_node(&nodes[..2], "a change while a node is cut off", |node| {
        node.routes_to("late.example", "second")
    });
    network.link(2, true);
    on_every_node(&nodes[2..], "the change after reconnection", |node| {
        node.routes_to("late.example", "second")
    });

    // A key deleted while a node is cut off and upgraded (a new main process takes over) is
    // removed once the link is back: the new process knows what the old one applied.
    network.link(2, false);
    etcd.delete("frontends/late");
    let upgrade = nodes[2].sozu(&["upgrade", "-t", "20000"]);
    assert!(
        upgrade.status.success(),
        "{}{}",
        text(&upgrade.stdout),
        text(&upgrade.stderr)
    );
    network.link(2, true);
    on_every_node(
        &nodes,
        "a key deleted during an upgrade is removed",
        |node| {
            node.get("late.example")
                .is_some_and(|(status, _)| status == 404)
        },
    );

    // etcd stopped: every node keeps serving.
    etcd.stop();
    for node in &nodes {
        assert!(node.routes_to("web.example", "second"), "{}", node.log());
    }

    // etcd restarted empty: the nodes keep their state until the prefix is written again.
    etcd.restart_empty();
    on_every_node(
        &nodes,
        "nodes keep their state once etcd is back empty",
        |node| {
            etcd.get(&format!("nodes/{}", node.name))
                .contains("\"keeping_state\":true")
                && node.routes_to("web.example", "second")
        },
    );
    // Nothing changes, so nothing is written: a node's record does not answer the others'.
    let revision = || {
        let output = etcd.ctl(&["get", &format!("{PREFIX}nodes/node-0"), "-w", "json"]);
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        value["header"]["revision"].as_i64()
    };
    let before = revision();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(revision(), before, "the nodes keep rewriting their records");

    // Written again with `sozu fleet import`, whose result `sozu fleet export` prints back as
    // a file that `sozu config check` accepts.
    let files = tempfile::tempdir().expect("a temporary folder");
    let routing = files.path().join("routing.toml");
    fs::write(
        &routing,
        format!(
            "[[listeners]]\nprotocol = \"http\"\naddress = \"0.0.0.0:8080\"\n\
             [clusters.api]\nprotocol = \"http\"\n\
             frontends = [{{ address = \"0.0.0.0:8080\", hostname = \"api.example\" }}]\n\
             backends = [{{ address = \"{}\" }}]\n\
             [provider.etcd]\nendpoints = [\"http://{}\"]\nprefix = \"{PREFIX}\"\n\
             node = \"importer\"\n",
            first.address, etcd.client
        ),
    )
    .expect("write the file to import");
    let sozu = |args: &[&str]| {
        let output = Command::new(SOZU)
            .arg("-c")
            .arg(&routing)
            .args(args)
            .output()
            .expect("run sozu");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    let imported = sozu(&["fleet", "import"]);
    assert!(imported.contains("4 key(s) written"), "{imported}");
    on_every_node(&nodes, "the prefix written again is applied", |node| {
        node.routes_to("api.example", "first")
            && node
                .get("web.example")
                .is_some_and(|(status, _)| status == 404)
    });
    let exported = files.path().join("exported.toml");
    fs::write(&exported, sozu(&["fleet", "export"])).expect("write the export");
    let check = Command::new(SOZU)
        .args(["config", "check", "-c"])
        .arg(&exported)
        .output()
        .expect("run sozu");
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("api.example"),
        "{}",
        text(&check.stdout)
    );
}

/// The SHA-256 of the certificate's DER, as `openssl` computes it.
fn certificate_fingerprint(pem: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("openssl's input"),
        pem.as_bytes(),
    )
    .expect("write to openssl");
    let output = child.wait_with_output().expect("openssl's output");
    text(&output.stdout)
        .split_once('=')
        .map(|(_, digits)| digits.trim().replace(':', "").to_ascii_lowercase())
        .expect("a fingerprint")
}

/// TLS with a client certificate, and etcd's authentication: etcd takes no connection without
/// a certificate its authority signed, the node's user may write the prefix, and its
/// certificate names no user, so routing works only if both the TLS settings and the
/// credentials of `[provider.etcd]` are in force.
#[test]
fn a_node_reaches_etcd_over_tls_with_a_client_certificate_and_credentials() {
    let mut etcd = Etcd::start_with(Some(Tls::new("edge")));
    etcd.enable_auth();
    let tls = etcd.tls.as_ref().expect("TLS files");
    let secure = Backend::start("secure");
    let prometheus = free_address();
    let proxy = common::Proxy::start(&format!(
        "[metrics]\nprometheus_address = \"{prometheus}\"\n\
         [provider.etcd]\n\
         endpoints = [\"{}\"]\n\
         prefix = \"{PREFIX}\"\n\
         node = \"edge\"\n\
         ca_certificate = \"{}\"\n\
         certificate = \"{}\"\n\
         key = \"{}\"\n\
         user = \"sozu\"\n\
         password = \"sozu-password\"\n",
        etcd.url(),
        tls.path("ca.pem"),
        tls.path("client.pem"),
        tls.path("client.key"),
    ));
    etcd.put("clusters/web", &cluster("web"));
    etcd.put(
        "backends/web/secure",
        &backend("web", "secure", secure.address),
    );
    etcd.put(
        "frontends/web",
        &format!(
            r#"{{"type":"ADD_HTTP_FRONTEND","cluster_id":"web","address":"{}","hostname":"secure.example"}}"#,
            proxy.http
        ),
    );
    assert!(
        wait_until(DEADLINE, || proxy
            .get("secure.example")
            .is_ok_and(|answer| answer == (200, "secure".to_string()))),
        "{}",
        proxy.log_text()
    );
    assert!(
        wait_until(DEADLINE, || etcd.get("nodes/edge").contains("\"revision\"")),
        "{}",
        proxy.log_text()
    );

    // The provider's figures are among the main process's on the Prometheus endpoint.
    let (status, scrape) = common::get(prometheus, "metrics").expect("a scrape");
    assert_eq!(status, 200);
    for family in [
        "sozu_fleet_refused_values_total 0",
        "sozu_fleet_refused_keys 0",
        "sozu_fleet_disconnections_total 0",
        "sozu_fleet_applied_revision ",
    ] {
        assert!(scrape.contains(family), "{family} missing:\n{scrape}");
    }

    // A reload of the configuration file keeps what the prefix holds.
    proxy.ok(&["reload"]);
    assert_eq!(
        proxy.get("secure.example").ok(),
        Some((200, "secure".to_string()))
    );
}

/// The text of a key and its value.
fn key_value(kv: &KeyValue) -> (String, String) {
    (
        String::from_utf8_lossy(&kv.key).into_owned(),
        String::from_utf8_lossy(&kv.value).into_owned(),
    )
}

/// The gateway client against a real etcd: it takes the first endpoint that answers, reads the
/// prefix at one revision, watches from the next (the changes since, in order), stops a watch
/// blocked on another thread when shut down, writes keys that go with their lease, tells a
/// watch from a compacted revision apart, and takes a new token when etcd forgot its own.
#[test]
fn the_gateway_client_reads_watches_and_leases_on_a_real_etcd() {
    let mut etcd = Etcd::start();
    etcd.enable_auth();
    let settings = EtcdProvider {
        endpoints: vec![format!("http://{}", free_address()), etcd.url()],
        prefix: PREFIX.to_string(),
        node: "client".to_string(),
        ca_certificate: None,
        client_identity: None,
        credentials: Some(("sozu".to_string(), "sozu-password".to_string())),
    };
    let connect = || Client::connect(&settings, 0, Duration::from_secs(3)).expect("a client");
    let mut client = connect();
    assert_eq!(
        client.index(),
        1,
        "the endpoint nobody listens on was taken"
    );

    etcd.put("clusters/a", "1");
    let (revision, kvs) = client.range_prefix(PREFIX).expect("a read");
    let read: Vec<(String, String)> = kvs.iter().map(key_value).collect();
    assert_eq!(read, [("/sozu/clusters/a".to_string(), "1".to_string())]);

    let (answers, received) = mpsc::channel();
    let watching = {
        let client = client.clone();
        thread::spawn(move || {
            for answer in client.watch(PREFIX, revision + 1).expect("a watch") {
                if answers.send(answer).is_err() {
                    return;
                }
            }
        })
    };
    etcd.put("clusters/b", "2");
    etcd.delete("clusters/a");
    let mut events = Vec::new();
    while events.len() < 2 {
        let answer = received
            .recv_timeout(DEADLINE)
            .expect("a watch answer")
            .expect("no watch error");
        for event in &answer.events {
            if let Some(kv) = &event.kv {
                events.push((event.kind == EventKind::Put, key_value(kv)));
            }
        }
    }
    assert_eq!(
        events,
        [
            (true, ("/sozu/clusters/b".to_string(), "2".to_string())),
            (false, ("/sozu/clusters/a".to_string(), String::new())),
        ]
    );
    client.shutdown();
    loop {
        match received.recv_timeout(DEADLINE) {
            Ok(Ok(answer)) => assert!(answer.events.is_empty(), "{answer:?}"),
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the watch outlived its client"),
        }
    }
    watching.join().expect("the watch thread");

    let mut client = connect();
    let lease = client.lease_grant(10).expect("a lease");
    let record = (format!("{PREFIX}nodes/client"), b"up".to_vec());
    client.put_all(&[record], Some(lease)).expect("a write");
    assert_eq!(etcd.get("nodes/client").trim_end(), "up");
    assert!(client.lease_keep_alive(lease).expect("a renewal") > 0);
    client.lease_revoke(lease).expect("a revocation");
    assert_eq!(etcd.get("nodes/client"), "");
    assert_eq!(client.lease_keep_alive(lease).ok(), Some(0));

    let (now, _) = client.range_prefix(PREFIX).expect("a read");
    let compact = etcd.ctl(&["compact", &now.to_string()]);
    assert!(compact.status.success(), "{}", text(&compact.stderr));
    let compacted = client
        .watch(PREFIX, revision + 1)
        .expect("a watch")
        .find_map(|answer| match answer {
            Ok(answer) if answer.events.is_empty() && !answer.canceled => None,
            answer => Some(answer),
        })
        .expect("an answer")
        .expect("no watch error");
    assert_eq!(compacted.compact_revision, now, "{compacted:?}");

    // Authentication turned off and on again: every token given before is forgotten.
    for args in [["auth", "disable"], ["auth", "enable"]] {
        let output = etcd.ctl(&args);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let (_, kvs) = client
        .range_prefix(PREFIX)
        .expect("a read with a new token");
    assert_eq!(kvs.len(), 1);
}
