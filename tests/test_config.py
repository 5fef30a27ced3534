from __future__ import annotations

import json
import math

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from selfhealing.cli import app
from selfhealing.config import (
    CommandActionConfig,
    Config,
    HttpActionConfig,
    HttpCheckConfig,
    ProcessCheckConfig,
    RestartProcessActionConfig,
    TcpCheckConfig,
    load_config,
    parse_config,
)
from selfhealing.durations import parse_duration
from selfhealing.exceptions import ConfigError
from selfhealing.flags import FLAG_NAMES


# The example from SPEC.md, verbatim: its key names are a contract.
SPEC_EXAMPLE = """\
[server]
host = "127.0.0.1"
port = 3001

[engine]
max_consecutive_failures = 10
backoff_base = "5s"
backoff_max = "30m"

[breakers."self-healing-main"]
failure_threshold = 5
recovery_timeout = "60s"
half_open_max_calls = 1
permanent_after_trips = 3
permanent_window = "30m"

[[processes]]
name = "web"
command = ["python3", "-m", "http.server", "8080"]
stop_timeout = "10s"

[[targets]]
name = "web"
actions = ["restart-web"]            # the escalation ladder, in order
[targets.check]
type = "http"
url = "http://127.0.0.1:8080/"
interval = "2s"
timeout = "1s"
failure_threshold = 3
success_threshold = 1

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"
"""

PROCESS = {"name": "web", "command": ["sleep", "60"]}
TCP_CHECK = {"type": "tcp", "port": 8080}


def config_error(data: dict[str, Any], source: str = "f.toml") -> str:
    """The message of the ConfigError that *data* raises."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=source)
    return str(info.value)


def write(tmp_path: Path, text: str | bytes, name: str = "s.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


class TestSpecExample:
    def test_parses(self, tmp_path: Path) -> None:
        """The SPEC's example file loads, with every value as written."""
        config = load_config(write(tmp_path, SPEC_EXAMPLE))

        assert ("127.0.0.1", 3001) == (config.server.host, config.server.port)
        assert (10, 5.0, 1800.0) == (
            config.engine.max_consecutive_failures,
            config.engine.backoff_base,
            config.engine.backoff_max,
        )
        main = config.breakers["self-healing-main"]
        assert (5, 60.0, 1, 3, 1800.0) == (
            main.failure_threshold,
            main.recovery_timeout,
            main.half_open_max_calls,
            main.permanent_after_trips,
            main.permanent_window,
        )
        [process] = config.processes
        assert ("web", ["python3", "-m", "http.server", "8080"], 10.0) == (
            process.name,
            process.command,
            process.stop_timeout,
        )
        [target] = config.targets
        assert ("web", ["restart-web"]) == (target.name, target.actions)
        assert isinstance(target.check, HttpCheckConfig)
        assert ("http://127.0.0.1:8080/", 2.0, 1.0, 3, 1) == (
            target.check.url,
            target.check.interval,
            target.check.timeout,
            target.check.failure_threshold,
            target.check.success_threshold,
        )
        [action] = config.actions
        assert isinstance(action, RestartProcessActionConfig)
        assert ("restart-web", "web") == (action.name, action.process)

    def test_breaker_settings(self, tmp_path: Path) -> None:
        """breaker_settings() gives the registry's keyword settings."""
        config = load_config(write(tmp_path, SPEC_EXAMPLE))

        assert {
            "failure_threshold": 5,
            "recovery_timeout": 60.0,
            "half_open_max_calls": 1,
            "permanent_after_trips": 3,
            "permanent_window": 1800.0,
        } == config.breaker_settings("self-healing-main")

    def test_verify_timeout_default(self, tmp_path: Path) -> None:
        """verify_timeout defaults to interval x (failure_threshold + 2)."""
        config = load_config(write(tmp_path, SPEC_EXAMPLE))

        assert 2.0 * (3 + 2) == config.targets[0].effective_verify_timeout


