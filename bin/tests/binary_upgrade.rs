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
