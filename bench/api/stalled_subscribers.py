#!/usr/bin/env python3
"""Stalled live-stream subscribers against a running nmbridged (issue 20), standard library only.

    stalled_subscribers.py HOST:PORT TOKEN PID SUBSCRIBERS STALLED SECONDS

Opens SUBSCRIBERS streams (GET /v1/events/stream) on the daemon's TCP API; STALLED of
them never read a byte (with a 4 KB receive buffer), the others read everything. Every 5 s it samples the daemon's
VmRSS (/proc/PID/status), nmbridge_api_lagged_subscribers_total and _live_subscribers
(/metrics), and the daemon's open sockets (a cut-off closes one). Prints one JSON line per
sample and a summary: the time from start until every stalled subscriber was cut off
(null if not all were), the peak and final RSS, and the RSS after all clients closed.
"""
import asyncio
import json
import os
import socket
import sys
import time

address, token = sys.argv[1], sys.argv[2]
pid, total, stalled, seconds = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
host, port = address.rsplit(":", 1)
headers = ("Host: localhost\r\nAuthorization: Bearer %s\r\n" % token).encode()


def rss_mb():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def daemon_sockets():
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return count


async def metrics():
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /metrics HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    values = {}
    for line in body.splitlines():
        if line.startswith("nmbridge_api_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def open_stream(stalled):
    # A client that stops reading: a small receive buffer, as a busy or hung browser tab's
    # socket fills (the kernel's autotuned buffers would otherwise hold minutes of events).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(b"GET /v1/events/stream HTTP/1.1\r\n" + headers + b"\r\n")
    await writer.drain()
    return reader, writer


async def reading(reader):
    try:
        while await reader.read(65536):
            pass
    except Exception:
        pass


async def main():
    start = time.monotonic()
    streams = [await open_stream(i < stalled) for i in range(total)]
    baseline = daemon_sockets()
    readers = [asyncio.create_task(reading(r)) for r, _ in streams[stalled:]]
    # A stalled client's transport must not read on its own either.
    for _, writer in streams[:stalled]:
        writer.transport.pause_reading()
    cut_off_at = None
    peak = 0.0
    samples = []
    while time.monotonic() - start < seconds:
        await asyncio.sleep(5)
        # The daemon's open connections: a cut-off closes its side at once (the client's
        # unread bytes would hide the EOF from the client for a long time).
        sockets = daemon_sockets()
        rss = rss_mb()
        m = await metrics()
        peak = max(peak, rss or 0)
        sample = {"t": round(time.monotonic() - start, 1), "rss_mb": round(rss, 1), "lagged": m.get("nmbridge_api_lagged_subscribers_total"),
                  "live": m.get("nmbridge_api_live_subscribers"), "daemon_sockets": sockets}
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        if cut_off_at is None and sockets <= baseline - stalled:
            cut_off_at = sample["t"]
    final = rss_mb()
    for task in readers:
        task.cancel()
    for _, writer in streams:
        writer.close()
    await asyncio.sleep(5)
    print(json.dumps({"summary": True, "subscribers": total, "stalled": stalled, "cut_off_s": cut_off_at,
                      "peak_rss_mb": round(peak, 1), "final_rss_mb": round(final, 1),
                      "rss_after_close_mb": round(rss_mb(), 1), "lagged": samples[-1]["lagged"] if samples else None}), flush=True)


asyncio.run(main())
