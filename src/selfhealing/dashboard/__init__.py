"""The dashboard at ``/``: one static page that reads the status API and
follows ``/api/events/stream``, with the operator's actions.

The page, its script and its stylesheet ship inside the package
(``static/``) and are served from memory. No build step, no framework, no
external URL: it works on a host with no internet access. Every response
carries a strict Content-Security-Policy (scripts and styles from this
origin only, no inline code), and the script renders daemon strings with
``textContent`` only: logs and reasons are untrusted.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from selfhealing.api.errors import ApiError


__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_FILES", "router"]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
STATIC_FILES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate each load, so an upgraded daemon serves its own page.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return files(__name__).joinpath("static", name).read_bytes()


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> Response:
    """The dashboard page."""
    return Response(
        _read("index.html"),
        media_type="text/html; charset=utf-8",
        headers=_HEADERS,
    )


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(name: Annotated[str, Path(max_length=100)]) -> Response:
    """The page's script and stylesheet (nothing else is served)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise ApiError(404, f"no static file {name!r}")
    return Response(_read(name), media_type=media_type, headers=_HEADERS)
