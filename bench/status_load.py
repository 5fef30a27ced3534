"""Status under load: GET /api/status of the real daemon beside a bare route.

    python bench/status_load.py [--quick] [--rounds N] [--no-wrk]
        [--json FILE]

Starts the real daemon (``python -m selfhealing run``) in a temp dir with a
config of 1 process and 5 targets (http, tcp, process, disk, memory), so
the status document is realistic, and a bare FastAPI app answering
``{"ok": true}``, served by uvicorn exactly as the daemon serves its app
(uvloop when installed, uvicorn's default http implementation, access log
off, lifespan off, no server header), each in its own process.

For each endpoint (daemon /api/status, daemon /healthz, bare /):

* latency at a fixed 500 req/s, open loop: a Python generator in its own
  process sends on schedule over up to 64 keep-alive connections; a
  request that finds every connection busy waits, and that wait counts;
* throughput, closed loop: ``wrk -t1 -c16 -d10s`` when wrk is installed,
  else the Python generator with 16 connections.

Endpoints are measured one after another, rounds interleaved (3 rounds of
10 s; ``--quick``: 1 of 3 s); figures are medians over the rounds and the
ratio status / bare pairs each round. The daemon serves the status from
a short-lived cache (dropped on every event) and its routes' dependencies
are ``async def``, so no request hops to FastAPI's thread pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from _support import (
    TINY_SERVER,
    Janitor,
    free_port,
    http_get,
    load_average,
    percentile,
    raise_on_sigterm,
    wait_http,
)


RATE = 500.0
CONCURRENCY = 16
MAX_CONNECTIONS = 64


# ------------------------------------------------------- the bare server


def _bare_server(port: int) -> int:
    import uvicorn  # noqa: PLC0415

    from fastapi import FastAPI  # noqa: PLC0415

    app = FastAPI()

    @app.get("/")
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
        )
    )
    _run(server.serve(sockets=[sock]))
    return 0


def _run(coro: Any) -> Any:
    """Run on uvloop where it is installed, as the daemon does."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# ---------------------------------------------------- the load generator


