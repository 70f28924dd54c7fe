"""An HTTP/2 client (the `h2` package) for the e2e tests of e2e/tests/h2_streams.rs: it
speaks cleartext HTTP/2 with prior knowledge to the proxy on 127.0.0.1 and prints one line
per result, which the Rust test checks.

    bodies PORT COUNT SEED   COUNT concurrent POST streams with bodies of random sizes;
                             prints `STREAM STATUS SENT_SHA256 RECEIVED_SHA256` per stream
    gather PORT COUNT SEED N as `bodies`, to `/gather/N` (h2c_backend.py); each line ends
                             with the backend connection of the stream's `x-connection`
                             trailer (`-` without one)
    stuck PORT PATH          a GET of PATH whose window stays closed: prints `status STATUS`
                             once its head came, then, after a line from stdin, opens the
                             window and prints `body LENGTH` (or `reset`)
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
    flood PORT KIND COUNT    COUNT frames of KIND at once: `ping`, `settings`,
                             `window-update` (on stream 0), `priority` (for idle streams),
                             `empty-data` (on an open stream), `made-you-reset` (streams
                             opened, each answered with an invalid WINDOW_UPDATE, CVE-2025-8671);
                             prints `goaway CODE` or `eof`
    hpack PORT KIND          stream 1 is an HPACK bomb of KIND: `count` (many fields), `size`
                             (one large field indexed and repeated), `table` (a dynamic table
                             size update past the advertised one); then a GET on stream 3;
                             prints `1 reset CODE` and `3 STATUS`, or `goaway CODE`
    zero-window PORT         a GET of /big whose window is never opened; prints `1 STATUS`,
                             then `goaway CODE` or `eof`
    trailers PORT            a GET of /trailers; prints `status STATUS`, `body BODY`, then
                             `trailer NAME VALUE` per trailer field and `ended`
    sequential PORT PATH...  a GET of each PATH on one connection, each once the previous one
                             ended; prints `PATH STATUS` per request (`PATH reset` if reset)
    concurrent PORT COUNT    COUNT GETs sent at once, before the proxy's SETTINGS are read;
                             prints `STREAM STATUS` or `STREAM reset CODE` per stream
    timed PORT PATH...       a GET of each PATH, all sent at once on one connection; prints
                             `PATH STATUS MILLISECONDS BODY` per request, in order, with the
                             time from sending to the end of its stream (`reset` for STATUS
                             if it was reset)
    sensitive PORT           a GET of /sensitive (h2c_backend.py) with `x-secret: s` sent never
                             indexed (RFC 7541 §6.2.3) and `x-plain: p`; prints `backend BODY`
                             (the fields the backend got never indexed) and `client NAMES`
                             (the response's fields the client got never indexed)
    statuses PORT PATH COUNT COUNT GETs of PATH on one connection, 50 at most in flight;
                             prints `STATUS N` per status (`reset N` for streams reset)
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
from hpack import NeverIndexedHeaderTuple

HOST = "localhost"
TIMEOUT = 20


def connect(port, window=16 * 1024 * 1024):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    if window:
        conn.increment_flow_control_window(window)
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


def bodies(port, count, seed, path="/echo", with_connection=False):
    rng = random.Random(seed)
    sock, conn = connect(port)
    to_send = {}
    sent = {}
    received = {}
    status = {}
    connection = {}
    ended = set()
    for index in range(count):
        stream = conn.get_next_available_stream_id()
        size = rng.choice([0, 1, rng.randrange(1, 70_000), rng.randrange(1, 300_000)])
        body = rng.randbytes(size)
        conn.send_headers(
            stream, headers("POST", f"{path}/{index}", [("content-length", str(size))])
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
            elif isinstance(event, h2.events.TrailersReceived):
                connection[event.stream_id] = dict(event.headers).get(b"x-connection", b"-")
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                print(f"{event.stream_id} reset")
                ended.add(event.stream_id)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    for stream in sorted(sent):
        line = f"{stream} {status.get(stream)} {sent[stream]} {received[stream].hexdigest()}"
        if with_connection:
            line += " " + connection.get(stream, b"-").decode()
        print(line)


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


def frame(kind, flags, stream, payload):
    """One frame, written by hand: the `h2` package refuses to send hostile sequences."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream.to_bytes(4, "big")
        + payload
    )


