from __future__ import annotations

import logging
import threading

from pathlib import Path

import pytest

import selfhealing.flags

from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    ConfigError,
    FlagValueError,
    InvalidReasonError,
    UnknownNameError,
)
from selfhealing.flags import (
    FLAG_NAMES,
    FeatureFlags,
    FlagSource,
    FlagValue,
    parse_bool,
)
from selfhealing.testing import FakeClock


HEAL = "FEATURE_AUTO_HEALING_ENABLED"
DETECT = "FEATURE_AUTO_DETECTION_MONITORING"
PREVENT = "FEATURE_PREVENTIVE_HEALING_ENABLED"
PROCESS = "FEATURE_PROCESS_MONITORING_ENABLED"
HINT = "is not a boolean (use true/false, 1/0, yes/no, on/off)"


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.writelines(f"{line}\n" for line in lines)


@pytest.fixture(name="workdir")
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory, as `selfheal run` would start in."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(name="events")
def _events() -> list[Event]:
    return []


@pytest.fixture(name="bus")
def _bus(events: list[Event]) -> EventBus:
    bus = EventBus()
    bus.subscribe(events.append)
    return bus


def make_flags(
    workdir: Path,
    *,
    environ: dict[str, str] | None = None,
    config: dict[str, bool] | None = None,
    bus: EventBus | None = None,
    clock: FakeClock | None = None,
) -> FeatureFlags:
    settings = EnvSettings(workdir, environ=environ or {})
    return FeatureFlags(
        settings=settings,
        config=config,
        bus=bus,
        clock=clock or FakeClock(),
    )


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = selfhealing.flags.__all__

        assert [
            "AUTO_DETECTION",
            "AUTO_HEALING",
            "FLAG_NAMES",
            "PREVENTIVE_HEALING",
            "PROCESS_MONITORING",
            "FeatureFlags",
            "FlagSource",
            "FlagValue",
            "parse_bool",
        ] == names
        assert [] == [n for n in names if not hasattr(selfhealing.flags, n)]

    def test_flag_names(self) -> None:
        """The four flags of the guide, in the guide's order."""
        assert (HEAL, DETECT, PREVENT, PROCESS) == FLAG_NAMES


class TestParseBool:
    @pytest.mark.parametrize(
        "text",
        [
            "true",
            "TRUE",
            "True",
            "tRuE",
            "1",
            "yes",
            "YES",
            "Yes",
            "on",
            "ON",
            "oN",
            " true ",
            "\tOn\n",
        ],
    )
    def test_true_spellings(self, text: str) -> None:
        """true/1/yes/on in any case, with padding, read as True."""
        assert True is parse_bool(text, name=HEAL)

    @pytest.mark.parametrize(
        "text",
        [
            "false",
            "FALSE",
            "False",
            "fAlSe",
            "0",
            "no",
            "NO",
            "No",
            "off",
            "OFF",
            "oFf",
            "  0 ",
        ],
    )
    def test_false_spellings(self, text: str) -> None:
        """false/0/no/off in any case, with padding, read as False."""
        assert False is parse_bool(text, name=HEAL)

    @pytest.mark.parametrize(
        "text", ["", "maybe", "2", "enabled", "t", "y", "truee", "-1"]
    )
    def test_other_values_refused(self, text: str) -> None:
        """Anything else is a FlagValueError."""
        with pytest.raises(FlagValueError):
            parse_bool(text, name=HEAL)

    def test_message_names_file_line_and_flag(self) -> None:
        """The error reads FILE:LINE: NAME=VALUE is not a boolean (...)."""
        with pytest.raises(FlagValueError) as info:
            parse_bool("maybe", name=HEAL, file=".env.local", line=7)

        assert f".env.local:7: {HEAL}=maybe {HINT}" == str(info.value)
        assert (HEAL, "maybe", ".env.local", 7) == (
            info.value.name,
            info.value.value,
            info.value.file,
            info.value.line,
        )

    def test_is_a_config_error(self) -> None:
        """FlagValueError is a ConfigError, so start-up reports it as one."""
        with pytest.raises(ConfigError):
            parse_bool("nope", name=HEAL, file="environment")


