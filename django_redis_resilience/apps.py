"""App configuration: validate settings and wire the registry to Django, without I/O."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class RedisResilienceConfig(AppConfig):
    name = "django_redis_resilience"
    verbose_name = "Redis resilience"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # System checks do not run under gunicorn or uwsgi: an invalid setting
        # must stop the process here, with the setting's name and value.
        from django_redis_resilience import checks, clients  # noqa: F401 - registers checks
        from django_redis_resilience.conf import conf

        conf.validate()
        clients.install()
        setting_changed.connect(clients.on_setting_changed, dispatch_uid="drr-setting-changed")
