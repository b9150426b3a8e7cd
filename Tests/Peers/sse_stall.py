#!/usr/bin/env python3
"""A live-stream client that stops reading, for nmbridge's API tests (standard library only).

    sse_stall.py HOST PORT PATH STALL_SECONDS [TOKEN]

Sends `GET PATH` with a small receive buffer, reads nothing for STALL_SECONDS (writing
"stalling" to stdout at once, so that the test knows the request is out), then reads until
the server closes the connection (or 40 s pass) and prints {"closed": bool, "bytes": N,
"lagged_event": bool}.
"""
import json
import socket
import sys
import time

host, port, path, stall = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
token = sys.argv[5] if len(sys.argv) > 5 else None
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sock.connect((host, port))
request = "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n" % (path, host)
if token:
    request += "Authorization: Bearer %s\r\n" % token
sock.sendall((request + "\r\n").encode())
print("stalling", flush=True)
time.sleep(stall)
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
except ConnectionResetError:
    closed = True
except socket.timeout:
    pass
print(json.dumps({"closed": closed, "bytes": len(received), "lagged_event": b"event: lagged" in received}), flush=True)
