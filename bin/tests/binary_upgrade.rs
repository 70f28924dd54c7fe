//! Hot upgrades and reloads while clients keep sending requests: none may fail.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
};

use common::{Backend, DEADLINE, Proxy, kill, wait_until};

/// A thread sending requests in a loop, each on a new connection, until stopped.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: JoinHandle<Vec<String>>,
}

impl ClientLoop {
    fn start(address: SocketAddr, host: &'static str, expected: &'static str) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match common::get(address, host) {
                        Ok((200, body)) if body == expected => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failures.push(format!("{other:?}")),
                    }
                }
                failures
            })
        };
        ClientLoop {
            stop,
            served,
            thread,
        }
    }

    /// Waits until `more` further requests were served.
    fn wait_for(&self, more: usize) {
        let target = self.served.load(Ordering::SeqCst) + more;
        assert!(wait_until(DEADLINE, || self.served.load(Ordering::SeqCst) >= target));
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.thread.join().expect("the client loop");
        (self.served.load(Ordering::SeqCst), failures)
    }
}

#[test]
fn upgrade_under_load_refuses_no_request() {
    let proxy = Proxy::start("");
    let backend = Backend::start("up");
    proxy.route("app", "app.test", &backend);
    let old_main = proxy.main_pid();
    let old_workers = proxy.worker_pids();
    let clients = ClientLoop::start(proxy.http, "app.test", "up");
    clients.wait_for(20);

    let output = proxy.ok(&["upgrade", "-t", "20000"]);
    assert!(output.contains("2 worker(s) replaced"), "{output}");
    clients.wait_for(20);

    // The new main process serves the same socket, with new workers.
    assert_ne!(proxy.main_pid(), old_main);
    // The old workers stop accepting at once and exit a moment later.
    assert!(wait_until(DEADLINE, || proxy.worker_pids().len() == 2));
    let new_workers = proxy.worker_pids();
    assert!(new_workers.iter().all(|pid| !old_workers.contains(pid)));
    let http = proxy.http.to_string();
    proxy.ok(&[
        "frontend",
        "http",
        "add",
        "-a",
        &http,
        "--hostname",
        "new.test",
        "id",
        "app",
    ]);
    assert_eq!(proxy.get("new.test").unwrap(), (200, "up".to_string()));

    // One worker alone.
    let output = proxy.ok(&["upgrade", "--worker", "2"]);
    assert!(output.contains("1 worker(s) replaced"), "{output}");
    clients.wait_for(20);

    let (served, failures) = clients.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {served}: {failures:?}",
        failures.len()
    );
}

#[test]
fn sighup_reloads_the_file_under_load() {
    let proxy = Proxy::start("");
    let backend = Backend::start("kept");
    proxy.route("app", "app.test", &backend);
    let clients = ClientLoop::start(proxy.http, "app.test", "kept");
    clients.wait_for(20);

    // The file gains a cluster and a frontend; what was added at run time is not in the file,
    // so the reload removes it: keep the tested route by writing it into the file too.
    let added = Backend::start("added");
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    let http = proxy.http;
    let text = format!(
        "{text}\n[clusters.app]\nprotocol = \"http\"\n\
         frontends = [{{ address = \"{http}\", hostname = \"app.test\" }}]\n\
         backends = [{{ address = \"{}\", backend_id = \"app-kept\" }}]\n\
         [clusters.more]\nprotocol = \"http\"\n\
         frontends = [{{ address = \"{http}\", hostname = \"more.test\" }}]\n\
         backends = [{{ address = \"{}\" }}]\n",
        backend.address, added.address
    );
    std::fs::write(&proxy.config, text).unwrap();
    kill(proxy.main_pid().expect("a pid file"), "HUP");
    assert!(wait_until(DEADLINE, || proxy
        .get("more.test")
        .is_ok_and(|answer| answer == (200, "added".to_string()))));
    clients.wait_for(20);

    // An invalid file is refused and changes nothing.
    std::fs::write(&proxy.config, "worker_count = \"many\"\n").unwrap();
    let error = proxy.fails(&["reload"]);
    assert!(error.contains("worker_count"), "{error}");
    assert_eq!(proxy.get("more.test").unwrap(), (200, "added".to_string()));

    let (served, failures) = clients.finish();
    assert!(
        failures.is_empty(),
        "{} failed of {served}: {failures:?}",
        failures.len()
    );
}

/// How long the command socket may take to answer a query the main process answers itself,
/// whatever a worker or a new main process does.
const RESPONSIVE: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `sozu ARGS` and checks that it succeeds within [`RESPONSIVE`].
fn answers_quickly(proxy: &Proxy, args: &[&str]) {
    let started = std::time::Instant::now();
    let output = proxy.sozu(args);
    assert!(
        output.status.success(),
        "sozu {args:?}: {}",
        common::text(&output.stderr)
    );
    assert!(
        started.elapsed() < RESPONSIVE,
        "sozu {args:?} took {:?}",
        started.elapsed()
    );
}

