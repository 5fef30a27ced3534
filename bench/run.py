"""Run every benchmark, print one summary, write docs/benchmarks.{json,png}.

    python -m bench [--quick] [--only NAME,...] [--out DIR]
    python -m bench --replot [--out DIR]
    python bench/run.py [--quick] [--only NAME,...] [--out DIR]

Each benchmark runs as its own script, one after another, in a fresh
interpreter (``python bench/<name>.py [--quick] --json FILE``), so none
disturbs another's timings and each cleans up its own processes; its table
is printed as it finishes. Then this prints one summary (our figures
beside each peer's, the ratios, every goal and whether it is met) and
writes into ``--out`` (default ``docs/``):

* ``benchmarks.json``: the machine, every benchmark's full figures, its
  printed table, its duration and the load average around it, and the
  summary;
* ``benchmarks.png``: the key figures, drawn with matplotlib (Agg).

``--only`` reruns some benchmarks (say one a noisy neighbour disturbed) and
keeps the others' figures from the existing ``benchmarks.json``; a rerun
that yields no figures keeps the previous ones too. ``--replot`` runs
nothing: it summarizes and redraws the existing ``benchmarks.json``. The
exit status is 1 if any benchmark run failed.
Everything runs on 127.0.0.1; Ctrl+C or SIGTERM stops the running
benchmark, which ends every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _support import Janitor, percentile, raise_on_sigterm


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS = "selfhealing"
PEERS = ("pybreaker", "circuitbreaker", "aiobreaker", "purgatory")
MODE_COLORS = {
    OURS: "#2a9d8f",
    "selfhealing, gc untuned": "#9b5de5",
    "raw aiohttp": "#f4a261",
}
BREAKER_PATHS = (
    "closed success (sync)",
    "counted failure (sync)",
    "open rejection (sync)",
    "closed success (async)",
)


@dataclass(frozen=True)
class Bench:
    name: str
    about: str
    minutes: float  # a full run, roughly


BENCHES = (
    Bench("breaker_overhead", "circuit breakers vs 4 peers", 2),
    Bench("restart_latency", "kill -9 -> restarted vs supervisord, circus", 6),
    Bench("healing_time", "HTTP target broken -> verified healed", 4),
    Bench("check_scale", "N HTTP targets every 1 s: CPU, RSS, lateness", 12),
    Bench("status_load", "/api/status under load vs a bare route", 3),
    Bench("resource_sampling", "cost of sampling 50 process trees", 1),
)


# ------------------------------------------------------------------ running


def machine() -> dict[str, Any]:
    """Facts about the machine and the software measured."""
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": "?",
        "memory_gib": math.nan,
        "load_average": os.getloadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    versions = {}
    for name in (
        "selfhealing",
        *PEERS,
        "supervisor",
        "circus",
        "uvloop",
        "aiohttp",
        "fastapi",
        "uvicorn",
        "psutil",
        "matplotlib",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    wrk = shutil.which("wrk")
    if wrk:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [wrk, "--version"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            words = (out.stdout + out.stderr).split()  # "wrk 4.1.0 [epoll]"
            versions["wrk"] = words[1] if len(words) > 1 else "?"
    facts["versions"] = versions
    return facts


def run_one(
    janitor: Janitor, bench: Bench, *, quick: bool, tmp: Path
) -> dict[str, Any]:
    """Run one benchmark script; its figures, table and circumstances."""
    out = tmp / f"{bench.name}.json"
    argv = [sys.executable, str(HERE / f"{bench.name}.py"), "--json", str(out)]
    if quick:
        argv.append("--quick")
    print(f"== {bench.name}: {bench.about}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    start = time.monotonic()
    proc = janitor.start(argv, cwd=ROOT, stdout=subprocess.PIPE)
    stdout, _ = proc.communicate()
    seconds = time.monotonic() - start
    text = stdout.decode(errors="replace")
    print(text, flush=True)
    record: dict[str, Any] = {
        "command": " ".join(
            [
                "python",
                f"bench/{bench.name}.py",
                *(["--quick"] if quick else []),
            ]
        ),
        "returncode": proc.returncode,
        "seconds": round(seconds, 1),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "stdout": text,
        "figures": None,
    }
    try:
        record["figures"] = json.loads(out.read_text(encoding="utf-8"))
    except OSError:
        print(
            f"!! {bench.name} wrote no figures (exit {proc.returncode})",
            file=sys.stderr,
        )
    except ValueError as error:  # cut short: a failure, not the end
        print(
            f"!! {bench.name} wrote invalid figures (exit "
            f"{proc.returncode}): {error}",
            file=sys.stderr,
        )
    return record


# ------------------------------------------------------------------ summary


def _med(values: list[float | None]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def breaker_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """Per path: our call() ns and each library's fastest form."""
    paths = {}
    for path in BREAKER_PATHS:
        result = figures["paths"].get(path)
        if result is None:
            continue
        rows = result["rows"]
        primary = "call_async()" if "async" in path else "call()"
        ours = next(
            r for r in rows if r["library"] == OURS and r["form"] == primary
        )
        best: dict[str, Any] = {}
        for row in rows:
            lib = row["library"]
            if lib != OURS and (
                lib not in best or row["ns"] < best[lib]["ns"]
            ):
                best[lib] = row
        paths[path] = {
            "bare_ns": result["bare_ns"],
            "ours": {
                "form": primary,
                "ns": ours["ns"],
                "x_bare": ours["x_bare"],
            },
            "peers": {
                lib: {
                    "form": row["form"],
                    "ns": row["ns"],
                    "x_bare": row["x_bare"],
                    "ours_faster": row["ns"] / ours["ns"],
                    "ours_faster_overhead": (row["ns"] - result["bare_ns"])
                    / (ours["ns"] - result["bare_ns"]),
                }
                for lib, row in best.items()
            },
            "forms": {f"{r['library']} {r['form']}": r["ns"] for r in rows},
        }
    half_open = {}
    for a in figures["half_open"]:
        half_open[f"{a['library']} ({a['mode']})"] = {
            "admitted": _med([float(x) for x in a["admitted"]]),
            "ran": _med([float(x) for x in a["ran"]]),
            "runs": a["admitted"],
        }
    parallel = {
        (
            p["library"]
            if p["library"] != "bare"
            else f"bare, {p['threads']} thread(s)"
        ): {
            "parallelism": p["parallelism"],
            "of_bare": p["of_bare"],
        }
        for p in figures["parallel"]
    }
    return {
        "paths": paths,
        "bytes_per_breaker": figures["bytes_per_breaker"],
        "bytes_per_rejection": figures["bytes_per_rejection"],
        "half_open": half_open,
        "parallel": parallel,
        "goals": figures["goals"],
    }


