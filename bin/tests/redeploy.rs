//! A redeploy with the real binary (issue 15): clients send requests without a pause, one
//! connection per request and one keep-alive connection, while the only service behind the
//! cluster exits and a new one, on another port, registers 2 s later through the client
//! library. Holding (the requests that find no backend wait) and draining (the old service
//! finishes what it was sent) make every request succeed; the held ones wait about 2 s.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use common::{
    Backend, DEADLINE, EventStream, Proxy, free_address, get_path, start_registered, wait_until,
};
use sozu_command_lib::registration::{Definition, listen};

/// The time between the old service's exit and the new one's registration.
const GAP: Duration = Duration::from_secs(2);

/// A service that registers `api.test` on the listener given, answers `old` to every request,
/// and stops cleanly when its standard input closes, as a service does on SIGTERM: it
/// deregisters (the answer comes once the proxy sends it nothing new), answers what it was
/// sent until then, and exits.
const OLD_SERVICE: &str = r#"
import json, select, socket, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sock_path, listen = sys.argv[1:3]

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"old")

    def log_message(self, *args):
        pass

def ask(control, replies, order):
    control.sendall(json.dumps({"id": order["type"], "order": order}).encode() + b"\n")
    for line in replies:
        answer = json.loads(line)
        if answer["status"] != "PROCESSING":
            if answer["status"] != "OK":
                sys.exit(answer["message"])
            return answer

server = HTTPServer(("127.0.0.1", 0), Hello)
control = socket.socket(socket.AF_UNIX)
control.connect(sock_path)
replies = control.makefile()
answer = ask(control, replies, {"type": "REGISTER", "cluster_id": "api", "protocol": "http",
    "listen": listen, "hostname": "api.test", "backend": "127.0.0.1:%d" % server.server_port})
registration_id = answer["content"]["data"]["registration_id"]
threading.Thread(target=server.serve_forever, daemon=True).start()
print(registration_id, flush=True)
sys.stdin.read()
ask(control, replies, {"type": "DEREGISTER", "registration_id": registration_id})
server.shutdown()
while select.select([server.socket], [], [], 0)[0]:
    server.handle_request()
"#;

/// One request as a client saw it.
#[derive(Debug)]
struct Outcome {
    /// The body of a 200 answer, or what went wrong.
    answer: Result<String, String>,
    took: Duration,
}

/// A client sending requests for `api.test` one after the other until stopped.
struct Client {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    thread: JoinHandle<()>,
}

impl Client {
    fn start(
        stop: &Arc<AtomicBool>,
        mut send: impl FnMut() -> Result<String, String> + Send + 'static,
    ) -> Client {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (stop, kept) = (stop.clone(), outcomes.clone());
        let thread = thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let answer = send();
                let outcome = Outcome {
                    answer,
                    took: started.elapsed(),
                };
                kept.lock().expect("outcomes").push(outcome);
            }
        });
        Client { outcomes, thread }
    }

    /// How many requests `name` answered.
    fn answered_by(&self, name: &str) -> usize {
        let outcomes = self.outcomes.lock().expect("outcomes");
        outcomes
            .iter()
            .filter(|outcome| outcome.answer.as_deref() == Ok(name))
            .count()
    }

    fn finish(self) -> Vec<Outcome> {
        self.thread.join().expect("client thread");
        Arc::try_unwrap(self.outcomes)
            .expect("the thread ended")
            .into_inner()
            .expect("outcomes")
    }
}

/// A request on a new connection.
fn one_connection_per_request(front: SocketAddr) -> Result<String, String> {
    match get_path(front, "api.test", "/") {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("{status}: {body}")),
        Err(error) => Err(error.to_string()),
    }
}

/// Requests on one keep-alive connection, opened again only when the proxy says it closes.
struct KeepAlive {
    front: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
}

