"""The HTML report in a real headless Chromium, driven over the DevTools protocol: every
image loads, no request leaves the page, no console error, a run named like a script
shows as text; and a screenshot."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
import websocket

from regaudit.read import load_runs
from regaudit.reports.report import build_report
from regaudit.reports.html import words_before_figure

XSS_NAME = "<script>alert(1)</script>"  # the name conftest.py gives one run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, url):
        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.events = []
        self._id = 0

    def send(self, method, **params):
        self._id += 1
        self.socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def of(self, method):
        return [e["params"] for e in self.events if e.get("method") == method]


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium here: .ci/run installs Debian's `chromium` with apt-get "
                    "when it can; install it (apt-get install chromium) to run this check")
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start (exit {process.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
        tools.socket.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_html_report_renders_in_headless_chromium(study, chromium, tmp_path):
    runs = load_runs(sorted(study["runs"].values()))
    assert XSS_NAME in set(runs.runs["name"])
    report = build_report(runs, str(tmp_path / "report.html"))
    for domain in ("Page", "Network", "Runtime", "Log"):
        chromium.send(f"{domain}.enable")
    chromium.send("Page.navigate", url=f"file://{report.path}")
    chromium.wait_for("Page.loadEventFired")

    requests = [e["request"]["url"] for e in chromium.of("Network.requestWillBeSent")]
    assert requests and requests[0] == f"file://{report.path}"
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert [url for url in requests if url.startswith("file://")] == [f"file://{report.path}"]
    errors = ([e for e in chromium.of("Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
              + chromium.of("Runtime.exceptionThrown")
              + [e for e in chromium.of("Log.entryAdded") if e["entry"]["level"] == "error"]
              + chromium.of("Network.loadingFailed"))
    assert errors == []
    assert chromium.of("Page.javascriptDialogOpening") == []

    images = chromium.evaluate(
        "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == len(report.figures) == 7
    assert all(complete and width > 100 and height > 100 for _, complete, width, height in images), images
    assert chromium.evaluate("document.scripts.length") == 0
    assert chromium.evaluate(f"document.body.innerText.includes({json.dumps(XSS_NAME)})")
    assert chromium.evaluate("document.querySelectorAll('h2').length") == 9  # claims, lint
    # what a reader sees before the first figure, as Chromium lays it out (closed <details>
    # hidden), is what the report's own count says
    seen = chromium.evaluate(
        "(() => { const first = document.querySelector('figure'); const words = [];"
        " const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);"
        " while (walker.nextNode()) { const node = walker.currentNode;"
        "  if (first && (first.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING)) break;"
        "  if (!node.parentElement.checkVisibility()) continue;"
        "  words.push(...node.textContent.split(/\\s+/).filter(Boolean)); }"
        " return words; })()")
    with open(report.path, encoding="utf-8") as handle:
        counted = words_before_figure(handle.read())
    assert seen == counted and 0 < len(counted) <= 500, (len(seen), len(counted))
    # the overview table fits the page: nothing hidden behind a horizontal scroll
    fits = chromium.evaluate(
        "(() => { const box = document.querySelector('#overview + .wide');"
        " return [box.scrollWidth, box.clientWidth]; })()")
    assert fits[0] <= fits[1], fits

    height = chromium.evaluate("document.documentElement.scrollHeight")
    shot = chromium.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 4000), "scale": 1})
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    target = os.environ.get("REGAUDIT_SCREENSHOT") or str(tmp_path / "report.png")
    with open(target, "wb") as handle:
        handle.write(png)
