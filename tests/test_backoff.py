from __future__ import annotations

from datetime import timedelta
from random import Random

import pytest

from hypothesis import given
from hypothesis import strategies as st

from selfhealing.backoff import Backoff, compute_delay
from selfhealing.exceptions import ConfigError


class TestComputeDelay:
    def test_the_guides_sequence(self) -> None:
        """base 5 s doubling: 5, 10, 20, ... 320 s at 6 failures."""
        delays = [compute_delay(n, base=5, cap=1800) for n in range(7)]
        assert [5, 10, 20, 40, 80, 160, 320] == delays

    def test_clamped_at_the_cap(self) -> None:
        """The delay never exceeds the cap (30 minutes by default)."""
        assert 1800 == compute_delay(9, base=5, cap=1800)
        assert 1800 == compute_delay(10**9, base=5, cap=1800)

    def test_huge_counts_never_overflow(self) -> None:
        """2**100000 is never computed: the cap is returned at once."""
        assert 60.0 == compute_delay(100_000, base=1, factor=10, cap=60)

    def test_jitter_only_shortens(self) -> None:
        """Jitter scales the delay down by at most its fraction."""
        rng = Random(0)
        delays = [
            compute_delay(3, base=5, cap=1800, jitter=0.5, rng=rng)
            for _ in range(100)
        ]
        assert all(20 <= d <= 40 for d in delays)
        assert len(set(delays)) > 50

    def test_jitter_is_reproducible(self) -> None:
        """The same seeded Random gives the same jittered delays."""
        first = compute_delay(2, base=1, cap=9, jitter=1, rng=Random(7))
        second = compute_delay(2, base=1, cap=9, jitter=1, rng=Random(7))
        assert first == second

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"failures": -1, "base": 1, "cap": 2},
            {"failures": 1, "base": -1, "cap": 2},
            {"failures": 1, "base": 1, "cap": -2},
            {"failures": 1, "base": 1, "cap": 2, "factor": 0.5},
            {"failures": 1, "base": 1, "cap": 2, "jitter": 1.5},
        ],
    )
    def test_bad_arguments_raise(self, kwargs: dict[str, float]) -> None:
        """Negative counts, bases, caps, shrinking factors, wild jitter."""
        failures = int(kwargs.pop("failures"))
        with pytest.raises(ConfigError):
            compute_delay(failures, **kwargs)  # type: ignore[arg-type]

    @given(
        failures=st.integers(0, 10_000),
        base=st.floats(0.001, 100),
        factor=st.floats(1, 10),
        cap=st.floats(0.001, 1e6),
    )
    def test_never_decreases_never_exceeds_the_cap(
        self, failures: int, base: float, factor: float, cap: float
    ) -> None:
        """Backoff is monotonic in the failure count and bounded by the cap."""
        kwargs = {"base": base, "factor": factor, "cap": cap}
        now = compute_delay(failures, **kwargs)
        later = compute_delay(failures + 1, **kwargs)
        assert now <= later <= cap


class TestPolicy:
    def test_defaults_are_the_guides(self) -> None:
        """Backoff() is 5 s doubling to 30 minutes."""
        assert (5.0, 2.0, 1800.0) == (
            Backoff().base,
            Backoff().factor,
            Backoff().cap,
        )

    def test_accepts_timedeltas(self) -> None:
        """Durations may be timedeltas, converted once."""
        policy = Backoff.of(
            base=timedelta(seconds=2), cap=timedelta(minutes=1)
        )
        assert (2.0, 60.0) == (policy.base, policy.cap)
        assert 60.0 == policy.delay(10)

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            ({"base": 0}, "backoff_base"),
            ({"base": 10, "cap": 5}, "backoff_max"),
            ({"base": "5s"}, "backoff_base"),
        ],
    )
    def test_bad_policy(self, kwargs: dict[str, object], where: str) -> None:
        """A zero base, a cap below the base or a string are refused."""
        with pytest.raises(ConfigError) as info:
            Backoff.of(**kwargs)  # type: ignore[arg-type]
        assert where == info.value.where
