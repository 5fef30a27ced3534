"""Series, trends and the rules of preventive healing. Pure: no I/O.

A :class:`Series` is a bounded ring of ``(t, value)`` samples on the
monotonic clock. Two rules read one:

* :class:`ThresholdRule`, "rss > 500MB for 2m": fires when the samples show
  the value beyond the threshold, without a break, for the whole duration.
* :class:`ForecastRule`, "rss will reach 1GB within 30m": fires when a
  robust, consistent trend over a window predicts the crossing within the
  horizon.

Trends are Theil-Sen lines (the median of the pairwise slopes), which a few
wild samples cannot bend. A slope alone cannot tell a leak from noise or
from garbage-collected memory, whose sawtooth also has a positive median
slope, so a forecast also needs the trend to be *consistent*, which is two
tests:

* Kendall's tau-b between time and value, taken in the feared direction,
  is at least ``MIN_QUALITY`` (0.6). A steady leak scores close to 1
  whatever its noise, once the rise over the window dwarfs the noise;
  Gaussian noise scores about 0; a sawtooth with k teeth in the window
  scores about 1/k, so anything from two teeth up is rejected.
* The latest sample has not fallen back from the line by more than
  ``BREAK_SPREAD`` (4) robust standard deviations of the residuals: the
  first sample after a collection ends the forecast at once, even while
  the window still holds mostly one climb.

What no test can do is tell one climb from a leak: a window shorter than
the collector's cycle sees only a climb. Make forecast windows span two
or more cycles (the default window is the horizon, 10 min to 1 h).

Series names, as conditions and the resource monitor use them:

* a supervised process (a condition names it bare, the rule names the
  process; the monitor keys it ``process:<name>:<metric>``): ``rss``
  (bytes, the whole tree), ``cpu`` (percent of one core, the tree),
  ``fds``, ``threads``, ``children`` (descendants);
* the daemon itself: ``daemon.rss``, ``daemon.cpu``, ``daemon.fds``,
  ``daemon.threads``, ``daemon.children``, ``daemon.loop_lag`` (seconds);
* the host: ``host.memory`` and ``host.swap`` (percent used),
  ``host.load1``, ``host.load5``, ``host.load15``;
* a configured disk path: ``disk:/var`` (percent of space used, as ``df``
  counts it) and ``inodes:/var`` (percent of inodes used); a condition
  may write them ``disk /var used%`` and ``inodes /var used%``.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import math
import operator
import re
import statistics
import threading

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from selfhealing.clock import seconds as _seconds
from selfhealing.clock import utc_iso
from selfhealing.durations import parse_duration
from selfhealing.exceptions import ConfigError


__all__ = [
    "BREAK_SPREAD",
    "DAEMON_SERIES",
    "DEFAULT_COOLDOWN",
    "DEFAULT_MIN_SAMPLES",
    "HOST_SERIES",
    "MAX_TREND_POINTS",
    "MIN_QUALITY",
    "PROCESS_METRICS",
    "Cooldown",
    "Decision",
    "Direction",
    "Forecast",
    "ForecastRule",
    "ForecastStatus",
    "PreventiveRule",
    "Rule",
    "Series",
    "ThresholdResult",
    "ThresholdRule",
    "Trend",
    "Trigger",
    "Unit",
    "default_window",
    "fit_trend",
    "format_value",
    "kendall_tau",
    "parse_condition",
    "process_series",
    "series_key",
    "theil_sen",
    "unit_of",
]

_log = logging.getLogger("selfhealing.preventive")

#: Kendall's tau-b, in the feared direction, that a forecast trend needs.
MIN_QUALITY = 0.6
#: Robust standard deviations the latest sample may fall back from a
#: forecast's trend before the trend counts as broken off.
BREAK_SPREAD = 4.0
#: Samples a forecast needs (they must also span half its window).
DEFAULT_MIN_SAMPLES = 10
#: Beyond this many samples, trends use an even subsample: the pairs are
#: O(n²), and 120 points (7140 pairs, about 2 ms) pin a slope and a tau
#: as well as 720 do (tau's spread on pure noise is 0.06 at 120).
MAX_TREND_POINTS = 120
#: Seconds a preventive rule waits after acting before it may act again.
DEFAULT_COOLDOWN = 600.0
# Default forecast windows: the horizon, clamped to 10 min .. 1 h.
_MIN_WINDOW = 600.0
_MAX_WINDOW = 3600.0
# Sample times are compared with this slack, so float sums still meet.
_EPSILON = 1e-6


class Direction(StrEnum):
    """Which side of the threshold is trouble."""

    ABOVE = "above"
    BELOW = "below"


class Unit(StrEnum):
    """What a series measures, for parsing values and writing reasons."""

    BYTES = "bytes"
    PERCENT = "percent"
    COUNT = "count"
    SECONDS = "seconds"


#: Per supervised process (the whole tree): metric -> unit.
PROCESS_METRICS: Mapping[str, Unit] = {
    "rss": Unit.BYTES,
    "cpu": Unit.PERCENT,
    "fds": Unit.COUNT,
    "threads": Unit.COUNT,
    "children": Unit.COUNT,
}
#: The daemon's own series: name -> unit.
DAEMON_SERIES: Mapping[str, Unit] = {
    **{f"daemon.{metric}": unit for metric, unit in PROCESS_METRICS.items()},
    "daemon.loop_lag": Unit.SECONDS,
}
#: The host's series, besides ``disk:<path>`` and ``inodes:<path>``.
HOST_SERIES: Mapping[str, Unit] = {
    "host.memory": Unit.PERCENT,
    "host.swap": Unit.PERCENT,
    "host.load1": Unit.COUNT,
    "host.load5": Unit.COUNT,
    "host.load15": Unit.COUNT,
}
_PATH_KINDS = ("disk", "inodes")
_BOUNDED = frozenset({"host.memory", "host.swap"})


def process_series(process: str, metric: str) -> str:
    """The monitor's key of one process metric: ``process:web:rss``."""
    return f"process:{process}:{metric}"


