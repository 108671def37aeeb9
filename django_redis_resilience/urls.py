"""``path("redis/", include("django_redis_resilience.urls"))``."""

from django.urls import path

from django_redis_resilience import views

app_name = "django_redis_resilience"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("health/redis/", views.redis_health, name="redis-health"),
]