class _Client(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.done: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, _exc: Exception | None) -> None:
        self.lost = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionResetError("connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        match = re.search(rb"\r\ncontent-length: *(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        status = int(head.split(b" ", 2)[1])
        if self.done is not None and not self.done.done():
            self.done.set_result(status)

    async def get(self, request: bytes) -> int:
        assert self.transport is not None
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.done


@dataclass
class Load:
    mode: str
    sent: int = 0
    errors: int = 0
    window: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.window if self.window else 0.0


async def _connect(port: int) -> _Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_Client, "127.0.0.1", port)
    return client


async def _open_loop(
    port: int, path: str, rate: float, duration: float
) -> Load:
    """Send at *rate* req/s on schedule; latency from the send (or from
    the moment it was due, if it had to wait for a free connection)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    idle = deque([await _connect(port) for _ in range(8)])
    opened = len(idle)
    free = asyncio.Condition()
    load = Load(f"open loop {rate:.0f}/s")
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        nonlocal opened
        async with free:
            if not idle and opened < MAX_CONNECTIONS:
                opened += 1
                idle.append(await _connect(port))
            await free.wait_for(lambda: bool(idle))
            client = idle.popleft()
        start = due
        try:
            status = await client.get(request)
        except OSError:
            load.errors += 1
            return
        load.latencies_ms.append((time.perf_counter() - start) * 1000)
        if status != 200:
            load.errors += 1
        async with free:
            if client.lost:
                opened -= 1
            else:
                idle.append(client)
                free.notify()

    origin = time.perf_counter() + 0.05
    total = int(rate * duration)
    for k in range(total):
        due = origin + k / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        # Late by the timer's granularity: measure from now, not from due.
        task = asyncio.create_task(one(max(due, time.perf_counter())))
        pending.add(task)
        task.add_done_callback(pending.discard)
        load.sent += 1
    await asyncio.gather(*pending)
    load.window = time.perf_counter() - origin
    return load


async def _closed_loop(
    port: int, path: str, concurrency: int, duration: float
) -> Load:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    clients = [await _connect(port) for _ in range(concurrency)]
    load = Load(f"closed loop c{concurrency}")
    stop = time.perf_counter() + duration

    async def worker(client: _Client) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status = await client.get(request)
            load.latencies_ms.append((time.perf_counter() - start) * 1000)
            load.sent += 1
            if status != 200:
                load.errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    load.window = time.perf_counter() - start
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return load


def _load_main(args: argparse.Namespace) -> int:
    if args.rate:
        load = _run(_open_loop(args.port, args.path, args.rate, args.duration))
    else:
        load = _run(
            _closed_loop(args.port, args.path, args.concurrency, args.duration)
        )
    lat = load.latencies_ms
    print(
        json.dumps(
            {
                "mode": load.mode,
                "sent": load.sent,
                "done": len(lat),
                "errors": load.errors,
                "rps": load.rps,
                "p50": percentile(lat, 50),
                "p99": percentile(lat, 99),
                "max": max(lat, default=math.nan),
            }
        )
    )
    return 0


# -------------------------------------------------------------- the main


@dataclass
class Endpoint:
    name: str
    port: int
    path: str
    size: int = 0
    latency: list[dict[str, float]] = field(default_factory=list)
    throughput: list[dict[str, float]] = field(default_factory=list)

    def med(self, rows: str, key: str) -> float:
        values = [row[key] for row in getattr(self, rows)]
        return statistics.median(values) if values else math.nan


DAEMON_CONFIG = """\
[engine]
backoff_base = "1s"

[breakers.payments]
failure_threshold = 3
recovery_timeout = "30s"

[[processes]]
name = "web"
command = [{argv}]
stop_timeout = "2s"

[[targets]]
name = "web-http"
actions = ["restart-web"]
[targets.check]
type = "http"
url = "http://127.0.0.1:{web}/health"
interval = "1s"
body_contains = "ok"

[[targets]]
name = "web-tcp"
actions = ["restart-web"]
[targets.check]
type = "tcp"
port = {web}
interval = "2s"

[[targets]]
name = "web-process"
[targets.check]
type = "process"
process = "web"
interval = "1s"

[[targets]]
name = "disk"
[targets.check]
type = "disk"
path = "."
max_used_percent = 99.9
interval = "5s"

[[targets]]
name = "memory"
[targets.check]
type = "memory"
max_used_percent = 99.9
interval = "5s"

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"
"""


def _generator(
    janitor: Janitor, endpoint: Endpoint, extra: list[str], timeout: float
) -> dict[str, float]:
    argv = [
        sys.executable,
        __file__,
        "--load",
        "--port",
        str(endpoint.port),
        "--path",
        endpoint.path,
        *extra,
    ]
    proc = janitor.start(argv, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed on {endpoint.name}")
    return cast("dict[str, float]", json.loads(out))


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk(
    janitor: Janitor, wrk: str, endpoint: Endpoint, duration: float
) -> dict[str, float]:
    url = f"http://127.0.0.1:{endpoint.port}{endpoint.path}"
    proc = janitor.start(
        [
            wrk,
            "-t1",
            f"-c{CONCURRENCY}",
            f"-d{duration:.0f}s",
            "--latency",
            url,
        ],
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=duration + 30)
    text = out.decode()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if proc.returncode != 0 or rps is None:
        raise RuntimeError(f"wrk failed on {endpoint.name}:\n{text}")
    row = {"rps": float(rps.group(1))}
    for name, key in (("50%", "p50"), ("99%", "p99")):
        found = re.search(rf"{name}\s+([\d.]+)(us|ms|s)\b", text)
        if found:
            row[key] = float(found.group(1)) * _UNITS[found.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    row["errors"] = float(errors.group(1)) if errors else 0.0
    return row


def _start_daemon(janitor: Janitor, workdir: Path) -> int:
    workdir.mkdir(exist_ok=True)
    web = free_port()
    api = free_port()
    script = workdir / "web.py"
    script.write_text(TINY_SERVER, encoding="utf-8")
    argv = ", ".join(
        json.dumps(part)
        for part in [sys.executable, "-I", str(script), str(web)]
    )
    config = workdir / "selfheal.toml"
    config.write_text(
        DAEMON_CONFIG.format(argv=argv, web=web), encoding="utf-8"
    )
    proc = janitor.start(
        [
            sys.executable,
            "-m",
            "selfhealing",
            "run",
            "--config",
            str(config),
            "--port",
            str(api),
        ],
        cwd=workdir,
        log=workdir / "daemon.out",
    )
    wait_http(api, "/healthz", process=proc)
    wait_http(web)
    # Let every target report at least once, so the document is full.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _, body = http_get(api, "/api/status")
        targets = json.loads(body).get("targets", [])
        if targets and all(t["lastCheck"] for t in targets):
            break
        time.sleep(0.2)
    return api


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 short round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3)")
    parser.add_argument("--no-wrk", action="store_true")
    parser.add_argument("--json", help="write the figures to this file")
    # Internal: the bare server and the Python load generator.
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        return _bare_server(args.port)
    if args.load:
        return _load_main(args)

    raise_on_sigterm()
    rounds = args.rounds or (1 if args.quick else 3)
    duration = 3.0 if args.quick else 10.0
    wrk = None if args.no_wrk else shutil.which("wrk")
    with (
        tempfile.TemporaryDirectory(prefix="status-bench-") as tmp,
        Janitor() as janitor,
    ):
        api = _start_daemon(janitor, Path(tmp) / "daemon")
        bare_port = free_port()
        bare = janitor.start(
            [sys.executable, __file__, "--bare", "--port", str(bare_port)],
            log=Path(tmp) / "bare.out",
        )
        wait_http(bare_port, process=bare)
        endpoints = [
            Endpoint("daemon /api/status", api, "/api/status"),
            Endpoint("daemon /healthz", api, "/healthz"),
            Endpoint("bare FastAPI /", bare_port, "/"),
        ]
        for endpoint in endpoints:
            endpoint.size = len(http_get(endpoint.port, endpoint.path)[1])
        document = http_get(api, "/api/status")[1]
        for number in range(rounds):
            for endpoint in endpoints:
                print(
                    f"  [{number + 1}/{rounds}] {endpoint.name}",
                    file=sys.stderr,
                )
                endpoint.latency.append(
                    _generator(
                        janitor,
                        endpoint,
                        ["--rate", str(RATE), "--duration", str(duration)],
                        duration + 60,
                    )
                )
                if wrk:
                    row = _wrk(janitor, wrk, endpoint, duration)
                else:
                    row = _generator(
                        janitor,
                        endpoint,
                        [
                            "--concurrency",
                            str(CONCURRENCY),
                            "--duration",
                            str(duration),
                        ],
                        duration + 60,
                    )
                endpoint.throughput.append(row)
        daemon_status = json.loads(document)

    loader = f"wrk -t1 -c{CONCURRENCY}" if wrk else f"Python, c{CONCURRENCY}"
    print(
        f"Python {sys.version.split()[0]}, medians of {rounds} round(s), "
        f"{os.cpu_count()} CPUs, {load_average()}; "
        f"status document {len(document)} B, "
        f"{len(daemon_status.get('targets', []))} targets, "
        f"{len(daemon_status.get('processes', []))} process(es)"
    )
    print(
        f"{'endpoint':<22}{'bytes':>7}   {RATE:.0f} req/s open loop:"
        f"{'p50':>7}{'p99':>9}{'max':>9}   closed ({loader}):"
        f"{'req/s':>8}{'p50':>8}{'p99':>8}"
    )
    for e in endpoints:
        print(
            f"{e.name:<22}{e.size:>7}{'':>23}"
            f"{e.med('latency', 'p50'):>5.2f}ms{e.med('latency', 'p99'):>7.2f}ms"
            f"{e.med('latency', 'max'):>7.1f}ms{'':>{len(loader) + 13}}"
            f"{e.med('throughput', 'rps'):>8.0f}"
            f"{e.med('throughput', 'p50'):>6.2f}ms"
            f"{e.med('throughput', 'p99'):>6.2f}ms"
        )
    status, healthz, plain = endpoints[:3]
    ratios = [
        s["rps"] / b["rps"]
        for s, b in zip(status.throughput, plain.throughput, strict=True)
    ]
    ratio = statistics.median(ratios)
    print(
        "status / bare throughput: "
        f"{ratio:.2f} (per round: {', '.join(f'{r:.2f}' for r in ratios)}); "
        "daemon /healthz / bare: "
        f"{healthz.med('throughput', 'rps') / plain.med('throughput', 'rps'):.2f}"
    )
    p99 = status.med("latency", "p99")
    print(
        f"goals: status p99 < 5 ms at {RATE:.0f} req/s: {p99:.2f} ms "
        f"{'met' if p99 < 5 else 'MISSED'}; status >= 60 % of bare "
        f"throughput: {ratio:.0%} {'met' if ratio >= 0.6 else 'MISSED'}"
    )
    errors = {
        e.name: sum(r.get("errors", 0) for r in e.latency + e.throughput)
        for e in endpoints
    }
    for name, count in errors.items():
        if count:
            print(f"WARNING {name}: {count:.0f} errors")
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(
                {
                    "status_bytes": len(document),
                    "endpoints": [
                        {
                            "name": e.name,
                            "bytes": e.size,
                            "latency": e.latency,
                            "throughput": e.throughput,
                        }
                        for e in endpoints
                    ],
                    "ratio": ratio,
                    "loader": loader,
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