def unit_of(name: str) -> Unit:
    """The unit of a series, bare (``rss``) or keyed (``process:web:rss``).

    Raises ConfigError naming the known series for anything else.
    """
    if name.startswith("process:"):
        name = name.rpartition(":")[2]
    unit = PROCESS_METRICS.get(name) or DAEMON_SERIES.get(name)
    unit = unit or HOST_SERIES.get(name)
    if unit is not None:
        return unit
    kind, colon, path = name.partition(":")
    if colon and kind in _PATH_KINDS and path:
        return Unit.PERCENT
    known = [*PROCESS_METRICS, "daemon.*", "host.*", "disk:<path>"]
    raise ConfigError(
        f"unknown series {name!r}; expected one of {', '.join(known)} "
        "or inodes:<path>",
        where="series",
    )


def series_key(name: str, *, process: str | None = None) -> str:
    """The monitor's key for a series a condition names.

    A process metric (``rss``) needs the *process* the rule is about;
    daemon, host and disk series are keyed by their own names.
    """
    unit_of(name)
    if name in PROCESS_METRICS:
        if process is None:
            raise ConfigError(
                f"series {name!r} belongs to a supervised process; name "
                "the process the rule watches",
                where="process",
            )
        return process_series(process, name)
    return name


class Series:
    """A bounded ring of ``(t, value)`` samples, oldest first.

    Times are monotonic seconds and never go back. Storage is two fixed
    arrays of doubles, so appending allocates nothing and a full ring costs
    16 bytes a sample. Safe to append from one thread while others read.
    """

    __slots__ = ("_count", "_head", "_lock", "_t", "_v", "capacity", "name")

    def __init__(self, capacity: int = 720, *, name: str = "") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise ConfigError(
                f"must be an integer, got {capacity!r}", where="capacity"
            )
        if capacity < 2:  # noqa: PLR2004 (a trend needs two points)
            raise ConfigError(
                f"must be at least 2, got {capacity}", where="capacity"
            )
        self.capacity = capacity
        self.name = name
        self._t = array("d", bytes(8 * capacity))
        self._v = array("d", bytes(8 * capacity))
        self._head = 0  # where the next sample goes
        self._count = 0
        self._lock = threading.Lock()

    def append(self, t: float, value: float) -> None:
        """Add a sample; the oldest goes when the ring is full.

        Raises ValueError when *t* is earlier than the latest sample.
        """
        with self._lock:
            if self._count and t < self._t[self._head - 1]:
                raise ValueError(
                    f"series {self.name!r}: time went back from "
                    f"{self._t[self._head - 1]} to {t}"
                )
            self._t[self._head] = t
            self._v[self._head] = value
            self._head = (self._head + 1) % self.capacity
            self._count = min(self._count + 1, self.capacity)

    def reset(self) -> None:
        """Forget every sample (a restarted process starts over)."""
        with self._lock:
            self._head = 0
            self._count = 0

    @property
    def latest(self) -> tuple[float, float] | None:
        """The newest ``(t, value)``, or None when empty."""
        with self._lock:
            if not self._count:
                return None
            return self._t[self._head - 1], self._v[self._head - 1]

    def samples(self) -> list[tuple[float, float]]:
        """Every ``(t, value)``, oldest first."""
        with self._lock:
            return self._tail(self._count)

    def values(self) -> list[float]:
        """Every value, oldest first."""
        return [value for _, value in self.samples()]

    def window(self, seconds: float, now: float) -> list[tuple[float, float]]:
        """The samples taken in the last *seconds* before *now*, oldest first.

        A sample exactly *seconds* old counts; samples after *now* do not.
        """
        start = now - seconds - _EPSILON
        with self._lock:
            found = 0
            index = self._head
            for _ in range(self._count):
                index = (index - 1) % self.capacity
                if self._t[index] < start:
                    break
                found += 1
            points = self._tail(found)
        return [point for point in points if point[0] <= now + _EPSILON]

    def _tail(self, count: int) -> list[tuple[float, float]]:
        first = (self._head - count) % self.capacity
        indexes = [(first + i) % self.capacity for i in range(count)]
        times, values = self._t, self._v
        return [(times[i], values[i]) for i in indexes]

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"Series({self.name!r}, {self._count}/{self.capacity})"


