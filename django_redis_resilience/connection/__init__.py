"""Framework-free connection layer: locations, clients, retries and breakers.

Nothing here reads Django settings; :mod:`django_redis_resilience.clients`
does that and passes plain values in.
"""

from django_redis_resilience.connection import _settings  # noqa: F401 - registers its settings
from django_redis_resilience.connection._background import Job, Scheduler
from django_redis_resilience.connection._breaker import BreakerConfig, BreakerState, CircuitBreaker
from django_redis_resilience.connection._cluster import (
    ClusterRouter,
    ClusterShard,
    ShardView,
    SlotMap,
    slot_of,
    untagged,
)
from django_redis_resilience.connection._connections import int_bytes
from django_redis_resilience.connection._durations import REFRESH_BUCKETS, Durations
from django_redis_resilience.connection._endpoint import MAX_BLOCK, Endpoint, NodePools
from django_redis_resilience.connection._errors import (
    ErrorKind,
    classify,
    redirect_of,
    rejected,
    script_reply,
    translate,
)
from django_redis_resilience.connection._location import (
    NodeAddress,
    Topology,
    TopologyKind,
    mask_url,
    parse_location,
)
from django_redis_resilience.connection._manager import (
    ConnectionManager,
    LogicalEndpoint,
    command_key,
)
from django_redis_resilience.connection._options import ClusterRefreshConfig, ConnectionOptions
from django_redis_resilience.connection._registry import (
    Registry,
    add_manager_hook,
    get_registry,
    reset_registry,
)
from django_redis_resilience.connection._retry import RetryPolicy, is_idempotent
from django_redis_resilience.connection._sentinel import SentinelService
from django_redis_resilience.connection._slots import Extensions, Slot
from django_redis_resilience.connection._tls import TLS_DEFAULTS, is_tls_option
from django_redis_resilience.connection._tracking import InvalidationLink, LinkBroken

__all__ = [
    "MAX_BLOCK",
    "REFRESH_BUCKETS",
    "TLS_DEFAULTS",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "ClusterRefreshConfig",
    "ClusterRouter",
    "ClusterShard",
    "ConnectionManager",
    "ConnectionOptions",
    "Durations",
    "Endpoint",
    "ErrorKind",
    "Extensions",
    "InvalidationLink",
    "Job",
    "LinkBroken",
    "LogicalEndpoint",
    "NodeAddress",
    "NodePools",
    "Registry",
    "RetryPolicy",
    "Scheduler",
    "SentinelService",
    "ShardView",
    "Slot",
    "SlotMap",
    "Topology",
    "TopologyKind",
    "add_manager_hook",
    "classify",
    "command_key",
    "get_registry",
    "int_bytes",
    "is_idempotent",
    "is_tls_option",
    "mask_url",
    "parse_location",
    "redirect_of",
    "rejected",
    "reset_registry",
    "script_reply",
    "slot_of",
    "translate",
    "untagged",
]
