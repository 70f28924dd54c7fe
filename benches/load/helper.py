#!/usr/bin/env python3
"""Helpers of the load benchmark (benches/load/run.sh): free ports, process usage, a streaming
client, wrk and h2load output parsing, generated frontends and the final report.

Only the standard library is used. Each subcommand prints plain text for the shell to read.
"""

import argparse
import datetime
import json
import os
import re
import socket
import statistics
import sys
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Scenarios in report order: name, title, what the rate counts, unit of the CPU figure.
SCENARIOS = [
    ("tcp-throughput", "TCP, large transfer", "MB/s", "ms/GB"),
    ("tcp-connect", "TCP, new connection per request", "conn/s", "µs/conn"),
    ("tcp-keepalive", "TCP, kept-alive client connections", "req/s", "µs/req"),
    ("http-keepalive", "HTTP keep-alive", "req/s", "µs/req"),
    ("http-close", "HTTP, new connection per request", "req/s", "µs/req"),
    ("1mib", "HTTP keep-alive, 1 MiB responses", "req/s", "µs/req"),
    ("https-keepalive", "HTTPS keep-alive", "req/s", "µs/req"),
    ("https-handshake", "HTTPS, full handshake per request", "req/s", "µs/req"),
    ("h2", "HTTP/2 over TLS (h2load)", "req/s", "µs/req"),
]
PROXIES = [("sozu", "sozu"), ("haproxy", "HAProxy"), ("nginx", "nginx")]
# Results file columns, written by run.sh (one line per measurement).
COLUMNS = ["scenario", "proxy", "round", "seconds", "units", "p50_ms", "p99_ms",
           "cpu_seconds", "rss_kb", "errors"]


def free_ports(count):
    """Ports the kernel hands out for 127.0.0.1:0, all distinct (bound at once, then freed)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def process_table():
    """{pid: (parent pid, utime + stime in ticks, rss in pages)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        fields = text[text.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]))
    return table


def tree(root, table):
    """`root` and all its descendants."""
    found = [root]
    for pid in found:
        found.extend(child for child, (parent, _, _) in table.items() if parent == pid)
    return [pid for pid in found if pid in table]


def usage(root):
    """CPU seconds (user + system) and RSS in KiB of `root` and its descendants."""
    table = process_table()
    pids = tree(root, table)
    ticks = sum(table[pid][1] for pid in pids)
    pages = sum(table[pid][2] for pid in pids)
    return ticks / CLOCK_TICKS, pages * PAGE_KB


def memory(root):
    """The memory of `root` and its descendants, in KiB, from /proc/PID/smaps_rollup: RSS
    (shared pages counted once per process that maps them), PSS (each shared page divided
    among the processes that map it: a main and a worker running the same binary count its
    code once between them), the anonymous part of PSS (heap, stacks: what no file backs),
    and the number of open sockets (client and backend connections, listeners)."""
    totals = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
    sockets = 0
    for pid in tree(root, process_table()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    name, _, rest = line.partition(":")
                    if name in totals:
                        totals[name] += int(rest.split()[0])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    sockets += 1
        except OSError:
            continue
    return totals["Rss"], totals["Pss"], totals["Pss_Anon"], sockets


def stream(port, path, connections, seconds):
    """Downloads `path` over and over on `connections` connections for `seconds`, reading in
    1 MiB chunks so that the client costs little per byte. Returns (bytes, elapsed seconds)."""
    deadline = time.monotonic() + seconds
    totals = [0] * connections
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()

    failures = []

    def download(index):
        buffer = bytearray(1 << 20)
        try:
            while time.monotonic() < deadline:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(request)
                    while time.monotonic() < deadline:
                        count = sock.recv_into(buffer)
                        if count == 0:
                            break
                        totals[index] += count
        except OSError as error:
            failures.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=download, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"download through 127.0.0.1:{port} failed: {failures[0]}")
    return sum(totals), time.monotonic() - started


IDLE_BATCH = 10


