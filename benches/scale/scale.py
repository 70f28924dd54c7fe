#!/usr/bin/env python3
"""The scale benchmark of sozu (benches/scale/run.sh): how long the binary takes from start to
routing the last of many frontends, how much memory each frontend costs, how long a
command-line call takes when given that configuration file, how long one order takes to be in
force on every worker, and whether requests fail while orders change the state all the time.

For each count N of COUNTS, a configuration of N HTTP frontends (100 per cluster, one backend
each) starts with default settings; then one configuration mixes the largest N with
CERTIFICATES HTTPS frontends, each with its own certificate. Figures are printed, written to
RESULTS_DIR, and never judged: the run fails only when a scenario is broken (the proxy exits,
does not route the last name in STARTUP_TIMEOUT, or a command-line call fails).

Only the standard library is used, plus curl as the client.
"""

import base64
import datetime
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ASSETS = os.path.join(ROOT, "bin", "assets")
FRONTENDS_PER_CLUSTER = 100
CLI_CALLS = 7
ORDER_ROUNDS = 7


def setting(name, default):
    return os.environ.get(name) or default


def say(text):
    print(f"== {text}", file=sys.stderr, flush=True)


class Broken(Exception):
    """A scenario did not work: the run fails."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_backend(token):
    """An HTTP backend on 127.0.0.1 that answers `token` to every GET, on a thread."""
    body = token.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sample_certificate():
    """The DER of bin/assets/certificate.pem; its serial number's last two bytes end at 33."""
    with open(os.path.join(ASSETS, "certificate.pem")) as pem:
        lines = [line.strip() for line in pem if not line.startswith("-----")]
    return bytearray(base64.b64decode("".join(lines)))


