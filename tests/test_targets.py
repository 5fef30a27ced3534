from __future__ import annotations

import asyncio

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from selfhealing.actions import CallableAction, RemediationAction
from selfhealing.breaker import BreakerState
from selfhealing.checks import CallableCheck
from selfhealing.engine import (
    MAIN_BREAKER,
    AttemptOutcome,
    SelfHealingEngine,
    SkipReason,
)
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.targets import Target, TargetHealth
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

DORMANT_REASON = "Exceeded maximum consecutive failures (10)"
# 2026-01-01T00:00:00Z, FakeClock's wall origin.
WALL_ORIGIN = 1_767_225_600.0


@dataclass
class Switch:
    auto_healing: bool = True


@dataclass
class Service:
    """What the probes see: healthy or not, as the test decides."""

    healthy: bool = True
    probes: int = 0

    async def probe(self) -> bool:
        self.probes += 1
        return self.healthy


@dataclass
class World:
    """One engine, breaker registry and bus on a FakeClock."""

    clock: FakeClock
    bus: EventBus
    registry: CircuitBreakerRegistry
    engine: SelfHealingEngine
    flags: Switch
    service: Service = field(default_factory=Service)
    events: list[Event] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def target(
        self,
        ladder: list[RemediationAction] | None = None,
        *,
        name: str = "web",
        interval: float = 1.0,
        **options: Any,
    ) -> Target:
        target = Target(
            name,
            CallableCheck(self.service.probe, clock=self.clock),
            [self.fix()] if ladder is None else ladder,
            engine=self.engine,
            breaker=self.registry.get_or_create(f"target:{name}"),
            interval=interval,
            clock=self.clock,
            **options,
        )
        self.targets.append(target)
        return target

    def rung(
        self,
        name: str,
        *,
        fixes: bool | Callable[[], bool] = False,
        returns: object = None,
        wait: asyncio.Event | None = None,
    ) -> CallableAction:
        """An action that records its run, and maybe heals the service."""

        async def act() -> object:
            self.ran.append(name)
            if wait is not None:
                await wait.wait()
            if fixes is True or (callable(fixes) and fixes()):
                self.service.healthy = True
            return returns

        return CallableAction(name, act, clock=self.clock)

    def fix(self) -> CallableAction:
        return self.rung("restart", fixes=True)

    def kinds(self, *only: EventKind) -> list[str]:
        return [str(e.kind) for e in self.events if not only or e.kind in only]

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    async def probes(self, target: Target, count: int) -> None:
        """*count* probes, letting any healing they start take its step."""
        for _ in range(count):
            await target.probe()
            await self.clock.settle()


@pytest.fixture(name="world")
async def _world(clock: FakeClock) -> AsyncIterator[World]:
    bus = EventBus()
    registry = CircuitBreakerRegistry(clock=clock, bus=bus)
    flags = Switch()
    engine = SelfHealingEngine(
        registry=registry, flags=flags, clock=clock, bus=bus
    )
    world = World(clock, bus, registry, engine, flags)
    bus.subscribe(world.events.append)
    yield world
    for target in world.targets:
        await target.aclose()


async def break_and_heal(world: World, target: Target) -> None:
    """Make *target* unhealthy, and let its healing verify it."""
    world.service.healthy = False
    await world.probes(target, target.failure_threshold)
    await world.clock.run_for(target.verify_timeout)
    assert TargetHealth.HEALTHY == target.health


# ------------------------------------------------------------------ probes


