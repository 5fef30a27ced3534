"""Restart latency: kill -9 a supervised program, time until it is back.

    python bench/restart_latency.py [--quick] [--kills N] [--json FILE]

Each supervisor runs the same program, a tiny HTTP server written to a temp
dir that answers ``ok <pid>``. The benchmark finds the program's pid, sends
it SIGKILL, and times two things from the kill:

* new pid: a new child of the supervisor running the program (exec done),
  found by scanning /proc every ~1 ms (the same scan for every supervisor);
* serving: an HTTP 200 from the new pid (the body names the pid).

Supervisors, one after another, 127.0.0.1 only:

* selfhealing: the real daemon, ``python -m selfhealing run``, with a
  ``[[processes]]`` entry, an http target (0.2 s interval, threshold 1)
  and a ``restart_process`` action. Before each kill it waits until the
  daemon reports the last healing verified.
* supervisord, if installed: ``autorestart=true``, ``startsecs=0``.
* circus, if importable: with its default check_delay (5 s) and with 0.1 s.

Every program is serving before each kill, and each kill lands after a
random pause of 0.1 s plus up to one period of the supervisor's polling
loop (1 s for supervisord, check_delay for circus, the 0.2 s probe
interval for selfhealing), so kills fall at random points of that loop.
Everything started is stopped at the end, also on Ctrl+C or an error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _support import (
    TINY_SERVER,
    Janitor,
    children_of,
    cmdline,
    free_port,
    http_get,
    load_average,
    percentile,
    raise_on_sigterm,
    wait_http,
)


SCRIPT = "restart_bench_server.py"
POLL = 0.001  # seconds between scans; a scan itself takes ~0.6 ms
NEW_PID_TIMEOUT = 15.0
SERVE_TIMEOUT = 15.0
GOAL_VS_SUPERVISORD = 20.0


@dataclass
class Result:
    supervisor: str
    kills: int = 0
    new_pid_ms: list[float] = field(default_factory=list)
    serving_ms: list[float] = field(default_factory=list)

    def stats(self, which: str) -> tuple[float, float, float]:
        values = getattr(self, which)
        return (
            percentile(values, 50),
            percentile(values, 95),
            max(values, default=float("nan")),
        )


class Supervised:
    """One supervisor running the server program; subclasses start it."""

    name = "?"
    #: Seconds between the supervisor's own polls (or probes): the pause
    #: before a kill is drawn from 0.1 s + [0, period), so kills land at
    #: random points of its loop instead of locking onto one phase.
    period = 1.0

    def __init__(self, janitor: Janitor, workdir: Path) -> None:
        self.janitor = janitor
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-I",
            str(self.workdir / SCRIPT),
            str(self.port),
        ]

    def start(self) -> None:
        raise NotImplementedError

    def program_pid(self) -> int:
        """The pid of the program, from the supervisor's children."""
        assert self.proc is not None
        deadline = time.monotonic() + SERVE_TIMEOUT
        while time.monotonic() < deadline:
            pids = self.program_children()
            if len(pids) == 1:
                return pids[0]
            time.sleep(0.01)
        raise RuntimeError(f"{self.name}: no single program child found")

    def program_children(self, exclude: int = 0) -> list[int]:
        assert self.proc is not None
        marker = SCRIPT.encode()
        return [
            pid
            for pid in children_of(self.proc.pid)
            if pid != exclude and marker in cmdline(pid)
        ]

    def settled(self) -> None:
        """Wait until the supervisor is ready for the next kill."""

    def stop(self) -> None:
        if self.proc is not None:
            self.janitor.stop(self.proc)


