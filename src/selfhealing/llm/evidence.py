"""What the advisor is shown, and how it is made safe to show.

Logs and probe output are untrusted: a request path or a log line can carry
"ignore previous instructions" straight into a prompt. So every piece of
evidence is redacted of secrets, stripped of tag-like characters, prefixed
line by line, fenced with its provenance, and capped in size. The prompt
says the evidence is data; the structural defence is that the model can
only answer with an allow-listed action id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfhealing.redact import redact


__all__ = [
    "MAX_SOURCE_BYTES",
    "MAX_TOTAL_BYTES",
    "Evidence",
    "render_evidence",
]

MAX_SOURCE_BYTES = 8 * 1024
MAX_TOTAL_BYTES = 32 * 1024


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything known about one unhealthy target, as lines of text."""

    target: str
    health: str
    checks: Sequence[str] = ()  # recent check results, oldest first
    log_lines: Sequence[str] = ()  # the last lines of its process log
    process: Mapping[str, Any] = field(default_factory=dict)  # pid, rss...
    actions: Sequence[str] = ()  # recent actions and their outcomes


def _neutralise(line: str) -> str:
    # Tag-like text in data must not look like our own fences.
    cleaned = "".join(ch if ch.isprintable() else " " for ch in line)
    return cleaned.replace("<", "\u2039").replace(">", "\u203a")


def _section(source: str, lines: Sequence[str]) -> str:
    kept: list[str] = []
    size = 0
    # Newest lines matter most: keep from the end, within the cap.
    for line in reversed(lines):
        text = "| " + _neutralise(redact(line))[:1000]
        size += len(text.encode()) + 1
        if size > MAX_SOURCE_BYTES:
            kept.append("| [older lines cut]")
            break
        kept.append(text)
    body = "\n".join(reversed(kept)) if kept else "| (none)"
    return (
        f'<section source="{source}" lines="{len(lines)}">\n{body}\n</section>'
    )


def render_evidence(evidence: Evidence) -> str:
    """The user message: fenced, redacted, capped evidence."""
    process = [
        f"{key}: {value}" for key, value in sorted(evidence.process.items())
    ]
    sections = [
        _section("health", [f"{evidence.target} is {evidence.health}"]),
        _section("checks", evidence.checks),
        _section("actions", evidence.actions),
        _section("process", process),
        _section("log", evidence.log_lines),
    ]
    text = ""
    for section in sections:
        if len((text + section).encode()) > MAX_TOTAL_BYTES:
            break
        text += section + "\n"
    target = _neutralise(evidence.target).replace('"', "'")
    return f'<evidence target="{target}">\n{text}</evidence>'
