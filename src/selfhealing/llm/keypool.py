"""LLM API keys: discovery, rotation, cool-down and failure, on a Clock.

Keys come from ``ANTHROPIC_API_KEY``, ``ANTHROPIC_API_KEYS`` (separated by
commas) and the config's ``[llm] keys = [{env = "NAME", group = "org-a"}]``,
which names environment variables and never holds a secret. All of them are
read through the daemon's settings, so ``.env.local`` works too. A secret
seen twice is used once.

Each key is in one of three states::

    ACTIVE  --429-->  RATE_LIMITED  --cool-down over (seen on read)-->  ACTIVE
    ACTIVE / RATE_LIMITED  --401/402/403-->  FAILED  --reset()-->  ACTIVE

* A 429 cools the key for the server's ``retry-after``, else for 30 s
  doubling per consecutive 429 up to 15 min, clamped to [1 s, 15 min]; a
  spend-limit 429 (``enforced_spend_limit_reached``) cools for at least an
  hour. Keys declared in one group share their organisation's limits, so the
  whole group cools together: rotation is failover, not a way past a limit.
* 401, 402 and 403 fail a key until an operator resets it.
* 5xx, 529, timeouts and connection errors are the service's fault, not the
  key's: :meth:`KeyPool.report_error` only records the text for display (the
  advisor's circuit breaker counts those).

A key that has not failed and is not cooling down is active, used or not,
so ``total == active + rate_limited + failed`` always holds. Leases go
round-robin over the active keys. Cool-downs end lazily, on the next read,
under the pool's one lock; listeners and logs run after it is released.

A secret never leaves this module unmasked: ids, reprs, snapshots, errors,
log lines and recorded error texts show ``sk-ant-...a1b2`` forms, and only
:attr:`Lease.secret` hands the key itself to the advisor.
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import threading

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from selfhealing.clock import Clock, system_clock, utc_iso
from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    ConfigError,
    NoKeyAvailableError,
    UnknownNameError,
)
from selfhealing.redact import redact


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

_log = logging.getLogger("selfhealing.keypool")

ENV_KEY = "ANTHROPIC_API_KEY"
ENV_KEYS = "ANTHROPIC_API_KEYS"
SPEND_LIMIT_ERROR_CODE = "enforced_spend_limit_reached"
MIN_COOLDOWN = 1.0
MAX_COOLDOWN = 900.0
FIRST_COOLDOWN = 30.0
SPEND_LIMIT_COOLDOWN = 3600.0
#: The statuses that fail a key, and the API's error type for each.
FAILED_STATUSES: Mapping[int, str] = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
}

_ANTHROPIC_PREFIX = "sk-ant-"
_SHORT_KEY = 12
_MESSAGE_LIMIT = 500
_USABLE_SECRET = re.compile(r"[!-~]+")  # visible ASCII, no whitespace
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LIST_SEPARATOR = re.compile(r"[,\s]+")
_NUMBERED_KEY = re.compile(rf"{ENV_KEY}_[0-9]+")
_RESET_HEADER = re.compile(r"anthropic-ratelimit-(.+)-reset")
_CONFIG_FIELDS = frozenset({"env", "group"})


class KeyState(StrEnum):
    """What a key can do now. The values appear in the status API."""

    ACTIVE = "active"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"


_ACTIVE = KeyState.ACTIVE
_RATE_LIMITED = KeyState.RATE_LIMITED
_FAILED = KeyState.FAILED

#: ``on_change(key_id, old, new, reason)``, called after each transition.
KeyChangeListener = Callable[[str, KeyState, KeyState, str | None], None]


def mask_key(secret: str) -> str:
    """The display form of a key: ``sk-ant-...a1b2``.

    Anthropic keys keep ``sk-ant-`` and their last 4 characters, other keys
    their first 3 and last 4. Keys shorter than 12 characters show ``***``
    and their last 2, and keys of 4 characters or fewer show nothing.
    """
    if len(secret) < _SHORT_KEY:
        return "***" + (secret[-2:] if len(secret) > 4 else "")  # noqa: PLR2004
    if secret.startswith(_ANTHROPIC_PREFIX):
        return f"{_ANTHROPIC_PREFIX}...{secret[-4:]}"
    return f"{secret[:3]}...{secret[-4:]}"


@dataclass(frozen=True, slots=True, repr=False)
class KeySpec:
    """One key as discovered: the secret, where it came from, its group.

    *source* is ``"ANTHROPIC_API_KEY"``, ``"ANTHROPIC_API_KEYS[2]"`` (the
    second key of that list) or the variable named in the config. Keys of
    one *group* share an organisation's rate limits. The repr masks the
    secret.
    """

    secret: str
    source: str
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError("a key's source must be a non-empty string")
        if not isinstance(self.secret, str) or not _USABLE_SECRET.fullmatch(
            self.secret
        ):
            raise ConfigError(
                "not a usable API key: it is empty or holds whitespace or "
                "control characters",
                where=self.source,
            )
        if self.group is not None and (
            not isinstance(self.group, str) or not self.group.strip()
        ):
            raise ConfigError(
                f"a key's group must be a non-empty string, got "
                f"{self.group!r}",
                where=self.source,
            )

    def __repr__(self) -> str:
        return (
            f"KeySpec(secret={mask_key(self.secret)!r}, "
            f"source={self.source!r}, group={self.group!r})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Lease:
    """One key handed to the advisor for one request; the repr masks it."""

    id: str
    secret: str

    def __repr__(self) -> str:
        return f"Lease(id={self.id!r}, secret={mask_key(self.secret)!r})"


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """One key at one moment. Times are wall-clock epochs.

    *failures* counts the errors charged to this key (429s, 401/402/403);
    *requests* counts the leases it served. *cooldown_remaining* is the
    number of seconds left when the snapshot was taken.
    """

    id: str
    source: str
    group: str | None
    state: KeyState
    failures: int
    requests: int
    last_error: str | None
    last_error_at: float | None
    last_success_at: float | None
    cooldown_until: float | None
    cooldown_remaining: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status API's shape (camelCase)."""
        remaining = self.cooldown_remaining
        return {
            "id": self.id,
            "source": self.source,
            "group": self.group,
            "state": str(self.state),
            "failures": self.failures,
            "requests": self.requests,
            "lastError": self.last_error,
            "lastErrorAt": utc_iso(self.last_error_at),
            "lastSuccessAt": utc_iso(self.last_success_at),
            "cooldownUntil": utc_iso(self.cooldown_until),
            "cooldownRemainingS": (
                None if remaining is None else round(remaining, 1)
            ),
        }


