#!/usr/bin/env python3
"""The fleet benchmark (doc/benchmarks.md, "Fleet"): three `sozu` nodes fed from one etcd.

1. `etcdctl put` of a new frontend, then the time until every node routes it: p50 and p99
   over 100 changes.
2. 1,000 backends changed in one transaction, then the time until `sozu fleet status` says the
   three nodes converged (each node's workers applied them all).

Each node runs in its own network namespace with only its own loopback interface (as the
fleet test does: bin/tests/fleet.rs), so that all three listen on 0.0.0.0:8080; etcd and the
backend listen on 127.0.0.1 here, and a bridge in each namespace relays 127.0.0.1 at their
ports to them. Only 127.0.0.1 is used. Needs root, iproute2, etcd and etcdctl
(.ci/install-test-tools). Run from the repository: `sudo benches/fleet/run.py [path/to/sozu]`
(default: target/release/sozu, else target/debug/sozu). Only the standard library is used;
everything is removed at the end.
"""

import base64
import ctypes
import http.server
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "/sozu/"
NODES = 3
TAG = f"sozu-fleet-bench-{os.getpid()}"
CHANGES = 100
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
BACKENDS = 1000


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Namespace:
    """A network namespace with only its own loopback interface; `socket()` makes a socket in
    it (a socket belongs to the namespace of the thread that made it)."""

    def __init__(self, name):
        self.name = name
        run("ip", "netns", "add", name)
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        self.requests = queue.Queue()
        ready = queue.Queue()
        threading.Thread(target=self._inside, args=(ready,), daemon=True).start()
        error = ready.get()
        if error is not None:
            raise error

    def _inside(self, ready):
        with open(f"/run/netns/{self.name}") as handle:
            if LIBC.setns(handle.fileno(), CLONE_NEWNET) != 0:
                ready.put(OSError(ctypes.get_errno(), f"setns {self.name}"))
                return
        ready.put(None)
        while True:
            self.requests.get().put(socket.socket())

    def socket(self):
        answer = queue.Queue()
        self.requests.put(answer)
        return answer.get()

    def bridge(self, port):
        """Relays connections to 127.0.0.1:port in the namespace to 127.0.0.1:port here."""
        listener = self.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        threading.Thread(target=accept, args=(listener, port), daemon=True).start()

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)