class TestProbeThresholds:
    async def test_unhealthy_after_failure_threshold(
        self, world: World
    ) -> None:
        """failure_threshold failures in a row make the target unhealthy."""
        target = world.target([], failure_threshold=3)
        world.service.healthy = False

        await world.probes(target, 2)
        assert (TargetHealth.UNKNOWN, []) == (target.health, world.kinds())

        await world.probes(target, 1)
        assert TargetHealth.UNHEALTHY == target.health
        [event] = world.events
        assert (EventKind.TARGET_UNHEALTHY, "web", "returned False") == (
            event.kind,
            event.target,
            event.data["detail"],
        )
        assert "unknown" == event.data["previous"]
        assert "returned False" == target.detail

    async def test_success_breaks_failure_streak(self, world: World) -> None:
        """A success in between restarts the count of failures."""
        target = world.target([], failure_threshold=3)

        for healthy in (False, False, True, False, False):
            world.service.healthy = healthy
            await world.probes(target, 1)

        assert TargetHealth.HEALTHY == target.health
        assert [] == world.of(EventKind.TARGET_UNHEALTHY)
        assert 2 == target.snapshot().consecutive_failures

    async def test_healthy_after_success_threshold(self, world: World) -> None:
        """success_threshold successes in a row make it healthy again, and
        the recovery is an event."""
        target = world.target([], failure_threshold=1, success_threshold=2)
        world.service.healthy = False
        await world.probes(target, 1)
        world.service.healthy = True

        await world.probes(target, 1)
        assert TargetHealth.UNHEALTHY == target.health

        await world.probes(target, 1)
        assert TargetHealth.HEALTHY == target.health
        assert None is target.detail
        assert ["target.unhealthy", "target.recovered"] == world.kinds()
        assert "web is healthy again" == world.events[-1].message

    async def test_first_success_is_no_recovery(self, world: World) -> None:
        """A target healthy from the start publishes no recovery."""
        target = world.target([])

        await world.probes(target, 3)

        assert TargetHealth.HEALTHY == target.health
        assert [] == world.events

    async def test_probe_returns_and_keeps_result(self, world: World) -> None:
        """A probe returns its result and keeps it in the recent history."""
        target = world.target([])

        result = await target.probe()

        assert result is not None
        assert result.ok
        assert [result] == list(target.recent)
        assert 1 == target.snapshot().checks

    async def test_defaults(self, world: World) -> None:
        """verify_timeout defaults to interval x (failure_threshold + 2),
        relapse_window to 10 intervals, and settle never exceeds timeout."""
        target = world.target(interval=2.0, failure_threshold=4)
        short = world.target(name="b", verify_timeout=0.5)

        assert (12.0, 20.0, 1.0) == (
            target.verify_timeout,
            target.relapse_window,
            target.verify_settle,
        )
        assert 0.5 == short.verify_settle


# ----------------------------------------------------------------- healing