class TestDefaults:
    def test_empty_document(self) -> None:
        """An empty document is the defaults: every section is optional."""
        config = parse_config({})

        assert Config() == config
        assert ("127.0.0.1", 3001, False) == (
            config.server.host,
            config.server.port,
            config.server.access_log,
        )
        assert (10, 5.0, 1800.0) == (
            config.engine.max_consecutive_failures,
            config.engine.backoff_base,
            config.engine.backoff_max,
        )
        assert ({}, {}, [], [], []) == (
            config.breakers,
            config.flags,
            config.processes,
            config.targets,
            config.actions,
        )
        assert ("logs", None, None) == (
            config.logging.dir,
            config.logging.debug,
            config.state.dir,
        )

    def test_breaker_defaults(self) -> None:
        """A named breaker section with no keys gets the guide's defaults."""
        config = parse_config({"breakers": {"db": {}}})

        assert {
            "failure_threshold": 5,
            "recovery_timeout": 60.0,
            "half_open_max_calls": 1,
            "permanent_after_trips": 3,
            "permanent_window": 1800.0,
        } == config.breaker_settings("db")

    def test_check_and_target_defaults(self) -> None:
        """A minimal target gets the documented probe and ladder defaults."""
        config = parse_config(
            {"targets": [{"name": "api", "check": TCP_CHECK}]}
        )

        [target] = config.targets
        check = target.check
        assert isinstance(check, TcpCheckConfig)
        assert ("127.0.0.1", 10.0, 1.0, 0.0, 3, 1) == (
            check.host,
            check.interval,
            check.timeout,
            check.initial_delay,
            check.failure_threshold,
            check.success_threshold,
        )
        assert ([], None, 1.0, None, None) == (
            target.actions,
            target.verify_timeout,
            target.verify_settle,
            target.relapse_window,
            target.breaker,
        )
        assert 10.0 * 5 == target.effective_verify_timeout

    def test_process_and_action_defaults(self) -> None:
        """Processes and actions get their documented defaults."""
        config = parse_config(
            {
                "processes": [PROCESS],
                "actions": [
                    {"name": "c", "type": "command", "command": ["true"]},
                    {"name": "h", "type": "http", "url": "http://x/"},
                ],
            }
        )

        [process] = config.processes
        assert (None, {}, "SIGTERM", 10.0, True) == (
            process.cwd,
            process.env,
            process.stop_signal,
            process.stop_timeout,
            process.autostart,
        )
        command, http = config.actions
        assert isinstance(command, CommandActionConfig)
        assert (30.0, 0) == (command.timeout, command.expected_exit_code)
        assert isinstance(http, HttpActionConfig)
        assert ("POST", None, None) == (
            http.method,
            http.expected_status,
            http.body,
        )

    def test_signal_names_are_normalised(self) -> None:
        """A stop signal may be written without SIG and in any case."""
        config = parse_config(
            {"processes": [{**PROCESS, "stop_signal": "int"}]}
        )

        assert "SIGINT" == config.processes[0].stop_signal

    def test_explicit_verify_timeout_wins(self) -> None:
        """A configured verify_timeout replaces the computed default."""
        config = parse_config(
            {
                "targets": [
                    {"name": "a", "check": TCP_CHECK, "verify_timeout": "7s"}
                ]
            }
        )

        assert 7.0 == config.targets[0].effective_verify_timeout