def certificate(der, index):
    """A distinct certificate (its own fingerprint) for the sample key: the serial's last two
    bytes replaced by `index` (the certificate and TBS sequences take 4 bytes each, the version
    5, the serial's tag and length 2, then its 20 bytes)."""
    serial_end = 4 + 4 + 5 + 2 + 20
    der = bytearray(der)
    der[serial_end - 2] = (index >> 8) & 0xFF
    der[serial_end - 1] = index & 0xFF
    encoded = base64.b64encode(bytes(der)).decode()
    body = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def write_config(folder, http_count, https_count, backend_port):
    """A configuration of `http_count` HTTP frontends h{i}.example.com and `https_count` HTTPS
    frontends s{i}.example.com with a certificate each. Returns (path, http port, https port).

    All certificates name the one key file key.pem; with the setting KEY_FILES=each, every
    certificate names a file of its own (certs/{i}.key, the same key's text), so that nothing
    read once per path is read once for all."""
    key_per_certificate = setting("KEY_FILES", "one") == "each"
    http_port, https_port = free_port(), free_port()
    lines = [
        'command_socket = "sozu.sock"',
        'pid_file_path = "sozu.pid"',
        "[[listeners]]",
        'protocol = "http"',
        f'address = "127.0.0.1:{http_port}"',
    ]
    if https_count:
        lines += ["[[listeners]]", 'protocol = "https"', f'address = "127.0.0.1:{https_port}"']
        os.makedirs(os.path.join(folder, "certs"), exist_ok=True)
        with open(os.path.join(ASSETS, "key.pem")) as source, \
                open(os.path.join(folder, "key.pem"), "w") as copy:
            copy.write(source.read())
        der = sample_certificate()
    clusters = -(-max(http_count, https_count) // FRONTENDS_PER_CLUSTER)
    for cluster in range(clusters):
        lines += [f"[clusters.c{cluster}]", 'protocol = "http"',
                  f'backends = [{{ address = "127.0.0.1:{backend_port}" }}]', "frontends = ["]
        for host in range(cluster * FRONTENDS_PER_CLUSTER, (cluster + 1) * FRONTENDS_PER_CLUSTER):
            if host < http_count:
                lines.append(f'  {{ address = "127.0.0.1:{http_port}", '
                             f'hostname = "h{host}.example.com" }},')
            if host < https_count:
                name = f"certs/{host}.pem"
                with open(os.path.join(folder, name), "w") as pem:
                    pem.write(certificate(der, host))
                key = "key.pem"
                if key_per_certificate:
                    key = f"certs/{host}.key"
                    shutil.copyfile(os.path.join(folder, "key.pem"), os.path.join(folder, key))
                lines.append(f'  {{ address = "127.0.0.1:{https_port}", '
                             f'hostname = "s{host}.example.com", certificate = "{name}", '
                             f'key = "{key}" }},')
        lines.append("]")
    path = os.path.join(folder, "config.toml")
    with open(path, "w") as config:
        config.write("\n".join(lines) + "\n")
    return path, http_port, https_port


def curl(url, host, token, tls=False):
    """Whether one GET of `url` for `host` (also the SNI name over TLS) answers `token`."""
    command = ["curl", "-s", "--max-time", "2", "-H", f"Host: {host}"]
    if tls:
        port = url.rsplit(":", 1)[1].rstrip("/")
        command += ["-k", "--resolve", f"{host}:{port}:127.0.0.1"]
        url = f"https://{host}:{port}/"
    result = subprocess.run(command + [url], capture_output=True, text=True)
    return result.stdout == token


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


class Proxy:
    """`sozu start -c CONFIG`, stopped on exit."""

    def __init__(self, binary, config):
        self.binary, self.config = binary, config
        self.log_path = os.path.join(os.path.dirname(config), "sozu.log")
        self.log = open(self.log_path, "w")
        self.started = time.monotonic()
        self.process = subprocess.Popen([binary, "start", "-c", config], stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def log_text(self):
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def check_alive(self):
        if self.process.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-20:])
            raise Broken(f"sozu exited with {self.process.returncode}:\n{tail}")

    def wait(self, what, condition, timeout):
        """Seconds from start until `condition()` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if condition():
                return time.monotonic() - self.started
            time.sleep(0.01)
        raise Broken(f"{what} not within {timeout} s")

    def cli(self, *args):
        """Milliseconds of one `sozu ARGS status` call."""
        started = time.monotonic()
        result = subprocess.run([self.binary, *args, "status"], capture_output=True, text=True)
        elapsed = (time.monotonic() - started) * 1000
        if result.returncode != 0:
            raise Broken(f"sozu {' '.join(args)} status failed: {result.stderr.strip()}")
        return elapsed

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class Orders:
    """A client of the command socket: orders sent as JSON lines, answers read by a thread."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lock = threading.Lock()
        self.done = {}
        self.waiting = {}
        self.ok = self.failed = 0
        self.failures = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.sock.makefile("r"):
                self._take(json.loads(line))
        except (OSError, ValueError):
            return  # closed by close()

    def _take(self, answer):
        if answer["status"] == "PROCESSING":
            return
        with self.lock:
            if answer["status"] == "OK":
                self.ok += 1
            else:
                self.failed += 1
                self.failures.append(answer.get("message", ""))
            event = self.waiting.pop(answer["id"], None)
            self.done[answer["id"]] = time.monotonic()
        if event:
            event.set()

    def send(self, ident, order, wait=False):
        event = threading.Event()
        with self.lock:
            if wait:
                self.waiting[ident] = event
        self.sock.sendall((json.dumps({"id": ident, "order": order}) + "\n").encode())
        return event

    def close(self):
        self.sock.close()


def frontend_order(kind, address, hostname, cluster):
    return {"type": kind, "cluster_id": cluster, "address": address, "hostname": hostname}


def order_in_force_ms(socket_path, http_port, token):
    """Median milliseconds from sending one ADD_HTTP_FRONTEND to its OK, which the main process
    sends once every worker applied it; each new name is then checked to route (not timed)."""
    orders = Orders(socket_path)
    address = f"127.0.0.1:{http_port}"
    times = []
    try:
        for round_ in range(ORDER_ROUNDS):
            name = f"order{round_}.example.com"
            started = time.monotonic()
            answered = orders.send(f"o{round_}", frontend_order(
                "ADD_HTTP_FRONTEND", address, name, "c0"), wait=True)
            if not answered.wait(10):
                raise Broken(f"no answer to ADD_HTTP_FRONTEND {name} in 10 s")
            times.append((time.monotonic() - started) * 1000)
            if orders.failed:
                raise Broken(f"ADD_HTTP_FRONTEND refused: {orders.failures}")
            if not curl(f"http://{address}/", name, token):
                raise Broken(f"{name} not routed once its order was answered")
    finally:
        orders.close()
    return statistics.median(times)


