"""The dashboard at / in a real browser (Chromium, driven by Playwright).

Skipped when /usr/bin/chromium is absent (Debian: ``apt-get install -y
chromium``); never downloads a browser. With ``SELFHEAL_SCREENSHOTS=1``
the (slow) screenshot tests also run and write docs/dashboard-*.png from
``selfheal demo`` daemons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    expect,
    sync_playwright,
)

from selfhealing.breaker import BreakerState
from selfhealing.demo import prepare_demo
from selfhealing.events import Event, EventKind
from support import DaemonProcess, LiveDaemon, free_port, wait_healthy


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_TIMEOUT = 2000  # ms: what "live, within 2 s" means here
TOKEN = "s3cret-token"  # noqa: S105 (this test's own)
DOCS = Path(__file__).resolve().parent.parent / "docs"

if not CHROMIUM.exists():
    pytest.skip(
        "no /usr/bin/chromium: install it with `apt-get install -y chromium` "
        "(never `playwright install`)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


def probe_config(**check: object) -> dict[str, object]:
    """A target whose health is a file in the daemon's directory."""
    return {
        "targets": [
            {
                "name": "probe",
                "check": {
                    "type": "command",
                    "command": ["test", "-f", "ok"],
                    "interval": "200ms",
                    "failure_threshold": 1,
                    **check,
                },
            }
        ]
    }