class TestDurations:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(30, 30.0, id="int"),
            pytest.param(2.5, 2.5, id="float"),
            pytest.param(0, 0.0, id="zero"),
            pytest.param("50ms", 0.05, id="ms"),
            pytest.param("5s", 5.0, id="s"),
            pytest.param("2m", 120.0, id="m"),
            pytest.param("1h", 3600.0, id="h"),
            pytest.param("1d", 86400.0, id="d"),
            pytest.param("1m30s", 90.0, id="combined"),
            pytest.param("1h 30m", 5400.0, id="spaced"),
            pytest.param("1.5s", 1.5, id="fraction"),
            pytest.param("5S", 5.0, id="upper-case"),
            pytest.param("12", 12.0, id="numeric-string"),
            pytest.param(timedelta(minutes=1), 60.0, id="timedelta"),
        ],
    )
    def test_accepted(self, value: object, expected: float) -> None:
        """Durations are numbers of seconds or strings with units."""
        assert expected == pytest.approx(parse_duration(value))

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("5x", id="unknown-unit"),
            pytest.param("", id="empty"),
            pytest.param("s", id="unit-only"),
            pytest.param("-5s", id="negative-string"),
            pytest.param(-1, id="negative"),
            pytest.param(True, id="true"),
            pytest.param(False, id="false"),
            pytest.param(math.inf, id="inf"),
            pytest.param(math.nan, id="nan"),
            pytest.param("inf", id="inf-string"),
            pytest.param(None, id="none"),
            pytest.param([5], id="list"),
            pytest.param(10**400, id="huge-int"),
        ],
    )
    def test_rejected(self, value: object) -> None:
        """Anything else is a ValueError that shows the value."""
        with pytest.raises(ValueError, match=r"duration") as info:
            parse_duration(value)

        assert repr(value) in str(info.value)

    def test_unknown_unit_lists_accepted_forms(self) -> None:
        """A bad unit's message shows the accepted forms."""
        with pytest.raises(ValueError) as info:
            parse_duration("5x")

        assert '"50ms", "5s", "2m" or "1h"' in str(info.value)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("50ms", 0.05, id="ms"),
            pytest.param("5s", 5.0, id="s"),
            pytest.param("2m", 120.0, id="m"),
            pytest.param("1h", 3600.0, id="h"),
            pytest.param("1m30s", 90.0, id="combined"),
            pytest.param(45, 45.0, id="number"),
        ],
    )
    def test_in_config(self, value: object, expected: float) -> None:
        """Every duration field of the config accepts these forms."""
        config = parse_config({"breakers": {"x": {"recovery_timeout": value}}})

        assert expected == pytest.approx(config.breakers["x"].recovery_timeout)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("5x", "expected a duration such as", id="unit"),
            pytest.param(-1, "a duration must be >= 0", id="negative"),
            pytest.param(True, "expected a duration, got True", id="bool"),
        ],
    )
    def test_errors_in_config(self, value: object, expected: str) -> None:
        """A bad duration names the file and the field."""
        message = config_error({"engine": {"backoff_base": value}})

        assert message.startswith("f.toml: ")
        assert f"engine.backoff_base: {expected}" in message

    def test_zero_where_positive_required(self) -> None:
        """A duration that must be positive refuses zero."""
        message = config_error({"engine": {"backoff_base": 0}})

        assert "engine.backoff_base: Input should be greater than 0" in (
            message
        )

    @given(
        number=st.integers(min_value=0, max_value=10**6),
        unit=st.sampled_from(["ms", "s", "m", "h", "d"]),
    )
    def test_units_scale(self, number: int, unit: str) -> None:
        """ "Ns" is N seconds, and other units scale it by their factor."""
        factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]

        assert number * factor == pytest.approx(
            parse_duration(f"{number}{unit}")
        )


