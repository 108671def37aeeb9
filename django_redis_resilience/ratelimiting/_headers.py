"""The IETF ``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers-10).

``RateLimit-Policy: "name";q=<quota>;w=<window seconds>`` and
``RateLimit: "name";r=<remaining>;t=<seconds until the quota is whole again>``,
both Structured Field lists, so several limits on one response add members.
"""

from __future__ import annotations

import math

from django.http import HttpResponseBase

from django_redis_resilience.ratelimiting._core import Decision

DRAFT = "draft-ietf-httpapi-ratelimit-headers-10"


def _sf_string(text: str) -> str:
    printable = "".join(c for c in text if 0x20 <= ord(c) <= 0x7E)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _append(response: HttpResponseBase, field: str, member: str) -> None:
    existing = response.headers.get(field)
    response.headers[field] = f"{existing}, {member}" if existing else member


def add_headers(response: HttpResponseBase, decision: Decision) -> None:
    """Add this decision's policy and state; a 429 or 503 also gets ``Retry-After``."""
    name = _sf_string(decision.name)
    window = max(1, math.ceil(decision.rate.period))
    _append(response, "RateLimit-Policy", f"{name};q={decision.limit};w={window}")
    reset = max(0, math.ceil(decision.reset_after))
    _append(response, "RateLimit", f"{name};r={decision.remaining};t={reset}")
    if response.status_code in (429, 503) and not decision.allowed:
        # Several refusals: the client must wait for the longest of them.
        wait = max(1, math.ceil(decision.retry_after))
        current = response.headers.get("Retry-After")
        if current is None or not current.isdigit() or int(current) < wait:
            response.headers["Retry-After"] = str(wait)
