//! Content routing with real clients and servers (issue 13): `curl --socks4` through a SOCKS4
//! proxy, `git clone` through ProxyMachine's Git router to one `git daemon` per user, `ssh` to
//! an `sshd` found by protocol detection. The routers are Rust [`TcpRouter`]s registered on a
//! running worker, and the Lua script of doc/content-routing.md.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Output, Stdio},
};

use sozu_command_lib::request::{
    Cluster, ListenerAddress, ListenerType, Order, TcpFrontend, TcpListenerConfig, TcpProtocol,
    TcpRule, TcpScript,
};
use sozu_e2e::{
    DEADLINE, TempDir, Worker, address_for_another_process, backend::Backend, free_address,
    temporary_directory, wait_until,
};
use sozu_lib::{
    router::content::{Decision, Target, TcpRouter},
    server::ServerConfig,
};

/// Issue 13, item 4: a SOCKS4 proxy (CONNECT only) for a program that embeds the library.
struct Socks4;

impl TcpRouter for Socks4 {
    fn route(&mut self, buffered: &[u8], _peer: SocketAddr) -> Decision {
        let Some((request, rest)) = buffered.split_at_checked(8) else {
            return Decision::Wait;
        };
        if request[..2] != [4, 1] {
            return Decision::Close(vec![0, 91, 0, 0, 0, 0, 0, 0]);
        }
        let Some(end) = rest.iter().position(|&byte| byte == 0) else {
            return Decision::Wait;
        };
        let port = u16::from_be_bytes([request[2], request[3]]);
        let ip = std::net::Ipv4Addr::new(request[4], request[5], request[6], request[7]);
        Decision::Connect {
            target: Target::Remote(SocketAddr::from((ip, port)).to_string()),
            // What the client sent after its request (nothing, if it waits for the grant).
            data: Some(rest[end + 1..].to_vec()),
            reply: Some(vec![0, 90, 0, 0, 0, 0, 0, 0]),
        }
    }
}

/// ProxyMachine's Git router: `git-upload-pack /<user>/<repo>` goes to the user's cluster.
struct GitRouter;

impl TcpRouter for GitRouter {
    fn route(&mut self, buffered: &[u8], _peer: SocketAddr) -> Decision {
        // A pkt-line: four hexadecimal digits of length, then the command.
        let Some(command) = buffered.get(4..) else {
            return Decision::Wait;
        };
        let Some(path) = command.strip_prefix(b"git-upload-pack /") else {
            return if b"git-upload-pack /".starts_with(command) {
                Decision::Wait
            } else {
                Decision::Close(b"not a git request\n".to_vec())
            };
        };
        match path.iter().position(|&byte| byte == b'/') {
            Some(end) => Decision::Connect {
                target: Target::Cluster(format!("git-{}", String::from_utf8_lossy(&path[..end]))),
                data: None,
                reply: None,
            },
            None => Decision::Wait,
        }
    }
}

/// A directory of its own under the system's temporary directory, removed when dropped.
/// A server program started by the test, stopped when dropped.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    /// Starts `command`, which listens on `address`, and waits until it accepts.
    fn start(mut command: Command, address: SocketAddr) -> Server {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server program");
        let server = Server { child, address };
        assert!(
            wait_until(DEADLINE, || TcpStream::connect(address).is_ok()),
            "{command:?} listens on {address}"
        );
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run the program");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn git(args: &[&str]) -> Output {
    run(Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@test"])
        .args(args))
}

/// A `git daemon` serving `<user>/repo`, whose file `owner` holds the user's name.
fn git_daemon(dir: &Path, user: &str) -> Server {
    let base = dir.join(format!("{user}-daemon"));
    let repo = base.join(user).join("repo");
    std::fs::create_dir_all(&repo).expect("create the repository's folder");
    let repo_path = repo.to_str().expect("a UTF-8 path");
    git(&["init", "-q", repo_path]);
    std::fs::write(repo.join("owner"), user).expect("write a file");
    git(&["-C", repo_path, "add", "owner"]);
    git(&["-C", repo_path, "commit", "-q", "-m", user]);
    let address = address_for_another_process();
    // The daemon itself, not `git daemon`: killing that wrapper would leave the daemon behind.
    let exec_path = String::from_utf8(git(&["--exec-path"]).stdout).expect("a UTF-8 path");
    let mut command = Command::new(Path::new(exec_path.trim()).join("git-daemon"));
    command.args([
        "--reuseaddr",
        "--export-all",
        "--listen=127.0.0.1",
        &format!("--port={}", address.port()),
        &format!("--base-path={}", base.display()),
    ]);
    Server::start(command, address)
}

/// Clones `git://<proxy>/<user>/repo` and returns its file `owner`.
fn clone_owner(dir: &Path, proxy: SocketAddr, user: &str) -> String {
    let destination = dir.join(format!("clone-of-{user}"));
    git(&[
        "clone",
        "-q",
        &format!("git://{proxy}/{user}/repo"),
        destination.to_str().expect("a UTF-8 path"),
    ]);
    std::fs::read_to_string(destination.join("owner")).expect("the cloned file")
}