class TestFieldPaths:
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            pytest.param(
                {
                    "targets": [
                        {"name": "a", "check": TCP_CHECK},
                        {"name": "b", "check": TCP_CHECK},
                        {
                            "name": "c",
                            "check": {"type": "http", "url": "ftp://x/"},
                        },
                    ]
                },
                "targets[2].check.url: expected an http:// or https:// URL",
                id="check-url",
            ),
            pytest.param(
                {"processes": [{"name": "p", "command": []}]},
                "processes[0].command: expected a non-empty list of strings",
                id="empty-command",
            ),
            pytest.param(
                {"processes": [{"name": "p", "command": "sleep 60"}]},
                "processes[0].command: Input should be a valid list",
                id="command-string",
            ),
            pytest.param(
                {"processes": [{"name": "p"}]},
                "processes[0].command: required key is missing",
                id="missing-command",
            ),
            pytest.param(
                {"processes": [{**PROCESS, "stop_signal": "SIGFOO"}]},
                "processes[0].stop_signal: expected a signal name",
                id="signal",
            ),
            pytest.param(
                {"targets": [{"name": "bad name", "check": TCP_CHECK}]},
                "targets[0].name: expected 1-64 letters, digits",
                id="name",
            ),
            pytest.param(
                {"server": {"port": 0}},
                "server.port: Input should be greater than or equal to 1",
                id="port",
            ),
            pytest.param(
                {"server": 5},
                "server: Input should be a valid dictionary",
                id="section-type",
            ),
            pytest.param(
                {"engine": {"backoff_base": "1h", "backoff_max": "1m"}},
                "engine: backoff_max (60.0s) is below backoff_base (3600.0s)",
                id="cap-below-base",
            ),
            pytest.param(
                {"targets": [{"name": "a", "check": {"type": "process"}}]},
                "targets[0].check: expected exactly one of process, "
                "pid_file or match, got none",
                id="process-check-none",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": {
                                "type": "process",
                                "pid_file": "x.pid",
                                "match": "x",
                            },
                        }
                    ]
                },
                "expected exactly one of process, pid_file or match, got "
                "pid_file, match",
                id="process-check-two",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": {
                                "type": "http",
                                "url": "http://x/",
                                "body_regex": "(",
                            },
                        }
                    ]
                },
                "targets[0].check.body_regex: not a valid regular expression",
                id="regex",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": {
                                "type": "http",
                                "url": "http://x/",
                                "expected_status": [200, 700],
                            },
                        }
                    ]
                },
                "targets[0].check.expected_status[1]: Input should be less "
                "than or equal to 599",
                id="status-code",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": {"type": "disk", "max_used_percent": 101},
                        }
                    ]
                },
                "targets[0].check.max_used_percent: Input should be less "
                "than or equal to 100",
                id="percent",
            ),
            pytest.param(
                {"actions": [{"name": "h", "type": "http"}]},
                "actions[0].url: required key is missing",
                id="action-missing-url",
            ),
            pytest.param(
                {
                    "actions": [
                        {"name": "c", "type": "command", "command": ["x"]},
                        {
                            "name": "h",
                            "type": "http",
                            "url": "http://x/",
                            "method": "TRACE",
                        },
                    ]
                },
                "actions[1].method: Input should be",
                id="action-method",
            ),
            pytest.param(
                {"breakers": {"db": {"failure_threshold": 0}}},
                "breakers.db.failure_threshold: Input should be greater than "
                "or equal to 1",
                id="breaker",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": TCP_CHECK,
                            "breaker": {"half_open_max_calls": 0},
                        }
                    ]
                },
                "targets[0].breaker.half_open_max_calls: Input should be "
                "greater than or equal to 1",
                id="target-breaker",
            ),
        ],
    )
    def test_error_names_file_field_and_expectation(
        self, data: dict[str, Any], expected: str
    ) -> None:
        """Each error names the file, the field path and what was expected."""
        message = config_error(data)

        assert message.startswith("f.toml: 1 error(s):\n  ")
        assert expected in message

    def test_every_error_is_listed(self) -> None:
        """All problems are reported at once, each on its own line."""
        message = config_error(
            {
                "server": {"port": 0},
                "engine": {"backoff_base": "5x"},
                "processes": [{"name": "p", "command": []}],
            }
        )

        lines = message.splitlines()
        assert "f.toml: 3 error(s):" == lines[0]
        assert {
            "server.port",
            "engine.backoff_base",
            "processes[0].command",
        } == {line.strip().split(":")[0] for line in lines[1:]}

    def test_error_where_is_the_file(self, tmp_path: Path) -> None:
        """A file's ConfigError carries the file as *where*."""
        path = write(tmp_path, "[server]\nport = 0\n")

        with pytest.raises(ConfigError) as info:
            load_config(path)

        assert str(path) == info.value.where
        assert "server.port" in info.value.detail

    def test_default_source(self) -> None:
        """Without a source, parse_config's errors say <config>."""
        with pytest.raises(ConfigError, match=r"^<config>: "):
            parse_config({"server": {"port": 0}})


def _check(**check: Any) -> dict[str, Any]:
    return {"targets": [{"name": "t", "check": check}]}


class TestWhatTheDaemonRefuses:
    @pytest.mark.parametrize(
        ("data", "path"),
        [
            pytest.param(
                {"processes": [{"name": "web:1", "command": ["true"]}]},
                "processes[0].name",
                id="process-name-colon",
            ),
            pytest.param(
                {"processes": [{"name": "selfhealing", "command": ["true"]}]},
                "processes[0].name",
                id="process-name-reserved",
            ),
            pytest.param(
                _check(
                    type="command", command=["true"], expected_exit_code=256
                ),
                "targets[0].check.expected_exit_code",
                id="check-exit-code",
            ),
            pytest.param(
                {
                    "actions": [
                        {
                            "name": "c",
                            "type": "command",
                            "command": ["true"],
                            "expected_exit_code": -1,
                        }
                    ]
                },
                "actions[0].expected_exit_code",
                id="action-exit-code",
            ),
            pytest.param(
                _check(type="http", url="http://x/", expected_status=[]),
                "targets[0].check.expected_status",
                id="check-no-status",
            ),
            pytest.param(
                {
                    "actions": [
                        {
                            "name": "h",
                            "type": "http",
                            "url": "http://x/",
                            "expected_status": [],
                        }
                    ]
                },
                "actions[0].expected_status",
                id="action-no-status",
            ),
            pytest.param(
                _check(type="tcp", host="", port=1),
                "targets[0].check.host",
                id="tcp-host",
            ),
            pytest.param(
                _check(type="process", match=""),
                "targets[0].check.match",
                id="match",
            ),
            pytest.param(
                _check(type="http", url="http://x/", body_contains=""),
                "targets[0].check.body_contains",
                id="body-contains",
            ),
            pytest.param(
                _check(type="http", url="http://x/", body_regex=""),
                "targets[0].check.body_regex",
                id="body-regex",
            ),
        ],
    )
    def test_refused_with_path(self, data: dict[str, Any], path: str) -> None:
        """What the daemon's objects would refuse, validation refuses first,
        naming the field, so `config check` never passes a file that
        `selfheal run` rejects."""
        message = config_error(data)

        assert f"\n  {path}: " in message


