"""The LLM side of selfhealing: an advisor that may suggest, never decide.

The advisor is optional (``pip install selfhealing[llm]``) and never blocks
healing. This package holds what it needs without the ``anthropic`` SDK:

* :class:`KeyPool` (``selfhealing.llm.keypool``): the API keys, rotated
  round-robin, cooled down after a 429 (a whole group at once), failed
  after a 401/402/403 until an operator resets them. The status API's
  ``llm.keyManagement`` is :meth:`KeyPool.snapshot`'s ``to_dict()``.

Secrets never leave the pool unmasked; :func:`selfhealing.redact.redact`
scrubs evidence before it is sent anywhere.
"""

from __future__ import annotations

from selfhealing.llm.keypool import (
    KeyChangeListener,
    KeyManagement,
    KeyPool,
    KeySnapshot,
    KeySpec,
    KeyState,
    Lease,
    discover_keys,
    mask_key,
    parse_retry_after,
    rate_limit_cooldown,
)


__all__ = [
    "KeyChangeListener",
    "KeyManagement",
    "KeyPool",
    "KeySnapshot",
    "KeySpec",
    "KeyState",
    "Lease",
    "discover_keys",
    "mask_key",
    "parse_retry_after",
    "rate_limit_cooldown",
]
