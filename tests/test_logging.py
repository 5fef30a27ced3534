from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import selfhealing._logging

from selfhealing._logging import (
    COMPONENT_TAGS,
    DebugNamespaces,
    LoggingSetup,
    TaggedFormatter,
    configure_logging,
    mask_secrets,
    namespace_for,
    parse_debug,
    render_facts,
    tag_for,
)
from selfhealing.exceptions import ConfigError


KEY = "sk-ant-api03-AbCdEfGh_1234-wxyz"
MASKED = "sk-ant-...wxyz"
ALL_NAMESPACES = sorted(
    namespace_for(name)
    for name in COMPONENT_TAGS
    if name.startswith("selfhealing.")
)
LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+) +"
    r"\[(?P<tag>[^\]]+)\] (?P<message>.*)$"
)

Configure = Callable[..., LoggingSetup]


@pytest.fixture(name="configure")
def _configure(tmp_path: Path) -> Iterator[Configure]:
    """configure_logging() into tmp_path/logs, closed again after the test."""
    setups: list[LoggingSetup] = []

    def configure(**kwargs: Any) -> LoggingSetup:
        kwargs.setdefault("log_dir", tmp_path / "logs")
        kwargs.setdefault("console", False)
        setup = configure_logging(**kwargs)
        setups.append(setup)
        return setup

    yield configure
    for setup in reversed(setups):
        setup.close()


def read_log(tmp_path: Path) -> list[str]:
    path = tmp_path / "logs" / "selfhealing.log"
    return path.read_text(encoding="utf-8").splitlines()


def record(
    name: str = "selfhealing.engine",
    msg: str = "hello",
    args: tuple[object, ...] | None = None,
    **extra: object,
) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    rec.created = 1_795_983_546.123  # 2026-11-29T20:19:06.123Z
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = selfhealing._logging.__all__

        assert [
            "COMPONENT_TAGS",
            "LOG_FILE_NAME",
            "NAMESPACE_PREFIX",
            "DebugNamespaces",
            "LoggingSetup",
            "SecretMaskingFilter",
            "TaggedFormatter",
            "configure_logging",
            "mask_secrets",
            "namespace_for",
            "parse_debug",
            "render_facts",
            "tag_for",
        ] == names
        assert [] == [n for n in names if not hasattr(selfhealing._logging, n)]