def restart_summary(figures: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for r in figures["results"]:
        rows[r["supervisor"]] = {
            "kills": r["kills"],
            "new_pid_p50_ms": percentile(r["new_pid_ms"], 50),
            "new_pid_p95_ms": percentile(r["new_pid_ms"], 95),
            "new_pid_max_ms": max(r["new_pid_ms"], default=math.nan),
            "serving_p50_ms": percentile(r["serving_ms"], 50),
            "serving_p95_ms": percentile(r["serving_ms"], 95),
        }
    ours = next((v for k, v in rows.items() if k.startswith(OURS)), None)
    if ours is not None:
        for row in rows.values():
            row["p95_vs_ours"] = row["new_pid_p95_ms"] / ours["new_pid_p95_ms"]
            row["serving_p95_vs_ours"] = (
                row["serving_p95_ms"] / ours["serving_p95_ms"]
            )
    return {"supervisors": rows, "skipped": figures.get("skipped", [])}


def healing_summary(figures: dict[str, Any]) -> dict[str, Any]:
    k8s = figures["kubernetes_restart_s"]
    rows = {}
    for s in figures["series"]:
        rows[f"{s['interval']:g} s"] = {
            "n": len(s["heals"]),
            **{f"{k}_p50": v for k, v in s["p50"].items()},
            **{f"{k}_p95": v for k, v in s["p95"].items()},
            "k8s_vs_restart_p95": k8s * 1000 / s["p95"]["restarted_ms"],
            "k8s_vs_healed_p95": k8s * 1000 / s["p95"]["healed_ms"],
            "missed": {k: v for k, v in s.get("missed", {}).items() if v},
            "failed": s["failed"],
        }
    return {"kubernetes_restart_s": k8s, "intervals": rows}


def scale_summary(figures: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for case in figures:
        groups.setdefault((case["loop"], case["n"], case["mode"]), []).append(
            case
        )
    rows = []
    for (loop, n, mode), cases in groups.items():

        def med(
            key: Callable[[dict[str, Any]], float],
            of: list[dict[str, Any]] = cases,
        ) -> float:
            return _med([key(c) for c in of])

        us = med(lambda c: c["us_per_check"])
        rows.append(
            {
                "loop": loop,
                "n": n,
                "mode": mode,
                "runs": len(cases),
                "checks_per_s": med(lambda c: c["checks_per_s"]),
                "core_percent": med(lambda c: c["core_percent"]),
                "us_per_check": us,
                "targets_per_core": 1e6 / us if us else math.nan,
                "rss_mib": med(lambda c: c["rss_mib"]),
                "kib_per_target": med(lambda c: c["kib_per_target"]),
                "late_p50_ms": med(lambda c: c["lateness_ms"][0]),
                "late_p99_ms": med(lambda c: c["lateness_ms"][1]),
                "late_max_ms": med(lambda c: c["lateness_ms"][2]),
                "gc_max_ms": med(lambda c: c["gc_max_ms"]),
                "host_busy_percent": med(lambda c: 100 * c["host_busy"]),
            }
        )
    return {"rows": rows}


def status_summary(figures: dict[str, Any]) -> dict[str, Any]:
    rows = {}
    for e in figures["endpoints"]:
        rows[e["name"]] = {
            "bytes": e["bytes"],
            "p50_ms": _med([r["p50"] for r in e["latency"]]),
            "p99_ms": _med([r["p99"] for r in e["latency"]]),
            "rps": _med([r["rps"] for r in e["throughput"]]),
        }
    return {
        "endpoints": rows,
        "status_vs_bare": figures["ratio"],
        "loader": figures["loader"],
    }


def resource_summary(figures: dict[str, Any]) -> dict[str, Any]:
    loaded = figures["loaded"]
    return {
        "processes": loaded["processes"],
        "percent_of_one_core": loaded["percentOfOneCore"],
        "cpu_per_sample_ms": loaded["cpuPerSampleMs"],
        "interval_s": figures["interval"],
        "goal_percent": figures["goalPercent"],
    }


SUMMARIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "breaker_overhead": breaker_summary,
    "restart_latency": restart_summary,
    "healing_time": healing_summary,
    "check_scale": scale_summary,
    "status_load": status_summary,
    "resource_sampling": resource_summary,
}


def _goal(
    source: str, goal: str, measured: str, met: bool | None, *, issue: bool
) -> dict[str, Any]:
    return {
        "source": source,
        "goal": goal,
        "measured": measured,
        "met": met,
        "issue": issue,
    }


def goals(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every goal, issue goals first; met is None when not measured."""
    found = []
    breaker = summary.get("breaker_overhead")
    if breaker:
        closed = breaker["paths"]["closed success (sync)"]
        ours = closed["ours"]["ns"]
        peers = closed["peers"]
        if "pybreaker" in peers:
            p = peers["pybreaker"]
            found.append(
                _goal(
                    "breaker_overhead",
                    "breaker closed path >= 8x faster than pybreaker",
                    f"{p['ours_faster']:.1f}x ({p['ns']:.0f} ns pybreaker "
                    f"{p['form']} / {ours:.0f} ns ours call())",
                    p["ours_faster"] >= 8,
                    issue=True,
                )
            )
        if peers:
            lib, p = min(peers.items(), key=lambda kv: kv[1]["ns"])
            found.append(
                _goal(
                    "breaker_overhead",
                    "breaker closed path >= 3x faster than the fastest peer",
                    f"{p['ours_faster']:.1f}x ({lib} {p['form']} "
                    f"{p['ns']:.0f} ns / {ours:.0f} ns; overhead alone "
                    f"{p['ours_faster_overhead']:.1f}x)",
                    p["ours_faster"] >= 3,
                    issue=True,
                )
            )
        mine = {
            k: v for k, v in breaker["half_open"].items() if k.startswith(OURS)
        }
        theirs = {
            k: v
            for k, v in breaker["half_open"].items()
            if not k.startswith(OURS)
        }
        exact = all(set(v["runs"]) == {1} for v in mine.values())
        found.append(
            _goal(
                "breaker_overhead",
                "exact half-open admission (1 of 20 callers)",
                "; ".join(
                    f"{k.replace(' (', ' ').rstrip(')')} {v['admitted']:g}"
                    for k, v in {**mine, **theirs}.items()
                ),
                exact if mine else None,
                issue=True,
            )
        )
    restart = summary.get("restart_latency")
    if restart:
        sups = restart["supervisors"]
        ours = next((v for k, v in sups.items() if k.startswith(OURS)), None)
        sd = next(
            (v for k, v in sups.items() if k.startswith("supervisord")), None
        )
        if ours and sd:
            ratio = sd["p95_vs_ours"]
            found.append(
                _goal(
                    "restart_latency",
                    "restart p95 >= 20x faster than supervisord",
                    f"{ratio:.1f}x ({sd['new_pid_p95_ms']:.0f} ms / "
                    f"{ours['new_pid_p95_ms']:.1f} ms, kill -9 -> new pid)",
                    ratio >= 20,
                    issue=True,
                )
            )
        if ours:
            found.append(
                _goal(
                    "restart_latency",
                    "restart new-pid p95 <= 50 ms",
                    f"{ours['new_pid_p95_ms']:.1f} ms",
                    ours["new_pid_p95_ms"] <= 50,
                    issue=False,
                )
            )
    if breaker:
        mem = breaker["bytes_per_breaker"][OURS]
        found.append(
            _goal(
                "breaker_overhead",
                "bytes per idle breaker <= 300",
                f"{mem:.0f} B",
                mem <= 300,
                issue=False,
            )
        )
    scale = summary.get("check_scale")
    if scale:
        for row in scale["rows"]:
            if row["n"] == 1000 and row["mode"] == OURS:
                found.append(
                    _goal(
                        "check_scale",
                        f"1000 targets every 1 s ({row['loop']}): CPU < 25 % "
                        "of a core, start lateness p99 < 5 ms",
                        f"{row['core_percent']:.1f} %, "
                        f"{row['late_p99_ms']:.2f} ms",
                        row["core_percent"] < 25 and row["late_p99_ms"] < 5,
                        issue=False,
                    )
                )
    status = summary.get("status_load")
    if status:
        s = status["endpoints"].get("daemon /api/status")
        if s:
            ratio = status["status_vs_bare"]
            found.append(
                _goal(
                    "status_load",
                    "/api/status p99 < 5 ms at 500 req/s, >= 60 % of a bare "
                    "route's throughput",
                    f"{s['p99_ms']:.2f} ms, {ratio:.0%}",
                    s["p99_ms"] < 5 and ratio >= 0.6,
                    issue=False,
                )
            )
    resources = summary.get("resource_sampling")
    if resources:
        found.append(
            _goal(
                "resource_sampling",
                f"sampling {resources['processes']} processes every "
                f"{resources['interval_s']:g} s < "
                f"{resources['goal_percent']:g} % of a core",
                f"{resources['percent_of_one_core']:.3f} %",
                resources["percent_of_one_core"] < resources["goal_percent"],
                issue=False,
            )
        )
    return found


def _fmt_ns(ns: float) -> str:
    return f"{ns:,.0f}"


def print_summary(
    summary: dict[str, dict[str, Any]],
    verdicts: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> None:
    print("=" * 100)
    print(
        "SUMMARY (medians, and the percentiles the columns name; ratio = "
        "their figure / ours, higher is better for us)"
    )
    if len(runs) > 1:  # --only reruns: not all ratios come from one run
        print(
            f"figures from {len(runs)} runs: "
            + "; ".join(r["command"] for r in runs)
        )
    breaker = summary.get("breaker_overhead")
    if breaker:
        libs = [
            lib
            for lib in PEERS
            if any(lib in p["peers"] for p in breaker["paths"].values())
        ]
        print(
            f"\n{'breaker, ns per call (x = vs ours)':<34}{'bare':>6}{'ours':>7}"
            + "".join(f"{lib:>19}" for lib in libs)
        )
        for path, p in breaker["paths"].items():
            cells = ""
            for lib in libs:
                peer = p["peers"].get(lib)
                cells += (
                    f"{_fmt_ns(peer['ns']) + ' (' + format(peer['ours_faster'], '.1f') + 'x)':>19}"
                    if peer
                    else f"{'n/a':>19}"
                )
            print(
                f"{path:<34}{p['bare_ns']:>6.0f}{p['ours']['ns']:>7.0f}{cells}"
            )
        mem = breaker["bytes_per_breaker"]
        leak = breaker["bytes_per_rejection"]
        print(
            f"{'bytes per breaker':<34}{'':>6}{mem[OURS]:>7.0f}"
            + "".join(f"{mem.get(lib, math.nan):>19.0f}" for lib in libs)
        )
        print(
            f"{'bytes kept per rejection':<34}{'':>6}{leak[OURS]:>7.0f}"
            + "".join(f"{leak.get(lib, math.nan):>19.0f}" for lib in libs)
        )
        ho = breaker["half_open"]

        def admitted(lib: str, mode: str) -> str:
            v = ho.get(f"{lib} ({mode})")
            return "n/a" if v is None else f"{v['admitted']:g} of 20"

        for mode in ("threads", "tasks"):
            print(
                f"{'half-open admitted, ' + mode:<34}{'':>6}"
                f"{admitted(OURS, mode):>7}"
                + "".join(f"{admitted(lib, mode):>19}" for lib in libs)
            )
        par = breaker["parallel"]
        print(
            f"{'4 threads x 1 ms sleep, x 1 bare':<34}"
            f"{par.get('bare, 4 thread(s)', {}).get('parallelism', math.nan):>6.2f}"
            f"{par.get(OURS, {}).get('parallelism', math.nan):>7.2f}"
            + "".join(
                f"{par.get(lib, {}).get('parallelism', math.nan):>19.2f}"
                for lib in libs
            )
        )
    restart = summary.get("restart_latency")
    if restart:
        print(
            f"\n{'kill -9 -> restarted (new pid)':<44}{'p50':>10}{'p95':>10}"
            f"{'max':>10}{'p95 / ours':>12}{'serving p95':>13}"
        )
        for name, r in restart["supervisors"].items():
            print(
                f"{name:<44}{r['new_pid_p50_ms']:>8.1f}ms{r['new_pid_p95_ms']:>8.1f}ms"
                f"{r['new_pid_max_ms']:>8.1f}ms{r.get('p95_vs_ours', math.nan):>11.1f}x"
                f"{r['serving_p95_ms']:>11.1f}ms"
            )
    healing = summary.get("healing_time")
    if healing:
        k8s = healing["kubernetes_restart_s"]
        print(
            f"\n{'HTTP target broken -> (s)':<30}{'n':>4}{'detected':>10}"
            f"{'restart p50':>12}{'p95':>7}{'healed p50':>12}{'p95':>7}"
            f"{'K8s ~' + format(k8s, 'g') + ' s / restart p95':>26}"
        )
        for interval, r in healing["intervals"].items():
            print(
                f"{'check every ' + interval + ', x3':<30}{r['n']:>4}"
                f"{r['detected_ms_p50'] / 1000:>10.2f}"
                f"{r['restarted_ms_p50'] / 1000:>12.2f}"
                f"{r['restarted_ms_p95'] / 1000:>7.2f}"
                f"{r['healed_ms_p50'] / 1000:>12.2f}"
                f"{r['healed_ms_p95'] / 1000:>7.2f}"
                f"{r['k8s_vs_restart_p95']:>25.1f}x"
            )
            if r.get("missed"):
                print(f"  missed by polling (left out): {r['missed']}")
            for failure in r["failed"]:
                print(f"  FAILED: {failure}")
        print("p95 by nearest rank: of fewer than 20 breaks, the slowest")
    scale = summary.get("check_scale")
    if scale:
        print(
            f"\n{'check scale (1 s interval)':<40}{'N':>6}{'CPU %':>8}"
            f"{'µs/check':>10}{'targets/core':>14}{'RSS MiB':>9}"
            f"{'late p99':>10}{'max':>9}"
        )
        for r in scale["rows"]:
            print(
                f"{r['loop'] + ' ' + r['mode']:<40}{r['n']:>6}"
                f"{r['core_percent']:>8.1f}{r['us_per_check']:>10.0f}"
                f"{r['targets_per_core']:>14,.0f}{r['rss_mib']:>9.1f}"
                f"{r['late_p99_ms']:>8.2f}ms{r['late_max_ms']:>7.1f}ms"
            )
    status = summary.get("status_load")
    if status:
        print(
            f"\n{'endpoint':<24}{'bytes':>7}{'p50 @500/s':>12}{'p99':>9}"
            f"{'req/s (' + status['loader'] + ')':>28}"
        )
        for name, e in status["endpoints"].items():
            print(
                f"{name:<24}{e['bytes']:>7}{e['p50_ms']:>10.2f}ms"
                f"{e['p99_ms']:>7.2f}ms{e['rps']:>28.0f}"
            )
    print("\ngoals ([issue]: the issue's own; [script]: set in the scripts)")
    for g in verdicts:
        met = {True: "met", False: "MISSED", None: "n/a"}[g["met"]]
        tag = "issue" if g["issue"] else "script"
        print(f"{met:>7}  [{tag}] {g['goal']}: {g['measured']}")


# -------------------------------------------------------------------- chart


def chart(
    summary: dict[str, dict[str, Any]], path: Path, runs: list[dict[str, Any]]
) -> bool:
    """The key figures, six panels, written as a PNG (Agg backend).

    False, with a line saying so, when matplotlib is not installed.
    """
    try:
        import matplotlib as mpl  # noqa: PLC0415 (only when drawing)
    except ImportError:
        print(
            f"matplotlib is not installed: {path} not drawn "
            "(pip install -e . --group bench)",
            file=sys.stderr,
        )
        return False

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    colors = {
        OURS: "#2a9d8f",
        "pybreaker": "#e76f51",
        "circuitbreaker": "#f4a261",
        "aiobreaker": "#e9c46a",
        "purgatory": "#8d99ae",
    }

    ax = axes[0][0]
    breaker = summary.get("breaker_overhead")
    if breaker:
        paths = list(breaker["paths"])
        libs = [OURS, *PEERS]
        width = 0.8 / len(libs)
        for i, lib in enumerate(libs):
            values = []
            for p in paths:
                entry = breaker["paths"][p]
                if lib == OURS:
                    values.append(entry["ours"]["ns"])
                else:
                    peer = entry["peers"].get(lib)
                    values.append(peer["ns"] if peer else math.nan)
            xs = [
                j + (i - (len(libs) - 1) / 2) * width
                for j in range(len(paths))
            ]
            ax.bar(xs, values, width, label=lib, color=colors[lib])
        ax.scatter(
            range(len(paths)),
            [breaker["paths"][p]["bare_ns"] for p in paths],
            marker="_",
            s=400,
            color="black",
            label="bare call",
            zorder=3,
        )
        ax.set_yscale("log")
        top = max(
            [entry["ours"]["ns"] for entry in breaker["paths"].values()]
            + [
                peer["ns"]
                for entry in breaker["paths"].values()
                for peer in entry["peers"].values()
            ]
        )
        ax.set_ylim(10, top * 12)
        closed = breaker["paths"].get("closed success (sync)")
        if closed:
            for i, lib in enumerate(libs):
                peer = closed["peers"].get(lib)
                if peer:
                    ax.annotate(
                        f"{peer['ours_faster']:.1f}x",
                        ((i - (len(libs) - 1) / 2) * width, peer["ns"]),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels([p.replace(" (", "\n(") for p in paths], fontsize=8)
        ax.set_ylabel("ns per call (log)")
        ax.set_title(
            "Circuit breaker ns per call, each peer's fastest form\n"
            "(labels: peer / ours, closed success)",
            fontsize=10,
        )
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    else:
        ax.set_axis_off()

    ax = axes[0][1]
    if breaker:
        ho = breaker["half_open"]
        libs = [OURS, *PEERS]
        for i, mode in enumerate(("threads", "tasks")):
            values = [
                ho.get(f"{lib} ({mode})", {}).get("admitted", math.nan)
                for lib in libs
            ]
            xs = [j + (i - 0.5) * 0.38 for j in range(len(libs))]
            ax.bar(
                xs,
                values,
                0.38,
                label=f"{mode}",
                color=["#2a9d8f", "#264653"][i],
            )
        ax.axhline(1, color="black", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(libs)))
        ax.set_xticklabels(libs, fontsize=8)
        ax.set_ylim(0, 21)
        ax.set_ylabel("callers admitted while half-open (of 20)")
        ax.annotate(
            "no asyncio", (1.19, 0.3), ha="center", fontsize=7, rotation=90
        )
        ax.set_title("Half-open admission, 20 concurrent callers (1 wanted)")
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()

    ax = axes[0][2]
    restart = summary.get("restart_latency")
    if restart:
        names = list(restart["supervisors"])
        p50 = [restart["supervisors"][n]["new_pid_p50_ms"] for n in names]
        p95 = [restart["supervisors"][n]["new_pid_p95_ms"] for n in names]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#8ecae6")
        ax.bar([x + 0.2 for x in xs], p95, 0.4, label="p95", color="#219ebc")
        for x, value in zip(xs, p95, strict=True):
            ax.annotate(
                f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                (x + 0.2, value),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([n.replace(" (", "\n(") for n in names], fontsize=7)
        ax.set_ylabel("ms, kill -9 -> new process (log)")
        ax.set_title(
            f"Restart latency, {min(r['kills'] for r in restart['supervisors'].values())} kills each"
        )
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()

    ax = axes[1][0]
    healing = summary.get("healing_time")
    if healing:
        labels = []
        restarts = []
        healed = []
        # Nearest rank: the p95 of fewer than 20 breaks is the slowest.
        ns = {r["n"] for r in healing["intervals"].values()}
        which = "p95"
        if len(ns) == 1 and max(ns) < 20:
            which = f"p95 (the slowest of {max(ns)})"
        for interval, r in healing["intervals"].items():
            labels.append(f"selfhealing\nevery {interval} x3")
            restarts.append(r["restarted_ms_p95"] / 1000)
            healed.append(r["healed_ms_p95"] / 1000)
        labels.append("Kubernetes default\n10 s x 3 (documented)")
        restarts.append(healing["kubernetes_restart_s"])
        healed.append(math.nan)
        xs = range(len(labels))
        ax.bar(
            [x - 0.2 for x in xs],
            restarts,
            0.4,
            label=f"break -> restart, {which}",
            color="#ffb703",
        )
        ax.bar(
            [x + 0.2 for x in xs],
            healed,
            0.4,
            label=f"break -> verified healed, {which}",
            color="#fb8500",
        )
        for x, r_value, h_value in zip(xs, restarts, healed, strict=True):
            for dx, value in ((-0.2, r_value), (0.2, h_value)):
                if not math.isnan(value):
                    ax.annotate(
                        f"{value:.1f} s",
                        (x + dx, value),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                    )
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("seconds")
        ax.set_title("HTTP target broken -> healed")
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()

    scale = summary.get("check_scale")
    for ax, key, label in (
        (axes[1][1], "core_percent", "CPU, % of one core"),
        (axes[1][2], "late_p99_ms", "check start lateness p99, ms (log)"),
    ):
        if not scale:
            ax.set_axis_off()
            continue
        series: dict[str, list[tuple[int, float]]] = {}
        for r in scale["rows"]:
            series.setdefault(f"{r['mode']} ({r['loop']})", []).append(
                (r["n"], r[key])
            )
        for name, points in sorted(series.items()):
            points.sort()
            mode = name.rsplit(" (", 1)[0]
            ax.plot(
                [n for n, _ in points],
                [v for _, v in points],
                marker="o",
                label=name,
                color=MODE_COLORS.get(mode, "gray"),
                linestyle="-" if "(uvloop)" in name else "--",
            )
        ax.set_xscale("log")
        if key == "late_p99_ms":
            ax.set_yscale("log")
        ax.set_xlabel("targets, each checked every 1 s")
        ax.set_ylabel(label)
        ax.set_title(f"Check scale: {label}")
        ax.legend(fontsize=7)
        ax.grid(visible=True, alpha=0.3)

    note = "one run" if len(runs) <= 1 else f"{len(runs)} runs"
    fig.suptitle(
        "selfhealing benchmarks (medians, and the percentiles labelled; "
        f"{note}, one machine)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------- main


def _finite(value: Any) -> Any:
    """*value* with NaN and infinities as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument(
        "--only",
        help="comma-separated benchmarks to run; the others' figures are "
        "kept from the existing benchmarks.json: "
        + ", ".join(b.name for b in BENCHES),
    )
    parser.add_argument(
        "--out", default=str(ROOT / "docs"), help="where to write (docs/)"
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="run nothing: summarize and draw the existing benchmarks.json",
    )
    args = parser.parse_args(argv)
    if args.only and args.replot:
        parser.error("--replot runs nothing: it takes no --only")
    selected = BENCHES
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        selected = tuple(b for b in BENCHES if b.name in names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "benchmarks.json"
    raise_on_sigterm()

    if args.replot:
        selected = ()
    previous: dict[str, Any] = {}
    if (args.only or args.replot) and json_path.exists():
        previous = json.loads(json_path.read_text(encoding="utf-8"))
    records: dict[str, Any] = dict(previous.get("benchmarks", {}))
    facts = machine()
    print(
        f"Python {facts['python']} on {facts['platform']}; {facts['cpus']} "
        f"CPUs ({facts['cpu']}), {facts['memory_gib']} GiB; load average "
        + " ".join(f"{x:.2f}" for x in facts["load_average"]),
        flush=True,
    )
    print(
        "versions: "
        + ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v),
        flush=True,
    )
    minutes = sum(b.minutes for b in selected) * (0.3 if args.quick else 1)
    if selected:
        print(
            f"running {', '.join(b.name for b in selected)} "
            f"(~{minutes:.0f} min)",
            file=sys.stderr,
            flush=True,
        )
    started = time.monotonic()
    # The Janitor exits first: processes stop before their directory goes.
    with (
        tempfile.TemporaryDirectory(prefix="bench-run-") as tmp,
        Janitor() as janitor,
    ):
        for bench in selected:
            record = run_one(janitor, bench, quick=args.quick, tmp=Path(tmp))
            kept = records.get(bench.name, {})
            if record["figures"] is None and kept.get("figures") is not None:
                # A failed rerun must not erase what an earlier run measured.
                record["figures"] = kept["figures"]
                record["figures_from"] = kept.get(
                    "figures_from", kept.get("finished")
                )
                print(
                    f"!! {bench.name}: keeping the figures of "
                    f"{record['figures_from']} from benchmarks.json",
                    file=sys.stderr,
                )
            records[bench.name] = record

    summary = {}
    for name, record in records.items():
        if record.get("figures") is not None and name in SUMMARIZERS:
            try:
                summary[name] = SUMMARIZERS[name](record["figures"])
            except (KeyError, TypeError, ValueError, StopIteration) as error:
                print(
                    f"!! cannot summarize {name}: {error!r}", file=sys.stderr
                )
    verdicts = goals(summary)
    runs = list(previous.get("runs", []))
    if selected:
        runs.append(
            {
                "command": "python -m bench"
                + (" --quick" if args.quick else "")
                + (f" --only {args.only}" if args.only else ""),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "minutes": round((time.monotonic() - started) / 60, 1),
            }
        )
    print_summary(summary, verdicts, runs)
    report = {
        "runs": runs,
        "machine": facts if selected else previous.get("machine", facts),
        "summary": summary,
        "goals": verdicts,
        "benchmarks": records,
    }
    json_path.write_text(
        json.dumps(_finite(report), indent=2, default=str) + "\n",
        encoding="utf-8",
    )
    wrote = [json_path]
    if chart(summary, out / "benchmarks.png", runs):
        wrote.append(out / "benchmarks.png")
    print(f"\nwrote {' and '.join(map(str, wrote))}")
    failed = [
        b.name
        for b in selected
        if records[b.name]["returncode"] != 0
        or records[b.name]["figures"] is None
        or "figures_from" in records[b.name]
    ]
    if failed:
        print(f"!! failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