class TestHealing:
    async def test_unhealthy_triggers_one_attempt(self, world: World) -> None:
        """An unhealthy target is healed once, however often it is probed
        while the healing runs."""
        target = world.target(failure_threshold=3)
        world.service.healthy = False

        await world.probes(target, 3)
        assert target.healing
        await world.probes(target, 5)
        await world.clock.run_for(5)

        engine = world.engine.snapshot()
        assert (1, 1, 0) == (
            engine.total_attempts,
            engine.successful_healings,
            engine.failed_healings,
        )
        assert ["restart"] == world.ran
        assert TargetHealth.HEALTHY == target.health
        assert not target.healing
        assert [
            "target.unhealthy",
            "healing.attempted",
            "action.run",
            "target.recovered",
            "healing.succeeded",
        ] == world.kinds()

    async def test_healthy_target_not_healed(self, world: World) -> None:
        """A healthy target never asks for healing."""
        target = world.target()

        await world.probes(target, 5)

        assert ([], 0) == (world.ran, world.engine.snapshot().total_attempts)

    async def test_no_ladder_no_attempt(self, world: World) -> None:
        """A target without actions is watched but never healed."""
        target = world.target([], failure_threshold=1)
        world.service.healthy = False

        await world.probes(target, 3)

        assert None is target.request_healing()
        assert ["target.unhealthy"] == world.kinds()

    async def test_ladder_in_order_until_verified(self, world: World) -> None:
        """Rungs run in order; the first one after which verification passes
        ends the attempt."""
        target = world.target(
            [
                world.rung("flush-cache"),
                world.rung("restart", fixes=True),
                world.rung("reboot", fixes=True),
            ],
            failure_threshold=1,
            verify_timeout=2.0,
        )
        world.service.healthy = False

        await world.probes(target, 1)
        await world.clock.run_for(10)

        assert ["flush-cache", "restart"] == world.ran
        runs = world.of(EventKind.ACTION_RUN)
        assert [(1, "flush-cache"), (2, "restart")] == [
            (e.data["rung"], e.data["action"]) for e in runs
        ]
        assert (1, 1) == (
            world.engine.snapshot().total_attempts,
            world.engine.snapshot().successful_healings,
        )
        last = target.snapshot().last_healing
        assert last is not None
        assert ("succeeded", ["flush-cache", "restart"]) == (
            last["outcome"],
            [a["action"] for a in last["actions"]],
        )

    async def test_verification_waits_for_settle(self, world: World) -> None:
        """Verification passes no sooner than verify_settle after the
        action, even if the target looks healthy at once."""
        target = world.target(
            failure_threshold=1, verify_settle=3.0, verify_timeout=10.0
        )
        world.service.healthy = False
        await world.probes(target, 1)

        await world.clock.run_for(2.9)
        assert target.healing
        assert [] == world.of(EventKind.HEALING_SUCCEEDED)

        await world.clock.run_for(0.2)
        assert not target.healing
        [succeeded] = world.of(EventKind.HEALING_SUCCEEDED)
        assert 3000 == succeeded.data["durationMs"]

    async def test_verification_needs_success_threshold(
        self, world: World
    ) -> None:
        """Verification needs success_threshold passes in a row."""
        target = world.target(
            failure_threshold=1, success_threshold=3, verify_settle=0.0
        )
        world.service.healthy = False
        await world.probes(target, 1)

        await world.clock.run_for(10)

        [succeeded] = world.of(EventKind.HEALING_SUCCEEDED)
        # Passes at 0, 0.5 and 1.0 (the poll is half the interval).
        assert 1000 == succeeded.data["durationMs"]

    async def test_verification_gives_up_at_verify_timeout(
        self, world: World
    ) -> None:
        """A rung whose target stays unhealthy is given up at
        verify_timeout."""
        target = world.target(
            [world.rung("flush-cache")],
            failure_threshold=1,
            verify_timeout=4.0,
        )
        world.service.healthy = False
        await world.probes(target, 1)

        await world.clock.run_for(3.9)
        assert target.healing

        await world.clock.run_for(0.2)
        assert not target.healing
        [failed] = world.of(EventKind.HEALING_FAILED)
        assert 4000 == failed.data["durationMs"]

    async def test_ladder_never_verified_is_failed_attempt(
        self, world: World
    ) -> None:
        """A ladder after which the target never verifies is one failed
        attempt, counted by the engine and both breakers."""
        target = world.target(
            [world.rung("flush-cache"), world.rung("restart")],
            failure_threshold=1,
            verify_timeout=2.0,
        )
        world.service.healthy = False
        await world.probes(target, 1)

        await world.clock.run_for(4)

        engine = world.engine.snapshot()
        assert (1, 0, 1, 1) == (
            engine.total_attempts,
            engine.successful_healings,
            engine.failed_healings,
            engine.consecutive_failures,
        )
        assert ["flush-cache", "restart"] == world.ran
        [failed] = world.of(EventKind.HEALING_FAILED)
        assert "still unhealthy after healing" == failed.data["error"]
        assert (1, 1) == (
            world.engine.main_breaker.failure_count,
            target.breaker.failure_count,
        )
        last = target.snapshot().last_healing
        assert last is not None
        assert ("failed", "still unhealthy after healing") == (
            last["outcome"],
            last["error"],
        )

    async def test_failed_action_still_verified(self, world: World) -> None:
        """An action that reports failure does not decide: a target that
        verifies healthy is healed."""
        target = world.target(
            [world.rung("restart", fixes=True, returns=False)],
            failure_threshold=1,
        )
        world.service.healthy = False
        await world.probes(target, 1)

        await world.clock.run_for(5)

        [run] = world.of(EventKind.ACTION_RUN)
        assert (False, "returned False") == (
            run.data["ok"],
            run.data["detail"],
        )
        assert 1 == world.engine.snapshot().successful_healings

    async def test_last_healing_lists_only_its_own_actions(
        self, world: World
    ) -> None:
        """lastHealing lists the actions of the latest attempt only."""
        flush_fixes = False
        target = world.target(
            [
                world.rung("flush-cache", fixes=lambda: flush_fixes),
                world.rung("restart", fixes=True),
            ],
            failure_threshold=1,
            verify_timeout=2.0,
        )
        world.service.healthy = False
        await world.probes(target, 1)
        await world.clock.run_for(5)
        assert ["flush-cache", "restart"] == world.ran
        # Second time round the first rung is enough.
        flush_fixes = True
        world.service.healthy = False

        task = asyncio.get_running_loop().create_task(target.heal_now())
        await world.clock.run_for(5)

        assert AttemptOutcome.SUCCEEDED == (await task).outcome
        assert ["flush-cache", "restart", "flush-cache"] == world.ran
        last = target.snapshot().last_healing
        assert last is not None
        assert ["flush-cache"] == [a["action"] for a in last["actions"]]


