"""Framework-free connection layer: locations, clients, retries and breakers.

Nothing here reads Django settings; :mod:`django_redis_resilience.clients`
does that and passes plain values in.
"""

from django_redis_resilience.connection._background import Scheduler
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
from django_redis_resilience.connection._endpoint import Endpoint, NodePools
from django_redis_resilience.connection._errors import ErrorKind, classify
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

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "ClusterRefreshConfig",
    "ClusterRouter",
    "ClusterShard",
    "ConnectionManager",
    "ConnectionOptions",
    "Endpoint",
    "ErrorKind",
    "LogicalEndpoint",
    "NodeAddress",
    "NodePools",
    "Registry",
    "RetryPolicy",
    "Scheduler",
    "SentinelService",
    "ShardView",
    "SlotMap",
    "Topology",
    "TopologyKind",
    "add_manager_hook",
    "classify",
    "command_key",
    "get_registry",
    "int_bytes",
    "is_idempotent",
    "mask_url",
    "parse_location",
    "reset_registry",
    "slot_of",
    "untagged",
]