class TestUnknownKeys:
    @pytest.mark.parametrize(
        ("data", "path"),
        [
            pytest.param({"bogus": 1}, "bogus", id="top"),
            pytest.param(
                {"server": {"bogus": 1}}, "server.bogus", id="server"
            ),
            pytest.param(
                {"engine": {"bogus": 1}}, "engine.bogus", id="engine"
            ),
            pytest.param({"state": {"bogus": 1}}, "state.bogus", id="state"),
            pytest.param(
                {"logging": {"bogus": 1}}, "logging.bogus", id="logging"
            ),
            pytest.param(
                {"breakers": {"db": {"bogus": 1}}},
                "breakers.db.bogus",
                id="breaker",
            ),
            pytest.param(
                {"processes": [{**PROCESS, "bogus": 1}]},
                "processes[0].bogus",
                id="process",
            ),
            pytest.param(
                {"targets": [{"name": "a", "check": TCP_CHECK, "bogus": 1}]},
                "targets[0].bogus",
                id="target",
            ),
            pytest.param(
                {
                    "targets": [
                        {"name": "a", "check": {**TCP_CHECK, "bogus": 1}}
                    ]
                },
                "targets[0].check.bogus",
                id="check",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": TCP_CHECK,
                            "breaker": {"bogus": 1},
                        }
                    ]
                },
                "targets[0].breaker.bogus",
                id="target-breaker",
            ),
            pytest.param(
                {
                    "actions": [
                        {
                            "name": "c",
                            "type": "command",
                            "command": ["x"],
                            "bogus": 1,
                        }
                    ]
                },
                "actions[0].bogus",
                id="action",
            ),
            pytest.param(
                {
                    "targets": [
                        {
                            "name": "a",
                            "check": {"type": "tcp", "port": 1, "url": "x"},
                        }
                    ]
                },
                "targets[0].check.url",
                id="key-of-another-check-type",
            ),
        ],
    )
    def test_unknown_key(self, data: dict[str, Any], path: str) -> None:
        """A misspelt key at any level is an error at its path."""
        message = config_error(data)

        assert f"{path}: unknown key" in message


class TestTypeTags:
    def test_unknown_check_type(self) -> None:
        """A wrong check type lists the check types there are."""
        message = config_error(
            {"targets": [{"name": "a", "check": {"type": "ping"}}]}
        )

        assert (
            "targets[0].check.type: unknown type 'ping', expected one of "
            "'http', 'tcp', 'process', 'command', 'disk', 'memory'"
        ) in message

    def test_unknown_action_type(self) -> None:
        """A wrong action type lists the action types there are."""
        message = config_error({"actions": [{"name": "a", "type": "reboot"}]})

        assert (
            "actions[0].type: unknown type 'reboot', expected one of "
            "'restart_process', 'command', 'http'"
        ) in message

    def test_missing_type(self) -> None:
        """A check without a type says the type is missing."""
        message = config_error(
            {"targets": [{"name": "a", "check": {"port": 1}}]}
        )

        assert "targets[0].check.type: missing" in message

    def test_tag_not_in_path(self) -> None:
        """The union member's tag never shows up as a path segment."""
        message = config_error(
            {"targets": [{"name": "a", "check": {"type": "tcp"}}]}
        )

        assert "targets[0].check.port: required key is missing" in message
        assert ".tcp." not in message


