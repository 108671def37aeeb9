"""One process of a fleet sharing a rate limit (tests/ratelimiting/test_fleet.py).

argv: location, KEY_PREFIX, expected fleet size, then ``off`` to set
``RATELIMIT["FLEET"] = False`` (presence on otherwise). Prints ``ready <size>`` once it has
seen the whole fleet, waits for a line on stdin (Redis is down by then), checks the
shared limit 400 times and prints how many checks were admitted, as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import django
from django.conf import settings

location, prefix, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
presence = sys.argv[4:] != ["off"]
settings.configure(
    SECRET_KEY="fleet-test",
    REDIS_RESILIENCE={"RATELIMIT": {"FLEET": presence}},
    INSTALLED_APPS=["django_redis_resilience"],
    CACHES={
        "default": {
            "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": {
                "SOCKET_TIMEOUT": 0.2,
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "BREAKER": {"FAILURE_THRESHOLD": 1, "RECOVERY_TIMEOUT": 60},
            },
        }
    },
)
django.setup()

from django_redis_resilience.clients import get_manager  # noqa: E402
from django_redis_resilience.ratelimiting import _fleet, hit  # noqa: E402

# Presence every 0.2 s instead of 5 s, so that the test need not wait long.
_fleet.INTERVAL, _fleet.RECENT = 0.2, 3.0

hit("warm-up", "1000/h")  # starts this process's presence
fleet = _fleet.fleet_of(get_manager("default"), "")
deadline = time.monotonic() + 20
while fleet.size < expected and time.monotonic() < deadline:
    time.sleep(0.05)
print("ready", fleet.size, flush=True)
sys.stdin.readline()
admitted = [hit("shared", "100/h") for _ in range(400)]
print(
    json.dumps(
        {
            "admitted": sum(d.allowed for d in admitted),
            "degraded": sum(d.degraded for d in admitted),
            "fleet": fleet.size,
        }
    ),
    flush=True,
)
