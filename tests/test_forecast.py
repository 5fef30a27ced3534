from __future__ import annotations

import logging
import math
import random

from collections.abc import Callable, Iterator

import pytest

from selfhealing import forecast
from selfhealing.exceptions import ConfigError
from selfhealing.forecast import (
    Cooldown,
    Decision,
    Direction,
    Forecast,
    ForecastRule,
    ForecastStatus,
    PreventiveRule,
    Series,
    ThresholdRule,
    Unit,
    fit_trend,
    format_value,
    kendall_tau,
    parse_condition,
    series_key,
    theil_sen,
    unit_of,
)
from selfhealing.testing import FakeClock


MB = 1e6
GB = 1e9
STEP = 5.0  # the monitor's default interval

Signal = Callable[[float], float]


def run(
    clock: FakeClock,
    signal: Signal,
    seconds: float,
    *,
    series: Series | None = None,
) -> Iterator[Series]:
    """Sample *signal* every STEP on *clock* for *seconds*, yielding after
    each sample (time starts at the clock's now)."""
    series = series if series is not None else Series(720, name="rss")
    start = clock.monotonic()
    while True:
        series.append(clock.monotonic(), signal(clock.monotonic() - start))
        yield series
        if clock.monotonic() - start + STEP > seconds + 1e-9:
            return
        clock.advance(STEP)


def leak(rate_per_min: float, start: float, noise: float = 0.0) -> Signal:
    """A steady leak of *rate_per_min* from *start*, with Gaussian noise."""
    rng = random.Random(7)
    return lambda t: start + rate_per_min * t / 60 + rng.gauss(0, noise)


def sawtooth(period: float, low: float, high: float) -> Signal:
    """Garbage-collected memory: a linear climb, then a drop, repeating."""
    return lambda t: low + (high - low) * ((t % period) / period)


def forecasts(
    clock: FakeClock,
    rule: ForecastRule,
    signal: Signal,
    seconds: float,
    *,
    every: int = 1,
) -> list[Forecast]:
    """Evaluate *rule* after every *every*-th sample of *signal*."""
    return [
        rule.evaluate(series, now=clock.monotonic(), wall_now=clock.time())
        for index, series in enumerate(run(clock, signal, seconds))
        if index % every == 0
    ]


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = forecast.__all__

        assert [
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
        ] == names
        assert all(hasattr(forecast, name) for name in names)


class TestSeries:
    def test_keeps_the_newest_samples_up_to_its_capacity(self) -> None:
        """A full ring drops its oldest sample for each new one."""
        series = Series(3)
        for t in range(5):
            series.append(float(t), t * 10.0)

        assert [(2.0, 20.0), (3.0, 30.0), (4.0, 40.0)] == series.samples()
        assert [20.0, 30.0, 40.0] == series.values()
        assert 3 == len(series)
        assert (4.0, 40.0) == series.latest

    def test_window_takes_the_last_seconds_inclusive(self) -> None:
        """window(s, now) holds the samples from now - s to now."""
        series = Series(10)
        for t in range(0, 50, 10):
            series.append(float(t), float(t))

        assert [(20.0, 20.0), (30.0, 30.0)] == series.window(10, now=30)
        assert [(40.0, 40.0)] == series.window(5, now=42)
        assert [] == series.window(5, now=100)

    def test_window_works_across_the_wrap(self) -> None:
        """Windows read correctly once the ring has wrapped around."""
        series = Series(4)
        for t in range(7):
            series.append(float(t), float(t))

        assert [(5.0, 5.0), (6.0, 6.0)] == series.window(1, now=6)
        assert [(3.0, 3.0), (4.0, 4.0), (5.0, 5.0), (6.0, 6.0)] == (
            series.window(100, now=6)
        )

    def test_reset_forgets_everything(self) -> None:
        """reset() empties the series, which then starts over."""
        series = Series(4)
        series.append(5.0, 1.0)
        series.reset()

        assert series.latest is None
        assert [] == series.samples()
        series.append(1.0, 2.0)  # time may start over after a reset
        assert [(1.0, 2.0)] == series.samples()

    def test_time_may_not_go_back(self) -> None:
        """A sample older than the latest is refused."""
        series = Series(4, name="rss")
        series.append(5.0, 1.0)

        with pytest.raises(ValueError, match="time went back"):
            series.append(4.0, 1.0)

    @pytest.mark.parametrize("capacity", [1, 0, 2.5, True])
    def test_capacity_is_an_integer_of_at_least_two(
        self, capacity: object
    ) -> None:
        """A ring too small for a trend, or not a count, is refused."""
        with pytest.raises(ConfigError, match="capacity"):
            Series(capacity)  # type: ignore[arg-type]


