"""Health checks: single probes that each return a CheckResult.

A check runs one probe under one overall deadline (its ``timeout``) and
never raises, except ``asyncio.CancelledError``; failures of any kind are
``ok=False`` results with a short detail. Scheduling, thresholds and
healing belong to the modules that run the checks.
"""

from __future__ import annotations

from selfhealing.checks._result import CheckResult, HealthCheck
from selfhealing.checks.callable import CallableCheck
from selfhealing.checks.command import CommandCheck
from selfhealing.checks.http import HttpCheck, HttpSession
from selfhealing.checks.process import ProcessCheck
from selfhealing.checks.resources import DiskCheck, MemoryCheck
from selfhealing.checks.tcp import TcpCheck


__all__ = [
    "CallableCheck",
    "CheckResult",
    "CommandCheck",
    "DiskCheck",
    "HealthCheck",
    "HttpCheck",
    "HttpSession",
    "MemoryCheck",
    "ProcessCheck",
    "TcpCheck",
]