@dataclass(frozen=True, slots=True)
class Trend:
    """A Theil-Sen line through samples, and how consistent it is.

    ``value_at(t) = level + slope * (t - origin)``; *slope* is per second.
    *tau* is Kendall's tau-b between time and value, from -1 to 1.
    """

    slope: float
    origin: float
    level: float
    tau: float
    points: int

    @property
    def intercept(self) -> float:
        """The line's value at t = 0."""
        return self.level - self.slope * self.origin

    def value_at(self, t: float) -> float:
        """The line's value at time *t*."""
        return self.level + self.slope * (t - self.origin)


def _subsample(
    points: Sequence[tuple[float, float]], limit: int
) -> Sequence[tuple[float, float]]:
    count = len(points)
    if count <= limit:
        return points
    step = (count - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def fit_trend(
    points: Sequence[tuple[float, float]], *, limit: int = MAX_TREND_POINTS
) -> Trend:
    """The Theil-Sen line and Kendall's tau-b of *points*, together.

    Beyond *limit* points an even subsample is used. Both come from one
    sorted list of the pairwise slopes: with times in order, a pair is
    concordant exactly when its slope is positive. Raises ValueError when
    fewer than two distinct times are given.
    """
    used = sorted(_subsample(points, limit))
    origin = used[0][0] if used else 0.0
    times = [t - origin for t, _ in used]
    values = [value for _, value in used]
    count = len(times)
    slopes: list[float] = []
    extend = slopes.extend
    for i in range(count - 1):
        ti, vi = times[i], values[i]
        extend(
            [
                (v - vi) / (t - ti)
                for t, v in zip(times[i + 1 :], values[i + 1 :], strict=True)
                if t != ti
            ]
        )
    if not slopes:
        raise ValueError(
            f"a trend needs two samples at different times, got {count}"
        )
    slopes.sort()
    middle = len(slopes) // 2
    slope = (
        slopes[middle]
        if len(slopes) % 2
        else (slopes[middle - 1] + slopes[middle]) / 2
    )
    level = statistics.median(
        v - slope * t for t, v in zip(times, values, strict=True)
    )
    falling = bisect.bisect_left(slopes, 0.0)
    rising = len(slopes) - bisect.bisect_right(slopes, 0.0)
    flat = len(slopes) - rising - falling
    tied_t, tied_both = _ties(used)
    pairs = count * (count - 1) // 2
    scale = math.sqrt((pairs - tied_t) * (pairs - flat - tied_both))
    tau = (rising - falling) / scale if scale else 0.0
    return Trend(slope, origin, level, tau, count)


def _ties(points: Sequence[tuple[float, float]]) -> tuple[int, int]:
    """Pairs of sorted *points* tied in time, and tied in time and value."""
    tied_t = tied_both = 0
    for _, run in itertools.groupby(points, key=operator.itemgetter(0)):
        values = [value for _, value in run]
        tied_t += len(values) * (len(values) - 1) // 2
        for same in collections.Counter(values).values():
            tied_both += same * (same - 1) // 2
    return tied_t, tied_both


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """``(slope, intercept)``: the median of the pairwise slopes, and the
    median intercept under it. Beyond ``MAX_TREND_POINTS`` points an even
    subsample is used. Up to ~29 % of the points may be wild."""
    trend = fit_trend(points)
    return trend.slope, trend.intercept


def kendall_tau(points: Sequence[tuple[float, float]]) -> float:
    """Kendall's tau-b between time and value: 1 for a steady rise, about 0
    for noise, about 1/k for a sawtooth of k teeth."""
    return fit_trend(points).tau


# --- formatting ------------------------------------------------------------

_BYTE_STEPS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB"))


def _number(value: float) -> str:
    if abs(value) >= 100:  # noqa: PLR2004 (three digits are enough)
        return f"{value:.0f}"
    text = f"{value:.3g}"
    return "0" if text == "-0" else text


def format_value(value: float, unit: Unit) -> str:
    """*value* as an operator reads it: ``812 MB``, ``87.2%``, ``120 ms``."""
    if unit is Unit.BYTES:
        for size, name in _BYTE_STEPS:
            if abs(value) >= size:
                return f"{_number(value / size)} {name}"
        return f"{_number(value)} B"
    if unit is Unit.PERCENT:
        return f"{_number(value)}%"
    if unit is Unit.SECONDS:
        if abs(value) < 1:
            return f"{_number(value * 1000)} ms"
        return f"{_number(value)} s"
    return _number(value)


def _span(duration: float) -> str:
    """A duration to the second: ``45 s``, ``2 min``, ``2 min 5 s``."""
    total = max(round(duration), 0)
    if total < 90:  # noqa: PLR2004 (90 s reads better than 1 min 30 s)
        return f"{total} s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    parts += [f"{secs} s"] if secs else []
    return " ".join(parts)


def _about(duration: float) -> str:
    """A duration to go, rounded: ``~30 s``, ``~46 min``, ``~2 h 5 min``."""
    duration = max(duration, 0.0)
    if duration < 90:  # noqa: PLR2004
        return f"~{duration:.0f} s"
    minutes = round(duration / 60)
    if minutes < 90:  # noqa: PLR2004
        return f"~{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:  # noqa: PLR2004
        return f"~{round(duration / 86400)} d"
    return f"~{hours} h {minutes} min" if minutes else f"~{hours} h"


def _age(latest: float, now: float | None) -> float:
    return 0.0 if now is None else max(now - latest, 0.0)


def _beyond(direction: Direction, inclusive: bool) -> str:
    above = direction is Direction.ABOVE
    if inclusive:
        return ">=" if above else "<="
    return ">" if above else "<"


# --- threshold held for a duration ------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """What a :class:`ThresholdRule` saw in a series.

    *held* is how long, in seconds, the latest unbroken run of samples
    beyond the threshold lasts (0 when the latest sample is within);
    *since* is the monotonic time that run began.
    """

    fires: bool
    current: float | None
    held: float
    since: float | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "fires": self.fires,
            "current": self.current,
            "held": self.held,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Beyond *value* (``above`` or ``below``) for *held_for* seconds.

    Fires exactly when the latest samples are all beyond the threshold and
    the first of that unbroken run is at least *held_for* seconds older
    than the latest: one sample back within the limit starts the count
    over, and a series shorter than *held_for* cannot fire. Time is the
    samples' own, so a run the ring no longer holds in full never counts.
    """

    direction: Direction
    value: float
    held_for: float
    unit: Unit = Unit.COUNT
    inclusive: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "unit", Unit(self.unit))
        if not math.isfinite(self.value):
            raise ConfigError(
                f"must be a finite number, got {self.value!r}", where="value"
            )
        held = _seconds(self.held_for, name="held_for")
        if not math.isfinite(held) or held < 0:
            raise ConfigError(
                f"must be >= 0 and finite, got {self.held_for!r}",
                where="held_for",
            )
        object.__setattr__(self, "held_for", held)

    @property
    def history(self) -> float:
        """Seconds of samples the rule needs the ring to hold."""
        return self.held_for

    def beyond(self, value: float) -> bool:
        """Whether *value* is on the trouble side of the threshold."""
        if self.direction is Direction.ABOVE:
            return (
                value >= self.value if self.inclusive else value > self.value
            )
        return value <= self.value if self.inclusive else value < self.value

    def describe(self, name: str = "value") -> str:
        """The condition as text: ``rss > 500 MB for 2 min``."""
        op = _beyond(self.direction, self.inclusive)
        limit = format_value(self.value, self.unit)
        return f"{name} {op} {limit} for {_span(self.held_for)}"

    def evaluate(
        self,
        series: Series,
        *,
        name: str | None = None,
        now: float | None = None,
        max_age: float | None = None,
    ) -> ThresholdResult:
        """Whether *series* has been beyond the threshold long enough.

        With *now* and *max_age*, a latest sample older than *max_age*
        seconds is stale (sampling stopped) and never fires.
        """
        label = name or series.name or "value"
        samples = series.samples()
        if not samples:
            return ThresholdResult(
                False, None, 0.0, None, f"{label}: no samples yet"
            )
        latest, current = samples[-1]
        age = _age(latest, now)
        if max_age is not None and age > max_age:
            reason = f"{label}: the last sample is {_span(age)} old (stale)"
            return ThresholdResult(False, current, 0.0, None, reason)
        since: float | None = None
        for t, value in reversed(samples):
            if not self.beyond(value):
                break
            since = t
        held = 0.0 if since is None else latest - since
        fires = since is not None and held >= self.held_for - _EPSILON
        shown = format_value(current, self.unit)
        if since is None:
            side = "under" if self.direction is Direction.ABOVE else "over"
            limit = format_value(self.value, self.unit)
            reason = f"{label} {shown}, {side} the {limit} limit"
        elif fires:
            reason = f"{self.describe(label)}: {shown}, held {_span(held)}"
        else:
            reason = (
                f"{self.describe(label)}: {shown}, held only {_span(held)}"
            )
        return ThresholdResult(fires, current, held, since, reason)


