"""The model of the fencing-token examples: a row that remembers the last token written."""

from __future__ import annotations

from typing import Any

from django.db import models

from django_redis_resilience.fencing import Fenced


class Report(models.Model):
    """A report whose writers pass their lock's fencing token."""

    body: models.TextField[Any, Any] = models.TextField(blank=True)
    fence: models.BigIntegerField[Any, Any] = models.BigIntegerField(null=True)

    class Meta:
        app_label = "myapp"


class Account(Fenced):
    """An account whose writers go through ``held.fence(...)`` (the ``fence`` column)."""

    balance: models.IntegerField[Any, Any] = models.IntegerField(default=0)

    class Meta:
        app_label = "myapp"
