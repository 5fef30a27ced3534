"""Remediation actions: what a target's escalation ladder runs.

Each action does one thing under one deadline and reports an ActionResult;
it never raises except on cancellation. Whether the target is healed is not
the action's call: the target verifies it with its own check afterwards.
"""

from __future__ import annotations

from selfhealing.actions._base import ActionResult, RemediationAction
from selfhealing.actions.callable import CallableAction
from selfhealing.actions.command import CommandAction
from selfhealing.actions.http import HttpAction
from selfhealing.actions.restart import RestartProcessAction


__all__ = [
    "ActionResult",
    "CallableAction",
    "CommandAction",
    "HttpAction",
    "RemediationAction",
    "RestartProcessAction",
]
