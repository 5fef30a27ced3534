"""KeyPool: discovery, rotation, cool-downs, failures, and secrecy."""

from __future__ import annotations

import json
import logging

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import selfhealing.llm
import selfhealing.llm.keypool

from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    ConfigError,
    NoKeyAvailableError,
    UnknownNameError,
)
from selfhealing.llm.keypool import (
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
from selfhealing.testing import FakeClock


KEY_A = "sk-ant-api03-" + "A" * 80 + "-a1b2"
KEY_B = "sk-ant-api03-" + "B" * 80 + "-b3c4"
KEY_C = "sk-ant-api03-" + "C" * 80 + "-c5d6"
KEY_D = "sk-ant-api03-" + "D" * 80 + "-d7e8"
OTHER = "other-provider-secret-9f8e"
ALL_SECRETS = (KEY_A, KEY_B, KEY_C, KEY_D, OTHER)

ID_A = "sk-ant-...a1b2"
ID_B = "sk-ant-...b3c4"
ID_C = "sk-ant-...c5d6"
ID_D = "sk-ant-...d7e8"

LOGGER = "selfhealing.keypool"


def make_pool(clock: FakeClock, *specs: KeySpec, **kwargs: object) -> KeyPool:
    return KeyPool(specs, clock=clock, **kwargs)  # type: ignore[arg-type]


def ungrouped(clock: FakeClock, count: int = 3) -> KeyPool:
    """A pool of keys A, B, C, ... without groups."""
    secrets = (KEY_A, KEY_B, KEY_C, KEY_D)[:count]
    return KeyPool(
        [KeySpec(s, f"K{i}") for i, s in enumerate(secrets)], clock=clock
    )


def lease_ids(pool: KeyPool, count: int) -> list[str]:
    return [pool.acquire().id for _ in range(count)]


def states(pool: KeyPool) -> dict[str, KeyState]:
    return {key.id: key.state for key in pool.snapshot().keys}


@dataclass
class Recorder:
    """Collects on_change calls."""

    calls: list[tuple[str, KeyState, KeyState, str | None]] = field(
        default_factory=list
    )

    def __call__(
        self, key_id: str, old: KeyState, new: KeyState, reason: str | None
    ) -> None:
        self.calls.append((key_id, old, new, reason))

    @property
    def transitions(self) -> list[tuple[str, KeyState, KeyState]]:
        return [(k, o, n) for k, o, n, _ in self.calls]


class TestExports:
    def test_all_is_sorted_and_complete(self) -> None:
        """Both modules export a sorted __all__ of names that exist."""
        for module in (selfhealing.llm.keypool, selfhealing.llm):
            names = module.__all__
            assert sorted(names) == names
            for name in names:
                assert hasattr(module, name)

    def test_package_reexports_the_pool(self) -> None:
        """selfhealing.llm re-exports the key pool's public names."""
        assert selfhealing.llm.KeyPool is KeyPool
        assert set(selfhealing.llm.keypool.__all__) <= set(
            selfhealing.llm.__all__
        )


class TestMaskKey:
    @pytest.mark.parametrize(
        ("secret", "expected"),
        [
            pytest.param(KEY_A, "sk-ant-...a1b2", id="anthropic"),
            pytest.param("sk-ant-12345", "sk-ant-...2345", id="short-ant"),
            pytest.param(OTHER, "oth...9f8e", id="other"),
            pytest.param("abcdefghijkl", "abc...ijkl", id="twelve"),
            pytest.param("abcdefghijk", "***jk", id="eleven"),
            pytest.param("abcde", "***de", id="five"),
            pytest.param("abcd", "***", id="tiny"),
            pytest.param("", "***", id="empty"),
        ],
    )
    def test_masked_forms(self, secret: str, expected: str) -> None:
        """Keys show a fixed prefix, three dots and their last characters."""
        assert expected == mask_key(secret)


class TestKeySpec:
    def test_repr_masks_the_secret(self) -> None:
        """repr() and str() of a spec never show the secret."""
        spec = KeySpec(KEY_A, "ANTHROPIC_API_KEY", "org-a")
        expected = (
            "KeySpec(secret='sk-ant-...a1b2', source='ANTHROPIC_API_KEY', "
            "group='org-a')"
        )
        assert expected == repr(spec)
        assert expected == str(spec)
        assert KEY_A not in f"{spec}"

    @pytest.mark.parametrize(
        "secret",
        ["", "sk-ant-has space-1234", "sk-ant-newline\n1234", "tab\tkey"],
        ids=["empty", "space", "newline", "tab"],
    )
    def test_unusable_secrets_are_refused(self, secret: str) -> None:
        """A secret with whitespace or control characters is a ConfigError."""
        with pytest.raises(ConfigError) as info:
            KeySpec(secret, "SOURCE")
        assert "SOURCE" == info.value.where
        assert secret not in str(info.value) or not secret

    def test_blank_group_is_refused(self) -> None:
        """A group must be a non-empty string."""
        with pytest.raises(ConfigError):
            KeySpec(KEY_A, "SOURCE", " ")


class TestLease:
    def test_exposes_the_secret_but_masks_its_repr(self) -> None:
        """The advisor reads .secret; repr() shows only the masked form."""
        lease = Lease(ID_A, KEY_A)
        assert KEY_A == lease.secret
        assert "Lease(id='sk-ant-...a1b2', secret='sk-ant-...a1b2')" == repr(
            lease
        )


class TestDiscovery:
    def test_sources_in_order(self) -> None:
        """ANTHROPIC_API_KEY, then ANTHROPIC_API_KEYS, then config names."""
        env = {
            "ANTHROPIC_API_KEY": KEY_A,
            "ANTHROPIC_API_KEYS": f" {KEY_B} ,{KEY_C}",
            "ORG_A_KEY": KEY_D,
        }
        specs = discover_keys(env, [{"env": "ORG_A_KEY", "group": "org-a"}])
        expected = [
            KeySpec(KEY_A, "ANTHROPIC_API_KEY"),
            KeySpec(KEY_B, "ANTHROPIC_API_KEYS[1]"),
            KeySpec(KEY_C, "ANTHROPIC_API_KEYS[2]"),
            KeySpec(KEY_D, "ORG_A_KEY", "org-a"),
        ]
        assert expected == specs

    def test_pool_from_settings_drops_duplicates(
        self, clock: FakeClock
    ) -> None:
        """A secret listed twice is one key, under its first source."""
        env = {
            "ANTHROPIC_API_KEY": KEY_A,
            "ANTHROPIC_API_KEYS": f"{KEY_B},{KEY_A},{KEY_B}",
            "ORG_A_KEY": KEY_A,
        }
        pool = KeyPool.from_settings(
            env, [{"env": "ORG_A_KEY", "group": "org-a"}], clock=clock
        )
        snapshot = pool.snapshot()
        assert 2 == len(pool)
        assert [
            (ID_A, "ANTHROPIC_API_KEY"),
            (ID_B, "ANTHROPIC_API_KEYS[1]"),
        ] == [(key.id, key.source) for key in snapshot.keys]
        # The config's group still applies to the key it names.
        assert ["org-a", None] == [key.group for key in snapshot.keys]

    def test_conflicting_groups_keep_the_first(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A key declared in two groups keeps the first and warns."""
        env = {"X": KEY_A, "Y": KEY_A}
        with caplog.at_level(logging.WARNING, LOGGER):
            pool = KeyPool.from_settings(
                env,
                [
                    {"env": "X", "group": "org-a"},
                    {"env": "Y", "group": "org-b"},
                ],
                clock=clock,
            )
        assert ["org-a"] == [key.group for key in pool.snapshot().keys]
        assert "'org-b'" in caplog.text

    def test_unset_config_variable_is_warned_not_fatal(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A config entry naming an unset (or empty) variable is skipped."""
        env = {"ANTHROPIC_API_KEY": KEY_A, "EMPTY_KEY": "  "}
        with caplog.at_level(logging.WARNING, LOGGER):
            pool = KeyPool.from_settings(
                env,
                [{"env": "MISSING_KEY"}, {"env": "EMPTY_KEY", "group": "g"}],
                clock=clock,
            )
        assert 1 == len(pool)
        warnings = [r.getMessage() for r in caplog.records]
        assert any("MISSING_KEY" in m and "not set" in m for m in warnings)
        assert any("EMPTY_KEY" in m and "not set" in m for m in warnings)

    def test_no_keys_at_all(self, clock: FakeClock) -> None:
        """With nothing set the pool is empty and every count is zero."""
        pool = KeyPool.from_settings({}, clock=clock)
        assert 0 == len(pool)
        assert {
            "totalKeys": 0,
            "activeKeys": 0,
            "failedKeys": 0,
            "rateLimitedKeys": 0,
            "keys": [],
        } == pool.snapshot().to_dict()
        with pytest.raises(NoKeyAvailableError) as info:
            pool.acquire()
        assert info.value.retry_after is None

    def test_reads_dotenv_local(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """The guide's fix works: a key echoed into .env.local is found."""
        (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEYS={KEY_B}\n")
        (tmp_path / ".env.local").write_text(f"ANTHROPIC_API_KEY={KEY_A}\n")
        settings_ = EnvSettings(tmp_path, environ={"ORG": KEY_C})
        pool = KeyPool.from_settings(
            settings_, [{"env": "ORG", "group": "g"}], clock=clock
        )
        assert [ID_A, ID_B, ID_C] == [k.id for k in pool.snapshot().keys]

    def test_unusable_value_is_skipped_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A value with inner whitespace is skipped, named but not shown."""
        env = {"ANTHROPIC_API_KEY": "sk-ant-broken key-1234", "K": KEY_B}
        with caplog.at_level(logging.WARNING, LOGGER):
            specs = discover_keys(env, [{"env": "K"}])
        assert [KeySpec(KEY_B, "K")] == specs
        assert "ANTHROPIC_API_KEY is not a usable API key" in caplog.text
        assert "broken" not in caplog.text

    def test_numbered_variables_are_pointed_out(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """ANTHROPIC_API_KEY_2 is not read unless the config names it."""
        env = {"ANTHROPIC_API_KEY_2": KEY_A, "ANTHROPIC_API_KEY_3": KEY_B}
        with caplog.at_level(logging.WARNING, LOGGER):
            specs = discover_keys(env, [{"env": "ANTHROPIC_API_KEY_3"}])
        assert [KeySpec(KEY_B, "ANTHROPIC_API_KEY_3")] == specs
        assert "ANTHROPIC_API_KEY_2 is set but not read" in caplog.text
        assert "ANTHROPIC_API_KEY_3 is set" not in caplog.text

    @pytest.mark.parametrize(
        ("entry", "where"),
        [
            pytest.param("ORG_KEY", "llm.keys[0]", id="not-a-table"),
            pytest.param({}, "llm.keys[0].env", id="no-env"),
            pytest.param({"env": "1BAD"}, "llm.keys[0].env", id="bad-name"),
            pytest.param({"env": KEY_A}, "llm.keys[0].env", id="secret"),
            pytest.param(
                {"env": "K", "grop": "x"}, "llm.keys[0]", id="unknown-field"
            ),
            pytest.param(
                {"env": "K", "group": ""},
                "llm.keys[0].group",
                id="blank-group",
            ),
        ],
    )
    def test_malformed_config_entries(self, entry: object, where: str) -> None:
        """A malformed [llm] keys entry is a ConfigError naming the field."""
        with pytest.raises(ConfigError) as info:
            discover_keys({"K": KEY_B}, [entry])  # type: ignore[list-item]
        assert where == info.value.where
        assert KEY_A not in str(info.value)


class TestIds:
    def test_masked_collisions_get_a_suffix(self, clock: FakeClock) -> None:
        """Keys with one masked form are told apart by #2, #3."""
        twins = ["sk-ant-api03-" + letter * 40 + "-same" for letter in "XYZ"]
        pool = make_pool(
            clock, *(KeySpec(s, f"S{i}") for i, s in enumerate(twins))
        )
        expected = ["sk-ant-...same", "sk-ant-...same#2", "sk-ant-...same#3"]
        assert expected == [key.id for key in pool.snapshot().keys]

    def test_each_id_serves_its_own_secret(self, clock: FakeClock) -> None:
        """A suffixed id leases its own secret."""
        twins = ["sk-ant-api03-" + letter * 40 + "-same" for letter in "XY"]
        pool = make_pool(
            clock, *(KeySpec(s, f"S{i}") for i, s in enumerate(twins))
        )
        leases = [pool.acquire(), pool.acquire()]
        assert twins == [lease.secret for lease in leases]


class TestRotation:
    def test_round_robin(self, clock: FakeClock) -> None:
        """Leases cycle through the active keys in discovery order."""
        pool = ungrouped(clock)
        expected = [ID_A, ID_B, ID_C, ID_A, ID_B, ID_C, ID_A]
        assert expected == lease_ids(pool, 7)

    def test_round_robin_skips_unusable_keys(self, clock: FakeClock) -> None:
        """A failed key drops out of the rotation; the others keep order."""
        pool = ungrouped(clock)
        pool.report_failed(ID_B, status=401, message="invalid x-api-key")
        assert [ID_A, ID_C, ID_A, ID_C] == lease_ids(pool, 4)

    def test_exclude_keys_already_tried(self, clock: FakeClock) -> None:
        """A caller can exclude the keys it already tried for this advice."""
        pool = ungrouped(clock)
        assert ID_C == pool.acquire(exclude={ID_A, ID_B}).id
        assert ID_B == pool.acquire(exclude=[ID_A]).id

    def test_exclude_accepts_a_single_id(self, clock: FakeClock) -> None:
        """exclude="id" means that id, not its characters."""
        pool = ungrouped(clock, 2)
        assert ID_B == pool.acquire(exclude=ID_A).id

    def test_exclude_everything(self, clock: FakeClock) -> None:
        """Excluding every active key leaves nothing to lease."""
        pool = ungrouped(clock, 2)
        with pytest.raises(NoKeyAvailableError) as info:
            pool.acquire(exclude={ID_A, ID_B})
        assert info.value.retry_after is None

    def test_requests_are_counted(self, clock: FakeClock) -> None:
        """Each lease counts one request on its key."""
        pool = ungrouped(clock, 2)
        lease_ids(pool, 5)
        assert [3, 2] == [key.requests for key in pool.snapshot().keys]

    def test_unused_keys_count_as_active(self, clock: FakeClock) -> None:
        """A key that never served a request is active all the same."""
        pool = ungrouped(clock, 3)
        assert 3 == pool.snapshot().active


class TestFailed:
    @pytest.mark.parametrize(
        ("status", "error_type"),
        [
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
        ],
    )
    def test_auth_errors_fail_the_key(
        self, clock: FakeClock, status: int, error_type: str
    ) -> None:
        """401/402/403 fail only that key, with the reason recorded."""
        pool = ungrouped(clock, 2)
        pool.report_failed(ID_A, status=status, message="nope")
        snapshot = pool.snapshot()
        assert [KeyState.FAILED, KeyState.ACTIVE] == [
            key.state for key in snapshot.keys
        ]
        assert f"{status} {error_type}: nope" == snapshot.keys[0].last_error
        assert 1 == snapshot.keys[0].failures

    def test_failed_key_is_never_handed_out(self, clock: FakeClock) -> None:
        """A failed key stays out of rotation, however long time passes."""
        pool = ungrouped(clock, 2)
        pool.report_failed(ID_A, status=401, message="invalid x-api-key")
        clock.advance(timedelta(days=30))
        pool.report_success(ID_A)  # a late reply proves nothing
        assert [ID_B] * 6 == lease_ids(pool, 6)
        assert KeyState.FAILED == states(pool)[ID_A]

    def test_reset_brings_it_back(self, clock: FakeClock) -> None:
        """An operator reset returns a failed key to the rotation."""
        pool = ungrouped(clock, 2)
        pool.report_failed(ID_A, status=403, message="forbidden")
        snapshot = pool.reset(ID_A, actor="alice")
        assert KeyState.ACTIVE == snapshot.state
        assert ID_A == snapshot.id
        assert {ID_A, ID_B} == set(lease_ids(pool, 2))

    def test_other_statuses_are_refused(self, clock: FakeClock) -> None:
        """Only 401, 402 and 403 fail a key; anything else is a caller bug."""
        pool = ungrouped(clock, 1)
        with pytest.raises(ConfigError):
            pool.report_failed(ID_A, status=500, message="boom")
        assert KeyState.ACTIVE == states(pool)[ID_A]

    def test_all_failed_means_no_retry_after(self, clock: FakeClock) -> None:
        """When every key failed, no key can come back by itself."""
        pool = ungrouped(clock, 2)
        pool.report_failed(ID_A, status=401, message="x")
        pool.report_failed(ID_B, status=402, message="y")
        with pytest.raises(NoKeyAvailableError) as info:
            pool.acquire()
        assert info.value.retry_after is None


class TestRateLimited:
    def test_retry_after_cools_only_that_key(self, clock: FakeClock) -> None:
        """A 429 with retry-after 7 cools the key for exactly 7 seconds."""
        pool = ungrouped(clock, 2)
        assert 7.0 == pool.report_rate_limited(ID_A, retry_after=7)
        assert {ID_A: KeyState.RATE_LIMITED, ID_B: KeyState.ACTIVE} == states(
            pool
        )
        assert [ID_B, ID_B] == lease_ids(pool, 2)
        clock.advance(6.999)
        assert KeyState.RATE_LIMITED == states(pool)[ID_A]
        clock.advance(0.001)
        assert KeyState.ACTIVE == states(pool)[ID_A]
        assert {ID_A, ID_B} == set(lease_ids(pool, 2))

    def test_group_cools_together(self, clock: FakeClock) -> None:
        """A 429 on one key of a group cools every key of that group."""
        pool = make_pool(
            clock,
            KeySpec(KEY_A, "A", "org-a"),
            KeySpec(KEY_B, "B", "org-b"),
            KeySpec(KEY_C, "C", "org-a"),
        )
        pool.report_rate_limited(ID_C, retry_after=7)
        expected = {
            ID_A: KeyState.RATE_LIMITED,
            ID_B: KeyState.ACTIVE,
            ID_C: KeyState.RATE_LIMITED,
        }
        assert expected == states(pool)
        assert [ID_B, ID_B, ID_B] == lease_ids(pool, 3)
        cooling = [k for k in pool.snapshot().keys if k.group == "org-a"]
        assert [7.0, 7.0] == [k.cooldown_remaining for k in cooling]
        # Only the key that got the 429 is charged for it.
        assert [0, 1] == [k.failures for k in cooling]
        clock.advance(7)
        assert 3 == pool.snapshot().active

    def test_doubling_without_a_header(self, clock: FakeClock) -> None:
        """Consecutive 429s without retry-after cool 30, 60, ... up to 900 s."""
        pool = ungrouped(clock, 1)
        applied = []
        for _ in range(8):
            cooldown = pool.report_rate_limited(ID_A)
            applied.append(cooldown)
            clock.advance(cooldown)
        assert [
            30.0,
            60.0,
            120.0,
            240.0,
            480.0,
            900.0,
            900.0,
            900.0,
        ] == applied

    def test_success_ends_the_streak(self, clock: FakeClock) -> None:
        """A success on an active key restarts the doubling at 30 s."""
        pool = ungrouped(clock, 1)
        clock.advance(pool.report_rate_limited(ID_A))
        clock.advance(pool.report_rate_limited(ID_A))
        pool.report_success(ID_A)
        assert 30.0 == pool.report_rate_limited(ID_A)

    def test_late_success_while_cooling_keeps_the_cooldown(
        self, clock: FakeClock
    ) -> None:
        """A reply to a request sent before the 429 does not end the cool-down."""
        pool = ungrouped(clock, 1)
        pool.report_rate_limited(ID_A)
        pool.report_success(ID_A)
        snapshot = pool.snapshot().keys[0]
        assert KeyState.RATE_LIMITED == snapshot.state
        assert clock.time() == snapshot.last_success_at
        clock.advance(30)
        assert 60.0 == pool.report_rate_limited(ID_A)

    @pytest.mark.parametrize(
        ("retry_after", "expected"),
        [
            pytest.param(0, 1.0, id="zero"),
            pytest.param(0.2, 1.0, id="sub-second"),
            pytest.param(-5, 1.0, id="negative"),
            pytest.param(99999, 900.0, id="huge"),
            pytest.param(float("inf"), 900.0, id="inf"),
            pytest.param(42.5, 42.5, id="in-range"),
        ],
    )
    def test_clamped(
        self, clock: FakeClock, retry_after: float, expected: float
    ) -> None:
        """A server's retry-after is clamped to [1 s, 15 min]."""
        pool = ungrouped(clock, 1)
        assert expected == pool.report_rate_limited(
            ID_A, retry_after=retry_after
        )
        assert expected == pool.snapshot().keys[0].cooldown_remaining

    @pytest.mark.parametrize("retry_after", [None, 5, 99999])
    def test_spend_limit_cools_an_hour(
        self, clock: FakeClock, retry_after: float | None
    ) -> None:
        """A spend-limit 429 cools the key for at least an hour."""
        pool = ungrouped(clock, 1)
        applied = pool.report_rate_limited(
            ID_A,
            retry_after=retry_after,
            error_code="enforced_spend_limit_reached",
            message="You have reached your specified API usage limits.",
        )
        assert applied >= 3600
        clock.advance(3599)
        assert KeyState.RATE_LIMITED == states(pool)[ID_A]

    def test_a_longer_cooldown_is_kept(self, clock: FakeClock) -> None:
        """A short 429 does not cut a running long cool-down short."""
        pool = make_pool(
            clock, KeySpec(KEY_A, "A", "g"), KeySpec(KEY_B, "B", "g")
        )
        pool.report_rate_limited(
            ID_A, error_code="enforced_spend_limit_reached"
        )
        assert 3600.0 == pool.report_rate_limited(ID_B, retry_after=7)
        clock.advance(7)
        assert 2 == pool.snapshot().rate_limited

    def test_failed_group_member_stays_failed(self, clock: FakeClock) -> None:
        """A group's cool-down does not revive or touch a failed member."""
        pool = make_pool(
            clock, KeySpec(KEY_A, "A", "g"), KeySpec(KEY_B, "B", "g")
        )
        pool.report_failed(ID_B, status=401, message="x")
        pool.report_rate_limited(ID_A, retry_after=5)
        clock.advance(5)
        assert {ID_A: KeyState.ACTIVE, ID_B: KeyState.FAILED} == states(pool)

    def test_reset_ends_a_cooldown(self, clock: FakeClock) -> None:
        """An operator may reset a rate-limited key; its group keeps cooling."""
        pool = make_pool(
            clock, KeySpec(KEY_A, "A", "g"), KeySpec(KEY_B, "B", "g")
        )
        pool.report_rate_limited(ID_A, retry_after=60)
        pool.reset(ID_A)
        assert {ID_A: KeyState.ACTIVE, ID_B: KeyState.RATE_LIMITED} == states(
            pool
        )

    def test_all_cooling_gives_the_earliest_return(
        self, clock: FakeClock
    ) -> None:
        """When every usable key cools, retry_after is the earliest return."""
        pool = ungrouped(clock, 3)
        pool.report_rate_limited(ID_A, retry_after=40)
        pool.report_rate_limited(ID_B, retry_after=12)
        pool.report_failed(ID_C, status=401, message="x")
        clock.advance(2)
        with pytest.raises(NoKeyAvailableError) as info:
            pool.acquire()
        assert 10.0 == info.value.retry_after
        # An excluded key's return does not count.
        with pytest.raises(NoKeyAvailableError) as info:
            pool.acquire(exclude={ID_B})
        assert 38.0 == info.value.retry_after
        clock.advance(10)
        assert ID_B == pool.acquire().id


class TestServiceErrors:
    @pytest.mark.parametrize(
        "message",
        [
            "500 api_error: Internal server error",
            "529 overloaded_error: Overloaded",
            "timeout after 20.0s",
            "connection refused",
        ],
    )
    def test_no_penalty(self, clock: FakeClock, message: str) -> None:
        """5xx, 529, timeouts and connection errors change no state."""
        recorder = Recorder()
        pool = make_pool(
            clock,
            KeySpec(KEY_A, "A", "g"),
            KeySpec(KEY_B, "B", "g"),
            on_change=recorder,
        )
        for _ in range(10):
            pool.report_error(ID_A, message=message)
        snapshot = pool.snapshot()
        assert 2 == snapshot.active
        assert 0 == snapshot.keys[0].failures
        assert message == snapshot.keys[0].last_error
        assert clock.time() == snapshot.keys[0].last_error_at
        assert [] == recorder.calls
        assert [ID_A, ID_B] == lease_ids(pool, 2)


class TestUnknownIds:
    @pytest.mark.parametrize(
        "call",
        [
            lambda p: p.report_success("nope"),
            lambda p: p.report_rate_limited("nope"),
            lambda p: p.report_failed("nope", status=401, message="x"),
            lambda p: p.report_error("nope", message="x"),
            lambda p: p.reset("nope"),
        ],
        ids=["success", "rate_limited", "failed", "error", "reset"],
    )
    def test_unknown_id(
        self, clock: FakeClock, call: Callable[[KeyPool], object]
    ) -> None:
        """Every call naming an unknown key raises UnknownNameError."""
        pool = ungrouped(clock, 2)
        with pytest.raises(UnknownNameError) as info:
            call(pool)
        assert f"unknown API key 'nope' (known: {ID_A}, {ID_B})" == str(
            info.value
        )


class TestSnapshot:
    def test_to_dict_shape(self, clock: FakeClock) -> None:
        """The status API sees camelCase counts and per-key details."""
        pool = make_pool(
            clock,
            KeySpec(KEY_A, "ANTHROPIC_API_KEY", "org-a"),
            KeySpec(KEY_B, "B"),
        )
        pool.acquire()
        pool.report_success(ID_A)
        clock.advance(1.5)
        pool.report_rate_limited(ID_A, retry_after=27.25, message="slow down")
        clock.advance(0.125)
        document = pool.snapshot().to_dict()
        assert {
            "totalKeys": 2,
            "activeKeys": 1,
            "failedKeys": 0,
            "rateLimitedKeys": 1,
        } == {k: v for k, v in document.items() if k != "keys"}
        assert {
            "id": ID_A,
            "source": "ANTHROPIC_API_KEY",
            "group": "org-a",
            "state": "rate_limited",
            "failures": 1,
            "requests": 1,
            "lastError": "429 rate_limit_error: slow down",
            "lastErrorAt": "2026-01-01T00:00:01.500Z",
            "lastSuccessAt": "2026-01-01T00:00:00.000Z",
            "cooldownUntil": "2026-01-01T00:00:28.750Z",
            "cooldownRemainingS": 27.1,
        } == document["keys"][0]
        assert {
            "id": ID_B,
            "source": "B",
            "group": None,
            "state": "active",
            "failures": 0,
            "requests": 0,
            "lastError": None,
            "lastErrorAt": None,
            "lastSuccessAt": None,
            "cooldownUntil": None,
            "cooldownRemainingS": None,
        } == document["keys"][1]
        json.dumps(document)  # serialisable as is

    def test_snapshot_is_frozen(self, clock: FakeClock) -> None:
        """Snapshots are immutable records."""
        snapshot = ungrouped(clock, 1).snapshot()
        assert isinstance(snapshot, KeyManagement)
        assert isinstance(snapshot.keys[0], KeySnapshot)
        with pytest.raises(AttributeError):
            snapshot.total = 5  # type: ignore[misc]

    def test_long_error_text_is_bounded(self, clock: FakeClock) -> None:
        """A huge error body is cut before it is kept."""
        pool = ungrouped(clock, 1)
        pool.report_error(ID_A, message="x" * 10_000)
        assert 500 == len(pool.snapshot().keys[0].last_error or "")


class TestNotifications:
    def test_on_change_sees_every_transition(self, clock: FakeClock) -> None:
        """on_change gets (id, old, new, reason) for each state change."""
        recorder = Recorder()
        pool = make_pool(
            clock,
            KeySpec(KEY_A, "A", "g"),
            KeySpec(KEY_B, "B", "g"),
            on_change=recorder,
        )
        pool.report_rate_limited(ID_A, retry_after=5)
        clock.advance(5)
        pool.snapshot()
        pool.report_failed(ID_B, status=401, message="invalid x-api-key")
        pool.reset(ID_B, actor="alice", reason="rotated the key")
        assert [
            (ID_A, KeyState.ACTIVE, KeyState.RATE_LIMITED),
            (ID_B, KeyState.ACTIVE, KeyState.RATE_LIMITED),
            (ID_A, KeyState.RATE_LIMITED, KeyState.ACTIVE),
            (ID_B, KeyState.RATE_LIMITED, KeyState.ACTIVE),
            (ID_B, KeyState.ACTIVE, KeyState.FAILED),
            (ID_B, KeyState.FAILED, KeyState.ACTIVE),
        ] == recorder.transitions
        reasons = [reason for *_, reason in recorder.calls]
        assert "429 rate_limit_error: cooling for 5.0s" == reasons[0]
        assert f"group g: 429 on {ID_A}" in (reasons[1] or "")
        assert "cool-down over" == reasons[2]
        assert "401 authentication_error: invalid x-api-key" == reasons[4]
        assert "reset by alice: rotated the key" == reasons[5]

    def test_a_failing_listener_does_not_break_the_pool(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception in on_change is logged and swallowed."""

        def broken(*_: object) -> None:
            raise RuntimeError("listener down")

        pool = make_pool(clock, KeySpec(KEY_A, "A"), on_change=broken)
        with caplog.at_level(logging.ERROR, LOGGER):
            pool.report_failed(ID_A, status=401, message="x")
        assert KeyState.FAILED == states(pool)[ID_A]
        assert "listener" in caplog.text

    def test_state_changes_are_logged(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Failures and cool-downs log WARNING, recoveries INFO."""
        pool = ungrouped(clock, 2)
        with caplog.at_level(logging.INFO, LOGGER):
            pool.report_rate_limited(ID_A, retry_after=3)
            pool.report_failed(ID_B, status=403, message="x")
            clock.advance(3)
            pool.snapshot()
        assert [
            ("WARNING", f"API key {ID_A}: active -> rate_limited"),
            ("WARNING", f"API key {ID_B}: active -> failed"),
            ("INFO", f"API key {ID_A}: rate_limited -> active"),
        ] == [
            (r.levelname, r.getMessage().partition(" (")[0])
            for r in caplog.records
        ]

    def test_reset_is_an_operator_event(self, clock: FakeClock) -> None:
        """A reset publishes an operator.action event naming the actor."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        pool = make_pool(clock, KeySpec(KEY_A, "A"), bus=bus)
        pool.report_failed(ID_A, status=401, message="x")
        pool.reset(ID_A, actor="alice", reason="new key deployed")
        assert 1 == len(events)
        event = events[0]
        assert EventKind.OPERATOR_ACTION == event.kind
        assert "alice" == event.actor
        assert "new key deployed" == event.reason
        assert {"key": ID_A, "from": "failed", "to": "active"} == event.data


class TestParseRetryAfter:
    NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            pytest.param({"retry-after-ms": "200"}, 0.2, id="ms"),
            pytest.param({"Retry-After-Ms": "1500.5"}, 1.5005, id="ms-case"),
            pytest.param({"retry-after": "7"}, 7.0, id="seconds"),
            pytest.param({"RETRY-AFTER": " 2.5 "}, 2.5, id="float-case"),
            pytest.param(
                {"retry-after-ms": "250", "retry-after": "9"},
                0.25,
                id="ms-wins",
            ),
            pytest.param(
                {"retry-after-ms": "soon", "retry-after": "9"},
                9.0,
                id="bad-ms-falls-back",
            ),
            pytest.param(
                {"retry-after": "Thu, 01 Jan 2026 00:01:30 GMT"},
                90.0,
                id="http-date",
            ),
            pytest.param(
                {"retry-after": "Wed, 31 Dec 2025 23:59:00 GMT"},
                0.0,
                id="past-date",
            ),
            pytest.param({}, None, id="none"),
            pytest.param({"retry-after": "later"}, None, id="garbage"),
            pytest.param({"retry-after": "-3"}, None, id="negative"),
            pytest.param({"retry-after": "nan"}, None, id="nan"),
            pytest.param({"retry-after-ms": "inf"}, None, id="inf"),
            pytest.param({"retry-after": ""}, None, id="empty"),
        ],
    )
    def test_headers(
        self, headers: dict[str, str], expected: float | None
    ) -> None:
        """retry-after-ms, then retry-after (seconds or HTTP date)."""
        assert expected == parse_retry_after(headers, now=self.NOW)

    def test_http_date_from_formatter(self) -> None:
        """An HTTP date produced by the standard library round-trips."""
        when = datetime.fromtimestamp(self.NOW + 42, tz=UTC)
        headers = {"retry-after": format_datetime(when, usegmt=True)}
        assert 42.0 == parse_retry_after(headers, now=self.NOW)

    def test_ratelimit_reset_headers(self) -> None:
        """The latest reset whose remaining is 0 counts; others do not."""
        headers = {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:20Z",
            "Anthropic-Ratelimit-Input-Tokens-Remaining": "0",
            "Anthropic-Ratelimit-Input-Tokens-Reset": "2026-01-01T00:00:45Z",
            "anthropic-ratelimit-tokens-remaining": "1200",
            "anthropic-ratelimit-tokens-reset": "2026-01-01T00:05:00Z",
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": "not a date",
        }
        assert 45.0 == parse_retry_after(headers, now=self.NOW)

    def test_ratelimit_reset_with_offset(self) -> None:
        """An RFC 3339 time with an offset is understood."""
        headers = {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-01-01T01:00:10+01:00",
        }
        assert 10.0 == parse_retry_after(headers, now=self.NOW)

    def test_reset_without_exhaustion_is_ignored(self) -> None:
        """Reset times of limits that are not exhausted say nothing."""
        headers = {
            "anthropic-ratelimit-requests-remaining": "3",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:20Z",
        }
        assert parse_retry_after(headers, now=self.NOW) is None

    def test_retry_after_wins_over_reset_headers(self) -> None:
        """An explicit retry-after beats the rate-limit reset headers."""
        headers = {
            "retry-after": "3",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:20Z",
        }
        assert 3.0 == parse_retry_after(headers, now=self.NOW)


class TestRateLimitCooldown:
    @given(
        retry_after=st.none() | st.floats(allow_nan=True),
        consecutive=st.integers(min_value=-5, max_value=10_000),
    )
    def test_always_within_bounds(
        self, retry_after: float | None, consecutive: int
    ) -> None:
        """Whatever the input, a cool-down lies in [1 s, 15 min]."""
        cooldown = rate_limit_cooldown(
            retry_after=retry_after, consecutive=consecutive
        )
        assert 1.0 <= cooldown <= 900.0

    @given(
        retry_after=st.none() | st.floats(allow_nan=False),
        consecutive=st.integers(min_value=1, max_value=10_000),
    )
    def test_spend_limit_at_least_an_hour(
        self, retry_after: float | None, consecutive: int
    ) -> None:
        """A spend-limit error code always cools for an hour or more."""
        cooldown = rate_limit_cooldown(
            retry_after=retry_after,
            consecutive=consecutive,
            error_code="enforced_spend_limit_reached",
        )
        assert 3600.0 <= cooldown

    @given(consecutive=st.integers(min_value=1, max_value=60))
    def test_doubling_never_decreases(self, consecutive: int) -> None:
        """Without a header, one more 429 never shortens the cool-down."""
        now = rate_limit_cooldown(retry_after=None, consecutive=consecutive)
        after = rate_limit_cooldown(
            retry_after=None, consecutive=consecutive + 1
        )
        assert now <= after


SECRETS = (KEY_A, KEY_B, KEY_C, KEY_D)


class PoolMachine(RuleBasedStateMachine):
    """The pool against a plain model of states and cool-down deadlines."""

    @initialize(
        groups=st.lists(
            st.sampled_from([None, "g1", "g2"]), min_size=1, max_size=4
        )
    )
    def setup(self, groups: list[str | None]) -> None:
        self.clock = FakeClock()
        self.pool = KeyPool(
            [
                KeySpec(secret, f"K{i}", group)
                for i, (secret, group) in enumerate(
                    zip(SECRETS, groups, strict=False)
                )
            ],
            clock=self.clock,
        )
        self.ids = [key.id for key in self.pool.snapshot().keys]
        self.groups = dict(zip(self.ids, groups, strict=False))
        self.failed: set[str] = set()
        self.until: dict[str, float] = {}

    def model_state(self, key_id: str) -> KeyState:
        if key_id in self.failed:
            return KeyState.FAILED
        if self.until.get(key_id, 0.0) > self.clock.monotonic():
            return KeyState.RATE_LIMITED
        return KeyState.ACTIVE

    def members(self, key_id: str) -> list[str]:
        group = self.groups[key_id]
        if group is None:
            return [key_id]
        return [k for k in self.ids if self.groups[k] == group]

    @rule(data=st.data())
    def acquire(self, data: st.DataObject) -> None:
        exclude = data.draw(st.sets(st.sampled_from(self.ids)))
        usable = [
            k
            for k in self.ids
            if k not in exclude and self.model_state(k) is KeyState.ACTIVE
        ]
        if usable:
            assert self.pool.acquire(exclude=exclude).id in usable
        else:
            with pytest.raises(NoKeyAvailableError):
                self.pool.acquire(exclude=exclude)

    @rule(data=st.data(), retry_after=st.floats(0, 2000))
    def rate_limited(self, data: st.DataObject, retry_after: float) -> None:
        key_id = data.draw(st.sampled_from(self.ids))
        self.pool.report_rate_limited(key_id, retry_after=retry_after)
        cooldown = min(max(retry_after, 1.0), 900.0)
        now = self.clock.monotonic()
        for member in self.members(key_id):
            if member not in self.failed:
                self.until[member] = max(
                    self.until.get(member, 0.0), now + cooldown
                )

    @rule(data=st.data(), status=st.sampled_from([401, 402, 403]))
    def failed_(self, data: st.DataObject, status: int) -> None:
        key_id = data.draw(st.sampled_from(self.ids))
        self.pool.report_failed(key_id, status=status, message="no")
        self.failed.add(key_id)
        self.until.pop(key_id, None)

    @rule(data=st.data())
    def service_error(self, data: st.DataObject) -> None:
        key_id = data.draw(st.sampled_from(self.ids))
        self.pool.report_error(key_id, message="529 overloaded_error")

    @rule(data=st.data())
    def success(self, data: st.DataObject) -> None:
        key_id = data.draw(st.sampled_from(self.ids))
        self.pool.report_success(key_id)

    @rule(data=st.data())
    def reset(self, data: st.DataObject) -> None:
        key_id = data.draw(st.sampled_from(self.ids))
        self.pool.reset(key_id, actor="test")
        self.failed.discard(key_id)
        self.until.pop(key_id, None)

    @rule(seconds=st.floats(0, 1000))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def counts_add_up(self) -> None:
        snapshot = self.pool.snapshot()
        assert snapshot.total == (
            snapshot.active + snapshot.rate_limited + snapshot.failed
        )
        assert len(self.ids) == snapshot.total

    @invariant()
    def states_match_the_model(self) -> None:
        expected = {k: self.model_state(k) for k in self.ids}
        assert expected == states(self.pool)


TestPoolStateful = PoolMachine.TestCase
TestPoolStateful.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)


class TestSecrecy:
    @pytest.fixture(name="seen")
    def _seen(self) -> list[str]:
        return []

    def scenario(
        self,
        clock: FakeClock,
        seen: list[str],
    ) -> Iterator[str]:
        """Run a whole session, yielding every text a human could see."""
        bus = EventBus()
        bus.subscribe(lambda event: seen.append(json.dumps(event.to_dict())))
        recorder = Recorder()
        env = {
            "ANTHROPIC_API_KEY": KEY_A,
            "ANTHROPIC_API_KEYS": f"{KEY_B},{OTHER},{KEY_A}",
            "ORG_KEY": KEY_C,
            "BROKEN": "sk-ant-bad value",
        }
        pool = KeyPool.from_settings(
            env,
            [
                {"env": "ORG_KEY", "group": "org-a"},
                {"env": "ANTHROPIC_API_KEY", "group": "org-a"},
                {"env": "UNSET"},
                {"env": "BROKEN"},
            ],
            clock=clock,
            bus=bus,
            on_change=recorder,
        )
        yield repr(pool)
        for spec in discover_keys(env, [{"env": "ORG_KEY"}]):
            yield repr(spec)
            yield str(spec)
        leases = [pool.acquire() for _ in range(3)]
        for lease in leases:
            assert lease.secret in ALL_SECRETS
            yield repr(lease)
            yield str(lease)
        pool.report_success(leases[0].id)
        # Error bodies may echo the key: they must be scrubbed.
        pool.report_rate_limited(
            leases[0].id,
            retry_after=7,
            message=f"rate limited for key {leases[0].secret}",
        )
        pool.report_failed(
            leases[1].id,
            status=401,
            message=f"invalid x-api-key: {leases[1].secret}",
        )
        pool.report_error(
            leases[2].id, message=f"upstream said Bearer {leases[2].secret}"
        )
        yield json.dumps(pool.snapshot().to_dict())
        yield repr(pool.snapshot())
        for _ in range(3):
            try:
                yield repr(pool.acquire())
            except NoKeyAvailableError as exc:
                yield str(exc)
        try:
            pool.reset(KEY_D)  # an operator pasting a secret as the id
        except UnknownNameError as exc:
            yield str(exc)
            yield repr(exc)
        snapshot = pool.reset(
            leases[1].id, actor="alice", reason=f"new key {KEY_D}"
        )
        yield repr(snapshot)
        yield json.dumps(snapshot.to_dict())
        clock.advance(7)
        yield json.dumps(pool.snapshot().to_dict())
        for call in recorder.calls:
            yield repr(call)
        try:
            pool.acquire(exclude=[k.id for k in pool.snapshot().keys])
        except NoKeyAvailableError as exc:
            yield str(exc)

    def test_no_secret_anywhere(
        self,
        clock: FakeClock,
        seen: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """No full secret appears in reprs, errors, snapshots, events, logs."""
        with caplog.at_level(logging.DEBUG, LOGGER):
            texts = list(self.scenario(clock, seen))
        texts.extend(seen)
        texts.append(caplog.text)
        texts.extend(repr(record.args) for record in caplog.records)
        assert len(texts) > 20
        assert seen  # the reset event was published
        leaks = [
            (secret[-8:], text)
            for text in texts
            for secret in ALL_SECRETS
            if secret in text
        ]
        assert [] == leaks
        assert "sk-ant-bad" not in caplog.text