class TestTrend:
    def test_theil_sen_recovers_an_exact_line(self) -> None:
        """On a straight line Theil-Sen gives its slope and intercept."""
        points = [(100.0 + t, 3.0 + 2.0 * (100.0 + t)) for t in range(50)]

        slope, intercept = theil_sen(points)

        assert 2.0 == pytest.approx(slope)
        assert 3.0 == pytest.approx(intercept)

    def test_theil_sen_shrugs_off_a_few_wild_samples(self) -> None:
        """A tenth of wild outliers barely moves the slope."""
        rng = random.Random(3)
        points = [
            (float(t), 10.0 + 0.5 * t + rng.gauss(0, 0.2)) for t in range(100)
        ]
        for index in range(0, 100, 10):
            points[index] = (points[index][0], 1e6)

        slope, _ = theil_sen(points)

        assert 0.5 == pytest.approx(slope, abs=0.02)

    def test_tau_is_one_for_a_steady_rise_and_near_zero_for_noise(
        self,
    ) -> None:
        """Kendall's tau separates a trend from noise."""
        rng = random.Random(11)
        rise = [(float(t), float(t)) for t in range(100)]
        noise = [(float(t), rng.gauss(0, 1)) for t in range(100)]

        assert 1.0 == kendall_tau(rise)
        assert abs(kendall_tau(noise)) < 0.2

    def test_tau_of_a_sawtooth_is_about_one_over_its_teeth(self) -> None:
        """Three teeth in the window give a tau near 1/3, not a trend."""
        saw = sawtooth(100, 0, 1)
        points = [(float(t), saw(t)) for t in range(0, 300, 2)]

        assert 1 / 3 == pytest.approx(kendall_tau(points), abs=0.05)

    def test_tau_b_accounts_for_ties(self) -> None:
        """A staircase (a leak in chunks) keeps a high tau-b."""
        points = [(float(t), float(t // 25)) for t in range(100)]

        assert math.sqrt(1 - 1 / 4) == pytest.approx(
            kendall_tau(points), abs=0.02
        )

    def test_tau_b_matches_its_definition_with_ties_in_time(self) -> None:
        """Samples sharing a time count as ties, as tau-b defines them."""
        points = [
            (0.0, 1.0),
            (1.0, 1.0),
            (1.0, 2.0),
            (2.0, 3.0),
            (3.0, 2.0),
            (3.0, 2.0),
            (4.0, 5.0),
        ]
        # 21 pairs: 14 concordant, 2 discordant, 2 tied in time, 4 in value
        # (one of them, (3, 2) twice, in both).
        expected = (14 - 2) / math.sqrt((21 - 2) * (21 - 4))

        assert expected == pytest.approx(kendall_tau(points))

    def test_long_inputs_are_subsampled_evenly(self) -> None:
        """Beyond MAX_TREND_POINTS the fit uses an even subsample."""
        points = [(float(t), 2.0 * t) for t in range(1000)]

        trend = fit_trend(points)

        assert forecast.MAX_TREND_POINTS == trend.points
        assert 2.0 == pytest.approx(trend.slope)
        assert 0.0 == trend.origin

    def test_a_trend_needs_two_distinct_times(self) -> None:
        """One instant carries no slope."""
        with pytest.raises(ValueError, match="two samples"):
            theil_sen([(1.0, 1.0), (1.0, 2.0)])


class TestThresholdRule:
    def test_fires_exactly_when_held_long_enough(
        self, clock: FakeClock
    ) -> None:
        """Breaching from t=100 for 2 min fires first at the t=220 sample."""
        rule = ThresholdRule(Direction.ABOVE, 500 * MB, 120, unit=Unit.BYTES)

        def signal(t: float) -> float:
            return 600 * MB if t >= 100 else 400 * MB

        fired = [
            clock.monotonic()
            for series in run(clock, signal, 400)
            if rule.evaluate(series).fires
        ]

        assert 220.0 == fired[0]
        assert list(range(220, 405, 5)) == fired

    def test_reports_how_long_the_run_has_held(self, clock: FakeClock) -> None:
        """The result carries the run's start, its length and a reason."""
        rule = ThresholdRule(Direction.ABOVE, 500 * MB, 120, unit=Unit.BYTES)
        series = Series(100, name="rss")
        for t, value in [(0, 400), (5, 612), (10, 612), (130, 612)]:
            series.append(float(t), value * MB)

        result = rule.evaluate(series)

        assert result.fires
        assert 5.0 == result.since
        assert 125.0 == result.held
        assert "rss > 500 MB for 2 min: 612 MB, held 2 min 5 s" == (
            result.reason
        )
        assert {"fires", "current", "held", "reason"} == set(result.to_dict())

    def test_spikes_never_fire(self, clock: FakeClock) -> None:
        """Single-sample spikes, however high, never make a run."""
        rule = ThresholdRule(Direction.ABOVE, 90, 60)

        def signal(t: float) -> float:
            return 100.0 if t % 30 == 0 else 50.0

        assert not any(
            rule.evaluate(series).fires for series in run(clock, signal, 600)
        )

    def test_one_sample_back_within_the_limit_starts_over(self) -> None:
        """A dip below the threshold restarts the count."""
        rule = ThresholdRule(Direction.ABOVE, 90, 60)
        series = Series(100)
        for t in range(0, 120, 5):
            series.append(float(t), 50.0 if t == 60 else 95.0)

        result = rule.evaluate(series)

        assert not result.fires
        assert 50.0 == result.held

    def test_a_series_shorter_than_the_duration_cannot_fire(self) -> None:
        """Samples covering less than held_for never fire, even all beyond."""
        rule = ThresholdRule(Direction.ABOVE, 90, 60)
        series = Series(100)
        for t in range(0, 60, 5):
            series.append(float(t), 99.0)

        assert not rule.evaluate(series).fires
        assert not rule.evaluate(Series(4)).fires

    def test_below_and_inclusive(self) -> None:
        """'below' fires under the value; inclusive counts the value."""
        series = Series(10)
        for t in range(0, 30, 10):
            series.append(float(t), 5.0)

        assert ThresholdRule(Direction.BELOW, 6, 20).evaluate(series).fires
        assert not ThresholdRule(Direction.BELOW, 5, 20).evaluate(series).fires
        assert (
            ThresholdRule(Direction.BELOW, 5, 20, inclusive=True)
            .evaluate(series)
            .fires
        )

    def test_the_ring_must_hold_the_duration(self) -> None:
        """A run longer than the ring keeps cannot be proven, so no firing."""
        rule = ThresholdRule(Direction.ABOVE, 1, 100)
        series = Series(5)
        for t in range(0, 200, 10):
            series.append(float(t), 2.0)

        assert not rule.evaluate(series).fires
        assert 100 == rule.history

    def test_a_stale_series_does_not_fire(self) -> None:
        """With max_age, samples that stopped coming cannot fire."""
        rule = ThresholdRule(Direction.ABOVE, 1, 10)
        series = Series(10, name="cpu")
        for t in range(0, 30, 5):
            series.append(float(t), 2.0)

        assert rule.evaluate(series, now=40, max_age=15).fires
        stale = rule.evaluate(series, now=100, max_age=15)
        assert not stale.fires
        assert "cpu: the last sample is 75 s old (stale)" == stale.reason

    @pytest.mark.parametrize(
        ("value", "held_for", "where"),
        [
            pytest.param(math.nan, 1.0, "value", id="nan-value"),
            pytest.param(1.0, -1.0, "held_for", id="negative-duration"),
        ],
    )
    def test_refuses_bad_settings(
        self, value: float, held_for: float, where: str
    ) -> None:
        """Non-finite thresholds and negative durations are refused."""
        with pytest.raises(ConfigError) as caught:
            ThresholdRule(Direction.ABOVE, value, held_for)

        assert where == caught.value.where


class TestForecastRule:
    RULE = ForecastRule(1 * GB, 1800, 1800, unit=Unit.BYTES)

    def test_a_steady_leak_fires_before_the_crossing(
        self, clock: FakeClock
    ) -> None:
        """800 MB + 4 MB/min crosses 1 GB at 50 min; a 30 min horizon fires
        from about 20 min on, with the crossing predicted within a minute."""
        verdicts = forecasts(
            clock,
            self.RULE,
            leak(4 * MB, 800 * MB, noise=2 * MB),
            2940,
            every=2,
        )

        first = next(i for i, f in enumerate(verdicts) if f.fires)
        fired_at = first * 2 * STEP
        assert 19 * 60 <= fired_at <= 21 * 60
        for verdict in verdicts[first:]:
            assert verdict.fires
            assert verdict.crossing_at is not None
            assert 3000 == pytest.approx(verdict.crossing_at, abs=60)
        eta = verdicts[first].eta
        assert eta is not None
        assert eta <= 1800

    def test_the_crossing_has_a_wall_time_and_a_reason(
        self, clock: FakeClock
    ) -> None:
        """A firing forecast says when, in wall time, and why, in words."""
        series = Series(720, name="rss")
        for _ in run(clock, leak(4.1 * MB, 800 * MB), 1800, series=series):
            pass

        verdict = self.RULE.evaluate(
            series, now=clock.monotonic(), wall_now=clock.time()
        )

        assert verdict.fires
        assert ForecastStatus.FORECAST == verdict.status
        assert (
            "rss 923 MB rising 4.1 MB/min: reaches 1 GB in ~19 min"
            == verdict.reason
        )
        assert verdict.eta is not None
        assert clock.time() + verdict.eta == verdict.crossing_wall
        assert 4.1 * MB / 60 == pytest.approx(verdict.slope)
        assert 1.0 == pytest.approx(verdict.quality)
        body = verdict.to_dict()
        assert "2026-01-01T" in str(body["crossingAt"])
        assert body["fires"] is True

    def test_reason_reads_like_the_issue(self, clock: FakeClock) -> None:
        """The reason names the value, the rate and the time to go."""
        rule = ForecastRule(1 * GB, 3600, 1800, unit=Unit.BYTES)
        series = Series(720, name="rss")
        for _ in run(clock, leak(4.1 * MB, 689 * MB), 1800, series=series):
            pass

        verdict = rule.evaluate(series, now=clock.monotonic())

        assert (
            "rss 812 MB rising 4.1 MB/min: reaches 1 GB in ~46 min"
            == verdict.reason
        )
        assert verdict.crossing_wall is None  # no wall_now given

    def test_gaussian_noise_never_fires(self, clock: FakeClock) -> None:
        """Noise just under the threshold is not a trend."""
        rng = random.Random(1234)

        def signal(_: float) -> float:
            return 940 * MB + rng.gauss(0, 20 * MB)

        verdicts = forecasts(clock, self.RULE, signal, 7200, every=3)

        assert not any(f.fires for f in verdicts)
        assert ForecastStatus.INCONSISTENT in {f.status for f in verdicts}

    @pytest.mark.parametrize("period", [300, 600, 900])
    def test_a_garbage_collected_sawtooth_never_fires(
        self, clock: FakeClock, period: float
    ) -> None:
        """A climb to 900 MB then a drop to 400 MB, repeating, is no leak
        when the window spans two or more of its cycles."""
        verdicts = forecasts(
            clock,
            self.RULE,
            sawtooth(period, 400 * MB, 900 * MB),
            7200,
            every=3,
        )

        assert not any(f.fires for f in verdicts)

    def test_the_first_sample_after_a_collection_breaks_the_trend(
        self,
    ) -> None:
        """A steady climb whose latest sample fell back is not forecast."""
        series = Series(720, name="rss")
        for t in range(0, 1800, 5):
            series.append(float(t), 400 * MB + t * 0.3 * MB)
        series.append(1800.0, 400 * MB)

        verdict = self.RULE.evaluate(series, now=1800)

        assert ForecastStatus.INCONSISTENT == verdict.status
        assert "off its rising trend" in verdict.reason

    def test_too_short_a_series_does_not_fire(self, clock: FakeClock) -> None:
        """Until half the window is sampled there is no forecast."""
        verdicts = forecasts(clock, self.RULE, leak(4 * MB, 500 * MB), 890)

        assert not any(f.fires for f in verdicts)
        assert {ForecastStatus.INSUFFICIENT_DATA} == {
            f.status for f in verdicts
        }
        assert (
            "a forecast needs 10 over at least 15 min" in verdicts[-1].reason
        )

    def test_too_few_samples_do_not_fire(self) -> None:
        """Fewer than min_samples, however spread, is too few."""
        series = Series(10)
        for t in (0.0, 900.0, 1800.0):
            series.append(t, t)
        rule = ForecastRule(10_000, 1800, 1800, min_samples=4)

        assert ForecastStatus.INSUFFICIENT_DATA == (
            rule.evaluate(series, now=1800).status
        )

    def test_a_stale_series_is_no_forecast(self, clock: FakeClock) -> None:
        """With max_age, a leak whose sampling stopped is STALE."""
        series = Series(720, name="rss")
        for _ in run(clock, leak(4 * MB, 800 * MB), 1800, series=series):
            pass
        now = clock.monotonic() + 60

        assert self.RULE.evaluate(series, now=now).fires
        stale = self.RULE.evaluate(series, now=now, max_age=15)
        assert ForecastStatus.STALE == stale.status
        assert not stale.fires

    def test_already_crossed_is_its_own_verdict(self) -> None:
        """At or beyond the threshold, a forecast says CROSSED, not fires."""
        series = Series(10, name="rss")
        series.append(0.0, 1.2 * GB)

        verdict = self.RULE.evaluate(series, now=0)

        assert ForecastStatus.CROSSED == verdict.status
        assert not verdict.fires
        assert "rss 1.2 GB already at or beyond 1 GB" == verdict.reason

    def test_a_slow_leak_is_beyond_the_horizon(self, clock: FakeClock) -> None:
        """A crossing predicted after the horizon is reported, not fired."""
        verdicts = forecasts(
            clock, self.RULE, leak(1 * MB, 500 * MB), 1800, every=60
        )

        assert ForecastStatus.BEYOND_HORIZON == verdicts[-1].status
        assert "beyond the 30 min horizon" in verdicts[-1].reason
        assert verdicts[-1].crossing_at is not None

    def test_a_far_crossing_reads_in_hours(self) -> None:
        """A crossing hours away is said in hours and minutes."""
        series = Series(720, name="rss")
        for t in range(0, 1805, 5):
            series.append(float(t), 500 * MB + t * MB / 60)

        verdict = self.RULE.evaluate(series, now=1800)

        assert (
            "rss 530 MB rising 1 MB/min: reaches 1 GB in ~7 h 50 min, "
            "beyond the 30 min horizon"
        ) == verdict.reason

    @pytest.mark.parametrize(
        ("rule", "text"),
        [
            pytest.param(RULE, "rss will reach 1 GB within 30 min", id="up"),
            pytest.param(
                ForecastRule(
                    5, 3600, 3600, direction=Direction.BELOW, unit=Unit.PERCENT
                ),
                "rss will fall to 5% within 1 h",
                id="down",
            ),
            pytest.param(
                ForecastRule(5, 5430, 3600),
                "rss will reach 5 within 1 h 30 min 30 s",
                id="odd-horizon",
            ),
        ],
    )
    def test_describes_itself(self, rule: ForecastRule, text: str) -> None:
        """describe() writes the condition back in words."""
        assert text == rule.describe("rss")

    def test_a_falling_series_is_no_trend_for_a_rising_rule(
        self, clock: FakeClock
    ) -> None:
        """Memory going down never forecasts reaching a ceiling."""
        verdicts = forecasts(
            clock, self.RULE, leak(-4 * MB, 900 * MB), 1800, every=60
        )

        assert ForecastStatus.NO_TREND == verdicts[-1].status

    def test_below_forecasts_a_fall(self, clock: FakeClock) -> None:
        """A 'below' rule fires on a steady fall toward its floor."""
        rule = ForecastRule(
            10, 1800, 1800, direction=Direction.BELOW, unit=Unit.PERCENT
        )

        verdicts = forecasts(
            clock, rule, lambda t: 40 - t / 90, 1800, every=60
        )

        assert verdicts[-1].fires
        assert 900 == pytest.approx(verdicts[-1].eta)
        assert verdicts[-1].quality == pytest.approx(1.0)

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            pytest.param({"within": 0}, "within", id="zero-horizon"),
            pytest.param({"window": -5}, "window", id="negative-window"),
            pytest.param({"min_samples": 2}, "min_samples", id="few-samples"),
            pytest.param({"min_quality": 0}, "min_quality", id="no-quality"),
            pytest.param({"will_reach": math.inf}, "will_reach", id="inf"),
        ],
    )
    def test_refuses_bad_settings(
        self, kwargs: dict[str, float], where: str
    ) -> None:
        """Each impossible setting is refused, naming itself."""
        settings: dict[str, float] = {
            "will_reach": 1.0,
            "within": 60.0,
            "window": 60.0,
        }
        settings.update(kwargs)

        with pytest.raises(ConfigError) as caught:
            ForecastRule(**settings)  # type: ignore[arg-type]

        assert where == caught.value.where


class TestParseCondition:
    @pytest.mark.parametrize(
        ("text", "series", "rule"),
        [
            pytest.param(
                "rss > 500MB for 2m",
                "rss",
                ThresholdRule(Direction.ABOVE, 500e6, 120, unit=Unit.BYTES),
                id="rss-threshold",
            ),
            pytest.param(
                "cpu > 90 for 5m",
                "cpu",
                ThresholdRule(Direction.ABOVE, 90, 300, unit=Unit.PERCENT),
                id="cpu",
            ),
            pytest.param(
                "fds > 800 for 1m",
                "fds",
                ThresholdRule(Direction.ABOVE, 800, 60, unit=Unit.COUNT),
                id="fds",
            ),
            pytest.param(
                "host.memory >= 95% for 30s",
                "host.memory",
                ThresholdRule(
                    Direction.ABOVE, 95, 30, unit=Unit.PERCENT, inclusive=True
                ),
                id="inclusive-percent",
            ),
            pytest.param(
                "daemon.loop_lag > 100ms for 1m",
                "daemon.loop_lag",
                ThresholdRule(Direction.ABOVE, 0.1, 60, unit=Unit.SECONDS),
                id="seconds",
            ),
            pytest.param(
                "threads<2 for 10s",
                "threads",
                ThresholdRule(Direction.BELOW, 2, 10, unit=Unit.COUNT),
                id="no-spaces",
            ),
            pytest.param(
                "disk /var used% will reach 95 within 1h",
                "disk:/var",
                ForecastRule(95, 3600, 3600, unit=Unit.PERCENT),
                id="disk-forecast",
            ),
            pytest.param(
                "rss will reach 1GB within 30m",
                "rss",
                ForecastRule(1e9, 1800, 1800, unit=Unit.BYTES),
                id="rss-forecast",
            ),
            pytest.param(
                "rss will reach 1.5GiB within 2m over 20m",
                "rss",
                ForecastRule(1.5 * 1024**3, 120, 1200, unit=Unit.BYTES),
                id="binary-size-and-window",
            ),
            pytest.param(
                "inodes /data will reach 90% within 6h",
                "inodes:/data",
                ForecastRule(90, 21600, 3600, unit=Unit.PERCENT),
                id="inodes-window-capped",
            ),
            pytest.param(
                "disk:/ will reach 80 within 1m",
                "disk:/",
                ForecastRule(80, 60, 600, unit=Unit.PERCENT),
                id="keyed-disk-window-floored",
            ),
            pytest.param(
                "host.swap will fall to 5 within 1h",
                "host.swap",
                ForecastRule(
                    5, 3600, 3600, direction=Direction.BELOW, unit=Unit.PERCENT
                ),
                id="falling",
            ),
            pytest.param(
                "  RSS > 512kib FOR 1m  ".replace("RSS", "rss"),
                "rss",
                ThresholdRule(
                    Direction.ABOVE, 512 * 1024, 60, unit=Unit.BYTES
                ),
                id="case-and-space",
            ),
        ],
    )
    def test_reads_each_form(
        self, text: str, series: str, rule: forecast.Rule
    ) -> None:
        """Each documented condition form parses to its series and rule."""
        assert (series, rule) == parse_condition(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("rss >> 5 for 1m", "expected", id="grammar"),
            pytest.param("rss > 500MB", "expected", id="no-duration"),
            pytest.param(
                "rsss > 5 for 1m", "unknown series 'rsss'", id="series"
            ),
            pytest.param(
                "rss > 500% for 1m", "expects a size", id="percent-rss"
            ),
            pytest.param("rss > 5XB for 1m", "expects a size", id="unit"),
            pytest.param("cpu > 90MB for 1m", "a percentage", id="size-cpu"),
            pytest.param("fds > 8k for 1m", "a plain number", id="count-unit"),
            pytest.param(
                "disk /var used% will reach 120 within 1h",
                "percentage of 0..100",
                id="over-100",
            ),
            pytest.param("rss > 5MB for soon", "duration", id="bad-duration"),
            pytest.param(
                "rss will reach 1GB within 0s", "horizon", id="zero-horizon"
            ),
            pytest.param(
                "rss will reach 1GB within 1h over 0",
                "window",
                id="zero-window",
            ),
            pytest.param(
                "daemon.loop_lag > fast for 1m", "a duration", id="bad-lag"
            ),
        ],
    )
    def test_errors_name_the_text_and_what_was_expected(
        self, text: str, expected: str
    ) -> None:
        """A bad condition raises ConfigError quoting it, saying what fits."""
        with pytest.raises(ConfigError) as caught:
            parse_condition(text)

        assert repr(text) in str(caught.value)
        assert expected in str(caught.value)
        assert "condition" == caught.value.where

    def test_refuses_a_non_string(self) -> None:
        """A condition must be text."""
        with pytest.raises(ConfigError, match="must be a string"):
            parse_condition(5)  # type: ignore[arg-type]


