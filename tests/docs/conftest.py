"""The docs' tests: ``myapp`` (what the examples import) is importable from ``support/``."""

import sys
from pathlib import Path

SUPPORT = str(Path(__file__).resolve().parent / "support")
if SUPPORT not in sys.path:
    sys.path.insert(0, SUPPORT)