def read_answer(sock, port):
    """Reads one whole answer (Content-Length framing) from `sock`; stops the run on anything
    but a 200."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit(f"127.0.0.1:{port} closed a connection before answering")
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"127.0.0.1:{port} answered {head[:40]!r}")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    if length is None:
        raise SystemExit(f"127.0.0.1:{port} answered without a Content-Length")
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit(f"127.0.0.1:{port} closed a connection inside an answer")
        body += chunk


def connects(port, count, connections):
    """Sends `count` requests of `/` through 127.0.0.1:`port`, each on a new connection
    (`Connection: close`, read to its end), `connections` at a time; fails unless every
    answer is a 200."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    remaining = [count]
    lock = threading.Lock()
    failures = []

    def client():
        while True:
            with lock:
                if remaining[0] == 0 or failures:
                    return
                remaining[0] -= 1
            answer = bytearray()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(request)
                    while chunk := sock.recv(65536):
                        answer += chunk
            except OSError as error:
                failures.append(str(error))
                return
            if not answer.startswith(b"HTTP/1.1 200 "):
                failures.append(f"answer {bytes(answer[:40])!r}")
                return

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"requests through 127.0.0.1:{port} failed: {failures[0]}")


def hold_idle(port, count, ready_file):
    """Opens `count` keep-alive connections to 127.0.0.1:`port`, sends one request on each and
    reads its whole answer, writes "ready" to `ready_file`, then keeps them open and idle until
    stdin closes. Connections go by batches of IDLE_BATCH, whose requests are all sent before
    their answers are read: on a loaded machine, one connection at a time waits for the
    scheduler at every step."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    connections = []
    while len(connections) < count:
        batch = [socket.create_connection(("127.0.0.1", port), timeout=30)
                 for _ in range(min(IDLE_BATCH, count - len(connections)))]
        for sock in batch:
            sock.sendall(request)
        for sock in batch:
            read_answer(sock, port)
        connections.extend(batch)
    with open(ready_file, "w") as ready:
        ready.write("ready\n")
    sys.stdin.read()
    return len(connections)


def idle_report(path):
    """The tables of the idle scenario: the memory each proxy gained per idle keep-alive
    connection, and its whole memory before and with them, as RSS and as PSS."""
    rows = []
    for line in open(path):
        (_, proxy, count, rss_before, rss_after, pss_before, pss_after, anon_before, anon_after,
         sockets) = line.split()
        count = int(count)

        def per(before, after):
            return number((int(after) - int(before)) / count, 2)

        rows.append([dict(PROXIES).get(proxy, proxy), f"{count:,}", rss_before, rss_after,
                     per(rss_before, rss_after), pss_before, pss_after,
                     per(pss_before, pss_after), anon_before, anon_after, sockets])
    if not rows:
        return ""
    return ("### Idle keep-alive connections (memory of the whole proxy, main and workers)\n\n"
            "RSS counts a page once per process that maps it (sozu's main and worker, nginx's "
            "master and worker run one binary: its code pages count twice); PSS divides each "
            "shared page among the processes that map it; anonymous is the part of PSS no file "
            "backs (heap, stacks). Sockets: open in the proxy's processes with the connections "
            "(client and backend connections, listeners).\n\n"
            + table(["proxy", "connections", "RSS before KiB", "RSS idle KiB",
                     "RSS KiB per connection", "PSS before KiB", "PSS idle KiB",
                     "PSS KiB per connection", "anonymous before KiB", "anonymous idle KiB",
                     "sockets idle"], rows))


HANDSHAKE_VARIANTS = [
    ("rsa-full", "RSA 2048, full handshake"),
    ("ecdsa-full", "ECDSA P-256, full handshake"),
    ("rsa-resumed", "RSA 2048, resumed (ticket)"),
    ("ecdsa-resumed", "ECDSA P-256, resumed (ticket)"),
]


def handshakes_report(path, baseline_note):
    """The tables of the handshakes scenario: rate and CPU per handshake (medians over rounds)
    of each proxy per variant, with sozu's ratios to the others."""
    groups = {}
    for line in open(path):
        variant, proxy, _, seconds, count, resumed, cpu = line.split()
        groups.setdefault((variant, proxy), []).append(
            (int(count) / float(seconds), float(cpu) * 1e6 / int(count), int(resumed) / int(count)))
    if not groups:
        return ""
    proxies = [p for p in ("sozu", "sozu-baseline", "haproxy", "nginx")
               if any(key[1] == p for key in groups)]
    names = {"sozu": "sozu", "sozu-baseline": "sozu baseline", "haproxy": "HAProxy",
             "nginx": "nginx"}

    def figure(variant, proxy, index):
        rows = groups.get((variant, proxy))
        return median([row[index] for row in rows]) if rows else float("nan")

    others = [p for p in proxies if p != "sozu"]
    rate_rows, cpu_rows = [], []
    for variant, title in HANDSHAKE_VARIANTS:
        if not any((variant, p) in groups for p in proxies):
            continue
        rate_rows.append([title] + [number(figure(variant, p, 0)) for p in proxies]
                         + [ratio(figure(variant, "sozu", 0), figure(variant, p, 0))
                            for p in others])
        cpu_rows.append([title] + [number(figure(variant, p, 1)) for p in proxies]
                        + [ratio(figure(variant, "sozu", 1), figure(variant, p, 1))
                           for p in others]
                        + ["/".join(number(100 * figure(variant, p, 2), 0) for p in proxies)])
    header = ["handshakes"] + [names[p] for p in proxies]
    versus = ["sozu/" + names[p] for p in others]
    note = f" The baseline: {baseline_note}." if baseline_note and "sozu-baseline" in proxies else ""
    return ("### TLS 1.3 handshakes, tickets on (median; one GET per connection)\n\n"
            "Handshakes per second:\n\n" + table(header + versus, rate_rows)
            + "\n\nProxy CPU µs per handshake (user + system time of its processes), and the "
            "share of connections that resumed, in %:" + note + "\n\n"
            + table(header + versus + ["resumed %"], cpu_rows))