def churn(socket_path, http_port, backend_port, token, rate, seconds):
    """`rate` orders a second for `seconds` (frontends and backends of cluster c0
    added then removed), while a keep-alive client asks for h0.example.com (cluster c0) in a
    loop. Returns (orders answered per second, failed orders, requests, failed requests)."""
    orders = Orders(socket_path)
    address = f"127.0.0.1:{http_port}"
    stop = threading.Event()
    requests = {"done": 0, "failed": 0}

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        while not stop.is_set():
            try:
                connection.request("GET", "/", headers={"Host": "h0.example.com"})
                response = connection.getresponse()
                if response.status != 200 or response.read().decode() != token:
                    requests["failed"] += 1
            except (OSError, http.client.HTTPException):
                requests["failed"] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            requests["done"] += 1
        connection.close()

    reader = threading.Thread(target=client)
    reader.start()
    sent = 0
    started = time.monotonic()
    try:
        while sent < rate * seconds:
            index = sent // 4
            name = f"churn{index}.example.com"
            backend = {"cluster_id": "c0", "backend_id": f"churn-{index}",
                       "address": f"127.0.0.1:{backend_port}"}
            batch = [
                frontend_order("ADD_HTTP_FRONTEND", address, name, "c0"),
                dict(backend, type="ADD_BACKEND"),
                frontend_order("REMOVE_HTTP_FRONTEND", address, name, "c0"),
                dict(backend, type="REMOVE_BACKEND"),
            ]
            for order in batch:
                orders.send(f"churn{sent}", order)
                sent += 1
            # Paced: the n-th order leaves at n / rate seconds.
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        deadline = time.monotonic() + 30
        while orders.ok + orders.failed < sent and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join()
        orders.close()
    if orders.ok + orders.failed < sent:
        raise Broken(f"churn: {sent - orders.ok - orders.failed} of {sent} orders unanswered")
    if orders.failed:
        raise Broken(f"churn: {orders.failed} orders refused: {orders.failures[:3]}")
    last = max(orders.done.values())
    return sent / (last - started), orders.failed, requests["done"], requests["failed"]


def state_load(binary, folder, state_path, http_port, last, token, timeout):
    """Seconds of `sozu state load` of `state_path` into a proxy started with the same
    listeners and nothing else, from the call to its answer (the main process answers once
    every worker applied the state), the orders the file holds, and the CPU seconds the load
    took the main process then each worker; `last` must then route."""
    config = os.path.join(folder, "listeners-only.toml")
    with open(os.path.join(folder, "config.toml")) as full, open(config, "w") as bare:
        for line in full:
            if line.startswith("[clusters."):
                break
            bare.write(line)
    proxy = Proxy(binary, config)
    try:
        proxy.wait("every worker of the listener-only proxy has the current state",
                   lambda: 0 < len(children(proxy.process.pid))
                   <= proxy.log_text().count("has the current state"), timeout)
        pids = [proxy.process.pid] + children(proxy.process.pid)
        cpu_before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        result = subprocess.run([binary, "-c", config, "state", "load", "-f", state_path],
                                capture_output=True, text=True)
        elapsed = time.monotonic() - started
        cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before)]
        if result.returncode != 0:
            raise Broken(f"state load failed: {result.stderr.strip()} {result.stdout.strip()}")
        if not curl(f"http://127.0.0.1:{http_port}/", last, token):
            raise Broken(f"{last} not routed after the state load")
        with open(state_path) as state:
            orders = sum(1 for line in state if line.strip())
        return elapsed, orders, cpu
    finally:
        proxy.stop()