/// Issue 10, item 8: the old main process waited for a new one in blocking calls, so a new
/// main process that hangs (here, one that stops itself with SIGSTOP) left the command socket
/// unanswered for the whole handover timeout.
#[test]
fn a_new_main_process_that_hangs_leaves_the_old_one_answering() {
    let (dir, config, http) = Proxy::prepare("");
    let program = dir.path().join("sozu-copy");
    std::fs::copy(common::SOZU, &program).expect("copy the binary");
    let proxy = Proxy::start_program(&program, dir, config, http);
    let backend = Backend::start("kept");
    proxy.route("app", "app.test", &backend);
    let main = proxy.main_pid();

    // The binary on disk is now a program that stops itself once started.
    let successor_pid = proxy.dir.path().join("successor.pid");
    std::fs::remove_file(&program).expect("remove the copy");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\necho $$ > {}.tmp && mv {0}.tmp {0}\nkill -STOP $$\n",
            successor_pid.display()
        ),
    )
    .expect("write the script");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make it executable");

    thread::scope(|scope| {
        let upgrade = scope.spawn(|| proxy.sozu(&["upgrade", "-t", "60000"]));
        assert!(wait_until(DEADLINE, || successor_pid.exists()));
        let successor: i64 = std::fs::read_to_string(&successor_pid)
            .expect("the successor's pid")
            .trim()
            .parse()
            .expect("a pid");

        // The handover waits for the stopped process; the old main process answers.
        answers_quickly(&proxy, &["listener", "list"]);
        answers_quickly(&proxy, &["status"]);
        let error = proxy.fails(&["cluster", "add", "-i", "late"]);
        assert!(error.contains("upgrade"), "{error}");
        assert_eq!(proxy.get("app.test").unwrap(), (200, "kept".to_string()));

        // Once the new process is gone, the upgrade fails and everything goes on as before.
        kill(successor, "KILL");
        let output = upgrade.join().expect("the upgrade command");
        assert!(!output.status.success());
        assert!(
            common::text(&output.stderr).contains("upgrade failed"),
            "{}",
            common::text(&output.stderr)
        );
    });
    assert_eq!(proxy.main_pid(), main);
    proxy.ok(&["cluster", "add", "-i", "late"]);
    assert_eq!(proxy.get("app.test").unwrap(), (200, "kept".to_string()));
}

/// Sends one order as a JSON line on the command socket and returns the final answer's
/// status and message.
fn raw_order(socket: &std::path::Path, order: &serde_json::Value) -> (String, String) {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let line = serde_json::json!({ "id": "raw", "order": order });
    std::io::Write::write_all(&mut stream, format!("{line}\n").as_bytes()).expect("send");
    for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
        let response: serde_json::Value =
            serde_json::from_str(&line.expect("an answer")).expect("JSON");
        if response["status"] != "PROCESSING" {
            return (
                response["status"].as_str().unwrap_or_default().to_string(),
                response["message"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    panic!("no final answer");
}

/// Issue 10, item 8: a worker that stopped reading (here, stopped with SIGSTOP) with orders
/// queued for it made the upgrade write to its channel in blocking mode, for ever.
#[test]
fn a_hung_worker_fails_the_upgrade_and_the_main_process_keeps_answering() {
    // A short `worker_timeout`: the order waits for it, then the upgrade for the channel.
    let (dir, config, http) = Proxy::prepare("");
    let text = std::fs::read_to_string(&config).expect("the configuration");
    std::fs::write(
        &config,
        text.replace("worker_timeout = 5", "worker_timeout = 1"),
    )
    .expect("write the configuration");
    let proxy = Proxy::start_with(dir, config, http);
    let pids = proxy.worker_pids();
    kill(pids[0], "STOP");
    // An order larger than the socket buffer: part of it stays queued for the stopped worker.
    let order = serde_json::json!({
        "type": "ADD_CLUSTER",
        "cluster_id": "big",
        "answers": { "503": "x".repeat(1 << 20) },
    });
    let (status, message) = raw_order(&proxy.socket, &order);
    assert_eq!(status, "FAILURE", "{message}");
    assert!(message.contains("NOT_ANSWERING"), "{message}");

    thread::scope(|scope| {
        let upgrade = scope.spawn(|| proxy.sozu(&["upgrade", "-t", "60000"]));
        // While the upgrade waits for the worker's channel to drain, and after it gave up.
        while !upgrade.is_finished() {
            answers_quickly(&proxy, &["listener", "list"]);
            thread::sleep(std::time::Duration::from_millis(200));
        }
        let output = upgrade.join().expect("the upgrade command");
        let stderr = common::text(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("did not read its channel"), "{stderr}");
    });
    answers_quickly(&proxy, &["listener", "list"]);
    kill(pids[0], "KILL");
}