class TestFlagValue:
    def test_to_dict_for_a_file(self) -> None:
        """A file value shows enabled, source, file and line."""
        value = FlagValue(
            HEAL, False, FlagSource.DOTENV_LOCAL, ".env.local", 3
        )

        assert {
            "enabled": False,
            "source": ".env.local",
            "file": ".env.local",
            "line": 3,
        } == value.to_dict()
        assert ".env.local:3" == value.where

    def test_to_dict_for_api_has_reason(self) -> None:
        """An api override also shows its reason."""
        value = FlagValue(HEAL, True, FlagSource.API, reason="incident 42")

        assert {
            "enabled": True,
            "source": "api",
            "file": None,
            "line": None,
            "reason": "incident 42",
        } == value.to_dict()
        assert None is value.where


class TestPrecedence:
    def test_default_is_true(self, workdir: Path) -> None:
        """With no source at all every flag is on, from the default."""
        flags = make_flags(workdir)

        assert dict.fromkeys(FLAG_NAMES, (True, FlagSource.DEFAULT)) == {
            n: (v.enabled, v.source) for n, v in flags.snapshot().items()
        }

    def test_no_settings_means_no_env_and_no_files(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """settings=None reads neither the process environment nor files."""
        monkeypatch.setenv(HEAL, "false")
        write(workdir / ".env.local", f"{HEAL}=false")

        flags = FeatureFlags()

        assert FlagSource.DEFAULT == flags.get(HEAL).source
        assert True is flags.auto_healing

    def test_settings_are_exposed(self, workdir: Path) -> None:
        """The settings passed in are the ones reload() re-reads."""
        settings = EnvSettings(workdir, environ={})

        assert settings is FeatureFlags(settings=settings).settings

    def test_config_beats_default(self, workdir: Path) -> None:
        """A config file value beats the default."""
        flags = make_flags(workdir, config={HEAL: False})

        assert FlagValue(HEAL, False, FlagSource.CONFIG) == flags.get(HEAL)

    def test_dotenv_beats_config(self, workdir: Path) -> None:
        """.env beats the config file."""
        write(workdir / ".env", f"{HEAL}=on")

        flags = make_flags(workdir, config={HEAL: False})

        assert FlagValue(HEAL, True, FlagSource.DOTENV, ".env", 1) == (
            flags.get(HEAL)
        )

    def test_dotenv_local_beats_dotenv(self, workdir: Path) -> None:
        """.env.local beats .env."""
        write(workdir / ".env", f"{HEAL}=on")
        write(workdir / ".env.local", "# local", f"{HEAL}=off")

        flags = make_flags(workdir, config={HEAL: True})

        assert FlagValue(
            HEAL, False, FlagSource.DOTENV_LOCAL, ".env.local", 2
        ) == flags.get(HEAL)

    def test_env_beats_dotenv_local(self, workdir: Path) -> None:
        """The process environment beats .env.local."""
        write(workdir / ".env", f"{HEAL}=off")
        write(workdir / ".env.local", f"{HEAL}=off")

        flags = make_flags(
            workdir, environ={HEAL: "YES"}, config={HEAL: False}
        )

        assert FlagValue(HEAL, True, FlagSource.ENV) == flags.get(HEAL)

    def test_api_beats_env(self, workdir: Path) -> None:
        """A runtime override beats even the process environment."""
        flags = make_flags(workdir, environ={HEAL: "true"})

        flags.set_override(HEAL, False, reason="stop during incident 42")

        assert FlagValue(
            HEAL, False, FlagSource.API, reason="stop during incident 42"
        ) == flags.get(HEAL)
        assert False is flags.is_enabled(HEAL)

    def test_last_line_wins_within_a_file(self, workdir: Path) -> None:
        """In one file the last line for a flag gives its value."""
        write(
            workdir / ".env.local",
            f"{HEAL}=false",
            f"{DETECT}=false",
            f"{HEAL}=true",
        )

        flags = make_flags(workdir)

        assert FlagValue(
            HEAL, True, FlagSource.DOTENV_LOCAL, ".env.local", 3
        ) == flags.get(HEAL)
        assert False is flags.auto_detection

    def test_flags_are_independent(self, workdir: Path) -> None:
        """Each flag resolves through its own sources."""
        write(workdir / ".env", f"{PREVENT}=0")

        flags = make_flags(
            workdir, environ={PROCESS: "off"}, config={DETECT: False}
        )

        assert (True, False, False, False) == (
            flags.auto_healing,
            flags.auto_detection,
            flags.preventive_healing,
            flags.process_monitoring,
        )

    def test_to_dict_is_the_status_shape(self, workdir: Path) -> None:
        """to_dict() maps every flag name to its value and origin."""
        write(workdir / ".env.local", f"{HEAL}=false")

        flags = make_flags(workdir)

        assert {
            HEAL: {
                "enabled": False,
                "source": ".env.local",
                "file": ".env.local",
                "line": 1,
            },
            DETECT: {
                "enabled": True,
                "source": "default",
                "file": None,
                "line": None,
            },
            PREVENT: {
                "enabled": True,
                "source": "default",
                "file": None,
                "line": None,
            },
            PROCESS: {
                "enabled": True,
                "source": "default",
                "file": None,
                "line": None,
            },
        } == flags.to_dict()


class TestStartupErrors:
    def test_invalid_file_value_raises_with_file_and_line(
        self, workdir: Path
    ) -> None:
        """An invalid value at start-up raises, naming file, line and flag."""
        write(
            workdir / ".env.local",
            "# feature switches",
            "",
            "export ANTHROPIC_API_KEY='sk-ant-abc'",
            'NOTE="two',
            'lines"',
            "",
            f"{HEAL}=maybe",
        )

        with pytest.raises(FlagValueError) as info:
            make_flags(workdir)

        assert f".env.local:7: {HEAL}=maybe {HINT}" == str(info.value)

    def test_invalid_env_value_names_environment(self, workdir: Path) -> None:
        """An invalid value in the process environment names 'environment'."""
        with pytest.raises(FlagValueError) as info:
            make_flags(workdir, environ={DETECT: "sometimes"})

        assert f"environment: {DETECT}=sometimes {HINT}" == str(info.value)
        assert ("environment", None) == (info.value.file, info.value.line)

    def test_first_error_in_flag_order(self, workdir: Path) -> None:
        """With several invalid flags, the first in FLAG_NAMES order is raised."""
        write(workdir / ".env", f"{PROCESS}=x", f"{DETECT}=y")

        with pytest.raises(FlagValueError) as info:
            make_flags(workdir)

        assert DETECT == info.value.name

    def test_invalid_config_value(self, workdir: Path) -> None:
        """A non-boolean config value is refused."""
        with pytest.raises(FlagValueError) as info:
            make_flags(workdir, config={HEAL: "false"})  # type: ignore[dict-item]

        assert f"config: {HEAL}=false {HINT}" == str(info.value)

    def test_unknown_config_flag(self, workdir: Path) -> None:
        """A config value for an unknown flag is refused."""
        with pytest.raises(UnknownNameError):
            make_flags(workdir, config={"FEATURE_NOPE": True})

    def test_valid_weaker_value_does_not_hide_invalid_stronger(
        self, workdir: Path
    ) -> None:
        """The strongest source decides, so an invalid env value is an error even when .env is fine."""
        write(workdir / ".env", f"{HEAL}=true")

        with pytest.raises(FlagValueError):
            make_flags(workdir, environ={HEAL: "treu"})


class TestReload:
    def test_guide_procedure(self, workdir: Path) -> None:
        """Append =false and reload: off; append =true: on; delete the lines: back to default."""
        local = write(workdir / ".env.local", "ANTHROPIC_API_KEY=sk-ant-x")
        flags = make_flags(workdir)
        assert True is flags.auto_healing

        append(local, f"{HEAL}=false")
        flags.reload()
        assert FlagValue(
            HEAL, False, FlagSource.DOTENV_LOCAL, ".env.local", 2
        ) == flags.get(HEAL)

        append(local, f"{HEAL}=true")
        flags.reload()
        assert FlagValue(
            HEAL, True, FlagSource.DOTENV_LOCAL, ".env.local", 3
        ) == flags.get(HEAL)

        # sed -i '/FEATURE_AUTO_HEALING_ENABLED/d' .env.local
        lines = local.read_text(encoding="utf-8").splitlines()
        write(local, *(line for line in lines if HEAL not in line))
        flags.reload()
        assert FlagValue(HEAL, True, FlagSource.DEFAULT) == flags.get(HEAL)

    def test_guide_emergency_stop(self, workdir: Path) -> None:
        """The guide's heredoc turning every flag off takes effect on reload."""
        flags = make_flags(workdir)

        append(workdir / ".env.local", *(f"{n}=false" for n in FLAG_NAMES))
        errors = flags.reload()

        assert () == errors
        assert dict.fromkeys(FLAG_NAMES, False) == {
            n: flags.is_enabled(n) for n in FLAG_NAMES
        }

    def test_invalid_value_keeps_old_and_records_error(
        self, workdir: Path
    ) -> None:
        """On reload an invalid value keeps the old value and is kept in errors."""
        local = write(workdir / ".env.local", f"{HEAL}=false")
        flags = make_flags(workdir)

        write(local, "", f"{HEAL}=nah", f"{DETECT}=off")
        errors = flags.reload()

        assert [f".env.local:2: {HEAL}=nah {HINT}"] == [str(e) for e in errors]
        assert errors == flags.errors
        assert FlagValue(
            HEAL, False, FlagSource.DOTENV_LOCAL, ".env.local", 1
        ) == flags.get(HEAL)
        assert False is flags.auto_detection

    def test_fixed_file_clears_errors(self, workdir: Path) -> None:
        """A clean reload after fixing the file clears the errors and applies the value."""
        local = write(workdir / ".env.local", f"{HEAL}=false")
        flags = make_flags(workdir)
        write(local, f"{HEAL}=nah")
        flags.reload()

        write(local, f"{HEAL}=On")
        errors = flags.reload()

        assert () == errors
        assert () == flags.errors
        assert True is flags.auto_healing

    def test_reload_error_is_logged_at_warning(
        self, workdir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A reload error is logged at WARNING on selfhealing.flags."""
        local = write(workdir / ".env.local", f"{HEAL}=false")
        flags = make_flags(workdir)
        write(local, f"{HEAL}=nah")

        with caplog.at_level(logging.WARNING, logger="selfhealing.flags"):
            flags.reload()

        assert [("selfhealing.flags", logging.WARNING)] == [
            (r.name, r.levelno) for r in caplog.records
        ]
        assert f".env.local:1: {HEAL}=nah" in caplog.records[0].getMessage()

    def test_reload_reads_process_environment_through_settings(
        self, workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With settings on os.environ, reload() sees a changed variable."""
        monkeypatch.setenv(PREVENT, "true")
        flags = FeatureFlags(settings=EnvSettings(workdir))
        assert True is flags.preventive_healing

        monkeypatch.setenv(PREVENT, "0")
        flags.reload()

        assert FlagValue(PREVENT, False, FlagSource.ENV) == flags.get(PREVENT)

    def test_reload_keeps_overrides(self, workdir: Path) -> None:
        """An api override survives a reload that changes the files."""
        flags = make_flags(workdir)
        flags.set_override(HEAL, False, reason="incident")

        write(workdir / ".env.local", f"{HEAL}=true")
        flags.reload()

        assert FlagSource.API == flags.get(HEAL).source
        assert False is flags.auto_healing


class TestOverrides:
    def test_override_shows_source_api_with_reason(
        self, workdir: Path
    ) -> None:
        """An override is shown with source api and the trimmed reason."""
        flags = make_flags(workdir)

        value = flags.set_override(HEAL, False, reason="  incident 42  ")

        assert {
            "enabled": False,
            "source": "api",
            "file": None,
            "line": None,
            "reason": "incident 42",
        } == flags.to_dict()[HEAL]
        assert value == flags.get(HEAL)

    @pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
    def test_blank_reason_refused(self, workdir: Path, reason: str) -> None:
        """An override without a real reason is refused and changes nothing."""
        flags = make_flags(workdir)

        with pytest.raises(InvalidReasonError):
            flags.set_override(HEAL, False, reason=reason)

        assert FlagSource.DEFAULT == flags.get(HEAL).source

    def test_non_bool_enabled_refused(self, workdir: Path) -> None:
        """A string such as 'false' is refused rather than read as truthy."""
        flags = make_flags(workdir)

        with pytest.raises(ConfigError):
            flags.set_override(HEAL, "false", reason="x")  # type: ignore[arg-type]

    def test_clear_override_returns_to_next_source(
        self, workdir: Path
    ) -> None:
        """Clearing an override gives the flag back to the next source."""
        write(workdir / ".env", f"{HEAL}=no")
        flags = make_flags(workdir)
        flags.set_override(HEAL, True, reason="try healing once more")

        value = flags.clear_override(HEAL)

        assert FlagValue(HEAL, False, FlagSource.DOTENV, ".env", 1) == value
        assert value == flags.get(HEAL)

    def test_clear_without_override_is_a_no_op(
        self, workdir: Path, bus: EventBus, events: list[Event]
    ) -> None:
        """Clearing a flag without override changes nothing and publishes nothing."""
        flags = make_flags(workdir, bus=bus)

        assert FlagValue(
            HEAL, True, FlagSource.DEFAULT
        ) == flags.clear_override(HEAL)
        assert [] == events

    def test_override_gone_at_restart(self, workdir: Path) -> None:
        """Overrides live in memory only: a new FeatureFlags starts without them."""
        make_flags(workdir).set_override(HEAL, False, reason="incident")

        assert True is make_flags(workdir).auto_healing

    def test_clear_after_invalid_reload_keeps_last_good_value(
        self, workdir: Path
    ) -> None:
        """Clearing an override while the file is invalid falls back to the last valid value."""
        local = write(workdir / ".env.local", f"{HEAL}=off")
        flags = make_flags(workdir)
        flags.set_override(HEAL, True, reason="incident")
        write(local, f"{HEAL}=nah")
        assert 1 == len(flags.reload())

        value = flags.clear_override(HEAL)

        assert (False, FlagSource.DOTENV_LOCAL) == (
            value.enabled,
            value.source,
        )


class TestUnknownNames:
    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(
                lambda f: f.is_enabled("FEATURE_NOPE"), id="is_enabled"
            ),
            pytest.param(lambda f: f.get("FEATURE_NOPE"), id="get"),
            pytest.param(
                lambda f: f.set_override("FEATURE_NOPE", True, reason="x"),
                id="set_override",
            ),
            pytest.param(
                lambda f: f.clear_override("FEATURE_NOPE"), id="clear"
            ),
        ],
    )
    def test_unknown_flag(self, workdir: Path, call: object) -> None:
        """Every lookup of an unknown flag raises UnknownNameError listing the known ones."""
        flags = make_flags(workdir)

        with pytest.raises(UnknownNameError) as info:
            call(flags)  # type: ignore[operator]

        assert ("flag", "FEATURE_NOPE", list(FLAG_NAMES)) == (
            info.value.kind,
            info.value.name,
            info.value.known,
        )
        assert str(info.value).startswith("unknown flag 'FEATURE_NOPE'")


