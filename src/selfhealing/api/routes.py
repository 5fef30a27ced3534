"""The routes: status, resume, breakers, tasks and flags.

Reads are open. Every mutating route needs ``Authorization: Bearer
$SELFHEAL_ADMIN_TOKEN`` when that token is set, and records who asked and
why on the event bus (and so in the audit trail).
"""

from __future__ import annotations

import asyncio
import hmac
import re

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from selfhealing.api.errors import ApiError
from selfhealing.api.models import (
    BreakerResetBody,
    FlagUpdateBody,
    OptionalReasonBody,
    ResumeBody,
)
from selfhealing.api.responses import JSON
from selfhealing.breaker import BreakerState
from selfhealing.events import Event, EventKind
from selfhealing.exceptions import UnknownNameError
from selfhealing.runtime import Runtime
from selfhealing.store import MAX_QUERY_LIMIT
from selfhealing.targets import Target


__all__ = [
    "ERROR_RESPONSES",
    "Actor",
    "RuntimeDep",
    "build_router",
    "get_runtime",
    "require_admin",
    "router",
]

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
        }
    },
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    for status, description in {
        400: "Malformed request",
        401: "Admin token missing or wrong",
        404: "Unknown name",
        409: "Refused in the current state",
        413: "Body over 64 KiB",
        422: "Invalid field",
    }.items()
}
_ACTOR = re.compile(r"[^\w .@:/+()-]")
NameParam = Annotated[str, Path(min_length=1, max_length=200)]


def _actor(request: Request) -> str:
    claimed = request.headers.get("x-selfheal-actor", "").strip()
    client = request.client.host if request.client else "unknown"
    if claimed:
        return f"{_ACTOR.sub('', claimed)[:64]} via {client}"
    return f"api client {client}"


