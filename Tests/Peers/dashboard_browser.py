#!/usr/bin/env python3
"""Drives the nmbridge web dashboard in Debian's Chromium through Playwright, against a
real daemon (DashboardBrowserTests). The Swift test owns the daemon and the simulator;
this peer asks it to act with one JSON line on stdout ({"ask": "..."}) and reads one
line back on stdin. Every check raises AssertionError with what it saw; the exit status
says whether all held. Screenshots go to --artifacts.

Chromium is started through `setpriv --pdeathsig KILL`, so that it dies with the
Playwright driver, which exits when this process (bound to the test) dies.
"""
import argparse
import csv
import json
import os
import sys
import time
from datetime import datetime
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright


def ask(what, **fields):
    print(json.dumps({"ask": what, **fields}), flush=True)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the test closed the conversation")
    return json.loads(line)


def log(message):
    print(message, file=sys.stderr, flush=True)


def http(base, path, token=None, cookie=None, method="GET", data=None):
    request = urllib.request.Request(base + path, method=method, data=data)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def login_raw(base, token):
    """POST /ui/login without following the redirect: (status, Set-Cookie)."""
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(base + "/ui/login", method="POST", data=f"token={token}".encode())
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        response = opener.open(request, timeout=30)
        return response.status, response.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Set-Cookie", "") or ""


def check_access(base, token):
    # Without a session: 401 and no data, for the API and the dashboard's own data.
    for path in ["/v1/devices", "/v1/events?last=5", "/ui/data/qc", "/ui/data/studies", "/ui/data/info", "/ui/data/stream", "/ui/data/recent"]:
        status, body = http(base, path)
        assert status == 401, f"{path} without a session: HTTP {status}"
        assert '"events"' not in body and '"devices"' not in body and "test-node" not in body, f"{path} leaked data: {body[:200]}"
    # The page itself sends a browser to the login form.
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(base + "/ui/", timeout=30)
        raise AssertionError("/ui/ without a session answered 200")
    except urllib.error.HTTPError as error:
        assert error.code == 303 and error.headers["Location"] == "/ui/login", f"/ui/ without a session: {error.code} {error.headers}"
    # A wrong token is refused and sets no cookie.
    status, cookie = login_raw(base, token[:-1] + ("x" if token[-1] != "x" else "y"))
    assert status == 401 and "nmbridge_session" not in cookie, f"wrong token: HTTP {status}, Set-Cookie {cookie!r}"
    # A forged session cookie is refused.
    status, _ = http(base, "/v1/devices", cookie="nmbridge_session=" + "0" * 64)
    assert status == 401, f"forged session: HTTP {status}"
    # The right token gives an HttpOnly, SameSite=Strict, expiring session.
    status, cookie = login_raw(base, token)
    assert status == 303, f"login: HTTP {status}"
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"]:
        assert attribute in cookie, f"session cookie lacks {attribute}: {cookie}"
    session = cookie.split(";")[0]
    status, body = http(base, "/v1/devices", cookie=session)
    assert status == 200 and '"devices"' in body, f"with the session: HTTP {status}"
    return session