# ------------------------------------------------------------------- skips


class TestSkips:
    async def test_dormant_engine_one_skip_per_streak(
        self, world: World
    ) -> None:
        """A dormant engine records one skip, however many probes come."""
        target = world.target(failure_threshold=1)
        world.engine.enter_dormant("maintenance window")
        world.service.healthy = False

        await world.probes(target, 10)

        [skipped] = world.of(EventKind.HEALING_SKIPPED)
        assert ("dormant", "web") == (skipped.reason, skipped.target)
        assert ([], 0) == (world.ran, world.engine.snapshot().total_attempts)

    async def test_resume_ends_streak(self, world: World) -> None:
        """After a resume, the next probe attempts again."""
        target = world.target(failure_threshold=1)
        world.engine.enter_dormant("maintenance window")
        world.service.healthy = False
        await world.probes(target, 3)

        world.engine.resume_from_dormant("maintenance over")
        await world.probes(target, 1)
        await world.clock.run_for(5)

        assert ["restart"] == world.ran
        assert 1 == len(world.of(EventKind.HEALING_SKIPPED))

    async def test_backoff_one_skip_then_attempt(self, world: World) -> None:
        """Probes during the backoff record one skip; once it has passed,
        the next probe attempts again."""
        target = world.target(
            [world.rung("flush-cache")],
            failure_threshold=1,
            verify_timeout=1.0,
        )
        world.service.healthy = False
        await world.probes(target, 1)
        await world.clock.run_for(1)
        assert 1 == world.engine.snapshot().failed_healings

        for _ in range(9):
            await world.clock.run_for(1)
            await world.probes(target, 1)

        [skipped] = world.of(EventKind.HEALING_SKIPPED)
        assert "backoff" == skipped.reason
        assert 1 == world.engine.snapshot().total_attempts

        await world.clock.run_for(1)
        await world.probes(target, 1)
        assert 2 == world.engine.snapshot().total_attempts

    async def test_disabled(self, world: World) -> None:
        """With automatic healing off, one skip says so."""
        target = world.target(failure_threshold=1)
        world.flags.auto_healing = False
        world.service.healthy = False

        await world.probes(target, 5)

        assert ["disabled"] == [
            e.reason for e in world.of(EventKind.HEALING_SKIPPED)
        ]
        assert [] == world.ran

    async def test_target_breaker_open(self, world: World) -> None:
        """An open target:<name> breaker skips the attempt, and the main
        breaker is not charged."""
        world.registry.configure("target:web", failure_threshold=1)
        target = world.target(failure_threshold=1)
        target.breaker.acquire().failure()
        assert BreakerState.OPEN == target.breaker.state
        world.service.healthy = False

        await world.probes(target, 5)

        [skipped] = world.of(EventKind.HEALING_SKIPPED)
        assert "target_breaker_open" == skipped.reason
        main = world.registry.get(MAIN_BREAKER)
        assert (BreakerState.CLOSED, 0) == (main.state, main.failure_count)
        assert ([], 0) == (world.ran, world.engine.snapshot().total_attempts)
        assert "OPEN" == target.snapshot().to_dict()["breaker"]

    async def test_other_target_unaffected_by_breaker(
        self, world: World
    ) -> None:
        """One target's open breaker does not stop another's healing."""
        world.registry.configure("target:web", failure_threshold=1)
        web = world.target(failure_threshold=1)
        web.breaker.acquire().failure()
        api = world.target(name="api", failure_threshold=1)
        world.service.healthy = False

        await world.probes(web, 1)
        await world.probes(api, 1)
        await world.clock.run_for(5)

        assert ["restart"] == world.ran
        [succeeded] = world.of(EventKind.HEALING_SUCCEEDED)
        assert "api" == succeeded.target