class SelfHealing(Supervised):
    name = f"selfhealing {importlib.metadata.version('selfhealing')}"
    period = 0.2  # the target's probe interval

    def start(self) -> None:
        self.api = free_port()
        config = self.workdir / "selfheal.toml"
        argv = ", ".join(json.dumps(part) for part in self.argv)
        config.write_text(
            textwrap.dedent(
                f"""\
                [engine]
                backoff_base = "100ms"
                backoff_max = "1s"
                max_consecutive_failures = 1000

                [[processes]]
                name = "web"
                command = [{argv}]
                stop_timeout = "2s"

                [[targets]]
                name = "web"
                actions = ["restart-web"]
                verify_settle = "50ms"
                relapse_window = 0

                [targets.check]
                type = "http"
                url = "http://127.0.0.1:{self.port}/"
                interval = "200ms"
                timeout = "500ms"
                failure_threshold = 1

                [[actions]]
                name = "restart-web"
                type = "restart_process"
                process = "web"
                """
            ),
            encoding="utf-8",
        )
        self.proc = self.janitor.start(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--config",
                str(config),
                "--port",
                str(self.api),
            ],
            cwd=self.workdir,
            log=self.workdir / "daemon.out",
        )
        wait_http(self.api, "/healthz", process=self.proc)

    def program_pid(self) -> int:
        processes = self._get("/api/processes")
        pid = processes[0]["pid"]
        assert isinstance(pid, int), processes
        # The API and the /proc scan must agree on which pid is the program.
        assert [pid] == self.program_children(), (pid, self.program_children())
        return pid

    def settled(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            target = self._get("/api/targets/web")
            if target["health"] == "healthy" and not target["healing"]:
                last = target["lastHealing"]
                if last is None or last["outcome"] == "succeeded":
                    return
                raise RuntimeError(f"healing not verified: {last}")
            time.sleep(0.01)
        raise TimeoutError("the daemon did not verify the healing in 30 s")

    def _get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.api}{path}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())


class Supervisord(Supervised):
    def __init__(self, janitor: Janitor, workdir: Path) -> None:
        super().__init__(janitor, workdir)
        # Not at import: without supervisor the script runs, skipping it.
        self.name = f"supervisord {importlib.metadata.version('supervisor')}"

    def start(self) -> None:
        conf = self.workdir / "supervisord.conf"
        conf.write_text(
            textwrap.dedent(
                f"""\
                [supervisord]
                nodaemon = true
                logfile = {self.workdir}/supervisord.log
                pidfile = {self.workdir}/supervisord.pid
                childlogdir = {self.workdir}
                loglevel = warn

                [program:web]
                command = {" ".join(self.argv)}
                directory = {self.workdir}
                autorestart = true
                startsecs = 0
                startretries = 1000
                stopasgroup = true
                killasgroup = true
                redirect_stderr = true
                stdout_logfile = {self.workdir}/web.log
                """
            ),
            encoding="utf-8",
        )
        self.proc = self.janitor.start(
            [
                str(Path(sys.executable).with_name("supervisord")),
                "-n",
                "-c",
                str(conf),
            ],
            cwd=self.workdir,
            log=self.workdir / "supervisord.out",
        )
        wait_http(self.port, process=self.proc)


class Circus(Supervised):
    def __init__(
        self, janitor: Janitor, workdir: Path, check_delay: float | None
    ) -> None:
        super().__init__(janitor, workdir)
        self.check_delay = check_delay
        self.period = 5.0 if check_delay is None else check_delay
        version = importlib.metadata.version("circus")
        shown = "5 s, default" if check_delay is None else f"{check_delay} s"
        self.name = f"circus {version} (check_delay {shown})"

    def start(self) -> None:
        delay = (
            ""
            if self.check_delay is None
            else f"check_delay = {self.check_delay}"
        )
        ini = self.workdir / "circus.ini"
        ini.write_text(
            textwrap.dedent(
                f"""\
                [circus]
                {delay}
                endpoint = ipc://{self.workdir}/endpoint
                pubsub_endpoint = ipc://{self.workdir}/pubsub
                stats_endpoint = ipc://{self.workdir}/stats
                statsd = False
                loglevel = WARNING
                logoutput = {self.workdir}/circus.log

                [watcher:web]
                cmd = {" ".join(self.argv)}
                working_dir = {self.workdir}
                numprocesses = 1
                copy_env = True
                """
            ),
            encoding="utf-8",
        )
        self.proc = self.janitor.start(
            [str(Path(sys.executable).with_name("circusd")), str(ini)],
            cwd=self.workdir,
            log=self.workdir / "circusd.out",
        )
        wait_http(self.port, process=self.proc)


def wait_new_pid(sup: Supervised, killed: int) -> int:
    deadline = time.monotonic() + NEW_PID_TIMEOUT
    while time.monotonic() < deadline:
        pids = sup.program_children(exclude=killed)
        if pids:
            return pids[0]
        time.sleep(POLL)
    raise TimeoutError(
        f"{sup.name}: no new program pid {NEW_PID_TIMEOUT}s after the kill"
    )


def wait_serving(sup: Supervised, killed: int) -> None:
    old = b"ok %d\n" % killed
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            status, body = http_get(sup.port, timeout=0.5)
        except OSError:
            pass
        else:
            if status == 200 and body != old:
                return
        time.sleep(POLL)
    raise TimeoutError(
        f"{sup.name}: not serving {SERVE_TIMEOUT}s after the kill"
    )