def continuation(port, count):
    sock, conn = connect(port)
    # A HEADERS frame without END_HEADERS, then CONTINUATION frames that never end.
    block = conn.encoder.encode(headers("GET", "/"))
    try:
        sock.sendall(frame(0x1, 0x1, 1, block))
        for _ in range(count):
            sock.sendall(frame(0x9, 0x0, 1, b"x-filler: " + b"a" * 8))
    except (ConnectionResetError, BrokenPipeError):
        pass
    wait_goaway(sock, conn)


def read_frames(sock):
    """Yields `(kind, flags, stream, payload)` per frame received, until the connection ends."""
    data = b""
    while True:
        while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
            readable, _, _ = select.select([sock], [], [], TIMEOUT)
            if not readable:
                raise TimeoutError("the proxy sent nothing in time")
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return
            data += chunk
        length = int.from_bytes(data[:3], "big")
        stream = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        yield data[3], data[4], stream, data[9 : 9 + length]
        data = data[9 + length :]


def acknowledge_settings(sock):
    """Acknowledges the proxy's SETTINGS, unless it closed the connection meanwhile."""
    try:
        sock.sendall(frame(0x4, 0x1, 0, b""))
    except (ConnectionResetError, BrokenPipeError):
        pass


def wait_goaway_frame(sock):
    """Reads frames until a GOAWAY: prints `goaway CODE`, or `eof` if the connection ends."""
    for kind, _, _, payload in read_frames(sock):
        if kind == 0x7:
            print("goaway", int.from_bytes(payload[4:8], "big"))
            return
    print("eof")


def flood(port, kind, count):
    sock, conn = connect(port)
    frames = []
    if kind == "ping":
        frames = [frame(0x6, 0, 0, index.to_bytes(8, "big")) for index in range(count)]
    elif kind == "settings":
        frames = [frame(0x4, 0, 0, b"")] * count
    elif kind == "window-update":
        frames = [frame(0x8, 0, 0, (1).to_bytes(4, "big"))] * count
    elif kind == "priority":
        # Exclusive dependency on stream 0, weight 16, for streams never opened.
        frames = [frame(0x2, 0, 1001 + 2 * i, bytes([0x80, 0, 0, 0, 15])) for i in range(count)]
    elif kind == "empty-data":
        block = conn.encoder.encode(headers("POST", "/upload", [("content-length", "10")]))
        frames = [frame(0x1, 0x4, 1, block)] + [frame(0x0, 0, 1, b"")] * count
    elif kind == "made-you-reset":
        # Each stream is opened with a body to come, then given a zero window increment:
        # a stream error, so the proxy resets the stream the client made it work for.
        for index in range(count):
            stream = 1 + 2 * index
            block = conn.encoder.encode(headers("POST", "/upload", [("content-length", "10")]))
            frames.append(frame(0x1, 0x4, stream, block))
            frames.append(frame(0x8, 0, stream, (0).to_bytes(4, "big")))
    else:
        raise SystemExit(f"unknown flood {kind}")
    try:
        sock.sendall(b"".join(frames))
    except (ConnectionResetError, BrokenPipeError):
        pass
    wait_goaway_frame(sock)


def hpack_bomb(port, kind):
    sock, conn = connect(port)
    if kind == "count":
        extra = [(f"x-field-{index}", "1") for index in range(1000)]
    elif kind == "size":
        # Sent once into the dynamic table, then one byte per repetition.
        extra = [("x-bomb", "a" * 4000)] * 40
    elif kind == "table":
        # A dynamic table size update far past the size the proxy advertised.
        conn.encoder.header_table_size = 1 << 24
        extra = []
    else:
        raise SystemExit(f"unknown bomb {kind}")
    block = conn.encoder.encode(headers("GET", "/bomb", extra))
    sock.sendall(frame(0x1, 0x5, 1, block))
    # The proxy's HPACK state stays in step with the client's whatever becomes of stream 1.
    sock.sendall(frame(0x1, 0x5, 3, conn.encoder.encode(headers("GET", "/after"))))
    follow(sock, conn, 3, until_status=True)


def zero_window(port):
    # The connection's window stays at its initial 65535 bytes and is never opened.
    sock, conn = connect(port, window=0)
    conn.send_headers(1, headers("GET", "/big"), end_stream=True)
    sock.sendall(conn.data_to_send())
    follow(sock, conn, 1, until_status=False)


