from __future__ import annotations

import socket

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from selfhealing.breaker import BreakerState
from support import LiveDaemon


JSON_HEADERS = {"Content-Type": "application/json"}


def trip_permanent(live: LiveDaemon, name: str = "db") -> None:
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


class TestStatus:
    def test_status_document(self, live: LiveDaemon) -> None:
        """GET /api/status answers the SPEC document, healthy at rest."""
        response = live.get("/api/status")
        assert 200 == response.status_code
        assert "application/json" == response.headers["content-type"]
        document = response.json()
        assert "healthy" == document["status"]
        assert ["self-healing-main"] == [
            b["name"] for b in document["circuitBreakers"]
        ]
        assert {"totalKeys": 0, "activeKeys": 0, "failedKeys": 0}.items() <= (
            document["llm"]["keyManagement"].items()
        )

    def test_healthz(self, live: LiveDaemon) -> None:
        """GET /healthz says the daemon itself is alive."""
        response = live.get("/healthz")
        assert (200, "ok") == (response.status_code, response.json()["status"])

    def test_openapi_and_docs(self, live: LiveDaemon) -> None:
        """The OpenAPI schema and the docs page are served."""
        schema = live.get("/openapi.json").json()
        assert "/api/system/heal/resume" in schema["paths"]
        assert 200 == live.get("/docs").status_code


class TestResume:
    def test_resume_when_dormant(self, live: LiveDaemon) -> None:
        """Resume with a reason leaves dormant mode and says so."""
        live.on_loop(lambda: live.runtime.engine.enter_dormant("drill"))
        assert "critical" == live.get("/api/status").json()["status"]
        response = live.post(
            "/api/system/heal/resume",
            json={"reason": "Valid API keys added"},
        )
        assert 200 == response.status_code
        body = response.json()
        assert (True, False) == (body["resumed"], body["isDormant"])
        assert "healthy" == live.get("/api/status").json()["status"]

    def test_resume_when_not_dormant(self, live: LiveDaemon) -> None:
        """Resume on an active engine answers 200 with resumed false."""
        response = live.post("/api/system/heal/resume", json={"reason": "x"})
        assert (200, False) == (
            response.status_code,
            response.json()["resumed"],
        )

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"reason": ""}, 422, "validation_error"),
            ({"reason": "   "}, 422, "validation_error"),
            ({"reason": "x" * 501}, 422, "validation_error"),
            ({}, 422, "validation_error"),
            ({"reason": 5}, 422, "validation_error"),
            ({"reason": "ok", "extra": 1}, 422, "validation_error"),
        ],
        ids=["empty", "blank", "long", "missing", "number", "extra-key"],
    )
    def test_bad_reasons(
        self, live: LiveDaemon, body: dict[str, object], status: int, code: str
    ) -> None:
        """Reasons must be 1-500 characters after trimming; the error says so."""
        live.on_loop(lambda: live.runtime.engine.enter_dormant("drill"))
        response = live.post("/api/system/heal/resume", json=body)
        assert status == response.status_code
        assert code == response.json()["error"]["code"]
        assert (
            "reason" in response.json()["error"]["message"]
            or "extra" in (response.json()["error"]["message"])
        )
        assert live.runtime.engine.is_dormant

    def test_malformed_json(self, live: LiveDaemon) -> None:
        """A body that is not JSON is a 400 with the parser's complaint."""
        response = live.post(
            "/api/system/heal/resume",
            content=b'{"reason": ',
            headers=JSON_HEADERS,
        )
        assert 400 == response.status_code
        assert "malformed JSON" in response.json()["error"]["message"]

    def test_resume_is_audited_with_actor(self, live: LiveDaemon) -> None:
        """Who resumed and why lands in the audit trail."""
        live.on_loop(lambda: live.runtime.engine.enter_dormant("drill"))
        live.post(
            "/api/system/heal/resume",
            json={"reason": "disk cleaned"},
            headers={"X-Selfheal-Actor": "alice@ops (cli)"},
        )
        assert live.runtime.audit.flush(5)
        events = live.get(
            "/api/events", params={"kind": "engine.dormant_exited"}
        ).json()["events"]
        assert "disk cleaned" == events[-1]["reason"]
        assert events[-1]["actor"].startswith("alice@ops (cli) via 127.0.0.1")