# ----------------------------------------------------------- mark_unhealthy


class TestMarkUnhealthy:
    async def test_immediate(self, world: World) -> None:
        """mark_unhealthy makes the target unhealthy at once and asks for
        healing, without waiting for probes."""
        target = world.target(failure_threshold=3)

        target.mark_unhealthy("process web exited with code -9")

        assert TargetHealth.UNHEALTHY == target.health
        assert "process web exited with code -9" == target.detail
        assert 3 == target.snapshot().consecutive_failures
        assert target.healing
        [event] = world.events
        assert EventKind.TARGET_UNHEALTHY == event.kind
        await world.clock.run_for(5)
        assert (["restart"], TargetHealth.HEALTHY) == (
            world.ran,
            target.health,
        )

    async def test_from_healthy(self, world: World) -> None:
        """A healthy target goes unhealthy at once too."""
        target = world.target(failure_threshold=5)
        await world.probes(target, 1)

        target.mark_unhealthy("process web exited with code 1")

        assert TargetHealth.UNHEALTHY == target.health
        assert "healthy" == world.events[0].data["previous"]


# ----------------------------------------------------------------- relapse


class TestRelapse:
    async def test_relapse_inside_window(self, world: World) -> None:
        """Failing again inside relapse_window after a verified healing is a
        relapse: the engine's failure streak grows and backoff applies."""
        target = world.target(failure_threshold=1, relapse_window=10.0)
        await break_and_heal(world, target)
        assert 0 == world.engine.consecutive_failures
        [succeeded] = world.of(EventKind.HEALING_SUCCEEDED)
        await world.clock.run_for(3)
        world.service.healthy = False

        await world.probes(target, 1)

        assert (1, 1) == (
            world.engine.consecutive_failures,
            world.engine.snapshot().relapses,
        )
        [relapsed] = world.of(EventKind.HEALING_RELAPSED)
        assert ("web", 1) == (
            relapsed.target,
            relapsed.data["consecutiveFailures"],
        )
        assert world.clock.time() - succeeded.at == pytest.approx(
            relapsed.data["afterSeconds"]
        )
        [skipped] = world.of(EventKind.HEALING_SKIPPED)
        assert "backoff" == skipped.reason
        assert 1 == world.engine.snapshot().total_attempts

    async def test_no_relapse_outside_window(self, world: World) -> None:
        """Failing after relapse_window is a new incident, healed at once."""
        target = world.target(failure_threshold=1, relapse_window=10.0)
        await break_and_heal(world, target)

        await world.clock.run_for(11)
        world.service.healthy = False
        await world.probes(target, 1)
        await world.clock.run_for(5)

        assert [] == world.of(EventKind.HEALING_RELAPSED)
        engine = world.engine.snapshot()
        assert (0, 0, 2) == (
            engine.consecutive_failures,
            engine.relapses,
            engine.successful_healings,
        )

    async def test_counted_once_per_healing(self, world: World) -> None:
        """One verified healing can relapse only once."""
        target = world.target(failure_threshold=1, relapse_window=100.0)
        await break_and_heal(world, target)
        world.service.healthy = False
        await world.probes(target, 1)
        world.service.healthy = True
        await world.probes(target, 1)
        world.service.healthy = False
        await world.probes(target, 1)

        assert 1 == world.engine.snapshot().relapses

    async def test_crash_loop_ends_dormant(self, world: World) -> None:
        """Ten relapses in a row end in dormant mode: a crash loop never
        becomes a restart storm."""
        target = world.target(
            failure_threshold=1, verify_settle=0.0, relapse_window=60.0
        )
        await break_and_heal(world, target)

        for relapse in range(1, 11):
            await world.clock.run_for(2)
            world.service.healthy = False
            await world.probes(target, 1)
            assert relapse == world.engine.consecutive_failures
            if relapse == 10:
                break
            wait = world.engine.retry_after()
            assert wait is not None
            assert wait > 0
            await world.clock.run_for(wait)
            await world.probes(target, 1)
            await world.clock.run_for(1)
            assert TargetHealth.HEALTHY == target.health

        engine = world.engine.snapshot()
        assert (True, DORMANT_REASON) == (
            engine.is_dormant,
            engine.dormant_reason,
        )
        assert (10, 10, 10) == (
            engine.relapses,
            engine.total_attempts,
            engine.successful_healings,
        )
        await world.clock.run_for(3600)
        await world.probes(target, 20)
        assert 10 == world.engine.snapshot().total_attempts
        assert 10 == len(world.ran)

    async def test_resume_clears_relapse_streak(self, world: World) -> None:
        """After a resume, a relapse starts the streak from the beginning."""
        target = world.target(failure_threshold=1, relapse_window=60.0)
        await break_and_heal(world, target)
        world.service.healthy = False
        await world.probes(target, 1)
        world.engine.enter_dormant("maintenance window")
        world.engine.resume_from_dormant("maintenance over")
        await world.probes(target, 1)
        await world.clock.run_for(5)
        assert 2 == world.engine.snapshot().successful_healings

        await world.clock.run_for(2)
        world.service.healthy = False
        await world.probes(target, 1)

        assert 1 == world.engine.consecutive_failures


