//! Metrics through the real binary: `sozu metrics get --json` and the Prometheus endpoint
//! report exactly the requests sent; a scrape passes `promtool check metrics`; `sozu events`
//! shows a backend going down and coming back.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    thread,
};

use common::{Backend, DEADLINE, EventStream, Proxy, events_of, free_address, wait_until};

fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the Prometheus endpoint");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: sozu\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the scrape");
    answer
}

/// The value of a sample line `name value` in a scrape.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn cli_and_prometheus_report_the_requests_sent() {
    let prometheus = free_address();
    let proxy = Proxy::start(&format!(
        "[metrics]\nprometheus_address = \"{prometheus}\"\n"
    ));
    let backend = Backend::start("counted");
    proxy.route("counted", "counted.test", &backend);
    for _ in 0..7 {
        assert_eq!(proxy.get("counted.test").expect("a request").0, 200);
    }
    for _ in 0..2 {
        assert_eq!(proxy.get("unknown.test").expect("a request").0, 404);
    }

    let json = proxy.ok(&["metrics", "get", "--json=compact"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("metrics as JSON");
    let figures = &value["data"];
    assert_eq!(figures["proxy"]["requests"]["COUNT"], 9, "{json}");
    assert_eq!(figures["proxy"]["status.404"]["COUNT"], 2, "{json}");
    assert_eq!(
        figures["clusters"]["counted"]["cluster"]["requests"]["COUNT"], 7,
        "{json}"
    );
    let response_time = &figures["clusters"]["counted"]["cluster"]["response_time"]["PERCENTILES"];
    assert_eq!(response_time["samples"], 7, "{json}");

    let text = proxy.ok(&["metrics", "get"]);
    assert!(text.contains("CLUSTER counted"), "{text}");

    let answer = scrape(prometheus);
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(sample(body, "sozu_requests_total"), Some(9), "{body}");
    assert_eq!(
        sample(body, "sozu_cluster_requests_total{cluster=\"counted\"}"),
        Some(7),
        "{body}"
    );
    assert_eq!(
        sample(
            body,
            "sozu_cluster_response_time_seconds_count{cluster=\"counted\"}"
        ),
        Some(7),
        "{body}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (.ci/install-test-tools installs it)");
    promtool
        .stdin
        .take()
        .expect("promtool's input")
        .write_all(body.as_bytes())
        .expect("send the scrape to promtool");
    let output = promtool.wait_with_output().expect("promtool's verdict");
    assert!(
        output.status.success(),
        "promtool refused the scrape: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn events_show_a_backend_going_down_and_up() {
    let proxy = Proxy::start("");
    // A backend address with nothing behind it: connects fail and it goes down.
    let address = free_address();
    proxy.ok(&["cluster", "add", "-i", "flaky"]);
    proxy.ok(&[
        "backend",
        "add",
        "-i",
        "flaky",
        "--backend-id",
        "flaky-0",
        "-a",
        &address.to_string(),
    ]);
    proxy.ok(&[
        "frontend",
        "http",
        "add",
        "-a",
        &proxy.http.to_string(),
        "--hostname",
        "flaky.test",
        "id",
        "flaky",
    ]);

    let mut events = EventStream::subscribe(&proxy);
    // Keep the backend failing (or answering) so that the event happens.
    let mut saw = |kind: &str| {
        events.wait_for(|seen| {
            let _ = proxy.get("flaky.test");
            events_of(seen, kind).any(|event| event["backend_id"] == "flaky-0")
        })
    };
    assert!(saw("BACKEND_DOWN"), "no BACKEND_DOWN");

    // Something answers on the address now: the next probe after the backoff succeeds.
    let listener = std::net::TcpListener::bind(address).expect("take the backend's address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup");
        }
    });
    assert!(saw("BACKEND_UP"), "no BACKEND_UP in {:?}", events.seen);
}

#[test]
fn a_certificate_about_to_expire_is_reported_to_event_subscribers() {
    let https = free_address();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let generated = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "10",
            "-subj",
            "/CN=soon.test",
            "-addext",
            "subjectAltName=DNS:soon.test",
        ])
        .arg("-keyout")
        .arg(dir.path().join("soon.key"))
        .arg("-out")
        .arg(dir.path().join("soon.pem"))
        .output()
        .expect("openssl must be installed (.ci/install-test-tools installs it)");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n\n\
         [clusters.soon]\nprotocol = \"http\"\n\
         frontends = [{{ address = \"{https}\", hostname = \"soon.test\", \
         certificate = \"{dir}/soon.pem\", key = \"{dir}/soon.key\" }}]\n\
         backends = [{{ address = \"127.0.0.1:1\" }}]\n",
        dir = dir.path().display()
    ));
    let mut events = EventStream::subscribe(&proxy);
    assert!(
        events.wait_for(
            |seen| events_of(seen, "CERTIFICATE_EXPIRES_SOON").any(|event| {
                event["message"].as_str().is_some_and(|message| {
                    message.contains("soon.test") && message.contains("expires in")
                })
            })
        ),
        "{:?}",
        events.seen
    );
}

/// Connections to the endpoint the main process may hold at once (`MAX_SCRAPES`), and how long
/// a scraper may stay silent (`SCRAPE_TIMEOUT`).
const MAX_SCRAPES: usize = 64;
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The connections to `address` that process `pid` accepted and holds: its descriptors that
/// are sockets of an established TCP connection whose local end is `address` (connections
/// still in the listen backlog are not the process's).
fn held_connections(pid: i64, address: std::net::SocketAddr) -> usize {
    let port = format!("{:04X}", address.port());
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let inodes: std::collections::HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            (local_port == port && fields.get(3) == Some(&"01"))
                .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))?
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .filter(|target| inodes.contains(&target.to_string_lossy().into_owned()))
            .count()
    })
}

/// Issue 10, item 7: idle connections to the Prometheus endpoint piled up in the main process
/// (no timeout, no cap) until it ran out of descriptors.
#[test]
fn idle_and_slow_scrapers_cannot_pile_up_in_the_main_process() {
    let prometheus = free_address();
    let proxy = Proxy::start(&format!(
        "[metrics]\nprometheus_address = \"{prometheus}\"\n"
    ));
    let main = proxy.main_pid().expect("a pid file");

    // A slow-loris scraper: one byte of its request head now and then, for ever.
    let slow = TcpStream::connect(prometheus).expect("connect");
    let mut trickle = slow.try_clone().expect("clone the stream");
    thread::spawn(move || {
        for byte in b"GET /metrics HTTP/1.1\r\nX: ".iter().cycle() {
            if trickle.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    let idle: Vec<TcpStream> = (0..MAX_SCRAPES + 8)
        .map(|_| TcpStream::connect(prometheus).expect("connect"))
        .collect();
    assert!(wait_until(DEADLINE, || held_connections(main, prometheus)
        >= MAX_SCRAPES));
    let held = held_connections(main, prometheus);
    assert!(held <= MAX_SCRAPES + 2, "{held} connections held");

    // The slow scraper is closed once its time is up, however it trickles.
    let started = std::time::Instant::now();
    let mut reader = slow;
    reader
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut buffer = [0u8; 64];
    let closed = matches!(reader.read(&mut buffer), Ok(0) | Err(_));
    assert!(
        closed && started.elapsed() < SCRAPE_TIMEOUT * 3,
        "{:?}",
        started.elapsed()
    );

    // A scraper still gets its figures: slots free up as the silent ones are closed.
    let answer = scrape(prometheus);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    drop(idle);
}