@pytest.fixture(name="browser", scope="module")
def _browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Session:
    """A page on one daemon that records every request and navigation."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.requests: list[str] = []
        self.navigations = 0
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("framenavigated", self._navigated)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "console",
            lambda m: (
                self.errors.append(m.text) if m.type == "error" else None
            ),
        )

    def _navigated(self, frame: object) -> None:
        if frame is self.page.main_frame:
            self.navigations += 1

    def open(self) -> None:
        """Load the dashboard and wait until the stream is live."""
        response = self.page.goto(self.url + "/")
        assert response is not None
        assert 200 == response.status
        expect(self.page.locator("#conn")).to_have_attribute(
            "data-state", "live"
        )
        expect(self.page.locator("#overall")).not_to_have_attribute(
            "data-status", "unknown"
        )

    def status(self) -> str | None:
        return self.page.locator("#overall").get_attribute("data-status")


@pytest.fixture(name="open_page")
def _open_page(browser: Browser) -> Iterator[Callable[..., Session]]:
    """Open dashboard pages (a fresh context each) that close at teardown."""
    contexts: list[BrowserContext] = []

    def open_page(
        live: LiveDaemon, *, width: int = 1280, height: int = 900
    ) -> Session:
        context = browser.new_context(
            viewport={"width": width, "height": height}
        )
        context.set_default_timeout(5000)
        contexts.append(context)
        session = Session(context.new_page(), live.url)
        session.open()
        return session

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(name="probed")
def _probed(
    start_live: Callable[..., LiveDaemon], tmp_path: Path
) -> LiveDaemon:
    """A live daemon whose target is healthy while tmp_path/ok exists."""
    (tmp_path / "ok").write_text("ok\n")
    live = start_live(probe_config())
    deadline = time.monotonic() + 5
    while "healthy" != live.get("/api/status").json()["status"]:
        assert time.monotonic() < deadline, "the target never got healthy"
        time.sleep(0.05)
    return live


def trip_permanent(live: LiveDaemon, name: str) -> None:
    def run() -> None:
        breaker = live.runtime.registry.get_or_create(
            name, failure_threshold=1, recovery_timeout=0
        )
        for _ in range(4):
            try:
                breaker.call(_fail)
            except RuntimeError:
                pass

    live.on_loop(run)
    assert BreakerState.PERMANENT_OPEN == live.runtime.registry.get(name).state


def _fail() -> None:
    raise RuntimeError("down")


class TestDashboard:
    def test_healthy_page_is_self_contained(
        self, probed: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """The page shows a healthy system and loads nothing from another origin."""
        session = open_page(probed)
        page = session.page
        expect(page.locator("#overall-status")).to_have_text("HEALTHY")
        target = page.locator("#target-list > li", has_text="probe")
        expect(target).to_have_attribute("data-health", "healthy")
        expect(page.locator("#engine-mode")).to_have_text("ACTIVE")
        expect(
            page.locator("#breaker-list > li", has_text="self-healing-main")
        ).to_contain_text("CLOSED")
        expect(page.locator("#task-counts")).to_have_text(
            "2 total · 2 active · 2 the daemon's own"
        )
        expect(page.locator("#event-list > li").first).to_be_visible()
        origin = urlsplit(probed.url)[:2]
        assert [] == [
            url for url in session.requests if urlsplit(url)[:2] != origin
        ]
        assert {"/", "/static/app.js", "/static/app.css"} <= {
            urlsplit(url).path for url in session.requests
        }
        assert [] == session.errors

    def test_csp_and_headers(self, live: LiveDaemon) -> None:
        """The page, script and stylesheet carry a strict CSP and their types."""
        page = live.get("/")
        script = live.get("/static/app.js")
        style = live.get("/static/app.css")
        assert (
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'"
        ) in page.headers["content-security-policy"]
        assert ("text/html", "text/javascript", "text/css") == tuple(
            r.headers["content-type"].split(";")[0]
            for r in (page, script, style)
        )
        assert {script.headers["content-security-policy"]} == {
            style.headers["content-security-policy"]
        }
        assert 404 == live.get("/static/..%2F__init__.py").status_code
        assert 404 == live.get("/static/index.py").status_code

    def test_broken_target_shows_warning_without_reload(
        self,
        probed: LiveDaemon,
        open_page: Callable[..., Session],
        tmp_path: Path,
    ) -> None:
        """Breaking the target turns the page to warning within 2 s, with no reload."""
        session = open_page(probed)
        page = session.page
        page.evaluate("window.__sameDocument = true")
        navigations = session.navigations
        (tmp_path / "ok").unlink()
        target = page.locator("#target-list > li", has_text="probe")
        expect(target).to_have_attribute(
            "data-health", "unhealthy", timeout=LIVE_TIMEOUT
        )
        expect(page.locator("#overall")).to_have_attribute(
            "data-status", "warning", timeout=LIVE_TIMEOUT
        )
        expect(page.locator("#issues")).to_contain_text("probe")
        expect(
            page.locator("#event-list > li", has_text="target.unhealthy")
        ).to_have_count(1, timeout=LIVE_TIMEOUT)
        assert (navigations, True) == (
            session.navigations,
            page.evaluate("window.__sameDocument"),
        )

    def test_dormant_then_resume_with_a_reason(
        self, probed: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """Dormant mode shows critical and its reason; resuming needs a reason."""
        session = open_page(probed)
        page = session.page
        probed.on_loop(lambda: probed.runtime.engine.enter_dormant("drill"))
        expect(page.locator("#overall")).to_have_attribute(
            "data-status", "critical", timeout=LIVE_TIMEOUT
        )
        expect(page.locator("#dormant-reason")).to_have_text("drill")
        expect(page.locator("#engine-mode")).to_have_text("DORMANT")
        button = page.locator("#resume-button")
        expect(button).to_be_disabled()
        page.locator("#resume-reason").fill("   ")
        expect(button).to_be_disabled()
        page.locator("#resume-reason").fill("Drill over")
        expect(button).to_be_enabled()
        button.click()
        expect(page.locator("#overall")).to_have_attribute(
            "data-status", "healthy", timeout=LIVE_TIMEOUT
        )
        expect(page.locator("#resume-msg")).to_contain_text("resumed")
        expect(page.locator("#engine-resume")).to_contain_text("Drill over")
        assert not probed.runtime.engine.is_dormant

    def test_daemon_refusal_is_shown_next_to_the_control(
        self, probed: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """A 422 from the daemon appears next to the resume button."""
        session = open_page(probed)
        page = session.page
        probed.on_loop(lambda: probed.runtime.engine.enter_dormant("drill"))
        page.locator("#resume-reason").fill("x" * 501)  # over the limit
        page.locator("#resume-reason").evaluate(
            "(input) => { input.removeAttribute('maxlength');"
            " input.value = 'x'.repeat(501);"
            " input.dispatchEvent(new Event('input')); }"
        )
        page.locator("#resume-button").click()
        message = page.locator("#resume-msg")
        expect(message).to_contain_text("HTTP 422")
        expect(message).to_have_attribute("role", "alert")
        assert probed.runtime.engine.is_dormant

    def test_admin_token_is_asked_for_and_then_used(
        self,
        start_live: Callable[..., LiveDaemon],
        open_page: Callable[..., Session],
    ) -> None:
        """An action without the token fails visibly; with the token it works."""
        live = start_live(
            probe_config(), environ={"SELFHEAL_ADMIN_TOKEN": TOKEN}
        )
        page = open_page(live).page
        expect(page.locator("#token-panel")).to_be_hidden()
        page.locator("#pause-all").click()
        message = page.locator("#tasks-msg")
        expect(message).to_contain_text("HTTP 401")
        expect(message).to_contain_text("SELFHEAL_ADMIN_TOKEN")
        expect(page.locator("#token-panel")).to_be_visible()
        assert 2 == live.runtime.tasks.snapshot().active_tasks
        page.get_by_label("Admin token", exact=True).fill(TOKEN)
        page.get_by_role("button", name="Use token").click()
        page.locator("#pause-all").click()
        expect(message).to_have_text("Paused 2 tasks.")
        expect(page.locator("#task-counts")).to_have_text(
            "2 total · 0 active · 2 the daemon's own", timeout=LIVE_TIMEOUT
        )
        assert 0 == live.runtime.tasks.snapshot().active_tasks

    def test_permanent_open_breaker_needs_confirmation(
        self, live: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """A PERMANENT_OPEN breaker is prominent and its reset asks, then forces."""
        page = open_page(live).page
        trip_permanent(live, "db")
        row = page.locator("#breaker-list > li", has_text="db")
        expect(row).to_have_attribute(
            "data-state", "PERMANENT_OPEN", timeout=LIVE_TIMEOUT
        )
        expect(page.locator("#breaker-list > li").first).to_contain_text("db")
        expect(row).to_contain_text("Exceeded permanent failure threshold")
        row.get_by_label("Reason for the reset").fill("Database replaced")
        dialogs: list[str] = []

        def answer(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            if len(dialogs) == 1:
                dialog.dismiss()
            else:
                dialog.accept()

        page.on("dialog", answer)
        row.get_by_role("button", name="Force reset…").click()
        expect(row).to_have_attribute("data-state", "PERMANENT_OPEN")
        row.get_by_role("button", name="Force reset…").click()
        expect(row).to_have_attribute(
            "data-state", "CLOSED", timeout=LIVE_TIMEOUT
        )
        expect(row.locator(".msg")).to_contain_text("PERMANENT_OPEN → CLOSED")
        assert 2 == len(dialogs)
        assert "PERMANENT_OPEN" in dialogs[0]
        assert BreakerState.CLOSED == live.runtime.registry.get("db").state

    def test_daemon_strings_are_shown_as_text(
        self, live: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """Markup in events and reasons is shown literally, never parsed."""
        page = open_page(live).page
        hostile = '<img src="/x" id="pwned"><b>bold</b>'
        live.runtime.bus.publish(
            Event(EventKind.OPERATOR_ACTION, time.time(), "Test", hostile)
        )
        live.on_loop(lambda: live.runtime.engine.enter_dormant(hostile))
        expect(page.locator("#dormant-reason")).to_have_text(
            hostile, timeout=LIVE_TIMEOUT
        )
        # The operator event, and the engine's "entered DORMANT mode: ...".
        expect(
            page.locator("#event-list .event-message", has_text=hostile)
        ).to_have_count(2)
        assert 0 == page.locator("#pwned, #main b").count()

    def test_phone_layout_does_not_overflow(
        self, probed: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """At 390x844 nothing scrolls sideways, even with long unbroken text."""
        trip_permanent(probed, "a-breaker-with-a-rather-long-name-" + "x" * 40)
        probed.on_loop(
            lambda: probed.runtime.engine.enter_dormant("unbroken" * 40)
        )
        page = open_page(probed, width=390, height=844).page
        expect(page.locator("#overall")).to_have_attribute(
            "data-status", "critical"
        )
        expect(page.locator("#dormant-box")).to_be_visible()
        scroll_width, inner_width = page.evaluate(
            "[document.scrollingElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width

    def test_indicator_shows_reconnecting_when_the_daemon_stops(
        self, live: LiveDaemon, open_page: Callable[..., Session]
    ) -> None:
        """The live indicator turns to reconnecting when the stream drops."""
        page = open_page(live).page
        expect(page.locator("#conn-text")).to_have_text("live")
        live.stop()
        expect(page.locator("#conn")).to_have_attribute(
            "data-state", "reconnecting", timeout=LIVE_TIMEOUT
        )


SCREENSHOTS = os.environ.get("SELFHEAL_SCREENSHOTS") == "1"
# A key for the screenshots' key pool (masked on the page; never used).
FAKE_KEY = "sk-ant-api03-" + "Xy7Q" * 20 + "-a1b2"

# The demo's service broken for good, with breakers and backoff quick
# enough that ten failed healings (and dormant mode) take about 30 s.
CHAOS_CONFIG = """\
[engine]
max_consecutive_failures = 10
backoff_base = "250ms"
backoff_max = "2s"

