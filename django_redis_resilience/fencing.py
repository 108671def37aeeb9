"""The database side of fencing: a column for the last writer's token, and a model with it.

::

    from django_redis_resilience.fencing import Fenced

    class Account(Fenced):          # adds ``fence = FenceField()``
        balance = models.IntegerField()

    with lock("account:{pk}") as held:
        held.fence(Account.objects.filter(pk=pk)).update(balance=F("balance") - amount)

``held.fence(queryset).update(...)`` writes only if no newer holder of the
lock wrote those rows, in one ``UPDATE`` (see :class:`~django_redis_resilience.locks.Held`).
"""

from __future__ import annotations

from typing import Any

from django.db import models


class FenceField(models.BigIntegerField):  # type: ignore[type-arg]
    """The fencing token of the last lock holder that wrote the row (0: none yet)."""

    description = "Fencing token of the row's last writer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", 0)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)


class Fenced(models.Model):
    """An abstract model with a ``fence`` column for ``held.fence(queryset)``."""

    fence = FenceField()

    class Meta:
        abstract = True
