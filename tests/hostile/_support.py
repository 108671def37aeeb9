"""What the hostile-input tests share: Hypothesis settings and secrets that are easy to spot.

Examples are derandomized by default, so every run (the CI one included) tries
the same inputs and a failure reproduces; ``HOSTILE_EXPLORE=1`` draws fresh,
more numerous ones for a deeper search. No example database is written.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_EXPLORE = os.environ.get("HOSTILE_EXPLORE") == "1"


def examples(n: int) -> Any:
    """Hypothesis settings for a test that may afford ``n`` examples (more when exploring)."""
    return settings(
        max_examples=n * 10 if _EXPLORE else n,
        deadline=None,
        derandomize=not _EXPLORE,
        database=None,
        print_blob=True,
        # The shared Redis fixtures are session-scoped; the rest is set up in the body.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: Every character a WSGI or ASGI server can put in a header value (decoded as latin-1).
LATIN1 = st.characters(min_codepoint=0, max_codepoint=255)
#: Text without surrogates: what any real caller can encode.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)))


def secret_forms(core: str, full: str) -> list[str]:
    """The ways a secret could show up in a message, a log line or JSON.

    ``core`` is an alphanumeric part of ``full`` that survives every escaping
    (percent-encoding, JSON, ``repr``), so finding it anywhere is a leak.
    """
    return [
        core,
        full,
        quote(full, safe=""),
        json.dumps(full)[1:-1],
        repr(full)[1:-1],
    ]


def leaked(text: str, forms: list[str]) -> list[str]:
    """The forms of a secret that appear in ``text`` (empty: nothing leaked)."""
    return [form for form in forms if form and form in text]