# --- forecast -----------------------------------------------------------------


class ForecastStatus(StrEnum):
    """What a forecast concluded; only FORECAST fires."""

    FORECAST = "forecast"  # the crossing is predicted within the horizon
    BEYOND_HORIZON = "beyond-horizon"  # predicted, but later than that
    CROSSED = "crossed"  # already at or beyond the threshold
    INSUFFICIENT_DATA = "insufficient-data"
    STALE = "stale"  # the latest sample is older than max_age
    NO_TREND = "no-trend"  # flat, or heading away from the threshold
    INCONSISTENT = "inconsistent"  # noise or sawtooth: tau too low


@dataclass(frozen=True, slots=True)
class Forecast:
    """A :class:`ForecastRule`'s verdict on a series.

    *slope* is per second; *quality* is Kendall's tau-b in the feared
    direction; *eta* is seconds from now to the predicted crossing, at
    *crossing_at* (monotonic) and *crossing_wall* (epoch). Unknown
    figures are None.
    """

    status: ForecastStatus
    threshold: float
    current: float | None
    slope: float | None
    quality: float | None
    eta: float | None
    crossing_at: float | None
    crossing_wall: float | None
    samples: int
    reason: str

    @property
    def fires(self) -> bool:
        """Whether the crossing is predicted within the horizon."""
        return self.status is ForecastStatus.FORECAST

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "fires": self.fires,
            "status": str(self.status),
            "threshold": self.threshold,
            "current": self.current,
            "slopePerSecond": self.slope,
            "quality": self.quality,
            "eta": self.eta,
            "crossingAt": utc_iso(self.crossing_wall),
            "samples": self.samples,
            "reason": self.reason,
        }