class TestReferences:
    def test_restart_of_unknown_process(self) -> None:
        """restart_process naming an unknown process is an error."""
        message = config_error(
            {
                "processes": [PROCESS],
                "actions": [
                    {"name": "r", "type": "restart_process", "process": "web"},
                    {"name": "q", "type": "restart_process", "process": "db"},
                ],
            }
        )

        assert "actions[1].process: unknown process 'db' (known: web)" in (
            message
        )

    def test_unknown_process_with_none_known(self) -> None:
        """With no processes at all, the error says none are known."""
        message = config_error(
            {
                "actions": [
                    {"name": "r", "type": "restart_process", "process": "x"}
                ]
            }
        )

        assert "actions[0].process: unknown process 'x' (known: none)" in (
            message
        )

    def test_target_naming_unknown_action(self) -> None:
        """A target's ladder naming an unknown action is an error."""
        message = config_error(
            {
                "actions": [
                    {"name": "b", "type": "command", "command": ["true"]},
                    {"name": "a", "type": "command", "command": ["true"]},
                ],
                "targets": [
                    {"name": "t", "check": TCP_CHECK, "actions": ["a", "c"]}
                ],
            }
        )

        assert "targets[0].actions[1]: unknown action 'c' (known: a, b)" in (
            message
        )

    def test_process_check_of_unknown_process(self) -> None:
        """A process check naming an unknown process is an error."""
        message = config_error(
            {
                "processes": [PROCESS],
                "targets": [
                    {
                        "name": "t",
                        "check": {"type": "process", "process": "db"},
                    }
                ],
            }
        )

        assert (
            "targets[0].check.process: unknown process 'db' (known: web)"
            in (message)
        )

    def test_all_reference_errors_listed(self) -> None:
        """Several broken references are reported together."""
        message = config_error(
            {
                "actions": [
                    {"name": "r", "type": "restart_process", "process": "x"}
                ],
                "targets": [
                    {"name": "t", "check": TCP_CHECK, "actions": ["y"]}
                ],
            }
        )

        assert message.startswith("f.toml: 2 error(s):")
        assert "actions[0].process" in message
        assert "targets[0].actions[0]" in message

    def test_valid_references(self) -> None:
        """Known names resolve: a full process/action/target set parses."""
        config = parse_config(
            {
                "processes": [PROCESS],
                "actions": [
                    {"name": "r", "type": "restart_process", "process": "web"}
                ],
                "targets": [
                    {
                        "name": "t",
                        "check": {"type": "process", "process": "web"},
                        "actions": ["r"],
                    }
                ],
            }
        )

        check = config.targets[0].check
        assert isinstance(check, ProcessCheckConfig)
        assert "web" == check.process

    @pytest.mark.parametrize(
        ("section", "item"),
        [
            pytest.param("processes", PROCESS, id="processes"),
            pytest.param(
                "targets", {"name": "web", "check": TCP_CHECK}, id="targets"
            ),
            pytest.param(
                "actions",
                {"name": "web", "type": "command", "command": ["true"]},
                id="actions",
            ),
        ],
    )
    def test_duplicate_names(self, section: str, item: dict[str, Any]) -> None:
        """Two entries with one name in a section is an error."""
        other = {**item, "name": "other"}
        message = config_error({section: [item, other, item]})

        assert (
            f"{section}[2].name: duplicate name 'web' (also {section}[0])"
        ) in message

    def test_same_name_across_sections(self) -> None:
        """A process, a target and an action may share a name."""
        config = parse_config(
            {
                "processes": [PROCESS],
                "actions": [
                    {
                        "name": "web",
                        "type": "restart_process",
                        "process": "web",
                    }
                ],
                "targets": [
                    {"name": "web", "check": TCP_CHECK, "actions": ["web"]}
                ],
            }
        )

        assert ["web"] == config.targets[0].actions


class TestFlags:
    @pytest.mark.parametrize("name", FLAG_NAMES)
    @pytest.mark.parametrize("value", [True, False])
    def test_known_flags(self, name: str, value: bool) -> None:
        """The four flag names take booleans."""
        assert {name: value} == parse_config({"flags": {name: value}}).flags

    def test_unknown_flag(self) -> None:
        """Any other name is an error that lists the four."""
        message = config_error({"flags": {"FEATURE_TELEPATHY": True}})

        assert (
            "flags: unknown flag 'FEATURE_TELEPATHY'; expected one of "
            + ", ".join(FLAG_NAMES)
        ) in message

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("maybe", id="word"),
            pytest.param(2, id="two"),
            pytest.param([True], id="list"),
            pytest.param({"on": True}, id="table"),
        ],
    )
    def test_non_boolean(self, value: object) -> None:
        """A value that is no boolean is an error at the flag's path."""
        name = FLAG_NAMES[0]
        message = config_error({"flags": {name: value}})

        assert f"flags.{name}: Input should be a valid boolean" in message