impl KeepAlive {
    fn request(&mut self) -> Result<String, String> {
        let reader = match self.connection.as_mut() {
            Some(reader) => reader,
            None => {
                let stream = TcpStream::connect(self.front).map_err(|e| e.to_string())?;
                stream
                    .set_read_timeout(Some(DEADLINE))
                    .map_err(|e| e.to_string())?;
                self.connection.insert(BufReader::new(stream))
            }
        };
        reader
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let (status, closes, body) = read_response(reader)?;
        if closes {
            self.connection = None;
        }
        match status {
            200 => Ok(body),
            _ => Err(format!("{status}: {body}")),
        }
    }
}

/// Reads one response with a `Content-Length`: its status, whether the connection closes
/// after it, and its body.
fn read_response(reader: &mut BufReader<TcpStream>) -> Result<(u16, bool, String), String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("status line: {e}"))?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not a status line: {line:?}"))?;
    let (mut length, mut closes) = (0usize, false);
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("header: {e}"))?;
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse().map_err(|_| format!("{header:?}"))?;
        }
        closes |= header == "connection: close";
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, closes, String::from_utf8_lossy(&body).into_owned()))
}

/// Starts the old service; returns it and its standard input once it registered.
fn old_service(proxy: &Proxy, front: SocketAddr) -> (Child, ChildStdin) {
    let (mut child, _) = start_registered(
        Command::new("python3")
            .arg("-c")
            .arg(OLD_SERVICE)
            .arg(proxy.dir.path().join("register.sock"))
            .arg(front.to_string())
            .stdin(Stdio::piped()),
    );
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

#[test]
fn a_redeployed_service_loses_no_request() {
    let proxy = Proxy::start("[registration]\nsocket = \"register.sock\"\n");
    let front = free_address();
    let (mut old, old_stdin) = old_service(&proxy, front);

    let stop = Arc::new(AtomicBool::new(false));
    let per_request = Client::start(&stop, move || one_connection_per_request(front));
    let mut keep_alive = KeepAlive {
        front,
        connection: None,
    };
    let kept_alive = Client::start(&stop, move || keep_alive.request());
    let clients = [per_request, kept_alive];
    assert!(
        wait_until(DEADLINE, || clients
            .iter()
            .all(|c| c.answered_by("old") >= 5)),
        "the old service does not serve both clients"
    );

    // The old service stops; the new one registers after the gap, on another port.
    let mut events = EventStream::subscribe(&proxy);
    drop(old_stdin);
    assert!(
        wait_until(DEADLINE, || old
            .try_wait()
            .is_ok_and(|status| status.is_some())),
        "the old service did not exit"
    );
    assert!(old.wait().expect("old service").success());
    thread::sleep(GAP);
    let new = listen(
        proxy.dir.path().join("register.sock"),
        Definition::http("api", front, "api.test"),
    )
    .expect("the new service registers");
    let _new = Backend::serve("new", new.try_clone().expect("clone the listener"));
    assert!(
        wait_until(DEADLINE, || clients
            .iter()
            .all(|c| c.answered_by("new") >= 5)),
        "the new service does not serve both clients"
    );

    stop.store(true, Ordering::SeqCst);
    // Subscribers saw the cluster hold, then release what it held.
    let held_then_released = events.wait_for(|seen| {
        let position = |kind: &str| {
            seen.iter()
                .position(|line| line.contains(kind) && line.contains(r#""cluster_id":"api""#))
        };
        position("HOLD_STARTED").is_some_and(|held| position("HOLD_RELEASED") > Some(held))
    });
    assert!(held_then_released, "{:#?}", events.seen);
    for (client, kind) in clients.into_iter().zip(["per request", "keep-alive"]) {
        let outcomes = client.finish();
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.answer.is_err()).collect();
        assert!(failed.is_empty(), "{kind}: failed requests: {failed:#?}");
        let longest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
        assert!(
            longest >= GAP.mul_f32(0.75),
            "{kind}: no request was held through the gap (longest {longest:?})"
        );
    }
}