class TestEvents:
    def test_override_publishes_flag_changed(
        self,
        workdir: Path,
        bus: EventBus,
        events: list[Event],
        clock: FakeClock,
    ) -> None:
        """An override publishes FLAG_CHANGED with old/new/source, reason and actor."""
        flags = make_flags(workdir, bus=bus, clock=clock)

        flags.set_override(HEAL, False, reason="incident 42", actor="alice")

        assert 1 == len(events)
        event = events[0]
        assert (
            EventKind.FLAG_CHANGED,
            "FeatureFlags",
            HEAL,
            "incident 42",
            "alice",
            clock.time(),
        ) == (
            event.kind,
            event.component,
            event.target,
            event.reason,
            event.actor,
            event.at,
        )
        assert {"old": True, "new": False, "source": "api"}.items() <= (
            event.data.items()
        )

    def test_reload_publishes_only_changes(
        self, workdir: Path, bus: EventBus, events: list[Event]
    ) -> None:
        """A reload publishes one FLAG_CHANGED per flag whose value or source changed."""
        flags = make_flags(workdir, bus=bus)
        flags.reload()
        assert [] == events

        write(workdir / ".env.local", f"{HEAL}=false", f"{DETECT}=true")
        flags.reload()

        assert [
            (HEAL, True, False, ".env.local"),
            (DETECT, True, True, ".env.local"),
        ] == [
            (e.target, e.data["old"], e.data["new"], e.data["source"])
            for e in events
        ]
        assert all(EventKind.FLAG_CHANGED == e.kind for e in events)

    def test_clear_publishes_flag_changed(
        self, workdir: Path, bus: EventBus, events: list[Event]
    ) -> None:
        """Clearing an override publishes the change back to the next source."""
        flags = make_flags(workdir, bus=bus)
        flags.set_override(HEAL, True, reason="incident")

        flags.clear_override(HEAL, reason="incident over", actor="bob")

        assert (
            EventKind.FLAG_CHANGED,
            "default",
            "api",
            "incident over",
            "bob",
        ) == (
            events[-1].kind,
            events[-1].data["source"],
            events[-1].data["oldSource"],
            events[-1].reason,
            events[-1].actor,
        )

    def test_reload_error_publishes_flag_error(
        self, workdir: Path, bus: EventBus, events: list[Event]
    ) -> None:
        """An invalid value on reload publishes FLAG_ERROR with the message and where."""
        flags = make_flags(workdir, bus=bus)
        write(workdir / ".env.local", f"{PROCESS}=??")

        flags.reload()

        assert [
            (
                EventKind.FLAG_ERROR,
                PROCESS,
                f".env.local:1: {PROCESS}=?? {HINT}",
                ".env.local",
                1,
                True,
            )
        ] == [
            (
                e.kind,
                e.target,
                e.message,
                e.data["file"],
                e.data["line"],
                e.data["kept"],
            )
            for e in events
        ]

    def test_construction_publishes_nothing(
        self, workdir: Path, bus: EventBus, events: list[Event]
    ) -> None:
        """Loading the initial values is not a change."""
        write(workdir / ".env", f"{HEAL}=false")

        make_flags(workdir, bus=bus)

        assert [] == events


class TestConcurrency:
    def test_readers_never_fail_during_reloads(self, workdir: Path) -> None:
        """Reads on one thread stay valid while another thread reloads."""
        local = workdir / ".env.local"
        flags = make_flags(workdir)
        failures: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    for name in FLAG_NAMES:
                        assert isinstance(flags.is_enabled(name), bool)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(50):
                write(local, f"{HEAL}={'false' if i % 2 else 'true'}")
                flags.reload()
        finally:
            done.set()
            reader.join()

        assert [] == failures
        assert False is flags.auto_healing