class TestLoading:
    def test_invalid_toml(self, tmp_path: Path) -> None:
        """Invalid TOML is a ConfigError with the parser's line and column."""
        path = write(tmp_path, '[server]\nport = 3001\nhost = "x\n')

        with pytest.raises(ConfigError) as info:
            load_config(path)

        message = str(info.value)
        assert message.startswith(f"{path}: invalid TOML: ")
        assert "line 3, column" in message

    def test_duplicate_toml_key(self, tmp_path: Path) -> None:
        """A key given twice is the parser's error, not a silent override."""
        path = write(tmp_path, "[server]\nport = 1\nport = 2\n")

        with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3"):
            load_config(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 is a ConfigError naming the file."""
        path = write(tmp_path, b'[server]\nhost = "caf\xe9"\n')

        with pytest.raises(ConfigError) as info:
            load_config(path)

        assert f"{path}: not UTF-8 text" == str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError saying so."""
        path = tmp_path / "nope.toml"

        with pytest.raises(ConfigError) as info:
            load_config(path)

        assert f"{path}: file not found" == str(info.value)

    def test_directory(self, tmp_path: Path) -> None:
        """A directory where a file should be is a ConfigError."""
        with pytest.raises(ConfigError, match=r"cannot read"):
            load_config(tmp_path)

    def test_string_path(self, tmp_path: Path) -> None:
        """load_config takes a str path too."""
        path = write(tmp_path, "[server]\nport = 4000\n")

        assert 4000 == load_config(str(path)).server.port

    def test_no_file_in_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """load_config(None) without selfheal.toml here gives the defaults."""
        monkeypatch.chdir(tmp_path)

        assert Config() == load_config(None)

    def test_file_in_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """load_config(None) reads ./selfheal.toml when it exists."""
        write(tmp_path, "[server]\nport = 4000\n", name="selfheal.toml")
        monkeypatch.chdir(tmp_path)

        assert 4000 == load_config().server.port

    def test_invalid_file_in_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An invalid ./selfheal.toml is an error, never silently skipped."""
        write(tmp_path, "[server]\nport = 0\n", name="selfheal.toml")
        monkeypatch.chdir(tmp_path)

        with pytest.raises(ConfigError, match=r"^selfheal.toml: "):
            load_config()

    def test_config_is_frozen(self) -> None:
        """A loaded config cannot be changed by accident."""
        config = parse_config({})

        with pytest.raises(ValueError, match=r"frozen"):
            config.server.port = 1  # type: ignore[misc]

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param(
                "[engine]\nbackoff_base = " + "9" * 400 + "\n",
                id="huge-duration",
            ),
            pytest.param("a = " + "[" * 5000 + "]" * 5000 + "\n", id="deep"),
            pytest.param(
                '[[targets]]\nname = "a"\n[targets.check]\ntype = "http"\n'
                'url = "http://x/"\nbody_regex = "a{4294967296}"\n',
                id="huge-regex-repeat",
            ),
            pytest.param(
                '[[targets]]\nname = "a"\n[targets.check]\ntype = "http"\n'
                f'url = "http://x/"\nbody_regex = "{"(" * 5000}{")" * 5000}"\n',
                id="deep-regex",
            ),
        ],
    )
    def test_pathological_input(self, tmp_path: Path, text: str) -> None:
        """Extreme but parseable input is a ConfigError, not a crash."""
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text))

        assert str(info.value).startswith(str(tmp_path))


# ------------------------------------------------------------------ fuzzing

# Key names the schema knows, so random documents reach deep validation.
_KEYS = sorted(
    {
        *Config.model_fields,
        "host",
        "port",
        "name",
        "type",
        "check",
        "command",
        "process",
        "url",
        "interval",
        "timeout",
        "failure_threshold",
        "success_threshold",
        "backoff_base",
        "recovery_timeout",
        "actions",
        "stop_signal",
        "body_regex",
        "expected_status",
        "pid_file",
        "match",
        "max_used_percent",
        "self-healing-main",
        *FLAG_NAMES,
    }
)
_TYPES = [
    "http",
    "tcp",
    "process",
    "command",
    "disk",
    "memory",
    "restart_process",
]

keys = st.sampled_from(_KEYS) | st.text(min_size=1, max_size=8)
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([*_TYPES, "5s", "50ms", "1m30s", "5x", "http://x/"])
    | st.dates()
    | st.datetimes()
    | st.times()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=6)


def toml_key(key: str) -> str:
    return json.dumps(key)


def toml_value(value: object) -> str:  # noqa: PLR0911 (one per TOML type)
    """A value in TOML syntax: tables and arrays inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return (
        "{"
        + ", ".join(
            f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()
        )
        + "}"
    )


def toml_document(document: dict[str, Any]) -> str:
    """Top-level tables as [sections] and arrays of tables, the rest inline."""
    lines = []
    tables = []
    for key, value in document.items():
        if isinstance(value, dict):
            tables.append((f"[{toml_key(key)}]", value))
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) for v in value)
        ):
            tables.extend((f"[[{toml_key(key)}]]", item) for item in value)
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for header, table in tables:
        lines.append(header)
        lines.extend(
            f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()
        )
    return "\n".join(lines) + "\n"


