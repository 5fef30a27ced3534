"""Exponential backoff: a pure, clamped function and a frozen policy."""

from __future__ import annotations

import math

from dataclasses import dataclass
from datetime import timedelta
from random import Random

from selfhealing.clock import seconds
from selfhealing.exceptions import ConfigError


__all__ = ["Backoff", "compute_delay"]


def compute_delay(
    failures: int,
    *,
    base: float,
    factor: float = 2.0,
    cap: float,
    jitter: float = 0.0,
    rng: Random | None = None,
) -> float:
    """Return ``min(cap, base * factor**failures)``, optionally jittered.

    Never overflows: a huge *failures* simply yields *cap*. With *jitter*
    ``j`` in [0, 1] the delay is scaled by a factor drawn uniformly from
    ``[1 - j, 1]`` using *rng*, so it never exceeds the unjittered delay.
    """
    if failures < 0:
        raise ConfigError(f"must be >= 0, got {failures}", where="failures")
    if base < 0 or cap < 0 or factor < 1:
        raise ConfigError(
            f"need base >= 0, cap >= 0, factor >= 1; got base={base}, "
            f"cap={cap}, factor={factor}",
            where="backoff",
        )
    if base == 0:
        delay = 0.0
    elif factor == 1:
        delay = min(cap, base)
    else:
        # Compare exponents, not products, so no power ever overflows.
        limit = math.log(cap / base, factor) if cap > 0 else -math.inf
        delay = cap if failures >= limit else min(cap, base * factor**failures)
    if jitter:
        if not 0 <= jitter <= 1:
            raise ConfigError(
                f"must be within [0, 1], got {jitter}", where="jitter"
            )
        delay *= 1 - jitter * (rng or Random()).random()  # noqa: S311
    return delay


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff policy in seconds. The guide's default: 5 s doubling to 30 m."""

    base: float = 5.0
    factor: float = 2.0
    cap: float = 1800.0
    jitter: float = 0.0

    @classmethod
    def of(
        cls,
        *,
        base: float | timedelta = 5.0,
        factor: float = 2.0,
        cap: float | timedelta = 1800.0,
        jitter: float = 0.0,
    ) -> Backoff:
        """Build a policy from seconds or timedeltas, validating once."""
        policy = cls(
            seconds(base, name="backoff_base"),
            factor,
            seconds(cap, name="backoff_max"),
            jitter,
        )
        policy.delay(0)  # validates every field
        if policy.base <= 0:
            raise ConfigError(
                f"must be > 0, got {policy.base}", where="backoff_base"
            )
        if policy.cap < policy.base:
            raise ConfigError(
                f"backoff_max ({policy.cap}s) is below backoff_base "
                f"({policy.base}s)",
                where="backoff_max",
            )
        return policy

    def delay(self, failures: int, rng: Random | None = None) -> float:
        """Seconds to wait after *failures* consecutive failures."""
        return compute_delay(
            failures,
            base=self.base,
            factor=self.factor,
            cap=self.cap,
            jitter=self.jitter,
            rng=rng,
        )
