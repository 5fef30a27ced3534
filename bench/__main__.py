"""``python -m bench``: run every benchmark (see bench/run.py)."""

from __future__ import annotations

import sys

from pathlib import Path


# The scripts import their helpers as top-level modules (``_support``), as
# they do when run as ``python bench/<script>.py``.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import main


if __name__ == "__main__":
    raise SystemExit(main())
