"""The model of the fencing-token examples: a row that remembers the last token written."""

from __future__ import annotations

from typing import Any

from django.db import models


class Report(models.Model):
    """A report whose writers pass their lock's fencing token."""

    body: models.TextField[Any, Any] = models.TextField(blank=True)
    fence: models.BigIntegerField[Any, Any] = models.BigIntegerField(null=True)

    class Meta:
        app_label = "myapp"