class TestSeriesNames:
    @pytest.mark.parametrize(
        ("name", "unit"),
        [
            ("rss", Unit.BYTES),
            ("process:web:cpu", Unit.PERCENT),
            ("daemon.loop_lag", Unit.SECONDS),
            ("host.load15", Unit.COUNT),
            ("disk:/var", Unit.PERCENT),
            ("inodes:/", Unit.PERCENT),
        ],
    )
    def test_units(self, name: str, unit: Unit) -> None:
        """Every documented series has its unit."""
        assert unit == unit_of(name)

    def test_process_metrics_need_the_process(self) -> None:
        """A bare process metric is keyed by the rule's process."""
        assert "process:web:rss" == series_key("rss", process="web")
        assert "disk:/var" == series_key("disk:/var", process="web")
        with pytest.raises(ConfigError, match="name the process"):
            series_key("rss")

    def test_unknown_series_are_refused(self) -> None:
        """An unknown series name lists the known ones."""
        with pytest.raises(ConfigError, match="host"):
            unit_of("disk:")

    @pytest.mark.parametrize(
        ("value", "unit", "text"),
        [
            (812e6, Unit.BYTES, "812 MB"),
            (1e9, Unit.BYTES, "1 GB"),
            (512, Unit.BYTES, "512 B"),
            (87.25, Unit.PERCENT, "87.2%"),
            (0.12, Unit.SECONDS, "120 ms"),
            (1.5, Unit.SECONDS, "1.5 s"),
            (1234, Unit.COUNT, "1234"),
            (-0.0001, Unit.COUNT, "-0.0001"),
        ],
    )
    def test_format_value(self, value: float, unit: Unit, text: str) -> None:
        """Values read as an operator writes them."""
        assert text == format_value(value, unit)