def _broken_off(
    points: Sequence[tuple[float, float]], trend: Trend, sign: float
) -> float | None:
    """How far the latest sample fell back from the trend, if it broke off.

    Broken off means more than ``BREAK_SPREAD`` robust standard deviations
    (1.4826 x the median absolute residual) against the trend's direction:
    the first sample after a garbage collection, say.
    """
    residuals = [v - trend.value_at(t) for t, v in points]
    spread = 1.4826 * statistics.median(abs(r) for r in residuals)
    floor = _EPSILON * max(abs(points[-1][1]), 1.0)
    back = -sign * residuals[-1]
    return back if back > BREAK_SPREAD * max(spread, floor) else None


def default_window(within: float) -> float:
    """The trend window for a horizon: the horizon, kept to 10 min .. 1 h."""
    return min(max(within, _MIN_WINDOW), _MAX_WINDOW)


@dataclass(frozen=True, slots=True)
class ForecastRule:
    """A robust trend over *window* reaches *will_reach* within *within*.

    Fires when all of these hold: at least *min_samples* samples in the
    window, spanning at least half of it; the latest sample not yet beyond
    the threshold (that reports CROSSED, a distinct status that does not
    fire: a threshold rule is the tool for what already happened); a
    Theil-Sen slope heading for the threshold; Kendall's tau-b in that
    direction of at least *min_quality*; and the fitted line reaching the
    threshold no later than *within* seconds from now.
    """

    will_reach: float
    within: float
    window: float
    min_samples: int = DEFAULT_MIN_SAMPLES
    direction: Direction = Direction.ABOVE
    unit: Unit = Unit.COUNT
    min_quality: float = MIN_QUALITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "unit", Unit(self.unit))
        if not math.isfinite(self.will_reach):
            raise ConfigError(
                f"must be a finite number, got {self.will_reach!r}",
                where="will_reach",
            )
        for field in ("within", "window"):
            value = _seconds(getattr(self, field), name=field)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"must be > 0 and finite, got {value!r}", where=field
                )
            object.__setattr__(self, field, value)
        if (
            isinstance(self.min_samples, bool)
            or not isinstance(self.min_samples, int)
            or self.min_samples < 3  # noqa: PLR2004 (a trend needs some)
        ):
            raise ConfigError(
                f"must be an integer >= 3, got {self.min_samples!r}",
                where="min_samples",
            )
        if not 0 < self.min_quality <= 1:
            raise ConfigError(
                f"must be in (0, 1], got {self.min_quality!r}",
                where="min_quality",
            )

    @property
    def history(self) -> float:
        """Seconds of samples the rule needs the ring to hold."""
        return self.window

    def describe(self, name: str = "value") -> str:
        """The condition as text: ``rss will reach 1 GB within 30 min``."""
        verb = "reach" if self.direction is Direction.ABOVE else "fall to"
        limit = format_value(self.will_reach, self.unit)
        return f"{name} will {verb} {limit} within {_span(self.within)}"

    def evaluate(  # noqa: PLR0911 (one return per verdict, in order)
        self,
        series: Series,
        *,
        now: float,
        wall_now: float | None = None,
        name: str | None = None,
        max_age: float | None = None,
    ) -> Forecast:
        """Forecast *series* at monotonic *now* (and wall *wall_now*).

        With *max_age*, a latest sample older than that many seconds is
        STALE (sampling stopped): no forecast from old news.
        """
        label = name or series.name or "value"
        points = series.window(self.window, now)
        current = points[-1][1] if points else None
        rising = self.direction is Direction.ABOVE
        sign = 1.0 if rising else -1.0
        limit = format_value(self.will_reach, self.unit)

        def verdict(
            status: ForecastStatus,
            reason: str,
            trend: Trend | None = None,
            eta: float | None = None,
        ) -> Forecast:
            return Forecast(
                status=status,
                threshold=self.will_reach,
                current=current,
                slope=None if trend is None else trend.slope,
                quality=None if trend is None else sign * trend.tau,
                eta=eta,
                crossing_at=None if eta is None else now + eta,
                crossing_wall=(
                    None if eta is None or wall_now is None else wall_now + eta
                ),
                samples=len(points),
                reason=reason,
            )

        if current is not None and sign * (current - self.will_reach) >= 0:
            shown = format_value(current, self.unit)
            reason = f"{label} {shown} already at or beyond {limit}"
            return verdict(ForecastStatus.CROSSED, reason)
        age = _age(points[-1][0], now) if points else 0.0
        if max_age is not None and age > max_age:
            reason = f"{label}: the last sample is {_span(age)} old (stale)"
            return verdict(ForecastStatus.STALE, reason)
        span = points[-1][0] - points[0][0] if points else 0.0
        if len(points) < self.min_samples or span < self.window / 2 - _EPSILON:
            reason = (
                f"{label}: {len(points)} samples over {_span(span)}; a "
                f"forecast needs {self.min_samples} over at least "
                f"{_span(self.window / 2)}"
            )
            return verdict(ForecastStatus.INSUFFICIENT_DATA, reason)
        trend = fit_trend(points)
        shown = format_value(points[-1][1], self.unit)
        rate = f"{format_value(trend.slope * 60, self.unit)}/min"
        word = "rising" if rising else "falling"
        if sign * trend.slope <= 0:
            reason = f"{label} {shown} not {word} ({rate})"
            return verdict(ForecastStatus.NO_TREND, reason, trend)
        quality = sign * trend.tau
        if quality < self.min_quality:
            reason = (
                f"{label} {shown}: no consistent trend (tau {quality:.2f} "
                f"< {self.min_quality:g})"
            )
            return verdict(ForecastStatus.INCONSISTENT, reason, trend)
        gap = _broken_off(points, trend, sign)
        if gap is not None:
            reason = (
                f"{label} {shown}: fell {format_value(gap, self.unit)} off "
                f"its {word} trend ({rate}), as after a garbage collection"
            )
            return verdict(ForecastStatus.INCONSISTENT, reason, trend)
        eta = max((self.will_reach - trend.value_at(now)) / trend.slope, 0.0)
        reason = (
            f"{label} {shown} {word} {rate}: reaches {limit} in {_about(eta)}"
        )
        if eta > self.within + _EPSILON:
            reason += f", beyond the {_span(self.within)} horizon"
            return verdict(ForecastStatus.BEYOND_HORIZON, reason, trend, eta)
        return verdict(ForecastStatus.FORECAST, reason, trend, eta)


