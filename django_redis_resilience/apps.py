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
        _install_events()


_events_installed = False


def _install_events() -> None:
    """Degradation events are written from the signals (once per process, reset after fork)."""
    global _events_installed
    if _events_installed:
        return
    _events_installed = True
    import os

    from django_redis_resilience import events, signals

    signals.redis_degraded.connect(events.on_degraded, dispatch_uid="drr-events-degraded")
    signals.redis_recovered.connect(events.on_recovered, dispatch_uid="drr-events-recovered")
    os.register_at_fork(after_in_child=events.reset)
