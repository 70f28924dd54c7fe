//! The Toxiproxy-compatible API driven by the real Toxiproxy client, `toxiproxy-python`
//! (installed by `.ci/install-test-tools`): it creates a proxy (a TCP listener, a cluster
//! and its backend, through which bytes then flow), adds, updates and removes toxics,
//! resets, and gets Toxiproxy's errors; the latency toxic's effect is measured on the
//! client's round trips, as added and as updated.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::Command,
    thread,
};

use common::{Proxy, free_address, text};

/// A TCP backend that echoes what it reads.
fn echo_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let address = listener.local_addr().expect("its address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(count) = stream.read(&mut buffer) {
                    if count == 0 || stream.write_all(&buffer[..count]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

const SCRIPT: &str = r#"
import socket, sys, time
from toxiproxy.server import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import ProxyExists, NotFound, InvalidToxic

api_host, api_port, listen, upstream = sys.argv[1].split(":")[0], int(sys.argv[1].split(":")[1]), sys.argv[2], sys.argv[3]
server = Toxiproxy()
server.update_api_consumer(api_host, api_port)
assert server.running()
assert b"version" in server.version()

proxy = server.create(upstream=upstream, name="echo", listen=listen)
assert proxy.listen == listen and proxy.upstream == upstream and proxy.enabled
assert list(server.proxies()) == ["echo"]

with socket.create_connection(tuple([listen.split(":")[0], int(listen.split(":")[1])]), timeout=10) as conn:
    conn.sendall(b"ping")
    assert conn.recv(4) == b"ping"

try:
    server.create(upstream=upstream, name="echo", listen=listen)
    raise SystemExit("a second proxy of the same name was accepted")
except ProxyExists:
    pass
response = APIConsumer.post("/proxies", json={"name": "again", "upstream": upstream, "listen": listen})
assert response.status_code == 500, response.status_code

def shortest_round_trip():
    with socket.create_connection(tuple([listen.split(":")[0], int(listen.split(":")[1])]), timeout=10) as conn:
        best = None
        for _ in range(3):
            started = time.monotonic()
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            elapsed = time.monotonic() - started
            best = elapsed if best is None else min(best, elapsed)
        return best

proxy.add_toxic(type="latency", attributes={"latency": 200, "jitter": 10})
lagging = shortest_round_trip()
assert 0.19 <= lagging <= 0.25, lagging
proxy.add_toxic(name="cut", type="limit_data", stream="upstream", toxicity=0.5, attributes={"bytes": 100})
toxics = proxy.toxics()
assert sorted(toxics) == ["cut", "latency_downstream"], toxics
assert toxics["latency_downstream"].attributes == {"latency": 200, "jitter": 10}
assert toxics["cut"].stream == "upstream" and toxics["cut"].toxicity == 0.5

updated = APIConsumer.post("/proxies/echo/toxics/latency_downstream", json={"attributes": {"latency": 50}}).json()
assert updated["attributes"] == {"latency": 50, "jitter": 10}, updated
assert proxy.get_toxic("latency_downstream").attributes["latency"] == 50
# Twelve bytes upstream stay under the `cut` toxic's 100.
lagging = shortest_round_trip()
assert 0.04 <= lagging <= 0.1, lagging

for bad, expected in [
    ({"type": "lag"}, "invalid toxic type"),
    ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
    ({"type": "latency", "toxicity": 1.5}, "probability"),
    ({"type": "latency", "attributes": {"latency": -5}}, "must not be negative"),
]:
    try:
        APIConsumer.post("/proxies/echo/toxics", json=bad)
        raise SystemExit("accepted: %r" % bad)
    except InvalidToxic as error:
        assert expected in str(error), (bad, str(error))
try:
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    raise SystemExit("a toxic of the same name was accepted")
except ProxyExists:
    pass
assert sorted(proxy.toxics()) == ["cut", "latency_downstream"]

assert proxy.destroy_toxic("cut")
try:
    proxy.destroy_toxic("cut")
    raise SystemExit("a removed toxic was removed again")
except NotFound as error:
    assert b'"toxic not found"' in error.args[0], error.args

proxy.disable()
assert not server.get_proxy("echo").enabled
assert server.reset()
assert server.get_proxy("echo").enabled
assert proxy.toxics() == {}

with socket.create_connection(tuple([listen.split(":")[0], int(listen.split(":")[1])]), timeout=10) as conn:
    conn.sendall(b"pong")
    assert conn.recv(4) == b"pong"

populated = server.populate([{"name": "echo", "upstream": upstream, "listen": listen}])
assert populated == []
assert server.destroy(proxy)
assert server.proxies() == {}
try:
    APIConsumer.get("/proxies/echo")
    raise SystemExit("a removed proxy was found")
except NotFound:
    pass
print("ok")
"#;

#[test]
fn the_toxiproxy_python_client_drives_the_api() {
    let api = free_address();
    let proxy = Proxy::start(&format!("[toxiproxy]\naddress = \"{api}\"\n"));
    let listen = free_address();
    let upstream = echo_backend();
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(api.to_string())
        .arg(listen.to_string())
        .arg(upstream.to_string())
        .output()
        .expect("python3 (installed by .ci/install-test-tools)");
    assert!(
        output.status.success() && text(&output.stdout).trim() == "ok",
        "stdout: {}\nstderr: {}\nlog:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        proxy.log_text()
    );
}