async def get_runtime(request: Request) -> Runtime:
    """The Runtime this app serves (set by create_app or the embedding).

    ``async`` on purpose: FastAPI runs a sync dependency in its thread
    pool, a hop that halved the throughput of every route.
    """
    runtime: Runtime = request.app.state.selfheal_runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def require_admin(request: Request, runtime: RuntimeDep) -> str:
    """Check the bearer token (when one is set) and name the actor."""
    token = runtime.admin_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(
            " "
        )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise ApiError(
                401,
                "this action needs Authorization: Bearer $SELFHEAL_ADMIN_TOKEN",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return _actor(request)


Actor = Annotated[str, Depends(require_admin)]
router = APIRouter(responses=ERROR_RESPONSES)


def build_router() -> APIRouter:
    """All routes; each finds its Runtime through ``app.state``."""
    return router


def _operator_event(
    runtime: Runtime, message: str, actor: str, reason: str | None
) -> None:
    """Record who did what, and why, for actions with no event of their own."""
    runtime.bus.publish(
        Event(
            EventKind.OPERATOR_ACTION,
            runtime.clock.time(),
            "API",
            message,
            actor=actor,
            reason=reason,
        )
    )


def _reason(body: OptionalReasonBody | None) -> str | None:
    return body.reason if body is not None else None


@router.get("/api/status", tags=["status"], response_class=JSON)
async def status(runtime: RuntimeDep) -> Response:
    """The whole system: healthy / warning / critical, with issues and
    recommendations (the document the operations guide queries)."""
    return Response(runtime.status_json(), media_type="application/json")


@router.get("/healthz", tags=["status"], response_class=JSON)
async def healthz(runtime: RuntimeDep) -> JSON:
    """The daemon itself is alive (says nothing about its targets)."""
    started = runtime.started_at
    uptime = runtime.clock.time() - started if started else 0.0
    return JSON({"status": "ok", "uptime": round(uptime, 3)})


@router.post("/api/system/heal/resume", tags=["engine"], response_class=JSON)
async def resume(runtime: RuntimeDep, body: ResumeBody, actor: Actor) -> JSON:
    """Leave dormant mode (needs a reason). Answers resumed false, and
    changes nothing, when the engine is not dormant."""
    resumed = runtime.engine.resume_from_dormant(body.reason, actor=actor)
    snapshot = runtime.engine.snapshot().to_dict()
    message = (
        "Self-Healing Engine resumed from DORMANT mode"
        if resumed
        else "the engine is not dormant; nothing to resume"
    )
    return JSON(
        {
            "resumed": resumed,
            "isDormant": snapshot["isDormant"],
            "message": message,
            "selfHealing": snapshot,
        }
    )


@router.get("/api/circuit-breakers", tags=["breakers"], response_class=JSON)
async def breakers(runtime: RuntimeDep) -> JSON:
    """Every circuit breaker with its state and counters."""
    return JSON([b.to_dict() for b in runtime.registry.snapshot()])


@router.get(
    "/api/circuit-breakers/{name}", tags=["breakers"], response_class=JSON
)
async def breaker(runtime: RuntimeDep, name: NameParam) -> JSON:
    """One circuit breaker."""
    return JSON(runtime.registry.get(name).snapshot().to_dict())


@router.post(
    "/api/circuit-breakers/{name}/reset",
    tags=["breakers"],
    response_class=JSON,
)
async def reset_breaker(
    runtime: RuntimeDep, name: NameParam, body: BreakerResetBody, actor: Actor
) -> JSON:
    """Reset a breaker to CLOSED. PERMANENT_OPEN needs force: true (409
    otherwise); fix the root cause first."""
    target = runtime.registry.get(name)
    previous = target.state
    if previous is BreakerState.PERMANENT_OPEN and not body.force:
        raise ApiError(
            409,
            f"circuit breaker {name} is PERMANENT_OPEN "
            f"({target.permanent_open_reason}); fix the root cause, "
            'then reset with {"force": true}',
        )
    target.reset(force=body.force, reason=body.reason, actor=actor)
    result: dict[str, Any] = {
        "name": name,
        "previousState": str(previous),
        "state": str(target.state),
        "breaker": target.snapshot().to_dict(),
    }
    if runtime.engine.is_dormant and target is runtime.engine.main_breaker:
        result["note"] = (
            "the engine is still DORMANT: POST /api/system/heal/resume "
            "with a reason to resume healing"
        )
    return JSON(result)


def _tasks_result(runtime: Runtime, changed: int) -> JSON:
    return JSON(
        {
            "changed": changed,
            "backgroundTasks": runtime.tasks.snapshot().to_dict(),
        }
    )


@router.get("/api/tasks", tags=["tasks"], response_class=JSON)
async def tasks(runtime: RuntimeDep) -> JSON:
    """Background tasks (totalTasks, activeTasks, tasks[])."""
    return JSON(runtime.tasks.snapshot().to_dict())


@router.post("/api/tasks/pause-all", tags=["tasks"], response_class=JSON)
async def pause_all(
    runtime: RuntimeDep, actor: Actor, body: OptionalReasonBody | None = None
) -> JSON:
    """Pause every background task (checks included)."""
    changed = runtime.tasks.pause_all()
    _operator_event(runtime, f"paused {changed} tasks", actor, _reason(body))
    return _tasks_result(runtime, changed)


@router.post("/api/tasks/resume-all", tags=["tasks"], response_class=JSON)
async def resume_all(
    runtime: RuntimeDep, actor: Actor, body: OptionalReasonBody | None = None
) -> JSON:
    """Resume every paused background task."""
    changed = runtime.tasks.resume_all()
    _operator_event(runtime, f"resumed {changed} tasks", actor, _reason(body))
    return _tasks_result(runtime, changed)


@router.post("/api/tasks/cleanup", tags=["tasks"], response_class=JSON)
async def cleanup(
    runtime: RuntimeDep, actor: Actor, body: OptionalReasonBody | None = None
) -> JSON:
    """Unregister every background task (the guide's emergency
    cleanup; restart the daemon afterwards to register them again)."""
    changed = runtime.tasks.cleanup()
    _operator_event(
        runtime, f"cleaned up {changed} tasks", actor, _reason(body)
    )
    return _tasks_result(runtime, changed)


@router.post("/api/tasks/{task_id}/pause", tags=["tasks"], response_class=JSON)
async def pause(
    runtime: RuntimeDep,
    task_id: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Pause one task."""
    runtime.tasks.pause(task_id)
    _operator_event(runtime, f"paused task {task_id}", actor, _reason(body))
    return _tasks_result(runtime, 1)


@router.post(
    "/api/tasks/{task_id}/resume", tags=["tasks"], response_class=JSON
)
async def resume_task(
    runtime: RuntimeDep,
    task_id: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Resume one task."""
    runtime.tasks.resume(task_id)
    _operator_event(runtime, f"resumed task {task_id}", actor, _reason(body))
    return _tasks_result(runtime, 1)


@router.delete("/api/tasks/{task_id}", tags=["tasks"], response_class=JSON)
async def unregister(
    runtime: RuntimeDep,
    task_id: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Unregister one task."""
    runtime.tasks.unregister(task_id)
    _operator_event(
        runtime, f"unregistered task {task_id}", actor, _reason(body)
    )
    return _tasks_result(runtime, 1)


@router.get("/api/flags", tags=["flags"], response_class=JSON)
async def flags(runtime: RuntimeDep) -> JSON:
    """Each feature flag with its value and where it came from."""
    return JSON(
        {
            "flags": runtime.flags.to_dict(),
            "errors": [str(e) for e in runtime.flags.errors],
        }
    )


@router.post("/api/flags/reload", tags=["flags"], response_class=JSON)
async def reload_flags(runtime: RuntimeDep, actor: Actor) -> JSON:
    """Re-read .env and .env.local without a restart. An invalid value
    keeps the previous one and shows as a WARNING in the status."""
    errors = runtime.flags.reload()
    _operator_event(runtime, "reloaded flags", actor, None)
    return JSON(
        {
            "flags": runtime.flags.to_dict(),
            "errors": [str(e) for e in errors],
        }
    )


@router.put("/api/flags/{name}", tags=["flags"], response_class=JSON)
async def set_flag(
    runtime: RuntimeDep, name: NameParam, body: FlagUpdateBody, actor: Actor
) -> JSON:
    """Override a flag at runtime (source "api"; gone at restart)."""
    value = runtime.flags.set_override(
        name, body.enabled, reason=body.reason, actor=actor
    )
    return JSON({"name": name, **value.to_dict()})


def _parse_time(value: str | None) -> float | None:
    """An RFC 3339 / ISO 8601 time as epoch seconds (naive means UTC)."""
    if value is None:
        return None
    text = value.strip().upper()
    # RFC 3339 allows a leap second; datetime does not.
    text = re.sub(r"(T\d{2}:\d{2}):60", r"\1:59", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422,
            "query field sinceTime: expected an ISO 8601 time such as "
            f"2026-01-01T00:00:00Z, got {value!r}",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@router.get("/api/events", tags=["audit"], response_class=JSON)
async def events(
    runtime: RuntimeDep,
    *,
    limit: Annotated[int, Query(ge=1, le=MAX_QUERY_LIMIT)] = 100,
    since: Annotated[
        int | None,
        Query(
            ge=0,
            le=2**63 - 1,
            description="Events after this id (page forward).",
        ),
    ] = None,
    since_time: Annotated[
        str | None,
        Query(
            alias="sinceTime",
            json_schema_extra={"format": "date-time"},
            description="Events at or after this time (ISO 8601).",
        ),
    ] = None,
    kind: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description='Exact kind, or a prefix: "healing.*".',
        ),
    ] = None,
    target: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> JSON:
    """The audit trail, oldest first: attempts, skips and why, breaker
    transitions, dormant entry and exit, flag changes, resumes and resets."""
    records = await asyncio.to_thread(
        runtime.audit.query,
        limit=limit,
        since_id=since,
        since_time=_parse_time(since_time),
        kind=kind,
        target=target,
    )
    return JSON(
        {
            "events": [r.to_dict() for r in records],
            "lastId": records[-1].id if records else since,
        }
    )


@router.delete("/api/flags/{name}", tags=["flags"], response_class=JSON)
async def clear_flag(
    runtime: RuntimeDep,
    name: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Drop a runtime override: the flag falls back to env / .env.local /
    .env / config / default."""
    value = runtime.flags.clear_override(
        name, reason=_reason(body), actor=actor
    )
    return JSON({"name": name, **value.to_dict()})


@router.get("/api/targets", tags=["targets"], response_class=JSON)
async def targets(runtime: RuntimeDep) -> JSON:
    """Every watched target: health, last check and latency, healing."""
    return JSON([t.snapshot().to_dict() for t in runtime.targets.values()])


def _target(runtime: Runtime, name: str) -> Target:
    target = runtime.targets.get(name)
    if target is None:
        raise UnknownNameError("target", name, list(runtime.targets))
    return target


@router.get("/api/targets/{name}", tags=["targets"], response_class=JSON)
async def target(runtime: RuntimeDep, name: NameParam) -> JSON:
    """One target, with its recent check results and actions."""
    found = _target(runtime, name)
    return JSON(
        {
            **found.snapshot().to_dict(),
            "recentChecks": [r.to_dict() for r in found.recent],
            "recentActions": [a.to_dict() for a in found.actions],
            "ladder": [{"name": a.name, "kind": a.kind} for a in found.ladder],
        }
    )


@router.post(
    "/api/targets/{name}/check", tags=["targets"], response_class=JSON
)
async def check_now(
    runtime: RuntimeDep, name: NameParam, actor: Actor
) -> JSON:
    """Probe a target now (counts like a scheduled probe)."""
    found = _target(runtime, name)
    result = await found.probe()
    _operator_event(runtime, f"checked {name} now", actor, None)
    return JSON(
        {
            "result": None if result is None else result.to_dict(),
            "target": found.snapshot().to_dict(),
        }
    )


@router.post("/api/targets/{name}/heal", tags=["targets"], response_class=JSON)
async def heal_now(
    runtime: RuntimeDep,
    name: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Ask for one healing attempt now. The engine's rules still apply:
    flags, dormant mode, backoff and breakers may skip it (see outcome)."""
    found = _target(runtime, name)
    _operator_event(runtime, f"asked to heal {name}", actor, _reason(body))
    result = await found.heal_now()
    return JSON(
        {
            "outcome": str(result.outcome),
            "skipReason": None
            if result.skip_reason is None
            else str(result.skip_reason),
            "retryAfter": result.retry_after,
            "error": result.error,
            "target": found.snapshot().to_dict(),
        }
    )


@router.get("/api/processes", tags=["targets"], response_class=JSON)
async def processes(runtime: RuntimeDep) -> JSON:
    """Supervised processes: pid, state, restarts, uptime, last exit code."""
    return JSON([p.to_dict() for p in runtime.supervisor.snapshot()])


@router.get("/api/llm/keys", tags=["llm"], response_class=JSON)
async def llm_keys(runtime: RuntimeDep) -> JSON:
    """The API key pool (masked ids): the status's llm.keyManagement."""
    return JSON(runtime.keys.snapshot().to_dict())


@router.post("/api/llm/keys/{key_id}/reset", tags=["llm"], response_class=JSON)
async def reset_llm_key(
    runtime: RuntimeDep,
    key_id: NameParam,
    actor: Actor,
    body: OptionalReasonBody | None = None,
) -> JSON:
    """Return a failed or rate-limited key to active (after replacing it,
    or once the Anthropic console shows it valid again). The id is the
    masked form shown in the status, e.g. sk-ant-...a1b2."""
    key = runtime.keys.reset(key_id, actor=actor, reason=_reason(body))
    return JSON({"key": key.to_dict(), **runtime.keys.snapshot().to_dict()})
