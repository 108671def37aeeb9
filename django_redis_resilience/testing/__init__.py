"""Real Redis servers for tests, and the opt-in pytest plugin that provides them.

Importable without Django (and without pytest: the fixtures are only defined
when pytest is installed). Enable the fixtures in a test suite with::

    pytest_plugins = ["django_redis_resilience.testing"]

Fixtures, all prefixed ``drr_``: ``drr_redis_server``, ``drr_replica_group`` and
``drr_tls_server`` (shared for the session, do not break them),
``drr_redis_factory`` and ``drr_replica_group_factory`` (fresh servers per
test, for chaos tests; they take ``tls=`` and ``users=`` too) and
``drr_tls_material`` (the session's throwaway CA and certificates).
``drr_proxy_factory`` puts a :class:`FaultProxy` in front of a server, per
test, to break the network rather than the server. ``drr_sentinel_group`` and
``drr_cluster`` (shared) and ``drr_sentinel_factory`` and
``drr_cluster_factory`` (per test) provide Redis Sentinel and Redis Cluster.
"""

from __future__ import annotations

import importlib.util

from django_redis_resilience.testing._binary import (
    bundled_server,
    find_redis_server,
    redis_version,
    server_name,
    supports_tls,
)
from django_redis_resilience.testing._cluster import ClusterGroup, ClusterGroupFactory
from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._ports import free_port
from django_redis_resilience.testing._proxy import FaultProxy, FaultProxyFactory
from django_redis_resilience.testing._sentinel import (
    SentinelGroup,
    SentinelGroupFactory,
    SentinelServer,
)
from django_redis_resilience.testing._servers import (
    RedisServer,
    RedisServerFactory,
    ReplicaGroup,
    ReplicaGroupFactory,
    stop_all,
)
from django_redis_resilience.testing._tls import (
    WRONG_HOST,
    TLSMaterial,
    TLSUnsupportedError,
    acl_user,
)

__all__ = [
    "WRONG_HOST",
    "ClusterGroup",
    "ClusterGroupFactory",
    "FaultProxy",
    "FaultProxyFactory",
    "HarnessError",
    "RedisServer",
    "RedisServerFactory",
    "ReplicaGroup",
    "ReplicaGroupFactory",
    "SentinelGroup",
    "SentinelGroupFactory",
    "SentinelServer",
    "TLSMaterial",
    "TLSUnsupportedError",
    "acl_user",
    "bundled_server",
    "find_redis_server",
    "free_port",
    "redis_version",
    "server_name",
    "stop_all",
    "supports_tls",
]

# pytest finds plugin fixtures and hooks among this module's attributes.
if importlib.util.find_spec("pytest") is not None:
    from django_redis_resilience.testing._plugin import (
        drr_cluster as drr_cluster,
    )
    from django_redis_resilience.testing._plugin import (
        drr_cluster_factory as drr_cluster_factory,
    )
    from django_redis_resilience.testing._plugin import (
        drr_proxy_factory as drr_proxy_factory,
    )
    from django_redis_resilience.testing._plugin import (
        drr_redis_factory as drr_redis_factory,
    )
    from django_redis_resilience.testing._plugin import (
        drr_redis_server as drr_redis_server,
    )
    from django_redis_resilience.testing._plugin import (
        drr_replica_group as drr_replica_group,
    )
    from django_redis_resilience.testing._plugin import (
        drr_replica_group_factory as drr_replica_group_factory,
    )
    from django_redis_resilience.testing._plugin import (
        drr_sentinel_factory as drr_sentinel_factory,
    )
    from django_redis_resilience.testing._plugin import (
        drr_sentinel_group as drr_sentinel_group,
    )
    from django_redis_resilience.testing._plugin import (
        drr_tls_material as drr_tls_material,
    )
    from django_redis_resilience.testing._plugin import (
        drr_tls_server as drr_tls_server,
    )
    from django_redis_resilience.testing._plugin import (
        pytest_sessionfinish as pytest_sessionfinish,
    )
