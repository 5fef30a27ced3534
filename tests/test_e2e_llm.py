"""End to end: `selfheal run` with an llm rung, the real SDK in the daemon,
FakeAnthropic in this process, the guide's curl | jq line, the key routes,
`selfheal llm keys`, and a scan for leaked keys in everything the daemon
wrote or said."""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import subprocess

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from typer.testing import CliRunner

from selfhealing.cli import app
from selfhealing.llm import mask_key
from selfhealing.runtime import Runtime
from selfhealing.testing import FakeAnthropic, Reply
from support import DaemonProcess, events, status, wait_for


pytestmark = pytest.mark.slow

_ALPHABET = string.ascii_letters + string.digits
# The last 4 characters differ, so the masked ids differ.
K1 = (
    "sk-ant-api03-"
    + "".join(secrets.choice(_ALPHABET) for _ in range(36))
    + "k1AA"
)
K2 = (
    "sk-ant-api03-"
    + "".join(secrets.choice(_ALPHABET) for _ in range(36))
    + "k2BB"
)
KEYS = (K1, K2)
OFF_LIST = {"action_id": "rm -rf /", "diagnosis": "wipe", "confidence": 1.0}

LADDER = """
[engine]
backoff_base = "10ms"
backoff_max = "50ms"

[llm]
timeout = "5s"
deadline = "20s"

[[targets]]
name = "api"
actions = {ladder}
verify_timeout = "300ms"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "command"
command = ["test", "-f", "healthy"]
interval = "50ms"
timeout = "2s"
failure_threshold = 1

[[actions]]
name = "fix-it"
type = "command"
command = ["touch", "healthy", "fixed-by-llm"]

[[actions]]
name = "last-resort"
type = "command"
command = ["touch", "healthy", "fixed-by-last-resort"]
"""
ASK_CLAUDE = """
[[actions]]
name = "ask-claude"
type = "llm"
allowed = ["fix-it"]
"""
LLM_CONFIG = LADDER.format(ladder='["ask-claude", "last-resort"]') + ASK_CLAUDE
RULES_CONFIG = LADDER.format(ladder='["last-resort"]')


def healed(daemon: DaemonProcess, count: int = 1) -> Callable[[], bool]:
    """*count* healings succeeded, in the status and in the audit trail
    (which commits in the background: waiting on it keeps the events read
    afterwards complete)."""
    return lambda: (
        status(daemon)["selfHealing"]["successfulHealings"] >= count
        and len(events(daemon, kind="healing.succeeded")) >= count
    )