@dataclass(frozen=True, slots=True)
class KeyManagement:
    """The pool at one moment: ``total == active + rate_limited + failed``."""

    total: int
    active: int
    failed: int
    rate_limited: int
    keys: tuple[KeySnapshot, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The status API's ``llm.keyManagement``."""
        return {
            "totalKeys": self.total,
            "activeKeys": self.active,
            "failedKeys": self.failed,
            "rateLimitedKeys": self.rate_limited,
            "keys": [key.to_dict() for key in self.keys],
        }


# ------------------------------------------------------------------ pure


def rate_limit_cooldown(
    *,
    retry_after: float | None,
    consecutive: int,
    error_code: str | None = None,
) -> float:
    """Seconds a 429 cools a key for.

    The server's *retry_after* when it sent one, else 30 s doubled for each
    of the *consecutive* 429s after the first; clamped to [1 s, 15 min]. A
    spend-limit *error_code* cools for at least an hour.
    """
    if retry_after is not None and not math.isnan(retry_after):
        cooldown = float(retry_after)
    else:
        doublings = min(max(consecutive, 1) - 1, 32)  # no overflow
        cooldown = FIRST_COOLDOWN * 2.0**doublings
    cooldown = min(max(cooldown, MIN_COOLDOWN), MAX_COOLDOWN)
    if error_code == SPEND_LIMIT_ERROR_CODE:
        cooldown = max(cooldown, SPEND_LIMIT_COOLDOWN)
    return cooldown


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _http_date(text: str) -> float | None:
    try:
        return _epoch(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _rfc3339(text: str) -> float | None:
    try:
        return _epoch(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


def parse_retry_after(
    headers: Mapping[str, str], *, now: float
) -> float | None:
    """Seconds a 429's headers ask to wait, or None when they do not say.

    ``retry-after-ms``, else ``retry-after`` (seconds, or an HTTP date),
    else the latest ``anthropic-ratelimit-*-reset`` (RFC 3339) whose
    matching ``-remaining`` is ``0``. Header names are case-insensitive;
    *now* is the wall clock (epoch seconds) that dates are measured from.
    Garbage is ignored. Dates in the past give 0.0.
    """
    lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    milliseconds = _seconds(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = lowered.get("retry-after")
    if value is not None:
        delay = _seconds(value)
        if delay is not None:
            return delay
        when = _http_date(value)
        if when is not None:
            return max(0.0, when - now)
    latest: float | None = None
    for name, text in lowered.items():
        match = _RESET_HEADER.fullmatch(name)
        if match is None:
            continue
        remaining = lowered.get(f"anthropic-ratelimit-{match[1]}-remaining")
        if remaining != "0":
            continue
        when = _rfc3339(text)
        if when is not None and (latest is None or when > latest):
            latest = when
    return None if latest is None else max(0.0, latest - now)


# -------------------------------------------------------------- discovery


def _lookup(
    settings: EnvSettings | Mapping[str, str],
) -> Callable[[str], str | None]:
    if isinstance(settings, EnvSettings):
        return settings.value
    return settings.get


def _names(settings: EnvSettings | Mapping[str, str]) -> list[str]:
    if isinstance(settings, EnvSettings):
        return settings.names(f"{ENV_KEY}_")
    return sorted(str(name) for name in settings)


def _add(
    specs: list[KeySpec], value: str, source: str, group: str | None
) -> None:
    if not _USABLE_SECRET.fullmatch(value):
        _log.warning(
            "%s is not a usable API key (it holds whitespace or control "
            "characters); skipping it",
            source,
        )
        return
    specs.append(KeySpec(value, source, group))


def _config_entry(entry: object, index: int) -> tuple[str, str | None]:
    where = f"llm.keys[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(
            'expected a table like {env = "ANTHROPIC_API_KEY_ORG_A", '
            'group = "org-a"}',
            where=where,
        )
    unknown = sorted(str(name) for name in entry if name not in _CONFIG_FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(unknown)}: a key entry has env "
            "and an optional group",
            where=where,
        )
    env = entry.get("env")
    if isinstance(env, str) and env.startswith("sk-"):
        raise ConfigError(
            "holds an API key, not a variable name: the config names the "
            'variable (env = "ANTHROPIC_API_KEY_ORG_A"); put the key itself '
            "in the environment or .env.local",
            where=f"{where}.env",
        )
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        raise ConfigError(
            "must name an environment variable, like "
            '"ANTHROPIC_API_KEY_ORG_A"',
            where=f"{where}.env",
        )
    group = entry.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise ConfigError(
            "must be a non-empty string naming the organisation or "
            "workspace whose limits the key shares",
            where=f"{where}.group",
        )
    return env, group


def discover_keys(
    settings: EnvSettings | Mapping[str, str],
    config_keys: Sequence[Mapping[str, str]] = (),
) -> list[KeySpec]:
    """The keys that *settings* and the config's ``[llm] keys`` name.

    In order: ``ANTHROPIC_API_KEY``, each key of ``ANTHROPIC_API_KEYS``
    (separated by commas or whitespace), then each config entry's
    variable. A config entry whose variable is unset or empty is skipped
    with a warning; a malformed entry raises ConfigError. Duplicates are
    kept here (the pool drops them, merging their groups).
    """
    lookup = _lookup(settings)
    specs: list[KeySpec] = []
    single = (lookup(ENV_KEY) or "").strip()
    if single:
        _add(specs, single, ENV_KEY, None)
    listed = (lookup(ENV_KEYS) or "").strip()
    if listed:
        for position, value in enumerate(_LIST_SEPARATOR.split(listed), 1):
            _add(specs, value, f"{ENV_KEYS}[{position}]", None)
    named: set[str] = set()
    for index, entry in enumerate(config_keys):
        env, group = _config_entry(entry, index)
        named.add(env)
        value = (lookup(env) or "").strip()
        if not value:
            _log.warning(
                "API key variable %s (llm.keys[%d]) is not set; skipping it",
                env,
                index,
            )
            continue
        _add(specs, value, env, group)
    for name in _names(settings):
        if _NUMBERED_KEY.fullmatch(name) and name not in named:
            _log.warning(
                "%s is set but not read: add its key to %s, or name it in "
                '[llm] keys (env = "%s")',
                name,
                ENV_KEYS,
                name,
            )
    return specs


def _merge_duplicates(specs: Sequence[KeySpec]) -> list[KeySpec]:
    """Keep the first spec of each secret, with the first group declared."""
    merged: dict[str, KeySpec] = {}
    for spec in specs:
        first = merged.get(spec.secret)
        if first is None:
            merged[spec.secret] = spec
            continue
        if spec.source != first.source:
            _log.info(
                "the API key from %s is the one from %s; using it once",
                spec.source,
                first.source,
            )
        if spec.group is None or spec.group == first.group:
            continue
        if first.group is None:
            merged[spec.secret] = KeySpec(
                first.secret, first.source, spec.group
            )
        else:
            _log.warning(
                "the API key from %s is declared in group %r and, from %s, "
                "in group %r; keeping %r",
                first.source,
                first.group,
                spec.source,
                spec.group,
                first.group,
            )
    return list(merged.values())


def _assign_ids(specs: Sequence[KeySpec]) -> list[str]:
    """Masked ids; the second key with one masked form gets ``#2``."""
    ids: list[str] = []
    taken: set[str] = set()
    for spec in specs:
        base = mask_key(spec.secret)
        candidate, number = base, 1
        while candidate in taken:
            number += 1
            candidate = f"{base}#{number}"
        taken.add(candidate)
        ids.append(candidate)
    return ids


# ------------------------------------------------------------------ pool


class _Key:
    """A key's mutable state; only touched under the pool's lock."""

    __slots__ = (
        "cooldown_until",
        "failed",
        "failures",
        "id",
        "last_error",
        "last_error_at",
        "last_success_at",
        "requests",
        "spec",
        "streak",
    )

    def __init__(self, spec: KeySpec, key_id: str) -> None:
        self.spec = spec
        self.id = key_id
        self.failed = False
        self.cooldown_until: float | None = None  # monotonic
        self.streak = 0  # consecutive 429s
        self.failures = 0
        self.requests = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None

    @property
    def state(self) -> KeyState:
        if self.failed:
            return _FAILED
        if self.cooldown_until is not None:
            return _RATE_LIMITED
        return _ACTIVE


_Change = tuple[_Key, KeyState, KeyState, str | None]


class KeyPool:
    """Hand out API keys round-robin; track what each key may do now.

    *on_change* is called as ``on_change(key_id, old, new, reason)`` after
    every transition (the daemon records them in its audit trail); *bus*,
    when given, receives an ``operator.action`` event for each reset.
    Thread-safe.
    """

    __slots__ = (
        "_bus",
        "_by_id",
        "_clock",
        "_cursor",
        "_groups",
        "_keys",
        "_lock",
        "_on_change",
    )

    def __init__(
        self,
        keys: Sequence[KeySpec] = (),
        *,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
        on_change: KeyChangeListener | None = None,
    ) -> None:
        for spec in keys:
            if not isinstance(spec, KeySpec):
                raise ConfigError(
                    f"expected KeySpec objects, got {type(spec).__name__}",
                    where="keys",
                )
        specs = _merge_duplicates(keys)
        self._keys = tuple(
            _Key(spec, key_id)
            for spec, key_id in zip(specs, _assign_ids(specs), strict=True)
        )
        self._by_id = {key.id: key for key in self._keys}
        groups: dict[str, list[_Key]] = {}
        for key in self._keys:
            if key.spec.group is not None:
                groups.setdefault(key.spec.group, []).append(key)
        self._groups = {name: tuple(keys) for name, keys in groups.items()}
        self._clock = clock
        self._bus = bus
        self._on_change = on_change
        self._lock = threading.Lock()
        self._cursor = 0
        if self._keys:
            _log.info(
                "%d API key(s): %s",
                len(self._keys),
                ", ".join(
                    f"{key.id} ({key.spec.source}"
                    + (f", group {key.spec.group})" if key.spec.group else ")")
                    for key in self._keys
                ),
            )

    @classmethod
    def from_settings(
        cls,
        settings: EnvSettings | Mapping[str, str],
        config_keys: Sequence[Mapping[str, str]] = (),
        *,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
        on_change: KeyChangeListener | None = None,
    ) -> KeyPool:
        """A pool of the keys :func:`discover_keys` finds."""
        return cls(
            discover_keys(settings, config_keys),
            clock=clock,
            bus=bus,
            on_change=on_change,
        )

    # ------------------------------------------------------------- leases

    def acquire(self, *, exclude: Collection[str] = ()) -> Lease:
        """The next active key, round-robin, skipping the ids in *exclude*.

        Raises NoKeyAvailableError with ``retry_after`` = seconds until
        the first cooling key (not excluded) is back, or None when no key
        can come back by itself.
        """
        skip = {exclude} if isinstance(exclude, str) else set(exclude)
        chosen: _Key | None = None
        retry_after: float | None = None
        with self._lock:
            now = self._clock.monotonic()
            changes = self._expire_locked(now)
            count = len(self._keys)
            for step in range(count):
                index = (self._cursor + step) % count
                key = self._keys[index]
                if key.id in skip or key.state is not _ACTIVE:
                    continue
                chosen = key
                key.requests += 1
                self._cursor = (index + 1) % count
                break
            else:
                waits = [
                    key.cooldown_until - now
                    for key in self._keys
                    if key.state is _RATE_LIMITED
                    and key.cooldown_until is not None
                    and key.id not in skip
                ]
                retry_after = min(waits) if waits else None
        self._announce(changes)
        if chosen is None:
            raise NoKeyAvailableError(retry_after)
        return Lease(chosen.id, chosen.spec.secret)

    # ----------------------------------------------------------- outcomes

    def report_success(self, key_id: str) -> None:
        """A 2xx: the key works. A streak of 429s on its group ends."""
        with self._lock:
            key = self._get_locked(key_id)
            changes = self._expire_locked(self._clock.monotonic())
            key.last_success_at = self._clock.time()
            if key.state is _ACTIVE:
                # A success from a request sent before a 429 proves nothing
                # about the cooling group, so only an active key resets it.
                for member in self._members_locked(key):
                    member.streak = 0
        self._announce(changes)

    def report_rate_limited(
        self,
        key_id: str,
        *,
        retry_after: float | None = None,
        error_code: str | None = None,
        message: str | None = None,
    ) -> float:
        """A 429: cool the key, and every key of its group, down.

        Returns the seconds the key now cools for (see
        :func:`rate_limit_cooldown`; a longer cool-down already running is
        kept).
        """
        if retry_after is not None:
            retry_after = float(retry_after)
        with self._lock:
            key = self._get_locked(key_id)
            now = self._clock.monotonic()
            changes = self._expire_locked(now)
            members = self._members_locked(key)
            streak = max(member.streak for member in members) + 1
            for member in members:
                member.streak = streak
            cooldown = rate_limit_cooldown(
                retry_after=retry_after,
                consecutive=streak,
                error_code=error_code,
            )
            until = now + cooldown
            label = error_code or "rate_limit_error"
            text = f"429 {label}"
            if message:
                text = f"{text}: {message}"
            key.failures += 1
            key.last_error = self._scrub(text)
            key.last_error_at = self._clock.time()
            reason = f"429 {label}: cooling for {cooldown:.1f}s"
            again = key.state is _RATE_LIMITED
            for member in members:
                if member.failed:
                    continue
                old = member.state
                if (
                    member.cooldown_until is None
                    or member.cooldown_until < until
                ):
                    member.cooldown_until = until
                if old is _RATE_LIMITED:
                    continue
                changes.append(
                    (
                        member,
                        old,
                        _RATE_LIMITED,
                        reason
                        if member is key
                        else f"{reason} (group {key.spec.group}: 429 on "
                        f"{key.id})",
                    )
                )
            applied = (
                cooldown
                if key.cooldown_until is None
                else key.cooldown_until - now
            )
        self._announce(changes)
        if again:
            # No transition to report: say so, the cool-down may be longer.
            _log.warning(
                "API key %s: another 429 (%s) while cooling; cooling for "
                "%.1fs",
                key.id,
                label,
                applied,
                extra={"facts": {"key": key.id, "group": key.spec.group}},
            )
        return applied

    def report_failed(self, key_id: str, *, status: int, message: str) -> None:
        """A 401, 402 or 403: the key fails until an operator resets it."""
        error_type = FAILED_STATUSES.get(status)
        if error_type is None:
            raise ConfigError(
                f"only 401, 402 and 403 fail a key, got {status!r}: a 429 "
                "is report_rate_limited(), a service error report_error()",
                where="status",
            )
        with self._lock:
            key = self._get_locked(key_id)
            changes = self._expire_locked(self._clock.monotonic())
            old = key.state
            key.failed = True
            key.cooldown_until = None
            key.failures += 1
            key.last_error = self._scrub(f"{status} {error_type}: {message}")
            key.last_error_at = self._clock.time()
            if old is not _FAILED:
                changes.append((key, old, _FAILED, key.last_error))
        self._announce(changes)

    def report_error(self, key_id: str, *, message: str) -> None:
        """A service error (5xx, 529, timeout): recorded, never penalised."""
        with self._lock:
            key = self._get_locked(key_id)
            changes = self._expire_locked(self._clock.monotonic())
            text = key.last_error = self._scrub(message)
            key.last_error_at = self._clock.time()
        self._announce(changes)
        _log.debug("API key %s: service error (no penalty): %s", key.id, text)

    # ----------------------------------------------------------- operator

    def reset(
        self,
        key_id: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> KeySnapshot:
        """Return a failed or rate-limited key to active (operator action).

        Only this key: the rest of its group keeps cooling.
        """
        if reason is not None:
            reason = self._scrub(reason)  # an operator may paste anything
        with self._lock:
            key = self._get_locked(key_id)
            now = self._clock.monotonic()
            changes = self._expire_locked(now)
            old = key.state
            key.failed = False
            key.cooldown_until = None
            key.streak = 0
            if old is not _ACTIVE:
                why = f"reset by {actor or 'an operator'}"
                changes.append(
                    (key, old, _ACTIVE, f"{why}: {reason}" if reason else why)
                )
            snapshot = self._snapshot_locked(key, now, self._clock.time())
        self._announce(changes)  # logs the transition, if there was one
        if old is _ACTIVE:
            _log.info(
                "API key %s reset by %s (it was already active): %s",
                key.id,
                actor or "an operator",
                reason or "no reason given",
            )
        if self._bus is not None:
            self._bus.publish(
                Event(
                    EventKind.OPERATOR_ACTION,
                    self._clock.time(),
                    "KeyPool",
                    f"API key {key.id} reset from {old} to active",
                    actor=actor,
                    reason=reason,
                    data={"key": key.id, "from": str(old), "to": "active"},
                )
            )
        return snapshot

    # -------------------------------------------------------------- reads

    def snapshot(self) -> KeyManagement:
        """Every key's state now (cool-downs that ended are ended)."""
        with self._lock:
            now = self._clock.monotonic()
            changes = self._expire_locked(now)
            wall = self._clock.time()
            keys = tuple(
                self._snapshot_locked(key, now, wall) for key in self._keys
            )
        self._announce(changes)
        states = [key.state for key in keys]
        return KeyManagement(
            total=len(keys),
            active=states.count(_ACTIVE),
            failed=states.count(_FAILED),
            rate_limited=states.count(_RATE_LIMITED),
            keys=keys,
        )

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyPool keys={[key.id for key in self._keys]!r}>"

    # ------------------------------------------------------------ helpers

    def _get_locked(self, key_id: str) -> _Key:
        key = self._by_id.get(key_id)
        if key is None:
            # Someone may pass the secret itself: never echo it back.
            raise UnknownNameError(
                "API key", self._scrub(str(key_id)), list(self._by_id)
            )
        return key

    def _members_locked(self, key: _Key) -> tuple[_Key, ...]:
        group = key.spec.group
        return (key,) if group is None else self._groups[group]

    def _expire_locked(self, now: float) -> list[_Change]:
        changes: list[_Change] = []
        for key in self._keys:
            until = key.cooldown_until
            if until is not None and until <= now:
                key.cooldown_until = None
                if not key.failed:
                    changes.append(
                        (key, _RATE_LIMITED, _ACTIVE, "cool-down over")
                    )
        return changes

    def _snapshot_locked(
        self, key: _Key, now: float, wall: float
    ) -> KeySnapshot:
        remaining = None
        if key.cooldown_until is not None:
            remaining = max(0.0, key.cooldown_until - now)
        return KeySnapshot(
            id=key.id,
            source=key.spec.source,
            group=key.spec.group,
            state=key.state,
            failures=key.failures,
            requests=key.requests,
            last_error=key.last_error,
            last_error_at=key.last_error_at,
            last_success_at=key.last_success_at,
            cooldown_until=None if remaining is None else wall + remaining,
            cooldown_remaining=remaining,
        )

    def _scrub(self, text: str) -> str:
        """Error text safe to keep and show: no secret, bounded length."""
        for key in sorted(
            self._keys, key=lambda k: len(k.spec.secret), reverse=True
        ):
            if key.spec.secret in text:
                text = text.replace(key.spec.secret, key.id)
        text = redact(text)
        if len(text) > _MESSAGE_LIMIT:
            text = text[: _MESSAGE_LIMIT - 3] + "..."
        return text

    def _announce(self, changes: list[_Change]) -> None:
        for key, old, new, reason in changes:
            log = _log.info if new is _ACTIVE else _log.warning
            log(
                "API key %s: %s -> %s (%s)",
                key.id,
                old,
                new,
                reason or "no reason",
                extra={
                    "facts": {
                        "key": key.id,
                        "source": key.spec.source,
                        "group": key.spec.group,
                    }
                },
            )
            if self._on_change is None:
                continue
            try:
                self._on_change(key.id, old, new, reason)
            except Exception:
                _log.exception(
                    "API key %s: on_change listener %r failed",
                    key.id,
                    self._on_change,
                )