def milliseconds(text):
    """wrk's latency ('512.00us', '1.23ms', '2.00s') in milliseconds."""
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    raise ValueError(f"unknown latency {text!r}")


def parse_wrk(text):
    """(requests, seconds, p50 ms, p99 ms, errors) from `wrk --latency` output."""
    requests = seconds = None
    p50 = p99 = float("nan")
    errors = 0
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "requests" and words[2] == "in":
            requests = int(words[0])
            seconds = milliseconds(words[3].rstrip(",")) / 1000
        elif words[:1] == ["50%"]:
            p50 = milliseconds(words[1])
        elif words[:1] == ["99%"]:
            p99 = milliseconds(words[1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 3, write 0, timeout 0"
            errors += sum(int(word.rstrip(",")) for word in words[2:] if word.rstrip(",").isdigit())
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(words[-1])
    if requests is None:
        raise ValueError("no 'requests in' line in wrk's output")
    return requests, seconds, p50, p99, errors


def parse_h2load(text, log):
    """(requests, seconds, p50 ms, p99 ms, errors) from h2load's output and its --log-file
    (tab-separated: start time µs, status, duration µs)."""
    requests = seconds = None
    errors = 0
    for line in text.splitlines():
        words = line.replace(",", "").split()
        if words[:2] == ["finished", "in"]:
            seconds = milliseconds(words[2]) / 1000
        elif words[:1] == ["requests:"]:
            # requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, 0 errored, 0 timeout
            counts = dict(zip(words[2::2], (int(w) for w in words[1::2])))
            requests = counts["succeeded"]
            errors += counts["failed"] + counts["errored"] + counts["timeout"]
        elif words[:2] == ["status", "codes:"]:
            # status codes: 10 2xx, 0 3xx, 0 4xx, 0 5xx
            errors += sum(int(count) for count, kind in zip(words[2::2], words[3::2])
                          if kind != "2xx")
    if requests is None or seconds is None:
        raise ValueError("no 'finished in' or 'requests:' line in h2load's output")
    durations = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].startswith("2"):
            durations.append(int(fields[2]) / 1000)
    p50 = p99 = float("nan")
    if durations:
        durations.sort()
        p50 = durations[len(durations) // 2]
        p99 = durations[min(len(durations) - 1, len(durations) * 99 // 100)]
    return requests, seconds, p50, p99, errors


def frontends(count, address):
    """TOML frontend lines host0.example.com … host{count-1}.example.com on `address`."""
    lines = ["frontends = ["]
    lines += [f'  {{ address = "{address}", hostname = "host{i}.example.com" }},' for i in range(count)]
    lines.append("]")
    return "\n".join(lines)


def read_results(path):
    rows = []
    with open(path) as results:
        for line in results:
            values = line.split()
            if len(values) != len(COLUMNS):
                continue
            row = dict(zip(COLUMNS, values))
            for key in COLUMNS[3:]:
                row[key] = float(row[key])
            rows.append(row)
    return rows


def median(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def summarize(rows):
    """{(scenario, proxy): medians} over rounds, of the figures per measurement."""
    groups = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["proxy"]), []).append(row)
    summary = {}
    for key, group in groups.items():
        per_unit = 1e6 if key[0] != "tcp-throughput" else 1e3 * 1e3  # µs per unit, ms per GB
        summary[key] = {
            "rate": median([r["units"] / r["seconds"] for r in group]),
            "p50": median([r["p50_ms"] for r in group]),
            "p99": median([r["p99_ms"] for r in group]),
            "cpu": median([r["cpu_seconds"] * per_unit / r["units"] for r in group if r["units"]]),
            "busy": median([100 * r["cpu_seconds"] / r["seconds"] for r in group]),
            "rss": median([r["rss_kb"] / 1024 for r in group]),
            "errors": sum(r["errors"] for r in group),
            "units": sum(r["units"] for r in group),
            "rounds": len(group),
        }
    return summary


def number(value, digits=None):
    if value != value:
        return "–"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def ratio(ours, theirs):
    if ours != ours or theirs != theirs or theirs == 0:
        return "–"
    return f"{ours / theirs:.2f}×"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results, scale_results, meta):
    summary = summarize(read_results(results))
    parts = main_tables(summary)

    if scale_results and os.path.exists(scale_results):
        parts.append(scale_report(summarize(read_results(scale_results)), meta))
    logs_results = meta.get("logs_results")
    if logs_results and os.path.exists(logs_results):
        parts.append(logs_report(summarize(read_results(logs_results))))
    faults_results = meta.get("faults_results")
    if faults_results and os.path.exists(faults_results):
        parts.append(faults_report(summarize(read_results(faults_results))))
    idle_results = meta.get("idle_results")
    if idle_results and os.path.exists(idle_results):
        parts.append(idle_report(idle_results))
    sni_results = meta.get("sni_results")
    if sni_results and os.path.exists(sni_results):
        parts.append(sni_report(summarize(read_results(sni_results))))
    handshakes_results = meta.get("handshakes_results")
    if handshakes_results and os.path.exists(handshakes_results):
        parts.append(handshakes_report(handshakes_results, meta.get("baseline", "")))
    return "\n\n".join(parts)


def comparison(summary, rows, unit):
    """A table of (scenario, proxy, label) rows: rate, p99, CPU per unit, core %, RSS, and the
    errors wrk reported over all rounds."""
    lines = []
    for scenario, proxy, label in rows:
        figures = summary.get((scenario, proxy))
        if figures:
            lines.append([label, number(figures["rate"]), number(figures["p99"]),
                          number(figures["cpu"]), number(figures["busy"], 0),
                          number(figures["rss"], 1),
                          f"{int(figures['errors'])} of {int(figures['units']):,}"])
    return table(["path", f"{unit}/s", "p99 ms", f"CPU µs/{unit}", "core %", "RSS MiB", "errors"],
                 lines)


def figure(summary, scenario, proxy, key):
    return summary.get((scenario, proxy), {}).get(key, float("nan"))


def faults_report(summary):
    rows = [
        ("http-keepalive", "sozu-http-clean", "sozu HTTP, cluster without fault"),
        ("http-keepalive", "sozu-http-fault", "sozu HTTP, cluster with `latency 0`"),
        ("tcp-keepalive", "sozu-tcp-clean", "sozu TCP, cluster without fault"),
        ("tcp-keepalive", "sozu-tcp-fault", "sozu TCP, cluster with `latency 0`"),
        ("tcp-keepalive", "toxiproxy-clean", "Toxiproxy, no toxic"),
        ("tcp-keepalive", "toxiproxy-toxic", "Toxiproxy, `latency 0` toxic"),
        ("http-keepalive", "sozu-http-baseline", "`SOZU_BASELINE_BIN` HTTP, no fault"),
        ("tcp-keepalive", "sozu-tcp-baseline", "`SOZU_BASELINE_BIN` TCP, no fault"),
        ("tcp-pipelined", "sozu-tcp-fault", "sozu TCP with `latency 0`, pipelined"),
        ("tcp-pipelined", "toxiproxy-toxic", "Toxiproxy with the toxic, pipelined"),
    ]

    def ratio_of(key, ours, theirs):
        return ratio(figure(summary, *ours, key), figure(summary, *theirs, key))

    http = (("http-keepalive", "sozu-http-fault"), ("http-keepalive", "sozu-http-clean"))
    tcp = (("tcp-keepalive", "sozu-tcp-fault"), ("tcp-keepalive", "sozu-tcp-clean"))
    toxic = (("tcp-keepalive", "sozu-tcp-fault"), ("tcp-keepalive", "toxiproxy-toxic"))
    toxiproxy = (("tcp-keepalive", "toxiproxy-toxic"), ("tcp-keepalive", "toxiproxy-clean"))
    pipelined = (("tcp-pipelined", "sozu-tcp-fault"), ("tcp-pipelined", "toxiproxy-toxic"))
    baseline = ""
    if ("http-keepalive", "sozu-http-baseline") in summary:
        baseline = (
            " Without fault ÷ the baseline build, CPU per request: HTTP **"
            + ratio_of("cpu", ("http-keepalive", "sozu-http-clean"),
                       ("http-keepalive", "sozu-http-baseline"))
            + "**, TCP **"
            + ratio_of("cpu", ("tcp-keepalive", "sozu-tcp-clean"),
                       ("tcp-keepalive", "sozu-tcp-baseline"))
            + "** (aim: nothing measurable).")
    return ("### Faults: HTTP keep-alive with and without a `latency 0` fault, and Toxiproxy\n\n"
            + comparison(summary, rows, "req")
            + "\n\nWith the fault ÷ without, CPU per request: HTTP "
            f"**{ratio_of('cpu', *http)}**, TCP **{ratio_of('cpu', *tcp)}** (aim: under 1.05×). "
            f"sozu TCP with the fault ÷ Toxiproxy with the toxic: req/s "
            f"**{ratio_of('rate', *toxic)}** (aim: at least 1.5× when both cores are busy), "
            f"CPU per request {ratio_of('cpu', *toxic)}, RSS {ratio_of('rss', *toxic)}. "
            f"Toxiproxy with the toxic ÷ without: req/s {ratio_of('rate', *toxiproxy)}. "
            f"Pipelined, sozu TCP with the fault ÷ Toxiproxy with the toxic: req/s "
            f"**{ratio_of('rate', *pipelined)}**, CPU per request "
            f"{ratio_of('cpu', *pipelined)}, RSS {ratio_of('rss', *pipelined)}. "
            "The pipelined runs have no p99: wrk times a batch of pipelined requests as one "
            "sample, so it measures no per-request latency."
            + baseline)


def sni_report(summary):
    rows = [
        ("tls-connect", "sozu-rules", "sozu, `sni` rules"),
        ("tls-connect", "sozu-lua", "sozu, Lua script"),
        ("tls-connect", "haproxy-sni", "HAProxy, `req_ssl_sni`"),
        ("tls-connect", "sslh", "sslh, `sni_hostnames`"),
    ]

    def versus(key, proxy):
        return ratio(figure(summary, "tls-connect", "sozu-rules", key),
                     figure(summary, "tls-connect", proxy, key))

    return ("### SNI routing without termination: a new TLS connection per request\n\n"
            + comparison(summary, rows, "conn")
            + "\n\nsozu with rules ÷ HAProxy: conn/s "
            f"**{versus('rate', 'haproxy-sni')}**, CPU per connection "
            f"**{versus('cpu', 'haproxy-sni')}**; ÷ sslh: conn/s **{versus('rate', 'sslh')}**, "
            f"CPU per connection **{versus('cpu', 'sslh')}**. Script ÷ rules, CPU per "
            "connection: **"
            + ratio(figure(summary, "tls-connect", "sozu-lua", "cpu"),
                    figure(summary, "tls-connect", "sozu-rules", "cpu"))
            + "** (aim: within 1.5×).")


def main_tables(summary):
    """The tables of the scenarios run through sozu, HAProxy and nginx (none if none ran)."""
    parts = []
    names = [title for _, title in PROXIES]
    present = [s for s in SCENARIOS if any((s[0], p) in summary for p, _ in PROXIES)]
    if not present:
        return parts

    def cell(scenario, proxy, key, digits=None):
        figures = summary.get((scenario, proxy))
        return number(figures[key], digits) if figures else "–"

    def ratios(scenario, key):
        ours = figure(summary, scenario, "sozu", key)
        return [ratio(ours, figure(summary, scenario, p, key)) for p in ("haproxy", "nginx")]

    rows = []
    for scenario, title, unit, _ in present:
        rows.append([title, unit] + [cell(scenario, p, "rate") for p, _ in PROXIES]
                    + ratios(scenario, "rate"))
    parts.append("### Throughput (median; higher is better)\n\n" + table(
        ["scenario", "unit"] + names + ["sozu/HAProxy", "sozu/nginx"], rows))
    direct = figure(summary, "1mib", "direct", "rate")
    if direct == direct:  # not NaN: measured
        parts.append("1 MiB responses ÷ the same requests straight to the backend (direct, "
                     f"{number(direct)} req/s): " + ", ".join(
                         f"{title} {ratio(figure(summary, '1mib', p, 'rate'), direct)}"
                         for p, title in PROXIES))

    rows = []
    for scenario, title, _, unit in present:
        rows.append([title, unit] + [cell(scenario, p, "cpu") for p, _ in PROXIES]
                    + ratios(scenario, "cpu")
                    + ["/".join(cell(scenario, p, "busy", 0) for p, _ in PROXIES)])
    parts.append("### Proxy CPU per request (median; lower is better)\n\n"
                 "user + system time of the proxy's processes over the run, divided by what it "
                 "served; the last column is each proxy's core usage in % (sozu/HAProxy/nginx): "
                 "below ~95% the proxy was not the bottleneck.\n\n" + table(
                     ["scenario", "unit"] + names + ["sozu/HAProxy", "sozu/nginx", "core %"],
                     rows))

    rows = []
    for scenario, title, _, _ in present:
        if scenario in ("http-keepalive", "https-keepalive", "h2"):
            rows.append([title + ", p50 / p99 ms"]
                        + [cell(scenario, p, "p50") + " / " + cell(scenario, p, "p99")
                           for p, _ in PROXIES])
    for scenario, title, _, _ in present:
        rows.append([title + ", RSS MiB"] + [cell(scenario, p, "rss", 1) for p, _ in PROXIES])
    parts.append("### Latency and memory (median)\n\n" + table(["figure"] + names, rows))

    errors = [f"{title}: {p} {int(summary[(s, p)]['errors'])} of {int(summary[(s, p)]['units'])}"
              for s, title, unit, _ in present for p, _ in PROXIES
              if (s, p) in summary and summary[(s, p)]["errors"] and unit != "MB/s"]
    if errors:
        parts.append("Errors reported by wrk and h2load (socket errors, failed streams and "
                     "non-2xx answers): " + "; ".join(errors) + ".")
    return parts


def logs_report(summary):
    quiet = summary.get(("http-keepalive", "sozu-quiet"))
    if not quiet:
        return ""
    logged = [(name, summary[("http-keepalive", proxy)])
              for proxy, name in (("sozu-logged", "JSON access log to a file"),
                                  ("sozu-default", "default-format access log to a file"))
              if ("http-keepalive", proxy) in summary]
    rows = [[name, number(figures["rate"]), number(figures["p99"]), number(figures["cpu"]),
             number(figures["busy"], 0)]
            for name, figures in [("without access logs", quiet)] + logged]
    ratios = "; ".join(f"{name.split(' access')[0]}: CPU per request "
                       f"**{ratio(figures['cpu'], quiet['cpu'])}**, req/s "
                       f"{ratio(figures['rate'], quiet['rate'])}" for name, figures in logged)
    return ("### HTTP keep-alive with access logs (sozu only; metrics always kept)\n\n"
            + table(["sozu", "req/s", "p99 ms", "CPU µs/req", "core %"], rows)
            + f"\n\nWith access logs ÷ without: {ratios} (aim: within 5%).")


# The default-format line of run.sh's checking request (curl, `GET /` for `localhost`).
DEFAULT_ACCESS_LINE = re.compile(
    r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9a-f]{24} 127\.0\.0\.1:\d+ -> '
    r'127\.0\.0\.1:\d+ HTTP web/\S+ "GET localhost/" 200 in=\d+ out=\d+ total=\d+\.\d{3}ms'
    r'(?: connect=\d+\.\d{3}ms)? response=\d+\.\d{3}ms "curl/[^"]+"')


def check_access_line(format_name, line):
    """Whether `line` is the access log line, in `format_name` (json or default), of run.sh's
    checking request: `GET /` for `localhost` through cluster `web`, answered 200."""
    if format_name == "default":
        return DEFAULT_ACCESS_LINE.fullmatch(line) is not None
    try:
        fields = json.loads(line)
    except ValueError:
        return False
    expected = {"method": "GET", "host": "localhost", "path": "/", "status": 200,
                "cluster": "web", "protocol": "HTTP", "answered_by_proxy": False}
    return isinstance(fields, dict) and all(fields.get(k) == v for k, v in expected.items())


def scale_report(summary, meta):
    counts = sorted({int(proxy.split("-")[1]) for _, proxy in summary})
    rows = []
    for count in counts:
        figures = summary.get(("http-keepalive", f"sozu-{count}"))
        load = meta.get(f"load_seconds_{count}", "–")
        rows.append([f"{count:,}", number(figures["rate"]), number(figures["p99"]),
                     number(figures["cpu"]), number(figures["busy"], 0), number(figures["rss"], 1),
                     load])
    text = ("### Scale: HTTP keep-alive to the last of N frontends (sozu only)\n\n" + table(
        ["frontends", "req/s", "p99 ms", "CPU µs/req", "core %", "RSS MiB", "start s"], rows))
    if len(counts) >= 2:
        small = summary[("http-keepalive", f"sozu-{counts[0]}")]
        large = summary[("http-keepalive", f"sozu-{counts[-1]}")]
        text += (f"\n\nAt {counts[-1]:,} frontends ÷ at {counts[0]:,}: CPU per request "
                 f"**{ratio(large['cpu'], small['cpu'])}**, req/s "
                 f"{ratio(large['rate'], small['rate'])} (aim: within 5%; the rate only counts "
                 f"when the core is near 100%).")
    return text


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return f"{os.cpu_count()} CPUs ({model}), {memory} of memory, kernel {os.uname().release}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ports").add_argument("count", type=int)
    command = commands.add_parser("usage")
    command.add_argument("pid", type=int)
    commands.add_parser("memory").add_argument("pid", type=int)
    commands.add_parser("tree").add_argument("pid", type=int)
    command = commands.add_parser("stream")
    for name, kind in (("port", int), ("path", str), ("connections", int), ("seconds", float)):
        command.add_argument(name, type=kind)
    command = commands.add_parser("connects")
    for name in ("port", "count", "connections"):
        command.add_argument(name, type=int)
    command = commands.add_parser("hold-idle")
    for name, kind in (("port", int), ("count", int), ("ready_file", str)):
        command.add_argument(name, type=kind)
    commands.add_parser("parse-wrk").add_argument("file")
    command = commands.add_parser("parse-h2load")
    command.add_argument("file")
    command.add_argument("log")
    command = commands.add_parser("frontends")
    command.add_argument("count", type=int)
    command.add_argument("address")
    commands.add_parser("machine")
    command = commands.add_parser("check-access-line")
    command.add_argument("format", choices=["json", "default"])
    command.add_argument("line")
    command = commands.add_parser("report")
    command.add_argument("results")
    command.add_argument("scale_results")
    command.add_argument("meta", nargs="*", help="key=value pairs")
    args = parser.parse_args()

    if args.command == "ports":
        print(*free_ports(args.count))
    elif args.command == "usage":
        print("%.2f %d" % usage(args.pid))
    elif args.command == "memory":
        print("%d %d %d %d" % memory(args.pid))
    elif args.command == "tree":
        print(*tree(args.pid, process_table()))
    elif args.command == "stream":
        received, elapsed = stream(args.port, args.path, args.connections, args.seconds)
        print("%.3f %.3f" % (received / 1e6, elapsed))
    elif args.command == "connects":
        connects(args.port, args.count, args.connections)
    elif args.command == "hold-idle":
        hold_idle(args.port, args.count, args.ready_file)
    elif args.command == "parse-wrk":
        with open(args.file) as output:
            print("%d %.3f %.3f %.3f %d" % parse_wrk(output.read()))
    elif args.command == "parse-h2load":
        with open(args.file) as output, open(args.log) as log:
            print("%d %.3f %.3f %.3f %d" % parse_h2load(output.read(), log.read()))
    elif args.command == "frontends":
        print(frontends(args.count, args.address))
    elif args.command == "machine":
        print(machine())
    elif args.command == "check-access-line":
        return 0 if check_access_line(args.format, args.line) else 1
    elif args.command == "report":
        meta = dict(item.split("=", 1) for item in args.meta)
        print(report(args.results, args.scale_results, meta))


if __name__ == "__main__":
    sys.exit(main())