# -------------------------------------------------------------- detection


class TestDetection:
    async def test_detection_off(self, world: World) -> None:
        """With detection off, a probe checks nothing and the snapshot says
        detection is paused."""
        detecting = False
        target = world.target(detection=lambda: detecting)

        assert None is await target.probe()
        assert 0 == world.service.probes
        snapshot = target.snapshot()
        assert (True, "paused", 0) == (
            snapshot.detection_paused,
            snapshot.to_dict()["detection"],
            snapshot.checks,
        )

        detecting = True
        assert await target.probe() is not None
        assert "active" == target.snapshot().to_dict()["detection"]

    async def test_detection_off_heals_nothing(self, world: World) -> None:
        """A target whose detection is off is never made unhealthy."""
        target = world.target(detection=lambda: False, failure_threshold=1)
        world.service.healthy = False

        await world.probes(target, 5)

        assert (TargetHealth.UNKNOWN, [], []) == (
            target.health,
            world.ran,
            world.events,
        )


# ---------------------------------------------------------------- heal_now


class TestHealNow:
    async def test_healthy_target(self, world: World) -> None:
        """heal_now runs one governed attempt whatever the probes say."""
        target = world.target()
        task = asyncio.get_running_loop().create_task(target.heal_now())

        await world.clock.run_for(5)

        assert AttemptOutcome.SUCCEEDED == (await task).outcome
        assert (["restart"], 1) == (
            world.ran,
            world.engine.snapshot().total_attempts,
        )

    async def test_joins_healing_in_progress(self, world: World) -> None:
        """heal_now during a healing waits for it instead of starting one."""
        release = asyncio.Event()
        target = world.target(
            [world.rung("restart", fixes=True, wait=release)],
            failure_threshold=1,
        )
        world.service.healthy = False
        await world.probes(target, 1)
        task = asyncio.get_running_loop().create_task(target.heal_now())
        await world.clock.settle()

        release.set()
        await world.clock.run_for(5)

        assert AttemptOutcome.SUCCEEDED == (await task).outcome
        assert (["restart"], 1) == (
            world.ran,
            world.engine.snapshot().total_attempts,
        )

    async def test_engine_rules_apply(self, world: World) -> None:
        """heal_now on a dormant engine is a skip, recorded each time."""
        target = world.target()
        world.engine.enter_dormant("maintenance window")

        first = await target.heal_now()
        second = await target.heal_now()

        assert (AttemptOutcome.SKIPPED, SkipReason.DORMANT) == (
            first.outcome,
            first.skip_reason,
        )
        assert AttemptOutcome.SKIPPED == second.outcome
        assert 2 == len(world.of(EventKind.HEALING_SKIPPED))
        assert [] == world.ran