def run_scenario(binary, work, http_count, https_count, backend_port, token, timeout):
    folder = os.path.join(work, f"{http_count}-{https_count}")
    os.makedirs(folder)
    config, http_port, https_port = write_config(folder, http_count, https_count, backend_port)
    say(f"{http_count:,} HTTP + {https_count:,} HTTPS frontends "
        f"({os.path.getsize(config) / 1e6:.1f} MB of configuration)")
    proxy = Proxy(binary, config)
    try:
        last = f"h{http_count - 1}.example.com"
        figures = {"http": http_count, "https": https_count}
        figures["http_s"] = proxy.wait(
            f"{last} routed", lambda: curl(f"http://127.0.0.1:{http_port}/", last, token), timeout)
        if https_count:
            name = f"s{https_count - 1}.example.com"
            figures["https_s"] = proxy.wait(
                f"{name} routed over TLS",
                lambda: curl(f"https://127.0.0.1:{https_port}", name, token, tls=True), timeout)
        workers = children(proxy.process.pid)
        # Memory once every worker has the whole state.
        figures["ready_s"] = proxy.wait(
            "every worker has the current state",
            lambda: proxy.log_text().count("has the current state") >= len(workers), timeout)
        # CPU seconds of the start, which a loaded machine does not inflate as it does time.
        figures["main_cpu_s"] = cpu_seconds(proxy.process.pid)
        figures["worker_cpu_s"] = [cpu_seconds(pid) for pid in workers]
        figures["main_kib"] = rss_kib(proxy.process.pid)
        figures["worker_kib"] = [rss_kib(pid) for pid in workers]
        socket_path = os.path.join(folder, "sozu.sock")
        # Every call is kept for the report's raw figures; the table shows medians.
        figures["cli_config_ms_each"] = [proxy.cli("-c", config) for _ in range(CLI_CALLS)]
        figures["cli_config_ms"] = statistics.median(figures["cli_config_ms_each"])
        figures["cli_socket_ms_each"] = [proxy.cli("--socket", socket_path)
                                         for _ in range(CLI_CALLS)]
        figures["cli_socket_ms"] = statistics.median(figures["cli_socket_ms_each"])
        figures["order_ms"] = order_in_force_ms(socket_path, http_port, token)
        rate = int(setting("CHURN_RATE", "1000"))
        seconds = float(setting("CHURN_SECONDS", "3"))
        (figures["churn_rate"], figures["churn_failed_orders"], figures["churn_requests"],
         figures["churn_failed_requests"]) = churn(socket_path, http_port, backend_port, token,
                                                   rate, seconds)
        if https_count:
            state_path = os.path.join(folder, "state.json")
            saved = subprocess.run([binary, "--socket", socket_path, "state", "save", "-f",
                                    state_path], capture_output=True, text=True)
            if saved.returncode != 0:
                raise Broken(f"state save failed: {saved.stderr.strip()}")
        else:
            return figures
    finally:
        proxy.stop()
    figures["state_load_s"], figures["state_orders"], figures["state_load_cpu_s"] = state_load(
        binary, folder, state_path, http_port, last, token, timeout)
    return figures


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def report(runs, meta):
    rows = []
    for run in runs:
        workers = run["worker_kib"]
        rows.append([f"{run['http']:,}", f"{run['https']:,}", f"{run['http_s']:.2f}",
                     f"{run['https_s']:.2f}" if "https_s" in run else "–",
                     f"{run['ready_s']:.2f}", f"{run['main_cpu_s']:.2f}",
                     " / ".join(f"{cpu:.2f}" for cpu in run["worker_cpu_s"]),
                     f"{run['main_kib'] / 1024:.1f}",
                     " / ".join(f"{kib / 1024:.1f}" for kib in workers),
                     f"{run['cli_config_ms']:.1f}", f"{run['cli_socket_ms']:.1f}",
                     f"{run['order_ms']:.1f}", f"{run['churn_rate']:,.0f}",
                     f"{run['churn_failed_requests']} / {run['churn_requests']:,}"])
    text = table(["HTTP", "HTTPS + certificates", "last HTTP routed s", "last HTTPS routed s",
                  "all workers ready s", "main CPU s", "worker CPU s", "main RSS MiB", "worker RSS MiB", "CLI -c ms",
                  "CLI --socket ms", "order in force ms", "churn orders/s",
                  "failed / requests during churn"], rows)
    plain = sorted((run for run in runs if not run["https"]), key=lambda run: run["http"])
    slopes = []
    for small, large in zip(plain, plain[1:]):
        added = large["http"] - small["http"]
        main = (large["main_kib"] - small["main_kib"]) * 1024 / added
        worker = statistics.mean(
            (big - little) * 1024 / added
            for big, little in zip(large["worker_kib"], small["worker_kib"]))
        slopes.append([f"{small['http']:,} → {large['http']:,}", f"{main:,.0f}",
                       f"{worker:,.0f}", f"{main + worker:,.0f}"])
    if slopes:
        text += "\n\nRSS per HTTP frontend, in bytes (growth between two runs ÷ frontends added):\n\n"
        text += table(["frontends", "main", "each worker", "main + 1 worker"], slopes)
    for run in runs:
        if "state_load_s" in run:
            text += (f"\n\n`state load` of the state saved by the {run['http']:,} + "
                     f"{run['https']:,} run ({run['state_orders']:,} orders) into a proxy with "
                     f"its listeners only: {run['state_load_s']:.2f} s; CPU s of the main "
                     f"process {run['state_load_cpu_s'][0]:.2f}, of each worker "
                     + " / ".join(f"{cpu:.2f}" for cpu in run["state_load_cpu_s"][1:])
                     + "\n")
    header = "\n".join(f"- {key}: {value}" for key, value in meta.items())
    raw = "\n".join(json.dumps(run) for run in runs)
    return (f"## Scale benchmark, {meta['date']}\n\n{header}\n\n{text}\n\n"
            "<details><summary>Every measurement (one JSON object per run)</summary>\n\n"
            f"```\n{raw}\n```\n\n</details>\n")


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), kernel {os.uname().release}"


