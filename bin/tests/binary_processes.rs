//! The processes of a running proxy: a killed worker is restarted, stops are graceful or hard,
//! and the socket and pid files go away with the proxy.

mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::{Backend, DEADLINE, Proxy, is_alive, kill, wait_until};

#[test]
fn a_killed_worker_is_restarted_and_routes_as_before() {
    let proxy = Proxy::start("");
    let backend = Backend::start("one");
    proxy.route("app", "app.test", &backend);
    let before = proxy.worker_pids();
    assert_eq!(before.len(), 2);

    kill(before[0], "KILL");
    assert!(
        wait_until(DEADLINE, || {
            let pids = proxy.worker_pids();
            pids.len() == 2 && !pids.contains(&before[0])
        }),
        "the worker was not restarted"
    );
    let status = proxy.ok(&["status", "--json=compact"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let restarted = &status["data"][0];
    assert_eq!(restarted["restarts"], 1, "{status}");
    assert_eq!(restarted["run_state"], "RUNNING", "{status}");
    // The new worker got the current state: every request routes, whichever worker takes it.
    assert!(wait_until(DEADLINE, || proxy
        .log_text()
        .matches("has the current state")
        .count()
        >= 3));
    for _ in 0..10 {
        assert_eq!(proxy.get("app.test").unwrap(), (200, "one".to_string()));
    }
    assert!(proxy.log_text().contains("restarted as pid"));
}

#[test]
fn soft_shutdown_finishes_requests_then_everything_exits() {
    let mut proxy = Proxy::start("");
    let (slow, gate, arrived) = Backend::gated("slow");
    proxy.route("app", "app.test", &slow);
    let workers = proxy.worker_pids();
    let http = proxy.http;
    let in_flight = thread::spawn(move || common::get(http, "app.test"));
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request reaches the backend");

    let shutdown = std::process::Command::new(common::SOZU)
        .args(["shutdown", "--socket"])
        .arg(&proxy.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the request is in flight, the proxy waits for it.
    assert!(wait_until(DEADLINE, || proxy
        .log_text()
        .contains("soft stop: no more accepts")));
    assert!(proxy.main.try_wait().unwrap().is_none());
    gate.release();
    let (status, body) = in_flight.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "slow"));

    let output = shutdown.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(common::text(&output.stdout).contains("soft stop done"));
    assert!(wait_until(DEADLINE, || proxy
        .main
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(wait_until(DEADLINE, || workers
        .iter()
        .all(|pid| !is_alive(*pid))));
    assert!(!proxy.socket.exists());
    assert!(!proxy.pid_file.exists());
}

#[test]
fn sigterm_stops_hard_and_removes_the_files() {
    let mut proxy = Proxy::start("");
    let workers = proxy.worker_pids();
    kill(i64::from(proxy.main.id()), "TERM");
    assert!(wait_until(DEADLINE, || proxy
        .main
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(wait_until(DEADLINE, || workers
        .iter()
        .all(|pid| !is_alive(*pid))));
    assert!(!proxy.socket.exists());
    assert!(!proxy.pid_file.exists());
}

#[test]
fn ttin_and_ttou_add_and_remove_a_worker() {
    let proxy = Proxy::start("");
    let main = i64::from(proxy.main.id());
    kill(main, "TTIN");
    assert!(wait_until(DEADLINE, || proxy.worker_pids().len() == 3));
    kill(main, "TTOU");
    assert!(wait_until(DEADLINE, || proxy.worker_pids().len() == 2));
    // The stopped worker exits, and is not restarted.
    assert!(wait_until(DEADLINE, || proxy
        .log_text()
        .contains("exited with status 0")));
    assert!(!proxy.log_text().contains("restarted as pid"));
    assert_eq!(proxy.worker_pids().len(), 2);
}

#[test]
fn a_worker_that_keeps_dying_is_restarted_after_a_growing_delay() {
    let proxy = Proxy::start("");
    let first = proxy.worker_pids()[0];
    kill(first, "KILL");
    // The first death of a young worker restarts it at once.
    let second = wait_for_new_pid(&proxy, &[first]);
    let killed = Instant::now();
    kill(second, "KILL");
    // The second death in a row within 30 s of its start waits one second before the restart.
    let third = wait_for_new_pid(&proxy, &[first, second]);
    assert!(killed.elapsed() >= Duration::from_secs(1));
    let log = proxy.log_text();
    assert!(log.contains("died 2 times in a row"), "{log}");
    assert!(log.contains("restarting it in 1s"), "{log}");
    let status = proxy.ok(&["status", "--json=compact"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let restarted = status["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["pid"] == third)
        .cloned()
        .unwrap_or_default();
    assert_eq!(restarted["restarts"], 2, "{status}");
    assert_eq!(restarted["run_state"], "RUNNING", "{status}");
}

/// Waits until two workers run and neither is one of `gone`; returns the new one's pid.
fn wait_for_new_pid(proxy: &Proxy, gone: &[i64]) -> i64 {
    let mut new = None;
    assert!(
        wait_until(DEADLINE, || {
            let pids = proxy.worker_pids();
            new = pids
                .iter()
                .copied()
                .find(|pid| *pid != 0 && !gone.contains(pid));
            pids.iter().filter(|pid| **pid != 0).count() == 2
                && pids.iter().all(|pid| !gone.contains(pid))
        }),
        "the worker was not restarted"
    );
    new.unwrap_or_default()
}