class TestTags:
    @pytest.mark.parametrize(
        ("logger", "tag"),
        [
            ("selfhealing.engine", "SelfHealing"),
            ("selfhealing.breaker", "CircuitBreaker"),
            ("selfhealing.tasks", "BackgroundTaskManager"),
            ("selfhealing.engine.verify", "SelfHealing"),
            ("selfhealing.breaker.registry.redis", "CircuitBreaker"),
            ("selfhealing.store.sqlite", "sqlite"),
            ("selfhealing.newpart", "newpart"),
            ("uvicorn.error", "uvicorn.error"),
            ("uvicorn", "uvicorn"),
        ],
    )
    def test_tag_for(self, logger: str, tag: str) -> None:
        """Tags come from the mapping, inherited by children, else from the name."""
        assert tag == tag_for(logger)

    def test_mapping_can_be_extended(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A part added to COMPONENT_TAGS gets its tag, children included."""
        monkeypatch.setitem(COMPONENT_TAGS, "selfhealing.store", "AuditStore")

        assert "AuditStore" == tag_for("selfhealing.store.sqlite")

    @pytest.mark.parametrize(("logger", "tag"), sorted(COMPONENT_TAGS.items()))
    def test_every_tag_reaches_the_file(
        self, configure: Configure, tmp_path: Path, logger: str, tag: str
    ) -> None:
        """Each component's lines land in the log file with its [Tag]."""
        configure()

        logging.getLogger(logger).info("tick")

        assert [(tag, "tick")] == [
            (m["tag"], m["message"])
            for m in map(LINE.match, read_log(tmp_path))
            if m
        ]


class TestFormat:
    def test_line_format(self) -> None:
        """UTC time with ms and Z, padded level, tag, message, facts."""
        line = TaggedFormatter().format(
            record(
                msg="dormant mode entered",
                facts={"reason": "Exceeded maximum consecutive failures (10)"},
            )
        )

        assert (
            "2026-11-29T20:19:06.123Z INFO  [SelfHealing] dormant mode "
            'entered reason="Exceeded maximum consecutive failures (10)"'
        ) == line

    def test_long_level_names(self) -> None:
        """Levels longer than five letters are written in full."""
        rec = record()
        rec.levelname = "WARNING"

        assert " WARNING [SelfHealing] hello" in TaggedFormatter().format(rec)

    def test_exception_is_appended(self) -> None:
        """A traceback follows the tagged line, with keys masked."""
        try:
            raise ValueError(KEY)
        except ValueError:
            rec = record()
            rec.exc_info = sys.exc_info()

        text = TaggedFormatter().format(rec)

        assert text.startswith(
            "2026-11-29T20:19:06.123Z INFO  [SelfHealing] hello\n"
        )
        assert f"ValueError: {MASKED}" in text
        assert KEY not in text

    @pytest.mark.parametrize(
        ("facts", "rendered"),
        [
            pytest.param(
                {"breaker": "db", "trips": 3},
                " breaker=db trips=3",
                id="plain",
            ),
            pytest.param(
                {"reason": "two words"}, ' reason="two words"', id="spaces"
            ),
            pytest.param({"q": 'say "hi"'}, ' q="say \\"hi\\""', id="quotes"),
            pytest.param({"empty": ""}, ' empty=""', id="empty"),
            pytest.param({"multi": "a\nb"}, ' multi="a\\nb"', id="newline"),
            pytest.param(
                {"on": True, "off": False, "none": None},
                " on=true off=false none=null",
                id="constants",
            ),
            pytest.param({"delay": 0.5}, " delay=0.5", id="float"),
            pytest.param({}, "", id="no-facts"),
            pytest.param(None, "", id="none"),
            pytest.param("odd", " facts=odd", id="not-a-dict"),
        ],
    )
    def test_render_facts(self, facts: object, rendered: str) -> None:
        """Facts become key=value pairs; values with spaces or quotes are quoted."""
        assert rendered == render_facts(facts)


class TestMasking:
    @pytest.mark.parametrize(
        ("text", "masked"),
        [
            pytest.param(KEY, MASKED, id="key"),
            pytest.param(f"key={KEY}, ok", f"key={MASKED}, ok", id="embedded"),
            pytest.param(f"{KEY} {KEY}", f"{MASKED} {MASKED}", id="twice"),
            pytest.param("sk-ant-short", "sk-ant-short", id="too-short"),
            pytest.param("sk-ant-12345678", "sk-ant-...5678", id="eight"),
            pytest.param("no secret here", "no secret here", id="plain"),
            pytest.param(MASKED, MASKED, id="idempotent"),
        ],
    )
    def test_mask_secrets(self, text: str, masked: str) -> None:
        """Keys (sk-ant- and 8+ key characters) become sk-ant-... plus the last 4."""
        assert masked == mask_secrets(text)

    def test_key_never_reaches_the_file(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """Keys in the message, args and facts are masked in the file."""
        configure()
        log = logging.getLogger("selfhealing.keypool")

        log.info(f"message {KEY}")  # noqa: G004 - the key must be in the message
        log.info("arg %s", KEY)
        log.info("repr %r", {"key": KEY})
        log.info("facts", extra={"facts": {"key": KEY, "n": 1}})

        lines = read_log(tmp_path)
        assert [] == [
            line for line in lines if KEY in line or "AbCdEfGh" in line
        ]
        assert 4 == sum(MASKED in line for line in lines)
        assert lines[3].endswith(f"facts key={MASKED} n=1")

    def test_filter_leaves_the_callers_facts_alone(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """Masking copies the facts instead of editing the caller's dict."""
        configure()
        facts = {"key": KEY}

        logging.getLogger("selfhealing.llm").info("x", extra={"facts": facts})

        assert {"key": KEY} == facts

    def test_console_is_masked_too(
        self, configure: Configure, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The stderr handler masks keys as well."""
        configure(log_dir=None, console=True)

        logging.getLogger("selfhealing.llm").warning("bad key %s", KEY)

        err = capsys.readouterr().err
        assert KEY not in err
        assert f"WARNING [LLMAdvisor] bad key {MASKED}" in err


class TestConfigure:
    def test_engine_line_lands_in_the_file(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """A line from selfhealing.engine lands in logs/selfhealing.log tagged [SelfHealing]."""
        setup = configure()

        logging.getLogger("selfhealing.engine").info(
            "dormant mode entered", extra={"facts": {"reason": "too many"}}
        )

        assert tmp_path / "logs" / "selfhealing.log" == setup.log_file
        [line] = read_log(tmp_path)
        assert line.endswith(
            ' INFO  [SelfHealing] dormant mode entered reason="too many"'
        )

    def test_guide_grep_finds_the_lines(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """The guide's grep "SelfHealing" logs/*.log finds engine lines and only those."""
        configure()
        logging.getLogger("selfhealing.engine").info("attempt 1")
        logging.getLogger("selfhealing.breaker").info("state OPEN")
        logging.getLogger("selfhealing.tasks").info("registered")

        grep = shutil.which("grep")
        assert grep is not None
        files = sorted(str(p) for p in (tmp_path / "logs").glob("*.log"))
        found = {
            word: subprocess.run(
                [grep, word, *files],
                capture_output=True,
                text=True,
                check=True,
                cwd=tmp_path,
            ).stdout
            for word in (
                "SelfHealing",
                "CircuitBreaker",
                "BackgroundTaskManager",
            )
        }

        assert {
            "SelfHealing": "attempt 1",
            "CircuitBreaker": "state OPEN",
            "BackgroundTaskManager": "registered",
        } == {
            word: out.strip().rsplit("] ", 1)[1] for word, out in found.items()
        }

    def test_configure_twice_does_not_duplicate(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """Configuring again replaces the handlers: each line is written once."""
        first = configure()
        configure()

        logging.getLogger("selfhealing.engine").info("once")

        assert 1 == len(read_log(tmp_path))
        assert first.closed
        installed = [
            h
            for h in logging.getLogger("selfhealing").handlers
            if not isinstance(h, logging.NullHandler)
        ]
        assert 1 == len(installed)

    def test_close_removes_handlers_and_restores_the_logger(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """close() flushes, removes its handlers and restores level and propagation."""
        root = logging.getLogger("selfhealing")
        before = (root.level, root.propagate, list(root.handlers))
        setup = configure()
        assert False is root.propagate
        logging.getLogger("selfhealing.engine").info("flushed")

        setup.close()
        setup.close()  # a second close is harmless

        assert before == (root.level, root.propagate, list(root.handlers))
        assert ["flushed"] == [
            m["message"] for m in map(LINE.match, read_log(tmp_path)) if m
        ]

    def test_context_manager_closes(self, configure: Configure) -> None:
        """A LoggingSetup used as a context manager closes on exit."""
        with configure() as setup:
            assert not setup.closed

        assert setup.closed

    def test_no_log_dir_means_no_file(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """log_dir=None writes no file."""
        setup = configure(log_dir=None)

        logging.getLogger("selfhealing.engine").info("nowhere")

        assert None is setup.log_file
        assert not (tmp_path / "logs").exists()

    def test_relative_log_dir_follows_working_directory(
        self,
        configure: Configure,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The default log_dir 'logs' is created in the working directory."""
        monkeypatch.chdir(tmp_path)

        configure(log_dir="logs")
        logging.getLogger("selfhealing.engine").info("here")

        assert ["here"] == [
            m["message"] for m in map(LINE.match, read_log(tmp_path)) if m
        ]

    def test_log_dir_that_is_a_file_is_a_config_error(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """A log_dir that cannot be created is a ConfigError naming it."""
        blocker = tmp_path / "logs"
        blocker.write_text("not a directory", encoding="utf-8")

        with pytest.raises(ConfigError) as info:
            configure(log_dir=blocker)

        assert str(blocker) == info.value.where

    def test_negative_sizes_refused(self, configure: Configure) -> None:
        """Negative rotation settings are a ConfigError."""
        with pytest.raises(ConfigError):
            configure(max_bytes=-1)

    def test_rotation_at_max_bytes(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """The file rotates once it would pass max_bytes, keeping backup_count files."""
        configure(max_bytes=300, backup_count=2)
        log = logging.getLogger("selfhealing.tasks")

        for i in range(40):
            log.info("line %02d of the rotation test", i)

        logs = tmp_path / "logs"
        assert [
            "selfhealing.log",
            "selfhealing.log.1",
            "selfhealing.log.2",
        ] == (sorted(p.name for p in logs.iterdir()))
        assert all(300 >= p.stat().st_size for p in logs.iterdir())
        assert read_log(tmp_path)[-1].endswith("line 39 of the rotation test")

    def test_extra_loggers_share_the_handlers(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """Loggers named in extra_loggers write to the same file, tagged by name."""
        configure(extra_loggers=["uvicorn.error"])

        logging.getLogger("uvicorn.error").info("Started server process")

        assert [("uvicorn.error", "Started server process")] == [
            (m["tag"], m["message"])
            for m in map(LINE.match, read_log(tmp_path))
            if m
        ]

    def test_level_hides_info(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """level=WARNING drops INFO lines."""
        configure(level=logging.WARNING)
        log = logging.getLogger("selfhealing.engine")

        log.info("hidden")
        log.warning("shown")

        assert ["shown"] == [
            m["message"] for m in map(LINE.match, read_log(tmp_path)) if m
        ]


class TestDebugNamespaces:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            pytest.param(
                "self-healing:*", ALL_NAMESPACES, id="all-components"
            ),
            pytest.param(
                "self-healing:breaker,self-healing:engine",
                ["self-healing:breaker", "self-healing:engine"],
                id="two-by-comma",
            ),
            pytest.param(
                "self-healing:breaker self-healing:engine",
                ["self-healing:breaker", "self-healing:engine"],
                id="two-by-space",
            ),
            pytest.param(
                "self-healing:*,-self-healing:tasks",
                [n for n in ALL_NAMESPACES if n != "self-healing:tasks"],
                id="all-but-tasks",
            ),
            pytest.param("*", ALL_NAMESPACES, id="star"),
            pytest.param(
                "self-healing:b*", ["self-healing:breaker"], id="prefix"
            ),
            pytest.param("-self-healing:engine", [], id="only-exclusion"),
            pytest.param("", [], id="empty"),
            pytest.param(None, [], id="none"),
            pytest.param("other:*", [], id="other-app"),
        ],
    )
    def test_specs(self, spec: str | None, expected: list[str]) -> None:
        """Each DEBUG spec enables exactly the expected namespaces."""
        namespaces = parse_debug(spec)

        assert expected == [n for n in ALL_NAMESPACES if namespaces.enabled(n)]

    def test_exclusion_wins_in_any_order(self) -> None:
        """An exclusion wins even when listed before the inclusion."""
        assert False is parse_debug(
            "-self-healing:tasks,self-healing:*"
        ).enabled("self-healing:tasks")

    def test_parsed_parts(self) -> None:
        """The spec splits into inclusions and exclusions."""
        assert DebugNamespaces(
            include=("self-healing:*", "x"), exclude=("self-healing:tasks",)
        ) == parse_debug(" self-healing:*, -self-healing:tasks ,, x ")

    def test_truthiness(self) -> None:
        """A spec without inclusions is falsy."""
        assert (True, False) == (
            bool(parse_debug("*")),
            bool(parse_debug("-x")),
        )

    @pytest.mark.parametrize(
        ("logger", "namespace"),
        [
            ("selfhealing.engine", "self-healing:engine"),
            ("selfhealing.breaker", "self-healing:breaker"),
            ("selfhealing.engine.verify", "self-healing:engine.verify"),
            ("uvicorn.error", "uvicorn.error"),
        ],
    )
    def test_namespace_for(self, logger: str, namespace: str) -> None:
        """selfhealing.<part> is self-healing:<part>."""
        assert namespace == namespace_for(logger)


class TestDebugLogging:
    @pytest.mark.parametrize(
        "spec",
        [
            "self-healing:*",
            "self-healing:breaker,self-healing:engine",
            "self-healing:*,-self-healing:tasks",
            "*",
            None,
        ],
    )
    def test_levels_follow_the_spec(
        self, configure: Configure, spec: str | None
    ) -> None:
        """Exactly the enabled component loggers are at DEBUG, the rest at INFO."""
        namespaces = parse_debug(spec)

        setup = configure(debug=spec)

        components = sorted(
            n for n in COMPONENT_TAGS if n.startswith("selfhealing.")
        )
        assert {
            n: logging.DEBUG
            if namespaces.enabled(namespace_for(n))
            else logging.INFO
            for n in components
        } == {n: logging.getLogger(n).level for n in components}
        assert sorted(setup.debug_loggers) == [
            n for n in components if namespaces.enabled(namespace_for(n))
        ]

    def test_debug_lines_only_for_enabled_components(
        self, configure: Configure, tmp_path: Path
    ) -> None:
        """With DEBUG=self-healing:breaker only the breaker (and its children) log debug lines."""
        configure(debug="self-healing:breaker")

        logging.getLogger("selfhealing.breaker").debug("probe admitted")
        logging.getLogger("selfhealing.breaker.registry").debug("created db")
        logging.getLogger("selfhealing.engine").debug("hidden")
        logging.getLogger("selfhealing.engine").info("shown")

        assert [
            ("DEBUG", "CircuitBreaker", "probe admitted"),
            ("DEBUG", "CircuitBreaker", "created db"),
            ("INFO", "SelfHealing", "shown"),
        ] == [
            (m["level"], m["tag"], m["message"])
            for m in map(LINE.match, read_log(tmp_path))
            if m
        ]
        assert False is logging.getLogger("selfhealing.engine").isEnabledFor(
            logging.DEBUG
        )

    def test_reconfigure_turns_debug_off(self, configure: Configure) -> None:
        """Configuring again without DEBUG puts the components back to INFO."""
        configure(debug="self-healing:*")

        configure(debug=None)

        assert False is logging.getLogger("selfhealing.tasks").isEnabledFor(
            logging.DEBUG
        )

    def test_close_restores_component_levels(
        self, configure: Configure
    ) -> None:
        """close() puts component logger levels back as they were."""
        engine = logging.getLogger("selfhealing.engine")
        before = engine.level

        configure(debug="*").close()

        assert before == engine.level