Rule = ThresholdRule | ForecastRule


# --- parsing conditions --------------------------------------------------------

_SERIES = r"(?P<series>(?:disk|inodes)\s+[^\s<>=]+(?:\s+used%)?|[^\s<>=]+)"
_THRESHOLD = re.compile(
    rf"{_SERIES}\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)\s+for\s+(?P<held>\S+)",
    re.IGNORECASE,
)
_FORECAST = re.compile(
    rf"{_SERIES}\s+will\s+(?P<verb>reach|fall\s+to|drop\s+to)\s+"
    r"(?P<value>\S+)\s+within\s+(?P<within>\S+)(?:\s+over\s+(?P<window>\S+))?",
    re.IGNORECASE,
)
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z%]*)")
_SIZES = {
    "": 1.0,
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 1024.0,
    "mib": 1024.0**2,
    "gib": 1024.0**3,
    "tib": 1024.0**4,
}
_FORMS = (
    '"<series> <op> <value> for <duration>" (op: >, >=, <, <=) or '
    '"<series> will reach <value> within <duration> [over <duration>]"'
)
_EXPECTED = {
    Unit.BYTES: "a size such as 500MB, 1GiB or 1048576 (KB/MB/GB are "
    "powers of 1000, KiB/MiB/GiB of 1024)",
    Unit.PERCENT: "a percentage such as 95 or 95%",
    Unit.COUNT: "a plain number such as 800",
    Unit.SECONDS: 'a duration such as 100ms or "0.5s"',
}


def _series_name(raw: str) -> str:
    words = raw.split()
    if len(words) > 1:  # "disk /var used%"
        return f"{words[0].lower()}:{words[1]}"
    return raw


def _quantity(text: str, raw: str, series: str, unit: Unit) -> float:
    def refuse() -> ConfigError:
        return ConfigError(
            f"cannot read {raw!r} in {text!r}: {series} expects "
            f"{_EXPECTED[unit]}",
            where="condition",
        )

    if unit is Unit.SECONDS:
        try:
            return parse_duration(raw)
        except ValueError:
            raise refuse() from None
    match = _QUANTITY.fullmatch(raw)
    if match is None:
        raise refuse()
    number, suffix = float(match[1]), match[2].lower()
    if unit is Unit.BYTES:
        if suffix not in _SIZES:
            raise refuse()
        return number * _SIZES[suffix]
    if unit is Unit.PERCENT:
        if suffix not in {"", "%"}:
            raise refuse()
        return _percent(text, raw, series, number)
    if suffix:
        raise refuse()
    return number


