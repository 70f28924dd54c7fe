#!/usr/bin/env python3
"""An h2c backend (HTTP/2 in cleartext, prior knowledge) for the tests of h2c_backends.rs,
built on the Python `h2` package (installed by .ci/install-test-tools).

It listens on 127.0.0.1 (an ephemeral port, printed on the first line of stdout) and serves
each connection on a thread of its own, advertising SETTINGS_MAX_CONCURRENT_STREAMS of its
first argument (100 without one); a second argument names the file of its `/health` status.
What it does depends on the request path:

- `/echo...`: 200 with the request body, and trailers: `x-body-length`, `x-connection` (the
  connection's number, from 1), `grpc-status: 0`, and the request's trailers each echoed as
  `x-echo-<name>`;
- `/reset`: RST_STREAM INTERNAL_ERROR as soon as the request head arrives;
- `/reset-mid`: the response head and 1000 bytes, then RST_STREAM INTERNAL_ERROR;
- `/goaway`: 200 `bye <connection>`, then GOAWAY naming this stream, and the connection
  closes;
- `/ping-flood`: 1000 PING frames, then 200 (a flood the proxy must refuse);
- `/big-header`: a 200 whose header list is far over the proxy's limit;
- `/gather/N...`: as `/echo`, but the response waits until N `/gather` streams were in
  flight at once over all connections (then they, and every later one, are answered); after
  10 seconds without, a 504 instead;
- `/drain/N...`: on the first connection, waits until N `/drain` streams are in flight on it,
  then answers the lower half of them (`drained <connection>`), sends GOAWAY naming the last
  one answered, and closes: the others were not processed. On later connections, answered
  at once;
- `/big/N`: 200 with N bytes, and `x-connection` in the head;
- `/stats`: `<connections> <most streams in flight at once on one connection>`;
- `/health`, when started with a file name as second argument: the status written in that
  file, and a line `health` appended to that file's name + `.log` (for health checks);
- `/sensitive`: 200 with the names of the request's fields sent never indexed (RFC 7541
  §6.2.3) as body, space-separated, and `x-token: t` never indexed and `x-plain: p` in the
  head;
- anything else: 200 with `<method> <path> <authority> <connection>` as body.
"""

import select
import socket
import sys
import threading
import time

import h2.settings

import h2.config
import h2.connection
import h2.errors
import h2.events
import hpack
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, HeadersFrame

next_connection = 0
lock = threading.Lock()
max_streams = 100
# Streams in flight on all connections, the most on one connection, and the `/gather`
# streams in flight with the largest number they wait for.
most_in_flight = 0
gathering = 0
gathered = False
GATHER_TIMEOUT = 10


class Stream:
    def __init__(self, headers):
        self.headers = {name.decode(): value.decode() for name, value in headers}
        # hpack decodes a field sent never indexed as a NeverIndexedHeaderTuple.
        self.never_indexed = [
            header[0].decode() for header in headers if not getattr(header, "indexable", True)
        ]
        self.body = bytearray()
        self.trailers = []
        # What is left to send: data, then trailers (a list of pairs) ending the stream.
        self.out = bytearray()
        self.out_trailers = None
        self.out_end = False


