#!/usr/bin/env python3
"""A gRPC service and client (PyPI `grpcio`, installed by .ci/install-test-tools) for the
tests of h2c_backends.rs: gRPC speaks HTTP/2 with prior knowledge both ways and carries its
status in trailers, so a round trip through the proxy checks HTTP/2 to clients and to
backends, DATA framing and trailers.

    server              serves `test.Echo` on 127.0.0.1 (its port printed on the first line):
                        `Echo` answers the request bytes with trailing metadata
                        `x-echo-length`; `Fail` aborts with NOT_FOUND `missing`
    client PORT COUNT   COUNT `Echo` calls with random payloads (up to 200 kB), then one `Fail`,
                        through 127.0.0.1:PORT with the authority `localhost`; prints
                        `echo SIZE same|differs LENGTH_TRAILER` per call, then `fail CODE DETAILS`
"""

import random
import sys
from concurrent import futures

import grpc


def server():
    def echo(request, context):
        context.set_trailing_metadata((("x-echo-length", str(len(request))),))
        return request

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "missing")

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    service = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    service.add_generic_rpc_handlers((handler,))
    port = service.add_insecure_port("127.0.0.1:0")
    service.start()
    print(port, flush=True)
    service.wait_for_termination()


def client(port, count):
    rng = random.Random(port)
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        echo = channel.unary_unary("/test.Echo/Echo")
        for _ in range(count):
            payload = rng.randbytes(rng.choice([0, 1, rng.randrange(1, 200_000)]))
            reply, call = echo.with_call(payload, timeout=20)
            trailers = dict(call.trailing_metadata())
            same = "same" if reply == payload else "differs"
            print(f"echo {len(payload)} {same} {trailers.get('x-echo-length')}")
        try:
            channel.unary_unary("/test.Echo/Fail")(b"x", timeout=20)
            print("fail none")
        except grpc.RpcError as error:
            print(f"fail {error.code().name} {error.details()}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        client(int(sys.argv[2]), int(sys.argv[3]))
