"""Hypothesis-generated config files and flag files.

Whatever a selfheal.toml, a .env or a .env.local holds, the loader answers
with a valid configuration or a ConfigError (FlagValueError for a flag)
that says where the problem is: the file, and the field path or the line.
No other exception, and no traceback in front of a user: a few of the
generated files also go through ``selfheal config check`` and ``selfheal
run`` as subprocesses.

Documents come three ways: structures shaped like the contract (known
sections and keys, plausible and random values), mutations of a rich valid
config (one value replaced, one key dropped or added), and random text or
bytes. A loaded configuration must also build a Runtime, or be refused
with a ConfigError there.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import tempfile

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from selfhealing import childenv
from selfhealing.config import Config, load_config
from selfhealing.envfiles import EnvSettings
from selfhealing.exceptions import ConfigError, FlagValueError
from selfhealing.flags import FLAG_NAMES, FeatureFlags
from selfhealing.runtime import Runtime
from support import free_port


pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=int(os.environ.get("SELFHEAL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------ TOML writer


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, but for DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:  # noqa: PLR0911 (one return per type)
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
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()
            )
            + "}"
        )
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    return "".join(
        f"{toml_string(key)} = {toml_value(value)}\n"
        for key, value in data.items()
    )


# ------------------------------------------------------------- strategies

TEXT = st.text(
    st.characters(exclude_categories=["Cs"]), max_size=30
)  # TOML strings hold no lone surrogates
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    TEXT,
)
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(TEXT, inner, max_size=4),
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(
    ["web", "api", "restart-web", "fix", "ask", "x" * 65, "bad name", ""]
)
DURATIONS = st.one_of(
    st.sampled_from(
        ["50ms", "5s", "2m", "1h", "0s", "-1s", "1.5s", "5 s", "1d", "ms", ""]
    ),
    st.floats(),
    st.integers(-10, 10**12),
    TEXT,
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "port": st.integers(-5, 70000),
    "host": st.sampled_from(
        ["127.0.0.1", "0.0.0.0", "::1", "", "localhost"]  # noqa: S104
    ),
    "name": NAMES,
    "process": NAMES,
    "allowed": st.lists(NAMES, max_size=3),
    "actions": st.lists(NAMES, max_size=3),
    "type": st.sampled_from(
        [
            "http",
            "tcp",
            "process",
            "command",
            "disk",
            "memory",
            "restart_process",
            "llm",
            "nope",
        ]
    ),
    "command": st.one_of(
        st.lists(TEXT, max_size=3), st.sampled_from([["true"], [""], "true"])
    ),
    "url": st.sampled_from(
        ["http://127.0.0.1:1/", "https://x", "ftp://x", "http://", "nope"]
    ),
    "urls": st.lists(
        st.sampled_from(["json://localhost", "mailto://x", "nope://", ""]),
        max_size=2,
    ),
    "stop_signal": st.sampled_from(["SIGTERM", "term", "SIGNOPE", "9", ""]),
    "body_regex": st.sampled_from(["ok", "(", "a{99999999999}", "(" * 300]),
    "condition": st.one_of(
        st.sampled_from(
            [
                "rss > 500MB for 2m",
                "rss will reach 1GB within 30m",
                "disk / used% will reach 95 within 1h",
                "disk /nowhere used% > 90 for 5m",
                "cpu > 90 for 0s",
                "rss will reach 1GB within 1s over 100d",
                "fds > -1 for 1m",
            ]
        ),
        TEXT,
    ),
    "method": st.sampled_from(["GET", "POST", "get", "BREW"]),
    "expected_status": st.lists(st.integers(0, 1000), max_size=3),
    "max_used_percent": st.floats(-10, 200),
    "env": st.dictionaries(TEXT, st.one_of(TEXT, st.integers()), max_size=2),
    "headers": st.dictionaries(TEXT, TEXT, max_size=2),
}
for _key in (
    "interval",
    "timeout",
    "initial_delay",
    "stop_timeout",
    "verify_timeout",
    "verify_settle",
    "relapse_window",
    "backoff_base",
    "backoff_max",
    "recovery_timeout",
    "permanent_window",
    "cooldown",
    "window",
    "deadline",
    "min_interval",
    "retry_max",
):
    PLAUSIBLE[_key] = DURATIONS
for _key in (
    "failure_threshold",
    "success_threshold",
    "half_open_max_calls",
    "permanent_after_trips",
    "max_consecutive_failures",
    "retention",
    "ring",
    "max_tokens",
    "max_per_hour",
    "expected_exit_code",
):
    PLAUSIBLE[_key] = st.integers(-3, 2**40)

CHECK_KEYS = [
    "type",
    "interval",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "url",
    "method",
    "expected_status",
    "body_regex",
    "headers",
    "host",
    "port",
    "process",
    "pid_file",
    "match",
    "command",
    "expected_exit_code",
    "path",
    "max_used_percent",
]
SECTIONS: dict[str, list[str]] = {
    "server": ["host", "port", "access_log"],
    "engine": ["max_consecutive_failures", "backoff_base", "backoff_max"],
    "state": ["dir", "retention"],
    "logging": ["dir", "debug"],
    "llm": ["model", "base_url", "timeout", "deadline", "max_tokens"],
    "resources": ["interval", "ring", "disk_paths"],
    "notifications": ["urls", "targets", "min_interval", "max_per_hour"],
}
LISTS: dict[str, list[str]] = {
    "processes": ["name", "command", "stop_signal", "stop_timeout", "env"],
    "targets": [
        "name",
        "check",
        "actions",
        "verify_timeout",
        "verify_settle",
        "relapse_window",
    ],
    "actions": [
        "name",
        "type",
        "process",
        "command",
        "url",
        "allowed",
        "timeout",
    ],
    "preventive": ["name", "condition", "action", "process", "cooldown"],
}


def value_for(key: str) -> st.SearchStrategy[Any]:
    if key == "check":
        return st.one_of(_entry_values(CHECK_KEYS), ANYTHING)
    plausible = PLAUSIBLE.get(key)
    if plausible is None:
        return ANYTHING
    return st.one_of(plausible, plausible, ANYTHING)


@st.composite
def _entry_values(draw: Any, keys: list[str]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(keys), unique=True))
    table = {key: draw(value_for(key)) for key in chosen}
    if draw(st.booleans()):
        table.update(draw(st.dictionaries(TEXT, ANYTHING, max_size=1)))
    return table


@st.composite
def documents(draw: Any) -> dict[str, Any]:
    """A document shaped like the contract, filled with what may be wrong."""
    document: dict[str, Any] = {}
    for section, keys in SECTIONS.items():
        if draw(st.booleans()):
            document[section] = draw(st.one_of(_entry_values(keys), ANYTHING))
    for section, keys in LISTS.items():
        if draw(st.booleans()):
            document[section] = draw(
                st.one_of(st.lists(_entry_values(keys), max_size=3), ANYTHING)
            )
    if draw(st.booleans()):
        document["flags"] = draw(
            st.dictionaries(
                st.one_of(st.sampled_from(FLAG_NAMES), TEXT),
                st.one_of(st.booleans(), ANYTHING),
                max_size=2,
            )
        )
    if draw(st.booleans()):
        document["breakers"] = draw(
            st.dictionaries(
                NAMES,
                st.one_of(
                    _entry_values(
                        [
                            "failure_threshold",
                            "recovery_timeout",
                            "half_open_max_calls",
                            "permanent_after_trips",
                            "permanent_window",
                        ]
                    ),
                    ANYTHING,
                ),
                max_size=2,
            )
        )
    document.update(draw(st.dictionaries(TEXT, ANYTHING, max_size=1)))
    return document


# A config using every kind of section, check and action: valid as is.
VALID: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 3001},
    "engine": {"backoff_base": "5s", "backoff_max": "30m"},
    "breakers": {"self-healing-main": {"failure_threshold": 5}},
    "flags": {"FEATURE_PREVENTIVE_HEALING_ENABLED": False},
    "state": {"dir": ".selfhealing", "retention": 1000},
    "resources": {"interval": "5s", "disk_paths": ["/"]},
    "processes": [
        {"name": "web", "command": ["python3", "-m", "http.server", "8080"]}
    ],
    "targets": [
        {
            "name": "web",
            "actions": ["restart-web", "ask"],
            "check": {
                "type": "http",
                "url": "http://127.0.0.1:8080/",
                "body_regex": "o+k",
                "expected_status": [200],
            },
        },
        {"name": "port", "check": {"type": "tcp", "port": 8080}},
        {"name": "proc", "check": {"type": "process", "process": "web"}},
        {"name": "cmd", "check": {"type": "command", "command": ["true"]}},
        {"name": "disk", "check": {"type": "disk", "max_used_percent": 95}},
        {"name": "mem", "check": {"type": "memory", "max_used_percent": 95}},
    ],
    "actions": [
        {"name": "restart-web", "type": "restart_process", "process": "web"},
        {"name": "fix", "type": "command", "command": ["true"]},
        {"name": "hook", "type": "http", "url": "http://127.0.0.1:9/"},
        {"name": "ask", "type": "llm", "allowed": ["fix", "restart-web"]},
    ],
    "llm": {"timeout": "20s", "keys": [{"env": "MY_KEY"}]},
    "preventive": [
        {
            "name": "leak",
            "condition": "rss will reach 1GB within 30m",
            "action": "restart-web",
            "process": "web",
        },
        {
            "name": "full",
            "condition": "disk / used% > 95 for 5m",
            "action": "fix",
        },
    ],
}


def paths(
    value: Any, prefix: tuple[Any, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside *value* (dict keys, list indexes)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from paths(inner, (*prefix, index))


VALID_PATHS = list(paths(VALID))


@st.composite
def mutations(draw: Any) -> dict[str, Any]:
    """VALID with one value replaced, or one key dropped, or one added."""
    document = copy.deepcopy(VALID)
    path = draw(st.sampled_from(VALID_PATHS))
    *parents, last = path
    holder: Any = document
    for step in parents:
        holder = holder[step]
    how = draw(st.sampled_from(["replace", "drop", "add"]))
    if how == "replace":
        key = last if isinstance(last, str) else str(parents[-1])
        holder[last] = draw(value_for(key))
    elif how == "drop" and isinstance(holder, dict):
        del holder[last]
    elif isinstance(holder[last], dict):
        holder[last][draw(TEXT)] = draw(ANYTHING)
    return document


# ------------------------------------------------------------- the oracle

_FIELD = re.compile(r"^  \S.*: .+", re.MULTILINE)


def load_or_refuse(
    path: Path, directory: Path, outcome: Callable[[str], object] = event
) -> str:
    """Load *path* and build a Runtime; "ok" or the ConfigError's text.
    Anything else raises, and fails the test. *outcome* hears which."""
    refused: ConfigError | None = None
    try:
        config = load_config(path)
    except ConfigError as exc:
        refused = exc
    if refused is not None:
        assert str(path) == refused.where, refused
        assert refused.detail.strip(), refused
        if refused.detail[0].isdigit():  # "N error(s):", a line each
            assert _FIELD.search(refused.detail), refused.detail
        outcome("refused by load_config")
        return str(refused)
    assert isinstance(config, Config)
    try:
        Runtime(config, directory=directory, environ={}, persistent=False)
    except ConfigError as exc:
        refused = exc
    if refused is not None:
        assert refused.where, refused
        outcome("refused by Runtime")
        return str(refused)
    outcome("loaded and built")
    return "ok"


@pytest.fixture(autouse=True)
def _restore_withheld() -> Iterator[None]:
    """A Runtime withholds its [llm] key variables from children, process
    wide: generated names must not outlive the test (one may be PATH)."""
    saved = set(childenv._withheld)
    yield
    childenv._withheld.clear()
    childenv._withheld.update(saved)


@pytest.fixture(name="workdir", scope="class")
def _workdir() -> Iterator[Path]:
    """One directory per class (hypothesis runs many examples in it)."""
    with tempfile.TemporaryDirectory(prefix="selfheal-fuzz-") as name:
        yield Path(name)


class TestConfigFiles:
    @FUZZ
    @given(document=documents())
    def test_contract_shaped_documents(
        self, workdir: Path, document: dict[str, Any]
    ) -> None:
        """A document with the contract's sections and keys and any values:
        loaded and built, or refused naming the file and the field."""
        path = workdir / "selfheal.toml"
        path.write_text(toml_document(document), encoding="utf-8")
        load_or_refuse(path, workdir)

    @FUZZ
    @given(document=mutations())
    def test_mutated_valid_documents(
        self, workdir: Path, document: dict[str, Any]
    ) -> None:
        """A rich valid config with one thing changed: loaded and built,
        or refused naming the file and the field."""
        path = workdir / "selfheal.toml"
        path.write_text(toml_document(document), encoding="utf-8")
        load_or_refuse(path, workdir)

    def test_the_valid_document_is_valid(self, workdir: Path) -> None:
        """The base of the mutations loads and builds as it is."""
        path = workdir / "selfheal.toml"
        path.write_text(toml_document(VALID), encoding="utf-8")
        assert "ok" == load_or_refuse(path, workdir, outcome=print)

    @FUZZ
    @given(
        raw=st.one_of(
            st.binary(max_size=300),
            st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")),
            st.lists(
                st.sampled_from(
                    [
                        b"[server]",
                        b"[[targets]]",
                        b'name = "x"',
                        b"port = 3001",
                        b"[targets.check]",
                        b'type = "http"',
                        b"a = [" * 50,
                        b"[" * 2000,
                        b"= 1",
                        b'"\\ud800" = 1',
                        b"\xff\xfe",
                        b"x = 1979-05-27T07:32:00Z",
                    ]
                ),
                max_size=8,
            ).map(b"\n".join),
        )
    )
    def test_random_bytes(self, workdir: Path, raw: bytes) -> None:
        """Arbitrary bytes: never anything but a Config or a ConfigError."""
        path = workdir / "selfheal.toml"
        path.write_bytes(raw)
        load_or_refuse(path, workdir)


# ------------------------------------------------------------- flag files

BOOL_WORDS = ["true", "false", "1", "0", "yes", "no", "on", "off"]
FLAG_VALUES = st.one_of(
    st.sampled_from(BOOL_WORDS).flatmap(
        lambda word: st.sampled_from(
            [word, word.upper(), word.capitalize(), f" {word} "]
        )
    ),
    st.sampled_from(["flase", "tru", "2", "", "enabled", "null", "ON!"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=10),
)
# Simple words: python-dotenv reads NAME=WORD as exactly that.
SIMPLE_VALUES = st.sampled_from(
    BOOL_WORDS + [w.upper() for w in BOOL_WORDS] + ["flase", "2", "enabled"]
)
FLAG_NAME = st.sampled_from(FLAG_NAMES)
LINES = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", FLAG_NAME, FLAG_VALUES),
    st.builds(lambda n, v: f"export {n}={v}", FLAG_NAME, SIMPLE_VALUES),
    st.builds(lambda n, v: f'{n}="{v}"', FLAG_NAME, SIMPLE_VALUES),
    st.builds(lambda n, v: f"{n}={v} # why", FLAG_NAME, SIMPLE_VALUES),
    st.builds(lambda n: n, FLAG_NAME),  # a name without a value
    st.sampled_from(["", "# comment", "OTHER=1", "=oops", "DEBUG=*", "'"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
ENDINGS = st.sampled_from(["\n", "\r\n"])


def strongest(
    directory: Path,
    environ: dict[str, str],
    files: dict[str, list[tuple[str, str]]],
    name: str,
) -> tuple[str, str, int | None] | None:
    """(value, file, line) the oracle expects for *name*, from simple files."""
    if name in environ:
        return environ[name], "environment", None
    for file in (".env.local", ".env"):
        found = [
            (value, file, number)
            for number, (key, value) in enumerate(files[file], start=1)
            if key == name
        ]
        if found:
            value, _, number = found[-1]
            shown = str(directory / file)
            return value, shown, number
    return None


class TestFlagFiles:
    @FUZZ
    @given(
        dotenv=st.lists(LINES, max_size=8),
        local=st.lists(LINES, max_size=8),
        environ=st.dictionaries(FLAG_NAME, FLAG_VALUES, max_size=2),
        ending=ENDINGS,
    )
    def test_any_lines_load_or_name_the_flag_file_and_line(
        self,
        workdir: Path,
        dotenv: list[str],
        local: list[str],
        environ: dict[str, str],
        ending: str,
    ) -> None:
        """Random .env and .env.local lines: the settings never raise; the
        flags load, or refuse with FILE:LINE: NAME=VALUE naming the value
        that wins; a Runtime refuses exactly when the flags do."""
        (workdir / ".env").write_text(ending.join(dotenv), encoding="utf-8")
        (workdir / ".env.local").write_text(
            ending.join(local), encoding="utf-8"
        )
        settings_ = EnvSettings(workdir, environ)
        for error in settings_.errors:
            assert isinstance(error, ConfigError)
            assert re.fullmatch(r".+:\d+", error.where or ""), error
        refused: FlagValueError | None = None
        try:
            flags = FeatureFlags(settings=settings_)
        except FlagValueError as exc:
            refused = exc
        if refused is not None:
            event(f"refused: {Path(refused.file or '').name}")
            setting = settings_.get(refused.name)
            assert setting is not None
            assert setting.value == refused.value
            assert (setting.file or "environment", setting.line) == (
                refused.file,
                refused.line,
            )
            assert str(refused) == (
                f"{setting.where}: {refused.name}={refused.value} is not a "
                "boolean (use true/false, 1/0, yes/no, on/off)"
            )
            with pytest.raises(FlagValueError) as again:
                Runtime(directory=workdir, environ=environ, persistent=False)
            assert str(refused) == str(again.value)
            return
        event("flags loaded")
        for name, value in flags.snapshot().items():
            setting = settings_.get(name)
            expected = (
                True
                if setting is None
                else setting.value.strip().lower()
                in {"true", "1", "yes", "on"}
            )
            assert expected is value.enabled
        Runtime(directory=workdir, environ=environ, persistent=False)
        # A live reload of other random lines never raises either.
        (workdir / ".env.local").write_text("\n".join(dotenv))
        for error in flags.reload():
            assert error.name in FLAG_NAMES

    @FUZZ
    @given(
        dotenv=st.lists(st.tuples(FLAG_NAME, SIMPLE_VALUES), max_size=6),
        local=st.lists(st.tuples(FLAG_NAME, SIMPLE_VALUES), max_size=6),
        environ=st.dictionaries(FLAG_NAME, SIMPLE_VALUES, max_size=2),
    )
    def test_simple_files_follow_the_precedence_exactly(
        self,
        workdir: Path,
        dotenv: list[tuple[str, str]],
        local: list[tuple[str, str]],
        environ: dict[str, str],
    ) -> None:
        """NAME=WORD lines only, against an independent oracle: environment
        over .env.local over .env, the last line wins, and the first flag
        (in FLAG_NAMES order) whose winning value is not a boolean is the
        error, with its file and line."""
        files = {".env": dotenv, ".env.local": local}
        for file, lines in files.items():
            (workdir / file).write_text(
                "".join(f"{k}={v}\n" for k, v in lines), encoding="utf-8"
            )
        expected_error = None
        expected: dict[str, bool] = {}
        for name in FLAG_NAMES:
            found = strongest(workdir, environ, files, name)
            if found is None:
                expected[name] = True
                continue
            value, file, line = found
            word = value.strip().lower()
            if word in {"true", "1", "yes", "on"}:
                expected[name] = True
            elif word in {"false", "0", "no", "off"}:
                expected[name] = False
            elif expected_error is None:
                expected_error = (name, value, file, line)
        refused: FlagValueError | None = None
        try:
            flags = FeatureFlags(settings=EnvSettings(workdir, environ))
        except FlagValueError as exc:
            refused = exc
        if refused is not None:
            assert expected_error is not None
            name, value, file, line = expected_error
            assert (name, value, line) == (
                refused.name,
                refused.value,
                refused.line,
            )
            assert Path(file).name == Path(refused.file or "").name
            return
        assert expected_error is None
        assert expected == {
            name: value.enabled for name, value in flags.snapshot().items()
        }


# ---------------------------------------------------------- as a user sees

REFUSED: dict[str, bytes] = {
    "bad TOML": b"[server\nport = 3001\n",
    "not UTF-8": b"\xff\xfe[server]\n",
    "nested too deeply": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "unknown key": b"[server]\nprot = 3001\n",
    "bad duration": b'[engine]\nbackoff_base = "5 parsecs"\n',
    "unknown action": toml_document(
        {
            "targets": [
                {
                    "name": "t",
                    "actions": ["nope"],
                    "check": {"type": "tcp", "port": 1},
                }
            ]
        }
    ).encode(),
    "bad regex": toml_document(
        {
            "targets": [
                {
                    "name": "t",
                    "check": {
                        "type": "http",
                        "url": "http://x/",
                        "body_regex": "(",
                    },
                }
            ]
        }
    ).encode(),
    "unmonitored disk": toml_document(
        {
            "actions": [{"name": "a", "type": "command", "command": ["true"]}],
            "preventive": [
                {
                    "name": "p",
                    "condition": "disk /nowhere used% > 90 for 5m",
                    "action": "a",
                }
            ],
        }
    ).encode(),
}


class TestAsAUserSeesIt:
    @pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
    def test_refused_with_a_message_and_no_traceback(
        self, tmp_path: Path, case: str
    ) -> None:
        """`selfheal config check` exits 1 and `selfheal run` exits 2, each
        with a reason naming the file (or the section) and no traceback."""
        path = tmp_path / "selfheal.toml"
        path.write_bytes(REFUSED[case])
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "config",
                "check",
                str(path),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--port",
                str(free_port()),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for done in (check, run):
            assert "Traceback" not in done.stdout + done.stderr
        # What only the assembled daemon refuses names its section.
        where = "preventive" if case == "unmonitored disk" else str(path)
        assert 1 == check.returncode
        assert check.stderr.startswith(where), check.stderr
        assert 2 == run.returncode, run.stderr
        assert run.stderr.startswith("selfheal: "), run.stderr
        assert ("selfheal.toml" if where == str(path) else where) in (
            run.stderr
        )

    def test_invalid_flag_file_refused_by_run(self, tmp_path: Path) -> None:
        """A random-looking invalid flag in .env.local: exit 2, the file,
        line, flag and value in one line, no traceback."""
        (tmp_path / ".env").write_text("FEATURE_AUTO_HEALING_ENABLED=on\n")
        (tmp_path / ".env.local").write_text(
            "# comment\r\nOTHER=1\r\nexport FEATURE_PROCESS_MONITORING_ENABLED"
            "=ja\r\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--port",
                str(free_port()),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 2 == done.returncode
        assert (
            "selfheal: .env.local:3: FEATURE_PROCESS_MONITORING_ENABLED=ja is "
            "not a boolean (use true/false, 1/0, yes/no, on/off)\n"
        ) == done.stderr
