"""Degradation events, persisted across processes for the admin panel and post-mortems."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models


class DegradationEvent(models.Model):
    """Something changed in how this app reaches Redis: a breaker opened, a node came back."""

    class Kind(models.TextChoices):
        BREAKER_OPENED = "breaker_opened", "breaker opened"
        BREAKER_CLOSED = "breaker_closed", "breaker closed"
        NODE_LOST = "node_lost", "node lost"
        NODE_RECOVERED = "node_recovered", "node recovered"
        FAILOVER = "failover", "failover seen"
        TOPOLOGY_CHANGED = "topology_changed", "topology changed"
        JOURNAL_DRAINED = "journal_drained", "outage journal drained"
        SUPPRESSED = "suppressed", "similar events suppressed"
        ADMIN_ACTION = "admin_action", "admin action"

    created_at: models.DateTimeField[Any, Any] = models.DateTimeField(db_index=True)
    kind: models.CharField[Any, Any] = models.CharField(max_length=32, choices=Kind.choices)
    alias: models.CharField[Any, Any] = models.CharField(max_length=200, blank=True)
    #: The endpoint as displayed everywhere: credentials masked.
    endpoint: models.CharField[Any, Any] = models.CharField(max_length=500, blank=True)
    #: ``pid@host`` of the process that saw it.
    process: models.CharField[Any, Any] = models.CharField(max_length=200)
    message: models.TextField[Any, Any] = models.TextField(blank=True)
    outage_seconds: models.FloatField[Any, Any] = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "degradation event"

    def __str__(self) -> str:
        kind = dict(self.Kind.choices).get(self.kind, self.kind)
        # In UTC, as the panel shows it (aware datetimes are UTC; naive ones, with
        # USE_TZ = False, are the site's local time and say nothing about a zone).
        when = self.created_at
        if when is not None and when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc)
            return f"{when:%Y-%m-%d %H:%M:%S} UTC {self.alias} {kind}"
        return f"{when:%Y-%m-%d %H:%M:%S} {self.alias} {kind}"


class RedisHealth(DegradationEvent):
    """The admin's "Redis health" page: a proxy, so no table, but its own permissions.

    "Can view Redis health" opens the panel; "Can change Redis health" allows
    its actions (probe now, reset a breaker, refresh a cluster's topology).
    """

    class Meta:
        proxy = True
        verbose_name = "Redis health"
        verbose_name_plural = "Redis health"
        default_permissions = ("view", "change")
