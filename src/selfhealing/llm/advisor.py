"""LLMAdvisor: ask Claude to pick one allow-listed action, never to act.

One advice is at most two requests (a second key after an auth failure or
a rate limit), under one deadline, through the ``llm-anthropic`` breaker.
The SDK runs with ``max_retries=0`` (its own retries would hide 429s from
the key pool and sleep through long ``retry-after`` values) and outcomes
are classified by HTTP status, not by exception class (the class tree
differs between SDK majors). Whatever goes wrong, the answer is an
escalation: the advisor never blocks healing.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from selfhealing.breaker import CircuitBreaker, Permit
from selfhealing.clock import Clock, system_clock
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import CircuitOpenError, NoKeyAvailableError
from selfhealing.llm.answer import (
    ESCALATE,
    NO_ACTION,
    SYSTEM_PROMPT,
    TOOL_NAME,
    AllowedAction,
    InvalidAnswerError,
    build_tool,
    parse_answer,
)
from selfhealing.llm.evidence import Evidence, render_evidence
from selfhealing.llm.keypool import KeyPool, Lease, parse_retry_after


__all__ = ["DEFAULT_MODEL", "Advice", "AdviceSource", "LLMAdvisor"]

_log = logging.getLogger("selfhealing.llm")

DEFAULT_MODEL = "claude-sonnet-4-6"
_KEY_FAILED = frozenset({401, 402, 403})
_RATE_LIMITED = 429
_OUR_MISTAKE = frozenset({400, 404, 413, 422})
_MAX_AUDITED_ANSWER = 4000
_SDK = "anthropic"
_SDK_MISSING = (
    "the anthropic SDK is not installed: pip install 'selfhealing[llm]'"
)


class AdviceSource(StrEnum):
    LLM = "llm"  # a valid choice, confident enough
    LOW_CONFIDENCE = "low_confidence"
    INVALID = "llm_invalid"  # off-list, malformed, refused, not a Message
    UNAVAILABLE = "unavailable"  # no key, breaker open, errors, deadline


@dataclass(frozen=True, slots=True)
class Advice:
    action_id: str
    diagnosis: str
    source: AdviceSource
    confidence: float | None = None
    key_id: str | None = None
    request_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    @property
    def actionable(self) -> bool:
        """A real action to run (not an escalation or no_action)."""
        return self.source is AdviceSource.LLM and self.action_id not in (
            ESCALATE,
            NO_ACTION,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "actionId": self.action_id,
            "diagnosis": self.diagnosis,
            "source": str(self.source),
            "confidence": self.confidence,
            "keyId": self.key_id,
            "requestId": self.request_id,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "error": self.error,
        }


ClientFactory = Callable[[str], Any]


class LLMAdvisor:
    """See the module docstring."""

    def __init__(
        self,
        pool: KeyPool,
        breaker: CircuitBreaker,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout: float = 20.0,
        deadline: float = 45.0,
        max_tokens: int = 512,
        min_confidence: float = 0.7,
        max_attempts: int = 2,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.pool = pool
        self.breaker = breaker
        self.model = model
        self.base_url = base_url or None
        self.timeout = timeout
        self.deadline = deadline
        self.max_tokens = max_tokens
        self.min_confidence = min_confidence
        self.max_attempts = max_attempts
        self._clock = clock
        self._bus = bus
        self._client_factory = client_factory or self._sdk_client
        self._uses_sdk = client_factory is None
        self._clients: dict[str, Any] = {}

    async def prepare(self) -> None:
        """Import the SDK now, in a worker thread: it takes seconds.

        The daemon calls this as it starts, before any probe runs, so the
        first advice neither waits for the import nor freezes the loop.
        Without a key no advice is ever sent, so nothing is imported.
        """
        if not self._uses_sdk or not len(self.pool) or _sdk_loaded():
            return
        try:
            await asyncio.to_thread(_import_sdk)
        except ImportError:
            _log.warning("%s; the llm rungs will escalate", _SDK_MISSING)
        except Exception as exc:  # never a reason not to start
            _log.warning(
                "could not load the anthropic SDK (%s): the first advice "
                "tries again",
                type(exc).__name__,
            )

    def _sdk_client(self, secret: str) -> Any:
        try:
            import anthropic  # noqa: PLC0415 (the optional [llm] extra)
        except ImportError as exc:
            raise _SDKMissingError from exc
        return anthropic.AsyncAnthropic(
            api_key=secret,  # always explicit: never ambient credentials
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
        )

    async def advise(
        self, evidence: Evidence, allowed: Sequence[AllowedAction]
    ) -> Advice:
        """One advice for *evidence*; an escalation if anything is off."""
        prompt = render_evidence(evidence)
        try:
            permit = self.breaker.acquire()
        except CircuitOpenError as exc:
            advice = _unavailable(f"circuit breaker {exc.breaker} is open")
            return self._audit(evidence.target, allowed, prompt, advice, None)
        outcome = _Outcome()
        try:
            async with asyncio.timeout(self.deadline):
                advice = await self._ask(prompt, allowed, outcome)
        except TimeoutError:
            outcome.service_failed = True
            advice = _unavailable(f"no answer within {self.deadline:g}s")
        except BaseException:
            permit.cancel()
            raise
        _settle(permit, outcome)
        return self._audit(
            evidence.target, allowed, prompt, advice, outcome.answer
        )

    async def _ask(
        self,
        prompt: str,
        allowed: Sequence[AllowedAction],
        outcome: _Outcome,
    ) -> Advice:
        tried: set[str] = set()
        last = _unavailable("no API key configured")
        for _ in range(self.max_attempts):
            try:
                lease = self.pool.acquire(exclude=tried)
            except NoKeyAvailableError as exc:
                return _unavailable(str(exc)) if not tried else last
            tried.add(lease.id)
            try:
                message = await self._request(lease, prompt, allowed)
            except _SDKMissingError:
                return _unavailable(_SDK_MISSING)
            except Exception as exc:
                last, retry = self._failed(lease, exc, outcome)
                if not retry:
                    return last
                continue
            self.pool.report_success(lease.id)
            outcome.succeeded = True
            return self._judge(lease, message, allowed, outcome)
        return last

    async def _request(
        self, lease: Lease, prompt: str, allowed: Sequence[AllowedAction]
    ) -> Any:
        client = self._clients.get(lease.id)
        if client is None:
            if self._uses_sdk and not _sdk_loaded():
                # Importing the SDK takes seconds: never on the event loop,
                # where it would freeze every probe and the API.
                try:
                    await asyncio.to_thread(_import_sdk)
                except ImportError as exc:
                    raise _SDKMissingError from exc
            client = self._clients[lease.id] = self._client_factory(
                lease.secret
            )
        return await client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=SYSTEM_PROMPT,
            messages=[{"role": "user", "content": prompt}],
            tools=[build_tool(allowed)],
            tool_choice={
                "type": "tool",
                "name": TOOL_NAME,
                "disable_parallel_tool_use": True,
            },
        )

    def _failed(
        self, lease: Lease, exc: Exception, outcome: _Outcome
    ) -> tuple[Advice, bool]:
        """Charge the error where it belongs; say whether to try a key
        more (only after a key's own fault)."""
        status = getattr(exc, "status_code", None)
        message = _error_message(exc)
        if status in _KEY_FAILED:
            self.pool.report_failed(lease.id, status=status, message=message)
            return _unavailable(f"key {lease.id}: {message}", lease), True
        if status == _RATE_LIMITED:
            response = getattr(exc, "response", None)
            headers = dict(getattr(response, "headers", {}) or {})
            cool = self.pool.report_rate_limited(
                lease.id,
                retry_after=parse_retry_after(headers, now=self._clock.time()),
                error_code=_error_code(exc),
                message=message,
            )
            text = f"key {lease.id} rate limited for {cool:.0f}s"
            return _unavailable(text, lease), True
        if status in _OUR_MISTAKE:
            _log.error("the advisor's request was refused: %s", message)
            return _unavailable(f"request refused: {message}", lease), False
        # 5xx, 529, timeouts, connection errors: the service, not the key.
        self.pool.report_error(lease.id, message=message)
        outcome.service_failed = True
        return _unavailable(f"service error: {message}", lease), False

    def _judge(
        self,
        lease: Lease,
        message: Any,
        allowed: Sequence[AllowedAction],
        outcome: _Outcome,
    ) -> Advice:
        usage = getattr(message, "usage", None)
        facts: dict[str, Any] = {
            "key_id": lease.id,
            "request_id": getattr(message, "_request_id", None)
            or getattr(message, "id", None),
            "input_tokens": getattr(usage, "input_tokens", None),
            "output_tokens": getattr(usage, "output_tokens", None),
        }
        outcome.answer = _answer_of(message)
        try:
            verdict = parse_answer(message, allowed)
        except InvalidAnswerError as exc:
            return Advice(
                ESCALATE,
                "",
                AdviceSource.INVALID,
                error=f"invalid answer: {exc}",
                **facts,
            )
        if verdict.confidence < self.min_confidence:
            return Advice(
                ESCALATE,
                verdict.diagnosis,
                AdviceSource.LOW_CONFIDENCE,
                confidence=verdict.confidence,
                error=(
                    f"chose {verdict.action_id} with confidence "
                    f"{verdict.confidence:.2f} < {self.min_confidence:.2f}"
                ),
                **facts,
            )
        return Advice(
            verdict.action_id,
            verdict.diagnosis,
            AdviceSource.LLM,
            confidence=verdict.confidence,
            **facts,
        )

    def _audit(
        self,
        target: str,
        allowed: Sequence[AllowedAction],
        prompt: str,
        advice: Advice,
        answer: Any,
    ) -> Advice:
        escalated = not advice.actionable and advice.action_id != NO_ACTION
        if escalated:
            why = advice.error or "the model escalated"
            message = f"{target}: escalated to a human ({why})"
            _log.warning("advice for %s: escalated: %s", target, why)
        else:
            message = f"{target}: advisor chose {advice.action_id}"
            _log.info(
                "advice for %s: %s (%.2f)",
                target,
                advice.action_id,
                advice.confidence or 0,
            )
        if self._bus is not None:
            self._bus.publish(
                Event(
                    EventKind.LLM_ESCALATED
                    if escalated
                    else EventKind.LLM_ADVICE,
                    self._clock.time(),
                    "LLMAdvisor",
                    message,
                    target=target,
                    reason=advice.error,
                    data={
                        **advice.to_dict(),
                        "model": self.model,
                        "allowed": [a.id for a in allowed],
                        "prompt": prompt,
                        "answer": answer,
                    },
                )
            )
        return advice


@dataclass(slots=True)
class _Outcome:
    succeeded: bool = False
    service_failed: bool = False
    answer: Any = None


class _SDKMissingError(Exception):
    """The optional anthropic SDK is not installed."""


def _sdk_loaded() -> bool:
    return _SDK in sys.modules


def _import_sdk() -> None:
    importlib.import_module(_SDK)


def _settle(permit: Permit, outcome: _Outcome) -> None:
    # The breaker watches the service: auth and rate-limit trouble is the
    # key pool's business, and says nothing about Anthropic being up.
    if outcome.succeeded:
        permit.success()
    elif outcome.service_failed:
        permit.failure()
    else:
        permit.cancel()


def _unavailable(error: str, lease: Lease | None = None) -> Advice:
    return Advice(
        ESCALATE,
        "",
        AdviceSource.UNAVAILABLE,
        key_id=None if lease is None else lease.id,
        error=error,
    )


def _error_message(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = error.get("message") or error.get("type")
    if detail is None:
        detail = type(exc).__name__
        if "Timeout" in detail:
            detail = "timed out"
    text = f"HTTP {status}: {detail}" if status is not None else str(detail)
    return text[:300]


def _error_code(exc: Exception) -> str | None:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            details = error.get("details")
            if isinstance(details, dict):
                code = details.get("error_code")
                return code if isinstance(code, str) else None
    return None


def _answer_of(message: Any) -> Any:
    """What the model said, for the audit trail (bounded in size)."""
    dump = getattr(message, "model_dump", None)
    data = dump() if callable(dump) else message
    try:
        text = orjson.dumps(data, default=str).decode()
    except TypeError:
        text = repr(data)
    if len(text) > _MAX_AUDITED_ANSWER:
        return text[:_MAX_AUDITED_ANSWER] + "..."
    return orjson.loads(text) if text.startswith(("{", "[")) else text
