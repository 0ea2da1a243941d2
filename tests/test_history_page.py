"""The history page in a real headless Chromium: it loads without console errors and draws its
charts (the screenshot holds the devices' line colours and the regression marker).

The browser is driven through the DevTools protocol over --remote-debugging-pipe (a dozen
JSON messages; no new dependency), always under a deadline so a hung browser fails the test
instead of hanging it. Skipped when chromium is not installed (`make sysdeps` installs it);
the figure's tests are skipped when plotly is not.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_history import PLOTLY_REASON, make_batch, make_doc, needs_plotly, write_docs

from bench.cli import main
from bench.history.page import REGRESSION_COLOUR, build_figure, plot_date
from bench.history.records import build_records
from bench.history.series import build_series
from bench.history.view import history_records

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(`make sysdeps`, or apt-get install chromium)")
DEADLINE_S = 90.0
WIDTH, HEIGHT = 1400, 1500


# Chromium reads the protocol on fd 3 and answers on fd 4: this puts the pipe ends there, then
# becomes Chromium (subprocess cannot renumber descriptors, and dash's redirections stop at 9).
_ON_FDS_3_AND_4 = (
    "import os, sys; a, b = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2])); "
    "os.dup2(a, 3); os.dup2(b, 4); os.set_inheritable(3, True); os.set_inheritable(4, True); "
    "os.execv(sys.argv[3], sys.argv[3:])")


class Browser:
    """Headless Chromium with the DevTools protocol on fds 3 (commands) and 4 (replies)."""

    def __init__(self, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(cmd_r), str(out_w), *args],
            pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._next_id = 0
        self.deadline = time.monotonic() + DEADLINE_S
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer before the deadline")
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (crashed?)")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that come first are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message())

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._out_r)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """console.error/assert calls, uncaught exceptions and error log entries (a failed load)."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif e.get("method") == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(str((d.get("exception") or {}).get("description") or d.get("text")))
        elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(p["entry"]["text"])
    return out


def load(page: Path, tmp_path: Path, ready: str = "true") -> tuple[list[str], bytes]:
    """Open `page`, wait for the load event and for the JS condition `ready`; return the
    console errors and a PNG screenshot of the viewport."""
    browser = Browser(tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session)
        browser.send("Emulation.setDeviceMetricsOverride", session, width=WIDTH, height=HEIGHT,
                     deviceScaleFactor=1, mobile=False)
        browser.send("Page.navigate", session, url=page.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        while not browser.send("Runtime.evaluate", session, expression=f"!!({ready})",
                               returnByValue=True)["result"].get("value"):
            time.sleep(0.1)
            if time.monotonic() > browser.deadline:
                raise TimeoutError(f"the page never got ready ({ready})")
        time.sleep(0.3)  # let the charts' transitions settle before the picture
        shot = browser.send("Page.captureScreenshot", session, format="png")["data"]
        return console_errors(browser.events), base64.b64decode(shot)
    finally:
        browser.close()


def colours(png: bytes) -> dict[tuple[int, int, int], int]:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return {c: n for n, c in img.getcolors(maxcolors=img.width * img.height)}


def near(counts: dict[tuple[int, int, int], int], hex_colour: str, tol: int = 12) -> int:
    """Pixels within `tol` of a colour in every channel (antialiasing shifts a few values)."""
    want = tuple(int(hex_colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return sum(n for c, n in counts.items()
               if all(abs(a - b) <= tol for a, b in zip(c, want, strict=True)))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page of two configurations on two devices over four commits, one slowdown."""
    pytest.importorskip("plotly", reason=PLOTLY_REASON)
    tmp = tmp_path_factory.mktemp("history-page")
    docs = make_batch(commits=4, devices=("NVIDIA A100", "NVIDIA H100"), slow_commit=2)
    write_docs(tmp / "h", docs)
    assert main(["history", str(tmp / "h"), "--out", str(tmp / "site")]) == 0
    return tmp / "site" / "index.html"


def test_page_is_self_contained(page: Path):
    text = page.read_text()
    assert "<script" in text and not re.search(r"<script[^>]*\bsrc=", text)  # all inline
    assert "Plotly.newPlot" in text and "NVIDIA H100" in text


@needs_plotly
def test_figure_filters_by_device_and_draws_error_bars():
    docs = make_batch(commits=3, devices=("NVIDIA A100", "NVIDIA H100"), slow_commit=1)
    fig = build_figure(build_series(build_records(docs)))
    (menu,) = fig.layout.updatemenus
    labels = [b.label for b in menu.buttons]
    assert labels == ["all devices", "NVIDIA A100", "NVIDIA H100"]
    for button in menu.buttons[1:]:
        visible = button.args[0]["visible"]
        shown = [t for t, v in zip(fig.data, visible, strict=True) if v]
        # per configuration: images/s, time to accuracy, the regression marker
        assert len(shown) == 5 and {t.name for t in shown} == {button.label, "regression"}
        assert all(t.legendgroup in (button.label, "regression") for t in shown)
    ips = next(t for t in fig.data if t.name == "NVIDIA A100" and t.yaxis == "y")
    assert list(ips.error_y.array) == pytest.approx([10.0] * 3, rel=0.2)
    assert list(ips.error_y.arrayminus) == pytest.approx([10.0] * 3, rel=0.2)
    assert plot_date("2026-11-10T12:00:00+02:00") == "2026-11-10 10:00:00"


@needs_plotly
def test_a_configuration_without_time_to_accuracy_says_so_in_its_own_panel():
    """Throughput-only runs: the note sits at the centre of that row's right-hand panel, in
    page coordinates (an annotation on the empty panel's axes landed at x=0 of the first
    panel, stretching its date axis back to 1970)."""
    docs = [make_doc(model, ips, commit=f"{c:x}" * 40, day=10 + c, tta=None, repeat=r)
            for c in range(2) for model, ips in (("cnn", 1000.0), ("fc", 5000.0))
            for r in range(2)]
    fig = build_figure(build_series(build_records(docs)))
    notes = [a for a in fig.layout.annotations if a.text.startswith("no time to accuracy")]
    assert {(a.xref, a.yref, a.xanchor) for a in notes} == {("paper", "paper", "center")}
    assert len(notes) == 2
    for note, n in zip(notes, (2, 4), strict=True):
        assert note.x == pytest.approx(sum(fig.layout[f"xaxis{n}"].domain) / 2)
        assert note.y == pytest.approx(sum(fig.layout[f"yaxis{n}"].domain) / 2)


@needs_chromium
def test_page_renders_without_console_errors(page: Path, tmp_path: Path):
    import plotly.colors

    errors, png = load(page, tmp_path, ready="document.querySelectorAll('.main-svg').length")
    assert errors == []
    counts = colours(png)
    assert len(counts) > 50, "the screenshot is nearly blank"
    first, second = plotly.colors.qualitative.D3[:2]
    assert near(counts, first) > 200 and near(counts, second) > 200  # both devices' lines
    assert near(counts, REGRESSION_COLOUR, tol=20) > 20  # the regression marker


@needs_chromium
def test_console_errors_are_caught(tmp_path: Path):
    """The check above can fail: a page that logs an error and throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.log('all is well'); console.error('boom');"
                   "undefinedFunction();</script></body></html>")
    errors, png = load(bad, tmp_path)
    assert any("boom" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)
    assert not any("all is well" in e for e in errors)
    assert len(colours(png)) < 50  # a near-blank page is told apart from the charts


def test_page_records_read_back(page: Path):
    """The page's result store holds the fixture's input (for the checks above)."""
    records = history_records(page.parent.parent / "h")
    assert len(records) == 4 * 2 * 2
