"""The suite's URLs: the admin (health panel) and the health endpoints."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("redis/", include("django_redis_resilience.urls")),
]
