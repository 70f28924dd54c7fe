"""An HTTP/2 client (the `h2` package) for the e2e tests of e2e/tests/h2_streams.rs: it
speaks cleartext HTTP/2 with prior knowledge to the proxy on 127.0.0.1 and prints one line
per result, which the Rust test checks.

    bodies PORT COUNT SEED   COUNT concurrent POST streams with bodies of random sizes;
                             prints `STREAM STATUS SENT_SHA256 RECEIVED_SHA256` per stream
    reset PORT               a POST reset mid-body, then a GET on the same connection;
                             prints `get STATUS`
    rapid-reset PORT COUNT   COUNT streams opened and reset at once (CVE-2023-44487);
                             prints `goaway CODE` or `eof`
    continuation PORT COUNT  one header block in COUNT CONTINUATION frames (CVE-2024-27316);
                             prints `goaway CODE` or `eof`
    stalled PORT SECONDS     a GET whose window stays closed for SECONDS, then opens;
                             prints `status STATUS` and `body LENGTH`, or `reset`
    held PORT                a GET, then (on a line from stdin) its reset and a PING; prints
                             `sent`, then `reset` once the PING is acknowledged, and stays
                             connected until stdin closes
    slow PORT                a GET of /slow, left in flight; prints `sent`, then each of
                             `goaway CODE LAST_STREAM`, `status STATUS`, `ended` as it comes
"""

import hashlib
import random
import select
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

HOST = "localhost"
TIMEOUT = 20


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(16 * 1024 * 1024)
    sock.sendall(conn.data_to_send())
    return sock, conn


def headers(method, path, extra=()):
    return [
        (":method", method),
        (":path", path),
        (":scheme", "http"),
        (":authority", HOST),
        *extra,
    ]


def receive(sock, conn):
    """Reads once and returns the events; an empty list at the end of the connection."""
    readable, _, _ = select.select([sock], [], [], TIMEOUT)
    if not readable:
        raise TimeoutError("the proxy sent nothing in time")
    data = sock.recv(65536)
    if not data:
        return None
    events = conn.receive_data(data)
    pending = conn.data_to_send()
    if pending:
        sock.sendall(pending)
    return events


