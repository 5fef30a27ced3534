"""JSON responses serialized with orjson.

The status document is built as plain dicts; FastAPI's jsonable_encoder
would cost ~320 µs per request on it (../shared/notes/peers.md), orjson
~3 µs.
"""

from __future__ import annotations

from typing import Any

import orjson

from starlette.responses import JSONResponse


__all__ = ["JSON"]


class JSON(JSONResponse):
    """A JSONResponse rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