/// An active TCP listener of `worker` set by `configure`, with one cluster per (name, rule,
/// backend) and its frontend on the listener.
fn listener(
    worker: &mut Worker,
    configure: impl FnOnce(&mut TcpListenerConfig),
    clusters: &[(&str, Option<TcpRule>, SocketAddr)],
) -> SocketAddr {
    let mut listener = TcpListenerConfig::new(free_address());
    configure(&mut listener);
    let address = listener.address;
    worker.ok(Order::AddTcpListener(listener));
    for (name, rule, backend) in clusters {
        worker.cluster(Cluster::new(*name), &[*backend]);
        let mut frontend = TcpFrontend::new(*name, address);
        frontend.rule = rule.clone();
        worker.ok(Order::AddTcpFrontend(frontend));
    }
    worker.ok(Order::ActivateListener(ListenerAddress {
        address,
        proxy: ListenerType::Tcp,
    }));
    address
}

/// The Lua block of doc/content-routing.md that holds `needle`.
fn doc_script(needle: &str) -> TcpScript {
    let doc = include_str!("../../doc/content-routing.md");
    let source = doc
        .split("```lua\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|source| source.contains(needle))
        .expect("the doc has that Lua block");
    TcpScript {
        name: "route.lua".to_string(),
        source: source.to_string(),
    }
}

/// `curl --socks4 <proxy>` fetches a page from a backend no cluster names.
fn curl_through_socks4(proxy: SocketAddr) {
    let web = Backend::http_ok("through socks4");
    let output = run(Command::new("curl").args([
        "--silent",
        "--show-error",
        "--max-time",
        "20",
        "--socks4",
        &proxy.to_string(),
        &format!("http://{}/", web.address),
    ]));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "through socks4");
}

/// Two users' `git daemon`s, as clusters `git-alice` and `git-bob`: each clone through the
/// proxy gets the repository of its user.
fn clones_reach_their_user(
    dir: &TempDir,
    worker: &mut Worker,
    configure: impl FnOnce(&mut TcpListenerConfig),
) -> SocketAddr {
    let alice = git_daemon(dir.path(), "alice");
    let bob = git_daemon(dir.path(), "bob");
    // Clusters without frontends: only the router sends connections there.
    worker.cluster(Cluster::new("git-alice"), &[alice.address]);
    worker.cluster(Cluster::new("git-bob"), &[bob.address]);
    let proxy = listener(worker, configure, &[]);
    assert_eq!(clone_owner(dir.path(), proxy, "alice"), "alice");
    assert_eq!(clone_owner(dir.path(), proxy, "bob"), "bob");
    proxy
}

#[test]
fn a_rust_socks4_proxy_registered_on_a_running_worker_carries_curl() {
    let (mut worker, routers) = Worker::start_with_routers(ServerConfig::default());
    let proxy = listener(&mut worker, |_| {}, &[]);
    routers
        .register(proxy, Socks4)
        .expect("register the router");
    curl_through_socks4(proxy);
}

#[test]
fn the_lua_socks4_proxy_of_the_doc_carries_curl() {
    let mut worker = Worker::start(ServerConfig::default());
    let proxy = listener(
        &mut worker,
        |listener| listener.script = Some(doc_script("SOCKS4")),
        &[],
    );
    curl_through_socks4(proxy);
}

#[test]
fn a_rust_git_router_registered_before_its_listener_sends_each_clone_to_its_user() {
    let dir = temporary_directory("git-rust");
    let (mut worker, routers) = Worker::start_with_routers(ServerConfig::default());
    let address = free_address();
    routers
        .register(address, GitRouter)
        .expect("register the router");
    clones_reach_their_user(&dir, &mut worker, |listener| listener.address = address);
}

#[test]
fn the_lua_git_router_of_the_doc_sends_each_clone_to_its_user() {
    let dir = temporary_directory("git-lua");
    let mut worker = Worker::start(ServerConfig::default());
    clones_reach_their_user(&dir, &mut worker, |listener| {
        listener.script = Some(doc_script("upload%-pack"))
    });
}

#[test]
fn an_ssh_client_reaches_sshd_by_protocol_detection() {
    let dir = temporary_directory("ssh");
    let key = |name: &str| {
        let path = dir.path().join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&path));
        path
    };
    let host_key = key("host_key");
    let client_key = key("client_key");
    std::fs::copy(
        dir.path().join("client_key.pub"),
        dir.path().join("authorized_keys"),
    )
    .expect("authorize the client's key");
    let address = address_for_another_process();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {address}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n",
            host_key.display(),
            dir.path().join("sshd.pid").display(),
            dir.path().join("authorized_keys").display(),
        ),
    )
    .expect("write sshd's configuration");
    // sshd started by root wants its privilege separation folder, which lives on a tmpfs that
    // a reboot empties; as another user it does without.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut command = Command::new("/usr/sbin/sshd");
    command.args(["-D", "-e", "-f"]).arg(&config);
    let sshd = Server::start(command, address);

    let other = Backend::greeter(b"not ssh");
    let mut worker = Worker::start(ServerConfig::default());
    let proxy = listener(
        &mut worker,
        |_| {},
        &[
            (
                "ssh",
                Some(TcpRule::Protocol(TcpProtocol::Ssh)),
                sshd.address,
            ),
            ("fallback", None, other.address),
        ],
    );
    let user = String::from_utf8(run(Command::new("id").arg("-un")).stdout).expect("a name");
    let output = run(Command::new("ssh").args(["-i"]).arg(&client_key).args([
        "-p",
        &proxy.port().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=20",
        &format!("{}@127.0.0.1", user.trim()),
        "echo",
        "routed-by-protocol",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "routed-by-protocol\n"
    );
}
