from __future__ import annotations

from django.db import models

from django_redis_resilience.fencing import Fenced, FenceField


class Account(Fenced):
    balance = models.IntegerField(default=0)
    owner = models.CharField(max_length=40, default="")


class Ledger(models.Model):
    """A fence column of another name, declared with the field instead of the model."""

    total = models.IntegerField(default=0)
    writer_token = FenceField()