class TestBreakers:
    def test_list_and_get(self, live: LiveDaemon) -> None:
        """Breakers are listed and fetched by name; unknown names are 404."""
        assert ["self-healing-main"] == [
            b["name"] for b in live.get("/api/circuit-breakers").json()
        ]
        one = live.get("/api/circuit-breakers/self-healing-main")
        assert "CLOSED" == one.json()["state"]
        missing = live.get("/api/circuit-breakers/nope")
        assert 404 == missing.status_code
        assert (
            "unknown circuit breaker 'nope'"
            in missing.json()["error"]["message"]
        )

    def test_permanent_open_needs_force(self, live: LiveDaemon) -> None:
        """Reset of PERMANENT_OPEN without force is 409; with force it closes."""
        trip_permanent(live)
        refused = live.post(
            "/api/circuit-breakers/db/reset", json={"reason": "fixed"}
        )
        assert 409 == refused.status_code
        assert "force" in refused.json()["error"]["message"]
        assert "critical" == live.get("/api/status").json()["status"]
        done = live.post(
            "/api/circuit-breakers/db/reset",
            json={"force": True, "reason": "disk replaced"},
        )
        assert 200 == done.status_code
        assert ("PERMANENT_OPEN", "CLOSED") == (
            done.json()["previousState"],
            done.json()["state"],
        )

    def test_reset_unknown_is_404(self, live: LiveDaemon) -> None:
        """Resetting an unknown breaker is a 404."""
        response = live.post(
            "/api/circuit-breakers/nope/reset", json={"reason": "x"}
        )
        assert 404 == response.status_code

    def test_main_breaker_reset_keeps_dormant(self, live: LiveDaemon) -> None:
        """Resetting the main breaker does not end dormant mode by itself."""
        live.on_loop(lambda: live.runtime.engine.enter_dormant("drill"))
        response = live.post(
            "/api/circuit-breakers/self-healing-main/reset",
            json={"reason": "x", "force": True},
        )
        assert "still DORMANT" in response.json()["note"]
        assert live.get("/api/status").json()["selfHealing"]["isDormant"]

    def test_force_must_be_a_boolean(self, live: LiveDaemon) -> None:
        """force: "yes" is refused rather than guessed."""
        response = live.post(
            "/api/circuit-breakers/self-healing-main/reset",
            json={"reason": "x", "force": "yes"},
        )
        assert 422 == response.status_code


