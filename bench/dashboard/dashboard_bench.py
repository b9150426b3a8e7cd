#!/usr/bin/env python3
"""The web dashboard's cost (bench/dashboard/run documents the method)."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(base, token, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(base + "/v1/health", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"daemon at {base} did not answer")


def session_cookie(base, token):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(base + "/ui/login", data=f"token={token}".encode(), method="POST")
    try:
        opener.open(request)
    except urllib.error.HTTPError as error:
        return error.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    raise SystemExit("login did not redirect")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def launch(playwright):
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])


def first_load(args, playwright):
    tmp = tempfile.mkdtemp(prefix="nmbridge-bench-ui-")
    port = free_port()
    daemon = subprocess.Popen([args.daemon, "--demo", "--state-dir", tmp, "--dicom-port", "0", "--http-port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        token = open(os.path.join(tmp, "api.token")).read().strip() if os.path.exists(os.path.join(tmp, "api.token")) else None
        for _ in range(200):
            if token:
                break
            time.sleep(0.1)
            if os.path.exists(os.path.join(tmp, "api.token")):
                token = open(os.path.join(tmp, "api.token")).read().strip()
        wait_ready(base, token)
        time.sleep(5)  # the simulators connect and measure
        cookie = session_cookie(base, token)
        browser = launch(playwright)
        times, sizes = [], []
        for _ in range(args.loads):
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            context.add_cookies([{"name": "nmbridge_session", "value": cookie, "url": base}])
            page = context.new_page()
            page.goto(base + "/ui/")
            page.wait_for_selector("body[data-ready=true] article.tile", timeout=120_000)
            result = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const resources = performance.getEntriesByType('resource').filter(r => !r.name.includes('/stream'));
                const ready = performance.getEntriesByName('nmbridge-ready')[0];
                return { ms: ready ? ready.startTime : performance.now(),
                         bytes: nav.transferSize + resources.reduce((s, r) => s + r.transferSize, 0),
                         decoded: nav.decodedBodySize + resources.reduce((s, r) => s + r.decodedBodySize, 0) };
            }""")
            times.append(result["ms"])
            sizes.append(result["bytes"])
            context.close()
        browser.close()
        return {"load_ms_median": round(statistics.median(times), 1), "load_ms": [round(t, 1) for t in times],
                "transferred_bytes_median": statistics.median(sizes), "transferred_bytes": sizes}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        subprocess.run(["rm", "-rf", tmp])


def cpu_cost(args, playwright):
    tmp = tempfile.mkdtemp(prefix="nmbridge-bench-ui-cpu-")
    port = free_port()
    token = "bench-token-" + os.urandom(8).hex()
    open(os.path.join(tmp, "api.token"), "w").write(token + "\n")
    with open(os.path.join(tmp, "steady.script"), "w") as f:
        f.write('link up "bench"\n')
        for i in range(100):
            f.write(f'emit dosecal.measurement {{"nuclide": "Tc-99m", "activity_bq": {700000000 + i}, "reading": "{700 + i / 100} MBq", "unit": "MBq"}}\n')
            f.write(f"wait {args.wait_ms / 1000}\n")
        f.write("loop\n")
    open(os.path.join(tmp, "nmbridge.toml"), "w").write(f"""
[daemon]
node = "bench"
state_dir = "{tmp}"
[journal]
sync = "normal"
[api]
socket = "{tmp}/api.sock"
tcp = "127.0.0.1:{port}"
token_file = "{tmp}/api.token"
[[device]]
id = "steady"
driver = "script"
script = "steady.script"
""")
    daemon = subprocess.Popen([args.daemon, "--config", os.path.join(tmp, "nmbridge.toml"), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "daemon.log"), "w"))
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(base, token)
        except SystemExit:
            raise SystemExit(open(os.path.join(tmp, "daemon.log")).read())
        cookie = session_cookie(base, token)
        browser = launch(playwright)

        def measure():
            seq0 = wait_ready(base, token)["journal"]["last_seq"]
            c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
            seq1 = wait_ready(base, token)["journal"]["last_seq"]
            return 100 * (c1 - c0) / (t1 - t0), (seq1 - seq0) / (t1 - t0)

        idle, loaded, rates = [], [], []
        for _ in range(args.rounds):
            cpu, rate = measure()
            idle.append(cpu)
            rates.append(rate)
            pages = []
            for i in range(args.dashboards):
                # A context each, as 16 workstations would be: one browser holds at most 6
                # HTTP/1.1 connections to a host, so a seventh tab's stream would wait.
                context = browser.new_context(viewport={"width": 1366, "height": 768})
                context.add_cookies([{"name": "nmbridge_session", "value": cookie, "url": base}])
                page = context.new_page()
                page.goto(base + ("/ui/#/events" if i % 4 == 3 else "/ui/#/devices"))
                page.wait_for_selector("body[data-ready=true]", state="attached", timeout=300_000)
                pages.append(page)
            time.sleep(5)
            cpu, rate = measure()
            loaded.append(cpu)
            rates.append(rate)
            for page in pages:
                page.context.close()
            time.sleep(3)
        browser.close()
        return {"events_per_s_median": round(statistics.median(rates), 1),
                "cpu_pct_no_dashboard": [round(x, 2) for x in idle], "cpu_pct_with_dashboards": [round(x, 2) for x in loaded],
                "cpu_pct_no_dashboard_median": round(statistics.median(idle), 2),
                "cpu_pct_with_dashboards_median": round(statistics.median(loaded), 2),
                "dashboards_cost_pct_of_a_core": round(statistics.median(loaded) - statistics.median(idle), 2)}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        subprocess.run(["rm", "-rf", tmp])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--dashboards", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--wait-ms", type=float, default=6)
    args = parser.parse_args()
    with sync_playwright() as playwright:
        if args.loads > 0:
            print(json.dumps({"first_load": first_load(args, playwright)}), flush=True)
        print(json.dumps({"cpu": cpu_cost(args, playwright), "dashboards": args.dashboards}), flush=True)
    print(f"load average: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