[breakers."self-healing-main"]
recovery_timeout = "2s"
permanent_after_trips = 10

[breakers."target:web"]
recovery_timeout = "2s"
permanent_after_trips = 10

[[processes]]
name = "web"
command = [{python}, "-m", "selfhealing.demo.service", "serve", "--port", "{port}", "--dir", "."]
stop_timeout = "2s"

[[targets]]
name = "web"
actions = ["restart-web", "clear-cache"]
verify_timeout = "1500ms"
[targets.check]
type = "http"
url = "http://127.0.0.1:{port}/health"
interval = "500ms"
timeout = "300ms"
failure_threshold = 2

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"

[[actions]]
name = "clear-cache"
type = "command"
command = [{python}, "-m", "selfhealing.demo.service", "clear-cache", "--dir", "."]
timeout = "10s"
"""


def _photograph(page: Page, name: str) -> None:
    """The top of the page (the timeline goes on for 50 events)."""
    page.locator("#resume-reason").blur()
    page.wait_for_timeout(1200)  # let the "ago" texts and the chart settle
    height = page.evaluate("document.scrollingElement.scrollHeight")
    page.screenshot(
        path=DOCS / name,
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 1600)},
    )


@pytest.mark.skipif(
    not SCREENSHOTS, reason="set SELFHEAL_SCREENSHOTS=1 to write docs/*.png"
)
class TestScreenshots:
    """Photograph the dashboard with realistic data, for the docs."""

    @pytest.mark.timeout(240)
    def test_healthy_demo(self, browser: Browser, tmp_path: Path) -> None:
        """A minute of `selfheal demo`: healed incidents, healthy again."""
        demo = _spawn(
            tmp_path,
            ["demo", "--dir", str(tmp_path / "demo")],
            env={"ANTHROPIC_API_KEY": FAKE_KEY},
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(demo.url + "/")
            # The scenes break the service at t+8..58 s; each gets healed.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.5)
                status = httpx.get(demo.url + "/api/status", timeout=5).json()
                healed = status["selfHealing"]["successfulHealings"]
                if "healthy" == status["status"] and healed >= 5:
                    break
            time.sleep(6)  # a quiet moment after the last healing
            expect(page.locator("#overall")).to_have_attribute(
                "data-status", "healthy"
            )
            _photograph(page, "dashboard-healthy.png")
        finally:
            demo.stop(signal.SIGINT)

    @pytest.mark.timeout(240)
    def test_dormant_chaos(self, browser: Browser, tmp_path: Path) -> None:
        """The demo service broken for good: ten failed healings, then dormant."""
        prepare_demo(tmp_path, port=free_port(), chaos=True)
        (tmp_path / "selfheal.toml").write_text(
            CHAOS_CONFIG.format(
                python=json.dumps(sys.executable), port=free_port()
            )
        )
        demo = _spawn(
            tmp_path,
            ["run", "--config", "selfheal.toml"],
            env={"ANTHROPIC_API_KEY": FAKE_KEY},
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(demo.url + "/")
            expect(page.locator("#engine-mode")).to_have_text(
                "DORMANT", timeout=180_000
            )
            page.locator("#resume-reason").fill(
                "Root cause fixed: demo repaired"
            )
            _photograph(page, "dashboard-dormant.png")
        finally:
            demo.stop(signal.SIGINT)


def _spawn(
    directory: Path, args: list[str], *, env: dict[str, str]
) -> DaemonProcess:
    """`selfheal ARGS --port P` in *directory*, healthy."""
    port = free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FEATURE_", "SELFHEAL_", "ANTHROPIC_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "selfhealing", *args, "--port", str(port)],
        cwd=directory,
        env={**environment, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    daemon = DaemonProcess(f"http://127.0.0.1:{port}", process, directory)
    wait_healthy(daemon.url, process)
    return daemon