def serve(sock, number):
    global most_in_flight, gathering, gathered
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: conn.DEFAULT_MAX_HEADER_LIST_SIZE,
        },
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    closing = False
    in_flight = set()
    # Streams waiting: (stream id, target, since) for `/gather`, stream ids for `/drain`.
    waiting = []
    draining = []

    def count(stream_id):
        global most_in_flight
        in_flight.add(stream_id)
        with lock:
            most_in_flight = max(most_in_flight, len(in_flight))

    def echo(stream_id):
        stream = streams[stream_id]
        trailers = [
            ("x-body-length", str(len(stream.body))),
            ("x-connection", str(number)),
            ("grpc-status", "0"),
        ]
        trailers += [("x-echo-" + name.decode(), value.decode()) for name, value in stream.trailers]
        respond(stream_id, [(":status", "200"), ("content-type", "application/octet-stream")],
                bytes(stream.body), trailers)

    def release_gathered():
        global gathering
        for entry in list(waiting):
            stream_id, target, since = entry
            with lock:
                ready = gathered or gathering >= target
            if ready:
                waiting.remove(entry)
                echo(stream_id)
            elif time.monotonic() - since > GATHER_TIMEOUT:
                waiting.remove(entry)
                respond(stream_id, [(":status", "504"), ("content-length", "0")])
                with lock:
                    gathering -= 1

    def respond(stream_id, headers, body=b"", trailers=None):
        conn.send_headers(stream_id, headers)
        stream = streams[stream_id]
        stream.out += body
        stream.out_trailers = trailers
        stream.out_end = True

    def pump():
        for stream_id, stream in list(streams.items()):
            if not stream.out_end:
                continue
            while stream.out:
                window = min(
                    conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size
                )
                if window <= 0:
                    break
                chunk = bytes(stream.out[:window])
                del stream.out[:window]
                conn.send_data(stream_id, chunk)
            if not stream.out:
                if stream.out_trailers:
                    conn.send_headers(stream_id, stream.out_trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)
                del streams[stream_id]
                in_flight.discard(stream_id)

    def finish(stream_id):
        global gathering, gathered
        nonlocal closing
        stream = streams[stream_id]
        path = stream.headers.get(":path", "")
        if path.startswith("/echo") or path == "/trailers":
            echo(stream_id)
        elif path.startswith("/gather/"):
            target = int(path.split("/")[2])
            with lock:
                gathering += 1
                if gathering >= target:
                    gathered = True
            waiting.append((stream_id, target, time.monotonic()))
        elif path.startswith("/drain/"):
            target = int(path.split("/")[2])
            if number > 1:
                body = b"drained %d" % number
                respond(stream_id, [(":status", "200"), ("content-length", str(len(body)))], body)
                return
            draining.append(stream_id)
            if len(draining) < target:
                return
            answered = sorted(draining)[: target // 2]
            for answered_id in answered:
                body = b"drained %d" % number
                respond(answered_id, [(":status", "200"), ("content-length", str(len(body)))], body)
            pump()
            conn.close_connection(last_stream_id=answered[-1])
            closing = True
        elif path.startswith("/big/"):
            size = int(path.split("/")[2])
            respond(stream_id, [(":status", "200"), ("content-length", str(size)),
                                ("x-connection", str(number))], b"b" * size)
        elif path == "/stats":
            with lock:
                body = b"%d %d" % (next_connection, most_in_flight)
            respond(stream_id, [(":status", "200"), ("content-length", str(len(body)))], body)
        elif path == "/goaway":
            body = b"bye %d" % number
            respond(stream_id, [(":status", "200"), ("content-length", str(len(body)))], body)
            pump()
            conn.close_connection(last_stream_id=stream_id)
            closing = True
        elif path == "/ping-flood":
            for index in range(1000):
                conn.ping(index.to_bytes(8, "big"))
            respond(stream_id, [(":status", "200")], b"flooded")
        elif path == "/big-header":
            # Encoded without Huffman coding (the h2 package's is slow on such a value) and
            # framed by hand: HEADERS then CONTINUATION frames of 16 kB.
            block = hpack.Encoder().encode(
                [(":status", "200"), ("x-big", "v" * 200_000)], huffman=False
            )
            chunks = [block[at : at + 16_384] for at in range(0, len(block), 16_384)]
            frames = []
            for index, chunk in enumerate(chunks):
                frame = HeadersFrame(stream_id) if index == 0 else ContinuationFrame(stream_id)
                frame.data = chunk
                if index == len(chunks) - 1:
                    frame.flags.add("END_HEADERS")
                frames.append(frame.serialize())
            # The connection stays open: the proxy must be the one that ends it (a close
            # here could reach the proxy as a reset before it read the header block).
            sock.sendall(conn.data_to_send() + b"".join(frames))
            del streams[stream_id]
        elif path == "/health" and len(sys.argv) > 2:
            with open(sys.argv[2]) as status_file:
                status = status_file.read().strip()
            with open(sys.argv[2] + ".log", "a") as log:
                log.write("health\n")
            respond(stream_id, [(":status", status), ("content-length", "0")])
        elif path == "/sensitive":
            body = " ".join(stream.never_indexed).encode()
            respond(stream_id, [
                (":status", "200"),
                NeverIndexedHeaderTuple("x-token", "t"),
                ("x-plain", "p"),
                ("content-length", str(len(body))),
            ], body)
        elif path == "/reset-mid":
            conn.send_headers(stream_id, [(":status", "200")])
            conn.send_data(stream_id, b"m" * 1000)
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            del streams[stream_id]
        else:
            body = "{} {} {} {}".format(
                stream.headers.get(":method"), path, stream.headers.get(":authority"), number
            ).encode()
            respond(stream_id, [(":status", "200"), ("content-length", str(len(body)))], body)

    try:
        while True:
            if waiting:
                # Held streams are released by other connections' threads: look again soon.
                readable, _, _ = select.select([sock], [], [], 0.05)
                if not readable:
                    release_gathered()
                    pump()
                    sock.sendall(conn.data_to_send())
                    continue
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    count(event.stream_id)
                    streams[event.stream_id] = Stream(event.headers)
                    if streams[event.stream_id].headers.get(":path") == "/reset":
                        conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                        del streams[event.stream_id]
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id in streams:
                        streams[event.stream_id].body += event.data
                elif isinstance(event, h2.events.TrailersReceived):
                    if event.stream_id in streams:
                        streams[event.stream_id].trailers = event.headers
                elif isinstance(event, h2.events.StreamEnded):
                    if event.stream_id in streams:
                        finish(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    streams.pop(event.stream_id, None)
                    in_flight.discard(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            release_gathered()
            pump()
            sock.sendall(conn.data_to_send())
            if closing:
                return
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def main():
    global next_connection, max_streams
    if len(sys.argv) > 1:
        max_streams = int(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with lock:
            next_connection += 1
            number = next_connection
        threading.Thread(target=serve, args=(sock, number), daemon=True).start()


if __name__ == "__main__":
    main()