class TestTasks:
    def register(self, live: LiveDaemon, *ids: str) -> None:
        def run() -> None:
            for task_id in ids:
                live.runtime.tasks.register_interval(task_id, lambda: None, 60)

        live.on_loop(run)

    def test_list_pause_resume_cleanup(self, live: LiveDaemon) -> None:
        """The task routes pause, resume and clean up tasks."""
        self.register(live, "a", "b", "c")
        # Besides these three, the daemon's own resource sampler.
        assert 4 == live.get("/api/tasks").json()["totalTasks"]
        paused = live.post("/api/tasks/pause-all").json()
        assert (4, 0) == (
            paused["changed"],
            paused["backgroundTasks"]["activeTasks"],
        )
        assert 4 == live.post("/api/tasks/resume-all").json()["changed"]
        live.post("/api/tasks/a/pause", json={"reason": "noisy"})
        states = {
            t["id"]: t["state"] for t in live.get("/api/tasks").json()["tasks"]
        }
        assert "paused" == states["a"]
        live.post("/api/tasks/a/resume")
        assert 200 == httpx.delete(live.url + "/api/tasks/b").status_code
        assert 3 == live.post("/api/tasks/cleanup").json()["changed"]
        assert (
            0
            == live.get("/api/status").json()["backgroundTasks"]["totalTasks"]
        )

    def test_cleanup_says_detection_stopped(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """After cleanup the status warns that targets are not probed."""
        live = start_live(
            {
                "targets": [
                    {
                        "name": "disk",
                        "check": {
                            "type": "disk",
                            "path": ".",
                            "max_used_percent": 100,
                        },
                    }
                ]
            }
        )
        live.post("/api/tasks/cleanup", json={"reason": "emergency"})
        document = live.get("/api/status").json()
        assert "warning" == document["status"]
        assert [
            "WARNING: No probe runs for disk (its check task was removed)"
        ] == document["issues"]

    def test_unknown_task_is_404(self, live: LiveDaemon) -> None:
        """Unknown task ids are 404 with the known ids listed."""
        self.register(live, "a")
        response = httpx.delete(live.url + "/api/tasks/zzz")
        assert 404 == response.status_code
        assert "known: a" in response.json()["error"]["message"]

    def test_eleven_tasks_warn(self, live: LiveDaemon) -> None:
        """More than 10 tasks turns the status to warning."""
        self.register(live, *[f"t{i}" for i in range(11)])
        document = live.get("/api/status").json()
        assert "warning" == document["status"]
        assert any("11 background tasks" in i for i in document["issues"])


class TestFlags:
    def test_override_and_reload(
        self, live: LiveDaemon, tmp_path: Path
    ) -> None:
        """PUT overrides with source api; reload re-reads .env.local."""
        response = httpx.put(
            live.url + "/api/flags/FEATURE_AUTO_HEALING_ENABLED",
            json={"enabled": False, "reason": "incident 42"},
        )
        assert 200 == response.status_code
        flags = live.get("/api/flags").json()["flags"]
        assert {"enabled": False, "source": "api"}.items() <= flags[
            "FEATURE_AUTO_HEALING_ENABLED"
        ].items()
        assert (
            live.get("/api/status").json()["selfHealing"]["enabled"] is False
        )
        (tmp_path / ".env.local").write_text(
            "FEATURE_AUTO_DETECTION_MONITORING=false\n"
        )
        reloaded = live.post("/api/flags/reload").json()
        assert (
            ".env.local"
            == reloaded["flags"]["FEATURE_AUTO_DETECTION_MONITORING"]["source"]
        )

    def test_invalid_flag_file_on_reload_warns(
        self, live: LiveDaemon, tmp_path: Path
    ) -> None:
        """An invalid value on reload keeps the old value and warns."""
        (tmp_path / ".env.local").write_text(
            "FEATURE_AUTO_HEALING_ENABLED=maybe\n"
        )
        errors = live.post("/api/flags/reload").json()["errors"]
        assert 1 == len(errors)
        assert errors[0].endswith(
            ".env.local:1: FEATURE_AUTO_HEALING_ENABLED=maybe is not a "
            "boolean (use true/false, 1/0, yes/no, on/off)"
        )
        document = live.get("/api/status").json()
        assert "warning" == document["status"]
        assert document["selfHealing"]["enabled"] is True

    def test_unknown_flag_is_404(self, live: LiveDaemon) -> None:
        """Overriding an unknown flag is a 404."""
        response = httpx.put(
            live.url + "/api/flags/FEATURE_NOPE",
            json={"enabled": True, "reason": "x"},
        )
        assert 404 == response.status_code


class TestAuth:
    MUTATIONS = (
        ("POST", "/api/system/heal/resume", {"reason": "x"}),
        (
            "POST",
            "/api/circuit-breakers/self-healing-main/reset",
            {"reason": "x"},
        ),
        ("POST", "/api/tasks/pause-all", None),
        ("POST", "/api/flags/reload", None),
        (
            "PUT",
            "/api/flags/FEATURE_AUTO_HEALING_ENABLED",
            {"enabled": True, "reason": "x"},
        ),
    )

    @pytest.fixture(name="secured")
    def _secured(self, start_live: Callable[..., LiveDaemon]) -> LiveDaemon:
        return start_live(environ={"SELFHEAL_ADMIN_TOKEN": "s3cret-token"})

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({}, 401),
            ({"Authorization": "Bearer wrong"}, 401),
            ({"Authorization": "Basic s3cret-token"}, 401),
            ({"Authorization": "Bearer s3cret-token"}, 200),
        ],
        ids=["none", "wrong", "wrong-scheme", "right"],
    )
    def test_mutations_need_the_token(
        self, secured: LiveDaemon, headers: dict[str, str], expected: int
    ) -> None:
        """Every mutating route answers 401 without the right bearer token."""
        for method, path, body in self.MUTATIONS:
            response = httpx.request(
                method, secured.url + path, json=body, headers=headers
            )
            assert expected == response.status_code, path
            if expected == 401:
                assert (
                    "SELFHEAL_ADMIN_TOKEN"
                    in response.json()["error"]["message"]
                )
                assert "Bearer" == response.headers["www-authenticate"]

    def test_reads_stay_open(self, secured: LiveDaemon) -> None:
        """The guide's curl lines (reads) need no token."""
        assert 200 == secured.get("/api/status").status_code
        assert 200 == secured.get("/api/events").status_code

    def test_token_never_echoed(self, secured: LiveDaemon) -> None:
        """The token appears in no answer, status included."""
        assert "s3cret-token" not in secured.get("/api/status").text
        assert (
            "s3cret-token"
            not in secured.post(
                "/api/flags/reload", headers={"Authorization": "Bearer nope"}
            ).text
        )


