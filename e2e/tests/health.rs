//! Active health checks: a backend whose health endpoint fails is taken out of the rotation
//! after `unhealthy_threshold` probes, and comes back after `healthy_threshold` good ones.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sozu_command_lib::{
    request::{Cluster, HealthCheckConfig, Order, SetHealthCheck},
    response::EventKind,
};
use sozu_e2e::{
    DEADLINE, Worker,
    http_backend::{HttpBackend, Reply, response},
    wait_until,
};
use sozu_lib::server::ServerConfig;

/// A backend answering its name, whose `/health` answers 200 while `healthy` holds, else 503.
fn backend(name: &'static str, healthy: Arc<AtomicBool>) -> HttpBackend {
    HttpBackend::start(move |request| {
        if request.target() == "/health" {
            let status = if healthy.load(Ordering::SeqCst) {
                200
            } else {
                503
            };
            return Reply::Send(response(status, &[], b""));
        }
        Reply::Send(response(200, &[], name.as_bytes()))
    })
}

fn get(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: checked.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn failing_backends_leave_the_rotation_and_come_back() {
    let flaky_is_healthy = Arc::new(AtomicBool::new(false));
    let steady = backend("steady", Arc::new(AtomicBool::new(true)));
    let flaky = backend("flaky", flaky_is_healthy.clone());

    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(
        "checked.test",
        Cluster::new("checked"),
        &[steady.address, flaky.address],
    );
    worker.ok(Order::SetHealthCheck(SetHealthCheck {
        cluster_id: "checked".to_string(),
        health_check: HealthCheckConfig {
            uri: "/health".to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            expected_status: 0,
        },
    }));

    let event = worker.wait_event(|event| event.kind == EventKind::HealthCheckUnhealthy);
    assert_eq!(event.backend_id.as_deref(), Some("checked-1"));
    for _ in 0..6 {
        assert!(
            get(address).ends_with("steady"),
            "the unhealthy backend got traffic"
        );
    }

    flaky_is_healthy.store(true, Ordering::SeqCst);
    let event = worker.wait_event(|event| event.kind == EventKind::HealthCheckHealthy);
    assert_eq!(event.backend_id.as_deref(), Some("checked-1"));
    let mut answers = Vec::new();
    assert!(wait_until(DEADLINE, || {
        answers.push(get(address));
        answers.iter().any(|answer| answer.ends_with("flaky"))
    }));
    assert!(
        flaky
            .requests()
            .iter()
            .any(|request| request.target() == "/health")
    );
}