def follow(sock, conn, watched, until_status):
    """Prints what the proxy sends, frame by frame: `STREAM reset CODE` per RST_STREAM,
    `STREAM STATUS` for the response head of stream `watched` (the end if `until_status`),
    then `goaway CODE`, or `eof` if the connection ends without one."""
    for kind, flags, stream, payload in read_frames(sock):
        if kind == 0x3:
            print(stream, "reset", int.from_bytes(payload, "big"), flush=True)
        elif kind == 0x1 and stream == watched:
            print(stream, dict(conn.decoder.decode(payload))[":status"], flush=True)
            if until_status:
                return
        elif kind == 0x7:
            print("goaway", int.from_bytes(payload[4:8], "big"))
            return
        elif kind == 0x4 and not flags & 0x1:
            acknowledge_settings(sock)
    print("eof")


def each_event(sock, conn):
    """Yields the events of what the proxy sends, and sends what the client has to say after
    each read (acknowledgements, WINDOW_UPDATE); ends with the connection."""
    while True:
        events = receive(sock, conn)
        if events is None:
            return
        yield from events
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)


def trailers(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("GET", "/trailers"), end_stream=True)
    sock.sendall(conn.data_to_send())
    body = b""
    for event in each_event(sock, conn):
        if isinstance(event, h2.events.ResponseReceived):
            print("status", dict(event.headers)[b":status"].decode())
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, h2.events.TrailersReceived):
            print("body", body.decode())
            for name, value in event.headers:
                print("trailer", name.decode(), value.decode())
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            print("ended" if isinstance(event, h2.events.StreamEnded) else "reset")
            return
    print("eof")


def sensitive(port):
    sock, conn = connect(port)
    extra = (NeverIndexedHeaderTuple("x-secret", "s"), ("x-plain", "p"))
    conn.send_headers(1, headers("GET", "/sensitive", extra), end_stream=True)
    sock.sendall(conn.data_to_send())
    body = b""
    marked = []
    for event in each_event(sock, conn):
        if isinstance(event, h2.events.ResponseReceived):
            marked = [h[0].decode() for h in event.headers if not getattr(h, "indexable", True)]
        elif isinstance(event, h2.events.DataReceived):
            body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            print("backend", body.decode())
            print("client", " ".join(marked))
            return
    print("eof")


def sequential(port, paths):
    sock, conn = connect(port)
    for path in paths:
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers("GET", path), end_stream=True)
        sock.sendall(conn.data_to_send())
        status = result = "eof"
        for event in each_event(sock, conn):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                result = status if isinstance(event, h2.events.StreamEnded) else "reset"
                break
        sock.sendall(conn.data_to_send())
        print(path, result)


def concurrent(port, count):
    sock, conn = connect(port)
    for index in range(count):
        conn.send_headers(1 + 2 * index, headers("GET", f"/{index}"), end_stream=True)
    sock.sendall(conn.data_to_send())
    results = {}
    for event in each_event(sock, conn):
        if isinstance(event, h2.events.ResponseReceived):
            results[event.stream_id] = dict(event.headers)[b":status"].decode()
        elif isinstance(event, h2.events.StreamReset):
            results[event.stream_id] = f"reset {int(event.error_code)}"
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if len(results) == count:
            break
    for stream in sorted(results):
        print(stream, results[stream])


def slow(port):
    # After a GOAWAY the h2 package refuses every frame; the proxy's later frames for the
    # stream in flight are legal (RFC 9113 §6.8), so they are read here frame by frame.
    sock, conn = connect(port)
    conn.send_headers(1, headers("GET", "/slow"), end_stream=True)
    sock.sendall(conn.data_to_send())
    print("sent", flush=True)
    for kind, flags, stream, payload in read_frames(sock):
        if kind == 0x7:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(payload[4:8], "big")
            print("goaway", code, last, flush=True)
        elif kind == 0x1 and stream == 1:
            fields = dict(conn.decoder.decode(payload))
            print("status", fields[":status"], flush=True)
        elif kind == 0x4 and not flags & 0x1:
            acknowledge_settings(sock)
        if kind in (0x0, 0x1) and stream == 1 and flags & 0x1:
            print("ended", flush=True)
            return
    print("eof", flush=True)


