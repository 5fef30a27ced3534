from __future__ import annotations

import gc
import importlib

from collections.abc import Iterator
from pathlib import Path

import pytest

import selfhealing

from selfhealing import defaults
from selfhealing.events import Event, EventKind
from selfhealing.runtime import Runtime


@pytest.fixture(autouse=True)
def _fresh_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    defaults._reset_for_tests()
    yield
    defaults._reset_for_tests()


class TestDefaults:
    def test_the_guides_imports(self) -> None:
        """The guide's objects import from selfhealing and are wired together."""
        from selfhealing import (  # noqa: PLC0415
            background_task_manager,
            circuit_breaker_registry,
            self_healing_engine,
        )

        assert self_healing_engine.registry is circuit_breaker_registry
        assert "self-healing-main" == self_healing_engine.main_breaker.name
        assert circuit_breaker_registry.get("self-healing-main").reset(True)
        assert 0 == len(background_task_manager)

    def test_the_guides_resume(self) -> None:
        """resume_from_dormant('Valid API keys restored') returns True."""
        engine = selfhealing.self_healing_engine
        engine.enter_dormant("drill")
        assert engine.resume_from_dormant("Valid API keys restored") is True

    def test_reload_keeps_the_same_instances(self) -> None:
        """importlib.reload never builds a second task manager."""
        manager = selfhealing.background_task_manager
        manager.register_interval("poll", lambda: None, 5)
        importlib.reload(defaults)
        importlib.reload(selfhealing)
        assert manager is selfhealing.background_task_manager
        assert 1 == len(selfhealing.background_task_manager)

    def test_reregistering_after_reload_replaces(self) -> None:
        """A module re-registering its task on reload does not double it."""
        for _ in range(3):
            importlib.reload(defaults)
            selfhealing.background_task_manager.register_interval(
                "poll", lambda: None, 5
            )
        snapshot = selfhealing.background_task_manager.snapshot()
        assert 1 == snapshot.total_tasks

    def test_runtimes_around_the_defaults_do_not_pile_up(self) -> None:
        """Runtime.from_defaults() leaves nothing on the shared bus once the
        runtime is gone (a service building one per test, say)."""
        bus = defaults.event_bus
        before = len(bus)
        for _ in range(3):
            runtime = Runtime.from_defaults()
            assert len(bus) > before
            del runtime
            gc.collect()
            bus.publish(
                Event(EventKind.OPERATOR_ACTION, 0.0, "test", "anyone there?")
            )
            assert before == len(bus)

    def test_flags_read_the_working_directory(self) -> None:
        """The default flags read .env.local in the working directory."""
        Path(".env.local").write_text("FEATURE_AUTO_HEALING_ENABLED=false\n")
        assert selfhealing.self_healing_engine.enabled is False

    def test_install_before_first_use(self) -> None:
        """install() makes explicitly built objects the defaults."""
        manager = selfhealing.BackgroundTaskManager()
        defaults.install(background_task_manager=manager)
        assert manager is selfhealing.background_task_manager

    def test_install_after_first_use_refuses(self) -> None:
        """A default already in use cannot be swapped behind its users."""
        _ = selfhealing.background_task_manager
        with pytest.raises(RuntimeError, match="already exists"):
            defaults.install(
                background_task_manager=selfhealing.BackgroundTaskManager()
            )

    def test_unknown_attribute(self) -> None:
        """A misspelt default is an AttributeError, as for any module."""
        with pytest.raises(AttributeError, match="self_healing_engin"):
            _ = selfhealing.self_healing_engin  # type: ignore[attr-defined]


def test_version_is_resolved() -> None:
    """__version__ comes from the installed package metadata."""
    assert selfhealing.__version__.count(".") >= 2


def test_public_api_is_pinned() -> None:
    """__all__ lists exactly the public names, sorted."""
    assert sorted(selfhealing.__all__) == selfhealing.__all__
    for name in selfhealing.__all__:
        assert getattr(selfhealing, name) is not None
