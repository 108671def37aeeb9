"""Fencing in the database: a lock holder's writes refused once a newer holder wrote.

A lease can end while its holder still runs (a long pause, a partition, a
failover that lost the grant). Fencing tokens make that harmless only where the
data lives checks them; in a Django app that is the database. A guarded
``UPDATE`` sets the rows' fence column to the holder's token, and only where it
is not already newer, in the same statement: the database, not the lock,
decides who wrote last.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from django_redis_resilience.exceptions import StaleFence


class Fence:
    """``queryset``'s rows as seen by the holder of ``token`` (``held.fence(queryset)``)."""

    def __init__(self, queryset: Any, token: int, *, field: str = "fence") -> None:
        self.queryset = queryset
        self.token = token
        self.field = field

    def update(self, **fields: Any) -> int:
        """``UPDATE ... SET <fields>, fence = token WHERE <queryset> AND fence <= token``.

        The holder may write again (its own token is not newer); when any row of
        the queryset carries a newer token, nothing is written (the update is
        rolled back) and :class:`StaleFence` is raised. Returns the rows updated.
        """
        if self.field in fields:
            raise ValueError(
                f"fence(...).update() sets {self.field!r} to the lock's token itself; "
                "leave it out of the fields."
            )
        queryset = self.queryset
        with transaction.atomic(using=queryset.db):
            updated: int = queryset.filter(**{f"{self.field}__lte": self.token}).update(
                **fields, **{self.field: self.token}
            )
            newer = queryset.filter(**{f"{self.field}__gt": self.token})
            if newer.exists():
                raise StaleFence(
                    f"A newer holder of the lock (fencing token above {self.token}) already "
                    f"wrote {newer.model._meta.label} rows; this holder's update was undone."
                )
        return updated

    async def aupdate(self, **fields: Any) -> int:
        """:meth:`update` from async code (Django runs transactions in its sync thread)."""
        return await sync_to_async(self.update, thread_sensitive=True)(**fields)