def stalled(port, seconds):
    import h2.settings
    import time

    sock, conn = connect(port)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    conn.send_headers(1, headers("GET", "/big"), end_stream=True)
    sock.sendall(conn.data_to_send())
    length = 0
    opened = False
    for event in each_event(sock, conn):
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
    print("eof")


def stuck(port, path):
    import h2.settings

    sock, conn = connect(port)
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    conn.send_headers(1, headers("GET", path), end_stream=True)
    sock.sendall(conn.data_to_send())
    length = 0
    for event in each_event(sock, conn):
        if isinstance(event, h2.events.ResponseReceived):
            print("status", dict(event.headers)[b":status"].decode(), flush=True)
            sys.stdin.readline()
            conn.increment_flow_control_window(1 << 24, stream_id=1)
            sock.sendall(conn.data_to_send())
        elif isinstance(event, h2.events.DataReceived):
            length += len(event.data)
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        elif isinstance(event, h2.events.StreamReset):
            print("reset", flush=True)
            return
        elif isinstance(event, h2.events.StreamEnded):
            print("body", length, flush=True)
            return
    print("eof", flush=True)


def ping_acknowledged(sock, conn):
    """Sends a PING and waits for its ACK: the proxy read every frame sent before it."""
    conn.ping(b"12345678")
    sock.sendall(conn.data_to_send())
    while True:
        events = receive(sock, conn)
        if events is None:
            print("eof", flush=True)
            return False
        if any(isinstance(e, h2.events.PingAckReceived) for e in events):
            return True


def held(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("GET", "/"), end_stream=True)
    if not ping_acknowledged(sock, conn):
        return
    print("sent", flush=True)
    sys.stdin.readline()
    conn.reset_stream(1)
    if not ping_acknowledged(sock, conn):
        return
    print("reset", flush=True)
    sys.stdin.readline()


def timed(port, paths):
    import time

    sock, conn = connect(port)
    streams = {}
    for path in paths:
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers("GET", path), end_stream=True)
        streams[stream] = path
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    status, body, ended = {}, {stream: b"" for stream in streams}, {}
    for event in each_event(sock, conn):
        if isinstance(event, h2.events.ResponseReceived):
            status[event.stream_id] = dict(event.headers)[b":status"].decode()
        elif isinstance(event, h2.events.DataReceived):
            body[event.stream_id] += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            if isinstance(event, h2.events.StreamReset):
                status[event.stream_id] = "reset"
            ended[event.stream_id] = round((time.monotonic() - started) * 1000)
        if len(ended) == len(streams):
            break
    for stream, path in streams.items():
        text = " ".join(body[stream].decode(errors="replace").split())
        print(path, status.get(stream, "eof"), ended.get(stream, -1), text)


def statuses(port, path, count):
    sock, conn = connect(port)
    counts, in_flight, sent, done = {}, set(), 0, 0
    while done < count:
        while sent < count and len(in_flight) < 50:
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, headers("GET", path), end_stream=True)
            in_flight.add(stream)
            sent += 1
        sock.sendall(conn.data_to_send())
        events = receive(sock, conn)
        if events is None:
            break
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                code = dict(event.headers)[b":status"].decode()
                counts[code] = counts.get(code, 0) + 1
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                counts["reset"] = counts.get("reset", 0) + 1
            if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                in_flight.discard(event.stream_id)
                done += 1
    for code in sorted(counts):
        print(code, counts[code])


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "bodies":
        bodies(port, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "gather":
        gather = f"/gather/{int(sys.argv[5])}"
        bodies(port, int(sys.argv[3]), int(sys.argv[4]), gather, with_connection=True)
    elif mode == "stuck":
        stuck(port, sys.argv[3])
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
    elif mode == "flood":
        flood(port, sys.argv[3], int(sys.argv[4]))
    elif mode == "hpack":
        hpack_bomb(port, sys.argv[3])
    elif mode == "zero-window":
        zero_window(port)
    elif mode == "trailers":
        trailers(port)
    elif mode == "sequential":
        sequential(port, sys.argv[3:])
    elif mode == "concurrent":
        concurrent(port, int(sys.argv[3]))
    elif mode == "timed":
        timed(port, sys.argv[3:])
    elif mode == "sensitive":
        sensitive(port)
    elif mode == "statuses":
        statuses(port, sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode}")


main()