# ------------------------------------------------------------------ aclose


class TestClose:
    async def test_cancels_healing(self, world: World) -> None:
        """aclose cancels a healing in progress; it is not counted as a
        failure."""
        target = world.target(
            [world.rung("restart", wait=asyncio.Event())],
            failure_threshold=1,
        )
        world.service.healthy = False
        await world.probes(target, 1)
        assert target.healing
        healing = target._healing
        assert healing is not None

        await target.aclose()

        assert healing.cancelled()
        assert not target.healing
        engine = world.engine.snapshot()
        assert ((), 1, 0) == (
            engine.in_progress,
            engine.total_attempts,
            engine.failed_healings,
        )
        main = world.engine.main_breaker
        assert (0, 0) == (main.failure_count, target.breaker.failure_count)

    async def test_idle(self, world: World) -> None:
        """aclose with nothing running just returns."""
        target = world.target()

        await target.aclose()

        assert not target.healing


# ---------------------------------------------------------------- snapshot


class TestSnapshot:
    async def test_fresh(self, world: World) -> None:
        """A fresh target's snapshot has the API's shape and no history."""
        target = world.target()

        snapshot = target.snapshot()

        assert None is snapshot.healthy
        assert {
            "name": "web",
            "health": "unknown",
            "detail": None,
            "lastCheck": None,
            "latencyMs": None,
            "consecutiveFailures": 0,
            "consecutiveSuccesses": 0,
            "checks": 0,
            "healing": False,
            "detection": "active",
            "lastHealing": None,
            "nextAttemptAt": None,
            "breaker": "CLOSED",
        } == snapshot.to_dict()

    async def test_after_healing(self, world: World) -> None:
        """After a healing, the snapshot shows the check and the healing."""
        target = world.target(failure_threshold=1)
        await break_and_heal(world, target)

        data = target.snapshot().to_dict()

        assert True is target.snapshot().healthy
        assert ("healthy", None, 0.0) == (
            data["health"],
            data["detail"],
            data["latencyMs"],
        )
        assert {"ok": True, "latencyMs": 0.0, "detail": "ok"} == {
            k: data["lastCheck"][k] for k in ("ok", "latencyMs", "detail")
        }
        assert {
            "outcome": "succeeded",
            "at": "2026-01-01T00:00:01.000Z",
            "durationMs": 1000,
            "error": None,
            "actions": [
                {
                    "action": "restart",
                    "ok": True,
                    "detail": "done",
                    "durationMs": 0.0,
                    "at": "2026-01-01T00:00:00.000Z",
                }
            ],
        } == data["lastHealing"]

    async def test_next_attempt_during_backoff(self, world: World) -> None:
        """An unhealthy target in backoff shows when the next attempt may
        start."""
        target = world.target(
            [world.rung("flush-cache")],
            failure_threshold=1,
            verify_timeout=2.0,
        )
        world.service.healthy = False
        await world.probes(target, 1)
        await world.clock.run_for(2)

        snapshot = target.snapshot()

        assert False is snapshot.healthy
        # Failed at t=2; the first failure's backoff is 10 s.
        assert WALL_ORIGIN + 12 == snapshot.next_attempt_at
        assert (
            "2026-01-01T00:00:12.000Z" == snapshot.to_dict()["nextAttemptAt"]
        )

    async def test_repr(self, world: World) -> None:
        """The repr names the target and its health."""
        assert "<Target 'web' unknown>" == repr(world.target())
