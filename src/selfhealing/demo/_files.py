"""Names of the files the demo and its sample service share."""

from __future__ import annotations


__all__ = ["BROKEN_FOR_GOOD", "SCENES_FILE", "STICKY_CLEARED"]

BROKEN_FOR_GOOD = "broken-for-good"
SCENES_FILE = "scenes.json"
STICKY_CLEARED = "sticky-cleared"