def main():
    binary = setting("SOZU_BIN", os.path.join(ROOT, "target", "release", "sozu"))
    counts = [int(count) for count in setting("COUNTS", "1000 10000 100000").split()]
    certificates = int(setting("CERTIFICATES", str(max(counts) // 10)))
    timeout = float(setting("STARTUP_TIMEOUT", "120"))
    results = setting("RESULTS_DIR", os.path.join(HERE, "results"))
    token = f"scale-{os.getpid()}-{time.time_ns()}"
    backend = start_backend(token)
    backend_port = backend.server_address[1]
    work = tempfile.mkdtemp(prefix="sozu-scale-")
    with open("/proc/loadavg") as loadavg:
        load_before = " ".join(loadavg.read().split()[:3])
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load average (1, 5, 15 min) before": load_before,
        "sozu": version.stdout.strip() + (f" ({os.environ['SOZU_NOTE']})"
                                          if os.environ.get("SOZU_NOTE") else "")
        + f", `{binary}`; benchmark at commit " + subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True).stdout.strip(),
        "versions": f"Python {sys.version.split()[0]}; "
        + subprocess.run(["curl", "--version"], capture_output=True,
                         text=True).stdout.split("\n")[0].split(" (")[0],
        "settings": "defaults (2 workers), log level info, one backend per 100 frontends",
    }
    runs = []
    try:
        for count in counts:
            runs.append(run_scenario(binary, work, count, 0, backend_port, token, timeout))
        if certificates:
            runs.append(run_scenario(binary, work, max(counts), certificates, backend_port,
                                     token, timeout))
    except Broken as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if not os.environ.get("KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work files kept in {work}")
        backend.shutdown()
    with open("/proc/loadavg") as loadavg:
        meta["load average after"] = " ".join(loadavg.read().split()[:3])
    text = report(runs, meta)
    print(text)
    os.makedirs(results, exist_ok=True)
    now = datetime.datetime.now()
    name = now.strftime("%Y-%m-%d-%H%M") + ".md"
    # Two runs within a minute (before and after, back to back) keep both reports.
    if os.path.exists(os.path.join(results, name)):
        name = now.strftime("%Y-%m-%d-%H%M%S") + ".md"
    with open(os.path.join(results, name), "w") as file:
        file.write(text)
    say(f"report written to {os.path.join(results, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
