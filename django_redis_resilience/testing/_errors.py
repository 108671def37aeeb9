"""The harness's single error type.

It deliberately does not derive from the package's own exception tree: that
module imports Django, and the harness must stay importable without it.
"""

from __future__ import annotations

__all__ = ["HarnessError"]


class HarnessError(RuntimeError):
    """The test harness could not provide a working Redis (not a bug in the code under test)."""
