"""The LLM answers slowly, with garbage, or not at all.

The target's ladder is ``ask-claude`` (an llm rung) then ``last-resort``.
FakeAnthropic plays each fault twice: a reply slower than the advisor's
timeout, a connection dropped without a byte, an HTML body instead of
JSON, a tool call naming an action that is not allowed, a tool call with
the wrong fields, and finally no service at all (the fake stopped). What
must hold, every time: the llm rung escalates (audited, with why), the
next rung heals the target, the attempt counts as a success, and the llm
rung never holds the ladder longer than the advisor's timeout allows.
"""

from __future__ import annotations

import time

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from selfhealing.testing import FakeAnthropic, Reply
from support import DaemonProcess, events, status, wait_for


pytestmark = pytest.mark.slow

KEYS = (
    "sk-ant-api03-" + "a" * 36 + "k1AA",
    "sk-ant-api03-" + "b" * 36 + "k2BB",
)
LLM_TIMEOUT = 1.0
CONFIG = f"""
[engine]
backoff_base = "10ms"
backoff_max = "50ms"

[llm]
timeout = "{LLM_TIMEOUT}s"
deadline = "3s"

# Every fault must reach the fake: an open breaker would answer for it.
[breakers."llm-anthropic"]
failure_threshold = 100
permanent_after_trips = 0

[[targets]]
name = "api"
actions = ["ask-claude", "last-resort"]
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
name = "ask-claude"
type = "llm"
allowed = ["fix-it"]

[[actions]]
name = "fix-it"
type = "command"
command = ["touch", "healthy", "fixed-by-llm"]

[[actions]]
name = "last-resort"
type = "command"
command = ["touch", "healthy"]
"""

# name: (the reply, the escalation's source, words its reason holds)
FAULTS: dict[str, tuple[Reply | None, str, str]] = {
    "slow": (Reply(delay=5 * LLM_TIMEOUT), "unavailable", "timed out"),
    "dropped": (Reply(drop=True), "unavailable", "service error"),
    "html": (
        Reply(raw_body=b"<html><body>502 Bad Gateway</body></html>"),
        "llm_invalid",  # the SDK hands the text over as the answer
        "invalid answer",
    ),
    "off-list": (
        Reply(
            tool_input={
                "action_id": "rm -rf /",
                "diagnosis": "wipe it",
                "confidence": 1.0,
            }
        ),
        "llm_invalid",
        "not allowed",
    ),
    "wrong-fields": (
        Reply(tool_input={"answer": 42, "confidence": "very"}),
        "llm_invalid",
        "invalid answer",
    ),
    "gone": (None, "unavailable", "service error"),
}


@pytest.fixture(name="fake")
def _fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(KEYS) as fake:
        yield fake


class TestLlmFaults:
    def test_every_fault_escalates_and_the_next_rung_heals(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        fake: FakeAnthropic,
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """Each fault, twice: escalation, then the last resort heals."""
        (tmp_path / "healthy").touch()
        daemon = spawn_daemon(
            CONFIG,
            env={
                "ANTHROPIC_API_KEYS": ",".join(KEYS),
                "ANTHROPIC_BASE_URL": fake.url,
            },
        )
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "healthy",
            what="api healthy",
        )
        plan = [name for name in FAULTS for _ in range(2)]
        took: dict[str, list[float]] = {}
        sources: dict[str, set[str]] = {}
        for incident, name in enumerate(plan, start=1):
            reply, source, words = FAULTS[name]
            if reply is None:
                fake.stop()  # nobody listens on its port any more
            else:
                fake.script_all(reply)
            asked = len(fake.requests)
            since = events(daemon)[-1]["id"]
            broken = time.time()
            (tmp_path / "healthy").unlink()
            wait_for(
                lambda n=incident: (
                    status(daemon)["selfHealing"]["successfulHealings"] == n
                    and len(events(daemon, kind="healing.succeeded")) == n
                ),
                what=f"healing through the {name} fault",
            )
            trail = events(daemon, since=since, target="api")
            [escalated] = [e for e in trail if e["kind"] == "llm.escalated"]
            [succeeded] = [
                e for e in trail if e["kind"] == "healing.succeeded"
            ]
            assert source == escalated["data"]["source"], escalated
            assert words in escalated["reason"], escalated
            assert escalated["data"]["actionId"] == "escalate_to_human"
            assert [("ask-claude", False), ("last-resort", True)] == [
                (e["data"]["action"], e["data"]["ok"])
                for e in trail
                if e["kind"] == "action.run"
            ]
            ask = next(
                e
                for e in trail
                if e["kind"] == "action.run"
                and e["data"]["action"] == "ask-claude"
            )
            # The rung is bounded by the request timeout, not the reply.
            assert ask["data"]["durationMs"] < (LLM_TIMEOUT + 1.0) * 1000
            if reply is not None:
                assert 1 == len(fake.requests) - asked  # it was asked
            took.setdefault(name, []).append(
                round(succeeded["atEpoch"] - broken, 2)
            )
            sources.setdefault(name, set()).add(escalated["data"]["source"])

        assert not (tmp_path / "fixed-by-llm").exists()
        engine = status(daemon)["selfHealing"]
        assert (len(plan), len(plan), 0) == (
            engine["totalAttempts"],
            engine["successfulHealings"],
            engine["failedHealings"],
        )
        keys = status(daemon)["llm"]["keyManagement"]
        assert (2, 0) == (keys["activeKeys"], keys["failedKeys"])
        figures.update(
            {
                "incidents": len(plan),
                "healed": engine["successfulHealings"],
                "break to healed (s), per fault": took,
                "escalation source, per fault": {
                    k: sorted(v) for k, v in sources.items()
                },
            }
        )

    def test_a_dead_llm_opens_its_breaker_and_healing_goes_on(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        fake: FakeAnthropic,
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """With the llm breaker's defaults, an LLM that never answers in
        time trips it after 3 timeouts; later incidents skip the wait and
        the last resort heals each one."""
        (tmp_path / "healthy").touch()
        default_breaker = (
            CONFIG.split("# Every fault", maxsplit=1)[0]
            + CONFIG.split("permanent_after_trips = 0\n")[1]
        )
        daemon = spawn_daemon(
            default_breaker,
            env={
                "ANTHROPIC_API_KEYS": ",".join(KEYS),
                "ANTHROPIC_BASE_URL": fake.url,
            },
        )
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "healthy",
            what="api healthy",
        )
        fake.script_all(*[Reply(delay=5 * LLM_TIMEOUT)] * 10)
        rungs = []
        for incident in range(1, 6):
            since = events(daemon)[-1]["id"]
            (tmp_path / "healthy").unlink()
            wait_for(
                lambda n=incident: (
                    status(daemon)["selfHealing"]["successfulHealings"] == n
                    and len(events(daemon, kind="healing.succeeded")) == n
                ),
                what=f"healing #{incident}",
            )
            [ask] = [
                e
                for e in events(daemon, since=since, kind="action.run")
                if e["data"]["action"] == "ask-claude"
            ]
            rungs.append(ask["data"]["durationMs"])
            [escalated] = events(daemon, since=since, kind="llm.escalated")
            if incident > 3:
                assert (
                    "circuit breaker llm-anthropic is open"
                    in (escalated["reason"])
                )
        assert 3 == len(fake.requests)  # the breaker answered the rest
        assert all(ms < 100 for ms in rungs[3:]), rungs
        assert "OPEN" == status(daemon)["llm"]["breaker"]
        figures.update({"llm rung (ms), incidents 1-5": rungs})