def _percent(text: str, raw: str, series: str, number: float) -> float:
    bounded = series in _BOUNDED or series.startswith(_PATH_KINDS)
    if bounded and number > 100:  # noqa: PLR2004
        raise ConfigError(
            f"{raw!r} in {text!r}: {series} is a percentage of 0..100",
            where="condition",
        )
    return number


def _duration(text: str, raw: str, what: str) -> float:
    try:
        return parse_duration(raw)
    except ValueError:
        raise ConfigError(
            f"cannot read {what} {raw!r} in {text!r}: expected a duration "
            "such as 30s, 2m or 1h",
            where="condition",
        ) from None


def parse_condition(text: str) -> tuple[str, Rule]:
    """``(series, rule)`` from a condition as ``[[preventive]]`` writes it.

    ``"rss > 500MB for 2m"`` gives ``("rss", ThresholdRule(...))``;
    ``"disk /var used% will reach 95 within 1h"`` gives
    ``("disk:/var", ForecastRule(...))``. A forecast's trend window is
    ``over <duration>`` when given, else :func:`default_window`. The
    series is the bare name (see the module docstring); pass it to
    :func:`series_key` with the rule's process for the monitor's key.
    Raises ConfigError naming the text and what was expected.
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"a condition must be a string, got {text!r}", where="condition"
        )
    stripped = text.strip()
    threshold = _THRESHOLD.fullmatch(stripped)
    if threshold is not None:
        series, unit, value = _subject(text, threshold)
        op = threshold["op"]
        return series, ThresholdRule(
            Direction.ABOVE if op.startswith(">") else Direction.BELOW,
            value,
            _duration(text, threshold["held"], "duration"),
            unit=unit,
            inclusive=op.endswith("="),
        )
    forecast = _FORECAST.fullmatch(stripped)
    if forecast is None:
        raise ConfigError(
            f"cannot read condition {text!r}: expected {_FORMS}",
            where="condition",
        )
    series, unit, value = _subject(text, forecast)
    within = _duration(text, forecast["within"], "horizon")
    window = (
        default_window(within)
        if forecast["window"] is None
        else _duration(text, forecast["window"], "window")
    )
    for what, span in (("horizon", within), ("window", window)):
        if span <= 0:
            raise ConfigError(
                f"the {what} in {text!r} must be longer than 0",
                where="condition",
            )
    falling = not forecast["verb"].lower().startswith("reach")
    return series, ForecastRule(
        value,
        within,
        window,
        direction=Direction.BELOW if falling else Direction.ABOVE,
        unit=unit,
    )


def _subject(text: str, match: re.Match[str]) -> tuple[str, Unit, float]:
    """The series, its unit and the threshold value of a matched condition."""
    series = _series_name(match["series"])
    try:
        unit = unit_of(series)
    except ConfigError as error:
        raise ConfigError(
            f"{error.detail} (in {text!r})", where="condition"
        ) from None
    return series, unit, _quantity(text, match["value"], series, unit)


# --- cool-down and the preventive rule ------------------------------------------


class Cooldown:
    """At most one start per *seconds*, on the caller's monotonic time."""

    __slots__ = ("_last", "seconds")

    def __init__(self, seconds: float | timedelta) -> None:
        value = _seconds(seconds, name="cooldown")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"must be >= 0 and finite, got {seconds!r}", where="cooldown"
            )
        self.seconds = value
        self._last: float | None = None

    def allowed(self, now: float) -> bool:
        """Whether a start at *now* is allowed."""
        return self.remaining(now) == 0

    def remaining(self, now: float) -> float:
        """Seconds until a start is allowed again (0 when it is now)."""
        if self._last is None:
            return 0.0
        return max(self._last + self.seconds - now, 0.0)

    def started(self, now: float) -> None:
        """Note a start at *now*: the next waits *seconds* from here."""
        self._last = now

    def reset(self) -> None:
        """Forget the last start."""
        self._last = None

    def __repr__(self) -> str:
        return f"Cooldown({self.seconds!r}, last={self._last!r})"


class Decision(StrEnum):
    """What a preventive rule decided at one evaluation."""

    QUIET = "quiet"  # the condition does not hold
    ACT = "act"  # submit the action to the engine (the cool-down started)
    COOLING_DOWN = "cooling-down"  # holds, but the rule acted too recently
    DISABLED = "disabled"  # holds, but FEATURE_PREVENTIVE_HEALING is off