class TestFuzz:
    @settings(
        max_examples=300,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(document=documents)
    @example(document={"engine": {"backoff_base": 10**18}})
    @example(document={"targets": [{"name": "a", "check": {"type": "tcp"}}]})
    def test_random_documents(self, tmp_path: Path, document: dict) -> None:
        """Any document loads to a Config or raises ConfigError, nothing else."""
        path = write(tmp_path, toml_document(document))

        result: Config | ConfigError
        try:
            result = load_config(path)
        except ConfigError as exc:
            result = exc
        assert isinstance(result, Config) or str(result).startswith(str(path))

    @settings(
        max_examples=200,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(raw=st.binary(max_size=200))
    @example(raw=b"\xff\xfe")
    @example(raw=b"a = [[[[[[[[")
    def test_random_bytes(self, tmp_path: Path, raw: bytes) -> None:
        """Any bytes load to a Config or raise ConfigError, nothing else."""
        path = write(tmp_path, raw)

        result: Config | ConfigError
        try:
            result = load_config(path)
        except ConfigError as exc:
            result = exc
        assert isinstance(result, Config | ConfigError)

    def test_writer_round_trips(self, tmp_path: Path) -> None:
        """The fuzzer's TOML writer encodes the SPEC example's shapes."""
        document = {
            "server": {"port": 4000},
            "processes": [PROCESS],
            "targets": [{"name": "t", "check": {"type": "tcp", "port": 1}}],
        }

        config = load_config(write(tmp_path, toml_document(document)))

        assert (4000, "web", "t") == (
            config.server.port,
            config.processes[0].name,
            config.targets[0].name,
        )


class TestCli:
    def test_valid_file(self, tmp_path: Path) -> None:
        """`selfheal config check` on a valid file exits 0 with a summary."""
        path = write(tmp_path, SPEC_EXAMPLE)

        result = CliRunner().invoke(app, ["config", "check", str(path)])

        assert 0 == result.exit_code
        assert (
            f"{path}: OK (1 processes, 1 targets, 1 actions, 1 breakers)\n"
            == result.stdout
        )

    def test_invalid_file(self, tmp_path: Path) -> None:
        """An invalid file exits 1 with every error on stderr, no traceback."""
        path = write(
            tmp_path, '[server]\nport = 0\n[engine]\nbackoff_base = "5x"\n'
        )

        result = CliRunner().invoke(app, ["config", "check", str(path)])

        assert 1 == result.exit_code
        assert "" == result.stdout
        assert f"{path}: 2 error(s):" in result.stderr
        assert "server.port:" in result.stderr
        assert "engine.backoff_base:" in result.stderr
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, ConfigError)

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            pytest.param(None, "file not found", id="missing"),
            pytest.param(b"a = \n", "invalid TOML", id="toml"),
            pytest.param(b"\xff", "not UTF-8 text", id="encoding"),
        ],
    )
    def test_unreadable_file(
        self, tmp_path: Path, content: bytes | None, expected: str
    ) -> None:
        """Files that cannot be parsed exit 1 with the reason on stderr."""
        path = tmp_path / "s.toml"
        if content is not None:
            path.write_bytes(content)

        result = CliRunner().invoke(app, ["config", "check", str(path)])

        assert 1 == result.exit_code
        assert f"{path}: {expected}" in result.stderr
        assert "Traceback" not in result.output