def accept(listener, port):
    while True:
        inside, _ = listener.accept()
        try:
            outside = socket.create_connection(("127.0.0.1", port))
        except OSError:
            inside.close()
            continue
        for sock in (inside, outside):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((inside, outside), (outside, inside)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()


def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def status_of(namespace, host):
    """The status of GET / for `host` on the node of `namespace`, or None."""
    try:
        with namespace.socket() as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", 8080))
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64).split(b" ")
            return int(head[1]) if len(head) > 1 else None
    except (OSError, ValueError):
        return None


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    sozu = sys.argv[1] if len(sys.argv) > 1 else None
    if sozu is None:
        release = os.path.join(ROOT, "target/release/sozu")
        sozu = release if os.path.exists(release) else os.path.join(ROOT, "target/debug/sozu")
    work = tempfile.mkdtemp(prefix="fleet-bench-")
    processes = []
    namespaces = []
    try:
        for host in range(NODES):
            namespaces.append(Namespace(f"{TAG}-{host}"))
        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        backend_address = f"127.0.0.1:{backend.server_address[1]}"
        client_port = free_port()
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{free_port()}"
        for namespace in namespaces:
            namespace.bridge(client_port)
            namespace.bridge(backend.server_address[1])
        processes.append(subprocess.Popen(
            ["etcd", "--name", "bench", "--data-dir", os.path.join(work, "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"bench={peer}", "--max-txn-ops", "5000",
             "--max-request-bytes", str(16 << 20)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        etcdctl = ["etcdctl", "--endpoints", client]
        env = dict(os.environ, ETCDCTL_API="3")
        deadline = time.time() + 20
        while subprocess.run(etcdctl + ["endpoint", "health"], env=env,
                             capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise SystemExit("etcd did not start")
            time.sleep(0.05)
        configs = []
        for host in range(NODES):
            config = os.path.join(work, f"node-{host}.toml")
            with open(config, "w") as file:
                file.write(
                    f'command_socket = "{work}/node-{host}.sock"\nworker_count = 1\n'
                    f'log_level = "warn"\n'
                    f'[[listeners]]\nprotocol = "http"\naddress = "0.0.0.0:8080"\n'
                    f'[provider.etcd]\nendpoints = ["{client}"]\nprefix = "{PREFIX}"\n'
                    f'node = "node-{host}"\n')
            configs.append(config)
            processes.append(subprocess.Popen(
                ["ip", "netns", "exec", namespaces[host].name, sozu, "start", "-c", config],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def put(key, value):
            subprocess.run(etcdctl + ["put", PREFIX + key, value], env=env, check=True,
                           stdout=subprocess.DEVNULL)

        put("clusters/bench", json.dumps({"type": "ADD_CLUSTER", "cluster_id": "bench"}))
        put("backends/bench/one", json.dumps({"type": "ADD_BACKEND", "cluster_id": "bench",
                                              "backend_id": "one", "address": backend_address}))
        put("frontends/warm", json.dumps({"type": "ADD_HTTP_FRONTEND", "cluster_id": "bench",
                                          "address": "0.0.0.0:8080", "hostname": "warm.test"}))
        deadline = time.time() + 30
        while not all(status_of(node, "warm.test") == 200 for node in namespaces):
            if time.time() > deadline:
                raise SystemExit("the nodes did not start routing")
            time.sleep(0.01)

        # 1. From `etcdctl put` returning to the first request routed on every node.
        latencies = []
        for change in range(CHANGES):
            host = f"h{change}.test"
            put(f"frontends/h{change}", json.dumps({
                "type": "ADD_HTTP_FRONTEND", "cluster_id": "bench",
                "address": "0.0.0.0:8080", "hostname": host}))
            written = time.perf_counter()
            waiting = set(range(NODES))
            while waiting:
                waiting = {n for n in waiting if status_of(namespaces[n], host) != 200}
                if time.perf_counter() - written > 10:
                    raise SystemExit(f"change {change} did not reach every node")
            latencies.append((time.perf_counter() - written) * 1000)

        # 2. 1,000 backends changed in one transaction.
        def txn(weight):
            operations = []
            for index in range(BACKENDS):
                key = f"{PREFIX}backends/bulk/b{index}"
                value = json.dumps({"type": "ADD_BACKEND", "cluster_id": "bulk",
                                    "backend_id": f"b{index}", "address": backend_address,
                                    "weight": weight})
                operations.append({"requestPut": {
                    "key": base64.b64encode(key.encode()).decode(),
                    "value": base64.b64encode(value.encode()).decode()}})
            request = urllib.request.Request(f"{client}/v3/kv/txn",
                                             data=json.dumps({"success": operations}).encode())
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()

        def converged():
            return subprocess.run([sozu, "-c", configs[0], "fleet", "status"],
                                  capture_output=True).returncode == 0

        put("clusters/bulk", json.dumps({"type": "ADD_CLUSTER", "cluster_id": "bulk"}))
        txn(100)
        deadline = time.time() + 60
        while not converged():
            if time.time() > deadline:
                raise SystemExit("the first 1,000 backends did not converge")
            time.sleep(0.01)
        started = time.perf_counter()
        txn(50)
        written = time.perf_counter()
        while not converged():
            if time.time() > deadline + 60:
                raise SystemExit("the changed 1,000 backends did not converge")
            time.sleep(0.005)
        bulk = (time.perf_counter() - written) * 1000

        version = subprocess.run([sozu, "--version"], capture_output=True, text=True).stdout
        print(f"binary: {sozu} ({version.strip()}), {NODES} nodes, 1 worker each, etcd "
              f"{subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split()[2]}")
        print(f"put -> routed on every node, {CHANGES} changes: "
              f"p50 {percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
              f"max {max(latencies):.1f} ms, mean {statistics.mean(latencies):.1f} ms")
        print(f"{BACKENDS} backends changed in one transaction ({(written - started) * 1000:.0f} ms "
              f"to write): converged on {NODES} nodes {bulk:.0f} ms after the write")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for namespace in namespaces:
            namespace.delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
