"""The example site's pages, the admin, and the app's health endpoints under ``redis/``."""

from demo import views
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", views.home, name="home"),
    path("cached/", views.cached, name="cached"),
    path("expensive/", views.expensive, name="expensive"),
    path("expensive/async/", views.expensive_async, name="expensive-async"),
    path("api/", views.api, name="api"),
    path("job/", views.job, name="job"),
    path("chaos/", views.chaos, name="chaos"),
    path("pulse/", views.pulse, name="pulse"),
    path("kv/<slug:key>/", views.kv, name="kv"),
    path("admin/", admin.site.urls),
    path("redis/", include("django_redis_resilience.urls")),
]
