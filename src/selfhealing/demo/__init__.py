"""``selfheal demo``: the daemon, a sample service that misbehaves on cue, and
a config that heals it, so a newcomer sees it all within a minute.

The demo writes everything into one directory (default ``./selfheal-demo``):
``selfheal.toml``, the service's schedule, ``logs/`` and ``.selfhealing/``.
"""

from __future__ import annotations

import json
import socket
import sys
import time

from pathlib import Path

from selfhealing.demo._files import (
    BROKEN_FOR_GOOD,
    SCENES_FILE,
    STICKY_CLEARED,
)


__all__ = ["CYCLE", "SCENES", "banner", "prepare_demo"]

# Offsets in seconds from the start; the schedule repeats every CYCLE.
SCENES: list[dict[str, float | str]] = [
    {"at": 8, "kind": "error", "says": "answers HTTP 500"},
    {"at": 18, "kind": "crash", "says": "crashes (exit code 3)"},
    {"at": 28, "kind": "hang", "says": "hangs (requests time out)"},
    {"at": 38, "kind": "sticky", "says": "500s a restart does not fix"},
    {"at": 50, "kind": "outage", "seconds": 8, "says": "a dependency is down"},
]
# From the last scene on, the copy lives long enough for its slow leak to
# show: the forecast rule restarts it before it reaches its threshold.
LEAK_MB_PER_S = 0.8
CYCLE = 200.0

CONFIG = """\
# The demo's config: written by `selfheal demo`, safe to edit and rerun
# with `selfheal run` from this directory.
[server]
port = {port}

[engine]
max_consecutive_failures = 10
backoff_base = "1s"
backoff_max = "8s"

[breakers."self-healing-main"]
failure_threshold = 5
recovery_timeout = "10s"
permanent_after_trips = 10   # let the 10-failure rule decide, as in the guide

[[processes]]
name = "web"
command = [{python}, "-m", "selfhealing.demo.service", "serve", "--port", "{service_port}", "--dir", "."]
stop_timeout = "2s"

[[targets]]
name = "web"
actions = ["restart-web", "clear-cache"]   # the escalation ladder
verify_timeout = "3s"
relapse_window = "5s"
[targets.breaker]   # target:web, like self-healing-main above
failure_threshold = 5
recovery_timeout = "10s"
permanent_after_trips = 10
[targets.check]
type = "http"
url = "http://127.0.0.1:{service_port}/health"
interval = "1s"
timeout = "500ms"
failure_threshold = 2

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"

[[actions]]
name = "clear-cache"
type = "command"
command = [{python}, "-m", "selfhealing.demo.service", "clear-cache", "--dir", "."]
timeout = "10s"

# Preventive healing: the service leaks memory; restart it before it hurts.
[resources]
interval = "2s"

[[preventive]]
name = "web-memory-leak"
process = "web"
condition = "rss will reach 150MB within 2m"
window = "40s"
action = "restart-web"
cooldown = "1m"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_demo(directory: Path, *, port: int, chaos: bool) -> Path:
    """Write the config and the schedule; return the config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SCENES_FILE).write_text(
        json.dumps(
            {
                "epoch": time.time(),
                "cycle": CYCLE,
                "scenes": SCENES,
                "leak_mb_per_s": LEAK_MB_PER_S,
            }
        )
    )
    (directory / STICKY_CLEARED).unlink(missing_ok=True)
    broken = directory / BROKEN_FOR_GOOD
    if chaos:
        broken.write_text("selfheal demo --chaos: remove this file to fix\n")
    else:
        broken.unlink(missing_ok=True)
    config = directory / "selfheal.toml"
    config.write_text(
        CONFIG.format(
            port=port,
            service_port=_free_port(),
            python=json.dumps(sys.executable),
        )
    )
    return config


_BANNER = """\
selfheal demo: a sample service `web` misbehaves on cue; the daemon heals it.
  dashboard   {url}/
  status      curl -s {url}/api/status | jq '.selfHealing'
  CLI         selfheal status    |    selfheal events --follow
  files       {directory}/  (selfheal.toml, logs/, .selfhealing/)
"""

_SCHEDULE = """
Within the first minute:
{scenes}
Then web leaks memory; a forecast rule restarts it before it reaches 150 MB
(about two minutes in: watch `selfheal events --kind healing.*`).
  (the schedule repeats every {cycle}s; `selfheal demo --chaos` breaks it
  for good, to practise dormant mode and the resume procedure)
"""

_CHAOS = """
CHAOS: the service is broken for good. Every healing fails, the engine backs
off, and after 10 failures in a row (2-3 minutes) it goes DORMANT.
Then practise the guide's recovery:
  1. curl -s {url}/api/status | jq '.selfHealing.isDormant'
  2. fix the root cause:   rm {broken}
  3. curl -X POST {url}/api/system/heal/resume \\
       -H "Content-Type: application/json" -d '{{"reason": "Root cause fixed"}}'
  4. curl -s {url}/api/status | jq '.status'
"""


def banner(directory: Path, *, port: int, chaos: bool) -> str:
    """What `selfheal demo` prints first: where to look, what to try."""
    url = f"http://127.0.0.1:{port}"
    text = _BANNER.format(url=url, directory=directory)
    if chaos:
        text += _CHAOS.format(url=url, broken=directory / BROKEN_FOR_GOOD)
    else:
        scenes = "\n".join(
            f"  t+{int(float(scene['at'])):>2}s  web {scene['says']}"
            for scene in SCENES
        )
        text += _SCHEDULE.format(scenes=scenes, cycle=int(CYCLE))
    return text + "\nCtrl+C stops the daemon and the service."
