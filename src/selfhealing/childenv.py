"""The environment a child process gets: the daemon's, minus its secrets.

Supervised programs and command checks and actions inherit the daemon's
environment, except the daemon's own secrets (the Anthropic API keys and
the admin token): a child that prints its environment would otherwise put
a key into its log, a check's detail or the audit trail. A child that needs
one gets it explicitly through its ``env`` in the config.
"""

from __future__ import annotations

import os
import re

from collections.abc import Iterable, Mapping


__all__ = ["child_environment", "is_daemon_secret", "withhold"]

_SECRET = re.compile(
    r"^(ANTHROPIC_API_KEY\w*|ANTHROPIC_AUTH_TOKEN|SELFHEAL_ADMIN_TOKEN)$"
)


# More names holding secrets: the variables `[llm] keys` names.
_withheld: set[str] = set()


def withhold(names: Iterable[str]) -> None:
    """Also keep these variables from children (process-wide)."""
    _withheld.update(names)


def is_daemon_secret(name: str) -> bool:
    return name in _withheld or _SECRET.match(name) is not None


def child_environment(
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``os.environ`` without the daemon's secrets, then *extra* on top."""
    env = {k: v for k, v in os.environ.items() if not is_daemon_secret(k)}
    env.update(extra or {})
    return env