def guide(daemon: DaemonProcess, line: str) -> str:
    """Run one of the guide's shell lines against this daemon's port."""
    port = daemon.url.rsplit(":", 1)[1]
    done = subprocess.run(
        ["bash", "-c", line.replace("localhost:3001", f"localhost:{port}")],
        cwd=daemon.directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return done.stdout.strip()


def selfheal(daemon: DaemonProcess, *commands: tuple[str, ...]) -> list[str]:
    """Run `selfheal ...` commands against this daemon, with the keys in the
    environment (so a leak through option defaults or --help would show);
    return what each printed."""
    environment = {
        "SELFHEAL_URL": daemon.url,
        "ANTHROPIC_API_KEYS": ",".join(KEYS),
        "ANTHROPIC_API_KEY": K1,
        "COLUMNS": "200",
    }
    said = []
    for args in commands:
        result = CliRunner().invoke(app, list(args), env=environment)
        # `selfheal status` and `selfheal llm keys` exit 1 on a warning and 2
        # when critical, by design; a usage error (also 2) prints "Usage:".
        assert result.exit_code in (0, 1, 2), result.output
        if result.exit_code == 2:
            assert "Usage:" not in result.output, result.output
        assert result.exception is None or isinstance(
            result.exception, SystemExit
        ), result.exception
        said.append(result.output)
    return said


def assert_no_key_leaked(
    daemon: DaemonProcess, fake: FakeAnthropic, said: list[str]
) -> None:
    """Scan the status, the events, the key list, every file the daemon
    wrote (logs, the SQLite audit trail and its WAL), what the CLI printed,
    the daemon's own output, and what the model was sent."""
    texts = {
        "status": httpx.get(daemon.url + "/api/status", timeout=5).text,
        "events": httpx.get(
            daemon.url + "/api/events", params={"limit": 1000}, timeout=5
        ).text,
        "keys": httpx.get(daemon.url + "/api/llm/keys", timeout=5).text,
        "cli": "\n".join(said),
        "prompts": json.dumps([r.body for r in fake.requests]),
    }

    def files() -> dict[str, bytes]:
        found = {}
        for path in daemon.directory.rglob("*"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                found[str(path.relative_to(daemon.directory))] = (
                    path.read_bytes()
                )
        return found

    # Before the stop (the WAL holds recent events), and after it.
    blobs = files()
    assert any(name.startswith("logs/") for name in blobs)
    assert ".selfhealing/audit.db" in blobs
    daemon.process.terminate()  # SIGTERM: a clean stop
    texts["daemon output"] = daemon.output()
    assert "[Daemon] stopped" in texts["daemon output"]
    blobs.update({f"{name} (stopped)": blob for name, blob in files().items()})
    blobs.update({name: text.encode() for name, text in texts.items()})
    leaks = [
        (where, mask_key(key))
        for key in KEYS
        for where, blob in blobs.items()
        if key.encode() in blob or key[13:].encode() in blob
    ]
    assert [] == leaks


@pytest.fixture(name="fake")
def _fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(KEYS) as fake:
        yield fake


def llm_env(fake: FakeAnthropic) -> dict[str, str]:
    return {
        "ANTHROPIC_API_KEYS": ",".join(KEYS),
        "ANTHROPIC_BASE_URL": fake.url,
    }


class TestLlmRung:
    def test_acts_on_an_allowed_choice_and_refuses_an_off_list_one(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        fake: FakeAnthropic,
        tmp_path: Path,
    ) -> None:
        """The model picks fix-it: it runs inside the llm rung and the target
        is verified healthy (advice, action, success); next time it answers
        a shell string: refused, escalated, nothing run for it, and the next
        rung heals the target."""
        daemon = spawn_daemon(LLM_CONFIG, env=llm_env(fake))
        wait_for(healed(daemon), what="healing through the llm rung")

        assert (tmp_path / "fixed-by-llm").exists()
        assert not (tmp_path / "fixed-by-last-resort").exists()
        first = events(daemon, target="api")
        trail = [e["kind"] for e in first]
        assert trail.index("llm.advice") < trail.index("action.run")
        assert trail.index("action.run") < trail.index("healing.succeeded")
        [run] = [e for e in first if e["kind"] == "action.run"]
        assert ("ask-claude", True, 1) == (
            run["data"]["action"],
            run["data"]["ok"],
            run["data"]["rung"],
        )
        assert run["data"]["detail"].startswith(
            "advisor chose fix-it (0.90: diagnosis from the fake)"
        )
        [advice] = [e for e in first if e["kind"] == "llm.advice"]
        data = advice["data"]
        assert (
            "fix-it",
            "llm",
            mask_key(K1),
            ["fix-it"],
        ) == (data["actionId"], data["source"], data["keyId"], data["allowed"])
        assert data["inputTokens"] > 0
        assert data["outputTokens"] > 0
        assert data["prompt"].startswith('<evidence target="api">')
        assert 1 == len(fake.requests)
        assert "0" == fake.requests[0].headers["x-stainless-retry-count"]
        document = status(daemon)
        assert ("healthy", True, "CLOSED") == (
            document["targets"][0]["health"],
            document["llm"]["enabled"],
            document["llm"]["breaker"],
        )

        fake.script_all(Reply(tool_input=OFF_LIST))
        (tmp_path / "healthy").unlink()
        wait_for(healed(daemon, 2), what="healing by the last resort")

        assert (tmp_path / "fixed-by-last-resort").exists()
        second = events(daemon, target="api", since=first[-1]["id"])
        [escalated] = [e for e in second if e["kind"] == "llm.escalated"]
        assert (
            "invalid answer: action_id 'rm -rf /' is not allowed here",
            "escalate_to_human",
            "llm_invalid",
            mask_key(K2),
        ) == (
            escalated["reason"],
            escalated["data"]["actionId"],
            escalated["data"]["source"],
            escalated["data"]["keyId"],
        )
        assert [
            ("ask-claude", False),
            ("last-resort", True),
        ] == [
            (e["data"]["action"], e["data"]["ok"])
            for e in second
            if e["kind"] == "action.run"
        ]
        trail = [e["kind"] for e in second]
        assert (
            trail.index("llm.escalated")
            < trail.index("action.run")
            < trail.index("healing.succeeded")
        )
        assert [K1, K2] == [r.key for r in fake.requests]
        assert_no_key_leaked(daemon, fake, [])


class TestKeyPool:
    def test_all_keys_revoked_is_critical_until_a_reset(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        tmp_path: Path,
    ) -> None:
        """Both keys revoked: escalation, the ladder heals anyway, status
        CRITICAL with activeKeys 0 (the guide's jq line); a reset brings one
        key back, out of critical, and it serves the next incident."""
        with FakeAnthropic() as fake:  # knows no key: every request is 401
            daemon = spawn_daemon(LLM_CONFIG, env=llm_env(fake))
            wait_for(healed(daemon), what="healing by the last resort")

            assert [K1, K2] == [r.key for r in fake.requests]
            assert "0" == guide(
                daemon,
                "curl http://localhost:3001/api/status | jq "
                "'.llm.keyManagement.activeKeys'",
            )
            document = status(daemon)
            assert "critical" == document["status"]
            assert (2, 0, 2, 0) == tuple(
                document["llm"]["keyManagement"][name]
                for name in (
                    "totalKeys",
                    "activeKeys",
                    "failedKeys",
                    "rateLimitedKeys",
                )
            )
            assert (
                "CRITICAL: All API keys failed (2 failed, 0 rate limited)"
                in document["issues"]
            )
            [listing] = said = selfheal(daemon, ("llm", "keys"))
            assert mask_key(K1) in listing
            assert mask_key(K2) in listing
            assert "2 keys: 0 active, 0 rate limited, 2 failed" in listing

            # An operator pasting the secret instead of the id is refused
            # without an echo (the scan below covers the logs too).
            wrong = httpx.post(
                f"{daemon.url}/api/llm/keys/{quote(K2, safe='')}/reset",
                timeout=5,
            )
            assert 404 == wrong.status_code
            said.append(wrong.text)

            fake.add_key(K1)  # the operator fixed the key in the console
            answer = httpx.post(
                f"{daemon.url}/api/llm/keys/{quote(mask_key(K1), safe='')}"
                "/reset",
                json={"reason": f"key {K1} re-enabled"},
                timeout=5,
            )

            assert 200 == answer.status_code
            assert ("active", 1) == (
                answer.json()["key"]["state"],
                answer.json()["activeKeys"],
            )
            assert "1" == guide(
                daemon,
                "curl http://localhost:3001/api/status | jq "
                "'.llm.keyManagement.activeKeys'",
            )
            document = status(daemon)
            assert "warning" == document["status"]
            assert "WARNING: 1 of 2 API keys failed" in document["issues"]

            # The next incident is served by the key that came back.
            (tmp_path / "healthy").unlink()
            wait_for(healed(daemon, 2), what="healing by the reset key")
            assert (tmp_path / "fixed-by-llm").exists()
            assert [K1, K2, K1] == [r.key for r in fake.requests]
            resets = [
                e
                for e in events(daemon, kind="operator.action")
                if "API key" in e["message"]
            ]
            assert [f"key {mask_key(K1)} re-enabled"] == [
                e["reason"] for e in resets
            ]
            said += selfheal(
                daemon,
                ("llm", "keys", "list", "--json"),
                ("--help",),
                ("llm", "keys", "reset", "--help"),
                ("status",),
            )
            listed = json.loads(said[2])
            assert [mask_key(K1), mask_key(K2)] == [
                k["id"] for k in listed["keys"]
            ]
            assert_no_key_leaked(daemon, fake, said)


class TestNoKey:
    def test_default_runtime_has_no_key_and_no_issue(self) -> None:
        """The embedded default: no key, no advisor, a healthy status."""
        runtime = Runtime(environ={}, persistent=False)

        document = runtime.status()

        assert ("healthy", [], False, False) == (
            document["status"],
            document["issues"],
            document["llm"]["enabled"],
            document["llm"]["advisorConfigured"],
        )
        assert {
            "totalKeys": 0,
            "activeKeys": 0,
            "failedKeys": 0,
            "rateLimitedKeys": 0,
            "keys": [],
        } == document["llm"]["keyManagement"]

    def test_rule_based_healing_needs_no_key(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """No key and no llm rung: the ladder heals, totalKeys is 0 and the
        missing key raises no issue."""
        daemon = spawn_daemon(RULES_CONFIG)
        wait_for(healed(daemon), what="rule-based healing")

        assert "0" == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq "
            "'.llm.keyManagement.totalKeys'",
        )
        document = status(daemon)
        assert ("healthy", [], False) == (
            document["status"],
            document["issues"],
            document["llm"]["advisorConfigured"],
        )
        assert [] == events(daemon, kind="llm.*")

    def test_llm_rung_without_a_key_warns_how_to_add_one(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """An llm rung with no key: the rung escalates, the next heals, and
        the status warns with the guide's recommendation to add a key."""
        daemon = spawn_daemon(
            LLM_CONFIG, env={"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
        )
        wait_for(healed(daemon), what="healing by the last resort")

        assert (tmp_path / "fixed-by-last-resort").exists()
        document = status(daemon)
        assert "warning" == document["status"]
        assert [
            "WARNING: LLM advisor configured but no API key is set"
        ] == document["issues"]
        assert [
            (
                'Add a key: echo "ANTHROPIC_API_KEY=sk-ant-..." >> .env.local '
                "and restart"
            )
        ] == document["recommendations"]
        assert 0 == document["llm"]["keyManagement"]["totalKeys"]
        [escalated] = events(daemon, kind="llm.escalated")
        assert "unavailable" == escalated["data"]["source"]