class TestInput:
    def test_body_over_64k_is_413(self, live: LiveDaemon) -> None:
        """A body over 64 KiB is refused with 413 before parsing."""
        response = live.post(
            "/api/system/heal/resume",
            content=b'{"reason": "' + b"a" * 70_000 + b'"}',
            headers=JSON_HEADERS,
        )
        assert 413 == response.status_code
        assert "payload_too_large" == response.json()["error"]["code"]

    def test_chunked_body_over_64k_is_413(self, live: LiveDaemon) -> None:
        """A chunked body with no Content-Length is counted and refused too."""

        def chunks() -> object:
            for _ in range(80):
                yield b"a" * 1024

        response = live.post(
            "/api/system/heal/resume", content=chunks(), headers=JSON_HEADERS
        )
        assert 413 == response.status_code

    def test_unknown_route_and_method(self, live: LiveDaemon) -> None:
        """Unknown routes are 404 and wrong methods 405, in the error shape."""
        missing = live.get("/api/nope")
        assert (404, "not_found") == (
            missing.status_code,
            missing.json()["error"]["code"],
        )
        wrong = httpx.delete(live.url + "/api/status")
        assert 405 == wrong.status_code
        assert "method_not_allowed" == wrong.json()["error"]["code"]

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": 0},
            {"limit": 5000},
            {"sinceTime": "yesterday"},
            {"since": "x"},
            {"kind": ""},
        ],
    )
    def test_bad_event_queries(
        self, live: LiveDaemon, params: dict[str, object]
    ) -> None:
        """Bad audit queries are 422, never 500."""
        response = live.get("/api/events", params=params)
        assert 422 == response.status_code


class TestEvents:
    def test_events_page_forward(self, live: LiveDaemon) -> None:
        """since=<lastId> pages forward without repeats."""
        for i in range(3):
            live.post("/api/tasks/pause-all", json={"reason": f"drill {i}"})
        live.runtime.audit.flush(5)
        first = live.get("/api/events", params={"limit": 2}).json()
        assert 2 == len(first["events"])
        more = live.get(
            "/api/events", params={"since": first["lastId"]}
        ).json()
        ids = [e["id"] for e in more["events"]]
        assert all(i > first["lastId"] for i in ids)

    def test_events_since_time(self, live: LiveDaemon) -> None:
        """sinceTime accepts an ISO 8601 time."""
        live.post("/api/tasks/pause-all", json={"reason": "drill"})
        live.runtime.audit.flush(5)
        future = live.get(
            "/api/events", params={"sinceTime": "2999-01-01T00:00:00Z"}
        ).json()
        past = live.get(
            "/api/events", params={"sinceTime": "2000-01-01T00:00:00Z"}
        ).json()
        assert ([], True) == (future["events"], len(past["events"]) > 0)


class TestDaemonStartup:
    def test_port_in_use_is_one_line(
        self, spawn_daemon: Callable[..., object], tmp_path: Path
    ) -> None:
        """A port already in use is a one-line error and exit code 2."""
        import subprocess  # noqa: PLC0415
        import sys  # noqa: PLC0415

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "selfhealing",
                    "run",
                    "--port",
                    str(port),
                ],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        assert 2 == done.returncode
        assert "Traceback" not in done.stderr
        assert 1 == len(done.stderr.strip().splitlines())
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr

    def test_public_address_needs_a_token(self, tmp_path: Path) -> None:
        """Binding 0.0.0.0 without SELFHEAL_ADMIN_TOKEN is refused."""
        import subprocess  # noqa: PLC0415
        import sys  # noqa: PLC0415

        done = subprocess.run(
            [sys.executable, "-m", "selfhealing", "run", "--host", "0.0.0.0"],  # noqa: S104
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert 2 == done.returncode
        assert "SELFHEAL_ADMIN_TOKEN" in done.stderr
        assert "Traceback" not in done.stderr