def measure(
    make: Callable[[], Supervised],
    kills: int,
    rng: random.Random,
    janitor: Janitor,
) -> Result:
    sup = make()
    result = Result(sup.name)
    try:
        sup.start()
        for _ in range(kills):
            sup.settled()
            time.sleep(0.1 + rng.uniform(0, sup.period))
            killed = sup.program_pid()
            start = time.perf_counter()
            os.kill(killed, signal.SIGKILL)
            new = wait_new_pid(sup, killed)
            got_pid = time.perf_counter()
            wait_serving(sup, killed)
            serving = time.perf_counter()
            janitor.note(new)
            result.new_pid_ms.append((got_pid - start) * 1000)
            result.serving_ms.append((serving - start) * 1000)
            result.kills += 1
        sup.settled()
    finally:
        sup.stop()
    return result


def unavailable(package: str, program: str) -> str | None:
    """None if *program* of *package* can run here, else why not."""
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return f"{package} is not installed (pip install {package})"
    path = Path(sys.executable).with_name(program)
    if not path.exists():
        return f"{path} not found"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 kills each")
    parser.add_argument("--kills", type=int, help="kills per supervisor (30)")
    parser.add_argument("--no-circus", action="store_true")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    kills = args.kills or (10 if args.quick else 30)
    rng = random.Random(0)
    raise_on_sigterm()

    results: list[Result] = []
    skipped: list[str] = []
    # The Janitor exits first: processes stop before their directory goes.
    with (
        tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp,
        Janitor() as janitor,
    ):
        root = Path(tmp)

        def workdir(name: str) -> Path:
            path = root / name
            path.mkdir()
            (path / SCRIPT).write_text(TINY_SERVER, encoding="utf-8")
            return path

        makers: list[Callable[[], Supervised]] = [
            lambda: SelfHealing(janitor, workdir("selfhealing")),
        ]
        why = unavailable("supervisor", "supervisord")
        if why is None:
            makers.append(lambda: Supervisord(janitor, workdir("supervisord")))
        else:
            skipped.append(f"supervisord: {why}")
        why = (
            "skipped (--no-circus)"
            if args.no_circus
            else unavailable("circus", "circusd")
        )
        if why is None:
            makers += [
                lambda: Circus(janitor, workdir("circus-0.1"), 0.1),
                lambda: Circus(janitor, workdir("circus-default"), None),
            ]
        else:
            skipped.append(f"circus: {why}")
        for make in makers:
            result = measure(make, kills, rng, janitor)
            results.append(result)
            print(
                f"  measured {result.supervisor}: {result.kills} kills",
                file=sys.stderr,
            )

    print(
        f"Python {sys.version.split()[0]}, {kills} kills each, "
        f"{os.cpu_count()} CPUs, {load_average()}; kill -9 -> ..."
    )
    print(
        f"{'supervisor':<42}{'new pid p50':>12}{'p95':>9}{'max':>9}"
        f"{'serving p50':>13}{'p95':>9}{'max':>9}"
    )
    for r in results:
        pid = r.stats("new_pid_ms")
        serve = r.stats("serving_ms")
        print(
            f"{r.supervisor:<42}{pid[0]:>10.1f}ms{pid[1]:>7.1f}ms{pid[2]:>7.1f}ms"
            f"{serve[0]:>11.1f}ms{serve[1]:>7.1f}ms{serve[2]:>7.1f}ms"
        )
    for line in skipped:
        print(line)
    ours = results[0]
    ours_p95 = ours.stats("new_pid_ms")[1]
    for other in results[1:]:
        ratio = other.stats("new_pid_ms")[1] / ours_p95
        serving = other.stats("serving_ms")[1] / ours.stats("serving_ms")[1]
        print(
            f"p95 {other.supervisor} / selfhealing: new pid {ratio:.1f}x, "
            f"serving {serving:.1f}x"
        )
    goal = "met" if ours_p95 <= 50 else "MISSED"
    print(f"goal selfhealing new-pid p95 <= 50 ms: {ours_p95:.1f} ms, {goal}")
    supervisord = next(
        (r for r in results if r.supervisor.startswith("supervisord")), None
    )
    if supervisord is not None:
        ratio = supervisord.stats("new_pid_ms")[1] / ours_p95
        print(
            f"goal new-pid p95 >= {GOAL_VS_SUPERVISORD:g}x faster than "
            f"supervisord: {ratio:.1f}x, "
            f"{'met' if ratio >= GOAL_VS_SUPERVISORD else 'MISSED'}"
        )
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(
                {"results": [asdict(r) for r in results], "skipped": skipped},
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