class TestCooldown:
    def test_holds_for_its_duration(self, clock: FakeClock) -> None:
        """After a start, the next is allowed only once the time is up."""
        cooldown = Cooldown(60)
        assert cooldown.allowed(clock.monotonic())

        cooldown.started(clock.monotonic())
        clock.advance(59.9)
        assert not cooldown.allowed(clock.monotonic())
        assert 0.1 == pytest.approx(cooldown.remaining(clock.monotonic()))
        clock.advance(0.1)
        assert cooldown.allowed(clock.monotonic())

    def test_reset_allows_at_once(self) -> None:
        """reset() forgets the last start."""
        cooldown = Cooldown(60)
        cooldown.started(0)
        cooldown.reset()

        assert cooldown.allowed(1)

    def test_refuses_a_negative_duration(self) -> None:
        """A cool-down cannot be negative."""
        with pytest.raises(ConfigError, match="cooldown"):
            Cooldown(-1)


class TestPreventiveRule:
    def fed(self, clock: FakeClock, value: float, seconds: float) -> Series:
        series = Series(720, name="process:web:rss")
        for _ in run(clock, lambda _: value, seconds, series=series):
            pass
        return series

    def test_acts_once_per_cooldown_while_the_condition_holds(
        self, clock: FakeClock
    ) -> None:
        """A held condition acts, then cools down, then acts again."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            cooldown=600,
            process="web",
        )
        series = Series(720, name="process:web:rss")
        decisions: list[tuple[float, Decision]] = []
        for _ in run(clock, lambda _: 600 * MB, 1500, series=series):
            trigger = rule.evaluate(
                series, now=clock.monotonic(), wall_now=clock.time()
            )
            if trigger.decision is not Decision.QUIET:
                decisions.append((clock.monotonic(), trigger.decision))

        acts = [t for t, d in decisions if d is Decision.ACT]
        assert [120.0, 720.0, 1320.0] == acts
        assert all(
            d is Decision.COOLING_DOWN for t, d in decisions if t not in acts
        )

    def test_trigger_is_marked_preventive_with_a_retry_after(
        self, clock: FakeClock
    ) -> None:
        """A cooling-down trigger says when it may act again."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            process="web",
            cooldown=600,
        )
        series = self.fed(clock, 600 * MB, 120)
        first = rule.evaluate(series, now=clock.monotonic())
        clock.advance(100)
        second = rule.evaluate(series, now=clock.monotonic())

        assert Decision.ACT == first.decision
        assert Decision.COOLING_DOWN == second.decision
        assert 500.0 == second.retry_after
        body = second.to_dict()
        assert body["preventive"] is True
        assert "process:web:rss" == body["series"]
        assert "rss > 500MB for 2m" == body["condition"]
        assert "cooling-down" == body["decision"]
        assert first.issue is None  # only forecasts make status issues

    def test_flag_off_never_acts_nor_starts_the_cooldown(
        self, clock: FakeClock
    ) -> None:
        """With preventive healing off, a held condition is DISABLED, and
        switching it on acts at once."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            process="web",
        )
        series = self.fed(clock, 600 * MB, 300)

        off = rule.evaluate(series, now=clock.monotonic(), enabled=False)
        on = rule.evaluate(series, now=clock.monotonic(), enabled=True)

        assert Decision.DISABLED == off.decision
        assert off.fires
        assert Decision.ACT == on.decision

    def test_quiet_while_the_condition_does_not_hold(
        self, clock: FakeClock
    ) -> None:
        """Nothing to do leaves the cool-down alone."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            process="web",
        )
        series = self.fed(clock, 400 * MB, 300)

        trigger = rule.evaluate(series, now=clock.monotonic())

        assert Decision.QUIET == trigger.decision
        assert rule.cooldown.allowed(clock.monotonic())

    def test_a_firing_forecast_is_a_status_issue(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A forecast breach yields the WARNING text: prediction, time and
        planned action; acting is logged."""
        rule = PreventiveRule.from_condition(
            "var-full",
            "disk /var used% will reach 95 within 1h",
            action="clean-var",
        )
        series = Series(720, name="disk:/var")
        for _ in run(clock, lambda t: 80 + t / 360, 3600, series=series):
            pass

        with caplog.at_level(logging.WARNING, "selfhealing.preventive"):
            trigger = rule.evaluate(
                series, now=clock.monotonic(), wall_now=clock.time()
            )

        assert Decision.ACT == trigger.decision
        assert (
            "disk:/var 90% rising 0.167%/min: reaches 95% in ~30 min "
            "(at 2026-01-01T01:30:00.000Z); preventive rule 'var-full' "
            "plans action 'clean-var'"
        ) == trigger.issue
        assert "preventive rule var-full fires" in caplog.text

    def test_stale_samples_never_act(self, clock: FakeClock) -> None:
        """A rule with max_age stays quiet once sampling has stopped."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            process="web",
            max_age=15,
        )
        series = self.fed(clock, 600 * MB, 300)
        clock.advance(60)

        trigger = rule.evaluate(series, now=clock.monotonic())

        assert Decision.QUIET == trigger.decision
        assert "stale" in trigger.reason

    def test_check_reads_without_deciding(self, clock: FakeClock) -> None:
        """check() (verification) never touches the cool-down."""
        rule = PreventiveRule.from_condition(
            "web-rss",
            "rss > 500MB for 2m",
            action="restart-web",
            process="web",
        )
        series = self.fed(clock, 600 * MB, 300)

        assert rule.check(series, now=clock.monotonic()).fires
        assert rule.cooldown.allowed(clock.monotonic())
        series.reset()  # the restarted process starts over: verified
        assert not rule.check(series, now=clock.monotonic()).fires

    def test_describes_itself(self) -> None:
        """The repr names the rule, its condition and its action."""
        rule = PreventiveRule(
            "r",
            series="host.memory",
            rule=ThresholdRule(Direction.ABOVE, 90, 60, unit=Unit.PERCENT),
            action="a",
        )

        assert "host.memory > 90% for 60 s" == rule.condition
        assert (
            "PreventiveRule('r', 'host.memory > 90% for 60 s', action='a')"
            == (repr(rule))
        )