def bodies(port, count, seed):
    rng = random.Random(seed)
    sock, conn = connect(port)
    to_send = {}
    sent = {}
    received = {}
    status = {}
    ended = set()
    for index in range(count):
        stream = conn.get_next_available_stream_id()
        size = rng.choice([0, 1, rng.randrange(1, 70_000), rng.randrange(1, 300_000)])
        body = rng.randbytes(size)
        conn.send_headers(
            stream, headers("POST", f"/echo/{index}", [("content-length", str(size))])
        )
        to_send[stream] = body
        sent[stream] = hashlib.sha256(body).hexdigest()
        received[stream] = hashlib.sha256()
    sock.sendall(conn.data_to_send())
    while len(ended) < count:
        for stream in list(to_send):
            body = to_send[stream]
            while body:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(stream, body[:window])
                body = body[window:]
            to_send[stream] = body
            if not body:
                conn.end_stream(stream)
                del to_send[stream]
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
        events = receive(sock, conn)
        if events is None:
            print("eof")
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                status[event.stream_id] = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                received[event.stream_id].update(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                print(f"{event.stream_id} reset")
                ended.add(event.stream_id)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    for stream in sorted(sent):
        print(f"{stream} {status.get(stream)} {sent[stream]} {received[stream].hexdigest()}")


def reset(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("POST", "/upload", [("content-length", "1000000")]))
    conn.send_data(1, b"x" * 16384)
    sock.sendall(conn.data_to_send())
    conn.reset_stream(1)
    conn.send_headers(3, headers("GET", "/after"), end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        events = receive(sock, conn)
        if events is None:
            print("eof")
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 3:
                print("get", dict(event.headers)[b":status"].decode())
                return


def wait_goaway(sock, conn):
    while True:
        try:
            events = receive(sock, conn)
        except (ConnectionResetError, BrokenPipeError):
            print("eof")
            return
        if events is None:
            print("eof")
            return
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                print("goaway", int(event.error_code))
                return


def rapid_reset(port, count):
    sock, conn = connect(port)
    try:
        for _ in range(count):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, headers("GET", "/"), end_stream=True)
            conn.reset_stream(stream)
            sock.sendall(conn.data_to_send())
    except (ConnectionResetError, BrokenPipeError, h2.exceptions.ProtocolError):
        pass
    wait_goaway(sock, conn)


def continuation(port, count):
    sock, conn = connect(port)
    # A HEADERS frame without END_HEADERS, then CONTINUATION frames that never end.
    block = conn.encoder.encode(headers("GET", "/"))
    frame = lambda kind, flags, payload: (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + (1).to_bytes(4, "big") + payload
    )
    try:
        sock.sendall(frame(0x1, 0x1, block))
        for _ in range(count):
            sock.sendall(frame(0x9, 0x0, b"x-filler: " + b"a" * 8))
    except (ConnectionResetError, BrokenPipeError):
        pass
    wait_goaway(sock, conn)


def slow(port):
    # After a GOAWAY the h2 package refuses every frame; the proxy's later frames for the
    # stream in flight are legal (RFC 9113 §6.8), so they are read here frame by frame.
    sock, conn = connect(port)
    conn.send_headers(1, headers("GET", "/slow"), end_stream=True)
    sock.sendall(conn.data_to_send())
    print("sent", flush=True)
    data = b""
    while True:
        while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
            readable, _, _ = select.select([sock], [], [], TIMEOUT)
            chunk = sock.recv(65536) if readable else b""
            if not chunk:
                print("eof", flush=True)
                return
            data += chunk
        length = int.from_bytes(data[:3], "big")
        kind, flags = data[3], data[4]
        stream = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        payload, data = data[9 : 9 + length], data[9 + length :]
        if kind == 0x7:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(payload[4:8], "big")
            print("goaway", code, last, flush=True)
        elif kind == 0x1 and stream == 1:
            fields = dict(conn.decoder.decode(payload))
            print("status", fields[":status"], flush=True)
        elif kind == 0x4 and not flags & 0x1:
            sock.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
        if kind in (0x0, 0x1) and stream == 1 and flags & 0x1:
            print("ended", flush=True)
            return


def stalled(port, seconds):
    import h2.settings
    import time

    sock, conn = connect(port)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    conn.send_headers(1, headers("GET", "/big"), end_stream=True)
    sock.sendall(conn.data_to_send())
    length = 0
    opened = False
    while True:
        events = receive(sock, conn)
        if events is None:
            print("eof")
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                print("status", dict(event.headers)[b":status"].decode())
                if not opened:
                    # The client holds the body back past the backend timeout.
                    time.sleep(seconds)
                    conn.increment_flow_control_window(1 << 24, stream_id=1)
                    sock.sendall(conn.data_to_send())
                    opened = True
            elif isinstance(event, h2.events.DataReceived):
                length += len(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamReset):
                print("reset")
                return
            elif isinstance(event, h2.events.StreamEnded):
                print("body", length)
                return
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)


def held(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("GET", "/"), end_stream=True)
    sock.sendall(conn.data_to_send())
    print("sent", flush=True)
    sys.stdin.readline()
    conn.reset_stream(1)
    conn.ping(b"12345678")
    sock.sendall(conn.data_to_send())
    acknowledged = False
    while not acknowledged:
        events = receive(sock, conn)
        if events is None:
            print("eof", flush=True)
            return
        acknowledged = any(isinstance(e, h2.events.PingAckReceived) for e in events)
    print("reset", flush=True)
    sys.stdin.readline()


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "bodies":
        bodies(port, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "reset":
        reset(port)
    elif mode == "rapid-reset":
        rapid_reset(port, int(sys.argv[3]))
    elif mode == "stalled":
        stalled(port, float(sys.argv[3]))
    elif mode == "held":
        held(port)
    elif mode == "slow":
        slow(port)
    elif mode == "continuation":
        continuation(port, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")


main()