@dataclass(frozen=True, slots=True)
class Trigger:
    """One evaluation of a :class:`PreventiveRule`, for the engine, the
    audit trail (``preventive`` marks it) and the status issues."""

    rule: str
    series: str
    action: str
    condition: str
    decision: Decision
    fires: bool
    reason: str
    retry_after: float | None
    evaluation: ThresholdResult | Forecast
    preventive: bool = True

    @property
    def issue(self) -> str | None:
        """The status WARNING text of a firing forecast, else None."""
        evaluation = self.evaluation
        if not isinstance(evaluation, Forecast) or not evaluation.fires:
            return None
        when = utc_iso(evaluation.crossing_wall)
        at = f" (at {when})" if when else ""
        return (
            f"{self.reason}{at}; preventive rule {self.rule!r} plans "
            f"action {self.action!r}"
        )

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the audit trail."""
        return {
            "rule": self.rule,
            "series": self.series,
            "action": self.action,
            "condition": self.condition,
            "decision": str(self.decision),
            "fires": self.fires,
            "reason": self.reason,
            "retryAfter": self.retry_after,
            "preventive": self.preventive,
            "evaluation": self.evaluation.to_dict(),
        }


class PreventiveRule:
    """A ``[[preventive]]`` entry: a series, a condition, an action, and a
    cool-down.

    :meth:`evaluate` only decides. When the condition holds it answers
    ACT, and starts the cool-down, at most once per cool-down; the caller
    submits the action to the engine, whose breakers, backoff, dormant
    mode and audit trail govern it like any other attempt. :meth:`check`
    reads the condition without deciding, for verification after the
    action ("the condition no longer holds"). With *max_age* (say three
    sampling intervals) a series whose sampling stopped reads as stale and
    never fires.
    """

    __slots__ = (
        "action",
        "condition",
        "cooldown",
        "max_age",
        "name",
        "rule",
        "series",
    )

    def __init__(
        self,
        name: str,
        *,
        series: str,
        rule: Rule,
        action: str,
        cooldown: float | timedelta = DEFAULT_COOLDOWN,
        condition: str = "",
        max_age: float | timedelta | None = None,
    ) -> None:
        self.name = name
        self.series = series
        self.rule = rule
        self.action = action
        self.cooldown = Cooldown(cooldown)
        self.condition = condition or rule.describe(series)
        self.max_age = (
            None if max_age is None else _seconds(max_age, name="max_age")
        )

    @classmethod
    def from_condition(
        cls,
        name: str,
        condition: str,
        *,
        action: str,
        cooldown: float | timedelta = DEFAULT_COOLDOWN,
        process: str | None = None,
        max_age: float | timedelta | None = None,
    ) -> PreventiveRule:
        """Parse *condition* and key its series (with *process*, if any)."""
        bare, rule = parse_condition(condition)
        return cls(
            name,
            series=series_key(bare, process=process),
            rule=rule,
            action=action,
            cooldown=cooldown,
            condition=condition,
            max_age=max_age,
        )

    def check(
        self, series: Series, *, now: float, wall_now: float | None = None
    ) -> ThresholdResult | Forecast:
        """The rule's reading of *series*, without deciding anything."""
        label = self._label()
        if isinstance(self.rule, ThresholdRule):
            return self.rule.evaluate(
                series, name=label, now=now, max_age=self.max_age
            )
        return self.rule.evaluate(
            series,
            now=now,
            wall_now=wall_now,
            name=label,
            max_age=self.max_age,
        )

    def evaluate(
        self,
        series: Series,
        *,
        now: float,
        wall_now: float | None = None,
        enabled: bool = True,
    ) -> Trigger:
        """Decide at *now*: QUIET, ACT, COOLING_DOWN or DISABLED.

        With *enabled* False (the preventive-healing flag is off) the
        condition is still read, for the status, but the answer is never
        ACT and the cool-down is left alone.
        """
        evaluation = self.check(series, now=now, wall_now=wall_now)
        retry_after: float | None = None
        if not evaluation.fires:
            decision = Decision.QUIET
        elif not enabled:
            decision = Decision.DISABLED
        elif not self.cooldown.allowed(now):
            decision = Decision.COOLING_DOWN
            retry_after = self.cooldown.remaining(now)
        else:
            decision = Decision.ACT
            self.cooldown.started(now)
        trigger = Trigger(
            rule=self.name,
            series=self.series,
            action=self.action,
            condition=self.condition,
            decision=decision,
            fires=evaluation.fires,
            reason=evaluation.reason,
            retry_after=retry_after,
            evaluation=evaluation,
        )
        if decision is Decision.ACT:
            _log.warning(
                "preventive rule %s fires (%s): %s; action %s",
                self.name,
                self.condition,
                evaluation.reason,
                self.action,
            )
        elif decision is not Decision.QUIET:
            _log.debug(
                "preventive rule %s holds but %s: %s",
                self.name,
                decision,
                evaluation.reason,
            )
        return trigger

    def _label(self) -> str:
        if self.series.startswith("process:"):
            _, process, metric = self.series.split(":", 2)
            return f"{process} {metric}"
        return self.series

    def __repr__(self) -> str:
        return (
            f"PreventiveRule({self.name!r}, {self.condition!r}, "
            f"action={self.action!r})"
        )