def wait_until(page, expression, timeout=30_000):
    """Polls `expression` in the page until it is truthy. Not wait_for_function: that
    evaluates the string with eval, which the dashboard's policy (no unsafe-eval) forbids,
    as it should; evaluate() goes through the debugging protocol."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout / 1000} s: {expression}")
        time.sleep(0.05)


def shown_seqs(page):
    return page.evaluate("window.nmbridgeShownSeqs()")


def tile_state(page, device):
    return page.get_attribute(f'article.tile[data-device="{device}"]', "data-state")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--stale-after", type=float, required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    token = open(args.token_file).read().strip()
    base = args.base
    os.makedirs(args.artifacts, exist_ok=True)
    figures = {}

    session_cookie = check_access(base, token)
    log("access: 401 without a session, wrong token refused, session cookie attributes ok")

    wrapper = os.path.join(args.artifacts, "chromium-bound.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec setpriv --pdeathsig KILL -- {args.chromium} "$@"\n')
    os.chmod(wrapper, 0o755)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=wrapper, args=["--no-sandbox"])
        print(json.dumps({"browser_pid_note": "chromium started"}), file=sys.stderr)
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        problems = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        # Arrival time of each event row (ms since the epoch, the browser's clock).
        page.add_init_script("""
            window.__arrivals = {};
            new MutationObserver((records) => {
              for (const r of records) for (const n of r.addedNodes)
                if (n.dataset && n.dataset.seq && !(n.dataset.seq in window.__arrivals)) window.__arrivals[n.dataset.seq] = Date.now();
            }).observe(document, { childList: true, subtree: true });
        """)

        # Login through the form.
        page.goto(base + "/ui/")
        assert page.url.endswith("/ui/login"), f"not sent to the login form: {page.url}"
        page.screenshot(path=os.path.join(args.artifacts, "login.png"))
        page.fill("#token", "not-the-token-at-all")
        page.click("button[type=submit]")
        page.wait_for_selector("p.error")
        assert page.url.endswith("/ui/login"), page.url
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready=true]")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["nmbridge_session"]["httpOnly"] and cookies["nmbridge_session"]["sameSite"] == "Strict", cookies
        assert page.evaluate("document.cookie") == "", "the session cookie is readable by scripts"

        # Devices: the calibrator's tile is up.
        wait_until(page, f'document.querySelector(\'article.tile[data-device="{args.device}"]\')?.dataset.state === "up"', timeout=60_000)
        page.wait_for_selector(f'article.tile[data-device="{args.device}"] .measurement:not(:empty)')
        page.screenshot(path=os.path.join(args.artifacts, "devices.png"))

        # Events: a new measurement appears within 1 s of being journaled.
        page.goto(base + "/ui/#/events")
        page.wait_for_selector("body[data-ready=true]")
        start_seq = max(shown_seqs(page) or [0])
        wait_until(page, 
            f"""[...document.querySelectorAll('#events details.event')].some(d => Number(d.dataset.seq) > {start_seq}
                 && d.querySelector('.c-kind').textContent === 'dosecal.measurement')""", timeout=60_000)
        seq = page.evaluate(f"""[...document.querySelectorAll('#events details.event')].find(d => Number(d.dataset.seq) > {start_seq}
                 && d.querySelector('.c-kind').textContent === 'dosecal.measurement').dataset.seq""")
        status, body = http(base, f"/v1/events?after={int(seq) - 1}&limit=1", token=token)
        journaled = json.loads(body)["events"][0]
        arrived_ms = page.evaluate(f"window.__arrivals['{seq}']")
        journal_ms = datetime.fromisoformat(journaled["time"].replace("Z", "+00:00")).timestamp() * 1000
        latency = (arrived_ms - journal_ms) / 1000
        figures["measurement_latency_s"] = round(latency, 3)
        assert latency <= 1.0, f"measurement #{seq} journaled at {journaled['time']} appeared {latency:.3f} s later"
        # Expand it: JSON and raw bytes (hex).
        page.click(f'#seq-{seq} > summary')
        page.wait_for_selector(f"#seq-{seq} pre.json")
        assert '"dosecal.measurement"' in page.inner_text(f"#seq-{seq} pre.json")
        assert page.query_selector(f"#seq-{seq} pre.hex") is not None, "no raw bytes shown for a measurement"
        page.screenshot(path=os.path.join(args.artifacts, "events.png"))
        # The filter by kind glob hides other kinds.
        page.fill("#f-kind", "device.*")
        wait_until(page, "[...document.querySelectorAll('#events .c-kind')].every(k => k.textContent.startsWith('device.'))")
        page.fill("#f-kind", "")

        # Hostile text renders as text.
        page.fill("#f-kind", "device.protocol_error")
        wait_until(page, "[...document.querySelectorAll('#events .c-text')].some(t => t.textContent.includes('<script>'))", timeout=60_000)
        texts = page.eval_on_selector_all("#events .c-text", "ts => ts.map(t => t.textContent)")
        hostile = [t for t in texts if "<script>" in t]
        assert hostile and "<img src=x onerror=" in hostile[0], f"hostile text not shown literally: {texts}"
        assert page.evaluate("window.pwned") is None, "a script from event text ran"
        assert page.query_selector("#events img, #events script") is None, "event text became elements"
        hostile_seq = page.evaluate("[...document.querySelectorAll('#events details.event')].find(d => d.querySelector('.c-text').textContent.includes('<script>')).dataset.seq")
        page.goto(base + f"/ui/#/event/{hostile_seq}")
        page.wait_for_selector("#event-one pre.json")
        assert "<script>" in page.inner_text("#event-one pre.json") and page.evaluate("window.pwned") is None
        page.screenshot(path=os.path.join(args.artifacts, "event-hostile-text.png"))
        page.goto(base + "/ui/#/events")
        page.fill("#f-kind", "")

        # The calibrator goes silent: stale within stale_after_s + 2 s, then up again.
        page.goto(base + "/ui/#/devices")
        wait_until(page, f'document.querySelector(\'article.tile[data-device="{args.device}"]\')?.dataset.state === "up"', timeout=60_000)
        ask("stop-simulator")
        silent_from = time.monotonic()
        wait_until(page, f'document.querySelector(\'article.tile[data-device="{args.device}"]\')?.dataset.state === "stale"', timeout=120_000)
        stale_after = time.monotonic() - silent_from
        figures["stale_shown_after_s"] = round(stale_after, 3)
        tile_text = page.inner_text(f'article.tile[data-device="{args.device}"]')
        assert "STALE" in tile_text and "since" in tile_text, f"a stale tile says so in words: {tile_text}"
        assert stale_after <= args.stale_after + 2, f"stale shown {stale_after:.2f} s after the simulator went silent (stale_after_s {args.stale_after})"
        page.screenshot(path=os.path.join(args.artifacts, "devices-stale.png"))
        ask("continue-simulator")
        wait_until(page, f'document.querySelector(\'article.tile[data-device="{args.device}"]\')?.dataset.state === "up"', timeout=60_000)

        # Today's QC: the same findings as `nmbridge qc report --format csv`.
        answer = ask("qc-csv")
        with open(answer["path"], newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows, "the CSV report has no findings: the test setup should have made some"
        page.goto(base + "/ui/#/qc")
        page.wait_for_selector("#qc[data-findings]")
        shown = page.eval_on_selector_all(
            "#qc tr[data-seq]", "rs => rs.map(r => [r.dataset.seq, r.dataset.kind, r.dataset.result, r.dataset.value])")
        expected = [[r["seq"], r["kind"], r["result"], r["value"]] for r in rows]
        assert sorted(shown) == sorted(expected), f"QC page {shown} != CSV {expected}"
        assert page.get_attribute("#qc", "data-findings") == str(len(rows))
        wait_until(page, "[...document.querySelectorAll('#qc img.chart')].every(i => i.complete && i.naturalWidth > 0)")
        figures["qc_findings"] = len(rows)
        page.screenshot(path=os.path.join(args.artifacts, "qc.png"), full_page=True)
        ask("continue-simulator")

        page.goto(base + "/ui/#/studies")
        page.wait_for_selector("#studies p")
        page.screenshot(path=os.path.join(args.artifacts, "studies.png"))

        # The daemon restarts while the page is open: it reconnects; no gap, no duplicate.
        page.goto(base + "/ui/#/events")
        page.wait_for_selector("body[data-ready=true]")
        before = shown_seqs(page)
        ask("stop-daemon")
        page.wait_for_selector("#banner:not([hidden])", timeout=60_000)
        banner = page.inner_text("#banner")
        assert "Disconnected" in banner and "since" in banner, banner
        page.screenshot(path=os.path.join(args.artifacts, "disconnected.png"))
        started = ask("start-daemon")["started_seq"]
        page.wait_for_selector("#banner[hidden]", state="attached", timeout=120_000)
        wait_until(page, f"window.nmbridgeShownSeqs().some(s => s > {started})", timeout=120_000)
        after = shown_seqs(page)
        assert after[: len(before)] == before
        first, last = after[0], after[-1]
        status, body = http(base, f"/v1/events?after={first - 1}&limit=10000", token=token)
        journal = [e["seq"] for e in json.loads(body)["events"] if e["seq"] <= last]
        if after != journal:
            at = next((i for i, (a, b) in enumerate(zip(after, journal)) if a != b), min(len(after), len(journal)))
            raise AssertionError(
                f"page seqs differ from the journal's: missing {sorted(set(journal) - set(after))}, "
                f"repeated {sorted(s for s in set(after) if after.count(s) > 1)}, first difference at {at}: "
                f"page {after[max(0, at - 3):at + 3]} journal {journal[max(0, at - 3):at + 3]} ({len(after)} vs {len(journal)})")
        assert started in after, "the new daemon.started is not shown"
        figures["seqs_checked_across_restart"] = len(after)

        # Logout: the session no longer works.
        cookie = "nmbridge_session=" + {c["name"]: c for c in context.cookies()}["nmbridge_session"]["value"]
        page.click("#logout button")
        page.wait_for_url("**/ui/login")
        status, _ = http(base, "/v1/devices", cookie=cookie)
        assert status == 401, f"after logout: HTTP {status}"
        page.goto(base + "/ui/")
        assert page.url.endswith("/ui/login"), f"after logout the page opened: {page.url}"
        status, _ = http(base, "/v1/devices", cookie=session_cookie)
        assert status == 200, "logging out one session ended another"

        # Expected while the daemon restarts or after logout: refused connections, an
        # EventSource that met a daemon shutting down, 401s.
        relevant = [p for p in problems if not any(m in p for m in ["401", "net::", "EventSource", "503"])]
        assert not relevant, f"the page reported errors: {relevant}"
        browser.close()
    print(json.dumps({"result": "pass", "figures": figures}), flush=True)


if __name__ == "__main__":
    main()
