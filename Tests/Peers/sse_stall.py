#!/usr/bin/env python3
"""A live-stream client that stops reading, for nmbridge's API tests (standard library only).

    sse_stall.py HOST PORT PATH [TOKEN]

Sends `GET PATH` with a small receive buffer and writes "stalling" to stdout, so that the
test knows the request is out. Then it reads nothing until a line (or end of file) arrives on
stdin: the test decides when the stall ends, not a clock. Then it reads until the server
ends the response or closes the connection (or 40 s pass) and prints {"closed": bool, "bytes": N,
"lagged_event": bool}.
"""
import json
import socket
import sys
import time

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = sys.argv[4] if len(sys.argv) > 4 else None
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sock.connect((host, port))
request = "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n" % (path, host)
if token:
    request += "Authorization: Bearer %s\r\n" % token
sock.sendall((request + "\r\n").encode())
print("stalling", flush=True)
sys.stdin.readline()
# Reads for at most 40 s in all: a stream that is still alive (keep-alives) is not closed.
deadline = time.monotonic() + 40
received = b""
closed = False
try:
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            closed = True
            break
        received += chunk
        if received.endswith(b"\r\n0\r\n\r\n"):
            break  # the chunked response ended; the connection itself may stay open
except ConnectionResetError:
    closed = True
except socket.timeout:
    pass
print(json.dumps({"closed": closed, "bytes": len(received), "lagged_event": b"event: lagged" in received}), flush=True)
