//! Content routing through a real worker: one TCP port, the first bytes of each connection
//! pick its cluster (TLS ClientHello SNI, HTTP Host, a script), the default takes the rest.
//! The backends greet with their name once connected, so the client learns where it went,
//! and record what they received, so the test sees that the held bytes were replayed.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    time::Duration,
};

use sozu_command_lib::{
    config::{AccessLogFormat, LogTarget},
    request::{
        Cluster, ListenerAddress, ListenerType, Order, ProxyProtocolConfig, QueryMetrics,
        TcpFrontend, TcpListenerConfig, TcpRule, TcpScript,
    },
    response::{FilteredMetric, ResponseContent},
};
use sozu_e2e::{
    DEADLINE, Worker,
    backend::{Backend, Pattern, checksum_stream, checksum_update, pattern_checksum},
    free_address, temporary_directory,
    tls::client_hello,
    wait_until,
};
use sozu_lib::server::{AccessLogSettings, ServerConfig};

/// A worker with an active TCP listener configured by `configure`, a default cluster
/// `fallback` and one cluster per `(name, rule)`; every cluster has one greeter backend that
/// sends the cluster's name.
struct Port {
    worker: Worker,
    address: SocketAddr,
    backends: Vec<(&'static str, Backend)>,
}

impl Port {
    fn start(
        configure: impl FnOnce(&mut TcpListenerConfig),
        rules: &[(&'static str, Option<TcpRule>)],
        clusters: impl Fn(&str) -> Cluster,
    ) -> Port {
        Port::start_on(ServerConfig::default(), configure, rules, clusters)
    }

    /// [`Port::start`] on a worker with `config`.
    fn start_on(
        config: ServerConfig,
        configure: impl FnOnce(&mut TcpListenerConfig),
        rules: &[(&'static str, Option<TcpRule>)],
        clusters: impl Fn(&str) -> Cluster,
    ) -> Port {
        let mut worker = Worker::start(config);
        let mut listener = TcpListenerConfig::new(free_address());
        configure(&mut listener);
        let address = listener.address;
        worker.ok(Order::AddTcpListener(listener));
        let mut backends = Vec::new();
        for (name, rule) in rules {
            let backend = Backend::greeter(name.as_bytes());
            worker.cluster(clusters(name), &[backend.address]);
            let mut frontend = TcpFrontend::new(*name, address);
            frontend.rule = rule.clone();
            worker.ok(Order::AddTcpFrontend(frontend));
            backends.push((*name, backend));
        }
        worker.ok(Order::ActivateListener(ListenerAddress {
            address,
            proxy: ListenerType::Tcp,
        }));
        Port {
            worker,
            address,
            backends,
        }
    }

    fn backend(&self, name: &str) -> &Backend {
        &self
            .backends
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a backend of that name")
            .1
    }

    /// Connects, sends `data` in segments of `segment` bytes, reads the greeting of the
    /// backend the connection reached, then ends the connection.
    fn reach(&self, data: &[u8], segment: usize) -> String {
        let mut stream = TcpStream::connect(self.address).expect("connect to the proxy");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        for chunk in data.chunks(segment) {
            stream.write_all(chunk).expect("send");
        }
        let mut greeting = Vec::new();
        stream
            .read_to_end(&mut greeting)
            .expect("read the greeting");
        stream.shutdown(Shutdown::Both).expect("close");
        String::from_utf8(greeting).expect("a name")
    }

    /// Waits for the backend `name` to record a connection and returns what it received.
    fn received_by(&self, name: &str) -> Vec<u8> {
        let backend = self.backend(name);
        assert!(wait_until(DEADLINE, || !backend.received().is_empty()));
        backend.received().concat()
    }
}

/// A cluster with the default settings.
fn plain_cluster(name: &str) -> Cluster {
    Cluster::new(name)
}

fn sni(name: &str) -> Option<TcpRule> {
    Some(TcpRule::Sni(name.to_string()))
}

fn tls_port() -> Port {
    Port::start(
        |_| {},
        &[
            ("a", sni("a.test")),
            ("fallback", None),
            ("b", sni("b.test")),
            ("c", Some(TcpRule::HttpHost("c.test".to_string()))),
        ],
        plain_cluster,
    )
}

#[test]
fn tls_client_hellos_go_to_the_cluster_of_their_sni() {
    let port = tls_port();
    let hello_a = client_hello("a.test");
    assert_eq!(port.reach(&hello_a, hello_a.len()), "a");
    assert_eq!(port.received_by("a"), hello_a);
    let hello_b = client_hello("b.test");
    assert_eq!(port.reach(&hello_b, hello_b.len()), "b");
    assert_eq!(port.received_by("b"), hello_b);
    let other = client_hello("other.test");
    assert_eq!(port.reach(&other, other.len()), "fallback");
}

#[test]
fn a_client_hello_sent_one_byte_per_segment_is_routed_by_its_sni() {
    let port = tls_port();
    let hello = client_hello("b.test");
    assert_eq!(port.reach(&hello, 1), "b");
    assert_eq!(port.received_by("b"), hello);
}

#[test]
fn plain_http_is_routed_by_its_host() {
    let port = tls_port();
    let request = b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n";
    assert_eq!(port.reach(request, request.len()), "c");
    assert_eq!(port.received_by("c"), request);
}

#[test]
fn garbage_goes_to_the_default() {
    let port = tls_port();
    let garbage = b"\x00\x01garbage that no rule knows\r\n\r\n";
    assert_eq!(port.reach(garbage, garbage.len()), "fallback");
    assert_eq!(port.received_by("fallback"), garbage);
}

#[test]
fn a_silent_client_goes_to_the_default_after_inspect_timeout() {
    let port = Port::start(
        |listener| listener.inspect_timeout = Duration::from_secs(1),
        &[("a", sni("a.test")), ("fallback", None)],
        plain_cluster,
    );
    // A server-speaks-first protocol: the client waits for the greeting.
    assert_eq!(port.reach(b"", 1), "fallback");
}

#[test]
fn a_client_hello_cut_short_goes_to_the_default_after_inspect_timeout_with_its_bytes() {
    let port = Port::start(
        |listener| listener.inspect_timeout = Duration::from_secs(1),
        &[("a", sni("a.test")), ("fallback", None)],
        plain_cluster,
    );
    let hello = client_hello("a.test");
    let start = &hello[..10];
    assert_eq!(port.reach(start, 1), "fallback");
    assert_eq!(port.received_by("fallback"), start);
}

#[test]
fn a_script_can_answer_the_client_first_and_replace_the_held_bytes() {
    let source = r#"
function route(data, peer)
  if #data == 0 then
    return nil
  end
  if data:sub(1, 1) ~= "\4" then
    return { close = true }
  end
  return { cluster = "granted", reply = "ok ", data = "rewritten:" }
end
"#;
    let port = Port::start(
        |listener| {
            listener.script = Some(TcpScript {
                name: "grant.lua".to_string(),
                source: source.to_string(),
            })
        },
        &[("granted", None)],
        plain_cluster,
    );
    assert_eq!(port.reach(b"\x04request", 64), "ok granted");
    assert_eq!(port.received_by("granted"), b"rewritten:");
    assert_eq!(port.reach(b"refused", 64), "");
}

#[test]
fn the_proxy_header_is_the_one_of_the_chosen_cluster() {
    let port = Port::start(
        |_| {},
        &[("a", sni("a.test")), ("fallback", None)],
        |name| {
            let mut cluster = Cluster::new(name);
            if name == "a" {
                cluster.proxy_protocol = Some(ProxyProtocolConfig::SendHeader);
            }
            cluster
        },
    );
    let hello = client_hello("a.test");
    assert_eq!(port.reach(&hello, hello.len()), "a");
    let received = port.received_by("a");
    assert!(
        received.starts_with(b"\r\n\r\n\0\r\nQUIT\n"),
        "a PROXY v2 header"
    );
    assert!(received.ends_with(&hello));

    let plain = b"hello";
    assert_eq!(port.reach(plain, plain.len()), "fallback");
    assert_eq!(port.received_by("fallback"), plain);
}

#[test]
fn a_script_routes_by_prefix() {
    let source = r#"
function route(data, peer)
  if #data < 5 then
    return nil
  end
  if data:sub(1, 5) == "alice" then
    return { cluster = "alice" }
  end
  return { cluster = "bob" }
end
"#;
    let port = Port::start(
        |listener| {
            listener.script = Some(TcpScript {
                name: "prefix.lua".to_string(),
                source: source.to_string(),
            })
        },
        &[("alice", None), ("bob", sni("never.test"))],
        plain_cluster,
    );
    assert_eq!(port.reach(b"alice/repo", 1), "alice");
    assert_eq!(port.received_by("alice"), b"alice/repo");
    assert_eq!(port.reach(b"carol/repo", 3), "bob");
    assert_eq!(port.received_by("bob"), b"carol/repo");
}

#[test]
fn a_default_alone_serves_server_speaks_first_protocols_at_once() {
    let port = Port::start(
        // Were the stage waiting for bytes, the greeting would come after this deadline only.
        |listener| listener.inspect_timeout = Duration::from_secs(3600),
        &[("fallback", None)],
        plain_cluster,
    );
    assert_eq!(port.reach(b"", 1), "fallback");
}

/// A listener with `source` as its script and the clusters of `rules`.
fn scripted_port(source: &str, rules: &[(&'static str, Option<TcpRule>)]) -> Port {
    let source = source.to_string();
    Port::start(
        move |listener| {
            listener.script = Some(TcpScript {
                name: "route.lua".to_string(),
                source,
            })
        },
        rules,
        plain_cluster,
    )
}

#[test]
fn a_script_sends_the_connection_to_a_remote_no_cluster_names() {
    let remote = Backend::greeter(b"remote");
    // `localhost` goes through the resolver thread; it may name ::1 first, where nothing
    // listens: the next address is tried.
    let source = format!(
        r#"
function route(data, peer)
  if data == "by address" then
    return {{ remote = "{address}" }}
  end
  return {{ remote = "localhost:{port}", data = "replaced" }}
end
"#,
        address = remote.address,
        port = remote.address.port()
    );
    let port = scripted_port(&source, &[]);
    assert_eq!(port.reach(b"by address", 64), "remote");
    assert!(wait_until(DEADLINE, || remote.received().len() == 1));
    assert_eq!(remote.received()[0], b"by address");
    assert_eq!(port.reach(b"by name", 64), "remote");
    assert!(wait_until(DEADLINE, || remote.received().len() == 2));
    assert_eq!(remote.received()[1], b"replaced");
}

#[test]
fn a_script_answers_then_closes() {
    let source = r#"
function route(data, peer)
  if data == "quit" then
    return { close = "bye\n" }
  end
  return { close = true }
end
"#;
    let port = scripted_port(source, &[]);
    assert_eq!(port.reach(b"quit", 64), "bye\n");
    assert_eq!(port.reach(b"other", 64), "");
}

#[test]
fn a_script_answers_with_a_file() {
    let directory = temporary_directory("motd");
    let path = directory.path().join("motd");
    std::fs::write(&path, b"0123456789").expect("write the file");
    let source = format!(
        r#"
function route(data, peer)
  if data == "part" then
    return {{ file = "{path}", reply = "R:", offset = 2, nbytes = 5 }}
  end
  return {{ file = "{path}" }}
end
"#,
        path = path.display()
    );
    let port = scripted_port(&source, &[]);
    assert_eq!(port.reach(b"part", 64), "R:23456");
    assert_eq!(port.reach(b"whole", 64), "0123456789");
}

#[test]
fn proxy_error_hears_of_a_backend_that_cannot_be_reached() {
    let closed = free_address();
    let source = format!(
        r#"
heard = nil
function route(data, peer)
  if heard then
    local message = heard
    heard = nil
    return {{ close = message }}
  end
  if data == "cluster" then
    return {{ cluster = "dead" }}
  end
  return {{ remote = "{closed}" }}
end
function proxy_error(peer, message)
  heard = message
end
"#
    );
    let mut port = scripted_port(&source, &[]);
    assert_eq!(port.reach(b"first", 64), "");
    assert_eq!(
        port.reach(b"second", 64),
        format!("cannot connect to {closed}")
    );
    port.worker.cluster(Cluster::new("dead"), &[closed]);
    assert_eq!(port.reach(b"cluster", 64), "");
    assert_eq!(
        port.reach(b"then", 64),
        "no backend of cluster dead can be reached"
    );
}

#[test]
fn ten_megabytes_through_a_routed_connection_arrive_intact() {
    const LENGTH: usize = 10 << 20;
    let backend = Backend::exchanger(LENGTH);
    let source = format!(
        r#"
function route(data, peer)
  return {{ remote = "{}" }}
end
"#,
        backend.address
    );
    let port = scripted_port(&source, &[]);
    let stream = TcpStream::connect(port.address).expect("connect to the proxy");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut pattern = Pattern::new(0xc11e_0000);
        let mut chunk = vec![0; 64 * 1024];
        let mut left = LENGTH;
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        while left > 0 {
            let count = left.min(chunk.len());
            pattern.fill(&mut chunk[..count]);
            hash = checksum_update(hash, &chunk[..count]);
            writer.write_all(&chunk[..count]).expect("send");
            left -= count;
        }
        writer.shutdown(Shutdown::Write).expect("shut down");
        hash
    });
    let (received, checksum) = checksum_stream(&stream);
    let sent = sender.join().expect("sender thread");
    assert_eq!(received, LENGTH as u64);
    assert_eq!(checksum, pattern_checksum(0xbac0_0000, LENGTH));
    assert!(wait_until(DEADLINE, || !backend.received().is_empty()));
    let mut expected = (LENGTH as u64).to_le_bytes().to_vec();
    expected.extend_from_slice(&sent.to_le_bytes());
    assert_eq!(
        backend.received()[0],
        expected,
        "the backend got every byte"
    );
}

#[test]
fn a_script_that_loops_or_errors_closes_that_connection_and_the_worker_serves_others() {
    let source = r#"
function route(data, peer)
  if data == "loop" then
    while true do end
  end
  if data == "error" then
    error("boom")
  end
  return { cluster = "served" }
end
"#;
    let port = scripted_port(source, &[("served", None)]);
    // A client that stays connected meanwhile is served once the others are closed.
    let mut waiting = TcpStream::connect(port.address).expect("connect to the proxy");
    waiting.set_read_timeout(Some(DEADLINE)).expect("timeout");
    assert_eq!(port.reach(b"loop", 64), "");
    assert_eq!(port.reach(b"error", 64), "");
    waiting.write_all(b"hello").expect("send");
    let mut greeting = String::new();
    waiting
        .read_to_string(&mut greeting)
        .expect("read the greeting");
    assert_eq!(greeting, "served");
    assert_eq!(port.reach(b"other", 64), "served");
}

#[test]
fn each_rule_counts_its_matches_and_the_access_log_names_what_decided() {
    let directory = temporary_directory("content-log");
    let path = directory.path().join("access.log");
    let config = ServerConfig {
        access_logs: Some(AccessLogSettings {
            target: Some(LogTarget::File(path.clone())),
            format: AccessLogFormat::Json,
            colored: false,
        }),
        ..ServerConfig::default()
    };
    let source = r#"
function route(data, peer)
  if data == "error" then
    error("boom")
  end
  return { cluster = "fallback" }
end
"#;
    let mut port = Port::start_on(
        config,
        |listener| {
            listener.script = Some(TcpScript {
                name: "route.lua".to_string(),
                source: source.to_string(),
            })
        },
        &[("a", sni("a.test")), ("fallback", None)],
        plain_cluster,
    );
    let hello = client_hello("a.test");
    assert_eq!(port.reach(&hello, hello.len()), "a");
    assert_eq!(port.reach(b"error", 64), "");
    assert_eq!(port.reach(b"other", 64), "fallback");

    let response = port
        .worker
        .order(Order::QueryMetrics(QueryMetrics::default()));
    let Some(ResponseContent::Metrics(metrics)) = response.content else {
        panic!("no metrics: {response:?}");
    };
    let figures = &metrics.listeners[&port.address.to_string()];
    let count = |name: &str| match figures.get(name) {
        Some(FilteredMetric::Count(count)) => *count,
        other => panic!("{name}: {other:?} in {figures:?}"),
    };
    assert_eq!(count("content.matches"), 1);
    assert_eq!(count("content.rule_matches.a sni = \"a.test\""), 1);
    assert_eq!(count("content.script_decisions"), 1);
    assert_eq!(count("content.script_errors"), 1);
    assert_eq!(count("content.defaults_by_timeout"), 0);
    assert_eq!(count("content.bytes_inspected"), hello.len() as u64 + 10);
    assert!(matches!(
        figures.get("content.decision_time"),
        Some(FilteredMetric::Histogram(histogram)) if histogram.values.iter().map(|v| v.1).sum::<u64>() == 3
    ));

    // A round trip on the command channel: the worker flushed its lines before answering.
    port.worker.ok(Order::Status);
    let mut deciders = Vec::new();
    assert!(wait_until(DEADLINE, || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        deciders = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|line| line["decided_by"].as_str().map(str::to_string))
            .collect();
        deciders.len() == 3
    }));
    deciders.sort();
    assert_eq!(deciders, ["script", "script", "sni = \"a.test\""]);
}
